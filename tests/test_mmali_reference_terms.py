"""Every mmALI loss term of the fused implementation (features computed once, rows batched
through shared heads) against a plain term-by-term evaluation of 6b5d/mmali models/mmali/factor2.py (D and G steps) with the
same fixed draws: each critic is called on its own (x, z) inputs, each term written out.

Spectral norm is off here: the fused path runs fewer power iterations by design (tested against
the authors' code in tests/golden/); with it off both evaluations use identical weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conftest import HAND, PRINT
from mmali_tf import models
from mmali_tf.data.specs import ModalitySpec
from mmali_tf.models.draws import ReplayDraws

ROT = ModalitySpec("rot", (28, 28, 1), "image", "mnist_mlp")
FLIP = ModalitySpec("flip", (28, 28, 1), "image", "mnist_mlp")
N, D, S = 4, 8, 3
CONFIG = dict(latent_dim=D, style_dim=S, lambda_unimodal=0.5, lambda_x_rec=0.3,
              lambda_s_rec=0.2, lambda_c_rec=0.4, spectral_norm=False, seed=1)


def ce(logits, y):
    return -tf.reduce_mean(tf.nn.log_softmax(logits)[:, y])


def ns(logits, y):
    k = logits.shape[-1]
    return tf.add_n([ce(logits, i) for i in range(k) if i != y]) / (k - 1)


def mse(a, b):
    return tf.reduce_mean((a - b) ** 2)


class Plain:
    """The equations, one critic call per term."""

    def __init__(self, model, draws):
        self.m, self.d = model, draws
        self.mods = model.modalities
        self.w = 2.0 / (len(self.mods) + 1)

    def enc(self, m, x, name):
        raw = self.m.encoders[m](x, training=True)
        return raw[:, :D] + tf.exp(0.5 * raw[:, D:]) * self.d[name]

    def dec(self, m, z):
        return self.m.decoders[m](z, training=True)

    @staticmethod
    def cs(style_src, content_src):
        return tf.concat([style_src[:, :S], content_src[:, S:]], -1)

    def cross(self, k, j):
        return 2 + (j if j < k else j - 1)

    def critic(self, xa, xb):
        mods, d, t = self.mods, self.d, {}
        for k, m in enumerate(mods):
            za, ea = d[f"z_a/{m}"], self.enc(m, xa[m], f"eps_a/{m}")
            A, B = self.m.critics_a[m], self.m.critics_b[m]
            t[f"d_{m}_c0"] = ce(A([xa[m], ea]), 0)
            t[f"d_{m}_c1"] = ce(A([self.dec(m, za), za]), 1)
            p = d[f"perm_a/{m}"]
            z_fake = tf.concat([tf.gather(ea, p)[:, :S], d[f"c_a/{m}"]], -1)
            t[f"d_{m}_b"] = tf.reduce_mean(tf.nn.softplus(-B([xa[m], ea]))) + \
                tf.reduce_mean(tf.nn.softplus(B([tf.gather(xa[m], p), z_fake])))
        eb = {m: self.enc(m, xb[m], f"eps_b/{m}") for m in mods}
        for k, m in enumerate(mods):
            for j, o in enumerate(mods):
                if j != k:
                    t[f"d_{m}_cross_{o}"] = ce(self.m.critics_a[m]([xb[m], self.cs(eb[m], eb[o])]),
                                               self.cross(k, j))
        J = self.m.joint_critic
        fake = [tf.gather(xb[m], d[f"perm_b/{m}"]) for m in mods]
        t["d_joint"] = tf.reduce_mean(tf.nn.softplus(-J([xb[m] for m in mods]))) + \
            tf.reduce_mean(tf.nn.softplus(J(fake)))
        return t

    def generator(self, xc, xd):
        mods, d, t, lam = self.mods, self.d, {}, self.m.lambda_u
        for m in mods:
            z = d[f"z_c/{m}"]
            e, g = self.enc(m, xc[m], f"eps_c/{m}"), self.dec(m, z)
            A = self.m.critics_a[m]
            t[f"g_{m}_c0"] = lam * self.w * ns(A([xc[m], e]), 0)
            t[f"g_{m}_c1"] = lam * self.w * ns(A([g, z]), 1)
            t[f"g_{m}_x_rec"] = CONFIG["lambda_x_rec"] * mse(self.dec(m, e), xc[m])
            z_re = self.enc(m, g, f"eps_rec/{m}")
            t[f"g_{m}_c_rec"] = CONFIG["lambda_c_rec"] * mse(z_re[:, S:], z[:, S:])
            t[f"g_{m}_s_rec"] = CONFIG["lambda_s_rec"] * mse(z_re[:, :S], z[:, :S])
        z = {m: tf.concat([d[f"z_d/style/{m}"], d["z_d/content"]], -1) for m in mods}
        e = {m: self.enc(m, xd[m], f"eps_d/{m}") for m in mods}
        x_gen = {m: self.dec(m, z[m]) for m in mods}

        def lam_logits(xs, zs):
            s = self.m.joint_critic([xs[m] for m in mods])
            bs = []
            for m in mods:
                a = self.m.critics_a[m]([xs[m], zs[m]])
                b = self.m.critics_b[m]([xs[m], zs[m]])
                s = s + a[:, :1] - a[:, 1:2] - b
                bs.append(b)
            return tf.concat(bs + [-s], -1)
        for i, src in enumerate(mods):
            zq = {m: self.cs(e[m], e[src]) for m in mods}
            t[f"g_joint_q_{src}"] = self.w * ns(lam_logits(xd, zq), i)
        t["g_joint_p"] = self.w * ns(lam_logits(x_gen, z), len(mods))
        for k, m in enumerate(mods):
            for j, o in enumerate(mods):
                if j != k:
                    t[f"g_{m}_cross_{o}"] = lam * self.w * ns(
                        self.m.critics_a[m]([xd[m], self.cs(e[m], e[o])]), self.cross(k, j))
        return t


def draws(mods, rng):
    out = {}
    for m in mods:
        for name in ("z_a", "eps_a", "eps_b", "z_c", "eps_c", "eps_rec", "eps_d"):
            out[f"{name}/{m}"] = rng.standard_normal((N, D)).astype(np.float32)
        out[f"c_a/{m}"] = rng.standard_normal((N, D - S)).astype(np.float32)
        out[f"z_d/style/{m}"] = rng.standard_normal((N, S)).astype(np.float32)
        for name in ("perm_a", "perm_b"):
            out[f"{name}/{m}"] = rng.permutation(N).astype(np.int32)
    out["z_d/content"] = rng.standard_normal((N, D - S)).astype(np.float32)
    return out


@pytest.mark.parametrize("specs", [(HAND, PRINT), (HAND, ROT, FLIP)], ids=["M2_conv", "M3_mlp"])
def test_fused_terms_equal_plain_terms(specs):
    model = models.build("mmali", specs, CONFIG)
    model.build_from_specs()
    rng = np.random.default_rng(0)
    fixed = draws(model.modalities, rng)
    batches = [{m: tf.constant(rng.random((N,) + s.shape, dtype=np.float32))
                for m, s in zip(model.modalities, model.specs)} for _ in range(4)]
    plain = Plain(model, {k: tf.constant(v) for k, v in fixed.items()})
    for name, fused_fn, plain_fn, pair in (
            ("critic", model.critic_losses, plain.critic, batches[:2]),
            ("generator", model.generator_losses, plain.generator, batches[2:])):
        model.draws = ReplayDraws(fixed)
        fused = fused_fn(*pair)
        want = plain_fn(*pair)
        assert sorted(fused) == sorted(want), f"{name} terms differ: {sorted(fused)} vs {sorted(want)}"
        for term in want:
            np.testing.assert_allclose(float(fused[term]), float(want[term]), rtol=1e-5,
                                       atol=1e-6, err_msg=f"{name} term {term}")


def test_joint_ablation_terms_equal_plain_terms():
    """mmali_joint (Chen & Zhu 2022, Table 1; 6b5d/mmali models/mmali/joint.py): one D(x_0..x_{M-1}, z) call per class, written out."""
    model = models.build("mmali_joint", (HAND, ROT, FLIP), CONFIG)
    model.build_from_specs()
    mods, rng = model.modalities, np.random.default_rng(1)
    fixed = {f"eps/{m}": rng.standard_normal((N, D)).astype(np.float32) for m in mods}
    fixed.update({f"z/style/{m}": rng.standard_normal((N, S)).astype(np.float32) for m in mods})
    fixed["z/content"] = rng.standard_normal((N, D - S)).astype(np.float32)
    x = {m: tf.constant(rng.random((N, 28, 28, 1), dtype=np.float32)) for m in mods}
    plain = Plain(model, {k: tf.constant(v) for k, v in fixed.items()})
    e = {m: plain.enc(m, x[m], f"eps/{m}") for m in mods}
    z = {m: tf.concat([fixed[f"z/style/{m}"], fixed["z/content"]], -1) for m in mods}
    x_gen = [plain.dec(m, z[m]) for m in mods]
    rows = [tf.concat([e[m][:, :S] for m in mods] + [e[src][:, S:]], -1) for src in mods]
    logits = [model.critic([x[m] for m in mods] + [r]) for r in rows]
    logits.append(model.critic(x_gen + [tf.concat([z[m][:, :S] for m in mods]
                                                  + [z[mods[0]][:, S:]], -1)]))
    names = [f"q_{m}" for m in mods] + ["p"]
    want = {f"d_{n}": ce(lg, i) for i, (n, lg) in enumerate(zip(names, logits))}
    want.update({f"g_{n}": plain.w * ns(lg, i) for i, (n, lg) in enumerate(zip(names, logits))})
    got = {}
    for fn in (model.critic_losses, model.generator_losses):
        model.draws = ReplayDraws(fixed)
        got.update(fn(x))
    assert sorted(got) == sorted(want)
    for term in want:
        np.testing.assert_allclose(float(got[term]), float(want[term]), rtol=1e-5, atol=1e-6,
                                   err_msg=f"term {term}")
