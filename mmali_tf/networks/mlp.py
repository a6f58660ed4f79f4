"""`mnist_mlp` family: the MNIST MLPs of 6b5d/mmali models/mnist.py and iffsid/mmvae src/models/vae_mnist.py (any input shape).

Every family module exposes the same tensor-level pieces, assembled into Keras models by
`mmali_tf.networks`: `check_spec`, `encoder`, `decoder` (pre-output-activation), and for the
critics `critic_x_features`, `critic_z_widths`, `critic_head_widths`, `joint_branch`.
"""

from __future__ import annotations

import math

import keras

from mmali_tf.networks.init import dense
from mmali_tf.networks.spectral_norm import critic_mlp
from mmali_tf.registry import register_network_family

register_network_family("mnist_mlp")

HIDDEN = 400
BRANCH_WIDTHS = (400, 256)


def check_spec(spec) -> None:
    """Any shape works: inputs are flattened, decoder outputs reshaped to `spec.shape`."""


def encoder(x, out_dim: int, init: str):
    """flatten -> Dense 400 ReLU -> Dense out_dim."""
    h = dense(keras.layers.Flatten()(x), HIDDEN, init, "relu")
    return dense(h, out_dim, init)


def decoder(z, shape: tuple[int, ...], init: str):
    """Dense 400 ReLU -> Dense prod(shape) -> reshape (output activation added by the caller)."""
    h = dense(z, HIDDEN, init, "relu")
    return keras.layers.Reshape(shape)(dense(h, math.prod(shape), init))


def critic_x_features(x, spectral_norm: bool):
    """The x-z critic concatenates the raw flattened x with z."""
    return keras.layers.Flatten()(x)


def critic_z_widths(spec) -> tuple[int, ...]:
    return ()


def critic_head_widths(spec) -> tuple[int, ...]:
    return (HIDDEN,)


def joint_branch(x, spectral_norm: bool):
    """flatten -> SN-Dense 400 LReLU -> SN-Dense 256 LReLU (joint critics: 6b5d/mmali models/mnist_svhn.py, models/mmali/joint.py)."""
    return critic_mlp(keras.layers.Flatten()(x), BRANCH_WIDTHS, spectral_norm)
