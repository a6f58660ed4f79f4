"""Keras functional networks per modality family (`spec.network`) and the critics.

Families (declared in their modules with `registry.register_network_family`): `mnist_mlp`
(MLPs on flattened images), `svhn_conv` (32x32xC convnets), `polymnist_conv` (MoPoE's
28x28xC PolyMNIST convnets), `feature_mlp` (vector features). Encoders output raw linear
parameters (callers split [mean | logvar]); image decoders end in a sigmoid scaled to
`spec.value_range` unless the family's `IMAGE_OUTPUT` is "linear", vector decoders are linear.
"""

from __future__ import annotations

import keras

from mmali_tf.networks.critics import (build_joint_critic, build_joint_xz_critic,
                                       build_xz_critic, check_dim, family)
from mmali_tf.networks.init import INITS, check_init
from mmali_tf.networks.spectral_norm import SNConv2D, SNDense

__all__ = ["INITS", "SNConv2D", "SNDense", "build_decoder", "build_encoder",
           "build_joint_critic", "build_joint_xz_critic", "build_xz_critic",
           "linear_image_output"]


def linear_image_output(spec) -> bool:
    """Whether the family of image modality `spec` ends its decoder without a sigmoid (its
    module sets `IMAGE_OUTPUT = "linear"`, e.g. `polymnist_conv`); the likelihood then does
    not clamp the mean to (0, 1)."""
    return spec.kind == "image" and getattr(family(spec), "IMAGE_OUTPUT", "sigmoid") == "linear"


def build_encoder(spec, out_dim: int, init: str = "normal",
                  name: str | None = None) -> keras.Model:
    """x (None, *spec.shape) -> (None, out_dim) raw linear output."""
    module = family(spec)
    check_init(init)
    out_dim = check_dim("out_dim", out_dim)
    x = keras.Input(spec.shape, name="x")
    return keras.Model(x, module.encoder(x, out_dim, init), name=name or f"{spec.name}_encoder")


def build_decoder(spec, latent_dim: int, init: str = "normal",
                  name: str | None = None) -> keras.Model:
    """z (None, latent_dim) -> (None, *spec.shape); sigmoid (scaled to value_range) for images."""
    module = family(spec)
    check_init(init)
    z = keras.Input((check_dim("latent_dim", latent_dim),), name="z")
    out = module.decoder(z, spec.shape, init)
    if spec.kind == "image" and not linear_image_output(spec):
        out = keras.layers.Activation("sigmoid")(out)
        low, high = spec.value_range
        if (low, high) != (0.0, 1.0):
            out = keras.layers.Rescaling(high - low, offset=low)(out)
    return keras.Model(z, out, name=name or f"{spec.name}_decoder")
