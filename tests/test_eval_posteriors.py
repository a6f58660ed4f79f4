"""Evaluation decodes each model's own posteriors: constructed JMVAE, MMVAE and mmJSD-MS
models whose right and wrong evaluation give opposite answers, collapse detection, and the
protocol defaults."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mmali_tf import evaluate, models
from mmali_tf.metrics import coherence, latent_accuracy, report
from mmali_tf.metrics.common import InferenceView, sample_rows
from test_metrics import CLFS, IdentityModel, _dense, vector_dataset


class JointInput(keras.layers.Layer):
    """Joint encoder test double: [a, b] -> [8 a | -12] (class in the mean, tiny variance)."""

    def call(self, xs):
        a = xs[0]
        return keras.ops.concatenate([8.0 * a, keras.ops.full_like(a, -12.0)], axis=-1)


def _vae(name: str, ds, **config):
    cfg = {"latent_dim": 10, "style_dim": 0, "ema_decay": 0.0, "jit_compile": False,
           "init": "torch", **config}
    return models.build(name, ds.specs, cfg)  # unbuilt: networks can still be replaced


def _set_linear(model, encoders=None, decoders=None) -> None:
    """Replace networks with fixed dense maps {modality: (kernel, bias)}."""
    for m, (k, b) in (encoders or {}).items():
        model.encoders[m] = _dense(k.shape[0], k, b)
    for m, (k, b) in (decoders or {}).items():
        model.decoders[m] = _dense(k.shape[0], k, b)


def _coherence(model, ds, fusions=("poe",)):
    view = InferenceView.of(model, "raw")
    rows = sample_rows(ds.test.num_pairs, None, 0)
    return coherence.conditional_coherence(view, CLFS, ds, "test", rows, 64, 0, fusions)


def test_jmvae_synergy_and_joint_probe_use_the_joint_encoder():
    """Unimodal encoders ignore their input, the joint encoder sees the class: the model's
    synergy is perfect where a PoE of the unimodal encoders is at chance."""
    ds = vector_dataset(n_per_class=40)
    model = _vae("jmvae", ds)
    blind = (np.zeros((10, 20)), np.zeros(20))
    identity = (np.eye(10), np.zeros(10))
    _set_linear(model, {"a": blind, "b": blind}, {"a": identity, "b": identity})
    inp = [keras.Input((10,)), keras.Input((10,))]
    model.joint_encoder = keras.Model(inp, JointInput()(inp))
    _, _, synergy = _coherence(model, ds).accuracies()
    assert synergy["model"] == {"a": 1.0, "b": 1.0}
    assert max(synergy["poe"].values()) < 0.25
    view = InferenceView.of(model, "raw")
    acc = latent_accuracy.latent_accuracy(view, ds, "test", "clean", epochs=20, batch_size=16)
    assert acc["joint"]["both"] > 0.97 and acc["a"]["both"] < 0.3


def test_mmvae_synergy_samples_the_mixture_not_one_gaussian():
    """Two experts 100 apart: sampling a uniformly chosen expert decodes the class, the
    moment-matched Gaussian (sd ~50) is noise."""
    ds = vector_dataset(n_per_class=40)
    model = _vae("mmvae", ds, posterior="normal", learn_prior=False)
    scale = np.full(10, -12.0)  # softplus(-12) + 1e-6: tiny
    kernel = np.concatenate([8.0 * np.eye(10), np.zeros((10, 10))], axis=1)
    experts = {"a": (kernel, np.concatenate([np.full(10, 50.0), scale])),
               "b": (kernel, np.concatenate([np.full(10, -50.0), scale]))}
    identity = (np.eye(10), np.zeros(10))
    _set_linear(model, experts, {"a": identity, "b": identity})
    _, _, synergy = _coherence(model, ds, ("moe_mean",)).accuracies()
    assert synergy["model"] == {"a": 1.0, "b": 1.0}
    assert max(synergy["moe_mean"].values()) < 0.3
    view = InferenceView.of(model, "raw")
    means, _ = view.joint_posterior({m: view.encode(m, ds.test.instances[m][:4]) for m in "ab"},
                                    {m: ds.test.instances[m][:4] for m in "ab"})
    assert means.shape == (2, 4, 10)


@pytest.mark.parametrize("name,config", [
    ("mmjsd_ms", {}),
    ("mmvae_plus", {"posterior": "normal", "learn_prior": False, "num_importance_samples": 1})])
def test_cross_generation_takes_the_target_style_from_the_prior(name, config):
    """Source a writes the class into its *style*, target b decodes only its style: keeping
    the source's style would translate perfectly; a prior style is at chance (mmJSD-MS, and
    MMVAE+, whose decoders never see another modality's w in training)."""
    ds = vector_dataset(n_per_class=40)
    model = _vae(name, ds, latent_dim=20, style_dim=10, **config)
    kernel = np.concatenate([8.0 * np.eye(10), np.zeros((10, 30))], axis=1)
    enc = (kernel, np.concatenate([np.zeros(20), np.full(20, -12.0)]))
    reads_style = (np.concatenate([np.eye(10), np.zeros((10, 10))]), np.zeros(10))
    _set_linear(model, {"a": enc, "b": enc}, {"a": reads_style, "b": reads_style})
    cross, self_rec, synergy = _coherence(model, ds).accuracies()
    assert self_rec == {"a": 1.0, "b": 1.0}  # reconstruction keeps the own style
    assert max(cross.values()) < 0.25
    if name == "mmjsd_ms":  # MMVAE+'s synergy decodes the target's own w, as its diagonal
        assert max(synergy["model"].values()) < 0.25
    z = np.ones((3, 20), np.float32)
    out = np.asarray(model.cross_latent(z, "b"))
    np.testing.assert_array_equal(out[:, 10:], z[:, 10:])
    assert not np.allclose(out[:, :10], 1.0)


