"""Index orders for minibatch training, made in NumPy without a Python loop per example.

The tutorial feeds its model through `tf.data`: `repeat().shuffle(5000).batch(32)` (version 1)
and `shuffle(5000).batch(B)` per epoch (versions 2 and 3). A shuffle *buffer* is not a full
shuffle: each output is drawn uniformly from a buffer of `buffer_size` waiting elements, and
the drawn slot is refilled with the next input. This module reproduces those orders (same
distribution, not tf.data's random stream) as whole index arrays, so that a compiled training
loop can gather its batches from index tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mnistlab.errors import ConfigError

# The whole batch order is drawn up front; a plan larger than this many bytes of indices
# (steps x batch x 4) is refused before it is drawn, so a huge --epochs or --batch-size fails
# in one line instead of exhausting memory.
MAX_PLAN_BYTES = 2 * 1024 ** 3


def shuffle_buffer_order(
    num_inputs: int | None, num_outputs: int, buffer_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Return the input positions that a shuffle buffer emits, in order.

    `num_inputs=None` means an endless input stream (positions 0, 1, 2, ...), as after
    `repeat()`; a finite stream is drained at its end like `tf.data` does: the elements left
    in the buffer come out in random order. Returns int64 positions, length `num_outputs`
    (at most `num_inputs` for a finite stream).

    The buffer is simulated without a loop: at output time t a uniform slot s_t is emitted and
    refilled with input `buffer_size + t`, so output t is the input written by the last
    earlier time with the same slot, or the slot's initial input if there is none.
    """
    if num_inputs is not None:
        if num_outputs > num_inputs:
            raise ValueError(f"cannot draw {num_outputs} outputs from {num_inputs} inputs")
        if num_inputs <= buffer_size:
            return rng.permutation(num_inputs)[:num_outputs].astype(np.int64)
        steady_outputs = num_inputs - buffer_size
    else:
        steady_outputs = num_outputs
    # Small slot numbers sort by radix sort: linear time.
    slot_dtype = np.uint16 if buffer_size <= np.iinfo(np.uint16).max else np.int64
    slots = rng.integers(0, buffer_size, size=steady_outputs).astype(slot_dtype)
    # The previous time each slot was drawn: sort times by slot, stably, so that equal slots
    # are neighbours in time order.
    times_by_slot = np.argsort(slots, kind="stable")
    sorted_slots = slots[times_by_slot]
    previous_time = np.full(steady_outputs, -1, dtype=np.int64)
    same_slot = sorted_slots[1:] == sorted_slots[:-1]
    previous_time[times_by_slot[1:][same_slot]] = times_by_slot[:-1][same_slot]
    order = np.where(previous_time >= 0, buffer_size + previous_time, slots.astype(np.int64))
    if num_inputs is None or num_outputs <= steady_outputs:
        return order[:num_outputs]
    # Drain: what each slot holds after the last steady output, in random order.
    contents = np.arange(buffer_size, dtype=np.int64)
    last_time = np.full(buffer_size, -1, dtype=np.int64)
    last_of_slot = np.append(~same_slot, True)  # the last time of each run of equal slots
    last_time[sorted_slots[last_of_slot]] = times_by_slot[last_of_slot]
    written = last_time >= 0
    contents[written] = buffer_size + last_time[written]
    drained = rng.permutation(contents)
    return np.concatenate([order, drained])[:num_outputs]


