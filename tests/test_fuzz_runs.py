"""Damaged run directories and full disks: a property-based fuzz of what the commands read.

A few real, small runs are trained once (a forest of 5 trees, a softmax of a few steps, an
MLP of a few steps, and an ensemble of the first two). Each generated case copies one of
them, damages one field of one record (a value of a wrong type, out of range, missing, or
an extra one), or truncates or swaps one of its model files, and runs `evaluate`,
`predict`, `runs` and `compare` on it in-process. Every command must end with a known exit
status, print at most one line on stderr (exactly one when it fails), never a traceback;
`runs` must still list the good run beside the damaged one.

The full-disk tests make every model writer fail with ENOSPC, injected and (as root) on a
real tmpfs of a few hundred kilobytes: one line naming the cause, and no run left behind
that claims to be complete.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from mnistlab.cli import main
from mnistlab.config import make_config
from mnistlab.data import write_dataset
from mnistlab.experiment import ensemble_runs, train_and_evaluate
from mnistlab.runs import load_run

from conftest import make_toy_arrays
from shapes import draw_shape

# Hundreds of damaged runs through four commands: about a minute here, so not in the
# quick loop (make test-fast); make test runs it.
pytestmark = pytest.mark.slow

# Exit statuses a command may end with here: 0 (done), 1 (evaluate found other numbers, or
# predict had a file it could not read), 2 (a user-facing error).
KNOWN_EXIT_CODES = {0, 1, 2}
RECORDS = ("run.json", "config.json", "metrics.json", "history.jsonl")
MODEL_DOCUMENTS = {"forest": "model/params.json", "softmax": "model/params.json",
                   "mlp": "model/params.json", "ensemble": "model/ensemble.json"}
# Generated cases per test; MNISTLAB_FUZZ_EXAMPLES=1000 searches harder.
FUZZ_EXAMPLES = int(os.environ.get("MNISTLAB_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# What the generated cases found, by area and outcome; printed at the end of the session.
TALLY: Counter = Counter()


# ------------------------------------------------------------------------------ the runs


@pytest.fixture(scope="session")
def fuzz_runs(tmp_path_factory) -> dict[str, Path]:
    """Four small completed runs on a toy dataset written as IDX files (so `evaluate` can
    load it again), and an image file for `predict`."""
    root = tmp_path_factory.mktemp("fuzz-runs")
    train_images, train_labels, test_images, test_labels = make_toy_arrays(train=200, test=50)
    data = write_dataset(root / "data", train_images=train_images, train_labels=train_labels,
                         test_images=test_images, test_labels=test_labels)
    configs = {
        "forest": make_config("random-forest", model_options={"n_estimators": 5, "n_jobs": 1},
                              dataset=str(data)),
        "softmax": make_config("softmax", model_options={"num_steps": 12, "batch_size": 32,
                                                         "log_every": 4},
                               dataset=str(data), validation_split=0.1),
        "mlp": make_config("mlp", model_options={"num_steps": 4, "width": 8, "depth": 1,
                                                 "batch_size": 32, "log_every": 2},
                           dataset=str(data)),
    }
    runs = {name: train_and_evaluate(config, root / "runs" / name, progress=False).run_dir
            for name, config in configs.items()}
    runs["ensemble"] = ensemble_runs([runs["forest"], runs["softmax"]], root / "runs" /
                                     "ensemble", progress=False).run_dir
    rng = np.random.default_rng(3)
    ink = np.asarray(draw_shape(1, rng, size=112))
    Image.fromarray(255 - ink).save(root / "digit.png")
    runs["image"] = root / "digit.png"
    return runs


@pytest.fixture(autouse=True)
def no_registered_datasets(tmp_path, monkeypatch):
    """A damaged config.json may name a registered dataset: look for it in an empty folder
    only, never on the network."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(empty))


@contextlib.contextmanager
def copied_run(fuzz_runs: dict[str, Path], name: str):
    """A private copy of run `name` (as `<tmp>/runs/<name>`) beside a good copy of the
    forest (`<tmp>/runs/good`); removed afterwards."""
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(scratch) / "runs"
        runs.mkdir()
        shutil.copytree(fuzz_runs[name], runs / name)
        shutil.copytree(fuzz_runs["forest"], runs / "good")
        yield runs / name


