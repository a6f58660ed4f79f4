"""Golden case: one training-mode call of `torch.nn.utils.spectral_norm` layers.

A Conv2d (OIHW kernel, NCHW input) and a Linear with random starting u, v: the stored u, v after
the call's power iteration, sigma, the output and the gradients of sum(output * r) test the
power-iteration semantics and the u/v layout conversion of the importer on their own (the
model cases start from the exact singular pair, where an iteration is a fixed point).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tools.golden.kinks import KinkRecorder
from tools.golden.torch_common import Fixture, nhwc, sigmas


def make(seed: int = 0) -> Fixture:
    torch.manual_seed(seed)
    layers = {"conv": nn.utils.spectral_norm(nn.Conv2d(3, 8, 4, 2, 1)),
              "dense": nn.utils.spectral_norm(nn.Linear(20, 16))}
    inputs = {"conv": torch.rand(2, 3, 8, 8), "dense": torch.randn(2, 20)}
    fx = Fixture("spectral_norm_layers", dict(
        case="spectral_norm_layers", repo="pytorch", commit=torch.__version__,
        files=["torch/nn/utils/spectral_norm.py"],
        note="conv: Conv2d(3, 8, 4, stride 2, padding 1); dense: Linear(20, 16); one "
             "training-mode forward each"))
    rec = KinkRecorder(*layers.values())  # spectral-norm layers alone have no kink
    for name, layer in layers.items():
        layer.train()
        fx.add(f"{name}/start/", layer.state_dict())
        with rec:
            out = layer(inputs[name])
        r = torch.randn_like(out)
        (out * r).sum().backward()
        fx.add(f"{name}/", {"x": nhwc(inputs[name]), "r": nhwc(r), "out": nhwc(out),
                            "grad_weight": layer.weight_orig.grad, "grad_bias": layer.bias.grad,
                            "u_after": layer.weight_u, "v_after": layer.weight_v,
                            "sigma_after": sigmas(nn.Sequential(layer))["0"]})
    fx.meta.update(rec.summary())
    return fx
