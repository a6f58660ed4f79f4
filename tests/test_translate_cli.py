"""tools/export_onnx.py and tools/translate.py end to end: run dir -> bundle -> files."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import HAND, PRINT
from mmali_tf.export.runtime import Bundle
from mmali_tf.cli import translate as translate_tool

ROOT = Path(__file__).resolve().parents[1]


def run_tool(tool: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / tool), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A run directory with one checkpoint, exported through the CLI."""
    from mmali_tf import models
    from mmali_tf import run_dir as run_dir_lib

    root = tmp_path_factory.mktemp("cli")
    config = {"model": "mmali", "dataset": "toy", "latent_dim": 8, "style_dim": 3,
              "ema_decay": 0.99, "seed": 0}
    model = models.build("mmali", [HAND, PRINT], config)
    model.build_from_specs()
    run = run_dir_lib.prepare(str(root / "run"), config)
    run_dir_lib.write_run_files(run, config, [HAND, PRINT])
    run_dir_lib.TrainingCheckpoint(run.checkpoints, model, optimizers=False).save(7)
    out = run_tool("export_onnx.py", f"--run_dir={root / 'run'}", f"--out={root / 'bundle'}",
                   "--graphs=encoder_hand,translate_hand_to_print")
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and "step 7" in out.stdout
    digest = (root / "bundle.sha256").read_text().split()[0]
    assert f"bundle digest {digest} (in {root / 'bundle.sha256'}" in out.stdout
    return model, root / "bundle"


def test_exported_bundle_holds_the_checkpoint(exported):
    model, path = exported
    bundle = Bundle(path)
    assert bundle.manifest["checkpoint_step"] == 7 and bundle.manifest["dataset"] == "toy"
    assert bundle.manifest["training_flags"]["latent_dim"] == 8
    assert sorted(bundle.manifest["graphs"]) == ["encoder_hand", "translate_hand_to_print"]
    x = np.random.default_rng(0).uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(bundle.encode("hand", x)[0], model.encode("hand", x)[0].numpy(),
                               rtol=1e-5, atol=1e-5)


def test_translate_npy_round_trip(exported, tmp_path):
    _, path = exported
    x = np.random.default_rng(1).uniform(0, 1, (5, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = run_tool("translate.py", f"--bundle={path}", "--from=hand", "--to=print",
                   f"--input={tmp_path / 'x.npy'}", f"--output={tmp_path / 'y.npy'}", "--seed=3")
    assert out.returncode == 0, out.stderr
    want = Bundle(path).translate("hand", "print", x, seed=3)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    out = run_tool("translate.py", f"--bundle={path}", "--from=hand", "--to=print",
                   f"--input={tmp_path / 'x.npy'}", f"--output={tmp_path / 'y2.npy'}", "--seed=3",
                   "--mode=throughput", "--threads=2")
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y2.npy"), want, rtol=1e-6, atol=1e-6)
    # one example without a batch axis, uint8, as a PNG grid of the batch of one
    np.save(tmp_path / "one.npy", np.round(x[0] * 255).astype(np.uint8))
    out = run_tool("translate.py", f"--bundle={path}", "--from=hand", "--to=print",
                   f"--input={tmp_path / 'one.npy'}", f"--output={tmp_path / 'one.png'}")
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "one.png").size == (36, 36)
    # a batch of 5 becomes a 3 x 2 grid of 32x32 tiles, 2 pixels apart
    out = run_tool("translate.py", f"--bundle={path}", "--from=hand", "--to=print",
                   f"--input={tmp_path / 'x.npy'}", f"--output={tmp_path / 'grid.png'}",
                   "--seed=3")
    assert out.returncode == 0, out.stderr
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (70, 104, 3)
    np.testing.assert_array_equal(grid, translate_tool.image_grid(want, (0.0, 1.0)))


def test_translate_png_round_trip_without_tensorflow(exported, tmp_path):
    _, path = exported
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[8:32, 16:24] = (250, 200, 10)  # a coloured "1", resized and greyed for `hand`
    Image.fromarray(rgb).save(tmp_path / "digit.png")
    argv = ["translate.py", f"--bundle={path}", "--from=hand", "--to=print",
            f"--input={tmp_path / 'digit.png'}", f"--output={tmp_path / 'out.png'}", "--seed=5",
            "--use_mean"]
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('heavy:', sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))))\n"
        f"sys.argv = {argv!r}\n"
        "runpy.run_path('tools/translate.py', run_name='__main__')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout
    spec = Bundle(path).spec("hand")
    x = translate_tool.read_input(str(tmp_path / "digit.png"), spec)
    assert x.shape == (1, 28, 28, 1) and x.dtype == np.float32
    assert x[0, 14, 14, 0] > 0.5 > x[0, 2, 2, 0]
    want = Bundle(path).translate("hand", "print", x, seed=5, sample=False)
    got = np.asarray(Image.open(tmp_path / "out.png"))
    np.testing.assert_array_equal(got, translate_tool.image_grid(want, (0.0, 1.0)))


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG file that declares `width` x `height` pixels (its pixel data is cut short)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))


