"""`--poly_network`: the PolyMNIST-style datasets with the MoPoE paper's convnets
(`polymnist_conv`, held equal to the authors' networks by tests/golden/test_mopoe_fidelity.py)
or the MMVAE+ paper's ResNets (`mmvaeplus_resnet`, tests/golden/test_mmvae_plus_fidelity.py)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmali_tf import data, run_dir
from mmali_tf.models.vae import distributions as dists
from mmali_tf.models.vae.mmvae_plus import MMVAEPlus
from mmali_tf.models.vae.mopoe import MoPoE
from test_data_poly import _write_polymnist


def test_polymnist_with_the_authors_convnets_trains(tmp_path):
    _write_polymnist(tmp_path)
    cfg = {"data_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache"),
           "poly_network": "polymnist_conv"}
    ds = data.load("polymnist", cfg)
    assert {s.network for s in ds.specs} == {"polymnist_conv"}
    model = MoPoE(ds.specs, {"latent_dim": 8, "style_dim": 0, "beta": 2.5, "seed": 0,
                             "init": "torch"})
    model.build_from_specs()
    model.compile()
    batch = {m: tf.constant(ds.train.instances[m][:8], tf.float32) / 255.0
             for m in ds.modalities}
    grads, loss, _ = model.compute_gradients(batch)
    assert np.isfinite(float(loss)) and all(np.isfinite(g.numpy()).all() for g in grads)
    # linear decoder output, and the Laplace mean is not clamped to (0, 1) as a sigmoid's is
    out = model.decoders["m0"](tf.fill([1, 8], 50.0)).numpy()
    assert out.min() < 0.0 or out.max() > 1.0
    lik = dists.likelihood(ds.specs[0], tf.fill([1, 28, 28, 3], 2.0))
    assert float(tf.reduce_max(lik.mean())) == 2.0


def test_polymnist_with_the_mmvaeplus_resnets_trains(tmp_path):
    """MMVAE+ on `--poly_network=mmvaeplus_resnet`: one trunk per latent part, so the style
    half of the encoder output does not move when only the content trunk's weights change."""
    _write_polymnist(tmp_path)
    cfg = {"data_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache"),
           "poly_network": "mmvaeplus_resnet"}
    ds = data.load("polymnist", cfg)
    model = MMVAEPlus(ds.specs, {"latent_dim": 6, "style_dim": 2, "seed": 0, "init": "torch",
                                 "learn_prior": False, "num_importance_samples": 1})
    model.build_from_specs()
    model.compile()
    batch = {m: tf.constant(ds.train.instances[m][:2], tf.float32) / 255.0
             for m in ds.modalities}
    logs = model.train_step(batch)
    assert np.isfinite(float(logs["loss"]))
    enc, x = model.encoders["m0"], batch["m0"]
    before = enc(x).numpy()
    content = enc.get_layer("content_trunk")
    for v in content.trainable_variables:
        v.assign(v + 0.1)
    after = enc(x).numpy()
    style = np.r_[0:2, 6:8]                      # [mean_w, mean_z | h_w, h_z], w: 2 of 6
    np.testing.assert_array_equal(after[:, style], before[:, style])
    assert not np.allclose(np.delete(after, style, 1), np.delete(before, style, 1))


def test_poly_network_is_a_shape_flag_of_both_datasets():
    for dataset in ("polymnist", "polydigits"):
        assert "poly_network" in run_dir.shape_flags("mopoe", dataset)
