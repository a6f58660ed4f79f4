"""Bundles with a text modality: graphs match TensorFlow, the manifest carries the alphabet
(and the schema checks it), `Bundle` takes and returns strings, `translate.py --input_text`."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

from conftest import HAND
from mmali_tf import text_codec
from mmali_tf.data.text import WordRule
from mmali_tf.export import schema
from mmali_tf.export.errors import BundleError
from mmali_tf.export.runtime import Bundle
from test_export import assert_parity
from test_translate_cli import ROOT, export_untrained, run_tool

TEXT = WordRule().spec()
GRAPHS = "encoder_text,decoder_text,translate_text_to_hand,translate_hand_to_text,reconstruct_text"
CONFIG = {"model": "mmjsd", "dataset": "digits_text", "latent_dim": 8, "style_dim": 0,
          "seed": 0}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An untrained mmJSD on (hand, text) in a run directory, exported through the CLI."""
    root = tmp_path_factory.mktemp("text")
    model, _ = export_untrained(root, CONFIG, [HAND, TEXT], 3, GRAPHS)
    return model, root / "bundle"


def test_text_graphs_match_tensorflow_and_carry_the_alphabet(exported):
    model, path = exported
    bundle = Bundle(path)
    assert bundle.specs["text"]["alphabet"] == text_codec.MMJSD_ALPHABET
    assert bundle.specs["text"]["kind"] == "text" and "alphabet" not in bundle.specs["hand"]
    assert_parity(model, bundle)


def test_bundle_takes_and_returns_strings(exported):
    _, path = exported
    bundle = Bundle(path)
    one_hot = text_codec.encode(["seven", "one"], TEXT.alphabet, 8)
    from_strings = bundle.translate("text", "hand", ["seven", "one"], seed=3)
    np.testing.assert_array_equal(from_strings, bundle.translate("text", "hand", one_hot, seed=3))
    assert bundle.translate("text", "hand", "seven", seed=1).shape == (1, 28, 28, 1)
    hand = np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    texts = bundle.translate("hand", "text", hand, seed=0)
    probs = bundle.run("translate_hand_to_text", {
        "x": hand, "noise": bundle.noise((4, 8), np.random.default_rng(0))})["x_out"]
    assert texts == text_codec.decode(probs, TEXT.alphabet)
    assert all(isinstance(t, str) and len(t) == 8 for t in texts)
    assert len(bundle.reconstruct("text", "seven", sample=False)) == 1
    assert len(bundle.decode("text", np.zeros((2, 8), np.float32))) == 2
    with pytest.raises(BundleError, match="'S' is not in the alphabet"):
        bundle.translate("text", "hand", "Seven")
    with pytest.raises(BundleError, match="at most 8 characters"):
        bundle.translate("text", "hand", "seventeen")


def test_schema_checks_the_alphabet(exported):
    _, path = exported
    manifest = Bundle(path).manifest
    schema.validate(manifest)
    for change, match in ((lambda m: m.update(alphabet="abc "), "alphabet"),
                          (lambda m: m.pop("alphabet"), "alphabet"),
                          (lambda m: m.update(alphabet=7), "alphabet")):
        bad = copy.deepcopy(manifest)
        change(bad["modalities"][1])
        with pytest.raises(BundleError, match=match):
            schema.validate(bad)
    bad = copy.deepcopy(manifest)
    bad["modalities"][0]["alphabet"] = "ab "
    with pytest.raises(BundleError, match="only a text modality"):
        schema.validate(bad)


def test_translate_cli_text_in_and_out(exported, tmp_path):
    _, path = exported
    out = run_tool("translate.py", f"--bundle={path}", "--from=text", "--to=hand",
                   "--input_text=seven", f"--output={tmp_path / 'seven.npy'}")
    assert out.returncode == 0, out.stderr
    assert np.load(tmp_path / "seven.npy").shape == (1, 28, 28, 1)
    np.save(tmp_path / "hand.npy", np.zeros((2, 28, 28, 1), np.float32))
    out = run_tool("translate.py", f"--bundle={path}", "--from=hand", "--to=text",
                   f"--input={tmp_path / 'hand.npy'}", f"--output={tmp_path / 'texts.txt'}")
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "texts.txt").read_text().split("\n")
    texts = [text_codec.from_line(line) for line in lines[:2]]
    assert len(lines) == 3 and lines[2] == "" and all(len(t) == 8 for t in texts)
    assert all(repr(t) in out.stdout for t in texts)
    # the .txt output reads back as the same texts (newline characters escaped, one per line)
    out = run_tool("translate.py", f"--bundle={path}", "--from=text", "--to=hand",
                   f"--input={tmp_path / 'texts.txt'}", f"--output={tmp_path / 'back.npy'}")
    assert out.returncode == 0, out.stderr
    assert np.load(tmp_path / "back.npy").shape == (2, 28, 28, 1)
    (tmp_path / "in.txt").write_text("seven\none\n")
    out = run_tool("translate.py", f"--bundle={path}", "--from=text", "--to=hand",
                   f"--input={tmp_path / 'in.txt'}", f"--output={tmp_path / 'two.npy'}")
    assert out.returncode == 0, out.stderr
    assert np.load(tmp_path / "two.npy").shape == (2, 28, 28, 1)


