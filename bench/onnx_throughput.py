"""Batch throughput of translation: onnxruntime settings (levers) against `tf.function`.

    python bench/onnx_throughput.py [--batch 256] [--rounds 3] [--calls 12]

Exports the digits-shaped mmALI translate graphs of `bench/onnx_latency.py` (random init) and
times one batch in each direction with: `tf.function` (TensorFlow's default threads), `Bundle`
in "latency" mode (one single-thread session call) and in "throughput" mode (the batch split
across one worker per physical core, each on a single-thread session), and other onnxruntime
levers on one session call: intra-op threads = physical cores with and without spinning, and
basic / extended instead of all graph optimisations. Engines alternate within each round
(the machine may be shared); the table shows the median over rounds. It also reports the
graph's arithmetic (GFLOP per example, from the ONNX shapes) and this machine's float32
matrix-multiply rate through onnxruntime, which bounds any engine's throughput.
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

from bench.onnx_latency import CONFIG, MODELS  # noqa: E402
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


def engines(model, bundle_dir: str, src: str, dst: str, feeds: dict) -> dict[str, Callable]:
    """Name -> zero-argument call translating `feeds` once."""
    import tensorflow as tf

    from mmali_tf.export.onnx_export import graph_plans

    graph = f"translate_{src}_to_{dst}"
    path = os.path.join(bundle_dir, f"{graph}.onnx")
    traced = next(p for p in graph_plans(model, "raw") if p.name == graph).function()
    cores = physical_cores()
    out = {"tf.function": lambda: traced(*[tf.constant(v) for v in feeds.values()])}
    for label, bundle in (("Bundle latency (1 thread)", Bundle(bundle_dir)),
                          (f"Bundle throughput ({cores} workers)",
                           Bundle(bundle_dir, mode="throughput"))):
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
    args = parser.parse_args()

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
    print("| direction | engine | examples/s | vs tf.function | GFLOP/s |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        export_bundle(model, tmp + "/b", weights="raw", overwrite=True,
                      graphs=["translate_hand_to_print", "translate_print_to_hand"])
        for src, dst in (("hand", "print"), ("print", "hand")):
            shape = next(s.shape for s in specs if s.name == src)
            feeds = {"x": rng.uniform(0, 1, (args.batch,) + tuple(shape)).astype(np.float32),
                     "noise": rng.standard_normal((args.batch, 20), dtype=np.float32),
                     "style_noise": rng.standard_normal((args.batch, 10), dtype=np.float32)}
            calls = engines(model, tmp + "/b", src, dst, feeds)
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
            print(f"| {src}->{dst} | (arithmetic: {flops / 1e6:.2f} MFLOP/example) | | | |")


if __name__ == "__main__":
    main()
