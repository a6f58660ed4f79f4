"""Shared pytest fixtures: a tiny in-memory paired dataset, quiet deterministic TF, and one
exported mmALI bundle per test session (export takes seconds; tests copy it to alter it)."""

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
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def digits_config_value(model: str, flag: str) -> str | None:
    """The last `--flag=value` of configs/digits_<model>.cfg (every registered model has
    one), or None when the config leaves the flag at its default."""
    with open(os.path.join(ROOT, "configs", f"digits_{model}.cfg"), encoding="utf-8") as f:
        found = [line.strip().split("=", 1)[1] for line in f
                 if line.startswith(f"--{flag}=")]
    return found[-1] if found else None


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


def compiled_model(name: str, specs, config: dict, **overrides):
    """Registered model `name` built for `specs` with `config` updated by `overrides`,
    compiled without XLA (the new-model unit tests' common setup)."""
    from mmali_tf.models import build

    model = build(name, specs, {**config, **overrides})
    model.build_from_specs()
    model.compile(jit_compile=False)
    return model


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


#: graphs of the session's shared bundle (a subset keeps the export short).
BUNDLE_GRAPHS = ["encoder_hand", "encoder_print", "decoder_hand", "decoder_print",
                 "fuse_geometric", "translate_hand_to_print", "reconstruct_hand", "generate"]


def _export_mmali_bundle(tmp_path_factory, folder: str, ema_decay: float, **export_kwargs):
    """A random-init digits-shaped mmALI bundle (latent 8 = style 3 + content 5)."""
    from mmali_tf.export.onnx_export import export_bundle
    from mmali_tf import models

    model = models.build("mmali", [HAND, PRINT], {"latent_dim": 8, "style_dim": 3,
                                                  "ema_decay": ema_decay, "seed": 0})
    model.build_from_specs()
    path = tmp_path_factory.mktemp(folder) / "bundle"
    export_bundle(model, path, **export_kwargs)
    return path


@pytest.fixture(scope="session")
def bundle_path(tmp_path_factory):
    """A stochastic mmALI bundle exported once per session.

    Read-only: tests that alter a bundle copy it first.
    """
    return _export_mmali_bundle(tmp_path_factory, "shared_bundle", 0.99,
                                graphs=BUNDLE_GRAPHS, checkpoint_step=5)


@pytest.fixture(scope="session")
def translate_bundle(tmp_path_factory):
    """A bundle with both translate graphs (random init: the runtime tests compare engines on
    the same graphs, which holds for any weights), exported once per session."""
    return _export_mmali_bundle(tmp_path_factory, "translate_bundle", 0.0, weights="raw",
                                graphs=["translate_hand_to_print", "translate_print_to_hand"])
