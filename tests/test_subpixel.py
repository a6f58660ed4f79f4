"""Transposed convolutions rewritten as sub-pixel convolutions (mmali_tf.export.subpixel)."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mmali_tf.data.specs import ModalitySpec
from mmali_tf.export import subpixel

TOL = {"rtol": 1e-4, "atol": 1e-5}


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _conv_transpose(in_hw, kernel, stride, pads, output_padding, relu, rng):
    w = rng.standard_normal((3, 5, *kernel)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="ct",
                              strides=[stride] * 2, pads=list(pads), kernel_shape=list(kernel),
                              output_padding=[output_padding] * 2)]
    if relu:
        nodes.append(helper.make_node("Relu", ["y"], ["y_relu"], name="relu"))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, *in_hw])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, ["n", 5, "h", "w"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _valid(in_hw, kernel, stride, pads, output_padding, relu) -> bool:
    """onnxruntime's rules: output padding below the stride, every output size positive."""
    return output_padding < stride and all(
        stride * (in_hw[i] - 1) + output_padding + kernel[i] - pads[i] - pads[i + 2] > 0
        for i in range(2))


CASES = [case for case in itertools.product(
    [(1, 1), (4, 4), (5, 3)], [(4, 4), (3, 3), (1, 3)], [1, 2, 3],
    [(0, 0, 0, 0), (1, 1, 1, 1), (1, 0, 2, 1)], [0, 1], [False, True]) if _valid(*case)]


def test_every_conv_transpose_becomes_a_conv_with_the_same_outputs():
    rng = np.random.default_rng(0)
    for in_hw, kernel, stride, pads, output_padding, relu in CASES:
        model = _conv_transpose(in_hw, kernel, stride, pads, output_padding, relu, rng)
        x = rng.standard_normal((2, 3, *in_hw)).astype(np.float32)
        rewritten = subpixel.rewrite(model)
        onnx.checker.check_model(rewritten)
        ops = [n.op_type for n in rewritten.graph.node]
        case = (in_hw, kernel, stride, pads, output_padding, relu)
        assert "ConvTranspose" not in ops and ops.count("Relu") == relu, (case, ops)
        assert set(ops) <= {"Conv", "Relu", *subpixel.SHUFFLE_OPS}, ops
        assert [n.op_type for n in model.graph.node] == ["ConvTranspose"] + ["Relu"] * relu
        np.testing.assert_allclose(_run(rewritten, {"x": x})[0], _run(model, {"x": x})[0],
                                   **TOL, err_msg=str(case))
    # the plain 1x1-input layer is one Conv + pixel shuffle, without a crop
    one = subpixel.rewrite(_conv_transpose((1, 1), (4, 4), 1, (0,) * 4, 0, True, rng))
    assert [n.op_type for n in one.graph.node] == [
        "Conv", "Relu", "Transpose", "Reshape", "Transpose", "Reshape", "Transpose"]


def test_ineligible_conv_transposes_are_kept():
    rng = np.random.default_rng(1)
    strides = _conv_transpose((4, 4), (3, 3), 2, (0,) * 4, 0, False, rng)
    next(a for a in strides.graph.node[0].attribute if a.name == "strides").ints[:] = [1, 2]
    dynamic = _conv_transpose((4, 4), (3, 3), 2, (0,) * 4, 0, False, rng)
    dynamic.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "h"
    for model in (strides, dynamic):  # no single block size; unknown height
        assert [n.op_type for n in subpixel.rewrite(model).graph.node] == ["ConvTranspose"]


DECODERS = {"svhn_conv": ModalitySpec("print", (32, 32, 3), "image", "svhn_conv"),
            "mmjsd_svhn": ModalitySpec("svhn", (32, 32, 3), "image", "mmjsd_svhn"),
            "polymnist_conv": ModalitySpec("m0", (28, 28, 3), "image", "polymnist_conv")}


@pytest.mark.parametrize("family", sorted(DECODERS))
def test_rewritten_decoder_graphs_match_tensorflow(family):
    """Each image family with transposed convolutions, exported by tf2onnx and rewritten,
    against the Keras decoder under `tf.function`."""
    import tensorflow as tf
    import tf2onnx

    from mmali_tf import networks

    tf.keras.utils.set_random_seed(0)
    decoder = networks.build_decoder(DECODERS[family], 20, init="normal")
    for var in decoder.weights:  # biases too, so every phase's bias is checked
        var.assign(tf.random.normal(var.shape, stddev=0.1, seed=3))
    spec = [tf.TensorSpec((None, 20), tf.float32, name="z")]
    fn = tf.function(lambda z: {"x": decoder(z)}, input_signature=spec, autograph=False)
    model, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
    rewritten = subpixel.rewrite(model)
    assert "ConvTranspose" in {n.op_type for n in model.graph.node}
    assert "ConvTranspose" not in {n.op_type for n in rewritten.graph.node}
    z = np.random.default_rng(2).standard_normal((17, 20)).astype(np.float32)
    want = fn(tf.constant(z))["x"].numpy()
    for batch in (z, z[:1]):
        np.testing.assert_allclose(_run(rewritten, {"z": batch})[0], want[:len(batch)], **TOL)
