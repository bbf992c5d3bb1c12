"""Neural classifiers built from Keras 3 layers and trained by our own compiled loop.

`MLP` (dense layers on the 784 pixels) and `CNN` (blocks of 3x3 convolutions and max-pooling)
share one base class, `NeuralClassifier`, which holds the loop. It follows the softmax model's
design (see softmax.py): the training images stay in memory as a uint8 tensor, the whole batch
order is drawn up front (full reshuffle per pass, every batch full, as `repeat().shuffle()
.batch()` with a full buffer), and one `tf.function` runs a chunk of `log_every` steps in a
`tf.range` loop, gathering each batch from the index tensor. Python runs only between chunks:
to evaluate the validation set, hand the record to the callback and stop on a diverged loss.

The MLP's chunks are XLA-compiled, the CNN's are not (a class attribute, `_jit_compile`,
that the benchmark flips): measured on two cores (benchmarks/bench_neural.py), XLA trains the
`mlp` preset's network 1.3-1.4x faster, but the CNN's chunks many times slower, since XLA's
CPU convolutions are far slower than oneDNN's; and XLA has no deterministic max-pool
gradient, so the CNN could not use it under op determinism at all.

The training record of a step (`train_loss`, `train_accuracy`) is the step's own batch as the
forward pass saw it: before the step's update, with dropout and augmentation, as Keras'
`fit` reports it; recomputing it after the update would cost a second forward pass.
`val_loss` and `val_accuracy` use the current (not the averaged) weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from mnistlab.errors import ConfigError, RunError, TrainingDivergedError
from mnistlab.models._augment import augment_images
from mnistlab.models._batching import repeated_batches
from mnistlab.models._saved import (empty_save_directory, read_model_document,
                                    write_model_document)
from mnistlab.models.softmax import (
    _as_labels,
    _check_choice,
    _check_loop_settings,
    _check_number,
    _check_positive_whole,
    _is_whole,
)

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
DEFAULT_NUM_EPOCHS = 10
PARAMS_FILE = "params.json"
WEIGHTS_FILE = "network.weights.h5"
# Images per call of the compiled predict function: large enough to keep oneDNN busy, small
# enough that a CNN's activations stay in the tens of megabytes.
PREDICT_BATCH = 1000
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


def _constant(learning_rate: float, total_steps: int, warmup_steps: int):
    if warmup_steps == 0:
        return learning_rate
    return WarmupCosine(learning_rate, total_steps, warmup_steps, 0.0, 1.0)


# Learning-rate schedules over a run of `total_steps` updates, `warmup_steps` of them warm-up.
SCHEDULES: dict[str, Callable[[float, int, int], Any]] = {
    "constant": _constant,
    "cosine": lambda learning_rate, total_steps, warmup_steps: WarmupCosine(
        learning_rate, total_steps, warmup_steps, 0.0, 0.0),
    "one-cycle": lambda learning_rate, total_steps, warmup_steps: WarmupCosine(
        learning_rate, total_steps, warmup_steps, 1.0 / 25.0, 1e-4),
}

# Optimizers, built once per fit; `weight_decay` is decoupled (AdamW-style) in all of them.
OPTIMIZERS: dict[str, Callable[..., keras.optimizers.Optimizer]] = {
    "adam": lambda **options: keras.optimizers.Adam(**options),
    "adamw": lambda **options: keras.optimizers.AdamW(**options),
    "sgd": lambda **options: keras.optimizers.SGD(momentum=0.9, nesterov=True, **options),
}


def _check_fraction(name: str, value: Any, *, upper: float = 1.0) -> None:
    """A number in [0, upper)."""
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value) or not 0.0 <= value < upper):
        raise ConfigError(f"{name} must be a number at least 0 and below {upper:g}, "
                          f"got {value!r}")


def _as_images(X: Any) -> np.ndarray:
    """Images (N, 28, 28) or (N, 784) -> uint8 (N, 28, 28), or float32 in [0, 1] if float."""
    X = np.asarray(X)
    if X.ndim not in (2, 3) or X.shape[1:] not in (IMAGE_SHAPE, (784,)):
        raise ValueError(f"expected images of shape (N, 28, 28) or (N, 784), got {X.shape}")
    X = X.reshape(len(X), *IMAGE_SHAPE)
    if X.dtype == np.uint8:
        return X
    if np.issubdtype(X.dtype, np.integer):
        return np.clip(X, 0, 255).astype(np.uint8)
    if np.issubdtype(X.dtype, np.floating):
        return X.astype(np.float32, copy=False)
    raise ValueError(f"expected integer or float pixels, got dtype {X.dtype}")


def _scale(images: tf.Tensor) -> tf.Tensor:
    """uint8 pixels (batch, 28, 28) -> float32 (batch, 28, 28, 1) in [0, 1]."""
    if images.dtype == tf.uint8:
        images = tf.cast(images, tf.float32) / 255.0
    return images[..., tf.newaxis]


def smoothed_cross_entropy(labels: tf.Tensor, logits: tf.Tensor,
                           label_smoothing: float) -> tf.Tensor:
    """Per-example cross-entropy against labels smoothed towards uniform, from logits.

    (1 - e) * -log p[y] + e * mean_k(-log p[k]): the cross-entropy with the target
    (1 - e) * onehot(y) + e / K, without building the one-hot matrix.
    """
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)  # (batch,)
    if not label_smoothing:
        return cross_entropy
    uniform = -tf.reduce_mean(tf.nn.log_softmax(logits), axis=1)  # (batch,)
    return (1.0 - label_smoothing) * cross_entropy + label_smoothing * uniform


class NeuralClassifier(BaseEstimator):
    """The shared loop, inference, storage and export of `MLP` and `CNN`.

    Subclasses set `model_name`, `_jit_compile`, list their architecture settings in
    `_architecture_params` and build the network (uint8 or float images in, logits out) in
    `build_network`.
    """

    model_name = "neural"
    _jit_compile = False

    def __init__(self, *, batch_size: int = 128, num_steps: int | None = None,
                 num_epochs: int | None = None, optimizer: str = "adamw",
                 learning_rate: float = 0.001, weight_decay: float = 0.0,
                 schedule: str = "constant", warmup_fraction: float = 0.0,
                 label_smoothing: float = 0.0, ema_decay: float = 0.0,
                 dropout: float = 0.0, batch_norm: bool = False, augment: bool = False,
                 max_shift: float = 2.0, max_rotation: float = 10.0, max_zoom: float = 0.1,
                 log_every: int = 50, seed: int = 0):
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.num_epochs = num_epochs
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.warmup_fraction = warmup_fraction
        self.label_smoothing = label_smoothing
        self.ema_decay = ema_decay
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.augment = augment
        self.max_shift = max_shift
        self.max_rotation = max_rotation
        self.max_zoom = max_zoom
        self.log_every = log_every
        self.seed = seed

    # ----------------------------------------------------------------------------- checks
    def _validate_params(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_loop_settings(self)
        _check_number("learning_rate", self.learning_rate, allow_zero=False)
        _check_number("weight_decay", self.weight_decay, allow_zero=True)
        _check_fraction("warmup_fraction", self.warmup_fraction)
        _check_fraction("label_smoothing", self.label_smoothing)
        _check_fraction("ema_decay", self.ema_decay)
        _check_fraction("dropout", self.dropout)
        for name in ("batch_norm", "augment"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _check_number("max_shift", self.max_shift, allow_zero=True)
        _check_number("max_rotation", self.max_rotation, allow_zero=True)
        _check_fraction("max_zoom", self.max_zoom)
        self._validate_architecture()

    def _validate_architecture(self) -> None:
        """Subclasses check their own settings."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: "
                                 "call fit or load")

    # ----------------------------------------------------------------------------- network
    def build_network(self) -> keras.Model:  # pragma: no cover - abstract
        """The Keras network: images (batch, 28, 28, 1) float in [0, 1] -> logits (batch, 10)."""
        raise NotImplementedError

    def count_parameters(self) -> int:
        """Trainable and non-trainable parameters (batch-norm statistics included)."""
        network = self.network_ if hasattr(self, "network_") else self.build_network()
        return int(network.count_params())

    # ----------------------------------------------------------------------------- training
    def _seeds(self) -> tuple[int, int]:
        """Independent seeds for the batch order and for the augmentation."""
        order_seed, augment_seed = np.random.SeedSequence(self.seed).generate_state(2)
        return int(order_seed), int(augment_seed % (2 ** 31))

    def _total_steps(self, num_examples: int) -> int:
        if self.num_steps is not None:
            return self.num_steps
        num_epochs = self.num_epochs or DEFAULT_NUM_EPOCHS
        return math.ceil(num_epochs * num_examples / self.batch_size)

    def _make_optimizer(self, total_steps: int) -> keras.optimizers.Optimizer:
        warmup_steps = round(self.warmup_fraction * total_steps)
        learning_rate = SCHEDULES[self.schedule](float(self.learning_rate), total_steps,
                                                 warmup_steps)
        options = {"learning_rate": learning_rate}
        if self.weight_decay:
            options["weight_decay"] = float(self.weight_decay)
        elif self.optimizer == "adamw":
            options["weight_decay"] = 0.0
        if self.ema_decay:
            options.update(use_ema=True, ema_momentum=float(self.ema_decay),
                           ema_overwrite_frequency=None)
        optimizer = OPTIMIZERS[self.optimizer](**options)
        if self.weight_decay:
            optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
        return optimizer

    def _augment(self, images: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        """The step's batch warped by transforms seeded with (augment seed, step)."""
        seed = tf.stack([tf.constant(self._seeds()[1], tf.int32), step])
        return augment_images(images, seed, max_shift=float(self.max_shift),
                              max_rotation=float(self.max_rotation),
                              max_zoom=float(self.max_zoom))

    def _build_train_chunk(self, network: keras.Model, optimizer: keras.optimizers.Optimizer
                           ) -> Callable:
        """A compiled function running up to `log_every` steps of the plan.

        Arguments: the training images (N, 28, 28) and labels (N,), the chunk's batch indices
        (log_every, batch), the number of the chunk's first step and how many steps to run.
        Returns the last step's (loss, accuracy) and the 1-based number of the first step
        whose loss was not finite (0 if none); the loop stops there.
        """
        variables = network.trainable_variables
        label_smoothing = float(self.label_smoothing)

        def train_step(images, labels, step):
            X = _scale(images)  # (batch, 28, 28, 1)
            if self.augment:
                X = self._augment(X, step)
            with tf.GradientTape() as tape:
                logits = network(X, training=True)  # (batch, 10)
                losses = smoothed_cross_entropy(labels, logits, label_smoothing)
                loss = tf.reduce_mean(losses)
            gradients = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(gradients, variables))
            cross_entropy = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            accuracy = tf.reduce_mean(tf.cast(
                tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels), tf.float32))
            return cross_entropy, accuracy

        @tf.function(jit_compile=self._jit_compile and not self.augment,
                     reduce_retracing=True)
        def train_chunk(images, labels, batch_indices, first_step, count):
            loss, accuracy = tf.constant(0.0), tf.constant(0.0)
            bad_step = tf.constant(0, tf.int32)
            for offset in tf.range(count):
                # Stop at the first non-finite loss, keeping its step number.
                if bad_step > 0:
                    break
                batch = batch_indices[offset]
                loss, accuracy = train_step(tf.gather(images, batch), tf.gather(labels, batch),
                                            first_step + offset)
                if not tf.math.is_finite(loss):
                    bad_step = first_step + offset + 1
            return loss, accuracy, bad_step

        return train_chunk

    def fit(self, X: Any, y: Any, *, validation_data: tuple | None = None,
            callback: Callable[[int, int, dict | None], None] | None = None
            ) -> NeuralClassifier:
        """Train on images `X` (N, 28, 28) uint8 and integer labels `y` (N,).

        `validation_data=(images, labels)` adds `val_loss` and `val_accuracy` to each record.
        `callback(step, total_steps, record_or_None)` is called between chunks of steps. A
        non-finite loss raises `TrainingDivergedError` naming the step; `history_` then holds
        the records made before it. With `ema_decay` the fitted network holds the moving
        averages of the weights. Returns `self`.
        """
        self._validate_params()
        images = _as_images(X)
        labels = _as_labels(y, len(images))
        if len(images) == 0:
            raise ValueError("cannot fit on zero images")
        has_validation = validation_data is not None
        if has_validation:
            val_images = _as_images(validation_data[0])
            val_labels = _as_labels(validation_data[1], len(val_images))
            if len(val_images) == 0:
                raise ValueError("validation_data holds zero images")

        # One seed fixes everything; op determinism makes reductions repeat bit for bit.
        keras.utils.set_random_seed(self.seed)
        tf.config.experimental.enable_op_determinism()
        num_examples = len(images)
        total_steps = self._total_steps(num_examples)
        batch_indices = repeated_batches(num_examples, self.batch_size, total_steps, None,
                                         np.random.default_rng(self._seeds()[0]))

        network = self.build_network()
        optimizer = self._make_optimizer(total_steps)
        optimizer.build(network.trainable_variables)
        train_chunk = self._build_train_chunk(network, optimizer)
        self.network_ = network
        self._predict_function = None
        data = [tf.constant(images), tf.constant(labels)]
        chunk_steps = min(self.log_every, total_steps)
        # Pad the plan to whole chunks so that every call has the same shapes (one trace).
        batch_indices = np.pad(batch_indices, [(0, -total_steps % chunk_steps), (0, 0)])

        self.classes_ = np.arange(NUM_CLASSES)
        self.history_: list[dict] = []
        for start in range(0, total_steps, chunk_steps):
            count = min(chunk_steps, total_steps - start)
            loss, accuracy, bad_step = train_chunk(
                *data, tf.constant(batch_indices[start:start + chunk_steps]),
                tf.constant(start, tf.int32), tf.constant(count, tf.int32))
            if int(bad_step):
                self._forget_network()
                kind = "nan" if math.isnan(float(loss)) else "inf"
                raise TrainingDivergedError(f"training loss became {kind} at step "
                                            f"{int(bad_step)}")
            end = start + count
            record = None
            if end % self.log_every == 0 or end == total_steps:
                # The last step of an epoch-long run may overrun the last epoch by less
                # than a batch; it still belongs to that epoch.
                epoch = math.ceil(end * self.batch_size / num_examples)
                if self.num_steps is None:
                    epoch = min(epoch, self.num_epochs or DEFAULT_NUM_EPOCHS)
                record = {"step": end, "epoch": epoch,
                          "train_loss": float(loss), "train_accuracy": float(accuracy)}
                if has_validation:
                    record.update(self._evaluate(val_images, val_labels))
                self.history_.append(record)
            if callback is not None:
                callback(end, total_steps, record)
        if self.ema_decay:
            optimizer.finalize_variable_values(network.trainable_variables)
        if not all(np.isfinite(variable.numpy()).all() for variable in network.variables):
            self._forget_network()
            raise TrainingDivergedError(
                f"training loss became nan at step {total_steps}: the weights overflowed")
        self.num_steps_ = total_steps
        self.examples_seen_ = total_steps * self.batch_size
        return self

    def _forget_network(self) -> None:
        """Leave the model unfitted after a failed fit, keeping `history_`."""
        del self.network_

    def _evaluate(self, images: np.ndarray, labels: np.ndarray) -> dict:
        """Validation loss (plain cross-entropy) and accuracy with the current weights."""
        logits = self.decision_function(images)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        accuracy = np.mean(np.argmax(logits, axis=1) == labels)
        return {"val_loss": float(tf.reduce_mean(cross_entropy)),
                "val_accuracy": float(accuracy)}

    # ----------------------------------------------------------------------------- inference
    def _logits_function(self) -> Callable:
        """A compiled images -> logits function over the fitted network, traced once."""
        if getattr(self, "_predict_function", None) is None:
            network = self.network_

            @tf.function(jit_compile=self._jit_compile, reduce_retracing=True)
            def logits(images):
                return network(_scale(images), training=False)

            self._predict_function = logits
        return self._predict_function

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits, float32 (N, 10)."""
        self._check_fitted()
        images = _as_images(X)
        logits = self._logits_function()
        if len(images) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        # Pad the last slice to a whole batch so that every call has one shape (one trace).
        outputs = []
        for start in range(0, len(images), PREDICT_BATCH):
            batch = images[start:start + PREDICT_BATCH]
            rows = len(batch)
            if rows < PREDICT_BATCH and len(images) > PREDICT_BATCH:
                batch = np.concatenate([batch, np.zeros((PREDICT_BATCH - rows, *batch.shape[1:]),
                                                        batch.dtype)])
            outputs.append(logits(tf.constant(batch)).numpy()[:rows])
        return np.concatenate(outputs)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, float32 (N, 10), columns in `classes_` order; rows sum to 1."""
        return tf.nn.softmax(self.decision_function(X)).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each image."""
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on `(X, y)`."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # ----------------------------------------------------------------------------- export
    def serving_module(self) -> tf.Module:
        """A `tf.Module` with `serve`: uint8 images (N, 28, 28) -> {"probabilities": (N, 10)}."""
        self._check_fitted()
        network = self.network_

        class NeuralServing(tf.Module):
            def __init__(self):
                super().__init__(name=f"mnistlab_{network.name.replace('-', '_')}")
                self.network = network
                # The TensorFlow variables under Keras' wrappers, tracked directly so that
                # converters that freeze variables (TFLite) find them.
                self.weights = [variable.value for variable in network.variables]

            @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8,
                                                        name="images")])
            def serve(self, images):
                logits = self.network(_scale(images), training=False)
                return {"probabilities": tf.nn.softmax(logits)}

        return NeuralServing()

    # ----------------------------------------------------------------------------- storage
    def save(self, directory: str | Path) -> None:
        """Write the network's weights and `params.json` into an empty directory."""
        self._check_fitted()
        directory = empty_save_directory(directory)
        self.network_.save_weights(str(directory / WEIGHTS_FILE))
        write_model_document(directory / PARAMS_FILE, self.model_name,
                             params=self.get_params(),
                             fitted={"num_steps_": self.num_steps_,
                                     "examples_seen_": self.examples_seen_})

    @classmethod
    def load(cls, directory: str | Path) -> NeuralClassifier:
        """Load a model written by `save`; it predicts exactly as the saved one did."""
        directory = Path(directory)
        document = read_model_document(directory / PARAMS_FILE, cls.model_name)
        try:
            model = cls(**document["params"])
        except TypeError as error:
            raise RunError(f"{directory / PARAMS_FILE} has unknown settings: {error}") from error
        network = model.build_network()
        try:
            network.load_weights(str(directory / WEIGHTS_FILE))
        except (OSError, ValueError) as error:
            raise RunError(f"cannot read the weights in {directory}: {error}") from error
        model.network_ = network
        model._predict_function = None
        model.classes_ = np.arange(NUM_CLASSES)
        model.history_ = []
        model.num_steps_ = document["fitted"]["num_steps_"]
        model.examples_seen_ = document["fitted"]["examples_seen_"]
        return model


