"""Every `mnistlab ...` command shown in README.md's console blocks and in the `--help`
examples runs as shown, in order, in a fresh directory.

Two sequences, each in its own empty directory: the README's console blocks top to bottom,
and the `--help` examples in the order `mnistlab --help` lists the commands (the top-level
examples first, each command group before its commands). Commands run in-process through
`mnistlab.cli.main`, with `MNISTLAB_DATA_DIR` at the real MNIST. Lines that are not
`mnistlab` commands (`make`, `curl`, `.venv/bin/python benchmarks/...`) are left out; a
shell `for` loop around a command is expanded.

What is changed so that the sequences take minutes, not hours, is listed in SUBSTITUTIONS
and done by `adapt`; commands that cannot run here are in SKIPPED with the reason; documented
commands known to fail when followed in order are in KNOWN_FAILURES (strict xfail, so that
fixing the documentation makes the test say so).
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mnistlab.cli import build_parser, main
from mnistlab.config import PRESETS

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "digits"

TRAINING_LIMITS = ["--limit-train", "2000", "--limit-test", "500"]
NEURAL_STEPS = ["--steps", "50"]
NEURAL_MODELS = ("mlp", "cnn")
NEURAL_PRESETS = tuple(name for name, preset in PRESETS.items()
                       if preset.model in NEURAL_MODELS)

SUBSTITUTIONS = (
    "train and reproduce: --limit-train 2000 --limit-test 500 appended, unless the command "
    "sets a limit itself (not to train --resume, which keeps the run's own settings)",
    "train a neural model (mlp, cnn, and their presets): --steps 50 appended",
    "reproduce --beyond: the neural presets shortened to 50 steps (PRESETS patched)",
    "reproduce --seeds 5: --seeds 2",
    "~/datasets: the folder holding the real MNIST (shared/datasets)",
    "the files a user brings (my_digit.png/.jpg, seven.png/.jpg, photos/, my_digits/0..9/, "
    "labels.csv): made from tests/fixtures/digits before the sequence starts",
)

# Pattern (searched in the command as documented) -> why it does not run here.
SKIPPED = {
    r"^mnistlab serve\b": "serves until Ctrl-C (the server is tested in test_serve and "
                          "test_browser)",
    r"\bfashion-mnist\b": "needs the network: only MNIST is on this machine",
    r"^mnistlab COMMAND\b": "a pattern for every command, not a command",
    r"--devices\b": "splits the CPU into logical devices, which only a fresh process can do "
                     "(tested in a subprocess in test_distribute)",
    r"--local-workers\b": "starts worker processes (tested in test_distribute)",
    r"^mnistlab sweep\b": "starts a Ray instance (tested in test_sweep)",
    r"--parallel\b": "starts a Ray instance (tested in test_sweep)",
}

# (sequence, command as documented, without its comment) -> why it fails when the
# documentation is followed in order; it applies to the command's first appearance in the
# sequence. Reported for the documentation's owners to fix; strict, so that a fix shows up.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

FOR_LOOP = re.compile(r"^for (\w+) in ([^;]+); do (.+?); done$")


def expand(line: str) -> list[tuple[str, str]]:
    """(documented line, command to run): a `for` loop becomes one command per value."""
    loop = FOR_LOOP.match(line)
    if loop is None:
        return [(line, line)] if line.startswith("mnistlab ") else []
    variable, values, body = loop.groups()
    return [(line, re.sub(rf"\${variable}\b|\${{{variable}}}", value, body))
            for value in values.split()]


def readme_commands() -> list[tuple[str, str]]:
    """The README's console lines, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line.strip() for block in re.findall(r"^```console\n(.*?)^```", text,
                                                  flags=re.DOTALL | re.MULTILINE)
             for line in block.splitlines()]
    return [pair for line in lines for pair in expand(line)]


def help_commands() -> list[tuple[str, str]]:
    """The examples of every `--help`, in the order `mnistlab --help` lists the commands."""
    found: list[tuple[str, str]] = []

    def walk(parser: argparse.ArgumentParser) -> None:
        for line in (parser.epilog or "").splitlines():
            found.extend(expand(line.strip()))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for subparser in dict.fromkeys(action.choices.values()):
                    walk(subparser)

    walk(build_parser())
    return found


