"""Our spectral-norm layers against `torch.nn.utils.spectral_norm` from a random (u, v).

One training-mode call: the power iteration's new u, v, sigma, the output and the gradients of
sum(output * r) w.r.t. kernel and bias must equal torch's after the importer's layout
conversion (OIHW -> HWIO kernel, (I, kh, kw) -> (kh, kw, I) order of v).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from golden_fixtures import Fixture
from mmali_tf.networks.spectral_norm import SNConv2D, SNDense
from mmali_tf.reference import layout


def check(layer, data, torch_weight_shape):
    layer.build(data["x"].shape)
    start = {k.split("/")[-1]: v for k, v in data.items() if "start/" in k}
    w = start["weight_orig"]
    kernel = layout.conv_kernel(w) if w.ndim == 4 else layout.dense_kernel(w)
    layer.kernel.assign(kernel)
    layer.bias.assign(start["bias"])
    layer.sn_u.assign(start["weight_u"])
    layer.sn_v.assign(layout.sn_v(start["weight_v"], torch_weight_shape))
    with tf.GradientTape() as tape:
        out = layer(tf.constant(data["x"]), training=True)
        loss = tf.reduce_sum(out * data["r"])
    g_kernel, g_bias = tape.gradient(loss, [layer.kernel, layer.bias])
    want_gk = layout.conv_kernel(data["grad_weight"]) if w.ndim == 4 else \
        layout.dense_kernel(data["grad_weight"])
    got = {"output": out.numpy(), "u after the iteration": layer.sn_u.numpy(),
           "v after the iteration": layer.sn_v.numpy(),
           "sigma": float(layer.sigma(training=False)),
           "gradient of the kernel": g_kernel.numpy(), "gradient of the bias": g_bias.numpy()}
    want = {"output": data["out"], "u after the iteration": data["u_after"],
            "v after the iteration": layout.sn_v(data["v_after"], torch_weight_shape),
            "sigma": float(data["sigma_after"]), "gradient of the kernel": want_gk,
            "gradient of the bias": data["grad_bias"]}
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{layer.name}: {name}")


def test_sn_conv_and_dense_match_torch():
    fx = Fixture("spectral_norm_layers")
    conv = fx.group("conv/")
    check(SNConv2D(8, 4, strides=2, padding="same", name="sn_conv"), conv,
          conv["start/weight_orig"].shape)
    dense = fx.group("dense/")
    check(SNDense(16, name="sn_dense"), dense, dense["start/weight_orig"].shape)
