"""int8 bundles: static QDQ quantization of a float bundle with onnxruntime.quantization.

    quantize_bundle("bundles/float", tmp_dir, {"hand": x_hand, "print": x_print})

Each graph holding Conv or MatMul nodes is quantized separately (int8 per-channel weights,
uint8 activations, QuantizeLinear/DequantizeLinear pairs: standard ONNX operators, which
onnxruntime fuses into QLinearConv/QLinearMatMul when it loads the graph), calibrated
(min/max) on real inputs of that graph: training examples of the modalities, the noise the
manifest prescribes, and the latents and posteriors the float bundle's own graphs compute for
those examples. Graphs without such nodes (fusion) are copied. Static rather than dynamic
quantization, from `bench/onnx_quantized.py`: onnxruntime's ConvInteger (dynamic) ran slower
than float convolution on AVX2. A QDQ ConvTranspose is not fused (onnxruntime runs it as
dequantize + float ConvTranspose), so each one is first rewritten as the equivalent sub-pixel
convolution (`mmali_tf.export.subpixel`: Conv + a pixel shuffle); the shuffle's
Reshape/Transpose/Slice nodes then move uint8 values, and a Relu after a quantized Conv or
MatMul folds into that node's output range. Conv weights get zero point -1
(`shift_conv_weight_zero_points`), which moves onnxruntime from its symmetric
direct-convolution kernel to its int8 GEMM (AMX / VNNI).

No TensorFlow here; the fidelity report (TensorFlow classifiers) is added by
`mmali_tf.export.fidelity`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime import quantization as ortq

from mmali_tf.export import bundle_files
from mmali_tf.export import manifest as manifest_lib
from mmali_tf.export import shared_weights
from mmali_tf.export import subpixel
from mmali_tf.export.runtime import Bundle

METHOD = "static_int8"
OP_TYPES = ("Conv", "MatMul")
#: quantized where their input is (the quantizer leaves them float elsewhere): Relu, folded
#: into that input's range, and data movement (the sub-pixel convolutions' pixel shuffles,
#: `subpixel.SHUFFLE_OPS`), which then moves uint8 values.
FOLLOWER_OP_TYPES = ("Relu", *subpixel.SHUFFLE_OPS)
CALIBRATION_BATCH = 64


class _Feeds(ortq.CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def calibration_feeds(bundle: Bundle, graph: str, xs: Mapping[str, np.ndarray],
                      rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Batches of real inputs of `graph`: `xs` (modality -> examples, same count for every
    modality), noise of the manifest's distribution, and for decoders the latents the float
    `reconstruct_<m>` graph samples (`_latents`), for fusion the float encoders' posteriors."""
    entry = bundle.manifest["graphs"][graph]
    n = min(len(x) for x in xs.values())
    out = []
    for lo in range(0, n, CALIBRATION_BATCH):
        batch = {m: x[lo:lo + CALIBRATION_BATCH] for m, x in xs.items()}
        k = len(next(iter(batch.values())))
        feeds = {}
        for spec in entry["inputs"]:
            name, width = spec["name"], spec["shape"][1:]
            if name == "x":
                feeds[name] = batch[entry.get("modality") or entry["source"]]
            elif name.startswith("x_"):
                feeds[name] = batch[name[2:]]
            elif name == "z":
                feeds[name] = _latents(bundle, entry["modality"], batch[entry["modality"]], rng)
            elif name.startswith(("mean_", "logvar_")):
                mean, logvar = bundle.encode(name.split("_", 1)[1], batch[name.split("_", 1)[1]])
                feeds[name] = mean if name.startswith("mean_") else logvar
            elif name == "mask":
                mask = rng.integers(0, 2, (k, len(bundle.modalities))).astype(np.float32)
                mask[np.arange(k), rng.integers(0, len(bundle.modalities), k)] = 1.0
                feeds[name] = mask
            else:  # every other input is standard noise
                feeds[name] = bundle.noise((k, *width), rng)
        out.append(feeds)
    return out


