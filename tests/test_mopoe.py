"""MoPoE-VAE: subset algebra against hand values and Monte Carlo, the objective against an
independent numpy computation, training and the inference interface."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from conftest import compiled_model, make_toy_dataset, train_recon_curve
from mmali_tf import latent as latent_lib
from mmali_tf.data.specs import ModalitySpec
from mmali_tf.models.vae import objectives as obj
from mmali_tf.models.vae.mopoe import subset_mask

SPECS = (ModalitySpec("a", (4, 4, 1), "image", "mnist_mlp"),
         ModalitySpec("b", (5, 5, 1), "image", "mnist_mlp"),
         ModalitySpec("c", (3, 3, 2), "image", "mnist_mlp"))


CONFIG = dict(latent_dim=3, style_dim=0, lr=2e-3, beta1=0.9, ema_decay=0.0, seed=0,
              init="torch", beta=1.0, kl_anneal_steps=0)


def _model(specs=SPECS, **over):
    return compiled_model("mopoe", specs, CONFIG, **over)


def test_nonempty_subsets_and_mask_hand_values():
    assert latent_lib.nonempty_subsets(3) == [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2),
                                              (0, 1, 2)]
    assert len(latent_lib.nonempty_subsets(5)) == 31
    np.testing.assert_array_equal(subset_mask(2), [[1, 0], [0, 1], [1, 1]])
    with pytest.raises(ValueError, match="num_modalities >= 1"):
        latent_lib.nonempty_subsets(0)


def test_component_selection_hand_values():
    sel = obj.component_selection(tf.constant(10), 3).numpy()
    np.testing.assert_array_equal(sel.argmax(0), [0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(sel.sum(0), np.ones(10))
    # fewer rows than components: every chunk floor(B/C) is empty, the last component takes
    # the batch (the authors' mixture_component_selection)
    np.testing.assert_array_equal(obj.component_selection(tf.constant(2), 3).numpy().argmax(0),
                                  [2, 2])


def test_subset_products_hand_values():
    """Experts N(1, 1), N(3, 1/2); the full set also gets the N(0, 1) prior expert."""
    means = tf.constant([[[1.0]], [[3.0]]])
    logvars = tf.constant([[[0.0]], [[math.log(0.5)]]])
    mu, lv = obj.subset_products(means, logvars, tf.constant(subset_mask(2)),
                                 tf.constant([0.0, 0.0, 1.0]))
    var = np.exp(lv.numpy()[:, 0, 0])
    # {a}: N(1, 1); {b}: N(3, 1/2); {a, b, prior}: precision 1 + 2 + 1 = 4, mean (1 + 6 + 0)/4
    np.testing.assert_allclose(mu.numpy()[:, 0, 0], [1.0, 3.0, 7.0 / 4.0], rtol=1e-6)
    np.testing.assert_allclose(var, [1.0, 0.5, 0.25], rtol=1e-6)


def test_subset_product_is_the_normalised_product_monte_carlo():
    """log q_S(z) - sum_{m in S} log q_m(z) (- log p(z) for the full set) is constant in z."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(3, 1, 2)).astype(np.float32)
    logvars = rng.normal(scale=0.5, size=(3, 1, 2)).astype(np.float32)
    mask = subset_mask(3)
    prior_rows = (mask.sum(1) == 3).astype(np.float32)
    mu, lv = obj.subset_products(tf.constant(means), tf.constant(logvars), tf.constant(mask),
                                 tf.constant(prior_rows))
    z = rng.normal(scale=2.0, size=(200, 2))
    for t in range(len(mask)):
        log_qs = stats.norm(mu.numpy()[t, 0], np.exp(0.5 * lv.numpy()[t, 0])).logpdf(z).sum(-1)
        log_prod = sum(stats.norm(means[m, 0], np.exp(0.5 * logvars[m, 0])).logpdf(z).sum(-1)
                       for m in np.flatnonzero(mask[t]))
        if prior_rows[t]:
            log_prod = log_prod + stats.norm(0, 1).logpdf(z).sum(-1)
        diff = log_qs - log_prod
        assert np.ptp(diff) < 1e-3, (t, np.ptp(diff))


