"""Every VAE baseline: trains on the toy dataset, inference interface, warnings, saving."""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import HAND, PRINT, digits_config_value, make_toy_dataset
from mmali_tf import registry
from mmali_tf.data.specs import ModalitySpec
from mmali_tf.models import build, model_class
from mmali_tf.models.vae.common import VAEModel
from mmali_tf.networks.joint_encoder import build_joint_encoder

# every registered VAE model of the package is trained (graph mode, a few dozen steps)
TRAINED = tuple(name for name, entry in registry.entries("model").items()
                if entry.builtin and issubclass(model_class(name), VAEModel))
SMALL = (ModalitySpec("hand", (8, 8, 1), "image", "mnist_mlp"),
         ModalitySpec("print", (10, 10, 3), "image", "mnist_mlp"))


def _config(name: str, **over) -> dict:
    uses_style = int(digits_config_value(name, "style_dim") or 10) > 0  # flag default 10
    cfg = dict(latent_dim=6, style_dim=2 if uses_style else 0, num_importance_samples=2,
               num_negatives=2, lr=2e-3, beta1=0.9, ema_decay=0.0, seed=0, init="torch",
               kl_anneal_steps=0 if name[:3] in ("ci_", "cc_") else 10, beta=1.0)
    cfg.update(over)
    return cfg