def _latents(bundle: Bundle, modality: str, x: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Latents a decoder meets: those the float `reconstruct_<m>` graph samples for `x`, or
    prior draws (as `generate` decodes) when the bundle was exported without that graph."""
    noise = bundle.noise((len(x), bundle.latent_dim), rng)
    if f"reconstruct_{modality}" not in bundle.manifest["graphs"]:
        return noise
    return bundle.run(f"reconstruct_{modality}",
                      {"x": x, **({} if bundle.deterministic else {"noise": noise})})["z"]


def _quantizable(model: onnx.ModelProto) -> bool:
    """Whether `model` has Conv/MatMul nodes, or ConvTranspose ones (sub-pixel Conv after
    `subpixel.rewrite`)."""
    return any(node.op_type in (*OP_TYPES, "ConvTranspose") for node in model.graph.node)


def quantize_graph(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]],
                   workdir: str | os.PathLike) -> onnx.ModelProto:
    """The static QDQ int8 version of a self-contained float graph (its ConvTranspose nodes
    as sub-pixel convolutions), calibrated on `feeds`."""
    src, dst = Path(workdir) / "float.onnx", Path(workdir) / "int8.onnx"
    onnx.save(subpixel.rewrite(model), str(src))
    ortq.quantize_static(str(src), str(dst), _Feeds(feeds), quant_format=ortq.QuantFormat.QDQ,
                         op_types_to_quantize=[*OP_TYPES, *FOLLOWER_OP_TYPES], per_channel=True,
                         activation_type=ortq.QuantType.QUInt8,
                         weight_type=ortq.QuantType.QInt8,
                         calibrate_method=ortq.CalibrationMethod.MinMax)
    out = onnx.load(str(dst))
    shift_conv_weight_zero_points(out)
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    out.doc_string, out.model_version = model.doc_string, model.model_version
    return out


def shift_conv_weight_zero_points(model: onnx.ModelProto) -> int:
    """Give the symmetric int8 weights of Conv nodes zero point -1 (values shifted by -1:
    the same numbers, since q - zp is unchanged); returns how many tensors changed.

    onnxruntime runs a QLinearConv whose weight zero points are all 0 through its symmetric
    direct-convolution kernel and any other through im2col + its int8 GEMM, which uses AMX /
    AVX-512 VNNI where the CPU has them (the direct kernel does not: `bench/onnx_throughput.py
    --int8` measures the difference). Symmetric weights lie in -127..127, so the shift fits.
    """
    inits = {t.name: t for t in model.graph.initializer}
    users: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    changed = 0
    for node in model.graph.node:
        if (node.op_type != "DequantizeLinear" or len(node.input) < 3
                or users.get(node.output[0]) != {"Conv"}
                or not {node.input[0], node.input[2]} <= set(inits)):
            continue
        w, zp = (numpy_helper.to_array(inits[n]) for n in (node.input[0], node.input[2]))
        if w.dtype != np.int8 or zp.any() or w.min() < -127:
            continue
        inits[node.input[0]].CopyFrom(numpy_helper.from_array(w - np.int8(1), node.input[0]))
        inits[node.input[2]].CopyFrom(numpy_helper.from_array(zp - np.int8(1), node.input[2]))
        changed += 1
    return changed


def quantize_bundle(src: str | os.PathLike, out_dir: str | os.PathLike,
                    xs: Mapping[str, np.ndarray], seed: int = 0) -> dict[str, Any]:
    """Write the int8 version of float bundle `src` into the empty directory `out_dir`.

    `xs`: calibration examples per modality (float32 in each modality's range; the same
    count for every modality, e.g. 256 training examples). Returns the manifest written; its
    `quantization` record names the method, the quantized operator types, the calibration and
    the float bundle's manifest sha256.
    """
    bundle = Bundle(src)
    if bundle.manifest.get("quantization"):
        raise ValueError(f"bundle {str(src)!r} is already quantized; quantize a float bundle")
    rng = np.random.default_rng(seed)
    shared = bundle_files.read_external_data(bundle.path, bundle.manifest)
    protos = {}
    with tempfile.TemporaryDirectory() as work:
        for graph, entry in bundle.manifest["graphs"].items():
            model = onnx.load(str(bundle.path / entry["file"]), load_external_data=False)
            shared_weights.inline(model, shared, bundle.manifest.get("external_data"), graph)
            if _quantizable(model):
                model = quantize_graph(model, calibration_feeds(bundle, graph, xs, rng), work)
            protos[graph] = model
    out = Path(out_dir)
    weights = shared_weights.share_initializers(protos.values())
    (out / shared_weights.WEIGHTS_FILE).write_bytes(weights)
    for graph, model in protos.items():
        onnx.save(model, str(out / bundle.manifest["graphs"][graph]["file"]))
    manifest = {k: v for k, v in bundle.manifest.items() if k != "files"}
    manifest["external_data"] = shared_weights.WEIGHTS_FILE
    manifest["quantization"] = {
        "method": METHOD, "op_types": list(OP_TYPES), "per_channel": True,
        "conv_transpose": "subpixel_conv", "conv_weight_zero_point": -1,
        "calibration": {"examples": int(min(len(x) for x in xs.values())), "method": "minmax"},
        "float_manifest_sha256": manifest_lib.sha256_file(Path(src) / manifest_lib.MANIFEST_NAME)}
    return manifest_lib.write_manifest(out, manifest)


def set_fidelity(bundle_dir: str | os.PathLike, fidelity: Mapping[str, Any]) -> dict[str, Any]:
    """Record `fidelity` in the quantized bundle's manifest (rewritten, files re-checksummed)."""
    path = Path(bundle_dir) / manifest_lib.MANIFEST_NAME
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.pop("files")
    manifest["quantization"] = {**manifest["quantization"], "fidelity": dict(fidelity)}
    return manifest_lib.write_manifest(bundle_dir, manifest)
