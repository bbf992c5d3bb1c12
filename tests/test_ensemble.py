"""Tests of the ensemble: its arithmetic, its run directory, and `mnistlab ensemble`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mnistlab.cli import main
from mnistlab.config import make_config
from mnistlab.errors import ConfigError, RunError
from mnistlab.experiment import check_member_runs, evaluate_run, train_and_evaluate
from mnistlab.models import get_model_class
from mnistlab.models.ensemble import EnsembleModel
from mnistlab.models.forest import RandomForest
from mnistlab.runs import load_model


class FixedModel:
    """A stand-in fitted member that returns fixed probabilities."""

    def __init__(self, probabilities, image_shape=(28, 28)):
        self.probabilities = np.asarray(probabilities, np.float32)
        self.classes_ = np.arange(self.probabilities.shape[1])
        self.image_shape_ = image_shape
        self.n_features_in_ = int(np.prod(image_shape))

    def predict_proba(self, X):
        return self.probabilities

    def count_parameters(self):
        return 7


def test_average_of_probabilities_by_hand():
    first = [[0.5, 0.5, 0.0], [0.2, 0.2, 0.6]]
    second = [[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]]
    third = [[0.0, 0.0, 1.0], [0.2, 0.1, 0.7]]
    ensemble = EnsembleModel(models=[FixedModel(first), FixedModel(second), FixedModel(third)],
                             prefit=True).fit()
    # Row 1: (0.5 + 0.1 + 0) / 3 = 0.2, (0.5 + 0.9 + 0) / 3 = 0.4667, (0 + 0 + 1) / 3 = 0.3333.
    # Row 2: (0.2 + 0.8 + 0.2) / 3 = 0.4, (0.2 + 0.1 + 0.1) / 3 = 0.1333, (0.6 + 0.1 + 0.7) / 3
    # = 0.4667.
    expected = [[0.2, 1.4 / 3, 1 / 3], [0.4, 0.4 / 3, 1.4 / 3]]
    np.testing.assert_allclose(ensemble.predict_proba(None), expected, rtol=1e-6)
    np.testing.assert_array_equal(ensemble.predict(None), [1, 2])
    assert ensemble.score(None, [1, 0]) == 0.5
    assert ensemble.count_parameters() == 21


def test_members_with_other_classes_or_shapes_cannot_be_averaged():
    with pytest.raises(RunError, match="different classes"):
        EnsembleModel(models=[FixedModel(np.eye(3)), FixedModel(np.eye(4))], prefit=True).fit()
    with pytest.raises(RunError, match="images of different shapes"):
        EnsembleModel(models=[FixedModel(np.eye(3)), FixedModel(np.eye(3), (20, 20))],
                      prefit=True).fit()


@pytest.mark.parametrize("models, message", [
    ([], "list of at least one member"), ("runs/a", "list of at least one member"),
    (None, "models must be given")])
def test_an_ensemble_needs_a_list_of_members(models, message):
    with pytest.raises(ConfigError, match=message):
        EnsembleModel(models=models, prefit=True).fit()


def test_prefit_members_must_be_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        EnsembleModel(models=[RandomForest(n_estimators=2)], prefit=True).fit()


def test_fit_trains_a_seeded_clone_of_each_member():
    from conftest import make_toy_arrays

    train_images, train_labels, test_images, _ = make_toy_arrays(train=100, test=20)
    members = [RandomForest(n_estimators=3, n_jobs=1), RandomForest(n_estimators=3, n_jobs=1)]
    calls = []
    ensemble = EnsembleModel(models=members, seed=7).fit(
        train_images, train_labels, callback=lambda *args: calls.append(args))
    assert not any(hasattr(member, "forest_") for member in members)  # the originals untouched
    assert [model.seed for model in ensemble.models_] == [7, 8]
    assert [call[:2] for call in calls] == [(1, 2), (2, 2)]
    average = np.mean([model.predict_proba(test_images) for model in ensemble.models_], axis=0)
    np.testing.assert_allclose(ensemble.predict_proba(test_images), average, rtol=1e-6)
    assert ensemble.count_parameters() == sum(model.count_parameters()
                                              for model in ensemble.models_)
    assert not np.array_equal(ensemble.models_[0].predict_proba(test_images),
                              ensemble.models_[1].predict_proba(test_images))


@pytest.fixture(scope="module")
def member_runs(tmp_path_factory):
    """Two tiny MLP runs and a softmax run on the toy digits, with different seeds."""
    from mnistlab.data import load_dataset, write_dataset

    from conftest import make_toy_arrays

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

    info = json.loads((out / "run.json").read_text())
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    # The members' recorded accuracies, then the ensemble's own, as recorded (the console
    # wraps long paths, so compare with the whitespace folded).
    flat = " ".join(output.split())
    for member in members:
        recorded = json.loads((member / "metrics.json").read_text())["test_accuracy"]
        assert f"member {member}: test accuracy {recorded:.4f}" in flat
    assert (f"ensemble of 3: test accuracy {metrics['test_accuracy']:.4f}, "
            f"test loss {metrics['test_loss']:.4f} run directory: {out}") in flat
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
    assert "check PASSED" in capsys.readouterr().out
    assert (tmp_path / "exported" / "saved_model.pb").is_file()


def test_ensemble_with_a_forest_member_refuses_export(shapes_run):
    ensemble = EnsembleModel(models=[load_model(shapes_run)], prefit=True).fit()
    assert ensemble.export_formats == ()
    with pytest.raises(ConfigError, match="cannot export this ensemble"):
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
    out = capsys.readouterr().out
    assert "examples" in out and "mnistlab ensemble runs/cnn-fast-s0" in out
