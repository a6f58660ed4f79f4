"""Where one training iteration's time goes, per TensorFlow op type, and what cheap levers do.

    python bench/profile_step.py [--model mmali|mmvae|mmjsd] [--threads 1] [--steps 3] [--rounds 2]
                                 [--ref_python $REF_VENV/bin/python --ref_src SNAPSHOT]
                                 [--emulate_isa avx2]
                                 [--json bench/results/profile_mmali.json] [--readme docs/performance.md]
    python bench/profile_step.py --render bench/results/profile_mmali.json --readme docs/performance.md

Profile: `train_step` of the model on `configs/mnist_svhn_<model>.cfg` with the networks of
the side-by-side comparison (`reference_step.compared_setup`; random data, XLA off,
so that every kernel is a TensorFlow op; with XLA on a step is a few opaque clusters), traced
with `tf.profiler` for `--steps` iterations. Each kernel event of the trace is named
`<node>:<op type>`; op types are summed per iteration and grouped into categories
(`CATEGORIES`: convolutions forward, transposed/backprop-input, backprop-filter, matrix
products, optimizer variable updates, everything else = elementwise and data movement). The
`_Mkl` prefix of an op type means the oneDNN kernel ran (TensorFlow's oneDNN graph rewrite);
op types without it are Eigen kernels. "Executor overhead" is the traced wall span minus the
kernel time (meaningful with `--threads 1`, where kernels run one at a time).

With `--ref_python` and `--ref_src` (the snapshot `bench/reference_step.py` takes for the
model), the authors' step of the same comparison (`bench/ref_<model>_step.py`) is profiled too,
with `torch.profiler` (`bench/ref_timing.py`: self CPU ms per `aten::` op and step), so both
sides' top ops stand next to each other. `--emulate_isa avx2` caps both sides' kernels at AVX2
(`host.ISA_CAPS`; an emulation on an AVX-512 CPU, recorded as such).

Levers (`LEVERS`): each variant times the same iteration (median of `--steps`) in a
fresh process with its environment, alternating variant by variant for `--rounds` rounds;
the speed-up is the `default` median over the variant's.

`--json` writes the record; `--readme` rewrites the block between
`<!-- profile_step:<model>:begin -->` and `<!-- profile_step:<model>:end -->` from it.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import host  # noqa: E402
import provenance  # noqa: E402
from reference_step import REFERENCE, compared_setup, replace_block  # noqa: E402

#: rows of the authors' torch.profiler table in the rendered block
REFERENCE_TOP = 10
MATMUL = "MatMul (dense layers, incl. fused)"
#: category -> regex on the op type (without the `_Mkl`/`_MklNative` prefix); first match wins
CATEGORIES = {
    "Conv2D (forward, incl. fused bias/activation)": r"^(Fused)?Conv2D$",
    "Conv2DBackpropInput (transposed conv + input grads)": r"^Conv2DBackpropInput$",
    "Conv2DBackpropFilter (weight grads)": r"^Conv2DBackpropFilter(WithBias)?$",
    MATMUL: r"^(Fused|BatchMatMul)?(MatMul|MatMulV2|V2)$",
    "optimizer / variable updates": r"^(Assign\w*VariableOp|ResourceApply\w+|ReadVariableOp)$",
}
OTHER = "elementwise, reductions, data movement"
#: lever name -> (environment overrides, what it changes, XLA on)
LEVERS = {
    "default": ({}, "XLA off, oneDNN on, TensorFlow's allocator", False),
    "xla_on": ({}, "XLA compiles the step (its own CPU convolutions/dots instead of oneDNN's)",
               True),
    "onednn_system_allocator": ({"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"},
                                "oneDNN kernels allocate through malloc instead of TF's BFC",
                                False),
    "onednn_bf16_fpmath": ({"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"},
                           "oneDNN may compute float32 convolutions/matmuls in bfloat16 "
                           "(changes numerics; measured only, never a default)", False),
    "onednn_off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, "Eigen kernels instead of oneDNN", False),
}
TIME_LINE = re.compile(r"^step_ms=([0-9.]+)$")


def build_step(model_name: str, threads: int, jit: bool = False):
    """(traced train_step function, its data) of `model_name` on mnist_svhn."""
    import tensorflow as tf
    import train_step as ours

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    specs, config, batch = compared_setup(model_name)
    net = ours.make_model(model_name, specs, config, jit)
    data = ours.random_batch(specs, batch * net.draws_per_step)
    step = tf.function(net.train_step, jit_compile=jit, reduce_retracing=True)
    ours.median_ms(step, (data,), 1, warmup=2)
    return step, data


def category(op_type: str) -> str:
    """The CATEGORIES key (or OTHER) of a kernel's op type."""
    base = re.sub(r"^_Mkl(Native)?", "", op_type)
    return next((name for name, rx in CATEGORIES.items() if re.match(rx, base)), OTHER)


