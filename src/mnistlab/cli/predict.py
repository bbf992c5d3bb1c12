"""`mnistlab predict`: a trained model on people's own image files."""

from __future__ import annotations

import argparse
import csv
import io
import json
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
                    "it. Directories are walked for PNG, JPEG, BMP, GIF, TIFF and WebP files. "
                    "With the images' true classes, from folders named after the classes "
                    "(my_digits/0/, my_digits/1/, ...: --labels-from-dirs) or from a CSV file "
                    "of file,label rows (--labels), it reports the accuracy and the confusion "
                    "matrix instead, and --misclassified draws the images it got wrong.",
        epilog="examples (after `mnistlab reproduce --out runs/reproduction`):\n"
               "  mnistlab predict runs/reproduction/tutorial-rf my_digit.png\n"
               "  mnistlab predict runs/reproduction/tutorial-rf photos/ --top 3 --format json "
               "--output preds.json\n"
               "  mnistlab predict runs/reproduction/tutorial-rf seven.jpg --save-inputs seen/"
               "   # what the model saw\n"
               "  mnistlab predict runs/reproduction/tutorial-rf my_digits/ --labels-from-dirs "
               "--misclassified wrong.png\n"
               "  mnistlab predict runs/reproduction/tutorial-rf photos/ --labels labels.csv")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="a completed run directory (from `mnistlab train`)")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="image files and directories of them")
    parser.add_argument("--top", type=int, default=3, metavar="K",
                        help="how many classes to list per image (default 3; not with labels)")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--labels-from-dirs", action="store_true",
                        help="the images' true classes are the names of the folders below each "
                             "PATH (0, 1, ... 9): report accuracy and a confusion matrix")
    labels.add_argument("--labels", type=Path, default=None, metavar="CSV",
                        help="the images' true classes from a CSV file of file,label rows "
                             "(files relative to the CSV's folder): report accuracy and a "
                             "confusion matrix")
    parser.add_argument("--misclassified", type=Path, default=None, metavar="FILE.png",
                        help="with labels, draw the misclassified images into FILE.png")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="how to write the results (default table)")
    parser.add_argument("--output", type=Path, default=None, metavar="FILE",
                        help="write the results to FILE instead of the terminal")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow --output, --save-inputs and --misclassified to replace "
                             "existing files")
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
    labelled = args.labels_from_dirs or args.labels is not None
    if args.misclassified is not None and not labelled:
        raise MnistlabError("--misclassified needs --labels-from-dirs or --labels")
    if args.misclassified is not None and args.misclassified.exists() and not args.overwrite:
        raise MnistlabError(f"{args.misclassified} already exists (use --overwrite to replace it)")
    run = load_run(args.run_dir)
    model = load_model(args.run_dir)
    if labelled:
        return report_labelled(args, model, run.class_names)
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


def report_labelled(args: argparse.Namespace, model, class_names: list[str]) -> int:
    """Accuracy and confusion matrix on labelled files; exit 1 when any file failed."""
    from mnistlab.fileio import write_text_atomic
    from mnistlab.predict import evaluate_labelled_files, plot_misclassified_files, save_inputs

    evaluation = evaluate_labelled_files(model, args.paths, class_names,
                                         labels=args.labels)
    for row in evaluation.failed:
        print(f"mnistlab: {row.error}", file=sys.stderr)
    if args.save_inputs is not None:
        save_inputs(evaluation.files, args.save_inputs, overwrite=args.overwrite)
    if args.misclassified is not None:
        from mnistlab.plots import save_figure

        save_figure(plot_misclassified_files(evaluation), args.misclassified)
    if args.format == "json":
        text = json.dumps(evaluation.to_dict(), indent=2) + "\n"
    elif args.format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "label", "prediction", "probability", "label_probability",
                         "correct", "error"])
        for row in evaluation.files:
            writer.writerow([row.path, row.label or "", row.prediction or "",
                             "" if row.probability is None else f"{row.probability:.6f}",
                             "" if row.label_probability is None
                             else f"{row.label_probability:.6f}",
                             int(row.correct) if row.ok else "", row.error or ""])
        text = buffer.getvalue()
    else:
        print_labelled_tables(args.run_dir, evaluation)
        text = None
    if text is not None:
        if args.output is None:
            sys.stdout.write(text)
        else:
            write_text_atomic(args.output, text)
    return 0 if not evaluation.failed else 1


def print_labelled_tables(run_dir: Path, evaluation) -> None:
    """Each file's label and prediction, the confusion matrix, and the accuracy."""
    console = Console()
    files = Table(title=f"labelled images through {run_dir}")
    files.add_column("file", overflow="fold")
    for column in ("label", "prediction", "probability"):
        files.add_column(column, justify="center")
    for row in evaluation.files:
        if not row.ok:  # the error is on stderr already
            files.add_row(str(row.path), row.label or "-", "[red]skipped[/red]", "-")
            continue
        style = "" if row.correct else "[red]"
        files.add_row(str(row.path), row.label, f"{style}{row.prediction}",
                      f"{style}{row.probability:.3f}")
    console.print(files)
    matrix = Table(title="confusion matrix (rows: true class, columns: predicted)")
    matrix.add_column("true")
    for name in evaluation.class_names:
        matrix.add_column(name, justify="right")
    for name, counts in zip(evaluation.class_names, evaluation.confusion_matrix):
        matrix.add_row(name, *[str(count) if count else "." for count in counts])
    console.print(matrix)
    evaluated = len(evaluation.evaluated)
    correct = evaluated - len(evaluation.misclassified)
    failed = len(evaluation.failed)
    skipped = f"; {failed} file{'s' if failed > 1 else ''} skipped" if failed else ""
    console.print(f"accuracy {evaluation.accuracy:.4f} ({correct:,} of {evaluated:,} images "
                  f"right{skipped})")
