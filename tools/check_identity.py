"""Check that the working tree trains exactly as a baseline commit does: same seed, same files.

    .venv/bin/python tools/check_identity.py --data-dir ../shared/datasets/mnist
    .venv/bin/python tools/check_identity.py --cases tutorial-v3,cnn-fast    # a subset
    .venv/bin/python tools/check_identity.py --baseline-twice --cases tutorial-rf,cnn-fast

Every case below is one `mnistlab train ...` (or `mnistlab ensemble ...`) command line on a
subset of MNIST (3000 training, 500 test images). Each is run twice, one after the other:
with the code of `--ref-commit` (default 8272c22, through a git worktree of it, created under
`--work` when missing) and with the working tree's code (`<repo>/src`), each put first on
PYTHONPATH in front of the same Python. Both write a run directory; the two are compared file
by file:

* JSON files (config.json, metrics.json, run.json, model/*.json) as parsed data, in key order,
  with numbers compared as written, plus their layout (indentation, separators). Ignored are
  only the values found to differ between two runs of the *same* code (measured with
  `--baseline-twice` on every case, see `IGNORED_KEYS`): the wall
  clock (metrics.json train_seconds, predict_seconds, train_examples_per_second; run.json
  started, finished) and the SHA-256 of a random forest's skops archive (model/params.json
  sha256; the archive itself is not byte-stable, see below; each side's digest is still
  checked against its own archive). The keys must still be present on both sides. Absolute
  paths of each side's own run directories (an ensemble's member runs) are written as
  `<runs>`, and metrics.json model_bytes, which counts those paths, is compared as the size
  of model/ with them so written (after checking it against model/ on each side). A
  config.json that holds the same settings in another layout is a difference.
* model/*.skops (the random forest): skops names the arrays in its zip archive after the
  Python objects' `id()`s and stamps the entries with the time, so two runs of the same code
  never give the same bytes. It is compared by content: schema.json and every array, with the
  object ids and array names renumbered in order of first appearance (the ids of JSON scalars,
  shared or not as Python interns them, dropped).
* PNG figures byte for byte, reported in a column of their own (a figure-only difference does
  not fail the check; the report says whether the pixels or only the metadata differ).
* Everything else (history.csv, history.jsonl, the weights and checkpoints under model/) byte
  for byte.

The baseline's run directories are made once and cached under `--work` (default
/tmp/identity), keyed by commit, command line and data directory; `--rebuild-baseline` makes
them again. The working tree's runs are made afresh on every call. `--baseline-twice` compares
the cached baseline with a second run of the baseline code instead of the working tree, to see
what differs from run to run on identical code.

Exit status: 0 when every case matches (figures aside), 1 when a non-figure file differs or a
working-tree run fails, 2 when the baseline itself cannot be built.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REF = "8272c22"
DEFAULT_WORK = Path("/tmp/identity")
SUBSET = ("--limit-train", "3000", "--limit-test", "500", "--quiet")
RUN_MARKER = ".check_identity-runs"  # marks a directory of run directories this tool owns


@dataclass(frozen=True)
class Case:
    """One command line; `{out}` is its run directory, `{run:NAME}` that of case NAME."""

    name: str
    argv: tuple[str, ...]
    needs: tuple[str, ...] = ()


def _train(name: str, *args: str, seed: str = "0") -> Case:
    return Case(name, ("train", *args, "--seed", seed, *SUBSET, "--out", "{out}"))


CASES: tuple[Case, ...] = (
    _train("tutorial-rf", "--preset", "tutorial-rf"),
    _train("tutorial-v1", "--preset", "tutorial-v1"),
    _train("tutorial-v2", "--preset", "tutorial-v2"),
    _train("tutorial-v3", "--preset", "tutorial-v3"),
    _train("softmax-best", "--preset", "softmax-best"),
    _train("mlp", "--preset", "mlp", "--epochs", "2"),
    _train("cnn-fast", "--preset", "cnn-fast", "--steps", "200"),
    _train("cnn", "--preset", "cnn", "--epochs", "2"),
    _train("tutorial-v3-val", "softmax", "--preset", "tutorial-v3", "--validation-split", "0.1"),
    _train("cnn-fast-val", "cnn", "--preset", "cnn-fast", "--steps", "100",
           "--validation-split", "0.1"),
    _train("mlp-seed3", "mlp", "--preset", "mlp", "--epochs", "1", seed="3"),
    Case("ensemble", ("ensemble", "{run:cnn-fast}", "{run:cnn}", "--out", "{out}", "--quiet"),
         needs=("cnn-fast", "cnn")),
)
CASES_BY_NAME = {case.name: case for case in CASES}

# Values that differ between two runs of the same code, by file (a glob on the path inside the
# run directory) and key path. Found by running the baseline twice (`--baseline-twice`).
IGNORED_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "metrics.json": (("train_seconds",), ("predict_seconds",), ("train_examples_per_second",)),
    "run.json": (("started",), ("finished",)),
    # The digest of model.skops, which is not byte-stable (compared by content instead); each
    # side's digest is checked against its own archive.
    "model/params.json": (("sha256",),),
    "model/member-*/params.json": (("sha256",),),
}
SKOPS_SUFFIX = ".skops"


# --------------------------------------------------------------------------- running the cases
@dataclass
class Side:
    """One code base that runs the cases: a label, the source directory put on PYTHONPATH,
    and the directory holding its run directories (`<root>/<case>/run`)."""

    label: str
    src: Path
    root: Path
    cached: bool  # reuse run directories made earlier with the same command line

    def case_dir(self, name: str) -> Path:
        return self.root / name

    def run_dir(self, name: str) -> Path:
        return self.root / name / "run"


@dataclass
class RunOutcome:
    ok: bool
    seconds: float
    reused: bool = False
    error: str = ""


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def ensure_worktree(work: Path, commit: str) -> Path:
    """A detached worktree of `commit` under `work`, created when missing."""
    for path in (work / "baseline-src", work / f"baseline-src-{commit[:12]}"):
        if (path / ".git").exists():
            if git("rev-parse", "HEAD", cwd=path) == commit:
                return path
            continue
        if not path.exists():
            work.mkdir(parents=True, exist_ok=True)
            git("worktree", "add", "--detach", str(path), commit)
            return path
    raise SystemExit(f"check_identity: {work / 'baseline-src'} and "
                     f"{work / ('baseline-src-' + commit[:12])} exist but are not worktrees "
                     f"of {commit}; remove one or choose another --work")


def python_env(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def check_import(src: Path, cwd: Path) -> None:
    """Make sure that `src` on PYTHONPATH wins over the editable install."""
    found = subprocess.run([sys.executable, "-c", "import mnistlab; print(mnistlab.__file__)"],
                           env=python_env(src), cwd=cwd, capture_output=True, text=True)
    expected = (src / "mnistlab" / "__init__.py").resolve()
    if found.returncode != 0 or Path(found.stdout.strip()).resolve() != expected:
        raise SystemExit(f"check_identity: with PYTHONPATH={src}, `import mnistlab` gives "
                         f"{found.stdout.strip() or found.stderr.strip()!r}, not {expected}")


def prepare_root(root: Path) -> None:
    if root.exists() and any(root.iterdir()) and not (root / RUN_MARKER).exists():
        raise SystemExit(f"check_identity: {root} exists and was not made by this tool")
    root.mkdir(parents=True, exist_ok=True)
    (root / RUN_MARKER).touch()


def command_line(case: Case, side: Side, data_dir: Path) -> list[str]:
    argv = []
    for arg in case.argv:
        if arg == "{out}":
            arg = str(side.run_dir(case.name))
        elif arg.startswith("{run:"):
            arg = str(side.run_dir(arg[5:-1]))
        argv.append(arg)
    return [*argv, "--data-dir", str(data_dir)]


def run_case(case: Case, side: Side, data_dir: Path, rebuilt: set[str], console: Console,
             timeout: float) -> RunOutcome:
    """Run `case` with `side`'s code unless an earlier run with the same command line is
    cached; `rebuilt` collects the cases run now (their dependents are then run again)."""
    case_dir = side.case_dir(case.name)
    record_path = case_dir / "case.json"
    argv = command_line(case, side, data_dir)
    key = {"argv": argv, "src": str(side.src), "python": sys.executable}
    if side.cached and record_path.exists() and not rebuilt.intersection(case.needs):
        record = json.loads(record_path.read_text())
        if record.get("key") == key and record.get("ok") and side.run_dir(case.name).is_dir():
            console.print(f"  {side.label:>9} {case.name:<16} cached "
                          f"({record['seconds']:.1f} s when made)")
            return RunOutcome(True, record["seconds"], reused=True)
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    start = time.perf_counter()
    with open(case_dir / "output.log", "w") as log:
        log.write(f"PYTHONPATH={side.src} {sys.executable} -m mnistlab {' '.join(argv)}\n")
        log.flush()
        try:
            process = subprocess.run([sys.executable, "-m", "mnistlab", *argv],
                                     env=python_env(side.src), cwd=side.root, stdout=log,
                                     stderr=subprocess.STDOUT, timeout=timeout)
            code = process.returncode
        except subprocess.TimeoutExpired:
            code = None
    seconds = time.perf_counter() - start
    rebuilt.add(case.name)
    ok = code == 0 and side.run_dir(case.name).is_dir()
    error = ""
    if not ok:
        lines = [line for line in (case_dir / "output.log").read_text().splitlines()
                 if line.strip()]
        error = (f"timed out after {timeout:.0f} s" if code is None
                 else f"exit {code}: {lines[-1] if lines else 'no output'}")
    record_path.write_text(json.dumps({"key": key, "ok": ok, "seconds": round(seconds, 1),
                                       "error": error}, indent=2) + "\n")
    console.print(f"  {side.label:>9} {case.name:<16} {seconds:6.1f} s"
                  + ("" if ok else "  [red]FAILED[/red] "
                     + escape(f"{error} (log: {case_dir / 'output.log'})")))
    return RunOutcome(ok, seconds, error=error)


# --------------------------------------------------------------------------- comparing files
@dataclass
class Comparison:
    """The comparison of two run directories, by column."""

    files: int = 0
    differences: dict[str, list[str]] = field(
        default_factory=lambda: {"data": [], "model": [], "figures": []})
    notes: list[str] = field(default_factory=list)

    def first_difference(self) -> str:
        for column in ("data", "model", "figures"):
            if self.differences[column]:
                return self.differences[column][0]
        return ""


class Number(str):
    """A JSON number kept as written, so that 1 and 1.0, or 0.1 and 0.10000000000000001,
    differ."""


def parse_json(text: str):
    return json.loads(text, parse_float=Number, parse_int=Number, parse_constant=Number)


_SCALAR = re.compile(r'"(?:[^"\\]|\\.)*"|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?'
                     r"|true|false|null|NaN|-?Infinity")


def json_layout(text: str) -> str:
    """The text with every scalar replaced by `#`: indentation, separators and nesting."""
    return _SCALAR.sub("#", text)


class _Ignored:
    def __repr__(self) -> str:
        return "<ignored>"


IGNORED = _Ignored()


def mask(data, paths: tuple[tuple[str, ...], ...]):
    """`data` with the values at `paths` replaced by IGNORED (the keys stay)."""
    for path in paths:
        node = data
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            node[path[-1]] = IGNORED
    return data


def relocate(data, root: str):
    """`data` with `root` (this side's directory of run directories) written as `<runs>`."""
    if isinstance(data, dict):
        return {key: relocate(value, root) for key, value in data.items()}
    if isinstance(data, list):
        return [relocate(value, root) for value in data]
    if isinstance(data, str) and not isinstance(data, Number) and root in data:
        return data.replace(root, "<runs>")
    return data


def first_json_difference(a, b, path: str = "") -> str | None:
    """Where `a` and `b` first differ (types, keys, key order, values), or None."""
    where = path or "(top)"
    if type(a) is not type(b):
        return f"{where}: {_short(a)} != {_short(b)}"
    if isinstance(a, dict):
        if list(a) != list(b):
            if set(a) == set(b):
                return f"{where}: same keys in another order"
            only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            return (f"{where}: keys only in baseline {only_a}" if only_a else
                    f"{where}: keys only in current {only_b}")
        for key in a:
            found = first_json_difference(a[key], b[key], f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(a, list):
        for index, (x, y) in enumerate(zip(a, b)):
            found = first_json_difference(x, y, f"{path}[{index}]")
            if found:
                return found
        if len(a) != len(b):
            return f"{where}: {len(a)} items != {len(b)}"
        return None
    if a is IGNORED or a == b:
        return None
    return f"{where}: {_short(a)} != {_short(b)}"


def _short(value) -> str:
    text = (str(value) if isinstance(value, Number) else repr(value) if value is IGNORED
            else json.dumps(value, default=str))
    return text if len(text) <= 40 else text[:37] + "..."


def ignored_paths(relative: str) -> tuple[tuple[str, ...], ...]:
    return tuple(path for pattern, paths in IGNORED_KEYS.items()
                 if fnmatch.fnmatchcase(relative, pattern) for path in paths)


def model_sizes(model_dir: Path, root: str) -> tuple[int, int]:
    """The size of `model_dir`'s files, and that size with every `root` in them written as
    `<runs>` (an ensemble's model names its members' run directories)."""
    actual = relocated = 0
    for path in model_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            actual += len(data)
            relocated += len(data.replace(root.encode(), b"<runs>"))
    return actual, relocated


def compare_json(relative: str, a_path: Path, b_path: Path, roots: tuple[str, str]) -> str | None:
    a_text, b_text = a_path.read_text(), b_path.read_text()
    try:
        a_data, b_data = parse_json(a_text), parse_json(b_text)
    except ValueError as error:
        return None if a_text == b_text else f"{relative}: not JSON ({error})"
    ignored = ignored_paths(relative)
    if ("sha256",) in ignored:
        archives = [sorted(path.parent.glob(f"*{SKOPS_SUFFIX}")) for path in (a_path, b_path)]
        if not all(archives):  # only the digest of a skops archive is ignored
            ignored = tuple(path for path in ignored if path != ("sha256",))
        for path, data, archive in ((a_path, a_data, archives[0]), (b_path, b_data, archives[1])):
            digest = data.get("sha256") if isinstance(data, dict) else None
            if archive and digest is not None:
                if hashlib.sha256(archive[0].read_bytes()).hexdigest() != digest:
                    return f"{relative}: sha256 does not match {archive[0].name} in {path.parent}"
    if relative == "metrics.json":
        for data, path, root in ((a_data, a_path, roots[0]), (b_data, b_path, roots[1])):
            if isinstance(data, dict) and "model_bytes" in data:
                actual, relocated = model_sizes(path.parent / "model", root)
                if int(data["model_bytes"]) != actual:
                    return (f"{relative}: model_bytes {data['model_bytes']} is not the size of "
                            f"{path.parent / 'model'} ({actual})")
                data["model_bytes"] = Number(relocated)
    a_data = relocate(mask(a_data, ignored), roots[0])
    b_data = relocate(mask(b_data, ignored), roots[1])
    found = first_json_difference(a_data, b_data)
    if found:
        return f"{relative}: {found}"
    if json_layout(a_text) != json_layout(b_text):
        return f"{relative}: same data, other layout (indentation or separators)"
    return None


def compare_lines(relative: str, a: bytes, b: bytes) -> str:
    a_lines, b_lines = a.splitlines(), b.splitlines()
    for number, (x, y) in enumerate(zip(a_lines, b_lines), start=1):
        if x != y:
            detail = ""
            if relative.endswith(".jsonl"):
                try:
                    detail = first_json_difference(parse_json(x), parse_json(y)) or ""
                except ValueError:
                    pass
            elif relative.endswith(".csv") and number > 1:
                header = a_lines[0].decode().split(",")
                cells = list(zip(header, x.decode().split(","), y.decode().split(",")))
                detail = next((f"{name}: {p} != {q}" for name, p, q in cells if p != q), "")
            return f"{relative} line {number}" + (f": {detail}" if detail else "")
    if len(a_lines) != len(b_lines):
        return f"{relative}: {len(a_lines)} lines != {len(b_lines)}"
    return f"{relative}: differs (line endings or final newline)"


def skops_content(path: Path) -> tuple[str, list[tuple[str, bytes]]]:
    """A skops archive as (schema, arrays) with the object ids and array file names that skops
    takes from `id()` renumbered in order of first appearance; zip timestamps dropped. The ids
    of JSON scalars (ints, floats, strings, None) are dropped: which of them are one object
    depends on Python's interning of small ints and constants, not on the model."""
    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
        names = [name for name in archive.namelist() if name != "schema.json"]
        known = set(names)
        ids: dict[int, int] = {}
        files: dict[str, str] = {}

        def renumber(node):
            if isinstance(node, dict):
                out = {}
                for key, value in node.items():
                    if key == "__id__" and node.get("__loader__") == "JsonNode":
                        continue  # an immutable scalar: sharing it is Python's interning
                    if key == "__id__" and isinstance(value, int):
                        value = f"id{ids.setdefault(value, len(ids))}"
                    elif isinstance(value, str) and value in known:
                        value = files.setdefault(value, f"file{len(files)}")
                    out[key] = renumber(value)
                return out
            if isinstance(node, list):
                return [renumber(value) for value in node]
            return node

        canonical = json.dumps(renumber(schema), indent=1)
        unreferenced = [name for name in names if name not in files]
        for name in unreferenced:
            files[name] = f"unreferenced:{name}"
        arrays = sorted((files[name], archive.read(name)) for name in names)
    return canonical, arrays


def compare_skops(relative: str, a: Path, b: Path) -> str | None:
    a_schema, a_arrays = skops_content(a)
    b_schema, b_arrays = skops_content(b)
    if a_schema != b_schema:
        line = next((n for n, (x, y) in enumerate(
            zip(a_schema.splitlines(), b_schema.splitlines()), start=1) if x != y), None)
        return f"{relative}: schema differs (canonical line {line})"
    if [name for name, _ in a_arrays] != [name for name, _ in b_arrays]:
        return f"{relative}: other arrays"
    for (name, x), (_, y) in zip(a_arrays, b_arrays):
        if x != y:
            return f"{relative}: array {name} differs"
    return None


def compare_png(relative: str, a: bytes, b: bytes) -> str:
    try:
        from PIL import Image

        a_image, b_image = Image.open(io.BytesIO(a)), Image.open(io.BytesIO(b))
        same_pixels = (a_image.size == b_image.size and a_image.mode == b_image.mode
                       and a_image.tobytes() == b_image.tobytes())
        return f"{relative}: " + ("same pixels, other metadata" if same_pixels
                                  else "pixels differ")
    except Exception:  # noqa: BLE001 - only a hint
        return f"{relative}: bytes differ"


def byte_difference(a: bytes, b: bytes) -> str:
    if len(a) != len(b):
        return f"{len(a)} bytes != {len(b)}"
    offset = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    return f"bytes differ from offset {offset} (of {len(a)})"


def column_of(relative: str) -> str:
    if relative.endswith(".png"):
        return "figures"
    if relative.startswith("model/"):
        return "model"
    return "data"


def compare_runs(a_dir: Path, b_dir: Path, roots: tuple[str, str]) -> Comparison:
    result = Comparison()
    a_files = {p.relative_to(a_dir).as_posix() for p in a_dir.rglob("*") if p.is_file()}
    b_files = {p.relative_to(b_dir).as_posix() for p in b_dir.rglob("*") if p.is_file()}
    for relative in sorted(a_files | b_files, key=lambda r: (r.count("/"), r)):
        column = column_of(relative)
        if relative not in b_files or relative not in a_files:
            side = "baseline" if relative in a_files else "current"
            result.differences[column].append(f"{relative}: only in {side}")
            continue
        result.files += 1
        a_path, b_path = a_dir / relative, b_dir / relative
        a_bytes, b_bytes = a_path.read_bytes(), b_path.read_bytes()
        if relative.endswith(".json"):
            found = compare_json(relative, a_path, b_path, roots)
        elif a_bytes == b_bytes:
            found = None
        elif relative.endswith(SKOPS_SUFFIX):
            found = compare_skops(relative, a_path, b_path)
            if found is None:
                result.notes.append(f"{relative}: same content, other archive bytes")
        elif relative.endswith(".png"):
            found = compare_png(relative, a_bytes, b_bytes)
        elif relative.endswith((".csv", ".jsonl", ".txt", ".md", ".html")):
            found = compare_lines(relative, a_bytes, b_bytes)
        else:
            found = f"{relative}: {byte_difference(a_bytes, b_bytes)}"
        if found:
            result.differences[column].append(found)
    return result


# --------------------------------------------------------------------------- the command
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train every preset on a subset with a baseline commit and with the "
                    "working tree, and compare the run directories file by file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="cases: " + ", ".join(case.name for case in CASES))
    parser.add_argument("--data-dir", type=Path,
                        default=os.environ.get("MNISTLAB_DATA_DIR") or None,
                        help="directory with the MNIST IDX files (default: $MNISTLAB_DATA_DIR)")
    parser.add_argument("--ref-commit", default=DEFAULT_REF,
                        help=f"the baseline commit (default {DEFAULT_REF})")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help=f"worktree, cached baseline runs and current runs "
                             f"(default {DEFAULT_WORK})")
    parser.add_argument("--cases", default=None,
                        help="comma-separated case names (default: all); an ensemble brings "
                             "its members")
    parser.add_argument("--rebuild-baseline", action="store_true",
                        help="run the baseline cases again instead of using the cache")
    parser.add_argument("--baseline-twice", action="store_true",
                        help="compare the baseline with a second run of the baseline code "
                             "instead of the working tree")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds one run may take (default 1800)")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        parser.error("give --data-dir or set MNISTLAB_DATA_DIR")
    args.data_dir = args.data_dir.resolve()
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a directory")
    if args.cases:
        names = [name.strip() for name in args.cases.split(",") if name.strip()]
        unknown = [name for name in names if name not in CASES_BY_NAME]
        if unknown:
            parser.error(f"unknown case(s) {', '.join(unknown)}; known: "
                         + ", ".join(CASES_BY_NAME))
        wanted = set(names)
        for name in names:
            wanted.update(CASES_BY_NAME[name].needs)
        args.selected = [case for case in CASES if case.name in wanted]
    else:
        args.selected = list(CASES)
    return args


def yes_no(differences: list[str], compared: bool) -> str:
    if not compared:
        return "-"
    return "[green]yes[/green]" if not differences else f"[red]no ({len(differences)})[/red]"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    work = args.work.resolve()
    try:
        commit = git("rev-parse", "--verify", f"{args.ref_commit}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(
            f"check_identity: {args.ref_commit!r} is not a commit of {REPO}") from None
    worktree = ensure_worktree(work, commit)
    baseline = Side("baseline", worktree / "src", work / f"baseline-{commit[:12]}", cached=True)
    if args.baseline_twice:
        other = Side("baseline²", worktree / "src", work / f"baseline-{commit[:12]}-again",
                     cached=False)
    else:
        other = Side("current", REPO / "src", work / "current", cached=False)
    for side in (baseline, other):
        prepare_root(side.root)
        check_import(side.src, side.root)
    if args.rebuild_baseline:
        baseline.cached = False
    console.print(f"baseline: {commit[:12]} from {baseline.src}\n"
                  f"{other.label}: {other.src}\n"
                  f"data: {args.data_dir}; runs under {work}")

    started = time.perf_counter()
    outcomes: dict[tuple[str, str], RunOutcome] = {}
    for side in (baseline, other):
        rebuilt: set[str] = set()
        for case in args.selected:
            if any(not outcomes[(side.label, need)].ok for need in case.needs):
                outcomes[(side.label, case.name)] = RunOutcome(False, 0.0,
                                                               error="a member run failed")
                continue
            outcomes[(side.label, case.name)] = run_case(case, side, args.data_dir, rebuilt,
                                                         console, args.timeout)

    table = Table(title=f"{other.label} ({other.src}) against baseline {commit[:12]}")
    for column in ("case", "files", "JSON / history", "model", "figures",
                   "first difference"):
        table.add_column(column, overflow="fold")
    failed = baseline_failed = False
    report = {"commit": commit, "other": other.label, "other_src": str(other.src),
              "data_dir": str(args.data_dir), "cases": {}}
    for case in args.selected:
        base, mine = outcomes[(baseline.label, case.name)], outcomes[(other.label, case.name)]
        entry = {"baseline_seconds": base.seconds, "other_seconds": mine.seconds}
        if not base.ok or not mine.ok:
            which = "baseline" if not base.ok else other.label
            message = f"{which} run failed: {(base if not base.ok else mine).error}"
            table.add_row(case.name, "-", "-", "-", "-", f"[red]{escape(message)}[/red]")
            entry["error"] = message
            failed = True
            baseline_failed |= not base.ok
        else:
            comparison = compare_runs(baseline.run_dir(case.name), other.run_dir(case.name),
                                      (str(baseline.root), str(other.root)))
            diffs = comparison.differences
            table.add_row(case.name, str(comparison.files), yes_no(diffs["data"], True),
                          yes_no(diffs["model"], True), yes_no(diffs["figures"], True),
                          escape(comparison.first_difference()))
            failed |= bool(diffs["data"] or diffs["model"])
            entry.update(files=comparison.files, differences=diffs, notes=comparison.notes)
        report["cases"][case.name] = entry
    console.print(table)
    for case in args.selected:
        entry = report["cases"][case.name]
        extra = [d for column in ("data", "model", "figures")
                 for d in entry.get("differences", {}).get(column, [])[1:]]
        if extra:
            console.print(f"[bold]{case.name}[/bold], further differences:")
            for line in extra[:20]:
                console.print(f"  {escape(line)}")
            if len(extra) > 20:
                console.print(f"  ... and {len(extra) - 20} more")
    notes = {case: entry["notes"] for case, entry in report["cases"].items() if entry.get("notes")}
    for case, lines in notes.items():
        console.print(escape(f"note ({case}): " + "; ".join(lines)))
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["identical"] = not failed
    (work / "last-check.json").write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"{'[green]identical[/green]' if not failed else '[red]NOT identical[/red]'}"
                  f" (figures aside); {report['seconds']:.0f} s; report: "
                  f"{work / 'last-check.json'}")
    if baseline_failed:
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
