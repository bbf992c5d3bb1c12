"""Neural classifiers built from Keras 3 layers and trained by our own compiled loop.

`MLP` (dense layers on the 784 pixels) and `CNN` (blocks of 3x3 convolutions and max-pooling)
share one base class, `NeuralClassifier`, which holds the loop. It follows the softmax model's
design (see softmax.py): the training images stay in memory as a uint8 tensor, the whole batch
order is drawn up front (full reshuffle per pass, every batch full, as `repeat().shuffle()
.batch()` with a full buffer), and one `tf.function` runs a chunk of `log_every` steps in a
`tf.range` loop, gathering each batch from the index tensor. The outer loop, the batch plan,
the optimizers and schedules are the shared ones of `mnistlab.training`; Python runs only
between chunks: to evaluate the validation set, hand the record to the callback and stop on
a diverged loss.

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

import contextlib
import math
import os
import re
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from mnistlab._lazy import keras, tf
from mnistlab.errors import ConfigError, RunError
from mnistlab.models._layers import fused_batch_normalization, replica_dropout
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
from mnistlab.training.seeding import derived_seeds, keras_seed

WEIGHTS_FILE = "network.weights.h5"
PARAMS_FILE = "params.json"
# Images per call of the compiled predict function: large enough to keep oneDNN busy, small
# enough that a CNN's activations stay in the tens of megabytes.
PREDICT_BATCH = 1000
# Compiled predict functions, by network (see `NeuralClassifier._logits_function`).
_PREDICT_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _as_images(X: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Checked pixels (N, features) -> (N, *image_shape): uint8 as they are, other integers
    clipped to uint8, floats as float32 in [0, 1]."""
    X = X.reshape(len(X), *image_shape)
    if X.dtype == np.uint8:
        return X
    if np.issubdtype(X.dtype, np.integer):
        return np.clip(X, 0, 255).astype(np.uint8)
    return X.astype(np.float32, copy=False)


def _scale(images: tf.Tensor) -> tf.Tensor:
    """uint8 pixels (batch, ...) -> float32 (batch, ..., 1) in [0, 1]."""
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


class _LayerNames:
    """Names layers as Keras does in a fresh process (`conv2d`, `conv2d_1`, `re_lu`, ...), but
    counted per network, so a network's saved weights are the same bytes whichever networks
    the process built before it."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def __call__(self, layer_class: type, *args, **kwargs):
        name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", layer_class.__name__)
        name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
        count = self.counts.get(name, 0)
        self.counts[name] = count + 1
        return layer_class(*args, name=name if count == 0 else f"{name}_{count}", **kwargs)


def _weights_problem(error: Exception) -> str:
    """One line on why Keras could not load a weights file into the network."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("A total of"):
        # Keras: "A total of N objects could not be loaded. Example error message for
        # object <Dense ...>:", then the example; weights of another network, or a
        # params.json edited to describe another one.
        detail = lines[1].split(". Target variable")[0]
        shapes = re.search(r"variable\.shape=\([^)]*\), Received: value\.shape=\([^)]*\)",
                           detail)
        return ("they do not fit the network its params.json describes ("
                + (shapes.group(0) if shapes else detail[:200]) + ")")
    return lines[0] if lines else type(error).__name__


def _physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _batch_norm(layer: _LayerNames, synchronized: bool, fused: bool = True):
    """A batch-normalisation layer (see `_layers.py`): trained with TensorFlow's fused
    kernel, or under a strategy with statistics over all replicas, those of the global batch,
    from one all-reduce; `fused=False` (which the benchmark and the tests set) for Keras'
    own layer."""
    if not fused:
        return layer(keras.layers.BatchNormalization, synchronized=synchronized)
    if synchronized:
        return layer(fused_batch_normalization(), synchronized=True)
    return layer(fused_batch_normalization())


def _dropout(layer: _LayerNames, synchronized: bool, rate: float, xla: bool = False):
    """A dropout layer: Keras' own, or under a strategy one whose replicas apply their rows
    of the global batch's masks (see `_layers.py`), drawn with XLA where the one-process
    loop is XLA-compiled (`xla`)."""
    if not synchronized:
        return layer(keras.layers.Dropout, rate)
    dropout = layer(replica_dropout(), rate)
    dropout.xla = xla
    return dropout