def adapt(command: str, data_root: Path) -> list[str]:
    """The arguments to run for a documented command (after `mnistlab`), with SUBSTITUTIONS."""
    command = command.replace("~/datasets", str(data_root))
    argv = shlex.split(command, comments=True)[1:]
    name = argv[0] if argv else ""
    if name == "reproduce" and "--seeds" in argv:
        index = argv.index("--seeds") + 1
        argv[index] = str(min(int(argv[index]), 2))
    if name in ("train", "reproduce") and not (name == "train" and "--resume" in argv):
        if not any(arg.startswith("--limit-") for arg in argv):
            argv += TRAINING_LIMITS
    if name == "train" and "--resume" not in argv:
        preset = argv[argv.index("--preset") + 1] if "--preset" in argv else None
        if preset in NEURAL_PRESETS or (len(argv) > 1 and argv[1] in NEURAL_MODELS):
            argv += NEURAL_STEPS
    return argv


def bring_user_files(workspace: Path) -> None:
    """The images a user would have: single digits, a folder of photos with a labels CSV,
    and labelled folders 0..9 (the fixtures' names start with their digit)."""
    digits = sorted(FIXTURES.glob("[0-9]_*"))
    seven = next(path for path in digits if path.name.startswith("7_hand"))
    for name in ("my_digit.png", "seven.png", "digit.png"):
        shutil.copy(seven, workspace / name)
    for name in ("my_digit.jpg", "seven.jpg"):
        Image.open(seven).convert("RGB").save(workspace / name)
    (workspace / "photos").mkdir()
    rows = ["file,label"]
    for digit in range(10):
        path = next(path for path in digits if path.name.startswith(f"{digit}_hand"))
        shutil.copy(path, workspace / "photos" / path.name)
        rows.append(f"photos/{path.name},{digit}")
    (workspace / "labels.csv").write_text("\n".join(rows) + "\n")
    for path in digits:
        folder = workspace / "my_digits" / path.name[0]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)


def bare(line: str) -> str:
    """A documented line without its comment and extra spaces: how KNOWN_FAILURES names it."""
    return " ".join(re.sub(r"\s#.*$", "", line).split())


def cases(sequence: str, pairs: list[tuple[str, str]]) -> list:
    params = []
    seen: set[str] = set()
    for index, (documented, command) in enumerate(pairs):
        documented = bare(documented)
        first = documented not in seen
        seen.add(documented)
        marks = []
        for pattern, reason in SKIPPED.items():
            if re.search(pattern, documented):
                marks.append(pytest.mark.skip(reason=reason))
        if first and (sequence, documented) in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(reason=KNOWN_FAILURES[(sequence, documented)],
                                           strict=True))
        params.append(pytest.param(sequence, documented, command, marks=marks,
                                   id=f"{sequence}-{index:02d}: {bare(command)}"))
    return params


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory) -> dict[str, Path]:
    """One fresh directory per sequence, with the user's files in it."""
    made = {}
    for sequence in ("readme", "help"):
        made[sequence] = tmp_path_factory.mktemp(f"docs-{sequence}")
        bring_user_files(made[sequence])
    return made


@pytest.fixture
def quick_neural_presets(monkeypatch):
    """The neural presets at 50 steps, for `reproduce --beyond` (which has no --steps)."""
    for name in NEURAL_PRESETS:
        preset = PRESETS[name]
        options = {**preset.options, "num_steps": 50, "num_epochs": None}
        monkeypatch.setitem(PRESETS, name, type(preset)(preset.model, preset.description,
                                                        options, preset.published_accuracy))


@pytest.mark.parametrize(("sequence", "documented", "command"),
                         cases("readme", readme_commands()) + cases("help", help_commands()))
def test_documented_command_runs(sequence, documented, command, workspaces, mnist_dir,
                                 monkeypatch, capsys, quick_neural_presets):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(mnist_dir))
    monkeypatch.chdir(workspaces[sequence])
    argv = adapt(command, mnist_dir.parent)
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    output = capsys.readouterr()
    assert code == 0, (f"`{documented}` (run as `mnistlab {shlex.join(argv)}`) exited "
                       f"{code}:\n{output.out[-2000:]}\n{output.err[-2000:]}")


def test_the_sequences_were_found():
    """A change in how the documentation is written must not silently empty the test."""
    readme = [command for _, command in readme_commands()]
    help_examples = [command for _, command in help_commands()]
    assert len(readme) >= 20 and len(help_examples) >= 20
    assert any(command.startswith("mnistlab reproduce") for command in readme)
    assert any(command.startswith("mnistlab predict") for command in help_examples)
