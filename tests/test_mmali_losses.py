"""Hand-computed checks of the pure mmALI loss functions (Chen & Zhu 2022, sec. 3; 6b5d/mmali models/mmali/factor2.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from mmali_tf.models import mmali_losses as L


def _log_softmax(row):
    row = np.asarray(row, np.float64)
    return row - math.log(np.exp(row).sum())


def test_ce_matches_hand_computation():
    logits = tf.constant([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    expected = -(_log_softmax([1.0, 2.0, 0.5])[2] + _log_softmax([0.0, -1.0, 3.0])[2]) / 2
    np.testing.assert_allclose(L.ce(logits, 2).numpy(), expected, rtol=1e-6)
    # Same as TF's sparse cross-entropy averaged over the batch.
    ref = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits([0, 0], logits))
    np.testing.assert_allclose(L.ce(logits, 0).numpy(), ref.numpy(), rtol=1e-6)


def test_ns_is_mean_ce_over_other_classes_m2():
    logits = tf.constant([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]])
    for y in range(3):
        others = [i for i in range(3) if i != y]
        expected = np.mean([L.ce(logits, i).numpy() for i in others])
        np.testing.assert_allclose(L.ns(logits, y).numpy(), expected, rtol=1e-6)
    # Explicit value for y=1: -(1/2) * (log p0 + log p2), batch mean.
    rows = [_log_softmax([1.0, 2.0, 0.5]), _log_softmax([0.3, -1.0, 2.0])]
    hand = np.mean([-(r[0] + r[2]) / 2 for r in rows])
    np.testing.assert_allclose(L.ns(logits, 1).numpy(), hand, rtol=1e-6)


def test_ns_m3_four_classes():
    logits = tf.constant([[0.1, 0.2, -0.3, 1.0]])
    r = _log_softmax([0.1, 0.2, -0.3, 1.0])
    np.testing.assert_allclose(L.ns(logits, 3).numpy(), -(r[0] + r[1] + r[2]) / 3, rtol=1e-6)
    with pytest.raises(ValueError, match="label 4"):
        L.ns(logits, 4)


def test_binary_losses_and_mse():
    t = tf.constant([[0.0], [2.0]])
    np.testing.assert_allclose(L.bce_real(t).numpy(),
                               (math.log(2) + math.log1p(math.exp(-2.0))) / 2, rtol=1e-6)
    np.testing.assert_allclose(L.bce_fake(t).numpy(),
                               (math.log(2) + math.log1p(math.exp(2.0))) / 2, rtol=1e-6)
    a = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    b = tf.constant([[0.0, 2.0], [1.0, 4.0]])
    np.testing.assert_allclose(L.mse(a, b).numpy(), (1 + 0 + 4 + 0) / 4, rtol=1e-6)


def test_cross_class_index():
    assert L.cross_class(0, 1, 2) == 2 and L.cross_class(1, 0, 2) == 2
    assert [L.cross_class(2, j, 4) for j in (0, 1, 3)] == [2, 3, 4]
    assert [L.cross_class(0, j, 3) for j in (1, 2)] == [2, 3]
    assert [L.cross_class(1, j, 3) for j in (0, 2)] == [2, 3]
    with pytest.raises(ValueError, match="distinct"):
        L.cross_class(1, 1, 3)


def test_joint_logits_m2_order_and_signs():
    a0 = tf.constant([[1.0, 0.5, 9.0]])    # a_0^0 - a_0^1 = 0.5 (class 2 ignored)
    a1 = tf.constant([[0.0, 2.0, -9.0]])   # a_1^0 - a_1^1 = -2
    b0 = tf.constant([[0.25]])
    b1 = tf.constant([[-1.0]])
    j = tf.constant([[3.0]])
    lam = L.joint_logits([a0, a1], [b0, b1], j).numpy()
    s = 3.0 + (0.5 - 0.25) + (-2.0 + 1.0)
    np.testing.assert_allclose(lam, [[0.25, -1.0, -s]], rtol=1e-6)


def test_joint_logits_m3_recovers_ratios():
    """softmax(Lambda) = [r_0, r_1, r_2, 1] / (1 + sum r) with log r_m = b_m + S."""
    rng = np.random.default_rng(0)
    a = [tf.constant(rng.normal(size=(2, 4)), tf.float32) for _ in range(3)]
    b = [tf.constant(rng.normal(size=(2, 1)), tf.float32) for _ in range(3)]
    j = tf.constant(rng.normal(size=(2, 1)), tf.float32)
    lam = L.joint_logits(a, b, j).numpy()
    assert lam.shape == (2, 4)
    s = j.numpy() + sum(ak.numpy()[:, :1] - ak.numpy()[:, 1:2] - bk.numpy() for ak, bk in zip(a, b))
    log_r = np.concatenate([bk.numpy() + s for bk in b] + [np.zeros_like(s)], axis=1)
    np.testing.assert_allclose(tf.nn.softmax(lam).numpy(),
                               tf.nn.softmax(log_r).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="M >= 1"):
        L.joint_logits(a, b[:2], j)
