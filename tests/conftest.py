"""Shared pytest fixtures: a tiny in-memory paired dataset and quiet, deterministic TF."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import pytest

from mmali_tf.data.specs import ModalitySpec, PairedDataset, PairedSplit

HAND = ModalitySpec("hand", (28, 28, 1), "image", "mnist_mlp")
PRINT = ModalitySpec("print", (32, 32, 3), "image", "svhn_conv")


def _class_images(rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 images whose mean brightness pattern depends on the class (learnable, tiny)."""
    h, w = shape[0], shape[1]
    out = rng.integers(0, 40, size=(len(labels),) + shape, dtype=np.int64)
    for i, y in enumerate(labels):
        r0 = (int(y) * h) // 10
        out[i, r0:r0 + max(2, h // 10)] += 200
    return np.clip(out, 0, 255).astype(np.uint8)


def make_toy_split(rng: np.random.Generator, specs, n_per_class: int, dm: int) -> PairedSplit:
    """A paired split: n_per_class instances per class per modality, paired dm times by class."""
    labels = np.repeat(np.arange(10), n_per_class)
    instances = {s.name: _class_images(rng, labels, s.shape) for s in specs}
    rows = []
    for _ in range(dm):
        for c in range(10):
            idx = np.flatnonzero(labels == c)
            rows.append(np.stack([rng.permutation(idx) for _ in specs], axis=1))
    pairs = np.concatenate(rows).astype(np.int32)
    return PairedSplit(instances=instances, labels={s.name: labels.copy() for s in specs},
                       pairs=pairs,
                       unpaired={s.name: np.arange(len(labels), dtype=np.int32) for s in specs})


def make_toy_dataset(specs=(HAND, PRINT), n_per_class: int = 8, dm: int = 3,
                     seed: int = 0) -> PairedDataset:
    """Tiny deterministic PairedDataset for model, metric and export tests."""
    rng = np.random.default_rng(seed)
    return PairedDataset(name="toy", specs=tuple(specs),
                         train=make_toy_split(rng, specs, n_per_class, dm),
                         test=make_toy_split(rng, specs, max(2, n_per_class // 2), 1))


def train_recon_curve(model, ds: PairedDataset, batch_size: int, steps: int,
                      seed: int = 0) -> list[float]:
    """Run `steps` graph-mode train steps on random toy batches; assert every logged value is
    finite; return the per-step `recon` term (each step's own value, trackers reset)."""
    import tensorflow as tf

    step = tf.function(model.train_step)
    rng = np.random.default_rng(seed)
    recon = []
    for _ in range(steps):
        rows = ds.train.pairs[rng.integers(0, ds.train.num_pairs, batch_size)]
        batch = {s.name: tf.constant(ds.train.instances[s.name][rows[:, i]] / 255.0, tf.float32)
                 for i, s in enumerate(ds.specs)}
        for t in model.metrics:
            t.reset_state()
        logs = {k: float(v) for k, v in step(batch).items()}
        assert all(np.isfinite(v) for v in logs.values()), logs
        recon.append(logs["recon"])
    return recon


@pytest.fixture
def toy_dataset() -> PairedDataset:
    return make_toy_dataset()
