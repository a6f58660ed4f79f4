"""examples/node/translate.js (onnxruntime-node) against Python onnxruntime on the same feeds."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from mmali_tf.cli import translate as translate_tool

NODE_DIR = Path(__file__).resolve().parents[1] / "examples" / "node"


def node(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("node")
    assert binary, "node is not installed; .ci/run installs what this test needs"
    assert (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir(), (
        "run `npm ci --ignore-scripts --prefix examples/node` (.ci/run does)")
    return subprocess.run([binary, "translate.js", *args], cwd=NODE_DIR, capture_output=True,
                          text=True, timeout=120)


def python_ort(bundle: Path, graph: str, feeds: dict) -> np.ndarray:
    sess = ort.InferenceSession(str(bundle / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["x_out"], feeds)[0]


@pytest.mark.parametrize("src, dst, shape", [("hand", "print", (28, 28, 1)),
                                             ("print", "hand", (32, 32, 3))])
def test_node_translation_equals_python_onnxruntime(translate_bundle, tmp_path, src, dst, shape):
    rng = np.random.default_rng(0)
    feeds = {"x": rng.uniform(0, 1, (4,) + shape).astype(np.float32),
             "noise": rng.standard_normal((4, 8), dtype=np.float32),
             "style_noise": rng.standard_normal((4, 3), dtype=np.float32)}
    for name, value in feeds.items():
        np.save(tmp_path / f"{name}.npy", value)
    out = node(f"--bundle={translate_bundle}", f"--from={src}", f"--to={dst}",
               f"--input={tmp_path / 'x.npy'}", f"--output={tmp_path / 'y.npy'}",
               f"--noise={tmp_path / 'noise.npy'}", f"--style_noise={tmp_path / 'style_noise.npy'}")
    assert out.returncode == 0, out.stderr
    got = np.load(tmp_path / "y.npy")
    want = python_ort(translate_bundle, f"translate_{src}_to_{dst}", feeds)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-5


def test_node_reads_png_like_the_python_tool(translate_bundle, tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "digit.png")
    rng = np.random.default_rng(2)
    noise = {"noise": rng.standard_normal((1, 8), dtype=np.float32),
             "style_noise": rng.standard_normal((1, 3), dtype=np.float32)}
    for name, value in noise.items():
        np.save(tmp_path / f"{name}.npy", value)
    out = node(f"--bundle={translate_bundle}", "--from=hand", "--to=print",
               f"--input={tmp_path / 'digit.png'}", f"--output={tmp_path / 'y.npy'}",
               f"--noise={tmp_path / 'noise.npy'}", f"--style_noise={tmp_path / 'style_noise.npy'}")
    assert out.returncode == 0, out.stderr
    x = translate_tool.read_input(str(tmp_path / "digit.png"),
                                  {"name": "hand", "shape": [28, 28, 1], "kind": "image",
                                   "value_range": [0.0, 1.0]})
    want = python_ort(translate_bundle, "translate_hand_to_print", {"x": x, **noise})
    assert np.abs(np.load(tmp_path / "y.npy") - want).max() < 1e-5
    # a PNG output is one row of tiles, 2 pixels apart, quantised like tools/translate.py
    out = node(f"--bundle={translate_bundle}", "--from=hand", "--to=print",
               f"--input={tmp_path / 'digit.png'}", f"--output={tmp_path / 'y.png'}", "--seed=5")
    assert out.returncode == 0, out.stderr
    assert np.asarray(Image.open(tmp_path / "y.png")).shape == (36, 36, 3)


@pytest.mark.parametrize("args, message", [
    (["--from=hand", "--to=svhn"], "unknown modality 'svhn'; this bundle has hand, print"),
    (["--from=hand", "--to=print", "--seed=-1"], "--seed=-1: expected a non-negative integer"),
    (["--from=print", "--to=hand"], r"shape \(2, 28, 28, 1\) is not \(batch, 32, 32, 3\)"),
    (["--from=hand", "--to=print", "--colour=red"], "unknown argument '--colour=red'"),
])
def test_node_bad_input_is_one_line_and_exit_2(translate_bundle, tmp_path, args, message):
    np.save(tmp_path / "x.npy", np.zeros((2, 28, 28, 1), np.float32))
    out = node(f"--bundle={translate_bundle}", f"--input={tmp_path / 'x.npy'}",
               f"--output={tmp_path / 'y.npy'}", *args)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("error: ")
    assert re.search(message, out.stderr), out.stderr
    assert not (tmp_path / "y.npy").exists()
