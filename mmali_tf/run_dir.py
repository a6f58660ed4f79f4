"""Run directory: layout, atomic writes, flag compatibility, checkpoints, resume, reloading.

```
run_dir/
  flags.txt                 resolved mmali_tf training flags, one --name=value per line
                            (`--flagfile=run_dir/flags.txt` replays the run)
  run.json                  typed copy of those flags + modality specs (used by load_trained)
                            + how XLA was chosen ("xla": `mmali_tf.xla.Choice.record`)
  checkpoints/ckpt-<step>.* tf.train.CheckpointManager (model, EMA, critics, RNG, optimizers, step)
  checkpoints/manifest.json size + sha256 of each kept checkpoint's files (`checkpoint_check`)
  checkpoints/corrupt/      damaged checkpoints a resume set aside (never deleted)
  tensorboard/              scalars and sample images
  samples/step_<7-digit step>_<modality>.png
  train_log.csv             one row per --log_every steps
  model.keras               final model (written at the end)
```

Every file is written to a temporary name in the same directory and moved into place with
`os.replace`, so a crash never leaves a half-written file under a final name. Checkpoints get
the same guarantee from TensorFlow: the data is written to `<prefix>_temp/` and merged, and only
afterwards does the manager atomically rewrite its `checkpoint` state file, so the state never
names a partial checkpoint (tests/test_run_dir.py simulates both crash points). A checkpoint
damaged later (a cut copy, a failing disk) is found before use (`checkpoint_check`), and
run.json / flags.txt are read through the checks of `run_record`.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any, Mapping, Sequence

from mmali_tf.atomic import atomic_write_text, disk_full
from mmali_tf.flags_text import (flag_value_text, format_flags,  # noqa: F401 (re-exported)
                                 parse_flags_text, shape_flags)

#: Flags compared only by whether they are zero (EMA clones exist iff ema_decay > 0).
_ON_OFF_FLAGS = ("ema_decay",)


# ----------------------------------------------------------------------------- flags.txt
def incompatible_flags(old: Mapping[str, str], new: Mapping[str, Any]) -> list[str]:
    """Names of shape/identity flags whose values differ between a run's flags and `new`."""
    diff = []
    for name in shape_flags(old.get("model", ""), old.get("dataset", "")):
        if name in old and name in new and old[name] != flag_value_text(new[name]):
            diff.append(name)
    for name in _ON_OFF_FLAGS:
        if name in old and name in new and (float(old[name]) > 0) != (float(new[name]) > 0):
            diff.append(name)
    return diff


# ----------------------------------------------------------------------------- layout
@dataclasses.dataclass(frozen=True)
class RunDir:
    """Paths of one run directory (see the module docstring)."""

    root: str

    @property
    def flags_txt(self) -> str:
        return os.path.join(self.root, "flags.txt")

    @property
    def run_json(self) -> str:
        return os.path.join(self.root, "run.json")

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.root, "checkpoints")

    @property
    def tensorboard(self) -> str:
        return os.path.join(self.root, "tensorboard")

    @property
    def samples(self) -> str:
        return os.path.join(self.root, "samples")

    @property
    def train_log(self) -> str:
        return os.path.join(self.root, "train_log.csv")

    @property
    def model_keras(self) -> str:
        return os.path.join(self.root, "model.keras")

    def sample_path(self, step: int, modality: str) -> str:
        return os.path.join(self.samples, f"step_{step:07d}_{modality}.png")

    def read_flags(self) -> dict[str, str] | None:
        """The recorded flags as strings, or None for a fresh directory (ValueError when
        flags.txt or run.json is damaged: `run_record`)."""
        from mmali_tf import run_record

        run_record.read_record(self)
        return run_record.read_flags(self)


def check_compatible(root: str, config: Mapping[str, Any]) -> RunDir:
    """Check (reading only) that `root` can host a run with `config`.

    Raises ValueError naming the differing flags when `root` holds a run whose model, dataset
    or variable shapes differ.
    """
    run = RunDir(root)
    if os.path.exists(root) and not os.path.isdir(root):
        raise ValueError(f"--run_dir={root}: exists and is not a directory")
    old = run.read_flags()
    if old is not None:
        diff = incompatible_flags(old, config)
        if diff:
            changes = ", ".join(f"--{n}={old[n]} (now {flag_value_text(config[n])})"
                                for n in diff)
            raise ValueError(f"--run_dir={root} holds a run with different {changes}; use a "
                             "new --run_dir or the recorded values")
    return run


def prepare(root: str, config: Mapping[str, Any]) -> RunDir:
    """`check_compatible`, then create the sub-directories (nothing is written on error)."""
    run = check_compatible(root, config)
    for d in (run.root, run.checkpoints, run.tensorboard, run.samples):
        os.makedirs(d, exist_ok=True)
    return run


