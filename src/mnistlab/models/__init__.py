"""Classifiers, looked up by name. Every one follows the contract in `models/base.py`.

A model is one file: a scikit-learn estimator whose `__init__` declares its options and
their defaults, whose `options` table declares their constraints and help, and which trains
in `fit(X, y) -> self`. Registering it is one line below; the configuration, the command
line's flags and the presets follow from its declarations.
"""

from __future__ import annotations

import difflib
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


def unknown_name_message(kind: str, name: Any, known) -> str:
    """"unknown model 'sofmax' (did you mean softmax? known: ...)"."""
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown {kind} {name!r} ({hint}known: {', '.join(known)})"


def get_model_class(name: str) -> type:
    """Return the class registered under `name`."""
    if name not in MODEL_CLASSES:
        raise ConfigError(unknown_name_message("model", name, MODEL_CLASSES))
    module_name, class_name = MODEL_CLASSES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_model(name: str, options: dict[str, Any], seed: int) -> Any:
    """Build an unfitted model from its name, its options and the run's seed."""
    return get_model_class(name)(**options, seed=seed)
