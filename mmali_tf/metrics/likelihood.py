"""Importance-sampled (IWAE) test log-likelihoods of likelihood-based models (Shi et al. 2019, sec. 4; iffsid/mmvae src/report/calculate_likelihoods.py).

In the papers' notation `log p(x_T | x_G)` (metrics key "T|G") is the IWAE estimate of the
marginal log p(x_T) with the proposal built from x_G (Shi et al.'s tables):
`log p(x_T | x_G) ~= LME_k [log p(c_k) + sum_t log p(x_t | s_t,k, c_k) - log q(c_k | x_G)
+ sum_{t in T & G} (log p(s_t,k) - log q(s_t,k | x_t))]` with K proposal samples:
content from q(c | x_G) (the unimodal posterior, the model's fused posterior, or -- for
mixture models -- the MoE mixture with all |G| K samples, the "tighter" estimator), the style
of a target from its own encoder when it is observed, else from the prior (its weight is 1).
Likelihoods are the specs' families **without** the lambda rescaling; values are nats per item.

A model that defines `log_likelihood_estimate(batch, targets, given, num_samples, seed, ema)`
(e.g. JMVAE's joint encoder, which the shared interface cannot reach) is used instead.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from mmali_tf import latent as latent_lib
from mmali_tf.data.specs import CATEGORICAL, ModalitySpec, PairedDataset
from mmali_tf.metrics.common import (InferenceView, paired_batches, progress, seed_stream,
                                     tick)

LOG_2PI = math.log(2.0 * math.pi)
SAMPLE_BUDGET = 12000  # items x samples decoded per step


def latent_log_density(z: tf.Tensor, mean: tf.Tensor, logvar: tf.Tensor,
                       family: str = "normal") -> tf.Tensor:
    """log density of a diagonal Normal/Laplace with variance exp(logvar), summed over the last
    axis."""
    if family == "laplace":
        b = latent_lib.scale_from_logvar(logvar, "laplace")
        return tf.reduce_sum(-tf.math.log(2.0 * b) - tf.abs(z - mean) / b, axis=-1)
    if family != "normal":
        raise ValueError(f"unknown posterior family {family!r}; expected one of "
                         f"{latent_lib.FAMILIES}")
    return tf.reduce_sum(-0.5 * (LOG_2PI + logvar + tf.square(z - mean) * tf.exp(-logvar)),
                         axis=-1)


def data_log_likelihood(spec: ModalitySpec, x: tf.Tensor, loc: tf.Tensor) -> tf.Tensor:
    """Unscaled log p(x | decoder mean `loc`) of `spec.likelihood`, summed over event axes."""
    x = tf.cast(x, loc.dtype)
    s = spec.likelihood_scale
    if spec.likelihood == "laplace":
        ll = -math.log(2.0 * s) - tf.abs(x - loc) / s
    elif spec.likelihood == "normal":
        ll = -0.5 * (LOG_2PI + 2.0 * math.log(s)) - 0.5 * tf.square((x - loc) / s)
    elif spec.likelihood in CATEGORICAL:      # loc: class probabilities (decoder output)
        ll = x * tf.math.log(tf.clip_by_value(loc, 1e-6, 1.0))
    else:                                       # bernoulli, bernoulli_logits: loc = sigmoid
        p = tf.clip_by_value(loc, 1e-6, 1.0 - 1e-6)
        ll = x * tf.math.log(p) + (1.0 - x) * tf.math.log(1.0 - p)
    return tf.reduce_sum(ll, axis=list(range(len(ll.shape) - len(spec.shape), len(ll.shape))))


def _tile(t: tf.Tensor, k: int) -> tf.Tensor:
    return tf.tile(t[None], [k] + [1] * len(t.shape))


def iwae_log_likelihood(view: InferenceView, batch: Mapping[str, Any], targets: Sequence[str],
                        given: Sequence[str], num_samples: int, seed: Any,
                        mixture: bool = False) -> np.ndarray:
    """IWAE estimate of log p(x_targets | x_given) per item, shape (B,), in nats.

    `mixture`: with several given modalities, use the MoE mixture proposal (tighter
    estimator over all |given| * K samples) instead of the model's fused posterior.
    """
    model = view.model
    if hasattr(model, "log_likelihood_estimate"):
        return np.asarray(model.log_likelihood_estimate(
            batch, targets=tuple(targets), given=tuple(given), num_samples=num_samples,
            seed=seed, ema=view.ema))
    if not view.stochastic:
        raise ValueError("IWAE log-likelihoods need a stochastic encoder")
    lay, fam, k = view.layout, view.posterior_family, int(num_samples)
    params = {g: view.encode(g, batch[g]) for g in given}
    if len(given) == 1:
        params = {g: view.unimodal(g, p) for g, p in params.items()}
        comps = [(lay.content(params[given[0]][0]), lay.content(params[given[0]][1]))]
    elif mixture:
        comps = [(lay.content(mu), lay.content(lv)) for mu, lv in params.values()]
    else:
        comps = [view.fuse(params)]
    prior_mean, prior_logvar = view.prior_params()
    c = tf.concat([view.sample(_tile(mu, k), _tile(lv, k), seed) for mu, lv in comps], axis=0)
    log_q = tf.reduce_logsumexp(tf.stack([latent_log_density(c, mu, lv, fam) for mu, lv in comps]),
                                axis=0) - math.log(len(comps))
    log_w = latent_log_density(c, lay.content(prior_mean), lay.content(prior_logvar), fam) - log_q
    n_samples = int(c.shape[0])
    specs = {s.name: s for s in view.specs}
    for t in targets:
        if t in given:
            mu, lv = lay.style(params[t][0]), lay.style(params[t][1])
            s = view.sample(_tile(mu, n_samples), _tile(lv, n_samples), seed)
            log_w += (latent_log_density(s, lay.style(prior_mean), lay.style(prior_logvar), fam)
                      - latent_log_density(s, mu, lv, fam))
        else:
            mu = tf.broadcast_to(lay.style(prior_mean), [n_samples, c.shape[1], lay.style_dim])
            s = view.sample(mu, tf.broadcast_to(lay.style(prior_logvar), mu.shape), seed)
        z = tf.reshape(lay.join(s, c), [-1, lay.latent_dim])
        loc = tf.reshape(view.decode(t, z), [n_samples, -1] + list(specs[t].shape))
        log_w += data_log_likelihood(specs[t], batch[t], loc)
    return (tf.reduce_logsumexp(log_w, axis=0) - math.log(n_samples)).numpy()


def likelihood_terms(modalities: Sequence[str]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(targets, given) of the reported terms: joint, each | all, each | each other."""
    mods = tuple(modalities)
    terms = [(mods, mods)] + [((t,), mods) for t in mods]
    return terms + [((t,), (g,)) for t in mods for g in mods]


