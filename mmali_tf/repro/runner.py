"""Train and evaluate one run of a suite in child processes, resuming what exists.

A run lives in `<runs_root>/<name>/` (a normal run directory). `run_one`:
1. picks the step target: the config's `--max_steps` x `step_scale`, capped by `max_steps`;
   with `budget_minutes`, a first segment of `CALIBRATION_STEPS` measures the step time and
   the target is cut to what fits the budget (recorded in `reproduction_budget.json`);
2. trains (`python -m mmali_tf.train --flagfile=<config> <overrides> --max_steps=<target>`)
   unless a checkpoint at or past the target exists, so reruns resume or skip;
3. evaluates (`python -m mmali_tf.evaluate`) unless `eval/<protocol>/metrics.json` already
   scores that step with these settings (and has its `per_input.npz`); with
   `Budget.curve_every` N, also the step curve (`--curve_every=N`, which scores only
   checkpoints not yet in its curve.json; training then gets `--keep_checkpoint_every=N`);
4. returns the run's record (config, flags hash, steps, wall time, ms/step, metrics, and
   `per_input`: bootstrap replicates over distinct test inputs, `repro/stats.py`; and the load
   average sampled while it trained: `train_load`, the highest mean of its segments, None when
   it was trained outside the harness; and `curve` when the run has a curve.json,
   `repro/curves.py`).
A full disk (here or in a child) raises DiskFullError instead of a "failed" record, so the
harness stops before it replaces the suite's JSON.
A file lock per run directory makes a second harness that reaches the same run wait, then
reuse what the first one trained and evaluated. The training and evaluation processes hold
it too, so after the harness is killed (kill -9) its running child finishes undisturbed
and a rerun waits for it instead of writing the same run directory at the same time.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Mapping, Sequence

from mmali_tf.atomic import DiskFullError, atomic_write_bytes
from mmali_tf.metrics import report
from mmali_tf.repro import curves, stats
from mmali_tf.repro.run_spec import RunSpec

CALIBRATION_STEPS = 100
#: a wall time measured while the 1-minute load average was above this is not an idle-machine
#: time (one single-threaded training job alone makes about 1); the tables mark it.
IDLE_LOAD = 1.5
LOAD_FILE = "train_load.json"
#: a child's one-line DiskFullError ("error: cannot write <path>: <reason>; ...")
_CHILD_DISK_FULL = re.compile(r"^error: cannot write (\S+): (No space left on device|Disk quota "
                              r"exceeded);")


class LoadSampler:
    """Samples the 1-minute load average every `interval` seconds while in a `with` block
    (one sample on entry and one on exit at least); `summary()` gives their mean and max."""

    def __init__(self, interval: float = 5.0, read=os.getloadavg) -> None:
        self.interval, self.read = interval, read
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(float(self.read()[0]))

    def __enter__(self) -> "LoadSampler":
        self.samples.append(float(self.read()[0]))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(float(self.read()[0]))

    def summary(self) -> dict[str, float]:
        return {"load_mean": round(statistics.fmean(self.samples), 2),
                "load_max": round(max(self.samples), 2), "samples": len(self.samples)}


def train_load(run_dir: str) -> float | None:
    """The highest mean load average of the run's training segments (`LOAD_FILE`, written by
    the harness); None when no segment was recorded."""
    path = os.path.join(run_dir, LOAD_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        segments = json.load(f)["segments"]
    return max((s["load_mean"] for s in segments), default=None)


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much of each config a suite trains, and how it is evaluated."""

    step_scale: float = 1.0
    max_steps: int = 0          # 0: no cap
    budget_minutes: float = 0.0  # 0: no time budget
    protocol: str = "clean"
    num_samples: int = 2000
    curve_every: int = 0        # 0: no step curve (`repro/curves.py`)

    def target_steps(self, config_steps: int) -> int:
        """Config steps scaled and capped (at least 1)."""
        steps = max(1, int(math.ceil(config_steps * self.step_scale)))
        return min(steps, self.max_steps) if self.max_steps > 0 else steps

    def label(self) -> str:
        """One-line description for tables."""
        parts = [f"step scale {self.step_scale:g}"]
        if self.max_steps:
            parts.append(f"at most {self.max_steps:,} steps")
        if self.budget_minutes:
            parts.append(f"at most {self.budget_minutes:g} training minutes per run")
        return ", ".join(parts)


def checkpoint_step(run_dir: str) -> int:
    """Step of the newest complete checkpoint in `run_dir` (0 if none); reads the
    CheckpointManager state file, no TensorFlow."""
    state = os.path.join(run_dir, "checkpoints", "checkpoint")
    if not os.path.isfile(state):
        return 0
    with open(state, encoding="utf-8") as f:
        found = re.search(r'^model_checkpoint_path:\s*"[^"]*ckpt-(\d+)"', f.read(), re.M)
    return int(found.group(1)) if found else 0


