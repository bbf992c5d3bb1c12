"""Run configurations as frozen dataclasses, and the named presets derived from them.

A `TrainConfig` says what to train (a model name and that model's options, a frozen mapping
checked by the model's own option table), on which data, with which seed. The options and
their defaults are declared once, by the model (`mnistlab.models`); a preset states only
what differs from them. The resolved configuration is saved with every run, so a run can
always be explained and repeated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from mnistlab.errors import ConfigError


class FrozenOptions(Mapping):
    """An immutable, ordered mapping of option names to values (a model's resolved options)."""

    def __init__(self, items: Mapping[str, Any] | None = None):
        self._items = dict(items or {})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getattr__(self, name: str) -> Any:
        # `config.model_config.batch_size` reads as well as `config.model_config["batch_size"]`.
        try:
            return self.__dict__["_items"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __hash__(self) -> int:
        return hash(tuple((key, repr(value)) for key, value in self._items.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __repr__(self) -> str:
        return f"FrozenOptions({self._items!r})"


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs, apart from where the data files are."""

    model: str = "softmax"
    model_config: FrozenOptions = field(default_factory=FrozenOptions)
    preset: str | None = None
    dataset: str = "mnist"
    seed: int = 0
    validation_split: float = 0.0
    limit_train: int | None = None
    limit_test: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-ready data."""
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        data["model_config"] = {name: list(value) if isinstance(value, tuple) else value
                                for name, value in self.model_config.items()}
        return data


@dataclass(frozen=True)
class Preset:
    """A named configuration: a model and the options that differ from its defaults."""

    model: str
    description: str
    options: dict[str, Any]
    published_accuracy: float | None = None  # the tutorial's own single-run number


# The `cnn` preset's options, which `cnn-elastic` extends.
_CNN_OPTIONS = {"width": 16, "depth": 3, "batch_norm": True, "dropout": 0.2, "augment": True,
                "learning_rate": 0.003, "weight_decay": 0.005, "schedule": "one-cycle",
                "warmup_fraction": 0.2, "label_smoothing": 0.1, "ema_decay": 0.999,
                "num_epochs": 24}

PRESETS: dict[str, Preset] = {
    "tutorial-rf": Preset(
        "random-forest", "The tutorial's RandomForestClassifier(n_estimators=50) on raw "
                         "pixels.", {}, 0.9685),
    "tutorial-v1": Preset(
        "softmax", "Tutorial v1: 4000 steps of batch 32 from a repeated stream shuffled "
                   "through a 5000-example buffer, Adam 0.01, random-normal init.",
        {"num_steps": 4000, "repeat": True, "init": "normal"}, 0.9031),
    "tutorial-v2": Preset(
        "softmax", "Tutorial v2: 10 epochs of batch 32, shuffle buffer 5000, Adam 0.01 (the "
                   "tutorial built a new Adam at every step, this preset builds it once).",
        {"init": "normal"}, 0.9149),
    "tutorial-v3": Preset(
        "softmax", "Tutorial v3: 10 epochs of batch 300, shuffle buffer 5000, Adam 0.01.",
        {"batch_size": 300, "init": "normal"}, 0.9103),
    "tutorial-v1-as-written": Preset(
        "softmax", "Tutorial v1 as its cells are written: the loss is the log of "
                   "probabilities clipped to [1e-9, 1] instead of a cross-entropy from logits.",
        {"num_steps": 4000, "repeat": True, "init": "normal", "loss": "clipped"}, 0.9031),
    "tutorial-v2-as-written": Preset(
        "softmax", "Tutorial v2 as its cells are written: a new Adam optimizer at every step "
                   "(so every update is Adam's first, about 0.01 times the gradient's sign) "
                   "and Keras' cross-entropy of clipped probabilities.",
        {"init": "normal", "loss": "clipped-keras", "fresh_optimizer": True}, 0.9149),
    "tutorial-v3-as-written": Preset(
        "softmax", "Tutorial v3 as its cells are written: the loss is the log of "
                   "probabilities clipped to [1e-9, 1].",
        {"batch_size": 300, "init": "normal", "loss": "clipped"}, 0.9103),
    "softmax-best": Preset(
        "softmax", "The best linear classifier found (chosen on a 50k/10k validation split): "
                   "zeros init, Adam 0.003 with cosine decay, batch 256, full shuffle, "
                   "20 epochs.",
        {"num_epochs": 20, "batch_size": 256, "shuffle_buffer": None, "learning_rate": 0.003,
         "schedule": "cosine"}),
    "mlp": Preset(
        "mlp", "Two hidden layers of 1024 ReLU units with dropout, AdamW with a one-cycle "
               "schedule, label smoothing (XLA-compiled).",
        {"width": 1024, "dropout": 0.3, "weight_decay": 0.0001, "schedule": "one-cycle",
         "warmup_fraction": 0.2, "label_smoothing": 0.1, "num_epochs": 20}),
    "cnn-fast": Preset(
        "cnn", "The fastest to 99%: conv32-pool-conv64-pool-dense10, batch norm after the "
               "pooling, one-cycle AdamW, label smoothing, 1800 steps of 64 (1.9 epochs, "
               "about 17 s on 2 cores).",
        {"convs_per_block": 1, "dense_units": 0, "batch_norm": True, "pool_first": True,
         "learning_rate": 0.01, "schedule": "one-cycle", "warmup_fraction": 0.15,
         "label_smoothing": 0.1, "batch_size": 64, "num_steps": 1800}),
    "cnn": Preset(
        "cnn", "The accurate one: three blocks of two batch-normalised 3x3 convolutions "
               "(16, 32, 64 filters), dense 128, dropout, on-the-fly augmentation, one-cycle "
               "AdamW, label smoothing, weight EMA, 24 epochs (about 8 minutes on 2 cores).",
        _CNN_OPTIONS),
    "cnn-elastic": Preset(
        "cnn", "The cnn preset with elastic distortion (strength 17, sigma 4) added to its "
               "augmentation: as accurate alone, wrong on other images; five of each make "
               "a 0.9975 ensemble (about 8 minutes on 2 cores).",
        {**_CNN_OPTIONS, "elastic": 17.0}),
}

# Models trained from options on the command line (an ensemble is built from runs instead).
TRAINABLE_MODELS = ("random-forest", "softmax", "mlp", "cnn")


def _model_class(model: str) -> type:
    from mnistlab.models import get_model_class

    return get_model_class(model)


def _apply_length(options: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Naming the length in steps replaces an epoch count from the defaults or a preset,
    and the other way round."""
    if "num_steps" in overrides and "num_epochs" not in overrides:
        options["num_epochs"] = None
    if "num_epochs" in overrides and "num_steps" not in overrides:
        options["num_steps"] = None


def resolve_options(model: str, preset: str | None = None,
                    overrides: Mapping[str, Any] | None = None) -> FrozenOptions:
    """A model's full options: its defaults, then the preset's, then `overrides`; checked
    by the model's own option table (`ConfigError` naming the first bad one)."""
    from mnistlab.models.base import option_defaults, validate_options

    model_class = _model_class(model)
    overrides = dict(overrides or {})
    if "num_steps" in overrides and "num_epochs" in overrides \
            and None not in (overrides["num_steps"], overrides["num_epochs"]):
        raise ConfigError("give exactly one of num_steps (steps) and num_epochs (epochs)")
    options = option_defaults(model_class)
    for layer in ((PRESETS[preset].options if preset else {}), overrides):
        unknown = sorted(set(layer) - set(options))
        if unknown:
            raise ConfigError(f"option {unknown[0]!r} does not apply to model {model!r}")
        _apply_length(options, layer)
        options.update(layer)
    validate_options(model_class, options)
    return FrozenOptions(options)


def _check_run_options(config: TrainConfig) -> None:
    for name in ("limit_train", "limit_test"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 1 <= value <= 10 ** 9):
            raise ConfigError(f"{name} must be a whole number from 1 to 1,000,000,000, "
                              f"got {value!r}")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) \
            or not 0 <= config.seed < 2 ** 32:
        raise ConfigError(f"seed must be a whole number from 0 to 2**32 - 1, got {config.seed!r}")
    split = config.validation_split
    if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0.0 <= split < 1.0:
        raise ConfigError(f"validation_split must be at least 0 and below 1, got {split!r}")
    if not isinstance(config.dataset, str) or not config.dataset:
        raise ConfigError(f"dataset must be a name or a directory, got {config.dataset!r}")


def validate(config: TrainConfig) -> TrainConfig:
    """Check a configuration's values; raise `ConfigError` naming the first bad one."""
    from mnistlab.models import MODEL_CLASSES, unknown_name_message
    from mnistlab.models.base import validate_options

    if config.model not in MODEL_CLASSES:
        raise ConfigError(unknown_name_message("model", config.model, MODEL_CLASSES))
    if config.preset is not None and config.preset not in PRESETS:
        raise ConfigError(unknown_name_message("preset", config.preset, PRESETS))
    _check_run_options(config)
    if config.model == "ensemble":
        _check_members(config.model_config.get("members"))
    else:
        validate_options(_model_class(config.model), config.model_config)
    return config


def _check_members(members: Any) -> None:
    if (not isinstance(members, (tuple, list)) or not members
            or any(not isinstance(member, str) for member in members)):
        raise ConfigError("an ensemble needs a list of at least one member run directory")


def make_config(
    model: str | None = None,
    *,
    preset: str | None = None,
    model_options: Mapping[str, Any] | None = None,
    **run_options: Any,
) -> TrainConfig:
    """Build and validate a `TrainConfig` from a model name and/or a preset plus overrides.

    `model_options` override the model's options (after the preset's); any other keyword
    overrides a field of `TrainConfig` itself. Unknown names are errors.

    >>> make_config(preset="tutorial-v3").model_config["batch_size"]
    300
    """
    from mnistlab.models import MODEL_CLASSES, unknown_name_message

    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(unknown_name_message("preset", preset, PRESETS))
        if model is not None and model != PRESETS[preset].model:
            raise ConfigError(
                f"preset {preset!r} is for model {PRESETS[preset].model!r}, not {model!r}")
        model = PRESETS[preset].model
    if model is None:
        raise ConfigError("name a model or a preset")
    if model not in MODEL_CLASSES:
        raise ConfigError(unknown_name_message("model", model, MODEL_CLASSES))
    run_known = {item.name for item in fields(TrainConfig)} - {"model", "model_config"}
    unknown = sorted(set(run_options) - run_known)
    if unknown:
        raise ConfigError(f"unknown run option {unknown[0]!r}")
    if model == "ensemble":
        members = (model_options or {}).get("members", ())
        _check_members(members)
        options = FrozenOptions({"members": tuple(members)})
    else:
        options = resolve_options(model, preset, model_options)
    config = TrainConfig(model=model, model_config=options, preset=preset, **run_options)
    _check_run_options(config)
    return config


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """Rebuild a `TrainConfig` saved by `TrainConfig.to_dict` (e.g. from a run's config.json);
    `ConfigError` naming the field when it does not fit."""
    if not isinstance(data, Mapping):
        raise ConfigError("the saved configuration is not a JSON object")
    known = {item.name for item in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"the saved configuration has an unknown field {unknown[0]!r}")
    options = data.get("model_config", {})
    if not isinstance(options, Mapping):
        raise ConfigError("the saved configuration's model_config is not a JSON object")
    if data.get("model") == "ensemble" and isinstance(options.get("members"), list):
        options = {"members": tuple(options["members"])}
    try:
        config = TrainConfig(**{**data, "model_config": FrozenOptions(options)})
    except TypeError as error:
        raise ConfigError(f"the saved configuration does not fit this version: {error}") from None
    return validate(config)
