"""On-disk cache of derived datasets: atomic .npz files verified by a sha256 sidecar.

A cache entry is `<dir>/<name>-<key>.npz` plus `<dir>/<name>-<key>.json`; the key hashes the
parameters that produced the arrays, so changing a parameter (or the builder version) starts a
new entry. The sidecar records the sha256 of the .npz bytes; an entry whose bytes do not match,
or that cannot be read, is reported with a warning and rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from typing import Any, Callable, Mapping

import numpy as np

from mmali_tf.atomic import atomic_write_bytes
from mmali_tf.config import DataSettings

ENV_VAR = "MMALI_CACHE"


def cache_root(config: Mapping[str, Any]) -> str:
    """Cache directory: flag `cache_dir`, else $MMALI_CACHE, else ~/.cache/mmali_tf."""
    path = DataSettings.from_config(config).cache_dir or os.environ.get(ENV_VAR, "") or os.path.join(
        os.path.expanduser("~"), ".cache", "mmali_tf")
    return os.path.abspath(os.path.expanduser(path))


def params_key(params: Mapping[str, Any]) -> str:
    """Short stable hash of JSON-serialisable parameters."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _read_verified(npz_path: str, meta_path: str) -> dict[str, np.ndarray]:
    """Arrays of a cache entry; raises ValueError when the entry is missing parts or corrupt."""
    with open(meta_path, "r", encoding="utf-8") as f:
        meta = json.load(f)
    with open(npz_path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("sha256"):
        raise ValueError(f"sha256 {digest[:12]}.. does not match the recorded "
                         f"{str(meta.get('sha256'))[:12]}..")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if sorted(arrays) != sorted(meta.get("arrays", {})):
        raise ValueError(f"arrays {sorted(arrays)} differ from the recorded "
                         f"{sorted(meta.get('arrays', {}))}")
    return arrays


def cached_arrays(root: str, name: str, params: Mapping[str, Any],
                  build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays built by `build()` for `params`, read from the cache when a valid entry exists.

    A missing entry is built and written atomically; a corrupt or truncated one is reported
    with a `UserWarning` and rebuilt.
    """
    stem = os.path.join(root, f"{name}-{params_key(params)}")
    npz_path, meta_path = stem + ".npz", stem + ".json"
    if os.path.exists(npz_path) or os.path.exists(meta_path):
        try:
            return _read_verified(npz_path, meta_path)
        except (OSError, ValueError, json.JSONDecodeError) as e:
            warnings.warn(f"cache entry {npz_path} is corrupt or incomplete ({e}); rebuilding it",
                          stacklevel=2)
    arrays = build()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    meta = {"name": name, "params": dict(params), "sha256": hashlib.sha256(data).hexdigest(),
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)}
                       for k, v in arrays.items()}}
    atomic_write_bytes(npz_path, data)
    atomic_write_bytes(meta_path, json.dumps(meta, indent=1, sort_keys=True).encode())
    return arrays
