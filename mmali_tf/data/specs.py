"""ModalitySpec and the PairedDataset contract shared by data, networks, models and export.

A dataset is stored compactly: every modality keeps its *unique instances* once, and the
(many-to-many) pairing is an integer matrix of indices into those instance arrays. The tf.data
pipelines gather batches from these arrays, so 1.7M MNIST-SVHN pairs cost a few MB of indices.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mmali_tf import registry

KINDS = ("image", "vector", "text")
LIKELIHOODS = ("laplace", "normal", "bernoulli", "bernoulli_logits", "categorical",
               "categorical_logratio")
#: likelihoods of one-hot data: a softmax over the last axis, or mmJSD's released variant
CATEGORICAL = ("categorical", "categorical_logratio")
#: batches carry the class labels under this key, so no modality may take it
RESERVED_NAME = "label"
#: likelihoods evaluated on the decoder's logits (its output before the final sigmoid/softmax)
LOGIT_LIKELIHOODS = ("bernoulli_logits", *CATEGORICAL)


@dataclasses.dataclass(frozen=True)
class ModalitySpec:
    """Everything downstream code needs to know about one modality.

    Attributes:
      name: stable modality key (`hand`, `print`, `mnist`, `svhn`, `rot90`, `image`, `caption`).
      shape: per-example shape, HWC for images, (D,) for vectors, (L, A) for text (L
        characters, one-hot over an alphabet of A characters).
      kind: `image`, `vector` or `text`.
      network: network family key used by `mmali_tf.networks` (a registered family:
        `mnist_mlp`, `svhn_conv`, `feature_mlp`, or one of a plugin).
      value_range: (low, high) of model inputs/outputs; decoders of images end in a sigmoid
        (of `categorical` vectors: a softmax, the class probabilities).
      dtype: dtype of model inputs (always float32 for now).
      likelihood: VAE likelihood family of p(x|z): `laplace`, `normal`, `bernoulli` (on the
        decoder's clamped probabilities), `bernoulli_logits` (on its logits, as
        BCE-with-logits; any x in [0, 1]), `categorical` (one-hot vectors, on its logits) or
        `categorical_logratio` (one-hot vectors with probabilities log_softmax(l) /
        sum(log_softmax(l)) of its logits l: what mmJSD's released code computes, see
        `models/vae/distributions.py`).
      likelihood_scale: fixed scale of the Laplace/Normal likelihood (0.75 for images).
      likelihood_weight: rescaling weight lambda_m of log p(x_m|z) in VAE objectives.
      recon_weight: mmALI's mod_k multiplier of its reconstruction terms (1 except CUB captions).
      alphabet: the characters of a `text` modality, position k of the one-hot axis being
        alphabet[k] (it must contain the padding space); empty for other kinds.
    """

    name: str
    shape: tuple[int, ...]
    kind: str
    network: str
    value_range: tuple[float, float] = (0.0, 1.0)
    dtype: str = "float32"
    likelihood: str = "laplace"
    likelihood_scale: float = 0.75
    likelihood_weight: float = 1.0
    recon_weight: float = 1.0
    alphabet: str = ""

    def __post_init__(self) -> None:
        if self.name == RESERVED_NAME:
            raise ValueError(f"ModalitySpec {self.name!r}: that name is reserved for the class "
                             "labels in every batch; call the modality something else")
        if self.kind not in KINDS:
            raise ValueError(f"ModalitySpec {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        families = registry.names("network")
        if self.network not in families:
            raise ValueError(
                f"ModalitySpec {self.name!r}: network {self.network!r} is not one of {families}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(
                f"ModalitySpec {self.name!r}: likelihood {self.likelihood!r} is not one of "
                f"{LIKELIHOODS}")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        if self.likelihood in LOGIT_LIKELIHOODS and self.value_range != (0.0, 1.0):
            raise ValueError(f"ModalitySpec {self.name!r}: likelihood {self.likelihood!r} needs "
                             f"value_range (0, 1), got {self.value_range}")
        if self.likelihood in CATEGORICAL and not (
                (self.kind == "vector" and len(self.shape) == 1) or self.kind == "text"):
            raise ValueError(f"ModalitySpec {self.name!r}: likelihood {self.likelihood!r} "
                             "needs a one-hot vector modality of shape (K,) or a text modality, "
                             f"got {self.kind} {self.shape}")
        self._check_text()

    def _check_text(self) -> None:
        if self.kind != "text":
            if self.alphabet:
                raise ValueError(f"ModalitySpec {self.name!r}: only a text modality has an "
                                 "alphabet")
            return
        if not isinstance(self.alphabet, str) or " " not in self.alphabet:
            raise ValueError(f"ModalitySpec {self.name!r}: a text modality needs an alphabet "
                             f"string containing the padding space, got {self.alphabet!r}")
        if len(self.shape) != 2 or self.shape[1] != len(self.alphabet):
            raise ValueError(f"ModalitySpec {self.name!r}: a text modality has shape (L, "
                             f"{len(self.alphabet)}) for its {len(self.alphabet)}-character "
                             f"alphabet, got {self.shape}")
        if self.likelihood not in CATEGORICAL:
            raise ValueError(f"ModalitySpec {self.name!r}: a text modality has a likelihood "
                             f"of {CATEGORICAL}, got {self.likelihood!r}")

    @property
    def size(self) -> int:
        """Number of scalar values in one example."""
        return int(np.prod(self.shape))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (used in `.keras` configs and ONNX manifests)."""
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["value_range"] = list(self.value_range)
        if not self.alphabet:  # keeps the dicts (and cache keys) of other kinds unchanged
            del d["alphabet"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModalitySpec":
        """Inverse of `to_dict`."""
        return cls(**{**d, "shape": tuple(d["shape"]), "value_range": tuple(d["value_range"])})


@dataclasses.dataclass
class PairedSplit:
    """One split (train or test) of a paired multimodal dataset.

    Attributes:
      instances: modality -> array (N_m, *shape) of unique examples. uint8 arrays hold images
        in 0..255 (the pipeline divides by 255); float32 arrays are used as they are.
      labels: modality -> int array (N_m,) of class labels of those instances.
      pairs: int32 array (P, M): row p pairs instance pairs[p, k] of modality k (columns in
        the dataset's modality order).
      unpaired: modality -> int32 indices into `instances[m]` forming the unimodal pool used
        by `--unpaired=pool` (every instance of that modality, including unpaired extras).
    """

    instances: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    pairs: np.ndarray
    unpaired: dict[str, np.ndarray]

    @property
    def num_pairs(self) -> int:
        return int(self.pairs.shape[0])

    def pair_labels(self) -> np.ndarray:
        """Label of every pair (the label of its first modality's instance)."""
        first = next(iter(self.labels))
        return self.labels[first][self.pairs[:, 0]]


@dataclasses.dataclass
class PairedDataset:
    """A named multimodal dataset: its modality specs (in model order) and two splits.

    `redraw` maps a text modality to the rule (`data.text.WordRule`) with which the training
    pipeline draws that modality afresh for every example from its label; its stored
    instances are one fixed drawing, used by evaluation.
    """

    name: str
    specs: tuple[ModalitySpec, ...]
    train: PairedSplit
    test: PairedSplit
    num_classes: int = 10
    redraw: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    def spec(self, modality: str) -> ModalitySpec:
        for s in self.specs:
            if s.name == modality:
                return s
        raise KeyError(f"unknown modality {modality!r}; this dataset has {self.modalities}")

    def split(self, name: str) -> PairedSplit:
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}; expected 'train' or 'test'")
        return getattr(self, name)
