"""What a benchmark record says about the machine it ran on: CPU model, vector extensions
(AVX2 / AVX-512 from /proc/cpuinfo), cores and load average (a shared host is marked loaded)."""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

#: 1-minute load average per logical CPU above which a record is marked "loaded".
LOADED_PER_CPU = 0.5


def cpu_flags() -> dict[str, Any]:
    """CPU model name and whether it reports AVX2 / any AVX-512 / AVX-VNNI (Linux)."""
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
    return {"cpu": model, "avx2": "avx2" in flags,
            "avx512": sorted(f for f in flags if f.startswith("avx512")),
            "vnni": bool({"avx_vnni", "avx512_vnni"} & flags)}


def machine() -> dict[str, Any]:
    """The record's host fields; call at the start and at the end of a benchmark."""
    load = list(os.getloadavg())
    cpus = os.cpu_count() or 1
    return {**cpu_flags(), "cores": cpus, "load_average": load,
            "loaded": load[0] > LOADED_PER_CPU * cpus,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def write_record(path: str, record: dict[str, Any]) -> None:
    """Write a JSON record atomically (temporary file + rename)."""
    tmp = f"{path}.partial"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