def npy_header(shape: tuple[int, ...]) -> bytes:
    """A float32 .npy file that declares `shape` but holds 64 bytes of data."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + bytes(64)


def test_pinned_bundle_digest(exported, tmp_path):
    _, path = exported
    digest = path.with_name("bundle.sha256").read_text().split()[0]
    np.save(tmp_path / "ok.npy", np.full((2, 28, 28, 1), 0.5, np.float32))
    args = [f"--bundle={path}", "--from=hand", "--to=print", f"--input={tmp_path / 'ok.npy'}",
            f"--output={tmp_path / 'y.npy'}"]
    out = run_tool("translate.py", *args, f"--bundle_digest={digest}")
    assert out.returncode == 0, out.stderr
    other = "0" * 64
    out = run_tool("translate.py", *args, f"--bundle_digest={other}")
    assert out.returncode == 2 and out.stderr.strip() == (
        f"error: bundle manifest sha256 is {digest}, not the pinned digest {other}; refusing "
        f"a bundle that differs from the one pinned"), out.stderr


def test_hostile_input_files_are_refused_before_reading(tmp_path):
    """Sizes declared by .npy and image headers are bounded before any data is allocated."""
    spec = {"name": "hand", "shape": [28, 28, 1], "kind": "image", "value_range": [0.0, 1.0]}
    (tmp_path / "huge.png").write_bytes(png_header(5000, 5000))
    (tmp_path / "bomb.png").write_bytes(png_header(100_000, 100_000))
    (tmp_path / "huge.npy").write_bytes(npy_header((10 ** 8, 28, 28, 1)))
    (tmp_path / "short.npy").write_bytes(npy_header((4, 28, 28, 1)))
    for name, message in [
        ("huge.png", "image of 5000 x 5000 pixels exceeds the limit of 16777216 pixels"),
        ("bomb.png", "not a readable image"),
        ("huge.npy", "not a readable .npy array"),  # declares 292 GiB, holds 64 bytes
        ("short.npy", "not a readable .npy array"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            translate_tool.read_input(str(tmp_path / name), spec)


def test_bad_translate_input_is_one_line_and_exit_2(exported, tmp_path):
    _, path = exported
    np.save(tmp_path / "x.npy", np.full((2, 28, 28, 1), 2.0, np.float32))
    np.save(tmp_path / "ok.npy", np.full((2, 28, 28, 1), 0.5, np.float32))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with open(tmp_path / "big.npy", "wb") as f:  # 70000 real (sparse, all-zero) images
        f.write(npy_header((70_000, 28, 28, 1))[:-64])
        f.truncate(f.tell() + 70_000 * 28 * 28 * 4)
    base = [f"--bundle={path}", "--from=hand", "--to=print"]

    def files(source: str, target: str = "y.npy") -> list[str]:
        return base + [f"--input={tmp_path / source}", f"--output={tmp_path / target}"]

    cases = [
        (files("x.npy"), "outside the modality's range"),
        (files("missing.npy"), "no such file"),
        (files("ok.npy", "y.txt"), "unsupported file type '.txt'"),
        (files("bad.png"), "not a readable image"),
        (files("big.npy"), "array of shape (70000, 28, 28, 1) exceeds the limits of 65536 "
                           "examples"),
        (files("ok.npy") + ["--bundle_digest=abc"], "bundle digest 'abc' is not a sha256"),
        ([f"--bundle={path}", "--from=hand", "--to=svhn", f"--input={tmp_path / 'ok.npy'}",
          f"--output={tmp_path / 'y.npy'}"], "unknown target modality 'svhn'"),
        ([f"--bundle={tmp_path}", "--from=hand", "--to=print", f"--input={tmp_path / 'ok.npy'}",
          f"--output={tmp_path / 'y.npy'}"], "has no manifest.json"),
        (["--from=hand", "--to=print"], "missing required flag(s) --input --output"),
        (base + ["--input=a.npy", "--output=b.npy", "--seed=-1"], "--seed=-1"),
        (base + ["--bogus=1"], "unknown flag --bogus"),
    ]
    for args, message in cases:
        out = run_tool("translate.py", *args)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
        assert message in lines[0], (message, lines[0])
    assert not (tmp_path / "y.npy").exists()


def test_bad_export_input_is_one_line_and_exit_2(exported, tmp_path):
    _, path = exported
    for args, message in [
        ([f"--run_dir={tmp_path / 'nope'}", f"--out={tmp_path / 'b'}"], "no run.json"),
        ([f"--run_dir={tmp_path}", f"--out={tmp_path / 'b'}", "--opset=19"], "--opset=19"),
        ([f"--run_dir={tmp_path}"], "--out is required"),
    ]:
        out = run_tool("export_onnx.py", *args)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
            out.stderr
    assert not (tmp_path / "b").exists()
