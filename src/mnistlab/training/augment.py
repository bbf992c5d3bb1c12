"""Seeded on-the-fly augmentation: one random affine transform per image.

Each image of a batch is rotated, zoomed and shifted by its own random amounts, drawn with
`tf.random.stateless_uniform` from the seed pair `(seed, step)`. The same seed and step give
the same transforms, so a training run repeats bit for bit, and every step gets fresh ones.
The warp itself is one `ImageProjectiveTransformV3` op for the whole batch (bilinear, zero
fill), which costs little beside a convolution.

Elastic distortion (Simard, Steinkraus and Platt 2003, "Best practices for convolutional
neural networks applied to visual document analysis") adds to each image a smooth random
displacement field: uniform noise in [-1, 1] per pixel and axis, smoothed by a Gaussian of
`elastic_sigma` pixels and scaled by `elastic` (Simard: sigma 4, alpha 34). The field moves
the output pixel before the affine transform maps it into the input, so the image is
resampled once (bilinear, zero fill, the op's own conventions) by gathering, in
`warp_images`.
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


def displacement_fields(batch_size: tf.Tensor, seed: tf.Tensor, *, alpha: float,
                        sigma: float, image_shape: tuple[int, int] = (28, 28)) -> tf.Tensor:
    """Smooth random displacements (batch, height, width, 2) in pixels, (dx, dy) per pixel:
    uniform noise in [-1, 1] convolved with a Gaussian of `sigma` pixels (zero beyond the
    edges) and multiplied by `alpha`. Drawn from the seed pair folded with 1, so they do
    not repeat the affine transforms' numbers."""
    noise = tf.random.stateless_uniform([batch_size, *image_shape, 2],
                                        seed=tf.random.experimental.stateless_fold_in(seed, 1),
                                        minval=-1.0, maxval=1.0)
    radius = max(1, math.ceil(3.0 * sigma))
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(taps / sigma))
    kernel = kernel / tf.reduce_sum(kernel)  # (2 radius + 1,)
    down = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, 2, 1])  # along height
    across = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, 2, 1])  # along width
    smooth = tf.nn.depthwise_conv2d(noise, down, [1, 1, 1, 1], "SAME")
    smooth = tf.nn.depthwise_conv2d(smooth, across, [1, 1, 1, 1], "SAME")
    return alpha * smooth


def warp_images(images: tf.Tensor, transforms: tf.Tensor,
                displacements: tf.Tensor | None = None) -> tf.Tensor:
    """Resample float images (batch, height, width, 1): output pixel (x, y), moved by its
    displacement (dx, dy) when given, is mapped by its image's transform row into the input
    and read there bilinearly, zero outside. Without displacements this is
    `ImageProjectiveTransformV3` (affine rows, bilinear, constant 0) to rounding."""
    height, width = int(images.shape[1]), int(images.shape[2])
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32),
                         tf.range(width, dtype=tf.float32), indexing="ij")  # (H, W)
    x, y = xs[tf.newaxis], ys[tf.newaxis]  # (1, H, W)
    if displacements is not None:
        x, y = x + displacements[..., 0], y + displacements[..., 1]  # (batch, H, W)
    row = transforms[:, :, tf.newaxis, tf.newaxis]  # (batch, 8, 1, 1)
    source_x = row[:, 0] * x + row[:, 1] * y + row[:, 2]  # (batch, H, W)
    source_y = row[:, 3] * x + row[:, 4] * y + row[:, 5]
    left, top = tf.floor(source_x), tf.floor(source_y)
    flat = tf.reshape(images, [tf.shape(images)[0], height * width])
    result = tf.zeros_like(source_x)
    for corner_y, weight_y in ((top, 1.0 - (source_y - top)), (top + 1.0, source_y - top)):
        for corner_x, weight_x in ((left, 1.0 - (source_x - left)),
                                   (left + 1.0, source_x - left)):
            inside = ((corner_x >= 0.0) & (corner_x <= width - 1.0)
                      & (corner_y >= 0.0) & (corner_y <= height - 1.0))
            index = tf.cast(tf.clip_by_value(corner_y, 0.0, height - 1.0) * width
                            + tf.clip_by_value(corner_x, 0.0, width - 1.0), tf.int32)
            values = tf.gather(flat, tf.reshape(index, [tf.shape(index)[0], -1]), batch_dims=1)
            result += (weight_x * weight_y * tf.cast(inside, tf.float32)
                       * tf.reshape(values, tf.shape(index)))
    return result[..., tf.newaxis]


def augment_images(images: tf.Tensor, seed: tf.Tensor, *, max_shift: float,
                   max_rotation: float, max_zoom: float, elastic: float = 0.0,
                   elastic_sigma: float = 4.0, global_batch: int | None = None,
                   offset: tf.Tensor | int = 0) -> tf.Tensor:
    """Warp float images (batch, height, width, 1) by one random affine transform each,
    after an elastic displacement of strength `elastic` pixels (0: none).

    `seed` is an int32 or int64 pair, e.g. `(run seed, step)`. When the images are a slice
    of a larger batch (one replica's share), `global_batch` and `offset` say which: the
    transforms are drawn for the whole batch and sliced, so every image gets the transform
    it would get in one process.
    """
    height, width = int(images.shape[1]), int(images.shape[2])
    rows = tf.shape(images)[0]
    drawn = rows if global_batch is None else global_batch
    transforms = affine_transforms(drawn, seed, max_shift=max_shift, max_rotation=max_rotation,
                                   max_zoom=max_zoom, image_shape=(height, width))
    if global_batch is not None:
        transforms = transforms[offset:offset + rows]
    if elastic:
        displacements = displacement_fields(drawn, seed, alpha=elastic, sigma=elastic_sigma,
                                            image_shape=(height, width))
        if global_batch is not None:
            displacements = displacements[offset:offset + rows]
        return warp_images(images, transforms, displacements)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms,
        output_shape=tf.constant([height, width], tf.int32),
        fill_value=tf.constant(0.0, tf.float32), interpolation="BILINEAR",
        fill_mode="CONSTANT")
