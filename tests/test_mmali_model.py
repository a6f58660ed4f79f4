"""mmALI model: training on 2 and 3 modalities, EMA, modes, isolation, .keras and MirroredStrategy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import HAND, PRINT, make_toy_dataset
from mmali_tf import models
from mmali_tf.data.specs import ModalitySpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLP2 = ModalitySpec("rot", (28, 28, 1), "image", "mnist_mlp")
MLP3 = ModalitySpec("flip", (28, 28, 1), "image", "mnist_mlp")
BASE = dict(latent_dim=8, style_dim=3, lambda_unimodal=0.5, seed=1)
REC = dict(lambda_x_rec=0.05, lambda_s_rec=0.05, lambda_c_rec=0.05)


def toy_batches(specs, batch: int, draws: int, steps: int, seed: int = 0) -> tf.data.Dataset:
    """`steps` train_step inputs {m, m_unpaired, label} drawn from the toy dataset."""
    ds = make_toy_dataset(specs=tuple(specs), seed=seed)
    rng = np.random.default_rng(seed)
    rows = batch * draws
    idx = rng.integers(0, ds.train.num_pairs, (steps, rows))
    out = {"label": ds.train.pair_labels()[idx].astype(np.int32)}
    for k, s in enumerate(specs):
        inst = ds.train.instances[s.name].astype(np.float32) / 255.0
        out[s.name] = inst[ds.train.pairs[idx, k]]
        out[f"{s.name}_unpaired"] = inst[rng.integers(0, len(inst), (steps, rows))]
    return tf.data.Dataset.from_tensor_slices(out)


def make(specs, jit=False, **cfg):
    model = models.build("mmali", specs, {**BASE, **cfg})
    model.build_from_specs()
    model.compile(jit_compile=jit)
    return model


def fit(model, steps, batch=8, seed=0):
    data = toy_batches(model.specs, batch, model.draws_per_step, steps, seed)
    return model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False).history


def values(variables):
    return [np.array(v.numpy()) for v in variables]


def changed(before, variables):
    return [not np.allclose(b, v.numpy()) for b, v in zip(before, variables)]


def test_two_modalities_train_ema_and_all_terms():
    model = make([HAND, MLP2], ema_decay=0.9, ema_start=4, joint_rec=True, **REC)
    assert model.draws_per_step == 4
    crit0, gen0 = values(model.critic_variables), values(model.generator_variables)
    ema_pairs = model.ema.pairs(model.encoders, model.decoders)
    hist = fit(model, 4)
    # Steps 1..4 <= ema_start + 1: EMA is a hard copy of the raw weights.
    for e, v in ema_pairs:
        np.testing.assert_array_equal(e.numpy(), v.numpy())
    hist.update(fit(model, 16, seed=1))
    names = set(model.loss_term_names())
    assert {"d_hand_c0", "d_rot_b", "d_joint", "d_hand_cross_rot", "g_joint_q_hand",
            "g_joint_p", "g_rot_cross_hand", "g_joint_c_rec", "g_hand_joint_x_rec",
            "g_rot_s_rec", "g_hand_c1"} <= names
    assert "g_hand_x_rec" not in names and "g_hand_c_rec" not in names  # replaced by joint_rec
    assert names | {"d_loss", "g_loss"} <= set(hist)
    assert all(np.isfinite(v[-1]) for v in hist.values())
    assert all(changed(crit0, model.critic_variables))
    assert all(changed(gen0, model.generator_variables))
    assert model.g_optimizer.iterations.numpy() == 20 == model.d_optimizer.iterations.numpy()
    assert any(not np.allclose(e.numpy(), v.numpy()) for e, v in ema_pairs)
    # Inference uses the EMA networks by default.
    x = tf.zeros((2, 28, 28, 1))
    assert not np.allclose(model.encode("hand", x)[0], model.encode("hand", x, ema=False)[0])


def test_gradient_isolation_and_unimodal_rec_terms():
    model = make([HAND, PRINT], **REC)  # conv critics and the bilinear "dot" J
    names = model.loss_term_names()
    assert {"g_hand_x_rec", "g_print_c_rec", "g_print_s_rec"} <= set(names)
    batch = next(iter(toy_batches(model.specs, 8, 4, 1)))
    chunks = model._chunks(batch)
    gen0, crit0 = values(model.generator_variables), values(model.critic_variables)
    model._update(model.critic_losses, chunks[:2], model.critic_variables, model.d_optimizer)
    assert not any(changed(gen0, model.generator_variables))
    assert all(changed(crit0, model.critic_variables))
    crit1 = values(model.critic_variables)
    model._update(model.generator_losses, chunks[2:], model.generator_variables,
                  model.g_optimizer)
    assert all(changed(gen0, model.generator_variables))
    trainable = [v for v in model.critic_variables]
    assert not any(changed(crit1, trainable))
    # each term's value: tests/test_mmali_reference_terms.py and tests/golden/


def test_three_modalities_and_iters():
    model = make([HAND, MLP2, MLP3], dis_iter=2, gen_iter=1)
    assert model.draws_per_step == 6
    names = model.loss_term_names()
    assert "d_rot_cross_flip" in names and "g_joint_q_flip" in names
    assert model.critics_a["hand"].output.shape[-1] == 4
    hist = fit(model, 3)
    assert all(np.isfinite(v[-1]) for v in hist.values())
    assert model.d_optimizer.iterations.numpy() == 6
    assert model.g_optimizer.iterations.numpy() == 3


def test_deterministic_and_unpaired_pool():
    model = make([HAND, MLP2], deterministic=True, unpaired="pool", lambda_s_rec=0.1)
    assert model.encoders["hand"].output.shape[-1] == 8
    mean, logvar = model.encode("hand", tf.zeros((2, 28, 28, 1)))
    assert logvar is None and mean.shape == (2, 8)
    hist = fit(model, 3)
    assert all(np.isfinite(v[-1]) for v in hist.values())
    batch = next(iter(toy_batches(model.specs, 8, 4, 1)))
    paired_only = {k: v for k, v in batch.items() if not k.endswith("_unpaired")}
    with pytest.raises(KeyError, match="unpaired"):
        model.train_step(paired_only)
    with pytest.raises(ValueError, match="joint_rec"):
        models.build("mmali", [HAND, MLP2], {**BASE, "deterministic": True, "joint_rec": True})


def test_keras_roundtrip_restores_both_optimizers(tmp_path):
    model = make([HAND, MLP2], ema_decay=0.99, ema_start=1)
    fit(model, 2)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded).__name__ == "MMALI"
    for name in ("d_optimizer", "g_optimizer"):
        a, b = getattr(model, name), getattr(loaded, name)
        assert int(b.iterations.numpy()) == int(a.iterations.numpy()) == 2
        assert len(a.variables) == len(b.variables) > 2
        for va, vb in zip(a.variables, b.variables):
            np.testing.assert_array_equal(va.numpy(), vb.numpy())
    for va, vb in zip(model.weights, loaded.weights):
        if "seed_generator" not in va.path:
            np.testing.assert_array_equal(va.numpy(), vb.numpy())
    x = tf.zeros((2, 28, 28, 1))
    np.testing.assert_allclose(loaded.encode("rot", x)[0], model.encode("rot", x)[0])
    hist = fit(loaded, 1, seed=3)
    assert np.isfinite(hist["g_loss"][-1])
    assert int(loaded.g_optimizer.iterations.numpy()) == 3


def test_mirrored_strategy_two_logical_cpus():
    code = textwrap.dedent("""
        import os, sys
        sys.path[:0] = [{root!r}, {tests!r}]
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import numpy as np
        from test_mmali_model import toy_batches, HAND, MLP2, BASE
        from mmali_tf import models
        strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
        with strategy.scope():
            model = models.build("mmali", [HAND, MLP2], dict(BASE, ema_decay=0.9, ema_start=0))
            model.build_from_specs()
            model.compile(jit_compile=False)
        data = toy_batches(model.specs, 8, model.draws_per_step, 2)
        hist = model.fit(data, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False).history
        assert all(np.isfinite(v[-1]) for v in hist.values()), hist
        print("REPLICAS", strategy.num_replicas_in_sync, "ITER", int(model.g_optimizer.iterations.numpy()))
    """).format(root=ROOT, tests=os.path.join(ROOT, "tests"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "REPLICAS 2 ITER 2" in out.stdout


def test_paired_features_separate_passes_match_one_pass():
    """G-step feature passes: two passes give the one-pass values and generator gradients."""
    from mmali_tf.models.mmali import paired_features
    from mmali_tf.networks import build_xz_critic

    net = build_xz_critic(PRINT, 8, 3, spectral_norm=False).get_layer("x_features")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((5,) + PRINT.shape, dtype=np.float32))
    gen = tf.Variable(rng.random((5,) + PRINT.shape, dtype=np.float32))
    results = []
    for separate in (False, True):
        with tf.GradientTape() as tape:
            f_real, f_gen = paired_features(net, x, gen, separate=separate)
            loss = tf.reduce_sum(f_gen ** 2) + tf.reduce_sum(f_real * f_gen)
        results.append((f_real.numpy(), f_gen.numpy(), tape.gradient(loss, gen).numpy()))
    for one, two in zip(*results):
        np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6)


def test_generator_learning_rate_flag():
    assert float(make([HAND, MLP2], lr=1e-4, g_lr=5e-4).g_optimizer.learning_rate) == \
        pytest.approx(5e-4)
    model = make([HAND, MLP2], lr=1e-4, g_lr=None)
    assert float(model.g_optimizer.learning_rate) == pytest.approx(1e-4)
    assert float(model.d_optimizer.learning_rate) == pytest.approx(1e-4)
