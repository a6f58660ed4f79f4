"""`mmjsd_svhn` family: the SVHN networks of mmJSD's authors (thomassutter/mmjsd,
networks/ConvNetworksImgSVHN.py) for 32x32xC images.

Encoder: Conv 4x4 s2 32, 64, 64 ReLU (their padding 1 = 'same' at these sizes) -> Conv 4x4
valid 128 ReLU (a 4x4 map: flatten + Dense, as in `svhn_conv`) -> Dense out (their mu/logvar
heads as one layer). Decoder: Dense 128 ReLU -> (1, 1, 128) -> ConvT 4x4 valid 64 ReLU ->
ConvT 4x4 s2 same 64, 32 ReLU -> ConvT C. Their decoder output is the Laplace mean itself,
with no sigmoid: `BOUNDED_OUTPUT = False` keeps it linear (`build_decoder`) and unclamped (the
likelihood). mmALI critics on this family are the `svhn_conv` ones.
"""

from __future__ import annotations

import keras

from mmali_tf.networks.conv import (critic_head_widths, critic_x_features,  # noqa: F401
                                    critic_z_widths, joint_branch)
from mmali_tf.networks.init import conv2d, conv2d_transpose, dense
from mmali_tf.registry import register_network_family

register_network_family("mmjsd_svhn")

SIZE = 32
ENCODER_CHANNELS = (32, 64, 64)
FEATURES = 128
DECODER_CHANNELS = (64, 32)
BOUNDED_OUTPUT = False


def check_spec(spec) -> None:
    """The stack maps 32x32 to 1x1, so images must be (32, 32, C)."""
    if len(spec.shape) != 3 or spec.shape[:2] != (SIZE, SIZE):
        raise ValueError(f"modality {spec.name!r}: network 'mmjsd_svhn' needs shape "
                         f"({SIZE}, {SIZE}, C), got {spec.shape}")


def encoder(x, out_dim: int, init: str):
    """3 x (Conv 4x4 s2 same ReLU: 32, 64, 64) -> Conv 4x4 valid 128 ReLU -> Dense out_dim."""
    h = x
    for filters in ENCODER_CHANNELS:
        h = conv2d(h, filters, 4, 2, "same", init, "relu")
    h = dense(keras.layers.Flatten()(h), FEATURES, init, "relu")
    return dense(h, out_dim, init)


def decoder(z, shape: tuple[int, ...], init: str):
    """Dense 128 ReLU -> ConvT 4x4 valid 64 ReLU -> ConvT 4x4 s2 same 64, 32 ReLU -> C."""
    h = keras.layers.Reshape((1, 1, FEATURES))(dense(z, FEATURES, init, "relu"))
    h = conv2d_transpose(h, DECODER_CHANNELS[0], 4, 1, "valid", init, "relu")
    for filters in DECODER_CHANNELS:
        h = conv2d_transpose(h, filters, 4, 2, "same", init, "relu")
    return conv2d_transpose(h, shape[-1], 4, 2, "same", init)
