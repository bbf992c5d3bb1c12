"""Commands that train and evaluate models: train, evaluate, reproduce (runs and compare are in
`cli/runs.py`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mnistlab.cli.common import (
    add_command,
    add_data_options,
    add_model_options,
    add_run_options,
    model_option_names,
    model_options_from_args,
    option_flag,
)
from mnistlab.config import PRESETS, TRAINABLE_MODELS
from mnistlab.errors import ConfigError, OptionError


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
    group = train.add_argument_group("checkpoints and resume")
    group.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                       help="continue an interrupted or killed run from its last checkpoint, "
                            "with the configuration it was started with")
    group.add_argument("--force", action="store_true",
                       help="with --resume: resume even if the data's checksums or the "
                            "package versions differ from the run's")
    group.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                       help="write a checkpoint every STEPS steps (default: every epoch and "
                            "at least every 2 minutes)")
    group.add_argument("--no-checkpoints", action="store_true",
                       help="write no checkpoints (an interrupted run then starts again)")
    group = train.add_argument_group("more than one device or machine (softmax, mlp, cnn)")
    group.add_argument("--strategy", choices=("default", "mirrored", "multi-worker"),
                       default="default",
                       help="tf.distribute strategy: mirrored over the local GPUs (or --devices "
                            "CPU devices), multi-worker over processes and hosts (TF_CONFIG, or "
                            "--workers and --worker-index); --batch-size is the global batch")
    group.add_argument("--devices", type=int, default=None, metavar="N",
                       help="with --strategy mirrored: split the CPU into N logical devices")
    group.add_argument("--workers", default=None, metavar="HOST:PORT,...",
                       help="with --strategy multi-worker: every worker's address, in order")
    group.add_argument("--worker-index", type=int, default=None, metavar="I",
                       help="with --workers: this process's place in the list (0 is the chief, "
                            "which writes the run directory)")
    group.add_argument("--local-workers", type=int, default=None, metavar="N",
                       help="start N multi-worker processes on loopback ports and wait for them")

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
        examples=["mnistlab reproduce --out runs/reproduction --overwrite   # again, anew",
                  "mnistlab reproduce --limit-train 5000 --limit-test 1000   # a quick look",
                  "mnistlab reproduce --beyond --out runs/beyond   # add mlp, cnn-fast, cnn",
                  "mnistlab reproduce --seeds 5                     # the spread over 5 seeds"])
    reproduce.add_argument("--out", type=Path, default=None,
                           help="output directory (default runs/<time>-reproduce-<random>)")
    reproduce.add_argument("--beyond", action="store_true",
                           help="also train the neural presets mlp, cnn-fast and cnn")
    reproduce.add_argument("--seeds", type=int, default=1, metavar="N",
                           help="train every model with N seeds (from --seed on) and report the "
                                "spread of test accuracy (default 1)")
    reproduce.add_argument("--resume", type=Path, default=None, metavar="OUT",
                           help="finish an interrupted reproduction: keep its finished runs, "
                                "resume the interrupted one, train the rest")
    reproduce.add_argument("--parallel", action="store_true",
                           help="train the runs side by side on Ray Tune, one CPU each (needs "
                                "the sweep extra: pip install 'mnistlab[sweep]')")
    reproduce.add_argument("--address", default=None,
                           help="with --parallel: the Ray cluster to run on (default: a local "
                                "Ray instance)")
    add_data_options(reproduce)
    add_run_options(reproduce)


def run_train(args: argparse.Namespace) -> int:
    """`mnistlab train`: train, or resume with --resume; Ctrl-C stops after a checkpoint."""
    from mnistlab.training.checkpoint import STOP, TrainingInterrupted

    if args.checkpoint_every is not None and not 1 <= args.checkpoint_every <= 10 ** 8:
        raise ConfigError(f"--checkpoint-every must be a whole number from 1 to "
                          f"100,000,000, got {args.checkpoint_every}")
    if args.local_workers is not None:
        from mnistlab.launch import run_local_workers

        return run_local_workers(args.local_workers, _argv_without_local_workers(args.argv))
    if args.workers is not None:
        from mnistlab.training.distribute import configure_workers

        if args.strategy != "multi-worker" or args.worker_index is None:
            raise ConfigError("--workers goes with --strategy multi-worker and --worker-index")
        configure_workers(args.workers.split(","), args.worker_index)
    try:
        # A signal while the data load or the run is written waits for the loop's next
        # chunk boundary instead of killing the process half-way (see StopRequest).
        with STOP:
            result = _resume(args) if args.resume is not None else _train(args)
    except TrainingInterrupted as error:
        run_dir = getattr(error, "run_dir", args.resume or args.out)
        print(f"mnistlab: interrupted at step {error.step:,}; resume with: "
              f"mnistlab train --resume {run_dir}", file=sys.stderr)
        return error.exit_code
    metrics = result.metrics
    console = Console()
    if args.resume is not None and not result.resumed:
        console.print(f"{result.run_dir} was completed already; nothing to resume")
    console.print(f"[bold]{result.config.preset or result.config.model}[/bold]: test accuracy "
                  f"{metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f}, "
                  f"trained in {metrics['train_seconds']:.2f} s "
                  f"({metrics['train_examples_per_second']:,.0f} examples/s)")
    console.print(f"run directory: {result.run_dir}")
    return 0


def _resume(args: argparse.Namespace):
    from mnistlab.experiment import resume_run

    given = [flag for flag, value in (("a model", args.model), ("--preset", args.preset),
                                      ("--out", args.out))
             if value is not None]
    given += [option_flag(name) for name in vars(args)
              if name in model_option_names(TRAINABLE_MODELS)]
    if given:
        raise ConfigError(f"--resume continues the run with its own configuration; "
                          f"drop {', '.join(given)}")
    return resume_run(args.resume, data_dir=args.data_dir, force=args.force,
                      progress=not args.quiet, checkpoints=not args.no_checkpoints,
                      checkpoint_every=args.checkpoint_every, devices=args.devices)


def _train(args: argparse.Namespace):
    from mnistlab.config import make_config
    from mnistlab.experiment import train_and_evaluate

    if args.force:
        raise ConfigError("--force goes with --resume")
    model = args.model or (PRESETS[args.preset].model if args.preset in PRESETS else None)
    if model is not None and model not in TRAINABLE_MODELS:
        from mnistlab.models import unknown_name_message

        raise ConfigError(unknown_name_message("model to train", model, TRAINABLE_MODELS))
    model_options = model_options_from_args(args, model, TRAINABLE_MODELS) if model else {}
    config = make_config(args.model, preset=args.preset, model_options=model_options,
                         dataset=args.dataset, seed=args.seed,
                         validation_split=args.validation_split,
                         limit_train=args.limit_train, limit_test=args.limit_test)
    _refuse_idle_augmentation(model_options, config.model_config)
    return train_and_evaluate(config, args.out, data_dir=args.data_dir,
                              overwrite=args.overwrite, progress=not args.quiet,
                              checkpoints=not args.no_checkpoints,
                              checkpoint_every=args.checkpoint_every,
                              strategy=args.strategy, devices=args.devices)


def _refuse_idle_augmentation(typed: dict, options) -> None:
    """An augmentation setting typed on the command line for a run without augmentation
    would do nothing: refuse it in one line. (Presets, saved runs, sweeps and the library
    may carry such settings: they are harmless there.)"""
    if "augment" in options and not options["augment"]:
        from mnistlab.models.neural import AUGMENTATION_OPTIONS

        for name in AUGMENTATION_OPTIONS:
            if name in typed:
                raise OptionError(name, "has no effect without augmentation (--augment)")


def _argv_without_local_workers(argv: list[str]) -> list[str]:
    """This command's arguments, less `--local-workers N` (the workers get the rest)."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--local-workers":
            skip = True
        elif not word.startswith("--local-workers="):
            kept.append(word)
    return kept


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
    from mnistlab.training.checkpoint import TrainingInterrupted

    if args.resume is not None and args.out is not None:
        raise ConfigError("--resume names the reproduction to finish; drop --out")
    if args.address is not None and not args.parallel:
        raise ConfigError("--address goes with --parallel")
    try:
        summary = reproduce(args.resume or args.out, dataset_name=args.dataset,
                            data_dir=args.data_dir, seed=args.seed,
                            limit_train=args.limit_train, limit_test=args.limit_test,
                            beyond=args.beyond, num_seeds=args.seeds,
                            overwrite=args.overwrite, progress=not args.quiet,
                            resume=args.resume is not None, parallel=args.parallel,
                            address=args.address)
    except TrainingInterrupted as error:
        where = "" if error.step is None else f" at step {error.step:,}"
        print(f"mnistlab: interrupted{where}; the finished runs are kept; "
              f"resume with: {error.resume_command}", file=sys.stderr)
        return error.exit_code
    from mnistlab.report import report_table

    header, *rows = report_table(summary["models"])
    table = Table(title=f"'MNIST using TensorFlow' reproduced on {summary['dataset']}")
    for column in header:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    if summary.get("caveat"):
        console.print(f"[bold]note:[/bold] {summary['caveat']}")
    console.print(f"report: {Path(summary['out_dir']) / 'report.html'}")
    return 0
