"""tools/web_demo.py: the static page in headless Chromium (onnxruntime-web, wasm) against
Python onnxruntime, through the page's own image loading, translation and canvas drawing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from conftest import make_toy_dataset
from mmali_tf.cli import translate as translate_tool
from mmali_tf.cli import web_demo
from mmali_tf.cli.headless import HeadlessChromium

HAND_SPEC = {"name": "hand", "shape": [28, 28, 1], "kind": "image", "value_range": [0.0, 1.0]}


@pytest.fixture(scope="module")
def page(translate_bundle, tmp_path_factory) -> Path:
    test = make_toy_dataset().test
    examples = {m: (x[:4], test.labels[m][:4]) for m, x in test.instances.items()}
    out = web_demo.build(translate_bundle, tmp_path_factory.mktemp("web") / "page",
                         examples=examples)
    # the fixed test image, served beside the page like a user's file
    Image.fromarray(test.instances["hand"][3][..., 0]).save(out / "test_digit.png")
    return out


def test_build_refuses_missing_runtime_files_and_existing_output(translate_bundle, page, tmp_path):
    with pytest.raises(FileNotFoundError, match="npm ci --ignore-scripts --prefix examples/web"):
        web_demo.build(translate_bundle, tmp_path / "p", ort_dir=tmp_path)
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        web_demo.build(translate_bundle, page)
    assert sorted(p.name for p in (page / "bundle").iterdir()) == [
        "manifest.json", "translate_hand_to_print.onnx", "translate_print_to_hand.onnx",
        "weights.bin"]


@pytest.mark.parametrize("args, message", [
    (["--bundle=/nonexistent", "--out=OUT"], "bundle directory '/nonexistent' does not exist"),
    (["--serve", "--bundle=/nonexistent"], "bundle directory '/nonexistent' does not exist"),
    ([], "give --serve (the shipped bundle's page), --bundle and --out (build)"),
    (["--bundle=BUNDLE", "--out=OUT", "--ort_dir=OUT"], "onnxruntime-web files"),
])
def test_cli_mistakes_are_one_line_and_exit_2(translate_bundle, tmp_path, args, message):
    args = [a.replace("OUT", str(tmp_path)).replace("BUNDLE", str(translate_bundle))
            for a in args]
    out = subprocess.run([sys.executable, str(web_demo.ROOT / "tools" / "web_demo.py"), *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert message in out.stderr


def test_page_translates_like_python_onnxruntime(page, tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((3, 8), dtype=np.float32)
    style = rng.standard_normal((3, 3), dtype=np.float32)
    x = translate_tool.read_input(str(page / "test_digit.png"), HAND_SPEC)
    sess = ort.InferenceSession(str(page / "bundle" / "translate_hand_to_print.onnx"),
                                providers=["CPUExecutionProvider"])
    want = sess.run(["x_out"], {"x": np.repeat(x, 3, axis=0), "noise": noise,
                                "style_noise": style})[0]
    with web_demo.serving(page) as url, HeadlessChromium(tmp_path / "chromium") as browser:
        start = web_demo.open_page(browser, url, threads=1)
        assert start["crossOriginIsolated"] is True and start["threads"] == 1
        browser.run_async("window.mmali.select('hand', 'print');"
                          "await window.mmali.loadImage('test_digit.png');")
        got = browser.run_async("return await window.mmali.translate(args[0], args[1]);",
                                noise.ravel().tolist(), style.ravel().tolist())
        y = np.asarray(got["y"], np.float32).reshape(want.shape)
        assert np.abs(y - want).max() < 1e-4
        # the canvas shows the 3 samples, 2 pixels apart, quantised to 8 bits
        canvas = browser.run("return window.mmali.readOutput();")
        rgba = np.asarray(canvas["rgba"], np.uint8).reshape(canvas["height"], canvas["width"], 4)
        assert rgba.shape == (36, 3 * 34 + 2, 4)
        levels = np.round(np.clip(want, 0, 1) * 255)
        for i in range(3):
            tile = rgba[2:34, 2 + 34 * i:34 + 34 * i, :3].astype(np.float64)
            assert np.abs(tile - levels[i]).max() <= 1
        # the other direction from the first test example the page offers (label 0)
        print_x = make_toy_dataset().test.instances["print"][:1].astype(np.float32) / 255.0
        browser.run("window.mmali.select('print', 'hand');")
        got = browser.run_async("return await window.mmali.translate(args[0], args[1]);",
                                noise[0].tolist(), style[0].tolist())
        sess = ort.InferenceSession(str(page / "bundle" / "translate_print_to_hand.onnx"),
                                    providers=["CPUExecutionProvider"])
        want = sess.run(["x_out"], {"x": print_x, "noise": noise[:1], "style_noise": style[:1]})[0]
        assert np.abs(np.asarray(got["y"], np.float32).reshape(want.shape) - want).max() < 1e-4
        browser.screenshot(tmp_path / "web_demo.png")
        resources = browser.run("return performance.getEntriesByType('resource')"
                                ".map((e) => e.name);")
        assert resources and all(r.startswith(url) for r in resources), resources
    assert Image.open(tmp_path / "web_demo.png").size[0] == 1100


def test_page_timings_with_and_without_threads(page, tmp_path):
    """Page-load and translation latency, wasm threads off and on (written to tmp, printed)."""
    rows = web_demo.measure(page, tmp_path / "chromium", threads=(1, 2),
                            screenshot=tmp_path / "first_load.png")
    assert [r["threads"] for r in rows] == [1, 2]
    assert all(r["cross_origin_isolated"] and r["translate_ms"] > 0 for r in rows)
    assert Image.open(tmp_path / "first_load.png").size[0] == 1100
    (tmp_path / "timings.json").write_text(json.dumps(rows, indent=2))
    print("headless Chromium timings:", json.dumps(rows))
