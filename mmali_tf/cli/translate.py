"""Translate between modalities with an exported bundle: file in, file out, no TensorFlow.

    mmali-translate --from=hand --to=print --input=digit.png --output=out.png \
        [--bundle=bundles/digits_mmali] [--seed=0] [--use_mean] \
        [--mode=latency|throughput] [--threads=N]
    mmali-translate --bundle=bundles/digits_text_mmjsd --from=text --to=hand \
        --input_text=seven --output=seven.png

Without --bundle it uses the trained digits mmALI bundle shipped with the package
(`mmali_tf.export.shipped`), pinned to its recorded digest.

Input: a `.npy` array (one example or a batch; float32 in the source modality's value range,
or uint8 0..255) or an image file (`.png`, `.jpg`, `.bmp`; converted to grey or RGB and resized
to the source modality's shape); for a text modality `--input_text=<text>` or a `.txt` file
(one text per line). Output: `.npy` (the translated batch), `.png` (an image grid of the
batch, for image modalities) or `.txt` for a text target (one text per line, a newline character
written as `\\n`; also printed).
`--bundle_digest=<sha256>` refuses any bundle whose manifest has another sha256 (see README, "Loading bundles you did not build"). Inputs are
bounded before they are read (`mmali_tf.export.limits`: batch size and values per array; images up to
MAX_IMAGE_PIXELS). Bad input or a refused bundle prints one line and exits with code 2.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any


import numpy as np
from absl import app, flags

from mmali_tf.export.errors import first_line
from mmali_tf.export.limits import DEFAULT_LIMITS, Limits
from mmali_tf import cli
from mmali_tf import flags as mmali_flags

FLAGS = flags.FLAGS
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
#: largest input image (width x height) decoded; larger files are refused before decoding.
MAX_IMAGE_PIXELS = 1 << 24
REQUIRED = ("from", "to", "output")
#: output file types per kind of target modality
OUTPUTS = {"image": (".png", ".npy"), "vector": (".npy",), "text": (".txt",)}


def _extension(path: str, allowed: tuple[str, ...], what: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in allowed:
        raise ValueError(f"--{what}={path}: unsupported file type {ext or '(none)'!r}; expected "
                         f"one of {', '.join(allowed)}")
    return ext


def _from_unit(x: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    lo, hi = value_range
    return (lo + x * (hi - lo)).astype(np.float32)


def read_input(path: str, spec: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """Load `path` as a float32 batch of the modality described by manifest entry `spec`.

    The size an .npy header or an image header declares is checked against `limits` (and
    MAX_IMAGE_PIXELS) before any data is read, so a hostile file cannot exhaust memory.
    """
    ext = _extension(path, (".npy", ".txt") + IMAGE_EXTENSIONS, "input")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--input={path}: no such file")
    if ext == ".npy":
        return _read_npy(path, spec, limits)
    if ext == ".txt":
        return read_texts(path, spec, limits)
    if spec["kind"] != "image":
        raise ValueError(f"--input={path}: modality {spec['name']!r} is of kind "
                         f"{spec['kind']!r}; give a .npy{' or .txt' if spec['kind'] == 'text' else ''}"
                         " file")
    return _read_image(path, spec)


def text_input(text: str, spec: dict[str, Any]) -> np.ndarray:
    """One-hot batch (1, L, A) of `--input_text` for the text modality `spec`."""
    return _encoded([text], spec, f"--input_text={text!r}")


def read_texts(path: str, spec: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """One-hot batch of a .txt file's lines (blank lines kept; `\\n` is a newline character and
    `\\\\` a backslash, as `write_output` writes them)."""
    from mmali_tf import text_codec

    if spec["kind"] != "text":
        raise ValueError(f"--input={path}: modality {spec['name']!r} is not a text modality")
    if os.path.getsize(path) > limits.batch * (2 * int(spec["shape"][0]) + 2):  # escapes
        raise ValueError(f"--input={path}: more than {limits.batch} lines of at most "
                         f"{spec['shape'][0]} characters")
    with open(path, encoding="utf-8") as f:
        lines = [text_codec.from_line(line.removesuffix("\r")) for line in f.read().split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ValueError(f"--input={path}: no text (expected one text per line)")
    return _encoded(lines, spec, f"--input={path}")


def _encoded(texts: list[str], spec: dict[str, Any], what: str) -> np.ndarray:
    from mmali_tf import text_codec

    if spec["kind"] != "text":
        raise ValueError(f"{what}: modality {spec['name']!r} is of kind {spec['kind']!r}, not "
                         "text")
    try:
        return text_codec.encode(texts, spec["alphabet"], int(spec["shape"][0]))
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None


def _read_npy(path: str, spec: dict[str, Any], limits: Limits) -> np.ndarray:
    shape = tuple(spec["shape"])
    try:  # memory-mapped: nothing is read or allocated before the checks below
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as error:  # malformed headers raise many types (TokenError, Overflow...)
        raise ValueError(f"--input={path}: not a readable .npy array "
                         f"({first_line(error)})") from None
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"--input={path}: dtype {str(x.dtype)[:60]} is neither floating point "
                         f"nor uint8")
    batch = 1 if x.shape == shape or not x.ndim else x.shape[0]
    if x.size > limits.batch_elements or batch > limits.batch:
        raise ValueError(f"--input={path}: array of shape {x.shape} exceeds the limits of "
                         f"{limits.batch} examples and {limits.batch_elements} values")
    x = np.array(x)
    x = _from_unit(x / 255.0, spec["value_range"]) if x.dtype == np.uint8 else x
    x = x.astype(np.float32)
    return x[None] if x.shape == shape else x


def _read_image(path: str, spec: dict[str, Any]) -> np.ndarray:
    from PIL import Image

    shape = tuple(spec["shape"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height <= MAX_IMAGE_PIXELS:
                    img = img.convert("L" if shape[-1] == 1 else "RGB")
                    img = img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
                    x = np.asarray(img, dtype=np.float32) / 255.0
    except Exception as error:  # Pillow raises many types on malformed files
        raise ValueError(f"--input={path}: not a readable image ({first_line(error)})") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"--input={path}: image of {width} x {height} pixels exceeds the "
                         f"limit of {MAX_IMAGE_PIXELS} pixels")
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


def write_output(path: str, y: Any, spec: dict[str, Any]) -> None:
    """Save a translated batch as .npy, as a PNG grid or (text: a list of strings) as .txt."""
    if spec["kind"] == "text":
        from mmali_tf.data.cache import atomic_write_bytes

        from mmali_tf import text_codec

        lines = "".join(text_codec.to_line(t) + "\n" for t in y)
        atomic_write_bytes(path, lines.encode("utf-8"))
        return
    if path.lower().endswith(".npy"):
        np.save(path, y)
        return
    from PIL import Image

    grid = image_grid(y, tuple(spec["value_range"]))
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)


def bundle_and_digest(bundle: str | None, digest: str | None) -> tuple[str, str | None]:
    """(bundle directory, pinned digest): the shipped digits bundle, pinned to its recorded
    digest, when `bundle` is None."""
    if bundle is not None:
        return bundle, digest
    from mmali_tf.export import shipped

    return str(shipped.DIGITS), digest or shipped.digest()


def main(argv: list[str]) -> None:
    cli.reject_positional(argv)
    missing = [f"--{name}" for name in REQUIRED if not FLAGS[name].value]
    if missing:
        cli.fail(f"missing required flag(s) {' '.join(missing)}")
    src, dst = FLAGS["from"].value, FLAGS.to
    if (FLAGS.input is None) == (FLAGS.input_text is None):
        cli.fail("give exactly one of --input and --input_text")
    with cli.user_errors():
        from mmali_tf.export.runtime import Bundle

        out_ext = _extension(FLAGS.output, (".npy", ".png", ".txt"), "output")
        out_dir = os.path.dirname(os.path.abspath(FLAGS.output))
        if not os.path.isdir(out_dir):
            raise FileNotFoundError(f"--output={FLAGS.output}: directory {out_dir} does not exist")
        path, digest = bundle_and_digest(FLAGS.bundle, FLAGS.bundle_digest)
        bundle = Bundle(path, threads=FLAGS.threads, mode=FLAGS.mode, digest=digest)
        src_spec = bundle.spec(src, "source modality")
        dst_spec = bundle.spec(dst, "target modality")
        wanted = OUTPUTS[dst_spec["kind"]]
        if out_ext not in wanted:
            raise ValueError(f"--output={FLAGS.output}: target {dst!r} is of kind "
                             f"{dst_spec['kind']!r}; write a {' or '.join(wanted)} file")
        x = (text_input(FLAGS.input_text, src_spec) if FLAGS.input_text is not None
             else read_input(FLAGS.input, src_spec, bundle.limits))
        y = bundle.translate(src, dst, x, seed=FLAGS.seed, sample=not FLAGS.use_mean)
    write_output(FLAGS.output, y, dst_spec)
    if dst_spec["kind"] == "text":
        for text in y:
            print(repr(text))
    print(f"translated {len(x)} x {src} -> {dst}: {FLAGS.output}")


def run() -> None:
    """Console-script entry point (`mmali-translate`)."""
    mmali_flags.define_translate_flags()
    cli.usage_from(__doc__)
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
