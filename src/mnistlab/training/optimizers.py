"""Optimizers and learning-rate schedules, built once per fit, shared by every trained model.

A model names its choices (`optimizer="adam"`, `schedule="cosine"`) and the loop builds them
here; a model's own option table says which of these names it accepts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

# Biases and batch-norm scales and offsets are not decayed (decoupled weight decay applies
# to kernels only).
NO_DECAY_NAMES = ["bias", "gamma", "beta"]


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `start_fraction * peak` to `peak`, then cosine decay to
    `end_fraction * peak` at `total_steps`.

    With `start_fraction=1/25` and `end_fraction=1e-4` this is the one-cycle policy's
    learning-rate curve; with zeros it is cosine decay with a warm-up.
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int,
                 start_fraction: float = 0.0, end_fraction: float = 0.0):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.start_fraction = float(start_fraction)
        self.end_fraction = float(end_fraction)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(max(self.warmup_steps, 1))
        start = self.peak * self.start_fraction
        end = self.peak * self.end_fraction
        rising = start + (self.peak - start) * tf.minimum(step / warmup, 1.0)
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        falling = end + (self.peak - end) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        if self.warmup_steps == 0:
            return falling
        return tf.where(step < self.warmup_steps, rising, falling)

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "start_fraction": self.start_fraction,
                "end_fraction": self.end_fraction}


def _constant(learning_rate: float, total_steps: int, warmup_steps: int) -> Any:
    if warmup_steps == 0:
        return learning_rate
    return WarmupCosine(learning_rate, total_steps, warmup_steps, 0.0, 1.0)


def _cosine(learning_rate: float, total_steps: int, warmup_steps: int) -> Any:
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps,
                                                      alpha=0.0)
    return WarmupCosine(learning_rate, total_steps, warmup_steps, 0.0, 0.0)


def _linear(learning_rate: float, total_steps: int, warmup_steps: int) -> Any:
    if warmup_steps:
        raise ValueError("the linear schedule has no warm-up")
    return keras.optimizers.schedules.PolynomialDecay(
        learning_rate, decay_steps=total_steps, end_learning_rate=0.0, power=1.0)


def _one_cycle(learning_rate: float, total_steps: int, warmup_steps: int) -> Any:
    return WarmupCosine(learning_rate, total_steps, warmup_steps, 1.0 / 25.0, 1e-4)


# Learning-rate schedules over a run of `total_steps` updates, `warmup_steps` of them warm-up.
SCHEDULES: dict[str, Callable[[float, int, int], Any]] = {
    "constant": _constant,
    "cosine": _cosine,
    "linear": _linear,
    "one-cycle": _one_cycle,
}

# Optimizers by name; each takes Keras' keyword options (learning_rate, weight_decay, ...).
OPTIMIZERS: dict[str, Callable[..., keras.optimizers.Optimizer]] = {
    "adam": lambda **options: keras.optimizers.Adam(**options),
    "adamw": lambda **options: keras.optimizers.AdamW(**options),
    "sgd": lambda **options: keras.optimizers.SGD(**options),
    "momentum": lambda **options: keras.optimizers.SGD(momentum=0.9, **options),
    "nesterov": lambda **options: keras.optimizers.SGD(momentum=0.9, nesterov=True, **options),
    "rmsprop": lambda **options: keras.optimizers.RMSprop(**options),
    "adagrad": lambda **options: keras.optimizers.Adagrad(**options),
}


def build_optimizer(name: str, learning_rate: float, total_steps: int, *,
                    schedule: str = "constant", warmup_fraction: float = 0.0,
                    weight_decay: float = 0.0, ema_decay: float = 0.0
                    ) -> keras.optimizers.Optimizer:
    """The optimizer `name` with the learning-rate `schedule` over `total_steps` updates.

    `weight_decay` is decoupled (AdamW style) and skips biases and batch-norm parameters;
    `ema_decay` keeps a moving average of the weights (`finalize_variable_values` copies it
    into the model at the end).
    """
    warmup_steps = round(warmup_fraction * total_steps)
    options: dict[str, Any] = {
        "learning_rate": SCHEDULES[schedule](float(learning_rate), total_steps, warmup_steps)}
    if weight_decay:
        options["weight_decay"] = float(weight_decay)
    elif name == "adamw":
        options["weight_decay"] = 0.0
    if ema_decay:
        options.update(use_ema=True, ema_momentum=float(ema_decay),
                       ema_overwrite_frequency=None)
    optimizer = OPTIMIZERS[name](**options)
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    return optimizer
