"""`mmvaeplus_resnet` family: the PolyMNIST ResNets of MMVAE+ (epalu/mmvaeplus
`src/models/vae_polymnist.py`: `ResnetBlock`, `Enc`, `Dec`).

Residual block (fin -> fout, hidden min(fin, fout)): out = s(x) + 0.1 conv_1(a(conv_0(a(x)))),
3x3 convolutions (padding 1) with biases, a = LeakyReLU(0.2), s = a bias-free 1x1 convolution
when fin != fout, else the identity.
Encoder: one trunk per latent part (the modality-specific style w, then the shared content z;
`style_dim` gives the layout, 0: content only): Conv 3x3 (C -> 64), block(64, 64), then twice
AvgPool 3x3 stride 2 with torch's padding 1 counted in the average (explicit zero padding, then
'valid': 28 -> 14 -> 7) and block(64 -> 128), block(128 -> 256); flatten the 7x7x256 map and
two linear heads per part (mean, scale logits). Output [mean_w, mean_z | h_w, h_z], the
`[mean | scale]` layout of a VAE whose latent is [w | z] (MMVAE+ turns each part's h into its
softmax scales). Decoder: Dense(7 * 7 * 256) -> (7, 7, 256), block(256 -> 128), 2x nearest
upsampling, block(128 -> 64), upsampling, block(64, 64), LeakyReLU, Conv 3x3 (64 -> C): a
*linear* output, the authors' Laplace mean (`BOUNDED_OUTPUT = False`). The authors' channel
caps (encoder 1024, decoder 512) do not bind at 28x28. Critics (mmALI) use the `mnist_mlp`
pieces.
"""

from __future__ import annotations

import keras

from mmali_tf.networks.init import conv2d, dense, initializers
from mmali_tf.networks.mlp import (critic_head_widths, critic_x_features,  # noqa: F401
                                   critic_z_widths, joint_branch)
from mmali_tf.registry import register_network_family

register_network_family("mmvaeplus_resnet")

SIZE = 28
#: the authors' nf * 2^i, i = 0, 1, 2 (nf = 64): channels at 28x28, 14x14, 7x7
CHANNELS = (64, 128, 256)
#: side of the smallest feature map (their s0)
S0 = 7
SLOPE = 0.2
RESIDUAL_SCALE = 0.1
#: decoder output before the likelihood: no sigmoid
BOUNDED_OUTPUT = False
#: the encoder reads the latent layout (`build_encoder(..., style_dim=)`)
SPLIT_LATENT = True


def check_spec(spec) -> None:
    """The trunks map 28x28 to 7x7 and back, so images must be (28, 28, C)."""
    if len(spec.shape) != 3 or spec.shape[:2] != (SIZE, SIZE):
        raise ValueError(f"modality {spec.name!r}: network 'mmvaeplus_resnet' needs shape "
                         f"({SIZE}, {SIZE}, C), got {spec.shape}")


def _act(h):
    return keras.layers.LeakyReLU(negative_slope=SLOPE)(h)


def resnet_block(x, fout: int, init: str):
    """The authors' `ResnetBlock(fin, fout)` (conv_0, conv_1, then the shortcut conv_s)."""
    fin = int(x.shape[-1])
    dx = conv2d(_act(x), min(fin, fout), 3, 1, "same", init)
    dx = conv2d(_act(dx), fout, 3, 1, "same", init)
    shortcut = x
    if fin != fout:
        shortcut = keras.layers.Conv2D(fout, 1, use_bias=False, **initializers(init, fin))(x)
    return keras.layers.Add()([shortcut, keras.layers.Rescaling(RESIDUAL_SCALE)(dx)])


def _trunk_features(x, init: str):
    """Conv, block, then (avg-pool, block) per resolution: the flattened 7x7 features."""
    h = resnet_block(conv2d(x, CHANNELS[0], 3, 1, "same", init), CHANNELS[0], init)
    for filters in CHANNELS[1:]:
        h = keras.layers.AveragePooling2D(3, 2, "valid")(keras.layers.ZeroPadding2D(1)(h))
        h = resnet_block(h, filters, init)
    return keras.layers.Flatten()(h)


def _branch(shape, dim: int, init: str, name: str) -> keras.Model:
    """One trunk and its (mean, scale logits) heads, as one nested model (their `*_w` or
    `*_z` modules, in registration order)."""
    x = keras.Input(shape)
    features = _trunk_features(x, init)
    return keras.Model(x, [dense(features, dim, init), dense(features, dim, init)], name=name)


def encoder(x, out_dim: int, init: str, style_dim: int = 0):
    """[mean_w, mean_z | h_w, h_z] from one trunk per latent part (w: `style_dim` entries)."""
    if out_dim % 2:
        raise ValueError(f"network 'mmvaeplus_resnet' gives [mean | scale] pairs: out_dim must "
                         f"be even, got {out_dim}")
    latent = out_dim // 2
    if not 0 <= style_dim < latent:
        raise ValueError(f"network 'mmvaeplus_resnet': style_dim must be in [0, {latent}), "
                         f"got {style_dim}")
    parts = [("style", style_dim)] if style_dim else []
    parts.append(("content", latent - style_dim))
    heads = [_branch(tuple(x.shape[1:]), dim, init, f"{part}_trunk")(x) for part, dim in parts]
    return keras.layers.Concatenate()([h[0] for h in heads] + [h[1] for h in heads])


def decoder(z, shape: tuple[int, ...], init: str):
    """Dense -> (7, 7, 256) -> blocks with 2x upsampling -> LeakyReLU -> Conv 3x3 (linear)."""
    h = keras.layers.Reshape((S0, S0, CHANNELS[-1]))(dense(z, S0 * S0 * CHANNELS[-1], init))
    for filters in CHANNELS[-2::-1]:
        h = keras.layers.UpSampling2D(2, interpolation="nearest")(resnet_block(h, filters, init))
    h = resnet_block(h, CHANNELS[0], init)
    return conv2d(_act(h), shape[-1], 3, 1, "same", init)
