"""Paired multimodal datasets: `load(name, config) -> PairedDataset`.

`config` is the dict of flag values (data_dir, cache_dir, use_tfds, data_multiplication,
max_per_class, percentage, use_all, num_views, base_set, features_file,
digits_print_per_class, seed); missing keys take the flags' defaults. Sources are imported
lazily, so `import mmali_tf.data` stays light (no TensorFlow).
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from mmali_tf.data.specs import ModalitySpec, PairedDataset, PairedSplit

_LOADERS = {
    "digits": ("mmali_tf.data.digits", "load"),
    "mnist_svhn": ("mmali_tf.data.svhn", "load"),
    "multimnist": ("mmali_tf.data.rotated", "load_multimnist"),
    "fashion_rotated": ("mmali_tf.data.rotated", "load_fashion_rotated"),
    "features": ("mmali_tf.data.features", "load"),
    "polydigits": ("mmali_tf.data.polydigits", "load"),
    "polymnist": ("mmali_tf.data.polymnist", "load"),
}
NAMES = tuple(_LOADERS)

__all__ = ["NAMES", "ModalitySpec", "PairedDataset", "PairedSplit", "load"]


def load(name: str, config: Mapping[str, Any]) -> PairedDataset:
    """Load dataset `name` (one of NAMES) configured by the flag values in `config`."""
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(NAMES)}")
    module, fn = _LOADERS[name]
    return getattr(importlib.import_module(module), fn)(config)
