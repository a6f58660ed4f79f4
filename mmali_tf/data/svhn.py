"""SVHN `*_32x32.mat` files and the `mnist_svhn` dataset (pairing of 6b5d/mmali datasets.py)."""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from mmali_tf.data import idx
from mmali_tf.data.pairing import PairingRule, build_split, pairing_rng
from mmali_tf.data.settings import MNISTSVHNSettings
from mmali_tf.data.specs import ModalitySpec, PairedDataset
from mmali_tf.registry import register_dataset

MNIST = ModalitySpec("mnist", (28, 28, 1), "image", "mnist_mlp")
SVHN = ModalitySpec("svhn", (32, 32, 3), "image", "svhn_conv")
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
SVHN_HOWTO = ("download it from http://ufldl.stanford.edu/housenumbers/ (train_32x32.mat, "
              "test_32x32.mat) or pass --use_tfds")


def read_svhn_mat(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 32, 32, 3), int32 labels (N,)) of an SVHN .mat file; label 10 -> 0."""
    from scipy import io as sio
    try:
        mat = sio.loadmat(path)
    except FileNotFoundError:
        raise
    except Exception as e:  # scipy raises ValueError/TypeError/OSError on broken files
        raise ValueError(f"SVHN file {path} is unreadable as a .mat file: {e}") from e
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"SVHN file {path} lacks the arrays 'X' and 'y' (has "
                         f"{sorted(k for k in mat if not k.startswith('__'))})")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise ValueError(f"SVHN file {path} has X {x.shape} and y {np.shape(mat['y'])}; "
                         "expected X (32, 32, 3, N) and y (N, 1)")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() > 10):
        raise ValueError(f"SVHN file {path} has labels in [{y.min()}, {y.max()}]; "
                         "expected 0..10")
    y[y == 10] = 0
    return np.ascontiguousarray(np.transpose(x, (3, 0, 1, 2)).astype(np.uint8)), y.astype(np.int32)


def load_svhn(config: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """SVHN train/test (the `extra` split is not used) from .mat files or TFDS."""
    settings = MNISTSVHNSettings.from_config(config)
    if settings.use_tfds:
        from mmali_tf.data import tfds
        return {s: tfds.load_images("svhn_cropped", s) for s in ("train", "test")}
    data_dir = settings.data_dir
    dirs = [data_dir, os.path.join(data_dir, "svhn")]
    out = {}
    for split, name in SVHN_FILES.items():
        paths = [os.path.join(d, name) for d in dirs]
        found = [p for p in paths if os.path.isfile(p)]
        if not found:
            raise FileNotFoundError(f"SVHN file {name} not found (searched: {', '.join(paths)});"
                                    f" {SVHN_HOWTO}")
        out[split] = read_svhn_mat(found[0])
    return out


@register_dataset("mnist_svhn", settings=MNISTSVHNSettings)
def load(config: Mapping[str, Any]) -> PairedDataset:
    """The `mnist_svhn` PairedDataset (modalities `mnist`, `svhn`), paired as 6b5d/mmali datasets.py `PairedMNISTSVHN` does."""
    mnist, svhn = idx.load_mnist(config), load_svhn(config)
    rule, seed = PairingRule.from_config(config), MNISTSVHNSettings.from_config(config).seed
    splits = {
        s: build_split({"mnist": mnist[s][0], "svhn": svhn[s][0]},
                       {"mnist": mnist[s][1], "svhn": svhn[s][1]},
                       rule if s == "train" else rule.for_test(), pairing_rng(seed, s))
        for s in ("train", "test")}
    return PairedDataset(name="mnist_svhn", specs=(MNIST, SVHN), train=splits["train"],
                         test=splits["test"])
