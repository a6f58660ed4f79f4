"""Loading golden fixtures and comparing our tensors with the authors' (see tools/golden/)."""

from __future__ import annotations

import json
import os

import numpy as np

from mmali_tf.reference import golden

HERE = os.path.dirname(os.path.abspath(__file__))


class Fixture:
    """A golden case: `meta` (its JSON) and its named arrays, selected by prefix."""

    def __init__(self, case: str) -> None:
        with open(os.path.join(HERE, case + ".json")) as f:
            self.meta = json.load(f)
        with np.load(os.path.join(HERE, case + ".npz")) as z:
            self.arrays = {k: z[k] for k in z.files}

    def group(self, prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}


def term_mismatches(got: dict, want: dict, rtol: float = 1e-5, atol: float = 1e-6) -> list[str]:
    """One line per loss term that is missing on either side or differs."""
    out = [f"term {k} is computed by the authors' code but not by ours" for k in want
           if k not in got]
    out += [f"term {k} is computed by ours but not by the authors' code" for k in got
            if k not in want]
    for k in sorted(set(got) & set(want)):
        g, w = float(got[k]), float(want[k])
        if abs(g - w) > atol + rtol * abs(w):
            out.append(f"term {k}: ours {g:.8g}, authors' {w:.8g}")
    return out


def tensor_mismatches(what: str, got: dict, want: dict, rtol: float,
                      atol: float, slack: dict | None = None) -> list[str]:
    """One line per tensor (torch key -> full array in torch layout) that differs from the
    authors' stored probe, or is present on one side only (`slack`: per-entry extra
    tolerance arrays by key)."""
    out = [f"{what} {k}: the authors' code has it, ours does not" for k in want if k not in got]
    out += [f"{what} {k}: ours has it, the authors' code does not" for k in got if k not in want]
    for k in sorted(set(got) & set(want)):
        bad = golden.compare(k, got[k], want[k], rtol, atol, (slack or {}).get(k))
        if bad:
            out.append(f"{what} {bad}")
    return out


def first_adam_step_slack(grads: dict, lr: float, rtol: float) -> dict:
    """Per-entry slack for weights after a first Adam step, which moves each weight by
    lr * g / (|g| + eps) ~ lr * sign(g): where |g| is within the gradient tolerance
    rtol * rms(g) of zero its sign is not determined by the comparison, so the weight may
    differ by up to 2 lr there."""
    out = {}
    for k, g in grads.items():
        rms = float(np.sqrt(np.mean(np.square(g)))) if g.size else 0.0
        out[k] = np.where(np.abs(g) <= rtol * rms, 2.0 * lr, 0.0)
    return out


def update_mismatches(fx: Fixture, model, layout, grads: list, grad_rtol: float,
                      grad_atol: float = 1e-6) -> list[str]:
    """Compare `grads` (ours, one per `model.generator_variables`) with the fixture's `grad/`,
    apply one step of `model.g_optimizer` and compare every weight with its `after/` (within
    5% of the learning rate, plus the first Adam step's sign slack). `layout`: the model's
    `TorchLayout`."""
    variables = model.generator_variables
    torch_grads = layout.convert([(v, np.asarray(g)) for v, g in zip(variables, grads)])
    out = tensor_mismatches("gradient of", torch_grads, fx.group("grad/"), grad_rtol, grad_atol)
    model.g_optimizer.apply(grads, variables)
    after = layout.convert([(v, v.numpy()) for v in variables])
    lr = fx.meta["config"]["lr"]
    return out + tensor_mismatches("after Adam:", after, fx.group("after/"), 1e-5, 0.05 * lr,
                                   first_adam_step_slack(torch_grads, lr, grad_rtol))
