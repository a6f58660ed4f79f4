"""`feature_mlp` family: the CUB feature MLPs of 6b5d/mmali models/cub_image.py, cub_caption.py and iffsid/mmvae src/models/vae_cub_image_ft.py.

Widths follow the input size D: encoder D -> D/2 -> D/4 -> D/8 (ELU) -> out, decoder the
mirror with a linear output; critic x-branch D/2, D/4, D/8, D/8 and z-branch D/8, D/8 (LReLU),
head 512. D = 1024 gives the caption nets and D = 2048 the image nets.
"""

from __future__ import annotations

import keras

from mmali_tf.networks.init import dense
from mmali_tf.networks.spectral_norm import critic_mlp
from mmali_tf.registry import register_network_family

register_network_family("feature_mlp")

MIN_SIZE = 8
HEAD_WIDTH = 512


def check_spec(spec) -> None:
    if len(spec.shape) != 1 or spec.shape[0] < MIN_SIZE:
        raise ValueError(f"modality {spec.name!r}: network 'feature_mlp' needs a vector shape "
                         f"(D,) with D >= {MIN_SIZE}, got {spec.shape}")


def _widths(size: int) -> tuple[int, int, int]:
    return size // 2, size // 4, size // 8


def encoder(x, out_dim: int, init: str):
    """D -> D/2 -> D/4 -> D/8 (ELU each) -> out_dim."""
    h = x
    for units in _widths(int(x.shape[-1])):
        h = dense(h, units, init, "elu")
    return dense(h, out_dim, init)


def decoder(z, shape: tuple[int, ...], init: str):
    """d -> D/8 -> D/4 -> D/2 (ELU each) -> D (linear)."""
    h = z
    for units in _widths(shape[0])[::-1]:
        h = dense(h, units, init, "elu")
    return dense(h, shape[0], init)


def critic_x_features(x, spectral_norm: bool):
    """SN-Dense D/2, D/4, D/8, D/8, each followed by LReLU(0.2)."""
    widths = _widths(int(x.shape[-1]))
    return critic_mlp(x, widths + widths[-1:], spectral_norm)


def critic_z_widths(spec) -> tuple[int, ...]:
    return (spec.shape[0] // 8,) * 2


def critic_head_widths(spec) -> tuple[int, ...]:
    return (HEAD_WIDTH,)


joint_branch = critic_x_features
