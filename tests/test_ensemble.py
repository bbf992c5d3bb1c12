"""Tests of the ensemble: its arithmetic, its run directory, and `mnistlab ensemble`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mnistlab.cli import main
from mnistlab.config import make_config
from mnistlab.errors import RunError
from mnistlab.experiment import evaluate_run, train_and_evaluate
from mnistlab.models import get_model_class
from mnistlab.models.ensemble import EnsembleModel, check_member_runs
from mnistlab.runs import load_model


class FixedModel:
    """A stand-in member that returns fixed probabilities."""

    def __init__(self, probabilities):
        self.probabilities = np.asarray(probabilities, np.float32)
        self.classes_ = np.arange(self.probabilities.shape[1])

    def predict_proba(self, X):
        return self.probabilities

    def count_parameters(self):
        return 7


def test_average_of_probabilities_by_hand():
    first = [[0.5, 0.5, 0.0], [0.2, 0.2, 0.6]]
    second = [[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]]
    third = [[0.0, 0.0, 1.0], [0.2, 0.1, 0.7]]
    ensemble = EnsembleModel()
    ensemble._set_models([FixedModel(first), FixedModel(second), FixedModel(third)],
                         ["FixedModel"] * 3)
    # Row 1: (0.5 + 0.1 + 0) / 3 = 0.2, (0.5 + 0.9 + 0) / 3 = 0.4667, (0 + 0 + 1) / 3 = 0.3333.
    # Row 2: (0.2 + 0.8 + 0.2) / 3 = 0.4, (0.2 + 0.1 + 0.1) / 3 = 0.1333, (0.6 + 0.1 + 0.7) / 3
    # = 0.4667.
    expected = [[0.2, 1.4 / 3, 1 / 3], [0.4, 0.4 / 3, 1.4 / 3]]
    np.testing.assert_allclose(ensemble.predict_proba(None), expected, rtol=1e-6)
    np.testing.assert_array_equal(ensemble.predict(None), [1, 2])
    assert ensemble.score(None, [1, 0]) == 0.5
    assert ensemble.count_parameters() == 21


def test_members_with_other_classes_cannot_be_averaged():
    with pytest.raises(RunError, match="different classes"):
        EnsembleModel()._set_models([FixedModel(np.eye(3)), FixedModel(np.eye(4))], ["a", "b"])


@pytest.fixture(scope="module")
def member_runs(tmp_path_factory):
    """Two tiny MLP runs and a softmax run on the toy digits, with different seeds."""
    from conftest import make_toy_arrays

    from mnistlab.data import load_dataset, write_dataset

    root = tmp_path_factory.mktemp("members")
    train_images, train_labels, test_images, test_labels = make_toy_arrays()
    data_dir = write_dataset(root / "toy", train_images=train_images, train_labels=train_labels,
                             test_images=test_images, test_labels=test_labels)
    dataset = load_dataset(data_dir, progress=False)
    runs = []
    for seed in (0, 1):
        config = make_config("mlp", model_options={"width": 16, "num_steps": 15},
                             dataset=str(data_dir), seed=seed)
        runs.append(train_and_evaluate(config, root / f"mlp-{seed}", dataset=dataset,
                                       progress=False).run_dir)
    config = make_config("softmax", model_options={"num_epochs": 2}, dataset=str(data_dir))
    runs.append(train_and_evaluate(config, root / "softmax", dataset=dataset,
                                   progress=False).run_dir)
    return runs, data_dir, dataset


def test_ensemble_command_writes_a_self_contained_run(member_runs, tmp_path, capsys):
    runs, _, dataset = member_runs
    members = [tmp_path / run.name for run in runs]
    for run, copy in zip(runs, members):
        shutil.copytree(run, copy)
    out = tmp_path / "ensemble"
    assert main(["ensemble", *map(str, members), "--out", str(out), "--quiet"]) == 0
    output = capsys.readouterr().out
    assert "ensemble of 3" in output and str(out) in output

    info = json.loads((out / "run.json").read_text())
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert info["model"] == "ensemble" and info["status"] == "completed"
    assert config["model_config"]["members"] == [str(path.resolve()) for path in members]
    assert (out / "confusion_matrix.png").is_file()
    assert sorted(path.name for path in (out / "model").iterdir()) == [
        "ensemble.json", "member-0", "member-1", "member-2"]

    # The recorded accuracy is that of the members' averaged probabilities.
    average = np.mean([load_model(path).predict_proba(dataset.test_images)
                       for path in members], axis=0)
    expected = np.mean(np.argmax(average, axis=1) == dataset.test_labels)
    assert metrics["test_accuracy"] == pytest.approx(expected)

    # It survives its members being deleted: evaluate and predict use its own copies.
    for path in members:
        shutil.rmtree(path)
    evaluation = evaluate_run(out)
    assert evaluation.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    loaded = get_model_class("ensemble").load(out / "model")
    np.testing.assert_allclose(loaded.predict_proba(dataset.test_images), average, atol=1e-6)
    assert main(["evaluate", str(out)]) == 0
    assert "same as at training time" in capsys.readouterr().out


def test_ensemble_of_neural_runs_exports(member_runs, tmp_path, capsys):
    runs, _, _ = member_runs
    out = tmp_path / "ensemble"
    assert main(["ensemble", str(runs[0]), str(runs[1]), "--out", str(out), "--quiet"]) == 0
    code = main(["export", str(out), "--format", "savedmodel", "--out",
                 str(tmp_path / "exported"), "--check"])
    assert code == 0
    assert "PASSED" in capsys.readouterr().out


def test_ensemble_with_a_forest_member_refuses_export(shapes_run):
    ensemble = EnsembleModel()
    ensemble._set_models([load_model(shapes_run)], ["RandomForest"])
    with pytest.raises(Exception, match="cannot export this ensemble"):
        ensemble.serving_module()


def run_cli(arguments):
    """Exit code of the command line, whether it returns or exits (argparse errors)."""
    try:
        return main(arguments)
    except SystemExit as exit:
        return exit.code


def test_ensemble_errors_are_one_line(member_runs, tmp_path, capsys):
    runs, _, _ = member_runs
    assert run_cli(["ensemble", "--out", str(tmp_path / "e")]) == 2
    assert "RUN_DIR" in capsys.readouterr().err

    assert run_cli(["ensemble", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    error = capsys.readouterr().err
    assert "is not a run directory" in error and len(error.strip().splitlines()) == 1

    other = tmp_path / "other-classes"
    shutil.copytree(runs[0], other)
    config = json.loads((other / "config.json").read_text())
    config["data"]["class_names"] = [f"c{k}" for k in range(10)]
    (other / "config.json").write_text(json.dumps(config))
    assert run_cli(["ensemble", str(runs[0]), str(other), "--out", str(tmp_path / "e")]) == 2
    error = capsys.readouterr().err
    assert "cannot ensemble them" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()


def test_check_member_runs_reports_the_shared_dataset(member_runs):
    runs, data_dir, _ = member_runs
    shared = check_member_runs(runs)
    assert shared["dataset"] == str(data_dir)
    assert shared["models"] == ["mlp", "mlp", "softmax"]
    with pytest.raises(RunError, match="at least one"):
        check_member_runs([])


def test_ensemble_help_has_an_example(capsys):
    assert run_cli(["ensemble", "--help"]) == 0
    assert "example:" in capsys.readouterr().out
