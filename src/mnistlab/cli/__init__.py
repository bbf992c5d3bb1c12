"""The `mnistlab` command line: a thin layer over the library.

Each command group lives in its own module with a `register(subparsers)` function that adds
its commands; each command stores a handler `func(args) -> int` with `set_defaults`.
User-facing errors (`MnistlabError`) become one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import os
import sys

from mnistlab import __version__
from mnistlab.errors import MnistlabError, OptionError

# Command-group modules, in the order they appear in `mnistlab --help`.
COMMAND_MODULES = ("data", "train", "ensemble", "predict", "export", "serve")


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
        epilog="examples:\n"
               "  mnistlab reproduce                      # the tutorial end to end, a report\n"
               "  mnistlab train softmax --preset tutorial-v1\n"
               "  mnistlab predict runs/reproduction/tutorial-rf my_digit.png\n"
               "  mnistlab COMMAND --help                 # each command's options and examples",
    )
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"mnistlab.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    # TensorFlow's C++ start-up messages are noise on a command line; warnings still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OptionError as error:
        # Name the flag the user typed (--trees), not the library's option (n_estimators).
        from mnistlab.cli.common import option_flag

        print(f"mnistlab: error: {option_flag(error.option)} {error.problem}", file=sys.stderr)
        return error.exit_code
    except MnistlabError as error:
        print(f"mnistlab: error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        # A path the user named cannot be written or read (a file where a directory was
        # expected, no permission, a full disk): one line, nothing half-written.
        where = f"{error.filename}: " if error.filename else ""
        print(f"mnistlab: error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mnistlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
