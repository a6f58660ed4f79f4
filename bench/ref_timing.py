"""Torch side of the reference scripts (run in the torch virtualenv, never imported by the
project): time `n` calls of one training step and, when `REF_TORCH_PROFILE` names a file,
profile them with `torch.profiler` and write the per-op record there.

The record (JSON) lists, per torch op (`aten::*`), its self CPU time per step (ms) and calls
per step, sorted by time -- the counterpart of `bench/profile_step.py`'s per-op-type profile
of our step. Self time is an op's own kernel time without its children, so the rows add up to
the traced step.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable

#: environment variable naming the profile record to write (unset: time only)
PROFILE_ENV = "REF_TORCH_PROFILE"


def ms_per_step(step: Callable[[], None], n: int) -> float:
    """Mean ms of `n` calls of `step`; profiled into `$REF_TORCH_PROFILE` when that is set."""
    path = os.environ.get(PROFILE_ENV, "")
    if not path:
        t = time.perf_counter()
        for _ in range(n):
            step()
        return (time.perf_counter() - t) / n * 1e3
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for _ in range(n):
            step()
        ms = (time.perf_counter() - t) / n * 1e3
    rows = [{"op": e.key, "ms": e.self_cpu_time_total / 1e3 / n, "calls": e.count / n}
            for e in prof.key_averages() if e.self_cpu_time_total > 0]
    rows.sort(key=lambda r: -r["ms"])
    record = {"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": n,
              "profiled_step_ms": ms, "self_ms_total": sum(r["ms"] for r in rows), "ops": rows}
    with open(path + ".partial", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".partial", path)
    return ms
