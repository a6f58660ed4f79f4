"""The `mnist_label` dataset (MVAE's MNIST image + digit label): every image is paired with the
one-hot vector of its own label, batches arrive as [0, 1] images and one-hot float vectors,
and one MVAE step trains on them."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmali_tf import data
from mmali_tf.data.pipeline import eval_batches
from mmali_tf.models.vae.mvae import MVAE
from test_data_loaders import write_mnist


def test_images_pair_with_their_labels_and_train_one_mvae_step(tmp_path):
    written = write_mnist(tmp_path / "mnist", np.random.default_rng(0))
    ds = data.load("mnist_label", {"data_dir": str(tmp_path)})
    assert ds.modalities == ("image", "digit")
    assert [s.likelihood for s in ds.specs] == ["bernoulli_logits", "categorical"]
    for split, key in (("train", "train"), ("test", "t10k")):
        x, y = written[key]
        part = ds.split(split)
        np.testing.assert_array_equal(part.instances["image"][..., 0], x)
        np.testing.assert_array_equal(part.pairs, np.stack([np.arange(len(y)), y], axis=1))
    batch = next(iter(eval_batches(ds, "train", 8)))
    y = written["train"][1][:8]
    np.testing.assert_array_equal(batch["digit"].numpy(), np.eye(10, dtype=np.float32)[y])
    np.testing.assert_array_equal(batch["label"].numpy(), y)        # the class, as always
    assert batch["image"].dtype == tf.float32 and float(tf.reduce_max(batch["image"])) <= 1.0

    model = MVAE(ds.specs, dict(model="mvae", latent_dim=8, style_dim=0, seed=0))
    model.build_from_specs()
    model.compile()
    before = [v.numpy().copy() for v in model.generator_variables]
    logs = model.train_step(batch)
    assert np.isfinite(float(logs["loss"]))
    moved = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.generator_variables)]
    assert all(moved), "every encoder/decoder variable (incl. the label embedding) trains"
