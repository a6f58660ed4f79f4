"""Transposed convolutions as sub-pixel convolutions (Conv + pixel shuffle) in an ONNX graph.

    model = subpixel.rewrite(model)   # every eligible ConvTranspose replaced, same function

A stride-s transposed convolution computes each output phase r (output index = q*s + r) as
an ordinary convolution of the input with the kernel taps t = r', r' + s, ... (Shi et al.
2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network", and Odena et al. 2016, "Deconvolution and Checkerboard
Artifacts"). `rewrite` stacks the s*s phases as output channels of one Conv (the taps
rearranged, zeros where a phase has fewer taps), interleaves them (DepthToSpace in DCR order,
written as Transpose to NHWC, Reshape, Transpose, Reshape: blocks of s * channels values
move, and onnxruntime cancels the Transposes against those of its channels-last quantized
Conv) and crops the ConvTranspose's padding with a Slice when one remains, then transposes
back to NCHW. A Relu that alone consumes the ConvTranspose moves before the interleaving (it
commutes with it), so it fuses with the Conv.
A 1x1 input with a square kernel uses s = kernel size (one phase per output pixel: a 1x1
Conv, the decoders' first layer). The training model keeps its Conv2DTranspose layers; only
exported graphs change. The reason: onnxruntime quantizes Conv (QLinearConv) but runs a
quantized ConvTranspose as dequantize + float ConvTranspose.

Eligible: 2-D (NCHW), group 1, dilation 1, explicit pads (no auto_pad / output_shape), weight
and bias initializers, static input height and width, and the same effective stride on both
axes. Others stay as they are.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

#: the operators of a pixel shuffle and its crop.
SHUFFLE_OPS = ("Reshape", "Transpose", "Slice")
#: the tag in the name of every node `rewrite` adds.
TAG = "/subpixel_"


@dataclasses.dataclass(frozen=True)
class _Axis:
    """The sub-pixel plan of one spatial axis: per phase r, the (conv tap u, kernel tap t)
    pairs; the Conv's kernel size and pads; the crop of the interleaved axis."""

    taps: tuple[tuple[tuple[int, int], ...], ...]
    kernel: int
    pads: tuple[int, int]
    crop: tuple[int, int]  # (start, length) on the interleaved axis
    length: int  # interleaved axis length before the crop


