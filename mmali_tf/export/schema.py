"""The structure a bundle manifest must have: types, names, bounds and every graph's contract.

`validate(manifest, limits)` checks every field the runtime reads, so a manifest that passes
can be used without a KeyError, TypeError or unbounded allocation: modalities with bounded
integer shapes and finite value ranges, a consistent latent layout, graphs named after the
modalities (`encoder_<m>`, `translate_<a>_to_<b>`, ...) whose declared inputs and outputs are
exactly what their role implies, plain graph file names inside the bundle directory, an
optional shared weights file (`external_data`, format version 2), an optional `quantization`
record, and a sha256 for every graph file and the weights file and nothing else. Violations
raise a one-line `BundleError`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping, NoReturn

from mmali_tf.export.errors import BundleError, show
from mmali_tf.export.limits import DEFAULT_LIMITS, Limits

FORMAT = "mmali_tf.bundle"
#: bumped whenever a reader of the previous version would misinterpret a bundle
#: (2: graphs may refer to one shared weights file, `external_data`; optional `quantization`).
FORMAT_VERSION = 2
#: versions this reader loads (a version-1 bundle has every weight inside its graphs).
READABLE_VERSIONS = (1, 2)
NOISE_DISTRIBUTIONS = ("normal", "laplace")
KINDS = ("image", "vector")
#: top-level keys every manifest has (in writing order).
REQUIRED_KEYS = ("format", "format_version", "model", "modalities", "latent", "noise",
                 "fusion_methods", "opset", "weights", "checkpoint_step", "training_flags",
                 "graphs", "files")
#: modality and fusion-method names: they become parts of graph and file names.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: graph files: a plain name in the bundle directory (no separators, no leading dot).
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.onnx")
#: the shared weights file: a plain name in the bundle directory.
DATA_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.bin")
#: int8 quantization methods an export may record (`quantization.method`).
QUANTIZATION_METHODS = ("dynamic_int8", "static_int8")
SHA256 = re.compile(r"[0-9a-f]{64}")
#: name -> per-example shape (batch axis excluded) of one graph input or output.
Signature = dict[str, tuple[int, ...]]


def _fail(where: str, value: Any, expected: str) -> NoReturn:
    raise BundleError(f"bundle manifest {where} is {show(value)}; expected {expected}")


def _object(where: str, value: Any, keys: tuple[str, ...] = ()) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        _fail(where, value, "a JSON object")
    missing = [k for k in keys if k not in value]
    if missing:
        raise BundleError(f"bundle manifest {where} lacks required keys {missing}")
    return value


def _int(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _fail(where, value, f"an integer in [{low}, {high}]")
    return value


def _name(where: str, value: Any, limits: Limits, pattern: re.Pattern = NAME) -> str:
    if not isinstance(value, str) or len(value) > limits.text or not pattern.fullmatch(value):
        _fail(where, value, f"a name matching {pattern.pattern} of at most {limits.text} "
                            f"characters")
    return value


def _list(where: str, value: Any, low: int, high: int) -> list:
    if not isinstance(value, list) or not low <= len(value) <= high:
        _fail(where, value, f"a JSON array of {low} to {high} items")
    return value


def validate(manifest: Any, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise a one-line `BundleError` unless `manifest` follows this format version."""
    if not isinstance(manifest, dict):
        raise BundleError(f"bundle manifest must be a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"not an mmali_tf bundle manifest: format is "
                          f"{show(manifest.get('format'))}, expected {FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"bundle format_version must be an integer, got {show(version)}")
    if version not in READABLE_VERSIONS:
        newer = "newer than" if version > FORMAT_VERSION else "older than"
        raise BundleError(f"bundle format_version {show(version)} is {newer} the versions this "
                          f"runtime reads ({', '.join(map(str, READABLE_VERSIONS))}); re-export "
                          f"the bundle or upgrade mmali_tf")
    _object("", manifest, REQUIRED_KEYS)
    model = _object("model", manifest["model"], ("name", "deterministic", "default_fusion"))
    if not isinstance(model["name"], str) or len(model["name"]) > limits.text:
        _fail("model.name", model["name"], f"a string of at most {limits.text} characters")
    if not isinstance(model["deterministic"], bool):
        _fail("model.deterministic", model["deterministic"], "true or false")
    _name("model.default_fusion", model["default_fusion"], limits)
    _modalities(manifest["modalities"], limits)
    _latent(manifest["latent"], limits)
    noise = _object("noise", manifest["noise"], ("distribution",))
    if noise["distribution"] not in NOISE_DISTRIBUTIONS:
        _fail("noise.distribution", noise["distribution"], f"one of {NOISE_DISTRIBUTIONS}")
    methods = _list("fusion_methods", manifest["fusion_methods"], 0, 16)
    for i, method in enumerate(methods):
        _name(f"fusion_methods[{i}]", method, limits)
    if len(set(methods)) != len(methods):
        _fail("fusion_methods", methods, "distinct names")
    _int("opset", manifest["opset"], 1, 1000)
    if manifest["checkpoint_step"] is not None:
        _int("checkpoint_step", manifest["checkpoint_step"], 0, 2 ** 63 - 1)
    _object("training_flags", manifest["training_flags"])
    _version_2_fields(manifest, version, limits)
    _graphs(manifest, limits)


def _version_2_fields(manifest: Mapping[str, Any], version: int, limits: Limits) -> None:
    """`external_data` (null or a plain `.bin` name) and `quantization` (null or a record of
    the method and its fidelity report), both absent from version-1 bundles."""
    if version < 2:
        for key in ("external_data", "quantization"):
            if key in manifest:
                _fail(key, manifest[key], f"no {key!r} in a format_version {version} bundle")
        return
    data = manifest.get("external_data")
    if data is not None:
        _name("external_data", data, limits, DATA_FILE_NAME)
    quant = manifest.get("quantization")
    if quant is not None:
        quant = _object("quantization", quant, ("method",))
        if quant["method"] not in QUANTIZATION_METHODS:
            _fail("quantization.method", quant["method"], f"one of {QUANTIZATION_METHODS}")


def _modalities(modalities: Any, limits: Limits) -> None:
    _list("modalities", modalities, 1, limits.modalities)
    for i, spec in enumerate(modalities):
        where = f"modalities[{i}]"
        spec = _object(where, spec, ("name", "shape", "kind", "value_range", "dtype"))
        _name(f"{where}.name", spec["name"], limits)
        shape = _list(f"{where}.shape", spec["shape"], 1, 8)
        for k, dim in enumerate(shape):
            _int(f"{where}.shape[{k}]", dim, 1, limits.dim)
        if math.prod(shape) > limits.example_elements:
            _fail(f"{where}.shape", shape, f"at most {limits.example_elements} elements per "
                                           f"example (Limits.example_elements)")
        if spec["kind"] not in KINDS:
            _fail(f"{where}.kind", spec["kind"], f"one of {KINDS}")
        if spec["kind"] == "image" and (len(shape) != 3 or shape[2] not in (1, 3)):
            _fail(f"{where}.shape", shape, "[height, width, 1 or 3] for an image modality")
        if spec["dtype"] != "float32":
            _fail(f"{where}.dtype", spec["dtype"], "'float32'")
        bounds = _list(f"{where}.value_range", spec["value_range"], 2, 2)
        if not (all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b)
                    for b in bounds) and bounds[0] < bounds[1]):
            _fail(f"{where}.value_range", bounds, "[low, high] with finite low < high")
    names = [s["name"] for s in modalities]
    if len(set(names)) != len(names):
        _fail("modalities", names, "distinct modality names")


