"""`--jit_compile=auto`: train with XLA or without, whichever runs the step faster on this host.

Which one wins depends on the CPU and the model (docs/performance.md has measured both), so
`measure` times the real training step both ways on the run's own first batches: one untimed
warm-up step each (the trace, and XLA's compilation), then `TIMED_STEPS` steps each in
alternating order, and keeps the setting with the lower median. It puts every variable a
checkpoint holds (networks, EMA copies, RNG state, optimizer slots and step counts) back as it
was, and `fit` builds its own batch stream from the step it starts at, so training goes on
exactly as it would have with the chosen setting from the start (tests/test_xla.py). The
choice and both times are recorded in run.json under "xla" (`Choice.record`); a later
invocation on the same run directory reuses a measured choice instead of measuring again.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Mapping

from mmali_tf.config import AUTO

#: untimed steps of each setting before timing (the trace, and XLA's compilation).
WARMUP_STEPS = 1
#: timed steps of each setting (their median decides).
TIMED_STEPS = 3


@dataclasses.dataclass(frozen=True)
class Choice:
    """Whether the training step is compiled with XLA, and how that was decided.

    `how`: "setting" (--jit_compile=true/false), "measured" (auto: `ms_per_step` holds the
    median ms/step of each, "xla" and "no_xla", measured at training step `step`),
    "unsupported" (the strategy cannot compile the step with XLA: `reason`) or "multi_worker"
    (auto does not measure in a multi-worker job, whose workers could each choose
    differently, and compiles with XLA). `reused`: taken from an earlier invocation's run.json.
    """

    jit_compile: bool
    how: str
    ms_per_step: Mapping[str, float] | None = None
    step: int | None = None
    reused: bool = False
    reason: str = ""

    def record(self) -> dict[str, Any]:
        """run.json's "xla" entry (`reused` is not recorded: the entry stays the measured one)."""
        out: dict[str, Any] = {"jit_compile": self.jit_compile, "how": self.how}
        if self.how == "measured":
            out.update(ms_per_step=dict(self.ms_per_step or {}), step=self.step,
                       warmup_steps=WARMUP_STEPS, timed_steps=TIMED_STEPS)
        if self.reason:
            out["reason"] = self.reason
        return out

    def describe(self, setting: bool | str) -> str:
        """The line the training driver prints ("" when the setting was simply followed)."""
        if self.how == "unsupported":
            given = "=auto" if setting == AUTO else " ignored"
            return f"note: training without XLA (--jit_compile{given}): {self.reason}"
        if self.how == "multi_worker":
            return ("XLA: on (--jit_compile=auto does not measure in a multi-worker job: its "
                    "workers could each choose differently)")
        if self.how != "measured":
            return ""
        ms = self.ms_per_step or {}
        times = (f"{ms.get('xla', float('nan')):.1f} ms/step with XLA, "
                 f"{ms.get('no_xla', float('nan')):.1f} without")
        source = ("reusing run.json's choice, measured" if self.reused else
                  f"median of {TIMED_STEPS} steps each after {WARMUP_STEPS} warm-up,")
        return (f"XLA (--jit_compile=auto): {source} at step {self.step}: {times}; training "
                f"{'with' if self.jit_compile else 'without'} XLA")


def decide(setting: bool | str, strategy: Any,
           record: Mapping[str, Any] | None) -> Choice | None:
    """The run's choice when it needs no measurement, else None (then `measure`).

    `record`: the run directory's run.json as read before this invocation (None if fresh).
    """
    from mmali_tf import distribute
    from mmali_tf.models.base import multi_worker_mode

    if setting is False:
        return Choice(False, "setting")
    reason = distribute.no_xla_reason(strategy)
    if reason:
        return Choice(False, "unsupported", reason=reason)
    if setting is True:
        return Choice(True, "setting")
    if multi_worker_mode(strategy):
        return Choice(True, "multi_worker")
    old = (record or {}).get("xla") or {}
    if old.get("how") == "measured":
        return Choice(bool(old["jit_compile"]), "measured", old.get("ms_per_step"),
                      old.get("step"), reused=True)
    return None


def training_state(model: Any) -> list[Any]:
    """Every variable a training checkpoint holds (`run_dir.TrainingCheckpoint`)."""
    from mmali_tf.run_dir import model_optimizers

    return [*model.variables,
            *(v for _, opt in model_optimizers(model) for v in opt.variables)]


def measure(model: Any, batches: Any, strategy: Any, step: int) -> Choice:
    """Time the compiled model's training step with and without XLA on the first batches of
    `batches` (the run's stream from training step `step`) and leave the model set to the
    faster one, its traced step kept for `fit`, and its training state as it was.

    Call inside `strategy.scope()`. The metrics' running means are not restored: `fit`
    resets them at the start of every epoch.
    """
    import numpy as np
    import tensorflow as tf

    state = training_state(model)
    saved = [v.numpy() for v in state]
    functions, iterators = {}, {}
    for on in (False, True):
        model.use_xla(on)
        model.make_train_function()
        functions[on] = model.train_function
        iterators[on] = iter(strategy.experimental_distribute_dataset(
            batches.take(WARMUP_STEPS + TIMED_STEPS)))
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(WARMUP_STEPS + TIMED_STEPS):
        for on in (False, True) if round_ % 2 == 0 else (True, False):
            begin = time.perf_counter()
            tf.nest.map_structure(np.asarray, functions[on](iterators[on]))
            if round_ >= WARMUP_STEPS:
                seconds[on].append(time.perf_counter() - begin)
    for variable, value in zip(state, saved):
        variable.assign(value)
    ms = {on: 1000.0 * statistics.median(s) for on, s in seconds.items()}
    chosen = ms[True] < ms[False]
    model.use_xla(chosen)
    model.train_function = functions[chosen]
    return Choice(chosen, "measured", {"xla": round(ms[True], 2),
                                       "no_xla": round(ms[False], 2)}, step)
