"""What a benchmark record says about the machine it ran on: CPU model, its vector and matrix
extensions (AVX2 / AVX-512 / AMX ... from /proc/cpuinfo), the host type they make, cores and
load average (a shared host is marked loaded), and ISA emulation.

ISA emulation (`emulation_env`): on an AVX-512 CPU, the environment variables of `ISA_CAPS`
cap the instruction set of every kernel library both sides use -- oneDNN (TensorFlow's and
torch's: `ONEDNN_MAX_CPU_ISA`), XLA's CPU code generator (`--xla_cpu_max_isa`) and torch's
ATen kernels (`ATEN_CPU_CAPABILITY`) -- so the same binaries run the code paths they would
pick on an AVX2 CPU. That approximates an AVX2 host's kernel choice, not its cores, caches or
memory (an AMD EPYC differs in all three); records say `emulated` and name the real CPU.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

#: 1-minute load average per logical CPU above which a record is marked "loaded".
LOADED_PER_CPU = 0.5
#: /proc/cpuinfo flags a record lists (the ones that change which kernels oneDNN, XLA and
#: ATen pick), in this order.
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
#: emulated ISA -> environment that caps every kernel library at it (set before importing
#: TensorFlow or torch; the children of a benchmark inherit it)
ISA_CAPS = {
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
             "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"},
}


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo (Linux; else platform's)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, flags


def isa_class(flags: set[str] | list[str]) -> str:
    """The host type a set of CPU flags makes: "AVX-512 + AMX", "AVX-512", "AVX2" or "AVX"
    (or "baseline")."""
    flags = set(flags)
    if "avx512f" in flags:
        return "AVX-512 + AMX" if "amx_tile" in flags else "AVX-512"
    return next((name.upper() for name in ("avx2", "avx") if name in flags), "baseline")


def cpu_flags() -> dict[str, Any]:
    """CPU model name, its `ISA_FLAGS`, host type (`isa_class`) and the older boolean fields
    (AVX2, every AVX-512 flag, VNNI) that earlier records carry."""
    model, flags = _cpuinfo()
    return {"cpu": model, "isa": [f for f in ISA_FLAGS if f in flags],
            "isa_class": isa_class(flags), "avx2": "avx2" in flags,
            "avx512": sorted(f for f in flags if f.startswith("avx512")),
            "vnni": bool({"avx_vnni", "avx512_vnni"} & flags)}


def emulation_env(isa: str) -> dict[str, str]:
    """The environment that caps the kernel libraries at `isa` ("" = none: native); `XLA_FLAGS`
    is appended to the current value. Raises ValueError for an unknown ISA or one the CPU
    lacks."""
    if not isa:
        return {}
    if isa not in ISA_CAPS:
        raise ValueError(f"unknown ISA {isa!r} (expected one of {sorted(ISA_CAPS)})")
    if isa not in _cpuinfo()[1]:
        raise ValueError(f"this CPU has no {isa}: cannot emulate it")
    env = dict(ISA_CAPS[isa])
    env["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), env["XLA_FLAGS"]]))
    return env


def machine(emulated_isa: str = "") -> dict[str, Any]:
    """The record's host fields; call at the start and at the end of a benchmark.
    `emulated_isa`: the ISA the run was capped at (`emulation_env`); the record's `host_type`
    then says so next to the real CPU's class."""
    load = list(os.getloadavg())
    cpus = os.cpu_count() or 1
    flags = cpu_flags()
    out = {**flags, "cores": cpus, "load_average": load,
           "loaded": load[0] > LOADED_PER_CPU * cpus,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if emulated_isa:
        out["emulated_isa"] = emulated_isa
        out["emulation_env"] = ISA_CAPS[emulated_isa]
    out["host_type"] = host_type(out)
    return out


def host_type(record_machine: dict[str, Any]) -> str:
    """A record's host type for tables: its ISA class, "(emulated on <class>)" when capped;
    records made before the ISA fields existed give their CPU model."""
    real = record_machine.get("isa_class")
    if real is None:
        return record_machine.get("cpu", "?")
    isa = record_machine.get("emulated_isa")
    return f"{isa.upper()} (emulated on {real})" if isa else real


def write_record(path: str, record: dict[str, Any]) -> None:
    """Write a JSON record atomically (temporary file + rename)."""
    tmp = f"{path}.partial"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