def repeated_batches(
    num_examples: int,
    batch_size: int,
    num_steps: int,
    buffer_size: int | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Batches of `Dataset.repeat().shuffle(buffer_size).batch(batch_size)`: (steps, batch).

    The shuffle buffer runs across epoch boundaries, as in the tutorial's version 1.
    `buffer_size` None or 0 means a full shuffle of each pass over the data.
    """
    total = num_steps * batch_size
    if buffer_size:
        positions = shuffle_buffer_order(None, total, buffer_size, rng) % num_examples
    else:
        passes = math.ceil(total / num_examples)
        positions = np.concatenate([rng.permutation(num_examples) for _ in range(passes)])
    return positions[:total].astype(np.int32).reshape(num_steps, batch_size)


def epoch_batches(
    num_examples: int,
    batch_size: int,
    num_epochs: int,
    buffer_size: int | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Batches of `shuffle(buffer_size).batch(batch_size)`, reshuffled for each epoch.

    Returns `(indices, sizes)`: indices (epochs * steps_per_epoch, batch_size) int32 and the
    number of real examples in each batch (int32). The last batch of an epoch keeps its
    partial size, as `batch` does by default; its unused slots hold index 0.
    """
    steps_per_epoch = math.ceil(num_examples / batch_size)
    padded = steps_per_epoch * batch_size
    indices = np.zeros((num_epochs, padded), dtype=np.int32)
    for epoch in range(num_epochs):
        if buffer_size:
            indices[epoch, :num_examples] = shuffle_buffer_order(
                num_examples, num_examples, buffer_size, rng
            )
        else:
            indices[epoch, :num_examples] = rng.permutation(num_examples)
    sizes = np.full(steps_per_epoch, batch_size, dtype=np.int32)
    sizes[-1] = num_examples - (steps_per_epoch - 1) * batch_size
    return indices.reshape(-1, batch_size), np.tile(sizes, num_epochs)


@dataclass(frozen=True)
class BatchPlan:
    """A whole run's batches: which examples each step sees, and how the steps count.

    `indices` (steps, batch_size) int32 and `sizes` (steps,) int32, the real examples of
    each batch (a last partial batch of an epoch is padded with index 0). `num_epochs` is
    set when the run's length was given in epochs.
    """

    indices: np.ndarray
    sizes: np.ndarray
    num_examples: int
    num_epochs: int | None

    def __post_init__(self):
        object.__setattr__(self, "_examples_done", np.cumsum(self.sizes, dtype=np.int64))

    @property
    def total_steps(self) -> int:
        """The number of training steps."""
        return len(self.indices)

    def examples_done(self, step: int) -> int:
        """Examples seen after `step` steps (1-based)."""
        return int(self._examples_done[step - 1])

    def epoch_of(self, step: int) -> int:
        """The 1-based epoch that step number `step` belongs to.

        The last step of an epoch-long run may overrun the last epoch by less than a batch;
        it still belongs to that epoch.
        """
        epoch = math.ceil(self.examples_done(step) / self.num_examples)
        return epoch if self.num_epochs is None else min(epoch, self.num_epochs)


def make_batch_plan(num_examples: int, batch_size: int, *, num_steps: int | None,
                    num_epochs: int | None, repeat: bool, shuffle_buffer: int | None,
                    rng: np.random.Generator) -> BatchPlan:
    """Draw a run's batch order, as the tutorial's `tf.data` pipelines would.

    `repeat=True`: `repeat().shuffle(shuffle_buffer).batch(batch_size)`, every batch full,
    `num_steps` steps or as many as `num_epochs` passes need. `repeat=False`: each epoch
    `shuffle(shuffle_buffer).batch(batch_size)`, its last partial batch kept; `num_steps`
    cuts the epochs short. `num_steps`, when given, decides the length; otherwise
    `num_epochs`. `shuffle_buffer` None or 0 is a full shuffle.
    """
    if num_steps is None and num_epochs is None:
        raise ConfigError("give the length of the run: num_steps or num_epochs")
    steps_per_epoch = math.ceil(num_examples / batch_size)
    if repeat:
        steps = num_steps if num_steps is not None else math.ceil(
            num_epochs * num_examples / batch_size)
    else:
        epochs = num_epochs if num_steps is None else math.ceil(num_steps / steps_per_epoch)
        steps = epochs * steps_per_epoch
    planned_bytes = steps * batch_size * 4
    if planned_bytes > MAX_PLAN_BYTES:
        raise ConfigError(
            f"the run's batch plan ({steps:,} steps of {batch_size:,}) would need "
            f"{planned_bytes / 1024 ** 3:,.1f} GiB of memory (at most "
            f"{MAX_PLAN_BYTES / 1024 ** 3:.0f} GiB): train for fewer steps or epochs")
    if repeat:
        indices = repeated_batches(num_examples, batch_size, steps, shuffle_buffer, rng)
        sizes = np.full(steps, batch_size, dtype=np.int32)
        return BatchPlan(indices, sizes, num_examples, None if num_steps else num_epochs)
    indices, sizes = epoch_batches(num_examples, batch_size, epochs, shuffle_buffer, rng)
    if num_steps is not None:
        indices, sizes = indices[:num_steps], sizes[:num_steps]
        return BatchPlan(indices, sizes, num_examples, None)
    return BatchPlan(indices, sizes, num_examples, num_epochs)
