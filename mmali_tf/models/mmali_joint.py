"""Monolithic-discriminator mmALI: the Table 1 ablation of Chen & Zhu 2022 (6b5d/mmali models/mmali/joint.py).

One critic D(x_0..x_{M-1}, z) with M+1 classes, z = [s_0, ..., s_{M-1}, c] (M*d_s + d_c):
class m < M pairs the real tuple with every modality's own encoded style and the content
encoded from modality m; class M pairs the decoded tuple G_k([s_k | c]) with its prior code.
D-loss = sum_l CE(D(input_l), l); G-loss = sum_l (2/(M+1)) NS(D(input_l), l). There are no
unimodal, joint-data or reconstruction terms (the lambda flags are ignored).

Batch schedule (our choice, matching what the reference effectively trains on): each critic
update and each generator update uses ONE fresh shared-content paired batch, so
draws_per_step = dis_iter + gen_iter. The released script also draws an independent-prior batch
whose losses are overwritten before use (a quirk of 6b5d/mmali train_mmali_multimnist_joint.py); we do not burn it.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mmali_tf import networks
from mmali_tf.models import mmali_losses as L
from mmali_tf.models.mmali import AdversarialModel, Batch, paired_features
from mmali_tf.models.settings import AdversarialSettings
from mmali_tf.registry import register_model


@register_model("mmali_joint", settings=AdversarialSettings)
class MMALIJoint(AdversarialModel):
    """Joint-discriminator ablation (registry name "mmali_joint")."""

    registry_name = "mmali_joint"
    draws_per_update = 1

    def build_critics(self) -> None:
        if len(self.specs) < 2:
            raise ValueError(f"mmali_joint needs at least 2 modalities, got {len(self.specs)}")
        m_count, lay = len(self.specs), self.layout
        self.z_dim = m_count * lay.style_dim + lay.content_dim
        self.critic = networks.build_joint_xz_critic(
            list(self.specs), self.z_dim, m_count + 1,
            spectral_norm=self.settings.spectral_norm)
        self.w = 2.0 / (m_count + 1)

    @property
    def critic_variables(self) -> list[keras.Variable]:
        return list(self.critic.trainable_variables)

    def loss_term_names(self) -> list[str]:
        return ([f"d_q_{m}" for m in self.modalities] + ["d_p"]
                + [f"g_q_{m}" for m in self.modalities] + ["g_p"])

    def _class_logits(self, batch: Batch, stop: bool) -> list[tf.Tensor]:
        """Logits of D on the M+1 class inputs of one shared-content batch, in class order."""
        mods, lay = self.modalities, self.layout
        n = tf.shape(batch[mods[0]])[0]
        z = self.sample_prior(n, name="z")
        z_enc = {m: self.encode_sample(m, batch[m], f"eps/{m}")[0] for m in mods}
        x_gen = {m: self.decode_train(m, z[m]) for m in mods}
        if stop:
            z_enc = {m: tf.stop_gradient(v) for m, v in z_enc.items()}
            x_gen = {m: tf.stop_gradient(v) for m, v in x_gen.items()}
        styles_q = [lay.style(z_enc[m]) for m in mods]
        z_rows = [tf.concat(styles_q + [lay.content(z_enc[src])], -1) for src in mods]
        z_rows.append(tf.concat([lay.style(z[m]) for m in mods] + [lay.content(z[mods[0]])], -1))
        feats = []  # each branch runs on real and generated x once; real features are tiled
        for i, m in enumerate(mods):
            f_real, f_gen = paired_features(self.critic.get_layer(f"branch_{i}"), batch[m],
                                            x_gen[m], separate=not stop)
            feats.append(tf.concat([f_real] * len(mods) + [f_gen], 0))
        logits = self.critic.get_layer("head")(feats + [tf.concat(z_rows, 0)], training=True)
        return tf.split(logits, len(mods) + 1, axis=0)

    def _names(self, prefix: str) -> list[str]:
        return [f"{prefix}_q_{m}" for m in self.modalities] + [f"{prefix}_p"]

    def critic_losses(self, batch: Batch) -> dict[str, tf.Tensor]:
        logits = self._class_logits(batch, stop=True)
        return {name: L.ce(lg, i) for i, (name, lg) in enumerate(zip(self._names("d"), logits))}

    def generator_losses(self, batch: Batch) -> dict[str, tf.Tensor]:
        logits = self._class_logits(batch, stop=False)
        return {name: self.w * L.ns(lg, i)
                for i, (name, lg) in enumerate(zip(self._names("g"), logits))}
