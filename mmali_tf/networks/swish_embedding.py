"""`swish_embedding` family: MVAE's label networks (mhw32/multimodal-vae-public, mnist/model.py
`TextEncoder` / `TextDecoder`) for one-hot vectors (K,), e.g. a digit label with a
`categorical` likelihood.

Encoder: an embedding of the one-hot input (a bias-free Dense, which is `nn.Embedding(K, 512)`
on a one-hot vector) -> Swish -> Dense 512 Swish -> Dense out. Decoder: `swish_mlp`'s
(Dense 512 Swish x3 -> Dense K logits). mmALI critics on this family are the `mnist_mlp` ones.
"""

from __future__ import annotations

import keras

from mmali_tf.networks.init import dense, initializers
from mmali_tf.networks.mlp import (critic_head_widths, critic_x_features,  # noqa: F401
                                   critic_z_widths, joint_branch)
from mmali_tf.networks.swish_mlp import HIDDEN, decoder, hidden  # noqa: F401
from mmali_tf.registry import register_network_family

register_network_family("swish_embedding")

#: torch.nn.Embedding's default initialisation, N(0, 1), used under init="torch".
EMBEDDING_STDDEV = 1.0


def check_spec(spec) -> None:
    if len(spec.shape) != 1 or spec.shape[0] < 2:
        raise ValueError(f"modality {spec.name!r}: network 'swish_embedding' needs a one-hot "
                         f"vector shape (K,) with K >= 2, got {spec.shape}")


def embedding(x, init: str):
    """Bias-free Dense 512 on the one-hot x: row k of its kernel embeds class k."""
    inits = initializers(init, int(x.shape[-1]))
    if init == "torch":
        inits["kernel_initializer"] = keras.initializers.RandomNormal(0.0, EMBEDDING_STDDEV)
    inits.pop("bias_initializer")
    return keras.layers.Dense(HIDDEN, use_bias=False, activation="silu", **inits)(x)


def encoder(x, out_dim: int, init: str):
    """one-hot -> embedding 512 Swish -> Dense 512 Swish -> Dense out_dim."""
    return dense(hidden(embedding(x, init), 1, init), out_dim, init)