def train_timing(run_dir: str) -> tuple[float, float | None]:
    """(training wall seconds, median ms/step) from train_log.csv: the sum of every logged
    interval (tracing included) and the median interval rate after the first."""
    path = os.path.join(run_dir, "train_log.csv")
    if not os.path.isfile(path):
        return 0.0, None
    with open(path, newline="", encoding="utf-8") as f:
        rows = [(int(float(r["step"])), float(r["ms_per_step"])) for r in csv.DictReader(f)]
    total, prev = 0.0, 0
    for step, ms in rows:
        total += ms * (step - prev) / 1000.0
        prev = step
    rates = [ms for _, ms in rows[1:]] or [ms for _, ms in rows]
    return total, (statistics.median(rates) if rates else None)


def load_note(record: Mapping[str, Any]) -> str:
    """"" when the run trained on an otherwise idle machine, else " (load x)" or
    " (load not recorded)": its wall time is not an idle-machine time."""
    load = record.get("train_load")
    if load is None:
        return " (load not recorded)"
    return "" if load <= IDLE_LOAD else f" (load {load:.1f})"


def flags_hash(run_dir: str) -> str | None:
    """sha256 of the run's resolved flags.txt."""
    path = os.path.join(run_dir, "flags.txt")
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _child(args: list[str], log_path: str, lock: int) -> None:
    """Run `python -m ...` with output to `log_path`, holding the run's `lock` (a file
    descriptor) as long as it lives; RuntimeError with the log's tail."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(args)}\n".encode())
        log.flush()
        proc = subprocess.run([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                              env=env, check=False, pass_fds=(lock,))
    if proc.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-600:].strip().splitlines()
        full = _CHILD_DISK_FULL.search(tail[-1] if tail else "")
        if full:  # no run can go on: stop the harness (its JSON stays as it was)
            raise DiskFullError(full.group(1), full.group(2))
        raise RuntimeError(f"{args[1]} exited with {proc.returncode}: "
                           f"{tail[-1] if tail else ''} (log: {log_path})")


def _train(spec: RunSpec, run_dir: str, steps: int, log_path: str, lock: int) -> None:
    """Train to `steps`, appending the load average sampled meanwhile to `LOAD_FILE`."""
    with LoadSampler() as load:
        _child(["-m", "mmali_tf.train", f"--flagfile={spec.config}", *spec.overrides,
                f"--run_dir={run_dir}", f"--max_steps={steps}"], log_path, lock)
    path = os.path.join(run_dir, LOAD_FILE)
    segments = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            segments = json.load(f)["segments"]
    report.write_json(path, {"segments": segments + [{"to_step": checkpoint_step(run_dir),
                                                      **load.summary()}]})


def _budget_steps(spec: RunSpec, run_dir: str, budget: Budget, target: int,
                  log_path: str, lock: int) -> int:
    """Target cut to the time budget, measured on a first segment; recorded and reused."""
    record_path = os.path.join(run_dir, "reproduction_budget.json")
    if os.path.isfile(record_path):
        with open(record_path, encoding="utf-8") as f:
            old = json.load(f)
        if old.get("budget_minutes") == budget.budget_minutes and old.get("cap") == target:
            return int(old["steps"])
    first = min(target, CALIBRATION_STEPS)
    if checkpoint_step(run_dir) < first:
        _train(spec, run_dir, first, log_path, lock)
    wall, _ = train_timing(run_dir)
    per_step = wall / max(checkpoint_step(run_dir), 1)
    steps = max(first, min(target, int(budget.budget_minutes * 60.0 / max(per_step, 1e-6))))
    report.write_json(record_path, {"budget_minutes": budget.budget_minutes, "cap": target,
                                    "seconds_per_step_measured": per_step, "steps": steps})
    return steps


def _stored_eval(path: str, step: int, budget: Budget,
                 eval_flags: Sequence[str]) -> dict[str, Any] | None:
    if not (os.path.isfile(path) and os.path.isfile(per_input_path(path))):
        return None
    with open(path, encoding="utf-8") as f:
        metrics = json.load(f)
    meta = metrics.get("meta", {})
    if (meta.get("step") == step and meta.get("num_prior_samples") == budget.num_samples
            and meta.get("probe_min_updates") == probe_min_updates(budget.protocol)
            and report.text_scorer(meta) in (None, text_scorer(eval_flags))):
        return metrics
    return None


def text_scorer(eval_flags: Sequence[str]) -> str:
    """The `--text_scorer` an evaluation with `eval_flags` uses (an evaluation that scored
    text otherwise, e.g. one made before the text classifier, is redone)."""
    given = [f.split("=", 1)[1] for f in eval_flags if f.startswith("--text_scorer=")]
    return given[-1] if given else next(iter(report.TEXT_SCORERS))


def per_input_path(metrics_path: str) -> str:
    """The evaluation's per-input arrays beside its metrics.json."""
    return os.path.join(os.path.dirname(metrics_path), "per_input.npz")


def probe_min_updates(protocol: str) -> int:
    """The latent probe's minimum updates `evaluate` uses under `protocol` (an evaluation
    made before that minimum existed is redone)."""
    return report.SHI_MNIST_UPDATES if protocol == "clean" else 0


