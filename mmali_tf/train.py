"""Training entry point: `python -m mmali_tf.train --flagfile=configs/<exp>.cfg [--flag=value ...]`.

flags -> strategy -> run directory check -> data.load -> models.build/compile (in the strategy
scope) -> restore the newest intact checkpoint (resume) -> XLA on or off (`mmali_tf.xla`:
--jit_compile=auto measures) -> Model.fit in chunks of --log_every steps with the callbacks
of `mmali_tf.callbacks` -> final checkpoint + model.keras.

Flag parsing imports absl only, so usage errors are reported in a fraction of a second as one
line (`error: ...`, exit code 2). A NaN/Inf loss stops training with exit code 1, keeping the
last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags as absl_flags
from absl import logging as absl_logging

from mmali_tf import cli
from mmali_tf.cli import quiet_tf
from mmali_tf import flags as flags_lib
from mmali_tf.config import DataSettings, RunSettings

DIVERGED_EXIT_CODE = 1
FIXED_SAMPLES = 16


@dataclasses.dataclass
class TrainResult:
    """What one invocation did."""

    run_dir: str
    start_step: int
    final_step: int
    wall_time: float
    checkpoint: str | None
    diverged: str = ""

    @property
    def steps(self) -> int:
        return self.final_step - self.start_step


@dataclasses.dataclass
class TrainSession:
    """A prepared run: everything `fit` needs (built in the strategy scope, restored)."""

    config: dict[str, Any]
    strategy: Any
    run: Any
    dataset: Any
    model: Any
    checkpoint: Any
    start_step: int
    #: a non-chief worker of a multi-worker job runs exactly what the chief runs (saving
    #: takes part in collectives) but writes into a scratch directory, removed after
    #: training; only the chief's files are the run's.
    scratch: bool = False


def config_from_flags() -> dict[str, Any]:
    """The resolved training flags as a plain dict (the model/run `config`)."""
    return {name: flags_lib.FLAGS[name].value for name in flags_lib.train_flag_names()}


def make_config(overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """A complete training config: every training flag's default, then `overrides`/`kwargs`.

    The Python counterpart of a flagfile (`train(make_config(model="mvae", max_steps=100))`):
    plugins named in `plugins` are loaded first; each value goes through its flag's parser
    (types, choices, bounds) and the dataset-flag check, so mistakes raise a one-line
    ValueError naming the key instead of failing later.
    """
    from absl import flags as absl_flags_lib

    values = {**dict(overrides or {}), **kwargs}
    flags_lib.define_train_flags()
    flags_lib.load_plugins(list(values.get("plugins") or []))
    names = flags_lib.train_flag_names()
    config = {name: flags_lib.FLAGS[name].default for name in names}
    for key, value in values.items():
        if key not in config:
            raise flags_lib.FlagUsageError(f"unknown config key {key!r}; it is not a training "
                                           "flag (python -m mmali_tf.train --helpfull)")
        flag = flags_lib.FLAGS[key]
        try:
            if value is None:
                config[key] = None
            elif isinstance(flag, absl_flags_lib.MultiFlag):
                items = [value] if isinstance(value, str) else list(value)
                config[key] = [flag.parser.parse(v) for v in items]
            elif isinstance(value, (list, tuple)):
                config[key] = flag.parser.parse(",".join(str(v) for v in value))
            else:
                config[key] = flag.parser.parse(value)
        except (ValueError, TypeError, absl_flags_lib.Error) as error:
            raise flags_lib.FlagUsageError(f"{key}={value!r}: {error}") from None
    flags_lib.check_dataset_flags(config)
    return config


def prepare(config: Mapping[str, Any], strategy: Any = None) -> TrainSession:
    """Check the run dir, load data, build + compile the model in scope and restore (resume).

    Raises ValueError / FileNotFoundError for user errors; writes flags.txt and run.json only
    after the model and the checkpoint (if any) are known to fit.
    """
    import keras
    import tensorflow as tf

    from mmali_tf import data, distribute, models, run_record, xla
    from mmali_tf import run_dir as run_dir_lib
    from mmali_tf.data import pipeline

    config = dict(config)
    run_settings = RunSettings.from_config(config)
    flags_lib.load_plugins(run_settings.plugins)
    strategy = strategy or tf.distribute.get_strategy()
    suffix = distribute.worker_suffix(strategy)
    if suffix is None:
        run, restore_dir = run_dir_lib.prepare(config["run_dir"], config), None
    else:  # same checks as the chief (so both stop on a bad run dir); writes go to scratch
        restore_dir = run_dir_lib.check_compatible(config["run_dir"], config).checkpoints
        run = run_dir_lib.prepare(tempfile.mkdtemp(prefix=f"mmali_{suffix}_"), config)
    choice = xla.decide(run_settings.jit_compile, strategy,
                        run_record.read_record(run_dir_lib.RunDir(config["run_dir"])))
    dataset = data.load(config["dataset"], config)
    pipeline.check_augment(dataset, DataSettings.from_config(config).augment)
    distribute.check_global_batch(strategy, int(config["batch_size"]))
    keras.utils.set_random_seed(int(config["seed"]))
    with strategy.scope():
        model = models.build(config["model"], dataset.specs, config)
        model.build_from_specs()
        model.compile(jit_compile=choice is not None and choice.jit_compile)
        checkpoint = run_dir_lib.TrainingCheckpoint(
            run.checkpoints, model, keep=1 if suffix else run_settings.keep_checkpoints,
            restore_directory=restore_dir,
            keep_every=0 if suffix else run_settings.keep_checkpoint_every)
        start, message = checkpoint.resume()
        if message:
            print(message, flush=True)
        if choice is None:
            choice = xla.measure(model, train_batches(config, dataset, model, start), strategy,
                                 start)
    line = choice.describe(run_settings.jit_compile)
    if line:
        print(line, flush=True)
    if suffix is None:
        run_dir_lib.write_run_files(run, config, dataset.specs, xla=choice.record())
    return TrainSession(config, strategy, run, dataset, model, checkpoint, start,
                        scratch=suffix is not None)


def train_batches(config: Mapping[str, Any], dataset: Any, model: Any, start_step: int) -> Any:
    """The run's training stream from `start_step` (the same for every call)."""
    from mmali_tf.data import pipeline

    return pipeline.train_batches(
        dataset, int(config["batch_size"]), int(model.draws_per_step), int(config["seed"]),
        start_step=start_step, unpaired_pool=config["unpaired"] == "pool",
        augment=tuple(config["augment"]))


