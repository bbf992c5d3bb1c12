"""The outer training loop every hand-written model shares: chunks, records, callbacks.

A model compiles one function that runs a chunk of training steps (its own `train_step` in
a `while` loop inside one `tf.function`) and returns a row of values for every step of the
chunk. This module calls it chunk after chunk over the batch plan, picks the steps that get
a record (every `log_every` steps and the last), turns their rows into records, hands them
to the callback, and stops on a non-finite loss naming its step. Python runs only here,
between chunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mnistlab._lazy import tf
from mnistlab.errors import RunError, TrainingDivergedError
from mnistlab.training.batching import BatchPlan
from mnistlab.training.checkpoint import Checkpointer, TrainingInterrupted, stop_requested

# callback(step, total_steps, record or None): see `run_chunks`.
Callback = Callable[[int, int, "dict | None"], None]


@dataclass
class ChunkResult:
    """What one compiled chunk returns.

    `rows` (chunk_steps, k): values of each step of the chunk (only record steps need to be
    filled); `bad_step`: the 1-based number of the first step whose loss was not finite, or
    0; `bad_loss`: that loss.
    """

    rows: np.ndarray
    bad_step: int
    bad_loss: float


def record_steps(start: int, end: int, log_every: int, total_steps: int) -> list[int]:
    """The steps in (start, end] that get a record: multiples of `log_every`, and the last."""
    steps = list(range(start // log_every * log_every + log_every, end + 1, log_every))
    if end == total_steps and end % log_every:
        steps.append(end)
    return steps


def pad_to_chunks(array: np.ndarray, chunk_steps: int) -> np.ndarray:
    """Pad a per-step array with zeros to whole chunks, so that every call of the compiled
    chunk sees the same shapes (one trace, one compile)."""
    padding = [(0, -len(array) % chunk_steps)] + [(0, 0)] * (array.ndim - 1)
    return np.pad(array, padding)


@dataclass
class TrainingState:
    """How a loop's state is read and restored for checkpoints: `get()` returns the values
    of every variable that decides the rest of the run, `set(values)` assigns them back."""

    get: Callable[[], list[np.ndarray]]
    set: Callable[[list[np.ndarray]], None]


def variables_state(variables: Sequence) -> TrainingState:
    """The state of a list of TensorFlow or Keras variables, in their order."""
    def get() -> list[np.ndarray]:
        return [np.array(variable.numpy()) for variable in variables]

    def set_values(values: list[np.ndarray]) -> None:
        if len(values) != len(variables) or any(
                tuple(value.shape) != tuple(variable.shape)
                for value, variable in zip(values, variables)):
            raise CheckpointMismatch("the checkpoint does not fit this model's variables")
        for variable, value in zip(variables, values):
            variable.assign(value)

    return TrainingState(get, set_values)


def run_chunks(run_chunk: Callable[[int, int], ChunkResult], plan: BatchPlan,
               chunk_steps: int, log_every: int,
               make_record: Callable[[int, int, np.ndarray], dict],
               callback: Callback | None = None, history: list[dict] | None = None,
               checkpoint: Checkpointer | None = None, state: TrainingState | None = None,
               agree_stop: Callable[[int | None], int | None] | None = None) -> list[dict]:
    """Run the whole plan, `chunk_steps` steps per call of `run_chunk(start, count)`.

    `make_record(step, epoch, row)` turns a record step's row into a record (a dict with
    at least "step" and "epoch"). `callback(step, total_steps, record)` is called once for
    each record, then with `None` at the chunk's last step if that made no record. Returns
    the history (records in step order, appended to `history` when given). Raises
    `TrainingDivergedError` naming the first step whose loss was not finite; the history
    then holds the records made before it.

    With a `checkpoint`, the loop saves `state` between chunks when one is due, and starts
    from the newest checkpoint when `checkpoint.resume` is set. A stop request (Ctrl-C,
    SIGTERM) ends the loop at the next chunk boundary, after a checkpoint, with
    `TrainingInterrupted`; with workers in several processes, `agree_stop`
    (`training.distribute.stop_agreement`) makes them all stop at the same boundary.
    """
    history = [] if history is None else history
    total_steps = plan.total_steps
    first = 0
    if checkpoint is not None and checkpoint.resume:
        latest = checkpoint.latest()
        if latest is not None:
            first, values, records = latest
            if first % chunk_steps or first >= total_steps:
                raise CheckpointMismatch(f"the checkpoint at step {first} does not fit this "
                                         f"run's chunks of {chunk_steps} steps")
            state.set(values)
            history[:] = records
    for start in range(first, total_steps, chunk_steps):
        count = min(chunk_steps, total_steps - start)
        result = run_chunk(start, count)
        end = result.bad_step - 1 if result.bad_step else start + count
        new_records = [make_record(step, plan.epoch_of(step), result.rows[step - 1 - start])
                       for step in record_steps(start, end, log_every, total_steps)]
        history.extend(new_records)
        if result.bad_step:
            kind = "nan" if math.isnan(result.bad_loss) else "inf"
            raise TrainingDivergedError(f"training loss became {kind} at step "
                                        f"{result.bad_step}")
        if callback is not None:
            for record in new_records:
                callback(record["step"], total_steps, record)
            if not new_records or new_records[-1]["step"] != end:
                callback(end, total_steps, None)
        if end < total_steps:
            stop = stop_requested() if agree_stop is None else agree_stop(stop_requested())
            epoch_ended = plan.epoch_of(end) != plan.epoch_of(end + 1)
            if checkpoint is not None and (stop or checkpoint.due(end, epoch_ended)):
                checkpoint.save(end, state.get(), history)
            if stop:
                raise TrainingInterrupted(end, stop)
    return history


class CheckpointMismatch(RunError):
    """A checkpoint that does not belong to this model or run."""


def check_finite(variables, total_steps: int) -> None:
    """The last update can overflow with no later step to see it: check the weights."""
    if not all(np.isfinite(np.asarray(variable)).all() for variable in variables):
        raise TrainingDivergedError(
            f"training loss became nan at step {total_steps}: the weights overflowed")


def chunk_inputs(plan: BatchPlan, chunk_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The plan's indices and sizes padded to whole chunks (see `pad_to_chunks`)."""
    return pad_to_chunks(plan.indices, chunk_steps), pad_to_chunks(plan.sizes, chunk_steps)


def as_int32(value: int) -> tf.Tensor:
    """A scalar int32 tensor (chunk arguments are tensors, so one trace serves every call)."""
    return tf.constant(value, tf.int32)
