"""The `mnistlab` command line: a thin layer over the library.

Each command group lives in its own module with a `register(subparsers)` function that adds
its commands; each command stores a handler `func(args) -> int` with `set_defaults`.
User-facing errors (`MnistlabError`) become one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys

from mnistlab import __version__
from mnistlab.errors import MnistlabError

# Command-group modules, in the order they appear in `mnistlab --help`.
COMMAND_MODULES = ("data", "train", "predict", "export", "serve")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, with the usual exit code 2."""

    def error(self, message: str) -> None:  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser with every command registered."""
    import importlib

    parser = _Parser(
        prog="mnistlab",
        description="Train, compare and use classifiers on MNIST-format data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"mnistlab.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MnistlabError as error:
        print(f"mnistlab: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("mnistlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
