"""`mnistlab runs` and `mnistlab compare`, in-process: layouts, JSON, sorting, filtering,
damaged and unfinished runs, the configuration differences and the comparison figure; and
the output every command shares (TensorFlow's log lines hidden, progress lines)."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mnistlab._quiet import filter_log_output
from mnistlab.cli import main
from mnistlab.cli.runs import distinct_names, select_runs

from conftest import table_rows


def run_cli(arguments):
    """Exit code of the command line, whether it returns or exits (argparse errors)."""
    try:
        return main(arguments)
    except SystemExit as exit_info:
        return exit_info.code


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """Two forests (5 and 7 trees, seeds 0 and 1) and a softmax on a subset, trained by the
    command line on the toy data."""
    from mnistlab.data import write_dataset

    from conftest import make_toy_arrays

    root = tmp_path_factory.mktemp("cli-runs")
    train_images, train_labels, test_images, test_labels = make_toy_arrays()
    data = write_dataset(root / "toy", train_images=train_images, train_labels=train_labels,
                         test_images=test_images, test_labels=test_labels)
    runs = root / "runs"
    common = ["--dataset", str(data), "--quiet"]
    assert main(["train", "random-forest", "--trees", "5", "--out", str(runs / "forest-a"),
                 *common]) == 0
    assert main(["train", "random-forest", "--trees", "7", "--seed", "1",
                 "--out", str(runs / "forest-b"), *common]) == 0
    assert main(["train", "softmax", "--steps", "40", "--log-every", "10",
                 "--limit-train", "300", "--limit-test", "50",
                 "--out", str(runs / "nested" / "softmax-small"), *common]) == 0
    return runs


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_runs_table_names_every_run_with_formatted_numbers(runs_dir, capsys):
    assert main(["runs", str(runs_dir)]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == ["forest-a", "forest-b", "nested/softmax-small"]
    for name in ("forest-a", "forest-b"):
        metrics = metrics_of(runs_dir / name)
        assert rows[name][:4] == ["random-forest", "completed",
                                  f"{metrics['test_accuracy']:.4f}",
                                  f"{metrics['test_loss']:.4f}"]
        assert rows[name][5] == f"{metrics['parameters']:,}"
        assert rows[name][6] == "full"
    assert rows["nested/softmax-small"][1] == "completed"
    assert rows["nested/softmax-small"][6] == "subset 300/50"  # trained on part of the data


def test_runs_in_a_narrow_terminal_are_blocks_with_whole_names(runs_dir, capsys,
                                                               monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    assert main(["runs", str(runs_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 50
    assert "│" not in "".join(lines)
    for name in ("forest-a", "forest-b", "nested/softmax-small"):
        assert name in lines
    accuracy = metrics_of(runs_dir / "forest-a")["test_accuracy"]
    block = lines[lines.index("forest-a"):lines.index("forest-b")]
    assert any(f"test acc {accuracy:.4f}" in line for line in block)
    softmax = lines[lines.index("nested/softmax-small"):]
    assert any("subset 300/50" in line for line in softmax)


def test_runs_json_sort_and_filter(runs_dir, capsys):
    assert main(["runs", str(runs_dir), "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [item["name"] for item in items] == ["forest-a", "forest-b", "nested/softmax-small"]
    first = items[0]
    assert first["model"] == "random-forest" and first["status"] == "completed"
    assert first["test_accuracy"] == metrics_of(runs_dir / "forest-a")["test_accuracy"]
    assert items[2]["subset"] == "subset 300/50" and items[2]["limit_train"] == 300

    assert main(["runs", str(runs_dir), "--json", "--sort", "accuracy"]) == 0
    accuracies = [item["test_accuracy"] for item in json.loads(capsys.readouterr().out)]
    assert accuracies == sorted(accuracies, reverse=True)

    assert main(["runs", str(runs_dir), "--json", "--filter", "SOFTMAX"]) == 0
    assert [item["name"] for item in json.loads(capsys.readouterr().out)] == \
        ["nested/softmax-small"]
    assert main(["runs", str(runs_dir), "--filter", "perceptron"]) == 0
    assert "no runs under" in capsys.readouterr().out


def test_select_runs_puts_missing_values_last():
    items = [{"name": "a", "test_accuracy": None}, {"name": "b", "test_accuracy": 0.5},
             {"name": "c", "test_accuracy": 0.9}]
    assert [item["name"] for item in select_runs(items, "accuracy")] == ["c", "b", "a"]
    assert [item["name"] for item in select_runs(items, "name", "B")] == ["b"]


def test_no_runs_yet_is_not_an_error(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "missing")]) == 0
    assert f"no runs yet under {tmp_path / 'missing'}" in capsys.readouterr().out
    assert main(["runs", str(tmp_path)]) == 0
    assert "no runs yet under" in capsys.readouterr().out
    assert main(["runs", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    (tmp_path / "file").write_text("x")
    assert run_cli(["runs", str(tmp_path / "file")]) == 2
    error = capsys.readouterr().err
    assert "not a directory" in error and len(error.strip().splitlines()) == 1


def test_damaged_and_unfinished_runs_are_listed_as_such(runs_dir, tmp_path, capsys):
    root = tmp_path / "runs"
    for name in ("damaged", "interrupted", "failed", "good"):
        shutil.copytree(runs_dir / "nested" / "softmax-small", root / name)
    (root / "damaged" / "config.json").write_text("{ not json")
    info = json.loads((root / "good" / "run.json").read_text())
    (root / "interrupted" / "run.json").write_text(json.dumps(
        {**info, "status": "interrupted", "step": 20}))
    (root / "failed" / "run.json").write_text(json.dumps({**info, "status": "failed"}))
    last_step = json.loads((root / "failed" / "history.jsonl").read_text()
                           .splitlines()[-1])["step"]

    assert main(["runs", str(root)]) == 0
    output = capsys.readouterr().out
    rows = table_rows(output)
    assert list(rows) == ["damaged", "failed", "good", "interrupted"]  # the listing goes on
    assert rows["damaged"][1] == "damaged"
    assert f"damaged: {root / 'damaged' / 'config.json'} cannot be read" in output
    assert rows["interrupted"][1] == "interrupted at step 20"
    assert rows["failed"][1] == f"failed at step {last_step}"
    assert rows["good"][1] == "completed"
    assert "1 damaged run" in output

    assert main(["runs", str(root), "--json", "--filter", "damaged"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["status"] == "damaged" and "cannot be read" in item["problem"]


def test_compare_shows_differing_settings_then_metrics(runs_dir, capsys):
    a, b = runs_dir / "forest-a", runs_dir / "forest-b"
    assert main(["compare", str(a), str(b)]) == 0
    output = capsys.readouterr().out
    rows = table_rows(output)
    assert rows["model"] == ["random-forest", "random-forest"]
    assert rows["seed"] == ["0", "1"]
    assert rows["trees"] == ["5", "7"]  # a model option, named by its flag
    assert "dataset" not in rows  # the same in both: said once, below
    for key, label in (("test_accuracy", "test accuracy"), ("test_loss", "test loss")):
        assert rows[label] == [f"{metrics_of(run)[key]:.4f}" for run in (a, b)]
    assert rows["parameters"] == [f"{metrics_of(run)['parameters']:,}" for run in (a, b)]
    assert rows["examples/s"] == [f"{metrics_of(run)['train_examples_per_second']:,.0f}"
                                  for run in (a, b)]
    same = " ".join(output[output.index("same in all:"):].split())
    assert "seed" not in same and "max-depth none" not in same
    assert "dataset" in same and "jobs" in same


def test_compare_json_and_plot(runs_dir, tmp_path, capsys):
    figure = tmp_path / "compare.png"
    assert main(["compare", str(runs_dir / "forest-a"), str(runs_dir / "nested/softmax-small"),
                 "--json", "--plot", str(figure)]) == 0
    comparison = json.loads(capsys.readouterr().out)
    assert [run["name"] for run in comparison["runs"]] == ["forest-a", "softmax-small"]
    assert comparison["differences"]["model"] == ["random-forest", "softmax"]
    assert comparison["differences"]["limit_train"] == [None, 300]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_cli(["compare", str(runs_dir / "forest-a"), "--plot",
                    str(tmp_path / "compare.svg")]) == 2
    assert ".png" in capsys.readouterr().err


def test_distinct_names_add_parents_only_when_needed(tmp_path):
    assert distinct_names([tmp_path / "a" / "v1", tmp_path / "b" / "v3"]) == ["v1", "v3"]
    assert distinct_names([tmp_path / "a" / "v1", tmp_path / "b" / "v1"]) == ["a/v1", "b/v1"]


@pytest.mark.parametrize("arguments, message", [
    (["compare", "/nonexistent/run"], "not a directory"),
    (["runs", "--sort", "colour"], "invalid choice"),
])
def test_bad_input_is_one_line_and_non_zero(arguments, message, capsys):
    assert run_cli(arguments) != 0
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert len(error.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["runs", "compare"])
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "example" in capsys.readouterr().out


# ------------------------------------------------------------------------------ quiet output
# What every command shares: TensorFlow's log lines hidden unless --verbose, progress lines
# that fit, "compiling" before the first step.

NOISE = re.compile(r"absl::|oneDNN|XLA service|Compiled cluster|cpu_feature_guard|"
                   r"This TensorFlow binary|StreamExecutor|^[IWE]\d{4} ", re.MULTILINE)


def test_filter_log_output_keeps_what_is_not_noise():
    captured = (b"WARNING: All log messages before absl::InitializeLog() is called are written "
                b"to STDERR\n"
                b"I0000 00:00:1796285688.312363   25404 port.cc:153] oneDNN custom operations\n"
                b"W0000 00:00:1796285688.312363   25404 x.cc:1] a warning\n"
                b"E0000 00:00:1796285688.312363   25404 x.cc:2] an error\n"
                b"To enable the following instructions: AVX2, in other operations\n"
                b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
                b"a line of the program's own\n")
    assert filter_log_output(captured, 3) == b"a line of the program's own\n"
    assert filter_log_output(captured, 2).splitlines()[0].startswith(b"E0000")
    assert filter_log_output(captured, 0) == captured


@pytest.mark.slow  # a fresh Python that imports TensorFlow, twice: about 15 s
def test_commands_print_no_tensorflow_noise_unless_verbose(runs_dir, tmp_path):
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("TF_CPP_MIN_LOG_LEVEL", "COLUMNS")}
    command = [sys.executable, "-m", "mnistlab", "evaluate", str(runs_dir / "nested" /
                                                                 "softmax-small")]
    quiet = subprocess.run(command, capture_output=True, text=True, env=environment,
                           timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert not NOISE.search(quiet.stdout + quiet.stderr), quiet.stderr
    assert "same as at training time" in quiet.stdout
    verbose = subprocess.run([*command, "--verbose"], capture_output=True, text=True,
                             env=environment, timeout=300)
    assert verbose.returncode == 0
    assert NOISE.search(verbose.stderr)  # TensorFlow 2.16+ on Linux says these at import


def test_progress_says_compiling_then_fits_the_width():
    from rich.console import Console

    from mnistlab.progress import training_progress

    output = io.StringIO()
    with training_progress("tutorial-v2-as-written", console=Console(file=output, width=80)):
        pass  # no step has run: the compile phase
    assert "compiling" in output.getvalue() and "0/?" not in output.getvalue()

    output = io.StringIO()
    record = {"train_loss": 0.31234, "train_accuracy": 0.91, "val_loss": 0.4, "val_accuracy": 0.9}
    with training_progress("tutorial-v2-as-written",
                           console=Console(file=output, width=80)) as update:
        update(1200, 18750, record)
    lines = output.getvalue().splitlines()
    assert "1,200/18,750" in lines[-1] and "loss 0.3123" in lines[-1]
    assert max(len(line) for line in lines) <= 80
