"""The tutorial's softmax regression, trained by a hand-written `tf.GradientTape` loop.

Multinomial logistic regression: logits = X W + b with W (784, 10) and b (10,) held in
`tf.Variable`s, the loss computed from logits with integer labels, and the update applied by a
Keras optimizer built once per fit. This is the model the tutorial builds step by step; what
changes is how the loop runs.

Why the loop looks the way it does (measured on a 2-core CPU, see benchmarks/README.md):
one call of any `tf.function` costs about half a millisecond, far more than a softmax step
(about 0.1 ms for a batch of 32 under XLA). So the training set stays in memory as a tensor,
the whole batch order is drawn up front as an index tensor (`training.batching`), and one
XLA-compiled `tf.function` runs a chunk of steps in a `while` loop, gathering each batch
from the index tensor. The data travel as arguments, never as captured constants. Python runs
only between chunks (`training.loop`): to hand the records to a callback and to stop on a
diverged loss.

Tracing and XLA-compiling that loop costs about a second, while the tutorial's fits take
0.03-0.3 s of steps. So a process keeps its compiled loops (`_LOOPS`, the last few), with
their variables and optimizer, keyed by what shapes the computation: the next fit with the
same options and data shapes (another seed, or another constant learning rate; the same
preset again, as `reproduce --seeds` and sweeps do) sets the variables to its initial values
and the optimizer's to a new one's, and runs the same compiled function, so it computes what
a fresh loop would, bit for bit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator

from mnistlab._lazy import keras, tf
from mnistlab.errors import ConfigError, RunError
from mnistlab.models._saved import empty_save_directory, read_model_document, write_model_document
from mnistlab.models.base import (
    LOOP_OPTIONS,
    Boolean,
    Choice,
    Integer,
    Option,
    OptionsMixin,
    ProbabilisticClassifierMixin,
    Real,
    check_fitted,
    check_loop_length,
    fitted_state,
    prepare_fit_input,
    prepare_input,
    prepare_validation,
    restore_fitted_state,
)
from mnistlab.training.batching import make_batch_plan
from mnistlab.training.checkpoint import Checkpointer
from mnistlab.training.distribute import (
    build_distributed_chunk,
    check_batch,
    slice_sums,
    stop_agreement,
)
from mnistlab.training.loop import (
    ChunkResult,
    as_int32,
    check_finite,
    chunk_inputs,
    run_chunks,
    variables_state,
)
from mnistlab.training.seeding import derived_seeds

PARAMS_FILE = "params.json"
CHECKPOINT_PREFIX = "weights"
# Rows per call when predicting, to bound the memory of the float copy of the images.
PREDICT_BATCH_ROWS = 16384
# Compiled training loops kept for the next fits with the same options (see the top).
KEEP_LOOPS = 8


class _Loop(NamedTuple):
    """A compiled training loop and the state it trains: W transposed, b, the optimizer, and
    the optimizer's variables as they were when it was built."""

    weights: Any
    bias: Any
    optimizer: Any
    train_chunk: Callable
    optimizer_start: list


_LOOPS: OrderedDict[tuple, _Loop] = OrderedDict()
def parse_shuffle_buffer(text: str) -> int | None:
    """`--shuffle-buffer`: a whole number, or 'full' for a full shuffle (None)."""
    if text == "full":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected a whole number or 'full', got {text!r}") from None


def _initial_parameters(init: str, seed: int, num_features: int, num_classes: int
                        ) -> tuple[tf.Tensor, tf.Tensor]:
    """W (features, classes) and b (classes,) before training."""
    if init == "zeros":  # the convex loss needs no symmetry breaking
        return tf.zeros([num_features, num_classes]), tf.zeros([num_classes])
    # The tutorial's `tf.random.normal` (stddev 1) for both W and b, from a fixed seed.
    weights = tf.random.stateless_normal([num_features, num_classes],
                                         seed=tf.constant([seed, 1], tf.int64))
    bias = tf.random.stateless_normal([num_classes], seed=tf.constant([seed, 2], tf.int64))
    return weights, bias


