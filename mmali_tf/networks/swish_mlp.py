"""`swish_mlp` family: MVAE's image networks (Wu & Goodman 2018; mhw32/multimodal-vae-public,
mnist/model.py `ImageEncoder` / `ImageDecoder`), for any input shape.

Encoder: flatten -> Dense 512 Swish -> Dense 512 Swish -> Dense out (the authors' two heads
fc31/fc32 are one layer here). Decoder: Dense 512 Swish x3 -> Dense prod(shape) -> reshape;
their decoder ends in logits, so pair this family with a `bernoulli_logits` likelihood to
train as they do. mmALI critics on this family are the `mnist_mlp` ones (MVAE has none).
"""

from __future__ import annotations

import math

import keras

from mmali_tf.networks.init import dense
from mmali_tf.networks.mlp import (critic_head_widths, critic_x_features,  # noqa: F401
                                   critic_z_widths, joint_branch)
from mmali_tf.registry import register_network_family

register_network_family("swish_mlp")

HIDDEN = 512
ENCODER_LAYERS = 2
DECODER_LAYERS = 3


def check_spec(spec) -> None:
    """Any shape works: inputs are flattened, decoder outputs reshaped to `spec.shape`."""


def hidden(h, layers: int, init: str):
    """`layers` Dense 512 layers with Swish (x * sigmoid(x))."""
    for _ in range(layers):
        h = dense(h, HIDDEN, init, "silu")
    return h


def encoder(x, out_dim: int, init: str):
    """flatten -> (Dense 512 Swish) x2 -> Dense out_dim."""
    return dense(hidden(keras.layers.Flatten()(x), ENCODER_LAYERS, init), out_dim, init)


def decoder(z, shape: tuple[int, ...], init: str):
    """(Dense 512 Swish) x3 -> Dense prod(shape) -> reshape (output activation by the caller)."""
    out = dense(hidden(z, DECODER_LAYERS, init), math.prod(shape), init)
    return keras.layers.Reshape(shape)(out)
