"""Translate between modalities with an exported bundle: file in, file out, no TensorFlow.

    python tools/translate.py --bundle=bundles/digits_mmali --from=hand --to=print \
        --input=digit.png --output=out.png [--seed=0] [--use_mean] \
        [--mode=latency|throughput] [--threads=N]

Input: a `.npy` array (one example or a batch; float32 in the source modality's value range,
or uint8 0..255) or an image file (`.png`, `.jpg`, `.bmp`; converted to grey or RGB and resized
to the source modality's shape). Output: `.npy` (the translated batch) or `.png` (an image grid
of the batch, for image modalities). Bad input prints one line and exits with code 2.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from mmali_tf import cli  # noqa: E402
from mmali_tf import flags as mmali_flags  # noqa: E402

FLAGS = flags.FLAGS
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
REQUIRED = ("bundle", "from", "to", "input", "output")


def _extension(path: str, allowed: tuple[str, ...], what: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in allowed:
        raise ValueError(f"--{what}={path}: unsupported file type {ext or '(none)'!r}; expected "
                         f"one of {', '.join(allowed)}")
    return ext


def _from_unit(x: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    lo, hi = value_range
    return (lo + x * (hi - lo)).astype(np.float32)


def read_input(path: str, spec: dict[str, Any]) -> np.ndarray:
    """Load `path` as a float32 batch of the modality described by manifest entry `spec`."""
    ext = _extension(path, (".npy",) + IMAGE_EXTENSIONS, "input")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--input={path}: no such file")
    shape = tuple(spec["shape"])
    if ext == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"--input={path}: not a readable .npy array ({error})") from None
        if x.dtype == np.uint8:
            x = _from_unit(x / 255.0, spec["value_range"])
        elif not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"--input={path}: dtype {x.dtype} is neither floating point nor "
                             f"uint8")
        x = x.astype(np.float32)
        return x[None] if x.shape == shape else x
    if spec["kind"] != "image":
        raise ValueError(f"--input={path}: modality {spec['name']!r} is a vector modality; "
                         f"give a .npy file")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if shape[-1] == 1 else "RGB")
            img = img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
            x = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"--input={path}: not a readable image ({error})") from None
    return _from_unit(x.reshape(shape), spec["value_range"])[None]


def image_grid(x: np.ndarray, value_range: tuple[float, float], pad: int = 2) -> np.ndarray:
    """uint8 grid (rows x cols tiles, `pad` pixels apart) of a batch of HWC images."""
    lo, hi = value_range
    tiles = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    n, h, w, c = tiles.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h,
             pad + k * (w + pad):pad + k * (w + pad) + w] = tiles[i]
    return np.round(grid * 255.0).astype(np.uint8)


def write_output(path: str, y: np.ndarray, spec: dict[str, Any]) -> None:
    """Save a translated batch as .npy or as a PNG grid."""
    if path.lower().endswith(".npy"):
        np.save(path, y)
        return
    from PIL import Image

    grid = image_grid(y, tuple(spec["value_range"]))
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)


def main(argv: list[str]) -> None:
    cli.reject_positional(argv)
    missing = [f"--{name}" for name in REQUIRED if not FLAGS[name].value]
    if missing:
        cli.fail(f"missing required flag(s) {' '.join(missing)}")
    src, dst = FLAGS["from"].value, FLAGS.to
    with cli.user_errors():
        from export.runtime import Bundle

        out_ext = _extension(FLAGS.output, (".npy", ".png"), "output")
        out_dir = os.path.dirname(os.path.abspath(FLAGS.output))
        if not os.path.isdir(out_dir):
            raise FileNotFoundError(f"--output={FLAGS.output}: directory {out_dir} does not exist")
        bundle = Bundle(FLAGS.bundle, threads=FLAGS.threads, mode=FLAGS.mode)
        src_spec = bundle.spec(src, "source modality")
        dst_spec = bundle.spec(dst, "target modality")
        if out_ext == ".png" and dst_spec["kind"] != "image":
            raise ValueError(f"--output={FLAGS.output}: target {dst!r} is a vector modality; "
                             f"write a .npy file")
        x = read_input(FLAGS.input, src_spec)
        y = bundle.translate(src, dst, x, seed=FLAGS.seed, sample=not FLAGS.use_mean)
    write_output(FLAGS.output, y, dst_spec)
    print(f"translated {len(x)} x {src} -> {dst}: {FLAGS.output}")


def run() -> None:
    """Console-script entry point (`mmali-translate`)."""
    mmali_flags.define_translate_flags()
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
