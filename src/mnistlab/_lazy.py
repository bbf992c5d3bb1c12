"""TensorFlow and Keras, imported on first use.

Model files declare their options at import time, and the command line reads them to build
its flags; importing TensorFlow takes seconds, so the model files reach it through these
stand-ins, which import the real module the first time an attribute is asked for.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """A module imported when one of its attributes is first used."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


tf = LazyModule("tensorflow")
keras = LazyModule("keras")
