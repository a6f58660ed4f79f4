"""`polymnist`: the published PolyMNIST files (Sutter et al. 2021), read from PNG directories.

Layout (as unpacked from the authors' archive): `<data_dir>/MMNIST/{train,test}/m<k>/` with
one 28x28 RGB PNG per example named `<index>.<label>.png`; the same file name in every
modality directory is one multimodal tuple (the authors pair by index). Every `m<k>` present
becomes a modality (at least two, the same in both splits). The published tuples are kept
as they are (one row per file name; no re-pairing). Images are read once and cached as a
verified .npz keyed by the directory listing (names, sizes and modification times).
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import numpy as np

from mmali_tf.data import cache
from mmali_tf.data.pairing import full_pool
from mmali_tf.data.settings import PolymnistSettings
from mmali_tf.data.specs import ModalitySpec, PairedDataset, PairedSplit
from mmali_tf.registry import register_dataset

VERSION = 1
SHAPE = (28, 28, 3)
_FILE = re.compile(r"^(\d+)\.(\d+)\.png$")
_MODALITY = re.compile(r"^m\d+$")


def root_dir(config: Mapping[str, Any]) -> str:
    """`<data_dir>/MMNIST`."""
    return os.path.join(PolymnistSettings.from_config(config).data_dir, "MMNIST")


def modality_dirs(split_dir: str) -> list[str]:
    """Sorted `m<k>` sub-directory names of one split directory."""
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(f"polymnist: no directory {split_dir} (expected "
                                "<data_dir>/MMNIST/{train,test}/m0..m4 from the PolyMNIST archive)")
    names = sorted((d for d in os.listdir(split_dir)
                    if _MODALITY.match(d) and os.path.isdir(os.path.join(split_dir, d))),
                   key=lambda d: int(d[1:]))
    if len(names) < 2:
        raise ValueError(f"polymnist: {split_dir} holds {len(names)} modality directories "
                         "m<k>; expected at least 2")
    return names


def _listing(split_dir: str, modalities: list[str]) -> list[str]:
    """Sorted example file names shared by every modality directory (validated)."""
    files = {}
    for m in modalities:
        names = [f for f in os.listdir(os.path.join(split_dir, m)) if f.endswith(".png")]
        bad = [f for f in names if not _FILE.match(f)]
        if bad:
            raise ValueError(f"polymnist: file {os.path.join(split_dir, m, bad[0])} is not named "
                             "<index>.<label>.png")
        files[m] = set(names)
    first = files[modalities[0]]
    for m in modalities[1:]:
        if files[m] != first:
            odd = sorted(files[m] ^ first)[0]
            raise ValueError(f"polymnist: {split_dir}/{modalities[0]} and {split_dir}/{m} hold "
                             f"different files (e.g. {odd}); every modality needs the same names")
    if not first:
        raise ValueError(f"polymnist: no <index>.<label>.png files in {split_dir}/{modalities[0]}")
    return sorted(first, key=lambda f: tuple(int(v) for v in _FILE.match(f).groups()))


def _read_split(split_dir: str, modalities: list[str], names: list[str]) -> dict[str, np.ndarray]:
    from PIL import Image
    out = {"label": np.array([int(_FILE.match(f).group(2)) for f in names], np.int32)}
    for m in modalities:
        images = np.empty((len(names),) + SHAPE, np.uint8)
        for i, f in enumerate(names):
            path = os.path.join(split_dir, m, f)
            with Image.open(path) as img:
                arr = np.asarray(img.convert("RGB"))
            if arr.shape != SHAPE:
                raise ValueError(f"polymnist: {path} has shape {arr.shape}; expected {SHAPE}")
            images[i] = arr
        out[m] = images
    return out


def _signature(split_dir: str, modalities: list[str], names: list[str]) -> list[Any]:
    stats = [os.stat(os.path.join(split_dir, m, f)) for m in modalities for f in names]
    return [os.path.abspath(split_dir), modalities, len(names),
            int(sum(s.st_size for s in stats)), max(int(s.st_mtime_ns) for s in stats)]


def load_split(config: Mapping[str, Any], split: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """(modality names, {modality: uint8 images, "label": int32}) of one split, cached."""
    split_dir = os.path.join(root_dir(config), split)
    modalities = modality_dirs(split_dir)
    names = _listing(split_dir, modalities)
    params = {"version": VERSION, "split": split,
              "files": _signature(split_dir, modalities, names)}
    arrays = cache.cached_arrays(cache.cache_root(config), f"polymnist-{split}", params,
                                 lambda: _read_split(split_dir, modalities, names))
    return modalities, arrays


@register_dataset("polymnist", settings=PolymnistSettings,
                  shape_flags=("poly_network",))
def load(config: Mapping[str, Any]) -> PairedDataset:
    """The `polymnist` PairedDataset: modalities m0..m<M-1>, the published tuples as pairs."""
    splits, modalities = {}, None
    for s in ("train", "test"):
        mods, arrays = load_split(config, s)
        if modalities is not None and mods != modalities:
            raise ValueError(f"polymnist: train has modalities {modalities}, test has {mods}")
        modalities = mods
        n = len(arrays["label"])
        instances = {m: arrays[m] for m in mods}
        splits[s] = PairedSplit(instances=instances,
                                labels={m: arrays["label"] for m in mods},
                                pairs=np.repeat(np.arange(n, dtype=np.int32)[:, None],
                                                len(mods), axis=1),
                                unpaired=full_pool(instances))
    network = PolymnistSettings.from_config(config).poly_network
    specs = tuple(ModalitySpec(m, SHAPE, "image", network) for m in modalities)
    return PairedDataset(name="polymnist", specs=specs, train=splits["train"],
                         test=splits["test"])
