"""Settings of the VAE baselines (`mmali_tf.config`), one class per model family.

Imports neither TensorFlow nor absl (flags are defined from these classes before TensorFlow
loads). A setting two families share is a mixin both inherit, so it has one definition.
"""

from __future__ import annotations

import dataclasses

from mmali_tf.config import Settings, setting
from mmali_tf.models.settings import ModelSettings


@dataclasses.dataclass(frozen=True)
class VAESettings(ModelSettings):
    """Read by every `VAEModel` (`models/vae/common.py`)."""

    beta: float = setting(1.0, "Weight of the KL / JS regulariser.", lower_bound=0.0)
    kl_anneal_steps: int = setting(0, "Linear KL warm-up length in steps (0: none).",
                                   lower_bound=0)


@dataclasses.dataclass(frozen=True)
class MVAESettings(VAESettings):
    """MVAE (`models/vae/mvae.py`)."""

    mvae_kl_full_step: int = setting(
        0, "MVAE: step from which the KL weight is beta, ending the linear warm-up early (0: "
        "when it ends). The authors' loop (mhw32/multimodal-vae-public) sets its factor to 1 "
        "for the whole last warm-up epoch: kl_anneal_steps - steps per epoch reproduces it.",
        lower_bound=0)


@dataclasses.dataclass(frozen=True)
class JMVAESettings(VAESettings):
    """JMVAE-kl (`models/vae/jmvae.py`)."""

    jmvae_alpha: float = setting(0.1, "JMVAE-kl: weight of KL(q(z|X) || q(z|x_m)).",
                                 lower_bound=0.0)


@dataclasses.dataclass(frozen=True)
class ImportanceSettings(Settings):
    """The importance-sample count (MMVAE's objective, the contrastive estimators)."""

    num_importance_samples: int = setting(30, "K: importance samples per encoder.",
                                          lower_bound=1)


@dataclasses.dataclass(frozen=True)
class MMVAESettings(VAESettings, ImportanceSettings):
    """MMVAE and MMVAE+ (`models/vae/mmvae.py`, `mmvae_plus.py`)."""

    objective: str = setting("dreg", "MMVAE objective / gradient estimator.",
                             choices=("dreg", "iwae", "elbo"))
    dreg_estimator: str = setting(
        "released", "MMVAE, MMVAE+ --objective=dreg encoder gradients: 'released' as the "
        "authors' code computes them (iffsid/mmvae: weighted by w~, its gradient hook never "
        "fires; epalu/mmvaeplus: q with live parameters, i.e. the IWAE gradient), 'paper' by "
        "w~^2 with stop-gradient q (DReG, Tucker et al. 2019).", choices=("released", "paper"))
    posterior: str = setting("laplace", "MMVAE posterior and prior family.",
                             choices=("laplace", "normal"))
    learn_prior: bool = setting(True, "MMVAE: learn the prior's scales.")


@dataclasses.dataclass(frozen=True)
class ContentWeightSettings(Settings):
    """The weight of the content regulariser (mmJSD's JS term, MoPoE's subset KLs)."""

    beta_content: float = setting(1.0, "mmJSD, mmJSD-MS: weight of the (content) JS term; "
                                  "MoPoE: of the subset KLs.", lower_bound=0.0)


@dataclasses.dataclass(frozen=True)
class MMJSDSettings(VAESettings, ContentWeightSettings):
    """mmJSD and mmJSD-MS (`models/vae/mmjsd.py`)."""

    beta_style: float = setting(1.0, "mmJSD-MS: weight of the style KL terms.", lower_bound=0.0)
    stratified: bool = setting(False, "mmJSD: decode z from every expert for every datapoint "
                               "instead of mixture component selection.")
    mmjsd_kl_epoch_steps: int = setting(
        0, "mmJSD: steps per epoch of the authors' KL annealing (thomassutter/mmjsd run_epoch): "
        "with --kl_anneal_steps = A * this, the KL weight is 1e-4 + e * beta / A during epoch "
        "e < A, then beta (0: the linear per-step warm-up).", lower_bound=0)


@dataclasses.dataclass(frozen=True)
class MoPoESettings(VAESettings, ContentWeightSettings):
    """MoPoE-VAE (`models/vae/mopoe.py`)."""


@dataclasses.dataclass(frozen=True)
class ContrastiveSettings(ImportanceSettings):
    """The contrastive term of the cI-/cC- variants (`models/vae/contrastive.py`)."""

    gamma: float = setting(2.0, "Contrastive models: weight of the positive term; use gamma > 1 "
                           "(values <= 1 are accepted with a warning: the paper reports collapse "
                           "at gamma = 1).", lower_bound=0.0)
    num_negatives: int = setting(5, "Contrastive models: in-batch negatives N.", lower_bound=1)


@dataclasses.dataclass(frozen=True)
class ContrastiveMVAESettings(MVAESettings, ContrastiveSettings):
    """cI-MVAE, cC-MVAE."""


@dataclasses.dataclass(frozen=True)
class ContrastiveJMVAESettings(JMVAESettings, ContrastiveSettings):
    """cI-JMVAE, cC-JMVAE."""


@dataclasses.dataclass(frozen=True)
class ContrastiveMMVAESettings(MMVAESettings, ContrastiveSettings):
    """cI-MMVAE, cC-MMVAE."""
