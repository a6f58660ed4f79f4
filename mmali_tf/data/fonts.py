"""Street-number-like digit crops rendered with Pillow from the fonts shipped inside matplotlib.

Each 32x32x3 image shows one centred digit (the label) in a random font, size, rotation and
offset, blurred, in a text colour on a textured background (gradient, smooth noise or stripes)
with a guaranteed luminance contrast, often with partly visible neighbouring digits at the
left/right edges as in SVHN crops. Glyph masks are drawn per image at 2x and box-downsampled;
colours, textures and noise are composed for all images at once in numpy.

Two colour schemes (`COLOUR_SCHEMES`):
- `svhn` (default): photo-like colours as in SVHN crops: mostly desaturated, dark text on a
  lighter plate in `DARK_TEXT_SHARE` of the images and light text on a darker one in the rest,
  so the per-class mean image still shows the digit;
- `uniform` (dataset version 1): text and background colours independent and uniform in RGB
  with a symmetric contrast rule, so both polarities are equally likely and the per-class
  mean image is flat grey.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

SIZE = 32                      # output side
SUPER = 2                      # glyphs are drawn at SUPER * SIZE and box-downsampled
FONT_FILES = (                 # matplotlib fonts whose '0'..'9' code points are digit glyphs
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf", "cmmi10.ttf")
MIN_CONTRAST = 0.4             # |luminance(text) - luminance(background)| in [0, 1] units
TEXTURE_AMPLITUDE = 0.12       # max per-channel deviation of the background texture
COLOUR_SCHEMES = ("svhn", "uniform")
DARK_TEXT_SHARE = 0.7          # svhn scheme: share of dark-on-light images
MAX_SATURATION = 0.35          # svhn scheme: chroma of a colour, as a fraction of its headroom
_LUMA = np.array([0.299, 0.587, 0.114])


def font_paths() -> list[str]:
    """Absolute paths of the digit fonts available in this matplotlib installation."""
    import matplotlib
    root = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    paths = [os.path.join(root, f) for f in FONT_FILES if os.path.exists(os.path.join(root, f))]
    if not paths:
        raise FileNotFoundError(f"no digit fonts found in {root} (expected e.g. DejaVuSans.ttf "
                                "from matplotlib)")
    return paths


@functools.lru_cache(maxsize=1024)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@functools.lru_cache(maxsize=64)
def _digit_height_per_px(path: str) -> float:
    """Height of the glyph '0' per pixel of font size."""
    _, top, _, bottom = _font(path, 100).getbbox("0", anchor="ls")
    return (bottom - top) / 100.0


def _glyph_mask(path: str, text: str, centre: int, height_frac: float, gap: float,
                angle: float, dx: float, dy: float, blur: float) -> np.ndarray:
    """Coverage mask (SIZE, SIZE) in [0, 1] of `text` with its character `centre` centred."""
    canvas = SIZE * SUPER
    size = max(8, int(round(height_frac * canvas / _digit_height_per_px(path))))
    font = _font(path, size)
    advances = [font.getlength(ch) + gap * SUPER for ch in text]
    _, top, _, bottom = font.getbbox(text[centre], anchor="ls")
    width = font.getlength(text[centre])
    x = canvas / 2 + dx * SUPER - sum(advances[:centre]) - width / 2
    baseline = canvas / 2 + dy * SUPER - (top + bottom) / 2
    img = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(img)
    for ch, adv in zip(text, advances):
        draw.text((x, baseline), ch, fill=255, font=font, anchor="ls")
        x += adv
    img = img.rotate(angle, resample=Image.BICUBIC, center=(canvas / 2, canvas / 2))
    if blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(blur * SUPER))
    img = img.resize((SIZE, SIZE), Image.BOX)
    return np.asarray(img, dtype=np.float32) / 255.0


def _contrasting_colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`uniform` scheme: (text, background) RGB colours in [0, 1], each uniform in the cube,
    redrawn until their luminances differ by >= MIN_CONTRAST."""
    bg = rng.uniform(0.0, 1.0, size=(n, 3))
    fg = rng.uniform(0.0, 1.0, size=(n, 3))
    bad = np.abs((fg - bg) @ _LUMA) < MIN_CONTRAST
    while bad.any():
        fg[bad] = rng.uniform(0.0, 1.0, size=(int(bad.sum()), 3))
        bad = np.abs((fg - bg) @ _LUMA) < MIN_CONTRAST
    return fg, bg


