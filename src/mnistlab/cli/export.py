"""`mnistlab export`: a run's model as SavedModel, ONNX or TFLite, optionally checked."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from mnistlab.export import FORMATS


def register(subparsers) -> None:
    """Add the export command."""
    parser = subparsers.add_parser(
        "export", help="export a run's model (savedmodel, onnx, tflite)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export a run's model. The export takes raw uint8 images (N, 28, 28) and "
                    "returns probabilities (N, classes). With --check, the export and the run's "
                    "model are compared on the run's whole test set.",
        epilog="examples:\n"
               "  mnistlab export runs/reproduction/tutorial-v2 --format savedmodel "
               "--out exported/softmax --check\n"
               "  mnistlab export runs/reproduction/tutorial-rf --format onnx --out forest.onnx")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a completed run directory")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", type=Path, required=True,
                        help="output file (a directory for savedmodel)")
    parser.add_argument("--check", action="store_true",
                        help="compare the export with the run's model on the whole test set")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="largest allowed probability difference for --check (1e-5)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the run's dataset is (for --check)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export, then check when asked; exit 1 when the check fails."""
    from mnistlab.export import check_export, export_run

    console = Console()
    out = export_run(args.run_dir, args.format, args.out, overwrite=args.overwrite)
    console.print(f"exported {args.run_dir} as {args.format} to {out}")
    if not args.check:
        return 0
    result = check_export(args.run_dir, out, args.format, tolerance=args.tolerance,
                          data_dir=args.data_dir)
    verdict = "PASSED" if result.passed else "FAILED"
    console.print(f"check {verdict}: {result.examples} test images, "
                  f"{result.disagreements} different predicted classes ({result.ties} exact ties "
                  f"broken the other way), largest probability "
                  f"difference {result.max_abs_difference:.2e} (tolerance {result.tolerance:.0e})")
    return 0 if result.passed else 1
