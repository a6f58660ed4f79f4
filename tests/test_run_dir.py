"""Run directory: atomic writes, checkpoints (incl. simulated crashes), resume, NaN guard.

Uses a tiny MultimodalModel (`ToyModel`, also used by tests/test_train_cli.py through
`install_toys`) on conftest's toy dataset, trained in-process through `mmali_tf.train`.
"""

from __future__ import annotations

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management

import mmali_tf.data
from mmali_tf import atomic, registry, run_dir, train
from mmali_tf.data.specs import ModalitySpec
from mmali_tf.models.base import MultimodalModel
from mmali_tf.models.optimizers import attach_optimizers

from conftest import make_toy_dataset

SMALL_HAND = ModalitySpec("hand", (6, 6, 1), "image", "mnist_mlp")
SMALL_PRINT = ModalitySpec("print", (4, 4, 3), "image", "svhn_conv")


class ToyModel(MultimodalModel):
    """Linear encoders/decoders, one Adam (`g_optimizer`), Gaussian reconstruction loss."""

    registry_name = "toy"
    #: the loss becomes NaN from this 1-based step on (0: never).
    nan_from_step = 0

    def build_networks(self) -> None:
        d = self.layout.latent_dim
        for s in self.specs:
            self.encoders[s.name] = keras.Sequential(
                [keras.Input(s.shape), keras.layers.Flatten(), keras.layers.Dense(2 * d)],
                name=f"toy_enc_{s.name}")
            self.decoders[s.name] = keras.Sequential(
                [keras.Input((d,)), keras.layers.Dense(s.size, activation="sigmoid"),
                 keras.layers.Reshape(s.shape)], name=f"toy_dec_{s.name}")
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self) -> list:
        return [self.loss_tracker]

    def compile(self, jit_compile: bool = False, **kwargs) -> None:
        attach_optimizers(self, self.settings, {"g_optimizer": lambda: self.generator_variables},
                          {"g_optimizer": None})
        super().compile(optimizer=None, jit_compile=jit_compile, **kwargs)

    def train_step(self, data):
        variables = self.generator_variables
        with tf.GradientTape() as tape:
            loss = 0.0
            for m in self.modalities:
                mean, logvar = self.encode(m, data[m], ema=False)
                z = self.sample_posterior(mean, logvar)
                loss += tf.reduce_mean(tf.square(self.decoders[m](z, training=True) - data[m]))
            if self.nan_from_step:
                step = self.g_optimizer.iterations + 1
                loss *= tf.where(step >= self.nan_from_step, float("nan"), 1.0)
            scaled = self.distribute_scale(loss)
        self.g_optimizer.apply(tape.gradient(scaled, variables), variables)
        self.update_ema()
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


class ToyNaNModel(ToyModel):
    """ToyModel whose loss is NaN from step 5 on."""

    nan_from_step = 5


def toy_dataset(name: str = "digits", config=None):
    return make_toy_dataset(specs=(SMALL_HAND, SMALL_PRINT), n_per_class=2, dm=2)


#: registry entries that route --model=mvae / jmvae to ToyModel / ToyNaNModel.
TOY_ENTRIES = {"mvae": registry.Entry("model", "mvae", __name__, "ToyModel"),
               "jmvae": registry.Entry("model", "jmvae", __name__, "ToyNaNModel")}


def install_toys() -> None:
    """Route --model=mvae / jmvae to ToyModel / ToyNaNModel and every dataset to the toy one
    (used in-process by monkeypatch and in subprocesses by tests/test_train_cli.py)."""
    registry.entries("model").update(TOY_ENTRIES)
    mmali_tf.data.load = toy_dataset


@pytest.fixture
def toys(monkeypatch):
    for name, entry in TOY_ENTRIES.items():
        monkeypatch.setitem(registry.entries("model"), name, entry)
    monkeypatch.setattr(mmali_tf.data, "load", toy_dataset)


