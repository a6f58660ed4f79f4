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


def _centre_darkening(prints: np.ndarray) -> float:
    """Mean luminance of the top rows minus that of the central 8x8 box, over all images:
    about 0 when text is as often light as dark, > 0 when dark text dominates."""
    luma = (prints.astype(np.float32) / 255.0) @ np.array([0.299, 0.587, 0.114], np.float32)
    mean = luma.mean(0)
    return float(mean[:4].mean() - mean[12:20, 12:20].mean())


def test_svhn_colours_keep_the_digit_in_the_mean_image_and_uniform_does_not():
    labels = np.repeat(np.arange(10), 40)
    rng = np.random.default_rng
    svhn = fonts.render_prints(labels, rng(3), "svhn")
    uniform = fonts.render_prints(labels, rng(3), "uniform")
    # both polarities equally likely (uniform) -> a flat grey mean image; a dominant polarity
    # (svhn: dark text) -> the digits' centre shows darker than the border
    assert abs(_centre_darkening(uniform)) < 0.03
    assert _centre_darkening(svhn) > 0.06
    # svhn colours are desaturated: mean channel spread per pixel well below uniform's
    chroma = {k: float((x.astype(np.float32) / 255.0).std(axis=-1).mean())
              for k, x in (("svhn", svhn), ("uniform", uniform))}
    assert chroma["svhn"] < 0.5 * chroma["uniform"], chroma


def test_svhn_colour_polarity_and_contrast():
    fg, bg = fonts.photo_colours(np.random.default_rng(0), 20000)
    luma = np.array([0.299, 0.587, 0.114])
    assert fg.min() >= 0.0 and fg.max() <= 1.0 and bg.min() >= 0.0 and bg.max() <= 1.0
    assert np.abs((fg - bg) @ luma).min() >= fonts.MIN_CONTRAST - 1e-9
    dark_text = float(np.mean(fg @ luma < bg @ luma))
    assert abs(dark_text - fonts.DARK_TEXT_SHARE) < 0.02, dark_text
    fg_u, bg_u = fonts._contrasting_colours(np.random.default_rng(0), 20000)
    assert abs(float(np.mean(fg_u @ luma < bg_u @ luma)) - 0.5) < 0.02


def test_distractor_probability_and_bad_render_options():
    labels = np.repeat(np.arange(10), 20)
    rng = np.random.default_rng
    ink = {p: (fonts.render_prints(labels, rng(4), "svhn", p).astype(np.float32) / 255.0)
           for p in (0.0, 1.0)}
    edges = {p: np.abs(np.diff(x[:, :, :6].mean(-1), axis=2)).mean() for p, x in ink.items()}
    assert edges[1.0] > 1.5 * edges[0.0], edges        # neighbours put strokes at the edges
    with pytest.raises(ValueError, match="unknown print colour scheme 'pastel'"):
        fonts.render_prints(labels, rng(0), "pastel")
    with pytest.raises(ValueError, match=r"distractor probability must be in \[0, 1\], got 2"):
        fonts.render_prints(labels, rng(0), "svhn", 2.0)


def test_render_options_are_cache_keys_and_the_version_rebuilds(tmp_path, monkeypatch):
    base = digits.instances(_config(tmp_path))
    uniform = digits.instances(_config(tmp_path, digits_print_colours="uniform"))
    fewer = digits.instances(_config(tmp_path, digits_distractor_prob=0.1))
    assert len(glob.glob(str(tmp_path / "digits-*.npz"))) == 3
    assert not np.array_equal(base["print"], uniform["print"])
    assert not np.array_equal(base["print"], fewer["print"])
    np.testing.assert_array_equal(base["hand"], uniform["hand"])
    monkeypatch.setattr(digits, "VERSION", digits.VERSION + 1)
    rebuilt = digits.instances(_config(tmp_path))
    assert len(glob.glob(str(tmp_path / "digits-*.npz"))) == 4   # a new entry, not the old one
    np.testing.assert_array_equal(rebuilt["print"], base["print"])


def test_pair_all_instances_puts_every_print_in_a_pair(cache_dir):
    ds = data.load("digits", _config(cache_dir, max_per_class=10000, pair_all_instances=True))
    for split in (ds.train, ds.test):
        h, p = split.pairs[:, 0], split.pairs[:, 1]
        np.testing.assert_array_equal(split.labels["hand"][h], split.labels["print"][p])
        assert set(np.unique(p)) == set(range(len(split.instances["print"])))
        assert set(np.unique(h)) == set(range(len(split.instances["hand"])))
        n_l = np.maximum(np.bincount(split.labels["hand"], minlength=10),
                         np.bincount(split.labels["print"], minlength=10))
        assert split.num_pairs == 3 * n_l.sum()
