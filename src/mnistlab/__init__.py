"""mnistlab: train, compare and use classifiers on MNIST-format data.

The library's entry points are available from the package itself and imported on first use,
so `import mnistlab` is quick and does not import TensorFlow:

    import mnistlab
    dataset = mnistlab.load_dataset("mnist")
    result = mnistlab.train_and_evaluate(mnistlab.make_config(preset="tutorial-v1"), "runs/v1")
    model = mnistlab.load_model("runs/v1")

`mnistlab.__all__` lists them; docs/python-api.md describes them with examples.
"""

import importlib as _importlib

__version__ = "0.1.0"

# TensorFlow reads its logging settings once, when it is first imported: they are set here,
# before anything can import it, so that a notebook or script using mnistlab stays quiet.
try:
    _importlib.import_module("mnistlab._quiet").quiet_tensorflow()
except ModuleNotFoundError as _error:
    if _error.name != "mnistlab._quiet":
        raise

from mnistlab.api import PUBLIC_NAMES as _PUBLIC_NAMES  # noqa: E402

__all__ = ["__version__", *_PUBLIC_NAMES]


def __getattr__(name: str):
    """Import a public name from its module the first time it is asked for (PEP 562)."""
    if name not in _PUBLIC_NAMES:
        raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")
    module_name, attribute = _PUBLIC_NAMES[name].split(":")
    value = getattr(_importlib.import_module(module_name), attribute)
    globals()[name] = value  # later look-ups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
