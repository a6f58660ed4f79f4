"""MMVAE+ (M = 3, K = 4) against the authors' code (epalu/mmvaeplus, objectives.py, models/).

Same weights, batch and Laplace draws (K posterior samples per modality, every auxiliary-prior
cross-style sample): the log-weights lw (M, K, B), the objective, every gradient (encoders,
decoders, auxiliary-prior logits) and every parameter after one Adam(amsgrad) step must equal
what `m_dreg` / `m_elbo` and torch computed (fixtures from tools/golden/make_fixtures.py
--mmvaeplus; setting in tools/golden/mmvae_plus_case.py: their ResNet trunks replaced by our
`mnist_mlp` bodies, hidden width narrowed to 4, everything else theirs).
"""

from __future__ import annotations

import dataclasses

import pytest
import tensorflow as tf

from golden_fixtures import Fixture, first_step_slack, narrow_networks, tensor_mismatches
from mmali_tf.data.svhn import MNIST
from mmali_tf.models.draws import ReplayDraws
from mmali_tf.models.vae.mmvae_plus import MMVAEPlus
from mmali_tf.reference import golden
from mmali_tf.reference.mappings import TorchLayout, import_state_dict
from test_mmvae_fidelity import GRAD_RTOL, objective_mismatches


def step(case: str, **overrides):
    """Our MMVAE+ with the fixture's weights: (fixture, grads and updated parameters in torch
    layout, lw, loss, unused draws)."""
    fx = Fixture(case)
    meta = fx.meta
    specs = [dataclasses.replace(MNIST, name=m, shape=(28, 28, 3)) for m in meta["modalities"]]
    with narrow_networks(meta["narrow"]):
        model = MMVAEPlus(specs, dict(meta["config"], seed=0, **overrides))
        model.build_from_specs()
    model.compile()
    shapes = {k: tuple(v) for k, v in meta["weight_shapes"]}
    import_state_dict(model, golden.seeded_weights(shapes.items(), meta["seed"], meta["stddev"]))
    to_torch = TorchLayout(model, shapes)
    batch = {m: tf.constant(v) for m, v in fx.group("batch/").items()}
    model.draws = ReplayDraws(fx.group("draw/"))
    lw = model.forward(batch, stop_q=False)["lw"].numpy()
    grads, loss, _ = model.compute_gradients(batch)
    variables = model.generator_variables
    model.g_optimizer.apply(grads, variables)
    torch_grads = to_torch.convert([(v, g.numpy()) for v, g in zip(variables, grads)])
    after = to_torch.convert([(v, v.numpy()) for v in variables])
    return fx, torch_grads, after, lw, float(loss), model.draws.unused()


@pytest.mark.parametrize("objective", ["dreg", "iwae"])
def test_step_matches_authors(objective):
    fx, grads, after, lw, loss, unused = step(f"mmvae_plus_m3_{objective}")
    assert not unused, f"draws the authors made that ours did not ask for: {unused}"
    problems = objective_mismatches(objective, lw, loss, fx.group("out/"))  # m_elbo / m_dreg
    # gradients weighted by w~ = softmax_k(lw): MMVAE's precision (test_mmvae_fidelity.GRAD_RTOL)
    problems += tensor_mismatches("gradient of", grads, fx.group("grad/"), GRAD_RTOL,
                                  1e-6)
    lr = fx.meta["config"]["lr"]
    problems += tensor_mismatches("after Adam:", after, fx.group("after/"), 1e-5, 0.0,
                                  first_step_slack(grads, lr, GRAD_RTOL))
    assert not problems, "\n".join(problems)


def test_released_dreg_is_the_iwae_gradient():
    """The authors' `_m_dreg` evaluates q with live parameters and its w~ hook never fires, so
    its gradient is the IWAE gradient: ours (`released`) equals our `iwae` gradient on the same
    draws, while the DReG paper's estimator (`paper`) differs on every encoder tensor."""
    fx, released, _, _, _, _ = step("mmvae_plus_m3_dreg")
    _, iwae, _, _, _, _ = step("mmvae_plus_m3_dreg", objective="iwae")
    _, paper, _, _, _, _ = step("mmvae_plus_m3_dreg", dreg_estimator="paper")
    assert not tensor_mismatches("gradient of", iwae, golden.summarise(released), 1e-5, 1e-6)
    encoder = [k for k in released if ".enc." in k]
    differ = tensor_mismatches("gradient of", {k: paper[k] for k in encoder},
                               {k: fx.group("grad/")[k] for k in encoder}, 1e-2, 1e-6)
    assert len(differ) == len(encoder), differ