def _fixed_inputs(session: TrainSession) -> tuple[dict[str, Any], Any]:
    """Up to 16 test pairs and fixed prior noise for the sample grids (same every run)."""
    import keras

    from mmali_tf.data import pipeline

    batch = next(iter(pipeline.eval_batches(session.dataset, "test", FIXED_SAMPLES)))
    batch = {k: v.numpy() for k, v in batch.items()}
    n = len(next(iter(batch.values())))
    noise_seed = keras.random.SeedGenerator(int(session.config["seed"]) + 1)
    noise = {m: z.numpy() for m, z in session.model.sample_prior(n, seed=noise_seed).items()}
    return batch, noise


def _chunk(step: int, max_steps: int, log_every: int) -> tuple[int, int, int]:
    """(initial_epoch, epochs, steps_per_epoch) of the next fit() call starting at `step`.

    A resume at a step that is not a multiple of `log_every` first runs a short fit() up to the
    next multiple, so logged windows stay aligned; the final window may be shorter (the step
    clock stops training exactly at `max_steps`).
    """
    first = step // log_every
    if step % log_every:
        return first, first + 1, min(max_steps, (first + 1) * log_every) - step
    return first, math.ceil(max_steps / log_every), log_every


def _callbacks(session: TrainSession, clock: Any, writer: Any) -> dict[str, Any]:
    """The driver's callbacks by role, in the order Keras must call them."""
    from mmali_tf import callbacks as cb

    cfg, ckpt = session.config, session.checkpoint
    out: dict[str, Any] = {"clock": cb.StepClock(clock)}
    out["guard"] = cb.NaNGuard(clock, lambda: ckpt.latest)
    out["saver"] = cb.CheckpointSaver(ckpt, clock, int(cfg["checkpoint_every"]), out["guard"],
                                      saved_step=session.start_step or None)
    if int(cfg["sample_every"]) > 0:
        batch, noise = _fixed_inputs(session)
        out["sampler"] = cb.SampleWriter(session.run, clock, int(cfg["sample_every"]), batch,
                                         noise, out["guard"], writer)
    out["logger"] = cb.MetricsLogger(session.run.train_log, clock, writer)
    for callback in out.values():
        callback.set_model(session.model)
    return out


