"""The tutorial's softmax regression, trained by a hand-written `tf.GradientTape` loop.

Multinomial logistic regression: logits = X W + b with W (784, 10) and b (10,) held in
`tf.Variable`s, the loss computed from logits with integer labels, and the update applied by a
Keras optimizer built once per fit. This is the model the tutorial builds step by step; what
changes is how the loop runs.

Why the loop looks the way it does (measured on a 2-core CPU, see benchmarks/README.md):
one call of any `tf.function` costs about half a millisecond, far more than a softmax step
(about 0.1 ms for a batch of 32 under XLA). So the training set stays in memory as a tensor,
the whole batch order is drawn up front as an index tensor (`_batching`), and one XLA-compiled
`tf.function` runs a chunk of steps in a `tf.range` loop, gathering each batch from the index
tensor. The data travel as arguments, never as captured constants. Python runs only between
chunks: to hand the records to a callback and to stop on a diverged loss.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from mnistlab.errors import ConfigError, RunError, TrainingDivergedError
from mnistlab.models._batching import epoch_batches, repeated_batches
from mnistlab.models._saved import (empty_save_directory, read_model_document,
                                    write_model_document)

NUM_FEATURES = 28 * 28
NUM_CLASSES = 10
DEFAULT_NUM_EPOCHS = 10
PARAMS_FILE = "params.json"
CHECKPOINT_PREFIX = "weights"
# Rows per call when predicting, to bound the memory of the float copy of the images.
PREDICT_BATCH_ROWS = 16384

OPTIMIZERS: dict[str, Callable[[Any], keras.optimizers.Optimizer]] = {
    "adam": lambda learning_rate: keras.optimizers.Adam(learning_rate=learning_rate),
    "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate=learning_rate),
    "momentum": lambda learning_rate: keras.optimizers.SGD(learning_rate=learning_rate,
                                                           momentum=0.9),
    "rmsprop": lambda learning_rate: keras.optimizers.RMSprop(learning_rate=learning_rate),
    "adagrad": lambda learning_rate: keras.optimizers.Adagrad(learning_rate=learning_rate),
}

# Learning-rate schedules over a run of `total_steps` updates.
SCHEDULES: dict[str, Callable[[float, int], Any]] = {
    "constant": lambda learning_rate, total_steps: learning_rate,
    "cosine": lambda learning_rate, total_steps: keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=total_steps, alpha=0.0),
    "linear": lambda learning_rate, total_steps: keras.optimizers.schedules.PolynomialDecay(
        learning_rate, decay_steps=total_steps, end_learning_rate=0.0, power=1.0),
}


def _normal_init(seed: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The tutorial's `tf.random.normal` (stddev 1) for both W and b, from a fixed seed."""
    weights = tf.random.stateless_normal([NUM_FEATURES, NUM_CLASSES],
                                         seed=tf.constant([seed, 1], tf.int64))
    bias = tf.random.stateless_normal([NUM_CLASSES], seed=tf.constant([seed, 2], tf.int64))
    return weights, bias


def _zeros_init(seed: int) -> tuple[tf.Tensor, tf.Tensor]:
    """All zeros: the convex loss needs no symmetry breaking."""
    return tf.zeros([NUM_FEATURES, NUM_CLASSES]), tf.zeros([NUM_CLASSES])


INITIALIZERS: dict[str, Callable[[int], tuple[tf.Tensor, tf.Tensor]]] = {
    "normal": _normal_init,
    "zeros": _zeros_init,
}


