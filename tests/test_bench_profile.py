"""bench/profile_step.py reads op types and kernel times from a real tf.profiler trace."""

import os
import sys

import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))
import profile_step  # noqa: E402


def test_kernel_events_of_a_traced_conv_and_matmul_fall_in_their_categories(tmp_path):
    x = tf.random.stateless_normal((8, 16, 16, 3), seed=(1, 2))
    kernel = tf.random.stateless_normal((3, 3, 3, 4), seed=(3, 4))
    weights = tf.random.stateless_normal((16 * 16 * 4, 5), seed=(5, 6))

    @tf.function
    def net(x):
        h = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
        return tf.matmul(tf.reshape(h, (8, -1)), weights)

    net(x)
    tf.profiler.experimental.start(str(tmp_path))
    net(x).numpy()
    tf.profiler.experimental.stop()
    events, span_ms = profile_step.kernel_events(str(tmp_path))
    categories = {profile_step.category(op_type) for _, op_type, _ in events}
    assert "Conv2D (forward, incl. fused bias/activation)" in categories
    assert profile_step.MATMUL in categories
    assert all(ms >= 0 for _, _, ms in events)
    assert span_ms > 0 and sum(ms for _, _, ms in events) > 0


def test_categories_strip_the_onednn_prefix():
    assert profile_step.category("_MklNativeConv2DBackpropInput").startswith(
        "Conv2DBackpropInput")
    assert profile_step.category("_MklNativeConv2DBackpropFilterWithBias").startswith(
        "Conv2DBackpropFilter")
    assert profile_step.category("Conv2DBackpropFilter").startswith("Conv2DBackpropFilter")
    assert profile_step.category("_MklMatMul").startswith("MatMul")
    assert profile_step.category("AssignSubVariableOp") == "optimizer / variable updates"
    assert profile_step.category("LeakyReluGrad") == profile_step.OTHER


def test_layer_of_drops_gradient_prefixes_and_suffixes():
    node = "gradient_tape/critic_A_svhn/head/sn_dense_1/MatMul/MatMul_2"
    assert profile_step.layer_of(node) == "critic_A_svhn/head/sn_dense"
