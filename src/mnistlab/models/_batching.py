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

import numpy as np


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
