"""Vector modalities from an .npz file (CUB-style precomputed features).

Arrays: `<m>_train`, `<m>_test` (float (N_m, D_m)) for every modality m, in the file's order
(which becomes the modality order); labels `<m>_label_<split>` or a shared `label_<split>`
whose length matches N_m; optional `pairs_<split>` int (P, M) index matrices (e.g. caption t
with image t // 10). Without them, row i of every modality pairs with row i. The pairing
flags (`--data_multiplication`, ...) do not apply, so setting one is refused.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from mmali_tf.data.pairing import full_pool
from mmali_tf.data.settings import FeaturesSettings
from mmali_tf.data.specs import ModalitySpec, PairedDataset, PairedSplit
from mmali_tf.registry import register_dataset

SPLITS = ("train", "test")


def _modalities(files: list[str], path: str) -> list[str]:
    names = [k[:-len("_train")] for k in files
             if k.endswith("_train") and k != "pairs_train" and k != "label_train"
             and "_label_" not in k]
    if not names:
        raise ValueError(f"features file {path} has no '<modality>_train' arrays (has {files})")
    for m in names:
        if f"{m}_test" not in files:
            raise ValueError(f"features file {path} has {m}_train but no {m}_test")
    return names


def _labels(z: Mapping[str, np.ndarray], m: str, split: str, n: int, path: str) -> np.ndarray:
    for key in (f"{m}_label_{split}", f"label_{split}"):
        if key in z:
            y = np.asarray(z[key]).reshape(-1)
            if len(y) != n:
                raise ValueError(f"features file {path}: {key} has {len(y)} labels but "
                                 f"{m}_{split} has {n} rows")
            if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
                raise ValueError(f"features file {path}: {key} must hold non-negative integers")
            return y.astype(np.int32)
    raise ValueError(f"features file {path} has no labels for {m}_{split} (expected "
                     f"{m}_label_{split} or label_{split})")


def _pairs(z: Mapping[str, np.ndarray], split: str, sizes: list[int], path: str) -> np.ndarray:
    key = f"pairs_{split}"
    if key not in z:
        if len(set(sizes)) != 1:
            raise ValueError(f"features file {path}: modalities of split {split} have "
                             f"{sizes} rows; give {key} (P, M) or equal row counts")
        return np.repeat(np.arange(sizes[0], dtype=np.int32)[:, None], len(sizes), axis=1)
    pairs = np.asarray(z[key])
    if pairs.ndim != 2 or pairs.shape[1] != len(sizes) or not np.issubdtype(pairs.dtype,
                                                                             np.integer):
        raise ValueError(f"features file {path}: {key} has shape {pairs.shape} and dtype "
                         f"{pairs.dtype}; expected integers of shape (P, {len(sizes)})")
    for k, n in enumerate(sizes):
        if pairs.size and (pairs[:, k].min() < 0 or pairs[:, k].max() >= n):
            raise ValueError(f"features file {path}: {key}[:, {k}] indexes outside [0, {n})")
    return pairs.astype(np.int32)


@register_dataset("features", settings=FeaturesSettings,
                  shape_flags=("features_file",))
def load(config: Mapping[str, Any]) -> PairedDataset:
    """The `features` PairedDataset read from `features_file`."""
    path = FeaturesSettings.from_config(config).features_file
    if not path:
        raise ValueError("dataset 'features' needs --features_file=<path to .npz>")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"features file {path} not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            z = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"features file {path} is not a readable .npz: {e}") from e
    names = _modalities(list(z), path)
    splits = {}
    for s in SPLITS:
        inst = {}
        for m in names:
            x = np.asarray(z[f"{m}_{s}"])
            if x.ndim != 2 or not np.issubdtype(x.dtype, np.number) or min(x.shape) < 1:
                raise ValueError(f"features file {path}: {m}_{s} has shape {x.shape} and dtype "
                                 f"{x.dtype}; expected a numeric (N, D) matrix")
            inst[m] = x.astype(np.float32)
        labels = {m: _labels(z, m, s, len(inst[m]), path) for m in names}
        splits[s] = PairedSplit(instances=inst, labels=labels,
                                pairs=_pairs(z, s, [len(inst[m]) for m in names], path),
                                unpaired=full_pool(inst))
    for m in names:
        d_train, d_test = (splits[s].instances[m].shape[1] for s in SPLITS)
        if d_train != d_test:
            raise ValueError(f"features file {path}: {m}_train has {d_train} columns but "
                             f"{m}_test has {d_test}")
    specs = tuple(
        ModalitySpec(m, (splits["train"].instances[m].shape[1],), "vector", "feature_mlp",
                     value_range=(float(splits["train"].instances[m].min()),
                                  float(splits["train"].instances[m].max())),
                     likelihood="laplace", likelihood_scale=0.01)
        for m in names)
    num_classes = int(max(int(y.max()) for sp in splits.values()
                          for y in sp.labels.values() if y.size)) + 1
    return PairedDataset(name="features", specs=specs, train=splits["train"],
                         test=splits["test"], num_classes=num_classes)