def _latent(latent: Any, limits: Limits) -> None:
    latent = _object("latent", latent, ("latent_dim", "style_dim", "content_dim"))
    total = _int("latent.latent_dim", latent["latent_dim"], 1, limits.dim)
    style = _int("latent.style_dim", latent["style_dim"], 0, limits.dim)
    content = _int("latent.content_dim", latent["content_dim"], 1, limits.dim)
    if style + content != total:
        _fail("latent", latent, "latent_dim = style_dim + content_dim")


def contracts(manifest: Mapping[str, Any]) -> dict[str, tuple[str, Signature, Signature]]:
    """Graph name -> (role, inputs, outputs) of every graph a bundle of these modalities may hold.

    Every input and output is float32 with a leading dynamic `batch` axis (not listed here).
    """
    shapes = {s["name"]: tuple(s["shape"]) for s in manifest["modalities"]}
    lat = manifest["latent"]
    z, content, style = (lat["latent_dim"],), (lat["content_dim"],), (lat["style_dim"],)
    stochastic = not manifest["model"]["deterministic"]
    noise = {"noise": z} if stochastic else {}
    style_noise = {"style_noise": style} if lat["style_dim"] else {}
    posterior = {"mean": z, **({"logvar": z} if stochastic else {})}
    out: dict[str, tuple[str, Signature, Signature]] = {}
    for m, shape in shapes.items():
        out[f"encoder_{m}"] = ("encoder", {"x": shape}, posterior)
        out[f"decoder_{m}"] = ("decoder", {"z": z}, {"x": shape})
        out[f"reconstruct_{m}"] = ("reconstruct", {"x": shape, **noise}, {"x_out": shape, "z": z})
        for target, target_shape in shapes.items():
            if target != m:
                out[f"translate_{m}_to_{target}"] = (
                    "translate", {"x": shape, **noise, **style_noise},
                    {"x_out": target_shape, "z": z})
    if stochastic and len(shapes) > 2:
        subset_inputs = {f"x_{m}": shape for m, shape in shapes.items()}
        subset_inputs.update({"mask": (len(shapes),), "noise": content, **style_noise})
        for target, target_shape in shapes.items():
            out[f"translate_subset_to_{target}"] = (
                "translate_subset", subset_inputs, {"x_out": target_shape, "z": z})
    fuse_inputs = {f"{p}_{m}": z for m in shapes for p in ("mean", "logvar")}
    fuse_inputs["mask"] = (len(shapes),)
    for method in manifest["fusion_methods"]:
        out[f"fuse_{method}"] = ("fuse", fuse_inputs, {"mean": content, "logvar": content})
    generate_inputs = {"content_noise": content}
    if lat["style_dim"]:
        generate_inputs.update({f"style_noise_{m}": style for m in shapes})
    out["generate"] = ("generate", generate_inputs, {f"x_{m}": s for m, s in shapes.items()})
    return out