class MLP(NeuralClassifier):
    """A multilayer perceptron: `depth` hidden layers of `width` ReLU units on the pixels.

    Each hidden layer is Dense -> [BatchNormalization] -> ReLU -> [Dropout]. Its chunks are
    XLA-compiled, which trains the `mlp` preset's network 1.3-1.4x faster here; with
    `augment` they are not (XLA cannot compile the warp op, `ImageProjectiveTransformV3`).
    """

    model_name = "mlp"
    _jit_compile = True

    # The settings are spelled out (not **options) so that scikit-learn's get_params, and
    # with it save and load, see all of them.
    def __init__(self, *, width: int = 512, depth: int = 2, batch_size: int = 128, num_steps: int | None = None,
                 num_epochs: int | None = None, optimizer: str = "adamw",
                 learning_rate: float = 0.001, weight_decay: float = 0.0,
                 schedule: str = "constant", warmup_fraction: float = 0.0,
                 label_smoothing: float = 0.0, ema_decay: float = 0.0,
                 dropout: float = 0.0, batch_norm: bool = False, augment: bool = False,
                 max_shift: float = 2.0, max_rotation: float = 10.0, max_zoom: float = 0.1,
                 log_every: int = 50, seed: int = 0):
        super().__init__(
            batch_size=batch_size, num_steps=num_steps, num_epochs=num_epochs,
            optimizer=optimizer, learning_rate=learning_rate, weight_decay=weight_decay,
            schedule=schedule, warmup_fraction=warmup_fraction,
            label_smoothing=label_smoothing, ema_decay=ema_decay, dropout=dropout,
            batch_norm=batch_norm, augment=augment, max_shift=max_shift,
            max_rotation=max_rotation, max_zoom=max_zoom, log_every=log_every, seed=seed)
        self.width = width
        self.depth = depth

    def _validate_architecture(self) -> None:
        _check_positive_whole("width", self.width)
        _check_positive_whole("depth", self.depth)

    def build_network(self) -> keras.Model:
        """784 -> depth x width -> 10; parameters 785 w + (depth - 1)(w + 1) w + 10(w + 1),
        plus 4 w per layer with batch norm (whose dense layers then drop their bias)."""
        stack = [keras.Input((28, 28, 1)), layers.Flatten()]
        for _ in range(self.depth):
            stack.append(layers.Dense(self.width, use_bias=not self.batch_norm))
            if self.batch_norm:
                stack.append(layers.BatchNormalization())
            stack.append(layers.ReLU())
            if self.dropout:
                stack.append(layers.Dropout(self.dropout))
        stack.append(layers.Dense(NUM_CLASSES))
        return keras.Sequential(stack, name="mlp")


