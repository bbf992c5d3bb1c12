"""train_and_evaluate / evaluate_run / reproduce on tiny in-memory data."""

import json

import numpy as np
import pytest

from mnistlab.config import make_config
from mnistlab.data import load_dataset
from mnistlab.errors import ConfigError, RunError, TrainingDivergedError
from mnistlab.evaluate import compute_metrics
from mnistlab.experiment import evaluate_run, reproduce, split_dataset, train_and_evaluate
from mnistlab.runs import load_model, load_run

RUN_FILES = {"run.json", "config.json", "metrics.json", "history.csv", "history.jsonl",
             "model", "predictions.png", "confusion_matrix.png", "misclassified.png"}


def forest_config(**run_options):
    return make_config("random-forest", model_options={"n_estimators": 8}, **run_options)


def test_forest_run_writes_every_promised_file(toy_dataset, tmp_path):
    result = train_and_evaluate(forest_config(), tmp_path / "run", dataset=toy_dataset,
                                progress=False)
    names = {path.name for path in result.run_dir.iterdir()}
    assert RUN_FILES <= names
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "per_class", "confusion_matrix", "train_seconds",
                "predict_seconds", "train_examples_per_second", "parameters", "model_bytes"):
        assert key in metrics, key
    assert metrics["test_accuracy"] > 0.8  # the toy classes are separable
    assert np.sum(metrics["confusion_matrix"]) == len(toy_dataset.test_labels)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["model"] == "random-forest" and config["seed"] == 0
    assert config["model_config"]["n_estimators"] == 8
    assert "numpy" in config["versions"] and config["data"]["name"] == "toy-dataset"
    assert load_run(result.run_dir).status == "completed"


def test_op_determinism_is_turned_on_by_the_entry_point_not_by_fit(toy_dataset, tmp_path,
                                                                   monkeypatch):
    import tensorflow as tf

    from mnistlab.models.softmax import SoftmaxRegression

    calls = []
    enable = tf.config.experimental.enable_op_determinism
    monkeypatch.setattr(tf.config.experimental, "enable_op_determinism",
                        lambda: (calls.append("enable"), enable())[1])
    SoftmaxRegression(num_steps=2).fit(toy_dataset.train_images, toy_dataset.train_labels)
    assert calls == []
    train_and_evaluate(forest_config(), tmp_path / "run", dataset=toy_dataset, progress=False)
    assert calls == ["enable"]


def test_reloaded_model_gives_identical_predictions(toy_dataset, tmp_path):
    result = train_and_evaluate(forest_config(), tmp_path / "run", dataset=toy_dataset,
                                progress=False)
    reloaded = load_model(result.run_dir)
    np.testing.assert_array_equal(reloaded.predict_proba(toy_dataset.test_images),
                                  result.model.predict_proba(toy_dataset.test_images))
    evaluation = evaluate_run(result.run_dir, dataset=toy_dataset)
    assert evaluation.metrics["test_accuracy"] == result.metrics["test_accuracy"]
    assert evaluation.metrics["test_loss"] == pytest.approx(result.metrics["test_loss"])


def test_same_seed_gives_identical_metrics(toy_dataset, tmp_path):
    first = train_and_evaluate(forest_config(seed=5), tmp_path / "a", dataset=toy_dataset,
                               progress=False)
    second = train_and_evaluate(forest_config(seed=5), tmp_path / "b", dataset=toy_dataset,
                                progress=False)
    for key in ("test_accuracy", "test_loss", "confusion_matrix", "per_class"):
        assert first.metrics[key] == second.metrics[key]


def test_existing_run_directory_is_refused_before_training(toy_dataset, tmp_path):
    train_and_evaluate(forest_config(), tmp_path / "run", dataset=toy_dataset, progress=False)
    before = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(RunError, match="already exists"):
        train_and_evaluate(forest_config(seed=1), tmp_path / "run", dataset=toy_dataset,
                           progress=False)
    assert (tmp_path / "run" / "metrics.json").read_text() == before
    train_and_evaluate(forest_config(seed=1), tmp_path / "run", dataset=toy_dataset,
                       progress=False, overwrite=True)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 1