def test_mixture_kl_upper_bound_monte_carlo():
    """(1/T) sum_S KL(q_S || p) >= KL((1/T) sum_S q_S || p), the mixture KL by Monte Carlo."""
    rng = np.random.default_rng(1)
    means = tf.constant(rng.normal(size=(2, 1, 2)).astype(np.float32))
    logvars = tf.constant(rng.normal(scale=0.5, size=(2, 1, 2)).astype(np.float32))
    mu, lv = obj.subset_products(means, logvars, tf.constant(subset_mask(2)),
                                 tf.constant([0.0, 0.0, 1.0]))
    mu, sd = mu.numpy()[:, 0], np.exp(0.5 * lv.numpy()[:, 0])
    bound = float(np.mean(latent_lib.gaussian_kl_standard(mu, np.log(sd ** 2)).numpy()))
    # mixture KL by Monte Carlo: z ~ mixture, log q_mix(z) - log p(z)
    comp = rng.integers(0, 3, size=200_000)
    z = mu[comp] + sd[comp] * rng.normal(size=(200_000, 2))
    log_q = np.log(np.mean([np.exp(stats.norm(mu[t], sd[t]).logpdf(z).sum(-1))
                            for t in range(3)], axis=0))
    mixture_kl = float(np.mean(log_q - stats.norm(0, 1).logpdf(z).sum(-1)))
    assert mixture_kl > 0.0 and bound >= mixture_kl, (bound, mixture_kl)


def _np_laplace_ll(mean: np.ndarray, x: np.ndarray, scale: float = 0.75) -> np.ndarray:
    mean = np.clip(mean, 1e-6, 1 - 1e-6)
    ll = -math.log(2 * scale) - np.abs(x - mean) / scale
    return ll.reshape(len(x), -1).sum(-1)


def test_objective_matches_numpy_with_zero_noise(monkeypatch):
    """With the reparameterisation noise set to 0, z is the selected subset's mean: the
    loss equals mean_b [-sum_m lambda_m log p(x_m|z_b) + beta (1/T) sum_S KL(q_S || p)]."""
    model = _model(beta=2.5)
    monkeypatch.setattr(model, "sample_noise", lambda shape, **_: tf.zeros(shape))
    rng = np.random.default_rng(2)
    b = 9                                         # T = 7 subsets: chunks of 1, the last 3
    batch = {s.name: tf.constant(rng.uniform(size=(b,) + s.shape).astype(np.float32))
             for s in SPECS}
    loss, terms = model.objective(batch)

    params = {m: model.encode(m, batch[m], ema=False) for m in model.modalities}
    means = np.stack([params[m][0].numpy() for m in model.modalities]).astype(np.float64)
    var = np.exp(np.stack([params[m][1].numpy() for m in model.modalities]).astype(np.float64))
    mask = subset_mask(3)
    s_mu, s_var = [], []
    for t, row in enumerate(mask):
        prec = (row[:, None, None] / var).sum(0) + (1.0 if row.sum() == 3 else 0.0)
        s_var.append(1.0 / prec)
        s_mu.append((row[:, None, None] * means / var).sum(0) / prec)
    s_mu, s_var = np.stack(s_mu), np.stack(s_var)                      # (T, B, D)
    chosen = np.minimum(np.arange(b) // 1, 6)
    z = s_mu[chosen, np.arange(b)]
    rec = sum(model.lambdas[m] * _np_laplace_ll(model.decode(m, z, ema=False).numpy(),
                                                batch[m].numpy())
              for m in model.modalities)
    kl = 0.5 * np.sum(s_var + s_mu ** 2 - 1.0 - np.log(s_var), axis=-1).mean(0)   # (B,)
    np.testing.assert_allclose(float(loss), np.mean(-rec + 2.5 * kl), rtol=2e-4)
    np.testing.assert_allclose(float(terms["kl"]), kl.mean(), rtol=2e-4)


def test_fusion_prior_expert_only_for_the_full_set():
    model = _model()
    x = {s.name: tf.random.uniform((2,) + s.shape, seed=3) for s in SPECS}
    params = {m: model.encode(m, x[m]) for m in model.modalities}
    mean, logvar = model.fuse({"a": params["a"], "b": params["b"]})
    want = latent_lib.product_of_experts([params["a"][0], params["b"][0]],
                                         [params["a"][1], params["b"][1]])
    np.testing.assert_allclose(mean.numpy(), want[0].numpy(), rtol=1e-5)
    full = model.fuse(params)
    want = latent_lib.product_of_experts([p[0] for p in params.values()],
                                         [p[1] for p in params.values()], prior_expert=True)
    np.testing.assert_allclose(full[1].numpy(), want[1].numpy(), rtol=1e-5)


def test_trains_with_finite_losses():
    ds = make_toy_dataset(specs=SPECS, n_per_class=4, dm=2)
    recon = train_recon_curve(_model(), ds, batch_size=14, steps=30)
    assert np.mean(recon[-5:]) < 0.9 * np.mean(recon[:5]), recon
