"""`mnistlab predict`: a trained model on people's own image files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mnistlab.errors import MnistlabError


def register(subparsers) -> None:
    """Add the predict command."""
    parser = subparsers.add_parser(
        "predict", help="classify your own images with a trained run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Prepare each image the way MNIST's digits were prepared (grey, ink bright "
                    "on dark, cropped, scaled to 20 px, centred by mass in 28x28) and classify "
                    "it. Directories are walked for PNG, JPEG, BMP, GIF, TIFF and WebP files.",
        epilog="examples:\n  mnistlab predict runs/reproduction/tutorial-rf my_digit.png\n"
               "  mnistlab predict RUN_DIR photos/ --top 3 --format json --output preds.json\n"
               "  mnistlab predict RUN_DIR seven.jpg --save-inputs seen/   # what the model saw")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument("--top", type=int, default=3, metavar="K",
                        help="how many classes to list per image (default 3)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument("--output", type=Path, default=None, metavar="FILE",
                        help="write the results to FILE instead of the terminal")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow --output and --save-inputs to replace existing files")
    parser.add_argument("--save-inputs", type=Path, default=None, metavar="DIR",
                        help="write the 28x28 image each file became into DIR")
    parser.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Predict, print or write the results; exit 1 when any file failed."""
    from mnistlab.fileio import write_text_atomic
    from mnistlab.predict import format_results, predict_files, save_inputs
    from mnistlab.runs import load_model, load_run

    if args.output is not None and args.output.exists() and not args.overwrite:
        raise MnistlabError(f"{args.output} already exists (use --overwrite to replace it)")
    if args.output is not None and args.format == "table":
        raise MnistlabError("--output needs --format json or csv")
    run = load_run(args.run_dir)
    model = load_model(args.run_dir)
    results = predict_files(model, args.paths, run.class_names, top_k=args.top)
    if not results:
        raise MnistlabError("no image files found in the given paths")
    for result in results:
        if not result.ok:
            # The error names the file already.
            print(f"mnistlab: {result.error}", file=sys.stderr)
    if args.save_inputs is not None:
        save_inputs(results, args.save_inputs, overwrite=args.overwrite)
    if args.format == "table":
        table = Table(title=f"predictions of {args.run_dir}")
        table.add_column("file")
        table.add_column("prediction", justify="center")
        table.add_column(f"top {args.top}")
        for result in results:
            if result.ok:
                table.add_row(str(result.path), result.top[0][0], "  ".join(
                    f"{label} {probability:.3f}" for label, probability in result.top))
            else:
                table.add_row(str(result.path), "-", f"[red]{result.error}[/red]")
        Console().print(table)
    else:
        text = format_results(results, args.format)
        if args.output is None:
            sys.stdout.write(text)
        else:
            write_text_atomic(args.output, text)
    return 0 if all(result.ok for result in results) else 1
