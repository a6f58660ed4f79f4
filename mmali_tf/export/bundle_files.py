"""Reading a bundle's files as untrusted input (numpy-free; onnx + onnxruntime, never TensorFlow).

`open_bundle` reads `manifest.json` (optionally pinned to a sha256), validates it, refuses any
directory entry the manifest does not list, symbolic links and non-regular files, bounds every
size and checks every graph's sha256. `load_session` re-reads one graph, checks its sha256 on
the very bytes it will use, refuses graphs that reference data outside themselves (external
tensors other than checked references into the manifest's `external_data` file, operator
domains other than standard ONNX, local functions), copies the shared weights into the graph
(`mmali_tf.export.shared_weights`), creates the onnxruntime session from those bytes (so
onnxruntime never resolves a path) and checks the graph's real inputs and outputs against the
manifest. Every refusal is a one-line `BundleError`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import IO, Any, Mapping

import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from mmali_tf.export import manifest as manifest_lib
from mmali_tf.export import shared_weights
from mmali_tf.export.errors import BundleError, first_line, show
from mmali_tf.export.limits import DEFAULT_LIMITS, Limits

#: operator domains a bundle graph may use (the exporter emits only these).
ALLOWED_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
#: every exception class onnxruntime raises (they derive from Exception only).
ORT_ERRORS = tuple(v for v in vars(ort_state).values()
                   if isinstance(v, type) and issubclass(v, Exception))
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BLOCK = 1 << 20


def open_bundle(path: str | os.PathLike, digest: str | None = None,
                limits: Limits = DEFAULT_LIMITS) -> tuple[Path, dict[str, Any]]:
    """Check a bundle directory; returns (its resolved path, its validated manifest).

    Raises:
      FileNotFoundError: `path` is not a directory or has no manifest.json.
      BundleError: anything else (digest, manifest, listing, sizes, checksums).
    """
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"bundle directory {str(directory)!r} does not exist")
    directory = directory.resolve()
    if not os.path.lexists(directory / manifest_lib.MANIFEST_NAME):
        raise FileNotFoundError(f"bundle {str(directory)!r} has no {manifest_lib.MANIFEST_NAME}; "
                                f"expected a directory written by tools/export_onnx.py")
    raw = read_file(directory, manifest_lib.MANIFEST_NAME, limits.manifest_bytes,
                    "Limits.manifest_bytes")
    if digest is not None:
        manifest_lib.check_digest(raw, digest)
    manifest = manifest_lib.parse_manifest(raw, limits)
    _check_listing(directory, manifest, limits)
    for name, expected in manifest["files"].items():
        digest_of = hashlib.sha256()
        with _open(directory, name, limits.graph_bytes, "Limits.graph_bytes") as f:
            for block in iter(lambda: f.read(_BLOCK), b""):
                digest_of.update(block)
        _check_sha(name, digest_of.hexdigest(), expected)
    return directory, manifest


def _check_listing(directory: Path, manifest: Mapping[str, Any], limits: Limits) -> None:
    """Only manifest.json and the listed graph files, all regular files, bounded in total."""
    expected = {manifest_lib.MANIFEST_NAME, *manifest["files"]}
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name not in expected:
                    raise BundleError(f"bundle directory holds {show(entry.name)}, which its "
                                      f"manifest does not list; a bundle holds only "
                                      f"{manifest_lib.MANIFEST_NAME} and its graph files")
                info = entry.stat(follow_symlinks=False)
                _check_regular(entry.name, info.st_mode)
                total += info.st_size
    except OSError as error:
        raise BundleError(f"cannot list bundle directory {str(directory)!r} "
                          f"({error.strerror})") from None
    if total > limits.bundle_bytes:
        raise BundleError(f"bundle files hold {total} bytes; the limit is {limits.bundle_bytes} "
                          f"(Limits.bundle_bytes)")


def _check_regular(name: str, mode: int) -> None:
    if stat.S_ISLNK(mode):
        raise BundleError(f"bundle file {show(name)} is a symbolic link; bundle files must be "
                          f"regular files inside the bundle directory")
    if not stat.S_ISREG(mode):
        raise BundleError(f"bundle entry {show(name)} is not a regular file")


def _check_sha(name: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise BundleError(f"bundle file {name!r} does not match its manifest sha256 (modified "
                          f"or corrupted); refusing to load it")


def _open(directory: Path, name: str, max_bytes: int, limit: str) -> IO[bytes]:
    """Open `directory/name` for reading: a regular file, not a link, at most `max_bytes`."""
    path = directory / name
    try:
        _check_regular(name, os.lstat(path).st_mode)
        f = os.fdopen(os.open(path, os.O_RDONLY | _NOFOLLOW), "rb")
    except FileNotFoundError:
        raise BundleError(f"bundle {str(directory)!r} is incomplete: {name!r} listed in the "
                          f"manifest is missing") from None
    except OSError as error:
        raise BundleError(f"cannot read bundle file {name!r} ({error.strerror})") from None
    info = os.fstat(f.fileno())
    if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
        f.close()
        _check_regular(name, info.st_mode)
        raise BundleError(f"bundle file {name!r} has {info.st_size} bytes; the limit is "
                          f"{max_bytes} ({limit})")
    return f


def read_file(directory: Path, name: str, max_bytes: int, limit: str) -> bytes:
    """The bytes of bundle file `name` (see `_open`); refuses a file that grows past the limit."""
    with _open(directory, name, max_bytes, limit) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BundleError(f"bundle file {name!r} has more than {max_bytes} bytes ({limit})")
    return data


def check_graph(graph: str, data: bytes, data_file: str | None = None,
                data_size: int = 0) -> onnx.ModelProto:
    """Parse ONNX bytes without resolving anything; refuse references outside the graph
    except top-level initializers referring to `data_file` (of `data_size` bytes) within
    range. Returns the parsed model."""
    try:
        model = onnx.ModelProto.FromString(data)
    except DecodeError:
        raise BundleError(f"bundle graph {graph!r} is not a readable ONNX model") from None
    if len(model.functions):
        raise BundleError(f"bundle graph {graph!r} defines local functions; bundle graphs use "
                          f"standard ONNX operators only")
    for t in model.graph.initializer:
        if _external(t):
            shared_weights.check_reference(graph, t, data_file, data_size)
    _check_subgraph(graph, model.graph, top=True)
    return model


def _external(t: onnx.TensorProto) -> bool:
    return t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) > 0


def _check_subgraph(graph: str, g: onnx.GraphProto, top: bool = False) -> None:
    tensors = [] if top else list(g.initializer)  # top-level ones are checked by the caller
    tensors += [t for s in g.sparse_initializer for t in (s.values, s.indices)]
    for node in g.node:
        if node.domain not in ALLOWED_DOMAINS:
            raise BundleError(f"bundle graph {graph!r} uses operator {show(node.op_type)} of "
                              f"domain {show(node.domain)}; expected standard ONNX operators "
                              f"(domains {ALLOWED_DOMAINS})")
        for attr in node.attribute:
            sparse = [attr.sparse_tensor, *attr.sparse_tensors]
            tensors += [attr.t, *attr.tensors, *(t for s in sparse for t in (s.values, s.indices))]
            for sub in (attr.g, *attr.graphs):
                _check_subgraph(graph, sub)
    for t in tensors:
        if _external(t):
            location = {e.key: e.value for e in t.external_data}.get("location", "")
            raise BundleError(f"bundle graph {graph!r} keeps tensor {show(t.name)} in external "
                              f"file {show(location)}; bundle graphs must embed all their data "
                              f"(only top-level initializers may refer to the external_data "
                              f"file)")


def read_external_data(directory: Path, manifest: Mapping[str, Any],
                       limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The bytes of the manifest's `external_data` file, sha256-checked (b"" if none)."""
    name = manifest.get("external_data")
    if name is None:
        return b""
    data = read_file(directory, name, limits.graph_bytes, "Limits.graph_bytes")
    _check_sha(name, hashlib.sha256(data).hexdigest(), manifest["files"][name])
    return data


