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
COMMAND_MODULES = ("data", "train", "runs", "ensemble", "predict", "export", "serve", "sweep")
# The width rich is given when output goes to a pipe or a file: wide enough for any line.
UNWRAPPED_COLUMNS = 1000


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, with the usual exit code 2."""

    def error(self, message: str) -> None:  # noqa: D102 - argparse API
        # "invalid choice: 'trian' (choose from ...)": name the closest choice too.
        import difflib
        import re

        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong:
            choices = re.findall(r"'?([\w.-]+)'?", wrong.group(2))
            close = difflib.get_close_matches(wrong.group(1), choices, n=1)
            if close:
                message += f"; did you mean {close[0]}?"
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser with every command registered."""
    import importlib

    parser = _Parser(
        prog="mnistlab",
        description="Train, compare and use classifiers on MNIST-format data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  mnistlab reproduce --out runs/reproduction   # the tutorial, end to end\n"
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
    args.argv = arguments  # what was typed, for commands that start copies of themselves
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
        print(f"mnistlab: error: {_os_error_line(error)}", file=sys.stderr)
        if argv is None and _raised_in_h5py(error):
            # HDF5 cannot close a file whose write failed (a full disk), tries again when
            # the process exits, and crashes it there. What the command wrote is discarded
            # and the cause said: end the process without the libraries' exit handlers.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        return 1
    except Exception as error:
        # TensorFlow's checkpoint and SavedModel writers report a full disk (and its
        # allocator exhausted memory) as ResourceExhaustedError, which is no OSError.
        line = _resource_error_line(error)
        if line is None:
            raise
        print(f"mnistlab: error: {line}", file=sys.stderr)
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


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _os_error_line(error: OSError) -> str:
    """One line, "<file>: <reason>". h5py reports a full disk as an OSError whose text is a
    many-line report: its errno says it in words, and the report names the file."""
    reason = error.strerror or str(error)
    if error.errno and ("\n" in reason or len(reason) > 200):
        reason = os.strerror(error.errno)
    filename = error.filename
    if filename is None:
        import re

        named = re.search(r"filename = '([^']+)'", str(error))
        filename = named.group(1) if named else None
    return _one_line(f"{filename}: {reason}" if filename else reason)


def _resource_error_line(error: Exception) -> str | None:
    """TensorFlow's ResourceExhaustedError ("{{function_node ...}} <file>; No space left on
    device [Op:SaveV2]") as "<file>: No space left on device"; None for any other error.
    TensorFlow is only looked at when a command has imported it already."""
    errors = getattr(sys.modules.get("tensorflow"), "errors", None)
    if errors is None or not isinstance(error, errors.ResourceExhaustedError):
        return None
    import re

    text = _one_line(str(getattr(error, "message", "") or error), limit=10_000)
    text = re.sub(r"^\{\{.*?\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:\w+\]$", "", text)
    where, _, reason = text.rpartition("; ")
    return _one_line(f"{where}: {reason}" if where and reason else text)


def _raised_in_h5py(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised while handling (marking the run failed
    on the same full disk), came from inside h5py (its frames are in the traceback)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback = error.__traceback__
        while traceback is not None:
            if "h5py" in traceback.tb_frame.f_code.co_filename:
                return True
            traceback = traceback.tb_next
        error = error.__cause__ or error.__context__
    return False


def _drop_h5py_destructor_echoes() -> None:
    """Keep a failed Keras weights write (a full disk) to one line.

    h5py reports the failed write as an OSError, which `main` prints in one line; but the
    objects that die while that error unwinds report it again from their destructors, each
    as a traceback printed through `sys.excepthook` and an "Exception ignored" notice through
    `sys.unraisablehook`. Those echoes, and only those, are dropped; every other exception
    reaches the hooks that were installed before.
    """
    previous_excepthook, previous_unraisablehook = sys.excepthook, sys.unraisablehook

    def from_h5py(traceback) -> bool:
        while traceback is not None:
            if "h5py" in traceback.tb_frame.f_code.co_filename:
                return True
            traceback = traceback.tb_next
        return False

    def excepthook(kind, value, traceback) -> None:
        if not (kind is RuntimeError and from_h5py(traceback)):
            previous_excepthook(kind, value, traceback)

    def unraisablehook(unraisable) -> None:
        where = unraisable.object
        if not (isinstance(where, str) and where.startswith("h5py.")):
            previous_unraisablehook(unraisable)

    sys.excepthook, sys.unraisablehook = excepthook, unraisablehook


_drop_h5py_destructor_echoes()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