# The settings of augmentation, which do nothing without `augment`.
AUGMENTATION_OPTIONS = ("max_shift", "max_rotation", "max_zoom", "elastic", "elastic_sigma")


def _fraction(help_text: str) -> Option:
    return Option(Real(0.0, 1.0, high_open=True), help_text, metavar="FRACTION")


# The options of both networks (each class adds its architecture's).
NEURAL_OPTIONS: dict[str, Option] = {
    **LOOP_OPTIONS,
    "optimizer": Option(Choice(("adam", "adamw", "sgd", "momentum", "nesterov")),
                        "optimizer (momentum, nesterov: SGD with momentum 0.9)"),
    "learning_rate": Option(Real(0.0, 100.0, low_open=True), "peak learning rate"),
    "weight_decay": Option(Real(0.0, 10.0), "decoupled weight decay (AdamW style) on the "
                                            "kernels"),
    "schedule": Option(Choice(("constant", "cosine", "one-cycle")), "learning-rate schedule"),
    "warmup_fraction": Option(Real(0.0, 1.0, high_open=True),
                              "fraction of the steps spent warming the learning rate up",
                              flag="--warmup", metavar="FRACTION"),
    "label_smoothing": _fraction("label smoothing towards uniform"),
    "ema_decay": Option(Real(0.0, 1.0, high_open=True),
                        "keep an exponential moving average of the weights with this decay "
                        "(e.g. 0.999) and evaluate, predict and save with it",
                        flag="--ema", metavar="DECAY"),
    "dropout": Option(Real(0.0, 1.0, high_open=True), "dropout rate", metavar="RATE"),
    "batch_norm": Option(Boolean(), "batch normalisation after each layer"),
    "precise_bn": Option(Integer(0, 100_000_000),
                         "after training, set batch norm's statistics to those of this many "
                         "training images under the final weights (0: keep the moving "
                         "averages)", metavar="IMAGES"),
    "augment": Option(Boolean(), "random shifts, rotations and zooms, seeded by the seed and "
                                 "the step"),
    "max_shift": Option(Real(0.0, 100.0), "augmentation: largest shift", metavar="PIXELS"),
    "max_rotation": Option(Real(0.0, 180.0), "augmentation: largest rotation",
                           metavar="DEGREES"),
    "max_zoom": _fraction("augmentation: largest zoom in or out"),
    "elastic": Option(Real(0.0, 100.0), "augmentation: strength of an elastic distortion "
                                        "(Simard et al. 2003 used 34; 0: none)",
                      metavar="PIXELS"),
    "elastic_sigma": Option(Real(0.0, 100.0, low_open=True),
                            "augmentation: smoothness of the elastic distortion's field "
                            "(its Gaussian's sigma)", metavar="PIXELS"),
}