def toy_config(tmp_path, **overrides) -> dict:
    """Default training flag values (as the CLI resolves them) for a tiny toy run."""
    from absl import flags
    from mmali_tf import flags as flags_lib

    flags_lib.define_train_flags()
    cfg = {n: flags.FLAGS[n].default for n in flags_lib.train_flag_names()}
    cfg.update(run_dir=str(tmp_path / "run"), model="mvae", batch_size=8, max_steps=6,
               checkpoint_every=3, log_every=4, sample_every=0, jit_compile=False,
               latent_dim=4, style_dim=1, ema_decay=0.99, ema_start=0, lr=1e-3)
    cfg.update(overrides)
    return cfg


def build_toy(cfg) -> ToyModel:
    model = ToyModel([SMALL_HAND, SMALL_PRINT], cfg)
    model.build_from_specs()
    model.compile()
    return model


# ----------------------------------------------------------------------------- atomic files
def test_atomic_write_replaces_and_failure_keeps_old(tmp_path):
    path = str(tmp_path / "a" / "flags.txt")
    atomic.atomic_write_text(path, "one\n")
    atomic.atomic_write_text(path, "two\n")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("crash while writing")
    assert open(path).read() == "two\n"
    assert os.listdir(tmp_path / "a") == ["flags.txt"]


def test_incompatible_flags_only_shape_and_identity():
    old = run_dir.parse_flags_text(run_dir.format_flags(
        {"model": "mmali", "latent_dim": 20, "deterministic": False, "ema_decay": 0.999,
         "lr": 2e-4, "max_steps": 100}))
    same_shape = {"model": "mmali", "latent_dim": 20, "deterministic": False,
                  "ema_decay": 0.9, "lr": 1e-3, "max_steps": 500}
    assert run_dir.incompatible_flags(old, same_shape) == []
    changed = {**same_shape, "latent_dim": 32, "deterministic": True, "ema_decay": 0.0}
    assert run_dir.incompatible_flags(old, changed) == ["latent_dim", "deterministic", "ema_decay"]


# ----------------------------------------------------------------------------- checkpoints
def _train_one_step(model: ToyModel) -> None:
    batch = {m: tf.random.stateless_uniform((8,) + model.specs[i].shape, seed=(i, 1))
             for i, m in enumerate(model.modalities)}
    model.train_step(batch)


def test_checkpoint_roundtrip_includes_optimizer_ema_and_rng(tmp_path):
    cfg = toy_config(tmp_path)
    model = build_toy(cfg)
    for _ in range(3):
        _train_one_step(model)
    ckpt = run_dir.TrainingCheckpoint(str(tmp_path / "ck"), model)
    path = ckpt.save(3)
    assert path.endswith("ckpt-3")
    saved = [v.numpy().copy() for v in model.variables]
    fresh = build_toy(cfg)
    restored = run_dir.TrainingCheckpoint(str(tmp_path / "ck"), fresh)
    assert restored.restore(restored.latest) == 3
    assert int(fresh.g_optimizer.iterations.numpy()) == 3
    for a, b in zip(saved, fresh.variables):
        np.testing.assert_array_equal(a, b.numpy())
    # EMA clones and the SeedGenerator state are part of model.variables
    paths = [v.path for v in fresh.variables]
    assert any("seed_generator" in p for p in paths)
    assert len(fresh.variables) > 2 * len(fresh.generator_variables)


def test_checkpoint_of_other_shape_is_a_one_line_value_error(tmp_path):
    model = build_toy(toy_config(tmp_path))
    run_dir.TrainingCheckpoint(str(tmp_path / "ck"), model).save(1)
    other = build_toy(toy_config(tmp_path, latent_dim=6))
    ckpt = run_dir.TrainingCheckpoint(str(tmp_path / "ck"), other)
    with pytest.raises(ValueError, match="does not fit this model"):
        ckpt.restore(ckpt.latest)


