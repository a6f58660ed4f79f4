"""Sample grids and PNG helpers built only on the MultimodalModel inference interface.

`sample_grids` uses `encode`, `decode`, `fuse`, `sample_prior`, `layout`, `modalities`, `specs`
and `deterministic`, so it works for every registered model (mmALI and the VAE baselines).
Rows of the grid of target modality t (one column per fixed example):

* `original`: the data x_t;
* `recon`: decode_t(mean of q(z|x_t));
* `<s> c, own style` for every other modality s: decode_t([style of x_t | content of x_s]);
* `<s> c, rand style`: decode_t([fixed random style | content of x_s]);
* `fused c, own style` (stochastic models only): decode_t([style of x_t | fused content]);
* `prior`: decode_t(z) for fixed prior samples z (shared content across modalities).

Codes are posterior *means*, so a grid is a deterministic function of the model and the
fixed inputs. Grey images become RGB, images are upscaled to at least 56 px, and vector
modalities are drawn as square grey-level maps.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

import keras
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mmali_tf.atomic import atomic_path

MIN_CELL = 56
GAP = 2
MARGIN_PAD = 6


def _to_unit_images(spec: Any, x: np.ndarray, vrange: tuple[float, float]) -> np.ndarray:
    """(n, h, w, 3) floats in [0, 1] from a batch of one modality."""
    x = np.asarray(x, np.float32)
    lo, hi = vrange
    x = np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    if spec.kind == "vector":
        flat = x.reshape(len(x), -1)
        side = int(math.ceil(math.sqrt(flat.shape[1])))
        flat = np.pad(flat, ((0, 0), (0, side * side - flat.shape[1])))
        x = flat.reshape(len(x), side, side, 1)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x[..., :3]


def _value_range(spec: Any, originals: np.ndarray) -> tuple[float, float]:
    if spec.kind == "vector":  # unbounded features: normalise by the originals' range
        return float(np.min(originals)), float(np.max(originals))
    return tuple(spec.value_range)


def _render(rows: list[tuple[str, np.ndarray]], ncols: int) -> np.ndarray:
    """Labelled grid: each row is (label, (n, h, w, 3) in [0, 1])."""
    font = ImageFont.load_default()
    h, w = rows[0][1].shape[1:3]
    scale = max(1, math.ceil(MIN_CELL / max(h, w)))
    ch, cw = h * scale, w * scale
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin = int(max(probe.textlength(label, font=font) for label, _ in rows)) + 2 * MARGIN_PAD
    width = margin + ncols * (cw + GAP) + GAP
    height = len(rows) * (ch + GAP) + GAP
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows):
        top = GAP + r * (ch + GAP)
        draw.text((MARGIN_PAD, top + ch // 2 - 5), label, fill=(0, 0, 0), font=font)
        for c, img in enumerate(images[:ncols]):
            tile = Image.fromarray(np.round(img * 255).astype(np.uint8))
            tile = tile.resize((cw, ch), Image.NEAREST)
            canvas.paste(tile, (margin + GAP + c * (cw + GAP), top))
    return np.asarray(canvas, dtype=np.uint8)


def sample_grids(model: Any, fixed_batch: Mapping[str, Any],
                 fixed_noise: Mapping[str, Any] | None = None,
                 ncols: int = 8) -> dict[str, np.ndarray]:
    """One labelled uint8 (H, W, 3) grid per modality (rows listed in the module docstring).

    Args:
      model: any MultimodalModel.
      fixed_batch: modality -> (n, *shape) paired examples (n >= ncols is used up to ncols).
      fixed_noise: modality -> (ncols, latent_dim) prior latents (e.g. `model.sample_prior`);
        None draws them from a fixed seed.
      ncols: columns (examples) per grid.
    """
    mods, lay = model.modalities, model.layout
    missing = [m for m in mods if m not in fixed_batch]
    if missing:
        raise ValueError(f"fixed_batch lacks modalities {missing}; expected keys {list(mods)}")
    n = min(ncols, min(len(fixed_batch[m]) for m in mods))
    if n < 1 or ncols < 1:
        raise ValueError(f"sample_grids needs ncols >= 1 and a non-empty batch, got ncols={ncols}")
    x = {m: np.asarray(fixed_batch[m][:n], np.float32) for m in mods}
    if fixed_noise is None:
        fixed_noise = model.sample_prior(n, seed=keras.random.SeedGenerator(0))
    prior = {m: np.asarray(fixed_noise[m][:n], np.float32) for m in mods}
    params = {m: model.encode(m, x[m]) for m in mods}
    means = {m: np.asarray(p[0]) for m, p in params.items()}
    fused = None
    if not model.deterministic:
        fused = np.asarray(model.fuse(params)[0])
    grids = {}
    for spec in model.specs:
        t = spec.name
        own_style = lay.style(means[t])
        rand_style = lay.style(prior[t])
        codes = [("recon", means[t])]
        for s in mods:
            if s != t:
                codes.append((f"{s} c, own style", lay.join(own_style, lay.content(means[s]))))
                codes.append((f"{s} c, rand style", lay.join(rand_style, lay.content(means[s]))))
        if fused is not None:
            codes.append(("fused c, own style", lay.join(own_style, fused)))
        codes.append(("prior", prior[t]))
        vrange = _value_range(spec, x[t])
        rows = [("original", _to_unit_images(spec, x[t], vrange))]
        for label, z in codes:
            out = np.asarray(model.decode(t, np.asarray(z, np.float32)))
            rows.append((label, _to_unit_images(spec, out, vrange)))
        grids[t] = _render(rows, ncols)
    return grids


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write an (H, W, 3|1) uint8 array as PNG atomically (temp file + rename)."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"save_png expects a uint8 HxW or HxWxC array, got {array.dtype} "
                         f"{array.shape}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    with atomic_path(os.fspath(path)) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