def _batches(ds, batch_size: int, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    split = ds.train
    for _ in range(steps):
        rows = split.pairs[rng.integers(0, split.num_pairs, batch_size)]
        yield {s.name: tf.constant(split.instances[s.name][rows[:, i]].astype(np.float32) / 255.)
               for i, s in enumerate(ds.specs)}


def _model(name: str, specs=SMALL, **over):
    model = build(name, specs, _config(name, **over))
    model.build_from_specs()
    model.compile(jit_compile=False)
    return model


@pytest.fixture(scope="module")
def small_ds():
    return make_toy_dataset(specs=SMALL, n_per_class=6, dm=2)


def _check_interface(model, name: str) -> None:
    d = 6
    x = {s.name: tf.random.uniform((3,) + s.shape, seed=1) for s in SMALL}
    params = {m: model.encode(m, x[m]) for m in model.modalities}
    for m, (mean, logvar) in params.items():
        assert mean.shape == (3, d) and logvar.shape == (3, d)
        assert np.all(np.isfinite(logvar.numpy()))
        out = model.decode(m, mean)
        assert out.shape == x[m].shape
        assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
    mean, logvar = model.fuse(params)
    assert mean.shape == (3, d - model.layout.style_dim) and logvar.shape == mean.shape
    prior = model.sample_prior(4)
    assert set(prior) == set(model.modalities) and prior["hand"].shape == (4, d)
    pm, plv = model.prior_params()
    assert pm.shape == (d,) and plv.shape == (d,)
    if "jmvae" in name:
        jm, jlv = model.encode_joint(x)
        assert jm.shape == (3, d) and jlv.shape == (3, d)
        with pytest.raises(ValueError, match="missing"):
            model.encode_joint({"hand": x["hand"]})


@pytest.mark.parametrize("name", TRAINED)
def test_trains_and_serves_the_inference_interface(name, small_ds):
    """A few dozen graph-mode steps: finite losses, reconstruction error drops; then shapes."""
    model = _model(name)
    step = tf.function(model.train_step)
    recon = []
    for batch in _batches(small_ds, 8, 24):
        for t in model.metrics:
            t.reset_state()
        logs = {k: float(v) for k, v in step(batch).items()}
        assert all(np.isfinite(v) for v in logs.values()), logs
        recon.append(logs["recon"])
    assert int(model.g_optimizer.iterations) == 24
    assert np.mean(recon[-4:]) < 0.9 * np.mean(recon[:4]), recon
    _check_interface(model, name)


@pytest.mark.parametrize("name", ("mvae", "ci_mmvae"))
def test_three_modalities_step(name):
    """M > 2: MVAE's random subset, App. C negatives (all modalities re-indexed), MoE/JS."""
    specs = SMALL + (ModalitySpec("third", (6, 6, 1), "image", "mnist_mlp"),)
    model = _model(name, specs=specs)
    ds = make_toy_dataset(specs=specs, n_per_class=2, dm=1)
    logs = model.train_step(next(_batches(ds, 6, 1)))
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert set(model.lambdas) == {"hand", "print", "third"}


def test_declared_fusion_and_families():
    expected = {"mvae": ("poe", True, "normal"), "jmvae": ("poe", False, "normal"),
                "mmvae": ("moe_mean", False, "laplace"), "mmjsd": ("poe", False, "normal")}
    for name, (fusion, prior_expert, family) in expected.items():
        model = build(name, SMALL, _config(name))
        assert (model.default_fusion, model.prior_expert, model.posterior_family) == \
            (fusion, prior_expert, family)
    # MMVAE: Laplace scales D softmax(h) + 1e-6 sum to ~D; logvar = log(2 b^2)
    mmvae = build("mmvae", SMALL, _config("mmvae"))
    _, logvar = mmvae.params_from_encoder_output(tf.random.normal((2, 12), seed=3))
    b = np.sqrt(np.exp(logvar.numpy()) / 2.0)
    np.testing.assert_allclose(b.sum(-1), 6.0, rtol=1e-4)
    normal = build("mmvae", SMALL, _config("mmvae", posterior="normal"))
    assert normal.posterior_family == "normal"
    # lambda for image pairs: prod(largest) / prod(shape)
    assert mmvae.lambdas == pytest.approx({"hand": 300 / 64, "print": 1.0})


def test_gamma_one_warns_and_bad_configs_raise():
    with pytest.warns(UserWarning, match="gamma"):
        build("ci_mmvae", SMALL, _config("ci_mmvae", gamma=1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build("cc_mvae", SMALL, _config("cc_mvae", gamma=2.0))
    with pytest.warns(UserWarning, match="style_dim"):
        assert build("mvae", SMALL, _config("mvae", style_dim=2)).layout.style_dim == 0
    with pytest.raises(ValueError, match="style_dim"):
        build("mmjsd_ms", SMALL, _config("mmjsd", style_dim=0))
    with pytest.raises(ValueError, match="objective"):
        build("mmvae", SMALL, _config("mmvae", objective="bogus"))
    with pytest.raises(ValueError, match="elbo"):
        build("ci_mmvae", SMALL, _config("ci_mmvae", objective="elbo"))
    for bad in ({"kl_anneal_steps": 125}, {"beta": 0.5}):   # unbounded negative term
        with pytest.raises(ValueError, match="kl_anneal_steps=0 and --beta >= 1"):
            build("ci_mvae", SMALL, _config("ci_mvae", **bad))


def test_mmvae_elbo_objective(small_ds):
    model = _model("mmvae", objective="elbo")
    for batch in _batches(small_ds, 8, 2):
        logs = model.train_step(batch)
    assert np.isfinite(float(logs["loss"])) and int(model.g_optimizer.iterations) == 2
    assert float(logs["recon"]) > 0.0


def test_jmvae_joint_encoder_for_digit_images():
    enc = build_joint_encoder((HAND, PRINT), 40, init="torch")
    out = enc([tf.zeros((2, 28, 28, 1)), tf.zeros((2, 32, 32, 3))])
    assert out.shape == (2, 40)
    assert any(isinstance(l, keras.layers.Conv2D) and l.kernel_size == (1, 4)
               for l in enc.layers)
    vec = ModalitySpec("feat", (16,), "vector", "feature_mlp")
    mlp = build_joint_encoder((HAND, vec), 8)
    assert mlp([tf.zeros((2, 28, 28, 1)), tf.zeros((2, 16))]).shape == (2, 8)
    with pytest.raises(ValueError, match="at least 2"):
        build_joint_encoder((HAND,), 8)


def test_keras_round_trip(tmp_path, small_ds):
    model = _model("mmvae")
    for batch in _batches(small_ds, 8, 2):
        model.train_step(batch)
    path = os.path.join(tmp_path, "mmvae.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded).__name__ == "MMVAE" and loaded.config["model"] == "mmvae"
    x = tf.random.uniform((2, 8, 8, 1), seed=4)
    for a, b in zip(model.encode("hand", x), loaded.encode("hand", x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    for a, b in zip(model.prior_params(), loaded.prior_params()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    assert int(loaded.g_optimizer.iterations) == 2


@pytest.mark.parametrize("name", ("ci_jmvae", "cc_jmvae"))
def test_contrastive_jmvae_negatives_train_the_decoders_not_the_joint_encoder(name):
    model = _model(name)
    batch = {s.name: tf.random.stateless_uniform((4,) + s.shape, seed=(3, i))
             for i, s in enumerate(SMALL)}
    encoder = model.joint_encoder.trainable_variables
    decoders = [v for m in model.modalities for v in model.decoders[m].trainable_variables]
    with tf.GradientTape(persistent=True) as tape:
        _, _, cache = model.native(batch)
        negative = tf.reduce_sum(model.negative_term(batch, cache))
    assert all(g is None for g in tape.gradient(negative, encoder))
    grads = tape.gradient(negative, decoders)
    assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
    with tf.GradientTape() as tape:   # the native term still trains it
        positive = tf.reduce_sum(model.native(batch)[0])
    assert any(g is not None for g in tape.gradient(positive, encoder))
