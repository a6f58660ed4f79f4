"""Joint-discriminator ablation (Chen & Zhu 2022, Table 1): shapes, schedule, isolation, training."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from conftest import HAND
from mmali_tf import models
from mmali_tf.data.specs import ModalitySpec
from test_mmali_model import changed, toy_batches, values

ROT = ModalitySpec("rot", (28, 28, 1), "image", "mnist_mlp")
FLIP = ModalitySpec("flip", (28, 28, 1), "image", "mnist_mlp")


def make(specs, jit=False, **cfg):
    model = models.build("mmali_joint", specs,
                         {"latent_dim": 8, "style_dim": 3, "seed": 2, "ema_decay": 0.9,
                          "ema_start": 0, **cfg})
    model.build_from_specs()
    model.compile(jit_compile=jit)
    return model


def test_joint_critic_shape_schedule_and_isolation():
    model = make([HAND, ROT, FLIP], dis_iter=2)
    assert model.draws_per_step == 3                    # one shared-content batch per update
    assert model.z_dim == 3 * 3 + 5
    assert model.critic.output.shape[-1] == 4           # M + 1 classes
    assert model.loss_term_names() == ["d_q_hand", "d_q_rot", "d_q_flip", "d_p",
                                       "g_q_hand", "g_q_rot", "g_q_flip", "g_p"]
    batch = next(iter(toy_batches(model.specs, 8, 3, 1)))
    chunk = model._chunks(batch)[0]
    gen0, crit0 = values(model.generator_variables), values(model.critic_variables)
    terms = model._update(model.critic_losses, [chunk], model.critic_variables,
                          model.d_optimizer)
    assert not any(changed(gen0, model.generator_variables))
    assert all(changed(crit0, model.critic_variables))
    # Untrained critic: each CE is close to log(M + 1).
    for name in ("d_q_hand", "d_p"):
        assert abs(float(terms[name]) - np.log(4)) < 0.3
    crit1 = values(model.critic_variables)
    model._update(model.generator_losses, [chunk], model.generator_variables, model.g_optimizer)
    assert all(changed(gen0, model.generator_variables))
    assert not any(changed(crit1, model.critic_variables))


def test_joint_trains_a_few_steps_with_xla():
    model = make([HAND, ROT], jit=True, lambda_unimodal=0.3, lambda_x_rec=1.0)  # lambdas ignored
    data = toy_batches(model.specs, 8, model.draws_per_step, 4)
    hist = model.fit(data, epochs=1, steps_per_epoch=4, verbose=0).history
    assert set(hist) == {"d_loss", "g_loss", *model.loss_term_names()}
    assert all(np.isfinite(v[-1]) for v in hist.values())
    assert model.g_optimizer.iterations.numpy() == 4
    z = model.sample_prior(2)
    assert model.decode("rot", z["rot"]).shape == (2, 28, 28, 1)
    assert tf.reduce_all(tf.math.is_finite(model.encode("hand", tf.zeros((2, 28, 28, 1)))[1]))
