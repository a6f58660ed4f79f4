"""Objective functions of the VAE baselines against hand values and numpy Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from mmali_tf.models.vae import objectives as obj

tfd = tfp.distributions


def _np(x):
    return np.asarray(x, dtype=np.float64)


def test_log_mean_exp_iwae_cubo_hand_values():
    lw = tf.constant([[0.0], [math.log(3.0)]])           # w = 1, 3
    assert obj.log_mean_exp(lw, 0).numpy()[0] == pytest.approx(math.log(2.0), rel=1e-6)
    assert obj.iwae(lw).numpy()[0] == pytest.approx(math.log(2.0), rel=1e-6)
    # CUBO_2 = 1/2 log ((1 + 9) / 2)
    assert obj.cubo2(lw).numpy()[0] == pytest.approx(0.5 * math.log(5.0), rel=1e-6)
    # numerically stable for very negative log-weights
    big = tf.constant([[-3000.0], [-3000.0 + math.log(3.0)]])
    assert obj.cubo2(big).numpy()[0] == pytest.approx(-3000.0 + 0.5 * math.log(5.0), rel=1e-6)


def test_moe_iwae_looser_and_tighter():
    rng = np.random.default_rng(0)
    lw = rng.normal(size=(2, 5, 3)).astype(np.float32)
    w = np.exp(_np(lw))
    looser = np.mean(np.log(w.mean(axis=1)), axis=0)
    tighter = np.log(w.reshape(10, 3).mean(axis=0))
    np.testing.assert_allclose(obj.moe_iwae_looser(tf.constant(lw)).numpy(), looser, rtol=1e-5)
    np.testing.assert_allclose(obj.moe_iwae_tighter(tf.constant(lw)).numpy(), tighter, rtol=1e-5)
    assert np.all(tighter >= looser - 1e-6)               # Jensen: tighter bound is larger


def test_dreg_weights_and_surrogates():
    rng = np.random.default_rng(1)
    lw_np = rng.normal(size=(2, 4, 3)).astype(np.float32)
    lw = tf.constant(lw_np)
    w = np.exp(_np(lw_np)); w_loose = w / w.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(obj.dreg_weights(lw).numpy(), w_loose, rtol=1e-5)
    w_tight = w / w.sum(axis=(0, 1), keepdims=True)
    np.testing.assert_allclose(obj.dreg_weights(lw, tighter=True).numpy(), w_tight, rtol=1e-5)
    theta, phi = obj.dreg_surrogates(lw)
    np.testing.assert_allclose(theta.numpy(), -0.5 * (w_loose * lw_np).sum(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(phi.numpy(), -0.5 * (w_loose ** 2 * lw_np).sum(axis=(0, 1)),
                               rtol=1e-5)
    # theta surrogate's gradient w.r.t. lw equals the gradient of the looser IWAE bound
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(lw)
        t, _ = obj.dreg_surrogates(lw)
        bound = -obj.moe_iwae_looser(lw)
    np.testing.assert_allclose(tape.gradient(t, lw).numpy(), tape.gradient(bound, lw).numpy(),
                               rtol=1e-5)


def test_moe_log_prob_matches_mixture():
    comps = [tfd.Normal(0.0, 1.0), tfd.Normal(2.0, 0.5)]
    z = tf.constant([0.3, 1.7, -1.0])
    lp = tf.stack([c.log_prob(z) for c in comps], axis=0)
    mix = tfd.Mixture(cat=tfd.Categorical(probs=[0.5, 0.5]), components=comps)
    np.testing.assert_allclose(obj.moe_log_prob(lp).numpy(), mix.log_prob(z).numpy(), rtol=1e-5)


def test_masked_poe_matches_explicit_products():
    rng = np.random.default_rng(2)
    means = rng.normal(size=(3, 2, 4)).astype(np.float32)
    logvars = rng.normal(size=(3, 2, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1], [0, 1, 0], [1, 0, 1]], np.float32)
    mu, lv = obj.masked_product_of_experts(tf.constant(means), tf.constant(logvars), mask)
    for t in range(3):
        prec = 1.0 + sum(mask[t, i] * np.exp(-_np(logvars[i])) for i in range(3))
        m = sum(mask[t, i] * np.exp(-_np(logvars[i])) * means[i] for i in range(3)) / prec
        np.testing.assert_allclose(lv[t].numpy(), -np.log(prec), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(mu[t].numpy(), m, rtol=1e-4, atol=1e-5)


def test_closed_form_kls_match_tfp():
    rng = np.random.default_rng(3)
    a, b, c, d = (rng.normal(size=(5, 3)).astype(np.float32) for _ in range(4))
    kl = obj.gaussian_kl(a, b, c, d).numpy()
    ref = tfd.kl_divergence(tfd.Normal(a, np.exp(0.5 * b)), tfd.Normal(c, np.exp(0.5 * d)))
    np.testing.assert_allclose(kl, ref.numpy().sum(-1), rtol=1e-4)
    sq, sp = np.exp(b), np.exp(d)
    kl_l = obj.laplace_kl(a, sq, c, sp).numpy()
    # numpy Monte Carlo: E_q[log q - log p]
    z = rng.laplace(a, sq, size=(200000,) + a.shape)
    mc = (-np.log(2 * sq) - np.abs(z - a) / sq + np.log(2 * sp) + np.abs(z - c) / sp).mean(0)
    np.testing.assert_allclose(kl_l, mc.sum(-1), rtol=0.03, atol=0.02)


def test_geometric_dynamic_prior_and_js_hand_values():
    # two experts N(2, 1) and N(-1, e^1): weights 1/3 each with the prior N(0,1)
    m1, l1 = tf.constant([[2.0]]), tf.constant([[0.0]])
    m2, l2 = tf.constant([[-1.0]]), tf.constant([[1.0]])
    mean, logvar = obj.geometric_dynamic_prior([m1, m2], [l1, l2])
    prec = (1.0 + 1.0 + math.exp(-1.0)) / 3.0
    assert logvar.numpy()[0, 0] == pytest.approx(-math.log(prec), rel=1e-5)
    assert mean.numpy()[0, 0] == pytest.approx((2.0 - math.exp(-1.0)) / 3.0 / prec, rel=1e-5)
    js = obj.js_divergence([m1, m2], [l1, l2]).numpy()[0]
    ref = sum(obj.gaussian_kl(m, l, mean, logvar).numpy()[0] for m, l in
              [(tf.zeros_like(m1), tf.zeros_like(l1)), (m1, l1), (m2, l2)]) / 3.0
    assert js == pytest.approx(ref, rel=1e-5)
    # identical experts equal to the prior => JS = 0
    z = obj.js_divergence([tf.zeros((1, 2))] * 2, [tf.zeros((1, 2))] * 2).numpy()
    np.testing.assert_allclose(z, 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="weights"):
        obj.geometric_dynamic_prior([m1], [l1], weights=[0.2, 0.2])


def test_moe_elbo_value_and_gradients():
    rng = np.random.default_rng(4)
    log_lik = tf.constant(rng.normal(size=(2, 3, 4)).astype(np.float32))
    log_q = tf.Variable(rng.normal(size=(2, 2, 3, 4)).astype(np.float32))
    kl = tf.constant(rng.uniform(size=(2, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        val = obj.moe_elbo(log_lik, log_q, kl)
        total = tf.reduce_sum(val)
    lq = log_q.numpy()
    ref = np.zeros(4)
    for r in range(2):
        for d in range(2):
            v = 1.0 if r == d else np.exp(lq[r, d] - lq[d, d])
            ref += (v * log_lik.numpy()[d]).mean(0)
    ref = (ref - kl.numpy().sum(0)) / 2.0
    np.testing.assert_allclose(val.numpy(), ref, rtol=1e-5)
    g = tape.gradient(total, log_q).numpy()
    assert np.all(g[0, 0] == 0) and np.all(g[1, 1] == 0)   # diagonal carries no gradient
    expected = np.exp(lq[0, 1] - lq[1, 1]) * log_lik.numpy()[1] / 3.0 / 2.0
    np.testing.assert_allclose(g[0, 1], expected, rtol=1e-5)


def test_kl_anneal():
    assert float(obj.kl_anneal(tf.constant(0), 0)) == 1.0
    assert float(obj.kl_anneal(tf.constant(0), 4)) == pytest.approx(0.25)
    assert float(obj.kl_anneal(tf.constant(9), 4)) == 1.0
