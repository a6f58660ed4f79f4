"""mmALI against the authors' code (6b5d/mmali): factor2.py with M=2 MNIST-SVHN networks and
every reconstruction term + joint_rec on; M=3 MultiMNIST networks without and with the
reconstruction terms (the polydigits configs' combination); the joint-discriminator ablation
(joint.py, M=3). Fixtures: tools/golden/mmali_case.py.

Per case:
- one critic update and one generator update from the seeded start (same weights, batch and
  draws): every loss term, every entry of every gradient and updated parameter, the
  spectral-norm state after the critic update;
- a trajectory of whole training iterations through our real `train_step` (its chunking of
  the batch, `dis_iter` critic and `gen_iter` generator updates, the EMA starting inside the
  trajectory) against the authors' loop (their Adams with beta1 = 0.5, their EMA `lerp`):
  after every iteration, the logged loss averages and every entry of every weight, Adam slot
  and EMA weight.

The networks are the authors' with every hidden width divided by the fixture's `narrow` and
7x7 MNIST views (so every entry fits in the fixture); `test_full_size_layout` holds our
full-size networks to the authors' full-size shapes.

Our critics run fewer spectral-norm power iterations per update than the authors' code (one
per critic and pass instead of one per call, see mmali.py). Both sides therefore start every
spectral-norm layer at the exact top singular pair of its weight, where an iteration is a fixed
point, and in the trajectory both reset it after every critic update (the authors' loop after
`optimizer_D.step()`, ours by wrapping `d_optimizer.apply`), so both use the same sigma;
test_spectral_norm_fidelity.py checks the iteration itself from a random start.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from golden_fixtures import (Fixture, adam_slack, first_step_slack, narrow_networks,
                             tensor_mismatches, term_mismatches)
from mmali_tf import models
from mmali_tf.data.specs import ModalitySpec
from mmali_tf.data.svhn import SVHN
from mmali_tf.models.draws import ReplayDraws
from mmali_tf.reference import golden
from mmali_tf.reference.importer import keras_layers
from mmali_tf.reference.mappings import TorchLayout, import_state_dict

CASES = ["mmali_mnist_svhn", "mmali_multimnist_m3", "mmali_multimnist_m3_rec",
         "mmali_joint_multimnist_m3"]
GRAD_RTOL = 1e-4  # gradients, relative to the tensor's scale (golden.compare)
WEIGHT_RTOL = 1e-5  # weights and EMA weights, plus the Adam slack (golden_fixtures.adam_slack)
# Adam's first moment over a trajectory (the second: twice that), relative to the tensor's
# scale: the two sides' weights drift apart within the Adam slack, so later gradients agree
# less closely than one update's (GRAD_RTOL); a one-entry tensor whose gradient is a sum that
# cancels (a critic's output bias) drifts most. A wrong beta, chunk or EMA is off by >10%.
MOMENT_RTOL = 1e-3


@pytest.fixture(scope="module", params=CASES)
def fx(request):
    return Fixture(request.param)


def specs_of(meta, full_size: bool = False):
    """Our modality specs of a case: SVHN for 32x32x3, `mnist_mlp` views for 1-channel images
    (7x7 in the fixture, 28x28 at full size)."""
    out = []
    for m, (c, h, w) in zip(meta["modalities"], meta["shapes_chw"]):
        if c == 3:
            out.append(SVHN)
        else:
            out.append(ModalitySpec(m, (28, 28, 1) if full_size else (h, w, c), "image",
                                    "mnist_mlp"))
    return out


def sn_shapes(shapes: dict) -> dict:
    """Shapes of the spectral-norm u, v of every `weight_orig` in `shapes`."""
    out = {}
    for k, s in shapes.items():
        if k.endswith(".weight_orig"):
            out[k[:-5] + "_u"] = (s[0],)
            out[k[:-5] + "_v"] = (int(np.prod(s[1:])),)
    return out


def build(fx):
    """Our model (narrowed as the fixture), its layout map and the fixture's starting state
    (seeded weights, spectral-norm vectors)."""
    meta = fx.meta
    with narrow_networks(meta["narrow"]):
        model = models.build(meta["config"]["model"], specs_of(meta), dict(meta["config"], seed=0))
        model.build_from_specs()
    model.compile()
    shapes = {k: tuple(v) for k, v in meta["weight_shapes"]}  # state_dict order
    state = golden.seeded_weights(shapes.items(), meta["seed"])
    state.update(fx.group("sn_start/"))
    return model, TorchLayout(model, {k: np.shape(v) for k, v in state.items()}), state


def critics_of(model) -> list:
    if hasattr(model, "critic"):  # joint ablation
        return [model.critic]
    return [model.critics_a[m] for m in model.modalities] + \
        [model.critics_b[m] for m in model.modalities] + [model.joint_critic]


def sn_layers(model) -> list:
    return [lay for net in critics_of(model) for lay in keras_layers(net) if hasattr(lay, "sn_u")]


def run_update(fx, model, to_torch, state, step: str) -> dict:
    """One of our updates from the starting state with the fixture's batch and draws: its
    terms, gradients and weights after the update (torch layout), and for the critic update
    the spectral-norm vectors and sigmas it leaves."""
    import_state_dict(model, state)
    batch = fx.group(f"batch/{step}/")
    names = sorted({k.split("/")[0] for k in batch})  # D: a, b; G: c, d; joint ablation: a
    batches = [{m: tf.constant(batch[f"{b}/{m}"]) for m in model.modalities} for b in names]
    replay = ReplayDraws(fx.group(f"draw/{step}/"))
    model.draws = replay
    if step == "d":
        fn, variables, opt = model.critic_losses, model.critic_variables, model.d_optimizer
    else:
        fn, variables, opt = model.generator_losses, model.generator_variables, model.g_optimizer
    terms, grads = model.loss_gradients(fn, batches, variables)
    assert not replay.unused(), f"draws of the authors' step that ours never made: {replay.unused()}"
    opt.apply(grads, variables)
    terms.pop("total")
    out = {"terms": {k: v.numpy() for k, v in terms.items()},
           "grads": to_torch.convert([(v, g.numpy()) for v, g in zip(variables, grads)]),
           "after": to_torch.convert([(v, v.numpy()) for v in model.critic_variables
                                      + model.generator_variables]),
           "sn": {}, "sigma": {}}
    if step == "d":
        for layer in sn_layers(model):
            out["sn"].update(to_torch.convert([(layer.sn_u, layer.sn_u.numpy()),
                                               (layer.sn_v, layer.sn_v.numpy())]))
            key = to_torch.keys_of(layer.sn_u)[0]
            out["sigma"][key[:-len(".weight_u")]] = float(layer.sigma(training=False))
    return out


@pytest.fixture(scope="module")
def built(fx):
    return build(fx)


@pytest.fixture(scope="module")
def updates(fx, built):
    """Each one-update case run once per case, on one model built per case: step -> results."""
    cache = {}

    def get(step):
        if step not in cache:
            cache[step] = run_update(fx, *built, step)
        return cache[step]
    return get


@pytest.mark.parametrize("step", ["d", "g"])
def test_update_matches_authors(fx, updates, step):
    res = updates(step)
    problems = term_mismatches(res["terms"], fx.group(f"loss/{step}/"))
    want_grads = fx.group(f"grad/{step}/")
    problems += tensor_mismatches("gradient of", res["grads"], want_grads, GRAD_RTOL, 1e-7)
    # the one Adam tolerance rule (golden_fixtures.adam_slack) on the authors' gradients;
    # parameters the update does not train must not move at all
    slack = first_step_slack(want_grads, fx.meta["config"]["lr"], GRAD_RTOL, 1e-7)
    problems += tensor_mismatches("after Adam:", res["after"], fx.group(f"after/{step}/"),
                                  WEIGHT_RTOL, 0.0, slack)
    assert not problems, "\n".join(problems)


def test_spectral_norm_state_after_critic_update(fx, updates):
    """u, v stored by the critics' power iterations and sigma = u^T W v after the update."""
    res = updates("d")
    problems = tensor_mismatches("spectral-norm vector", res["sn"], fx.group("sn_after_d/"),
                                 1e-4, 1e-6)
    problems += term_mismatches(res["sigma"], fx.group("sigma_after_d/"), rtol=1e-5)
    assert not problems, "\n".join(problems)


