"""Pure loss functions of the mmALI game (Chen & Zhu 2022, sec. 3; 6b5d/mmali models/mmali/factor2.py).

Every function maps tensors to a scalar (or to logits) and holds no state, so each term can be
unit-tested alone and the model's `train_step` reads like the spec's equations.

Notation: M modalities, A_k an (M+1)-way (x_k, z) critic with logits a_k, B_k a binary (x_k, z)
critic with logit b_k, J a binary critic on the tuple (x_0..x_{M-1}) with logit j.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def ce(logits: tf.Tensor, label: int) -> tf.Tensor:
    """Softmax cross-entropy against one class for the whole batch.

    CE(l, y) = mean_b [ -log softmax(l_b)_y ]   (PyTorch `F.cross_entropy`).
    """
    log_p = tf.nn.log_softmax(logits, axis=-1)
    return -tf.reduce_mean(log_p[:, label])


def ns(logits: tf.Tensor, label: int) -> tf.Tensor:
    """Non-saturating multi-class generator loss: the mean CE towards every *other* class.

    With K = M+1 classes, NS(l, y) = (1/M) sum_{i != y} CE(l, i)
                                    = -mean_b (1/M) sum_{i != y} log softmax(l_b)_i.
    """
    num_classes = logits.shape[-1]
    if num_classes is None or num_classes < 2:
        raise ValueError(f"ns needs static logits with >= 2 classes, got shape {logits.shape}")
    if not 0 <= label < num_classes:
        raise ValueError(f"ns label {label} is outside 0..{num_classes - 1}")
    log_p = tf.nn.log_softmax(logits, axis=-1)
    mask = tf.constant([0.0 if i == label else 1.0 for i in range(num_classes)], log_p.dtype)
    return -tf.reduce_mean(tf.reduce_sum(log_p * mask, axis=-1)) / (num_classes - 1)


def bce_real(logit: tf.Tensor) -> tf.Tensor:
    """Logistic loss of a 'real' sample: mean softplus(-t)."""
    return tf.reduce_mean(tf.nn.softplus(-logit))


def bce_fake(logit: tf.Tensor) -> tf.Tensor:
    """Logistic loss of a 'fake' sample: mean softplus(t)."""
    return tf.reduce_mean(tf.nn.softplus(logit))


def mse(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Mean over *all* elements (batch x features) of (a - b)^2."""
    return tf.reduce_mean(tf.math.squared_difference(a, b))


def cross_class(k: int, j: int, num_modalities: int) -> int:
    """Class index iota_k(j) of A_k for the pair (x_k, [s_k | c_j]), j != k.

    iota_k(j) = 2 + position of j in [0..M-1] with k removed; e.g. M=4, k=2: j=0->2, 1->3, 3->4.
    """
    if not (0 <= k < num_modalities and 0 <= j < num_modalities) or j == k:
        raise ValueError(f"cross_class needs distinct k, j in 0..{num_modalities - 1}, "
                         f"got k={k}, j={j}")
    return 2 + (j if j < k else j - 1)


def joint_logits(a_logits: Sequence[tf.Tensor], b_logits: Sequence[tf.Tensor],
                 j_logit: tf.Tensor) -> tf.Tensor:
    """(M+1)-way logits of the factorised joint critic (paper eq. 10).

    S = j + sum_k (a_k^0 - a_k^1 - b_k);  Lambda = [b_0, ..., b_{M-1}, -S], shape (B, M+1).
    Class m < M is "encoder distribution with content from modality m", class M the decoder.

    Args:
      a_logits: M tensors (B, M+1), A_k's logits on its (x_k, z_k) input.
      b_logits: M tensors (B, 1), B_k's logit on the same input.
      j_logit: (B, 1), J's logit on (x_0..x_{M-1}).
    """
    if len(a_logits) != len(b_logits) or not a_logits:
        raise ValueError(f"joint_logits needs M >= 1 A and B logits, got {len(a_logits)} and "
                         f"{len(b_logits)}")
    total = j_logit
    for a_k, b_k in zip(a_logits, b_logits):
        total = total + a_k[:, 0:1] - a_k[:, 1:2] - b_k
    return tf.concat(list(b_logits) + [-total], axis=-1)
