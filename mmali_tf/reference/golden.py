"""Pure-NumPy pieces shared by the golden-fixture script and the equivalence tests.

Full-size networks hold ~10M parameters, so a fixture cannot store every weight, gradient and
updated parameter and stay a few MB. Instead:
- `seeded_weights` regenerates the starting weights from a seed (N(0, 0.02) kernels, zero
  biases: the authors' `init_param_normal` distribution) on both sides;
- `probe` summarises a large tensor by its norm, its projections on `PROBES` seeded random
  unit vectors and `SAMPLES` seeded entries; tensors up to `FULL_SIZE` entries are stored whole.
A projection on a unit vector differs by at most the norm of the difference, so comparing
probes with tolerance `rtol * norm` bounds the relative error of the whole tensor (with
probability ~1 for any structured error such as a swapped axis or a missing term).
"""

from __future__ import annotations

import zlib
from typing import Iterable, Mapping

import numpy as np

FULL_SIZE = 4096
PROBES = 4
SAMPLES = 32
INIT_STDDEV = 0.02


def _rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def seeded_weights(shapes: Iterable[tuple[str, tuple[int, ...]]], seed: int,
                   stddev: float = INIT_STDDEV) -> dict[str, np.ndarray]:
    """name -> float32 array: N(0, stddev) for tensors of rank >= 2, zeros for rank 1."""
    out = {}
    for name, shape in shapes:
        shape = tuple(int(s) for s in shape)
        if len(shape) >= 2:
            out[name] = (_rng(name, seed).standard_normal(shape) * stddev).astype(np.float32)
        else:
            out[name] = np.zeros(shape, np.float32)
    return out


def _probe_basis(name: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(PROBES unit directions, SAMPLES entry indices) of tensor `name` (seeded by its name)."""
    rng = _rng("probe/" + name, 0)
    dirs = rng.standard_normal((PROBES, size))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return dirs, rng.choice(size, SAMPLES, replace=False)


def probe(name: str, value: np.ndarray) -> np.ndarray:
    """The stored summary of tensor `name`: the tensor itself if small, else [norm, projections,
    sampled entries] (float64 arithmetic, float32 result)."""
    flat = np.asarray(value, np.float64).ravel()
    if flat.size <= FULL_SIZE:
        return flat.astype(np.float32)
    dirs, idx = _probe_basis(name, flat.size)
    return np.concatenate([[np.linalg.norm(flat)], dirs @ flat, flat[idx]]).astype(np.float32)


def compare(name: str, got: np.ndarray, probe_want: np.ndarray, rtol: float,
            atol: float, slack: np.ndarray | None = None) -> str | None:
    """None if `got` (the full tensor) matches the stored probe, else a one-line reason.

    Entries are compared with `atol + rtol * (|want| + rms)`, rms the tensor's root mean square
    (so entries near zero by cancellation are judged on the tensor's scale); norm and
    projections with `atol + rtol * norm`. `slack` (same shape as `got`) adds a per-entry
    tolerance (its norm for the norm and projections).
    """
    got = np.asarray(got)
    p, w = probe(name, got).astype(np.float64), np.asarray(probe_want, np.float64)
    if p.shape != w.shape:
        return f"{name}: summary shape {p.shape}, expected {w.shape} (tensor shape {got.shape})"
    extra = np.zeros(got.size) if slack is None else np.asarray(slack, np.float64).ravel()
    if got.size <= FULL_SIZE:
        rms = float(np.sqrt(np.mean(w ** 2))) if w.size else 0.0
        what = [f"entry {i}" for i in range(w.size)]
        tol = atol + rtol * (np.abs(w) + rms) + extra
    else:
        rms = w[0] / np.sqrt(got.size)
        what = ["norm"] + [f"projection {i}" for i in range(PROBES)] + \
            [f"sampled entry {i}" for i in range(SAMPLES)]
        idx = _probe_basis(name, got.size)[1]
        tol = np.concatenate([np.full(1 + PROBES, atol + rtol * w[0] + np.linalg.norm(extra)),
                              atol + rtol * (np.abs(w[1 + PROBES:]) + rms) + extra[idx]])
    bad = np.abs(p - w) > tol
    if bad.any():
        i = int(np.argmax(np.abs(p - w) - tol))
        return f"{name}: {what[i]} is {p[i]:.7g}, expected {w[i]:.7g} (tolerance {tol[i]:.2g})"
    return None


def summarise(values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`probe` of every tensor, by name."""
    return {k: probe(k, v) for k, v in values.items()}
