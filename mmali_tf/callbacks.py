"""Keras callbacks of the training driver: step clock, NaN guard, checkpoints, samples, logs.

All callbacks share one `TrainClock` (the global training step, which survives resumes and
several `fit()` calls) and react in `on_train_batch_end` in list order:
`StepClock` (counts, stops at max_steps) -> `NaNGuard` -> `CheckpointSaver` -> `SampleWriter`;
`MetricsLogger` writes train_log.csv and TensorBoard scalars at every Keras epoch end.
EMA updates happen inside each model's `train_step`, not here.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from typing import Any, Callable, Mapping

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from mmali_tf.atomic import atomic_write_text
from mmali_tf.run_dir import RunDir, TrainingCheckpoint


class TrainClock:
    """The global step shared by the callbacks (starts at the resume step)."""

    def __init__(self, step: int, max_steps: int) -> None:
        self.step = int(step)
        self.max_steps = int(max_steps)
        self.start_time = time.time()


class StepClock(keras.callbacks.Callback):
    """Advance the clock after every batch and stop training exactly at `max_steps`."""

    def __init__(self, clock: TrainClock) -> None:
        super().__init__()
        self.clock = clock

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.clock.step += 1
        if self.clock.step >= self.clock.max_steps:
            self.model.stop_training = True


class NaNGuard(keras.callbacks.Callback):
    """Stop at the first non-finite loss; `tripped` then holds (loss name, step, value)."""

    def __init__(self, clock: TrainClock, last_checkpoint: Callable[[], str | None]) -> None:
        super().__init__()
        self.clock = clock
        self.last_checkpoint = last_checkpoint
        self.tripped: tuple[str, int, float] | None = None

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        for name, value in (logs or {}).items():
            if np.ndim(value) == 0 and not math.isfinite(float(value)):
                self.trip(name, self.clock.step, float(value))
                return

    def trip(self, name: str, step: int, value: float) -> None:
        """Record the divergence, stop training and print the message."""
        self.tripped = (name, step, value)
        self.model.stop_training = True
        print(f"\n{self.message()}", flush=True)

    def message(self) -> str:
        """One-line description of the stop (empty when the guard has not tripped)."""
        if self.tripped is None:
            return ""
        name, step, value = self.tripped
        kept = self.last_checkpoint()
        where = f"the last good checkpoint {kept} is kept" if kept else "no checkpoint was written"
        what = name if name.startswith("variable ") else f"loss '{name}'"
        return (f"training stopped: {what} became {value} at step {step}; no checkpoint is "
                f"saved after it, {where}")


class CheckpointSaver(keras.callbacks.Callback):
    """Save a checkpoint every `every` steps unless the NaN guard tripped.

    `saved_step` is the step of the last checkpoint saved or restored (None: none yet); it is
    the same on every worker of a multi-worker job, where all workers must save together.
    """

    def __init__(self, checkpoint: TrainingCheckpoint, clock: TrainClock, every: int,
                 guard: NaNGuard, saved_step: int | None = None) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.clock = clock
        self.every = int(every)
        self.guard = guard
        self.saved_step = saved_step

    def save(self) -> str | None:
        """Save now (at the clock's step) and return the path; trips the guard instead of
        saving when a variable is no longer finite (a loss can still be finite then)."""
        bad = _nonfinite_variable(self.model)
        if bad is not None:
            self.guard.trip(f"variable {bad}", self.clock.step, float("nan"))
            return None
        path = self.checkpoint.save(self.clock.step)
        self.saved_step = self.clock.step
        return path

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.guard.tripped is None and self.clock.step % self.every == 0:
            self.save()


def _nonfinite_variable(model: keras.Model) -> str | None:
    """Path of the first float variable of `model` holding NaN/Inf, else None."""
    for v in model.variables:
        if v.dtype in ("float16", "bfloat16", "float32", "float64") and not bool(
                tf.reduce_all(tf.math.is_finite(v.value))):
            return v.path
    return None


class SampleWriter(keras.callbacks.Callback):
    """Every `every` steps: sample grids of a fixed test batch and fixed noise -> PNG + TB."""

    def __init__(self, run: RunDir, clock: TrainClock, every: int,
                 fixed_batch: Mapping[str, Any], fixed_noise: Any, guard: NaNGuard,
                 writer: tf.summary.SummaryWriter) -> None:
        super().__init__()
        self.run, self.clock, self.every = run, clock, int(every)
        self.fixed_batch, self.fixed_noise = fixed_batch, fixed_noise
        self.guard, self.writer = guard, writer

    def write(self) -> list[str]:
        """Write the grids of the current step; returns the PNG paths."""
        from mmali_tf import plots

        ncols = min(len(v) for v in self.fixed_batch.values())
        grids = plots.sample_grids(self.model, self.fixed_batch, self.fixed_noise, ncols=ncols)
        paths = []
        with self.writer.as_default(step=self.clock.step):
            for modality, image in grids.items():
                path = self.run.sample_path(self.clock.step, modality)
                plots.save_png(image, path)  # atomic (temp file + rename)
                paths.append(path)
                _summary_image(f"samples/{modality}", np.asarray(image))
        self.writer.flush()
        return paths

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.every and self.guard.tripped is None and self.clock.step % self.every == 0:
            self.write()


class MetricsLogger(keras.callbacks.Callback):
    """At each Keras epoch end: one train_log.csv row (rewritten atomically) + TB scalars.

    On resume, rows logged after the restored step are dropped so the log matches the state.
    """

    def __init__(self, path: str, clock: TrainClock, writer: tf.summary.SummaryWriter) -> None:
        super().__init__()
        self.path, self.clock, self.writer = path, clock, writer
        self.rows = [r for r in _read_rows(path) if int(float(r["step"])) <= clock.step]
        self._epoch_start = time.time()
        self._epoch_start_step = clock.step

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch_start = time.time()
        self._epoch_start_step = self.clock.step

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        steps = self.clock.step - self._epoch_start_step
        if steps <= 0:
            return
        ms = 1000.0 * (time.time() - self._epoch_start) / steps
        values = {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}
        self.rows.append({"step": self.clock.step, **values, "ms_per_step": round(ms, 3)})
        atomic_write_text(self.path, _format_rows(self.rows))
        with self.writer.as_default(step=self.clock.step):
            for name, value in values.items():
                _summary_scalar(f"train/{name}", value)
            _summary_scalar("train/ms_per_step", ms)
        self.writer.flush()


def _plugin(name: str) -> summary_pb2.SummaryMetadata:
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=name))


def _summary_scalar(tag: str, value: float) -> None:
    """TensorBoard scalar via the core `tf.summary.write` (the `tensorboard` package that
    implements `tf.summary.scalar` is optional; the event format is the same)."""
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=_plugin("scalars"))


def _summary_image(tag: str, image: np.ndarray) -> None:
    """TensorBoard image (HxWx3 uint8) in the images plugin's [width, height, png] layout."""
    h, w = image.shape[:2]
    tensor = tf.stack([tf.as_string(w), tf.as_string(h), tf.image.encode_png(image)])
    tf.summary.write(tag, tensor, metadata=_plugin("images"))


def _read_rows(path: str) -> list[dict[str, str]]:
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _format_rows(rows: list[Mapping[str, Any]]) -> str:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=fields, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()
