"""An ensemble: the average of its members' class probabilities.

`EnsembleModel(models=[...])` follows the same contract as the other models. With
`prefit=True` its members are models already fitted (for example loaded from runs, see
`mnistlab.experiment.ensemble_runs`) and `fit` trains nothing; otherwise `fit` trains a clone
of each member, as scikit-learn's soft `VotingClassifier` does. `save` writes every member's
model into `member-<i>/` under its own directory, so a saved ensemble stands alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from mnistlab.errors import ConfigError, RunError
from mnistlab.models._saved import empty_save_directory, read_model_document, write_model_document
from mnistlab.models.base import (
    Boolean,
    Option,
    OptionsMixin,
    ProbabilisticClassifierMixin,
    check_fitted,
)

ENSEMBLE_FILE = "ensemble.json"


class EnsembleModel(ProbabilisticClassifierMixin, OptionsMixin, BaseEstimator):
    """The average of the member models' `predict_proba` (equal weights).

    `models` is a list of models; with `prefit=True` they must be fitted already and are
    used as they are. `seed` is passed to the clones that `fit` trains (each member gets
    `seed + i`) when the members have a `seed` setting.
    """

    model_name = "ensemble"
    options = {
        "models": Option(None, "the member models", cli=False),
        "prefit": Option(Boolean(), "the members are fitted already", cli=False),
    }

    def __init__(self, *, models: Sequence[Any] = (), prefit: bool = False, seed: int = 0):
        self.models = models
        self.prefit = prefit
        self.seed = seed

    @property
    def export_formats(self) -> tuple[str, ...]:
        """TensorFlow formats when every member has a TensorFlow graph."""
        members = getattr(self, "models_", self.models)
        if members and all(hasattr(model, "serving_module") for model in members):
            return ("savedmodel", "tflite", "onnx")
        return ()

    @classmethod
    def check_option_combination(cls, options) -> None:
        models = options.get("models")
        if isinstance(models, (str, Path)) or not isinstance(models, Sequence) or not models:
            raise ConfigError("an ensemble needs a list of at least one member model")

    def fit(self, X: Any = None, y: Any = None, *, validation_data: tuple | None = None,
            callback: Callable[[int, int, dict | None], None] | None = None,
            checkpoint=None) -> EnsembleModel:
        """Fit a clone of each member on `(X, y)` (with `prefit`, only check the members);
        `checkpoint` is not used."""
        self.validate_params()
        if self.prefit:
            for model in self.models:
                check_fitted(model, "classes_")
            models = list(self.models)
            if callback is not None:
                callback(len(models), len(models), None)
        else:
            models = []
            for index, member in enumerate(self.models):
                model = clone(member)
                if "seed" in model.get_params():
                    model.set_params(seed=self.seed + index)
                models.append(model.fit(X, y, validation_data=validation_data))
                if callback is not None:
                    callback(index + 1, len(self.models), None)
        self._set_models(models)
        return self

    def _set_models(self, models: list) -> None:
        classes = [np.asarray(model.classes_) for model in models]
        if any(not np.array_equal(c, classes[0]) for c in classes):
            raise RunError("the member models predict different classes: cannot average them")
        shapes = {tuple(model.image_shape_) for model in models}
        if len(shapes) > 1:
            raise RunError(f"the member models take images of different shapes {sorted(shapes)}")
        self.models_ = models
        self.classes_ = classes[0]
        self.image_shape_ = tuple(models[0].image_shape_)
        self.n_features_in_ = models[0].n_features_in_
        self.history_: list[dict] = []
        self.num_steps_ = 0
        self.examples_seen_ = 0

    def predict_proba(self, X: Any) -> np.ndarray:
        """The members' probabilities averaged, float32 (N, classes); rows sum to 1."""
        check_fitted(self, "models_")
        total = None
        for model in self.models_:
            probabilities = np.asarray(model.predict_proba(X), np.float64)
            total = probabilities if total is None else total + probabilities
        return (total / len(self.models_)).astype(np.float32)

    def count_parameters(self) -> int:
        """The members' parameters added up."""
        check_fitted(self, "models_")
        return int(sum(model.count_parameters() for model in self.models_))

    def serving_module(self):
        """A `tf.Module` whose `serve` averages the members' served probabilities.

        Every member must itself be exportable as a TensorFlow graph (not a random forest).
        """
        import tensorflow as tf

        check_fitted(self, "models_")
        if not self.export_formats:
            raise ConfigError("cannot export this ensemble: a member has no TensorFlow graph "
                              "(only softmax, mlp and cnn members can be exported together)")
        parts = [model.serving_module() for model in self.models_]
        image_shape = list(self.image_shape_)

        class EnsembleServing(tf.Module):
            def __init__(self):
                super().__init__(name="mnistlab_ensemble")
                self.parts = parts

            @tf.function(input_signature=[tf.TensorSpec([None, *image_shape], tf.uint8,
                                                        name="images")])
            def serve(self, images):
                total = tf.add_n([part.serve(images)["probabilities"] for part in self.parts])
                return {"probabilities": total / len(self.parts)}

        return EnsembleServing()

    # ----------------------------------------------------------------------------- storage
    def save(self, directory: str | Path) -> None:
        """Save every member into `member-<i>/` and write `ensemble.json` naming them."""
        check_fitted(self, "models_")
        directory = empty_save_directory(directory)
        entries = []
        for index, model in enumerate(self.models_):
            member_dir = directory / f"member-{index}"
            member_dir.mkdir()
            model.save(member_dir)
            entries.append({"directory": member_dir.name, "model": model.model_name})
        write_model_document(directory / ENSEMBLE_FILE, self.model_name, members=entries,
                             classes=np.asarray(self.classes_).tolist())

    @classmethod
    def load(cls, directory: str | Path) -> EnsembleModel:
        """Load an ensemble written by `save`, from its own copies of the member models."""
        from mnistlab.models import get_model_class

        directory = Path(directory)
        document = read_model_document(directory / ENSEMBLE_FILE, cls.model_name)
        entries = document.get("members")
        if not isinstance(entries, list) or not entries:
            raise RunError(f"{directory / ENSEMBLE_FILE} lists no members")
        models = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("directory"), str):
                raise RunError(f"{directory / ENSEMBLE_FILE} has a damaged member entry")
            member_dir = (directory / entry["directory"]).resolve()
            # Members live inside the ensemble's own directory, never elsewhere.
            if member_dir.parent != directory.resolve() or member_dir == directory.resolve():
                raise RunError(f"{directory / ENSEMBLE_FILE}: member {entry['directory']!r} "
                               "is not a directory inside the ensemble")
            if get_model_class(str(entry.get("model"))) is cls:
                raise RunError(f"{directory / ENSEMBLE_FILE}: an ensemble cannot hold an "
                               "ensemble")
            models.append(get_model_class(str(entry.get("model"))).load(member_dir))
        model = cls(models=models, prefit=True)
        model._set_models(models)
        return model