def instrument(model, to_torch, slack: dict, grad_atol: float = 1e-7) -> None:
    """Wrap both optimizers' `apply` (train_step's updates run through it):
    - after every critic update, set each spectral-norm (u, v) to the exact top singular pair
      of its new kernel (what the authors' side does after each `optimizer_D.step()`; see the
      module docstring);
    - after every update, add its `adam_slack` to `slack` (torch key -> per-entry array), from
      the update's sqrt(v^) (ours: the authors' equal ours within tolerance at every iteration
      end, and theirs is only stored there)."""
    layers = sn_layers(model)
    lr, b2 = model.d_optimizer.learning_rate, model.d_optimizer.beta_2

    def wrap(opt, after):
        apply = opt.apply

        def wrapped(grads, variables=None):
            out = apply(grads, variables)
            t = int(opt.iterations.numpy())
            sqrt_vhat = to_torch.convert(
                [(v, np.sqrt(opt._velocities[opt._get_variable_index(v)].numpy()
                             / (1.0 - b2 ** t))) for v in variables])
            for k, s in adam_slack(sqrt_vhat, float(lr), GRAD_RTOL, grad_atol).items():
                slack[k] = slack.get(k, 0.0) + s
            after()
            return out
        opt.apply = wrapped

    def exact_sn():
        for layer in layers:
            w = np.reshape(layer.kernel.numpy(), (-1, layer.sn_u.shape[0])).T  # PyTorch's W
            u, _, vh = np.linalg.svd(w.astype(np.float64), full_matrices=False)
            layer.sn_u.assign(u[:, 0].astype(np.float32))
            layer.sn_v.assign(vh[0].astype(np.float32))
    wrap(model.d_optimizer, exact_sn)
    wrap(model.g_optimizer, lambda: None)


