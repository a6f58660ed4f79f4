"""Kink margins: how close the authors' forward passes come to a point where a gradient jumps.

A gradient through ReLU, LeakyReLU, clamp, abs or an elementwise max/min changes abruptly
where the input crosses the kink. Two correct float32 implementations (torch and TensorFlow,
oneDNN on or off, AVX2 or AVX-512) compute the same pre-activation only up to rounding, so an
input within rounding of a kink can land on different sides and change every gradient below
it. A golden case is therefore drawn again (next seed) until every kink input of its whole
trajectory, scaled by the root mean square of the tensor it belongs to, is at least
`MARGIN` from its kink.

`MARGIN` (`golden.KINK_MARGIN`, 1e-5): float32 rounding of a dot product of n terms is ~sqrt(n) * 6e-8 of its scale
(1.2e-6 at the widest fan-in, 400), and two implementations' weights drift apart by a few
1e-7 over a short trajectory; 1e-5 leaves a factor of ~10 over both.

Only inputs that require grad count: a kink on data (an image clamped to [0, 1]) changes no
gradient, and its output is continuous.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmali_tf.reference.golden import KINK_MARGIN as MARGIN
RULE = ("every input x of a kink (ReLU, LeakyReLU, Hardtanh/ReLU6, clamp, abs, elementwise "
        "max/min) that requires grad satisfies min |x - kink| >= MARGIN * rms(x) over the "
        "whole trajectory; cases are redrawn (next seed) until it holds")

_MODULE_KINKS = {nn.ReLU: lambda m: (0.0,), nn.LeakyReLU: lambda m: (0.0,),
                 nn.ReLU6: lambda m: (0.0, 6.0),
                 nn.Hardtanh: lambda m: (m.min_val, m.max_val)}


class KinkRecorder:
    """Context manager: the smallest relative kink margin of every forward pass inside it.

    Hooks every kink module of `modules` (forward pre-hooks, so in-place activations are seen
    before they overwrite their input) and wraps the kink functionals of torch (`F.relu`,
    `F.leaky_relu`, `torch.relu`, `torch.clamp` / `Tensor.clamp`, `torch.abs` /
    `Tensor.abs`, `torch.maximum`, `torch.minimum`) while active.
    """

    def __init__(self, *modules: nn.Module) -> None:
        self.modules = modules
        self.smallest = float("inf")
        self.where = ""
        self.calls = 0

    def record(self, where: str, x: torch.Tensor, kinks) -> None:
        if not isinstance(x, torch.Tensor) or not x.requires_grad or x.numel() == 0:
            return
        x = x.detach().double()
        scale = float(x.square().mean().sqrt())
        if scale == 0.0:
            return
        self.calls += 1
        for k in kinks:
            if k is None:
                continue
            margin = float((x - float(k)).abs().min()) / scale
            if margin < self.smallest:
                self.smallest, self.where = margin, where

    def _hook(self, name: str, kinks: Callable):
        def hook(module, args):
            self.record(name, args[0], kinks(module))
        return hook

    def _wrap(self, owner, attr: str, kinks: Callable) -> None:
        original = getattr(owner, attr)

        def wrapped(*args, **kwargs):
            ks, x = kinks(*args, **kwargs)
            self.record(f"{getattr(owner, '__name__', owner)}.{attr}", x, ks)
            return original(*args, **kwargs)
        self._stack.callback(setattr, owner, attr, original)
        setattr(owner, attr, wrapped)

    def __enter__(self) -> "KinkRecorder":
        self._stack = contextlib.ExitStack()
        for root in self.modules:
            for name, m in root.named_modules():
                for kind, kinks in _MODULE_KINKS.items():
                    if isinstance(m, kind):
                        self._stack.callback(m.register_forward_pre_hook(
                            self._hook(name, kinks)).remove)

        def clamp(x, min=None, max=None, *a, **k):
            return (min, max), x

        def pair(a, b, *rest, **k):
            return (0.0,), (a - b) if isinstance(b, torch.Tensor) else None

        for owner, attr, kinks in (
                (F, "relu", lambda x, *a, **k: ((0.0,), x)),
                (F, "leaky_relu", lambda x, *a, **k: ((0.0,), x)),
                (torch, "relu", lambda x, *a, **k: ((0.0,), x)),
                (torch, "clamp", clamp), (torch.Tensor, "clamp", clamp),
                (torch, "abs", lambda x, *a, **k: ((0.0,), x)),
                (torch.Tensor, "abs", lambda x, *a, **k: ((0.0,), x)),
                (torch, "maximum", pair), (torch, "minimum", pair)):
            self._wrap(owner, attr, kinks)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def summary(self) -> dict:
        """What a fixture records: the smallest margin, where it occurred, and the rule."""
        return {"kink_margin": self.smallest if self.calls else None, "kink_margin_at": self.where,
                "kink_margin_min": MARGIN, "kink_margin_rule": RULE,
                "kink_calls": self.calls}


def first_robust_seed(run: Callable[[int], tuple], start: int = 0, tries: int = 50):
    """(seed, result, recorder) of the first seed from `start` whose `run(seed)` -> (result,
    recorder) keeps every kink input at least `MARGIN` from its kink (raises after `tries`)."""
    for seed in range(start, start + tries):
        result, rec = run(seed)
        if rec.smallest >= MARGIN:
            return seed, result, rec
        print(f"  seed {seed}: kink margin {rec.smallest:.2e} at {rec.where} < {MARGIN}: redraw")
    raise RuntimeError(f"no seed in [{start}, {start + tries}) keeps kink inputs {MARGIN} "
                       "from their kinks; shrink the case")
