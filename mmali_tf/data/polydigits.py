"""`polydigits`: a PolyMNIST-style five-modality dataset made offline from the embedded digits.

Modality `m<k>` (k = 0..4) shows every `hand` digit (the sklearn digits of `digits.py`,
28x28) on a random 28x28 crop of background texture k, with the colours inverted where the
digit is (the PolyMNIST recipe: binarise the digit at 128, invert the crop there). The five
textures are generated procedurally from a fixed seed (smooth colour noise, stripes, colour
tiles, rings, marble), so the modalities share only the digit class: each has its own
texture and crop per instance. The composited images are built once and cached (verified
.npz, `data/cache.py`); the train/test split is the `digits` split of the hand images, and
every split is paired many-to-many by class like the other datasets (`--data_multiplication`,
`--max_per_class`, ...; the training seed only drives the pairing).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from scipy import ndimage

from mmali_tf.data import cache, digits
from mmali_tf.data.pairing import PairingRule, build_split, pairing_rng
from mmali_tf.data.settings import PolydigitsSettings
from mmali_tf.data.specs import ModalitySpec, PairedDataset
from mmali_tf.registry import register_dataset

VERSION = 2
NUM_MODALITIES = 5
TEXTURE_SIZE = 96
SIZE = 28
TEXTURE_SEED = 20_261_129      # textures and crop offsets: fixed, independent of the run seed
THRESHOLD = 128                # digit pixels (uint8) above this invert the background
#: textures live in [0, TEXTURE_MAX] per channel, so the inverted digit (>= 1 - TEXTURE_MAX)
#: stays brighter than any background pixel: with ~1,400 training digits per modality (not
#: MNIST's 60,000), full-range textures left two coherence classifiers near 50-60 % accuracy.
TEXTURE_MAX = 0.45


def modality_names(num_modalities: int = NUM_MODALITIES) -> tuple[str, ...]:
    """`m0`, `m1`, ... as in the published PolyMNIST directories."""
    return tuple(f"m{k}" for k in range(num_modalities))


def specs(num_modalities: int = NUM_MODALITIES,
          network: str = "mnist_mlp") -> tuple[ModalitySpec, ...]:
    """28x28 RGB image specs of the modalities (network family `network`, default MLPs;
    Laplace likelihood)."""
    return tuple(ModalitySpec(m, (SIZE, SIZE, 3), "image", network)
                 for m in modality_names(num_modalities))


# ------------------------------------------------------------------------------ textures
def _grid() -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(TEXTURE_SIZE, dtype=np.float64),
                       np.arange(TEXTURE_SIZE, dtype=np.float64), indexing="ij")


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x - x.min()) / max(float(np.ptp(x)), 1e-12)


def _colour_noise(rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(size=(TEXTURE_SIZE, TEXTURE_SIZE, 3))
    return _normalise(ndimage.gaussian_filter(noise, sigma=(4, 4, 0), mode="wrap"))


def _stripes(rng: np.random.Generator) -> np.ndarray:
    y, x = _grid()
    wave = 0.5 + 0.5 * np.sin((x + 0.6 * y) * 2 * np.pi / rng.uniform(7, 11))
    a, b = rng.uniform(0, 1, size=(2, 3))
    return wave[..., None] * a + (1 - wave[..., None]) * b


def _tiles(rng: np.random.Generator, side: int = 16) -> np.ndarray:
    n = TEXTURE_SIZE // side
    colours = rng.uniform(0, 1, size=(n, n, 3))
    return np.repeat(np.repeat(colours, side, axis=0), side, axis=1)


def _rings(rng: np.random.Generator) -> np.ndarray:
    y, x = _grid()
    cy, cx = rng.uniform(0, TEXTURE_SIZE, size=2)
    r = np.hypot(y - cy, x - cx)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    return 0.5 + 0.5 * np.sin(r[..., None] * 2 * np.pi / 9 + phase)


def _marble(rng: np.random.Generator) -> np.ndarray:
    y, x = _grid()
    turbulence = ndimage.gaussian_filter(rng.normal(size=(TEXTURE_SIZE, TEXTURE_SIZE)), 6,
                                         mode="wrap")
    vein = 0.5 + 0.5 * np.sin(x * 0.15 + 40 * turbulence)
    tint = rng.uniform(0.3, 1.0, size=3)
    return vein[..., None] * tint


TEXTURES: tuple[Callable[[np.random.Generator], np.ndarray], ...] = (
    _colour_noise, _stripes, _tiles, _rings, _marble)


def textures(num_modalities: int = NUM_MODALITIES) -> list[np.ndarray]:
    """Float textures (TEXTURE_SIZE, TEXTURE_SIZE, 3) in [0, TEXTURE_MAX], one per modality."""
    if not 1 <= num_modalities <= len(TEXTURES):
        raise ValueError(f"polydigits has 1..{len(TEXTURES)} textures, got {num_modalities}")
    return [TEXTURE_MAX * np.clip(TEXTURES[k](np.random.default_rng([TEXTURE_SEED, k])), 0.0, 1.0)
            for k in range(num_modalities)]


def composite(digit_images: np.ndarray, texture: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 28, 28, 3): a random crop of `texture` per digit, inverted on the digit."""
    n = len(digit_images)
    top = rng.integers(0, TEXTURE_SIZE - SIZE + 1, size=n)
    left = rng.integers(0, TEXTURE_SIZE - SIZE + 1, size=n)
    rows = top[:, None] + np.arange(SIZE)[None]                     # (N, 28)
    cols = left[:, None] + np.arange(SIZE)[None]
    crops = texture[rows[:, :, None], cols[:, None, :]]            # (N, 28, 28, 3)
    on = digit_images[..., :1] > THRESHOLD
    out = np.where(on, 1.0 - crops, crops)
    return np.round(out * 255.0).astype(np.uint8)


def _build() -> dict[str, np.ndarray]:
    hand, labels = digits.hand_images()
    out = {"label": labels}
    for k, (m, tex) in enumerate(zip(modality_names(), textures())):
        out[m] = composite(hand, tex, np.random.default_rng([TEXTURE_SEED, 100 + k]))
    return out


def instances(config: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """All composited instances `m0`..`m4` (uint8, sklearn digit order) and `label`, cached."""
    import PIL
    import scipy
    params = {"version": VERSION, "texture_seed": TEXTURE_SEED, "texture_size": TEXTURE_SIZE,
              "threshold": THRESHOLD, "texture_max": TEXTURE_MAX, "pillow": PIL.__version__, "scipy": scipy.__version__}
    return cache.cached_arrays(cache.cache_root(config), "polydigits", params, _build)


@register_dataset("polydigits", settings=PolydigitsSettings,
                  shape_flags=("poly_network",))
def load(config: Mapping[str, Any]) -> PairedDataset:
    """The `polydigits` PairedDataset (modalities m0..m4), paired by class per split."""
    arrays = instances(config)
    labels = arrays["label"].astype(np.int32)
    names = modality_names()
    settings = PolydigitsSettings.from_config(config)
    rule, seed = PairingRule.from_config(config), settings.seed
    split_idx = dict(zip(("train", "test"), digits.split_indices(labels, "hand")))
    built = {s: build_split({m: arrays[m][idx] for m in names}, {m: labels[idx] for m in names},
                            rule if s == "train" else rule.for_test(), pairing_rng(seed, s))
             for s, idx in split_idx.items()}
    return PairedDataset(name="polydigits", specs=specs(network=settings.poly_network), train=built["train"],
                         test=built["test"])
