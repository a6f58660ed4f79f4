"""`polymnist_conv` family: the PolyMNIST convnets of MoPoE (thomassutter/MoPoE
`mmnist/networks/ConvNetworksImgCMNIST.py`, also the mmJSD/MVAE/MMVAE baselines of that paper).

Encoder: three 3x3 stride-2 convolutions with torch's padding 1 (explicit zero padding, then
'valid': Keras' 'same' would pad 28 -> 14 asymmetrically), 32, 64, 128 channels, ReLU
(28 -> 14 -> 7 -> 4), flatten, Dense(latent) ReLU (the authors' Linear(2048, style + class)),
then the raw [mean | scale] head. Decoder: Dense 2048 ReLU -> (4, 4, 128) -> three 3x3
stride-2 transposed convolutions (64, 32, C) cropped as torch's padding 1 / output_padding
crop them (4 -> 7 -> 14 -> 28), ReLU between, and a *linear* output: the authors' Laplace
mean has no sigmoid (`BOUNDED_OUTPUT = False`, which `build_decoder` and the likelihood
read). Critics (mmALI) use the `mnist_mlp` pieces.
"""

from __future__ import annotations

import keras

from mmali_tf.networks.init import conv2d, conv2d_transpose, dense
from mmali_tf.networks.mlp import (critic_head_widths, critic_x_features,  # noqa: F401
                                   critic_z_widths, joint_branch)
from mmali_tf.registry import register_network_family

register_network_family("polymnist_conv")

SIZE = 28
CHANNELS = (32, 64, 128)
#: (top/left, bottom/right) crop of each 3x3 stride-2 transposed convolution's full output:
#: torch's padding 1 at the start and padding - output_padding (1 - 0, 1 - 1, 1 - 1) at the end
CROPS = ((1, 1), (1, 0), (1, 0))
#: decoder output before the likelihood: no sigmoid
BOUNDED_OUTPUT = False


def check_spec(spec) -> None:
    """The stack maps 28x28 to 4x4 and back, so images must be (28, 28, C)."""
    if len(spec.shape) != 3 or spec.shape[:2] != (SIZE, SIZE):
        raise ValueError(f"modality {spec.name!r}: network 'polymnist_conv' needs shape "
                         f"({SIZE}, {SIZE}, C), got {spec.shape}")


def encoder(x, out_dim: int, init: str):
    """3 x (pad 1, Conv 3x3 s2 valid, ReLU) -> flatten -> Dense(out_dim / 2) ReLU -> Dense."""
    h = x
    for filters in CHANNELS:
        h = conv2d(keras.layers.ZeroPadding2D(1)(h), filters, 3, 2, "valid", init, "relu")
    h = dense(keras.layers.Flatten()(h), out_dim // 2, init, "relu")
    return dense(h, out_dim, init)


def decoder(z, shape: tuple[int, ...], init: str):
    """Dense 2048 ReLU -> (4, 4, 128) -> ConvT 3x3 s2 64, 32 (ReLU), C, each cropped as torch."""
    h = dense(z, 4 * 4 * CHANNELS[-1], init, "relu")
    h = keras.layers.Reshape((4, 4, CHANNELS[-1]))(h)
    filters = list(CHANNELS[-2::-1]) + [shape[-1]]
    for i, (f, crop) in enumerate(zip(filters, CROPS)):
        last = i == len(filters) - 1
        h = conv2d_transpose(h, f, 3, 2, "valid", init, None if last else "relu")
        h = keras.layers.Cropping2D((crop, crop))(h)
    return h
