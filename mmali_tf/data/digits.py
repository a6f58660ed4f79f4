"""The embedded default dataset `digits`: sklearn handwritten digits x rendered street digits.

`hand`: the 1,797 real 8x8 handwritten digits shipped with scikit-learn, upsampled (bicubic)
into the central 20x20 box of a 28x28 canvas like MNIST. `print`: `digits_print_per_class`
rendered 32x32x3 crops per class (see `fonts.py`; `digits_print_colours` picks the colour
scheme, `svhn` by default, `uniform` is version 1's rendering, and `digits_distractor_prob`
how often a neighbouring digit shows at each side). Both are built once, cached as a verified
.npz, split 80/20 by instance with fixed rngs (the test set never changes), and paired
many-to-many by class exactly like MNIST-SVHN; the training seed only drives the pairing.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from mmali_tf.data import cache, fonts
from mmali_tf.data.pairing import PairingRule, build_split, pairing_rng, stratified_split
from mmali_tf.data.settings import DigitsSettings
from mmali_tf.data.specs import ModalitySpec, PairedDataset
from mmali_tf.registry import register_dataset

VERSION = 2                   # 2: colour scheme and distractor probability are parameters
RENDER_SEED = 20_240_611      # rendering rng: fixed, independent of the training seed
SPLIT_SEED = 7_301            # train/test split rng: fixed
TEST_FRACTION = 0.2
HAND = ModalitySpec("hand", (28, 28, 1), "image", "mnist_mlp")
PRINT = ModalitySpec("print", (32, 32, 3), "image", "svhn_conv")


def hand_images() -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (1797, 28, 28, 1), int32 labels): sklearn digits upsampled into 28x28."""
    from PIL import Image
    from sklearn.datasets import load_digits
    d = load_digits()
    out = np.zeros((len(d.images), 28, 28), dtype=np.float32)
    for i, img in enumerate(d.images.astype(np.float32)):
        big = Image.fromarray(img, mode="F").resize((20, 20), Image.BICUBIC)
        out[i, 4:24, 4:24] = np.asarray(big)
    out = np.clip(np.round(out * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return out[..., None], d.target.astype(np.int32)


def _build(per_class: int, colours: str, distractor_prob: float) -> dict[str, np.ndarray]:
    hand, hand_y = hand_images()
    print_y = np.tile(np.arange(10, dtype=np.int32), per_class)
    prints = fonts.render_prints(print_y, np.random.default_rng(RENDER_SEED), colours,
                                 distractor_prob)
    return {"hand": hand, "hand_label": hand_y, "print": prints, "print_label": print_y}


def instances(config: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """All instances and labels (`hand`, `hand_label`, `print`, `print_label`), cached."""
    settings = DigitsSettings.from_config(config)
    per_class = settings.digits_print_per_class
    if per_class < 2:
        raise ValueError(f"digits_print_per_class must be >= 2, got {per_class}")
    colours, distractor_prob = settings.digits_print_colours, settings.digits_distractor_prob
    import PIL
    params = {"version": VERSION, "print_per_class": per_class, "render_seed": RENDER_SEED,
              "colours": colours, "distractor_prob": distractor_prob,
              "fonts": [p.rsplit("/", 1)[-1] for p in fonts.font_paths()],
              "min_contrast": fonts.MIN_CONTRAST, "texture": fonts.TEXTURE_AMPLITUDE,
              "pillow": PIL.__version__}
    return cache.cached_arrays(cache.cache_root(config), "digits", params,
                               lambda: _build(per_class, colours, distractor_prob))


def split_indices(labels: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (train_idx, test_idx) of one modality's instances (stratified 80/20)."""
    rng = np.random.default_rng([SPLIT_SEED, 0 if modality == "hand" else 1])
    return stratified_split(labels, TEST_FRACTION, rng)


def splits(config: Mapping[str, Any]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """split -> modality -> (instances, int32 labels) after the fixed train/test split."""
    arrays = instances(config)
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {"train": {}, "test": {}}
    for m in ("hand", "print"):
        x, y = arrays[m], arrays[f"{m}_label"].astype(np.int32)
        tr, te = split_indices(y, m)
        out["train"][m] = (x[tr], y[tr])
        out["test"][m] = (x[te], y[te])
    return out


@register_dataset("digits", settings=DigitsSettings)
def load(config: Mapping[str, Any]) -> PairedDataset:
    """The `digits` PairedDataset (modalities `hand`, `print`)."""
    rule, seed = PairingRule.from_config(config), DigitsSettings.from_config(config).seed
    built = {
        name: build_split({m: v[0] for m, v in p.items()}, {m: v[1] for m, v in p.items()},
                          rule if name == "train" else rule.for_test(), pairing_rng(seed, name))
        for name, p in splits(config).items()}
    return PairedDataset(name="digits", specs=(HAND, PRINT), train=built["train"],
                         test=built["test"])
