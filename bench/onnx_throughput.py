"""Batch throughput of translation: onnxruntime settings (levers) against `tf.function`.

    python bench/onnx_throughput.py [--batch 256] [--rounds 3] [--calls 12] [--int8] \
        [--json bench/results/onnx_throughput.json]

Exports the digits-shaped mmALI translate graphs of `bench/onnx_latency.py` (random init) and
times one batch in each direction with: `tf.function` (TensorFlow's default threads), `Bundle`
in "latency" mode (one single-thread session call) and in "throughput" mode (the batch split
across one worker per physical core, each on a single-thread session), and other onnxruntime
levers on one session call: intra-op threads = physical cores with and without spinning, and
basic / extended instead of all graph optimisations. Engines alternate within each round
(the machine may be shared); the table shows the median over rounds. It also reports the
graph's arithmetic (GFLOP per example, from the ONNX shapes) and this machine's float32
matrix-multiply rate through onnxruntime, which bounds any engine's throughput. With `--int8`
the int8 bundle (`mmali_tf.export.quantize`, calibrated on the same uniform random inputs: the
weights are random, only the speed means anything) runs in both Bundle modes too. `--json`
writes the table with the host's CPU flags (AVX2 / AVX-512) and load average (`bench/host.py`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import helper, shape_inference  # noqa: E402

from bench import host  # noqa: E402
from bench.onnx_latency import CONFIG, MODELS, quantized  # noqa: E402
from mmali_tf.export.runtime import Bundle, physical_cores, session_options  # noqa: E402

LEVELS = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}


def per_second(fn: Callable[[], object], calls: int, batch: int) -> float:
    """Examples per second of `fn` (one batch per call): median over `calls` after warm-up."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return batch / float(np.median(times))