class ConstantDecoderModel(IdentityModel):
    """Encoders as IdentityModel, every decoder emits class 3 whatever z is."""

    def build_networks(self) -> None:
        super().build_networks()
        bias = np.zeros(10)
        bias[3] = 5.0
        for spec in self.specs:
            self.decoders[spec.name] = _dense(self.layout.latent_dim,
                                              np.zeros((self.layout.latent_dim, 10)), bias)


def _metrics(model, ds, **opts):
    options = evaluate.EvalOptions(num_samples=200, probe_epochs=2, ll_items=0, seed=0, **opts)
    metrics, _ = evaluate.evaluate_model(model, ds, options, step=1, classifiers=CLFS,
                                         classifier_accuracy={"a": 1.0, "b": 1.0})
    report.validate_metrics(metrics)
    return metrics


def test_constant_decoder_is_reported_as_collapsed():
    ds = vector_dataset(n_per_class=20)
    metrics = _metrics(ConstantDecoderModel(ds.specs), ds)
    stats = metrics["prediction_stats"]
    assert stats["cross/a->b"] == {"top_share": 1.0, "top_class": 3, "entropy_bits": 0.0}
    assert metrics["cross_coherence"]["a->b"] == pytest.approx(0.1)  # one class's share
    assert set(metrics["meta"]["collapsed"]) == set(stats)
    text = report.render_report(metrics)
    assert "| cross a->b | 10.00 | 100.00 | 0.00 | collapsed |" in text
    assert any("COLLAPSED" in n for n in metrics["meta"]["notes"])
    columns, values = report.comparison({"run": metrics})
    table = report.comparison_markdown(columns, values, {"run": metrics})
    assert "10.00 (collapsed)" in table

    healthy = _metrics(IdentityModel(ds.specs), ds)
    assert healthy["meta"]["collapsed"] == [] and healthy["self_coherence"] == {"a": 1.0,
                                                                               "b": 1.0}
    assert "collapsed" not in report.render_report(healthy).split("## Coherence")[1]


def test_protocols_choose_the_reference_scripts_epochs_and_batch():
    clean = evaluate.EvalOptions().resolved()
    ref = evaluate.EvalOptions(protocol="reference").resolved()
    assert (clean.probe_epochs, clean.classifier_epochs, clean.classifier_batch) == (30, 10, 64)
    assert (ref.probe_epochs, ref.classifier_epochs, ref.classifier_batch) == (100, 100, 256)
    assert evaluate.EvalOptions(protocol="reference", probe_epochs=3).resolved().probe_epochs == 3
    with pytest.raises(ValueError, match="protocol 'best'"):
        evaluate.EvalOptions(protocol="best").resolved()
    ds = vector_dataset(n_per_class=10)
    meta = _metrics(IdentityModel(ds.specs), ds, protocol="reference")["meta"]
    assert (meta["protocol"], meta["probe_epochs"]) == ("reference", 2)
    assert report.eval_dir_name("reference") == "reference"
    assert report.eval_dir_name("clean", "sutter") == "clean_sutter"
