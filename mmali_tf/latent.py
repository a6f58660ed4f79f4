"""Latent layout (style/content split) and Gaussian posterior algebra.

Every model keeps a per-modality latent `z_m = [s_m | c]`: `style_dim` private style entries
first, then `content_dim` content entries shared across modalities (the reference mmALI order).
Posterior fusion acts on the content part only, so it is the same for models with and without
a style subspace. These functions are used by the models *and* traced into the exported ONNX
graphs, so they are plain TensorFlow ops. Fusion methods are declared with
`registry.register_fusion` (a plugin may add one); `FUSION_METHODS` lists the registered names.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Sequence

import tensorflow as tf

from mmali_tf import registry
from mmali_tf.registry import register_fusion

FAMILIES = ("normal", "laplace")


def __getattr__(name: str):
    """`FUSION_METHODS`: the registered fusion method names (read when accessed)."""
    if name == "FUSION_METHODS":
        return registry.names("fusion")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class LatentLayout:
    """Per-modality latent `[style (style_dim) | content (content_dim)]`."""

    style_dim: int
    content_dim: int

    def __post_init__(self) -> None:
        if self.style_dim < 0 or self.content_dim < 1:
            raise ValueError(
                f"LatentLayout needs style_dim >= 0 and content_dim >= 1, got "
                f"style_dim={self.style_dim}, content_dim={self.content_dim}")

    @property
    def latent_dim(self) -> int:
        return self.style_dim + self.content_dim

    def split(self, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(style, content) of a latent (..., latent_dim)."""
        return z[..., : self.style_dim], z[..., self.style_dim:]

    def join(self, style: tf.Tensor, content: tf.Tensor) -> tf.Tensor:
        """Inverse of `split`."""
        return tf.concat([style, content], axis=-1)

    def content(self, z: tf.Tensor) -> tf.Tensor:
        return z[..., self.style_dim:]

    def style(self, z: tf.Tensor) -> tf.Tensor:
        return z[..., : self.style_dim]

    def to_dict(self) -> dict[str, int]:
        return {"style_dim": self.style_dim, "content_dim": self.content_dim,
                "latent_dim": self.latent_dim, "order": "style_then_content"}


def scale_from_logvar(logvar: tf.Tensor, family: str = "normal") -> tf.Tensor:
    """Scale parameter of a `family` distribution with variance exp(logvar).

    Normal: sigma = exp(logvar / 2). Laplace: b = sqrt(var / 2).
    """
    if family == "normal":
        return tf.exp(0.5 * logvar)
    if family == "laplace":
        return tf.exp(0.5 * logvar) * (1.0 / math.sqrt(2.0))
    raise ValueError(f"unknown posterior family {family!r}; expected one of {FAMILIES}")


def reparameterize(mean: tf.Tensor, logvar: tf.Tensor, noise: tf.Tensor,
                   family: str = "normal") -> tf.Tensor:
    """Sample `mean + scale * noise`; `noise` is standard Normal or standard Laplace(0, 1)."""
    return mean + scale_from_logvar(logvar, family) * noise


@register_fusion("poe")
def product_of_experts(means: Sequence[tf.Tensor], logvars: Sequence[tf.Tensor],
                       prior_expert: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Gaussian product of experts, computed in log-variance space.

    logvar = -logsumexp_i(-logvar_i); mean = sum_i softmax_i(-logvar_i) * mean_i.
    With `prior_expert`, a N(0, I) expert (mean 0, logvar 0) joins the product (MVAE).
    """
    means, logvars = list(means), list(logvars)
    if prior_expert:
        means.append(tf.zeros_like(means[0]))
        logvars.append(tf.zeros_like(logvars[0]))
    neg = tf.stack([-lv for lv in logvars], axis=0)
    weights = tf.nn.softmax(neg, axis=0)
    mean = tf.reduce_sum(weights * tf.stack(means, axis=0), axis=0)
    logvar = -tf.reduce_logsumexp(neg, axis=0)
    return mean, logvar


@register_fusion("geometric")
def geometric_mean(means: Sequence[tf.Tensor], logvars: Sequence[tf.Tensor],
                   prior_expert: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Geometric mean of Gaussian experts ("average=True" in the mmALI code).

    Same mean as the product of experts; the precision is the experts' *average* precision,
    i.e. logvar = logvar_PoE + log K.
    """
    mean, logvar = product_of_experts(means, logvars, prior_expert)
    k = len(means) + (1 if prior_expert else 0)
    return mean, logvar + math.log(k)


@register_fusion("moe_mean")
def moe_moment_match(means: Sequence[tf.Tensor], logvars: Sequence[tf.Tensor],
                     prior_expert: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Gaussian matching the first two moments of the uniform mixture of the experts.

    mean = avg_i mean_i; var = avg_i (var_i + mean_i^2) - mean^2.
    """
    means, logvars = list(means), list(logvars)
    if prior_expert:
        means.append(tf.zeros_like(means[0]))
        logvars.append(tf.zeros_like(logvars[0]))
    mu = tf.stack(means, axis=0)
    var = tf.exp(tf.stack(logvars, axis=0))
    mean = tf.reduce_mean(mu, axis=0)
    second = tf.reduce_mean(var + tf.square(mu), axis=0)
    return mean, tf.math.log(tf.maximum(second - tf.square(mean), 1e-12))


def fuse(means: Sequence[tf.Tensor], logvars: Sequence[tf.Tensor], method: str,
         prior_expert: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Fuse unimodal Gaussian posteriors with a registered fusion `method`."""
    fuser = registry.load("fusion", method)
    if not means:
        raise ValueError("fuse needs at least one expert")
    return fuser(means, logvars, prior_expert)


def nonempty_subsets(num_modalities: int) -> list[tuple[int, ...]]:
    """Every non-empty subset of range(num_modalities) as a sorted index tuple, by size then
    lexicographically (2^M - 1 subsets; the full set is last)."""
    if num_modalities < 1:
        raise ValueError(f"nonempty_subsets needs num_modalities >= 1, got {num_modalities}")
    return [s for k in range(1, num_modalities + 1)
            for s in itertools.combinations(range(num_modalities), k)]


def select_components(means: tf.Tensor, logvars: tf.Tensor,
                      index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Row b of component index[b] of mixture parameters (E, B, D): (mean, logvar) (B, D)."""
    rows = tf.stack([tf.cast(index, tf.int32), tf.range(tf.shape(means)[1])], axis=-1)
    return tf.gather_nd(means, rows), tf.gather_nd(logvars, rows)


def gaussian_kl_standard(mean: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over the last axis."""
    return 0.5 * tf.reduce_sum(tf.exp(logvar) + tf.square(mean) - 1.0 - logvar, axis=-1)
