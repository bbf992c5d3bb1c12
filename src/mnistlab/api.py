"""What `import mnistlab` offers: the library's entry points, by name, imported on first use.

`mnistlab/__init__.py` looks names up here (PEP 562), so `import mnistlab` stays quick and
does not import TensorFlow; each name is imported from its own module the first time it is
used. `make_model`, the one entry point without a home of its own, is defined here.
"""

from __future__ import annotations

from typing import Any

# Public name -> "module:attribute", in the order a user meets them (see docs/python-api.md).
PUBLIC_NAMES: dict[str, str] = {
    # Data: load, fetch, verify and describe MNIST-format datasets (`mnistlab data ...`).
    "load_dataset": "mnistlab.data:load_dataset",
    "fetch_dataset": "mnistlab.data:fetch_dataset",
    "verify_dataset": "mnistlab.data:verify_dataset",
    "dataset_info": "mnistlab.data:dataset_info",
    "DATASETS": "mnistlab.data:DATASETS",
    "Dataset": "mnistlab.data:Dataset",
    # Configurations, presets and models.
    "PRESETS": "mnistlab.config:PRESETS",
    "TrainConfig": "mnistlab.config:TrainConfig",
    "make_config": "mnistlab.config:make_config",
    "make_model": "mnistlab.api:make_model",
    "RandomForest": "mnistlab.models.forest:RandomForest",
    "SoftmaxRegression": "mnistlab.models.softmax:SoftmaxRegression",
    "MLP": "mnistlab.models.neural:MLP",
    "CNN": "mnistlab.models.neural:CNN",
    "EnsembleModel": "mnistlab.models.ensemble:EnsembleModel",
    # One entry point per job (`mnistlab train`, `evaluate`, `reproduce`, `ensemble`).
    "train_and_evaluate": "mnistlab.experiment:train_and_evaluate",
    "evaluate_run": "mnistlab.experiment:evaluate_run",
    "reproduce": "mnistlab.experiment:reproduce",
    "ensemble_runs": "mnistlab.experiment:ensemble_runs",
    "RunResult": "mnistlab.experiment:RunResult",
    # Run directories (`mnistlab runs`, `compare`).
    "load_run": "mnistlab.runs:load_run",
    "load_model": "mnistlab.runs:load_model",
    "find_runs": "mnistlab.runs:find_runs",
    # A trained model on people's own images (`mnistlab predict`).
    "load_image": "mnistlab.prepare:load_image",
    "prepare_image": "mnistlab.prepare:prepare_image",
    "prepare_images": "mnistlab.prepare:prepare_images",
    "predict_files": "mnistlab.predict:predict_files",
    "evaluate_labelled_files": "mnistlab.predict:evaluate_labelled_files",
    "read_labels_csv": "mnistlab.predict:read_labels_csv",
    # Export (`mnistlab export`) and the web page (`mnistlab serve`).
    "export_run": "mnistlab.export:export_run",
    "check_export": "mnistlab.export:check_export",
    "load_exported": "mnistlab.export:load_exported",
    "make_server": "mnistlab.serve.server:make_server",
    # Metrics and figures, from predictions and records.
    "compute_metrics": "mnistlab.evaluate:compute_metrics",
    "plot_curves": "mnistlab.plots:plot_curves",
    "plot_predictions": "mnistlab.plots:plot_predictions",
    "plot_confusion_matrix": "mnistlab.plots:plot_confusion_matrix",
    "plot_misclassified": "mnistlab.plots:plot_misclassified",
    "plot_weights": "mnistlab.plots:plot_weights",
    # Errors worth catching.
    "MnistlabError": "mnistlab.errors:MnistlabError",
}


def make_model(model: str | None = None, *, preset: str | None = None, seed: int = 0,
               **options: Any) -> Any:
    """Build an unfitted model from a model name and/or a preset, plus option overrides.

    The options are the model's own (`n_estimators` for the forest, `num_epochs`,
    `batch_size`, `learning_rate` ... for the others; `help(mnistlab.SoftmaxRegression)`
    lists them); they are applied over the model's defaults and the preset's, and checked
    the way `mnistlab train` checks its flags (`ConfigError` naming a bad or unknown one).
    The result follows the scikit-learn contract: `fit(X, y) -> self`, `predict_proba`,
    `predict`, `score`.

    >>> make_model(preset="tutorial-v3").batch_size
    300
    >>> make_model("random-forest", n_estimators=10).n_estimators
    10
    """
    from mnistlab.config import make_config
    from mnistlab.errors import ConfigError
    from mnistlab.models import build_model

    if model == "ensemble":
        raise ConfigError("an ensemble is built from fitted models: use "
                          "mnistlab.EnsembleModel(models=[...], prefit=True) or ensemble_runs")
    # make_config resolves the options (model defaults, then the preset's, then `options`)
    # and checks them, the names (with a "did you mean") and that a preset fits the model.
    config = make_config(model, preset=preset, model_options=options, seed=seed)
    return build_model(config.model, dict(config.model_config), config.seed)