def run_cli(arguments: list[str], capsys) -> tuple[int, str, str]:
    """Run a command in-process; (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main([str(argument) for argument in arguments])
    except SystemExit as exit_info:  # argparse
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_commands(run_dir: Path, fuzz_runs, capsys, area: str) -> dict[str, int]:
    """Run evaluate, predict, runs and compare on a (damaged) run; check how each ends."""
    codes = {}
    good = run_dir.parent / "good"
    for command, arguments in (
            ("evaluate", ["evaluate", run_dir]),
            ("predict", ["predict", run_dir, fuzz_runs["image"], "--format", "json"]),
            ("runs", ["runs", run_dir.parent]),
            ("compare", ["compare", run_dir, good])):
        code, out, err = run_cli(arguments, capsys)
        lines = err.strip().splitlines()
        context = f"{command} {run_dir.name}: exit {code}, stderr {err!r}"
        assert code in KNOWN_EXIT_CODES, context
        assert "Traceback" not in err and "Traceback" not in out, context
        assert len(lines) <= 1, context
        if code == 2:
            assert len(lines) == 1, context
        if command == "runs":
            assert "good" in out, context  # the other run is still listed
        codes[command] = code
        TALLY[(area, command, "refused" if code == 2 else f"exit {code}")] += 1
    return codes


@pytest.fixture(scope="session", autouse=True)
def report_tally():
    """Print what the generated cases found (pytest -s shows it)."""
    yield
    if TALLY:
        print("\nfuzz_runs cases by area, command and outcome:")
        for (area, command, outcome), count in sorted(TALLY.items()):
            print(f"  {area:10} {command:9} {outcome:8} {count}")


# ------------------------------------------------------------------------------ damaging JSON

SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.integers(-10**400, 10**400)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                           max_leaves=6)


def near(value):
    """Values of the same type as `value` but likely out of range, or of a neighbour type."""
    if isinstance(value, bool):
        return st.sampled_from([not value, 0, 1, "true"])
    if isinstance(value, int):
        return st.sampled_from([-1, 0, 2**31, 2**63, 10**30, value + 1, -value, float(value),
                                str(value)])
    if isinstance(value, float):
        return st.sampled_from([-0.5, 1.5, math.nan, math.inf, -math.inf, 1e308, value * 1e6,
                                str(value), int(value)])
    if isinstance(value, str):
        return st.sampled_from(["", "x" * 300, value.upper(), "../" + value, 7, [value]])
    if isinstance(value, list):
        return st.sampled_from([[], value[:1], value + value, value[::-1], [None] * len(value),
                                [[]] * len(value), {"0": value}])
    if isinstance(value, dict):
        return st.sampled_from([{}, [value], {**value, "": None}, list(value)])
    return st.just(None)


def paths_of(value, prefix=()) -> list[tuple]:
    """Every path into a JSON value, containers included: each key of an object, and the
    first and last item of a list (its items are alike)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_of(item, prefix + (key,))
    elif isinstance(value, list):
        for index in sorted({0, len(value) - 1} if value else set()):
            found += paths_of(value[index], prefix + (index,))
    return found


def get(value, path):
    for key in path:
        value = value[key]
    return value


@st.composite
def damaged_json(draw, document):
    """(description, damaged copy) of a JSON document: one path replaced by a value of a
    wrong type or out of range, removed, or given an extra key or item."""
    document = json.loads(json.dumps(document))
    paths = [path for path in paths_of(document) if path]
    path = draw(st.sampled_from(paths))
    parent, key = get(document, path[:-1]), path[-1]
    action = draw(st.sampled_from(["replace", "near", "remove", "extra"]))
    if action == "replace":
        parent[key] = draw(JSON_VALUES)
    elif action == "near":
        parent[key] = draw(near(parent[key]))
    elif action == "remove":
        del parent[key]
    else:
        target = parent[key]
        if isinstance(target, dict):
            target[draw(st.text(min_size=1, max_size=8))] = draw(JSON_VALUES)
        elif isinstance(target, list):
            target.append(draw(JSON_VALUES))
        else:
            parent[key] = [target, draw(JSON_VALUES)]
    return f"{action} {'.'.join(map(str, path))}", document


def read_document(path: Path):
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def write_document(path: Path, document) -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(record) + "\n" for record in document))
    else:
        path.write_text(json.dumps(document))


# ------------------------------------------------------------------------------ the fuzz


