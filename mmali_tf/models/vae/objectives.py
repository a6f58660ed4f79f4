"""Pure objective functions of the multimodal VAE baselines (each function cites its paper and the authors' file).

Every function maps tensors to tensors (no networks, no variables) so it can be unit-tested
against hand-computed values. Conventions: `lw` are importance log-weights
`log w = log p(z) + sum_m lambda_m log p(x_m|z) - log q(z|.)`; K (importance samples) is the
axis named `axis`; all bounds are per datapoint (callers reduce over the batch).
"""

from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

from mmali_tf import latent as latent_lib


# ---------------------------------------------------------------------------- estimators
def log_mean_exp(x: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """LME(x) = log (1/K) sum_k exp(x_k) = LSE_k(x_k) - log K."""
    k = tf.cast(tf.shape(x)[axis], x.dtype)
    return tf.reduce_logsumexp(x, axis=axis) - tf.math.log(k)


def iwae(lw: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """IWAE_K lower bound log (1/K) sum_k w_k (ELBO when K = 1)."""
    return log_mean_exp(lw, axis)


def cubo2(lw: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """CUBO_2 (chi^2 upper bound, n = 2): 1/2 log (1/K) sum_k w_k^2 = 1/2 LME(2 lw)."""
    return 0.5 * log_mean_exp(2.0 * lw, axis)


def moe_iwae_looser(lw: tf.Tensor) -> tf.Tensor:
    """Stratified MoE-IWAE of MMVAE (paper Eq. 3, code `--looser`).

    lw: (M, K, B), lw[m, k] the log-weight of z_{m,k} ~ q_m with the mixture in the denominator.
    Returns (B,): (1/M) sum_m LME_k lw[m, k].
    """
    return tf.reduce_mean(log_mean_exp(lw, axis=1), axis=0)


def moe_iwae_tighter(lw: tf.Tensor) -> tf.Tensor:
    """MoE-IWAE over all M*K samples jointly: log (1/(MK)) sum_{m,k} w_{m,k}. lw: (M, K, B)."""
    flat = tf.reshape(lw, tf.concat([[-1], tf.shape(lw)[2:]], axis=0))
    return log_mean_exp(flat, axis=0)


# ---------------------------------------------------------------------------- DReG
def dreg_weights(lw: tf.Tensor, axis: int = 1, tighter: bool = False) -> tf.Tensor:
    """Normalised importance weights w~ (stop-gradient) of the DReG estimator.

    Looser (stratified): softmax over the K axis `axis` inside each stratum (lw: (M, K, B)).
    Tighter: softmax over the flattened (M*K) samples of each datapoint (axes 0 and 1).
    """
    lw = tf.stop_gradient(lw)
    if not tighter:
        return tf.nn.softmax(lw, axis=axis)
    shape = tf.shape(lw)
    flat = tf.reshape(lw, tf.concat([[-1], shape[2:]], axis=0))
    return tf.reshape(tf.nn.softmax(flat, axis=0), shape)


def dreg_surrogates(lw: tf.Tensor, tighter: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-datapoint DReG surrogate losses (to minimise) for lw (M, K, B) (Tucker et al. 2019; iffsid/mmvae src/objectives.py `m_dreg_looser`).

    `lw` must evaluate every q_m with stop-gradient parameters while z_{m,k} = g(eps; phi_m)
    stays differentiable. With S = M strata (looser) the estimator is
      decoder/prior params theta:  grad = (1/M) sum_{m,k} w~_{m,k} grad_theta lw_{m,k}
                                   = grad of  -(1/M) sum sg(w~) lw
      encoder params phi:          grad = (1/M) sum_{m,k} w~_{m,k}^2 (d lw/d z)(d z/d phi)
                                   = grad of  -(1/M) sum sg(w~^2) lw
    (tighter: one softmax over all M*K samples and 1 instead of 1/M). Returns the two (B,)
    surrogates (theta_loss, phi_loss); take theta gradients only from the first and phi
    gradients only from the second.
    """
    w = dreg_weights(lw, tighter=tighter)
    scale = 1.0 if tighter else 1.0 / float(lw.shape[0])
    theta = -scale * tf.reduce_sum(w * lw, axis=[0, 1])
    phi = -scale * tf.reduce_sum(tf.square(w) * lw, axis=[0, 1])
    return theta, phi


# ---------------------------------------------------------------------------- densities
def moe_log_prob(log_probs: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """Uniform mixture density: log (1/M) sum_m q_m(z) from log q_m(z) stacked on `axis`."""
    return log_mean_exp(log_probs, axis)


def masked_product_of_experts(means: tf.Tensor, logvars: tf.Tensor, mask: tf.Tensor,
                              prior_expert: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """PoE of the experts selected by `mask`, for many subsets at once.

    means, logvars: (M, B, D) expert parameters; mask: (T, M) 0/1 rows (subsets).
    Returns (T, B, D) mean and logvar of PoE({prior} u {m : mask[t, m] = 1}); an excluded
    expert gets a variance of exp(1e9) so its precision weight is exactly 0 (reuses
    `latent.product_of_experts`).
    """
    mask = tf.cast(mask, means.dtype)[:, :, None, None]           # (T, M, 1, 1)
    lv = logvars[None] + (1.0 - mask) * 1e9                         # (T, M, B, D)
    mu = tf.broadcast_to(means[None], tf.shape(lv))
    m = int(means.shape[0])
    return latent_lib.product_of_experts([mu[:, i] for i in range(m)],
                                         [lv[:, i] for i in range(m)], prior_expert)


def subset_products(means: tf.Tensor, logvars: tf.Tensor, mask: tf.Tensor,
                    prior_rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """PoE of each masked subset, with a N(0, I) expert only in the rows flagged by `prior_rows`.

    means, logvars: (M, B, D); mask: (T, M) 0/1; prior_rows: (T,) 0/1. Returns (T, B, D).
    The prior expert is one more masked expert (mean 0, logvar 0), so this is exactly
    `masked_product_of_experts` over M + 1 experts (MoPoE: the authors' code adds the prior
    expert to the full set's product only).
    """
    mask = tf.cast(mask, means.dtype)
    prior = tf.cast(prior_rows, means.dtype)[:, None]
    means = tf.concat([means, tf.zeros_like(means[:1])], axis=0)
    logvars = tf.concat([logvars, tf.zeros_like(logvars[:1])], axis=0)
    return masked_product_of_experts(means, logvars, tf.concat([mask, prior], axis=1),
                                     prior_expert=False)


def component_selection(batch_size: tf.Tensor, num_components: int) -> tf.Tensor:
    """(num_components, B) one-hot mixture component of each datapoint, uniform weights:
    contiguous chunks of floor(B / C) rows, the last component taking the rest (the
    authors' `mixture_component_selection` of mmJSD / MoPoE; the pipeline shuffles). With
    B < C every chunk is empty and the last component takes the whole batch, as theirs does."""
    chunk = batch_size // num_components
    idx = tf.where(chunk > 0, tf.minimum(tf.range(batch_size) // tf.maximum(chunk, 1),
                                         num_components - 1), num_components - 1)
    return tf.transpose(tf.one_hot(idx, num_components))


# ---------------------------------------------------------------------------- KLs
def gaussian_kl(mean_q: tf.Tensor, logvar_q: tf.Tensor, mean_p: tf.Tensor,
                logvar_p: tf.Tensor) -> tf.Tensor:
    """KL(N(mq, e^lvq) || N(mp, e^lvp)) summed over the last axis:
    1/2 sum [lvp - lvq + (e^lvq + (mq - mp)^2) / e^lvp - 1]."""
    return 0.5 * tf.reduce_sum(
        logvar_p - logvar_q + (tf.exp(logvar_q) + tf.square(mean_q - mean_p)) * tf.exp(-logvar_p)
        - 1.0, axis=-1)


def laplace_kl(loc_q: tf.Tensor, scale_q: tf.Tensor, loc_p: tf.Tensor,
               scale_p: tf.Tensor) -> tf.Tensor:
    """KL(Laplace(mq, bq) || Laplace(mp, bp)) summed over the last axis:
    sum [log(bp/bq) + |mq - mp|/bp + (bq/bp) exp(-|mq - mp|/bq) - 1]."""
    d = tf.abs(loc_q - loc_p)
    return tf.reduce_sum(tf.math.log(scale_p) - tf.math.log(scale_q) + d / scale_p
                         + scale_q / scale_p * tf.exp(-d / scale_q) - 1.0, axis=-1)


# ---------------------------------------------------------------------------- mmJSD
def geometric_dynamic_prior(means: Sequence[tf.Tensor], logvars: Sequence[tf.Tensor],
                            weights: Sequence[float] | None = None
                            ) -> tuple[tf.Tensor, tf.Tensor]:
    """Weighted geometric mean of the Gaussians N(0, I) (index 0) and q_1..q_M (mmJSD Def. 3).

    log s_f^2 = -LSE_j(log pi_j - logvar_j);  mu_f = sum_j softmax_j(log pi_j - logvar_j) mu_j,
    with pi uniform (1/(M+1)) unless `weights` (M+1 values, prior first) is given.
    """
    means = [tf.zeros_like(means[0])] + list(means)
    logvars = [tf.zeros_like(logvars[0])] + list(logvars)
    n = len(means)
    weights = [1.0 / n] * n if weights is None else list(weights)
    if len(weights) != n or abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"geometric_dynamic_prior needs {n} weights summing to 1, got {weights}")
    logits = tf.stack([math.log(w) - lv for w, lv in zip(weights, logvars)], axis=0)
    mean = tf.reduce_sum(tf.nn.softmax(logits, axis=0) * tf.stack(means, axis=0), axis=0)
    return mean, -tf.reduce_logsumexp(logits, axis=0)


def js_divergence(means: Sequence[tf.Tensor], logvars: Sequence[tf.Tensor],
                  weights: Sequence[float] | None = None) -> tf.Tensor:
    """Multimodal JS divergence with the geometric-mean dynamic prior (mmJSD Eq. 7):
    JS = sum_{j=0}^{M} pi_j KL(q_j || p_f), q_0 = N(0, I). Returns (B,)."""
    mean_f, logvar_f = geometric_dynamic_prior(means, logvars, weights)
    all_means = [tf.zeros_like(means[0])] + list(means)
    all_logvars = [tf.zeros_like(logvars[0])] + list(logvars)
    n = len(all_means)
    weights = [1.0 / n] * n if weights is None else list(weights)
    return tf.add_n([w * gaussian_kl(m, lv, mean_f, logvar_f)
                     for w, m, lv in zip(weights, all_means, all_logvars)])


# ---------------------------------------------------------------------------- MMVAE ELBO
def moe_elbo(log_lik: tf.Tensor, log_q: tf.Tensor, kl: tf.Tensor) -> tf.Tensor:
    """Linear-time importance-sampled MoE ELBO (MMVAE App. B, code `m_elbo`). Returns (B,).

    log_lik: (M, K, B) lambda-weighted log p(x_d | z_d), z_d ~ q_d (reparameterised).
    log_q:   (M_r, M_d, K, B) log q_r(z_d | x_r) evaluated at stop-gradient samples z_d.
    kl:      (M, B) KL(q_r || p(z)).
      ELBO = (1/M) [ sum_{r,d} v_{r,d} log p(x_d | z_d) - sum_r KL_r ],  mean over K,
      v_{r,d} = exp(log q_r(z_d) - sg(log q_d(z_d))) for r != d and v_{d,d} = 1
    (v has value q_r/q_d and carries the score-function gradient of q_r).
    """
    m = int(log_q.shape[0])
    diag = tf.linalg.diag_part(tf.transpose(log_q, [2, 3, 0, 1]))   # (K, B, M)
    diag = tf.transpose(diag, [2, 0, 1])                             # (M_d, K, B)
    ratio = tf.exp(log_q - tf.stop_gradient(diag)[None])
    eye = tf.eye(m, dtype=log_q.dtype)[:, :, None, None]
    v = eye + (1.0 - eye) * ratio
    rec = tf.reduce_sum(v * log_lik[None], axis=[0, 1])              # (K, B)
    return (tf.reduce_mean(rec, axis=0) - tf.reduce_sum(kl, axis=0)) / float(m)


def kl_anneal(step: tf.Tensor, anneal_steps: int, full_from: int = 0) -> tf.Tensor:
    """Linear warm-up factor min(1, (step + 1) / A) for 0-based `step` (1 when A = 0); with
    `full_from` > 0 the factor is 1 from that step on (ending the warm-up early)."""
    if anneal_steps <= 0:
        return tf.constant(1.0)
    step = tf.cast(step, tf.float32)
    factor = tf.minimum(1.0, (step + 1.0) / float(anneal_steps))
    if full_from > 0:
        factor = tf.where(step >= float(full_from), 1.0, factor)
    return factor


def kl_anneal_epochwise(step: tf.Tensor, anneal_steps: int, epoch_steps: int,
                        beta: float) -> tf.Tensor:
    """KL weight of thomassutter/mmjsd's `run_epoch` (training/training_svhnmnist.py): in
    epoch e = step // epoch_steps of A = anneal_steps / epoch_steps warm-up epochs it is
    1e-4 + e * beta / A, from epoch A on beta (0-based `step`; beta itself when A = 0)."""
    if anneal_steps <= 0:
        return tf.constant(beta, tf.float32)
    if epoch_steps <= 0 or anneal_steps % epoch_steps:
        raise ValueError(f"kl_anneal_steps={anneal_steps} must be a positive multiple of the "
                         f"steps per epoch {epoch_steps}")
    epochs = anneal_steps // epoch_steps
    epoch = tf.cast(tf.math.floordiv(tf.cast(step, tf.int64), epoch_steps), tf.float32)
    return tf.where(epoch < float(epochs), 1e-4 + epoch * (beta / epochs), beta)
