"""MoPoE-VAE (Sutter, Daunhawer & Vogt, ICLR 2021): mixture of products of experts.

The joint posterior is the uniform mixture over the T = 2^M - 1 non-empty subsets S of the
modalities of their Gaussian products of experts q_S = PoE({q_m : m in S}):
  q(z|X) = (1/T) sum_S q_S(z|X_S).
Maximised bound (per datapoint, batch mean, as the authors' `joint_elbo` method):
  E_{q(z|X)}[sum_m lambda_m log p(x_m|z)] - beta_t beta_c (1/T) sum_S KL(q_S || N(0, I)),
where (1/T) sum_S KL(q_S || p) >= KL(q || p) (convexity), so this is a lower bound of the
ELBO of the mixture. The expectation uses "mixture component selection" (one reparameterised
sample per datapoint from subset S(b): the batch is cut into T contiguous chunks of
floor(B/T) rows, the last subset taking the rest, the whole batch when B < T;
`objectives.component_selection`, shared with mmJSD). beta_c is `--beta_content` (default 1; the authors' `basic_routine_epoch`
weighs the subset KLs by beta * beta_content).

Decisions recorded (from the authors' code, thomassutter/MoPoE 0ad2d56):
* a N(0, I) prior expert joins the product of the *full* set only (their `poe_fusion` adds it
  when every modality is in the subset); `fusion_prior_expert` applies the same rule at
  inference, so conditional generation from a proper subset uses PoE(S) without the prior;
* Normal posteriors with the log-variance head (clipped to +-10 against a PoE precision blow-up);
* no modality-specific latents (the paper's PolyMNIST setting, `--style_dim=0`);
* likelihood weights lambda_m from the dataset (1 for PolyMNIST-style equal-size images).
If B < T, rows map one-to-one onto the first B subsets (the authors' code would send every
row to the full set); configs use B >= T.
All subset products are computed at once by `objectives.subset_products` (the PoE of
`latent.product_of_experts` over masked experts), every selected latent decoded in one call
per decoder.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmali_tf import latent as latent_lib
from mmali_tf.models.vae import objectives as obj
from mmali_tf.models.vae.common import Batch, VAEModel
from mmali_tf.models.vae.settings import MoPoESettings
from mmali_tf.registry import register_model


def subset_mask(num_modalities: int) -> np.ndarray:
    """(T, M) 0/1 rows of every non-empty subset (`latent.nonempty_subsets` order, full last)."""
    subsets = latent_lib.nonempty_subsets(num_modalities)
    mask = np.zeros((len(subsets), num_modalities), np.float32)
    for t, s in enumerate(subsets):
        mask[t, list(s)] = 1.0
    return mask


@register_model("mopoe", settings=MoPoESettings)
class MoPoE(VAEModel):
    """Mixture-of-products-of-experts multimodal VAE (registry name "mopoe")."""

    registry_name = "mopoe"
    posterior_family = "normal"
    default_fusion = "poe"
    prior_expert = False

    def __init__(self, specs, config, **kwargs) -> None:
        super().__init__(specs, config, **kwargs)
        mask = subset_mask(len(self.modalities))
        self.subsets = mask
        self.prior_rows = (mask.sum(axis=1) == len(self.modalities)).astype(np.float32)
        self.beta_content = self.settings.beta_content

    def loss_term_names(self) -> list[str]:
        return ["recon", "kl"]

    def fusion_prior_expert(self, modalities: tuple[str, ...]) -> bool:
        """The prior expert joins the product of the full set only (the authors' code)."""
        return set(modalities) == set(self.modalities)

    def subset_posteriors(self, means: tf.Tensor, logvars: tf.Tensor
                          ) -> tuple[tf.Tensor, tf.Tensor]:
        """(T, B, D) mean and logvar of q_S for every non-empty subset S."""
        return obj.subset_products(means, logvars, tf.constant(self.subsets),
                                   tf.constant(self.prior_rows))

    def objective(self, batch: Batch):
        params = [self.encode_train(m, batch[m]) for m in self.modalities]
        means = tf.stack([p[0] for p in params])
        logvars = tf.stack([p[1] for p in params])                         # (M, B, D)
        mu, lv = self.subset_posteriors(means, logvars)                    # (T, B, D)
        sel = obj.component_selection(tf.shape(means)[1], len(self.subsets))[:, :, None]
        z_mean = tf.reduce_sum(sel * mu, axis=0)
        z_logvar = tf.reduce_sum(sel * lv, axis=0)                         # (B, D)
        z = latent_lib.reparameterize(z_mean, z_logvar,
                                      self.sample_noise(tf.shape(z_mean), name="eps"))
        rec = tf.add_n([self.log_lik(m, self.decode_many(m, z), batch[m])
                        for m in self.modalities])                         # (B,)
        kl = tf.reduce_mean(latent_lib.gaussian_kl_standard(mu, lv), axis=0)   # (1/T) sum_S
        terms = {"recon": -tf.reduce_mean(rec), "kl": tf.reduce_mean(kl)}
        reg = self.beta_content * kl   # the authors' basic_routine_epoch: beta * beta_content
        return self.reduce_batch(-rec + self.kl_weight() * reg), terms
