"""The hand-written loop on tf.distribute: mirrored over logical CPU devices and two local
worker processes give the run one process gives; a worker that dies stops the other."""

from __future__ import annotations

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
from mnistlab.runs import load_model

pytestmark = pytest.mark.slow

# Weight tolerances after the run (absolute, relative): summing gradients in two halves
# rounds differently from one sum, and Adam's normalised steps let that grow over the CNN's
# 40 steps; its batch-norm statistics, recomputed from the final weights (precise batch
# norm), carry the weights' differences in proportion to their size (up to 1.5 here).
SOFTMAX_TOLERANCE, MLP_TOLERANCE, CNN_TOLERANCE = (1e-5, 0.0), (1e-4, 1e-4), (1e-3, 1e-3)
SOFTMAX = ["train", "softmax", "--epochs", "3", "--batch-size", "32", "--log-every", "5",
           "--seed", "4", "--quiet"]
# With dropout: each replica must apply its rows of the global batch's masks (Keras' layer
# gives both replicas the first half's masks, and the test accuracies then differ).
CNN = ["train", "cnn", "--width", "8", "--convs-per-block", "1", "--dense-units", "0",
       "--batch-norm", "--augment", "--dropout", "0.25", "--steps", "40", "--batch-size", "32",
       "--log-every", "10", "--learning-rate", "0.003", "--seed", "4", "--quiet"]
# The MLP's one-process loop is XLA-compiled, and XLA draws different dropout masks from the
# same seed than TensorFlow's kernels do: the replicas must draw theirs with XLA too (its
# weights then differ from one process's only by XLA's rounding against the kernels').
MLP = ["train", "mlp", "--width", "32", "--depth", "1", "--dropout", "0.3", "--steps", "40",
       "--batch-size", "32", "--log-every", "10", "--learning-rate", "0.003", "--seed", "4",
       "--quiet"]
MATCH_CASES = pytest.mark.parametrize(
    "command, tolerance",
    [(SOFTMAX, SOFTMAX_TOLERANCE), (MLP, MLP_TOLERANCE), (CNN, CNN_TOLERANCE)],
    ids=["softmax", "mlp", "cnn"])


def _cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MNISTLAB_COLLECTIVE_TIMEOUT": "20"}
    return subprocess.run([sys.executable, "-m", "mnistlab", *args], env=env, timeout=timeout,
                          capture_output=True, text=True)


def _variables(run_dir: Path) -> list[np.ndarray]:
    model = load_model(run_dir)
    if hasattr(model, "weights_"):
        return [model.weights_, model.bias_]
    return [np.asarray(variable) for variable in model.network_.weights]


def keras_batch_norm(monkeypatch) -> None:
    """The one-process run with Keras' batch norm, whose arithmetic (moments as sums over
    the batch, then the normalisation as separate ops) is closest to the replicas'
    synchronised layer's (which sums shifted values in one pass). (By default one process
    trains batch norm on TensorFlow's fused kernel, which rounds differently; Adam lets that
    grow: on this CNN the trained weights then differ by up to about 7e-3 after 40 steps.)"""
    from mnistlab.models.neural import CNN

    monkeypatch.setattr(CNN, "_fused_batch_norm", False)


def _close_runs(one: Path, other: Path, tolerance: tuple[float, float]) -> None:
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (one, other)]
    assert abs(metrics[0]["test_accuracy"] - metrics[1]["test_accuracy"]) <= 0.001
    atol, rtol = tolerance
    for a, b in zip(_variables(one), _variables(other), strict=True):
        np.testing.assert_allclose(a, b, atol=atol, rtol=rtol)


SYNCHRONIZED_MOMENTS = """
import json, sys, numpy as np, tensorflow as tf
from mnistlab.models._layers import fused_batch_normalization
from mnistlab.training.distribute import make_strategy

strategy = make_strategy("mirrored", 2)
rng = np.random.default_rng(0)
images = (1000.0 + rng.normal(size=(8, 5, 5, 3)) * [1.0, 0.1, 3.0]).astype(np.float32)
with strategy.scope():
    layer = fused_batch_normalization()(synchronized=True)
    layer.build(images.shape)
    layer.moving_mean.assign(images.mean((0, 1, 2)) + 0.3)  # as after a few steps
halves = strategy.experimental_distribute_values_from_function(
    lambda context: images[4 * context.replica_id_in_sync_group:][:4])
moments = strategy.run(tf.function(lambda half: layer._moments(half, None)), args=(halves,))
mean, variance = (strategy.experimental_local_results(value)[0].numpy() for value in moments)
exact = images.astype(np.float64)
print(json.dumps({"mean": np.max(np.abs(mean - exact.mean((0, 1, 2)))).item(),
                  "variance": np.max(np.abs(variance / exact.var((0, 1, 2)) - 1)).item()}))
"""


