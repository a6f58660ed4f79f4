"""Critic assembly: x-z critics (A_k, B_k), joint x-x critics (J) and the joint x-z critic.

Every critic is a functional model of named sub-models, so callers can reuse expensive parts:
- `build_xz_critic`: `x_features` (x -> h_x) and `head` ([h_x, z] -> logits);
- `build_joint_critic`: `branch_<i>` (x_i -> f_i) and `combine` ([f_0..f_{M-1}] -> logit);
- `build_joint_xz_critic`: `branch_<i>` and `head` ([f_0..f_{M-1}, z] -> logits).
All Dense/Conv layers are spectrally normalised (unless `spectral_norm=False`), initialised
N(0, 0.02) with zero bias, and followed by LeakyReLU(0.2) except the output layer.
"""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Sequence

import keras

from mmali_tf import registry
from mmali_tf.networks.spectral_norm import critic_dense, critic_mlp

DOT_WIDTH = 256
JOINT_HEAD_WIDTHS = (1024, 1024)
FEATURE_JOINT_HEAD_WIDTHS = (512, 512)
JOINT_XZ_Z_WIDTHS = (400, 256)


def family(spec) -> ModuleType:
    """The network-family module of `spec.network` (a registered family), after checking that
    it fits `spec`."""
    if spec.network not in registry.names("network"):
        raise ValueError(f"modality {spec.name!r}: unknown network family {spec.network!r}; "
                         f"expected one of {registry.names('network')}")
    module = registry.load("network", spec.network)
    module.check_spec(spec)
    return module


def check_dim(what: str, value: int) -> int:
    """`value` as an int if it is a positive integer, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _logits(h, widths, out_dim: int, spectral_norm: bool):
    return critic_dense(critic_mlp(h, widths, spectral_norm), out_dim, spectral_norm,
                        activate=False)


def _feature_input(model: keras.Model, name: str):
    return keras.Input(tuple(model.output.shape[1:]), name=name)


def _branches(specs, spectral_norm: bool) -> list[keras.Model]:
    out = []
    for i, spec in enumerate(specs):
        x = keras.Input(spec.shape, name=f"x_{i}")
        out.append(keras.Model(x, family(spec).joint_branch(x, spectral_norm),
                               name=f"branch_{i}"))
    return out


def _check_specs(specs, minimum: int) -> list:
    specs = list(specs)
    if len(specs) < minimum:
        raise ValueError(f"a joint critic needs at least {minimum} modality specs, "
                         f"got {len(specs)}")
    return specs


def build_xz_critic(spec, latent_dim: int, out_dim: int, spectral_norm: bool = True,
                    name: str | None = None) -> keras.Model:
    """Critic of (x, z) pairs: inputs [x, z] -> logits (None, out_dim) (6b5d/mmali models/mnist.py, svhn.py, cub_image.py, cub_caption.py: the x-z discriminators).

    `critic([x, z]) == critic.get_layer("head")([critic.get_layer("x_features")(x), z])`.
    """
    module = family(spec)
    latent_dim = check_dim("latent_dim", latent_dim)
    out_dim = check_dim("out_dim", out_dim)
    x = keras.Input(spec.shape, name="x")
    x_features = keras.Model(x, module.critic_x_features(x, spectral_norm), name="x_features")
    h_x, z = _feature_input(x_features, "h_x"), keras.Input((latent_dim,), name="z")
    h = keras.layers.Concatenate()([h_x, critic_mlp(z, module.critic_z_widths(spec),
                                                    spectral_norm)])
    head = keras.Model([h_x, z], _logits(h, module.critic_head_widths(spec), out_dim,
                                         spectral_norm), name="head")
    x_in, z_in = keras.Input(spec.shape, name="x"), keras.Input((latent_dim,), name="z")
    return keras.Model([x_in, z_in], head([x_features(x_in), z_in]),
                       name=name or f"{spec.name}_xz_critic")


def build_joint_critic(specs: Sequence, spectral_norm: bool = True,
                       name: str | None = None) -> keras.Model:
    """Data-only critic J: inputs [x_0..x_{M-1}] -> logit (None, 1) (6b5d/mmali models/mnist_svhn.py: the joint data discriminator).

    Two feature modalities: concat head 512, 512 (CUB "FTFT"); other pairs: the bilinear "dot"
    critic (SN affine projections to 256 and their dot product); M > 2: concat head 1024, 1024.
    `critic(xs) == critic.get_layer("combine")([branch_i(x_i) ...])`.
    """
    specs = _check_specs(specs, 2)
    branches = _branches(specs, spectral_norm)
    feats = [_feature_input(b, f"f_{i}") for i, b in enumerate(branches)]
    if len(specs) == 2 and all(s.network == "feature_mlp" for s in specs):
        out = _logits(keras.layers.Concatenate()(feats), FEATURE_JOINT_HEAD_WIDTHS, 1,
                      spectral_norm)
    elif len(specs) == 2:
        proj = [critic_dense(f, DOT_WIDTH, spectral_norm, activate=False) for f in feats]
        out = keras.layers.Dot(axes=1)(proj)
    else:
        out = _logits(keras.layers.Concatenate()(feats), JOINT_HEAD_WIDTHS, 1, spectral_norm)
    combine = keras.Model(feats, out, name="combine")
    xs = [keras.Input(s.shape, name=f"x_{i}") for i, s in enumerate(specs)]
    return keras.Model(xs, combine([b(x) for b, x in zip(branches, xs)]),
                       name=name or "joint_critic")


def build_joint_xz_critic(specs: Sequence, z_dim: int, out_dim: int, spectral_norm: bool = True,
                          name: str | None = None) -> keras.Model:
    """Monolithic D(x_0..x_{M-1}, z) of the joint ablation (Chen & Zhu 2022, Table 1; 6b5d/mmali models/mmali/joint.py).

    Inputs [x_0..x_{M-1}, z] -> logits (None, out_dim): per-modality branches, z-branch
    400 -> 256, head 1024, 1024, out. Sub-models `branch_<i>` and `head`
    ([f_0..f_{M-1}, z] -> logits, z-branch included).
    """
    specs = _check_specs(specs, 1)
    z_dim = check_dim("z_dim", z_dim)
    out_dim = check_dim("out_dim", out_dim)
    branches = _branches(specs, spectral_norm)
    feats = [_feature_input(b, f"f_{i}") for i, b in enumerate(branches)]
    z = keras.Input((z_dim,), name="z")
    h = keras.layers.Concatenate()(feats + [critic_mlp(z, JOINT_XZ_Z_WIDTHS, spectral_norm)])
    head = keras.Model(feats + [z], _logits(h, JOINT_HEAD_WIDTHS, out_dim, spectral_norm),
                       name="head")
    xs = [keras.Input(s.shape, name=f"x_{i}") for i, s in enumerate(specs)]
    z_in = keras.Input((z_dim,), name="z")
    return keras.Model(xs + [z_in], head([b(x) for b, x in zip(branches, xs)] + [z_in]),
                       name=name or "joint_xz_critic")