class CNN(NeuralClassifier):
    """A convolutional network of `depth` blocks, then an optional dense layer.

    Block b (0-based) holds `convs_per_block` 3x3 'same' convolutions of `width * 2**b` filters, each
    Conv -> [BatchNormalization] -> ReLU, then 2x2 max-pooling (28 -> 14 -> 7 -> 3). Then
    Flatten -> [Dropout] -> Dense(dense_units) -> [BN] -> ReLU -> [Dropout] -> Dense(10), or
    Flatten -> [Dropout] -> Dense(10) when `dense_units` is 0. Not XLA-compiled: oneDNN's
    convolutions are several times faster than XLA's on CPU.
    """

    model_name = "cnn"
    _jit_compile = False

    def __init__(self, *, width: int = 32, depth: int = 2, convs_per_block: int = 2,
                 dense_units: int = 128, batch_size: int = 128, num_steps: int | None = None,
                 num_epochs: int | None = None, optimizer: str = "adamw",
                 learning_rate: float = 0.001, weight_decay: float = 0.0,
                 schedule: str = "constant", warmup_fraction: float = 0.0,
                 label_smoothing: float = 0.0, ema_decay: float = 0.0,
                 dropout: float = 0.0, batch_norm: bool = False, augment: bool = False,
                 max_shift: float = 2.0, max_rotation: float = 10.0, max_zoom: float = 0.1,
                 log_every: int = 50, seed: int = 0):
        super().__init__(
            batch_size=batch_size, num_steps=num_steps, num_epochs=num_epochs,
            optimizer=optimizer, learning_rate=learning_rate, weight_decay=weight_decay,
            schedule=schedule, warmup_fraction=warmup_fraction,
            label_smoothing=label_smoothing, ema_decay=ema_decay, dropout=dropout,
            batch_norm=batch_norm, augment=augment, max_shift=max_shift,
            max_rotation=max_rotation, max_zoom=max_zoom, log_every=log_every, seed=seed)
        self.width = width
        self.depth = depth
        self.convs_per_block = convs_per_block
        self.dense_units = dense_units

    def _validate_architecture(self) -> None:
        _check_positive_whole("width", self.width)
        _check_positive_whole("depth", self.depth)
        _check_positive_whole("convs_per_block", self.convs_per_block)
        if self.depth > 4:
            raise ConfigError(f"depth must be at most 4 (28 pixels pool to 1), got {self.depth!r}")
        if not _is_whole(self.dense_units) or self.dense_units < 0:
            raise ConfigError(f"dense_units must be a whole number >= 0, "
                              f"got {self.dense_units!r}")

    def build_network(self) -> keras.Model:
        """Images (batch, 28, 28, 1) -> logits (batch, 10)."""
        stack = [keras.Input((28, 28, 1))]
        for block in range(self.depth):
            for _ in range(self.convs_per_block):
                stack.append(layers.Conv2D(self.width * 2 ** block, 3, padding="same",
                                           use_bias=not self.batch_norm))
                if self.batch_norm:
                    stack.append(layers.BatchNormalization())
                stack.append(layers.ReLU())
            stack.append(layers.MaxPooling2D())
        stack.append(layers.Flatten())
        if self.dropout:
            stack.append(layers.Dropout(self.dropout))
        if self.dense_units:
            stack.append(layers.Dense(self.dense_units, use_bias=not self.batch_norm))
            if self.batch_norm:
                stack.append(layers.BatchNormalization())
            stack.append(layers.ReLU())
            if self.dropout:
                stack.append(layers.Dropout(self.dropout))
        stack.append(layers.Dense(NUM_CLASSES))
        return keras.Sequential(stack, name="cnn")