def _axis_plan(in_len: int, k: int, s: int, pad_begin: int, out_len: int) -> _Axis:
    """Phase r of the full output (index q*s + r, before the crop by `pad_begin`) is
    sum_j x[q - j] * w[r + s*j]: Conv tap u = j_max - j over the input padded by j_max."""
    j_max = -(-k // s) - 1
    taps = tuple(tuple((j_max - j, r + s * j) for j in range(j_max + 1) if r + s * j < k)
                 for r in range(s))
    pad_end = max(0, -(-(pad_begin + out_len) // s) - in_len)
    return _Axis(taps, j_max + 1, (j_max, pad_end), (pad_begin, out_len), s * (in_len + pad_end))


def _plans(node: onnx.NodeProto, in_hw: tuple[int, int], k_hw: tuple[int, int]
           ) -> tuple[int, _Axis, _Axis] | None:
    """(stride, height plan, width plan), or None when `node` is not eligible."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if (attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1]))
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or "output_shape" in attrs):
        return None
    strides = list(attrs.get("strides", [1, 1]))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    extra = list(attrs.get("output_padding", [0, 0]))
    outs = [strides[i] * (in_hw[i] - 1) + extra[i] + k_hw[i] - pads[i] - pads[i + 2]
            for i in range(2)]
    if in_hw == (1, 1) and k_hw[0] == k_hw[1]:
        strides = [k_hw[0]] * 2  # one input pixel: no overlap whatever the stride
    if strides[0] != strides[1]:
        return None
    s = strides[0]
    return s, *(_axis_plan(in_hw[i], k_hw[i], s, pads[i], outs[i]) for i in range(2))


def _weights(w: np.ndarray, b: np.ndarray, s: int, h: _Axis, v: _Axis
             ) -> tuple[np.ndarray, np.ndarray]:
    """ConvTranspose weight (Cin, Cout, kh, kw) -> Conv weight (s*s*Cout, Cin, Kh, Kw) whose
    output channel (rh*s + rw)*Cout + c is phase (rh, rw) of channel c (DepthToSpace DCR)."""
    c_in, c_out = w.shape[:2]
    out = np.zeros((s, s, c_out, c_in, h.kernel, v.kernel), w.dtype)
    for rh, taps_h in enumerate(h.taps):
        for rw, taps_w in enumerate(v.taps):
            for uh, th in taps_h:
                for uw, tw in taps_w:
                    out[rh, rw, :, :, uh, uw] = w[:, :, th, tw].T
    return out.reshape(s * s * c_out, c_in, h.kernel, v.kernel), np.tile(b, s * s)


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input)
    return {v.name: [d.dim_value if d.HasField("dim_value") else 0
                     for d in v.type.tensor_type.shape.dim] for v in values}


def rewrite(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with every eligible ConvTranspose as a sub-pixel convolution."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    shapes = _shapes(out)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    nodes, moved = [], set()  # moved: outputs of the Relus placed before a pixel shuffle
    for node in graph.node:
        if node.op_type == "Relu" and node.output[0] in moved:
            continue
        new = _replacement(node, inits, shapes, consumers, graph)
        if new is None:
            nodes.append(node)
            continue
        replaced, relu = new
        if relu is not None:
            moved.add(relu.output[0])
        nodes.extend(replaced)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return out


def _replacement(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto],
                 shapes: dict[str, list[int]], consumers: dict[str, list[onnx.NodeProto]],
                 graph: onnx.GraphProto
                 ) -> tuple[list[onnx.NodeProto], onnx.NodeProto | None] | None:
    """(new nodes, the Relu moved into them or None) for an eligible ConvTranspose, else None.
    The new nodes' constants are added to `graph`'s initializers."""
    if node.op_type != "ConvTranspose" or any(i and i not in inits for i in node.input[1:]):
        return None
    shape = shapes.get(node.input[0], [])
    w = numpy_helper.to_array(inits[node.input[1]])
    if len(shape) != 4 or w.ndim != 4 or min(shape[2:]) < 1:
        return None
    plan = _plans(node, tuple(shape[2:]), w.shape[2:])
    if plan is None:
        return None
    s, h, v = plan
    has_bias = len(node.input) > 2 and node.input[2]
    bias = (numpy_helper.to_array(inits[node.input[2]]) if has_bias
            else np.zeros(w.shape[1], w.dtype))
    after = consumers.get(node.output[0], [])
    relu = after[0] if (len(after) == 1 and after[0].op_type == "Relu"
                        and node.output[0] not in {o.name for o in graph.output}) else None
    name = f"{node.name or node.output[0]}{TAG}"
    new, last = [], node.input[0]
    steps = _steps(s, h, v, *_weights(w, bias, s, h, v), relu is not None)
    for i, (op, consts, attrs) in enumerate(steps):
        step = f"{name}{i}_{op.lower()}"
        names = [f"{step}_{j}" for j in range(len(consts))]
        graph.initializer.extend(numpy_helper.from_array(c, n) for c, n in zip(consts, names))
        out = (relu or node).output[0] if i == len(steps) - 1 else step
        new.append(helper.make_node(op, [last, *names], [out], name=step, **attrs))
        last = out
    return new, relu


def _steps(s: int, h: _Axis, v: _Axis, weight: np.ndarray, bias: np.ndarray, relu: bool
           ) -> list[tuple[str, list[np.ndarray], dict[str, Any]]]:
    """(operator, constant inputs after the data input, attributes) of each new node."""
    c_out = weight.shape[0] // (s * s)
    steps = [("Conv", [weight, bias], {"kernel_shape": [h.kernel, v.kernel],
                                       "pads": [h.pads[0], v.pads[0], h.pads[1], v.pads[1]]})]
    if relu:
        steps.append(("Relu", [], {}))
    axes = [2, 3]
    if s > 1:  # DepthToSpace (DCR) in NHWC: rows of s*Cout contiguous values move as blocks
        steps += [("Transpose", [], {"perm": [0, 2, 3, 1]}),
                  ("Reshape", [np.array([-1, v.length // s, s, s * c_out], np.int64)], {}),
                  ("Transpose", [], {"perm": [0, 2, 1, 3]}),
                  ("Reshape", [np.array([-1, h.length, v.length, c_out], np.int64)], {})]
        axes = [1, 2]
    if (h.crop[0], v.crop[0], h.crop[1], v.crop[1]) != (0, 0, h.length, v.length):
        starts = np.array([h.crop[0], v.crop[0]], np.int64)
        ends = starts + np.array([h.crop[1], v.crop[1]], np.int64)
        steps.append(("Slice", [starts, ends, np.array(axes, np.int64)], {}))
    if s > 1:
        steps.append(("Transpose", [], {"perm": [0, 3, 1, 2]}))
    return steps
