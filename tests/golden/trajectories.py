"""Replaying a recorded trajectory of the authors' code through our real `train_step`.

A trajectory fixture (tools/golden/trajectory.py) holds, for each of K iterations, the batch,
the draws, the logged terms, every weight and every Adam slot (m, v and, with amsgrad, vhat)
after the authors' optimizer step, whole. `trajectory_mismatches` runs our model's own
`train_step` (its real `g_optimizer` from `models/optimizers.py`, its real KL schedule) on the
same batches with the draws replayed, and compares every entry of every tensor after every
iteration.

Tolerances: one rule, `golden_fixtures.adam_slack`, for every optimizer update. Weights after
iteration t may differ by rtol 1e-5 plus the slack of each step so far (slack_s from the
authors' bias-corrected sqrt(v^) of step s); m and v by the gradient tolerance (v, a square,
by twice it) relative to the tensor's scale.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

from golden_fixtures import Fixture, adam_slack, tensor_mismatches, term_mismatches
from mmali_tf.models.draws import ReplayDraws

#: our Keras Adam slot lists -> the fixture's slot names
OUR_SLOTS = {"m": "_momentums", "v": "_velocities", "vhat": "_velocity_hats"}


def our_slots(model, layout) -> dict[str, dict[str, np.ndarray]]:
    """{"m"|"v"|"vhat": {torch key: array}} of `model.g_optimizer` (vhat only with amsgrad)."""
    opt, variables = model.g_optimizer, model.generator_variables
    out = {}
    for slot, attr in OUR_SLOTS.items():
        values = getattr(opt, attr, None) or []
        if slot == "vhat" and not opt.amsgrad:
            continue
        out[slot] = layout.convert(
            [(v, values[opt._get_variable_index(v)].numpy()) for v in variables])
    return out


def optimizer_mismatches(fx: Fixture, model) -> list[str]:
    """Our optimizer object's settings against the authors' (`meta["optimizer"]`)."""
    want, opt = fx.meta["optimizer"], model.g_optimizer
    got = {"lr": float(opt.learning_rate.numpy()), "betas": [opt.beta_1, opt.beta_2],
           "eps": opt.epsilon, "amsgrad": bool(opt.amsgrad), "weight_decay": 0.0}
    out = []
    for k, w in want.items():
        g = got[k]
        if not np.allclose(np.asarray(g, np.float64), np.asarray(w, np.float64), rtol=1e-6,
                           atol=0):
            out.append(f"optimizer {k}: ours {g}, the authors' {w}")
    return out


def trajectory_mismatches(fx: Fixture, model, layout, grad_rtol: float,
                          term_names: Mapping[str, str] | None = None,
                          keep: Callable[[str], bool] = lambda key: True,
                          term_rtol: float = 1e-5) -> list[str]:
    """Run `model.train_step` on every recorded iteration (draws replayed) and compare terms,
    every weight and every Adam slot with the authors' after each one.

    `term_names`: our logged name -> the authors' term name (terms compared each iteration);
    `keep`: which of the authors' keys our model trains (tensors they register but never
    train are left out). Returns one line per mismatch, prefixed with the iteration.
    """
    lr = fx.meta["optimizer"]["lr"]
    beta2 = fx.meta["optimizer"]["betas"][1]
    out = optimizer_mismatches(fx, model)
    slack: dict[str, np.ndarray] = {}
    for t in range(1, int(fx.meta["iterations"]) + 1):
        it = f"it{t}/"
        model.draws = ReplayDraws(fx.group(it + "draw/"))
        for tracker in model.trackers.values():
            tracker.reset_state()
        batch = {k: tf.constant(v) for k, v in fx.group(it + "batch/").items()}
        logs = model.train_step(batch)
        unused = model.draws.unused()
        if unused:
            out.append(f"iteration {t}: the authors' draws {unused} were not used")
        want_terms = fx.group(it + "term/")
        got_terms = {a: float(logs[o]) for o, a in (term_names or {}).items()}
        out += [f"iteration {t}: {p}" for p in
                term_mismatches(got_terms, {a: want_terms[a] for a in got_terms}, term_rtol)]
        want_v = fx.group(it + ("vhat/" if fx.meta["optimizer"]["amsgrad"] else "v/"))
        sqrt_vhat = {k: np.sqrt(np.asarray(v, np.float64) / (1.0 - beta2 ** t))
                     for k, v in want_v.items() if keep(k)}
        for k, s in adam_slack(sqrt_vhat, lr, grad_rtol).items():
            slack[k] = slack.get(k, 0.0) + s
        variables = model.generator_variables
        weights = layout.convert([(v, v.numpy()) for v in variables])
        want_w = {k: v for k, v in fx.group(it + "weight/").items() if keep(k)}
        out += [f"iteration {t}: {p}" for p in
                tensor_mismatches("weight", weights, want_w, 1e-5, 0.0, slack)]
        got_slots = our_slots(model, layout)
        for slot in ("m", "v", "vhat"):
            want = {k: v for k, v in fx.group(f"{it}{slot}/").items() if keep(k)}
            if not want and slot not in got_slots:
                continue
            rtol = grad_rtol * (2.0 if slot != "m" else 1.0)
            atol = 1e-6 * (1.0 - fx.meta["optimizer"]["betas"][0]) if slot == "m" else 0.0
            out += [f"iteration {t}: {p}" for p in
                    tensor_mismatches(f"Adam {slot} of", got_slots.get(slot, {}), want,
                                      rtol, atol)]
    return out


def run_mismatches(fx: Fixture, model, layout, grads: list, grad_rtol: float,
                   keep: Callable[[str], bool] = lambda key: True) -> list[str]:
    """The first iteration's gradients (`grads`: ours, one per `model.generator_variables`,
    at the start weights) against the fixture's `it1/grad/`, then the whole trajectory
    (`trajectory_mismatches`, the loss compared at every iteration)."""
    torch_grads = layout.convert([(v, np.asarray(g)) for v, g in
                                  zip(model.generator_variables, grads)])
    want = {k: v for k, v in fx.group("it1/grad/").items() if keep(k)}
    return (tensor_mismatches("iteration 1: gradient of", torch_grads, want, grad_rtol, 1e-6)
            + trajectory_mismatches(fx, model, layout, grad_rtol, {"loss": "loss"}, keep))