def run_one(spec: RunSpec, runs_root: str, budget: Budget) -> dict[str, Any]:
    """Train (resume/skip) and evaluate one run; its record (status "failed" on an error)."""
    if budget.curve_every > 0:  # the curve's checkpoints stay (repro/curves.py)
        spec = dataclasses.replace(spec, overrides=(
            *spec.overrides, f"--keep_checkpoint_every={budget.curve_every}"))
    run_dir = os.path.join(runs_root, spec.name)
    log_dir = os.path.join(runs_root, "logs")
    config_steps = spec.config_steps()
    flags = spec.config_flags()
    record: dict[str, Any] = {
        "name": spec.name, "config": os.path.relpath(spec.config), "overrides":
        list(spec.overrides), "eval_flags": list(spec.eval_flags), "model": flags.get("model"), "dataset": flags.get("dataset"),
        "batch_size": int(flags.get("batch_size", 64)), "config_steps": config_steps,
        "protocol": budget.protocol, "status": "ok"}
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, ".reproduce.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{spec.name}: waiting for the process that holds {run_dir} (another "
                  "harness, or a child of a killed one)", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            target = budget.target_steps(config_steps)
            if budget.budget_minutes > 0:
                target = _budget_steps(spec, run_dir, budget, target,
                                       os.path.join(log_dir, f"{spec.name}.train.log"),
                                       lock.fileno())
            if checkpoint_step(run_dir) < target:
                _train(spec, run_dir, target, os.path.join(log_dir, f"{spec.name}.train.log"),
                       lock.fileno())
            step = checkpoint_step(run_dir)
            eval_path = os.path.join(run_dir, "eval", report.eval_dir_name(budget.protocol),
                                     "metrics.json")
            start = time.time()
            metrics = _stored_eval(eval_path, step, budget, spec.eval_flags)
            wall_path = os.path.join(os.path.dirname(eval_path), "eval_wall.json")
            if metrics is None:
                _child(["-m", "mmali_tf.evaluate", f"--run_dir={run_dir}",
                        f"--protocol={budget.protocol}", f"--num_samples={budget.num_samples}",
                        *spec.eval_flags],
                       os.path.join(log_dir, f"{spec.name}.eval.log"), lock.fileno())
                metrics = _stored_eval(eval_path, step, budget, spec.eval_flags)
                report.write_json(wall_path, {"eval_wall_s": round(time.time() - start, 1)})
            record["eval_wall_s"] = None  # unknown when its harness was killed meanwhile
            if os.path.isfile(wall_path):
                with open(wall_path, encoding="utf-8") as f:
                    record["eval_wall_s"] = json.load(f)["eval_wall_s"]
            if metrics is None:
                raise RuntimeError(f"evaluation wrote no metrics for step {step} at {eval_path}")
            if budget.curve_every > 0 and not curves.curve_is_current(
                    os.path.dirname(eval_path), os.path.join(run_dir, "checkpoints"),
                    budget.curve_every, budget.num_samples):  # the child scores new steps only
                _child(["-m", "mmali_tf.evaluate", f"--run_dir={run_dir}",
                        f"--protocol={budget.protocol}", f"--num_samples={budget.num_samples}",
                        f"--curve_every={budget.curve_every}"],
                       os.path.join(log_dir, f"{spec.name}.curve.log"), lock.fileno())
            curve = curves.curve_record(os.path.dirname(eval_path))
            if curve is not None:
                record["curve"] = curve
            wall, ms = train_timing(run_dir)
            record.update(target_steps=target, steps=step, train_wall_s=round(wall, 1),
                          ms_per_step=None if ms is None else round(ms, 1),
                          train_load=train_load(run_dir),
                          flags_sha256=flags_hash(run_dir), metrics=metrics,
                          per_input=stats.summarise_file(per_input_path(eval_path)))
        except DiskFullError:
            raise
        except (RuntimeError, OSError, ValueError) as error:
            record.update(status="failed", error=str(error))
    return record


def copy_final_grids(runs_root: str, name: str, out_dir: str) -> list[str]:
    """Copy run `name`'s newest sample grid of each modality (`samples/step_<n>_<m>.png`) to
    `<out_dir>/<name>_<m>.png` (atomically); the paths written."""
    samples = os.path.join(runs_root, name, "samples")
    newest: dict[str, tuple[int, str]] = {}
    for entry in sorted(os.listdir(samples)) if os.path.isdir(samples) else []:
        found = re.fullmatch(r"step_(\d+)_(\w+)\.png", entry)
        if found and int(found.group(1)) >= newest.get(found.group(2), (-1, ""))[0]:
            newest[found.group(2)] = (int(found.group(1)), os.path.join(samples, entry))
    written = []
    for modality, (_, path) in sorted(newest.items()):
        with open(path, "rb") as f:
            target = os.path.join(out_dir, f"{name}_{modality}.png")
            atomic_write_bytes(target, f.read())
        written.append(target)
    return written

