"""Online augmentation of image modalities in the training stream: small random affine maps.

Each training image gets its own rotation (within +-MAX_ROTATION_DEG), isotropic scale (within
1 +- MAX_SCALE_CHANGE) and shift (within +-MAX_SHIFT of its side) about the image centre, with
bilinear sampling and zero fill. The draws are stateless in (seed, global batch index), so the
stream stays deterministic and resumes exactly.
"""

from __future__ import annotations

import math

import tensorflow as tf

MAX_ROTATION_DEG = 10.0
MAX_SCALE_CHANGE = 0.1
MAX_SHIFT = 0.07


def affine_transforms(height: int, width: int, angle: tf.Tensor, scale: tf.Tensor,
                      shift: tf.Tensor) -> tf.Tensor:
    """(N, 8) projective transforms (output -> input pixel maps, as ImageProjectiveTransformV3
    reads them) rotating by `angle` radians, scaling by `scale` and shifting by `shift` (N, 2)
    pixels (x, y) about the image centre."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    ox, oy = cx + shift[:, 0], cy + shift[:, 1]
    zeros = tf.zeros_like(cos)
    return tf.stack([cos, sin, cx - cos * ox - sin * oy,
                     -sin, cos, cy + sin * ox - cos * oy, zeros, zeros], axis=1)


def random_affine(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """float32 (N, H, W, C) images, each under its own small random affine map drawn from the
    stateless `seed` (shape (2,), int)."""
    n, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    draws = tf.random.stateless_uniform(tf.stack([n, 4]), seed, minval=-1.0, maxval=1.0)
    angle = draws[:, 0] * (MAX_ROTATION_DEG * math.pi / 180.0)
    scale = 1.0 + draws[:, 1] * MAX_SCALE_CHANGE
    shift = draws[:, 2:] * tf.constant([MAX_SHIFT * width, MAX_SHIFT * height])
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=affine_transforms(height, width, angle, scale, shift),
        output_shape=tf.constant([height, width], tf.int32), fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")
