"""Shared plumbing of the metrics: data access, the inference view of a model, seeds, progress.

Metrics read the `PairedDataset` arrays directly (numpy gathers of seeded row subsets), so a
metric on N pairs touches only those N rows and every subset is reproducible from a seed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from mmali_tf.data.specs import ModalitySpec, PairedSplit

PROTOCOLS = ("clean", "reference")


def check_protocol(protocol: str) -> str:
    """Validate an evaluation protocol name."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    return protocol


def to_float(x: np.ndarray) -> np.ndarray:
    """Model input from stored instances: uint8 images -> float32 in [0, 1]; floats unchanged."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return np.asarray(x, dtype=np.float32)


def sample_rows(total: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted, seeded subset of `limit` row indices out of `total` (all rows if limit covers it)."""
    if limit is None or limit >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=int(limit), replace=False))


def paired_batches(split: PairedSplit, modalities: Sequence[str], rows: np.ndarray,
                   batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Batches `{modality: float32, "label": int32}` of the given pair rows, in order."""
    for start in range(0, len(rows), batch_size):
        idx = split.pairs[rows[start:start + batch_size]]
        batch = {m: to_float(split.instances[m][idx[:, k]]) for k, m in enumerate(modalities)}
        batch["label"] = split.labels[modalities[0]][idx[:, 0]].astype(np.int32)
        yield batch


def instance_batches(x: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """float32 batches of an instance array, in order."""
    for start in range(0, len(x), batch_size):
        yield to_float(x[start:start + batch_size])


def progress(total: int, label: str, verbose: bool,
             unit: str = "example") -> "keras.utils.Progbar | None":
    """A Keras progress bar for a long step (None when quiet)."""
    if not verbose:
        return None
    print(label, flush=True)
    return keras.utils.Progbar(total, unit_name=unit)


def tick(bar: "keras.utils.Progbar | None", n: int) -> None:
    """Advance a progress bar from `progress` by n."""
    if bar is not None:
        bar.add(n)


def seed_stream(seed: int, offset: int) -> keras.random.SeedGenerator:
    """An independent, reproducible noise stream for one metric (seed + offset)."""
    return keras.random.SeedGenerator(int(seed) * 1000 + int(offset))


@dataclasses.dataclass
class InferenceView:
    """The `MultimodalModel` inference interface with the weight set (EMA or raw) bound.

    Metrics use only this view, so they run the same on any model.
    """

    model: Any
    ema: bool

    @classmethod
    def of(cls, model: Any, weights: str = "ema") -> "InferenceView":
        """View with `weights` in ('ema', 'raw'); 'ema' falls back to raw if the model has none."""
        if weights not in ("ema", "raw"):
            raise ValueError(f"unknown weights {weights!r}; expected 'ema' or 'raw'")
        return cls(model, weights == "ema" and getattr(model, "ema", None) is not None)

    @property
    def weights(self) -> str:
        return "ema" if self.ema else "raw"

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.model.modalities)

    @property
    def specs(self) -> tuple[ModalitySpec, ...]:
        return tuple(self.model.specs)

    @property
    def layout(self) -> Any:
        return self.model.layout

    @property
    def stochastic(self) -> bool:
        return not bool(self.model.deterministic)

    @property
    def default_fusion(self) -> str:
        return self.model.default_fusion

    @property
    def posterior_family(self) -> str:
        return self.model.posterior_family

    def encode(self, m: str, x: Any) -> tuple[tf.Tensor, "tf.Tensor | None"]:
        return self.model.encode(m, tf.convert_to_tensor(x, tf.float32), ema=self.ema)

    def decode(self, m: str, z: Any) -> tf.Tensor:
        return self.model.decode(m, tf.convert_to_tensor(z, tf.float32), ema=self.ema)

    def unimodal(self, m: str, params: tuple[tf.Tensor, "tf.Tensor | None"]
                 ) -> tuple[tf.Tensor, "tf.Tensor | None"]:
        """q(z | x_m) from `encode` output: with a prior expert (MVAE) its content is the
        product of the prior and the modality's expert."""
        mean, logvar = params
        if logvar is None or not getattr(self.model, "prior_expert", False):
            return mean, logvar
        c_mean, c_logvar = self.fuse({m: params}, "poe")
        lay = self.layout
        return lay.join(lay.style(mean), c_mean), lay.join(lay.style(logvar), c_logvar)

    def fuse(self, params: Mapping[str, tuple[tf.Tensor, Any]],
             method: str | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        return self.model.fuse(params, method)

    def joint_posterior(self, params: Mapping[str, tuple[tf.Tensor, Any]],
                        xs: Mapping[str, Any]) -> tuple[tf.Tensor, tf.Tensor]:
        """The model's joint content posterior, (E, B, C) mixture components."""
        xs = {m: tf.convert_to_tensor(x, tf.float32) for m, x in xs.items()}
        return self.model.joint_posterior(params, xs, ema=self.ema)

    def sample_joint_content(self, params: Mapping[str, tuple[tf.Tensor, Any]],
                             xs: Mapping[str, Any], seed: keras.random.SeedGenerator
                             ) -> tf.Tensor:
        xs = {m: tf.convert_to_tensor(x, tf.float32) for m, x in xs.items()}
        return self.model.sample_joint_content(params, xs, seed=seed, ema=self.ema)

    @property
    def joint_posterior_name(self) -> str:
        return self.model.joint_posterior_name

    def cross_latent(self, z_source: tf.Tensor, target: str,
                     seed: keras.random.SeedGenerator) -> tf.Tensor:
        return self.model.cross_latent(z_source, target, seed=seed)

    def synergy_latent(self, content: tf.Tensor, z_target: tf.Tensor, target: str,
                       seed: keras.random.SeedGenerator) -> tf.Tensor:
        return self.model.synergy_latent(content, z_target, target, seed=seed)

    def sample(self, mean: tf.Tensor, logvar: "tf.Tensor | None",
               seed: keras.random.SeedGenerator) -> tf.Tensor:
        return self.model.sample_posterior(mean, logvar, seed=seed)

    def sample_prior(self, n: int, seed: keras.random.SeedGenerator) -> dict[str, tf.Tensor]:
        return self.model.sample_prior(n, seed=seed)

    def prior_params(self) -> tuple[tf.Tensor, tf.Tensor]:
        return self.model.prior_params()

