"""Run configurations as frozen dataclasses, and the named presets derived from them.

A `TrainConfig` says what to train (a model name and that model's own frozen options), on
which data, with which seed. Presets override a few fields of the defaults; the resolved
configuration is saved with every run, so a run can always be explained and repeated.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from mnistlab.errors import ConfigError


@dataclass(frozen=True)
class SoftmaxConfig:
    """Options of the tutorial's softmax regression (see `SoftmaxRegression`)."""

    optimizer: str = "adam"
    learning_rate: float = 0.01
    batch_size: int = 32
    num_steps: int | None = None
    num_epochs: int | None = 10
    repeat: bool = False
    shuffle_buffer: int | None = 5000
    init: str = "normal"
    l2: float = 0.0
    schedule: str = "constant"
    log_every: int = 50


# The softmax model's named choices (its builders live in models/softmax.py; a test keeps
# the two in step). Checked here so a typo fails before any data is loaded.
SOFTMAX_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adam", "sgd", "momentum", "rmsprop", "adagrad"),
    "init": ("normal", "zeros"),
    "schedule": ("constant", "cosine", "linear"),
}

# The same for the neural models (builders in models/neural.py).
NEURAL_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adam", "adamw", "sgd"),
    "schedule": ("constant", "cosine", "one-cycle"),
}


@dataclass(frozen=True)
class ForestConfig:
    """Options of the random forest on raw pixels (see `RandomForest`)."""

    n_estimators: int = 50
    max_depth: int | None = None
    n_jobs: int = -1


@dataclass(frozen=True)
class NeuralConfig:
    """Options shared by the neural models (see `NeuralClassifier`)."""

    width: int = 32
    depth: int = 2
    dropout: float = 0.0
    batch_norm: bool = False
    augment: bool = False
    max_shift: float = 2.0
    max_rotation: float = 10.0
    max_zoom: float = 0.1
    optimizer: str = "adamw"
    learning_rate: float = 0.001
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_fraction: float = 0.0
    label_smoothing: float = 0.0
    ema_decay: float = 0.0
    batch_size: int = 128
    num_steps: int | None = None
    num_epochs: int | None = 10
    log_every: int = 50


@dataclass(frozen=True)
class MLPConfig(NeuralConfig):
    """Options of the multilayer perceptron (see `MLP`): `width` units per hidden layer."""

    width: int = 512


@dataclass(frozen=True)
class CNNConfig(NeuralConfig):
    """Options of the convolutional network (see `CNN`): `width` filters in the first block."""

    convs_per_block: int = 2
    dense_units: int = 128


@dataclass(frozen=True)
class EnsembleConfig:
    """The member runs of an ensemble (see `EnsembleModel` and `mnistlab ensemble`)."""

    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs, apart from where the data files are."""

    model: str = "softmax"
    model_config: Any = field(default_factory=SoftmaxConfig)
    preset: str | None = None
    dataset: str = "mnist"
    seed: int = 0
    validation_split: float = 0.0
    limit_train: int | None = None
    limit_test: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-ready data."""
        return dataclasses.asdict(self)


MODEL_CONFIGS: dict[str, type] = {"softmax": SoftmaxConfig, "random-forest": ForestConfig,
                                  "mlp": MLPConfig, "cnn": CNNConfig,
                                  "ensemble": EnsembleConfig}


@dataclass(frozen=True)
class Preset:
    """A named configuration: a model and the options that differ from its defaults."""

    model: str
    description: str
    options: dict[str, Any]


