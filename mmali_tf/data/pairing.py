"""Many-to-many pairing by class (Shi et al. 2019, sec. 4; 6b5d/mmali datasets.py), per-class subsets and unpaired pools.

Every modality's instances are sorted stably by label; for each class l the first n_l indices
of each modality are kept, and `dm` times an independent random permutation of every
modality's kept list is appended; the lists are zipped position-wise. With `cover_all`, n_l is
the largest modality's count instead of the smallest, and a smaller modality's list is
lengthened with random repeats of its own instances, so every instance enters a pair. With the same label
array for every modality (MultiMNIST views) this is exactly 6b5d/mmali datasets.py `MultiMNIST`: each view is an
independent same-class permutation of the same base images.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from mmali_tf.data.specs import PairedSplit
from mmali_tf.data.settings import PairingSettings


@dataclasses.dataclass(frozen=True)
class PairingRule:
    """How many instances per class enter the pairing, and how often each is repeated.

    Attributes:
      dm: data multiplication (independent permutations per class).
      max_per_class: max_d, cap of n_l when `use_all` is off.
      percentage: fraction p of each class's instances that may be used.
      use_all: n_l = min_m floor(p * count_m(l)) (no cap); otherwise
        n_l = min(min_m floor(p * count_m(l)), max_per_class). At p = 1 the second rule is the
        reference's default rule; p < 1 without use_all keeps the same fraction and the cap.
      cover_all: max_m instead of min_m in both rules (our extension: no instance of a larger
        modality is left out of the pairs).
    """

    dm: int = 30
    max_per_class: int = 10000
    percentage: float = 1.0
    use_all: bool = False
    cover_all: bool = False

    def __post_init__(self) -> None:
        if self.dm < 1:
            raise ValueError(f"data_multiplication must be >= 1, got {self.dm}")
        if self.max_per_class < 1:
            raise ValueError(f"max_per_class must be >= 1, got {self.max_per_class}")
        if not 0.0 < self.percentage <= 1.0:
            raise ValueError(f"percentage must be in (0, 1], got {self.percentage}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "PairingRule":
        """Training-split rule from the flag values."""
        settings = PairingSettings.from_config(config)
        return cls(dm=settings.data_multiplication, max_per_class=settings.max_per_class,
                   percentage=settings.percentage, use_all=settings.use_all,
                   cover_all=settings.pair_all_instances)

    def for_test(self) -> "PairingRule":
        """Test-split rule: every instance (use_all at p = 1) with the same dm."""
        return PairingRule(dm=self.dm, max_per_class=self.max_per_class, percentage=1.0,
                           use_all=True, cover_all=self.cover_all)

    def class_size(self, counts: Sequence[int]) -> int:
        """n_l for one class given every modality's count of that class."""
        kept = [int(self.percentage * c) for c in counts]
        n = max(kept) if self.cover_all and min(kept) > 0 else min(kept)
        return n if self.use_all else min(n, self.max_per_class)


def class_sizes(labels: Sequence[np.ndarray], rule: PairingRule,
                num_classes: int) -> np.ndarray:
    """n_l of every class (int64 array of length num_classes)."""
    return np.array([rule.class_size([int(np.sum(y == c)) for y in labels])
                     for c in range(num_classes)], dtype=np.int64)


def pair_by_class(labels: Sequence[np.ndarray], rule: PairingRule, rng: np.random.Generator,
                  num_classes: int = 10) -> np.ndarray:
    """Pairs (P, M) int32 of indices into each modality, P = dm * sum_l n_l.

    `labels[k]` holds modality k's instance labels. The rows are returned in a random order
    (the set of rows is the reference's), so any prefix is a uniform sample of the pairs.
    """
    if not labels:
        raise ValueError("pair_by_class needs at least one modality")
    sizes = class_sizes(labels, rule, num_classes)
    if sizes.sum() == 0:
        raise ValueError(f"no pairs: every class has n_l = 0 (per-class counts "
                         f"{[np.bincount(y, minlength=num_classes).tolist() for y in labels]}, "
                         f"{rule})")
    sorted_idx = [np.argsort(y, kind="stable") for y in labels]
    blocks = []
    for c in range(num_classes):
        n = int(sizes[c])
        if n == 0:
            continue
        kept = [_lengthened(order[np.asarray(y)[order] == c][:n], n, rng)
                for order, y in zip(sorted_idx, labels)]
        for _ in range(rule.dm):
            blocks.append(np.stack([rng.permutation(k) for k in kept], axis=1))
    pairs = np.concatenate(blocks).astype(np.int32)
    return pairs[rng.permutation(len(pairs))]


def _lengthened(indices: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`indices` followed by random repeats of them (whole permutations first) up to length n."""
    if len(indices) >= n:
        return indices
    repeats = [rng.permutation(indices) for _ in range(-(-(n - len(indices)) // len(indices)))]
    return np.concatenate([indices, *repeats])[:n]


def build_split(instances: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                rule: PairingRule, rng: np.random.Generator,
                num_classes: int = 10) -> PairedSplit:
    """A PairedSplit (modality order = order of `instances`) paired by class with `rule`."""
    labels = {m: np.asarray(labels[m]).astype(np.int32) for m in instances}
    pairs = pair_by_class([labels[m] for m in instances], rule, rng, num_classes)
    return PairedSplit(instances=dict(instances), labels=labels, pairs=pairs,
                       unpaired=full_pool(instances))


def full_pool(instances: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Unpaired pools holding every instance of each modality."""
    return {m: np.arange(len(x), dtype=np.int32) for m, x in instances.items()}


def stratified_split(labels: np.ndarray, test_fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx), sorted, taking round(test_fraction * count) of every class."""
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def pairing_rng(seed: int, split: str) -> np.random.Generator:
    """The permutation rng of one split; depends on the training seed only."""
    return np.random.default_rng([int(seed), 0 if split == "train" else 1])
