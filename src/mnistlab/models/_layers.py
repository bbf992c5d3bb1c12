"""Keras layers of our own: batch normalisation on TensorFlow's fused kernel, and dropout
whose replicas draw the global batch's masks.

Keras 3's `BatchNormalization` computes a batch's moments and the normalisation with
separate ops; on CPU, training the former `cnn-fast` network spent more than half of each
step in them (benchmarks/bench_cnn.py: 18.2 ms per step against 8.3 ms without batch norm).
TensorFlow's fused kernel (`FusedBatchNormV3`, one pass for the moments and one for the
output, and the same for the gradients) does the same arithmetic faster: the `cnn` preset's
step takes 39.5 ms with it against 53.4 ms with Keras' layer.

`fused_batch_normalization()` returns a subclass of Keras' layer that takes the fused kernel
when training on images (N, H, W, C) and leaves everything else to Keras: inference (so
saved models, exports and served pages compute exactly what Keras' own layer does), masks,
other axes and renormalisation. Its variables are Keras' own (gamma, beta, moving mean and
variance) and it bears Keras' class name, so weights files written with either layer load
into the other.

With statistics synchronised over a strategy's replicas (`synchronized=True`), Keras' layer
all-reduces three tensors per layer and step (the sums of x and of x squared, and the count)
and takes the variance as E[x^2] - E[x]^2, which loses digits when the mean is large against
the spread. This layer all-reduces one tensor, the sums of x - c and of (x - c)^2 and the
count, where c is the layer's moving mean (the same on every replica, and close to the
batch's mean once training is under way): the same moments with one collective instead of
three, and without that cancellation. Measured with two local workers on `cnn-fast`
(benchmarks/bench_scale.py), a step takes about 11 ms less.

Keras' `Dropout` under a strategy gives every replica the same mask: each replica draws its
slice's mask from the same seed, so the second half of a global batch is masked like the
first, and not as one process masks it. `replica_dropout()` returns a subclass that, with
more than one replica, draws the mask of the whole global batch (from the seed Keras' layer
draws, so the seeds advance as they do in one process) and keeps its own rows: the masks one
process draws, row for row. Where the one-process loop is XLA-compiled (the MLP's), which
draws other numbers from the same seed, the replicas draw theirs with XLA too. With one
replica it is Keras' layer.
"""

from __future__ import annotations

import functools

from mnistlab._lazy import keras, tf
from mnistlab.training.distribute import replica_slice


@functools.cache
def fused_batch_normalization() -> type:
    """The layer class (built on first use, so that importing this module does not import
    Keras)."""

    # Named as Keras' class: Keras files a layer's weights under its class name, so the
    # two layers' weights files are the same.
    class BatchNormalization(keras.layers.BatchNormalization):
        """`keras.layers.BatchNormalization` that trains on images with the fused kernel."""

        def call(self, inputs, training=None, mask=None):
            fused = (training and self.trainable and mask is None and not self.renorm
                     and not self.synchronized and len(inputs.shape) == 4
                     and self.axis in (-1, 3) and self.scale and self.center
                     and inputs.dtype == tf.float32)
            if not fused:
                return super().call(inputs, training=training, mask=mask)
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma.value, self.beta.value, epsilon=self.epsilon,
                data_format="NHWC", is_training=True)
            # The kernel returns the unbiased variance (divided by n - 1); Keras' moving
            # average takes the biased one, which the normalisation also used.
            count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
            variance = variance * (count - 1.0) / count
            self.moving_mean.assign(self.moving_mean * self.momentum
                                    + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum
                                        + variance * (1.0 - self.momentum))
            return outputs

        def _moments(self, inputs, mask):
            context = tf.distribute.get_replica_context()
            if (not self.synchronized or mask is not None or context is None
                    or context.num_replicas_in_sync == 1):
                return super()._moments(inputs, mask)
            axes = self._reduction_axes
            shift = tf.stop_gradient(tf.cast(self.moving_mean, inputs.dtype))  # (channels,)
            shifted = inputs - shift
            count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(inputs), axes)), inputs.dtype)
            totals = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.concat(
                [tf.reduce_sum(shifted, axis=axes), tf.reduce_sum(tf.square(shifted), axis=axes),
                 count[tf.newaxis]], 0))  # (2 channels + 1,) over the global batch
            channels = shift.shape[0]
            mean = totals[:channels] / totals[-1]  # of x - c
            variance = tf.maximum(totals[channels:-1] / totals[-1] - tf.square(mean), 0.0)
            return mean + shift, variance

    return BatchNormalization


@functools.cache
def replica_dropout() -> type:
    """The dropout layer class for networks trained under a strategy (built on first use)."""

    # Named as Keras' class, as the batch-norm layer above is.
    class Dropout(keras.layers.Dropout):
        """`keras.layers.Dropout` whose replicas apply their rows of the global batch's mask
        (the slices `training.distribute.replica_slice` gives them)."""

        # True where the one-process loop is XLA-compiled (the MLP's): XLA draws other
        # random numbers from the same seed, so the replicas draw theirs compiled too.
        xla = False

        def call(self, inputs, training=False):
            context = tf.distribute.get_replica_context()
            if (not training or not 0 < self.rate < 1 or context is None
                    or context.num_replicas_in_sync == 1):
                return super().call(inputs, training=training)
            if self.noise_shape is not None:
                raise NotImplementedError("dropout with a noise shape under a strategy")
            global_size = tf.shape(inputs)[0] * context.num_replicas_in_sync
            shape = tf.concat([[global_size], tf.shape(inputs)[1:]], 0)
            # The seed Keras' layer draws, cast as Keras casts it for TensorFlow's
            # stateless ops (keras/src/backend/tensorflow/random.py).
            seed = self.seed_generator.next()
            if seed.dtype != tf.int32:
                seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
            # TensorFlow's dropout, as Keras calls it, on ones of the global batch's shape:
            # each kept entry is the scale 1 / (1 - rate), each dropped one 0.
            kept = self._global_draw()(tf.ones(shape, inputs.dtype), seed)
            first, stop = replica_slice(global_size)
            keep = tf.not_equal(kept[first:stop], 0.0)
            # As TensorFlow's dropout computes it: the input times the scale where kept.
            scaled = inputs * tf.constant(1 / (1 - self.rate), inputs.dtype)
            return tf.where(keep, scaled, tf.zeros((), inputs.dtype))

        def _global_draw(self):
            if not hasattr(self, "_draw"):
                self._draw = tf.function(
                    lambda ones, seed: tf.nn.experimental.stateless_dropout(
                        ones, rate=self.rate, seed=seed), jit_compile=self.xla)
            return self._draw

    return Dropout
