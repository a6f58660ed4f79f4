"""Image datasets from TensorFlow Datasets (`mnist`, `svhn_cropped`) already prepared locally.

`tensorflow_datasets` is imported lazily and never downloads: the user prepares the data
beforehand (`tfds build mnist svhn_cropped`, or any earlier `tfds.load`), in TFDS's data
directory ($TFDS_DATA_DIR or ~/tensorflow_datasets).
"""

from __future__ import annotations

import numpy as np

SUPPORTED = ("mnist", "svhn_cropped")


def load_images(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, H, W, C), int32 labels (N,)) of a prepared TFDS dataset split."""
    if name not in SUPPORTED:
        raise ValueError(f"TFDS dataset {name!r} is not supported; expected one of {SUPPORTED}")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ValueError("--use_tfds needs the tensorflow_datasets package, which is not "
                         "installed (pip install -e \".[tfds]\", prepare the data with "
                         f"`tfds build {name}`, or drop --use_tfds and use local files)") from e
    try:
        images, labels = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1,
                                                 as_supervised=True, download=False))
    except Exception as e:  # TFDS raises assorted errors when the data is not prepared
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FileNotFoundError(f"TFDS dataset {name}/{split} is not prepared locally "
                                f"({first_line}); run `tfds build {name}` with network access "
                                "first or drop --use_tfds") from e
    return np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int32)
