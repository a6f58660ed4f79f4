"""Settings of the models (`mmali_tf.config`): what every model reads, and mmALI's.

Imports neither TensorFlow nor absl: the flags are defined from these classes before
TensorFlow loads. The VAE baselines' settings are in `models/vae/settings.py`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from mmali_tf.config import Rule, SeedSettings, setting


@dataclasses.dataclass(frozen=True)
class ModelSettings(SeedSettings):
    """Read by every `MultimodalModel`: latent sizes, initialisation, optimizers and EMA."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(("style_dim", "latent_dim"), lambda f: f["style_dim"] < f["latent_dim"],
             "--style_dim must be smaller than --latent_dim (the content part needs >= 1 "
             "dimension)"),
        Rule(("ema_start", "ema_decay"), lambda f: f["ema_decay"] == 0.0 or f["ema_decay"] > 0.5,
             "--ema_decay must be 0 (off) or in (0.5, 1)"),
    )

    latent_dim: int = setting(20, "Per-modality latent size d = style + content.",
                              lower_bound=1)
    style_dim: int = setting(10, "Private style size d_s (first d_s entries of z); 0 for models "
                             "without a style subspace.", lower_bound=0)
    init: str = setting("normal", "Weight init: N(0, 0.02) with zero bias (mmALI) or PyTorch's "
                        "default kaiming-uniform (VAE baselines).", choices=("normal", "torch"))
    lr: float = setting(2e-4, "Learning rate of every optimizer (see --g_lr).", lower_bound=0.0)
    g_lr: float | None = setting(None, "Learning rate of the encoder/decoder optimizer "
                                 "(g_optimizer) when it should differ from --lr, e.g. a faster "
                                 "generator than critic in mmALI; default: --lr.",
                                 lower_bound=0.0)
    beta1: float = setting(0.5, "Adam beta_1.", lower_bound=0.0, upper_bound=1.0)
    beta2: float = setting(0.999, "Adam beta_2.", lower_bound=0.0, upper_bound=1.0)
    adam_epsilon: float = setting(1e-8, "Adam epsilon (PyTorch default 1e-8).", lower_bound=0.0)
    amsgrad: bool = setting(False, "Use the AMSGrad variant of Adam (MMVAE).")
    ema_decay: float = setting(0.9999, "Decay of the EMA of encoder/decoder weights used for "
                               "sampling, evaluation and export (0: no EMA).", lower_bound=0.0,
                               upper_bound=0.999999)
    ema_start: int = setting(50000, "EMA is a hard copy of the weights until this step, then "
                             "decays.", lower_bound=0)


@dataclasses.dataclass(frozen=True)
class AdversarialSettings(ModelSettings):
    """mmALI and its joint-discriminator ablation (`models/mmali.py`, `mmali_joint.py`)."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(("deterministic", "joint_rec"), lambda f: not (f["deterministic"] and f["joint_rec"]),
             "--joint_rec needs stochastic encoders; it cannot be used with --deterministic"),
    )

    unpaired: str = setting("shuffle", "Negatives of the joint critic and unimodal critic terms: "
                            "'shuffle' reshuffles the paired batch (as released), 'pool' draws "
                            "from per-modality pools that include unpaired examples (our "
                            "extension).", choices=("shuffle", "pool"))
    lambda_unimodal: float = setting(1.0, "lambda_u: weight of the unimodal and cross terms of "
                                     "the generator loss.", lower_bound=0.0)
    lambda_x_rec: float = setting(0.0, "Weight of x reconstruction terms.", lower_bound=0.0)
    lambda_s_rec: float = setting(0.0, "Weight of style re-encoding terms.", lower_bound=0.0)
    lambda_c_rec: float = setting(0.0, "Weight of content re-encoding terms.", lower_bound=0.0)
    joint_rec: bool = setting(False, "Use the joint (geometric-mean) reconstruction terms "
                              "instead of the unimodal ones for x and c.")
    deterministic: bool = setting(False, "Deterministic encoders (no posterior noise).")
    dis_iter: int = setting(1, "Critic updates per iteration.", lower_bound=1, upper_bound=10)
    gen_iter: int = setting(1, "Generator updates per iteration.", lower_bound=1,
                            upper_bound=10)
    spectral_norm: bool = setting(True, "Spectral normalisation in every critic layer.")
