"""`VAEModel`: what every multimodal VAE baseline shares on top of `MultimodalModel`.

Networks (one encoder with a `[mean | scale-parameter]` head and one decoder per modality),
posterior parameterisations, likelihood weights lambda_m, batched decoding, the optimizer
(`g_optimizer`, Adam with the run's flags), trackers and a `train_step` that minimises
`objective(batch)` (subclasses with special gradient estimators override `compute_gradients`).
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from mmali_tf import latent as latent_lib
from mmali_tf.data.specs import LOGIT_LIKELIHOODS, ModalitySpec
from mmali_tf.models.base import MultimodalModel, Params
from mmali_tf.models.optimizers import attach_optimizers
from mmali_tf.models.vae import distributions as dists
from mmali_tf.models.vae import objectives as obj
from mmali_tf.models.vae.settings import VAESettings
from mmali_tf.networks import build_decoder, build_encoder, decoder_logits

Batch = Mapping[str, tf.Tensor]
#: logvar clamp of Gaussian experts (a PoE precision blow-up guard, as the authors' code clamps log-variances).
LOGVAR_CLIP = 10.0


def likelihood_size(spec: ModalitySpec) -> int:
    """Number of likelihood terms of one example: its values for an image, its positions
    (one categorical each) for text."""
    return spec.shape[0] if spec.kind == "text" else spec.size


def likelihood_weights(specs: Sequence[ModalitySpec]) -> dict[str, float]:
    """lambda_m per modality: the specs' `likelihood_weight` when a dataset sets any of them,
    else, for image and text datasets, largest size / size with `likelihood_size` (MMVAE:
    3072/784 = 3.918; mmJSD's MNIST-SVHN-Text, `VAEtrimodalSVHNMNIST.py`: text 3072/8)."""
    given = {s.name: float(s.likelihood_weight) for s in specs}
    if any(w != 1.0 for w in given.values()) or any(s.kind == "vector" for s in specs):
        return given
    largest = max(likelihood_size(s) for s in specs)
    return {s.name: largest / likelihood_size(s) for s in specs}


DREG_ESTIMATORS = ("released", "paper")


def dreg_gradients(tape: tf.GradientTape, theta_loss: tf.Tensor, lw: tf.Tensor, z: tf.Tensor,
                   enc_vars: Sequence[keras.Variable], theta_vars: Sequence[keras.Variable],
                   estimator: str = "released") -> list[tf.Tensor]:
    """DReG gradients (Tucker et al. 2019; iffsid/mmvae src/objectives.py `m_dreg_looser`) from a persistent `tape`, in the order enc_vars + theta_vars.

    theta_loss: the weighted theta surrogate, e.g. sum_b -(1/M) sum_{m,k} sg(w~) lw, computed
    on the tape from lw (M, K, B) whose q-densities use stop-gradient parameters and from
    z (M, K, B, D) = g(eps; phi). theta (decoders, prior) gradients are taken from it directly.
    Encoders: `estimator="paper"` multiplies the gradient it sends to z by w~ once more, which
    gives sum w~^2 (d lw/d z)(d z/d phi) (DReG; what iffsid/mmvae's hook on z intends);
    "released" takes the surrogate's own gradient, sum w~ (d lw/d z)(d z/d phi), which is what
    the released code computes: its hook is registered on a `torch.stack` of the samples that
    nothing downstream uses, so it never fires (shown by tests/golden/test_mmvae_fidelity.py).
    """
    if estimator not in DREG_ESTIMATORS:
        raise ValueError(f"dreg estimator must be one of {DREG_ESTIMATORS}, got {estimator!r}")
    if estimator == "released":
        grads = tape.gradient(theta_loss, list(enc_vars) + list(theta_vars))
        return list(grads)
    *theta_grads, g_z = tape.gradient(theta_loss, list(theta_vars) + [z])
    w = obj.dreg_weights(lw)
    enc_grads = tape.gradient(z, list(enc_vars), output_gradients=w[..., None] * g_z)
    return list(enc_grads) + list(theta_grads)


class VAEModel(MultimodalModel):
    """Base of MVAE, JMVAE, MMVAE, mmJSD and their contrastive variants.

    Subclasses set `scale_parameterisation` ("logvar": encoder head is the log-variance,
    clipped to +-10; "softmax": Laplace b = D softmax(h) + 1e-6; "softplus": Normal
    sigma = softplus(h) + 1e-6), `uses_style`, `batch_reduction` and implement
    `loss_term_names()` and `objective(batch) -> (loss, {term: value})`.
    """

    scale_parameterisation: str = "logvar"
    uses_style: bool = False
    batch_reduction: str = "mean"
    #: step from which the KL warm-up factor is 1 (0: when the warm-up ends; see kl_anneal)
    kl_full_step: int = 0
    settings_class = VAESettings
    settings: VAESettings

    def __init__(self, specs: Sequence[ModalitySpec | Mapping[str, Any]],
                 config: Mapping[str, Any], **kwargs: Any) -> None:
        name = self.variant_name(config)
        style = self.settings_class.from_config(config).style_dim
        if self.uses_style and style <= 0:
            raise ValueError(f"model {name!r} needs a style subspace: set --style_dim > 0")
        if not self.uses_style and style != 0:
            # --style_dim defaults to mmALI's 10; models without style subspace use 0.
            warnings.warn(f"model {name!r} has no style subspace; ignoring --style_dim={style} "
                          "(using 0)", stacklevel=2)
            config = {**config, "style_dim": 0}
        super().__init__(specs, config, **kwargs)
        self.lambdas = likelihood_weights(self.specs)
        self.beta, self.kl_anneal_steps = self.settings.beta, self.settings.kl_anneal_steps
        self.trackers = {n: keras.metrics.Mean(name=n)
                         for n in ("loss", *self.loss_term_names())}

    # ----------------------------------------------------------------- networks
    def build_networks(self) -> None:
        init = self.settings.init
        d = self.layout.latent_dim
        for s in self.specs:
            self.encoders[s.name] = build_encoder(s, 2 * d, init=init,
                                                  style_dim=self.layout.style_dim)
            self.decoders[s.name] = build_decoder(s, d, init=init)
        #: decoders without their final activation (same variables), which `decode_many`
        #: calls for a likelihood on logits
        self.logit_decoders = {s.name: decoder_logits(self.decoders[s.name])
                               for s in self.specs if s.likelihood in LOGIT_LIKELIHOODS}
        self.build_extra_networks()

    def build_extra_networks(self) -> None:
        """Hook for joint encoders and prior variables (default: nothing)."""

    @property
    def extra_variables(self) -> list[keras.Variable]:
        """Trainable variables outside the encoders/decoders (learned prior, joint encoder)."""
        return []

    @property
    def generator_variables(self) -> list[keras.Variable]:
        return super().generator_variables + self.extra_variables

    def params_from_encoder_output(self, raw: tf.Tensor) -> Params:
        d = self.layout.latent_dim
        mean, h = raw[:, :d], raw[:, d:]
        if self.scale_parameterisation == "softmax":
            return mean, dists.laplace_logvar(dists.softmax_scale(h))
        if self.scale_parameterisation == "softplus":
            return mean, 2.0 * tf.math.log(tf.nn.softplus(h) + 1e-6)
        return mean, tf.clip_by_value(h, -LOGVAR_CLIP, LOGVAR_CLIP)

    # ----------------------------------------------------------------- training helpers
    def encode_train(self, modality: str, x: tf.Tensor) -> Params:
        return self.params_from_encoder_output(self.encoders[modality](x, training=True))

    def decode_many(self, modality: str, z: tf.Tensor) -> tf.Tensor:
        """Decode latents of any leading shape (..., D) in ONE decoder call -> (..., *shape):
        the likelihood's parameter (the mean, or the logits for `LOGIT_LIKELIHOODS`)."""
        lead = tf.shape(z)[:-1]
        flat = tf.reshape(z, [-1, self.layout.latent_dim])
        out = self.logit_decoders.get(modality, self.decoders[modality])(flat, training=True)
        shape = self.specs[self.modalities.index(modality)].shape
        return tf.reshape(out, tf.concat([lead, list(shape)], axis=0))

    def log_lik(self, modality: str, param: tf.Tensor, x: tf.Tensor,
                weighted: bool = True) -> tf.Tensor:
        """lambda_m log p(x_m | z) summed over the event dims (x broadcasts over leading axes);
        `param` from `decode_many`."""
        spec = self.specs[self.modalities.index(modality)]
        ll = dists.log_likelihood(spec, param, x)
        return self.lambdas[modality] * ll if weighted else ll

    def sample_k(self, mean: tf.Tensor, logvar: tf.Tensor, k: int,
                 draw: str = "eps", batch_axis: int = 0) -> tf.Tensor:
        """k reparameterised samples (k, *mean.shape) of the posterior family (noise `draw`;
        `batch_axis`: the data batch axis of `mean`)."""
        noise = self.sample_noise(tf.concat([[k], tf.shape(mean)], axis=0), name=draw,
                                  batch_axis=batch_axis + 1)
        scale = latent_lib.scale_from_logvar(logvar, self.posterior_family)
        return mean[None] + scale[None] * noise

    def reduce_batch(self, x: tf.Tensor) -> tf.Tensor:
        """Batch reduction of a per-datapoint loss (mean, or sum for MMVAE-style models)."""
        return tf.reduce_sum(x) if self.batch_reduction == "sum" else tf.reduce_mean(x)

    def distribute_scale(self, loss: tf.Tensor) -> tf.Tensor:
        """A batch-summed loss (`batch_reduction="sum"`) needs no scaling: the replicas' sums
        add up to the global batch's sum; a batch mean is divided by the replica count."""
        return loss if self.batch_reduction == "sum" else super().distribute_scale(loss)

    def global_batch_value(self, loss: tf.Tensor) -> tf.Tensor:
        """The value of `loss` (this replica's `reduce_batch`) to log, such that the mean over
        replicas that Keras logs is the global batch's loss: a sum is multiplied by the
        replica count, a mean is kept."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if self.batch_reduction == "sum" and replicas > 1:
            return loss * tf.cast(replicas, loss.dtype)
        return loss

    def anneal_factor(self) -> tf.Tensor:
        """Linear warm-up factor min(1, (step + 1) / kl_anneal_steps) at the current step
        (1 from `kl_full_step` on when that is set)."""
        opt = getattr(self, "g_optimizer", None)
        step = opt.iterations if opt is not None else tf.constant(0, tf.int64)
        return obj.kl_anneal(step, self.kl_anneal_steps, self.kl_full_step)

    def kl_weight(self) -> tf.Tensor:
        """beta times the warm-up factor at the current step."""
        return self.beta * self.anneal_factor()

    # ----------------------------------------------------------------- Keras plumbing
    def loss_term_names(self) -> list[str]:
        """Names of the logged terms besides "loss" (every subclass defines them)."""
        raise TypeError(f"{type(self).__name__} does not define loss_term_names()")

    def objective(self, batch: Batch) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """(loss to minimise, logged terms) of one batch (every subclass defines it)."""
        raise TypeError(f"{type(self).__name__} does not define objective()")

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def compile(self, g_optimizer: keras.optimizers.Optimizer | None = None,
                jit_compile: bool = False, **kwargs: Any) -> None:
        """Build `g_optimizer` (Adam from the flags unless given) on the fixed variable list."""
        attach_optimizers(self, self.settings, {"g_optimizer": lambda: self.generator_variables},
                          {"g_optimizer": g_optimizer})
        self._jit_requested = bool(jit_compile)
        super().compile(optimizer=None, jit_compile=bool(jit_compile), **kwargs)

    def compute_gradients(self, batch: Batch) -> tuple[list[tf.Tensor], tf.Tensor,
                                                        dict[str, tf.Tensor]]:
        """(gradients of the loss w.r.t. `generator_variables`, loss, logged terms)."""
        variables = self.generator_variables
        with tf.GradientTape() as tape:
            loss, terms = self.objective(batch)
            scaled = self.distribute_scale(loss)
        return tape.gradient(scaled, variables), loss, terms

    @tf.autograph.experimental.do_not_convert
    def train_step(self, data: Batch) -> dict[str, tf.Tensor]:
        """One Adam step on `objective` (or `compute_gradients`), EMA update, tracker means.

        Not converted by AutoGraph (the step has no tensor-dependent Python control flow);
        this cuts graph tracing time several-fold.
        """
        if isinstance(data, tuple):
            data = data[0]
        batch = {m: tf.cast(data[m], tf.float32) for m in self.modalities}
        grads, loss, terms = self.compute_gradients(batch)
        self.g_optimizer.apply(grads, self.generator_variables)
        self.update_ema()
        self.trackers["loss"].update_state(self.global_batch_value(loss))
        for name, value in terms.items():
            self.trackers[name].update_state(value)
        return self.step_logs(self.trackers)
