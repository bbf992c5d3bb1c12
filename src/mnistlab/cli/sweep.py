"""`mnistlab sweep`: many runs over a grid or random ranges of a model's options, on Ray Tune."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mnistlab.cli.common import add_command, add_data_options
from mnistlab.errors import ConfigError
from mnistlab.runs import unique_run_dir

TRUE_WORDS = ("true", "on", "yes", "1")
FALSE_WORDS = ("false", "off", "no", "0")


def register(subparsers) -> None:
    """Add the sweep command."""
    parser = add_command(
        subparsers, "sweep", func=run_sweep,
        help="train many runs over a grid or random ranges of options, on Ray Tune",
        description="Train one model over a grid of option values and/or random draws, with "
                    "several seeds, each trial an ordinary run directory under --out, on Ray "
                    "Tune (a local Ray instance, or a cluster with --address). Prints a table, "
                    "writes sweep.json, sweep.csv and sweep.html, and names the best run: the "
                    "highest validation accuracy (--validation-split, 0.1 unless given); the "
                    "test set never chooses. A one-value grid fixes an option. On a cluster "
                    "(`ray start --head` on one host, `ray start --address HOST:PORT` on the "
                    "others): --address HOST:PORT, with --out on storage every host writes. "
                    "Needs Ray: pip install 'mnistlab[sweep]'.",
        examples=["mnistlab sweep softmax --preset tutorial-v3 --grid learning-rate=0.01,0.003 "
                  "--seeds 2 --limit-train 3000 --out runs/sweep-lr",
                  "mnistlab sweep softmax --random learning-rate=0.0001:0.1 --trials 3 "
                  "--grid batch-size=32,300 --limit-train 3000 --out runs/sweep-random",
                  "mnistlab sweep --resume runs/sweep-lr          # finish an interrupted "
                  "sweep"])
    parser.add_argument("model", nargs="?", default=None,
                        help="random-forest, softmax, mlp or cnn (may be left out with --preset)")
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help="start every trial from a named configuration")
    what = parser.add_argument_group("what to sweep")
    what.add_argument("--grid", action="append", default=[], metavar="OPTION=V1,V2,...",
                      help="try each value of a model option (repeatable; the trials are "
                           "every combination); OPTION as in train's flags, e.g. "
                           "learning-rate or learning_rate")
    what.add_argument("--random", action="append", default=[], metavar="OPTION=LOW:HIGH",
                      help="draw a numeric option from LOW to HIGH (log-uniformly when LOW > 0 "
                           "and HIGH/LOW >= 100), --trials times (repeatable)")
    what.add_argument("--trials", type=int, default=None, metavar="N",
                      help="random draws (for each grid combination), with --random")
    what.add_argument("--seeds", type=int, default=1, metavar="K",
                      help="train every point with K seeds, from --seed on (default 1)")
    what.add_argument("--seed", type=int, default=0,
                      help="the first seed; also draws the random values (default 0)")
    data = parser.add_argument_group("data")
    add_data_options(data)
    data.add_argument("--limit-train", type=int, default=None, metavar="N",
                      help="train on the first N training images only")
    data.add_argument("--limit-test", type=int, default=None, metavar="N",
                      help="test on the first N test images only")
    data.add_argument("--validation-split", type=float, default=None, metavar="F",
                      help="the fraction of the training images held out to choose the best "
                           "run (default 0.1)")
    where = parser.add_argument_group("where the trials run")
    where.add_argument("--cpus", type=int, default=None, metavar="N",
                       help="CPUs of the local Ray instance (default all)")
    where.add_argument("--cpus-per-trial", type=int, default=1, metavar="N",
                       help="CPUs (and TensorFlow threads) of each trial (default 1)")
    where.add_argument("--address", default=None, metavar="HOST:PORT",
                       help="run on the Ray cluster at this address (started with `ray start "
                            "--head`) instead of a local instance; --out must be on storage "
                            "every node writes")
    where.add_argument("--no-compile-cache", dest="compile_cache", action="store_false",
                       help="do not share compiled XLA code between trials (see README)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, default=None,
                        help="the sweep's directory (default runs/<time>-sweep-<model>-<random>)")
    output.add_argument("--resume", nargs="?", type=Path, const=True, default=None,
                        metavar="DIR",
                        help="continue the interrupted sweep in DIR (or --out): finished "
                             "trials are kept, interrupted ones continue, the rest train")
    output.add_argument("--overwrite", action="store_true", help="replace an existing sweep")
    output.add_argument("--quiet", action="store_true", help="no line per finished trial")


def _parse_value(option, name: str, text: str) -> Any:
    """One grid value of `option` from its text."""
    text = text.strip()
    if option.none is not None and text.lower() == "none":
        return None
    kind = type(option.constraint).__name__
    if kind == "Boolean":
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise ConfigError(f"--grid {name}: expected true or false, got {text!r}")
    parse = option.parse or (option.constraint.parse if option.constraint else str)
    try:
        return parse(text)
    except ValueError as error:
        raise ConfigError(f"--grid {name}: {error}") from None


def _split(argument: str, flag: str, form: str) -> tuple[str, str]:
    name, equals, values = argument.partition("=")
    if not equals or not name.strip() or not values.strip():
        raise ConfigError(f"{flag} wants {form}, got {argument!r}")
    return name.strip(), values


def parse_grid(model: str, arguments: list[str]) -> dict[str, list[Any]]:
    """`--grid learning-rate=0.01,0.003` as {"learning_rate": [0.01, 0.003]}."""
    from mnistlab.models import get_model_class
    from mnistlab.sweep import resolve_option_name

    grid: dict[str, list[Any]] = {}
    for argument in arguments:
        text, values = _split(argument, "--grid", "OPTION=V1,V2,...")
        name = resolve_option_name(model, text)
        if name in grid:
            raise ConfigError(f"--grid gives {name} twice")
        option = get_model_class(model).options[name]
        grid[name] = [_parse_value(option, name, value) for value in values.split(",")]
    return grid


def parse_random(model: str, arguments: list[str]) -> dict[str, tuple[float, float]]:
    """`--random learning-rate=0.0001:0.1` as {"learning_rate": (0.0001, 0.1)}."""
    from mnistlab.sweep import resolve_option_name

    ranges: dict[str, tuple[float, float]] = {}
    for argument in arguments:
        text, bounds = _split(argument, "--random", "OPTION=LOW:HIGH")
        name = resolve_option_name(model, text)
        low, colon, high = bounds.partition(":")
        try:
            if not colon:
                raise ValueError
            ranges[name] = (float(low), float(high))
        except ValueError:
            raise ConfigError(f"--random {name} wants LOW:HIGH, two numbers, got "
                              f"{bounds!r}") from None
    return ranges


def run_sweep(args: argparse.Namespace) -> int:
    """`mnistlab sweep`: plan, run on Ray, print the table and the best run."""
    from mnistlab.config import PRESETS
    from mnistlab.sweep import import_ray, sweep

    import_ray()  # before anything else: without Ray, say how to install it
    out = args.out
    if args.resume is not None and args.resume is not True:
        if out is not None and Path(out) != args.resume:
            raise ConfigError("--resume DIR names the sweep; drop --out (or give --resume "
                              "alone with --out DIR)")
        out = args.resume
    if args.resume is not None and out is None:
        raise ConfigError("--resume needs the sweep's directory: --resume DIR")
    if args.resume is not None and args.overwrite:
        raise ConfigError("--resume keeps what the sweep finished; --overwrite replaces it: "
                          "give one of them")
    model = args.model
    if model is None and args.preset is not None:
        if args.preset not in PRESETS:
            from mnistlab.models import unknown_name_message

            raise ConfigError(unknown_name_message("preset", args.preset, PRESETS))
        model = PRESETS[args.preset].model
    continuing = args.resume is not None and model is None
    if continuing:
        given = [flag for flag, value in (("--grid", args.grid), ("--random", args.random),
                                          ("--trials", args.trials)) if value]
        if given:
            raise ConfigError(f"--resume continues the sweep with its own settings; drop "
                              f"{', '.join(given)} (or name the model to check them)")
        grid, ranges = {}, {}
    else:
        if model is None:
            raise ConfigError("name a model or a preset to sweep")
        from mnistlab.config import TRAINABLE_MODELS

        if model not in TRAINABLE_MODELS:
            from mnistlab.models import unknown_name_message

            raise ConfigError(unknown_name_message("model to sweep", model, TRAINABLE_MODELS))
        grid, ranges = parse_grid(model, args.grid), parse_random(model, args.random)
    if out is None:
        out = unique_run_dir(f"sweep-{args.preset or model}")
    try:
        result = sweep(None if continuing else model, preset=args.preset, grid=grid,
                       random=ranges, trials=args.trials, seeds=args.seeds, seed=args.seed,
                       out=out, dataset=args.dataset, data_dir=args.data_dir,
                       validation_split=args.validation_split, limit_train=args.limit_train,
                       limit_test=args.limit_test, cpus=args.cpus,
                       cpus_per_trial=args.cpus_per_trial, address=args.address,
                       resume=args.resume is not None, overwrite=args.overwrite,
                       compile_cache=args.compile_cache, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"mnistlab: sweep interrupted; finished trials are kept; resume with: "
              f"mnistlab sweep --resume {out}", file=sys.stderr)
        return 130
    _print_result(result)
    completed = sum(item.status == "completed" for item in result.results)
    return 0 if completed else 1


def _print_result(result) -> None:
    from rich.console import Console
    from rich.table import Table

    header, *rows = result.table()
    table = Table(title=f"sweep in {result.out}")
    for column in header:
        table.add_column(column, justify="left" if column in ("trial", "options", "status")
                         else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    best = result.best
    if best is not None:
        console.print(f"best run (highest validation accuracy; the test set does not "
                      f"choose): {best.run_dir} ({best.trial.describe() or 'defaults'}, seed "
                      f"{best.trial.seed}): validation {best.val_accuracy:.4f}, test "
                      f"{best.test_accuracy:.4f}", highlight=False)
    else:
        console.print("no trial completed: there is no best run", highlight=False)
    failed = result.failed
    if failed:
        console.print(f"{len(failed)} of {len(result.results)} trials failed (errors in "
                      f"{result.out / 'sweep.json'})", highlight=False)
    console.print(f"report: {result.out / 'sweep.html'}", highlight=False)
