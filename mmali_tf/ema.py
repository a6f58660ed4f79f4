"""Exponential moving average of encoder/decoder weights (6b5d/mmali train_mmali_*.py: EMA of the generator networks).

The EMA networks are full clones of the encoders and decoders, so inference, evaluation and
export run them exactly like the raw networks. The update is branch-free so that it compiles
inside `train_step` (also with XLA): until `start_step` the EMA is a hard copy, afterwards
`ema <- decay * ema + (1 - decay) * theta`.
"""

from __future__ import annotations

from typing import Mapping

import keras
import tensorflow as tf


def ema_blend(ema_value: tf.Tensor, value: tf.Tensor, step: tf.Tensor, decay: float,
              start_step: int) -> tf.Tensor:
    """New EMA value after 1-based step `step`: copy while step - 1 <= start_step, else decay."""
    w = tf.where(tf.cast(step, tf.int64) - 1 > start_step, decay, 0.0)
    w = tf.cast(w, value.dtype)
    return w * ema_value + (1.0 - w) * value


def _clone(net: keras.Model) -> keras.Model:
    clone = keras.models.clone_model(net)
    clone.set_weights(net.get_weights())
    clone.trainable = False
    return clone


class WeightEMA(keras.layers.Layer):
    """Shadow copies of `encoders` and `decoders` updated with `ema_blend`.

    A Keras layer (never called) so that its clones are tracked, saved in `.keras` files and
    included in `model.variables` (hence in checkpoints).

    Attributes:
      encoders, decoders: modality -> EMA clone (non-trainable Keras models).
    """

    def __init__(self, encoders: Mapping[str, keras.Model], decoders: Mapping[str, keras.Model],
                 decay: float, start_step: int, **kwargs) -> None:
        super().__init__(name=kwargs.pop("name", "ema"), **kwargs)
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.start_step = int(start_step)
        self.encoders = {m: _clone(net) for m, net in encoders.items()}
        self.decoders = {m: _clone(net) for m, net in decoders.items()}
        self._modality_order = (list(encoders), list(decoders))
        self.built = True

    def pairs(self, encoders: Mapping[str, keras.Model],
              decoders: Mapping[str, keras.Model]) -> list[tuple[keras.Variable, keras.Variable]]:
        """(ema_variable, source_variable) for every weight of the given source networks."""
        enc_order, dec_order = self._modality_order
        out = []
        for m in enc_order:
            out += list(zip(self.encoders[m].weights, encoders[m].weights))
        for m in dec_order:
            out += list(zip(self.decoders[m].weights, decoders[m].weights))
        return out

    def update(self, step: tf.Tensor, encoders: Mapping[str, keras.Model],
               decoders: Mapping[str, keras.Model]) -> None:
        """Apply one EMA update for 1-based training step `step` from the source networks."""
        for ema_var, var in self.pairs(encoders, decoders):
            ema_var.assign(ema_blend(ema_var.value, var.value, step, self.decay, self.start_step))
