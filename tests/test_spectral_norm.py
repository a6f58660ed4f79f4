"""Spectral normalisation layers against a numpy power-iteration reference (PyTorch semantics)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmali_tf.networks.spectral_norm import SNConv2D, SNDense


def _normalize(a: np.ndarray) -> np.ndarray:
    return a / max(np.linalg.norm(a), 1e-12)


def _power_iteration(w: np.ndarray, u: np.ndarray):
    """One PyTorch power iteration on the TF kernel matrix w = W_torch^T: returns (u, v, sigma)."""
    v = _normalize(w @ u)
    u = _normalize(w.T @ v)
    return u, v, float(v @ w @ u)


def _dense(seed: int = 0, fan_in: int = 7, units: int = 5):
    keras.utils.set_random_seed(seed)
    layer = SNDense(units, kernel_initializer="glorot_uniform", bias_initializer="random_normal")
    x = np.random.default_rng(seed).normal(size=(4, fan_in)).astype("float32")
    layer(x)
    return layer, x


def test_build_creates_unit_vectors_excluded_from_trainable():
    layer, _ = _dense()
    assert [w.name for w in layer.trainable_weights] == ["kernel", "bias"]
    assert {w.name for w in layer.non_trainable_weights} == {"sn_u", "sn_v"}
    assert layer.sn_u.shape == (5,) and layer.sn_v.shape == (7,)
    np.testing.assert_allclose(np.linalg.norm(layer.sn_u.numpy()), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(layer.sn_v.numpy()), 1.0, rtol=1e-6)


def test_training_calls_match_numpy_power_iteration():
    layer, x = _dense()
    w, b, u = layer.kernel.numpy(), layer.bias.numpy(), layer.sn_u.numpy()
    for _ in range(4):
        y = layer(x, training=True).numpy()
        u, v, sigma = _power_iteration(w, u)
        np.testing.assert_allclose(layer.sn_u.numpy(), u, atol=1e-6)
        np.testing.assert_allclose(layer.sn_v.numpy(), v, atol=1e-6)
        np.testing.assert_allclose(layer.sigma().numpy(), sigma, rtol=1e-5)
        np.testing.assert_allclose(y, x @ (w / sigma) + b, rtol=1e-5, atol=1e-6)


def test_inference_uses_stored_vectors_without_updating():
    layer, x = _dense()
    layer(x, training=True)
    u, v = layer.sn_u.numpy(), layer.sn_v.numpy()
    w, b = layer.kernel.numpy(), layer.bias.numpy()
    for training in (False, None):
        y = layer(x, training=training).numpy()
        np.testing.assert_array_equal(layer.sn_u.numpy(), u)
        np.testing.assert_array_equal(layer.sn_v.numpy(), v)
        np.testing.assert_allclose(y, x @ (w / float(v @ w @ u)) + b, rtol=1e-5, atol=1e-6)


def test_converges_to_unit_spectral_norm():
    layer, x = _dense(seed=3, fan_in=12, units=9)
    step = tf.function(lambda t: layer(t, training=True))
    for _ in range(300):
        step(x)
    top = np.linalg.svd(layer.kernel.numpy(), compute_uv=False)[0]
    np.testing.assert_allclose(layer.sigma().numpy(), top, rtol=1e-4)
    normalized = layer.normalized_kernel().numpy()
    np.testing.assert_allclose(np.linalg.svd(normalized, compute_uv=False)[0], 1.0, rtol=1e-4)


def test_gradient_flows_through_sigma():
    layer, x = _dense(seed=1)
    g = np.random.default_rng(5).normal(size=(4, 5)).astype("float32")
    w, u0 = layer.kernel.numpy(), layer.sn_u.numpy()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) * g)
    grad = tape.gradient(loss, layer.kernel).numpy()
    u, v, sigma = _power_iteration(w, u0)
    xg = x.T @ g  # d loss / d (w / sigma)
    expected = xg / sigma - np.sum(xg * w) / sigma ** 2 * np.outer(v, u)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)
    assert np.abs(expected - xg / sigma).max() > 1e-3  # the sigma term is not negligible
    # finite difference of the same loss with u, v held at their post-iteration values
    eps, (i, j) = 1e-2, (2, 3)
    def loss_at(kernel):
        return float(np.sum((x @ kernel / float(v @ kernel @ u) + layer.bias.numpy()) * g))
    bumped = [w.copy(), w.copy()]
    bumped[0][i, j] += eps
    bumped[1][i, j] -= eps
    np.testing.assert_allclose((loss_at(bumped[0]) - loss_at(bumped[1])) / (2 * eps),
                               grad[i, j], rtol=2e-2, atol=1e-3)


def test_conv_matches_numpy_reshaped_kernel():
    keras.utils.set_random_seed(2)
    layer = SNConv2D(6, 4, strides=2, padding="same", kernel_initializer="glorot_uniform",
                     bias_initializer="random_normal")
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 3)).astype("float32")
    assert layer(x).shape == (2, 4, 4, 6)
    kernel, u = layer.kernel.numpy(), layer.sn_u.numpy()
    assert layer.sn_v.shape == (4 * 4 * 3,)
    for _ in range(2):
        y = layer(x, training=True).numpy()
        u, v, sigma = _power_iteration(kernel.reshape(-1, 6), u)
    np.testing.assert_allclose(layer.sn_u.numpy(), u, atol=1e-6)
    expected = tf.nn.conv2d(x, kernel / sigma, 2, "SAME").numpy() + layer.bias.numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    assert layer.compute_output_shape((None, 8, 8, 3)) == (None, 4, 4, 6)
    valid = SNConv2D(5, 4, padding="valid")
    assert valid(np.zeros((1, 4, 4, 2), "float32")).shape == (1, 1, 1, 5)


def test_jit_compiled_training_step_matches_numpy():
    layer, x = _dense(seed=4)
    opt = keras.optimizers.SGD(0.1)

    @tf.function(jit_compile=True)
    def step(t):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(layer(t, training=True)))
        grads = tape.gradient(loss, layer.trainable_variables)
        opt.apply_gradients(zip(grads, layer.trainable_variables))
        return loss

    u = layer.sn_u.numpy()
    for _ in range(3):
        w, b = layer.kernel.numpy(), layer.bias.numpy()
        loss = float(step(x))
        u, v, sigma = _power_iteration(w, u)
        np.testing.assert_allclose(layer.sn_u.numpy(), u, atol=1e-5)
        np.testing.assert_allclose(loss, np.sum(np.square(x @ w / sigma + b)), rtol=1e-4)
        assert not np.allclose(layer.kernel.numpy(), w)  # the kernel trained


def test_config_round_trip():
    layer = SNConv2D(4, 3, strides=2, padding="same", use_bias=False, name="c")
    clone = SNConv2D.from_config(layer.get_config())
    assert (clone.filters, clone.kernel_size, clone.strides, clone.padding, clone.use_bias) == \
        (4, 3, 2, "same", False)
    dense = SNDense.from_config(SNDense(3, eps=1e-6).get_config())
    assert dense.units == 3 and dense.eps == 1e-6
    with pytest.raises(ValueError, match="padding"):
        SNConv2D(4, 3, padding="causal")


_MIRRORED = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from mmali_tf.networks.spectral_norm import SNDense
    keras.utils.set_random_seed(0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        layer = SNDense(5)
        layer.build((None, 7))
        opt = keras.optimizers.SGD(0.01)
        opt.build(layer.trainable_variables)
    w, u = layer.kernel.numpy(), layer.sn_u.numpy()
    x = np.random.default_rng(0).normal(size=(8, 7)).astype("float32")

    @tf.function
    def step(t):
        def replica(t):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(t, training=True))
            grads = tape.gradient(loss, layer.trainable_variables)
            opt.apply_gradients(zip(grads, layer.trainable_variables))
            return loss
        return strategy.run(replica, args=(t,))

    step(strategy.experimental_distribute_values_from_function(lambda ctx: x[ctx.replica_id_in_sync_group::2]))
    v = w @ u; v /= np.linalg.norm(v); u = w.T @ v; u /= np.linalg.norm(u)
    for value in layer.sn_u.value.values if hasattr(layer.sn_u.value, "values") else [layer.sn_u.value]:
        np.testing.assert_allclose(value.numpy(), u, atol=1e-6)
    np.testing.assert_allclose(layer.sn_u.numpy(), u, atol=1e-6)
    assert not np.allclose(layer.kernel.numpy(), w)
    print("MIRRORED_OK")
""")


def test_mirrored_strategy_assigns_vectors_in_replica_context():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", _MIRRORED], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0 and "MIRRORED_OK" in proc.stdout, proc.stderr[-3000:]