def test_crash_during_checkpoint_save_keeps_previous_loadable(tmp_path, monkeypatch):
    cfg = toy_config(tmp_path)
    model = build_toy(cfg)
    directory = str(tmp_path / "ck")
    ckpt = run_dir.TrainingCheckpoint(directory, model)
    _train_one_step(model)
    ckpt.save(1)
    good = [v.numpy().copy() for v in model.variables]
    _train_one_step(model)

    # crash 1: the data files are complete but the process dies before the state update
    def die(*args, **kwargs):
        raise OSError("simulated crash before the checkpoint state is recorded")

    monkeypatch.setattr(checkpoint_management, "update_checkpoint_state_internal", die)
    with pytest.raises(OSError):
        ckpt.save(2)
    monkeypatch.undo()
    assert glob.glob(os.path.join(directory, "ckpt-2.index"))

    # crash 2: the process dies halfway through writing the data of the next checkpoint
    def partial_write(self, prefix, options=None):
        with open(prefix + ".index", "wb") as f:
            f.write(b"\x00truncated")
        with open(prefix + ".data-00000-of-00001", "wb") as f:
            f.write(b"\x00" * 7)
        raise OSError("simulated crash while writing checkpoint data")

    monkeypatch.setattr(tf.train.Checkpoint, "_write", partial_write)
    with pytest.raises(OSError):
        ckpt.save(3)
    monkeypatch.undo()

    fresh = build_toy(cfg)
    reopened = run_dir.TrainingCheckpoint(directory, fresh)
    assert reopened.latest == os.path.join(directory, "ckpt-1")
    assert reopened.restore(reopened.latest) == 1
    for a, b in zip(good, fresh.variables):
        np.testing.assert_array_equal(a, b.numpy())
    # the next regular save after the crash overwrites the orphans and becomes the latest
    _train_one_step(fresh)
    assert reopened.save(2).endswith("ckpt-2")
    assert run_dir.TrainingCheckpoint(directory, build_toy(cfg)).latest.endswith("ckpt-2")


def _kept_steps(directory: str) -> list[int]:
    return sorted(int(p.rsplit("-", 1)[1][:-len(".index")])
                  for p in glob.glob(os.path.join(directory, "ckpt-*.index")))


def test_checkpoints_at_multiples_of_keep_every_are_kept_and_the_rest_rotate(tmp_path):
    from mmali_tf import checkpoint_check

    model = build_toy(toy_config(tmp_path))
    directory = str(tmp_path / "ck")
    ckpt = run_dir.TrainingCheckpoint(directory, model, keep=2, keep_every=3)
    for step in range(1, 9):
        ckpt.save(step)
    assert _kept_steps(directory) == [3, 6, 7, 8]
    listed = [checkpoint_check.step_of(p) for p in ckpt.manager.checkpoints]
    assert listed == [3, 6, 7, 8]
    assert sorted(checkpoint_check.read_manifest(directory)) == [
        f"ckpt-{s}" for s in (3, 6, 7, 8)]
    # a reopened manager (a resumed run) knows the kept ones and goes on rotating the rest
    reopened = run_dir.TrainingCheckpoint(directory, build_toy(toy_config(tmp_path)), keep=2,
                                          keep_every=3)
    assert reopened.path_for_step(3).endswith("ckpt-3")
    for step in (9, 10, 11):
        reopened.save(step)
    assert _kept_steps(directory) == [3, 6, 9, 10, 11]
    assert checkpoint_check.readable(directory).path.endswith("ckpt-11")
    assert checkpoint_check.problem(reopened.path_for_step(6), checkpoint_check.read_manifest(
        directory)["ckpt-6"]) is None
    # keep_every=0: plain rotation
    plain = str(tmp_path / "plain")
    rotating = run_dir.TrainingCheckpoint(plain, model, keep=2)
    for step in range(1, 7):
        rotating.save(step)
    assert _kept_steps(plain) == [5, 6]


def test_training_keeps_checkpoints_at_multiples_of_keep_checkpoint_every(tmp_path, toys):
    cfg = toy_config(tmp_path, max_steps=9, checkpoint_every=1, keep_checkpoints=2,
                     keep_checkpoint_every=4)
    train.train(cfg, verbose=0)
    checkpoints = run_dir.RunDir(cfg["run_dir"]).checkpoints
    assert _kept_steps(checkpoints) == [4, 7, 8, 9]  # 2 rotating (7, 9) besides 4, 8
    assert run_dir.load_trained(cfg["run_dir"], step=4).step == 4


