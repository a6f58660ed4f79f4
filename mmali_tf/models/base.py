"""MultimodalModel: the shared inference interface every model implements.

Evaluation and ONNX export use only what is defined here:

* `encode(modality, x) -> (mean, logvar)`   (deterministic encoders: logvar is None)
* `decode(modality, z) -> x`                 (mean of p(x|z), in the modality's value range)
* `fuse({modality: (mean, logvar)}, method) -> (mean, logvar)` of the shared *content* code
* `sample_prior(n) -> {modality: z}`         (shared content, independent styles)
* `joint_posterior(params, xs)`              the model's own q(z_content | X) as a uniform
  mixture of components (default: one component, `fuse` with `default_fusion`)
* `sample_joint_content`, `cross_latent`, `synergy_latent`: the latents that evaluation
  decodes for synergy and cross generation (models override them where the paper does)
* `layout`, `modalities`, `specs`, `posterior_family`, `prior_params()`
* `generator_variables` / `critic_variables`; EMA copies of the encoders and decoders that
  inference uses by default when EMA is on.

A subclass builds `self.encoders` / `self.decoders` (dicts of Keras models keyed by modality,
encoders output the raw parameter vector), implements `train_step`, and may override
`params_from_encoder_output` (e.g. Laplace posteriors) and `prior_params`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from mmali_tf import latent as latent_lib
from mmali_tf.data.specs import ModalitySpec
from mmali_tf.ema import WeightEMA
from mmali_tf.models.draws import RandomDraws, replica_slice_draw, standard_noise
from mmali_tf.models.settings import ModelSettings

Params = tuple[tf.Tensor, "tf.Tensor | None"]


def multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    """True for a MultiWorkerMirroredStrategy whose TF_CONFIG names more than one task (the
    condition under which Keras reduces step outputs across workers with collectives)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    return bool(strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


def _as_specs(specs: Sequence[ModalitySpec | Mapping[str, Any]]) -> tuple[ModalitySpec, ...]:
    return tuple(s if isinstance(s, ModalitySpec) else ModalitySpec.from_dict(dict(s))
                 for s in specs)


class MultimodalModel(keras.Model):
    """Base class: networks per modality, EMA copies, and the inference interface.

    Args:
      specs: modality specs in model order.
      config: flat dict of hyper-parameters (the resolved training flags); kept verbatim so the
        model can be rebuilt from `get_config()` and recorded in exported manifests. The model
        reads it through `self.settings`, an instance of its `settings_class` (a missing key
        takes that field's one default).
    """

    #: name in the model registry (`mmali_tf.models.build`).
    registry_name: str = ""
    #: how many paired batches of `batch_size` one `train_step` consumes (mmALI: 4).
    draws_per_step: int = 1
    #: family of the posterior q(z|x) and of the prior: "normal" or "laplace".
    posterior_family: str = "normal"
    #: fusion used for synergy by default, and whether a N(0, I) expert joins the product.
    default_fusion: str = "geometric"
    prior_expert: bool = False
    #: True when encoders output a point code (mmALI `--deterministic`).
    deterministic: bool = False
    #: flags besides the latent sizes that change this model's variables: a run directory
    #: trained with other values cannot be resumed (`run_dir.shape_flags`).
    shape_flags: tuple[str, ...] = ()
    #: the settings this model reads (`register_model(..., settings=...)` sets it).
    settings_class: type[ModelSettings] = ModelSettings

    def __init__(self, specs: Sequence[ModalitySpec | Mapping[str, Any]],
                 config: Mapping[str, Any], **kwargs: Any) -> None:
        kwargs.setdefault("name", self.registry_name or "multimodal_model")
        super().__init__(**kwargs)
        self.specs = _as_specs(specs)
        self.config = dict(config)
        self.settings = self.settings_class.from_config(self.config)
        #: the registry name this model was built as (variants share a class)
        self.variant = self.variant_name(self.config)
        self.modalities = tuple(s.name for s in self.specs)
        settings = self.settings
        self.layout = latent_lib.LatentLayout(settings.style_dim,
                                              settings.latent_dim - settings.style_dim)
        self.seed_generator = keras.random.SeedGenerator(settings.seed)
        #: where every training draw comes from (tests swap in `ReplayDraws`, see draws.py).
        self.draws = RandomDraws(self.seed_generator)
        self.encoders: dict[str, keras.Model] = {}
        self.decoders: dict[str, keras.Model] = {}
        self.build_networks()
        self.ema = None
        if settings.ema_decay > 0.0:
            self.ema = WeightEMA(self.encoders, self.decoders, decay=settings.ema_decay,
                                 start_step=settings.ema_start)

    @classmethod
    def variant_name(cls, config: Mapping[str, Any]) -> str:
        """The registry name in `config["model"]` (`models.build` sets it), else the class's."""
        return str(config["model"]) if "model" in config else cls.registry_name

    # ----------------------------------------------------------------- subclass hooks
    def build_networks(self) -> None:
        """Create `self.encoders`, `self.decoders` and any critics (every subclass defines it)."""
        raise TypeError(f"{type(self).__name__} does not define build_networks()")

    def params_from_encoder_output(self, raw: tf.Tensor) -> Params:
        """Map an encoder's raw output to (mean, logvar); default `[mean | logvar]` halves."""
        if self.deterministic:
            return raw, None
        d = self.layout.latent_dim
        return raw[:, :d], raw[:, d:]

    def prior_params(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(mean, logvar) of the prior over one modality's latent, shape (latent_dim,)."""
        d = self.layout.latent_dim
        return tf.zeros([d]), tf.zeros([d])

    # ----------------------------------------------------------------- networks
    def _nets(self, ema: bool | None) -> tuple[Mapping[str, keras.Model], Mapping[str, keras.Model]]:
        use_ema = self.ema is not None if ema is None else ema
        if use_ema:
            if self.ema is None:
                raise ValueError("this model was trained without EMA (--ema_decay=0); use ema=False")
            return self.ema.encoders, self.ema.decoders
        return self.encoders, self.decoders

    @property
    def generator_variables(self) -> list[keras.Variable]:
        """Trainable variables of all encoders and decoders (fixed order)."""
        out = []
        for m in self.modalities:
            out += self.encoders[m].trainable_variables
        for m in self.modalities:
            out += self.decoders[m].trainable_variables
        return out

    @property
    def critic_variables(self) -> list[keras.Variable]:
        """Trainable variables of the critics; empty for likelihood-based models."""
        return []

    # ----------------------------------------------------------------- inference interface
    def _check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ValueError(f"unknown modality {modality!r}; this model has {self.modalities}")

    def encode(self, modality: str, x: tf.Tensor, ema: bool | None = None) -> Params:
        """Posterior parameters (mean, logvar) of q(z | x_modality); logvar None if deterministic."""
        self._check_modality(modality)
        encoders, _ = self._nets(ema)
        return self.params_from_encoder_output(encoders[modality](x, training=False))

    def decode(self, modality: str, z: tf.Tensor, ema: bool | None = None) -> tf.Tensor:
        """Mean of p(x_modality | z), in the modality's value range."""
        self._check_modality(modality)
        _, decoders = self._nets(ema)
        return decoders[modality](z, training=False)

    def fuse(self, params_by_modality: Mapping[str, Params],
             method: str | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Joint posterior over the *content* code of any subset of modalities."""
        method = method or self.default_fusion
        if not params_by_modality:
            raise ValueError("fuse needs the posterior of at least one modality")
        means, logvars = [], []
        for m, (mean, logvar) in params_by_modality.items():
            self._check_modality(m)
            if logvar is None:
                raise ValueError("fuse needs stochastic encoders (logvar); this model is deterministic")
            means.append(self.layout.content(mean))
            logvars.append(self.layout.content(logvar))
        return latent_lib.fuse(means, logvars, method,
                               prior_expert=self.fusion_prior_expert(tuple(params_by_modality)))

    def fusion_prior_expert(self, modalities: tuple[str, ...]) -> bool:
        """Whether a N(0, I) expert joins the fusion of `modalities` (default: `prior_expert`)."""
        return self.prior_expert

    def sample_noise(self, shape: Sequence[int], seed: Any = None, name: str = "noise",
                     batch_axis: int = 0) -> tf.Tensor:
        """Standard noise of the posterior family (Normal(0,1) or Laplace(0,1)).

        Without `seed` the draw comes from `self.draws` under `name` (the fidelity seam). Under
        a strategy with several replicas each replica gets its slice (along `batch_axis`, the
        axis of the data batch) of the global batch's noise (`draws.replica_slice_draw`).
        """
        if seed is None:
            return self.draws.noise(name, shape, self.posterior_family, batch_axis)
        return replica_slice_draw(lambda s: standard_noise(s, self.posterior_family, seed),
                                  shape, batch_axis)

    def sample_posterior(self, mean: tf.Tensor, logvar: tf.Tensor | None,
                         seed: Any = None, name: str = "noise") -> tf.Tensor:
        """One reparameterised sample of q(z|x) (the mean itself when deterministic)."""
        if logvar is None:
            return mean
        noise = self.sample_noise(tf.shape(mean), seed, name)
        return latent_lib.reparameterize(mean, logvar, noise, self.posterior_family)

    def sample_prior(self, n: int, seed: Any = None,
                     name: str = "prior") -> dict[str, tf.Tensor]:
        """Prior latents per modality: one shared content code, independent style codes."""
        mean, logvar = self.prior_params()
        s, c = self.layout.style_dim, self.layout.content_dim
        content = self.sample_noise([n, c], seed, f"{name}/content")
        out = {}
        for m in self.modalities:
            noise = tf.concat([self.sample_noise([n, s], seed, f"{name}/style/{m}"), content],
                              axis=-1)
            out[m] = latent_lib.reparameterize(mean, logvar, noise, self.posterior_family)
        return out

    def joint_posterior(self, params_by_modality: Mapping[str, Params],
                        xs: Mapping[str, tf.Tensor] | None = None,
                        ema: bool | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """The model's joint posterior over the content code given these modalities.

        A uniform mixture of E components: (means, logvars), each (E, B, content_dim).
        `params_by_modality` are the unimodal `encode` outputs, `xs` the inputs themselves
        (for models with a joint encoder). Default: one component, `fuse(params)`.
        """
        mean, logvar = self.fuse(params_by_modality)
        return mean[None], logvar[None]

    @property
    def joint_posterior_name(self) -> str:
        """What `joint_posterior` computes, for reports."""
        return f"{self.default_fusion} fusion of the unimodal posteriors"

    def sample_joint_content(self, params_by_modality: Mapping[str, Params],
                             xs: Mapping[str, tf.Tensor] | None = None, seed: Any = None,
                             ema: bool | None = None) -> tf.Tensor:
        """One content sample per row of `joint_posterior` (a uniformly drawn component)."""
        seed = self.seed_generator if seed is None else seed
        means, logvars = self.joint_posterior(params_by_modality, xs, ema)
        index = keras.random.randint(tf.shape(means)[1:2], 0, means.shape[0], seed=seed)
        mean, logvar = latent_lib.select_components(means, logvars, index)
        return self.sample_posterior(mean, logvar, seed=seed)

    def prior_style(self, n: int | tf.Tensor, seed: Any = None) -> tf.Tensor:
        """n style codes drawn from the prior, (n, style_dim)."""
        mean, logvar = self.prior_params()
        s = self.layout.style_dim
        noise = self.sample_noise(tf.stack([n, s]) if isinstance(n, tf.Tensor) else [n, s],
                                  seed)
        return latent_lib.reparameterize(mean[:s], logvar[:s], noise, self.posterior_family)

    def join_prior_style(self, content: tf.Tensor, seed: Any = None) -> tf.Tensor:
        """Content codes (n, content_dim) joined with n style codes drawn from the prior."""
        return self.layout.join(self.prior_style(tf.shape(content)[0], seed), content)

    def cross_latent(self, z_source: tf.Tensor, target: str, seed: Any = None) -> tf.Tensor:
        """Latent decoded in `target` to translate a source sample `z_source`.

        Default: the whole source sample, style included (the released mmALI evaluation).
        """
        self._check_modality(target)
        return z_source

    def synergy_latent(self, content: tf.Tensor, z_target: tf.Tensor, target: str,
                       seed: Any = None) -> tf.Tensor:
        """Latent decoded in `target` from a joint content sample; default: joined with the
        target's own sampled style (`z_target`), as the released mmALI evaluation does."""
        self._check_modality(target)
        return self.layout.join(self.layout.style(z_target), content)

    # ----------------------------------------------------------------- Keras plumbing
    def call(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        """Reconstruct every modality from its own posterior mean (also builds the model)."""
        out = {}
        for m in self.modalities:
            raw = self.encoders[m](inputs[m], training=training)
            mean, _ = self.params_from_encoder_output(raw)
            out[m] = self.decoders[m](mean, training=training)
        return out

    def build_from_specs(self) -> None:
        """Build every sub-network and the wrapper by calling it on a zero batch."""
        self({s.name: tf.zeros((1,) + s.shape) for s in self.specs})

    def update_ema(self) -> None:
        """EMA update after the generator step (no-op without EMA).

        Subclasses keep the optimizer of the encoders/decoders in `self.g_optimizer`; its
        iteration count after the step is the 1-based training step.
        """
        if self.ema is not None:
            self.ema.update(self.g_optimizer.iterations, self.encoders, self.decoders)

    def distribute_scale(self, loss: tf.Tensor) -> tf.Tensor:
        """This replica's share of the global batch's loss, from its batch-mean `loss`.

        Replicas hold equal shares of the global batch and the optimizers sum gradients over
        replicas, so a mean over the replica's rows is divided by the replica count.
        """
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / tf.cast(replicas, loss.dtype) if replicas > 1 else loss

    def step_logs(self, trackers: Mapping[str, keras.metrics.Metric]) -> dict[str, tf.Tensor]:
        """`train_step`'s return value: every tracker's mean.

        Keras 3 reduces step outputs across workers with `strategy.reduce("MEAN", v, axis=0)`
        under a multi-worker MultiWorkerMirroredStrategy, which needs an axis to reduce, so
        there each value gets shape (1,); the logs that reach the callbacks are scalars.
        """
        logs = {name: t.result() for name, t in trackers.items()}
        if multi_worker_mode(tf.distribute.get_strategy()):
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        """Skip Keras' symbolic build when every layer is built (always, after
        `build_from_specs()`): under a strategy it pulls one batch and calls
        `strategy.reduce("MEAN", {name: PerReplica})`, which MultiWorkerMirroredStrategy
        rejects for a dict ("unsupported type <class 'dict'>"), and there is nothing to build."""
        if not all(layer.built for layer in self._flatten_layers()):
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def get_config(self) -> dict[str, Any]:
        return {"specs": [s.to_dict() for s in self.specs], "config": dict(self.config),
                "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "MultimodalModel":
        return cls(config["specs"], config["config"], name=config["name"])

    def get_compile_config(self) -> dict[str, Any]:
        return {"jit_compile": bool(getattr(self, "_jit_requested", False))}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        self.compile(jit_compile=bool(config["jit_compile"]))

    def use_xla(self, on: bool) -> None:
        """Compile the training step with XLA or not from now on, keeping the optimizers
        (`compile(jit_compile=...)` makes new ones); the next `fit` traces it anew."""
        self._jit_requested = bool(on)
        self.jit_compile = bool(on)
        self.train_function = None
