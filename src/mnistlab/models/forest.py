"""The tutorial's random forest: scikit-learn's `RandomForestClassifier` on raw pixels."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier

from mnistlab.errors import RunError
from mnistlab.models._saved import (
    FORMAT_VERSION,
    empty_save_directory,
    read_model_document,
    write_model_document,
)
from mnistlab.models.base import (
    Integer,
    Option,
    OptionsMixin,
    ProbabilisticClassifierMixin,
    check_fitted,
    fitted_state,
    prepare_fit_input,
    prepare_input,
    restore_fitted_state,
)

MODEL_FILE = "model.skops"
PARAMS_FILE = "params.json"
# The only type beyond skops' own defaults that a saved forest holds; anything else in a
# file is refused rather than trusted.
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


def _parse_jobs(text: str) -> int:
    return int(text)


class RandomForest(ProbabilisticClassifierMixin, OptionsMixin, BaseEstimator):
    """A random forest on raw pixels, grown a few trees at a time so progress can be shown.

    Growing with `warm_start` gives the same trees as one `fit` with the same seed, since
    scikit-learn draws each tree's seed from one generator in order.
    """

    model_name = "random-forest"
    export_formats = ("onnx",)
    options = {
        "n_estimators": Option(Integer(1, 10_000), "number of trees", flag="--trees"),
        "max_depth": Option(Integer(1, 10_000), "deepest a tree may grow",
                            none="no limit"),
        "n_jobs": Option(Integer(-1, 1024), "parallel jobs (-1: all cores)", flag="--jobs",
                         parse=_parse_jobs),
    }

    def __init__(self, *, n_estimators: int = 50, max_depth: int | None = None,
                 n_jobs: int = -1, seed: int = 0):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.n_jobs = n_jobs
        self.seed = seed

    @classmethod
    def check_option_combination(cls, options) -> None:
        if options.get("n_jobs") == 0:
            from mnistlab.models.base import OptionError

            raise OptionError("n_jobs", "must be a positive number of jobs, or -1 for all "
                                        "cores, got 0")

    def fit(self, X: Any, y: Any, *, validation_data=None,
            callback: Callable[[int, int, dict | None], None] | None = None,
            checkpoint=None) -> RandomForest:
        """Grow `n_estimators` trees on the flattened pixels; `callback(trees, total, None)`
        after each tenth. `validation_data` is not used (the forest keeps no history), nor
        `checkpoint` (a forest grows in seconds: an interrupted one starts again)."""
        self.validate_params()
        X, indices = prepare_fit_input(self, X, y)
        labels = self.classes_[indices]
        forest = RandomForestClassifier(n_estimators=0, max_depth=self.max_depth,
                                        n_jobs=self.n_jobs, random_state=self.seed,
                                        warm_start=True)
        chunk = max(1, self.n_estimators // 10)
        grown = 0
        while grown < self.n_estimators:
            grown = min(self.n_estimators, grown + chunk)
            forest.set_params(n_estimators=grown)
            forest.fit(X, labels)
            if callback is not None:
                callback(grown, self.n_estimators, None)
        self.forest_ = forest
        self.history_: list[dict] = []
        self.examples_seen_ = len(X)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities `(N, classes)`: the trees' average vote."""
        check_fitted(self, "forest_")
        return self.forest_.predict_proba(prepare_input(self, X)).astype(np.float32)

    def count_parameters(self) -> int:
        """Nodes over all trees: the forest's counterpart of a parameter count."""
        check_fitted(self, "forest_")
        return int(sum(tree.tree_.node_count for tree in self.forest_.estimators_))

    # ----------------------------------------------------------------------------- export
    def onnx_model(self) -> bytes:
        """The forest as ONNX (skl2onnx) behind a Cast + Reshape taking uint8 images."""
        import onnx
        from onnx import TensorProto, compose, helper
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        check_fitted(self, "forest_")
        features = self.n_features_in_
        forest = convert_sklearn(
            self.forest_, initial_types=[("pixels", FloatTensorType([None, features]))],
            options={id(self.forest_): {"zipmap": False}}, target_opset=17)
        shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, features])
        front = helper.make_model(helper.make_graph(
            [helper.make_node("Cast", ["images"], ["as_float"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["as_float", "shape"], ["pixels"])],
            "prepare",
            [helper.make_tensor_value_info("images", TensorProto.UINT8,
                                           [None, *self.image_shape_])],
            [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, features])],
            initializer=[shape]), opset_imports=forest.opset_import)
        front.ir_version = forest.ir_version
        merged = compose.merge_models(front, forest, io_map=[("pixels", "pixels")])
        # skl2onnx names the outputs "label" and "probabilities"; keep the probabilities.
        keep = [output for output in merged.graph.output if output.name == "probabilities"]
        del merged.graph.output[:]
        merged.graph.output.extend(keep)
        onnx.checker.check_model(merged)
        return merged.SerializeToString()

    # ----------------------------------------------------------------------------- storage
    def save(self, directory: str | Path) -> None:
        """Write the forest with skops (no code runs on load), and `params.json` with its
        settings and the file's SHA-256."""
        import skops.io

        check_fitted(self, "forest_")
        directory = empty_save_directory(directory)
        data = skops.io.dumps(self.forest_)
        from mnistlab.fileio import write_bytes_atomic

        write_bytes_atomic(directory / MODEL_FILE, data)
        write_model_document(directory / PARAMS_FILE, self.model_name,
                             params=self.get_params(), fitted=fitted_state(self),
                             sha256=hashlib.sha256(data).hexdigest())

    @classmethod
    def load(cls, directory: str | Path) -> RandomForest:
        """Load a forest written by `save`, after checking its SHA-256 and its trees."""
        import skops.io

        directory = Path(directory)
        document = _read_document(directory / PARAMS_FILE)
        model = cls.from_params(document["params"], directory / PARAMS_FILE)
        try:
            data = (directory / MODEL_FILE).read_bytes()
        except OSError as error:
            raise RunError(f"cannot read {directory / MODEL_FILE}: {error.strerror}") from None
        if hashlib.sha256(data).hexdigest() != document.get("sha256"):
            raise RunError(f"{directory / MODEL_FILE} does not match its recorded SHA-256")
        try:
            untrusted = sorted(set(skops.io.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
            if untrusted:
                raise RunError(f"{directory / MODEL_FILE} holds untrusted types: {untrusted}")
            forest = skops.io.loads(data, trusted=TRUSTED_TYPES)
        except RunError:
            raise
        except Exception as error:  # skops raises many kinds on a damaged file
            raise RunError(f"cannot read {directory / MODEL_FILE}: "
                           f"{type(error).__name__}") from None
        if not isinstance(forest, RandomForestClassifier):
            raise RunError(f"{directory / MODEL_FILE} does not hold a random forest")
        fitted = document.get("fitted") or {"classes_": np.asarray(forest.classes_).tolist(),
                                            "image_shape_": [28, 28],
                                            "examples_seen_": 0}
        restore_fitted_state(model, fitted, forest.classes_)
        check_trees(forest, model.n_features_in_, len(model.classes_), directory / MODEL_FILE)
        model.forest_ = forest
        return model


def _read_document(path: Path) -> dict:
    """The forest's model document; a first-version `params.json` (settings and SHA-256
    only) is read too."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunError(f"cannot read {path}: {error}") from None
    if isinstance(document, dict) and "format_version" not in document and "sha256" in document:
        return {"params": {key: value for key, value in document.items() if key != "sha256"},
                "sha256": document["sha256"], "format_version": FORMAT_VERSION}
    return read_model_document(path, RandomForest.model_name)


def check_trees(forest: RandomForestClassifier, num_features: int, num_classes: int,
                source: Path) -> None:
    """Refuse a loaded forest whose trees could make scikit-learn read out of bounds: child
    indices, split features, thresholds and leaf values must fit the tree and the data.

    A model file is input like any other: a crafted one with a child index out of range
    would otherwise crash the process when it predicts.
    """
    estimators = getattr(forest, "estimators_", None)
    if not estimators or getattr(forest, "n_features_in_", None) != num_features:
        raise RunError(f"{source} does not hold a forest fitted on {num_features} features")
    for number, estimator in enumerate(estimators):
        tree = estimator.tree_
        nodes = tree.node_count
        left, right = tree.children_left, tree.children_right
        leaf = left == -1
        internal = ~leaf
        problems = (
            len(left) != nodes or len(right) != nodes or nodes < 1
            or np.any((right == -1) != leaf)
            # children come after their parent in scikit-learn's trees, so no cycles
            or np.any(left[internal] <= np.flatnonzero(internal))
            or np.any(right[internal] <= np.flatnonzero(internal))
            or np.any(left[internal] >= nodes) or np.any(right[internal] >= nodes)
            or np.any(tree.feature[internal] < 0)
            or np.any(tree.feature[internal] >= num_features)
            or not np.all(np.isfinite(tree.threshold[internal]))
            or tree.value.shape != (nodes, 1, num_classes)
            or not np.all(np.isfinite(tree.value))
            or tree.n_features != num_features)
        if problems:
            raise RunError(f"{source}: tree {number} is damaged (its structure does not fit "
                           f"{num_features} features and {num_classes} classes)")