def _tinted(rng: np.random.Generator, luminance: np.ndarray) -> np.ndarray:
    """RGB colours in [0, 1] of the given luminances with a random hue and a chroma of at most
    MAX_SATURATION of what the luminance leaves room for (so the luminance is kept)."""
    hue = rng.normal(size=(len(luminance), 3))
    hue -= (hue @ _LUMA)[:, None]                                   # zero-luminance direction
    hue /= np.abs(hue).max(axis=1, keepdims=True) + 1e-9
    room = np.minimum(luminance, 1.0 - luminance)[:, None]
    return luminance[:, None] + hue * room * rng.uniform(0.0, MAX_SATURATION, (len(luminance), 1))


def photo_colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`svhn` scheme: (text, background) RGB colours, mostly desaturated, dark text on a
    lighter background with probability DARK_TEXT_SHARE, luminance contrast >= MIN_CONTRAST."""
    light = rng.uniform(MIN_CONTRAST + 0.15, 1.0, size=n)
    dark = light - rng.uniform(MIN_CONTRAST, light)
    dark_text = rng.random(n) < DARK_TEXT_SHARE
    fg = _tinted(rng, np.where(dark_text, dark, light))
    bg = _tinted(rng, np.where(dark_text, light, dark))
    return fg, bg


def textures(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, SIZE, SIZE, 3) zero-mean-ish background textures: flat, gradient, noise or stripes."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1) * 2.0 - 1.0
    kind = rng.integers(0, 4, size=n)
    theta = rng.uniform(0.0, 2 * np.pi, size=(n, 1, 1))
    along = np.cos(theta) * xx + np.sin(theta) * yy                     # (n, S, S) in ~[-1.4, 1.4]
    freq = rng.uniform(1.5, 5.0, size=(n, 1, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1, 1))
    coarse = ndimage.zoom(rng.uniform(-1.0, 1.0, size=(n, 5, 5)), (1, SIZE / 5, SIZE / 5),
                          order=1)[:, :SIZE, :SIZE]
    pattern = np.select([kind[:, None, None] == 1, kind[:, None, None] == 2,
                         kind[:, None, None] == 3],
                        [along / 1.42, coarse, np.sin(np.pi * freq * along + phase)], 0.0)
    colour = rng.uniform(-TEXTURE_AMPLITUDE, TEXTURE_AMPLITUDE, size=(n, 1, 1, 3))
    return (pattern[..., None] * colour).astype(np.float32)


def render_prints(labels: np.ndarray, rng: np.random.Generator, colours: str = "svhn",
                  distractor_prob: float = 0.6) -> np.ndarray:
    """uint8 (N, 32, 32, 3) rendered digit crops showing `labels` (ints 0..9), coloured with
    the `colours` scheme; each side shows a neighbouring digit with `distractor_prob`."""
    if colours not in COLOUR_SCHEMES:
        raise ValueError(f"unknown print colour scheme {colours!r}; expected one of "
                         f"{', '.join(COLOUR_SCHEMES)}")
    if not 0.0 <= distractor_prob <= 1.0:
        raise ValueError(f"distractor probability must be in [0, 1], got {distractor_prob}")
    paths = font_paths()
    n = len(labels)
    masks = np.empty((n, SIZE, SIZE), dtype=np.float32)
    for i, label in enumerate(labels):
        left = str(rng.integers(0, 10)) if rng.random() < distractor_prob else ""
        right = str(rng.integers(0, 10)) if rng.random() < distractor_prob else ""
        masks[i] = _glyph_mask(
            path=paths[rng.integers(0, len(paths))], text=left + str(int(label)) + right,
            centre=len(left), height_frac=rng.uniform(0.5, 0.78), gap=rng.uniform(-0.5, 3.0),
            angle=rng.uniform(-12.0, 12.0), dx=rng.uniform(-2.5, 2.5), dy=rng.uniform(-2.0, 2.0),
            blur=rng.uniform(0.0, 1.0))
    fg, bg = (photo_colours if colours == "svhn" else _contrasting_colours)(rng, n)
    background = bg[:, None, None, :] + textures(rng, n)
    noise = rng.normal(0.0, 1.0, size=(n, SIZE, SIZE, 3)) * rng.uniform(0.0, 0.03, (n, 1, 1, 1))
    m = masks[..., None]
    img = background * (1.0 - m) + fg[:, None, None, :] * m + noise
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
