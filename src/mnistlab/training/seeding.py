"""Randomness made explicit: seeds derived from the run's one seed, and the process-wide
settings that make TensorFlow repeat itself.

A model's `fit` draws everything from its own `seed` (stateless TensorFlow ops, NumPy
generators, a scoped Keras seed), so fitting twice gives the same model and leaves the
process as it was. What is process-wide, TensorFlow's op determinism, is set once by the
entry point (`enable_determinism`), not by `fit`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np


def derived_seeds(seed: int, count: int) -> list[int]:
    """`count` independent seeds derived from one (NumPy's `SeedSequence`)."""
    return [int(value) for value in np.random.SeedSequence(seed).generate_state(count)]


def enable_determinism() -> None:
    """Make TensorFlow's reductions repeat bit for bit (process-wide, set once)."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def keras_seed(seed: int) -> Iterator[None]:
    """Within the block, Keras draws its unseeded initial weights and layer seeds as after
    `keras.utils.set_random_seed(seed)`; afterwards the process's random state is as before.

    Keras 3 seeds a layer without an explicit seed (initializers, dropout) from Python's
    `random` module and its global seed generator; this scopes both to the block, so a fit
    is repeatable without changing process-wide state.
    """
    from keras.src.backend.common import global_state

    saved_state = random.getstate()
    saved_generator = global_state.get_global_attribute("global_seed_generator")
    random.seed(seed)
    global_state.set_global_attribute("global_seed_generator", None)
    try:
        yield
    finally:
        random.setstate(saved_state)
        global_state.set_global_attribute("global_seed_generator", saved_generator)
