"""Pure-NumPy pieces shared by the golden-fixture script and the equivalence tests.

- `seeded_weights` regenerates the starting weights from a seed (N(0, 0.02) kernels, zero
  biases: the authors' `init_param_normal` distribution) on both sides, so fixtures store
  what training changes, not where it starts;
- `summarise` stores a tensor whole (float32) and `compare` checks every entry of it;
- `pack` / `unpack`: one group of tensors (every trained tensor of a model, in a fixed key
  order) as one flat array, so that a fixture with many small tensors per iteration does not
  spend most of its bytes on one archive member per tensor.
"""

from __future__ import annotations

import zlib
from typing import Iterable, Mapping

import numpy as np

INIT_STDDEV = 0.02
# smallest relative distance of a kink input from its kink in a golden case
# (tools/golden/kinks.py explains the value; tests/golden/test_kink_margins.py checks it)
KINK_MARGIN = 2e-6


def _rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def seeded_weights(shapes: Iterable[tuple[str, tuple[int, ...]]], seed: int,
                   stddev: float = INIT_STDDEV,
                   bias_stddev: float = 0.0) -> dict[str, np.ndarray]:
    """name -> float32 array: N(0, stddev) for tensors of rank >= 2, N(0, bias_stddev) (zeros
    by default) for rank 1. Nonzero biases keep a pre-activation off its kink where all its
    inputs are zero (a dead corner of a narrow transposed convolution)."""
    out = {}
    for name, shape in shapes:
        shape = tuple(int(s) for s in shape)
        scale = stddev if len(shape) >= 2 else bias_stddev
        out[name] = (_rng(name, seed).standard_normal(shape) * scale).astype(np.float32)
    return out


def compare(name: str, got: np.ndarray, want: np.ndarray, rtol: float,
            atol: float, slack: np.ndarray | None = None) -> str | None:
    """None if `got` matches the stored `want` entry by entry, else a one-line reason.

    Entries are compared with `atol + rtol * (|want| + rms) + slack`, rms the stored tensor's
    root mean square (entries near zero by cancellation are judged on the tensor's scale);
    `slack` (same shape as `got`) is a per-entry extra tolerance.
    """
    g = np.asarray(got, np.float64).ravel()
    w = np.asarray(want, np.float64).ravel()
    extra = np.zeros(g.size) if slack is None else np.asarray(slack, np.float64).ravel()
    if w.size != g.size:
        return f"{name}: {g.size} entries, the fixture has {w.size} (shape {np.shape(got)})"
    rms = float(np.sqrt(np.mean(w ** 2))) if w.size else 0.0
    tol = atol + rtol * (np.abs(w) + rms) + extra
    excess = np.abs(g - w) - tol
    if (excess > 0).any():
        i = int(np.argmax(excess))
        where = f"entry {tuple(map(int, np.unravel_index(i, np.shape(got))))}"
        n_bad = int((excess > 0).sum())
        return (f"{name}: {where} is {g[i]:.7g}, expected {w[i]:.7g} (tolerance {tol[i]:.2g}; "
                f"{n_bad} of {g.size} entries differ)")
    return None


def summarise(values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor, whole, as float32 (what a fixture stores and `compare` checks)."""
    return {k: np.asarray(v, np.float32) for k, v in values.items()}


def pack(values: Mapping[str, np.ndarray], shapes: Iterable[tuple[str, tuple[int, ...]]]
         ) -> np.ndarray:
    """The tensors `values` (exactly the keys of `shapes`, each of its shape) raveled and
    concatenated in the order of `shapes`, as float32."""
    shapes = [(k, tuple(int(d) for d in s)) for k, s in shapes]
    if set(values) != {k for k, _ in shapes}:
        raise ValueError(f"pack: tensors {sorted(set(values) ^ {k for k, _ in shapes})} are "
                         "not both in the values and in the key order")
    for k, s in shapes:
        if np.shape(values[k]) != s:
            raise ValueError(f"pack: {k} has shape {np.shape(values[k])}, expected {s}")
    return np.concatenate([np.asarray(values[k], np.float32).ravel() for k, _ in shapes])


def unpack(flat: np.ndarray, shapes: Iterable[tuple[str, tuple[int, ...]]]
           ) -> dict[str, np.ndarray]:
    """The inverse of `pack`: key -> tensor of its shape."""
    out, start = {}, 0
    for k, s in shapes:
        s = tuple(int(d) for d in s)
        size = int(np.prod(s))
        out[k] = np.asarray(flat[start:start + size]).reshape(s)
        start += size
    if start != np.size(flat):
        raise ValueError(f"unpack: {np.size(flat)} entries, the key order holds {start}")
    return out
