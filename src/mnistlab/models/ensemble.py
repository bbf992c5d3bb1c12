"""An ensemble of trained runs: the average of their members' class probabilities.

`EnsembleModel(members=[run_dir, ...])` follows the same contract as the other models. Its
`fit` trains nothing: it loads the members' fitted models from their run directories (the
images it is given are ignored). `save` copies every member's model into `member-<i>/` under
its own directory, so a saved ensemble survives its member runs being deleted.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from mnistlab.errors import ConfigError, RunError
from mnistlab.models._saved import (empty_save_directory, read_model_document,
                                    write_model_document)

ENSEMBLE_FILE = "ensemble.json"


def check_member_runs(members: Sequence[str | Path]) -> dict:
    """Check that `members` are completed runs on the same classes; return what they share.

    Returns `{"dataset", "class_names", "limit_test", "models"}` from the members' saved
    configurations. Raises `RunError` naming the first run that is missing, not a run, not
    completed, or on other class names than the first.
    """
    from mnistlab.runs import load_run

    if not members:
        raise RunError("an ensemble needs at least one member run")
    shared = None
    models = []
    for member in members:
        run = load_run(Path(member))
        if run.status != "completed":
            raise RunError(f"{member} is a {run.status} run and has no model to load")
        class_names = run.config.get("data", {}).get("class_names")
        models.append(run.info.get("model"))
        if shared is None:
            shared = {"dataset": run.config.get("dataset"), "class_names": class_names,
                      "limit_test": run.config.get("limit_test")}
        elif class_names != shared["class_names"]:
            raise RunError(f"{member} was trained on classes {class_names}, but "
                           f"{members[0]} on {shared['class_names']}: cannot ensemble them")
    return {**shared, "models": models}


class EnsembleModel(BaseEstimator):
    """The average of the member models' `predict_proba` (equal weights).

    `members` are run directories; `seed` and `log_every` are accepted for the common model
    interface and unused.
    """

    def __init__(self, *, members: Sequence[str] = (), log_every: int = 50, seed: int = 0):
        self.members = members
        self.log_every = log_every
        self.seed = seed

    def fit(self, X: Any = None, y: Any = None, *, validation_data: tuple | None = None,
            callback=None) -> EnsembleModel:
        """Load the member runs' models (nothing is trained; `X` and `y` are ignored)."""
        from mnistlab.runs import load_model

        if isinstance(self.members, (str, Path)):
            raise ConfigError("members must be a list of run directories, not one path")
        check_member_runs(self.members)
        models = []
        for index, member in enumerate(self.members, start=1):
            models.append(load_model(Path(member)))
            if callback is not None:
                callback(index, len(self.members), None)
        self._set_models(models, [type(model).__name__ for model in models])
        return self

    def _set_models(self, models: list, kinds: list[str]) -> None:
        self.models_ = models
        self.member_kinds_ = kinds
        classes = [np.asarray(model.classes_) for model in models]
        if any(not np.array_equal(c, classes[0]) for c in classes):
            raise RunError("the member models predict different classes: cannot average them")
        self.classes_ = classes[0]
        self.history_: list[dict] = []
        self.num_steps_ = 0
        self.examples_seen_ = 0

    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise NotFittedError("this EnsembleModel is not fitted yet: call fit or load")

    def predict_proba(self, X: Any) -> np.ndarray:
        """The members' probabilities averaged, float32 (N, classes); rows sum to 1."""
        self._check_fitted()
        total = None
        for model in self.models_:
            probabilities = np.asarray(model.predict_proba(X), np.float64)
            total = probabilities if total is None else total + probabilities
        return (total / len(self.models_)).astype(np.float32)

    def predict(self, X: Any) -> np.ndarray:
        """The class of highest average probability."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on `(X, y)`."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def count_parameters(self) -> int:
        """The members' parameters added up."""
        self._check_fitted()
        return int(sum(model.count_parameters() for model in self.models_))

    def serving_module(self):
        """A `tf.Module` whose `serve` averages the members' served probabilities.

        Every member must itself be exportable as a TensorFlow graph (not a random forest).
        """
        import tensorflow as tf

        self._check_fitted()
        for model in self.models_:
            if not hasattr(model, "serving_module"):
                raise ConfigError(f"cannot export this ensemble: its member "
                                  f"{type(model).__name__} has no TensorFlow graph "
                                  f"(only mlp and cnn members can be exported together)")
        parts = [model.serving_module() for model in self.models_]

        class EnsembleServing(tf.Module):
            def __init__(self):
                super().__init__(name="mnistlab_ensemble")
                self.parts = parts

            @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8,
                                                        name="images")])
            def serve(self, images):
                total = tf.add_n([part.serve(images)["probabilities"] for part in self.parts])
                return {"probabilities": total / len(self.parts)}

        return EnsembleServing()

    # ----------------------------------------------------------------------------- storage
    def save(self, directory: str | Path) -> None:
        """Copy every member's `model/` to `member-<i>/` and write `ensemble.json` naming them.

        A member whose run directory is gone (an ensemble loaded and saved again) is saved
        from memory instead.
        """
        from mnistlab.models import MODEL_CLASSES

        self._check_fitted()
        directory = empty_save_directory(directory)
        class_to_name = {path.split(":")[1]: name for name, path in MODEL_CLASSES.items()}
        entries = []
        for index, model in enumerate(self.models_):
            member_dir = directory / f"member-{index}"
            source = Path(self.members[index]) / "model" if self.members else None
            if source is not None and source.is_dir():
                shutil.copytree(source, member_dir)  # the member's files, bit for bit
            else:
                member_dir.mkdir()
                model.save(member_dir)
            entries.append({"directory": member_dir.name,
                            "model": class_to_name[type(model).__name__],
                            "source": str(self.members[index]) if self.members else None})
        write_model_document(directory / ENSEMBLE_FILE, "ensemble", members=entries,
                             classes=np.asarray(self.classes_).tolist())

    @classmethod
    def load(cls, directory: str | Path) -> EnsembleModel:
        """Load an ensemble written by `save`, from its own copies of the member models."""
        from mnistlab.models import get_model_class

        directory = Path(directory)
        document = read_model_document(directory / ENSEMBLE_FILE, "ensemble")
        entries = document["members"]
        models = [get_model_class(entry["model"]).load(directory / entry["directory"])
                  for entry in entries]
        model = cls(members=[entry.get("source") for entry in entries])
        model._set_models(models, [type(member).__name__ for member in models])
        return model

