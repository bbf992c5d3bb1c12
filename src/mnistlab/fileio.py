"""Atomic file writes: a temporary file beside the target, renamed over it when complete.

Readers never see a half-written file, and an interrupted write leaves the old file as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_mode(path: Path, directory: bool = False) -> None:
    """Give a file or directory made private by `tempfile` (0600/0700) the usual mode."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        publish_mode(Path(temporary))
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        if error.filename is None and error.errno is not None:
            # A write to a full disk names no file; say which one it was.
            raise OSError(error.errno, error.strerror or os.strerror(error.errno),
                          str(path)) from None
        raise
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 text atomically (see `write_bytes_atomic`)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


# ------------------------------------------------------------------------------ markers
# A directory mnistlab writes whole (a run, a reproduction, a SavedModel export) carries this
# small JSON file, so that `--overwrite` can tell it from a directory of the user's: only a
# marked directory is ever replaced.
MARKER_FILE = ".mnistlab"
MARKER_FORMAT = "mnistlab"
MARKER_VERSION = 1


def write_marker(directory: Path, kind: str) -> dict:
    """Mark `directory` as written by mnistlab, as a `kind` ("run", "reproduction",
    "savedmodel"), with a fresh identifier; returns the marker."""
    import json
    import uuid

    marker = {"format": MARKER_FORMAT, "format_version": MARKER_VERSION, "kind": kind,
              "id": uuid.uuid4().hex}
    write_text_atomic(Path(directory) / MARKER_FILE, json.dumps(marker) + "\n")
    return marker


def read_marker(directory: Path) -> dict | None:
    """The marker of a directory mnistlab wrote, or None when it has none (or a damaged
    one). Reads at most a few kilobytes, and never blocks on a special file."""
    import json
    import stat

    path = Path(directory) / MARKER_FILE
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as file:
        try:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return None
            marker = json.loads(file.read(4096))
        except (OSError, ValueError, RecursionError):
            return None
    if (isinstance(marker, dict) and marker.get("format") == MARKER_FORMAT
            and isinstance(marker.get("kind"), str) and isinstance(marker.get("id"), str)):
        return marker
    return None


def is_temporary_name(name: str) -> bool:
    """Whether `name` is one of the temporary files `write_bytes_atomic` writes beside its
    target (".<name>.<random>.tmp"), left behind only by a process killed mid-write."""
    return name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3
