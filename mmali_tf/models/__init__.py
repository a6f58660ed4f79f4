"""Model registry: `build(name, specs, config)` returns a compiled-ready MultimodalModel."""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Sequence

from mmali_tf.data.specs import ModalitySpec

# registry name -> "module:Class" (imported lazily so that one model's import cost or error
# never affects another).
_REGISTRY = {
    "mmali": "mmali_tf.models.mmali:MMALI",
    "mmali_joint": "mmali_tf.models.mmali_joint:MMALIJoint",
    "mvae": "mmali_tf.models.vae.mvae:MVAE",
    "jmvae": "mmali_tf.models.vae.jmvae:JMVAE",
    "mmvae": "mmali_tf.models.vae.mmvae:MMVAE",
    "mmjsd": "mmali_tf.models.vae.mmjsd:MMJSD",
    "mmjsd_ms": "mmali_tf.models.vae.mmjsd:MMJSD",
    "ci_mmvae": "mmali_tf.models.vae.contrastive:ContrastiveMMVAE",
    "cc_mmvae": "mmali_tf.models.vae.contrastive:ContrastiveMMVAE",
    "ci_mvae": "mmali_tf.models.vae.contrastive:ContrastiveMVAE",
    "cc_mvae": "mmali_tf.models.vae.contrastive:ContrastiveMVAE",
    "ci_jmvae": "mmali_tf.models.vae.contrastive:ContrastiveJMVAE",
    "cc_jmvae": "mmali_tf.models.vae.contrastive:ContrastiveJMVAE",
    "mopoe": "mmali_tf.models.vae.mopoe:MoPoE",
    "mmvae_plus": "mmali_tf.models.vae.mmvae_plus:MMVAEPlus",
}

MODEL_NAMES = tuple(_REGISTRY)


def model_class(name: str) -> type:
    """The class registered under `name`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build(name: str, specs: Sequence[ModalitySpec], config: Mapping[str, Any]):
    """Instantiate model `name` for `specs` with hyper-parameters `config` (flag values).

    The registry name is stored in the config as `model`, so variants sharing a class
    (`mmjsd` / `mmjsd_ms`, `ci_*` / `cc_*`) know which one they are.
    """
    return model_class(name)(list(specs), {**dict(config), "model": name})