def load_session(directory: Path, graph: str, manifest: Mapping[str, Any],
                 options: ort.SessionOptions, limits: Limits = DEFAULT_LIMITS,
                 external: bytes | None = None) -> ort.InferenceSession:
    """A CPU session of manifest graph `graph`, checked as described in the module docstring.

    `external`: the bytes of the manifest's `external_data` file, already checked (read by
    `read_external_data` when None).
    """
    entry = manifest["graphs"][graph]
    file = entry["file"]
    data = read_file(directory, file, limits.graph_bytes, "Limits.graph_bytes")
    _check_sha(file, hashlib.sha256(data).hexdigest(), manifest["files"][file])
    data_file = manifest.get("external_data")
    model = check_graph(graph, data, data_file,
                        len(external) if external is not None else _size(directory, data_file))
    if any(_external(t) for t in model.graph.initializer):
        if external is None:
            external = read_external_data(directory, manifest, limits)
        shared_weights.inline(model, external, data_file, graph)
        data = model.SerializeToString()
    options.add_session_config_entry("session.load_model_format", "ONNX")
    try:
        session = ort.InferenceSession(data, sess_options=options,
                                       providers=["CPUExecutionProvider"])
    except ORT_ERRORS as error:
        raise BundleError(f"onnxruntime cannot load bundle graph {graph!r}: "
                          f"{first_line(error)}") from None
    _check_io(graph, "inputs", session.get_inputs(), entry["inputs"])
    _check_io(graph, "outputs", session.get_outputs(), entry["outputs"])
    return session


def _size(directory: Path, name: str | None) -> int:
    """Size of bundle file `name` (0 when None or unreadable: every reference is then refused)."""
    try:
        return os.lstat(directory / name).st_size if name else 0
    except OSError:
        return 0


def _check_io(graph: str, field: str, values: list, declared: list[dict[str, Any]]) -> None:
    """A graph's real inputs/outputs: same names, float32, same rank and static dims."""
    real = {v.name: v for v in values}
    want = {d["name"]: d["shape"] for d in declared}
    if sorted(real) != sorted(want):
        raise BundleError(f"bundle graph {graph!r} has {field} {show(sorted(real), 120)} in its "
                          f"ONNX file, but the manifest declares {sorted(want)}")
    for name, value in real.items():
        shape = value.shape if isinstance(value.shape, list) else None
        same = (value.type == "tensor(float)" and shape is not None
                and len(shape) == len(want[name])
                and all(r == w if isinstance(w, int) else not isinstance(r, int)
                        for r, w in zip(shape, want[name])))
        if not same:
            raise BundleError(f"bundle graph {graph!r} {field[:-1]} {name!r} is {value.type} "
                              f"{show(shape, 80)} in its ONNX file, but the manifest declares "
                              f"tensor(float) {want[name]}")
