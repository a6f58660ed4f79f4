"""`svhn_conv` family: the SVHN convnets of 6b5d/mmali models/svhn.py and iffsid/mmvae src/models/vae_svhn.py (NHWC, 32x32xC).

Stride-2 4x4 convolutions with 'same' padding equal PyTorch's padding 1 at these sizes; the
4x4 stride-1 layers are 'valid' (4x4 <-> 1x1). A 4x4 'valid' convolution of a 4x4 map is
computed as flatten + Dense on the (4*4*C_in, C_out) kernel: the same function, parameters
and fan_in, but TF's CPU Conv2D backward pass for that shape is ~10x slower than a matmul.
"""

from __future__ import annotations

import keras

from mmali_tf.networks.init import conv2d, conv2d_transpose, dense
from mmali_tf.networks.spectral_norm import critic_conv2d, critic_dense
from mmali_tf.registry import register_network_family

register_network_family("svhn_conv")

SIZE = 32
CHANNELS = (32, 64, 128)
CRITIC_FEATURES = 256
HEAD_WIDTHS = (1024, 1024)


def check_spec(spec) -> None:
    """The stack maps 32x32 to 1x1, so images must be (32, 32, C)."""
    if len(spec.shape) != 3 or spec.shape[:2] != (SIZE, SIZE):
        raise ValueError(f"modality {spec.name!r}: network 'svhn_conv' needs shape "
                         f"({SIZE}, {SIZE}, C), got {spec.shape}")


def encoder(x, out_dim: int, init: str):
    """3 x (Conv 4x4 s2 same ReLU: 32, 64, 128) -> Conv 4x4 valid out_dim (as flatten + Dense)."""
    h = x
    for filters in CHANNELS:
        h = conv2d(h, filters, 4, 2, "same", init, "relu")
    return dense(keras.layers.Flatten()(h), out_dim, init)


def decoder(z, shape: tuple[int, ...], init: str):
    """(1,1,d) -> ConvT 4x4 valid 128 ReLU -> ConvT 4x4 s2 same 64, 32 ReLU -> C (linear)."""
    h = keras.layers.Reshape((1, 1, int(z.shape[-1])))(z)
    h = conv2d_transpose(h, CHANNELS[-1], 4, 1, "valid", init, "relu")
    for filters in CHANNELS[-2::-1]:
        h = conv2d_transpose(h, filters, 4, 2, "same", init, "relu")
    return conv2d_transpose(h, shape[-1], 4, 2, "same", init)


def critic_x_features(x, spectral_norm: bool):
    """SN-Conv 32, 64, 128 (4x4 s2 same) -> SN-Conv 256 (4x4 valid, as flatten + SN-Dense).

    LReLU(0.2) after each; SN of the Dense kernel equals SN of the reshaped conv kernel.
    """
    h = x
    for filters in CHANNELS:
        h = critic_conv2d(h, filters, 4, 2, "same", spectral_norm)
    return critic_dense(keras.layers.Flatten()(h), CRITIC_FEATURES, spectral_norm)


def critic_z_widths(spec) -> tuple[int, ...]:
    return (CRITIC_FEATURES, CRITIC_FEATURES)


def critic_head_widths(spec) -> tuple[int, ...]:
    return HEAD_WIDTHS


joint_branch = critic_x_features
