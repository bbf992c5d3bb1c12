"""The model contract, the option tables models declare, and the one validator that checks
them.

Every model is a scikit-learn estimator. Its `__init__` declares each option and its
default; its class attribute `options` declares, once, each option's constraint (type and
range), a one-line help text and, where it differs from the option's name, the command
line flag. The validator (`validate_options`), the configuration (`mnistlab.config`), the
command line's flags and their help all derive from these two places.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mnistlab.errors import ConfigError, OptionError

# --------------------------------------------------------------------------------- options


def _is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Integer:
    """A whole number in [low, high]."""

    low: int
    high: int

    def problem(self, value: Any) -> str | None:
        if not _is_whole(value) or not self.low <= value <= self.high:
            return f"must be a whole number from {self.low:,} to {self.high:,}"
        return None

    def describe(self) -> str:
        return f"{self.low:,}-{self.high:,}"

    parse = staticmethod(int)


@dataclass(frozen=True)
class Real:
    """A finite number from `low` to `high`; `high_open` excludes `high`, `low_open` `low`."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def problem(self, value: Any) -> str | None:
        ok = (_is_real(value) and math.isfinite(value)
              and (value > self.low if self.low_open else value >= self.low)
              and (value < self.high if self.high_open else value <= self.high))
        if not ok:
            return f"must be a number {self.describe()}"
        return None

    def describe(self) -> str:
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"

    parse = staticmethod(float)


@dataclass(frozen=True)
class Choice:
    """One of a few names."""

    values: tuple[str, ...]

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str) or value not in self.values:
            return f"must be one of {', '.join(self.values)} (got {value!r})"
        return None

    def describe(self) -> str:
        return "|".join(self.values)

    parse = staticmethod(str)


@dataclass(frozen=True)
class Boolean:
    """True or False."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, (bool, np.bool_)) else "must be True or False"

    def describe(self) -> str:
        return "on|off"

    parse = staticmethod(bool)


@dataclass(frozen=True)
class Option:
    """One model option: its constraint, a help text, and how the command line spells it.

    `none` is what `None` means for this option, when `None` is allowed (e.g. "no limit").
    `flag` is the command line's name when it differs from the option's (`--trees` for
    `n_estimators`); `parse` turns the flag's text into a value (default: the constraint's).
    `cli=False` keeps an option off the command line.
    """

    constraint: Integer | Real | Choice | Boolean | None
    help: str
    flag: str | None = None
    none: str | None = None
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    cli: bool = True

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed, or None."""
        if value is None:
            return None if self.none is not None else "must be given (None is not allowed)"
        if self.constraint is None:
            return None
        return self.constraint.problem(value)

    def flag_name(self, option: str) -> str:
        """The command line flag, e.g. `--batch-size`."""
        return self.flag or "--" + option.replace("_", "-")


def option_defaults(model_class: type) -> dict[str, Any]:
    """The model's options and their defaults, from its `__init__`, in declaration order
    (without `seed`, which belongs to the run)."""
    signature = inspect.signature(model_class.__init__)
    return {name: parameter.default for name, parameter in signature.parameters.items()
            if name not in ("self", "seed") and parameter.kind == parameter.KEYWORD_ONLY}


def validate_options(model_class: type, options: Mapping[str, Any]) -> None:
    """Check option values against the model's table; `OptionError` naming the first bad
    one, `ConfigError` for an option the model does not have."""
    table = model_class.options
    for name, value in options.items():
        if name == "seed":
            if not _is_whole(value) or not 0 <= value < 2 ** 32:
                raise OptionError("seed", f"must be a whole number from 0 to 2**32 - 1, "
                                          f"got {value!r}")
            continue
        if name not in table:
            raise ConfigError(f"option {name!r} does not apply to model "
                              f"{getattr(model_class, 'model_name', model_class.__name__)!r}")
        problem = table[name].problem(value)
        if problem is not None:
            raise OptionError(name, f"{problem}, got {value!r}" if "got" not in problem
                              else problem)
    model_class.check_option_combination({**option_defaults(model_class), **options})


