"""Checkpoints, exact resume, interruption by signals, SIGKILL, a full disk, TensorBoard."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnistlab.cli import main
from mnistlab.models.neural import CNN, MLP
from mnistlab.models.softmax import SoftmaxRegression
from mnistlab.training import checkpoint as checkpoint_module
from mnistlab.training.checkpoint import STOP, Checkpointer, TrainingInterrupted
from mnistlab.training.seeding import enable_determinism

from conftest import make_toy_arrays


def _make(kind: str):
    if kind == "softmax":
        model = SoftmaxRegression(num_epochs=3, log_every=10, seed=1)
        model._chunk_steps = 10  # several chunks on toy data, so there is somewhere to stop
        return model
    if kind == "mlp":
        return MLP(width=32, num_steps=40, log_every=5, dropout=0.3, ema_decay=0.9, seed=2)
    # Every random part at once: dropout, augmentation, batch norm, EMA, weight decay.
    return CNN(width=4, depth=1, dense_units=16, dropout=0.2, batch_norm=True, augment=True,
               ema_decay=0.9, weight_decay=0.01, num_steps=30, log_every=5, seed=3)


@pytest.fixture(scope="module")
def data():
    enable_determinism()
    train_images, train_labels, test_images, test_labels = make_toy_arrays(train=400, test=100)
    return train_images, train_labels, (test_images, test_labels)


def _weights(model) -> list[np.ndarray]:
    if hasattr(model, "weights_"):
        return [model.weights_, model.bias_]
    return [np.asarray(variable) for variable in model.network_.variables]


@pytest.mark.parametrize("kind, stop_at", [("softmax", 10), ("softmax", 30), ("mlp", 5),
                                           ("mlp", 25), ("cnn", 10), ("cnn", 20)])
def test_interrupted_and_resumed_fit_is_bit_identical(kind, stop_at, data, tmp_path):
    images, labels, validation = data
    straight = _make(kind).fit(images, labels, validation_data=validation)

    def stop_there(step, total, record):
        if step == stop_at:
            STOP.signal_number = signal.SIGINT

    interrupted = _make(kind)
    try:
        with pytest.raises(TrainingInterrupted) as error:
            interrupted.fit(images, labels, validation_data=validation, callback=stop_there,
                            checkpoint=Checkpointer(tmp_path, every_steps=1000))
    finally:
        STOP.signal_number = None
    assert error.value.step == stop_at and error.value.exit_code == 130
    assert Checkpointer(tmp_path).steps() == [stop_at]  # the interrupt saved one
    resumed = _make(kind).fit(images, labels, validation_data=validation,
                              checkpoint=Checkpointer(tmp_path, every_steps=1000, resume=True))
    assert resumed.history_ == straight.history_
    for ours, theirs in zip(_weights(resumed), _weights(straight), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_checkpoints_keep_the_last_few_and_skip_damaged_ones(tmp_path):
    checkpointer = Checkpointer(tmp_path, keep=2)
    for step in (10, 20, 30):
        checkpointer.save(step, [np.full(3, step, np.float32)], [{"step": step}])
    assert checkpointer.steps() == [20, 30]
    (tmp_path / "step-000000030.npz").write_bytes(b"not a zip")
    step, arrays, records = checkpointer.latest()
    assert step == 20 and arrays[0].tolist() == [20, 20, 20] and records == [{"step": 20}]


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(10, [np.zeros(2)], [])
    real = checkpoint_module.write_bytes_atomic

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint_module, "write_bytes_atomic", full)
    with pytest.raises(OSError, match="No space left"):
        checkpointer.save(20, [np.ones(2)], [])
    monkeypatch.setattr(checkpoint_module, "write_bytes_atomic", real)
    assert checkpointer.steps() == [10]
    assert checkpointer.latest()[0] == 10
    assert not [path for path in tmp_path.iterdir() if "20" in path.name]


# ------------------------------------------------------------------- whole runs, in processes

TRAIN = ["train", "cnn", "--width", "4", "--depth", "1", "--dense-units", "8", "--dropout",
         "0.2", "--batch-norm", "--augment", "--steps", "300", "--batch-size", "32",
         "--log-every", "10", "--checkpoint-every", "10", "--seed", "5", "--quiet"]


def _start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnistlab", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for_checkpoint(run_dir: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((run_dir / "checkpoints").glob("step-*.json")):
            return
        if process.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint: {process.stderr.read()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("no checkpoint appeared")


@pytest.fixture(scope="module")
def straight_run(toy_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main([*TRAIN, "--dataset", str(toy_dir), "--out", str(out)]) == 0
    return out


def _same_run(a: Path, b: Path) -> None:
    metrics_a = json.loads((a / "metrics.json").read_text())
    metrics_b = json.loads((b / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "confusion_matrix", "per_class"):
        assert metrics_a[key] == metrics_b[key], key
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()
    assert (a / "model" / "network.weights.h5").read_bytes() == \
        (b / "model" / "network.weights.h5").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGINT, 130),
                                                      (signal.SIGTERM, 143)])
def test_a_signal_stops_after_a_checkpoint_and_resume_finishes_the_same_run(
        signal_number, exit_code, toy_dir, straight_run, tmp_path):
    env = {**os.environ, "MNISTLAB_DATA_DIR": ""}
    run_dir = tmp_path / "run"
    process = _start([*TRAIN, "--dataset", str(toy_dir), "--out", str(run_dir)], env)
    _wait_for_checkpoint(run_dir, process)
    os.kill(process.pid, signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "resume with: mnistlab train --resume" in lines[0], stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and record["step"] % 10 == 0
    assert not (run_dir / "metrics.json").exists()
    # Nothing takes it for a finished run.
    assert main(["evaluate", str(run_dir)]) != 0
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    _same_run(run_dir, straight_run)
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.slow
def test_sigkill_leaves_no_finished_run_and_resume_completes_it(toy_dir, straight_run,
                                                                tmp_path, capsys):
    run_dir = tmp_path / "run"
    process = _start([*TRAIN, "--dataset", str(toy_dir), "--out", str(run_dir)], os.environ)
    _wait_for_checkpoint(run_dir, process)
    process.kill()
    process.communicate(timeout=60)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    assert main(["evaluate", str(run_dir)]) != 0
    assert main(["predict", str(run_dir), str(toy_dir)]) != 0
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    _same_run(run_dir, straight_run)


def test_resume_refuses_changed_data(toy_dir, straight_run, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(straight_run, run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    config = json.loads((run_dir / "config.json").read_text())
    config["data"]["checksums"] = {name: "0" * 64 for name in config["data"]["checksums"]}
    (run_dir / "config.json").write_text(json.dumps(config))
    assert main(["train", "--resume", str(run_dir)]) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "checksums differ" in error[0] and "--force" in error[0]


def test_resume_refuses_options_and_leaves_finished_runs_alone(straight_run, capsys):
    assert main(["train", "--resume", str(straight_run), "--epochs", "3"]) == 2
    assert "drop --epochs" in capsys.readouterr().err
    before = (straight_run / "metrics.json").read_bytes()
    assert main(["train", "--resume", str(straight_run)]) == 0
    assert "completed already; nothing to resume" in capsys.readouterr().out
    assert (straight_run / "metrics.json").read_bytes() == before


def test_tensorboard_events_repeat_the_history(straight_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    events = EventAccumulator(str(straight_run / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    history = list(csv.DictReader((straight_run / "history.csv").open()))

    def scalars(tag):  # (step, value) of a tag; tf.summary.write stores tensors
        return [(event.step, float(make_ndarray(event.tensor_proto)))
                for event in events.Tensors(tag)]

    losses = scalars("train/loss")
    assert [step for step, _ in losses] == [int(row["step"]) for row in history]
    np.testing.assert_allclose([value for _, value in losses],
                               [float(row["train_loss"]) for row in history], rtol=1e-6)
    assert events.SummaryMetadata("train/loss").plugin_data.plugin_name == "scalars"
    metrics = json.loads((straight_run / "metrics.json").read_text())
    assert scalars("test/accuracy")[-1][1] == pytest.approx(metrics["test_accuracy"], rel=1e-6)


# --- a signal at any point of a reproduction ----------------------------------------------

REPRODUCE = ["reproduce", "--limit-train", "300", "--limit-test", "100", "--quiet"]


@pytest.fixture(scope="module")
def straight_reproduction(toy_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight-reproduction") / "out"
    assert main([*REPRODUCE, "--dataset", str(toy_dir), "--out", str(out)]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("signal_number, waits_for", [
    (signal.SIGTERM, "tutorial-v1"),  # its directory made, nothing in it yet
    (signal.SIGINT, "tutorial-v2/config.json"),  # before its training starts
    (signal.SIGTERM, "tutorial-v3/metrics.json"),  # trained, its figures being drawn
], ids=["directory-made", "before-training", "while-finishing"])
def test_a_signal_anywhere_in_reproduce_stops_it_cleanly_and_resume_finishes_it(
        signal_number, waits_for, toy_dir, straight_reproduction, tmp_path):
    """The signal is kept for the next safe point (a chunk boundary, or before the next
    run): one line naming the resume command, no half-written run; `reproduce --resume`
    then finishes with the numbers of a reproduction that never stopped."""
    out = tmp_path / "out"
    process = _start([*REPRODUCE, "--dataset", str(toy_dir), "--out", str(out)], os.environ)
    deadline = time.monotonic() + 120
    while not (out / waits_for).exists():
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
        time.sleep(0.005)
    os.kill(process.pid, signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal_number, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"resume with: mnistlab reproduce --resume {out}" in lines[0]
    assert not (out / "summary.json").exists()
    for run_dir in out.iterdir():  # every run there is a run, marked as what it is
        if run_dir.is_dir() and run_dir.name.startswith("tutorial"):
            assert json.loads((run_dir / "run.json").read_text())["status"] in (
                "completed", "interrupted")
    assert main(["reproduce", "--resume", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [(row["name"], row["test_accuracy"]) for row in summary["models"]] == \
        [(row["name"], row["test_accuracy"]) for row in straight_reproduction["models"]]
