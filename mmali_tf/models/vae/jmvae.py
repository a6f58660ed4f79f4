"""JMVAE-kl (Suzuki et al. 2017) with a joint encoder (sec. 3.2 of the paper).

Maximise  E_{q(z|X)}[sum_m lambda_m log p(x_m|z)] - a_t [beta KL(q(z|X) || N(0,I))
          + alpha sum_m KL(q(z|X) || q_m(z|x_m))],
one sample z ~ q(z|X), batch mean; a_t = min(1, (step+1)/A) warm-up (`--kl_anneal_steps`).
Unimodal encoders learn only through the alpha-KL terms; decoders only see joint samples.

Decisions recorded: alpha = `--jmvae_alpha` (0.1, Suzuki et al. 2016); Laplace(0.75) image likelihoods
with lambda = 3.918 for MNIST (Shi et al. 2019: the ratio of SVHN to MNIST dimensions); joint encoder = contrastive-paper Table 4 network
for two images, per-modality-feature MLP otherwise (`mmali_tf.networks.joint_encoder`).
Inference: `encode(m, x)` is the unimodal q_m; `encode_joint(xs)` is the model's own joint
posterior q(z|X) (the raw joint encoder; it has no EMA copy), which `joint_posterior` returns
when every modality is given (synergy, joint latent probe); `fuse` (subsets, M > 2) =
PoE of the unimodal experts without a prior expert (MultiVae convention).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
import tensorflow as tf

from mmali_tf import latent as latent_lib
from mmali_tf.models.base import Params
from mmali_tf.models.vae import objectives as obj
from mmali_tf.models.vae.common import Batch, VAEModel
from mmali_tf.networks.joint_encoder import build_joint_encoder
from mmali_tf.models.vae.settings import JMVAESettings
from mmali_tf.registry import register_model


@register_model("jmvae", settings=JMVAESettings)
class JMVAE(VAEModel):
    """JMVAE-kl (registry name "jmvae")."""

    registry_name = "jmvae"
    posterior_family = "normal"
    default_fusion = "poe"
    prior_expert = False

    def build_extra_networks(self) -> None:
        self.alpha = self.settings.jmvae_alpha
        self.joint_encoder = build_joint_encoder(self.specs, 2 * self.layout.latent_dim,
                                                 init=self.settings.init)

    @property
    def extra_variables(self) -> list[keras.Variable]:
        return list(self.joint_encoder.trainable_variables)

    def loss_term_names(self) -> list[str]:
        return ["recon", "kl", "kl_unimodal"]

    def joint_params(self, xs: Sequence[tf.Tensor], training: bool = True) -> Params:
        return self.params_from_encoder_output(self.joint_encoder(list(xs), training=training))

    def encode_joint(self, xs: Mapping[str, tf.Tensor] | Sequence[tf.Tensor]) -> Params:
        """(mean, logvar) of the joint posterior q(z | x_1..x_M); xs keyed by modality or in
        modality order (every modality is required)."""
        if isinstance(xs, Mapping):
            missing = [m for m in self.modalities if m not in xs]
            if missing:
                raise ValueError(f"encode_joint needs every modality; missing {missing}")
            xs = [xs[m] for m in self.modalities]
        return self.joint_params(xs, training=False)

    def joint_posterior(self, params_by_modality: Mapping[str, Params],
                        xs: Mapping[str, tf.Tensor] | None = None,
                        ema: bool | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """q(z|X) of the joint encoder when `xs` holds every modality, else the PoE of the
        given unimodal experts (subsets); one mixture component, (1, B, D)."""
        if xs is None or any(m not in xs for m in self.modalities):
            return super().joint_posterior(params_by_modality, xs, ema)
        mean, logvar = self.encode_joint(xs)
        return self.layout.content(mean)[None], self.layout.content(logvar)[None]

    @property
    def joint_posterior_name(self) -> str:
        return "joint encoder q(z|X)"

    def native(self, batch: Batch):
        """Per-datapoint loss (B,), logged terms and the cache (unused by JMVAE negatives)."""
        mu, lv = self.joint_params([batch[m] for m in self.modalities])
        z = mu + latent_lib.scale_from_logvar(lv) * self.sample_noise(tf.shape(mu))
        rec = tf.add_n([self.log_lik(m, self.decode_many(m, z), batch[m])
                        for m in self.modalities])
        kl = latent_lib.gaussian_kl_standard(mu, lv)
        kl_uni = tf.add_n([obj.gaussian_kl(mu, lv, *self.encode_train(m, batch[m]))
                           for m in self.modalities])
        loss = -rec + self.anneal_factor() * (self.beta * kl + self.alpha * kl_uni)
        terms = {"recon": -tf.reduce_mean(rec), "kl": tf.reduce_mean(kl),
                 "kl_unimodal": tf.reduce_mean(kl_uni)}
        return loss, terms, {}

    def objective(self, batch: Batch):
        loss, terms, _ = self.native(batch)
        return self.reduce_batch(loss), terms