def batch_metrics(weights: tf.Tensor, bias: tf.Tensor, X: tf.Tensor, y: tf.Tensor,
                  mask: tf.Tensor, *, class_major: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean cross-entropy and accuracy over the real examples of a batch.

    X (batch, 784) float32, y (batch,) int32, mask (batch,) float32: 1 for real examples, 0 for
    the padding of a last partial batch. The cross-entropy comes from the logits, never from
    clipped probabilities. `weights` is W (784, 10), or W transposed (10, 784) with
    `class_major=True`, the layout the training loop keeps.
    """
    logits = tf.matmul(X, weights, transpose_b=class_major) + bias  # (batch, 10)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)  # (batch,)
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), y), tf.float32)
    count = tf.reduce_sum(mask)
    return tf.reduce_sum(cross_entropy * mask) / count, tf.reduce_sum(correct * mask) / count


def batch_loss(weights: tf.Tensor, bias: tf.Tensor, X: tf.Tensor, y: tf.Tensor,
               mask: tf.Tensor, l2: float = 0.0, *, class_major: bool = False) -> tf.Tensor:
    """The training loss: mean cross-entropy over the real examples plus `l2 * sum(W**2)`.

    `weights` is W (784, 10), or W transposed (10, 784) with `class_major=True`.
    """
    logits = tf.matmul(X, weights, transpose_b=class_major) + bias  # (batch, 10)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)  # (batch,)
    loss = tf.reduce_sum(cross_entropy * mask) / tf.reduce_sum(mask)
    if l2 > 0:
        loss += l2 * tf.reduce_sum(tf.square(weights))
    return loss


def _as_features(X: Any) -> np.ndarray:
    """Images (N, 28, 28) or (N, 784) -> float32 features (N, 784) in [0, 1].

    Integer pixels (uint8 as stored in MNIST) are divided by 255; float input is taken as
    already scaled.
    """
    X = np.asarray(X)
    if X.ndim not in (2, 3) or X.shape[1:] not in ((28, 28), (NUM_FEATURES,)):
        raise ValueError(f"expected images of shape (N, 28, 28) or (N, 784), got {X.shape}")
    X = X.reshape(len(X), NUM_FEATURES)
    if np.issubdtype(X.dtype, np.integer):
        return X.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(X.dtype, np.floating):
        return X.astype(np.float32, copy=False)
    raise ValueError(f"expected integer or float pixels, got dtype {X.dtype}")


def _as_training_pixels(X: Any) -> np.ndarray:
    """Images -> (N, 784), kept as uint8 if they are uint8 (a quarter of the float32 bytes).

    The training loop scales each gathered batch, so the 60,000 training images are never
    copied to float as a whole.
    """
    X = np.asarray(X)
    if X.dtype == np.uint8 and X.ndim in (2, 3) and X.shape[1:] in ((28, 28), (NUM_FEATURES,)):
        return X.reshape(len(X), NUM_FEATURES)
    return _as_features(X)


def _scale_pixels(X: tf.Tensor) -> tf.Tensor:
    """uint8 pixels -> float32 in [0, 1]; float features pass unchanged."""
    if X.dtype == tf.uint8:
        return tf.cast(X, tf.float32) / 255.0
    return X


def _as_labels(y: Any, num_examples: int) -> np.ndarray:
    """Integer class labels 0..9 -> int32 (N,), checked against the number of images."""
    y = np.asarray(y)
    if y.shape != (num_examples,):
        raise ValueError(f"expected {num_examples} labels of shape ({num_examples},), "
                         f"got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"expected integer labels, got dtype {y.dtype}")
    if num_examples and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise ValueError(f"labels must lie in 0..{NUM_CLASSES - 1}, "
                         f"got {y.min()}..{y.max()}")
    return y.astype(np.int32)


def _is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_positive_whole(name: str, value: Any) -> None:
    if not _is_whole(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive whole number, got {value!r}")


def _check_number(name: str, value: Any, *, allow_zero: bool) -> None:
    """A finite real number, > 0 (or >= 0 with `allow_zero`)."""
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")


def _check_choice(name: str, value: Any, choices: dict) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"unknown {name} {value!r} (known: {', '.join(choices)})")


def _check_loop_settings(model: Any) -> None:
    """The settings every hand-written loop shares: batch size, record interval, a length in
    steps or in epochs (not both), and the seed."""
    _check_positive_whole("batch_size", model.batch_size)
    _check_positive_whole("log_every", model.log_every)
    if model.num_steps is not None and model.num_epochs is not None:
        raise ConfigError(f"give num_steps or num_epochs, not both (got num_steps="
                          f"{model.num_steps!r}, num_epochs={model.num_epochs!r})")
    if model.num_steps is not None:
        _check_positive_whole("num_steps", model.num_steps)
    if model.num_epochs is not None:
        _check_positive_whole("num_epochs", model.num_epochs)
    if not _is_whole(model.seed) or model.seed < 0:
        raise ConfigError(f"seed must be a whole number >= 0, got {model.seed!r}")


class SoftmaxRegression(BaseEstimator):
    """Softmax (multinomial logistic) regression on pixels, trained with a GradientTape loop.

    The batching follows the tutorial's `tf.data` pipelines. With `repeat=True` the data
    stream is `repeat().shuffle(shuffle_buffer).batch(batch_size)` (tutorial version 1): the
    shuffle buffer runs across epoch boundaries and every batch is full. With `repeat=False`
    each epoch is `shuffle(shuffle_buffer).batch(batch_size)` (versions 2 and 3), reshuffled
    every epoch, its last partial batch kept. `shuffle_buffer=None` or 0 means a full shuffle.

    Give at most one of `num_steps` and `num_epochs` (neither: 10 epochs). One `seed` fixes the
    initial weights, the batch order and TensorFlow's seeds: the same seed gives the same
    history and predictions, bit for bit.

    Every `log_every` steps, and at the last step, a record `{"step", "epoch", "train_loss",
    "train_accuracy"}` is added to `history_`: the loss and accuracy on that step's batch
    after its update, as the tutorial logs them (`train_loss` without the L2 term), plus
    `val_loss` and `val_accuracy` on the whole of `validation_data` when given. `epoch` is
    the 1-based epoch in progress.
    """

    # How the loop runs: XLA-compiled chunks of steps (the fastest way measured, see
    # benchmarks/README.md). A chunk holds about CHUNK_EXAMPLES examples and at most
    # MAX_CHUNK_STEPS steps: about a tenth of a second, so a call's half millisecond is lost
    # in it and a progress bar still moves often. Benchmarks set the private attributes on
    # an instance to time the alternatives.
    CHUNK_EXAMPLES = 32768
    MAX_CHUNK_STEPS = 1024
    _jit_compile = True
    _chunk_steps: int | None = None  # None: from CHUNK_EXAMPLES and MAX_CHUNK_STEPS

    def __init__(self, *, optimizer: str = "adam", learning_rate: float = 0.01,
                 batch_size: int = 32, num_steps: int | None = None,
                 num_epochs: int | None = None, repeat: bool = False,
                 shuffle_buffer: int | None = 5000, init: str = "normal", l2: float = 0.0,
                 schedule: str = "constant", log_every: int = 50, seed: int = 0):
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.num_epochs = num_epochs
        self.repeat = repeat
        self.shuffle_buffer = shuffle_buffer
        self.init = init
        self.l2 = l2
        self.schedule = schedule
        self.log_every = log_every
        self.seed = seed

    # ----------------------------------------------------------------------------- checks
    def _validate_params(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("init", self.init, INITIALIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_loop_settings(self)
        if not isinstance(self.repeat, bool):
            raise ConfigError(f"repeat must be True or False, got {self.repeat!r}")
        if self.shuffle_buffer is not None and (not _is_whole(self.shuffle_buffer)
                                                or self.shuffle_buffer < 0):
            raise ConfigError(f"shuffle_buffer must be a whole number >= 0 or None, "
                              f"got {self.shuffle_buffer!r}")
        _check_number("learning_rate", self.learning_rate, allow_zero=False)
        _check_number("l2", self.l2, allow_zero=True)

    def _check_fitted(self) -> None:
        if not hasattr(self, "_weights"):
            raise NotFittedError("this SoftmaxRegression is not fitted yet: call fit or load")

    # ----------------------------------------------------------------------------- training
    def _seeds(self) -> tuple[int, int]:
        """Independent seeds for the initial weights and for the batch order."""
        init_seed, order_seed = np.random.SeedSequence(self.seed).generate_state(2)
        return int(init_seed), int(order_seed)

    def _initial_parameters(self) -> tuple[tf.Tensor, tf.Tensor]:
        """W (784, 10) and b (10,) before training, as `init` and `seed` make them."""
        return INITIALIZERS[self.init](self._seeds()[0])

    def _batch_plan(self, num_examples: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
        """The whole run's batches: indices (steps, batch_size) int32 and real sizes (steps,)."""
        batch_size = self.batch_size
        if self.repeat:
            if self.num_steps is not None:
                num_steps = self.num_steps
            else:
                num_epochs = self.num_epochs or DEFAULT_NUM_EPOCHS
                num_steps = math.ceil(num_epochs * num_examples / batch_size)
            indices = repeated_batches(num_examples, batch_size, num_steps,
                                       self.shuffle_buffer, rng)
            return indices, np.full(num_steps, batch_size, dtype=np.int32)
        steps_per_epoch = math.ceil(num_examples / batch_size)
        if self.num_steps is not None:
            num_epochs = math.ceil(self.num_steps / steps_per_epoch)
        else:
            num_epochs = self.num_epochs or DEFAULT_NUM_EPOCHS
        indices, sizes = epoch_batches(num_examples, batch_size, num_epochs,
                                       self.shuffle_buffer, rng)
        if self.num_steps is not None:
            indices, sizes = indices[:self.num_steps], sizes[:self.num_steps]
        return indices, sizes

    def _build_train_chunk(self, weights: tf.Variable, bias: tf.Variable,
                           optimizer: keras.optimizers.Optimizer, chunk_steps: int,
                           total_steps: int, has_validation: bool) -> Callable:
        """Compile the loop that runs up to `chunk_steps` training steps in one call.

        `weights` is W transposed, (10, 784): see `fit`.
        """
        batch_size, log_every, l2 = self.batch_size, self.log_every, float(self.l2)

        def train_chunk(X, y, X_val, y_val, batch_indices, batch_sizes, start, count):
            # X (N, 784) uint8 or float32, y (N,) int32. batch_indices (chunk_steps, batch)
            # int32 and batch_sizes (chunk_steps,) int32 are this chunk's; its first step is
            # number start + 1, and it runs `count` steps.
            # Returns the chunk's records (chunk_steps, 4): train loss and accuracy, validation
            # loss and accuracy at record steps, zeros elsewhere; and the first step whose
            # loss was not finite (0 if none) with that loss.
            records = tf.zeros([chunk_steps, 4])
            bad_step = tf.constant(0)
            bad_loss = tf.constant(0.0)
            # A `while` loop, not `for i in tf.range(count)`: XLA takes a range's bound as a
            # compile-time constant and would compile again for the last, shorter chunk.
            i = tf.constant(0)
            while i < count:
                X_batch = _scale_pixels(tf.gather(X, batch_indices[i]))  # (batch, 784)
                y_batch = tf.gather(y, batch_indices[i])  # (batch,)
                mask = tf.cast(tf.range(batch_size) < batch_sizes[i], tf.float32)  # (batch,)
                with tf.GradientTape() as tape:
                    loss = batch_loss(weights, bias, X_batch, y_batch, mask, l2,
                                      class_major=True)
                if not tf.math.is_finite(loss):
                    bad_step = start + i + 1
                    bad_loss = loss
                    break
                gradients = tape.gradient(loss, [weights, bias])
                optimizer.apply_gradients(zip(gradients, [weights, bias]))
                step = start + i + 1
                if tf.logical_or(step % log_every == 0, step == total_steps):
                    # The tutorial's record: the current batch, after this step's update.
                    train_loss, train_accuracy = batch_metrics(
                        weights, bias, X_batch, y_batch, mask, class_major=True)
                    val_loss, val_accuracy = tf.constant(0.0), tf.constant(0.0)
                    if has_validation:
                        val_loss, val_accuracy = batch_metrics(
                            weights, bias, _scale_pixels(X_val), y_val,
                            tf.ones_like(y_val, tf.float32), class_major=True)
                    records = tf.tensor_scatter_nd_update(
                        records, [[i]],
                        [tf.stack([train_loss, train_accuracy, val_loss, val_accuracy])])
                i += 1
            return records, bad_step, bad_loss

        return tf.function(train_chunk, jit_compile=self._jit_compile)

    def fit(self, X: Any, y: Any, *, validation_data: tuple[Any, Any] | None = None,
            callback: Callable[[int, int, dict | None], None] | None = None
            ) -> SoftmaxRegression:
        """Train on images `X` (uint8 (N, 28, 28) or (N, 784)) and labels `y` (0..9).

        `callback(step, total_steps, record_or_None)` is called between compiled chunks of
        steps (several times a second): once for each record made in the chunk, then with
        `None` at the chunk's last step if that made no record. Raises `ConfigError` for bad
        settings and `TrainingDivergedError` naming the first step whose loss is not finite;
        `history_` then holds the records made before it. Returns `self`.

        For repeatable runs this sets the process-wide seeds (`keras.utils.set_random_seed`)
        and turns on TensorFlow's op determinism.
        """
        self._validate_params()
        features = _as_training_pixels(X)
        labels = _as_labels(y, len(features))
        if len(features) == 0:
            raise ValueError("cannot fit on zero images")
        has_validation = validation_data is not None
        if has_validation:
            val_features = _as_training_pixels(validation_data[0])
            val_labels = _as_labels(validation_data[1], len(val_features))
            if len(val_features) == 0:
                raise ValueError("validation_data holds zero images")
        else:
            val_features = np.zeros((0, NUM_FEATURES), np.float32)
            val_labels = np.zeros((0,), np.int32)

        # One seed fixes everything; op determinism makes reductions repeat bit for bit.
        keras.utils.set_random_seed(self.seed)
        tf.config.experimental.enable_op_determinism()
        num_examples = len(features)
        batch_indices, batch_sizes = self._batch_plan(
            num_examples, np.random.default_rng(self._seeds()[1]))
        total_steps = len(batch_indices)

        # The loop trains W transposed, (10, 784), and the model keeps W (784, 10) from the
        # end of the fit. The same numbers either way (the optimizers work element by element),
        # but the tape's gradient of X W is then G^T X, (10, batch) x (batch, 784), not
        # X^T G, (784, batch) x (batch, 10): XLA's CPU matrix product runs the whole step
        # about 1.4 times faster with it (benchmarks/README.md).
        self._forget_weights()  # a failed fit leaves the model unfitted
        initial_weights, initial_bias = self._initial_parameters()
        weights = tf.Variable(tf.transpose(initial_weights), name="weights_t")  # (10, 784)
        bias = tf.Variable(initial_bias, name="bias")  # (10,)
        optimizer = OPTIMIZERS[self.optimizer](SCHEDULES[self.schedule](
            float(self.learning_rate), total_steps))
        optimizer.build([weights, bias])

        chunk_steps = self._chunk_steps or min(self.MAX_CHUNK_STEPS,
                                               math.ceil(self.CHUNK_EXAMPLES / self.batch_size))
        chunk_steps = min(chunk_steps, total_steps)
        train_chunk = self._build_train_chunk(weights, bias, optimizer, chunk_steps,
                                              total_steps, has_validation)
        data = [tf.constant(features), tf.constant(labels), tf.constant(val_features),
                tf.constant(val_labels)]
        examples_done = np.cumsum(batch_sizes, dtype=np.int64)
        # Pad the plan to whole chunks so that every call has the same shapes (one compile);
        # each call gets its own chunk of the plan.
        padding = -total_steps % chunk_steps
        batch_indices = np.pad(batch_indices, [(0, padding), (0, 0)])
        batch_sizes = np.pad(batch_sizes, [(0, padding)])

        self.classes_ = np.arange(NUM_CLASSES)
        self.history_: list[dict] = []
        for start in range(0, total_steps, chunk_steps):
            count = min(chunk_steps, total_steps - start)
            records, bad_step, bad_loss = train_chunk(
                *data, tf.constant(batch_indices[start:start + chunk_steps]),
                tf.constant(batch_sizes[start:start + chunk_steps]),
                tf.constant(start, tf.int32), tf.constant(count, tf.int32))
            records, bad_step = records.numpy(), int(bad_step)
            end = bad_step - 1 if bad_step else start + count
            record_steps = list(range(start // self.log_every * self.log_every
                                      + self.log_every, end + 1, self.log_every))
            if end == total_steps and end % self.log_every:
                record_steps.append(end)
            new_records = [
                self._make_record(step, records[step - 1 - start],
                                  math.ceil(int(examples_done[step - 1]) / num_examples),
                                  has_validation)
                for step in record_steps]
            self.history_.extend(new_records)
            if bad_step:
                kind = "nan" if math.isnan(float(bad_loss)) else "inf"
                raise TrainingDivergedError(f"training loss became {kind} at step {bad_step}")
            if callback is not None:
                for record in new_records:
                    callback(record["step"], total_steps, record)
                if not new_records or new_records[-1]["step"] != end:
                    callback(end, total_steps, None)
        # The last update can overflow with no later step to see it.
        if not (np.isfinite(weights.numpy()).all() and np.isfinite(bias.numpy()).all()):
            raise TrainingDivergedError(
                f"training loss became nan at step {total_steps}: the weights overflowed")
        self._weights = tf.Variable(tf.transpose(weights), name="weights")  # (784, 10)
        self._bias = bias
        self.num_steps_ = total_steps
        self.examples_seen_ = int(examples_done[-1])
        return self

    @staticmethod
    def _make_record(step: int, values: np.ndarray, epoch: int, has_validation: bool) -> dict:
        """A history record from the loop's row of values (train loss, accuracy, val ...)."""
        record = {"step": step, "epoch": epoch,
                  "train_loss": float(values[0]), "train_accuracy": float(values[1])}
        if has_validation:
            record.update(val_loss=float(values[2]), val_accuracy=float(values[3]))
        return record

    def _forget_weights(self) -> None:
        """Leave the model unfitted (a fit that fails keeps only `history_`)."""
        self.__dict__.pop("_weights", None)
        self.__dict__.pop("_bias", None)

    # ----------------------------------------------------------------------------- inference
    def _logits_batches(self, X: Any):
        """Yield logits (rows, 10) for successive slices of the images."""
        self._check_fitted()
        X = np.asarray(X)
        for start in range(0, max(len(X), 1), PREDICT_BATCH_ROWS):
            features = _as_features(X[start:start + PREDICT_BATCH_ROWS])
            yield tf.matmul(features, self._weights) + self._bias

    def decision_function(self, X: Any) -> np.ndarray:
        """The logits X W + b, float32 (N, 10)."""
        return np.concatenate([logits.numpy() for logits in self._logits_batches(X)])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, float32 (N, 10), columns in `classes_` order; rows sum to 1."""
        return np.concatenate([tf.nn.softmax(logits).numpy()
                               for logits in self._logits_batches(X)])

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each image."""
        logits = self.decision_function(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on `(X, y)`."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def loss(self, X: Any, y: Any) -> float:
        """Mean cross-entropy of the model on `(X, y)` (no L2 term)."""
        y = np.asarray(y)
        total = 0.0
        start = 0
        for logits in self._logits_batches(X):
            labels = _as_labels(y[start:start + len(logits)], len(logits))
            total += float(tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)))
            start += len(logits)
        if start != len(y):
            raise ValueError(f"expected {start} labels, got {len(y)}")
        return total / max(start, 1)

    def count_parameters(self) -> int:
        """Weights plus biases: 784 * 10 + 10 = 7850."""
        return NUM_FEATURES * NUM_CLASSES + NUM_CLASSES

    @property
    def weights_(self) -> np.ndarray:
        """The weight matrix W as NumPy, (784, 10): column k is class k's template."""
        self._check_fitted()
        return self._weights.numpy()

    @property
    def bias_(self) -> np.ndarray:
        """The bias b as NumPy, (10,)."""
        self._check_fitted()
        return self._bias.numpy()

    # ----------------------------------------------------------------------------- storage
    def save(self, directory: str | Path) -> None:
        """Write a TensorFlow checkpoint of W and b and `params.json` into an empty directory."""
        self._check_fitted()
        directory = empty_save_directory(directory)
        tf.train.Checkpoint(W=self._weights, b=self._bias).write(
            str(directory / CHECKPOINT_PREFIX))
        write_model_document(directory / PARAMS_FILE, "softmax", params=self.get_params(),
                             fitted={"num_steps_": self.num_steps_,
                                     "examples_seen_": self.examples_seen_})

    @classmethod
    def load(cls, directory: str | Path) -> SoftmaxRegression:
        """Load a model written by `save`; it predicts exactly as the saved one did."""
        directory = Path(directory)
        document = read_model_document(directory / PARAMS_FILE, "softmax")
        try:
            model = cls(**document["params"])
        except TypeError as error:
            raise RunError(f"{directory / PARAMS_FILE} has unknown settings: {error}") from error
        model._weights = tf.Variable(tf.zeros([NUM_FEATURES, NUM_CLASSES]), name="weights")
        model._bias = tf.Variable(tf.zeros([NUM_CLASSES]), name="bias")
        try:
            tf.train.Checkpoint(W=model._weights, b=model._bias).read(
                str(directory / CHECKPOINT_PREFIX)).assert_consumed()
        except (tf.errors.OpError, AssertionError, ValueError) as error:
            raise RunError(f"cannot read the checkpoint in {directory}: {error}") from error
        model.classes_ = np.arange(NUM_CLASSES)
        model.history_ = []
        model.num_steps_ = document["fitted"]["num_steps_"]
        model.examples_seen_ = document["fitted"]["examples_seen_"]
        return model