def layer_of(node: str) -> str:
    """A kernel's layer: its node name without the gradient prefix, the op name and numeric
    suffixes, cut to its innermost three scopes (`critic_A_svhn/head/sn_dense`; a spectral
    norm's power iteration ends in `/Tensordot`)."""
    parts = [re.sub(r"(_\d+)+$", "", p) for p in node.split("/")]
    parts = [p for p in parts if p not in ("gradient_tape", "MatMul")]
    return "/".join(parts[-3:]) or node


def kernel_events(logdir: str) -> tuple[list[tuple[str, str, float]], float]:
    """([(node name, op type, ms)] of every kernel event in the trace under `logdir`, traced
    span ms)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    host = next(p for p in space.planes if p.name == "/host:CPU")
    events, starts, ends = [], [], []
    for line in host.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        for e in line.events:
            name = host.event_metadata[e.metadata_id].name
            starts.append(e.offset_ps)
            ends.append(e.offset_ps + e.duration_ps)
            if ":" in name and "::" not in name:
                events.append((*name.rsplit(":", 1), e.duration_ps / 1e9))
    return events, (max(ends) - min(starts)) / 1e9 if starts else 0.0


def profile(model_name: str, threads: int, steps: int) -> dict[str, Any]:
    """Per-iteration ms by op type and by category of a traced run of `steps` iterations."""
    import tensorflow as tf
    import train_step as ours

    step, data = build_step(model_name, threads)
    untraced_ms = ours.median_ms(step, (data,), steps, warmup=1)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            ours._block(step(data))  # noqa: SLF001
        tf.profiler.experimental.stop()
        events, span_ms = kernel_events(logdir)
    by_type: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    matmul_layers: dict[str, float] = collections.defaultdict(float)
    for node, op_type, ms in events:
        by_type[op_type][0] += ms / steps
        by_type[op_type][1] += 1 / steps
        if category(op_type) == MATMUL:
            matmul_layers[layer_of(node)] += ms / steps
    by_cat: dict[str, float] = collections.defaultdict(float)
    for op_type, (ms, _) in by_type.items():
        by_cat[category(op_type)] += ms
    kernels = sum(by_cat.values())
    onednn = sum(ms for t, (ms, _) in by_type.items() if t.startswith("_Mkl"))
    return {"untraced_step_ms": untraced_ms, "traced_step_ms": span_ms / steps,
            "kernel_ms": kernels, "onednn_kernel_ms": onednn,
            "categories": dict(sorted(by_cat.items(), key=lambda kv: -kv[1])),
            "op_types": {t: {"ms": ms, "calls": round(n)} for t, (ms, n) in
                         sorted(by_type.items(), key=lambda kv: -kv[1][0])},
            "matmul_by_layer": dict(sorted(matmul_layers.items(), key=lambda kv: -kv[1]))}


def markers(model: str) -> tuple[str, str]:
    """The begin / end markers of `model`'s block in the docs."""
    return f"<!-- profile_step:{model}:begin -->", f"<!-- profile_step:{model}:end -->"


