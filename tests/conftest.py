"""Shared fixtures. Every test runs with its own empty dataset cache and no system datasets."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from mnistlab.config import make_config
from mnistlab.data import load_dataset, sources, write_dataset
from mnistlab.experiment import train_and_evaluate

from shapes import make_shapes_dataset

# Property tests draw the same examples on every run (derived from each test's name), so that
# CI never fails on an example found by chance; `pytest --hypothesis-profile=explore` draws
# new ones, to look for failures (a failure found that way becomes an explicit test).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("repeatable")

REAL_DATA_ENV = "MNISTLAB_TEST_DATA_DIR"
DEFAULT_REAL_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "mnist"


def pytest_collection_modifyitems(items):
    """A test that asks for the real MNIST files is a `realdata` test, marked or not, so that
    `-m "not realdata"` (make test-fast) never waits for it."""
    for item in items:
        if "mnist_dir" in getattr(item, "fixturenames", ()) and \
                item.get_closest_marker("realdata") is None:
            item.add_marker(pytest.mark.realdata)


@pytest.fixture(autouse=True)
def isolated_data_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the dataset cache at a per-test folder and hide the machine's datasets.

    Tests must never read or write the user's real ~/.cache, nor depend on what the
    machine has under /usr/share/datasets. Returns the cache root (created lazily).
    """
    cache = tmp_path / "mnistlab-cache"
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(cache))
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(sources, "SYSTEM_DATA_ROOTS", ())
    return cache


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Print to a 200-column terminal, so that a long temporary path (a deep TMPDIR, or
    pytest-xdist's per-worker folder) does not wrap the messages tests look for. The tests
    of narrow terminals set their own width."""
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def mnist_dir() -> Path:
    """The real MNIST files: $MNISTLAB_TEST_DATA_DIR, else ../shared/datasets/mnist."""
    directory = Path(os.environ.get(REAL_DATA_ENV) or DEFAULT_REAL_DATA)
    if not directory.is_dir():
        pytest.skip(f"real MNIST files not found at {directory} (set {REAL_DATA_ENV})")
    return directory


@pytest.fixture
def tiny_dataset_dir(tmp_path: Path) -> Path:
    """A tiny valid MNIST-format dataset: 200 train / 50 test random 28x28 uint8 images.

    Labels are 0-9 with every class present in both splits; the files are raw IDX.
    """
    rng = np.random.default_rng(0)

    def labels(count: int) -> np.ndarray:
        return rng.permutation(np.arange(count) % 10).astype(np.uint8)

    return write_dataset(
        tmp_path / "tiny-dataset",
        train_images=rng.integers(0, 256, size=(200, 28, 28), dtype=np.uint8),
        train_labels=labels(200),
        test_images=rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8),
        test_labels=labels(50),
    )


def make_toy_arrays(seed: int = 0, train: int = 400, test: int = 100):
    """Ten separable classes: class k lights up rows 2k..2k+3 of noisy images."""
    rng = np.random.default_rng(seed)

    def make(count):
        labels = np.tile(np.arange(10, dtype=np.uint8), count // 10)
        images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
        for k in range(10):
            images[labels == k, 2 * k:2 * k + 4, 5:20] = 250
        return images, labels

    train_images, train_labels = make(train)
    test_images, test_labels = make(test)
    return train_images, train_labels, test_images, test_labels


@pytest.fixture
def toy_dataset_dir(tmp_path: Path) -> Path:
    """A tiny learnable dataset (400 train / 100 test) written as raw IDX files."""
    train_images, train_labels, test_images, test_labels = make_toy_arrays()
    return write_dataset(tmp_path / "toy-dataset", train_images=train_images,
                         train_labels=train_labels, test_images=test_images,
                         test_labels=test_labels)


@pytest.fixture
def toy_dataset(toy_dataset_dir: Path):
    """The learnable toy dataset loaded as a `Dataset`."""
    return load_dataset(toy_dataset_dir, progress=False)


@pytest.fixture(scope="session")
def shapes_run(tmp_path_factory):
    """A completed forest run trained on the shapes."""
    config = make_config("random-forest", model_options={"n_estimators": 10, "n_jobs": 1})
    run_dir = tmp_path_factory.mktemp("serve") / "shapes-forest"
    result = train_and_evaluate(config, run_dir, dataset=make_shapes_dataset(), progress=False)
    assert result.metrics["test_accuracy"] > 0.9
    return result.run_dir


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory) -> Path:
    """The learnable toy dataset (400 train / 100 test) written once for the session, for
    tests that run whole commands in other processes."""
    train_images, train_labels, test_images, test_labels = make_toy_arrays(train=400, test=100)
    return write_dataset(tmp_path_factory.mktemp("toy") / "toy", train_images=train_images,
                         train_labels=train_labels, test_images=test_images,
                         test_labels=test_labels)


@contextlib.contextmanager
def no_hang(seconds: int = 20):
    """Fail instead of waiting forever (reading a named pipe blocks until a writer comes)."""
    def stop(signal_number, frame):
        raise AssertionError(f"still waiting after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def table_rows(output):
    """The rows of the tables in a command's output: first cell -> the other cells."""
    rows = {}
    for line in output.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows
