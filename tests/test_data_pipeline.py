"""tf.data pipelines: shapes, determinism, O(1) resume, epoch coverage, pools, eval/unimodal."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conftest import make_toy_dataset
from mmali_tf.data import pipeline
from mmali_tf.data.specs import ModalitySpec, PairedDataset, PairedSplit

A = ModalitySpec("a", (1,), "vector", "feature_mlp")
B = ModalitySpec("b", (2,), "vector", "feature_mlp")


def id_dataset(num_pairs: int, pool_b=None) -> PairedDataset:
    """Vector dataset whose values reveal indices: a[i] = i, b[i] = (i + 1000, -i), pairs i-i."""
    i = np.arange(num_pairs)
    split = PairedSplit(
        instances={"a": i[:, None].astype(np.float32),
                   "b": np.stack([i + 1000, -i], axis=1).astype(np.float32)},
        labels={"a": (i % 10).astype(np.int32), "b": (i % 10).astype(np.int32)},
        pairs=np.stack([i, i], axis=1).astype(np.int32),
        unpaired={"a": i.astype(np.int32),
                  "b": (i if pool_b is None else np.asarray(pool_b)).astype(np.int32)})
    return PairedDataset("ids", (A, B), split, split)


def take(dataset: tf.data.Dataset, n: int) -> list[dict[str, np.ndarray]]:
    return [{k: v.numpy() for k, v in b.items()} for b in dataset.take(n)]


def test_shapes_dtypes_static_and_values():
    ds = make_toy_dataset()
    stream = pipeline.train_batches(ds, batch_size=8, draws=4, seed=0)
    spec = stream.element_spec
    assert spec["hand"].shape == (32, 28, 28, 1) and spec["print"].shape == (32, 32, 32, 3)
    assert spec["label"].shape == (32,) and spec["label"].dtype == tf.int32
    assert spec["hand"].dtype == tf.float32 and set(spec) == {"hand", "print", "label"}
    index = {m: {x.tobytes(): i for i, x in enumerate(ds.train.instances[m])}
             for m in ds.modalities}
    pairs = {tuple(p) for p in ds.train.pairs}
    for batch in take(stream, 3):
        assert 0.0 <= batch["hand"].min() and batch["print"].max() <= 1.0
        for r in range(32):
            ih = index["hand"][np.round(batch["hand"][r] * 255).astype(np.uint8).tobytes()]
            ip = index["print"][np.round(batch["print"][r] * 255).astype(np.uint8).tobytes()]
            assert (ih, ip) in pairs
            assert batch["label"][r] == ds.train.labels["hand"][ih]


def test_deterministic_per_seed():
    ds = make_toy_dataset()
    a = take(pipeline.train_batches(ds, 16, 2, seed=5), 4)
    b = take(pipeline.train_batches(ds, 16, 2, seed=5), 4)
    c = take(pipeline.train_batches(ds, 16, 2, seed=6), 4)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not all(np.array_equal(x["hand"], z["hand"]) for x, z in zip(a, c))


@pytest.mark.parametrize("unpaired_pool", [False, True])
def test_resume_equals_the_continued_stream(unpaired_pool):
    ds = id_dataset(100, pool_b=np.arange(0, 100, 3))     # 6 pair batches / epoch, 2 pool
    full = take(pipeline.train_batches(ds, 8, 2, seed=1, unpaired_pool=unpaired_pool), 15)
    for k in (1, 5, 6, 11):                               # across epoch boundaries
        resumed = take(pipeline.train_batches(ds, 8, 2, seed=1, start_step=k,
                                              unpaired_pool=unpaired_pool), 15 - k)
        for x, y in zip(full[k:], resumed):
            assert set(x) == set(y)
            for key in x:
                np.testing.assert_array_equal(x[key], y[key])


def test_epochs_cover_pairs_without_replacement_and_reshuffle():
    ds = id_dataset(100)                       # rows 16 -> 6 batches per epoch, 4 dropped
    batches = take(pipeline.train_batches(ds, 8, 2, seed=3), 12)
    epochs = [np.concatenate([b["a"][:, 0] for b in batches[e * 6:(e + 1) * 6]])
              for e in range(2)]
    for ids in epochs:
        assert len(ids) == 96 and len(np.unique(ids)) == 96       # no repeats in an epoch
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(np.sort(epochs[0]), np.arange(96))  # a random subset dropped
    for b in batches:                                             # rows stay paired
        np.testing.assert_array_equal(b["b"][:, 0], b["a"][:, 0] + 1000)


def test_unpaired_pool_keys_draw_only_from_pools():
    pool_b = np.arange(0, 100, 2)
    ds = id_dataset(100, pool_b=pool_b)
    stream = pipeline.train_batches(ds, 5, 2, seed=0, unpaired_pool=True)
    assert stream.element_spec["b_unpaired"].shape == (10, 2)
    batches = take(stream, 5)                                     # one pool epoch of b
    drawn = np.concatenate([b["b_unpaired"][:, 0] - 1000 for b in batches])
    assert set(batches[0]) == {"a", "b", "label", "a_unpaired", "b_unpaired"}
    np.testing.assert_array_equal(np.sort(drawn), pool_b)
    paired = np.concatenate([b["a"][:, 0] for b in batches])
    assert not np.array_equal(paired, np.concatenate([b["a_unpaired"][:, 0]
                                                      for b in batches]))


def test_batch_larger_than_data_is_rejected():
    with pytest.raises(ValueError, match="lower --batch_size"):
        pipeline.train_batches(id_dataset(10), 8, 2, seed=0)


def test_eval_batches_in_order_with_partial_last_batch():
    ds = make_toy_dataset()
    batches = take(pipeline.eval_batches(ds, "test", 7), 100)
    n = ds.test.num_pairs
    assert [len(b["label"]) for b in batches] == [7] * (n // 7) + ([n % 7] if n % 7 else [])
    hand = np.concatenate([b["hand"] for b in batches])
    np.testing.assert_allclose(hand, ds.test.instances["hand"][ds.test.pairs[:, 0]] / 255.0,
                               rtol=1e-6)
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(labels, ds.test.pair_labels())
    limited = take(pipeline.eval_batches(ds, "test", 7, limit=10), 100)
    assert [len(b["label"]) for b in limited] == [7, 3]


@pytest.mark.parametrize("shuffle", [False, True])
def test_unimodal_batches_every_instance_once(shuffle):
    ds = id_dataset(23)
    batches = take(pipeline.unimodal_batches(ds, "b", "train", 5, shuffle=shuffle, seed=2), 100)
    assert set(batches[0]) == {"b", "label"} and len(batches) == 5
    ids = np.concatenate([-b["b"][:, 1] for b in batches]).astype(int)
    np.testing.assert_array_equal(np.sort(ids), np.arange(23))
    assert np.array_equal(ids, np.arange(23)) != shuffle
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), ids % 10)
    with pytest.raises(KeyError, match="unknown modality"):
        pipeline.unimodal_batches(ds, "zzz", "train", 5)


def test_augmented_stream_is_deterministic_resumable_and_only_touches_its_modality():
    ds = make_toy_dataset()
    image = [s.name for s in ds.specs if s.kind == "image"][0]
    plain = list(pipeline.train_batches(ds, 4, 1, seed=3).take(3))
    aug = list(pipeline.train_batches(ds, 4, 1, seed=3, augment=(image,)).take(3))
    again = list(pipeline.train_batches(ds, 4, 1, seed=3, start_step=2, augment=(image,)).take(1))
    np.testing.assert_array_equal(again[0][image], aug[2][image])
    for p, a in zip(plain, aug):
        assert not np.allclose(p[image], a[image])
        for key in p:
            if key != image:
                np.testing.assert_array_equal(p[key], a[key])
    with pytest.raises(ValueError, match="--augment=nope: not an image modality"):
        pipeline.train_batches(ds, 4, 1, seed=3, augment=("nope",))


def test_affine_transform_identity_and_pure_shift():
    from mmali_tf.data import augment
    img = np.zeros((1, 8, 8, 1), np.float32)
    img[0, 2, 3, 0] = 1.0
    t = augment.affine_transforms(8, 8, tf.zeros([1]), tf.ones([1]), tf.constant([[2.0, 1.0]]))
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=img, transforms=t, output_shape=[8, 8], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT").numpy()
    assert out[0, 3, 5, 0] == 1.0 and out.sum() == 1.0      # moved by (x + 2, y + 1)