def term_key(targets: Sequence[str], given: Sequence[str]) -> str:
    """Metrics key of log p(x_targets | x_given): "a,b|a,b", "a|b"."""
    return f"{','.join(targets)}|{','.join(given)}"


def log_likelihoods(view: InferenceView, ds: PairedDataset, split: str, rows: np.ndarray,
                    num_samples: int = 100, seed: int = 0, mixture: bool = False,
                    verbose: bool = False) -> dict[str, float]:
    """Mean IWAE log-likelihood (nats) of every term of `likelihood_terms` over pair rows."""
    terms = likelihood_terms(view.modalities)
    gen = seed_stream(seed, 8)
    per_step = max(1, SAMPLE_BUDGET // (num_samples * len(view.modalities)))
    sums = {term_key(t, g): 0.0 for t, g in terms}
    bar = progress(len(rows), f"log-likelihoods (K={num_samples})", verbose)
    for batch in paired_batches(ds.split(split), view.modalities, rows, per_step):
        for targets, given in terms:
            values = iwae_log_likelihood(view, batch, targets, given, num_samples, gen, mixture)
            sums[term_key(targets, given)] += float(np.sum(values))
        tick(bar, len(batch["label"]))
    return {key: total / max(len(rows), 1) for key, total in sums.items()}
