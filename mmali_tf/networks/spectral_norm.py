"""Spectral normalisation with PyTorch `torch.nn.utils.spectral_norm` semantics (as 6b5d/mmali applies it to its discriminators).

Let `W` be the PyTorch-layout weight matrix, i.e. the transpose of the TF kernel reshaped to
`(fan_in, units)` (conv kernels `(kh, kw, in, out)` become `(kh*kw*in, out)`). Each layer keeps
the raw kernel as its trainable variable plus two non-trainable unit vectors `u` (units) and
`v` (fan_in), both drawn from a standard normal and normalised at build. Every `training=True`
call runs one power iteration under `stop_gradient`,

    v <- normalize(W^T u),   u <- normalize(W v),   normalize(x) = x / max(||x||, 1e-12),

stores `u` and `v`, and then computes `sigma = u^T W v` *with* gradient w.r.t. the kernel and
uses `W / sigma`. Inference calls use the stored `u`, `v` and change nothing. The vectors are
created with `aggregation="only_first_replica"`, so the update may run inside a
`tf.distribute` replica context (every replica computes the same vectors).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from mmali_tf.networks.init import initializers

EPS = 1e-12


def l2_normalize(x, eps: float = EPS):
    """`x / max(||x||_2, eps)` over the whole tensor (PyTorch `F.normalize` on a vector)."""
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x))), eps)


def _unit_normal(shape, dtype=None):
    """Standard-normal vector scaled to unit length (the initial power-iteration vectors)."""
    return l2_normalize(keras.initializers.RandomNormal(0.0, 1.0)(shape, dtype=dtype))


class _SpectralNormLayer(keras.layers.Layer):
    """Shared weights and power iteration of `SNDense` and `SNConv2D`.

    Subclasses call `self._build_weights(kernel_shape)` in `build` and use `self.sigma(training)`
    (or `self.normalized_kernel(training)`) in `call`.
    """

    def __init__(self, use_bias: bool = True, kernel_initializer="random_normal",
                 bias_initializer="zeros", eps: float = EPS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.eps = float(eps)

    def _build_weights(self, kernel_shape: tuple[int, ...]) -> None:
        units, fan_in = int(kernel_shape[-1]), int(math.prod(kernel_shape[:-1]))
        self.kernel = self.add_weight(shape=kernel_shape, name="kernel",
                                      initializer=self.kernel_initializer)
        self.bias = (self.add_weight(shape=(units,), name="bias",
                                     initializer=self.bias_initializer)
                     if self.use_bias else None)
        vector = dict(initializer=_unit_normal, trainable=False, autocast=False,
                      aggregation="only_first_replica")
        self.sn_u = self.add_weight(shape=(units,), name="sn_u", **vector)
        self.sn_v = self.add_weight(shape=(fan_in,), name="sn_v", **vector)

    def sigma(self, training=None):
        """Largest-singular-value estimate `u^T W v` (differentiable w.r.t. the kernel).

        With `training` truthy, first runs one power iteration and stores the new `u`, `v`.
        """
        w = ops.reshape(self.kernel, (-1, self.sn_u.shape[0]))  # (fan_in, units) = W^T
        u, v = self.sn_u.value, self.sn_v.value
        if training:
            w_const = ops.stop_gradient(w)
            v = l2_normalize(ops.matmul(w_const, u), self.eps)
            u = l2_normalize(ops.matmul(v, w_const), self.eps)
            self.sn_u.assign(u)
            self.sn_v.assign(v)
        return ops.sum(v * ops.matmul(w, u))

    def normalized_kernel(self, training=None):
        """The kernel divided by `sigma(training)` (what the layer applies)."""
        return self.kernel / self.sigma(training)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(use_bias=self.use_bias,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                      bias_initializer=keras.initializers.serialize(self.bias_initializer),
                      eps=self.eps)
        return config


@keras.saving.register_keras_serializable(package="mmali_tf")
class SNDense(_SpectralNormLayer):
    """Spectrally normalised affine layer `x @ (W / sigma) + b` on the last axis (no activation).

    The division is applied to the (smaller) matmul output, which is mathematically identical.
    """

    def __init__(self, units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape) -> None:
        self._build_weights((int(input_shape[-1]), self.units))

    def call(self, inputs, training=None):
        outputs = ops.matmul(inputs, self.kernel) / self.sigma(training)
        return outputs + self.bias if self.use_bias else outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="mmali_tf")
class SNConv2D(_SpectralNormLayer):
    """Spectrally normalised 2-D convolution, NHWC, square kernel and stride (no activation)."""

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, padding: str = "valid",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        if padding not in ("valid", "same"):
            raise ValueError(f"SNConv2D padding {padding!r} is not 'valid' or 'same'")
        self.padding = padding

    def build(self, input_shape) -> None:
        k = self.kernel_size
        self._build_weights((k, k, int(input_shape[-1]), self.filters))

    def call(self, inputs, training=None):
        outputs = ops.conv(inputs, self.normalized_kernel(training), strides=self.strides,
                           padding=self.padding, data_format="channels_last")
        return outputs + self.bias if self.use_bias else outputs

    def compute_output_shape(self, input_shape):
        def size(n):
            if n is None:
                return None
            if self.padding == "same":
                return -(-n // self.strides)
            return (n - self.kernel_size) // self.strides + 1
        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), self.filters)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding}


# ----------------------------------------------------------------------------- critic helpers
LEAKY_SLOPE = 0.2


def _activate(x, activate: bool):
    return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(x) if activate else x


def critic_dense(x, units: int, spectral_norm: bool, activate: bool = True):
    """(SN-)Dense with N(0, 0.02) kernel and zero bias, then LeakyReLU(0.2) if `activate`."""
    init = initializers("normal", int(x.shape[-1]))
    layer = SNDense(units, **init) if spectral_norm else keras.layers.Dense(units, **init)
    return _activate(layer(x), activate)


def critic_conv2d(x, filters: int, kernel_size: int, strides: int, padding: str,
                  spectral_norm: bool, activate: bool = True):
    """(SN-)Conv2D (NHWC) with N(0, 0.02) kernel and zero bias, then LeakyReLU(0.2)."""
    init = initializers("normal", kernel_size * kernel_size * int(x.shape[-1]))
    if spectral_norm:
        layer = SNConv2D(filters, kernel_size, strides=strides, padding=padding, **init)
    else:
        layer = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                                    **init)
    return _activate(layer(x), activate)


def critic_mlp(x, widths, spectral_norm: bool):
    """Chain of `critic_dense` layers (each followed by LeakyReLU(0.2))."""
    for units in widths:
        x = critic_dense(x, units, spectral_norm)
    return x
