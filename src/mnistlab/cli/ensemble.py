"""`mnistlab ensemble`: average trained runs' probabilities into a run of its own."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console


def register(subparsers) -> None:
    """Add the ensemble command."""
    parser = subparsers.add_parser(
        "ensemble", help="average the probabilities of trained runs into a new run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build an ensemble of completed runs: its prediction is the average of "
                    "the members' class probabilities. It is evaluated on the members' test "
                    "set and written as a run directory of model 'ensemble' (config, metrics, "
                    "figures, an empty history), usable by evaluate and predict. The members' "
                    "models are copied into it, so it survives their deletion.",
        epilog="examples (three cnn-fast runs, then their ensemble):\n"
               "  for seed in 0 1 2; do mnistlab train --preset cnn-fast --seed $seed "
               "--out runs/cnn-fast-s$seed; done\n"
               "  mnistlab ensemble runs/cnn-fast-s0 runs/cnn-fast-s1 runs/cnn-fast-s2 "
               "--out runs/cnn-ensemble")
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="completed runs trained on the same classes")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (default runs/<time>-ensemble)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the members' dataset is")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_ensemble)


def run_ensemble(args: argparse.Namespace) -> int:
    """Check the members, evaluate their average, write the run."""
    from mnistlab.experiment import ensemble_runs
    from mnistlab.runs import load_run

    result = ensemble_runs(args.run_dirs, args.out, data_dir=args.data_dir,
                           overwrite=args.overwrite, progress=not args.quiet)
    console = Console()
    for path in args.run_dirs:
        accuracy = load_run(path).metrics.get("test_accuracy")
        console.print(f"  member {path}: test accuracy "
                      + ("-" if not isinstance(accuracy, float) else f"{accuracy:.4f}"))
    console.print(f"[bold]ensemble of {len(args.run_dirs)}[/bold]: test accuracy "
                  f"{result.metrics['test_accuracy']:.4f}, "
                  f"test loss {result.metrics['test_loss']:.4f}")
    console.print(f"run directory: {result.run_dir}")
    return 0
