"""Model registry: `build(name, specs, config)` returns a compiled-ready MultimodalModel.

Models are declared where they are defined, with `@mmali_tf.registry.register_model(name)`;
this module only looks them up (the declaring module is imported on first use, so one model's
import cost or error never affects another).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mmali_tf import registry
from mmali_tf.data.specs import ModalitySpec


def model_names() -> tuple[str, ...]:
    """Registered model names (plugins included once loaded)."""
    return registry.names("model")


def model_class(name: str) -> type:
    """The class registered under `name`."""
    return registry.load("model", name)


def build(name: str, specs: Sequence[ModalitySpec], config: Mapping[str, Any]):
    """Instantiate model `name` for `specs` with hyper-parameters `config` (flag values).

    The registry name is stored in the config as `model`, so variants sharing a class
    (`mmjsd` / `mmjsd_ms`, `ci_*` / `cc_*`) know which one they are.
    """
    return model_class(name)(list(specs), {**dict(config), "model": name})
