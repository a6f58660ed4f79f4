"""Adam construction and building shared by every model that owns its optimizers.

Keras 3 models with several optimizers must build each one on a *fixed* variable list, inside
the active `tf.distribute` scope, before `fit()` and before `.keras` state is restored
(ECOSYSTEM sections 2.2, 2.3 and 6). `OptimizerSet` does that in one place: a model names its
optimizers and their variable lists once, and `compile()` / `compile_from_config()` both go
through it.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import keras
from keras import ops

from mmali_tf.models.settings import ModelSettings

GENERATOR_OPTIMIZER = "g_optimizer"


@keras.saving.register_keras_serializable(package="mmali_tf")
class TorchAdam(keras.optimizers.Adam):
    """Adam with PyTorch's epsilon placement (`torch.optim.Adam`, the authors' optimizer).

    Keras adds epsilon to sqrt(v) before bias correction ("epsilon hat"), PyTorch after:
    theta -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). The two differ where
    |gradient| is comparable to eps / sqrt(1 - b2^t) (~3e-7 at t=1), which the golden fixtures
    showed on freshly initialised biases. Same slots and state as Keras' Adam.
    """

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        bias1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        bias2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        if self.amsgrad:
            v_hat = self._velocity_hats[self._get_variable_index(variable)]
            self.assign(v_hat, ops.maximum(v_hat, v))
            v = v_hat
        denom = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias1), denom))


def make_adam(settings: ModelSettings, name: str) -> keras.optimizers.Adam:
    """`TorchAdam` with the run's `lr`, `beta1`, `beta2`, `adam_epsilon` and `amsgrad`.

    The encoder/decoder optimizer (`name == "g_optimizer"`) uses `g_lr` when it is set.
    """
    lr = settings.lr
    if name == GENERATOR_OPTIMIZER and settings.g_lr is not None:
        lr = settings.g_lr
    return TorchAdam(learning_rate=float(lr), beta_1=settings.beta1, beta_2=settings.beta2,
                     epsilon=settings.adam_epsilon, amsgrad=settings.amsgrad, name=name)


def build_optimizer(optimizer: keras.optimizers.Optimizer,
                    variables: Sequence[keras.Variable]) -> keras.optimizers.Optimizer:
    """Build `optimizer`'s slots for the fixed list `variables` unless it is already built."""
    variables = list(variables)
    if not variables:
        raise ValueError(f"optimizer {optimizer.name!r} has no variables to train; build the "
                         "model (model.build_from_specs()) before compile()")
    if not optimizer.built:
        optimizer.build(variables)
    return optimizer


def attach_optimizers(model: keras.Model, settings: ModelSettings,
                      variables: Mapping[str, Callable[[], Sequence[keras.Variable]]],
                      given: Mapping[str, keras.optimizers.Optimizer | None]) -> None:
    """Set `model.<attr>` to a built Adam for every `attr -> variable-list getter`.

    `given[attr]` (e.g. an optimizer passed to `compile()`) is used when not None, otherwise a
    fresh `make_adam(settings, attr)` is created. Call inside the strategy scope.
    """
    for attr, get_vars in variables.items():
        opt = given.get(attr) or make_adam(settings, attr)
        setattr(model, attr, build_optimizer(opt, get_vars()))