def fit(session: TrainSession, verbose: str | int = "auto") -> TrainResult:
    """Train from the session's start step to --max_steps; returns what was done."""
    import tensorflow as tf

    from mmali_tf import callbacks as cb
    from mmali_tf.atomic import atomic_path

    cfg, run, model, ckpt = session.config, session.run, session.model, session.checkpoint
    max_steps, log_every = int(cfg["max_steps"]), int(cfg["log_every"])
    clock = cb.TrainClock(session.start_step, max_steps)
    writer = tf.summary.create_file_writer(run.tensorboard)
    try:
        roles = _callbacks(session, clock, writer)
        guard, saver, sampler = roles["guard"], roles["saver"], roles.get("sampler")
        with session.strategy.scope():
            while clock.step < max_steps and guard.tripped is None:
                begin = clock.step
                initial_epoch, epochs, steps_per_epoch = _chunk(begin, max_steps, log_every)
                model.fit(train_batches(cfg, session.dataset, model, begin),
                          initial_epoch=initial_epoch, epochs=epochs,
                          steps_per_epoch=steps_per_epoch, callbacks=list(roles.values()),
                          verbose=verbose, shuffle=False)
                if clock.step == begin:
                    raise RuntimeError(f"fit() made no progress at step {begin}")
            wall = time.time() - clock.start_time
            if guard.tripped is None and saver.saved_step != clock.step:
                saver.save()
            if guard.tripped is not None:
                return TrainResult(cfg["run_dir"], session.start_step, clock.step, wall,
                                   ckpt.latest, diverged=guard.message())
            if sampler is not None and not os.path.exists(
                    run.sample_path(clock.step, model.modalities[0])):
                sampler.write()
            with atomic_path(run.model_keras) as tmp:  # on every worker: it broadcasts
                model.save(tmp)
    finally:
        writer.close()
        if session.scratch:
            shutil.rmtree(run.root, ignore_errors=True)
    return TrainResult(cfg["run_dir"], session.start_step, clock.step, wall, ckpt.latest)


def train(config: Mapping[str, Any], strategy: Any = None,
          verbose: str | int = "auto") -> TrainResult:
    """`prepare` + `fit` (in-process API used by tests and notebooks)."""
    return fit(prepare(config, strategy), verbose=verbose)


def summary(result: TrainResult) -> str:
    """The end-of-training report printed by the CLI."""
    ms = 1000.0 * result.wall_time / max(result.steps, 1)
    return "\n".join([
        f"Trained {result.steps} steps ({result.start_step} -> {result.final_step}) in "
        f"{result.wall_time:.1f} s, {ms:.1f} ms/step (including tracing; steady-state "
        "ms_per_step is in train_log.csv)",
        f"Outputs in {result.run_dir}: checkpoint {result.checkpoint}, model.keras, "
        "train_log.csv, samples/, tensorboard/ (tensorboard --logdir "
        f"{os.path.join(result.run_dir, 'tensorboard')})",
        f"Replay or resume with: python -m mmali_tf.train "
        f"--flagfile={os.path.join(result.run_dir, 'flags.txt')}"])


def main(argv: Sequence[str]) -> None:
    """absl main: flags are parsed; build the strategy first (before any TF op), then train."""
    cli.reject_positional(argv)
    config = config_from_flags()
    if not absl_flags.FLAGS["verbosity"].present:  # quiet TF's INFO chatter unless -v is given
        absl_logging.set_verbosity(absl_logging.WARNING)
        logging.getLogger("tensorflow").setLevel(logging.WARNING)
    quiet_tf.import_tensorflow()
    with cli.user_errors():
        flags_lib.check_dataset_flags(config)
        from mmali_tf import distribute

        strategy = distribute.make_strategy(config["strategy"], int(config["num_cpu_replicas"]))
        print(f"Strategy: {type(strategy).__name__} with {strategy.num_replicas_in_sync} "
              f"replica(s)", flush=True)
        session = prepare(config, strategy)
    with cli.disk_full_errors():
        result = fit(session, verbose=1 if sys.stdout.isatty() else 2)
    if result.diverged:
        cli.fail(result.diverged, code=DIVERGED_EXIT_CODE)
    print(summary(result), flush=True)


def run(argv: Sequence[str] | None = None) -> None:
    """Console script `mmali-train`."""
    flags_lib.define_train_flags()
    absl_flags.adopt_module_key_flags(flags_lib)  # list them in --helpshort
    app.run(main, argv=list(argv) if argv is not None else sys.argv, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