@pytest.mark.parametrize("run_name", ["forest", "softmax"])
@pytest.mark.parametrize("record", RECORDS)
def test_every_field_of_every_record_damaged_one_way(fuzz_runs, capsys, run_name, record):
    """Each field in turn, replaced by a value of another type: always refused cleanly, by
    `runs` as a damaged run beside the good one."""
    source = fuzz_runs[run_name] / record
    document = read_document(source)
    for path in [path for path in paths_of(document) if path]:
        damaged = json.loads(json.dumps(document))
        value = get(damaged, path)
        get(damaged, path[:-1])[path[-1]] = [value] if not isinstance(value, list) else "x"
        with copied_run(fuzz_runs, run_name) as run_dir:
            write_document(run_dir / record, damaged)
            codes = check_commands(run_dir, fuzz_runs, capsys, "field")
            # A wrong type is refused when the run is read; the model's options, when they
            # are used (each model checks its own, and `compare` does not need them).
            used = "evaluate" if path[0] == "model_config" else "compare"
            assert codes[used] == 2, (record, path)


@pytest.mark.parametrize("run_name", ["forest", "softmax", "mlp", "ensemble"])
def test_damaged_records(fuzz_runs, capsys, run_name):
    """Generated damage to a record or a model document of each kind of run."""
    files = [name for name in (*RECORDS, MODEL_DOCUMENTS[run_name])
             if read_document(fuzz_runs[run_name] / name)]  # the forest has no history

    @FUZZ
    @given(data=st.data())
    def damage_one_field(data):
        record = data.draw(st.sampled_from(files))
        description, document = data.draw(damaged_json(read_document(fuzz_runs[run_name] /
                                                                     record)))
        with copied_run(fuzz_runs, run_name) as run_dir:
            write_document(run_dir / record, document)
            check_commands(run_dir, fuzz_runs, capsys, "record")

    damage_one_field()


def model_files(run_dir: Path) -> list[Path]:
    return sorted(path for path in (run_dir / "model").rglob("*") if path.is_file())


@pytest.mark.parametrize("run_name", ["forest", "softmax", "mlp", "ensemble"])
def test_truncated_model_files(fuzz_runs, capsys, run_name):
    """Every model file cut at a generated length (empty included): refused in one line."""
    files = [path.relative_to(fuzz_runs[run_name]) for path in model_files(fuzz_runs[run_name])]

    @FUZZ
    @given(data=st.data())
    def truncate_one_file(data):
        relative = data.draw(st.sampled_from(files))
        content = (fuzz_runs[run_name] / relative).read_bytes()
        cut = data.draw(st.integers(0, max(0, len(content) - 1)))
        assume(content[:cut].rstrip() != content.rstrip())  # a lost newline is no damage
        with copied_run(fuzz_runs, run_name) as run_dir:
            (run_dir / relative).write_bytes(content[:cut])
            codes = check_commands(run_dir, fuzz_runs, capsys, "truncated")
            # `runs` and `compare` read no model; the two that do must refuse it.
            assert codes["evaluate"] == 2 and codes["predict"] == 2, (relative, cut)

    truncate_one_file()


@pytest.mark.parametrize("run_name", ["forest", "softmax", "mlp", "ensemble"])
def test_overwritten_bytes_in_model_files(fuzz_runs, capsys, run_name):
    """Bytes of a model file overwritten (random ones, or a float NaN's): the model either
    loads and gives finite probabilities, or is refused in one line."""
    files = [path.relative_to(fuzz_runs[run_name]) for path in model_files(fuzz_runs[run_name])
             if path.name not in ("params.json", "ensemble.json")]  # JSON: fuzzed above

    @FUZZ
    @given(data=st.data())
    def overwrite_bytes(data):
        relative = data.draw(st.sampled_from(files))
        content = bytearray((fuzz_runs[run_name] / relative).read_bytes())
        patch = data.draw(st.binary(min_size=1, max_size=64)
                          | st.just(b"\xff\xff\xff\x7f" * 16))  # NaN as float32
        position = data.draw(st.integers(0, max(0, len(content) - len(patch))))
        content[position:position + len(patch)] = patch
        with copied_run(fuzz_runs, run_name) as run_dir:
            (run_dir / relative).write_bytes(bytes(content))
            check_commands(run_dir, fuzz_runs, capsys, "bytes")

    overwrite_bytes()


