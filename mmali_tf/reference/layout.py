"""PyTorch -> Keras tensor layouts (pure NumPy).

PyTorch stores a Linear weight as (out, in), a Conv2d kernel as OIHW, a ConvTranspose2d kernel
as (in, out, kh, kw) and flattens NCHW feature maps in (C, H, W) order; Keras uses (in, out),
HWIO, (kh, kw, out, in) and NHWC flattening in (H, W, C) order; the 1-D layers (Conv1d (O, I,
k), ConvTranspose1d (I, O, k)) map the same way, to Keras' (k, I, O) and (k, O, I). A
spectral-norm layer's `u` has the output size in both; its `v` has the fan-in, ordered like
the flattened kernel input.
"""

from __future__ import annotations

import numpy as np


def chw_to_hwc_axis(n: int, chw: tuple[int, int, int]) -> np.ndarray:
    """Index map `idx` such that hwc_vector = chw_vector[idx] for a flattened (C, H, W) map."""
    c, h, w = chw
    if c * h * w != n:
        raise ValueError(f"cannot reorder {n} features as (C, H, W) = {chw}")
    return np.arange(n).reshape(c, h, w).transpose(1, 2, 0).ravel()


def dense_kernel(weight: np.ndarray, in_chw: tuple[int, int, int] | None = None,
                 out_chw: tuple[int, int, int] | None = None) -> np.ndarray:
    """Linear (out, in) -> Dense kernel (in, out).

    `in_chw`: the input is an NCHW map flattened by torch (Keras flattens NHWC);
    `out_chw`: the output is unflattened to (C, H, W) by torch (Keras reshapes to H, W, C).
    """
    k = np.asarray(weight).T
    if in_chw is not None:
        k = k[chw_to_hwc_axis(k.shape[0], in_chw)]
    if out_chw is not None:
        k = k[:, chw_to_hwc_axis(k.shape[1], out_chw)]
    return k


def dense_bias(bias: np.ndarray, out_chw: tuple[int, int, int] | None = None) -> np.ndarray:
    """Linear bias -> Dense bias; `out_chw` as in `dense_kernel` (the bias follows the output
    features into (H, W, C) order)."""
    b = np.asarray(bias)
    return b if out_chw is None else b[chw_to_hwc_axis(b.size, out_chw)]


def _spatial_first(weight: np.ndarray) -> np.ndarray:
    """(a, b, *spatial) -> (*spatial, b, a): torch's two channel axes last, reversed."""
    w = np.asarray(weight)
    return w.transpose(*range(2, w.ndim), 1, 0)


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """Conv2d OIHW -> Conv2D HWIO (Conv1d OIk -> Conv1D kIO)."""
    return _spatial_first(weight)


def conv_as_dense_kernel(weight: np.ndarray) -> np.ndarray:
    """Conv2d OIHW applied to a whole kh x kw map -> Dense kernel (kh * kw * I, O) on the NHWC
    flattening of that map."""
    w = conv_kernel(weight)
    return w.reshape(-1, w.shape[-1])


def conv_transpose_kernel(weight: np.ndarray) -> np.ndarray:
    """ConvTranspose2d (in, out, kh, kw) -> Conv2DTranspose (kh, kw, out, in) (ConvTranspose1d
    (in, out, k) -> Conv1DTranspose (k, out, in))."""
    return _spatial_first(weight)


def sn_v(v: np.ndarray, torch_weight_shape: tuple[int, ...],
         in_chw: tuple[int, int, int] | None = None) -> np.ndarray:
    """Spectral-norm `v` of torch's weight.reshape(out, -1) -> ours (fan-in of the Keras kernel).

    Conv kernels flatten their input as (I, kh, kw) in torch and (kh, kw, I) here; a Linear on a
    flattened NCHW map orders its input (C, H, W) in torch and (H, W, C) here.
    """
    v = np.asarray(v)
    if len(torch_weight_shape) == 4:
        i, kh, kw = torch_weight_shape[1:]
        return v.reshape(i, kh, kw).transpose(1, 2, 0).ravel()
    if in_chw is not None:
        return v[chw_to_hwc_axis(v.size, in_chw)]
    return v
