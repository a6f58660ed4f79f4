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


def test_reconstruction_terms_are_the_factorised_models():
    """Off by default (the authors' training path); with the lambdas set, the joint model adds
    the factorised model's reconstruction terms, with its names and values on the same batch."""
    assert make([HAND, ROT], lambda_unimodal=0.3).loss_term_names()[-1] == "g_p"
    rec = dict(lambda_x_rec=2.0, lambda_s_rec=0.5, lambda_c_rec=0.5)
    model = make([HAND, ROT], **rec)
    extra = ["g_hand_x_rec", "g_hand_c_rec", "g_hand_s_rec",
             "g_rot_x_rec", "g_rot_c_rec", "g_rot_s_rec"]
    assert model.loss_term_names()[6:] == extra
    joint = make([HAND, ROT], joint_rec=True, **rec)
    assert joint.loss_term_names()[6:] == ["g_hand_s_rec", "g_rot_s_rec", "g_joint_c_rec",
                                           "g_hand_joint_x_rec", "g_rot_joint_x_rec"]
    chunk = model._chunks(next(iter(toy_batches(model.specs, 8, 1, 1))))[0]
    terms = model.generator_losses(chunk)
    assert list(terms)[3:] == extra
    # by hand with every draw zero (codes = posterior means, prior codes = 0):
    # x: lambda_x * MSE(G(mean(x)), x); c/s: lambda * mean(part(mean(G(0)))^2)
    model.draws = ZeroDraws()
    terms = model.generator_losses(chunk)
    x = chunk["hand"]
    mean = model.encoders["hand"](x)[:, :8]
    want_x = 2.0 * np.mean((model.decoders["hand"](mean).numpy() - x.numpy()) ** 2)
    code = model.encoders["hand"](model.decoders["hand"](tf.zeros((8, 8))))[:, :8].numpy()
    assert np.isclose(float(terms["g_hand_x_rec"]), want_x, rtol=1e-5)
    assert np.isclose(float(terms["g_hand_c_rec"]), 0.5 * np.mean(code[:, 3:] ** 2), rtol=1e-5)
    assert np.isclose(float(terms["g_hand_s_rec"]), 0.5 * np.mean(code[:, :3] ** 2), rtol=1e-5)


class ZeroDraws:
    """Every noise draw is zero."""

    def noise(self, name, shape, family="normal", batch_axis=0):
        return tf.zeros(shape)


def test_joint_trains_a_few_steps_with_xla():
    model = make([HAND, ROT], jit=True, lambda_unimodal=0.3, lambda_x_rec=1.0)
    data = toy_batches(model.specs, 8, model.draws_per_step, 4)
    hist = model.fit(data, epochs=1, steps_per_epoch=4, verbose=0, shuffle=False).history
    assert set(hist) == {"d_loss", "g_loss", *model.loss_term_names()}
    assert "g_hand_x_rec" in hist and not any("c0" in k for k in hist)  # lambda_unimodal ignored
    assert all(np.isfinite(v[-1]) for v in hist.values())
    assert model.g_optimizer.iterations.numpy() == 4
    z = model.sample_prior(2)
    assert model.decode("rot", z["rot"]).shape == (2, 28, 28, 1)
    assert tf.reduce_all(tf.math.is_finite(model.encode("hand", tf.zeros((2, 28, 28, 1)))[1]))