def test_synchronized_batch_norm_moments_are_those_of_the_global_batch():
    """Over two replicas, one all-reduce gives the global batch's mean and variance, with
    the digits that E[x^2] - E[x]^2 loses when the mean (1000) is large against the spread
    (0.1 to 3): in float32 that loses about 6% of the smallest variance."""
    result = subprocess.run([sys.executable, "-c", SYNCHRONIZED_MOMENTS], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    errors = json.loads(result.stdout.splitlines()[-1])
    assert errors["mean"] < 1e-4 and errors["variance"] < 1e-4, errors


@MATCH_CASES
def test_mirrored_over_two_cpu_devices_matches_one_process(command, tolerance, toy_dir, tmp_path,
                                                           monkeypatch):
    keras_batch_norm(monkeypatch)
    assert main([*command, "--dataset", str(toy_dir), "--out", str(tmp_path / "one")]) == 0
    result = _cli([*command, "--dataset", str(toy_dir), "--out", str(tmp_path / "two"),
                   "--strategy", "mirrored", "--devices", "2"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "two" / "run.json").read_text())["strategy"] == "mirrored"
    _close_runs(tmp_path / "one", tmp_path / "two", tolerance)


@MATCH_CASES
def test_two_local_workers_match_one_process(command, tolerance, toy_dir, tmp_path, monkeypatch):
    keras_batch_norm(monkeypatch)
    assert main([*command, "--dataset", str(toy_dir), "--out", str(tmp_path / "one")]) == 0
    result = _cli([*command, "--dataset", str(toy_dir), "--out", str(tmp_path / "two"),
                   "--strategy", "multi-worker", "--local-workers", "2"])
    assert result.returncode == 0, result.stderr[-2000:]
    _close_runs(tmp_path / "one", tmp_path / "two", tolerance)
    # Only the chief wrote a run directory.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["one", "two"]


def test_a_worker_that_dies_stops_the_other_in_one_line(toy_dir, tmp_path):
    from mnistlab.launch import free_ports

    workers = ",".join(f"127.0.0.1:{port}" for port in free_ports(2))
    env = {**os.environ, "MNISTLAB_COLLECTIVE_TIMEOUT": "10"}
    long_run = [*CNN[:CNN.index("--steps")], "--steps", "100000", *CNN[CNN.index("--steps") + 2:]]
    processes = [subprocess.Popen(
        [sys.executable, "-m", "mnistlab", *long_run, "--dataset", str(toy_dir),
         "--out", str(tmp_path / "run"), "--strategy", "multi-worker", "--workers", workers,
         "--worker-index", str(index)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for index in (0, 1)]
    try:
        deadline = time.monotonic() + 180
        while not list((tmp_path / "run" / "checkpoints").glob("step-*.json")):
            assert time.monotonic() < deadline, "training did not start"
            assert processes[0].poll() is None, processes[0].stderr.read()
            time.sleep(0.2)
        processes[1].send_signal(signal.SIGKILL)
        started = time.monotonic()
        _, stderr = processes[0].communicate(timeout=120)
        waited = time.monotonic() - started
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert processes[0].returncode not in (0, None)
    lines = [line for line in stderr.splitlines() if line.startswith("mnistlab")]
    assert len(lines) == 1 and "worker" in lines[0], stderr[-2000:]
    assert "Traceback" not in stderr
    assert waited < 90
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_two_local_workers_stop_together_and_resume_to_the_same_run(toy_dir, tmp_path):
    """Ctrl-C to one worker only (a signal reaches each process on its own): the workers
    agree on one chunk boundary, the chief checkpoints and both stop (none is left waiting
    for a collective), and `train --resume --local-workers 2` finishes the run as if it
    had never stopped."""
    from mnistlab.launch import free_ports

    long_run = [*CNN[:CNN.index("--steps")], "--steps", "600", *CNN[CNN.index("--steps") + 2:],
                "--dataset", str(toy_dir), "--checkpoint-every", "10", "--strategy",
                "multi-worker"]
    straight = _cli([*long_run, "--local-workers", "2", "--out", str(tmp_path / "straight")])
    assert straight.returncode == 0, straight.stderr[-2000:]

    env = {**os.environ, "MNISTLAB_COLLECTIVE_TIMEOUT": "20"}
    workers = ",".join(f"127.0.0.1:{port}" for port in free_ports(2))
    processes = [subprocess.Popen(
        [sys.executable, "-m", "mnistlab", *long_run, "--out", str(tmp_path / "run"),
         "--workers", workers, "--worker-index", str(index)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for index in (0, 1)]
    try:
        deadline = time.monotonic() + 180
        while not list((tmp_path / "run" / "checkpoints").glob("step-*.json")):
            assert time.monotonic() < deadline and processes[0].poll() is None, "no checkpoint"
            time.sleep(0.1)
        processes[1].send_signal(signal.SIGINT)  # the other worker, not the chief
        started = time.monotonic()
        stderr = processes[0].communicate(timeout=120)[1]
        processes[1].communicate(timeout=60)
        waited = time.monotonic() - started
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [process.returncode for process in processes] == [130, 130], stderr[-2000:]
    assert waited < 15  # no worker waited out the collective timeout
    assert "interrupted at step" in stderr and "Traceback" not in stderr
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "interrupted" and 0 < info["step"] < 600

    resumed = _cli(["train", "--resume", str(tmp_path / "run"), "--local-workers", "2",
                    "--quiet"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "completed"
    for a, b in zip(_variables(tmp_path / "straight"), _variables(tmp_path / "run"),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    # Only the chief wrote a run directory; the other worker's scratch copies are gone.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run", "straight"]
