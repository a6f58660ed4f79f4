"""Paired multimodal datasets: `load(name, config) -> PairedDataset`.

`config` is the dict of flag values (data_dir, cache_dir, use_tfds, data_multiplication,
max_per_class, percentage, use_all, num_views, base_set, features_file,
digits_print_per_class, seed); missing keys take the flags' defaults. Datasets are declared
where they are defined (`@mmali_tf.registry.register_dataset`) and imported lazily, so
`import mmali_tf.data` stays light (no TensorFlow).
"""

from __future__ import annotations

from typing import Any, Mapping

from mmali_tf import registry
from mmali_tf.data.specs import ModalitySpec, PairedDataset, PairedSplit

__all__ = ["ModalitySpec", "PairedDataset", "PairedSplit", "dataset_names", "load"]


def dataset_names() -> tuple[str, ...]:
    """Registered dataset names (plugins included once loaded)."""
    return registry.names("dataset")


def load(name: str, config: Mapping[str, Any]) -> PairedDataset:
    """Load dataset `name` configured by the flag values in `config`.

    Raises ValueError for an unknown name or a dataset flag that `name` does not read.
    """
    from mmali_tf import flags as flags_lib

    flags_lib.define_train_flags()
    flags_lib.check_dataset_flags({**dict(config), "dataset": name})
    return registry.load("dataset", name)(config)
