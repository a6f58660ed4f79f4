"""Parameters -> `tfp.distributions` objects for the VAE baselines (used only inside losses).

Networks output plain parameter tensors; these helpers turn them into TFP distributions
inside `train_step` (never `tfp.layers`, ECOSYSTEM section 3). Latent distributions are
described by `(mean, logvar)` everywhere in the library; for a Laplace that is
`logvar = log(2 b^2)` (its variance), so `b = sqrt(exp(logvar) / 2)`.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from mmali_tf import latent as latent_lib
from mmali_tf.data.specs import CATEGORICAL, ModalitySpec
from mmali_tf.networks import bounded_output, logsoftmax_ratio

tfd = tfp.distributions

#: clamp of image likelihood means (MMVAE clamps sigmoid outputs to [1e-6, 1 - 1e-6]).
MEAN_EPS = 1e-6
#: torch's `clamp_probs` bound of a categorical's probabilities (float32 machine epsilon)
PROBS_EPS = float(np.finfo(np.float32).eps)


def posterior(mean: tf.Tensor, logvar: tf.Tensor, family: str) -> tfd.Distribution:
    """Diagonal Normal or Laplace over the last axis with variance exp(logvar)."""
    scale = latent_lib.scale_from_logvar(logvar, family)
    base = tfd.Laplace(mean, scale) if family == "laplace" else tfd.Normal(mean, scale)
    return tfd.Independent(base, reinterpreted_batch_ndims=1)


def laplace_logvar(scale: tf.Tensor) -> tf.Tensor:
    """log-variance log(2 b^2) of a Laplace with scale b."""
    return math.log(2.0) + 2.0 * tf.math.log(scale)


def softmax_scale(h: tf.Tensor) -> tf.Tensor:
    """MMVAE's Laplace scale constraint b = D * softmax(h) + 1e-6 (scales sum to ~D)."""
    d = float(h.shape[-1])
    return d * tf.nn.softmax(h, axis=-1) + 1e-6


def likelihood(spec: ModalitySpec, param: tf.Tensor) -> tfd.Distribution:
    """p(x | z) of one modality given the decoder output `param` (..., *spec.shape).

    laplace / normal: `param` is the mean, fixed `spec.likelihood_scale`; image means are
    clamped to [1e-6, 1 - 1e-6] (not those of a family with unbounded output). bernoulli:
    probabilities = clamped mean (continuous targets give -sigmoid cross-entropy). bernoulli_logits: `param` are logits (the decoder before its
    sigmoid; no clamp, exact -BCE-with-logits for any x in [0, 1], as MVAE's authors compute
    it). categorical: `param` are logits over the last axis, x one-hot; a text modality
    (L, A) sums the log-probabilities of its L positions (mmJSD's `log_prob_text`).
    categorical_logratio: the same with probabilities `logsoftmax_ratio(param)`, clamped to
    [eps, 1 - eps] as torch's `probs_to_logits` clamps them: what mmJSD's released text
    likelihood computes (`OneHotCategorical(log_softmax)`: log-probabilities taken as `probs`).
    """
    ndims = len(spec.shape)
    if spec.likelihood == "bernoulli_logits":
        return tfd.Independent(tfd.Bernoulli(logits=param, dtype=param.dtype),
                               reinterpreted_batch_ndims=ndims)
    if spec.likelihood in CATEGORICAL:  # one categorical per position of a text modality
        logits = param
        if spec.likelihood == "categorical_logratio":
            logits = tf.math.log(tf.clip_by_value(logsoftmax_ratio(param), PROBS_EPS,
                                                  1.0 - PROBS_EPS))
        return tfd.Independent(tfd.OneHotCategorical(logits=logits, dtype=param.dtype),
                               reinterpreted_batch_ndims=ndims - 1)
    mean = param
    if bounded_output(spec) or spec.likelihood == "bernoulli":
        mean = tf.clip_by_value(mean, MEAN_EPS, 1.0 - MEAN_EPS)
    if spec.likelihood == "laplace":
        base = tfd.Laplace(mean, spec.likelihood_scale)
    elif spec.likelihood == "normal":
        base = tfd.Normal(mean, spec.likelihood_scale)
    else:
        base = tfd.Bernoulli(probs=mean, dtype=mean.dtype)
    return tfd.Independent(base, reinterpreted_batch_ndims=ndims)


def log_likelihood(spec: ModalitySpec, param: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """log p(x | z) summed over the event dims; `x` (B, ...) broadcasts against (..., B, ...).
    Laplace: `laplace_log_likelihood` (the same density in fewer passes)."""
    if spec.likelihood == "laplace" and param.shape.rank >= x.shape.rank:
        return laplace_log_likelihood(param, x, spec.likelihood_scale, len(spec.shape),
                                      bounded_output(spec))
    return likelihood(spec, param).log_prob(x)


def laplace_log_likelihood(mean: tf.Tensor, x: tf.Tensor, scale: float, ndims: int,
                           clamp: bool) -> tf.Tensor:
    """sum over the last `ndims` axes of log Laplace(x; m, scale), m = `mean` clamped to
    [MEAN_EPS, 1 - MEAN_EPS] when `clamp` (as `likelihood`), with its gradient w.r.t. `mean`
    written out: d/dmean = sign(x - m) / scale where the clamp passes. The value is TFP's
    `Laplace.log_prob` summed, op for op (importance weights of K ~ 1e4-sized log-weights
    amplify any other rounding); the gradient takes a few passes over the (..., B, *shape)
    tensor instead of the dozen of autodiff through the clamp and the density -- the MMVAE
    step decodes K x M x B images. `mean` has at least `x`'s rank (`x` broadcasts)."""
    axes = list(range(-ndims, 0))
    scale_t = tf.constant(scale, mean.dtype)

    @tf.custom_gradient
    def log_lik(mean):
        m = tf.clip_by_value(mean, MEAN_EPS, 1.0 - MEAN_EPS) if clamp else mean
        z = (x - m) / scale_t
        out = tf.reduce_sum(-tf.abs(z) - np.log(2.0) - tf.math.log(scale_t), axis=axes)

        def grad(upstream):
            g = tf.sign(z) * tf.reshape(upstream / scale_t,
                                        tf.concat([tf.shape(upstream), [1] * ndims], 0))
            if clamp:  # clip_by_value's gradient: zero where the clamp is active
                g = tf.where((mean >= MEAN_EPS) & (mean <= 1.0 - MEAN_EPS), g, 0.0)
            return g

        return out, grad

    return log_lik(mean)
