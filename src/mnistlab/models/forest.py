"""The tutorial's random forest: scikit-learn's `RandomForestClassifier` on raw pixels."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from mnistlab.errors import RunError

MODEL_FILE = "model.skops"
# The only type beyond skops' own defaults that a saved forest holds; anything else in a
# file is refused rather than trusted.
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


def _flatten(X: np.ndarray) -> np.ndarray:
    """(N, 28, 28) or (N, 784) images -> (N, 784); raw pixel values, as the tutorial uses."""
    X = np.asarray(X)
    return X.reshape(len(X), -1)


class RandomForest:
    """A random forest on raw pixels, grown a few trees at a time so progress can be shown.

    Growing with `warm_start` gives the same trees as one `fit` with the same seed, since
    scikit-learn draws each tree's seed from one generator in order.
    """

    def __init__(self, *, n_estimators: int = 50, max_depth: int | None = None,
                 n_jobs: int = -1, seed: int = 0):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.n_jobs = n_jobs
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray, *, validation_data=None,
            callback: Callable[[int, int, dict | None], None] | None = None) -> "RandomForest":
        """Grow `n_estimators` trees on the flattened pixels; `callback(trees, total, None)`."""
        X = _flatten(X)
        forest = RandomForestClassifier(n_estimators=0, max_depth=self.max_depth,
                                        n_jobs=self.n_jobs, random_state=self.seed,
                                        warm_start=True)
        chunk = max(1, self.n_estimators // 10)
        grown = 0
        while grown < self.n_estimators:
            grown = min(self.n_estimators, grown + chunk)
            forest.set_params(n_estimators=grown)
            forest.fit(X, y)
            if callback is not None:
                callback(grown, self.n_estimators, None)
        self.forest_ = forest
        self.classes_ = forest.classes_
        self.history_: list[dict] = []
        self.examples_seen_ = len(X)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities `(N, n_classes)`: the trees' average vote."""
        return self.forest_.predict_proba(_flatten(X)).astype(np.float32)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class of each image."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Accuracy on `(X, y)`."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def count_parameters(self) -> int:
        """Nodes over all trees: the forest's counterpart of a parameter count."""
        return int(sum(tree.tree_.node_count for tree in self.forest_.estimators_))

    def save(self, directory: Path) -> None:
        """Write the forest with skops (no code runs on load) and its SHA-256."""
        import skops.io

        directory = Path(directory)
        skops.io.dump(self.forest_, directory / MODEL_FILE)
        digest = hashlib.sha256((directory / MODEL_FILE).read_bytes()).hexdigest()
        params = {"n_estimators": self.n_estimators, "max_depth": self.max_depth,
                  "n_jobs": self.n_jobs, "seed": self.seed, "sha256": digest}
        (directory / "params.json").write_text(json.dumps(params, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "RandomForest":
        """Load a forest written by `save`, after checking its SHA-256."""
        import skops.io

        directory = Path(directory)
        params = json.loads((directory / "params.json").read_text())
        digest = params.pop("sha256")
        data = (directory / MODEL_FILE).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise RunError(f"{directory / MODEL_FILE} does not match its recorded SHA-256")
        model = cls(**params)
        untrusted = sorted(set(skops.io.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
        if untrusted:
            raise RunError(f"{directory / MODEL_FILE} holds untrusted types: {untrusted}")
        model.forest_ = skops.io.loads(data, trusted=TRUSTED_TYPES)
        model.classes_ = model.forest_.classes_
        model.history_ = []
        return model
