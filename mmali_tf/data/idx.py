"""MNIST / Fashion-MNIST from IDX files (raw or .gz), validated, as uint8 NHWC arrays."""

from __future__ import annotations

import gzip
import os
import zlib
from typing import Any, Mapping, Sequence

import numpy as np

from mmali_tf.data.settings import DataDirSettings, TfdsSettings

Arrays = tuple[np.ndarray, np.ndarray]
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
MNIST_HOWTO = ("download it from https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of "
               "http://yann.lecun.com/exdb/mnist/) or pass --use_tfds")
FASHION_HOWTO = ("install Debian's package with `apt-get install dataset-fashion-mnist` (files "
                 f"in {FASHION_SYSTEM_DIR}) or copy the IDX files into <data_dir>/fashion-mnist")


def read_idx(path: str) -> np.ndarray:
    """Array stored in an unsigned-byte IDX file (gzip-compressed when the name ends in .gz)."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"IDX file {path} is unreadable: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise ValueError(f"IDX file {path} has a bad magic number {data[:4].hex()!r} "
                         "(expected 000008 followed by 01..04: unsigned bytes, 1-4 dims)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX file {path} is truncated inside its header")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(f"IDX file {path} holds {len(data) - header} data bytes but its header "
                         f"shape {shape} needs {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def find_file(basename: str, dirs: Sequence[str], what: str, howto: str) -> str:
    """First existing `<dir>/<basename>` or `<dir>/<basename>.gz`; FileNotFoundError otherwise."""
    tried = []
    for d in dirs:
        for name in (basename, basename + ".gz"):
            path = os.path.join(d, name)
            if os.path.isfile(path):
                return path
            tried.append(path)
    raise FileNotFoundError(f"{what} file {basename}[.gz] not found (searched: "
                            f"{', '.join(tried)}); {howto}")


def read_split(dirs: Sequence[str], split: str, what: str, howto: str) -> Arrays:
    """(uint8 images (N, 28, 28, 1), int32 labels (N,)) of one split from IDX files."""
    image_name, label_name = IDX_FILES[split]
    image_path = find_file(image_name, dirs, what, howto)
    label_path = find_file(label_name, dirs, what, howto)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3:
        raise ValueError(f"IDX file {image_path} has shape {images.shape}; expected (N, H, W)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"IDX file {label_path} has shape {labels.shape}; expected "
                         f"({len(images)},) to match {image_path}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"IDX file {label_path} has label {int(labels.max())}; expected 0..9")
    return images[..., None], labels.astype(np.int32)


def mnist_dirs(data_dir: str) -> list[str]:
    """Where MNIST IDX files are looked for."""
    return [data_dir, os.path.join(data_dir, "mnist"), os.path.join(data_dir, "MNIST", "raw")]


def fashion_dirs(data_dir: str) -> list[str]:
    """Where Fashion-MNIST IDX files are looked for (data_dir subfolders, then Debian's)."""
    return [os.path.join(data_dir, sub) for sub in ("fashion-mnist", "fashion_mnist", "fashion")
            ] + [FASHION_SYSTEM_DIR]


def load_mnist(config: Mapping[str, Any]) -> dict[str, Arrays]:
    """MNIST train/test from IDX files under data_dir, or from TFDS with `use_tfds`."""
    if TfdsSettings.from_config(config).use_tfds:
        from mmali_tf.data import tfds
        return {s: tfds.load_images("mnist", s) for s in ("train", "test")}
    dirs = mnist_dirs(DataDirSettings.from_config(config).data_dir)
    return {s: read_split(dirs, s, "MNIST", MNIST_HOWTO) for s in ("train", "test")}


def load_fashion(config: Mapping[str, Any]) -> dict[str, Arrays]:
    """Fashion-MNIST train/test (70k real images) from IDX files."""
    dirs = fashion_dirs(DataDirSettings.from_config(config).data_dir)
    return {s: read_split(dirs, s, "Fashion-MNIST", FASHION_HOWTO) for s in ("train", "test")}
