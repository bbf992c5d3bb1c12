"""The training commands, in-process: exit codes, output, files, errors, help."""

import json

import pytest

from mnistlab.cli import main


def forest_args(data_dir, out, *extra):
    return ["train", "random-forest", "--trees", "5", "--dataset", str(data_dir),
            "--out", str(out), "--quiet", *extra]


def test_train_forest_then_evaluate_runs_compare(toy_dataset_dir, tmp_path, capsys):
    assert main(forest_args(toy_dataset_dir, tmp_path / "runs" / "a")) == 0
    output = capsys.readouterr().out
    assert "test accuracy" in output and str(tmp_path / "runs" / "a") in output
    assert main(forest_args(toy_dataset_dir, tmp_path / "runs" / "b", "--seed", "1")) == 0
    capsys.readouterr()

    assert main(["evaluate", str(tmp_path / "runs" / "a")]) == 0
    output = capsys.readouterr().out
    recorded = json.loads((tmp_path / "runs" / "a" / "metrics.json").read_text())
    assert f"{recorded['test_accuracy']:.4f}" in output
    assert "same as at training time" in output

    assert main(["runs", str(tmp_path / "runs")]) == 0
    output = capsys.readouterr().out
    assert "a" in output and "b" in output and "completed" in output

    assert main(["compare", str(tmp_path / "runs" / "a"), str(tmp_path / "runs" / "b")]) == 0
    output = capsys.readouterr().out
    assert "test_accuracy" in output and "train_seconds" in output


def run_cli(arguments):
    """Exit code of the command line, whether it returns or exits (argparse errors)."""
    try:
        return main(arguments)
    except SystemExit as exit_info:
        return exit_info.code


@pytest.mark.parametrize("arguments, message", [
    (["train", "perceptron"], "unknown model"),
    (["train", "softmax", "--preset", "nope"], "unknown preset"),
    (["train", "softmax", "--batch-size", "0"], "batch_size"),
    (["train", "softmax", "--batch-size", "-4"], "batch_size"),
    (["train", "softmax", "--learning-rate", "-0.1"], "learning_rate"),
    (["train", "softmax", "--learning-rate", "abc"], "invalid float"),
    (["train", "softmax", "--steps", "10", "--epochs", "2"], "exactly one"),
    (["train", "softmax", "--trees", "10"], "does not apply"),
    (["train", "random-forest", "--epochs", "1"], "does not apply"),
    (["train", "softmax", "--validation-split", "1.5"], "validation_split"),
    (["evaluate", "/nonexistent/run"], "not a directory"),
    (["compare", "/nonexistent/run"], "not a directory"),
    (["runs", "/nonexistent/dir"], "not a directory"),
])
def test_bad_input_is_one_line_and_non_zero(arguments, message, capsys):
    assert run_cli(arguments) != 0
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error
    assert len(error.strip().splitlines()) == 1


def test_existing_run_is_refused_and_kept(toy_dataset_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(forest_args(toy_dataset_dir, out)) == 0
    before = (out / "metrics.json").read_text()
    assert main(forest_args(toy_dataset_dir, out, "--seed", "3")) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == before
    assert main(forest_args(toy_dataset_dir, out, "--seed", "3", "--overwrite")) == 0


def test_directory_that_is_not_a_run_is_an_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hi")
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["train", "random-forest", "--out", str(tmp_path), "--overwrite",
                 "--quiet"]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "hi"


@pytest.mark.parametrize("command", ["train", "evaluate", "runs", "compare", "reproduce"])
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "example" in capsys.readouterr().out


def test_reproduce_on_a_tiny_subset_writes_every_promised_file(toy_dataset_dir, tmp_path,
                                                               capsys):
    out = tmp_path / "repro"
    code = main(["reproduce", "--dataset", str(toy_dataset_dir), "--out", str(out),
                 "--limit-train", "300", "--limit-test", "100", "--quiet"])
    assert code == 0
    assert "report.html" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    names = [item["name"] for item in summary["models"]]
    assert names == ["tutorial-rf", "tutorial-v1", "tutorial-v2", "tutorial-v3"]
    for item in summary["models"]:
        run = out / item["run_dir"]
        assert 0.0 <= item["test_accuracy"] <= 1.0
        assert json.loads((run / "metrics.json").read_text())["test_examples"] == 100
        assert (run / "predictions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (run / "confusion_matrix.png").exists() and (run / "misclassified.png").exists()
        if item["model"] == "softmax":
            assert (run / "curves.png").exists() and (run / "weights.png").exists()
            history = (run / "history.csv").read_text().splitlines()
            assert history[0].startswith("step,epoch,train_loss,train_accuracy")
            assert len(history) > 1
    assert "<img" in (out / "report.html").read_text()
    assert "| tutorial-v1 |" in (out / "report.md").read_text()


def test_unwritable_output_is_one_line(toy_dataset_dir, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    code = main(forest_args(toy_dataset_dir, tmp_path / "a_file" / "run"))
    error = capsys.readouterr().err
    assert code == 1 and "a_file" in error and "Traceback" not in error
    assert len(error.strip().splitlines()) == 1
