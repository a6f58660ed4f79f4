"""Five-modality bundles: export and the runtime translate from any subset of modalities."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mmali_tf.export.onnx_export import export_bundle
from mmali_tf.export.runtime import Bundle
from mmali_tf import latent as latent_lib
from mmali_tf import models
from mmali_tf.data.specs import ModalitySpec

SPECS = tuple(ModalitySpec(f"m{k}", (4, 4, 3), "image", "mnist_mlp") for k in range(5))
TOL = dict(rtol=1e-4, atol=1e-5)


def _model(name: str, **over):
    cfg = {"latent_dim": 6, "style_dim": 0, "ema_decay": 0.0, "seed": 0, "init": "torch"}
    cfg.update(over)
    model = models.build(name, SPECS, cfg)
    model.build_from_specs()
    return model


def _x(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 4, 4, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def mopoe_bundle(tmp_path_factory):
    model = _model("mopoe")
    path = tmp_path_factory.mktemp("poly") / "mopoe"
    export_bundle(model, path, weights="raw",
                  graphs=["encoder_m0", "fuse_poe", "translate_subset_to_m4",
                          "translate_m1_to_m4"])
    return model, Bundle(path)


def test_translate_from_a_subset_decodes_the_fused_sample(mopoe_bundle):
    """translate_from({m0, m2, m3}, m4) = decode_m4(mean + sd * noise) of the subset's PoE
    (no prior expert: a proper subset), with the noise the runtime draws from the seed."""
    model, bundle = mopoe_bundle
    xs = {m: _x(3, k) for k, m in enumerate(("m0", "m2", "m3"))}
    out = bundle.translate_from(xs, "m4", seed=0)
    assert out.shape == (3, 4, 4, 3)
    np.testing.assert_array_equal(out, bundle.translate_from(xs, "m4", seed=0))
    params = {m: model.encode(m, tf.constant(x), ema=False) for m, x in xs.items()}
    mean, logvar = model.fuse(params)
    noise = bundle.noise((3, 6), np.random.default_rng(0))
    z = latent_lib.reparameterize(mean, logvar, tf.constant(noise))
    np.testing.assert_allclose(out, model.decode("m4", z, ema=False).numpy(), **TOL)
    # the fuse graph serves any subset of the five in one call
    f_mean, _ = bundle.fuse({m: tuple(np.asarray(t) for t in p) for m, p in params.items()},
                            "poe")
    np.testing.assert_allclose(f_mean, mean.numpy(), **TOL)
    # with every modality present the product gains the prior expert (MoPoE's full set)
    xs = {m: _x(3, k) for k, m in enumerate(model.modalities)}
    params = {m: model.encode(m, tf.constant(x), ema=False) for m, x in xs.items()}
    f_mean, f_logvar = bundle.fuse({m: tuple(np.asarray(t) for t in p)
                                    for m, p in params.items()}, "poe")
    want = latent_lib.product_of_experts([p[0] for p in params.values()],
                                         [p[1] for p in params.values()], prior_expert=True)
    np.testing.assert_allclose(f_logvar, want[1].numpy(), **TOL)
    np.testing.assert_allclose(f_mean, want[0].numpy(), **TOL)


def test_translate_from_validates_its_inputs(mopoe_bundle):
    _, bundle = mopoe_bundle
    with pytest.raises(ValueError, match="also a source"):
        bundle.translate_from({"m4": _x(2, 0), "m0": _x(2, 1)}, "m4")
    with pytest.raises(ValueError, match="batch sizes"):
        bundle.translate_from({"m0": _x(2, 0), "m1": _x(3, 1)}, "m4")
    with pytest.raises(ValueError, match="at least one source"):
        bundle.translate_from({}, "m4")
    # one source: the pairwise graph
    np.testing.assert_array_equal(bundle.translate_from({"m1": _x(2, 0)}, "m4", seed=5),
                                  bundle.translate("m1", "m4", _x(2, 0), seed=5))


def test_mixture_models_translate_each_example_from_one_source(tmp_path):
    """MMVAE+ (default fusion moe_mean): every row equals the translation from one source."""
    model = _model("mmvae_plus", latent_dim=6, style_dim=2, learn_prior=False)
    path = tmp_path / "mmvae_plus"
    export_bundle(model, path, weights="raw",
                  graphs=["translate_m0_to_m4", "translate_m1_to_m4"])
    bundle = Bundle(path)
    xs = {"m0": _x(40, 0), "m1": np.ones((40, 4, 4, 3), np.float32)}
    out = bundle.translate_from(xs, "m4", seed=1)
    assert out.shape == (40, 4, 4, 3) and np.all(np.isfinite(out))
    # decode the posterior means: a row's distance to each source's mean translation tells
    # which source it came from; both sources are used
    means = {m: bundle.translate(m, "m4", x, sample=False) for m, x in xs.items()}
    dist = np.stack([np.abs(out - means[m]).mean(axis=(1, 2, 3)) for m in ("m0", "m1")])
    picked = dist.argmin(axis=0)
    assert 5 < picked.sum() < 35, picked