@pytest.mark.parametrize("args, message", [
    (("--from=text", "--to=hand", "--input_text=Seven", "--output=x.npy"),
     "character 'S' is not in the alphabet"),
    (("--from=hand", "--to=text", "--input_text=seven", "--output=x.txt"),
     "'hand' is of kind 'image', not text"),
    (("--from=text", "--to=hand", "--output=x.npy"), "exactly one of --input and --input_text"),
    (("--from=hand", "--to=text", "--input_text=seven", "--output=x.png"),
     "write a .txt file"),
])
def test_translate_cli_text_errors_are_one_line(exported, tmp_path, args, message):
    _, path = exported
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "translate.py"),
                          f"--bundle={path}", *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def _ort(bundle_dir, graph: str, feeds: dict) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(bundle_dir / f"{graph}.onnx"),
                                providers=["CPUExecutionProvider"])
    return sess.run(["x_out"], feeds)[0]


def test_node_example_takes_and_writes_text(exported, tmp_path):
    from test_node_example import node

    _, path = exported
    noise = np.random.default_rng(4).standard_normal((2, 8), dtype=np.float32)
    np.save(tmp_path / "noise1.npy", noise[:1])
    np.save(tmp_path / "noise2.npy", noise)
    out = node(f"--bundle={path}", "--from=text", "--to=hand", "--input_text=seven",
               f"--output={tmp_path / 'y.npy'}", f"--noise={tmp_path / 'noise1.npy'}")
    assert out.returncode == 0, out.stderr
    want = _ort(path, "translate_text_to_hand",
                {"x": text_codec.encode(["seven"], TEXT.alphabet, 8), "noise": noise[:1]})
    assert np.abs(np.load(tmp_path / "y.npy") - want).max() < 1e-5
    hand = np.random.default_rng(5).uniform(0, 1, (2, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "hand.npy", hand)
    out = node(f"--bundle={path}", "--from=hand", "--to=text", f"--input={tmp_path / 'hand.npy'}",
               f"--output={tmp_path / 'y.txt'}", f"--noise={tmp_path / 'noise2.npy'}")
    assert out.returncode == 0, out.stderr
    want = text_codec.decode(_ort(path, "translate_hand_to_text", {"x": hand, "noise": noise}),
                             TEXT.alphabet)
    assert (tmp_path / "y.txt").read_text() == "".join(f"{t}\n" for t in want)
    out = node(f"--bundle={path}", "--from=text", "--to=hand", "--input_text=Seven",
               f"--output={tmp_path / 'z.npy'}")
    assert out.returncode == 2
    assert "character 'S' is not in the alphabet of 'text'" in out.stderr


def test_web_page_takes_typed_text_and_shows_generated_text(exported, tmp_path):
    from mmali_tf.cli import web_demo
    from mmali_tf.cli.headless import HeadlessChromium

    _, path = exported
    page = web_demo.build(path, tmp_path / "page", examples={})
    noise = np.random.default_rng(6).standard_normal((2, 8), dtype=np.float32)
    with web_demo.serving(page) as url, HeadlessChromium(tmp_path / "chromium") as browser:
        web_demo.open_page(browser, url, threads=1)
        browser.run("window.mmali.select('text', 'hand'); window.mmali.typeText('seven');")
        got = browser.run_async("return await window.mmali.translate(args[0], []);",
                                noise.ravel().tolist())
        x = text_codec.encode(["seven"] * 2, TEXT.alphabet, 8)
        want = _ort(path, "translate_text_to_hand", {"x": x, "noise": noise})
        assert np.abs(np.asarray(got["y"], np.float32).reshape(want.shape) - want).max() < 1e-4
        assert browser.run("return window.mmali.readOutputText();") is None
        browser.run("window.mmali.select('hand', 'text');")      # the blank drawing: zeros
        browser.run_async("await window.mmali.translate(args[0], []);", noise.ravel().tolist())
        want = _ort(path, "translate_hand_to_text",
                    {"x": np.zeros((2, 28, 28, 1), np.float32), "noise": noise})
        shown = browser.run("return window.mmali.readOutputText();")
        assert shown == text_codec.decode(want, TEXT.alphabet)


def test_text_lines_escape_the_newline_and_backslash_of_the_alphabet():
    for text in ["seven   ", "a\nb\\n  ", "\\\n\n\\", ""]:
        line = text_codec.to_line(text)
        assert "\n" not in line and text_codec.from_line(line) == text


def test_logratio_text_decoder_exports_and_matches_tensorflow(tmp_path):
    """mmJSD's released text likelihood (`--text_likelihood=categorical_logratio`): the decoder's
    probabilities `logsoftmax_ratio` export and sum to one per position."""
    spec = WordRule().spec(likelihood="categorical_logratio")
    config = {**CONFIG, "text_likelihood": "categorical_logratio"}
    model, _ = export_untrained(tmp_path, config, [HAND, spec], 1, "decoder_text")
    bundle = Bundle(tmp_path / "bundle")
    assert_parity(model, bundle)
    probs = bundle.run("decoder_text", {"z": np.zeros((2, 8), np.float32)})
    np.testing.assert_allclose(next(iter(probs.values())).sum(-1), 1.0, rtol=1e-5)
