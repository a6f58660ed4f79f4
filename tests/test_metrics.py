"""Metrics on constructed cases with known answers (coherence, probes, CCA, IWAE)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmali_tf.data.specs import ModalitySpec, PairedDataset, PairedSplit
from mmali_tf.metrics import cca, coherence, latent_accuracy, likelihood
from mmali_tf.metrics.common import InferenceView, sample_rows
from mmali_tf.models.base import MultimodalModel

VEC_A = ModalitySpec("a", (10,), "vector", "feature_mlp", likelihood="normal")
VEC_B = ModalitySpec("b", (10,), "vector", "feature_mlp", likelihood="normal")


def _dense(in_dim: int, kernel: np.ndarray, bias: np.ndarray) -> keras.Model:
    inp = keras.Input((in_dim,))
    layer = keras.layers.Dense(kernel.shape[1])
    model = keras.Model(inp, layer(inp))
    layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model


class IdentityModel(MultimodalModel):
    """Encoder: content = 8 * x (x ~ one-hot class), style = 0, tiny variance.

    Decoder: x = content. With `ignore_input`, the encoder outputs N(0, I) whatever x is.
    """

    registry_name = "identity_test"

    def __init__(self, specs, ignore_input: bool = False, **config):
        self.ignore_input = ignore_input
        super().__init__(specs, {"style_dim": 2, "latent_dim": 12, "ema_decay": 0.0, **config})

    def build_networks(self) -> None:
        s, d = self.layout.style_dim, self.layout.latent_dim
        for spec in self.specs:
            kernel = np.zeros((10, 2 * d))
            bias = np.zeros(2 * d)
            if not self.ignore_input:
                kernel[:, s:d] = 8.0 * np.eye(10)
                bias[d:] = -12.0
            self.encoders[spec.name] = _dense(10, kernel, bias)
            dec = np.zeros((d, 10))
            dec[s:, :] = np.eye(10)
            self.decoders[spec.name] = _dense(d, dec, np.zeros(10))


class ArgmaxClassifier:
    def predict(self, x, seed=None) -> np.ndarray:
        return np.argmax(np.asarray(x), axis=-1).astype(np.int32)


def _vector_split(rng: np.random.Generator, n_per_class: int) -> PairedSplit:
    labels = np.repeat(np.arange(10), n_per_class)
    inst = {m: (np.eye(10)[labels] + 0.05 * rng.standard_normal((len(labels), 10))
                ).astype(np.float32) for m in ("a", "b")}
    pairs = np.stack([np.arange(len(labels)), rng.permutation(len(labels))], axis=1)
    pairs[:, 1] = [rng.choice(np.flatnonzero(labels == labels[i])) for i in pairs[:, 0]]
    return PairedSplit(inst, {m: labels.copy() for m in inst}, pairs.astype(np.int32),
                       {m: np.arange(len(labels), dtype=np.int32) for m in inst})


def vector_dataset(n_per_class: int = 30, seed: int = 0) -> PairedDataset:
    rng = np.random.default_rng(seed)
    return PairedDataset("vec", (VEC_A, VEC_B), _vector_split(rng, n_per_class),
                         _vector_split(rng, n_per_class // 2))


CLFS = {"a": ArgmaxClassifier(), "b": ArgmaxClassifier()}


def test_identity_model_is_fully_coherent():
    ds = vector_dataset()
    view = InferenceView.of(IdentityModel(ds.specs), "ema")
    assert view.weights == "raw"  # no EMA -> falls back
    joint, hist = coherence.joint_coherence(view, CLFS, 500, 128, seed=0)
    assert joint == 1.0 and hist["a"].sum() == 500 and hist["a"].max() < 100
    rows = sample_rows(ds.test.num_pairs, None, 0)
    result = coherence.conditional_coherence(
        view, CLFS, ds, "test", rows, 64, 0, ("poe", "moe_mean", "geometric"))
    cross, self_rec, synergy = result.accuracies()
    assert cross == {"a->b": 1.0, "b->a": 1.0} and self_rec == {"a": 1.0, "b": 1.0}
    assert synergy == {f: {"a": 1.0, "b": 1.0}
                       for f in ("model", "poe", "moe_mean", "geometric")}
    np.testing.assert_array_equal(result.confusion()["a->b"], np.diag(np.full(10, 15)))
    stats = coherence.prediction_stats(result.histograms()["cross/a->b"])
    assert stats["top_share"] == pytest.approx(0.1)
    assert stats["entropy_bits"] == pytest.approx(math.log2(10))


def test_model_ignoring_its_input_is_at_chance():
    ds = vector_dataset(n_per_class=100)
    view = InferenceView.of(IdentityModel(ds.specs, ignore_input=True), "raw")
    rows = sample_rows(ds.test.num_pairs, None, 0)
    cross, _, synergy = coherence.conditional_coherence(view, CLFS, ds, "test", rows, 128, 0,
                                                        ("geometric",)).accuracies()
    for value in list(cross.values()) + list(synergy["geometric"].values()):
        assert abs(value - 0.1) < 0.05


def test_latent_probe_separable_content_and_noise_style():
    ds = vector_dataset()
    view = InferenceView.of(IdentityModel(ds.specs), "raw")
    acc = latent_accuracy.latent_accuracy(view, ds, "test", "clean", epochs=25, batch_size=8,
                                          seed=0)
    for source in ("a", "b"):
        assert acc[source]["both"] > 0.97 and acc[source]["content"] > 0.97
        assert acc[source]["style"] < 0.25  # pure posterior noise
    assert acc["joint"]["content"] > 0.97


def test_sutter_probe_uses_256_means_and_sees_the_separable_content():
    ds = vector_dataset()
    view = InferenceView.of(IdentityModel(ds.specs), "raw")
    acc = latent_accuracy.latent_accuracy(view, ds, "test", "clean", seed=0, probe="sutter")
    for source in ("a", "b"):
        assert acc[source]["content"] > 0.97 and acc[source]["style"] < 0.25
    assert acc["joint"]["content"] > 0.97
    with pytest.raises(ValueError, match="latent probe 'best'"):
        latent_accuracy.latent_accuracy(view, ds, "test", "clean", probe="best")


def test_fit_logistic_probe_known_answers():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 100)
    centres = 3.0 * rng.standard_normal((10, 5))
    sep = latent_accuracy.CodeSet(centres[y] + 0.1 * rng.standard_normal((1000, 5)),
                                  rng.standard_normal((1000, 5)), y)
    noise = latent_accuracy.CodeSet(rng.standard_normal((1000, 5)), None, y)
    assert latent_accuracy.fit_logistic_probe(sep, sep) > 0.99  # means only: logvar ignored
    assert latent_accuracy.fit_logistic_probe(noise, noise.take(np.arange(500))) < 0.2
    one_class = latent_accuracy.CodeSet(sep.mean, None, np.zeros(1000, dtype=int))
    with pytest.raises(ValueError, match=">= 2 classes"):
        latent_accuracy.fit_logistic_probe(one_class, sep)


@pytest.mark.parametrize("protocol", ["clean", "reference"])
def test_fit_probe_known_answers(protocol):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 40)
    centres = 3.0 * rng.standard_normal((10, 5))
    sep = latent_accuracy.CodeSet(centres[y] + 0.1 * rng.standard_normal((400, 5)), None, y)
    noise = latent_accuracy.CodeSet(rng.standard_normal((400, 5)), None, y)
    noise_test = latent_accuracy.CodeSet(rng.standard_normal((400, 5)), None, y)
    assert latent_accuracy.fit_probe(sep, sep, protocol, epochs=50, batch_size=16) > 0.99
    assert latent_accuracy.fit_probe(noise, noise_test, "clean", epochs=10) < 0.2
    # the reference protocol selects on test, so it can only be optimistic
    ref = latent_accuracy.fit_probe(noise, noise_test, "reference", epochs=10)
    assert ref >= latent_accuracy.fit_probe(noise, noise_test, "reference", epochs=1) - 1e-12
    with pytest.raises(ValueError, match="protocol"):
        latent_accuracy.fit_probe(sep, sep, "best")


def test_probe_min_updates_train_a_small_set_to_what_it_separates():
    """30 epochs of 2 batches (60 updates at lr 1e-3) under-fit small-scale separable codes;
    the `clean` minimum of updates makes the probe report the separability instead."""
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(10), 50)
    centres = 0.3 * rng.standard_normal((10, 20))
    codes = latent_accuracy.CodeSet(centres[y] + 0.03 * rng.standard_normal((500, 20)), None, y)
    test = latent_accuracy.CodeSet(centres[y] + 0.03 * rng.standard_normal((500, 20)), None, y)
    short = latent_accuracy.fit_probe(codes, test, "clean", epochs=30)
    full = latent_accuracy.fit_probe(codes, test, "clean", epochs=30,
                                     min_updates=latent_accuracy.SHI_MNIST_UPDATES)
    assert short < 0.8 and full > 0.97, (short, full)
    assert latent_accuracy.SHI_MNIST_UPDATES == 30 * 211        # 54,000 codes at batch 256


def _correlated(n: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(n)
    x1 = rng.standard_normal((n, 4))
    x2 = rng.standard_normal((n, 6))
    x1[:, 0] = u
    x2[:, 0] = rho * u + math.sqrt(1 - rho ** 2) * rng.standard_normal(n)
    # canonical correlations are invariant to invertible linear maps of each view
    return x1 @ rng.standard_normal((4, 4)) + 2.0, x2 @ rng.standard_normal((6, 6)) - 1.0


def test_cca_recovers_planted_correlation():
    a1, a2 = _correlated(28000, 0.8, 0)
    x1, x2, t1, t2 = a1[:20000], a2[:20000], a1[20000:], a2[20000:]
    batches = [(x1[i:i + 3000], x2[i:i + 3000]) for i in range(0, len(x1), 3000)]
    proj = cca.fit_cca(batches, k=3)
    assert abs(proj.correlations[0] - 0.8) < 0.02
    assert np.all(np.abs(proj.correlations[1:]) < 0.05)
    one = cca.fit_cca(batches, k=1)
    # k=1: cosine of scalars = sign agreement; E = 1 - 2 arccos(rho) / pi for Gaussians
    expected = 1 - 2 * math.acos(0.8) / math.pi
    assert abs(cca.cca_score(one, [(t1, t2)]) - expected) < 0.03
    shuffled = cca.cca_score(one, [(t1, np.random.default_rng(2).permutation(t2))])
    assert abs(shuffled) < 0.05
    equal_batches = [(t1[i:i + 1000], t2[i:i + 1000]) for i in range(0, 8000, 1000)]
    assert cca.cca_score(one, equal_batches, per_batch_mean=True) == pytest.approx(
        cca.cca_score(one, [(t1, t2)]), abs=1e-9)
    with pytest.raises(ValueError, match="k=9"):
        cca.fit_cca(batches, k=9)


class LinearGaussianModel(MultimodalModel):
    """z ~ N(0, I_2); x_m = W_m z + b_m + N(0, sigma^2 I); encoders are the exact likelihood
    experts, so PoE with the prior expert is the exact posterior of any subset."""

    registry_name = "linear_gaussian_test"
    default_fusion = "poe"
    prior_expert = True

    def __init__(self, specs, weights, sigma: float, scale_error: float = 1.0):
        self.weights_by_modality, self.sigma, self.scale_error = weights, sigma, scale_error
        super().__init__(specs, {"style_dim": 0, "latent_dim": 2, "ema_decay": 0.0})

    def build_networks(self) -> None:
        for spec in self.specs:
            w, b = self.weights_by_modality[spec.name]
            precision = np.diag(w.T @ w) / self.sigma ** 2  # columns of w are orthogonal
            k_mean = w @ np.diag(1.0 / np.diag(w.T @ w)) * self.scale_error  # least squares
            kernel = np.concatenate([k_mean, np.zeros_like(k_mean)], axis=1)
            bias = np.concatenate([-b @ k_mean, -np.log(precision)])
            self.encoders[spec.name] = _dense(len(b), kernel, bias)
            self.decoders[spec.name] = _dense(2, w.T, b)


def _gaussian_logpdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    diff = x - mean
    sign, logdet = np.linalg.slogdet(cov)
    maha = np.sum(diff @ np.linalg.inv(cov) * diff, axis=1)
    return -0.5 * (len(mean) * math.log(2 * math.pi) + logdet + maha)


def _linear_gaussian_setup(scale_error: float = 1.0):
    rng = np.random.default_rng(0)
    specs = tuple(ModalitySpec(m, (3,), "vector", "feature_mlp", likelihood="normal",
                               likelihood_scale=0.5) for m in ("a", "b"))
    weights = {}
    for m in ("a", "b"):
        q, _ = np.linalg.qr(rng.standard_normal((3, 2)))
        weights[m] = (q * np.array([1.5, 0.7]), rng.standard_normal(3))
    model = LinearGaussianModel(specs, weights, 0.5, scale_error)
    z = rng.standard_normal((64, 2))
    batch = {m: (z @ w.T + b + 0.5 * rng.standard_normal((64, 3))).astype(np.float32)
             for m, (w, b) in weights.items()}
    return model, weights, batch


def _closed_form(weights, batch, mods):
    w = np.concatenate([weights[m][0] for m in mods])
    b = np.concatenate([weights[m][1] for m in mods])
    x = np.concatenate([batch[m] for m in mods], axis=1)
    return _gaussian_logpdf(x, b, w @ w.T + 0.25 * np.eye(len(b)))


def test_iwae_matches_linear_gaussian_closed_form():
    model, weights, batch = _linear_gaussian_setup()
    view = InferenceView.of(model, "raw")
    gen = keras.random.SeedGenerator(0)
    # exact posteriors: every importance weight equals p(x), so K=1 is already exact
    for mods in (("a",), ("b",), ("a", "b")):
        est = likelihood.iwae_log_likelihood(view, batch, mods, mods, 1, gen)
        np.testing.assert_allclose(est, _closed_form(weights, batch, mods), atol=2e-3)
    # proposal q(z|x_a) for x_b: unbiased in p, tight with many samples
    est = likelihood.iwae_log_likelihood(view, batch, ("b",), ("a",), 2000, gen)
    assert abs(np.mean(est) - np.mean(_closed_form(weights, batch, ("b",)))) < 0.1


def test_iwae_with_a_poor_proposal_is_a_lower_bound_that_tightens():
    model, weights, batch = _linear_gaussian_setup(scale_error=0.6)
    view = InferenceView.of(model, "raw")
    gen = keras.random.SeedGenerator(1)
    truth = np.mean(_closed_form(weights, batch, ("a", "b")))
    k1 = np.mean(likelihood.iwae_log_likelihood(view, batch, ("a", "b"), ("a", "b"), 1, gen))
    k_many = np.mean(likelihood.iwae_log_likelihood(view, batch, ("a", "b"), ("a", "b"), 3000,
                                                    gen))
    assert k1 < k_many - 0.1
    assert abs(k_many - truth) < 0.1
    mixture = np.mean(likelihood.iwae_log_likelihood(view, batch, ("a", "b"), ("a", "b"), 3000,
                                                     gen, mixture=True))
    assert mixture < truth + 0.1


def test_likelihood_helpers():
    spec = ModalitySpec("x", (2,), "vector", "feature_mlp", likelihood="laplace",
                        likelihood_scale=0.75)
    x, loc = tf.constant([[0.2, 0.9]]), tf.constant([[0.5, 0.5]])
    expected = 2 * -math.log(1.5) - (0.3 + 0.4) / 0.75
    assert float(likelihood.data_log_likelihood(spec, x, loc)[0]) == pytest.approx(expected,
                                                                                    rel=1e-5)
    bern = ModalitySpec("x", (2,), "vector", "feature_mlp", likelihood="bernoulli")
    assert float(likelihood.data_log_likelihood(bern, x, loc)[0]) == pytest.approx(
        2 * math.log(0.5), rel=1e-5)
    z = tf.constant([[1.0]])
    lap = likelihood.latent_log_density(z, tf.zeros([1, 1]), tf.math.log(tf.constant([[2.0]])),
                                        "laplace")  # var 2 -> b = 1
    assert float(lap[0]) == pytest.approx(-math.log(2.0) - 1.0, rel=1e-5)
    keys = [likelihood.term_key(t, g) for t, g in likelihood.likelihood_terms(("a", "b"))]
    assert keys == ["a,b|a,b", "a|a,b", "b|a,b", "a|a", "a|b", "b|a", "b|b"]