class OptionsMixin:
    """Validation of a model's own options against its `options` table, before `fit` touches
    any data (scikit-learn's `_parameter_constraints` idea, with our error type)."""

    options: dict[str, Option] = {}

    @classmethod
    def check_option_combination(cls, options: Mapping[str, Any]) -> None:
        """Checks that involve more than one option (none by default)."""

    def store_options(self, arguments: Mapping[str, Any]) -> None:
        """Store `__init__`'s arguments (its `locals()`) as attributes of the same names."""
        for name, value in arguments.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def validate_params(self) -> None:
        """Raise `OptionError`/`ConfigError` naming the first bad option."""
        validate_options(type(self), self.get_params(deep=False))

    @classmethod
    def from_params(cls, params: Any, source: Path):
        """A model built from saved settings (a model document's "params"), checked like
        any other input; `RunError` naming `source` if they are not this model's."""
        from mnistlab.errors import RunError

        if not isinstance(params, Mapping):
            raise RunError(f"{source}: 'params' is not a JSON object")
        try:
            validate_options(cls, params)
            return cls(**params)
        except (ConfigError, TypeError) as error:
            raise RunError(f"{source} has bad settings: {error}") from None


# The options every hand-written training loop shares.
LOOP_OPTIONS: dict[str, Option] = {
    "batch_size": Option(Integer(1, 65_536), "examples per training step"),
    "num_steps": Option(Integer(1, 100_000_000),
                        "training steps (decides the length when given)",
                        flag="--steps", none="the length is num_epochs"),
    "num_epochs": Option(Integer(1, 100_000), "training epochs (when no steps are given)",
                         flag="--epochs", none="the length is num_steps"),
    "log_every": Option(Integer(1, 100_000_000), "record loss and accuracy every STEPS steps",
                        metavar="STEPS"),
}


def check_loop_length(options: Mapping[str, Any]) -> None:
    """A loop's length: num_steps when given, else num_epochs; one of them is needed."""
    if options.get("num_steps") is None and options.get("num_epochs") is None:
        raise OptionError("num_epochs", "must be given when num_steps is not")


# --------------------------------------------------------------------------------- inputs


