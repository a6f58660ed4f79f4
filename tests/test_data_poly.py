"""Five-modality datasets: `polydigits` (procedural, cached) and the `polymnist` PNG loader on
small generated files."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from mmali_tf import data
from mmali_tf.data import digits, polydigits


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("poly_cache")


@pytest.fixture(scope="module")
def poly(cache_dir):
    return data.load("polydigits", {"cache_dir": str(cache_dir), "data_multiplication": 2})


def test_polydigits_modalities_share_only_the_class(poly):
    assert poly.modalities == ("m0", "m1", "m2", "m3", "m4")
    assert all(s.shape == (28, 28, 3) for s in poly.specs)
    for split in (poly.train, poly.test):
        labels = np.stack([split.labels[m][split.pairs[:, k]]
                           for k, m in enumerate(poly.modalities)])
        assert np.all(labels == labels[:1])                     # every pair agrees on the class
        # many-to-many: the same hand digit is not always paired with itself
        assert np.mean(split.pairs[:, 0] != split.pairs[:, 1]) > 0.5
    n_train, n_test = (len(i) for i in digits.split_indices(
        digits.hand_images()[1], "hand"))
    assert len(poly.train.instances["m0"]) == n_train and len(poly.test.instances["m3"]) == n_test
    assert poly.train.num_pairs == 2 * n_train


def test_polydigits_textures_differ_and_digit_is_inverted(poly):
    x = {m: poly.train.instances[m].astype(np.float64) / 255.0 for m in poly.modalities}
    means = np.array([x[m].mean(axis=(0, 1, 2)) for m in poly.modalities])      # (5, 3)
    stds = np.array([x[m].std() for m in poly.modalities])
    assert np.all(stds > 0.1)
    dist = np.abs(means[:, None] - means[None]).sum(-1) + np.abs(stds[:, None] - stds[None])
    assert np.all(dist[~np.eye(5, dtype=bool)] > 0.02), dist    # five distinct textures
    # on the digit the colours are 1 - background: the same texture crop never matches
    hand, _ = digits.hand_images()
    tex = polydigits.textures()[0]
    one = polydigits.composite(hand[:3], tex, np.random.default_rng(0))
    again = polydigits.composite(np.zeros_like(hand[:3]), tex, np.random.default_rng(0))
    on = hand[:3, ..., 0] > polydigits.THRESHOLD
    np.testing.assert_allclose(one[on].astype(int), 255 - again[on].astype(int), atol=1)
    np.testing.assert_array_equal(one[~on], again[~on])


def test_polydigits_is_cached_and_deterministic(poly, cache_dir):
    files = sorted(os.listdir(cache_dir))
    assert any(f.startswith("polydigits-") and f.endswith(".npz") for f in files)
    again = data.load("polydigits", {"cache_dir": str(cache_dir), "data_multiplication": 2})
    np.testing.assert_array_equal(again.train.instances["m4"], poly.train.instances["m4"])
    np.testing.assert_array_equal(again.train.pairs, poly.train.pairs)
    other = data.load("polydigits", {"cache_dir": str(cache_dir), "data_multiplication": 2,
                                     "seed": 3})
    assert not np.array_equal(other.train.pairs, poly.train.pairs)
    np.testing.assert_array_equal(other.test.instances["m1"], poly.test.instances["m1"])


# ------------------------------------------------------------------------------ polymnist
def _write_polymnist(root, counts=(("train", 12), ("test", 5)), modalities=3, seed=0):
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in counts:
        labels = rng.integers(0, 10, size=n)
        for k in range(modalities):
            d = os.path.join(root, "MMNIST", split, f"m{k}")
            os.makedirs(d, exist_ok=True)
            for i, y in enumerate(labels):
                img = rng.integers(0, 256, size=(28, 28, 3), dtype=np.uint8)
                Image.fromarray(img).save(os.path.join(d, f"{i}.{y}.png"))
                written[(split, k, i)] = (img, int(y))
    return written


def test_polymnist_reads_png_dirs_and_keeps_published_tuples(tmp_path):
    written = _write_polymnist(tmp_path)
    cfg = {"data_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache")}
    ds = data.load("polymnist", cfg)
    assert ds.modalities == ("m0", "m1", "m2")
    assert ds.train.num_pairs == 12 and ds.test.num_pairs == 5
    # files sort numerically by index (10.y after 9.y); row i holds file i of every modality
    for i in (0, 9, 10, 11):
        for k in range(3):
            img, y = written[("train", k, i)]
            row = ds.train.pairs[i, k]
            np.testing.assert_array_equal(ds.train.instances[f"m{k}"][row], img)
            assert ds.train.labels[f"m{k}"][row] == y
    # cached: a second load reads the .npz; touching a file invalidates the key
    assert any(f.startswith("polymnist-train-") for f in os.listdir(tmp_path / "cache"))
    again = data.load("polymnist", cfg)
    np.testing.assert_array_equal(again.test.instances["m2"], ds.test.instances["m2"])


def test_polymnist_bad_layouts_fail_with_one_line_messages(tmp_path):
    cfg = {"data_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(FileNotFoundError, match="MMNIST/train"):
        data.load("polymnist", cfg)
    _write_polymnist(tmp_path)
    m1 = tmp_path / "MMNIST" / "train" / "m1"
    os.remove(m1 / sorted(os.listdir(m1))[0])
    with pytest.raises(ValueError, match="different files"):
        data.load("polymnist", cfg)
    bad = tmp_path / "bad"
    _write_polymnist(bad, modalities=2)
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(bad / "MMNIST" / "test" / "m0" / "x.png")
    with pytest.raises(ValueError, match="is not named <index>.<label>.png"):
        data.load("polymnist", {"data_dir": str(bad), "cache_dir": str(tmp_path / "c2")})
