"""Seeded on-the-fly augmentation: one random affine transform per image.

Each image of a batch is rotated, zoomed and shifted by its own random amounts, drawn with
`tf.random.stateless_uniform` from the seed pair `(seed, step)`. The same seed and step give
the same transforms, so a training run repeats bit for bit, and every step gets fresh ones.
The warp itself is one `ImageProjectiveTransformV3` op for the whole batch (bilinear, zero
fill), which costs little beside a convolution.
"""

from __future__ import annotations

import math

import tensorflow as tf

IMAGE_SIZE = 28
# The centre of a 28-pixel image in pixel coordinates: rotations and zooms turn about it.
CENTER = (IMAGE_SIZE - 1) / 2.0


def affine_transforms(batch_size: tf.Tensor, seed: tf.Tensor, *, max_shift: float,
                      max_rotation: float, max_zoom: float) -> tf.Tensor:
    """Random projective-transform rows, float32 (batch, 8), from a stateless seed pair.

    `max_shift` is in pixels, `max_rotation` in degrees, `max_zoom` a fraction (0.1 draws
    scales in [0.9, 1.1]). A row `[a0, a1, a2, b0, b1, b2, 0, 0]` maps an output pixel (x, y)
    to the input point (a0 x + a1 y + a2, b0 x + b1 y + b2), as the op expects.
    """
    uniform = tf.random.stateless_uniform([batch_size, 4], seed=seed, minval=-1.0, maxval=1.0)
    angle = uniform[:, 0] * (max_rotation * math.pi / 180.0)  # (batch,)
    scale = 1.0 + uniform[:, 1] * max_zoom  # (batch,): > 1 enlarges the digit
    shift_x = uniform[:, 2] * max_shift
    shift_y = uniform[:, 3] * max_shift
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1, b0, b1 = cos, sin, -sin, cos
    a2 = CENTER - a0 * CENTER - a1 * CENTER - shift_x
    b2 = CENTER - b0 * CENTER - b1 * CENTER - shift_y
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment_images(images: tf.Tensor, seed: tf.Tensor, *, max_shift: float,
                   max_rotation: float, max_zoom: float) -> tf.Tensor:
    """Warp float images (batch, 28, 28, 1) by one random affine transform each.

    `seed` is an int32 or int64 pair, e.g. `(run seed, step)`.
    """
    transforms = affine_transforms(tf.shape(images)[0], seed, max_shift=max_shift,
                                   max_rotation=max_rotation, max_zoom=max_zoom)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms,
        output_shape=tf.constant([IMAGE_SIZE, IMAGE_SIZE], tf.int32),
        fill_value=tf.constant(0.0, tf.float32), interpolation="BILINEAR",
        fill_mode="CONSTANT")
