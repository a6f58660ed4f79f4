"""`--poly_network`: the PolyMNIST-style datasets with the MoPoE paper's convnets
(`polymnist_conv`, held equal to the authors' networks by tests/golden/test_mopoe_fidelity.py)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmali_tf import data, run_dir
from mmali_tf.models.vae import distributions as dists
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


def test_poly_network_is_a_shape_flag_of_both_datasets():
    for dataset in ("polymnist", "polydigits"):
        assert "poly_network" in run_dir.shape_flags("mopoe", dataset)
