"""Start several multi-worker training processes on this machine (`train --local-workers N`).

Each worker is an ordinary `mnistlab train` process with `--strategy multi-worker`, the
list of every worker's loopback address and its own index; worker 0, the chief, writes the
run directory and prints as a single process would. This is the demonstration and the test
rig of multi-worker training; across hosts, each host runs its own `mnistlab train` with
the same `--workers` list (or a `TF_CONFIG`).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from mnistlab.errors import ConfigError, MnistlabError
from mnistlab.training.distribute import COLLECTIVE_TIMEOUT_SECONDS

MAX_LOCAL_WORKERS = 16


class WorkerError(MnistlabError):
    """A worker process failed; the others were stopped."""

    exit_code = 1


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on the loopback interface."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def run_local_workers(count: int, argv: Sequence[str]) -> int:
    """Run `mnistlab <argv>` as `count` multi-worker processes; the chief's exit code.

    When a worker fails, the others get at most the collective timeout to notice, then are
    stopped, and the failure is reported in one line.
    """
    if not 2 <= count <= MAX_LOCAL_WORKERS:
        raise ConfigError(f"--local-workers must be from 2 to {MAX_LOCAL_WORKERS}, got {count}")
    addresses = ",".join(f"127.0.0.1:{port}" for port in free_ports(count))
    processes = []
    for index in range(count):
        command = [sys.executable, "-m", "mnistlab", *argv, "--strategy", "multi-worker",
                   "--workers", addresses, "--worker-index", str(index)]
        if index:
            command.append("--quiet")
        processes.append(subprocess.Popen(
            command, stdout=None if index == 0 else subprocess.DEVNULL,
            stderr=None if index == 0 else subprocess.PIPE, text=True))

    def forward(signal_number, frame):
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal_number)

    previous = {number: signal.signal(number, forward)
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _wait(processes)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _wait(processes: list[subprocess.Popen]) -> int:
    failed_at = None
    while any(process.poll() is None for process in processes):
        failed = [index for index, process in enumerate(processes)
                  if process.poll() not in (None, 0)]
        if failed and failed_at is None:
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > COLLECTIVE_TIMEOUT_SECONDS:
            break
        time.sleep(0.2)
    for index, process in enumerate(processes):
        if process.poll() not in (None, 0):
            if index == 0:
                return process.returncode  # the chief said why itself
            reason = ""
            if process.stderr is not None:
                lines = [line for line in process.stderr.read().splitlines() if line.strip()]
                reason = lines[-1] if lines else ""
            raise WorkerError(f"worker {index} failed (exit {process.returncode})"
                              + (f": {reason}" if reason else ""))
    if any(process.poll() is None for process in processes):
        raise WorkerError("a worker failed and the others did not stop in time")
    return 0
