"""Encoders of modalities without a private style code: q(s|x) is the prior N(0, I)."""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="mmali_tf")
class PriorStyle(keras.layers.Layer):
    """Zeroes the style entries of an encoder's raw output, `[mean | logvar]` (`halves` = 2)
    or the deterministic code (`halves` = 1): mean 0 and log-variance 0 are the prior's, so
    the style a sample carries is independent of x and a decoder learns to ignore it."""

    def __init__(self, style_dim: int, latent_dim: int, halves: int, **kwargs):
        super().__init__(**kwargs)
        if not 0 < style_dim < latent_dim or halves not in (1, 2):
            raise ValueError(f"PriorStyle needs 0 < style_dim < latent_dim and halves 1 or 2, "
                             f"got style_dim={style_dim}, latent_dim={latent_dim}, "
                             f"halves={halves}")
        self.style_dim, self.latent_dim, self.halves = style_dim, latent_dim, halves
        half = np.r_[np.zeros(style_dim), np.ones(latent_dim - style_dim)]
        self.mask = np.tile(half, halves).astype("float32")

    def call(self, raw):
        return raw * keras.ops.convert_to_tensor(self.mask, dtype=raw.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "style_dim": self.style_dim,
                "latent_dim": self.latent_dim, "halves": self.halves}


def with_prior_style(encoder: keras.Model, style_dim: int, latent_dim: int,
                     halves: int) -> keras.Model:
    """`encoder` (same layers and weights) with its style output replaced by the prior's."""
    out = PriorStyle(style_dim, latent_dim, halves, name=f"{encoder.name}_prior_style")(
        encoder.outputs[0])
    return keras.Model(encoder.inputs, out, name=encoder.name)
