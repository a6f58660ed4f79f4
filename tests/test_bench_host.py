"""bench/host.py: host type from CPU flags, ISA emulation environment; bench/reference_step.py
renders one table row per host type, model and thread count."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))
import host  # noqa: E402
import reference_step  # noqa: E402


def test_isa_class_of_flag_sets():
    assert host.isa_class({"avx", "avx2", "fma"}) == "AVX2"
    assert host.isa_class({"avx2", "avx512f", "avx512bw"}) == "AVX-512"
    assert host.isa_class({"avx2", "avx512f", "amx_tile"}) == "AVX-512 + AMX"
    assert host.isa_class({"sse4_2"}) == "baseline"


def test_emulation_env_caps_every_library_and_appends_xla_flags(monkeypatch):
    monkeypatch.setattr(host, "_cpuinfo", lambda: ("cpu", {"avx2", "avx512f"}))
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    env = host.emulation_env("avx2")
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2" and env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert env["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false --xla_cpu_max_isa=AVX2"
    assert host.emulation_env("") == {}
    with pytest.raises(ValueError, match="unknown ISA"):
        host.emulation_env("sse2")
    monkeypatch.setattr(host, "_cpuinfo", lambda: ("cpu", {"avx"}))
    with pytest.raises(ValueError, match="no avx2"):
        host.emulation_env("avx2")


def _record(isa_class, emulated, threads, ratio):
    start = {"cpu": "Some CPU", "isa": ["avx2"], "isa_class": isa_class, "cores": 2,
             "load_average": [0.1, 0.1, 0.1]}
    if emulated:
        start.update(emulated_isa="avx2", emulation_env=host.ISA_CAPS["avx2"])
    start["host_type"] = host.host_type(start)
    entry = {"reference_ms": [100.0], "reference_median_ms": 100.0,
             "ours_median_ms_jit_off": 100.0 / ratio, "ratio_jit_off": ratio}
    return {"command": "python bench/reference_step.py", "date": "2026-12-07 00:00 UTC",
            "tensorflow": "2.21.0", "threads": threads, "machine_start": start,
            "machine_end": start, "models": {"mmjsd": entry}}


def test_render_has_a_row_per_host_type_and_says_emulated():
    text = reference_step.render([_record("AVX-512 + AMX", False, 1, 2.0),
                                  _record("AVX-512 + AMX", True, 1, 1.6),
                                  _record("AVX2", False, "default", 1.5)])
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "mmjsd" in ln]
    assert [r.split(" | ")[0] for r in rows] == ["| AVX-512 + AMX",
                                                 "| AVX2",
                                                 "| AVX2 (emulated on AVX-512 + AMX)"]
    assert "emulated, not a real AVX2 host" in text
    assert all(r.endswith("| 1.5x |") for r in rows)  # mmJSD's target
