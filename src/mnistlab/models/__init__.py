"""Classifiers, looked up by name. All share the scikit-learn contract.

Each model class takes its settings in `__init__`, learns in `fit(X, y) -> self`, and offers
`predict_proba`, `predict`, `score`, `classes_`, `count_parameters()`, `save(directory)` and
the class method `load(directory)`. Inputs are uint8 images `(N, 28, 28)`; each model scales
and flattens them itself.
"""

from __future__ import annotations

import importlib
from typing import Any

from mnistlab.errors import ConfigError

# Model name -> "module:ClassName", imported on first use so that the command line starts
# without loading TensorFlow for commands that do not need it.
MODEL_CLASSES: dict[str, str] = {
    "random-forest": "mnistlab.models.forest:RandomForest",
    "softmax": "mnistlab.models.softmax:SoftmaxRegression",
    "mlp": "mnistlab.models.neural:MLP",
    "cnn": "mnistlab.models.neural:CNN",
    "ensemble": "mnistlab.models.ensemble:EnsembleModel",
}

# Models built for MNIST's shape: 28x28 images in 10 classes (the forest takes any).
FIXED_INPUT_MODELS = frozenset({"softmax", "mlp", "cnn"})


def get_model_class(name: str) -> type:
    """Return the class registered under `name`."""
    if name not in MODEL_CLASSES:
        raise ConfigError(f"unknown model {name!r} (known: {', '.join(sorted(MODEL_CLASSES))})")
    module_name, class_name = MODEL_CLASSES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_model(name: str, options: dict[str, Any], seed: int) -> Any:
    """Build an unfitted model from its name, its options and the run's seed."""
    return get_model_class(name)(**options, seed=seed)