def reference_profile(args: argparse.Namespace) -> dict[str, Any]:
    """The authors' step of `args.model` profiled by torch.profiler (`bench/ref_timing.py`):
    {torch, threads, profiled_step_ms, self_ms_total, ops: [{op, ms, calls}]}."""
    script = os.path.join(HERE, REFERENCE[args.model][0])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "profile.json")
        env = {**os.environ, "REF_TORCH_PROFILE": path,
               **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
        subprocess.run([args.ref_python, script, args.ref_src, str(args.steps)], env=env,
                       check=True, capture_output=True, text=True)
        with open(path, encoding="utf-8") as f:
            return json.load(f)


def time_variant(model_name: str, threads: int, steps: int, env: dict[str, str],
                 jit: bool) -> float:
    """Median ms per iteration of a fresh `--time_only` process under `env`."""
    cmd = [sys.executable, os.path.abspath(__file__), "--time_only", "--model", model_name,
           "--threads", str(threads), "--steps", str(steps)] + (["--xla"] if jit else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})
    return float(next(m.group(1) for m in map(TIME_LINE.match, out.stdout.splitlines()) if m))


def levers(args: argparse.Namespace) -> dict[str, Any]:
    """{lever: {env, what, ms: [per round], median_ms, speedup}} alternating lever by lever."""
    names = [n for n in args.levers.split(",") if n]
    out = {n: {"env": LEVERS[n][0], "what": LEVERS[n][1], "xla": LEVERS[n][2], "ms": []}
           for n in names}
    for r in range(args.rounds):
        for n in names:
            env, _, jit = LEVERS[n]
            out[n]["ms"].append(time_variant(args.model, args.threads, args.steps, env, jit))
            print(f"round {r + 1} {n}: {out[n]['ms'][-1]:.1f} ms", flush=True)
    base = statistics.median(out["default"]["ms"]) if "default" in out else None
    for entry in out.values():
        entry["median_ms"] = statistics.median(entry["ms"])
        entry["speedup"] = base / entry["median_ms"] if base else None
    return out


