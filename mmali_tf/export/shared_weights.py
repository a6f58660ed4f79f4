"""One weights file shared by every graph of a bundle (onnx only; never TensorFlow or numpy).

A bundle's graphs repeat the same networks (an encoder appears in its `encoder_<m>` graph and
in every `translate_<m>_to_*`, `reconstruct_<m>` graph), so the export stores each distinct
initializer once in `weights.bin` and leaves, in each graph, the tensor's name, type and shape
with an ONNX external-data reference (`location`, `offset`, `length`) into that file.

`share_initializers` (export side) moves the initializers; `check_reference` (loading side)
accepts a reference only when it names the manifest's weights file with an in-range offset
and exactly the bytes its type and shape need; `inline` copies the referenced bytes back into
the tensors, so onnxruntime gets self-contained graph bytes and never resolves a path. Any
ONNX reader that opens the graph file by path (onnxruntime, `onnx.load`) also finds
`weights.bin` beside it, as ONNX external data.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterable

import onnx

from mmali_tf.export.errors import BundleError, show

WEIGHTS_FILE = "weights.bin"
#: initializers smaller than this stay inside their graph (shapes, scalars, small biases).
MIN_SHARED_BYTES = 1024
#: every shared tensor starts at a multiple of this offset.
ALIGNMENT = 64
_KEYS = ("location", "offset", "length")


def _tensor_bytes(tensor: onnx.TensorProto) -> bytes:
    if tensor.HasField("raw_data"):
        return tensor.raw_data
    return onnx.numpy_helper.to_array(tensor).tobytes()


def share_initializers(models: Iterable[onnx.ModelProto],
                       min_bytes: int = MIN_SHARED_BYTES) -> bytes:
    """Move every initializer of at least `min_bytes` into one blob, each distinct content
    once; returns the blob (the content of `WEIGHTS_FILE`). The models are edited in place."""
    blob, offsets = bytearray(), {}
    for model in models:
        for tensor in model.graph.initializer:
            if tensor.data_type == onnx.TensorProto.STRING:
                continue
            data = _tensor_bytes(tensor)
            if len(data) < min_bytes:
                continue
            key = hashlib.sha256(data).digest()
            if key not in offsets:
                blob.extend(b"\0" * (-len(blob) % ALIGNMENT))
                offsets[key] = len(blob)
                blob.extend(data)
            dims, name, dtype = list(tensor.dims), tensor.name, tensor.data_type
            tensor.Clear()
            tensor.name, tensor.data_type = name, dtype
            tensor.dims.extend(dims)
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for k, v in zip(_KEYS, (WEIGHTS_FILE, offsets[key], len(data))):
                entry = tensor.external_data.add()
                entry.key, entry.value = k, str(v)
    return bytes(blob)


def expected_bytes(tensor: onnx.TensorProto) -> int | None:
    """Bytes a tensor of this type and shape holds (None: a type without a fixed size)."""
    if tensor.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    try:
        item = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    return item * math.prod(tensor.dims)


def check_reference(graph: str, tensor: onnx.TensorProto, data_file: str | None,
                    data_size: int) -> tuple[int, int]:
    """(offset, length) of a tensor's external-data reference, or a one-line BundleError
    unless it points inside the manifest's weights file with exactly the tensor's bytes."""
    ref = {e.key: e.value for e in tensor.external_data}
    location = ref.get("location", "")
    if data_file is None or location != data_file:
        raise BundleError(f"bundle graph {graph!r} keeps tensor {show(tensor.name)} in external "
                          f"file {show(location)}; bundle graphs must embed all their data or "
                          f"refer to the manifest's external_data file "
                          f"({show(data_file)})")
    if (tensor.data_location != onnx.TensorProto.EXTERNAL or len(ref) != len(tensor.external_data)
            or sorted(ref) != sorted(_KEYS) or tensor.HasField("raw_data")):
        raise BundleError(f"bundle graph {graph!r} tensor {show(tensor.name)} has the external "
                          f"data entries {show(sorted(ref))}; expected exactly {list(_KEYS)} "
                          f"and no embedded data")
    try:
        offset, length = int(ref["offset"]), int(ref["length"])
    except ValueError:
        offset = length = -1
    need = expected_bytes(tensor)
    if not (0 <= offset and 0 <= length and offset + length <= data_size and length == need):
        raise BundleError(f"bundle graph {graph!r} tensor {show(tensor.name)} refers to bytes "
                          f"{show(ref.get('offset'))}+{show(ref.get('length'))} of "
                          f"{data_file!r}; expected {need} bytes inside its {data_size}")
    return offset, length


def inline(model: onnx.ModelProto, data: bytes, data_file: str | None, graph: str) -> None:
    """Copy each top-level initializer's referenced bytes from `data` into the tensor."""
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            offset, length = check_reference(graph, tensor, data_file, len(data))
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
            tensor.raw_data = data[offset:offset + length]