def batch_metrics(weights: tf.Tensor, bias: tf.Tensor, X: tf.Tensor, y: tf.Tensor,
                  mask: tf.Tensor, *, class_major: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean cross-entropy and accuracy over the real examples of a batch.

    X (batch, features) float32, y (batch,) int32, mask (batch,) float32: 1 for real
    examples, 0 for the padding of a last partial batch. The cross-entropy comes from the
    logits, never from clipped probabilities. `weights` is W (features, classes), or W
    transposed (classes, features) with `class_major=True`, the layout the loop keeps.
    """
    logits = tf.matmul(X, weights, transpose_b=class_major) + bias  # (batch, classes)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)  # (batch,)
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), y), tf.float32)
    count = tf.reduce_sum(mask)
    return tf.reduce_sum(cross_entropy * mask) / count, tf.reduce_sum(correct * mask) / count


def _clipped_cross_entropy(y: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """The tutorial's v1/v3 cells: -log of the true class's probability clipped to
    [1e-9, 1] (no gradient where the clip bites)."""
    probabilities = tf.clip_by_value(tf.nn.softmax(logits), 1e-9, 1.0)
    return -tf.math.log(tf.gather(probabilities, y, axis=1, batch_dims=1))


def _clipped_keras_cross_entropy(y: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """The tutorial's v2 cell: Keras' categorical cross-entropy of the clipped probabilities
    (which renormalises them and clips again to [1e-7, 1 - 1e-7])."""
    probabilities = tf.clip_by_value(tf.nn.softmax(logits), 1e-9, 1.0)
    return keras.losses.categorical_crossentropy(
        tf.one_hot(y, tf.shape(logits)[1]), probabilities)


# Per-example losses from integer labels and logits. "logits" is the right one; the clipped
# ones reproduce the tutorial's cells as written.
LOSSES: dict[str, Callable] = {
    "logits": lambda y, logits: tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits),
    "clipped": _clipped_cross_entropy,
    "clipped-keras": _clipped_keras_cross_entropy,
}


def batch_loss(weights: tf.Tensor, bias: tf.Tensor, X: tf.Tensor, y: tf.Tensor,
               mask: tf.Tensor, l2: float = 0.0, *, class_major: bool = False,
               loss: str = "logits") -> tf.Tensor:
    """The training loss: mean cross-entropy over the real examples plus `l2 * sum(W**2)`.

    `weights` is W (features, classes), or W transposed with `class_major=True`; `loss`
    names the cross-entropy (see `LOSSES`).
    """
    logits = tf.matmul(X, weights, transpose_b=class_major) + bias  # (batch, classes)
    cross_entropy = LOSSES[loss](y, logits)  # (batch,)
    total = tf.reduce_sum(cross_entropy * mask) / tf.reduce_sum(mask)
    if l2 > 0:
        total += l2 * tf.reduce_sum(tf.square(weights))
    return total


def as_features(X: np.ndarray) -> np.ndarray:
    """Checked pixels (N, features) -> float32 in [0, 1]: integer pixels (uint8 as MNIST
    stores them) are divided by 255; float input is taken as already scaled."""
    if np.issubdtype(X.dtype, np.integer):
        return X.astype(np.float32) / np.float32(255.0)
    return X.astype(np.float32, copy=False)


def _as_training_pixels(X: np.ndarray) -> np.ndarray:
    """uint8 pixels stay uint8 (a quarter of the float32 bytes; the loop scales each
    gathered batch, so the training set is never copied to float as a whole)."""
    return X if X.dtype == np.uint8 else as_features(X)


def _scale_pixels(X: tf.Tensor) -> tf.Tensor:
    """uint8 pixels -> float32 in [0, 1]; float features pass unchanged."""
    if X.dtype == tf.uint8:
        return tf.cast(X, tf.float32) / 255.0
    return X


class SoftmaxRegression(ProbabilisticClassifierMixin, OptionsMixin, BaseEstimator):
    """Softmax (multinomial logistic) regression on pixels, trained with a GradientTape loop.

    The batching follows the tutorial's `tf.data` pipelines. With `repeat=True` the data
    stream is `repeat().shuffle(shuffle_buffer).batch(batch_size)` (tutorial version 1): the
    shuffle buffer runs across epoch boundaries and every batch is full. With `repeat=False`
    each epoch is `shuffle(shuffle_buffer).batch(batch_size)` (versions 2 and 3), reshuffled
    every epoch, its last partial batch kept. `shuffle_buffer=None` or 0 means a full shuffle.

    `num_steps`, when given, decides the length; otherwise `num_epochs`. One `seed` fixes the
    initial weights and the batch order: the same seed gives the same history and
    predictions, bit for bit.

    Every `log_every` steps, and at the last step, a record `{"step", "epoch", "train_loss",
    "train_accuracy"}` is added to `history_`: the loss and accuracy on that step's batch
    after its update, as the tutorial logs them (`train_loss` without the L2 term), plus
    `val_loss` and `val_accuracy` on the whole of `validation_data` when given. `epoch` is
    the 1-based epoch in progress.
    """

    model_name = "softmax"
    export_formats = ("savedmodel", "tflite", "onnx")
    options = {
        "optimizer": Option(Choice(("adam", "sgd", "momentum", "rmsprop", "adagrad")),
                            "optimizer (momentum: SGD with momentum 0.9)"),
        "learning_rate": Option(Real(0.0, 100.0, low_open=True), "learning rate"),
        **LOOP_OPTIONS,
        "repeat": Option(Boolean(), "one repeated stream shuffled across epoch boundaries "
                                    "(tutorial v1) instead of a reshuffle per epoch"),
        "shuffle_buffer": Option(Integer(0, 100_000_000),
                                 "shuffle buffer size, or 'full' (0 is full too)",
                                 none="a full shuffle", metavar="N|full",
                                 parse=parse_shuffle_buffer),
        "init": Option(Choice(("normal", "zeros")),
                       "initial weights: zeros, or normal (stddev 1, as the tutorial)"),
        "l2": Option(Real(0.0, 1000.0), "L2 penalty on W"),
        "schedule": Option(Choice(("constant", "cosine", "linear")), "learning-rate schedule"),
        "loss": Option(Choice(tuple(LOSSES)),
                       "cross-entropy from logits, or from probabilities clipped to "
                       "[1e-9, 1] as the tutorial's cells do (clipped: v1/v3, "
                       "clipped-keras: v2)"),
        "fresh_optimizer": Option(Boolean(), "build a new optimizer at every step, as the "
                                             "tutorial's v2 cell does by mistake"),
    }

    # How the loop runs: XLA-compiled chunks of steps (the fastest way measured, see
    # benchmarks/README.md). A chunk holds about CHUNK_EXAMPLES examples and at most
    # MAX_CHUNK_STEPS steps: about a tenth of a second, so a call's half millisecond is lost
    # in it and a progress bar still moves often. Benchmarks set the private attributes on
    # an instance to time the alternatives.
    CHUNK_EXAMPLES = 32768
    MAX_CHUNK_STEPS = 1024
    _jit_compile = True
    _chunk_steps: int | None = None  # None: from CHUNK_EXAMPLES and MAX_CHUNK_STEPS
    _reuse_loops = True  # False: trace and compile a new loop for every fit

    def __init__(self, *, optimizer: str = "adam", learning_rate: float = 0.01,
                 batch_size: int = 32, num_steps: int | None = None,
                 num_epochs: int | None = 10, repeat: bool = False,
                 shuffle_buffer: int | None = 5000, init: str = "zeros", l2: float = 0.0,
                 schedule: str = "constant", log_every: int = 50, loss: str = "logits",
                 fresh_optimizer: bool = False, seed: int = 0):
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.num_epochs = num_epochs
        self.log_every = log_every
        self.repeat = repeat
        self.shuffle_buffer = shuffle_buffer
        self.init = init
        self.l2 = l2
        self.schedule = schedule
        self.loss = loss
        self.fresh_optimizer = fresh_optimizer
        self.seed = seed

    check_option_combination = staticmethod(check_loop_length)

    # ----------------------------------------------------------------------------- training
    def _training_state(self, initial_weights: np.ndarray, initial_bias: np.ndarray,
                        total_steps: int) -> tuple:
        """W transposed (classes, features) and b as variables, and the optimizer built for
        them (under a strategy, call it in the strategy's scope)."""
        from mnistlab.training.optimizers import build_optimizer

        weights = tf.Variable(tf.transpose(initial_weights), name="weights_t")
        bias = tf.Variable(initial_bias, name="bias")  # (classes,)
        optimizer = build_optimizer(self.optimizer, self.learning_rate, total_steps,
                                    schedule=self.schedule)
        optimizer.build([weights, bias])
        return weights, bias, optimizer

    def _build_train_chunk(self, weights: tf.Variable, bias: tf.Variable,
                           optimizer: keras.optimizers.Optimizer, chunk_steps: int,
                           total_steps: int, has_validation: bool) -> Callable:
        """Compile the loop that runs up to `chunk_steps` training steps in one call.

        `weights` is W transposed, (classes, features): see `fit`.
        """
        batch_size, log_every, l2 = self.batch_size, self.log_every, float(self.l2)
        loss_name = self.loss
        # A new optimizer at every step is the same as zeroing its state (slots and step
        # count; not the learning rate) before every update.
        state = [variable for variable in optimizer.variables
                 if not variable.path.endswith("learning_rate")]
        fresh = bool(self.fresh_optimizer)

        def train_chunk(X, y, X_val, y_val, batch_indices, batch_sizes, start, count):
            # X (N, features) uint8 or float32, y (N,) int32. batch_indices (chunk_steps,
            # batch) int32 and batch_sizes (chunk_steps,) int32 are this chunk's; its first
            # step is number start + 1, and it runs `count` steps.
            # Returns the chunk's records (chunk_steps, 4): train loss and accuracy,
            # validation loss and accuracy at record steps, zeros elsewhere; and the first
            # step whose loss was not finite (0 if none) with that loss.
            records = tf.zeros([chunk_steps, 4])
            bad_step = tf.constant(0)
            bad_loss = tf.constant(0.0)
            # A `while` loop, not `for i in tf.range(count)`: XLA takes a range's bound as a
            # compile-time constant and would compile again for the last, shorter chunk.
            i = tf.constant(0)
            while i < count:
                X_batch = _scale_pixels(tf.gather(X, batch_indices[i]))  # (batch, features)
                y_batch = tf.gather(y, batch_indices[i])  # (batch,)
                mask = tf.cast(tf.range(batch_size) < batch_sizes[i], tf.float32)  # (batch,)
                with tf.GradientTape() as tape:
                    loss = batch_loss(weights, bias, X_batch, y_batch, mask, l2,
                                      class_major=True, loss=loss_name)
                if not tf.math.is_finite(loss):
                    bad_step = start + i + 1
                    bad_loss = loss
                    break
                gradients = tape.gradient(loss, [weights, bias])
                if fresh:
                    for variable in state:
                        variable.assign(tf.zeros_like(variable))
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

    def _build_distributed_chunk(self, weights, bias, optimizer, chunk_steps: int,
                                 strategy) -> Callable:
        """The chunk of steps on `strategy`'s replicas; each step's record (loss and
        accuracy of the global batch after its update, as the tutorial logs them)."""
        l2, loss_name = float(self.l2), self.loss
        replicas = strategy.num_replicas_in_sync

        def replica_step(X_local, y_local, mask, count, step, first):
            X_local = _scale_pixels(X_local)  # (local batch, features)
            with tf.GradientTape() as tape:
                logits = tf.matmul(X_local, weights, transpose_b=True) + bias
                cross_entropy = LOSSES[loss_name](y_local, logits)
                # This slice's share of the global batch's mean loss (and of the penalty).
                loss = tf.reduce_sum(cross_entropy * mask) / count
                if l2 > 0:
                    loss += l2 * tf.reduce_sum(tf.square(weights)) / replicas
            gradients = tape.gradient(loss, [weights, bias])
            optimizer.apply_gradients(zip(gradients, [weights, bias]))
            logits = tf.matmul(X_local, weights, transpose_b=True) + bias
            return slice_sums(y_local, logits, mask)

        return build_distributed_chunk(strategy, chunk_steps, self.batch_size, 2,
                                       replica_step)

    def fit(self, X: Any, y: Any, *, validation_data: tuple[Any, Any] | None = None,
            callback: Callable[[int, int, dict | None], None] | None = None,
            checkpoint: Checkpointer | None = None, strategy=None) -> SoftmaxRegression:
        """Train on images `X` ((N, H, W) or (N, features); uint8 pixels or floats in
        [0, 1]) and labels `y`.

        `callback(step, total_steps, record_or_None)` is called between compiled chunks of
        steps (several times a second): once for each record made in the chunk, then with
        `None` at the chunk's last step if that made no record. Raises `ConfigError` for bad
        settings and `TrainingDivergedError` naming the first step whose loss is not finite;
        `history_` then holds the records made before it. With a `checkpoint`
        (`training.checkpoint.Checkpointer`) the loop saves its state between chunks and
        resumes from the newest checkpoint when asked. With a `tf.distribute` `strategy`
        the steps run on its replicas, each on its slice of every global batch (see
        `training.distribute`), in chunks of `log_every` steps and without XLA. Returns
        `self`.
        """
        self.validate_params()
        if strategy is not None:
            check_batch(self.batch_size, strategy)
            if self.fresh_optimizer:
                raise ConfigError("fresh_optimizer (the tutorial's v2 as written) runs in one "
                                  "process only")
        self._forget_weights()  # a failed fit leaves the model unfitted
        X, labels = prepare_fit_input(self, X, y)
        features = _as_training_pixels(X)
        validation = prepare_validation(self, validation_data)
        has_validation = validation is not None
        num_features, num_classes = features.shape[1], len(self.classes_)
        if has_validation:
            val_features, val_labels = _as_training_pixels(validation[0]), validation[1]
        else:
            val_features = np.zeros((0, num_features), np.float32)
            val_labels = np.zeros((0,), np.int32)

        init_seed, order_seed = derived_seeds(self.seed, 2)
        plan = make_batch_plan(len(features), self.batch_size, num_steps=self.num_steps,
                               num_epochs=self.num_epochs, repeat=self.repeat,
                               shuffle_buffer=self.shuffle_buffer,
                               rng=np.random.default_rng(order_seed))
        total_steps = plan.total_steps

        # The loop trains W transposed, (classes, features), and the model keeps W
        # (features, classes) from the end of the fit. The same numbers either way (the
        # optimizers work element by element), but the tape's gradient of X W is then
        # G^T X, (classes, batch) x (batch, features), not X^T G: XLA's CPU matrix product
        # runs the whole step about 1.4 times faster with it (benchmarks/README.md).
        initial_weights, initial_bias = _initial_parameters(self.init, init_seed,
                                                            num_features, num_classes)
        if strategy is None:
            chunk_steps = self._chunk_steps or min(self.MAX_CHUNK_STEPS,
                                                   -(-self.CHUNK_EXAMPLES // self.batch_size))
            chunk_steps = min(chunk_steps, total_steps)
            # A constant learning rate is a variable of the optimizer, set for each fit; a
            # schedule's rates are constants of the computation.
            constant_rate = self.schedule == "constant"
            key = (features.shape, features.dtype.str, val_features.shape, num_classes,
                   chunk_steps, total_steps, has_validation,
                   self.optimizer, None if constant_rate else float(self.learning_rate),
                   self.schedule, self.batch_size, self.log_every, float(self.l2), self.loss,
                   bool(self.fresh_optimizer), self._jit_compile)
            loop = _LOOPS.pop(key, None) if self._reuse_loops else None  # ours while we fit
            if loop is None:
                weights, bias, optimizer = self._training_state(initial_weights, initial_bias,
                                                                total_steps)
                loop = _Loop(weights, bias, optimizer,
                             self._build_train_chunk(weights, bias, optimizer, chunk_steps,
                                                     total_steps, has_validation),
                             [variable.numpy() for variable in optimizer.variables])
            else:
                loop.weights.assign(tf.transpose(initial_weights))
                loop.bias.assign(initial_bias)
                for variable, value in zip(loop.optimizer.variables, loop.optimizer_start):
                    variable.assign(value)
                if constant_rate:
                    loop.optimizer.learning_rate = float(self.learning_rate)
            weights, bias, optimizer, train_chunk = loop[:4]
            data = [tf.constant(features), tf.constant(labels), tf.constant(val_features),
                    tf.constant(val_labels)]
        else:
            with strategy.scope():
                weights, bias, optimizer = self._training_state(initial_weights, initial_bias,
                                                                total_steps)
            # Records come at chunk ends (validation is scored between chunks).
            chunk_steps = min(self.log_every, total_steps)
            train_chunk = self._build_distributed_chunk(weights, bias, optimizer,
                                                        chunk_steps, strategy)
            data = [tf.constant(features), tf.constant(labels)]
        batch_indices, batch_sizes = chunk_inputs(plan, chunk_steps)

        def run_chunk(start: int, count: int) -> ChunkResult:
            records, bad_step, bad_loss = train_chunk(
                *data, tf.constant(batch_indices[start:start + chunk_steps]),
                tf.constant(batch_sizes[start:start + chunk_steps]),
                as_int32(start), as_int32(count))
            return ChunkResult(records.numpy(), int(bad_step), float(bad_loss))

        def make_record(step: int, epoch: int, values: np.ndarray) -> dict:
            record = {"step": step, "epoch": epoch,
                      "train_loss": float(values[0]), "train_accuracy": float(values[1])}
            if has_validation and strategy is None:
                record.update(val_loss=float(values[2]), val_accuracy=float(values[3]))
            elif has_validation:
                logits = tf.matmul(as_features(validation[0]), tf.transpose(weights)) + bias
                record.update(val_loss=float(tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(val_labels, logits))),
                    val_accuracy=float(np.mean(np.argmax(logits, 1) == val_labels)))
            return record

        self.history_: list[dict] = []
        try:
            run_chunks(run_chunk, plan, chunk_steps, self.log_every, make_record, callback,
                       self.history_, checkpoint,
                       variables_state([weights, bias, *optimizer.variables]),
                       stop_agreement(strategy))
            check_finite([weights, bias], total_steps)
            self.weights_ = tf.transpose(weights).numpy()  # (features, classes)
            self.bias_ = bias.numpy()  # (classes,)
        finally:
            if strategy is None and self._reuse_loops:
                _LOOPS[key] = loop
                while len(_LOOPS) > KEEP_LOOPS:
                    _LOOPS.popitem(last=False)
        self.num_steps_ = total_steps
        self.examples_seen_ = plan.examples_done(total_steps)
        return self

    def _forget_weights(self) -> None:
        """Leave the model unfitted (a fit that fails keeps only `history_`)."""
        self.__dict__.pop("weights_", None)
        self.__dict__.pop("bias_", None)

    # ----------------------------------------------------------------------------- inference
    def _logits_batches(self, X: Any):
        """Yield logits (rows, classes) for successive slices of the images."""
        check_fitted(self, "weights_")
        X = prepare_input(self, X)
        for start in range(0, max(len(X), 1), PREDICT_BATCH_ROWS):
            features = as_features(X[start:start + PREDICT_BATCH_ROWS])
            yield tf.matmul(features, self.weights_) + self.bias_

    def logits(self, X: Any) -> np.ndarray:
        """The logits X W + b, float32 (N, classes)."""
        return np.concatenate([logits.numpy() for logits in self._logits_batches(X)])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, float32 (N, classes), columns in `classes_` order."""
        return np.concatenate([tf.nn.softmax(logits).numpy()
                               for logits in self._logits_batches(X)])

    def cross_entropy(self, X: Any, y: Any) -> float:
        """Mean cross-entropy of the model on `(X, y)` (no L2 term)."""
        y = np.searchsorted(self.classes_, np.asarray(y)).astype(np.int32)
        logits = self.logits(X)
        if len(logits) != len(y):
            raise ValueError(f"expected {len(logits)} labels, got {len(y)}")
        return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)))

    def count_parameters(self) -> int:
        """Weights plus biases: features x classes + classes (7850 for MNIST)."""
        check_fitted(self, "weights_")
        return int(self.weights_.size + self.bias_.size)

    # ----------------------------------------------------------------------------- export
    def serving_module(self) -> tf.Module:
        """A `tf.Module` with `serve`: uint8 images -> {"probabilities": (N, classes)}."""
        check_fitted(self, "weights_")
        num_features = self.weights_.shape[0]
        image_shape = list(self.image_shape_)

        class LinearServing(tf.Module):
            def __init__(self, weights: np.ndarray, bias: np.ndarray):
                super().__init__(name="mnistlab_softmax")
                self.weights = tf.Variable(weights, name="weights")  # (features, classes)
                self.bias = tf.Variable(bias, name="bias")  # (classes,)

            @tf.function(input_signature=[tf.TensorSpec([None, *image_shape], tf.uint8,
                                                        name="images")])
            def serve(self, images):
                features = tf.reshape(tf.cast(images, tf.float32) / 255.0, [-1, num_features])
                return {"probabilities": tf.nn.softmax(features @ self.weights + self.bias)}

        return LinearServing(self.weights_.astype(np.float32), self.bias_.astype(np.float32))

    # ----------------------------------------------------------------------------- storage
    def save(self, directory: str | Path) -> None:
        """Write a TensorFlow checkpoint of W and b and `params.json` into an empty directory."""
        check_fitted(self, "weights_")
        directory = empty_save_directory(directory)
        tf.train.Checkpoint(W=tf.Variable(self.weights_, name="weights"),
                            b=tf.Variable(self.bias_, name="bias")).write(
            str(directory / CHECKPOINT_PREFIX))
        write_model_document(directory / PARAMS_FILE, self.model_name,
                             params=self.get_params(), fitted=fitted_state(self))

    @classmethod
    def load(cls, directory: str | Path) -> SoftmaxRegression:
        """Load a model written by `save`; it predicts exactly as the saved one did."""
        directory = Path(directory)
        document = read_model_document(directory / PARAMS_FILE, cls.model_name)
        model = cls.from_params(document["params"], directory / PARAMS_FILE)
        restore_fitted_state(model, document["fitted"], range(10))
        num_features = int(np.prod(model.image_shape_))
        weights = tf.Variable(tf.zeros([num_features, len(model.classes_)]), name="weights")
        bias = tf.Variable(tf.zeros([len(model.classes_)]), name="bias")
        try:
            tf.train.Checkpoint(W=weights, b=bias).read(
                str(directory / CHECKPOINT_PREFIX)).assert_consumed()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError) as error:
            raise RunError(f"cannot read the checkpoint in {directory}: "
                           f"{str(error).splitlines()[0] if str(error) else type(error).__name__}"
                           ) from None
        model.weights_, model.bias_ = weights.numpy(), bias.numpy()
        return model
