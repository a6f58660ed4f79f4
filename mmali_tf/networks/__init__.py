"""Keras functional networks per modality family (`spec.network`) and the critics.

Families (declared in their modules with `registry.register_network_family`): `mnist_mlp`
(MLPs on flattened images), `svhn_conv` (32x32xC convnets), `polymnist_conv` (MoPoE's
28x28xC PolyMNIST convnets), `feature_mlp` (vector features), `swish_mlp` / `swish_embedding`
(MVAE's image and label networks), `mmjsd_svhn` (mmJSD's SVHN convnets), `text_conv`
(mmJSD's 1-D convolutional text networks), `mmvaeplus_resnet` (MMVAE+'s PolyMNIST ResNets,
one encoder trunk per latent part: families with `SPLIT_LATENT = True` receive the latent
layout as `style_dim`). Encoders output raw
linear parameters (callers split [mean | logvar]); image decoders end in a sigmoid scaled to
`spec.value_range` unless their family sets `BOUNDED_OUTPUT = False`,
`categorical` vector and text decoders in a softmax (`categorical_logratio` ones in
`logsoftmax_ratio`), other vector decoders are linear.
`decoder_logits` gives the decoder without that final activation (for likelihoods on logits,
`specs.LOGIT_LIKELIHOODS`).
"""

from __future__ import annotations

import keras

from mmali_tf.networks.critics import (build_joint_critic, build_joint_xz_critic,
                                       build_xz_critic, check_dim, family)
from mmali_tf.networks.init import INITS, check_init
from mmali_tf.networks.spectral_norm import SNConv2D, SNDense

__all__ = ["INITS", "SNConv2D", "SNDense", "build_decoder", "build_encoder",
           "bounded_output", "build_joint_critic", "build_joint_xz_critic", "build_xz_critic",
           "decoder_logits", "logsoftmax_ratio"]


@keras.saving.register_keras_serializable(package="mmali_tf")
def logsoftmax_ratio(logits):
    """log_softmax(l) / sum(log_softmax(l)) over the last axis: the class probabilities of the
    `categorical_logratio` likelihood. mmJSD's released code (thomassutter/mmjsd,
    networks/ConvNetworksTextMNIST.py `DecoderText` ends in a LogSoftmax, utils/utils.py
    `get_likelihood` gives `OneHotCategorical`, which takes it as its first argument, `probs`,
    and normalises it to these ratios of negative numbers): a distribution over the alphabet
    that puts most mass where the softmax puts least."""
    logp = keras.ops.log_softmax(logits, axis=-1)
    return logp / keras.ops.sum(logp, axis=-1, keepdims=True)


def bounded_output(spec) -> bool:
    """Whether the decoder of an image `spec` ends in a sigmoid: its family's
    `BOUNDED_OUTPUT` (default True; False for a decoder whose raw output is the mean)."""
    return spec.kind == "image" and getattr(family(spec), "BOUNDED_OUTPUT", True)


def build_encoder(spec, out_dim: int, init: str = "normal",
                  name: str | None = None, style_dim: int = 0) -> keras.Model:
    """x (None, *spec.shape) -> (None, out_dim) raw linear output. `style_dim`: the latent
    layout [w | z] of a VAE's [mean | scale] output (the first `style_dim` entries of each
    half are modality-specific), read by families with `SPLIT_LATENT = True`."""
    module = family(spec)
    check_init(init)
    out_dim = check_dim("out_dim", out_dim)
    x = keras.Input(spec.shape, name="x")
    layout = {"style_dim": style_dim} if getattr(module, "SPLIT_LATENT", False) else {}
    return keras.Model(x, module.encoder(x, out_dim, init, **layout),
                       name=name or f"{spec.name}_encoder")


def build_decoder(spec, latent_dim: int, init: str = "normal",
                  name: str | None = None) -> keras.Model:
    """z (None, latent_dim) -> (None, *spec.shape): the mean of p(x|z); a sigmoid (scaled to
    value_range) for images (unless the family's output is unbounded), a softmax for
    `categorical` vectors and text (per position), `logsoftmax_ratio` for
    `categorical_logratio`."""
    module = family(spec)
    check_init(init)
    z = keras.Input((check_dim("latent_dim", latent_dim),), name="z")
    out = module.decoder(z, spec.shape, init)
    if spec.likelihood == "categorical":
        out = keras.layers.Activation("softmax")(out)
    elif spec.likelihood == "categorical_logratio":
        out = keras.layers.Activation(logsoftmax_ratio)(out)
    elif bounded_output(spec) or spec.likelihood == "bernoulli_logits":
        out = keras.layers.Activation("sigmoid")(out)
        low, high = spec.value_range
        if (low, high) != (0.0, 1.0):
            out = keras.layers.Rescaling(high - low, offset=low)(out)
    return keras.Model(z, out, name=name or f"{spec.name}_decoder")


def decoder_logits(decoder: keras.Model) -> keras.Model:
    """The decoder without its final sigmoid/softmax (same variables): z -> logits."""
    last = decoder.layers[-1]
    if not isinstance(last, keras.layers.Activation):
        raise ValueError(f"decoder {decoder.name!r} does not end in an activation "
                         f"(its last layer is {type(last).__name__})")
    return keras.Model(decoder.inputs, last.input, name=f"{decoder.name}_logits")
