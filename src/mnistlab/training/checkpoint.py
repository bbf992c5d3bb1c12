"""Checkpoints of a training loop, for exact resume, and the stop request of an interrupt.

A checkpoint holds everything that decides the rest of a run: the values of every variable
the loop uses (weights with batch-norm statistics, the dropout layers' seed-generator
states, the optimizer's slots, step counter and moving averages) and the records made so
far. The batch order and the augmentation are drawn from (seed, step), so they need no
saving: a resumed loop rebuilds them and skips to the step. Checkpoints are taken between
chunks of steps, so a resumed run makes the same compiled calls as one that never stopped,
and ends with the same numbers, bit for bit.

Each checkpoint is one `.npz` file (arrays) and one JSON file (step, records), written to
temporary names and renamed, the JSON last; the last `keep` are kept.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistlab.errors import MnistlabError
from mnistlab.fileio import write_bytes_atomic, write_text_atomic

CHECKPOINT_PATTERN = re.compile(r"^step-(\d{9})\.json$")


class TrainingInterrupted(MnistlabError):
    """Training stopped on request (Ctrl-C or SIGTERM) after writing a checkpoint; `step`
    None: between runs, none of them half-done."""

    def __init__(self, step: int | None, signal_number: int):
        super().__init__("interrupted" if step is None else f"interrupted at step {step:,}")
        self.step = step
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


@dataclass
class Checkpointer:
    """Where and how often a loop saves its state.

    A checkpoint is due at the first chunk boundary after `every_steps` steps (when set), at
    the end of each epoch, and at least every `every_seconds` seconds. `resume=True` makes
    the loop start from the newest checkpoint in `directory`, if there is one.
    """

    directory: Path
    every_steps: int | None = None
    every_seconds: float = 120.0
    keep: int = 2
    resume: bool = False
    _last_time: float = field(default_factory=time.monotonic, repr=False)
    _last_step: int = field(default=0, repr=False)

    def due(self, step: int, epoch_ended: bool) -> bool:
        """Whether to save at this chunk boundary (`step` steps done)."""
        if self.every_steps is not None:
            return step - self._last_step >= self.every_steps
        return epoch_ended or time.monotonic() - self._last_time >= self.every_seconds

    def save(self, step: int, arrays: Sequence[np.ndarray], records: list[dict]) -> Path:
        """Write the state after `step` steps; keep the newest `keep` checkpoints."""
        directory = Path(self.directory)
        directory.mkdir(parents=True, exist_ok=True)
        stem = directory / f"step-{step:09d}"
        buffer = _npz_bytes(arrays)
        write_bytes_atomic(stem.with_suffix(".npz"), buffer)
        write_text_atomic(stem.with_suffix(".json"), json.dumps(
            {"step": step, "arrays": len(arrays), "records": records}) + "\n")
        self._last_time, self._last_step = time.monotonic(), step
        for old in self.steps()[:-self.keep]:
            for suffix in (".json", ".npz"):
                (directory / f"step-{old:09d}{suffix}").unlink(missing_ok=True)
        return stem

    def steps(self) -> list[int]:
        """The steps of the checkpoints present, oldest first."""
        directory = Path(self.directory)
        if not directory.is_dir():
            return []
        found = (CHECKPOINT_PATTERN.match(path.name) for path in directory.iterdir())
        return sorted(int(match.group(1)) for match in found if match)

    def latest(self) -> tuple[int, list[np.ndarray], list[dict]] | None:
        """The newest readable checkpoint: (step, arrays, records), or None."""
        for step in reversed(self.steps()):
            stem = Path(self.directory) / f"step-{step:09d}"
            try:
                meta = json.loads(stem.with_suffix(".json").read_text())
                with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
                    arrays = [data[f"a{index}"] for index in range(meta["arrays"])]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged checkpoint: fall back to the one before
            self._last_step = step
            return step, arrays, list(meta["records"])
        return None


def _npz_bytes(arrays: Sequence[np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **{f"a{index}": np.asarray(array) for index, array in enumerate(arrays)})
    return buffer.getvalue()


# ------------------------------------------------------------------------------ stop requests


class StopRequest:
    """Ctrl-C or SIGTERM asks the work to stop at its next safe point (the loop's next chunk
    boundary, after a checkpoint; `reproduce` between runs); a second signal stops at once
    (KeyboardInterrupt).

    Used as a context manager around whatever must not be cut short: the command line holds
    it for a whole `train` or `reproduce`, so that a signal that comes while the data load,
    while a run directory is created or while a finished run is written is kept for the next
    safe point instead of killing the process half-way. Nested uses share the outermost
    one's request.
    """

    def __init__(self):
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}
        self._depth = 0

    def _handle(self, signal_number, frame) -> None:
        if self.signal_number is not None:
            raise KeyboardInterrupt
        self.signal_number = signal_number

    def __enter__(self) -> StopRequest:
        self._depth += 1
        if self._depth > 1:
            return self
        self.signal_number = None
        for number in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[number] = signal.signal(number, self._handle)
            except ValueError:  # not the main thread: no signal handling
                pass
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth:
            return
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signal_number is not None


STOP = StopRequest()


def stop_requested() -> int | None:
    """The signal that asked training to stop, or None."""
    return STOP.signal_number

