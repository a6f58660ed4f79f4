"""mmali_tf.export.runtime.Bundle: validation, composition, integrity checks, threads, no TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mmali_tf.export import runtime
from mmali_tf.export.errors import BundleError
from mmali_tf.export.runtime import Bundle

ROOT = Path(__file__).resolve().parents[1]
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture
def bundle(bundle_path) -> Bundle:
    return Bundle(bundle_path)


def images(n: int, shape=(28, 28, 1), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n,) + shape).astype(np.float32)


def test_translate_reconstruct_generate_are_seeded_and_composed(bundle):
    x = images(6)
    a = bundle.translate("hand", "print", x, seed=0)
    assert a.shape == (6, 32, 32, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, bundle.translate("hand", "print", x, seed=0))
    assert not np.allclose(a, bundle.translate("hand", "print", x, seed=1))
    reused = np.random.default_rng(0)  # a Generator is used as is
    np.testing.assert_array_equal(a, bundle.translate("hand", "print", x, seed=reused))
    assert not np.allclose(a, bundle.translate("hand", "print", x, seed=reused))
    # with sample=False the translated latent carries the posterior mean's content, and the
    # translation equals the decoder graph applied to that latent
    mean, logvar = bundle.encode("hand", x)
    assert mean.shape == logvar.shape == (6, 8)
    feeds = {"x": x, "noise": np.zeros((6, 8), np.float32),
             "style_noise": bundle.noise((6, 3), np.random.default_rng(2))}
    out = bundle.run("translate_hand_to_print", feeds)
    np.testing.assert_allclose(out["z"][:, 3:], mean[:, 3:], **TOL)
    np.testing.assert_allclose(bundle.decode("print", out["z"]), out["x_out"], **TOL)
    rec = bundle.reconstruct("hand", x, sample=False)
    np.testing.assert_allclose(rec, bundle.decode("hand", mean), **TOL)
    assert not np.allclose(bundle.reconstruct("hand", x, seed=3), rec)
    gen = bundle.generate(5, seed=4)
    assert gen["hand"].shape == (5, 28, 28, 1) and gen["print"].shape == (5, 32, 32, 3)
    assert 0.0 <= gen["print"].min() and gen["print"].max() <= 1.0
    np.testing.assert_array_equal(gen["hand"], bundle.generate(5, seed=4)["hand"])


def test_fuse_any_subset_in_one_call(bundle):
    x_hand, x_print = images(4), images(4, (32, 32, 3), seed=1)
    p_hand, p_print = bundle.encode("hand", x_hand), bundle.encode("print", x_print)
    mean, logvar = bundle.fuse({"hand": p_hand})
    # one expert: the geometric mean is that expert's content posterior
    np.testing.assert_allclose(mean, p_hand[0][:, 3:], **TOL)
    np.testing.assert_allclose(logvar, p_hand[1][:, 3:], **TOL)
    both_mean, both_logvar = bundle.fuse({"hand": p_hand, "print": p_print}, "geometric")
    assert both_mean.shape == (4, 5)
    lo = np.minimum(p_hand[0][:, 3:], p_print[0][:, 3:])
    hi = np.maximum(p_hand[0][:, 3:], p_print[0][:, 3:])
    assert np.all(both_mean >= lo - 1e-6) and np.all(both_mean <= hi + 1e-6)
    with pytest.raises(ValueError, match="share one batch size"):
        bundle.fuse({"hand": p_hand, "print": (p_print[0][:2], p_print[1][:2])})
    with pytest.raises(ValueError, match="unknown fusion method 'mean'"):
        bundle.fuse({"hand": p_hand}, "mean")
    with pytest.raises(ValueError, match="at least one modality"):
        bundle.fuse({})


@pytest.mark.parametrize("call, message", [
    (lambda b: b.translate("hand", "svhn", images(2)), "unknown target modality 'svhn'"),
    (lambda b: b.encode("mnist", images(2)), "unknown modality 'mnist'"),
    (lambda b: b.encode("hand", images(2, (32, 32, 3))), r"shape \(2, 32, 32, 3\); expected"),
    (lambda b: b.encode("hand", images(2)[0]), r"shape \(28, 28, 1\); expected \(batch, 28"),
    (lambda b: b.encode("hand", images(2).astype(np.float64)), "dtype float64; expected float32"),
    (lambda b: b.encode("hand", images(2).tolist()), "must be a numpy array"),
    (lambda b: b.encode("hand", images(2) + 1.0), r"outside the modality's range \[0, 1\]"),
    (lambda b: b.encode("hand", np.where(images(2) > 0.5, np.nan, 0.1).astype(np.float32)),
     "NaN or inf"),
    (lambda b: b.reconstruct("hand", np.full((1, 28, 28, 1), np.inf, np.float32)), "NaN or inf"),
    (lambda b: b.translate("hand", "print", images(0)), "empty batch"),
    (lambda b: b.decode("hand", np.zeros((3, 7), np.float32)), r"z has shape \(3, 7\)"),
    (lambda b: b.translate("hand", "hand", images(1)), "two different modalities"),
    (lambda b: b.generate(0), "positive integer"),
    (lambda b: b.generate(2.5), "positive integer"),
    (lambda b: b.run("translate_print_to_hand", {}), "no graph 'translate_print_to_hand'"),
])
def test_bad_inputs_are_rejected_with_one_line(bundle, call, message):
    with pytest.raises(ValueError, match=message) as info:
        call(bundle)
    assert "\n" not in str(info.value)


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_tampered_partial_and_unknown_bundles_are_refused(bundle_path, tmp_path):
    tampered = copy_bundle(bundle_path, tmp_path / "tampered")
    graph = tampered / "decoder_print.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0x01
    graph.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="'decoder_print.onnx' does not match its manifest"):
        Bundle(tampered)

    partial = copy_bundle(bundle_path, tmp_path / "partial")
    (partial / "generate.onnx").unlink()
    with pytest.raises(BundleError, match="incomplete: 'generate.onnx'"):
        Bundle(partial)

    newer = copy_bundle(bundle_path, tmp_path / "newer")
    manifest = json.loads((newer / "manifest.json").read_text())
    manifest["format_version"] += 1
    (newer / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format_version 3 is newer than the versions this "
                                         r"runtime reads \(1, 2\)"):
        Bundle(newer)

    (newer / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Bundle(newer)
    (newer / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no manifest.json"):
        Bundle(newer)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Bundle(tmp_path / "missing")


def test_sessions_use_explicit_cpu_options(bundle):
    sess = bundle.session("generate")
    assert sess.get_providers() == ["CPUExecutionProvider"]
    opts = sess.get_session_options()
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert bundle.session("generate") is sess


def test_throughput_mode_splits_batches_across_workers(bundle_path, bundle, monkeypatch):
    assert Bundle(bundle_path, mode="throughput").threads == runtime.physical_cores() >= 1
    assert bundle.threads == 1
    fast = Bundle(bundle_path, threads=3, mode="throughput")
    sess = fast.session("translate_hand_to_print")
    assert sess.get_session_options().intra_op_num_threads == 1
    batches = []
    real_run = type(sess).run
    monkeypatch.setattr(type(sess), "run", lambda self, names, feeds: (
        batches.append(len(feeds["x"])), real_run(self, names, feeds))[1])
    x = images(64)
    got = fast.translate("hand", "print", x, seed=0)
    # 64 rows on 3 workers: slices of 21, 21 and 22 rows, concatenated in order
    assert sorted(batches) == [21, 21, 22]
    batches.clear()
    np.testing.assert_array_equal(got, bundle.translate("hand", "print", x, seed=0))
    assert batches == [64]  # the latency-mode bundle runs the batch at once
    batches.clear()
    fast.translate("hand", "print", images(20), seed=0)
    assert batches == [20]  # too few rows to split (MIN_SLICE_ROWS per slice)
    with pytest.raises(ValueError, match="mode='fast' is not one of"):
        Bundle(bundle_path, mode="fast")
    with pytest.raises(ValueError, match="threads=0 must be a positive integer"):
        Bundle(bundle_path, threads=0)


def test_noise_follows_the_manifest_distribution(bundle):
    rng = np.random.default_rng(0)
    normal = bundle.noise((200_000,), rng)
    assert abs(normal.std() - 1.0) < 0.01 and abs(np.mean(np.abs(normal)) - 0.7979) < 0.01
    bundle.manifest["noise"]["distribution"] = "laplace"
    laplace = bundle.noise((200_000,), rng)
    assert laplace.dtype == np.float32
    # standard Laplace(0, 1): E|x| = 1, Var = 2
    assert abs(np.mean(np.abs(laplace)) - 1.0) < 0.01 and abs(laplace.var() - 2.0) < 0.05


def test_eight_threads_sharing_one_bundle_match_sequential_calls(bundle_path, monkeypatch):
    created = []
    real_load = runtime.bundle_files.load_session

    def counting(directory, graph, *args, **kwargs):
        created.append(graph)
        return real_load(directory, graph, *args, **kwargs)

    def work(b: Bundle, i: int) -> list[np.ndarray]:
        x = images(3, seed=i)
        return [b.translate("hand", "print", x, seed=i), b.encode("hand", x)[0],
                b.generate(2, seed=i)["hand"], b.reconstruct("hand", x, seed=i)]

    expected = [work(Bundle(bundle_path), i) for i in range(8)]
    monkeypatch.setattr(runtime.bundle_files, "load_session", counting)
    shared, results, barrier = Bundle(bundle_path), [None] * 8, threading.Barrier(8)

    def thread(i: int) -> None:
        barrier.wait()
        for _ in range(3):
            results[i] = work(shared, i)

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    # lazy initialisation created exactly one session per graph used
    assert sorted(created) == sorted(["translate_hand_to_print", "encoder_hand", "generate",
                                      "reconstruct_hand"])


def test_runtime_never_imports_tensorflow(bundle_path):
    code = f"""
import sys
import numpy as np
from mmali_tf.export.runtime import Bundle
b = Bundle({str(bundle_path)!r})
x = np.full((2, 28, 28, 1), 0.5, np.float32)
y = b.translate("hand", "print", x, seed=0)
b.generate(3, seed=1); b.fuse({{"hand": b.encode("hand", x)}})
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))
print("heavy:", heavy, y.shape)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "heavy: [] (2, 32, 32, 3)" in out.stdout
