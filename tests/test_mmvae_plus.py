"""MMVAE+: posterior scales (hand values), auxiliary-prior cross styles (Monte Carlo), the
log-weights against an independent scipy computation, DReG/IWAE training on three modalities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from conftest import compiled_model, make_toy_dataset, train_recon_curve
from mmali_tf.data.specs import ModalitySpec

SPECS = (ModalitySpec("a", (4, 4, 1), "image", "mnist_mlp"),
         ModalitySpec("b", (5, 5, 1), "image", "mnist_mlp"),
         ModalitySpec("c", (3, 3, 2), "image", "mnist_mlp"))


CONFIG = dict(latent_dim=5, style_dim=2, lr=2e-3, beta1=0.9, ema_decay=0.0, seed=0,
              init="torch", beta=1.0, num_importance_samples=3, learn_prior=False,
              objective="dreg", amsgrad=True)


def _model(**over):
    return compiled_model("mmvae_plus", SPECS, CONFIG, **over)


def test_scales_are_softmax_normalised_per_part():
    model = _model()
    d = model.layout.latent_dim
    h = np.zeros((1, 2 * d), np.float32)
    h[0, d:d + 2] = [math.log(2.0), 0.0]               # style logits -> softmax (2/3, 1/3)
    _, logvar = model.params_from_encoder_output(tf.constant(h))
    b = np.sqrt(np.exp(logvar.numpy()[0]) / 2.0)       # Laplace scale from log(2 b^2)
    np.testing.assert_allclose(b, [4 / 3, 2 / 3, 1.0, 1.0, 1.0], rtol=1e-5)


def test_cross_styles_use_own_w_on_the_diagonal_and_aux_prior_elsewhere():
    model = _model()
    model.aux_prior_logits.assign(np.array([[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]],
                                           np.float32))
    own = tf.random.normal((3, 2, 20000, 2), seed=4)
    styles = model.cross_styles(1, own).numpy()
    np.testing.assert_array_equal(styles[1], own.numpy()[1])
    # off-diagonal: Laplace(0, b), b = 2 softmax(log 3, 0) = (1.5, 0.5): E|w| = b
    for src in (0, 2):
        np.testing.assert_allclose(np.abs(styles[src]).mean(axis=(0, 1)), [1.5, 0.5], rtol=0.03)
        np.testing.assert_allclose(styles[src].mean(axis=(0, 1)), [0.0, 0.0], atol=0.03)


def test_log_weights_match_scipy():
    """lw = sum_d lambda_d log p(x_d|.) + beta [log p(u) - log mean_m q_m(z) - log q_r(w)]."""
    model = _model(beta=0.7)
    rng = np.random.default_rng(0)
    batch = {s.name: tf.constant(rng.uniform(size=(4,) + s.shape).astype(np.float32))
             for s in SPECS}
    cache = model.forward(batch, stop_q=False)
    u = cache["z"].numpy().astype(np.float64)                            # (M, K, B, D)
    mean = cache["means"].numpy().astype(np.float64)                     # (M, B, D)
    b = np.sqrt(np.exp(cache["logvars"].numpy().astype(np.float64)) / 2.0)
    s = model.layout.style_dim
    log_p = stats.laplace(0, 1).logpdf(u).sum(-1)
    qz = np.stack([stats.laplace(mean[m, :, s:], b[m, :, s:]).logpdf(u[..., s:]).sum(-1)
                   for m in range(3)])                                   # (M', M, K, B)
    log_qz = np.log(np.mean(np.exp(qz), axis=0))
    log_qw = np.stack([stats.laplace(mean[r, :, :s], b[r, :, :s]).logpdf(u[r, ..., :s]).sum(-1)
                       for r in range(3)])
    ll = sum(v.numpy() for v in cache["log_lik"].values())
    want = ll + 0.7 * (log_p - log_qz - log_qw)
    np.testing.assert_allclose(cache["lw"].numpy(), want, rtol=1e-4, atol=1e-3)
    # the likelihood of target d from source r == d decodes the source's own latent
    own = model.decode_many("b", cache["z"][1])
    np.testing.assert_allclose(cache["dec"]["b"][1].numpy(), own.numpy(), atol=1e-6)


def test_rejects_mmvae_elbo_and_needs_style():
    with pytest.raises(ValueError, match="num_importance_samples=1"):
        _model(objective="elbo")
    with pytest.raises(ValueError, match="style subspace"):
        _model(style_dim=0)


@pytest.mark.parametrize("objective", ("dreg", "iwae"))
def test_trains_with_finite_losses(objective):
    ds = make_toy_dataset(specs=SPECS, n_per_class=4, dm=2)
    model = _model(objective=objective)
    aux = model.aux_prior_logits.numpy().copy()
    recon = train_recon_curve(model, ds, batch_size=8, steps=25)
    assert np.mean(recon[-5:]) < 0.9 * np.mean(recon[:5]), recon
    assert not np.allclose(model.aux_prior_logits.numpy(), aux)      # the aux priors learn
    x = {s.name: tf.random.uniform((2,) + s.shape, seed=1) for s in SPECS}
    mean, logvar = model.fuse({m: model.encode(m, x[m]) for m in ("a", "c")})
    assert mean.shape == (2, 3) and np.all(np.isfinite(logvar.numpy()))
