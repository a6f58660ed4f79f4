"""`text_conv` family: mmJSD's text networks (thomassutter/mmjsd,
networks/ConvNetworksTextMNIST.py, `FeatureEncText`, `EncoderText`, `DecoderText`) for text
modalities (8, A): 8 characters one-hot over an alphabet of A.

The authors' Conv1d layers run on (batch, channels, length); here on (batch, length,
channels). Their padding 1 with kernel 4 and stride 2 is 'same' at these lengths (8 -> 4, and
4 -> 8 transposed), padding 0 is 'valid'. Encoder: Conv1d k1 2*DIM ReLU -> Conv1d k4 s2 same
2*DIM ReLU -> Conv1d k4 s2 valid 2*DIM ReLU (length 1) -> Dense out (their mu/logvar heads as
one layer). Decoder: Dense 2*DIM (no activation, as theirs) -> (1, 2*DIM) -> ConvT k4 valid
ReLU -> ConvT k4 s2 same ReLU -> Conv1d k1 A: logits per position (their LogSoftmax over the
alphabet is the softmax `build_decoder` adds for the categorical likelihood, or, as their
`OneHotCategorical` reads it, `logsoftmax_ratio` for `categorical_logratio`).

mmALI critic on text (ours: the paper has no text modality): the critic x-features are a
per-position SN-Dense 2*DIM LReLU (a k1 convolution, as the encoder starts) -> flatten ->
SN-Dense 256 LReLU; z-branch 256, 256 and head 512, 512 like the SVHN critic's widths halved.
"""

from __future__ import annotations

import keras

from mmali_tf.networks.init import conv1d, conv1d_transpose, dense
from mmali_tf.networks.spectral_norm import critic_dense
from mmali_tf.registry import register_network_family

register_network_family("text_conv")

LENGTH = 8
DIM = 64                        # the authors' --dim
CRITIC_FEATURES = 256


def check_spec(spec) -> None:
    """The stack maps 8 positions to 1, so text must be (8, A)."""
    if spec.kind != "text" or len(spec.shape) != 2 or spec.shape[0] != LENGTH:
        raise ValueError(f"modality {spec.name!r}: network 'text_conv' needs a text modality "
                         f"of shape ({LENGTH}, A), got {spec.kind} {spec.shape}")


def encoder(x, out_dim: int, init: str):
    """Conv1d k1, k4 s2 same, k4 s2 valid (2*DIM each, ReLU) -> Dense out_dim."""
    h = conv1d(x, 2 * DIM, 1, 1, "valid", init, "relu")
    h = conv1d(h, 2 * DIM, 4, 2, "same", init, "relu")
    h = conv1d(h, 2 * DIM, 4, 2, "valid", init, "relu")
    return dense(keras.layers.Flatten()(h), out_dim, init)


def decoder(z, shape: tuple[int, ...], init: str):
    """Dense 2*DIM -> ConvT k4 valid, k4 s2 same (2*DIM, ReLU) -> Conv1d k1 A logits."""
    h = keras.layers.Reshape((1, 2 * DIM))(dense(z, 2 * DIM, init))
    h = conv1d_transpose(h, 2 * DIM, 4, 1, "valid", init, "relu")
    h = conv1d_transpose(h, 2 * DIM, 4, 2, "same", init, "relu")
    return conv1d(h, shape[-1], 1, 1, "valid", init)


def critic_x_features(x, spectral_norm: bool):
    """Per-position SN-Dense 2*DIM LReLU -> flatten -> SN-Dense 256 LReLU."""
    h = critic_dense(x, 2 * DIM, spectral_norm)
    return critic_dense(keras.layers.Flatten()(h), CRITIC_FEATURES, spectral_norm)


def critic_z_widths(spec) -> tuple[int, ...]:
    return (CRITIC_FEATURES, CRITIC_FEATURES)


def critic_head_widths(spec) -> tuple[int, ...]:
    return (512, 512)


joint_branch = critic_x_features
