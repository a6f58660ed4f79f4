"""Weight initialisation schemes and the generator-side layer helpers that apply them.

`normal` (mmALI, 6b5d/mmali utils.py init_param_normal): every Dense/Conv2D/Conv2DTranspose kernel ~ N(0, 0.02^2) and
zero bias. `torch` (VAE baselines: torch.nn layer defaults): PyTorch's default kaiming-uniform
(a = sqrt(5)), i.e. kernel and bias ~ U(+-1/sqrt(fan_in)) with PyTorch's fan_in (for a
transposed convolution that is `out_channels * kh * kw`, which is also what Keras computes
from a Conv2DTranspose kernel).

`Conv2DTranspose`: Keras' layer (same variables, names and results) that runs the 'valid'
transposed convolution of a 1x1 map -- the first layer of the SVHN decoders -- as one matrix
product, which TensorFlow's CPU kernels (forward and both gradients) do several times faster.
"""

from __future__ import annotations

import math

import keras
from keras import ops

INITS = ("normal", "torch")
NORMAL_STDDEV = 0.02


def check_init(init: str) -> str:
    """Return `init` if it names a known scheme, else raise ValueError."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
    return init


def initializers(init: str, fan_in: int) -> dict:
    """Fresh `kernel_initializer` / `bias_initializer` keyword arguments for one layer."""
    check_init(init)
    if init == "normal":
        return dict(kernel_initializer=keras.initializers.RandomNormal(0.0, NORMAL_STDDEV),
                    bias_initializer=keras.initializers.Zeros())
    bound = 1.0 / math.sqrt(fan_in)
    return dict(kernel_initializer=keras.initializers.VarianceScaling(
                    scale=1.0 / 3.0, mode="fan_in", distribution="uniform"),
                bias_initializer=keras.initializers.RandomUniform(-bound, bound))


def dense(x, units: int, init: str, activation: str | None = None):
    """Apply a Dense layer initialised with `init` (fan_in = last input dimension)."""
    return keras.layers.Dense(units, activation=activation,
                              **initializers(init, int(x.shape[-1])))(x)


def conv2d(x, filters: int, kernel_size: int, strides: int, padding: str, init: str,
           activation: str | None = None):
    """Apply an NHWC Conv2D initialised with `init` (fan_in = kh * kw * in_channels)."""
    fan_in = kernel_size * kernel_size * int(x.shape[-1])
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                               activation=activation, **initializers(init, fan_in))(x)


@keras.saving.register_keras_serializable(package="mmali_tf")
class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """`keras.layers.Conv2DTranspose` that computes a 'valid' NHWC transposed convolution of a
    1x1 input as a matrix product: out[b, i, j, f] = sum_c x[b, c] kernel[i, j, f, c] + bias[f]
    (the stride does not matter there). The class keeps Keras' name, so layer and variable
    names (checkpoints, weight imports) are those of the Keras layer; other inputs go to it."""

    def call(self, inputs):
        as_matmul = (self.padding == "valid" and self.data_format == "channels_last"
                     and tuple(inputs.shape[1:3]) == (1, 1) and self.output_padding is None
                     and tuple(self.dilation_rate) == (1, 1))
        if not as_matmul:
            return super().call(inputs)
        kh, kw, filters, channels = self.kernel.shape
        weights = ops.reshape(ops.transpose(self.kernel, (3, 0, 1, 2)), (channels, -1))
        out = ops.matmul(ops.reshape(inputs, (-1, channels)), weights)
        out = ops.reshape(out, (-1, kh, kw, filters))
        if self.use_bias:
            out = out + self.bias
        return out if self.activation is None else self.activation(out)


def conv2d_transpose(x, filters: int, kernel_size: int, strides: int, padding: str, init: str,
                     activation: str | None = None):
    """Apply an NHWC `Conv2DTranspose` initialised with `init` (fan_in = kh * kw * filters)."""
    fan_in = kernel_size * kernel_size * filters
    return Conv2DTranspose(filters, kernel_size, strides=strides, padding=padding,
                                        activation=activation,
                                        **initializers(init, fan_in))(x)


def conv1d(x, filters: int, kernel_size: int, strides: int, padding: str, init: str,
           activation: str | None = None):
    """Apply a (batch, length, channels) Conv1D initialised with `init` (fan_in = k * in)."""
    return keras.layers.Conv1D(filters, kernel_size, strides=strides, padding=padding,
                               activation=activation,
                               **initializers(init, kernel_size * int(x.shape[-1])))(x)


def conv1d_transpose(x, filters: int, kernel_size: int, strides: int, padding: str, init: str,
                     activation: str | None = None):
    """Apply a Conv1DTranspose initialised with `init` (fan_in = k * filters, as PyTorch)."""
    return keras.layers.Conv1DTranspose(filters, kernel_size, strides=strides, padding=padding,
                                        activation=activation,
                                        **initializers(init, kernel_size * filters))(x)