def write_run_files(run: RunDir, config: Mapping[str, Any], specs: Sequence[Any],
                    xla: Mapping[str, Any] | None = None) -> None:
    """Write flags.txt and run.json (typed flags + modality specs + the XLA choice
    `xla.Choice.record()`), both atomically."""
    from mmali_tf import run_record

    atomic_write_text(run.flags_txt, format_flags(config))
    record = run_record.record_of(dict(config), [s.to_dict() for s in specs], xla)
    atomic_write_text(run.run_json, json.dumps(record, indent=1, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- checkpoints
def model_optimizers(model: Any) -> list[tuple[str, Any]]:
    """(attribute name, optimizer) of every *built* Keras optimizer the model holds, sorted."""
    import keras

    found = [(name, obj) for name, obj in vars(model).items()
             if isinstance(obj, keras.optimizers.Optimizer) and obj.built]
    return sorted(found, key=lambda item: item[0])


def keeps_step(step: int, keep_every: int) -> bool:
    """Whether a checkpoint at `step` is kept for good under `--keep_checkpoint_every`."""
    return keep_every > 0 and step % keep_every == 0


def step_kept_manager(keep_every: int) -> type:
    """`tf.train.CheckpointManager`, or with `keep_every` > 0 a subclass whose rotation
    (`max_to_keep`) skips the checkpoints at multiples of `keep_every`: they stay on disk and
    in the manager's state (so `checkpoint_check`'s manifest and `--eval_step` cover them)."""
    import tensorflow as tf

    if keep_every <= 0:
        return tf.train.CheckpointManager
    from mmali_tf.checkpoint_check import step_of

    class StepKeptManager(tf.train.CheckpointManager):
        # TensorFlow's own sweep (`_sweep`, called by `save` between two writes of the state
        # file) rotates every checkpoint; this one rotates only those not kept for good.
        def _sweep(self) -> None:
            rotating = [p for p in self._maybe_delete if not keeps_step(step_of(p), keep_every)]
            for prefix in rotating[:max(len(rotating) - self._max_to_keep, 0)]:
                del self._maybe_delete[prefix]
                for path in glob.glob(glob.escape(prefix) + ".*"):
                    os.remove(path)

    return StepKeptManager


class TrainingCheckpoint:
    """`tf.train.CheckpointManager` over explicit variable lists (Keras 3 models are not tracked
    by `tf.train.Checkpoint` directly): `model.variables` (networks, EMA clones, critics, RNG
    state, spectral-norm vectors), every built optimizer's variables and an int64 step.

    Create it inside the strategy scope, after the model is built and compiled. With
    `optimizers=False` (inference), optimizer state in the files is ignored.
    `restore_directory` (default `directory`) is where `latest` looks: a non-chief worker of a
    multi-worker job saves into a scratch directory but resumes from the chief's checkpoints.
    """

    def __init__(self, directory: str, model: Any, keep: int = 3,
                 optimizers: bool = True, restore_directory: str | None = None,
                 keep_every: int = 0) -> None:
        import tensorflow as tf

        self.directory, self.keep, self.keep_every = directory, keep, keep_every
        self.restore_directory = restore_directory or directory
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step")
        objects: dict[str, Any] = {"model_variables": list(model.variables)}
        if optimizers:
            objects["optimizers"] = {name: list(opt.variables)
                                     for name, opt in model_optimizers(model)}
        self._partial = not optimizers
        self.checkpoint = tf.train.Checkpoint(step=self.step, **objects)
        self.manager = self._new_manager()

    def _new_manager(self) -> Any:
        """The CheckpointManager of `directory` (reads its state file)."""
        return step_kept_manager(self.keep_every)(self.checkpoint, self.directory,
                                                  max_to_keep=self.keep,
                                                  checkpoint_name="ckpt")

    @property
    def latest(self) -> str | None:
        """Path prefix of the newest complete checkpoint (in `restore_directory`), or None."""
        if self.restore_directory != self.directory:
            import tensorflow as tf

            return tf.train.latest_checkpoint(self.restore_directory)
        return self.manager.latest_checkpoint

    def path_for_step(self, step: int) -> str:
        """Path prefix of the kept checkpoint written at `step` (ValueError if none)."""
        kept = {int(p.rsplit("-", 1)[1]): p for p in self.manager.checkpoints}
        if int(step) not in kept:
            raise ValueError(f"no checkpoint for step {step} in {self.directory}; kept steps: "
                             f"{sorted(kept) or 'none'}")
        return kept[int(step)]

    def restore(self, path: str) -> int:
        """Restore `path` into the variables; returns its step. ValueError if it does not fit."""
        import tensorflow as tf

        try:
            status = self.checkpoint.read(path)
            if self._partial:
                status.expect_partial()
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(f"checkpoint {path} does not fit this model ({first[:300]}); was "
                             "it written with other model flags?") from None
        return int(self.step.numpy())

    def check(self, path: str) -> None:
        """ValueError naming `path`, what is wrong with it and the newest intact older step
        when checkpoint `path` is damaged (`checkpoint_check.problem`)."""
        from mmali_tf import checkpoint_check as check

        entry = check.read_manifest(self.restore_directory).get(os.path.basename(path))
        why = check.problem(path, entry)
        if why is None:
            return
        older = check.readable(self.restore_directory, newest=check.step_of(path) - 1).path
        hint = (f"the newest intact one is step {check.step_of(older)}" if older else
                "no older checkpoint is intact")
        raise ValueError(f"checkpoint {path} is damaged: {why}; {hint} (select a step, or "
                         "rerun training, which falls back to it)")

    def resume(self) -> tuple[int, str]:
        """Restore the newest intact checkpoint of `restore_directory` for training: (its step,
        the one-line "Resuming from ..." message), or (0, "") when there is none.

        Newer damaged checkpoints are named in the message and, in a directory this process
        owns (not a non-chief worker's view of the chief's), moved to `corrupt/`.
        ValueError when checkpoints exist but none is intact (nothing is moved then).
        """
        from mmali_tf import checkpoint_check as check

        choice = check.readable(self.restore_directory)
        if choice.path is None:
            if choice.damaged:
                raise ValueError(f"no intact checkpoint in {self.restore_directory} "
                                 f"({choice.describe()}); the files are left in place: move "
                                 "them away to start the run over")
            return 0, ""
        step = self.restore(choice.path)
        message = f"Resuming from step {step} ({choice.path})"
        if choice.damaged:
            message += f": newer checkpoint damaged, {choice.describe()}"
            if self.restore_directory == self.directory:
                moved = check.set_aside(self.directory, choice)
                self.manager = self._new_manager()
                message += f"; moved to {', '.join(moved)}"
        return step, message

    def save(self, step: int) -> str:
        """Write checkpoint `ckpt-<step>` (data first, then the manager's state, atomically),
        then its sizes and digests (`checkpoint_check.record`). A full disk raises
        DiskFullError after removing this save's partial files; older checkpoints stay."""
        from mmali_tf import checkpoint_check

        self.step.assign(int(step))
        prefix = os.path.join(self.directory, f"ckpt-{int(step)}")
        try:
            path = self.manager.save(checkpoint_number=int(step))
        except Exception as error:
            full = disk_full(error, prefix)
            if full is None:
                raise
            self._remove_unrecorded(prefix)
            raise full from None
        checkpoint_check.record(self.directory, path, self.manager.checkpoints)
        return path

    def _remove_unrecorded(self, prefix: str) -> None:
        """Delete what a failed save of `prefix` left (its `_temp` folder, and its files
        unless the state file names it)."""
        import shutil

        import tensorflow as tf

        for temp in glob.glob(glob.escape(prefix) + "_temp*"):
            shutil.rmtree(temp, ignore_errors=True)
        if tf.train.latest_checkpoint(self.directory) != prefix:
            for path in glob.glob(glob.escape(prefix) + ".*"):
                os.remove(path)


# ----------------------------------------------------------------------------- reloading
@dataclasses.dataclass
class TrainedRun:
    """A trained model restored from a run directory."""

    model: Any
    config: dict[str, Any]
    step: int
    dataset_name: str
    checkpoint_path: str


def rebuild(run_dir: str) -> tuple[Any, dict[str, Any]]:
    """The model recorded in `run_dir`'s run.json, built but not restored, and its config."""
    from mmali_tf import flags as flags_lib
    from mmali_tf import models, run_record
    from mmali_tf.config import RunSettings
    from mmali_tf.data.specs import ModalitySpec

    run = RunDir(run_dir)
    record = run_record.read_record(run)
    if record is None:
        raise FileNotFoundError(f"--run_dir={run_dir}: no run.json; not a training run "
                                "directory (train with python -m mmali_tf.train first)")
    config = dict(record["config"])
    flags_lib.load_plugins(RunSettings.from_config(config).plugins)
    try:
        specs = [ModalitySpec.from_dict(d) for d in record["specs"]]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{run.run_json} is damaged: a modality spec is unreadable "
                         f"({type(error).__name__}: {error}); restore it") from None
    model = models.build(config["model"], specs, config)
    model.build_from_specs()
    return model, config


def load_trained(run_dir: str, step: int | None = None) -> TrainedRun:
    """Rebuild the model recorded in `run_dir` and restore its latest (or step `step`) checkpoint.

    Inference uses the EMA networks by default when the run trained with EMA
    (`model.encode(..., ema=False)` selects the raw ones).
    """
    from mmali_tf import checkpoint_check

    run = RunDir(run_dir)
    model, config = rebuild(run_dir)
    ckpt = TrainingCheckpoint(run.checkpoints, model, optimizers=False)
    if step is None:
        path = next(iter(checkpoint_check.candidates(run.checkpoints)), None)
    else:
        path = ckpt.path_for_step(step)
    if path is None:
        raise FileNotFoundError(f"--run_dir={run_dir}: no checkpoint in {run.checkpoints}")
    ckpt.check(path)
    restored = ckpt.restore(path)
    return TrainedRun(model=model, config=config, step=restored,
                      dataset_name=str(config["dataset"]), checkpoint_path=path)
