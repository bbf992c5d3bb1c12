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


def affine_transforms(batch_size: tf.Tensor, seed: tf.Tensor, *, max_shift: float,
                      max_rotation: float, max_zoom: float,
                      image_shape: tuple[int, int] = (28, 28)) -> tf.Tensor:
    """Random projective-transform rows, float32 (batch, 8), from a stateless seed pair.

    `max_shift` is in pixels, `max_rotation` in degrees, `max_zoom` a fraction (0.1 draws
    scales in [0.9, 1.1]). A row `[a0, a1, a2, b0, b1, b2, 0, 0]` maps an output pixel (x, y)
    to the input point (a0 x + a1 y + a2, b0 x + b1 y + b2), as the op expects. Rotations
    and zooms turn about the centre of an image of `image_shape` (height, width).
    """
    center_y, center_x = (image_shape[0] - 1) / 2.0, (image_shape[1] - 1) / 2.0
    uniform = tf.random.stateless_uniform([batch_size, 4], seed=seed, minval=-1.0, maxval=1.0)
    angle = uniform[:, 0] * (max_rotation * math.pi / 180.0)  # (batch,)
    scale = 1.0 + uniform[:, 1] * max_zoom  # (batch,): > 1 enlarges the digit
    shift_x = uniform[:, 2] * max_shift
    shift_y = uniform[:, 3] * max_shift
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1, b0, b1 = cos, sin, -sin, cos
    a2 = center_x - a0 * center_x - a1 * center_y - shift_x
    b2 = center_y - b0 * center_x - b1 * center_y - shift_y
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment_images(images: tf.Tensor, seed: tf.Tensor, *, max_shift: float,
                   max_rotation: float, max_zoom: float, global_batch: int | None = None,
                   offset: tf.Tensor | int = 0) -> tf.Tensor:
    """Warp float images (batch, height, width, 1) by one random affine transform each.

    `seed` is an int32 or int64 pair, e.g. `(run seed, step)`. When the images are a slice
    of a larger batch (one replica's share), `global_batch` and `offset` say which: the
    transforms are drawn for the whole batch and sliced, so every image gets the transform
    it would get in one process.
    """
    height, width = int(images.shape[1]), int(images.shape[2])
    rows = tf.shape(images)[0]
    transforms = affine_transforms(rows if global_batch is None else global_batch, seed,
                                   max_shift=max_shift, max_rotation=max_rotation,
                                   max_zoom=max_zoom, image_shape=(height, width))
    if global_batch is not None:
        transforms = transforms[offset:offset + rows]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms,
        output_shape=tf.constant([height, width], tf.int32),
        fill_value=tf.constant(0.0, tf.float32), interpolation="BILINEAR",
        fill_mode="CONSTANT")
