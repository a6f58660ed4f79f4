"""Loading golden fixtures and comparing our tensors with the authors' (see tools/golden/)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os

import numpy as np

from mmali_tf.reference import golden

HERE = os.path.dirname(os.path.abspath(__file__))


class Fixture:
    """A golden case: `meta` (its JSON) and its named arrays, selected by prefix. Arrays the
    meta lists as `packed` (tools/golden/trajectory.py) are unpacked into `<name>/<key>`."""

    def __init__(self, case: str) -> None:
        with open(os.path.join(HERE, case + ".json")) as f:
            self.meta = json.load(f)
        with np.load(os.path.join(HERE, case + ".npz")) as z:
            self.arrays = {k: z[k] for k in z.files}
        for name in self.meta.get("packed", []):
            tensors = golden.unpack(self.arrays.pop(name), self.meta["weight_shapes"])
            self.arrays.update({f"{name}/{k}": v for k, v in tensors.items()})

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
    authors' stored tensor in any entry, or is present on one side only (`slack`: per-entry extra
    tolerance arrays by key)."""
    out = [f"{what} {k}: the authors' code has it, ours does not" for k in want if k not in got]
    out += [f"{what} {k}: ours has it, the authors' code does not" for k in got if k not in want]
    for k in sorted(set(got) & set(want)):
        bad = golden.compare(k, got[k], want[k], rtol, atol, (slack or {}).get(k))
        if bad:
            out.append(f"{what} {bad}")
    return out


ADAM_EPSILON = 1e-8  # torch.optim.Adam's default, which every authors' script uses


def adam_slack(sqrt_vhat: dict, lr: float, grad_rtol: float, grad_atol: float = 1e-6,
               eps: float = ADAM_EPSILON) -> dict:
    """THE tolerance rule of every optimizer update in tests/golden: per-entry slack of one
    Adam step (`sqrt_vhat`: key -> sqrt of the bias-corrected second moment, |g| at step 1).

    Adam moves a weight by lr * m^ / (sqrt(v^) + eps), never by much more than lr. Two correct
    implementations agree on the gradients only to delta = grad_rtol * rms + grad_atol (the
    gradient tolerance), and perturbing m^ and sqrt(v^) by delta moves the step by at most
    2 lr delta / (sqrt(v^) + eps). So each entry gets min(2 lr, 2 lr delta / (sqrt(v^) + eps)):
    ~lr * 1e-4 for a typical entry, up to two whole steps where |g| is near eps (a sign decided
    by float rounding, e.g. a freshly initialised bias with |g| ~ 1e-8)."""
    out = {}
    for k, s in sqrt_vhat.items():
        s = np.asarray(s, np.float64)
        delta = grad_rtol * (float(np.sqrt(np.mean(s ** 2))) if s.size else 0.0) + grad_atol
        out[k] = np.minimum(2.0 * lr, 2.0 * lr * delta / (s + eps))
    return out


def first_step_slack(grads: dict, lr: float, grad_rtol: float, grad_atol: float = 1e-6) -> dict:
    """`adam_slack` of a first Adam step, where sqrt(v^) = |g| (also with amsgrad)."""
    return adam_slack({k: np.abs(g) for k, g in grads.items()}, lr, grad_rtol, grad_atol)


def update_mismatches(fx: Fixture, model, layout, grads: list, grad_rtol: float,
                      grad_atol: float = 1e-6) -> list[str]:
    """Compare `grads` (ours, one per `model.generator_variables`) with the fixture's `grad/`,
    apply one step of `model.g_optimizer` and compare every weight with its `after/`
    (`first_step_slack`). `layout`: the model's `TorchLayout`."""
    variables = model.generator_variables
    torch_grads = layout.convert([(v, np.asarray(g)) for v, g in zip(variables, grads)])
    out = tensor_mismatches("gradient of", torch_grads, fx.group("grad/"), grad_rtol, grad_atol)
    model.g_optimizer.apply(grads, variables)
    after = layout.convert([(v, v.numpy()) for v in variables])
    lr = fx.meta["config"]["lr"]
    return out + tensor_mismatches("after Adam:", after, fx.group("after/"), 1e-5, 0.0,
                                   first_step_slack(torch_grads, lr, grad_rtol, grad_atol))


# our network families' width constants (module, attribute), narrowed like the authors'
# networks of a fixture built with `torch_common.narrow_layers` (its meta "narrow")
WIDTH_CONSTANTS = [("mmali_tf.networks.mlp", "HIDDEN"), ("mmali_tf.networks.mlp", "BRANCH_WIDTHS"),
                   ("mmali_tf.networks.conv", "CHANNELS"),
                   ("mmali_tf.networks.conv", "CRITIC_FEATURES"),
                   ("mmali_tf.networks.conv", "HEAD_WIDTHS"),
                   ("mmali_tf.networks.critics", "DOT_WIDTH"),
                   ("mmali_tf.networks.critics", "JOINT_HEAD_WIDTHS"),
                   ("mmali_tf.networks.critics", "JOINT_XZ_Z_WIDTHS"),
                   # the VAE baselines' families
                   ("mmali_tf.networks.swish_mlp", "HIDDEN"),
                   ("mmali_tf.networks.swish_embedding", "HIDDEN"),
                   ("mmali_tf.networks.mmjsd_svhn", "ENCODER_CHANNELS"),
                   ("mmali_tf.networks.mmjsd_svhn", "FEATURES"),
                   ("mmali_tf.networks.mmjsd_svhn", "DECODER_CHANNELS"),
                   ("mmali_tf.networks.polymnist_conv", "CHANNELS"),
                   ("mmali_tf.networks.text_conv", "DIM"),
                   ("mmali_tf.networks.mmvaeplus_resnet", "CHANNELS")]


@contextlib.contextmanager
def narrow_networks(widths: dict):
    """Within the context, our families build networks with each hidden width w replaced by
    `widths[w]` (JSON keys: str(w)), as `torch_common.narrow_layers` builds the authors'
    (a width the map does not name is kept, there as here)."""
    widths = {int(k): int(v) for k, v in widths.items()}
    # every module is imported before any is narrowed: a module importing another's width
    # (swish_embedding's HIDDEN) must not bind the narrowed value as its own
    modules = [(importlib.import_module(name), attr) for name, attr in WIDTH_CONSTANTS]
    saved = [(module, attr, getattr(module, attr)) for module, attr in modules]
    for module, attr, value in saved:
        setattr(module, attr, tuple(widths.get(w, w) for w in value)
                if isinstance(value, tuple) else widths.get(value, value))
    try:
        yield
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)
