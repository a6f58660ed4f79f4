"""MMVAE+ (Palumbo, Daunhawer & Vogt, ICLR 2023): MMVAE with modality-specific latents and
auxiliary priors for cross-modal generation.

Every modality m has a latent u_m = [w_m | z_m] (`--style_dim` modality-specific entries w
first, then the shared content z), posterior q_m(u|x_m) = q_m(w|x_m) q_m(z|x_m), prior
p(u) = p(w) p(z) and, per modality d, an auxiliary prior r_d(w) with learned scales. With K
samples u_{r,k} = [w_{r,k} | z_{r,k}] ~ q_r for every source modality r, the log-weights are
  log w_{r,k} = sum_d lambda_d log p(x_d | [w~_{r,d,k} | z_{r,k}])
               + beta_t [log p(u_{r,k}) - log (1/M) sum_m q_m(z_{r,k}|x_m) - log q_r(w_{r,k}|x_r)],
  w~_{r,d} = w_{r,k} when d = r, else a reparameterised sample of r_d(w) (d != r),
and the bound is the stratified IWAE (1/M) sum_r LME_k log w_{r,k} (summed over the batch),
optimised with the authors' `m_dreg` (`--objective=dreg`, default; with
`--dreg_estimator=released` its gradient is the IWAE gradient, see `dreg_stops_q`) or plain
autodiff (`iwae`; K = 1 is the authors' default `elbo`). The DReG machinery (`paper`: w~^2
with stop-gradient q), the vectorised decoding and the Laplace /
softmax-scale machinery are MMVAE's (this class extends `MMVAE`).

Decisions recorded (from the authors' code, epalu/mmvaeplus d83dcf8):
* Laplace posteriors whose scales are D_w softmax(h_w) + 1e-6 and D_z softmax(h_z) + 1e-6,
  normalised separately over the w and z parts (`--posterior=normal`: softplus(h) + 1e-6);
* p(u) = Laplace(0, 1) fixed (configs set `--nolearn_prior`; with `--learn_prior` MMVAE's
  learned prior scales are used), r_d(w) = Laplace(0, D_w softmax(v_d)) with v_d learned,
  initialised to 0 (scale 1);
* the mixture in the denominator acts on the shared z only, q_r(w) on the source's own w;
* beta multiplies the whole prior/posterior ratio (the authors' `beta`).
Inference: `fuse` = moment-matched mixture of the content experts (`moe_mean`); generation
and cross-modal generation draw w from p(w) (the authors' test-time
`reconstruct_and_cross_reconstruct_forw`), i.e. `sample_prior`'s style.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from mmali_tf.data.specs import ModalitySpec
from mmali_tf.models.base import Params
from mmali_tf.models.vae import distributions as dists
from mmali_tf.models.vae.common import Batch
from mmali_tf.models.vae.mmvae import MMVAE
from mmali_tf.models.vae.settings import MMVAESettings
from mmali_tf.registry import register_model

OBJECTIVES = ("dreg", "iwae")


@register_model("mmvae_plus", settings=MMVAESettings)
class MMVAEPlus(MMVAE):
    """MMVAE with modality-specific latents and auxiliary priors (registry name "mmvae_plus")."""

    registry_name = "mmvae_plus"
    uses_style = True

    def __init__(self, specs: Sequence[ModalitySpec | Mapping[str, Any]],
                 config: Mapping[str, Any], **kwargs: Any) -> None:
        objective = self.settings_class.from_config(config).objective
        if objective not in OBJECTIVES:
            raise ValueError(f"mmvae_plus: --objective must be one of {OBJECTIVES} (the ELBO is "
                             f"'iwae' with --num_importance_samples=1), got {objective!r}")
        super().__init__(specs, config, **kwargs)

    # ----------------------------------------------------------------- parameters
    def build_extra_networks(self) -> None:
        super().build_extra_networks()
        self.aux_prior_logits = self.add_weight(
            shape=(len(self.specs), self.layout.style_dim), initializer="zeros",
            name="aux_prior_logits")

    @property
    def extra_variables(self) -> list[keras.Variable]:
        return super().extra_variables + [self.aux_prior_logits]

    def params_from_encoder_output(self, raw: tf.Tensor) -> Params:
        if self.scale_parameterisation != "softmax":
            return super().params_from_encoder_output(raw)
        lay, d = self.layout, self.layout.latent_dim
        mean, h = raw[:, :d], raw[:, d:]
        scale = lay.join(dists.softmax_scale(lay.style(h)), dists.softmax_scale(lay.content(h)))
        return mean, dists.laplace_logvar(scale)

    def aux_prior_scale(self) -> tf.Tensor:
        """(M, style_dim) scales of the auxiliary priors r_d(w) (D_w softmax(v_d) for Laplace)."""
        return self.scale_from_prior_logits(tf.convert_to_tensor(self.aux_prior_logits))

    def dreg_stops_q(self) -> bool:
        """`released` (default): no. epalu/mmvaeplus's `_m_dreg` builds the q densities of lw
        from the live encoder outputs (its detached copies `qu_xs_` are only iterated over) and
        registers the w~ hook on a stacked copy of the samples that lw does not use, so its
        gradient is the plain IWAE gradient (sum_k w~_k grad lw_k, score terms included);
        tests/golden/test_mmvae_plus_fidelity.py shows it. `paper`: stop-gradient q and w~^2
        encoder weights (DReG, Tucker et al. 2019)."""
        return self.dreg_estimator == "paper"

    # ----------------------------------------------------------------- evaluation
    def cross_latent(self, z_source: tf.Tensor, target: str, seed: Any = None) -> tf.Tensor:
        """The source's content z with a target style w ~ p(w): a decoder never sees another
        modality's w in training (epalu/mmvaeplus `reconstruct_and_cross_reconstruct_forw`)."""
        self._check_modality(target)
        return self.join_prior_style(self.layout.content(z_source), seed)

    # ----------------------------------------------------------------- forward
    def cross_styles(self, target: int, own: tf.Tensor) -> tf.Tensor:
        """Styles fed to decoder `target` for latents (M, K, B, D_w) of every source: the
        source's own w on the diagonal, a reparameterised r_target(w) sample elsewhere."""
        scale = self.aux_prior_scale()[target]
        aux = scale * self.sample_noise(tf.shape(own), name=f"w_aux/{self.modalities[target]}",
                                        batch_axis=2)
        diagonal = tf.one_hot(target, len(self.modalities), dtype=own.dtype)[:, None, None, None]
        return diagonal * own + (1.0 - diagonal) * aux

    def forward(self, batch: Batch, stop_q: bool) -> dict[str, tf.Tensor]:
        """Samples, decodings and log-weights (M, K, B) of the stratified MMVAE+ bound (same
        cache keys as `MMVAE.forward`; q densities use stop-gradient parameters if `stop_q`)."""
        lay = self.layout
        means, logvars = self.encode_all(batch)
        u = self.sample_experts(means, logvars)                             # (M, K, B, D)
        w, z = lay.split(u)
        dec = {d: self.decode_many(d, lay.join(self.cross_styles(i, w), z))
               for i, d in enumerate(self.modalities)}
        log_lik = {d: self.log_lik(d, dec[d], batch[d]) for d in self.modalities}
        log_prior = self.prior().log_prob(u)
        qm, qlv = (tf.stop_gradient(means), tf.stop_gradient(logvars)) if stop_q else \
            (means, logvars)
        log_qz = self.mixture_log_prob(lay.content(qm), lay.content(qlv), z)
        log_qw = dists.posterior(lay.style(qm)[:, None], lay.style(qlv)[:, None],
                                 self.posterior_family).log_prob(w)
        lw = tf.add_n(list(log_lik.values())) + self.kl_weight() * (log_prior - log_qz - log_qw)
        return {"means": means, "logvars": logvars, "z": u, "dec": dec, "log_lik": log_lik,
                "log_prior": log_prior, "lw": lw}