PRESETS: dict[str, Preset] = {
    "tutorial-rf": Preset(
        "random-forest",
        "The tutorial's RandomForestClassifier(n_estimators=50) on raw pixels (published 0.9685).",
        {"n_estimators": 50},
    ),
    "tutorial-v1": Preset(
        "softmax",
        "Tutorial v1: 4000 steps of batch 32 from a repeated stream shuffled through a "
        "5000-example buffer, Adam 0.01, random-normal init (published 0.9031).",
        {"num_steps": 4000, "num_epochs": None, "batch_size": 32, "repeat": True,
         "shuffle_buffer": 5000, "optimizer": "adam", "learning_rate": 0.01, "init": "normal"},
    ),
    "tutorial-v2": Preset(
        "softmax",
        "Tutorial v2: 10 epochs of batch 32, shuffle buffer 5000, Adam 0.01 (published 0.9149; "
        "the tutorial built a new Adam at every step, this preset builds it once).",
        {"num_epochs": 10, "num_steps": None, "batch_size": 32, "repeat": False,
         "shuffle_buffer": 5000, "optimizer": "adam", "learning_rate": 0.01, "init": "normal"},
    ),
    "tutorial-v3": Preset(
        "softmax",
        "Tutorial v3: 10 epochs of batch 300, shuffle buffer 5000, Adam 0.01 (published 0.9103).",
        {"num_epochs": 10, "num_steps": None, "batch_size": 300, "repeat": False,
         "shuffle_buffer": 5000, "optimizer": "adam", "learning_rate": 0.01, "init": "normal"},
    ),
    "softmax-best": Preset(
        "softmax",
        "The best linear classifier found (chosen on a 50k/10k validation split): zeros init, "
        "Adam 0.003 with cosine decay, batch 256, full shuffle, 20 epochs.",
        {"num_epochs": 20, "num_steps": None, "batch_size": 256, "repeat": False,
         "shuffle_buffer": None, "optimizer": "adam", "learning_rate": 0.003, "init": "zeros",
         "l2": 0.0, "schedule": "cosine"},
    ),
    "mlp": Preset(
        "mlp",
        "Two hidden layers of 1024 ReLU units with dropout, AdamW with a one-cycle schedule, "
        "label smoothing (XLA-compiled).",
        {"width": 1024, "depth": 2, "dropout": 0.3, "optimizer": "adamw",
         "learning_rate": 0.001, "weight_decay": 0.0001, "schedule": "one-cycle",
         "warmup_fraction": 0.2, "label_smoothing": 0.1, "batch_size": 128,
         "num_epochs": 20, "num_steps": None},
    ),
    "cnn-fast": Preset(
        "cnn",
        "The fastest to 99%: conv32-pool-conv64-pool-dense10 with batch norm, one-cycle AdamW, "
        "1900 steps of 64 (about 2 epochs, 75 s on 2 cores).",
        {"width": 32, "depth": 2, "convs_per_block": 1, "dense_units": 0, "batch_norm": True,
         "optimizer": "adamw", "learning_rate": 0.003, "schedule": "one-cycle",
         "warmup_fraction": 0.15, "batch_size": 64, "num_steps": 1900, "num_epochs": None},
    ),
    "cnn": Preset(
        "cnn",
        "The accurate one: two blocks of two batch-normalised 3x3 convolutions, dense 128, "
        "dropout, on-the-fly augmentation, one-cycle AdamW, label smoothing, weight EMA, "
        "11 epochs.",
        {"width": 16, "depth": 2, "convs_per_block": 2, "dense_units": 128,
         "batch_norm": True, "dropout": 0.2, "augment": True, "optimizer": "adamw",
         "learning_rate": 0.003, "weight_decay": 0.005, "schedule": "one-cycle",
         "warmup_fraction": 0.2, "label_smoothing": 0.1, "ema_decay": 0.998,
         "batch_size": 128, "num_epochs": 11, "num_steps": None},
    ),
}