def render(record: dict[str, Any]) -> str:
    """The README block of a profile record."""
    p = record["profile"]
    begin, end = markers(record["model"])
    lines = [begin, "", f"One {record['model']} iteration (XLA off, {record['threads']} "
             f"thread(s)), per category of TensorFlow op type:", "",
             "| category | ms / iteration | share of kernel time |", "|---|---|---|"]
    for name, ms in p["categories"].items():
        lines.append(f"| {name} | {ms:.1f} | {ms / p['kernel_ms']:.0%} |")
    overhead = p["traced_step_ms"] - p["kernel_ms"]
    lines += [f"| all kernels | {p['kernel_ms']:.1f} | 100% |",
              f"| executor overhead (traced span - kernels) | {overhead:.1f} | - |", "",
              f"oneDNN kernels (`_Mkl*` op types) take {p['onednn_kernel_ms'] / p['kernel_ms']:.0%}"
              f" of the kernel time; traced iteration {p['traced_step_ms']:.0f} ms, untraced "
              f"{p['untraced_step_ms']:.0f} ms. Top op types:", "",
              "| op type | ms / iteration | calls / iteration |", "|---|---|---|"]
    for t, v in list(p["op_types"].items())[:8]:
        lines.append(f"| `{t}` | {v['ms']:.1f} | {v['calls']} |")
    if p.get("matmul_by_layer"):
        lines += ["", "MatMul time by layer (node scope):", "", "| layer | ms / iteration |",
                  "|---|---|"]
        lines += [f"| `{k}` | {v:.1f} |" for k, v in list(p["matmul_by_layer"].items())[:5]]
    ref = record.get("reference_profile")
    if ref:
        lines += ["", f"The authors' step (torch {ref['torch']}, {ref['threads']} thread(s), "
                  f"`torch.profiler`): {ref['profiled_step_ms']:.0f} ms per profiled step, "
                  f"{ref['self_ms_total']:.0f} ms of op self time. Top ops:", "",
                  "| torch op | self ms / step | calls / step |", "|---|---|---|"]
        lines += [f"| `{o['op']}` | {o['ms']:.1f} | {o['calls']:.0f} |"
                  for o in ref["ops"][:REFERENCE_TOP]]
    if record.get("levers"):
        lines += ["", "| lever (environment) | what it changes | median ms | speed-up |",
                  "|---|---|---|---|"]
        for n, e in record["levers"].items():
            env = ", ".join(f"`{k}={v}`" for k, v in e["env"].items()) or "-"
            lines.append(f"| {n} ({env}) | {e['what']} | {e['median_ms']:.0f} | "
                         f"{e['speedup']:.2f}x |")
    start = record["machine_start"]
    lines += ["", f"{record['date']}, {host.host_type(start)}, {start['cores']} cores "
              f"({start['cpu']}), TensorFlow "
              f"{record['tensorflow']}, load average {start['load_average'][0]:.1f} at the start "
              f"and {record['machine_end']['load_average'][0]:.1f} at the end (shared machine: "
              f"under load); `{record['command']}`; record: `bench/results/"
              f"profile_{record['model']}.json`.", "", end]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mmali")
    p.add_argument("--threads", type=int, default=1, help="intra- and inter-op threads; 0: TF's")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of the levers")
    p.add_argument("--levers", default=",".join(LEVERS), help=f"comma list of {list(LEVERS)}")
    p.add_argument("--ref_python", default=os.environ.get("REF_PYTHON", ""),
                   help="torch virtualenv's python: profile the authors' step too")
    p.add_argument("--ref_src", default="", help="the authors' snapshot for the model's "
                   "reference script (as bench/reference_step.py's --<model>_src)")
    p.add_argument("--emulate_isa", default="", choices=["", *host.ISA_CAPS],
                   help="cap both sides' kernel libraries at this ISA (emulation, recorded)")
    p.add_argument("--json", default="")
    p.add_argument("--readme", default="")
    p.add_argument("--render", default="", help="only render this record into --readme")
    p.add_argument("--time_only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--xla", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        os.environ.update(host.emulation_env(args.emulate_isa))  # before TF is imported
    except ValueError as e:
        p.error(f"--emulate_isa: {e}")
    if bool(args.ref_python) != bool(args.ref_src) or args.model not in REFERENCE and args.ref_src:
        p.error("--ref_python and --ref_src go together, for a model of "
                f"{sorted(REFERENCE)}")
    if args.time_only:
        import train_step as ours

        step, data = build_step(args.model, args.threads, args.xla)
        print(f"step_ms={ours.median_ms(step, (data,), args.steps, warmup=1):.3f}")
        return
    unknown = [n for n in args.levers.split(",") if n and n not in LEVERS]
    if unknown:
        raise SystemExit(f"error: unknown --levers {unknown} (expected {list(LEVERS)})")
    if args.render:
        record = provenance.load_record(args.render)
    else:
        import tensorflow as tf

        record = {"command": provenance.command_line("bench/profile_step.py"),
                  "date": datetime.datetime.now(datetime.timezone.utc).strftime(
                      "%Y-%m-%d %H:%M UTC"),
                  "tensorflow": tf.__version__, "model": args.model, "threads": args.threads,
                  "emulated_isa": args.emulate_isa or None,
                  "machine_start": host.machine(args.emulate_isa),
                  "profile": profile(args.model, args.threads, args.steps)}
        if args.ref_src:
            record["reference_profile"] = reference_profile(args)
        record["levers"] = levers(args) if args.levers else {}
        record["machine_end"] = host.machine(args.emulate_isa)
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json + ".tmp", "w", encoding="utf-8") as f:
                json.dump(record, f, indent=1)
                f.write("\n")
            os.replace(args.json + ".tmp", args.json)
    print(render(record))
    if args.readme:
        replace_block(args.readme, *markers(record["model"]), render(record))


if __name__ == "__main__":
    main()
