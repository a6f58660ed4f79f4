"""int8 bundles (mmali_tf.export.quantize) and their fidelity report (mmali_tf.export.fidelity)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import make_toy_dataset
from mmali_tf.export import bundle_files, fidelity, quantize, shared_weights
from mmali_tf.export.runtime import Bundle
from mmali_tf.metrics.common import to_float


class MeanClassifier:
    """A deterministic stand-in classifier: the class is the binned mean intensity."""

    def predict(self, x, seed=None):
        return np.clip((np.asarray(x).reshape(len(x), -1).mean(axis=1) * 10).astype(int), 0, 9)


@pytest.fixture(scope="module")
def int8_bundle(bundle_path, tmp_path_factory):
    ds = make_toy_dataset()
    xs = {m: to_float(x[:64]) for m, x in ds.train.instances.items()}
    out = tmp_path_factory.mktemp("int8") / "bundle"
    out.mkdir()
    manifest = quantize.quantize_bundle(bundle_path, out, xs)
    return out, manifest, ds


def test_int8_bundle_quantizes_conv_and_matmul_with_standard_operators(bundle_path, int8_bundle):
    out, manifest, _ = int8_bundle
    record = manifest["quantization"]
    assert record["method"] == "static_int8" and record["op_types"] == ["Conv", "MatMul"]
    assert record["calibration"]["examples"] == 64
    assert record["float_manifest_sha256"] == bundle_files.hashlib.sha256(
        (bundle_path / "manifest.json").read_bytes()).hexdigest()
    assert (out / "weights.bin").stat().st_size < 0.5 * (bundle_path / "weights.bin").stat().st_size
    shared = (out / "weights.bin").read_bytes()
    assert record["conv_transpose"] == "subpixel_conv" and record["conv_weight_zero_point"] == -1
    for graph in ("encoder_print", "decoder_hand", "decoder_print", "translate_hand_to_print"):
        data = (out / f"{graph}.onnx").read_bytes()
        model = bundle_files.check_graph(graph, data, "weights.bin", len(shared))
        ops = {n.op_type for n in model.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops, (graph, ops)
        assert "ConvTranspose" not in ops, graph  # sub-pixel convolutions, quantized
        assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
        int8 = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
        assert int8 and all(t.data_location == onnx.TensorProto.EXTERNAL
                            for t in int8 if shared_weights.expected_bytes(t) >= 1024)
    # fusion graphs hold no Conv/MatMul and are copied unchanged
    assert "QuantizeLinear" not in {n.op_type for n in onnx.load(
        str(out / "fuse_geometric.onnx")).graph.node}
    # the int8 weights of one network are stored once although four graphs use them
    assert len(shared) < sum(shared_weights.expected_bytes(t) or 0 for g in ("encoder_hand",
               "translate_hand_to_print", "reconstruct_hand")
               for t in onnx.load(str(out / f"{g}.onnx"), load_external_data=False)
               .graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)


def _conv_weight_zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    convs = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    return [inits[n.input[2]] for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.output[0] in convs]


def test_conv_weight_zero_point_shift_keeps_the_numbers(int8_bundle):
    out, manifest, _ = int8_bundle
    shared = (out / "weights.bin").read_bytes()
    data = (out / "decoder_print.onnx").read_bytes()
    shifted = bundle_files.check_graph("decoder_print", data, "weights.bin", len(shared))
    shared_weights.inline(shifted, shared, "weights.bin", "decoder_print")
    zero_points = _conv_weight_zero_points(shifted)
    # the decoder's transposed convolutions, rewritten as Convs (its first layer, of a 1x1
    # map, is a MatMul): every one's weight zero point is shifted to -1
    num_convs = sum(n.op_type == "Conv" for n in shifted.graph.node)
    assert num_convs >= 3 and len(zero_points) == num_convs
    assert all((zp == -1).all() for zp in zero_points)
    assert quantize.shift_conv_weight_zero_points(shifted) == 0  # nothing left at 0
    symmetric = onnx.ModelProto()
    symmetric.CopyFrom(shifted)
    inits = {t.name: t for t in symmetric.graph.initializer}
    convs = {n.input[1] for n in symmetric.graph.node if n.op_type == "Conv"}
    for node in symmetric.graph.node:  # undo the shift: zero point 0, values + 1
        if node.op_type == "DequantizeLinear" and node.output[0] in convs:
            for name in (node.input[0], node.input[2]):
                value = onnx.numpy_helper.to_array(inits[name])
                inits[name].CopyFrom(onnx.numpy_helper.from_array(value + np.int8(1), name))
    assert all((zp == 0).all() for zp in _conv_weight_zero_points(symmetric))
    z = np.random.default_rng(0).standard_normal((9, 8)).astype(np.float32)
    run = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
           .run(None, {"z": z})[0] for m in (shifted, symmetric)]
    np.testing.assert_array_equal(run[0], run[1])


def test_int8_bundle_runs_close_to_the_float_bundle(bundle_path, int8_bundle):
    out, _, ds = int8_bundle
    ref, quant = Bundle(bundle_path), Bundle(out)
    x = to_float(ds.test.instances["hand"][:16])
    y_ref = ref.translate("hand", "print", x, seed=3)
    y_q = quant.translate("hand", "print", x, seed=3)
    err = np.abs(y_ref - y_q).max()
    assert 0 < err < 0.1, err  # quantized (not identical), and close
    for m in ("hand", "print"):
        np.testing.assert_allclose(quant.generate(4, seed=1)[m], ref.generate(4, seed=1)[m],
                                   atol=0.1)


def test_fidelity_report_is_written_into_the_manifest(bundle_path, int8_bundle, tmp_path):
    out, _, ds = int8_bundle
    report = fidelity.fidelity_report(bundle_path, out, ds,
                                      {"hand": MeanClassifier(), "print": MeanClassifier()},
                                      limit=40)
    pair = report["translate"]["hand->print"]
    assert set(report["translate"]) == {"hand->print"}  # the shared bundle translates one way
    assert report["examples"] == {"hand": 40, "print": 40}
    assert 0 < report["max_abs_error_translate"] == pair["max_abs_error"] < 0.1
    assert pair["coherence_change_points"] == pytest.approx(
        100 * (pair["coherence_int8"] - pair["coherence_float"]))
    assert report["coherence_within_2_points"] == (report["max_coherence_change_points"] <= 2)
    manifest = quantize.set_fidelity(out, report)
    assert json.loads((out / "manifest.json").read_text())["quantization"]["fidelity"] == \
        json.loads(json.dumps(report))
    assert Bundle(out).manifest["quantization"]["method"] == "static_int8"
    assert set(manifest["files"]) == {*(g["file"] for g in manifest["graphs"].values()),
                                      "weights.bin"}


def test_quantizing_twice_is_refused(int8_bundle, tmp_path):
    out, _, ds = int8_bundle
    with pytest.raises(ValueError, match="already quantized"):
        quantize.quantize_bundle(out, tmp_path, {"hand": np.zeros((1, 28, 28, 1), np.float32)})
