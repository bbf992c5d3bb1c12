"""The training commands, in-process: exit codes, output, files, errors, help."""

import json
import re

import pytest

from mnistlab.cli import main

from conftest import table_rows


def forest_args(data_dir, out, *extra):
    return ["train", "random-forest", "--trees", "5", "--dataset", str(data_dir),
            "--out", str(out), "--quiet", *extra]


def test_train_forest_then_evaluate(toy_dataset_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(forest_args(toy_dataset_dir, runs / "a")) == 0
    output = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    recorded = {"a": json.loads((runs / "a" / "metrics.json").read_text())}
    assert (f"random-forest: test accuracy {recorded['a']['test_accuracy']:.4f}, "
            f"test loss {recorded['a']['test_loss']:.4f}, trained in") in output
    assert f"run directory: {runs / 'a'}" in output

    assert main(["evaluate", str(runs / "a")]) == 0
    output = capsys.readouterr().out
    rows = table_rows(output)
    accuracy = f"{recorded['a']['test_accuracy']:.4f}"
    assert rows["test_accuracy"] == [accuracy, accuracy]
    assert rows["test_examples"] == [str(recorded["a"]["test_examples"])] * 2
    assert "same as at training time" in output


def run_cli(arguments):
    """Exit code of the command line, whether it returns or exits (argparse errors)."""
    try:
        return main(arguments)
    except SystemExit as exit_info:
        return exit_info.code


@pytest.mark.parametrize("arguments, message", [
    (["train", "perceptron"], "unknown model"),
    (["train", "softmax", "--preset", "nope"], "unknown preset"),
    # Bad model options are named by the flag the user typed, not the library's option.
    (["train", "softmax", "--batch-size", "0"],
     "error: --batch-size must be a whole number from 1 to 65,536, got 0"),
    (["train", "softmax", "--batch-size", "-4"], "error: --batch-size must be"),
    (["train", "softmax", "--learning-rate", "-0.1"],
     "error: --learning-rate must be a number in (0, 100], got -0.1"),
    (["train", "softmax", "--learning-rate", "abc"], "could not convert string to float: 'abc'"),
    (["train", "softmax", "--epochs", "0"], "error: --epochs must be a whole number"),
    (["train", "softmax", "--shuffle-buffer", "lots"], "expected a whole number or 'full'"),
    (["train", "softmax", "--optimizer", "nesterov"], "error: --optimizer must be one of"),
    (["train", "random-forest", "--trees", "0"], "error: --trees must be a whole number"),
    (["train", "random-forest", "--jobs", "0"], "error: --jobs must be a positive number"),
    (["train", "softmax", "--steps", "10", "--epochs", "2"], "exactly one"),
    (["train", "softmax", "--trees", "10"], "does not apply"),
    (["train", "random-forest", "--epochs", "1"], "does not apply"),
    (["train", "softmax", "--validation-split", "1.5"], "validation_split"),
    # An augmentation setting without augmentation would do nothing.
    (["train", "cnn", "--preset", "cnn-fast", "--elastic", "17"],
     "error: --elastic has no effect without augmentation (--augment)"),
    (["train", "mlp", "--max-shift", "3"], "error: --max-shift has no effect without"),
    (["train", "--preset", "cnn-elastic", "--elastic", "20", "--no-augment"],
     "error: --elastic has no effect without"),
    (["evaluate", "/nonexistent/run"], "not a directory"),
])
def test_bad_input_is_one_line_and_non_zero(arguments, message, capsys):
    assert run_cli(arguments) != 0
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error
    assert len(error.strip().splitlines()) == 1


@pytest.mark.parametrize("model, flags", [("mlp", ["--width", "16384", "--depth", "64"]),
                                          ("cnn", ["--width", "1024", "--depth", "1"])])
def test_a_network_too_big_for_memory_is_refused_before_it_is_built(model, flags,
                                                                    toy_dataset_dir, tmp_path,
                                                                    capsys):
    """17 billion parameters, or 2.4 million activations per image: one line, before Keras
    allocates anything; the run says why it failed."""
    out = tmp_path / "run"
    code = run_cli(["train", model, *flags, "--dataset", str(toy_dataset_dir), "--out",
                    str(out), "--steps", "1", "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and len(error.strip().splitlines()) == 1
    assert re.search(r"would need about [\d,.]+ GiB of memory to train, more than this "
                     r"machine's", error)
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


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


@pytest.mark.parametrize("command", ["train", "evaluate", "reproduce"])
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "example" in capsys.readouterr().out


def test_train_has_a_flag_for_every_model_option(capsys):
    """The flags derive from the models' option tables: each option is one flag, with its
    range and default in the help."""
    from mnistlab.config import TRAINABLE_MODELS
    from mnistlab.models import get_model_class

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for model in TRAINABLE_MODELS:
        for name, option in get_model_class(model).options.items():
            if option.cli:
                assert f"{option.flag_name(name)} " in help_text, (model, name)
    assert "--trees N number of trees (1-10,000; default 50)" in help_text
    assert "--batch-size N examples per training step (1-65,536; default softmax: 32; " \
           "mlp, cnn: 128)" in help_text


@pytest.mark.slow  # seven trainings and their figures: about 10 s
def test_reproduce_on_a_tiny_subset_writes_every_promised_file(toy_dataset_dir, tmp_path,
                                                               capsys):
    out = tmp_path / "repro"
    code = main(["reproduce", "--dataset", str(toy_dataset_dir), "--out", str(out),
                 "--limit-train", "300", "--limit-test", "100", "--quiet"])
    assert code == 0
    output = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in " ".join(output.split())
    summary = json.loads((out / "summary.json").read_text())
    assert set(table_rows(output)) >= {"tutorial-rf", "tutorial-v1", "tutorial-v2", "tutorial-v3"}
    names = [item["name"] for item in summary["models"]]
    assert names == ["tutorial-rf", "tutorial-v1", "tutorial-v1-as-written", "tutorial-v2",
                     "tutorial-v2-as-written", "tutorial-v3", "tutorial-v3-as-written"]
    for item in summary["models"]:
        run = out / item["run_dir"]
        metrics = json.loads((run / "metrics.json").read_text())
        assert item["test_accuracy"] == metrics["test_accuracy"]
        # The toy classes are separable; v3 makes only 10 steps here (one batch of 300 an
        # epoch), from the tutorial's random-normal init, so its floor is well above chance.
        assert item["test_accuracy"] >= (0.3 if item["name"].startswith("tutorial-v3")
                                         else 0.9)
        assert metrics["test_examples"] == 100
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


@pytest.mark.parametrize("arguments, suggestion", [
    (["trian"], "did you mean train?"),
    (["export", "runs/x", "--format", "onx", "--out", "y"], "did you mean onnx?"),
])
def test_a_misspelt_choice_gets_a_suggestion(arguments, suggestion, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].endswith(suggestion)


@pytest.mark.slow  # a training and an evaluation in-process: seconds
def test_a_hand_edited_image_shape_is_one_line_naming_the_field(toy_dataset_dir, tmp_path,
                                                                capsys):
    """A model whose params.json claims another image shape with as many pixels (14x56
    for 28x28) is refused by `evaluate` in one line, not scored on scrambled pixels."""
    out = tmp_path / "run"
    assert main(["train", "softmax", "--dataset", str(toy_dataset_dir), "--epochs", "1",
                 "--out", str(out), "--quiet"]) == 0
    params = out / "model" / "params.json"
    document = json.loads(params.read_text())
    document["fitted"]["image_shape_"] = [14, 56]
    params.write_text(json.dumps(document))
    capsys.readouterr()
    assert run_cli(["evaluate", str(out)]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error
    assert "fitted on images of shape (14, 56) (fitted.image_shape_ in its params.json), " \
           "but the run's test images have shape (28, 28)" in error