def prepare_fit_input(model, X: Any, y: Any, *, dtype: Any = "numeric"
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Check training images and labels; learn `n_features_in_`, `image_shape_`, `classes_`.

    `X` is images (N, H, W) or features (N, F); it comes back as (N, F) with its dtype kept
    (uint8 pixels stay uint8). `y` comes back as class indices int32 into `classes_`.
    """
    image_shape = None
    if getattr(X, "ndim", None) == 3:
        X = np.asarray(X)
        image_shape = tuple(int(side) for side in X.shape[1:])
        X = X.reshape(len(X), -1)
    X, y = validate_data(model, X, y, reset=True, dtype=dtype, ensure_min_samples=1)
    check_classification_targets(y)
    classes, indices = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{type(model).__name__} needs at least 2 classes to learn, but the "
                         f"data hold only one class: {classes[0]!r}")
    model.classes_ = classes
    model.image_shape_ = image_shape or (X.shape[1],)
    return X, indices.astype(np.int32)


def prepare_input(model, X: Any, *, dtype: Any = "numeric") -> np.ndarray:
    """Check images for a fitted model: (N, H, W) or (N, F) with the fitted feature count."""
    check_is_fitted(model, "classes_")
    if getattr(X, "ndim", None) == 3:
        X = np.asarray(X)
        # Images of another shape with as many pixels would otherwise pass, scrambled.
        fitted_shape = tuple(getattr(model, "image_shape_", ()))
        if len(fitted_shape) == 2 and tuple(X.shape[1:]) != fitted_shape:
            raise ValueError(f"{type(model).__name__} was fitted on images of shape "
                             f"{fitted_shape}, got images of shape {tuple(X.shape[1:])}")
        X = X.reshape(len(X), int(np.prod(X.shape[1:])))  # -1 cannot size an empty batch
    # No images in, no probabilities out (0, classes): not an error.
    return validate_data(model, X, reset=False, dtype=dtype, ensure_min_samples=0)


def prepare_validation(model, validation_data: tuple | None, *, dtype: Any = "numeric"
                       ) -> tuple[np.ndarray, np.ndarray] | None:
    """Validation images and labels for a model that has just learned its classes."""
    if validation_data is None:
        return None
    images, labels = validation_data
    images = prepare_input(model, images, dtype=dtype)
    labels = np.asarray(labels).ravel()
    if len(labels) != len(images) or len(images) == 0:
        raise ValueError(f"validation_data needs as many labels as images (at least one), "
                         f"got {len(images)} images and {len(labels)} labels")
    unknown = np.setdiff1d(labels, model.classes_)
    if len(unknown):
        raise ValueError(f"validation labels {unknown[:5].tolist()} are not among the "
                         f"training classes")
    return images, np.searchsorted(model.classes_, labels).astype(np.int32)


# --------------------------------------------------------------------------------- contract


class ProbabilisticClassifierMixin(ClassifierMixin):
    """`predict` from `predict_proba` and `score` (accuracy), written once for all models."""

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each image, as a label from `classes_`."""
        probabilities = self.predict_proba(X)  # raises NotFittedError before fit
        return self.classes_[np.argmax(probabilities, axis=1)]


@runtime_checkable
class Classifier(Protocol):
    """Everything mnistlab's callers rely on from a model.

    Settings live in `__init__` (scikit-learn style; `get_params`/`set_params`/`clone` work)
    and are checked against the class's `options` table by `validate_params`, before `fit`
    touches any data. After `fit`: `classes_` (labels), `n_features_in_`, `image_shape_`
    (the shape of one image, or `(n_features,)`), `history_` (records, possibly empty),
    `examples_seen_`. `export_formats` lists what `mnistlab.export` can write for the model;
    a TensorFlow model offers `serving_module()`, the forest `onnx_model()`.
    """

    model_name: str
    options: dict[str, Option]
    export_formats: tuple[str, ...]

    def fit(self, X: Any, y: Any, *, validation_data: tuple | None = None,
            callback: Callable[[int, int, dict | None], None] | None = None) -> Classifier: ...

    def predict_proba(self, X: Any) -> np.ndarray: ...

    def predict(self, X: Any) -> np.ndarray: ...

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float: ...

    def count_parameters(self) -> int: ...

    def save(self, directory: str | Path) -> None: ...

    @classmethod
    def load(cls, directory: str | Path) -> Classifier: ...


def check_fitted(model, attribute: str) -> None:
    """`NotFittedError` unless `model` has `attribute` (fit or load first)."""
    if not hasattr(model, attribute):
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet: call fit or load")


def fitted_state(model) -> dict:
    """What a saved model's document records about its fit, JSON-ready."""
    state = {"num_steps_": getattr(model, "num_steps_", 0),
             "examples_seen_": int(getattr(model, "examples_seen_", 0))}
    state.update(classes_=np.asarray(model.classes_).tolist(),
                 image_shape_=list(model.image_shape_))
    return state


def restore_fitted_state(model, fitted: Mapping[str, Any], default_classes: Sequence) -> None:
    """Set the fitted attributes recorded by `fitted_state` (older documents lack classes
    and shape: MNIST's then)."""
    model.classes_ = np.asarray(fitted.get("classes_", list(default_classes)))
    model.image_shape_ = tuple(fitted.get("image_shape_", (28, 28)))
    model.n_features_in_ = int(np.prod(model.image_shape_))
    model.num_steps_ = fitted.get("num_steps_", 0)
    model.examples_seen_ = fitted.get("examples_seen_", 0)
    model.history_ = []
