"""mmJSD (Sutter et al. 2020): MoE reconstruction + multimodal JS divergence (thomassutter/mmjsd divergence_measures/mm_div.py).

Maximise  E_{q_MoE(z|X)}[sum_m lambda_m log p(x_m|z)] - beta_t JS_pi({q_m}, N(0,I)),
JS_pi = sum_{j=0}^{M} pi_j KL(q_j || p_f), q_0 = N(0, I), pi_j = 1/(M+1), with the dynamic
prior p_f = weighted geometric mean of the M+1 Gaussians (closed form). Batch mean.
Reconstruction: "mixture component selection" -- the batch is cut into M contiguous chunks
(floor(B/M), ..., rest; the pipeline shuffles) and chunk m decodes its single sample z ~ q_m
for *every* modality; `--stratified` instead decodes a sample of every q_m for every
datapoint and averages (same expectation, lower variance, M x cost).
`mmjsd_ms` (modality-specific subspaces, `--style_dim` > 0): z_m = [s_m | c]; the content c
is selected as above from the content parts, s_m ~ q(s_m|x_m) always comes from modality m's
own encoder, and the loss adds beta_t beta_style sum_m KL(q(s_m|x_m) || N(0, I)) while the
JS acts on the content. The JS is weighted by beta_content in both variants (as in the authors'
run_epoch; default 1). beta_t: the linear warm-up over `--kl_anneal_steps`, or with
`--mmjsd_kl_epoch_steps` the authors' epoch-wise one (run_epoch: 1e-4 + e beta / A in epoch
e < A, then beta; `objectives.kl_anneal_epochwise`).

Decisions recorded: paper hyper-parameters (beta = 5, lr 1e-3) rather than the released
script's (thomassutter/mmjsd main_svhnmnist.py); lambda = 3.918 for MNIST next to SVHN; every beta_{s,m} = 1.
Inference: `fuse` = the dynamic-prior PoE of the unimodal experts without a prior expert
(`default_fusion = "poe"`, as the authors' test-time code does); MoE selection is `fuse(..., "moe_mean")`. mmJSD-MS
decodes every generated modality with a style drawn from the prior (`cross_latent`,
`synergy_latent`), never with another modality's style.
"""

from __future__ import annotations

import tensorflow as tf

from mmali_tf import latent as latent_lib
from mmali_tf.models.vae import objectives as obj
from mmali_tf.models.vae.common import Batch, VAEModel
from mmali_tf.models.vae.settings import MMJSDSettings
from mmali_tf.registry import register_model


@register_model("mmjsd", settings=MMJSDSettings)
@register_model("mmjsd_ms", settings=MMJSDSettings)
class MMJSD(VAEModel):
    """mmJSD and mmJSD-MS (registry names "mmjsd", "mmjsd_ms")."""

    registry_name = "mmjsd"
    posterior_family = "normal"
    default_fusion = "poe"
    prior_expert = False

    def __init__(self, specs, config, **kwargs) -> None:
        self.uses_style = self.variant_name(config) == "mmjsd_ms"
        super().__init__(specs, config, **kwargs)
        self.stratified = self.settings.stratified
        self.beta_style, self.beta_content = self.settings.beta_style, self.settings.beta_content
        self.kl_epoch_steps = self.settings.mmjsd_kl_epoch_steps
        if self.kl_epoch_steps and self.kl_anneal_steps % self.kl_epoch_steps:
            raise ValueError(f"--kl_anneal_steps={self.kl_anneal_steps} must be a multiple of "
                             f"--mmjsd_kl_epoch_steps={self.kl_epoch_steps}")

    def kl_weight(self) -> tf.Tensor:
        """beta_t: the authors' epoch-wise schedule with `--mmjsd_kl_epoch_steps`, else the
        linear warm-up."""
        if not self.kl_epoch_steps:
            return super().kl_weight()
        return obj.kl_anneal_epochwise(self.g_optimizer.iterations, self.kl_anneal_steps,
                                       self.kl_epoch_steps, self.beta)

    def cross_latent(self, z_source: tf.Tensor, target: str, seed=None) -> tf.Tensor:
        """mmJSD-MS: the source's content with a target style from the prior."""
        if not self.uses_style:
            return super().cross_latent(z_source, target, seed)
        return self.synergy_latent(self.layout.content(z_source), z_source, target, seed)

    def synergy_latent(self, content: tf.Tensor, z_target: tf.Tensor, target: str,
                       seed=None) -> tf.Tensor:
        """mmJSD-MS: the content with a target style from the prior (`z_target` unused)."""
        if not self.uses_style:
            return super().synergy_latent(content, z_target, target, seed)
        self._check_modality(target)
        return self.join_prior_style(content, seed)

    def loss_term_names(self) -> list[str]:
        return ["recon", "js"] + (["kl_style"] if self.uses_style else [])

    def selection(self, batch_size: tf.Tensor) -> tf.Tensor:
        """(M, B) one-hot expert of each datapoint: chunks floor(B/M), ..., rest."""
        return obj.component_selection(batch_size, len(self.modalities))

    def objective(self, batch: Batch):
        lay = self.layout
        params = [self.encode_train(m, batch[m]) for m in self.modalities]
        means = tf.stack([p[0] for p in params])
        logvars = tf.stack([p[1] for p in params])                       # (M, B, D)
        noise = self.sample_noise(tf.shape(means), name="eps", batch_axis=1)
        z = means + latent_lib.scale_from_logvar(logvars) * noise
        style, content = lay.split(z)
        if self.stratified:
            contents = content                                            # (M, B, C): all
        else:
            sel = self.selection(tf.shape(means)[1])[:, :, None]
            contents = tf.reduce_sum(sel * content, axis=0)[None]         # (1, B, C)
        n = tf.shape(contents)[0]
        rec = 0.0
        for i, m in enumerate(self.modalities):
            s = tf.broadcast_to(style[i][None], tf.concat([[n], tf.shape(style)[1:]], 0))
            ll = self.log_lik(m, self.decode_many(m, lay.join(s, contents)), batch[m])
            rec = rec + tf.reduce_mean(ll, axis=0)                        # (B,)
        js = obj.js_divergence([lay.content(mu) for mu in tf.unstack(means)],
                               [lay.content(lv) for lv in tf.unstack(logvars)])
        reg = self.beta_content * js   # authors: beta_content weighs the JS in both variants
        terms = {"recon": -tf.reduce_mean(rec), "js": tf.reduce_mean(js)}
        if self.uses_style:
            kl_s = tf.reduce_sum(latent_lib.gaussian_kl_standard(lay.style(means),
                                                                 lay.style(logvars)), axis=0)
            reg = reg + self.beta_style * kl_s
            terms["kl_style"] = tf.reduce_mean(kl_s)
        return self.reduce_batch(-rec + self.kl_weight() * reg), terms
