"""mmALI with factorised discriminators (Chen & Zhu 2022, sec. 3; 6b5d/mmali models/mmali/factor2.py), for M >= 2 modalities.

`AdversarialModel` holds what every mmALI variant shares: Gaussian (or `--deterministic`)
encoders and decoders, the two Adam optimizers (`d_optimizer` for critics, `g_optimizer` for
encoders+decoders), loss trackers, and a `train_step` that runs `dis_iter` critic updates and
`gen_iter` generator updates followed by the EMA update. `MMALI` adds the factorised critics
A_k ((M+1)-way), B_k (binary) and J (joint data critic) and the losses of 6b5d/mmali models/mmali/factor2.py (`forward_jsd2`).

Deviation from the reference, same math: the reference runs every critic once per (x, z) group,
so every call advances the spectral-norm power iteration. Here each critic's x-feature
sub-network runs once on the concatenation of all x it scores in a D-step (shuffled B_k fakes
and J negatives are permutations of those features) and, in a G-step, once on the real x and
once on the generated x, so no backward pass is built through real-data features; the cross
terms of the G-step reuse the q-side logits, which have identical inputs. Heads run once on
all (features, z) rows. So each SN layer does one or two power iterations per critic and
update instead of one per group. sigma converges to the same value; only the (tiny) transient
differs.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
import tensorflow as tf

from mmali_tf import latent as latent_lib
from mmali_tf import networks
from mmali_tf.models import mmali_losses as L
from mmali_tf.models.base import MultimodalModel
from mmali_tf.models.optimizers import attach_optimizers
from mmali_tf.models.settings import AdversarialSettings
from mmali_tf.registry import register_model

Batch = Mapping[str, tf.Tensor]


def paired_features(net: keras.Model, x: tf.Tensor, x_other: tf.Tensor,
                    separate: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """`net` (a critic feature sub-network) on two equally sized batches.

    `separate=False`: one pass on the concatenation (D-step: both need parameter gradients).
    `separate=True`: two passes (G-step, `x` real, `x_other` generated): the real pass does not
    depend on the generator, so the tape records nothing for it and no backward pass runs
    through real-data features.
    """
    if separate:
        return net(x, training=True), net(x_other, training=True)
    f, f_other = tf.split(net(tf.concat([x, x_other], 0), training=True), 2, axis=0)
    return f, f_other


class AdversarialModel(MultimodalModel):
    """Shared generator side, optimizers, trackers and update loop of the mmALI models.

    Subclasses define `build_critics()`, `loss_term_names()` (the tracker names, in order),
    `critic_losses(*batches)` and `generator_losses(*batches)` returning `{name: scalar}`, and
    `draws_per_update` (paired batches consumed by one critic or one generator update).
    """

    draws_per_update: int = 2
    shape_flags = ("deterministic", "spectral_norm")
    settings_class = AdversarialSettings
    settings: AdversarialSettings

    def build_networks(self) -> None:
        settings = self.settings
        self.deterministic = settings.deterministic
        if self.deterministic and settings.joint_rec:
            raise ValueError("--joint_rec needs stochastic encoders; it cannot be used with "
                             "--deterministic")
        self.dis_iter, self.gen_iter = settings.dis_iter, settings.gen_iter
        if self.dis_iter < 1 or self.gen_iter < 1:
            raise ValueError(f"dis_iter and gen_iter must be >= 1, got {self.dis_iter}, "
                             f"{self.gen_iter}")
        self.draws_per_step = self.draws_per_update * (self.dis_iter + self.gen_iter)
        self.unpaired_pool = settings.unpaired == "pool"
        self.lambda_x, self.lambda_s = settings.lambda_x_rec, settings.lambda_s_rec
        self.lambda_c, self.joint_rec = settings.lambda_c_rec, settings.joint_rec
        init = settings.init
        d = self.layout.latent_dim
        out_dim = d if self.deterministic else 2 * d
        for s in self.specs:
            self.encoders[s.name] = networks.build_encoder(s, out_dim, init=init)
            self.decoders[s.name] = networks.build_decoder(s, d, init=init)
        self.build_critics()
        self.trackers = {n: keras.metrics.Mean(name=n)
                         for n in ("d_loss", "g_loss", *self.loss_term_names())}

    def build_critics(self) -> None:
        raise TypeError(f"{type(self).__name__} does not define build_critics()")

    def loss_term_names(self) -> list[str]:
        raise TypeError(f"{type(self).__name__} does not define loss_term_names()")

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    # ----------------------------------------------------------------- optimizers
    def compile(self, d_optimizer: keras.optimizers.Optimizer | None = None,
                g_optimizer: keras.optimizers.Optimizer | None = None,
                jit_compile: bool = False, **kwargs: Any) -> None:
        """Create (or take) and build both Adams on their fixed variable lists."""
        attach_optimizers(self, self.settings,
                          {"d_optimizer": lambda: self.critic_variables,
                           "g_optimizer": lambda: self.generator_variables},
                          {"d_optimizer": d_optimizer, "g_optimizer": g_optimizer})
        self._jit_requested = bool(jit_compile)
        super().compile(optimizer=None, jit_compile=bool(jit_compile), **kwargs)

    # ----------------------------------------------------------------- helpers
    def encode_sample(self, modality: str, x: tf.Tensor, draw: str):
        """(sample, mean, logvar) of q(z|x) with the training-mode encoder; noise `draw`."""
        mean, logvar = self.params_from_encoder_output(
            self.encoders[modality](x, training=True))
        return self.sample_posterior(mean, logvar, name=draw), mean, logvar

    def decode_train(self, modality: str, z: tf.Tensor) -> tf.Tensor:
        return self.decoders[modality](z, training=True)

    def prior_full(self, n: int, draw: str) -> dict[str, tf.Tensor]:
        """Independent full prior latents per modality (batches A and C)."""
        return {m: self.sample_noise([n, self.layout.latent_dim], name=f"{draw}/{m}")
                for m in self.modalities}

    def unimodal_x(self, batch: Batch, modality: str) -> tf.Tensor:
        """x of a unimodal critic term: the unpaired pool with `--unpaired=pool`."""
        return batch[f"{modality}_unpaired"] if self.unpaired_pool else batch[modality]

    def _chunks(self, data: Batch) -> list[dict[str, tf.Tensor]]:
        keys = [k for k in data if k != "label"]
        parts = {k: tf.split(data[k], self.draws_per_step, axis=0) for k in keys}
        return [{k: parts[k][i] for k in keys} for i in range(self.draws_per_step)]

    def loss_gradients(self, loss_fn, batches, variables) -> tuple[dict[str, tf.Tensor], list]:
        """({term: value, "total": sum}, gradients of the total w.r.t. `variables`)."""
        # Record only ops that depend on the variables being trained: the other side's
        # networks run forward-only (no backward pass is built for them).
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in variables])
            terms = loss_fn(*batches)
            total = tf.add_n(list(terms.values()))
            scaled = self.distribute_scale(total)
        return {**terms, "total": total}, tape.gradient(scaled, variables)

    def _update(self, loss_fn, batches, variables, optimizer) -> dict[str, tf.Tensor]:
        terms, grads = self.loss_gradients(loss_fn, batches, variables)
        optimizer.apply(grads, variables)
        return terms

    # ----------------------------------------------------------------- reconstructions
    def unimodal_rec_names(self, m: str) -> list[str]:
        """Tracker names of modality `m`'s reconstruction terms, in `unimodal_rec_terms` order."""
        names = []
        if self.lambda_x > 0 and not self.joint_rec:
            names.append(f"g_{m}_x_rec")
        if self.lambda_c > 0 and not self.joint_rec:
            names.append(f"g_{m}_c_rec")
        if self.lambda_s > 0 and self.layout.style_dim > 0:
            names.append(f"g_{m}_s_rec")
        return names

    def joint_rec_names(self) -> list[str]:
        """Tracker names of the `--joint_rec` terms, in `joint_rec_terms` order."""
        names = ["g_joint_c_rec"] if self.joint_rec and self.lambda_c > 0 else []
        if self.joint_rec and self.lambda_x > 0:
            names += [f"g_{m}_joint_x_rec" for m in self.modalities]
        return names

    def unimodal_rec_terms(self, m: str, spec: Any, x: tf.Tensor, z_enc: tf.Tensor,
                           z_m: tf.Tensor, x_gen: tf.Tensor) -> dict[str, tf.Tensor]:
        """Modality `m`'s reconstruction terms (mmALI code, `lambda_x/c/s_rec`): x from its own
        code sample `z_enc`, and the content/style of the prior code `z_m` re-encoded from
        `x_gen` = G(z_m)."""
        lay, terms = self.layout, {}
        if self.lambda_x > 0 and not self.joint_rec:
            terms[f"g_{m}_x_rec"] = spec.recon_weight * self.lambda_x * L.mse(
                self.decode_train(m, z_enc), x)
        want_c = self.lambda_c > 0 and not self.joint_rec
        want_s = self.lambda_s > 0 and lay.style_dim > 0
        if want_c or want_s:
            z_re = self.encode_sample(m, x_gen, f"eps_rec/{m}")[0]
            if want_c:
                terms[f"g_{m}_c_rec"] = self.lambda_c * L.mse(lay.content(z_re), lay.content(z_m))
            if want_s:
                terms[f"g_{m}_s_rec"] = self.lambda_s * L.mse(lay.style(z_re), lay.style(z_m))
        return terms

    def joint_rec_terms(self, batch: Batch, enc: Mapping[str, Any], z: Mapping[str, tf.Tensor],
                        x_gen: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The `--joint_rec` terms on one shared-content batch: the prior content re-encoded
        from the generated tuple, and each x decoded from its own style and the fused content
        (`enc[m]` = (sample, mean, logvar) of q(z|x_m), `z` the prior codes, `x_gen` G(z))."""
        mods, lay, terms = self.modalities, self.layout, {}
        if self.joint_rec and self.lambda_c > 0:
            params = [self.params_from_encoder_output(
                self.encoders[m](x_gen[m], training=True)) for m in mods]
            c_rec = lay.content(self._fused_sample(params, "eps_joint_c_rec"))
            terms["g_joint_c_rec"] = self.lambda_c * L.mse(c_rec, lay.content(z[mods[0]]))
        if self.joint_rec and self.lambda_x > 0:
            c_bar = lay.content(self._fused_sample([enc[m][1:] for m in mods],
                                                   "eps_joint_x_rec"))
            for m, spec in zip(mods, self.specs):
                x_rec = self.decode_train(m, lay.join(lay.style(enc[m][0]), c_bar))
                terms[f"g_{m}_joint_x_rec"] = spec.recon_weight * self.lambda_x * L.mse(
                    x_rec, batch[m])
        return terms

    def _fused_sample(self, params, draw: str) -> tf.Tensor:
        """One sample of the geometric-mean joint posterior over all d dimensions (Chen & Zhu 2022, sec. 3)."""
        mean, logvar = latent_lib.geometric_mean([p[0] for p in params], [p[1] for p in params])
        return self.sample_posterior(mean, logvar, name=draw)

    # ----------------------------------------------------------------- training
    def train_step(self, data: Batch) -> dict[str, tf.Tensor]:
        if isinstance(data, tuple):
            data = data[0]
        chunks = self._chunks(data)
        k = self.draws_per_update
        steps = [("d_loss", self.critic_losses, self.critic_variables, self.d_optimizer)] * \
            self.dis_iter + \
            [("g_loss", self.generator_losses, self.generator_variables, self.g_optimizer)] * \
            self.gen_iter
        for i, (total_name, fn, variables, opt) in enumerate(steps):
            terms = self._update(fn, chunks[i * k:(i + 1) * k], variables, opt)
            self.trackers[total_name].update_state(terms.pop("total"))
            for name, value in terms.items():
                self.trackers[name].update_state(value)
        if self.ema is not None:
            # 1-based iteration = generator updates so far / gen_iter (update_ema for gen_iter 1)
            self.ema.update(self.g_optimizer.iterations // self.gen_iter,
                            self.encoders, self.decoders)
        return self.step_logs(self.trackers)


@register_model("mmali", settings=AdversarialSettings)
class MMALI(AdversarialModel):
    """Factorised-discriminator mmALI (registry name "mmali")."""

    registry_name = "mmali"

    def build_critics(self) -> None:
        if len(self.specs) < 2:
            raise ValueError(f"mmali needs at least 2 modalities, got {len(self.specs)}")
        m_count, d = len(self.specs), self.layout.latent_dim
        sn = self.settings.spectral_norm
        self.critics_a = {s.name: networks.build_xz_critic(s, d, m_count + 1, spectral_norm=sn)
                          for s in self.specs}
        self.critics_b = {s.name: networks.build_xz_critic(s, d, 1, spectral_norm=sn)
                          for s in self.specs}
        self.joint_critic = networks.build_joint_critic(list(self.specs), spectral_norm=sn)
        self.w = 2.0 / (m_count + 1)
        self.lambda_u = self.settings.lambda_unimodal

    @property
    def critic_variables(self) -> list[keras.Variable]:
        out = []
        for nets in (self.critics_a, self.critics_b):
            for m in self.modalities:
                out += nets[m].trainable_variables
        return out + self.joint_critic.trainable_variables

    def _cross_pairs(self):
        mods = self.modalities
        return [(k, j) for k in range(len(mods)) for j in range(len(mods)) if j != k]

    def loss_term_names(self) -> list[str]:
        mods, names = self.modalities, []
        for m in mods:
            names += [f"d_{m}_c0", f"d_{m}_c1", f"d_{m}_b"]
        names.append("d_joint")
        names += [f"d_{mods[k]}_cross_{mods[j]}" for k, j in self._cross_pairs()]
        for m in mods:
            if self.lambda_u > 0:
                names += [f"g_{m}_c0", f"g_{m}_c1"]
            names += self.unimodal_rec_names(m)
        names += [f"g_joint_q_{m}" for m in mods] + ["g_joint_p"]
        if self.lambda_u > 0:
            names += [f"g_{mods[k]}_cross_{mods[j]}" for k, j in self._cross_pairs()]
        return names + self.joint_rec_names()

    # ----------------------------------------------------------------- critic pieces
    @staticmethod
    def _score(critic: keras.Model, feats: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        return critic.get_layer("head")([feats, z], training=True)

    @staticmethod
    def _features(critic: keras.Model, xs: list[tf.Tensor]) -> list[tf.Tensor]:
        """x-features of several x batches in one pass, split back per batch."""
        sizes = [x.shape[0] if x.shape[0] is not None else tf.shape(x)[0] for x in xs]
        feats = critic.get_layer("x_features")(tf.concat(xs, 0), training=True)
        return tf.split(feats, sizes, axis=0)

    def _joint_scores(self, xs_real: list[tf.Tensor], xs_other: list[tf.Tensor] | None,
                      perms: list[tf.Tensor] | None,
                      generated: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """J on the real tuple and on a second tuple (given x, or branch features permuted).

        `generated`: the second tuple comes from the decoders (G-step), so the two tuples run
        through each branch in separate passes (no backward pass through real-data features).
        """
        feats_real, feats_other = [], []
        for i, x in enumerate(xs_real):
            branch = self.joint_critic.get_layer(f"branch_{i}")
            if xs_other is None:
                f = branch(x, training=True)
                feats_real.append(f)
                feats_other.append(tf.gather(f, perms[i]))
            else:
                f_real, f_other = paired_features(branch, x, xs_other[i], separate=generated)
                feats_real.append(f_real)
                feats_other.append(f_other)
        logits = self.joint_critic.get_layer("combine")(
            [tf.concat([a, b], 0) for a, b in zip(feats_real, feats_other)], training=True)
        return tf.split(logits, 2, axis=0)

    # ----------------------------------------------- D-step (factor2.py, discriminator update)
    def critic_losses(self, batch_a: Batch, batch_b: Batch) -> dict[str, tf.Tensor]:
        mods, lay = self.modalities, self.layout
        n = tf.shape(batch_a[mods[0]])[0]
        x_a = {m: self.unimodal_x(batch_a, m) for m in mods}
        z_prior = self.prior_full(n, "z_a")
        z_enc_a = {m: tf.stop_gradient(self.encode_sample(m, x_a[m], f"eps_a/{m}")[0])
                   for m in mods}
        x_gen = {m: tf.stop_gradient(self.decode_train(m, z_prior[m])) for m in mods}
        z_enc_b = {m: tf.stop_gradient(self.encode_sample(m, batch_b[m], f"eps_b/{m}")[0])
                   for m in mods}
        terms = {}
        for k, m in enumerate(mods):
            critic_a = self.critics_a[m]
            feat_real, feat_gen, feat_b = self._features(critic_a,
                                                         [x_a[m], x_gen[m], batch_b[m]])
            others = [j for j in range(len(mods)) if j != k]
            z_cross = [lay.join(lay.style(z_enc_b[m]), lay.content(z_enc_b[mods[j]]))
                       for j in others]
            logits = self._score(
                critic_a, tf.concat([feat_real, feat_gen] + [feat_b] * len(others), 0),
                tf.concat([z_enc_a[m], z_prior[m]] + z_cross, 0))
            groups = tf.split(logits, 2 + len(others), axis=0)
            terms[f"d_{m}_c0"] = L.ce(groups[0], 0)
            terms[f"d_{m}_c1"] = L.ce(groups[1], 1)
            for group_logits, j in zip(groups[2:], others):
                terms[f"d_{m}_cross_{mods[j]}"] = L.ce(group_logits,
                                                       L.cross_class(k, j, len(mods)))
            critic_b = self.critics_b[m]
            feat = critic_b.get_layer("x_features")(x_a[m], training=True)
            perm = self.draws.permutation(f"perm_a/{m}", n)
            z_fake = lay.join(tf.gather(lay.style(z_enc_a[m]), perm),
                              self.sample_noise([n, lay.content_dim], name=f"c_a/{m}"))
            real, fake = tf.split(self._score(critic_b,
                                              tf.concat([feat, tf.gather(feat, perm)], 0),
                                              tf.concat([z_enc_a[m], z_fake], 0)), 2, axis=0)
            terms[f"d_{m}_b"] = L.bce_real(real) + L.bce_fake(fake)
        xb = [batch_b[m] for m in mods]
        if self.unpaired_pool:
            real, fake = self._joint_scores(xb, [batch_b[f"{m}_unpaired"] for m in mods], None)
        else:
            real, fake = self._joint_scores(xb, None, [self.draws.permutation(f"perm_b/{m}", n)
                                                       for m in mods])
        terms["d_joint"] = L.bce_real(real) + L.bce_fake(fake)
        return terms

    # --------------------------------------------------- G-step (factor2.py, generator update)
    def generator_losses(self, batch_c: Batch, batch_d: Batch) -> dict[str, tf.Tensor]:
        terms = self._unimodal_generator_terms(batch_c)
        terms.update(self._joint_generator_terms(batch_d))
        return terms

    def _unimodal_generator_terms(self, batch: Batch) -> dict[str, tf.Tensor]:
        terms: dict[str, tf.Tensor] = {}
        n = tf.shape(batch[self.modalities[0]])[0]
        z = self.prior_full(n, "z_c")
        for m, spec in zip(self.modalities, self.specs):
            x = self.unimodal_x(batch, m)
            z_enc = self.encode_sample(m, x, f"eps_c/{m}")[0]
            x_gen = self.decode_train(m, z[m])
            if self.lambda_u > 0:
                critic = self.critics_a[m]
                feat_real, feat_gen = paired_features(critic.get_layer("x_features"), x, x_gen,
                                                      separate=True)
                logits_enc, logits_gen = tf.split(
                    self._score(critic, tf.concat([feat_real, feat_gen], 0),
                                tf.concat([z_enc, z[m]], 0)), 2, axis=0)
                terms[f"g_{m}_c0"] = self.lambda_u * self.w * L.ns(logits_enc, 0)
                terms[f"g_{m}_c1"] = self.lambda_u * self.w * L.ns(logits_gen, 1)
            terms.update(self.unimodal_rec_terms(m, spec, x, z_enc, z[m], x_gen))
        return terms

    def _joint_generator_terms(self, batch: Batch) -> dict[str, tf.Tensor]:
        mods, lay, num_mods = self.modalities, self.layout, len(self.modalities)
        n = tf.shape(batch[mods[0]])[0]
        z = self.sample_prior(n, name="z_d")
        enc = {m: self.encode_sample(m, batch[m], f"eps_d/{m}") for m in mods}
        z_enc = {m: enc[m][0] for m in mods}
        x_gen = {m: self.decode_train(m, z[m]) for m in mods}
        a_q, b_q, a_p, b_p = {}, {}, [], []
        for m in mods:
            z_q = [lay.join(lay.style(z_enc[m]), lay.content(z_enc[src])) for src in mods]
            z_all = tf.concat(z_q + [z[m]], 0)
            for critic, q_out, p_out in ((self.critics_a[m], a_q, a_p),
                                       (self.critics_b[m], b_q, b_p)):
                feat_real, feat_gen = paired_features(critic.get_layer("x_features"), batch[m],
                                                      x_gen[m], separate=True)
                logits = tf.split(
                    self._score(critic, tf.concat([feat_real] * num_mods + [feat_gen], 0), z_all),
                    num_mods + 1, axis=0)
                q_out[m] = logits[:num_mods]
                p_out.append(logits[num_mods])
        j_real, j_gen = self._joint_scores([batch[m] for m in mods],
                                           [x_gen[m] for m in mods], None, generated=True)
        terms = {}
        for i, src in enumerate(mods):
            joint = L.joint_logits([a_q[m][i] for m in mods], [b_q[m][i] for m in mods], j_real)
            terms[f"g_joint_q_{src}"] = self.w * L.ns(joint, i)
        terms["g_joint_p"] = self.w * L.ns(L.joint_logits(a_p, b_p, j_gen), num_mods)
        if self.lambda_u > 0:
            for k, j in self._cross_pairs():
                terms[f"g_{mods[k]}_cross_{mods[j]}"] = self.lambda_u * self.w * L.ns(
                    a_q[mods[k]][j], L.cross_class(k, j, num_mods))
        terms.update(self.joint_rec_terms(batch, enc, z, x_gen))
        return terms