# (run, file of its model, run whose file takes its place)
SWAPS = [("softmax", "params.json", "forest", "params.json"),
         ("forest", "params.json", "softmax", "params.json"),
         ("mlp", "params.json", "softmax", "params.json"),
         ("softmax", "params.json", "mlp", "params.json"),
         ("mlp", "network.weights.h5", "softmax", "weights.data-00000-of-00001"),
         ("softmax", "weights.index", "mlp", "network.weights.h5"),
         ("softmax", "weights.data-00000-of-00001", "forest", "model.skops"),
         ("forest", "model.skops", "softmax", "weights.data-00000-of-00001"),
         ("ensemble", "member-1/weights.index", "mlp", "network.weights.h5")]


@pytest.mark.parametrize("target, name, source, source_name", SWAPS)
def test_model_files_of_another_model(fuzz_runs, capsys, target, name, source, source_name):
    """params.json of another model, a weights file from another model: one line."""
    with copied_run(fuzz_runs, target) as run_dir:
        shutil.copyfile(fuzz_runs[source] / "model" / source_name, run_dir / "model" / name)
        codes = check_commands(run_dir, fuzz_runs, capsys, "swapped")
        assert codes["evaluate"] == 2 and codes["predict"] == 2


def test_weights_of_another_shape(fuzz_runs, capsys, tmp_path):
    """An MLP's weights file from an MLP of another width: one line, not 20."""
    other = make_config("mlp", model_options={"num_steps": 2, "width": 16, "depth": 1,
                                              "batch_size": 32},
                        dataset=load_run(fuzz_runs["mlp"]).config["dataset"])
    wider = train_and_evaluate(other, tmp_path / "wider", progress=False).run_dir
    with copied_run(fuzz_runs, "mlp") as run_dir:
        shutil.copyfile(wider / "model" / "network.weights.h5",
                        run_dir / "model" / "network.weights.h5")
        codes = check_commands(run_dir, fuzz_runs, capsys, "swapped")
        assert codes["evaluate"] == 2 and codes["predict"] == 2


@pytest.mark.parametrize("damage, message", [
    ([], "at least 1"),
    ([{"directory": "..", "model": "random-forest"}], "inside the ensemble"),
    ([{"directory": ".", "model": "random-forest"}], "inside the ensemble"),
    ([{"directory": "/etc", "model": "random-forest"}], "inside the ensemble"),
    ([{"directory": "member-0/../../..", "model": "random-forest"}], "inside the ensemble"),
    ([{"directory": "member-0", "model": "ensemble"}], "cannot hold an ensemble"),
    ([{"directory": "member-9", "model": "random-forest"}], "member-9"),
    ("member-0", "must be a list"),
])
def test_ensemble_members_stay_inside_the_ensemble(fuzz_runs, capsys, damage, message):
    """An ensemble's members are its own subdirectories: not its parent, not itself, not
    an absolute path, not another ensemble."""
    with copied_run(fuzz_runs, "ensemble") as run_dir:
        document_path = run_dir / "model" / "ensemble.json"
        document = json.loads(document_path.read_text())
        document["members"] = damage
        document_path.write_text(json.dumps(document))
        code, _, err = run_cli(["evaluate", run_dir], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        check_commands(run_dir, fuzz_runs, capsys, "ensemble")


def test_ensemble_member_through_a_symbolic_link_is_refused(fuzz_runs, capsys, tmp_path):
    outside = tmp_path / "elsewhere"
    with copied_run(fuzz_runs, "ensemble") as run_dir:
        shutil.move(run_dir / "model" / "member-0", outside)
        (run_dir / "model" / "member-0").symlink_to(outside, target_is_directory=True)
        code, _, err = run_cli(["predict", run_dir, fuzz_runs["image"]], capsys)
        assert code == 2 and "inside the ensemble" in err, err


@pytest.mark.parametrize("record", RECORDS)
@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage", b"[" * 100_000, b"{}" * 3,
                                     b"null", b"\"text\""])
def test_records_that_are_not_json_objects(fuzz_runs, capsys, record, content):
    with copied_run(fuzz_runs, "softmax") as run_dir:
        (run_dir / record).write_bytes(content)
        codes = check_commands(run_dir, fuzz_runs, capsys, "not json")
        if content or record != "history.jsonl":  # an empty history is an empty history
            assert codes["compare"] == 2


@pytest.mark.parametrize("record", ["run.json", "metrics.json", "history.jsonl",
                                    "model/params.json"])
