"""Commands that train and evaluate models: train, evaluate, reproduce (runs and compare are in
`cli/runs.py`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mnistlab.cli.common import (
    add_command,
    add_data_options,
    add_model_options,
    add_run_options,
    model_options_from_args,
)
from mnistlab.config import PRESETS, TRAINABLE_MODELS
from mnistlab.errors import ConfigError


def register(subparsers) -> None:
    """Add the training commands."""
    presets = "\n".join(f"  {name:14} ({preset.model}) {preset.description}"
                        for name, preset in PRESETS.items())
    train = add_command(
        subparsers, "train", help="train a model and write a run directory", func=run_train,
        description="Train a model, evaluate it on the test set, and write a run directory "
                    f"(config, history, metrics, model, figures).\n\npresets:\n{presets}",
        examples=["mnistlab train softmax --preset tutorial-v1",
                  "mnistlab train softmax --epochs 5 --batch-size 128 --optimizer sgd "
                  "--learning-rate 0.5",
                  "mnistlab train random-forest --trees 100 --out runs/forest100",
                  "mnistlab train cnn --preset cnn-fast --out runs/cnn-fast",
                  "mnistlab train mlp --width 256 --depth 3 --dropout 0.2 --schedule one-cycle"])
    train.add_argument("model", nargs="?", default=None,
                       help="random-forest, softmax, mlp or cnn (may be left out with --preset)")
    train.add_argument("--preset", choices=None, default=None, metavar="NAME",
                       help=f"start from a named configuration: {', '.join(PRESETS)}")
    add_model_options(train, TRAINABLE_MODELS)
    train.add_argument("--validation-split", type=float, default=0.0, metavar="F",
                       help="hold out this fraction of the training set for validation")
    add_data_options(train)
    train.add_argument("--out", type=Path, default=None,
                       help="run directory (default runs/<time>-<model>)")
    add_run_options(train)

    evaluate = add_command(
        subparsers, "evaluate", help="reload a run's model and recompute its metrics",
        func=run_evaluate, examples=["mnistlab evaluate runs/reproduction/tutorial-v1"])
    evaluate.add_argument("run_dir", type=Path, help="a completed run directory")
    evaluate.add_argument("--data-dir", type=Path, default=None,
                          help="where the run's dataset is")

    reproduce = add_command(
        subparsers, "reproduce", help="reproduce the tutorial end to end and write a report",
        func=run_reproduce,
        description="Train the tutorial's forest and its three softmax variants, then write "
                    "report.html, report.md and summary.json.",
        examples=["mnistlab reproduce --out runs/reproduction",
                  "mnistlab reproduce --limit-train 5000 --limit-test 1000   # a quick look",
                  "mnistlab reproduce --beyond --out runs/beyond   # add mlp, cnn-fast, cnn",
                  "mnistlab reproduce --seeds 5                     # the spread over 5 seeds"])
    reproduce.add_argument("--out", type=Path, default=None,
                           help="output directory (default runs/<time>-reproduce)")
    reproduce.add_argument("--beyond", action="store_true",
                           help="also train the neural presets mlp, cnn-fast and cnn")
    reproduce.add_argument("--seeds", type=int, default=1, metavar="N",
                           help="train every model with N seeds (from --seed on) and report the "
                                "spread of test accuracy (default 1)")
    add_data_options(reproduce)
    add_run_options(reproduce)


def run_train(args: argparse.Namespace) -> int:
    """`mnistlab train`."""
    from mnistlab.config import make_config
    from mnistlab.experiment import train_and_evaluate

    model = args.model or (PRESETS[args.preset].model if args.preset in PRESETS else None)
    if model is not None and model not in TRAINABLE_MODELS:
        from mnistlab.models import unknown_name_message

        raise ConfigError(unknown_name_message("model to train", model, TRAINABLE_MODELS))
    model_options = model_options_from_args(args, model, TRAINABLE_MODELS) if model else {}
    config = make_config(args.model, preset=args.preset, model_options=model_options,
                         dataset=args.dataset, seed=args.seed,
                         validation_split=args.validation_split,
                         limit_train=args.limit_train, limit_test=args.limit_test)
    result = train_and_evaluate(config, args.out, data_dir=args.data_dir,
                                overwrite=args.overwrite, progress=not args.quiet)
    metrics = result.metrics
    console = Console()
    console.print(f"[bold]{config.preset or config.model}[/bold]: test accuracy "
                  f"{metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f}, "
                  f"trained in {metrics['train_seconds']:.2f} s "
                  f"({metrics['train_examples_per_second']:,.0f} examples/s)")
    console.print(f"run directory: {result.run_dir}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """`mnistlab evaluate`: the recomputed metrics beside the recorded ones."""
    from mnistlab.experiment import evaluate_run

    evaluation = evaluate_run(args.run_dir, data_dir=args.data_dir)
    table = Table(title=f"evaluation of {args.run_dir}")
    table.add_column("metric")
    table.add_column("now", justify="right")
    table.add_column("at training", justify="right")
    for key in ("test_accuracy", "test_loss", "test_examples"):
        table.add_row(key, _format(evaluation.metrics.get(key)),
                      _format(evaluation.recorded.get(key)))
    console = Console()
    console.print(table)
    same = evaluation.same_as_recorded
    if not evaluation.checksums_match:
        console.print("note: the test data's checksums differ from those recorded in the run")
    console.print("same as at training time" if same else "DIFFERENT from training time")
    return 0 if same else 1


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def run_reproduce(args: argparse.Namespace) -> int:
    """`mnistlab reproduce`: the tutorial end to end, then the report."""
    from mnistlab.experiment import reproduce

    summary = reproduce(args.out, dataset_name=args.dataset, data_dir=args.data_dir,
                        seed=args.seed, limit_train=args.limit_train,
                        limit_test=args.limit_test, beyond=args.beyond, num_seeds=args.seeds,
                        overwrite=args.overwrite, progress=not args.quiet)
    from mnistlab.report import report_table

    header, *rows = report_table(summary["models"])
    table = Table(title=f"'MNIST using TensorFlow' reproduced on {summary['dataset']}")
    for column in header:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"report: {Path(summary['out_dir']) / 'report.html'}")
    return 0