def test_failure_during_training_leaves_a_failed_run(toy_dataset, tmp_path, monkeypatch):
    from mnistlab.models import forest

    def explode(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(forest.RandomForest, "fit", explode)
    with pytest.raises(RuntimeError):
        train_and_evaluate(forest_config(), tmp_path / "run", dataset=toy_dataset,
                           progress=False)
    run = load_run(tmp_path / "run")
    assert run.status == "failed" and "boom" in run.info["error"]
    assert not (tmp_path / "run" / "metrics.json").exists()
    with pytest.raises(RunError):
        load_model(tmp_path / "run")  # nothing takes it for a finished run


def test_diverged_training_is_recorded_as_a_failed_run(toy_dataset, tmp_path, monkeypatch):
    from mnistlab.models import forest

    def diverge(self, *args, **kwargs):
        self.history_ = [{"step": 50, "epoch": 1, "train_loss": float("inf"),
                          "train_accuracy": 0.1}]
        raise TrainingDivergedError("training loss became nan at step 73")

    monkeypatch.setattr(forest.RandomForest, "fit", diverge)
    with pytest.raises(TrainingDivergedError, match="step 73"):
        train_and_evaluate(forest_config(), tmp_path / "run", dataset=toy_dataset,
                           progress=False)
    run = load_run(tmp_path / "run")
    assert run.status == "failed" and "step 73" in run.info["error"]
    assert len(run.history) == 1
    with pytest.raises(RunError, match="failed run"):
        load_model(tmp_path / "run")


def test_limits_and_validation_split(toy_dataset):
    config = forest_config(limit_train=100, limit_test=30, validation_split=0.2)
    split = split_dataset(toy_dataset, config)
    assert len(split.train_images) == 80 and len(split.val_images) == 20
    assert len(split.test_images) == 30
    again = split_dataset(toy_dataset, config)
    np.testing.assert_array_equal(split.val_labels, again.val_labels)
    np.testing.assert_array_equal(split.test_images, toy_dataset.test_images[:30])


def test_reproduce_writes_report_and_runs(toy_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr("mnistlab.experiment._load_dataset", lambda *args: toy_dataset)
    summary = reproduce(tmp_path / "repro", presets=("tutorial-rf",), limit_train=200,
                        limit_test=50, progress=False)
    out = tmp_path / "repro"
    assert {"summary.json", "report.md", "report.html", "tutorial-rf"} <= \
        {path.name for path in out.iterdir()}
    saved = json.loads((out / "summary.json").read_text())
    assert saved["models"][0]["name"] == "tutorial-rf"
    assert saved["models"][0]["tutorial_accuracy"] == 0.9685
    assert saved["models"][0]["run_dir"] == "tutorial-rf"
    assert summary["out_dir"] == str(out)
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "0.9685" in html
    assert "tutorial-rf/predictions.png" in (out / "report.md").read_text()
    with pytest.raises(RunError, match="already exists"):
        reproduce(out, presets=("tutorial-rf",), progress=False)


def test_subset_missing_a_class_is_refused_before_training(toy_dataset, tmp_path):
    with pytest.raises(ConfigError, match="no example of class"):
        train_and_evaluate(forest_config(limit_train=5), tmp_path / "run", dataset=toy_dataset,
                           progress=False)
    assert not (tmp_path / "run").exists()


def test_models_learn_the_shape_and_classes_of_other_data(tmp_path):
    """Models learn their image shape and classes from the data (they were fixed to 28x28
    images in 10 classes): 20x20 images in 3 classes train, and other shapes are refused."""
    from mnistlab.data import load_dataset, write_dataset

    rng = np.random.default_rng(0)
    labels = np.arange(60, dtype=np.uint8) % 3
    directory = write_dataset(tmp_path / "three", train_images=rng.integers(0, 255, (60, 20, 20),
                                                                          dtype=np.uint8),
                              train_labels=labels, test_images=rng.integers(
                                  0, 255, (60, 20, 20), dtype=np.uint8), test_labels=labels)
    dataset = load_dataset(directory, progress=False)
    softmax = train_and_evaluate(make_config("softmax", model_options={"num_epochs": 2}),
                                 tmp_path / "run", dataset=dataset, progress=False)
    assert softmax.model.weights_.shape == (400, 3) and softmax.model.image_shape_ == (20, 20)
    assert softmax.metrics["parameters"] == 400 * 3 + 3
    assert len(softmax.metrics["confusion_matrix"]) == 3
    assert (softmax.run_dir / "weights.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = train_and_evaluate(forest_config(), tmp_path / "forest", dataset=dataset,
                                progress=False)
    assert len(result.metrics["confusion_matrix"]) == 3
    for model in (softmax.model, result.model, load_model(result.run_dir)):
        np.testing.assert_array_equal(model.classes_, [0, 1, 2])
        with pytest.raises(ValueError, match=r"fitted on images of shape \(20, 20\)"):
            model.predict_proba(rng.integers(0, 255, (2, 28, 28), dtype=np.uint8))


def test_custom_dataset_path_is_recorded_absolute(toy_dataset_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(toy_dataset_dir.parent)
    result = train_and_evaluate(forest_config(dataset=toy_dataset_dir.name), tmp_path / "run",
                                progress=False)
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["dataset"] == str(toy_dataset_dir.resolve())
    monkeypatch.chdir(tmp_path)
    assert evaluate_run(result.run_dir).metrics["test_accuracy"] == \
        result.metrics["test_accuracy"]


def test_validation_split_scores_models_without_history(toy_dataset, tmp_path):
    config = forest_config(validation_split=0.2)
    result = train_and_evaluate(config, tmp_path / "run", dataset=toy_dataset, progress=False)
    split = split_dataset(toy_dataset, config)
    probabilities = result.model.predict_proba(split.val_images)
    assert result.metrics["val_accuracy"] == pytest.approx(
        np.mean(np.argmax(probabilities, axis=1) == split.val_labels))
    assert result.metrics["val_loss"] == pytest.approx(compute_metrics(
        split.val_labels, probabilities, toy_dataset.class_names)["test_loss"])
    assert result.metrics["val_accuracy"] > 0.5  # the toy classes are separable
    assert result.history == []


def test_reproduce_with_seeds_reports_the_spread(tiny_dataset_dir, tmp_path, monkeypatch):
    # Random pixels: accuracy near chance, different for every seed, so the spread is real.
    noise = load_dataset(tiny_dataset_dir, progress=False)
    monkeypatch.setattr("mnistlab.experiment._load_dataset", lambda *args: noise)
    summary = reproduce(tmp_path / "repro", presets=("tutorial-rf",), seed=4, num_seeds=3,
                        progress=False)
    out = tmp_path / "repro"
    assert {"tutorial-rf", "tutorial-rf-seed5", "tutorial-rf-seed6"} <= \
        {path.name for path in out.iterdir()}
    seeds = summary["models"][0]["seeds"]
    accuracies = [json.loads((out / name / "metrics.json").read_text())["test_accuracy"]
                  for name in ("tutorial-rf", "tutorial-rf-seed5", "tutorial-rf-seed6")]
    assert seeds["seeds"] == [4, 5, 6] and seeds["test_accuracies"] == accuracies
    assert len(set(accuracies)) > 1
    assert seeds["mean"] == pytest.approx(np.mean(accuracies))
    assert seeds["std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert seeds["at_or_above_tutorial"] == sum(a >= 0.9685 for a in accuracies)
    assert "mean ± sd over seeds" in (out / "report.md").read_text()
    with pytest.raises(ConfigError, match="number of seeds"):
        reproduce(tmp_path / "other", presets=("tutorial-rf",), num_seeds=0, progress=False)
