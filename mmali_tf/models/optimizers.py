"""Adam construction and building shared by every model that owns its optimizers.

Keras 3 models with several optimizers must build each one on a *fixed* variable list, inside
the active `tf.distribute` scope, before `fit()` and before `.keras` state is restored
(ECOSYSTEM sections 2.2, 2.3 and 6). `OptimizerSet` does that in one place: a model names its
optimizers and their variable lists once, and `compile()` / `compile_from_config()` both go
through it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import keras


GENERATOR_OPTIMIZER = "g_optimizer"


def make_adam(config: Mapping[str, Any], name: str) -> keras.optimizers.Adam:
    """Adam with the run's `lr`, `beta1`, `beta2`, `adam_epsilon` and `amsgrad` flags.

    The encoder/decoder optimizer (`name == "g_optimizer"`) uses `g_lr` when it is set.
    """
    lr = config.get("lr", 2e-4)
    if name == GENERATOR_OPTIMIZER and config.get("g_lr") is not None:
        lr = config["g_lr"]
    return keras.optimizers.Adam(
        learning_rate=float(lr),
        beta_1=float(config.get("beta1", 0.5)),
        beta_2=float(config.get("beta2", 0.999)),
        epsilon=float(config.get("adam_epsilon", 1e-8)),
        amsgrad=bool(config.get("amsgrad", False)),
        name=name)


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


def attach_optimizers(model: keras.Model, config: Mapping[str, Any],
                      variables: Mapping[str, Callable[[], Sequence[keras.Variable]]],
                      given: Mapping[str, keras.optimizers.Optimizer | None]) -> None:
    """Set `model.<attr>` to a built Adam for every `attr -> variable-list getter`.

    `given[attr]` (e.g. an optimizer passed to `compile()`) is used when not None, otherwise a
    fresh `make_adam(config, attr)` is created. Call inside the strategy scope.
    """
    for attr, get_vars in variables.items():
        opt = given.get(attr) or make_adam(config, attr)
        setattr(model, attr, build_optimizer(opt, get_vars()))
