"""MultiMNIST-style datasets (6b5d/mmali datasets.py `MultiMNIST`): M views of one base set, view i rotated i*90 deg.

View `rot{90 i}` holds every base image rotated by i*90 degrees counter-clockwise
(`np.rot90(img, k=i)` on HxW, an exact pixel permutation). Each view is paired with the others
through independent same-class permutations of the same base images, `dm` times.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from mmali_tf.data import digits, idx
from mmali_tf.data.pairing import PairingRule, build_split, pairing_rng
from mmali_tf.data.settings import (BASE_SETS, FashionRotatedSettings, MultiMNISTSettings,
                                     PairingSettings, ViewsSettings)
from mmali_tf.data.specs import ModalitySpec, PairedDataset
from mmali_tf.registry import register_dataset


def view_names(num_views: int) -> tuple[str, ...]:
    """Modality names of the views: rot0, rot90, rot180, rot270 (first `num_views`)."""
    if not 2 <= num_views <= 4:
        raise ValueError(f"num_views must be 2, 3 or 4, got {num_views}")
    return tuple(f"rot{90 * i}" for i in range(num_views))


def rotate(images: np.ndarray, k: int) -> np.ndarray:
    """Images (N, H, W, C) rotated by k*90 degrees counter-clockwise."""
    return np.ascontiguousarray(np.rot90(images, k=k, axes=(1, 2)))


def _base_images(base_set: str, config: Mapping[str, Any]) -> dict[str, tuple[np.ndarray,
                                                                              np.ndarray]]:
    if base_set == "mnist":
        return idx.load_mnist(config)
    if base_set == "fashion":
        return idx.load_fashion(config)
    if base_set == "digits":
        return {s: parts["hand"] for s, parts in digits.splits(config).items()}
    raise ValueError(f"unknown base_set {base_set!r}; expected one of {BASE_SETS}")


def build(name: str, base: Mapping[str, tuple[np.ndarray, np.ndarray]],
          config: Mapping[str, Any]) -> PairedDataset:
    """A rotated-views PairedDataset from base (images, labels) per split."""
    settings = ViewsSettings.from_config(config)
    names = view_names(settings.num_views)
    rule, seed = PairingRule.from_config(config), PairingSettings.from_config(config).seed
    splits = {}
    for s in ("train", "test"):
        images, labels = base[s]
        if images.ndim != 4 or images.shape[1] != images.shape[2]:
            raise ValueError(f"{name}: base images of split {s} have shape {images.shape}; "
                             "expected square (N, H, W, C)")
        splits[s] = build_split({m: rotate(images, k) for k, m in enumerate(names)},
                                {m: labels for m in names},
                                rule if s == "train" else rule.for_test(), pairing_rng(seed, s))
    shape = tuple(base["train"][0].shape[1:])
    specs = tuple(ModalitySpec(m, shape, "image", "mnist_mlp") for m in names)
    return PairedDataset(name=name, specs=specs, train=splits["train"], test=splits["test"])


@register_dataset("multimnist", settings=MultiMNISTSettings,
                  shape_flags=("base_set", "num_views"))
def load_multimnist(config: Mapping[str, Any]) -> PairedDataset:
    """`multimnist`: `num_views` rotated views of base set `base_set` (mnist, fashion, digits)."""
    base_set = MultiMNISTSettings.from_config(config).base_set
    return build("multimnist", _base_images(base_set, config), config)


@register_dataset("fashion_rotated", settings=FashionRotatedSettings,
                  shape_flags=("num_views",))
def load_fashion_rotated(config: Mapping[str, Any]) -> PairedDataset:
    """`fashion_rotated`: `num_views` rotated views of the real 70k Fashion-MNIST images."""
    return build("fashion_rotated", idx.load_fashion(config), config)