# ----------------------------------------------------------------------------- driver
def test_resume_continues_exactly_where_the_run_stopped(tmp_path, toys, capsys):
    """6 steps, stop, rerun to 9 == 9 uninterrupted steps: resume restores the step, the data
    position, the RNG state, the optimizer and the EMA (bit-for-bit up to float noise)."""
    cfg = toy_config(tmp_path / "split")
    first = train.train(cfg, verbose=0)
    assert (first.start_step, first.final_step, first.diverged) == (0, 6, "")
    run = run_dir.RunDir(cfg["run_dir"])
    assert sorted(os.listdir(run.checkpoints)) == sorted(
        ["checkpoint", "manifest.json"] + [f"ckpt-{s}.{e}" for s in (3, 6) for e in
                          ("index", "data-00000-of-00001")])
    assert os.path.exists(run.model_keras) and os.path.exists(run.run_json)
    lines = open(run.flags_txt).read().splitlines()
    assert "--max_steps=6" in lines and "--jit_compile=false" in lines
    assert all(line.startswith("--") and "=" in line for line in lines)

    second = train.train({**cfg, "max_steps": 9}, verbose=0)
    out = capsys.readouterr().out
    assert f"Resuming from step 6 ({os.path.join(run.checkpoints, 'ckpt-6')})" in out
    assert (second.start_step, second.final_step) == (6, 9)
    assert "--max_steps=9" in open(run.flags_txt).read().splitlines()
    # log rows at every 4-step window plus the shorter tails (6 and 9), aligned after resume
    steps = [int(r.split(",")[0]) for r in open(run.train_log).read().splitlines()[1:]]
    assert steps == [4, 6, 8, 9]
    # a full training restore sees step 9 and 9 optimizer updates
    session = train.prepare({**cfg, "max_steps": 9})
    assert session.start_step == 9
    assert int(session.model.g_optimizer.iterations.numpy()) == 9

    straight = toy_config(tmp_path / "straight", max_steps=9)
    train.train(straight, verbose=0)
    a = run_dir.load_trained(straight["run_dir"])
    b = run_dir.load_trained(cfg["run_dir"])
    assert a.step == b.step == 9 and b.checkpoint_path.endswith("ckpt-9")
    assert b.dataset_name == "digits" and b.config["max_steps"] == 9
    for va, vb, vs in zip(a.model.variables, b.model.variables, session.model.variables):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(vb.numpy(), vs.numpy())


def test_only_the_chief_writes_the_run_dir():
    from types import SimpleNamespace

    from mmali_tf import distribute

    def strategy(task_type, task_id, jobs):
        spec = SimpleNamespace(as_dict=lambda: {j: ["localhost:1"] for j in jobs})
        return SimpleNamespace(cluster_resolver=SimpleNamespace(
            task_type=task_type, task_id=task_id, cluster_spec=lambda: spec))

    assert distribute.worker_suffix(tf.distribute.get_strategy()) is None
    assert distribute.worker_suffix(strategy("worker", 0, ["worker"])) is None
    assert distribute.worker_suffix(strategy("chief", 0, ["chief", "worker"])) is None
    assert distribute.worker_suffix(strategy("worker", 0, ["chief", "worker"])) == "worker_0"
    assert distribute.worker_suffix(strategy("worker", 2, ["worker"])) == "worker_2"


def test_saver_refuses_to_checkpoint_nonfinite_weights(tmp_path, capsys):
    from mmali_tf import callbacks as cb

    model = build_toy(toy_config(tmp_path))
    ckpt = run_dir.TrainingCheckpoint(str(tmp_path / "ck"), model)
    clock = cb.TrainClock(step=7, max_steps=10)
    guard = cb.NaNGuard(clock, lambda: ckpt.latest)
    saver = cb.CheckpointSaver(ckpt, clock, every=1, guard=guard)
    for callback in (guard, saver):
        callback.set_model(model)
    assert saver.save().endswith("ckpt-7")
    kernel = model.decoders["hand"].trainable_variables[0]
    kernel.assign(tf.fill(kernel.shape, float("nan")))
    clock.step = 8
    assert saver.save() is None
    assert guard.tripped[:2] == (f"variable {kernel.path}", 8) and model.stop_training
    assert "the last good checkpoint" in capsys.readouterr().out
    assert ckpt.latest.endswith("ckpt-7")