def adam_state(model, to_torch) -> dict:
    """{"weight", "adam_m", "adam_v", "ema"}: torch key -> our array in torch layout."""
    out = {"weight": {}, "adam_m": {}, "adam_v": {}}
    for opt, variables in ((model.d_optimizer, model.critic_variables),
                           (model.g_optimizer, model.generator_variables)):
        for v in variables:
            i = opt._get_variable_index(v)
            for name, value in (("weight", v), ("adam_m", opt._momentums[i]),
                                ("adam_v", opt._velocities[i])):
                out[name].update(to_torch.convert([(v, value.numpy())]))
    out["ema"] = to_torch.convert([(source, ema.numpy()) for ema, source in
                                   model.ema.pairs(model.encoders, model.decoders)])
    return out


def test_trajectory_matches_authors(fx):
    """Every iteration of our real train_step against the authors' loop (module docstring)."""
    model, to_torch, state = build(fx)
    meta = fx.meta
    import_state_dict(model, state)
    slack = {}  # per-entry Adam slack of every update so far, by torch key
    instrument(model, to_torch, slack)
    for t in range(1, meta["iterations"] + 1):
        pre = f"it{t}/"
        rows = fx.group(pre + "batch/")
        data = {m: tf.constant(rows[m]) for m in model.modalities}
        data["label"] = tf.zeros([len(rows[model.modalities[0]])], tf.int32)
        model.draws = replay = ReplayDraws(fx.group(pre + "draw/"))
        for tracker in model.trackers.values():
            tracker.reset_state()
        logs = model.train_step(data)
        assert not replay.unused(), f"iteration {t}: authors' draws ours never made: " \
                                    f"{replay.unused()}"
        problems = term_mismatches({k: float(v) for k, v in logs.items()},
                                   fx.group(pre + "loss/"), rtol=1e-5)
        ours = adam_state(model, to_torch)
        problems += tensor_mismatches("weight", ours["weight"], fx.group(pre + "weight/"),
                                      WEIGHT_RTOL, 0.0, slack)
        problems += tensor_mismatches("Adam m of", ours["adam_m"], fx.group(pre + "adam_m/"),
                                      MOMENT_RTOL, 1e-9)
        problems += tensor_mismatches("Adam v of", ours["adam_v"], fx.group(pre + "adam_v/"),
                                      2 * MOMENT_RTOL, 1e-15)
        problems += tensor_mismatches("EMA weight", ours["ema"], fx.group(pre + "ema/"),
                                      WEIGHT_RTOL, 0.0, slack)
        assert not problems, f"after iteration {t} of {meta['iterations']}:\n" + \
            "\n".join(problems)


def test_full_size_layout(fx):
    """Our full-size networks have exactly the authors' full-size tensors (the fixtures use
    narrowed ones)."""
    meta = fx.meta
    model = models.build(meta["config"]["model"], specs_of(meta, full_size=True),
                         dict(meta["config"], seed=0))
    model.build_from_specs()
    shapes = {k: tuple(v) for k, v in meta["full_weight_shapes"]}
    shapes.update(sn_shapes(shapes))
    layout = TorchLayout(model, shapes)
    mapped = model.critic_variables + model.generator_variables + \
        [v for lay in sn_layers(model) for v in (lay.sn_u, lay.sn_v)]
    covered = {k for v in mapped for k in layout.keys_of(v)}
    assert covered == set(shapes), f"authors' tensors ours lacks: {sorted(set(shapes) - covered)}"
