"""`fashion_pair`: a real-image MNIST-SVHN analogue built from Fashion-MNIST.

Every split of Fashion-MNIST (60,000 train / 10,000 test images) is cut in two disjoint,
class-stratified halves with a fixed rng: the first half is modality `grey` (the 28x28 grey
images as they are), the second modality `colour`, rendered as 32x32x3 "photos" like SVHN
crops (see `render_colour`): the garment's own intensity is its coverage mask, placed with a
random offset on a textured, mostly desaturated background (`fonts.textures` /
`fonts.photo_colours`, the `digits` print rendering), in a contrasting colour, with parts of
other garments visible at the left/right edges (distractors) and pixel noise. No image is in
both modalities, so the two share only the class; they are paired many-to-many by class exactly
like MNIST-SVHN (`pairing.build_split`; the training seed drives only the pairing). The
rendered arrays are cached (`cache.cached_arrays`) under the source files' digest.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np

from mmali_tf.data import cache, fonts, idx
from mmali_tf.data.pairing import PairingRule, build_split, pairing_rng, stratified_split
from mmali_tf.data.settings import FashionPairSettings
from mmali_tf.data.specs import ModalitySpec, PairedDataset
from mmali_tf.registry import register_dataset

VERSION = 1
HALVES_SEED = 24_001          # which half of each class goes to which modality: fixed
RENDER_SEED = 24_002          # colour rendering rng: fixed, independent of the training seed
SIZE = fonts.SIZE             # 32
DISTRACTOR_PROB = 0.6         # each side shows part of another garment with this probability
MAX_OFFSET = SIZE - 28        # the 28x28 garment is placed at a random offset in 0..4
CHUNK = 4096                  # images rendered per numpy batch (bounds memory)
GREY = ModalitySpec("grey", (28, 28, 1), "image", "mnist_mlp")
COLOUR = ModalitySpec("colour", (SIZE, SIZE, 3), "image", "svhn_conv")


def halves(labels: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted (grey, colour) index halves of one split, stratified by class."""
    rng = np.random.default_rng([HALVES_SEED, 0 if split == "train" else 1])
    return stratified_split(labels, 0.5, rng)


def _masks(garments: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, SIZE, SIZE) coverage in [0, 1]: each garment at a random offset, with slices of
    random `pool` garments shifted in from the left/right edge (distractors)."""
    n = len(garments)
    out = np.zeros((n, SIZE, SIZE), np.float32)
    unit = garments[..., 0].astype(np.float32) / 255.0
    oy, ox = rng.integers(0, MAX_OFFSET + 1, size=(2, n))
    for side in (-1, 1):
        show = rng.random(n) < DISTRACTOR_PROB
        other = pool[rng.integers(0, len(pool), size=n), ..., 0].astype(np.float32) / 255.0
        visible = rng.integers(4, 10, size=n)       # columns of the neighbour that show
        dy = rng.integers(0, MAX_OFFSET + 1, size=n)
        for i in np.flatnonzero(show):
            v = int(visible[i])
            cols = other[i, :, 28 - v:] if side < 0 else other[i, :, :v]
            x0 = 0 if side < 0 else SIZE - v
            out[i, dy[i]:dy[i] + 28, x0:x0 + v] = cols
    for i in range(n):
        region = out[i, oy[i]:oy[i] + 28, ox[i]:ox[i] + 28]
        np.maximum(region, unit[i], out=region)
    return out


def render_colour(garments: np.ndarray, pool: np.ndarray, rng: np.random.Generator
                  ) -> np.ndarray:
    """uint8 (N, 32, 32, 3) photo-like renderings of uint8 (N, 28, 28, 1) garments, with
    distractor slices taken from `pool` (same layout)."""
    parts = []
    for start in range(0, len(garments), CHUNK):
        chunk = garments[start:start + CHUNK]
        n = len(chunk)
        m = _masks(chunk, pool, rng)[..., None]
        fg, bg = fonts.photo_colours(rng, n)
        background = bg[:, None, None, :] + fonts.textures(rng, n)
        noise = rng.normal(0.0, 1.0, size=(n, SIZE, SIZE, 3)) * rng.uniform(0.0, 0.03,
                                                                            (n, 1, 1, 1))
        img = background * (1.0 - m) + fg[:, None, None, :] * m + noise
        parts.append(np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8))
    return np.concatenate(parts) if parts else np.zeros((0, SIZE, SIZE, 3), np.uint8)


def _digest(source: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for split in ("train", "test"):
        for a in source[split]:
            h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def instances(config: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """`<split>_<modality>` images and `<split>_<modality>_label` labels, cached."""
    source = idx.load_fashion(config)

    def build() -> dict[str, np.ndarray]:
        rng = np.random.default_rng(RENDER_SEED)
        out = {}
        for split in ("train", "test"):
            images, labels = source[split]
            grey, colour = halves(labels, split)
            out[f"{split}_grey"], out[f"{split}_grey_label"] = images[grey], labels[grey]
            out[f"{split}_colour"] = render_colour(images[colour], images[colour], rng)
            out[f"{split}_colour_label"] = labels[colour]
        return out

    params = {"version": VERSION, "halves_seed": HALVES_SEED, "render_seed": RENDER_SEED,
              "distractor_prob": DISTRACTOR_PROB, "min_contrast": fonts.MIN_CONTRAST,
              "texture": fonts.TEXTURE_AMPLITUDE, "source": _digest(source)}
    return cache.cached_arrays(cache.cache_root(config), "fashion_pair", params, build)


@register_dataset("fashion_pair", settings=FashionPairSettings)
def load(config: Mapping[str, Any]) -> PairedDataset:
    """The `fashion_pair` PairedDataset (modalities `grey`, `colour`)."""
    arrays = instances(config)
    rule = PairingRule.from_config(config)
    seed = FashionPairSettings.from_config(config).seed
    splits = {}
    for split in ("train", "test"):
        names = ("grey", "colour")
        splits[split] = build_split(
            {m: arrays[f"{split}_{m}"] for m in names},
            {m: arrays[f"{split}_{m}_label"] for m in names},
            rule if split == "train" else rule.for_test(), pairing_rng(seed, split))
    return PairedDataset(name="fashion_pair", specs=(GREY, COLOUR), train=splits["train"],
                         test=splits["test"])
