"""Paired multimodal datasets: `load(name, config) -> PairedDataset`.

`config` is the dict of flag values; each dataset reads the fields of its settings class
(`data/settings.py`), and missing keys take their defaults. Datasets are declared where they
are defined (`@mmali_tf.registry.register_dataset`) and imported lazily, so `import
mmali_tf.data` stays light (no TensorFlow, no absl).
"""

from __future__ import annotations

from typing import Any, Mapping

from mmali_tf import registry
from mmali_tf.data.specs import ModalitySpec, PairedDataset, PairedSplit

__all__ = ["ModalitySpec", "PairedDataset", "PairedSplit", "check_dataset_flags",
           "dataset_names", "load"]


def dataset_names() -> tuple[str, ...]:
    """Registered dataset names (plugins included once loaded)."""
    return registry.names("dataset")


def load(name: str, config: Mapping[str, Any]) -> PairedDataset:
    """Load dataset `name` configured by the flag values in `config`.

    Raises ValueError for an unknown name or a dataset flag that `name` does not read.
    """
    check_dataset_flags({**dict(config), "dataset": name})
    return registry.load("dataset", name)(config)


def check_dataset_flags(config: Mapping[str, Any]) -> None:
    """ValueError when a dataset flag that the chosen dataset does not read is set.

    "Set" means different from its default (`data/settings.py`), so this works for parsed
    flags and for dict configs alike.
    """
    from mmali_tf.config import DataSettings

    dataset = DataSettings.from_config(config).dataset
    reads = registry.dataset_reads(dataset)
    defaults = {f.name: f.default for other in registry.names("dataset")
                for f in registry.settings_class("dataset", other).dataset_fields()}
    for name, default in defaults.items():
        if name not in reads and name in config and config[name] != default:
            listed = " ".join(f"--{f}" for f in reads) or "none"
            raise ValueError(f"--{name}={config[name]}: --dataset={dataset} does not read it "
                             f"(dataset flags it reads: {listed})")