def flops_per_example(path: str) -> float:
    """Multiply-add FLOPs of one example through the graph's MatMul/Conv/ConvTranspose nodes."""
    model = shape_inference.infer_shapes(onnx.load(path))
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        shapes[v.name] = [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
    total = 0.0
    for node in model.graph.node:
        if node.op_type == "MatMul":
            total += 2 * np.prod(shapes[node.input[1]])
        elif node.op_type == "Conv":  # output positions x (Cin/group * kh * kw)
            total += 2 * np.prod(shapes[node.output[0]][1:]) * np.prod(shapes[node.input[1]][1:])
        elif node.op_type == "ConvTranspose":  # input positions x (Cout * kh * kw)
            total += 2 * np.prod(shapes[node.input[0]][1:]) * np.prod(shapes[node.input[1]][1:])
    return float(total)


def matmul_gflops(threads: int, n: int = 1024) -> float:
    """float32 GFLOP/s of an n x n x n MatMul through onnxruntime with `threads` threads."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
        [helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, [n, n]) for k in "ab"],
        [helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = session_options(threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    return per_second(lambda: sess.run(None, {"a": a, "b": a}), 10, 1) * 2 * n ** 3 / 1e9


def engines(model, bundle_dir: str, src: str, dst: str, feeds: dict,
            int8_dir: str | None = None) -> dict[str, Callable]:
    """Name -> zero-argument call translating `feeds` once (with `int8_dir`, also the int8
    bundle's Bundle modes)."""
    import tensorflow as tf

    from mmali_tf.export.onnx_export import graph_plans

    graph = f"translate_{src}_to_{dst}"
    path = os.path.join(bundle_dir, f"{graph}.onnx")
    traced = next(p for p in graph_plans(model, "raw") if p.name == graph).function()
    cores = physical_cores()
    out = {"tf.function": lambda: traced(*[tf.constant(v) for v in feeds.values()])}
    for prefix, path_ in (("", bundle_dir), ("int8 ", int8_dir)):
        if path_ is None:
            continue
        for label, bundle in ((f"{prefix}Bundle latency (1 thread)", Bundle(path_)),
                              (f"{prefix}Bundle throughput ({cores} workers)",
                               Bundle(path_, mode="throughput"))):
            out[label] = lambda b=bundle: b.run(graph, feeds)
    levers = {f"{cores} intra-op threads, spinning": (cores, "1", None),
              f"{cores} intra-op threads, no spinning": (cores, "0", None)}
    levers.update({f"1 thread, {k} optimisation only": (1, "0", v) for k, v in LEVELS.items()})
    for label, (threads, spin, level) in levers.items():
        opts = session_options(threads)
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        if level is not None:
            opts.graph_optimization_level = level
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        out[label] = lambda s=sess: s.run(["x_out"], feeds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--calls", type=int, default=12, help="timed batches per engine/round")
    parser.add_argument("--int8", action="store_true", help="also time the int8 bundle")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    start = host.machine()

    from mmali_tf.export.onnx_export import export_bundle
    from mmali_tf import models

    specs = MODELS["digits"]
    model = models.build("mmali", list(specs), CONFIG)
    model.build_from_specs()
    rng = np.random.default_rng(0)
    peak = {t: matmul_gflops(t) for t in sorted({1, physical_cores()})}
    print(f"\nbatch {args.batch} translate throughput (examples/s), digits networks, random init, "
          f"{os.cpu_count()} CPUs ({physical_cores()} physical cores); median of {args.rounds} "
          f"alternating rounds")
    print("onnxruntime MatMul 1024^3 float32: " +
          ", ".join(f"{t} thread(s) {g:.0f} GFLOP/s" for t, g in peak.items()) + "\n")
    print(f"host: {start['cpu']}, AVX2 {start['avx2']}, AVX-512 {start['avx512'] or 'none'}, "
          f"load average {start['load_average'][0]:.1f}" +
          (" (LOADED: shared machine)" if start["loaded"] else "") + "\n")
    print("| direction | engine | examples/s | vs tf.function | GFLOP/s |")
    print("|---|---|---:|---:|---:|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        export_bundle(model, tmp + "/b", weights="raw", overwrite=True,
                      graphs=["translate_hand_to_print", "translate_print_to_hand"])
        int8_dir = quantized(tmp, specs, rng) if args.int8 else None
        for src, dst in (("hand", "print"), ("print", "hand")):
            shape = next(s.shape for s in specs if s.name == src)
            feeds = {"x": rng.uniform(0, 1, (args.batch,) + tuple(shape)).astype(np.float32),
                     "noise": rng.standard_normal((args.batch, 20), dtype=np.float32),
                     "style_noise": rng.standard_normal((args.batch, 10), dtype=np.float32)}
            calls = engines(model, tmp + "/b", src, dst, feeds, int8_dir)
            rates = {k: [] for k in calls}
            for _ in range(args.rounds):
                for name, fn in calls.items():
                    rates[name].append(per_second(fn, args.calls, args.batch))
            flops = flops_per_example(f"{tmp}/b/translate_{src}_to_{dst}.onnx")
            tf_rate = float(np.median(rates["tf.function"]))
            for name, values in rates.items():
                rate = float(np.median(values))
                print(f"| {src}->{dst} | {name} | {rate:.0f} | {rate / tf_rate:.2f}x | "
                      f"{rate * flops / 1e9:.0f} |")
                rows.append({"direction": f"{src}->{dst}", "engine": name,
                             "examples_per_s": rate, "vs_tf_function": rate / tf_rate,
                             "rounds": [float(v) for v in values]})
            print(f"| {src}->{dst} | (arithmetic: {flops / 1e6:.2f} MFLOP/example) | | | |")
    if args.json:
        host.write_record(args.json, {
            "command": " ".join(["python"] + sys.argv), "batch": args.batch,
            "machine_start": start, "machine_end": host.machine(),
            "matmul_gflops": {str(t): g for t, g in peak.items()}, "rows": rows})


if __name__ == "__main__":
    main()
