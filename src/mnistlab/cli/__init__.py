"""The `mnistlab` command line: a thin layer over the library.

Each command group lives in its own module with a `register(subparsers)` function that adds
its commands; each command stores a handler `func(args) -> int` with `set_defaults`.
User-facing errors (`MnistlabError`) become one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator

from mnistlab import __version__
from mnistlab._quiet import quiet_tensorflow
from mnistlab.errors import MnistlabError, OptionError

# Command-group modules, in the order they appear in `mnistlab --help`.
COMMAND_MODULES = ("data", "train", "runs", "ensemble", "predict", "export", "serve")
# The width rich is given when output goes to a pipe or a file: wide enough for any line.
UNWRAPPED_COLUMNS = 1000


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
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines (hidden by default)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"mnistlab.cli.{name}").register(subparsers)
    for command in subparsers.choices.values():
        # Also accepted after the command, where people type it.
        with contextlib.suppress(argparse.ArgumentError):
            command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                                 help="show TensorFlow's own log lines (hidden by default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    # TensorFlow's log lines are noise on a command line: they are silenced before anything
    # imports TensorFlow (the commands import it lazily), unless --verbose asks for them.
    quiet_tensorflow(verbose="--verbose" in arguments)
    parser = build_parser()
    args = parser.parse_args(arguments)
    try:
        with _whole_lines_when_redirected():
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


@contextlib.contextmanager
def _whole_lines_when_redirected() -> Iterator[None]:
    """Rich wraps what it prints at 80 columns when standard output is not a terminal; a
    pipe or a file gets whole lines instead (rich reads the width from COLUMNS). A width the
    user set is kept; progress bars on a terminal take the terminal's (`mnistlab.progress`)."""
    if "COLUMNS" in os.environ or sys.stdout is None or sys.stdout.isatty():
        yield
        return
    os.environ["COLUMNS"] = str(UNWRAPPED_COLUMNS)
    try:
        yield
    finally:
        os.environ.pop("COLUMNS", None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
