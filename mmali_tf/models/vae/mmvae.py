"""MMVAE (Shi et al. 2019): mixture-of-experts posterior, stratified IWAE, DReG (iffsid/mmvae src/objectives.py).

q(z|X) = (1/M) sum_m q_m(z|x_m). With K samples z_{m,k} ~ q_m per modality
  log w_{m,k} = log p(z_{m,k}) + sum_d lambda_d log p(x_d|z_{m,k}) - log (1/M) sum_m' q_m'(z_{m,k})
  L = (1/M) sum_m LME_k log w_{m,k}              (paper Eq. 3, code `--looser`)
summed over the batch (as the authors' code). `--objective`:
* `dreg` (default): decoder/prior grads weighted by w~, encoder grads through z only (every q
  in log w uses stop-gradient parameters), weighted by w~ as the authors' released code does
  (`--dreg_estimator=released`, default: their gradient hook never fires) or by w~^2 as in the
  DReG paper (`--dreg_estimator=paper`: the z-gradient times w~ is pushed back into the
  encoders). See BUILD.md "Fidelity".
* `iwae`: plain autodiff of L.  * `elbo`: the linear-time MoE ELBO (App. B, `objectives.moe_elbo`).
Vectorised: all M*K*B latents are decoded in one call per decoder.

Decisions recorded: `--posterior=laplace` (default): Laplace(mu, D softmax(h) + 1e-6) and, with
`--learn_prior`, a learned prior Laplace(0, D softmax(v)), v initialised to 0; `normal`:
Normal(mu, softplus(h) + 1e-6) and prior Normal(0, softplus(v) + 1e-6) (CUB). Without
`--learn_prior` the prior is Laplace(0, 1) / N(0, I). Likelihood weights lambda_m from the
dataset, else prod(largest)/prod(shape) for image pairs. Inference: `joint_posterior` is the
mixture itself (one component per expert; sampling it samples a uniformly chosen expert, the
papers' protocol); `fuse` = moment-matched mixture (`default_fusion = "moe_mean"`, a single
Gaussian: a diagnostic, not the model's posterior); `encode` returns loc and logvar =
log(2 b^2).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from mmali_tf import latent as latent_lib
from mmali_tf.data.specs import ModalitySpec
from mmali_tf.models.vae import distributions as dists
from mmali_tf.models.vae import objectives as obj
from mmali_tf.models.vae.common import DREG_ESTIMATORS, Batch, VAEModel, dreg_gradients
from mmali_tf.models.vae.settings import MMVAESettings
from mmali_tf.registry import register_model

OBJECTIVES = ("dreg", "iwae", "elbo")


@register_model("mmvae", settings=MMVAESettings)
class MMVAE(VAEModel):
    """Mixture-of-experts multimodal VAE (registry name "mmvae")."""

    registry_name = "mmvae"
    default_fusion = "moe_mean"
    prior_expert = False
    batch_reduction = "sum"
    shape_flags = ("learn_prior", "posterior")
    #: weight of the (DReG) bound in the loss; contrastive variants set gamma.
    positive_weight: float = 1.0

    def __init__(self, specs: Sequence[ModalitySpec | Mapping[str, Any]],
                 config: Mapping[str, Any], **kwargs: Any) -> None:
        settings = self.settings_class.from_config(config)
        family = settings.posterior
        if family not in ("laplace", "normal"):
            raise ValueError(f"--posterior must be 'laplace' or 'normal', got {family!r}")
        self.objective_name = settings.objective
        if self.objective_name not in OBJECTIVES:
            raise ValueError(f"--objective must be one of {OBJECTIVES}, got "
                             f"{self.objective_name!r}")
        self.posterior_family = family
        self.scale_parameterisation = "softmax" if family == "laplace" else "softplus"
        self.k = settings.num_importance_samples
        self.dreg_estimator = settings.dreg_estimator
        if self.dreg_estimator not in DREG_ESTIMATORS:
            raise ValueError(f"--dreg_estimator must be one of {DREG_ESTIMATORS}, got "
                             f"{self.dreg_estimator!r}")
        super().__init__(specs, config, **kwargs)

    # ----------------------------------------------------------------- prior
    def build_extra_networks(self) -> None:
        self.learn_prior = self.settings.learn_prior
        self.prior_logits = self.add_weight(
            shape=(self.layout.latent_dim,), initializer="zeros", name="prior_logits",
            trainable=self.learn_prior)

    @property
    def extra_variables(self) -> list[keras.Variable]:
        return [self.prior_logits] if self.learn_prior else []

    def prior_scale(self) -> tf.Tensor:
        """Scale (D,) of the prior: learned D softmax(v) / softplus(v) + 1e-6, else 1."""
        v = tf.convert_to_tensor(self.prior_logits)
        if not self.learn_prior:
            return tf.ones_like(v)
        return self.scale_from_prior_logits(v)

    def scale_from_prior_logits(self, v: tf.Tensor) -> tf.Tensor:
        """Prior scale from logits v (..., D): D softmax(v) (Laplace), softplus(v) + 1e-6."""
        if self.posterior_family == "laplace":
            return dists.softmax_scale(v) - 1e-6
        return tf.nn.softplus(v) + 1e-6

    def prior_params(self) -> tuple[tf.Tensor, tf.Tensor]:
        scale = self.prior_scale()
        logvar = (dists.laplace_logvar(scale) if self.posterior_family == "laplace"
                  else 2.0 * tf.math.log(scale))
        return tf.zeros_like(scale), logvar

    def prior(self):
        mean, logvar = self.prior_params()
        return dists.posterior(mean, logvar, self.posterior_family)

    def joint_posterior(self, params_by_modality, xs=None, ema=None):
        """The uniform mixture of the given experts: (means, logvars), (M, B, D)."""
        if not params_by_modality:
            raise ValueError("joint_posterior needs the posterior of at least one modality")
        for m in params_by_modality:
            self._check_modality(m)
        lay = self.layout
        return (tf.stack([lay.content(p[0]) for p in params_by_modality.values()]),
                tf.stack([lay.content(p[1]) for p in params_by_modality.values()]))

    @property
    def joint_posterior_name(self) -> str:
        return "mixture of the unimodal experts (one expert sampled uniformly)"

    # ----------------------------------------------------------------- forward
    def loss_term_names(self) -> list[str]:
        return ["recon", "bound"]

    def encode_all(self, batch: Batch) -> tuple[tf.Tensor, tf.Tensor]:
        params = [self.encode_train(m, batch[m]) for m in self.modalities]
        return tf.stack([p[0] for p in params]), tf.stack([p[1] for p in params])

    def sample_experts(self, means: tf.Tensor, logvars: tf.Tensor) -> tf.Tensor:
        """K reparameterised samples of every expert: (M, B, D) -> (M, K, B, D)."""
        return tf.transpose(self.sample_k(means, logvars, self.k, batch_axis=1), [1, 0, 2, 3])

    def forward(self, batch: Batch, stop_q: bool) -> dict[str, tf.Tensor]:
        """Samples, decodings and log-weights of the stratified MoE-IWAE.

        Returns means/logvars (M, B, D) (live), z (M, K, B, D), dec {d: (M, K, B, *shape_d)},
        log_prior (M, K, B), log_lik {d: (M, K, B)} and lw (M, K, B) with q_mix from
        stop-gradient parameters when `stop_q` (DReG).
        """
        means, logvars = self.encode_all(batch)
        z = self.sample_experts(means, logvars)
        dec = {d: self.decode_many(d, z) for d in self.modalities}
        log_lik = {d: self.log_lik(d, dec[d], batch[d]) for d in self.modalities}
        log_prior = self.prior().log_prob(z)
        qm, qlv = (tf.stop_gradient(means), tf.stop_gradient(logvars)) if stop_q else \
            (means, logvars)
        lw = log_prior + tf.add_n(list(log_lik.values())) - self.mixture_log_prob(qm, qlv, z)
        return {"means": means, "logvars": logvars, "z": z, "dec": dec, "log_lik": log_lik,
                "log_prior": log_prior, "lw": lw}

    def mixture_log_prob(self, means: tf.Tensor, logvars: tf.Tensor,
                         z: tf.Tensor) -> tf.Tensor:
        """log (1/M) sum_m' q_m'(z) for experts (M', ..., B, D) and z (M, K, ..., B, D)."""
        q = dists.posterior(means[:, None, None], logvars[:, None, None], self.posterior_family)
        return obj.moe_log_prob(q.log_prob(z[None]), axis=0)

    def _recon(self, log_lik: Mapping[str, tf.Tensor]) -> tf.Tensor:
        return -tf.reduce_mean(tf.add_n(list(log_lik.values())))

    # ----------------------------------------------------------------- objectives
    def elbo_objective(self, batch: Batch) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Linear-time MoE ELBO: each z_d ~ q_d decoded by its own decoder only."""
        means, logvars = self.encode_all(batch)
        z = self.sample_experts(means, logvars)                                  # (M,K,B,D)
        log_lik = tf.stack([self.log_lik(d, self.decode_many(d, z[i]), batch[d])
                            for i, d in enumerate(self.modalities)])             # (M,K,B)
        q = dists.posterior(means[:, None, None], logvars[:, None, None],
                            self.posterior_family)
        log_q = q.log_prob(tf.stop_gradient(z)[None])                            # (Mr,Md,K,B)
        prior_scale = self.prior_scale()
        if self.posterior_family == "laplace":
            scale = latent_lib.scale_from_logvar(logvars, self.posterior_family)
            kl = obj.laplace_kl(means, scale, 0.0, prior_scale)
        else:
            kl = obj.gaussian_kl(means, logvars, 0.0, 2.0 * tf.math.log(prior_scale))
        bound = obj.moe_elbo(log_lik, log_q, kl)
        return -self.reduce_batch(bound), {"recon": -tf.reduce_mean(log_lik),
                                           "bound": tf.reduce_mean(bound)}

    def native(self, batch: Batch, stop_q: bool = False):
        """Per-datapoint negative looser bound (B,), logged terms and the forward cache."""
        cache = self.forward(batch, stop_q)
        bound = obj.moe_iwae_looser(cache["lw"])
        return -bound, {"recon": self._recon(cache["log_lik"]),
                        "bound": tf.reduce_mean(bound)}, cache

    def objective(self, batch: Batch):
        if self.objective_name == "elbo":
            return self.elbo_objective(batch)
        loss, terms, _ = self.native(batch)
        return self.reduce_batch(loss), terms

    def additional_loss(self, batch: Batch, cache: Mapping[str, Any]):
        """(extra autodiff loss added to the weighted DReG bound, its logged terms); plain
        MMVAE has none (None, {})."""
        return None, {}

    def dreg_stops_q(self) -> bool:
        """Whether `--objective=dreg` evaluates the q densities of lw with stop-gradient
        parameters (MMVAE: always, as iffsid/mmvae's `_m_dreg_looser`)."""
        return True

    def compute_gradients(self, batch: Batch):
        if self.objective_name != "dreg":
            return super().compute_gradients(batch)
        enc_vars = [v for m in self.modalities for v in self.encoders[m].trainable_variables]
        theta_vars = [v for m in self.modalities for v in self.decoders[m].trainable_variables]
        theta_vars += self.extra_variables
        with tf.GradientTape(persistent=True) as tape:
            loss_dp, terms, cache = self.native(batch, stop_q=self.dreg_stops_q())
            theta_dp, _ = obj.dreg_surrogates(cache["lw"])
            theta_loss = self.distribute_scale(
                self.positive_weight * self.reduce_batch(theta_dp))
            extra, extra_terms = self.additional_loss(batch, cache)
            extra_scaled = None if extra is None else self.distribute_scale(extra)
        grads = dreg_gradients(tape, theta_loss, cache["lw"], cache["z"], enc_vars, theta_vars,
                               self.dreg_estimator)
        loss = self.positive_weight * self.reduce_batch(loss_dp)
        if extra is not None:
            extra_grads = tape.gradient(extra_scaled, enc_vars + theta_vars)
            grads = [g if e is None else (e if g is None else g + e)
                     for g, e in zip(grads, extra_grads)]
            loss = loss + extra
        del tape
        return grads, loss, {**terms, **extra_terms}
