"""The embedded `digits` dataset: images, split, pairing, determinism and its verified cache."""

from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import pytest

from mmali_tf import data
from mmali_tf.data import digits, fonts

PER_CLASS = 20


def _config(cache_dir, **kw):
    return {"cache_dir": str(cache_dir), "digits_print_per_class": PER_CLASS,
            "data_multiplication": 3, "seed": 0, **kw}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("digits_cache")


@pytest.fixture(scope="module")
def ds(cache_dir):
    return data.load("digits", _config(cache_dir))


def test_modalities_shapes_dtypes_and_ranges(ds):
    assert ds.modalities == ("hand", "print")
    assert ds.spec("hand").shape == (28, 28, 1) and ds.spec("print").shape == (32, 32, 3)
    for split in (ds.train, ds.test):
        hand, prints = split.instances["hand"], split.instances["print"]
        assert hand.dtype == np.uint8 and prints.dtype == np.uint8
        assert hand.shape[1:] == (28, 28, 1) and prints.shape[1:] == (32, 32, 3)
        assert hand.max() == 255 and hand.min() == 0
        # MNIST-like margin: the digit lives in the central 20x20 box.
        assert hand[:, :4].max() == 0 and hand[:, :, 24:].max() == 0
        assert split.pairs.dtype == np.int32
    assert len(ds.train.instances["hand"]) + len(ds.test.instances["hand"]) == 1797


def test_print_images_have_readable_contrast(ds):
    prints = ds.train.instances["print"].astype(np.float32) / 255.0
    luma = prints @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    spread = np.percentile(luma, 95, axis=(1, 2)) - np.percentile(luma, 5, axis=(1, 2))
    assert spread.min() > 0.2, spread.min()
    assert prints.std(axis=0).mean() > 0.1          # colours and textures vary across images


def test_class_balance_and_fixed_split(ds, cache_dir):
    per_class_test = round(digits.TEST_FRACTION * PER_CLASS)
    np.testing.assert_array_equal(np.bincount(ds.test.labels["print"], minlength=10),
                                  np.full(10, per_class_test))
    np.testing.assert_array_equal(np.bincount(ds.train.labels["print"], minlength=10),
                                  np.full(10, PER_CLASS - per_class_test))
    hand_test = np.bincount(ds.test.labels["hand"], minlength=10)
    assert 340 <= hand_test.sum() <= 380 and hand_test.min() >= 34
    other_seed = data.load("digits", _config(cache_dir, seed=7))
    for m in ds.modalities:          # the split never depends on the training seed
        np.testing.assert_array_equal(other_seed.test.instances[m], ds.test.instances[m])
        np.testing.assert_array_equal(other_seed.train.instances[m], ds.train.instances[m])


def test_pairs_are_same_class_and_follow_the_rule(ds):
    for split, dm in ((ds.train, 3), (ds.test, 3)):
        h, p = split.pairs[:, 0], split.pairs[:, 1]
        np.testing.assert_array_equal(split.labels["hand"][h], split.labels["print"][p])
        n_l = np.minimum(np.bincount(split.labels["hand"], minlength=10),
                         np.bincount(split.labels["print"], minlength=10))
        assert split.num_pairs == dm * n_l.sum()
        np.testing.assert_array_equal(np.bincount(split.labels["print"][p], minlength=10),
                                      dm * n_l)
        # each kept instance is used exactly dm times
        assert set(np.unique(np.bincount(p)[np.unique(p)])) == {dm}


def test_unpaired_print_extras_in_pool(cache_dir):
    ds = data.load("digits", _config(cache_dir, max_per_class=10))
    used = np.unique(ds.train.pairs[:, 1])
    pool = ds.train.unpaired["print"]
    assert len(used) == 10 * 10 and len(pool) == len(ds.train.instances["print"]) == 160
    extras = np.setdiff1d(pool, used)
    assert len(extras) == 60
    np.testing.assert_array_equal(np.bincount(ds.train.labels["print"][extras]), np.full(10, 6))


def test_deterministic_for_a_seed(ds, cache_dir):
    again = data.load("digits", _config(cache_dir))
    np.testing.assert_array_equal(again.train.pairs, ds.train.pairs)
    np.testing.assert_array_equal(again.test.pairs, ds.test.pairs)
    other = data.load("digits", _config(cache_dir, seed=1))
    assert not np.array_equal(other.train.pairs, ds.train.pairs)
    labels = np.tile(np.arange(10), 3)
    np.testing.assert_array_equal(fonts.render_prints(labels, np.random.default_rng(5)),
                                  fonts.render_prints(labels, np.random.default_rng(5)))


def test_corrupted_cache_is_detected_and_rebuilt(tmp_path):
    cfg = _config(tmp_path / "c1")
    first = digits.instances(cfg)
    (npz,) = glob.glob(str(tmp_path / "c1" / "digits-*.npz"))
    assert os.path.exists(npz[:-4] + ".json")
    with open(npz, "r+b") as f:
        f.truncate(os.path.getsize(npz) // 2)
    with pytest.warns(UserWarning, match="corrupt"):
        rebuilt = digits.instances(cfg)
    for k in first:
        np.testing.assert_array_equal(rebuilt[k], first[k])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # the rebuilt entry verifies cleanly
        digits.instances(cfg)
    other = digits.instances(_config(tmp_path / "c2"))   # a different cache dir works too
    assert glob.glob(str(tmp_path / "c2" / "digits-*.npz"))
    np.testing.assert_array_equal(other["print"], first["print"])


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MMALI_CACHE", str(tmp_path / "env_cache"))
    digits.instances({"digits_print_per_class": PER_CLASS})
    assert glob.glob(str(tmp_path / "env_cache" / "digits-*.npz"))


def test_multimnist_on_digits_base(cache_dir):
    mm = data.load("multimnist", _config(cache_dir, base_set="digits", num_views=2))
    base = digits.splits(_config(cache_dir))["train"]["hand"][0]
    np.testing.assert_array_equal(mm.train.instances["rot0"], base)
    np.testing.assert_array_equal(mm.train.instances["rot90"], np.rot90(base, 1, axes=(1, 2)))


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset 'nope'; expected one of digits, "):
        data.load("nope", {})
