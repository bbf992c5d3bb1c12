"""`mnistlab data ...`: list, fetch, verify and describe datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mnistlab import data
from mnistlab.data import DATASETS
from mnistlab.errors import DataError

_EXAMPLES = {
    "list": "example:\n  mnistlab data list\n  mnistlab data list --data-dir ~/datasets",
    "fetch": "examples:\n  mnistlab data fetch mnist\n  mnistlab data fetch fashion-mnist --quiet",
    "verify": "examples:\n  mnistlab data verify mnist\n"
    "  mnistlab data verify mnist --data-dir ~/datasets/mnist",
    "info": "examples:\n  mnistlab data info mnist\n"
    "  mnistlab data info ~/datasets/mnist   # any directory holding the four IDX files",
}
_NAME_HELP = (
    f"a registered dataset ({', '.join(DATASETS)}) or a directory holding the four IDX files"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command group and its commands."""
    group = subparsers.add_parser(
        "data",
        help="list, fetch, verify and describe datasets",
        description="Find, download and check MNIST-format datasets.",
        epilog="examples:\n  mnistlab data fetch mnist\n  mnistlab data info fashion-mnist",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = group.add_subparsers(dest="data_command", metavar="COMMAND")
    commands.required = True

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        metavar="DIR",
        help="use only this directory (holding the four files, or a subdirectory per dataset); "
        "default: $MNISTLAB_DATA_DIR, else the cache, system directories, then downloads",
    )

    def add(
        name: str, help_text: str, handler, with_name: bool = True
    ) -> argparse.ArgumentParser:
        parser = commands.add_parser(
            name, parents=[common], help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=_EXAMPLES[name], formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if with_name:
            parser.add_argument("name", metavar="NAME", help=_NAME_HELP)
        parser.set_defaults(func=handler)
        return parser

    add(
        "list", "list the known datasets and whether a verified copy is present", _list,
        with_name=False,
    )
    fetch = add(
        "fetch", "make a verified copy of a dataset present, downloading it if needed", _fetch
    )
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    add(
        "verify", "re-hash the copy of a dataset in use against the registered checksums", _verify
    )
    info = add(
        "info", "show sizes, per-class counts, pixel statistics and the source of a dataset", _info
    )
    info.add_argument(
        "--quiet", action="store_true", help="no progress bar if a download is needed"
    )


def _list(args: argparse.Namespace) -> int:
    if args.data_dir is not None and not Path(args.data_dir).expanduser().is_dir():
        raise DataError(f"data directory {args.data_dir} does not exist or is not a directory")
    table = Table(title="datasets")
    table.add_column("name", no_wrap=True)
    table.add_column("classes", justify="right")
    table.add_column("status", no_wrap=True)
    table.add_column("location", overflow="fold")
    table.add_column("description")
    for name, spec in DATASETS.items():
        try:
            verification = data.verify_dataset(name, args.data_dir)
        except DataError:
            status, location = "not present", "-"
        else:
            # Details come from `mnistlab data verify NAME`; the table stays one row per dataset.
            status = "verified" if verification.ok else "NOT VERIFIED"
            location = verification.location.source
        table.add_row(name, str(len(spec.class_names)), status, location, spec.description)
    Console().print(table)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    location = data.fetch_dataset(args.name, args.data_dir, progress=not args.quiet)
    if location.kind == "directory":
        print(
            f"{args.name}: valid custom dataset at {location.directory} "
            "(no registered checksums to verify)"
        )
    else:
        print(f"{args.name}: verified copy at {location.directory}")
        print(f"source: {location.source}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    verification = data.verify_dataset(args.name, args.data_dir)
    print(f"{verification.name}: {verification.location.source}")
    for check in verification.files:
        status = "ok" if check.ok else "FAILED"
        print(f"  {status:6} {check.name:23}  sha256 {check.actual or '-'}")
    if not verification.ok:
        problems = [
            check.problem for check in verification.files if not check.ok
        ] or [verification.problem]
        print(f"mnistlab: error: verification failed: {problems[0]}", file=sys.stderr)
        return 1
    if not verification.verified:
        print("format valid; no registered checksums (custom dataset), so not verified")
    return 0


def _info(args: argparse.Namespace) -> int:
    info = data.dataset_info(args.name, args.data_dir, progress=not args.quiet)
    console = Console()
    overview = Table(title=f"{info.name}", show_header=False)
    overview.add_column("field")
    overview.add_column("value")
    overview.add_row("source", info.source)
    overview.add_row("verified", "yes" if info.verified else "no (custom dataset)")
    overview.add_row("image shape", " x ".join(str(size) for size in info.image_shape))
    overview.add_row("train / test", f"{info.train_size} / {info.test_size}")
    for split, mean, std in (("train", info.train_pixel_mean, info.train_pixel_std),
                             ("test", info.test_pixel_mean, info.test_pixel_std)):
        scaled = f"(scaled to 0-1: {mean / 255:.4f}, {std / 255:.4f})"
        overview.add_row(f"{split} pixel mean, std", f"{mean:.2f}, {std:.2f}  {scaled}")
    console.print(overview)
    classes = Table(title="examples per class")
    for column in ("label", "class", "train", "test"):
        classes.add_column(column, justify="right" if column != "class" else "left")
    for label, class_name in enumerate(info.class_names):
        classes.add_row(
            str(label), class_name,
            str(info.train_class_counts[label]), str(info.test_class_counts[label]),
        )
    console.print(classes)
    return 0
