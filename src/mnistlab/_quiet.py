"""Keep TensorFlow's start-up and library chatter off a user's terminal.

Importing TensorFlow prints absl, oneDNN and CPU-instruction lines, and training and export add
XLA and TFLite ones: noise to someone who asked for an accuracy. Most of it obeys
`TF_CPP_MIN_LOG_LEVEL`, which TensorFlow reads once, when its C++ library starts, so it must be
in the environment before TensorFlow is first imported. Two lines do not obey it: the oneDNN
notice (printed twice, by two libraries) and absl's "All log messages before
absl::InitializeLog() is called are written to STDERR" are written while the shared libraries
load, before any setting is read; no environment variable removes them (tried:
TF_CPP_MIN_LOG_LEVEL, TF_CPP_MIN_VLOG_LEVEL, GRPC_VERBOSITY, TF_ENABLE_ONEDNN_OPTS=1,
ABSL_MIN_LOG_LEVEL, GLOG_minloglevel). Turning oneDNN off would silence its notice but change
the numbers, so instead the first `import tensorflow` runs with file descriptor 2 captured, and
what it wrote comes back without the log lines below the chosen level.

`quiet_tensorflow()` is called by the command line before anything imports TensorFlow (not at
all with `--verbose`) and by `import mnistlab`, so a notebook or script stays quiet too.
A level the user set in `TF_CPP_MIN_LOG_LEVEL` is kept and applied to those start-up lines as
well. Once TensorFlow runs, the level silences its later lines (XLA's "Compiled cluster using
XLA", the converter's); TFLite's interpreter logs on its own, once, when it first allocates
its tensors: `quiet_native_output()` is for that call.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# The C++ level (0 all, 1 no INFO, 2 no WARNING, 3 no ERROR) unless the user set one.
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # gRPC, under tf.distribute's multi-worker strategies, logs on its own.
    "GRPC_VERBOSITY": "ERROR",
}
# Python loggers of TensorFlow and absl: errors only.
QUIET_LOGGERS = ("tensorflow", "absl")

# A C++ log line: severity letter, date, time, thread, file:line] message.
_LOG_LINE = re.compile(rb"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\]\s]+:\d+\] ")
_SEVERITIES = b"IWEF"
# Lines of absl, TensorFlow and TFLite messages that carry no log prefix.
_BARE_NOISE = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"To enable the following instructions:",  # the second line of cpu_feature_guard's notice
    b"INFO: ",  # TFLite's own logger ("INFO: Created TensorFlow Lite XNNPACK delegate ...")
)

_state: dict = {"environment": {}, "loggers": {}, "finder": None}


def _minimum_level() -> int:
    """The C++ log level in force: TF_CPP_MIN_LOG_LEVEL as a number from 0 to 3."""
    text = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip()
    return min(3, max(0, int(text))) if text.isdigit() else 0


def filter_log_output(data: bytes, level: int) -> bytes:
    """`data` (what was written to stderr) without the C++ log lines below `level` and the
    absl/TensorFlow start-up lines that have no prefix (when `level` is at least 1)."""
    kept = []
    for line in data.splitlines(keepends=True):
        match = _LOG_LINE.match(line)
        if match is not None and _SEVERITIES.index(match.group(1)) < level:
            continue
        if level >= 1 and line.startswith(_BARE_NOISE):
            continue
        kept.append(line)
    return b"".join(kept)


@contextlib.contextmanager
def filtered_stderr(level: int) -> Iterator[None]:
    """Capture what is written to file descriptor 2 (by C++ as well as by Python) and write it
    back, filtered by `filter_log_output`, when the block ends."""
    try:
        descriptor = sys.__stderr__.fileno() if sys.__stderr__ else 2
        saved = os.dup(descriptor)
    except (OSError, ValueError):  # no usable file descriptor (an embedded interpreter)
        yield
        return
    with tempfile.TemporaryFile() as capture:
        for stream in (sys.stderr, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(capture.fileno(), descriptor)
        try:
            yield
        finally:
            for stream in (sys.stderr, sys.__stderr__):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved, descriptor)
            os.close(saved)
            capture.seek(0)
            rest = filter_log_output(capture.read(), level)
            if rest:
                os.write(descriptor, rest)


def quiet_native_output() -> contextlib.AbstractContextManager:
    """A block whose C++ log lines below the level in force are dropped: for library calls
    that log outside TensorFlow's logger, such as the TFLite interpreter's first
    `allocate_tensors()`, which announces the XNNPACK delegate. With `--verbose` (no level
    set) everything passes."""
    return filtered_stderr(_minimum_level())


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader of `tensorflow` with its start-up output filtered."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        _remove_finder()
        with filtered_stderr(_minimum_level()):
            self.loader.exec_module(module)
        _lower_python_logging()

    def __getattr__(self, name: str):
        # get_resource_reader, is_package and the like, as the real loader answers them.
        return getattr(self.loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` through the other finders and wraps its loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


def _remove_finder() -> None:
    finder = _state["finder"]
    if finder is not None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)
        _state["finder"] = None


def _lower_python_logging() -> None:
    """TensorFlow's and absl's Python loggers to ERROR (absl's once it is importable)."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        _state["loggers"].setdefault(name, logger.level)
        logger.setLevel(logging.ERROR)
    if "absl.logging" in sys.modules or "tensorflow" in sys.modules:
        with contextlib.suppress(ImportError):
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)


def quiet_tensorflow(verbose: bool = False) -> None:
    """Silence TensorFlow's log lines for the rest of the process (warnings that are not
    TensorFlow's, and errors, still show); with `verbose`, undo what an earlier call did.

    Takes full effect when called before TensorFlow is imported; after that, only the Python
    loggers can still be lowered. Variables the user set in the environment are left alone.
    """
    if verbose:
        _remove_finder()
        for name, value in _state["environment"].items():
            if os.environ.get(name) == value:
                del os.environ[name]
        _state["environment"].clear()
        for name, level in _state["loggers"].items():
            logging.getLogger(name).setLevel(level)
        _state["loggers"].clear()
        return
    for name, value in QUIET_ENVIRONMENT.items():
        if name not in os.environ:
            os.environ[name] = value
            _state["environment"][name] = value
    _lower_python_logging()
    if "tensorflow" not in sys.modules and _state["finder"] is None:
        _state["finder"] = _QuietFinder()
        sys.meta_path.insert(0, _state["finder"])