def _graphs(manifest: Mapping[str, Any], limits: Limits) -> None:
    graphs = _object("graphs", manifest["graphs"])
    if not 1 <= len(graphs) <= limits.graphs:
        raise BundleError(f"bundle manifest lists {len(graphs)} graphs; expected 1 to "
                          f"{limits.graphs} (Limits.graphs)")
    known = contracts(manifest)
    for name, graph in graphs.items():
        if name not in known:
            raise BundleError(f"bundle graph {show(name)} is not a graph of these modalities; "
                              f"expected one of {show(sorted(known), 200)}")
        graph = _object(f"graphs[{name!r}]", graph, ("file", "role", "inputs", "outputs"))
        file = graph["file"]
        if (not isinstance(file, str) or len(file) > limits.text
                or not FILE_NAME.fullmatch(file)):
            _fail(f"graphs[{name!r}].file", file, "a plain '<name>.onnx' file name inside "
                                                  "the bundle directory (no '/', '..' or "
                                                  "absolute path)")
        role, inputs, outputs = known[name]
        if graph["role"] != role:
            _fail(f"graphs[{name!r}].role", graph["role"], repr(role))
        _signature(name, "inputs", graph["inputs"], inputs)
        _signature(name, "outputs", graph["outputs"], outputs)
    files = _object("files", manifest["files"])
    used = {g["file"] for g in graphs.values()}
    if manifest.get("external_data") is not None:
        used.add(manifest["external_data"])
    unlisted, unused = sorted(used - set(files)), sorted(set(files) - used)
    if unlisted:
        raise BundleError(f"bundle file {unlisted[0]!r} has no sha256 in the manifest's files")
    if unused:
        raise BundleError(f"bundle manifest files lists {show(unused[0])}, which no graph uses "
                          f"and external_data does not name")
    for file, digest in files.items():
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            _fail(f"files[{file!r}]", digest, "a sha256 of 64 lowercase hexadecimal digits")


def _signature(graph: str, field: str, declared: Any, expected: Signature) -> None:
    """Declared inputs/outputs must be exactly {name, dtype: float32, shape: [batch, *dims]}."""
    want = {n: json.dumps(["float32", ["batch", *dims]]) for n, dims in expected.items()}
    _list(f"graphs[{graph!r}].{field}", declared, 0, len(want))
    got = {}
    for i, value in enumerate(declared):
        value = _object(f"graphs[{graph!r}].{field}[{i}]", value, ("name", "dtype", "shape"))
        got[value["name"] if isinstance(value["name"], str) else show(value["name"])] = \
            json.dumps([value["dtype"], value["shape"]])
    if sorted(got) != sorted(want) or len(got) != len(declared):
        raise BundleError(f"bundle graph {graph!r} declares {field} {show(sorted(got), 120)}; "
                          f"expected {sorted(want)}")
    for n in want:
        if got[n] != want[n]:
            raise BundleError(f"bundle graph {graph!r} {field[:-1]} {n!r} is declared as "
                              f"{show(got[n], 120)}; expected {want[n]} (dtype, shape)")