def _check_positive_int(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigError(f"{name} must be a positive whole number, got {value!r}")


def _check_choices(options: Any, choices: dict[str, tuple[str, ...]]) -> None:
    for name, known in choices.items():
        if getattr(options, name) not in known:
            raise ConfigError(f"unknown {name} {getattr(options, name)!r} "
                              f"(known: {', '.join(known)})")


def _check_length_and_rate(options: Any) -> None:
    """Exactly one of steps and epochs; a finite positive learning rate."""
    if (options.num_steps is None) == (options.num_epochs is None):
        raise ConfigError("give exactly one of num_steps (--steps) and num_epochs (--epochs)")
    if not (isinstance(options.learning_rate, (int, float))
            and math.isfinite(options.learning_rate) and options.learning_rate > 0):
        raise ConfigError(f"learning_rate must be a positive number, got {options.learning_rate!r}")


def validate(config: TrainConfig) -> TrainConfig:
    """Check a configuration's values; raise `ConfigError` naming the first bad one."""
    if config.model not in MODEL_CONFIGS:
        known = ", ".join(sorted(MODEL_CONFIGS))
        raise ConfigError(f"unknown model {config.model!r} (known: {known})")
    if not isinstance(config.model_config, MODEL_CONFIGS[config.model]):
        raise ConfigError(f"model {config.model!r} needs a {MODEL_CONFIGS[config.model].__name__}")
    _check_positive_int("limit_train", config.limit_train)
    _check_positive_int("limit_test", config.limit_test)
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        raise ConfigError(f"seed must be a whole number >= 0, got {config.seed!r}")
    if not (0.0 <= config.validation_split < 1.0):
        raise ConfigError(
            f"validation_split must be at least 0 and below 1, got {config.validation_split!r}")
    options = config.model_config
    if isinstance(options, SoftmaxConfig):
        for name in ("batch_size", "num_steps", "num_epochs", "log_every"):
            _check_positive_int(name, getattr(options, name))
        buffer = options.shuffle_buffer
        if buffer is not None and (isinstance(buffer, bool) or not isinstance(buffer, int)
                                   or buffer < 0):
            raise ConfigError(f"shuffle_buffer must be a whole number >= 0 (0: a full shuffle), "
                              f"got {options.shuffle_buffer!r}")
        _check_choices(options, SOFTMAX_CHOICES)
        _check_length_and_rate(options)
        if not (math.isfinite(options.l2) and options.l2 >= 0):
            raise ConfigError(f"l2 must be a number >= 0, got {options.l2!r}")
    if isinstance(options, NeuralConfig):
        _check_choices(options, NEURAL_CHOICES)
        for name in ("width", "depth", "batch_size", "num_steps", "num_epochs", "log_every"):
            _check_positive_int(name, getattr(options, name))
        _check_length_and_rate(options)
        for name in ("dropout", "label_smoothing", "ema_decay", "warmup_fraction", "max_zoom"):
            value = getattr(options, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
                raise ConfigError(f"{name} must be a number at least 0 and below 1, "
                                  f"got {value!r}")
        for name in ("weight_decay", "max_shift", "max_rotation"):
            value = getattr(options, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
    if isinstance(options, EnsembleConfig) and (
            isinstance(options.members, str) or not options.members):
        raise ConfigError("an ensemble needs a list of at least one member run directory")
    if isinstance(options, ForestConfig):
        _check_positive_int("n_estimators", options.n_estimators)
        _check_positive_int("max_depth", options.max_depth)
        if (isinstance(options.n_jobs, bool) or not isinstance(options.n_jobs, int)
                or not (options.n_jobs > 0 or options.n_jobs == -1)):
            raise ConfigError(f"n_jobs must be a positive number of jobs, or -1 for all cores, "
                              f"got {options.n_jobs!r}")
    return config


def make_config(
    model: str | None = None,
    *,
    preset: str | None = None,
    model_options: dict[str, Any] | None = None,
    **run_options: Any,
) -> TrainConfig:
    """Build and validate a `TrainConfig` from a model name and/or a preset plus overrides.

    `model_options` override fields of the model's config (after the preset's); any other
    keyword overrides a field of `TrainConfig` itself. Unknown names are errors.

    >>> make_config(preset="tutorial-v3").model_config.batch_size
    300
    """
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
        if model is not None and model != PRESETS[preset].model:
            raise ConfigError(
                f"preset {preset!r} is for model {PRESETS[preset].model!r}, not {model!r}")
        model = PRESETS[preset].model
    if model is None:
        raise ConfigError("name a model or a preset")
    if model not in MODEL_CONFIGS:
        raise ConfigError(f"unknown model {model!r} (known: {', '.join(sorted(MODEL_CONFIGS))})")
    config_class = MODEL_CONFIGS[model]
    known = {f.name for f in dataclasses.fields(config_class)}
    model_options = dict(model_options or {})
    unknown = sorted(set(model_options) - known)
    if unknown:
        raise ConfigError(f"option {unknown[0]!r} does not apply to model {model!r}")
    options = dict(PRESETS[preset].options) if preset else {}
    # Naming the length in steps replaces an epoch count from the defaults or the preset,
    # and the other way round; naming both is a contradiction the validation reports.
    if "num_steps" in model_options and "num_epochs" not in model_options:
        options["num_epochs"] = None
    if "num_epochs" in model_options and "num_steps" not in model_options:
        options["num_steps"] = None
    options.update(model_options)
    options = {name: value for name, value in options.items() if name in known}
    run_known = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "model_config"}
    unknown = sorted(set(run_options) - run_known)
    if unknown:
        raise ConfigError(f"unknown run option {unknown[0]!r}")
    config = TrainConfig(model=model, model_config=config_class(**options), preset=preset,
                         **run_options)
    return validate(config)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a `TrainConfig` saved by `TrainConfig.to_dict` (e.g. from a run's config.json)."""
    data = dict(data)
    model = data.get("model")
    if model not in MODEL_CONFIGS:
        raise ConfigError(f"unknown model {model!r} in saved configuration")
    try:
        data["model_config"] = MODEL_CONFIGS[model](**data.get("model_config", {}))
        return TrainConfig(**data)
    except TypeError as error:
        raise ConfigError(f"the saved configuration does not fit this version: {error}") from None
