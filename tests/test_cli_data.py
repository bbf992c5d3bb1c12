"""`mnistlab data ...` in-process: exit codes, output, one-line errors, help with examples."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from mnistlab.cli import main
from mnistlab.data import DATASETS, FILE_NAMES, cache_root, write_idx


@pytest.fixture
def tiny_in_cache(tiny_dataset_dir, monkeypatch):
    """Register the tiny dataset as "tiny" (no mirrors, no npm) and put a copy in the cache."""
    checksums = {
        name: hashlib.sha256((tiny_dataset_dir / name).read_bytes()).hexdigest()
        for name in FILE_NAMES
    }
    spec = dataclasses.replace(
        DATASETS["mnist"], name="tiny", mirrors=(), npm_package=None, sha256=checksums
    )
    monkeypatch.setitem(DATASETS, "tiny", spec)
    cache = cache_root() / "tiny"
    cache.mkdir(parents=True)
    for name in FILE_NAMES:
        (cache / name).write_bytes((tiny_dataset_dir / name).read_bytes())
    return cache


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    assert err.startswith("mnistlab: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err


@pytest.mark.parametrize("command", ["list", "fetch", "verify", "info"])
def test_every_command_has_help_with_an_example(capsys, command):
    with pytest.raises(SystemExit) as exited:
        main(["data", command, "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "example" in out and f"mnistlab data {command}" in out and "--data-dir" in out


def test_list_shows_every_dataset(capsys):
    code, out, _ = run(capsys, "data", "list")
    assert code == 0
    assert "mnist" in out and "fashion-mnist" in out and "not present" in out


def test_list_shows_a_verified_copy(capsys, tiny_in_cache):
    code, out, _ = run(capsys, "data", "list")
    assert code == 0
    assert "tiny" in out and "verified" in out


def test_fetch_reports_the_source(capsys, tiny_in_cache):
    code, out, _ = run(capsys, "data", "fetch", "tiny", "--quiet")
    assert code == 0
    assert f"tiny: verified copy at {tiny_in_cache}" in out
    assert f"source: cache {tiny_in_cache}" in out


def test_verify_passes_then_names_a_corrupt_file(capsys, tiny_in_cache):
    code, out, _ = run(capsys, "data", "verify", "tiny")
    assert code == 0
    assert out.count("  ok ") == 4
    bad = tiny_in_cache / "train-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-1] + b"\x09")
    code, out, err = run(capsys, "data", "verify", "tiny")
    assert code == 1
    assert "FAILED train-labels-idx1-ubyte" in out
    assert_one_line_error(err, f"{bad}: checksum mismatch")


def test_fetch_with_no_source_left_is_an_error_without_traceback(capsys, tiny_in_cache):
    (tiny_in_cache / "t10k-images-idx3-ubyte").unlink()
    code, _, err = run(capsys, "data", "fetch", "tiny", "--quiet")
    assert code == 2
    assert "Traceback" not in err
    # The one multi-line error: what was tried, the checksums, how to place the files.
    assert err.startswith(
        "mnistlab: error: no verified copy of tiny could be found or fetched. Tried:"
    )
    assert "t10k-images-idx3-ubyte[.gz]  sha256 of the decompressed bytes:" in err


def test_info_of_a_custom_directory(capsys, tiny_dataset_dir):
    code, out, _ = run(capsys, "data", "info", str(tiny_dataset_dir))
    assert code == 0
    assert "200 / 50" in out and "28 x 28" in out and "examples per class" in out
    assert "no (custom dataset)" in out


def test_verify_and_fetch_of_a_custom_directory(capsys, tiny_dataset_dir):
    code, out, _ = run(capsys, "data", "verify", str(tiny_dataset_dir))
    assert code == 0
    assert "not verified" in out
    code, out, _ = run(capsys, "data", "fetch", str(tiny_dataset_dir))
    assert code == 0
    assert "valid custom dataset" in out


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["data", "info", "digits"], ["unknown dataset 'digits'"]),
        (
            ["data", "list", "--data-dir", "/nonexistent/dir"],
            ["data directory /nonexistent/dir does not"],
        ),
        (["data", "verify", "mnist"], ["no copy of mnist is present"]),
        (
            ["data", "fetch", "mnist", "--data-dir", "/nonexistent/dir"],
            ["data directory /nonexistent/dir does not"],
        ),
        (
            ["data", "info", "mnist", "--data-dir", "TINY"],
            ["train-images-idx3-ubyte: checksum mismatch"],
        ),
    ],
)
def test_errors_are_one_line(capsys, tiny_dataset_dir, argv, fragments):
    argv = [str(tiny_dataset_dir) if arg == "TINY" else arg for arg in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, *fragments)


def test_a_bad_custom_file_is_a_one_line_error(capsys, tiny_dataset_dir):
    path = tiny_dataset_dir / "t10k-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x07\x01")
    code, _, err = run(capsys, "data", "info", str(tiny_dataset_dir))
    assert code == 2
    assert_one_line_error(err, f"{path}: unknown IDX type code 0x07")


@pytest.mark.realdata
def test_real_mnist_commands_with_data_dir(capsys, mnist_dir):
    code, out, _ = run(capsys, "data", "verify", "mnist", "--data-dir", str(mnist_dir))
    assert code == 0
    assert "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db" in out
    code, out, _ = run(capsys, "data", "info", "mnist", "--data-dir", str(mnist_dir), "--quiet")
    assert code == 0
    assert "60000 / 10000" in out and "5923" in out and "1135" in out


def _damage(directory: Path, kind: str) -> Path:
    """Damage one file of a tiny dataset directory in one of several hostile ways; returns it."""
    images = directory / "train-images-idx3-ubyte"
    header = bytes([0, 0, 8, 3]) + np.asarray([200, 28, 28], dtype=">u4").tobytes()
    if kind == "sparse-100GiB":
        images.write_bytes(header)
        os.truncate(images, 100 << 30)
    elif kind == "sparse-zeros":
        images.write_bytes(b"")
        os.truncate(images, 100 << 30)
    elif kind == "gzip-bomb":
        images.unlink()
        images = directory / "train-images-idx3-ubyte.gz"
        member = gzip.compress(bytes(1 << 20), mtime=0)
        images.write_bytes(gzip.compress(header + bytes(200 * 784), mtime=0) + member * 64)
    elif kind == "truncated":
        images.write_bytes(images.read_bytes()[:-1])
    elif kind == "wrong-magic":
        images.write_bytes(b"\x1f\x00" + images.read_bytes()[2:])
    elif kind == "other-test-shape":
        images = directory / "t10k-images-idx3-ubyte"
        write_idx(images, np.zeros((50, 20, 20), np.uint8))
    elif kind == "zero-size-images":
        write_idx(images, np.zeros((200, 0, 0), np.uint8))
    return images


DAMAGE = ["sparse-100GiB", "sparse-zeros", "gzip-bomb", "truncated", "wrong-magic",
          "other-test-shape", "zero-size-images"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_files_are_one_line_errors_from_every_command(
    capsys, tiny_dataset_dir, monkeypatch, kind
):
    checksums = {
        name: hashlib.sha256((tiny_dataset_dir / name).read_bytes()).hexdigest()
        for name in FILE_NAMES
    }
    spec = dataclasses.replace(
        DATASETS["mnist"], name="tiny", mirrors=(), npm_package=None, sha256=checksums
    )
    monkeypatch.setitem(DATASETS, "tiny", spec)
    damaged = _damage(tiny_dataset_dir, kind)
    directory = str(tiny_dataset_dir)
    for argv in (
        ["data", "verify", "tiny", "--data-dir", directory],
        ["data", "info", "tiny", "--data-dir", directory],
        ["data", "verify", directory], ["data", "info", directory], ["data", "fetch", directory],
    ):
        code, _, err = run(capsys, *argv)
        assert code != 0, argv
        assert_one_line_error(err, str(damaged))
