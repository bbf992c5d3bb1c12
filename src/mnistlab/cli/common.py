"""What the commands share: registering a command with its help and examples, the data and
run options, and the model options' flags, derived from the models' own option tables."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mnistlab.errors import ConfigError


def add_command(subparsers, name: str, *, help: str, examples: Sequence[str],
                func: Callable[[argparse.Namespace], int],
                description: str | None = None) -> argparse.ArgumentParser:
    """Add command `name` with a one-line help, a description and examples (each an
    example command line, optionally followed by '  # comment')."""
    lines = "\n".join(f"  {example}" for example in examples)
    parser = subparsers.add_parser(
        name, help=help, description=description or help[0].upper() + help[1:] + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"example{'s' if len(examples) > 1 else ''}:\n{lines}")
    parser.set_defaults(func=func)
    return parser


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """--dataset and --data-dir."""
    parser.add_argument("--dataset", default="mnist",
                        help="dataset name or a directory with the four IDX files (default mnist)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory holding the dataset's files (else MNISTLAB_DATA_DIR, "
                             "the cache, system directories, mirrors)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """--seed, --limit-train, --limit-test, --overwrite, --quiet."""
    parser.add_argument("--seed", type=int, default=0, help="one seed for everything (default 0)")
    parser.add_argument("--limit-train", type=int, default=None, metavar="N",
                        help="train on the first N training images only")
    parser.add_argument("--limit-test", type=int, default=None, metavar="N",
                        help="test on the first N test images only")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


# ------------------------------------------------------------------------------ model flags


def _model_classes(models: Sequence[str]) -> dict[str, type]:
    from mnistlab.models import get_model_class

    return {name: get_model_class(name) for name in models}


def _describe_default(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _per_model(values: dict[str, str]) -> str:
    """'a' when every model says 'a', else 'softmax: a; mlp, cnn: b'."""
    distinct = list(dict.fromkeys(values.values()))
    if len(distinct) == 1:
        return distinct[0]
    return "; ".join(", ".join(model for model, value in values.items() if value == text)
                     + f": {text}" for text in distinct)


def _parser_for(option, flag: str) -> Callable[[str], Any]:
    parse = option.parse or option.constraint.parse

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{flag}: {error}") from None

    convert.__name__ = flag  # argparse names the converter in its errors
    return convert


def add_model_options(parser: argparse.ArgumentParser, models: Sequence[str]) -> None:
    """One flag per model option of `models`, grouped by the models that have it, with the
    option's help, range and defaults; only flags the user gives are passed on."""
    from mnistlab.models.base import option_defaults

    classes = _model_classes(models)
    owners: dict[str, list[str]] = {}
    for model, model_class in classes.items():
        for name, option in model_class.options.items():
            if option.cli:
                owners.setdefault(name, []).append(model)
    groups: dict[tuple[str, ...], argparse._ArgumentGroup] = {}
    for name, having in owners.items():
        key = tuple(having)
        if key not in groups:
            groups[key] = parser.add_argument_group(f"options of {', '.join(having)}")
        options = {model: classes[model].options[name] for model in having}
        first = options[having[0]]
        flag = first.flag_name(name)
        defaults = {model: _describe_default(option_defaults(classes[model])[name])
                    for model in having}
        ranges = {model: option.constraint.describe() for model, option in options.items()
                  if option.constraint is not None}
        help_text = _per_model({model: option.help for model, option in options.items()})
        detail = [f"default {_per_model(defaults)}"]
        if ranges and first.parse is None:
            detail.insert(0, _per_model(ranges))
        help_text += f" ({'; '.join(detail)})"
        if first.constraint is not None and first.constraint.__class__.__name__ == "Boolean":
            groups[key].add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                     default=argparse.SUPPRESS, help=help_text)
        else:
            metavar = first.metavar or {"Integer": "N", "Real": "X"}.get(
                type(first.constraint).__name__, "NAME")
            groups[key].add_argument(flag, dest=name, type=_parser_for(first, flag),
                                     default=argparse.SUPPRESS, metavar=metavar,
                                     help=help_text.replace("%", "%%"))


def model_options_from_args(args: argparse.Namespace, model: str,
                            models: Sequence[str]) -> dict[str, Any]:
    """The model options the user gave as flags; a flag of another model is an error that
    names the flag."""
    classes = _model_classes(models)
    given = {}
    for model_class in classes.values():
        for name, option in model_class.options.items():
            if hasattr(args, name):
                if name not in classes[model].options:
                    raise ConfigError(f"{option.flag_name(name)} does not apply to model "
                                      f"{model!r}")
                given[name] = getattr(args, name)
    return given


def model_option_names(models: Sequence[str]) -> set[str]:
    """The names of every command line model option of `models`."""
    return {name for model_class in _model_classes(models).values()
            for name, option in model_class.options.items() if option.cli}


def option_flag(option: str) -> str:
    """The command line flag of a model option (`n_estimators` -> `--trees`)."""
    from mnistlab.config import TRAINABLE_MODELS

    for model_class in _model_classes(TRAINABLE_MODELS).values():
        if option in model_class.options:
            return model_class.options[option].flag_name(option)
    return "--" + option.replace("_", "-")