def test_a_named_pipe_in_place_of_a_record_is_not_waited_on(fuzz_runs, capsys, record):
    with copied_run(fuzz_runs, "softmax") as run_dir:
        (run_dir / record).unlink()
        os.mkfifo(run_dir / record)
        codes = check_commands(run_dir, fuzz_runs, capsys, "fifo")
        assert codes["evaluate"] == 2


# ------------------------------------------------------------------------------ a full disk


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def enospc_for(suffix: str):
    """`write_bytes_atomic`, failing with ENOSPC for files whose name ends in `suffix`."""
    from mnistlab import fileio

    write = fileio.write_bytes_atomic

    def write_or_fail(path, data):
        if str(path).endswith(suffix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return write(path, data)

    return write_or_fail


def toy_data(tmp_path: Path) -> Path:
    train_images, train_labels, test_images, test_labels = make_toy_arrays(train=100, test=20)
    return write_dataset(tmp_path / "toy", train_images=train_images,
                         train_labels=train_labels, test_images=test_images,
                         test_labels=test_labels)


TRAIN_ARGUMENTS = {
    "random-forest": ["random-forest", "--trees", "3", "--jobs", "1"],
    "softmax": ["softmax", "--steps", "3", "--batch-size", "16"],
    "mlp": ["mlp", "--steps", "2", "--width", "8", "--depth", "1", "--batch-size", "16"],
}


def assert_nothing_complete_left(out: Path) -> None:
    """No hidden staging directory beside `out`, and no run at `out` that says it is
    complete (a run trained in place may stay, marked as not completed)."""
    assert not [path.name for path in out.parent.iterdir() if path.name.startswith(".")]
    if (out / "run.json").exists():
        assert json.loads((out / "run.json").read_text())["status"] != "completed"


def resource_exhausted(*args, **kwargs):
    import tensorflow as tf

    raise tf.errors.ResourceExhaustedError(
        None, None, "{{function_node __wrapped__SaveV2_dtypes_2_device_/job:localhost/replica:"
                    "0/task:0/device:CPU:0}} /x/model/weights_temp/part-00000-of-00001.data-000"
                    "00-of-00001.tempstate1; No space left on device [Op:SaveV2]")


@pytest.mark.parametrize("model, target, replacement", [
    ("random-forest", "mnistlab.fileio.write_bytes_atomic", enospc_for("model.skops")),
    ("softmax", "tensorflow.train.Checkpoint.write", resource_exhausted),
    ("mlp", "keras.Model.save_weights", enospc),
    ("softmax", "mnistlab.runs.write_text_atomic", enospc),
])
def test_full_disk_injected_in_each_model_writer(tmp_path, capsys, monkeypatch, model, target,
                                                 replacement):
    data = toy_data(tmp_path)
    monkeypatch.setattr(target, replacement)
    out = tmp_path / "runs" / "run"
    code, _, err = run_cli(["train", *TRAIN_ARGUMENTS[model], "--dataset", data, "--out", out,
                            "--quiet"], capsys)
    assert code == 1, err
    assert err.count("\n") == 1 and "No space left on device" in err, err
    assert "Traceback" not in err
    assert_nothing_complete_left(out)


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str):
    """A tmpfs of `size` mounted on `directory` (root only; skip the test otherwise)."""
    directory.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(directory)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path, leave: int) -> None:
    """Fill the filesystem of `directory` until `leave` bytes are free."""
    free = shutil.disk_usage(directory).free
    with open(directory / "filler", "wb") as file:
        with contextlib.suppress(OSError):
            file.write(b"\0" * max(0, free - leave))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["random-forest", "softmax", "mlp"])
@pytest.mark.parametrize("leave", [4_096, 24_576])
def test_full_disk_on_a_real_tmpfs(tmp_path, model, leave):
    """A real filesystem that fills up while the run is written: the model writers fail
    with their own errors (h5py's OSError, TensorFlow's ResourceExhaustedError, ...). The
    command runs as a process of its own: a failed HDF5 write can crash a process when it
    exits, which is part of what is checked."""
    data = toy_data(tmp_path)
    with small_tmpfs(tmp_path / "disk", "512k") as disk:
        fill(disk, leave)
        out = disk / "runs" / "run"
        done = subprocess.run(
            [sys.executable, "-m", "mnistlab", "train", *TRAIN_ARGUMENTS[model], "--dataset",
             str(data), "--out", str(out), "--quiet"],
            capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert "No space left on device" in done.stderr, done.stderr
        assert_nothing_complete_left(out)
