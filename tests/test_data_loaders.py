"""File-backed loaders on tiny files written here: MNIST IDX, SVHN .mat, rotated views, .npz."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
from scipy import io as sio

from mmali_tf import data
from mmali_tf.data import idx
from mmali_tf.data.rotated import rotate

MNIST_TRAIN = np.array([5, 6, 7, 8, 9, 10, 11, 12, 13, 14])    # per-class counts
SVHN_TRAIN = np.array([9, 8, 7, 6, 5, 4, 3, 12, 12, 12])
MNIST_TEST = np.array([3] * 10)
SVHN_TEST = np.array([2, 4, 2, 4, 2, 4, 2, 4, 2, 4])


def _labels(counts, rng):
    return rng.permutation(np.repeat(np.arange(10), counts)).astype(np.uint8)


def write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    blob = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(blob)


def write_mnist(directory, rng, gz=False, train=MNIST_TRAIN, test=MNIST_TEST):
    os.makedirs(directory, exist_ok=True)
    out = {}
    for split, counts in (("train", train), ("t10k", test)):
        y = _labels(counts, rng)
        x = rng.integers(0, 256, size=(len(y), 28, 28), dtype=np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(os.path.join(directory, f"{split}-images-idx3-ubyte{suffix}"), x, gz)
        write_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte{suffix}"), y, gz)
        out[split] = (x, y)
    return out


def write_svhn(directory, rng):
    os.makedirs(directory, exist_ok=True)
    out = {}
    for split, counts in (("train", SVHN_TRAIN), ("test", SVHN_TEST)):
        y = _labels(counts, rng).astype(np.int64)
        x = rng.integers(0, 256, size=(32, 32, 3, len(y)), dtype=np.uint8)
        sio.savemat(os.path.join(directory, f"{split}_32x32.mat"),
                    {"X": x, "y": np.where(y == 0, 10, y)[:, None]})
        out[split] = (x, y)
    return out


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    return tmp_path, write_mnist(tmp_path / "mnist", rng, gz=True), write_svhn(tmp_path, rng)


def _check_rule(split, n_l, dm):
    assert split.num_pairs == dm * n_l.sum()
    for k, m in enumerate(split.labels):
        col = split.pairs[:, k]
        y = split.labels[m]
        np.testing.assert_array_equal(y[col], split.labels[next(iter(split.labels))][
            split.pairs[:, 0]])
        for c in range(10):   # the first n_l instances of class c, each used exactly dm times
            kept = np.flatnonzero(y == c)[:n_l[c]]
            used, times = np.unique(col[y[col] == c], return_counts=True)
            np.testing.assert_array_equal(used, kept)
            assert (times == dm).all()


def test_mnist_svhn_pairing_rule(files):
    root, mnist, svhn = files
    ds = data.load("mnist_svhn", {"data_dir": str(root), "data_multiplication": 4, "seed": 3})
    assert ds.modalities == ("mnist", "svhn")
    _check_rule(ds.train, np.minimum(MNIST_TRAIN, SVHN_TRAIN), 4)
    _check_rule(ds.test, np.minimum(MNIST_TEST, SVHN_TEST), 4)
    np.testing.assert_array_equal(ds.train.instances["mnist"][..., 0], mnist["train"][0])
    np.testing.assert_array_equal(ds.train.instances["svhn"],
                                  np.transpose(svhn["train"][0], (3, 0, 1, 2)))
    np.testing.assert_array_equal(ds.train.labels["svhn"], svhn["train"][1])   # 10 -> 0
    assert len(ds.train.unpaired["svhn"]) == SVHN_TRAIN.sum()


@pytest.mark.parametrize("kw, expected", [
    ({"max_per_class": 6}, np.minimum(np.minimum(MNIST_TRAIN, SVHN_TRAIN), 6)),
    ({"use_all": True, "percentage": 0.5, "max_per_class": 1},
     np.minimum((0.5 * MNIST_TRAIN).astype(int), (0.5 * SVHN_TRAIN).astype(int))),
    ({"percentage": 0.5, "max_per_class": 3},
     np.minimum(np.minimum((0.5 * MNIST_TRAIN).astype(int), (0.5 * SVHN_TRAIN).astype(int)), 3)),
])
def test_mnist_svhn_subset_rules(files, kw, expected):
    root, _, _ = files
    ds = data.load("mnist_svhn", {"data_dir": str(root), "data_multiplication": 2, **kw})
    _check_rule(ds.train, expected, 2)
    _check_rule(ds.test, np.minimum(MNIST_TEST, SVHN_TEST), 2)   # test: every instance


def test_raw_idx_in_data_dir_root(tmp_path):
    rng = np.random.default_rng(1)
    written = write_mnist(tmp_path, rng, gz=False)
    loaded = idx.load_mnist({"data_dir": str(tmp_path)})
    np.testing.assert_array_equal(loaded["test"][0][..., 0], written["t10k"][0])
    np.testing.assert_array_equal(loaded["test"][1], written["t10k"][1])


def test_missing_files_name_paths_and_sources(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        data.load("mnist_svhn", {"data_dir": str(tmp_path)})
    msg = str(e.value)
    assert os.path.join(str(tmp_path), "mnist", "train-images-idx3-ubyte.gz") in msg
    assert "--use_tfds" in msg and "mnist" in msg.lower() and "\n" not in msg
    write_mnist(tmp_path, np.random.default_rng(0))
    with pytest.raises(FileNotFoundError, match=r"train_32x32\.mat.*svhn.*housenumbers"):
        data.load("mnist_svhn", {"data_dir": str(tmp_path)})


def test_corrupt_files_raise_value_errors(tmp_path):
    write_mnist(tmp_path, np.random.default_rng(0))
    images = tmp_path / "train-images-idx3-ubyte"
    blob = images.read_bytes()
    images.write_bytes(b"\x00\x00\x09\x03" + blob[4:])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*magic"):
        idx.load_mnist({"data_dir": str(tmp_path)})
    images.write_bytes(blob[:-100])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*header shape"):
        idx.load_mnist({"data_dir": str(tmp_path)})
    images.unlink()
    gz = tmp_path / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(blob)[:200])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz"):
        idx.load_mnist({"data_dir": str(tmp_path)})
    gz.write_bytes(gzip.compress(blob))
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    write_idx(labels, np.zeros(7, np.uint8))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.*\(30,\)"):
        idx.load_mnist({"data_dir": str(tmp_path)})
    write_mnist(tmp_path, np.random.default_rng(0))
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file at all" * 10)
    (tmp_path / "test_32x32.mat").write_bytes(b"")
    with pytest.raises(ValueError, match=r"train_32x32\.mat"):
        data.load("mnist_svhn", {"data_dir": str(tmp_path)})


def test_use_tfds_without_prepared_data_is_one_clear_error(tmp_path):
    with pytest.raises((ValueError, FileNotFoundError), match="tensorflow_datasets|tfds build"):
        data.load("mnist_svhn", {"data_dir": str(tmp_path), "use_tfds": True})


def test_multimnist_rotation_direction_and_pairing(tmp_path):
    rng = np.random.default_rng(2)
    written = write_mnist(tmp_path, rng)
    ds = data.load("multimnist", {"data_dir": str(tmp_path), "base_set": "mnist",
                                  "num_views": 4, "data_multiplication": 3})
    assert ds.modalities == ("rot0", "rot90", "rot180", "rot270")
    assert all(s.shape == (28, 28, 1) and s.network == "mnist_mlp" for s in ds.specs)
    img = np.zeros((28, 28), np.uint8)
    img[0, 27] = 255                     # top-right corner
    img[5, 20] = 100
    rotated = [ds.train.instances[m][0, ..., 0] for m in ds.modalities]
    base = written["train"][0][0]
    np.testing.assert_array_equal(rotated[0], base)
    for k in range(4):
        np.testing.assert_array_equal(rotated[k], np.rot90(base, k))
    # counter-clockwise: top-right -> top-left -> bottom-left -> bottom-right
    assert np.rot90(img, 1)[0, 0] == 255 and np.rot90(img, 2)[27, 0] == 255
    r = rotate(img[None, ..., None], 1)[0, ..., 0]
    assert r[0, 0] == 255 and r[7, 5] == 100
    _check_rule(ds.train, MNIST_TRAIN, 3)
    _check_rule(ds.test, MNIST_TEST, 3)
    assert not np.array_equal(ds.train.pairs[:, 0], ds.train.pairs[:, 1])


def test_fashion_sources(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "FASHION_SYSTEM_DIR", str(tmp_path / "not_installed"))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion_rotated", {"data_dir": str(tmp_path)})
    write_mnist(tmp_path / "fashion-mnist", np.random.default_rng(4), gz=True)
    ds = data.load("fashion_rotated", {"data_dir": str(tmp_path), "num_views": 3,
                                       "data_multiplication": 2})
    assert ds.name == "fashion_rotated" and ds.modalities == ("rot0", "rot90", "rot180")
    _check_rule(ds.train, MNIST_TRAIN, 2)
    mm = data.load("multimnist", {"data_dir": str(tmp_path), "base_set": "fashion"})
    np.testing.assert_array_equal(mm.train.instances["rot0"], ds.train.instances["rot0"])


def _write_features(path, with_pairs=True, **override):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n_img in (("train", 6), ("test", 3)):
        img_y = np.arange(n_img) % 4
        arrays[f"caption_{split}"] = rng.normal(size=(10 * n_img, 8)).astype(np.float32)
        arrays[f"image_{split}"] = rng.normal(size=(n_img, 5)).astype(np.float32)
        arrays[f"caption_label_{split}"] = np.repeat(img_y, 10)
        arrays[f"image_label_{split}"] = img_y
        if with_pairs:
            t = np.arange(10 * n_img)
            arrays[f"pairs_{split}"] = np.stack([t, t // 10], axis=1)
    arrays.update(override)
    np.savez(path, **arrays)
    return arrays


def test_features_cub_style_pairs(tmp_path):
    path = tmp_path / "cub.npz"
    arrays = _write_features(path)
    ds = data.load("features", {"features_file": str(path)})
    assert ds.modalities == ("caption", "image") and ds.num_classes == 4
    cap, img = ds.specs
    assert cap.shape == (8,) and img.shape == (5,) and cap.kind == "vector"
    assert cap.network == "feature_mlp" and cap.likelihood == "laplace"
    assert cap.likelihood_scale == 0.01
    assert cap.value_range == (float(arrays["caption_train"].min()),
                               float(arrays["caption_train"].max()))
    assert ds.train.num_pairs == 60 and ds.test.num_pairs == 30
    np.testing.assert_array_equal(ds.train.pairs[:, 1], np.arange(60) // 10)
    assert ds.train.instances["image"].dtype == np.float32


def test_features_row_pairing_and_errors(tmp_path):
    path = tmp_path / "f.npz"
    rng = np.random.default_rng(0)
    np.savez(path, a_train=rng.normal(size=(7, 3)), b_train=rng.normal(size=(7, 2)),
             a_test=rng.normal(size=(4, 3)), b_test=rng.normal(size=(4, 2)),
             label_train=np.arange(7) % 3, label_test=np.arange(4) % 3)
    ds = data.load("features", {"features_file": str(path)})
    np.testing.assert_array_equal(ds.train.pairs, np.stack([np.arange(7)] * 2, axis=1))
    bad = tmp_path / "bad.npz"
    _write_features(bad, pairs_train=np.zeros((60, 3), np.int64))
    with pytest.raises(ValueError, match=r"pairs_train.*\(P, 2\)"):
        data.load("features", {"features_file": str(bad)})
    _write_features(bad, pairs_train=np.full((60, 2), 99))
    with pytest.raises(ValueError, match=r"pairs_train\[:, 0\] indexes outside"):
        data.load("features", {"features_file": str(bad)})
    _write_features(bad, with_pairs=False)
    with pytest.raises(ValueError, match=r"\[60, 6\] rows; give pairs_train"):
        data.load("features", {"features_file": str(bad)})
    _write_features(bad, image_label_train=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="image_label_train has 2 labels"):
        data.load("features", {"features_file": str(bad)})
    np.savez(bad, a_train=np.zeros((3, 2)), label_train=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="a_train but no a_test"):
        data.load("features", {"features_file": str(bad)})
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        data.load("features", {"features_file": str(tmp_path / "missing.npz")})
    with pytest.raises(ValueError, match="--features_file"):
        data.load("features", {})


def test_fashion_pair_halves_rendering_and_pairing(tmp_path, monkeypatch):
    from mmali_tf.data import fashion_pair

    monkeypatch.setattr(idx, "FASHION_SYSTEM_DIR", str(tmp_path / "not_installed"))
    config = {"data_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache"),
              "data_multiplication": 2}
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion_pair", config)
    source = write_mnist(tmp_path / "fashion-mnist", np.random.default_rng(5))
    ds = data.load("fashion_pair", config)
    assert ds.name == "fashion_pair" and ds.modalities == ("grey", "colour")
    for split, key, counts in (("train", "train", MNIST_TRAIN), ("test", "t10k", MNIST_TEST)):
        x, y = source[key]
        part = ds.split(split)
        grey_idx, colour_idx = fashion_pair.halves(y.astype(np.int32), split)
        assert not set(grey_idx) & set(colour_idx)                  # disjoint halves
        assert len(grey_idx) + len(colour_idx) == len(y)
        np.testing.assert_array_equal(part.instances["grey"][..., 0], x[grey_idx])
        np.testing.assert_array_equal(part.labels["colour"], y[colour_idx])
        assert part.instances["colour"].shape == (len(colour_idx), 32, 32, 3)
        assert part.instances["colour"].dtype == np.uint8
        # many-to-many by class: every pair shares its class; dm * sum_l min(n_grey, n_colour)
        pair_y = [part.labels[m][part.pairs[:, k]] for k, m in enumerate(ds.modalities)]
        np.testing.assert_array_equal(pair_y[0], pair_y[1])
        per_class = [min(np.sum(y[grey_idx] == c), np.sum(y[colour_idx] == c))
                     for c in range(10)]
        assert part.num_pairs == 2 * sum(per_class) and sum(per_class) < min(counts.sum(), 99)
    again = data.load("fashion_pair", {**config, "seed": 1})       # cached images, new pairs
    np.testing.assert_array_equal(again.train.instances["colour"], ds.train.instances["colour"])
    assert not np.array_equal(again.train.pairs, ds.train.pairs)


def test_fashion_pair_colour_rendering():
    from mmali_tf.data import fashion_pair

    n = 200
    blank = np.zeros((n, 28, 28, 1), np.uint8)
    solid = np.full((n, 28, 28, 1), 255, np.uint8)
    rng = np.random.default_rng(0)
    # a solid garment fills its 28x28 box in the text colour: the box centre differs from the
    # background by the scheme's contrast (0.4) less texture and noise; the box covers at most
    # one of the four corners, so the farthest corner is background
    img = fashion_pair.render_colour(solid, blank, rng).astype(np.float64) / 255.0
    luma = img @ np.array([0.299, 0.587, 0.114])
    corners = luma[:, [0, 0, 31, 31], [0, 31, 0, 31]]
    gap = np.abs(corners - luma[:, 14:18, 14:18].mean(axis=(1, 2))[:, None]).max(axis=1)
    assert np.all(gap > 0.2)
    # distractors: slices of pool garments at the left/right edges only, in about
    # DISTRACTOR_PROB of the images per side; the middle columns stay background
    img = fashion_pair.render_colour(blank, solid, rng).astype(np.float64) / 255.0
    luma = img @ np.array([0.299, 0.587, 0.114])
    middle = luma[:, :, 10:22]
    edge_jump = np.abs(luma[:, 16, 1] - np.median(middle[:, 4:28], axis=(1, 2))) > 0.3
    assert 0.4 < edge_jump.mean() < 0.8
    assert np.all(np.abs(middle - np.median(middle, axis=(1, 2), keepdims=True)).max(
        axis=(1, 2)) < 0.5)
