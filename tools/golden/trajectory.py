"""Recording a whole training trajectory of the authors' code into a golden fixture.

`run(...)` drives K iterations of the authors' own loop body (their objective, `backward()`,
their `torch.optim.Adam` object's `step()`), and after each iteration t stores, whole:
- `it<t>/batch/<modality>`, `it<t>/draw/<name>`: what the iteration consumed (NHWC batches,
  draws named as our model asks for them);
- `it<t>/term/<name>`: the loss terms the iteration logged;
- `it<t>/weight/<key>`: every trained parameter after the optimizer step;
- `it<t>/m/<key>`, `it<t>/v/<key>` (and `it<t>/vhat/<key>` with amsgrad): Adam's slots
  `exp_avg`, `exp_avg_sq` (`max_exp_avg_sq`) after the step;
- `it1/grad/<key>`: the first iteration's gradients (later ones are implied by m).
A case whose meta sets `"packed": []` before the run stores each of these weight, slot and
gradient groups as one flat array `it<t>/<slot>` in the order of its `weight_shapes`
(`golden.pack`; the meta lists the packed names, tests/golden/golden_fixtures.py unpacks them).
The meta records the number of iterations and the optimizer's settings as their object holds
them (`lr`, `betas`, `eps`, `amsgrad`).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from mmali_tf.reference import golden
from tools.golden.kinks import KinkRecorder
from tools.golden.torch_common import Fixture

#: torch's Adam state name -> our fixture slot name
SLOTS = {"exp_avg": "m", "exp_avg_sq": "v", "max_exp_avg_sq": "vhat"}


def adam_settings(opt: torch.optim.Adam) -> dict:
    """The settings of the authors' optimizer object (one parameter group)."""
    if len(opt.param_groups) != 1:
        raise ValueError("one parameter group expected")
    g = opt.param_groups[0]
    return {"lr": float(g["lr"]), "betas": [float(b) for b in g["betas"]],
            "eps": float(g["eps"]), "amsgrad": bool(g["amsgrad"]),
            "weight_decay": float(g["weight_decay"])}


def slots(opt: torch.optim.Adam, params: Mapping[str, torch.nn.Parameter]) -> dict:
    """{"m"|"v"|"vhat": {key: array}} of Adam's state for `params` (by their keys)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, p in params.items():
        for state_name, slot in SLOTS.items():
            value = opt.state[p].get(state_name)
            if value is not None:
                out.setdefault(slot, {})[key] = value.detach().numpy().copy()
    return out


def record(fx: Fixture, t: int, params: Mapping[str, torch.nn.Parameter],
           opt: torch.optim.Adam, batch: Mapping[str, np.ndarray],
           draws: Mapping[str, np.ndarray], terms: Mapping[str, float]) -> None:
    """Store iteration `t` (1-based) after the authors' optimizer step."""
    fx.add(f"it{t}/batch/", batch)
    fx.add(f"it{t}/draw/", draws)
    fx.add(f"it{t}/term/", {k: np.float32(v) for k, v in terms.items()})
    groups = {f"it{t}/weight": {k: p.detach().numpy() for k, p in params.items()}}
    groups.update({f"it{t}/{slot}": values for slot, values in slots(opt, params).items()})
    if t == 1:
        groups["it1/grad"] = {k: p.grad.detach().numpy() for k, p in params.items()
                              if p.grad is not None}
    for name, values in groups.items():
        if "packed" in fx.meta:
            fx.meta["packed"].append(name)
            fx.add("", {name: golden.pack(values, fx.meta["weight_shapes"])})
        else:
            fx.add(name + "/", values)


def run(fx: Fixture, iterations: int, params: Mapping[str, torch.nn.Parameter],
        opt: torch.optim.Adam,
        iteration: Callable[[int], tuple[dict, dict, dict]]) -> None:
    """Run `iterations` iterations of the authors' loop: `iteration(t)` does one whole
    iteration (zero_grad, objective, backward, opt.step) and returns (batch, draws, terms)."""
    fx.meta["iterations"] = int(iterations)
    fx.meta["optimizer"] = adam_settings(opt)
    for t in range(1, iterations + 1):
        batch, draws, terms = iteration(t)
        record(fx, t, params, opt, batch, draws, terms)


def run_watched(fx: Fixture, iterations: int, params: Mapping[str, torch.nn.Parameter],
                opt: torch.optim.Adam, iteration: Callable[[int], tuple[dict, dict, dict]],
                model: torch.nn.Module, strict: bool = False) -> tuple[Fixture, KinkRecorder]:
    """`run` with every kink input of `model`'s passes recorded (tools/golden/kinks.py) into
    the fixture's meta; returns what `kinks.first_robust_seed` expects of a case (`strict`:
    raise `kinks.TooClose` at the first input below the margin, so a seed search drops the
    seed without running its whole trajectory)."""
    with KinkRecorder(model, strict=strict) as kinks:
        run(fx, iterations, params, opt, iteration)
    fx.meta.update(kinks.summary())
    return fx, kinks
