"""Coherence classifiers: architectures, training, protocol modes, checksummed cache."""

from __future__ import annotations

import glob
import os

import keras
import numpy as np
import pytest

from conftest import HAND, PRINT, make_toy_dataset
from mmali_tf.data.specs import ModalitySpec
from mmali_tf.metrics import classifiers

VEC = ModalitySpec("v", (16,), "vector", "feature_mlp")
#: a colour image of a size no network family was written for, through the MLP family.
CAM = ModalitySpec("cam", (48, 48, 3), "image", "mnist_mlp")
TINY = ModalitySpec("tiny", (8, 8, 1), "image", "mnist_mlp")


@pytest.mark.parametrize("spec,arch,dropout", [
    (HAND, "mnist_cnn", True), (PRINT, "conv", False), (VEC, "mlp", True),
    (CAM, "conv", False), (TINY, "conv", False)])
def test_architecture_follows_kind_and_shape(spec, arch, dropout):
    assert classifiers.architecture(spec) == arch
    features, head, head_dropout = classifiers.build_networks(spec, 10)
    out = head(features(np.zeros((3,) + spec.shape, np.float32)))
    assert tuple(out.shape) == (3, 10)
    assert head_dropout is dropout
    if spec is HAND:  # reference MNIST classifier: 320 -> 50 features
        assert features.output.shape[-1] == 50
    if arch == "conv":  # strided blocks down to <= 4x4, then a 'valid' block to 1x1 x 128
        assert features.output.shape[-1] == 128
    if spec is PRINT:  # the reference SVHN classifier's parameter count
        assert features.count_params() == 232352


def test_48x48_colour_classifier_learns_the_classes():
    ds = make_toy_dataset(specs=(CAM,), n_per_class=12, dm=1)
    clf = classifiers.train_classifier(CAM, ds.train.instances["cam"], ds.train.labels["cam"],
                                       ds.test.instances["cam"], ds.test.labels["cam"],
                                       epochs=6, batch_size=16, seed=0)
    assert clf.test_accuracy >= 0.8


def _hand_data():
    ds = make_toy_dataset(specs=(HAND,), n_per_class=12, dm=1)
    return (ds.train.instances["hand"], ds.train.labels["hand"], ds.test.instances["hand"],
            ds.test.labels["hand"])


def test_train_cache_and_corrupt_cache_retrains(tmp_path):
    data = _hand_data()
    kwargs = dict(dataset="toy", protocol="reference", cache_dir=str(tmp_path), epochs=6,
                  batch_size=16, seed=3)
    clf, cached = classifiers.load_or_train(HAND, *data, **kwargs)
    assert not cached and clf.test_accuracy >= 0.8
    # the reference MNIST classifier keeps its last dropout on at test time (seeded here)
    assert clf.always_on_dropout == 0.5
    x = data[2].astype(np.float32) / 255.0
    a = clf.logits(x, keras.random.SeedGenerator(7)).numpy()
    np.testing.assert_array_equal(a, clf.logits(x, keras.random.SeedGenerator(7)).numpy())
    assert not np.allclose(a, clf.logits(x, keras.random.SeedGenerator(8)).numpy())
    again, cached = classifiers.load_or_train(HAND, *data, **kwargs)
    assert cached and again.test_accuracy == clf.test_accuracy
    assert again.always_on_dropout == 0.5
    np.testing.assert_array_equal(again.logits(x, keras.random.SeedGenerator(7)).numpy(), a)
    (entry,) = glob.glob(os.path.join(tmp_path, "classifiers", "toy-hand-reference-*.npz"))
    with open(entry, "r+b") as f:
        f.seek(100)
        f.write(b"corrupted!")
    with pytest.warns(UserWarning, match="corrupt"):
        retrained, cached = classifiers.load_or_train(HAND, *data, **kwargs)
    assert not cached
    assert retrained.test_accuracy == clf.test_accuracy  # seeded training is reproducible
    _, cached = classifiers.load_or_train(HAND, *data, **kwargs)
    assert cached


def test_svhn_style_classifier_trains_and_bad_protocol_is_rejected():
    ds = make_toy_dataset(specs=(PRINT,), n_per_class=4, dm=1)
    clf = classifiers.train_classifier(PRINT, ds.train.instances["print"],
                                       ds.train.labels["print"], ds.test.instances["print"],
                                       ds.test.labels["print"], epochs=1, batch_size=20)
    assert clf.always_on_dropout == 0.0 and 0.0 <= clf.test_accuracy <= 1.0  # clean protocol
    assert clf.predict(np.zeros((2, 32, 32, 3), np.float32)).shape == (2,)
    with pytest.raises(ValueError, match="protocol"):
        classifiers.train_classifier(PRINT, ds.train.instances["print"],
                                     ds.train.labels["print"], ds.test.instances["print"],
                                     ds.test.labels["print"], protocol="best")
