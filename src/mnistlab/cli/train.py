"""Commands that train and compare models: train, evaluate, runs, compare, reproduce."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mnistlab.config import PRESETS

# CLI flag -> model option; only flags the user gives are passed on, so a preset's values
# stand unless overridden, and a flag that does not apply to the model is an error.
MODEL_FLAGS = {
    "steps": "num_steps", "epochs": "num_epochs", "batch_size": "batch_size",
    "learning_rate": "learning_rate", "optimizer": "optimizer", "log_every": "log_every",
    "shuffle_buffer": "shuffle_buffer", "init": "init", "l2": "l2", "schedule": "schedule",
    "trees": "n_estimators", "max_depth": "max_depth", "jobs": "n_jobs",
    "width": "width", "depth": "depth", "convs_per_block": "convs_per_block",
    "dense_units": "dense_units", "dropout": "dropout", "batch_norm": "batch_norm",
    "augment": "augment", "max_shift": "max_shift", "max_rotation": "max_rotation",
    "max_zoom": "max_zoom", "weight_decay": "weight_decay", "warmup": "warmup_fraction",
    "label_smoothing": "label_smoothing", "ema": "ema_decay",
}


def _shuffle_buffer(text: str) -> int | None:
    if text == "full":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'full', got {text!r}")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="mnist",
                        help="dataset name or a directory with the four IDX files (default mnist)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory holding the dataset's files (else MNISTLAB_DATA_DIR, "
                             "the cache, system directories, mirrors)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="one seed for everything (default 0)")
    parser.add_argument("--limit-train", type=int, default=None, metavar="N",
                        help="train on the first N training images only")
    parser.add_argument("--limit-test", type=int, default=None, metavar="N",
                        help="test on the first N test images only")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    """Add the training commands."""
    presets = "\n".join(f"  {name:14} ({preset.model}) {preset.description}"
                        for name, preset in PRESETS.items())
    train = subparsers.add_parser(
        "train", help="train a model and write a run directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a model, evaluate it on the test set, and write a run directory "
                    "(config, history, metrics, model, figures).",
        epilog=f"presets:\n{presets}\n\nexamples:\n"
               "  mnistlab train softmax --preset tutorial-v1\n"
               "  mnistlab train softmax --epochs 5 --batch-size 128 --optimizer sgd "
               "--learning-rate 0.5\n"
               "  mnistlab train random-forest --trees 100 --out runs/forest100\n"
               "  mnistlab train cnn --preset cnn-fast --out runs/cnn-fast\n"
               "  mnistlab train mlp --width 256 --depth 3 --dropout 0.2 --schedule one-cycle")
    train.add_argument("model", nargs="?", default=None,
                       help="random-forest, softmax, mlp or cnn (may be left out with --preset)")
    train.add_argument("--preset", choices=None, default=None, metavar="NAME",
                       help=f"start from a named configuration: {', '.join(PRESETS)}")
    group = train.add_argument_group("softmax options (also mlp and cnn)")
    group.add_argument("--steps", type=int, default=argparse.SUPPRESS, help="training steps")
    group.add_argument("--epochs", type=int, default=argparse.SUPPRESS, help="training epochs")
    group.add_argument("--batch-size", type=int, default=argparse.SUPPRESS)
    group.add_argument("--learning-rate", type=float, default=argparse.SUPPRESS)
    group.add_argument("--optimizer", default=argparse.SUPPRESS,
                       help="softmax: adam, sgd, momentum, rmsprop or adagrad; "
                            "mlp/cnn: adam, adamw or sgd (Nesterov momentum 0.9)")
    group.add_argument("--log-every", type=int, default=argparse.SUPPRESS, metavar="STEPS",
                       help="record loss and accuracy every STEPS steps (default 50)")
    group.add_argument("--shuffle-buffer", type=_shuffle_buffer, default=argparse.SUPPRESS,
                       metavar="N|full", help="shuffle buffer size, or 'full' (default 5000)")
    group.add_argument("--init", default=argparse.SUPPRESS, help="normal (tutorial) or zeros")
    group.add_argument("--l2", type=float, default=argparse.SUPPRESS, help="L2 penalty on W")
    group.add_argument("--schedule", default=argparse.SUPPRESS,
                       help="learning-rate schedule: constant or cosine (softmax also "
                            "linear; mlp/cnn also one-cycle)")
    group = train.add_argument_group("neural options (mlp and cnn)")
    group.add_argument("--width", type=int, default=argparse.SUPPRESS,
                       help="mlp: units per hidden layer; cnn: filters of the first block "
                            "(doubled in each next block)")
    group.add_argument("--depth", type=int, default=argparse.SUPPRESS,
                       help="mlp: hidden layers; cnn: convolution blocks (each ends in a 2x2 "
                            "max-pool)")
    group.add_argument("--convs-per-block", type=int, default=argparse.SUPPRESS,
                       help="cnn: 3x3 convolutions per block")
    group.add_argument("--dense-units", type=int, default=argparse.SUPPRESS,
                       help="cnn: units of the dense layer before the output (0: none)")
    group.add_argument("--dropout", type=float, default=argparse.SUPPRESS, metavar="RATE")
    group.add_argument("--batch-norm", action=argparse.BooleanOptionalAction,
                       default=argparse.SUPPRESS, help="batch normalisation after each layer")
    group.add_argument("--augment", action=argparse.BooleanOptionalAction,
                       default=argparse.SUPPRESS,
                       help="random shifts, rotations and zooms, seeded by --seed and the step")
    group.add_argument("--max-shift", type=float, default=argparse.SUPPRESS, metavar="PIXELS",
                       help="augmentation: largest shift (default 2)")
    group.add_argument("--max-rotation", type=float, default=argparse.SUPPRESS,
                       metavar="DEGREES", help="augmentation: largest rotation (default 10)")
    group.add_argument("--max-zoom", type=float, default=argparse.SUPPRESS, metavar="FRACTION",
                       help="augmentation: largest zoom in or out (default 0.1)")
    group.add_argument("--weight-decay", type=float, default=argparse.SUPPRESS,
                       help="decoupled weight decay (AdamW style) on the kernels")
    group.add_argument("--warmup", type=float, default=argparse.SUPPRESS, metavar="FRACTION",
                       help="fraction of the steps spent warming the learning rate up")
    group.add_argument("--label-smoothing", type=float, default=argparse.SUPPRESS)
    group.add_argument("--ema", type=float, default=argparse.SUPPRESS, metavar="DECAY",
                       help="keep an exponential moving average of the weights with this decay "
                            "(e.g. 0.999) and evaluate, predict and save with it")
    group = train.add_argument_group("random-forest options")
    group.add_argument("--trees", type=int, default=argparse.SUPPRESS, help="number of trees (50)")
    group.add_argument("--max-depth", type=int, default=argparse.SUPPRESS)
    group.add_argument("--jobs", type=int, default=argparse.SUPPRESS,
                       help="parallel jobs (-1: all cores, the default)")
    train.add_argument("--validation-split", type=float, default=0.0, metavar="F",
                       help="hold out this fraction of the training set for validation")
    _add_data_options(train)
    train.add_argument("--out", type=Path, default=None,
                       help="run directory (default runs/<time>-<model>)")
    _add_run_options(train)
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="reload a run's model and recompute its metrics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  mnistlab evaluate runs/20261129-120000-tutorial-v1")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--data-dir", type=Path, default=None)
    evaluate.set_defaults(func=run_evaluate)

    runs = subparsers.add_parser(
        "runs", help="list runs and their key metrics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  mnistlab runs runs/")
    runs.add_argument("directory", nargs="?", type=Path, default=Path("runs"))
    runs.set_defaults(func=run_runs)

    compare = subparsers.add_parser(
        "compare", help="compare runs side by side",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  mnistlab compare runs/a runs/b")
    compare.add_argument("run_dirs", nargs="+", type=Path)
    compare.set_defaults(func=run_compare)

    reproduce = subparsers.add_parser(
        "reproduce", help="reproduce the tutorial end to end and write a report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the tutorial's forest and its three softmax variants, then write "
                    "report.html, report.md and summary.json.",
        epilog="examples:\n  mnistlab reproduce --out runs/reproduction\n"
               "  mnistlab reproduce --limit-train 5000 --limit-test 1000   # a quick look\n"
               "  mnistlab reproduce --beyond --out runs/beyond   # add mlp, cnn-fast, cnn\n"
               "  mnistlab reproduce --seeds 5                     # the spread over 5 seeds")
    reproduce.add_argument("--out", type=Path, default=None,
                           help="output directory (default runs/<time>-reproduce)")
    reproduce.add_argument("--beyond", action="store_true",
                           help="also train the neural presets mlp, cnn-fast and cnn")
    reproduce.add_argument("--seeds", type=int, default=1, metavar="N",
                           help="train every model with N seeds (from --seed on) and report the "
                                "spread of test accuracy (default 1)")
    _add_data_options(reproduce)
    _add_run_options(reproduce)
    reproduce.set_defaults(func=run_reproduce)


def run_train(args: argparse.Namespace) -> int:
    """`mnistlab train`."""
    from mnistlab.config import make_config
    from mnistlab.experiment import train_and_evaluate

    model_options = {option: getattr(args, flag) for flag, option in MODEL_FLAGS.items()
                     if hasattr(args, flag)}
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
    same = all(_close(evaluation.metrics.get(key), evaluation.recorded.get(key))
               for key in ("test_accuracy", "test_loss"))
    if not evaluation.checksums_match:
        console.print("note: the test data's checksums differ from those recorded in the run")
    console.print("same as at training time" if same else "DIFFERENT from training time")
    return 0 if same else 1


def _close(a, b) -> bool:
    return a is not None and b is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b))


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def run_runs(args: argparse.Namespace) -> int:
    """`mnistlab runs`: a table of the runs under a directory."""
    from mnistlab.runs import find_runs

    found = find_runs(args.directory)
    table = Table(title=f"runs under {args.directory}")
    for column in ("run", "model", "status", "test acc", "test loss", "train s", "params"):
        table.add_column(column, justify="left" if column in ("run", "model", "status")
                         else "right")
    for run in found:
        metrics = run.metrics
        table.add_row(str(run.path.relative_to(args.directory)),
                      run.info.get("preset") or run.info.get("model", "?"), run.status,
                      _format(metrics.get("test_accuracy")), _format(metrics.get("test_loss")),
                      _format(metrics.get("train_seconds")), _format(metrics.get("parameters")))
    Console().print(table if found else f"no runs under {args.directory}")
    return 0


COMPARE_ROWS = ("test_accuracy", "test_loss", "train_seconds", "predict_seconds",
                "train_examples_per_second", "parameters", "model_bytes")


def run_compare(args: argparse.Namespace) -> int:
    """`mnistlab compare`: runs side by side, one column each."""
    from mnistlab.runs import load_run

    loaded = [load_run(path) for path in args.run_dirs]
    table = Table(title="comparison")
    table.add_column("")
    for run in loaded:
        table.add_column(run.path.name, justify="right")
    table.add_row("model", *[run.info.get("preset") or run.info.get("model", "?") for run in loaded])
    table.add_row("status", *[run.status for run in loaded])
    table.add_row("seed", *[str(run.config.get("seed")) for run in loaded])
    for key in COMPARE_ROWS:
        table.add_row(key, *[_format(run.metrics.get(key)) for run in loaded])
    Console().print(table)
    return 0


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