class NeuralClassifier(ProbabilisticClassifierMixin, OptionsMixin, BaseEstimator):
    """The shared training step, inference, storage and export of `MLP` and `CNN`.

    Subclasses set `model_name`, `_jit_compile` and `options`, and build the network
    (float images (batch, H, W, 1) in [0, 1] in, logits out) in `build_network`.
    """

    model_name = "neural"
    export_formats = ("savedmodel", "tflite", "onnx")
    options = NEURAL_OPTIONS
    _jit_compile = False
    _fused_batch_norm = True  # False: Keras' own batch norm (benchmarks/bench_cnn.py)
    check_option_combination = staticmethod(check_loop_length)

    # ----------------------------------------------------------------------------- network
    def build_network(self, synchronized: bool = False) -> keras.Model:  # pragma: no cover
        """The Keras network for the fitted image shape and classes."""
        raise NotImplementedError

    def _network_input(self) -> keras.KerasTensor:
        return keras.Input((*self.image_shape_, 1))

    def _fit_image_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The image shape the network is built for, from the shape `fit` was given."""
        return image_shape

    def _size(self) -> tuple[int, int]:  # pragma: no cover
        """(parameters, activation values per image) of the network for the fitted shape
        and classes, counted without building it."""
        raise NotImplementedError

    def _check_memory(self) -> None:
        """Refuse in one line a network too big for this machine's memory, before Keras
        allocates it (a width of 16,384 at depth 64 is 17 billion parameters).

        The estimate counts 6 copies of the parameters (weights, gradients, two Adam
        moments, the moving average, a spare) and 4 of the activations of a training batch
        or a prediction batch, 4 bytes each.
        """
        parameters, activations = self._size()
        needed = 4 * (6 * parameters + 4 * max(self.batch_size, PREDICT_BATCH) * activations)
        available = _physical_memory()
        if available and needed > 0.8 * available:
            raise ConfigError(
                f"this network ({parameters:,} parameters, {activations:,} activations per "
                f"image) would need about {needed / 1024 ** 3:,.1f} GiB of memory to train, "
                f"more than this machine's {available / 1024 ** 3:,.0f} GiB allow: make it "
                f"narrower or shallower, or the batch smaller")

    def count_parameters(self) -> int:
        """Trainable and non-trainable parameters (batch-norm statistics included)."""
        check_fitted(self, "network_")
        return int(self.network_.count_params())

    # ----------------------------------------------------------------------------- training
    def _xla_training(self) -> bool:
        """Whether the one-process training loop is XLA-compiled (the MLP's without
        augmentation: XLA cannot compile the warp op)."""
        return self._jit_compile and not self.augment

    def _augment(self, images: tf.Tensor, step: tf.Tensor, augment_seed: int,
                 offset=None) -> tf.Tensor:
        """The step's batch warped by transforms seeded with (augment seed, step); a
        replica's slice starting at `offset` gets its rows of the global batch's."""
        from mnistlab.training.augment import augment_images

        seed = tf.stack([tf.constant(augment_seed, tf.int32), step])
        return augment_images(images, seed, max_shift=float(self.max_shift),
                              max_rotation=float(self.max_rotation),
                              max_zoom=float(self.max_zoom), elastic=float(self.elastic),
                              elastic_sigma=float(self.elastic_sigma),
                              global_batch=None if offset is None else self.batch_size,
                              offset=0 if offset is None else offset)

    def _build_distributed_chunk(self, network, optimizer, chunk_steps: int,
                                 augment_seed: int, strategy) -> Callable:
        """The chunk of steps on `strategy`'s replicas (see `training.distribute`)."""
        variables = network.trainable_variables
        label_smoothing = float(self.label_smoothing)

        def replica_step(images, labels, mask, count, step, first):
            X = _scale(images)  # (local batch, H, W, 1)
            if self.augment:
                # Seeded by the 0-based step index, as in one process.
                X = self._augment(X, step - 1, augment_seed, offset=first)
            with tf.GradientTape() as tape:
                logits = network(X, training=True)  # (local batch, classes)
                losses = smoothed_cross_entropy(labels, logits, label_smoothing)
                loss = tf.reduce_sum(losses * mask) / count  # its share of the global mean
            gradients = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(gradients, variables))
            return slice_sums(labels, logits, mask)

        return build_distributed_chunk(strategy, chunk_steps, self.batch_size, 2,
                                       replica_step)

    def _build_train_chunk(self, network: keras.Model, optimizer: keras.optimizers.Optimizer,
                           chunk_steps: int, augment_seed: int) -> Callable:
        """A compiled function running up to `chunk_steps` steps of the plan.

        Arguments: the training images (N, H, W) and labels (N,), the chunk's batch indices
        (chunk_steps, batch), the number of the chunk's first step and how many steps to
        run. Returns each step's (loss, accuracy) as rows (chunk_steps, 2), the 1-based
        number of the first step whose loss was not finite (0 if none) and that loss; the
        loop stops there.
        """
        variables = network.trainable_variables
        label_smoothing = float(self.label_smoothing)

        def train_step(images, labels, step):
            X = _scale(images)  # (batch, H, W, 1)
            if self.augment:
                X = self._augment(X, step, augment_seed)
            with tf.GradientTape() as tape:
                logits = network(X, training=True)  # (batch, classes)
                losses = smoothed_cross_entropy(labels, logits, label_smoothing)
                loss = tf.reduce_mean(losses)
            gradients = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(gradients, variables))
            cross_entropy = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            accuracy = tf.reduce_mean(tf.cast(
                tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels), tf.float32))
            return cross_entropy, accuracy

        @tf.function(jit_compile=self._xla_training(), reduce_retracing=True)
        def train_chunk(images, labels, batch_indices, first_step, count):
            rows = tf.zeros([chunk_steps, 2])
            bad_step = tf.constant(0, tf.int32)
            bad_loss = tf.constant(0.0)
            # A `while` loop, not `for offset in tf.range(count)`: XLA takes a range's bound
            # as a compile-time constant and would compile again for a shorter last chunk.
            offset = tf.constant(0)
            while offset < count:
                batch = batch_indices[offset]
                loss, accuracy = train_step(tf.gather(images, batch), tf.gather(labels, batch),
                                            first_step + offset)
                rows = tf.tensor_scatter_nd_update(rows, [[offset]],
                                                   [tf.stack([loss, accuracy])])
                if not tf.math.is_finite(loss):
                    # Stop at the first non-finite loss, keeping its step number.
                    bad_step = first_step + offset + 1
                    bad_loss = loss
                    break
                offset += 1
            return rows, bad_step, bad_loss

        return train_chunk

    def fit(self, X: Any, y: Any, *, validation_data: tuple | None = None,
            callback: Callable[[int, int, dict | None], None] | None = None,
            checkpoint: Checkpointer | None = None, strategy=None) -> NeuralClassifier:
        """Train on images `X` ((N, H, W) or (N, features); uint8 pixels or floats in
        [0, 1]) and labels `y`.

        `validation_data=(images, labels)` adds `val_loss` and `val_accuracy` to each record.
        `callback(step, total_steps, record_or_None)` is called between chunks of steps. A
        non-finite loss raises `TrainingDivergedError` naming the step; `history_` then holds
        the records made before it. With `ema_decay` the fitted network holds the moving
        averages of the weights. With a `checkpoint` (`training.checkpoint.Checkpointer`)
        the loop saves its state between chunks (every variable of the network, the dropout
        layers' seed generators included, and of the optimizer) and resumes from the newest
        checkpoint when asked. With a `tf.distribute` `strategy` the steps run on its
        replicas, each on its slice of every global batch, with synchronised batch norm
        and each image's augmentation and dropout masks as in one process (see
        `training.distribute`). Returns `self`.
        """
        from mnistlab.training.optimizers import build_optimizer

        self.validate_params()
        self.__dict__.pop("network_", None)  # a failed fit leaves the model unfitted
        X, labels = prepare_fit_input(self, X, y)
        self.image_shape_ = self._fit_image_shape(self.image_shape_)
        self._check_memory()
        images = _as_images(X, self.image_shape_)
        validation = prepare_validation(self, validation_data)

        order_seed, augment_seed = derived_seeds(self.seed, 2)
        plan = make_batch_plan(len(images), self.batch_size, num_steps=self.num_steps,
                               num_epochs=self.num_epochs, repeat=True, shuffle_buffer=None,
                               rng=np.random.default_rng(order_seed))
        total_steps = plan.total_steps
        if strategy is not None:
            check_batch(self.batch_size, strategy)
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            with keras_seed(self.seed):
                # Under a strategy, batch norm averages its statistics over the replicas,
                # so that they are those of the global batch.
                network = self.build_network(synchronized=strategy is not None)
            optimizer = build_optimizer(self.optimizer, self.learning_rate, total_steps,
                                        schedule=self.schedule,
                                        warmup_fraction=self.warmup_fraction,
                                        weight_decay=self.weight_decay,
                                        ema_decay=self.ema_decay)
            optimizer.build(network.trainable_variables)
        chunk_steps = min(self.log_every, total_steps)
        augment_seed %= 2 ** 31
        self.network_ = network
        data = [tf.constant(images), tf.constant(labels)]
        batch_indices, batch_sizes = chunk_inputs(plan, chunk_steps)
        if strategy is None:
            train_chunk = self._build_train_chunk(network, optimizer, chunk_steps,
                                                  augment_seed)
        else:
            train_chunk = self._build_distributed_chunk(network, optimizer, chunk_steps,
                                                        augment_seed, strategy)

        def run_chunk(start: int, count: int) -> ChunkResult:
            chunk = [tf.constant(batch_indices[start:start + chunk_steps])]
            if strategy is not None:
                chunk.append(tf.constant(batch_sizes[start:start + chunk_steps]))
            rows, bad_step, bad_loss = train_chunk(*data, *chunk, as_int32(start),
                                                   as_int32(count))
            return ChunkResult(rows.numpy(), int(bad_step), float(bad_loss))

        def make_record(step: int, epoch: int, values: np.ndarray) -> dict:
            record = {"step": step, "epoch": epoch,
                      "train_loss": float(values[0]), "train_accuracy": float(values[1])}
            if validation is not None:
                record.update(self._evaluate(*validation))
            return record

        self.history_: list[dict] = []
        try:
            run_chunks(run_chunk, plan, chunk_steps, self.log_every, make_record, callback,
                       self.history_, checkpoint,
                       variables_state([*network.variables, *optimizer.variables]),
                       stop_agreement(strategy))
            if self.ema_decay:
                optimizer.finalize_variable_values(network.trainable_variables)
            if self.batch_norm and self.precise_bn:
                with strategy.scope() if strategy is not None else contextlib.nullcontext():
                    self._precise_batch_norm(images, seed=derived_seeds(self.seed, 3)[2])
            check_finite(network.variables, total_steps)
        except BaseException:
            self.__dict__.pop("network_", None)
            raise
        self.num_steps_ = total_steps
        self.examples_seen_ = plan.examples_done(total_steps)
        return self

    def _precise_batch_norm(self, images: np.ndarray, seed: int) -> None:
        """Set each batch-norm layer's moving mean and variance to the mean and variance of
        its inputs over `precise_bn` training images (a seeded subset, not augmented) under
        the final weights: "precise batch norm" (Wu and Johnson, "Rethinking 'Batch' in
        BatchNorm", 2021; PyTorch's `swa_utils.update_bn`).

        The moving averages mix statistics of weights that training has since changed (after
        300 steps of `cnn-fast` at momentum 0.99, 5% of them are still the initial 0 and 1)
        and of augmented images, and with `ema_decay` they belong to the current weights, not
        the averaged ones. Each layer's inputs are computed as in training, normalised with
        each batch's own statistics (dropout off), in equal batches of at most 1000 images, so
        up to one image per batch is left out (1,999 images: 2 x 999); the statistics are
        combined over the batches in float64 (the mean of the batches' means, and of their
        variances plus the spread of their means).
        """
        network = self.network_
        norms = [layer for layer in network.layers
                 if isinstance(layer, keras.layers.BatchNormalization)]
        wanted = min(self.precise_bn, len(images))
        batches = -(-wanted // PREDICT_BATCH)
        batch = wanted // batches
        count = batch * batches
        chosen = np.sort(np.random.default_rng(seed).permutation(len(images))[:count])

        @tf.function(jit_compile=False)
        def moments(batch_images):
            X = _scale(batch_images)
            values = []
            for layer in network.layers:
                if not isinstance(layer, keras.layers.BatchNormalization):
                    X = layer(X, training=False)
                    continue
                mean, variance = tf.nn.moments(X, axes=list(range(len(X.shape) - 1)))
                values += [mean, variance]
                X = tf.nn.batch_normalization(X, mean, variance, layer.beta if layer.center
                                              else None, layer.gamma if layer.scale else None,
                                              layer.epsilon)
            return values

        values = [[value.numpy().astype(np.float64)
                   for value in moments(tf.constant(images[chosen[start:start + batch]]))]
                  for start in range(0, count, batch)]
        for index, layer in enumerate(norms):
            means = np.stack([row[2 * index] for row in values])  # (batches, channels)
            variances = np.stack([row[2 * index + 1] for row in values])
            layer.moving_mean.assign(means.mean(0).astype(np.float32))
            layer.moving_variance.assign((variances.mean(0) + means.var(0)).astype(np.float32))

    def _evaluate(self, images: np.ndarray, labels: np.ndarray) -> dict:
        """Validation loss (plain cross-entropy) and accuracy with the current weights."""
        logits = self._logits(images)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        accuracy = np.mean(np.argmax(logits, axis=1) == labels)
        return {"val_loss": float(tf.reduce_mean(cross_entropy)),
                "val_accuracy": float(accuracy)}

    # ----------------------------------------------------------------------------- inference
    def _logits_function(self) -> Callable:
        """A compiled images -> logits function over the fitted network, traced once.

        It is cached beside the model, keyed by the network, so that predicting leaves the
        model's attributes as they were (scikit-learn's contract)."""
        network = self.network_
        if network not in _PREDICT_FUNCTIONS:
            @tf.function(jit_compile=self._jit_compile, reduce_retracing=True)
            def logits(images):
                return network(_scale(images), training=False)

            _PREDICT_FUNCTIONS[network] = logits
        return _PREDICT_FUNCTIONS[network]

    def _logits(self, X: np.ndarray) -> np.ndarray:
        """Logits of checked pixels (N, features), float32 (N, classes)."""
        images = _as_images(X, self.image_shape_)
        if len(images) == 0:
            return np.zeros((0, len(self.classes_)), np.float32)
        logits = self._logits_function()
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

    def logits(self, X: Any) -> np.ndarray:
        """Logits, float32 (N, classes)."""
        check_fitted(self, "network_")
        return self._logits(prepare_input(self, X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, float32 (N, classes), columns in `classes_` order."""
        return tf.nn.softmax(self.logits(X)).numpy()

    # ----------------------------------------------------------------------------- export
    def serving_module(self) -> tf.Module:
        """A `tf.Module` with `serve`: uint8 images -> {"probabilities": (N, classes)}."""
        check_fitted(self, "network_")
        network = self.network_
        image_shape = list(self.image_shape_)

        class NeuralServing(tf.Module):
            def __init__(self):
                super().__init__(name=f"mnistlab_{network.name.replace('-', '_')}")
                self.network = network
                # The TensorFlow variables under Keras' wrappers, tracked directly so that
                # converters that freeze variables (TFLite) find them.
                self.weights = [variable.value for variable in network.variables]

            @tf.function(input_signature=[tf.TensorSpec([None, *image_shape], tf.uint8,
                                                        name="images")])
            def serve(self, images):
                logits = self.network(_scale(images), training=False)
                return {"probabilities": tf.nn.softmax(logits)}

        return NeuralServing()

    # ----------------------------------------------------------------------------- storage
    def save(self, directory: str | Path) -> None:
        """Write the network's weights and `params.json` into an empty directory."""
        check_fitted(self, "network_")
        directory = empty_save_directory(directory)
        self.network_.save_weights(str(directory / WEIGHTS_FILE))
        write_model_document(directory / PARAMS_FILE, self.model_name,
                             params=self.get_params(), fitted=fitted_state(self))

    @classmethod
    def load(cls, directory: str | Path) -> NeuralClassifier:
        """Load a model written by `save`; it predicts exactly as the saved one did."""
        directory = Path(directory)
        document = read_model_document(directory / PARAMS_FILE, cls.model_name)
        model = cls.from_params(document["params"], directory / PARAMS_FILE)
        restore_fitted_state(model, document["fitted"], range(10))
        network = model.build_network()
        try:
            network.load_weights(str(directory / WEIGHTS_FILE))
        except (OSError, ValueError, KeyError) as error:
            raise RunError(f"cannot read the weights in {directory}: "
                           f"{_weights_problem(error)}") from None
        model.network_ = network
        return model


class MLP(NeuralClassifier):
    """A multilayer perceptron: `depth` hidden layers of `width` ReLU units on the pixels.

    Each hidden layer is Dense -> [BatchNormalization] -> ReLU -> [Dropout]. Its chunks are
    XLA-compiled, which trains the `mlp` preset's network 1.3-1.4x faster here; with
    `augment` they are not (XLA cannot compile the warp op, `ImageProjectiveTransformV3`).
    """

    model_name = "mlp"
    _jit_compile = True
    options = {
        "width": Option(Integer(1, 16_384), "units per hidden layer"),
        "depth": Option(Integer(1, 64), "hidden layers"),
        **NEURAL_OPTIONS,
    }

    def __init__(self, *, width: int = 512, depth: int = 2, dropout: float = 0.0,
                 batch_norm: bool = False, precise_bn: int = 10_000, augment: bool = False,
                 max_shift: float = 2.0, max_rotation: float = 10.0, max_zoom: float = 0.1,
                 elastic: float = 0.0, elastic_sigma: float = 4.0,
                 optimizer: str = "adamw", learning_rate: float = 0.001, weight_decay: float = 0.0,
                 schedule: str = "constant", warmup_fraction: float = 0.0,
                 label_smoothing: float = 0.0, ema_decay: float = 0.0, batch_size: int = 128,
                 num_steps: int | None = None, num_epochs: int | None = 10,
                 log_every: int = 50, seed: int = 0):
        # Every argument is stored under its own name (scikit-learn's get_params reads them).
        self.store_options(locals())

    def _size(self) -> tuple[int, int]:
        widths = [int(np.prod(self.image_shape_)), *[self.width] * self.depth,
                  len(self.classes_)]
        parameters = sum((inputs + 1) * outputs for inputs, outputs in zip(widths, widths[1:]))
        return parameters + 4 * self.width * self.depth, sum(widths) + 3 * self.width * self.depth

    def build_network(self, synchronized: bool = False) -> keras.Model:
        """features -> depth x width -> classes; parameters 785 w + (depth - 1)(w + 1) w +
        10(w + 1) for MNIST, plus 4 w per layer with batch norm (whose dense layers then
        drop their bias)."""
        layer, layers = _LayerNames(), keras.layers
        stack = [self._network_input(), layer(layers.Flatten)]
        for _ in range(self.depth):
            stack.append(layer(layers.Dense, self.width, use_bias=not self.batch_norm))
            if self.batch_norm:
                stack.append(_batch_norm(layer, synchronized, self._fused_batch_norm))
            stack.append(layer(layers.ReLU))
            if self.dropout:
                stack.append(_dropout(layer, synchronized, self.dropout,
                                      self._xla_training()))
        stack.append(layer(layers.Dense, len(self.classes_)))
        return keras.Sequential(stack, name="mlp")


class CNN(NeuralClassifier):
    """A convolutional network of `depth` blocks, then an optional dense layer.

    Block b (0-based) holds `convs_per_block` 3x3 'same' convolutions of `width * 2**b`
    filters, each Conv -> [BatchNormalization] -> ReLU, then 2x2 max-pooling (28 -> 14 -> 7
    -> 3); with `pool_first` the pooling comes right after the block's last convolution, so
    that its batch norm and ReLU work on a quarter of the values (the ReLU commutes with the
    pooling; batch norm nearly does). Measured on `cnn-fast` (benchmarks/bench_cnn.py), a
    training step takes about 0.75 times as long. Then Flatten -> [Dropout] ->
    Dense(dense_units) -> [BN] -> ReLU -> [Dropout] -> Dense(classes), or Flatten ->
    [Dropout] -> Dense(classes) when `dense_units` is 0. Not XLA-compiled: oneDNN's
    convolutions are several times faster than XLA's on CPU. It takes images (N, H, W), or
    features whose count is a square (N, side * side).
    """

    model_name = "cnn"
    _jit_compile = False
    options = {
        "width": Option(Integer(1, 1024), "filters of the first block (doubled in each next "
                                          "block)"),
        "depth": Option(Integer(1, 6), "convolution blocks (each ends in a 2x2 max-pool)"),
        "convs_per_block": Option(Integer(1, 16), "3x3 convolutions per block"),
        "dense_units": Option(Integer(0, 16_384), "units of the dense layer before the output "
                                                  "(0: none)"),
        "pool_first": Option(Boolean(), "max-pool each block's last convolution before its "
                                        "batch norm and ReLU (a quarter of their work)"),
        **NEURAL_OPTIONS,
    }

    def __init__(self, *, width: int = 32, depth: int = 2, dropout: float = 0.0,
                 batch_norm: bool = False, precise_bn: int = 10_000, augment: bool = False,
                 max_shift: float = 2.0, max_rotation: float = 10.0, max_zoom: float = 0.1,
                 elastic: float = 0.0, elastic_sigma: float = 4.0,
                 optimizer: str = "adamw", learning_rate: float = 0.001, weight_decay: float = 0.0,
                 schedule: str = "constant", warmup_fraction: float = 0.0,
                 label_smoothing: float = 0.0, ema_decay: float = 0.0, batch_size: int = 128,
                 num_steps: int | None = None, num_epochs: int | None = 10,
                 log_every: int = 50, convs_per_block: int = 2, dense_units: int = 128,
                 pool_first: bool = False, seed: int = 0):
        self.store_options(locals())

    def _fit_image_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(image_shape) == 1:
            side = math.isqrt(image_shape[0])
            if side * side != image_shape[0]:
                raise ValueError(f"a CNN needs images (N, height, width) or a square number of "
                                 f"features, got {image_shape[0]} features")
            image_shape = (side, side)
        if min(image_shape) < 2 ** self.depth:
            raise ValueError(f"images of {image_shape[0]}x{image_shape[1]} pixels are too small "
                             f"for {self.depth} blocks of 2x2 pooling")
        return image_shape

    def _size(self) -> tuple[int, int]:
        (height, width), channels = self.image_shape_, 1
        parameters, activations = 0, height * width
        for block in range(self.depth):
            filters = self.width * 2 ** block
            for _ in range(self.convs_per_block):
                parameters += (9 * channels + 5) * filters  # kernel, bias, batch norm
                activations += 3 * height * width * filters  # conv, batch norm, ReLU
                channels = filters
            height, width = height // 2, width // 2
            activations += height * width * channels
        units = [height * width * channels, *([self.dense_units] if self.dense_units else []),
                 len(self.classes_)]
        parameters += sum((inputs + 5) * outputs for inputs, outputs in zip(units, units[1:]))
        return parameters, activations + 3 * sum(units)

    def build_network(self, synchronized: bool = False) -> keras.Model:
        """Images (batch, H, W, 1) -> logits (batch, classes)."""
        layer, layers = _LayerNames(), keras.layers
        stack = [self._network_input()]
        for block in range(self.depth):
            for index in range(self.convs_per_block):
                stack.append(layer(layers.Conv2D, self.width * 2 ** block, 3, padding="same",
                                   use_bias=not self.batch_norm))
                if self.pool_first and index == self.convs_per_block - 1:
                    stack.append(layer(layers.MaxPooling2D))
                if self.batch_norm:
                    stack.append(_batch_norm(layer, synchronized, self._fused_batch_norm))
                stack.append(layer(layers.ReLU))
            if not self.pool_first:
                stack.append(layer(layers.MaxPooling2D))
        stack.append(layer(layers.Flatten))
        if self.dropout:
            stack.append(_dropout(layer, synchronized, self.dropout))
        if self.dense_units:
            stack.append(layer(layers.Dense, self.dense_units, use_bias=not self.batch_norm))
            if self.batch_norm:
                stack.append(_batch_norm(layer, synchronized, self._fused_batch_norm))
            stack.append(layer(layers.ReLU))
            if self.dropout:
                stack.append(_dropout(layer, synchronized, self.dropout))
        stack.append(layer(layers.Dense, len(self.classes_)))
        return keras.Sequential(stack, name="cnn")
