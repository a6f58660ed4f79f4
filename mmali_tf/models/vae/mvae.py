"""MVAE (Wu & Goodman 2018): Gaussian product of experts with a prior expert (sec. 3; mhw32/multimodal-vae-public).

For every subset S of modalities the joint posterior is q_S = PoE(N(0,I), {q_m : m in S}) and
  ELBO_S = sum_{m in S} lambda_m E_{q_S}[log p(x_m|z)] - beta_t KL(q_S || N(0, I))
(only the modalities in S are reconstructed). The loss is
  -[ELBO_{1..M} + sum_m ELBO_{m} + ELBO_{S_1}]   (S_1 a random subset, only when M > 2),
one reparameterised sample per term, batch mean. beta_t = beta min(1, (step+1)/A) with
A = `--kl_anneal_steps` (our decision: keep A <= 1/4 of training, so most steps optimise the full ELBO; configs use
A = max_steps/4). `--mvae_kl_full_step` ends the warm-up early, as the authors' loop does
(its factor is 1 during the last warm-up epoch).

Decisions recorded (Shi et al. 2019, Appendix; iffsid/mmvae src/models): Laplace(0.75) image likelihoods with
lambda = prod(largest shape)/prod(shape) (3.918 for MNIST) by default, Bernoulli via the
dataset's `likelihood`; M > 2 uses one random subset per step (each modality kept with
probability 1/2, at least one). Inference: `fuse` = PoE *with* the prior expert
(`default_fusion = "poe"`, `prior_expert = True`); decode posterior means.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from mmali_tf import latent as latent_lib
from mmali_tf.data.specs import ModalitySpec
from mmali_tf.models.vae import objectives as obj
from mmali_tf.models.vae.common import Batch, VAEModel
from mmali_tf.models.vae.settings import MVAESettings
from mmali_tf.registry import register_model


@register_model("mvae", settings=MVAESettings)
class MVAE(VAEModel):
    """Multimodal VAE with a PoE joint posterior (registry name "mvae")."""

    registry_name = "mvae"
    posterior_family = "normal"
    default_fusion = "poe"
    prior_expert = True

    def __init__(self, specs: Sequence[ModalitySpec | Mapping[str, Any]],
                 config: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(specs, config, **kwargs)
        self.kl_full_step = self.settings.mvae_kl_full_step

    def loss_term_names(self) -> list[str]:
        return ["recon", "kl"]

    def subset_masks(self) -> tuple[tf.Tensor, list[np.ndarray]]:
        """(T, M) 0/1 subsets -- the joint, every single modality and (M > 2) one random
        subset -- and, per modality, the rows whose subset can contain it (decoded rows)."""
        m = len(self.modalities)
        fixed = np.concatenate([np.ones((1, m)), np.eye(m)])
        rows = [np.flatnonzero(fixed[:, i]) for i in range(m)]
        masks = tf.constant(fixed, tf.float32)
        if m > 2:
            u = keras.random.uniform((1, m), seed=self.seed_generator)
            rand = tf.maximum(tf.cast(u < 0.5, tf.float32),
                              tf.one_hot(tf.argmin(u, axis=-1), m, dtype=tf.float32))
            masks = tf.concat([masks, rand], axis=0)
            rows = [np.append(r, len(fixed)) for r in rows]
        return masks, rows

    def encode_all(self, batch: Batch) -> tuple[tf.Tensor, tf.Tensor]:
        """Stacked unimodal expert parameters (M, B, D)."""
        params = [self.encode_train(m, batch[m]) for m in self.modalities]
        return tf.stack([p[0] for p in params]), tf.stack([p[1] for p in params])

    def native(self, batch: Batch):
        """Per-datapoint loss (B,), logged terms and the cache (expert parameters)."""
        means, logvars = self.encode_all(batch)
        masks, rows = self.subset_masks()
        mu, lv = obj.masked_product_of_experts(means, logvars, masks, prior_expert=True)
        noise = self.sample_noise(tf.shape(mu), name="eps", batch_axis=1)      # (T, B, D)
        z = mu + latent_lib.scale_from_logvar(lv) * noise
        shape = tf.shape(z)[:2]
        rec = 0.0
        for i, m in enumerate(self.modalities):      # decode only subsets that may hold m
            r = tf.constant(rows[i][:, None], tf.int32)
            ll = self.log_lik(m, self.decode_many(m, tf.gather_nd(z, r)), batch[m])
            rec = rec + tf.scatter_nd(r, tf.gather_nd(masks[:, i], r)[:, None] * ll, shape)
        kl = latent_lib.gaussian_kl_standard(mu, lv)                           # (T, B)
        loss = -tf.reduce_sum(rec - self.kl_weight() * kl, axis=0)
        terms = {"recon": -tf.reduce_mean(tf.reduce_sum(rec, 0)),
                 "kl": tf.reduce_mean(tf.reduce_sum(kl, 0))}
        return loss, terms, {"means": means, "logvars": logvars}

    def objective(self, batch: Batch):
        loss, terms, _ = self.native(batch)
        return self.reduce_batch(loss), terms
