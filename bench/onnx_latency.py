"""Latency of cross-modal translation: onnxruntime bundle vs the Keras model (eager, tf.function).

    python bench/onnx_latency.py [--runs 2000] [--batch 256] [--threads N] \
        [--mode latency|throughput] [--int8] [--models digits,mnist_svhn] \
        [--json bench/results/onnx_latency.json]

Builds randomly initialised mmALI models with the digits and MNIST-SVHN modality shapes
(28x28x1 through the MLP family, 32x32x3 through the conv family; latent 20 = style 10 +
content 10; `--models` picks some), exports their translate graphs, and times one translation
in both directions:

* `ort run`: `session.run` of the translate graph with prepared feeds (graph only);
* `Bundle`: `Bundle.translate(..., seed=0)` (input validation + a seeded numpy Generator +
  noise + run), what apps call; `Bundle, reused rng` passes one Generator for every call;
* `keras eager`: the same computation (`mmali_tf.export.onnx_export.graph_plans`) called eagerly;
* `tf.function`: the same computation traced once;
* with `--int8`: `int8 ort run` and `int8 Bundle`, the same two on the int8 bundle
  (`mmali_tf.export.quantize`, calibrated on uniform random inputs: only its speed matters here).
TensorFlow engines receive the numpy inputs (converted per call), like an application would.
`--json` writes the rows with the host's CPU flags and load average (`bench/host.py`).

Prints a markdown table: median and p99 latency at batch 1, throughput at `--batch`.
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

from mmali_tf.data.specs import ModalitySpec  # noqa: E402

MODELS = {
    "digits": (ModalitySpec("hand", (28, 28, 1), "image", "mnist_mlp"),
               ModalitySpec("print", (32, 32, 3), "image", "svhn_conv")),
    "mnist_svhn": (ModalitySpec("mnist", (28, 28, 1), "image", "mnist_mlp"),
                   ModalitySpec("svhn", (32, 32, 3), "image", "svhn_conv")),
}
CONFIG = {"model": "mmali", "latent_dim": 20, "style_dim": 10, "ema_decay": 0.0, "seed": 0}


def timings(fn: Callable[[], object], runs: int, warmup: int) -> np.ndarray:
    """Seconds per call of `fn` over `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out


def quantized(tmp: str, specs, rng: np.random.Generator) -> str:
    """The int8 version of the bundle in `tmp`/b, calibrated on 128 uniform random inputs."""
    from mmali_tf.export import quantize

    xs = {s.name: rng.uniform(0, 1, (128,) + tuple(s.shape)).astype(np.float32) for s in specs}
    os.mkdir(os.path.join(tmp, "int8"))
    quantize.quantize_bundle(os.path.join(tmp, "b"), os.path.join(tmp, "int8"), xs)
    return os.path.join(tmp, "int8")


def bench_direction(model, bundle, src: str, dst: str, args, int8=None) -> list[dict]:
    """Rows of the table for one translation direction (with `int8`, that Bundle's too)."""
    import tensorflow as tf

    from mmali_tf.export.onnx_export import graph_plans

    plan = next(p for p in graph_plans(model, "raw") if p.name == f"translate_{src}_to_{dst}")
    traced = plan.function()
    sess = bundle.session(plan.name)
    rng = np.random.default_rng(0)
    rows = []

    def feeds(n):
        x = rng.uniform(0, 1, (n,) + tuple(bundle.spec(src)["shape"])).astype(np.float32)
        return {"x": x, "noise": bundle.noise((n, bundle.latent_dim), rng),
                "style_noise": bundle.noise((n, bundle.style_dim), rng)}

    small, big = feeds(1), feeds(args.batch)
    gen = np.random.default_rng(0)
    engines = {
        "ort run": (lambda f: (lambda: sess.run(["x_out"], f)), args.runs),
        "Bundle": (lambda f: (lambda: bundle.translate(src, dst, f["x"], seed=0)), args.runs),
        "Bundle, reused rng": (lambda f: (lambda: bundle.translate(src, dst, f["x"], seed=gen)),
                               args.runs),
        "keras eager": (lambda f: (lambda: plan.fn(*[tf.constant(v) for v in f.values()])),
                        max(20, args.runs // 20)),
        "tf.function": (lambda f: (lambda: traced(*[tf.constant(v) for v in f.values()])),
                        max(50, args.runs // 4)),
    }
    if int8 is not None:
        q_sess = int8.session(plan.name)
        engines["int8 ort run"] = (lambda f: (lambda: q_sess.run(["x_out"], f)), args.runs)
        engines["int8 Bundle"] = (lambda f: (lambda: int8.translate(src, dst, f["x"], seed=0)),
                                  args.runs)
    for engine, (make, runs) in engines.items():
        t1 = timings(make(small), runs, warmup=max(5, runs // 20))
        tb = timings(make(big), max(10, runs // 100), warmup=2)
        rows.append({"direction": f"{src}->{dst}", "engine": engine,
                     "median_ms": 1e3 * np.median(t1), "p99_ms": 1e3 * np.percentile(t1, 99),
                     "throughput": args.batch / np.median(tb)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="timed batch-1 calls (ORT)")
    parser.add_argument("--batch", type=int, default=256, help="throughput batch size")
    parser.add_argument("--threads", type=int, default=None,
                        help="Bundle's threads (default: its default for --mode)")
    parser.add_argument("--mode", choices=("latency", "throughput"), default="latency",
                        help="Bundle's mode (throughput: batch split across workers)")
    parser.add_argument("--int8", action="store_true", help="also time the int8 bundle")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {list(MODELS)}")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    chosen = args.models.split(",")
    if not chosen or set(chosen) - set(MODELS):
        parser.error(f"--models={args.models!r}: expected a comma-separated subset of "
                     f"{list(MODELS)}")
    from bench import host

    start = host.machine()

    import tensorflow as tf

    from mmali_tf.export.onnx_export import export_bundle
    from mmali_tf.export.runtime import Bundle
    from mmali_tf import models

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            specs = MODELS[name]
            model = models.build("mmali", list(specs), CONFIG)
            model.build_from_specs()
            a, b = (s.name for s in specs)
            path = os.path.join(tmp, name, "b")
            export_bundle(model, path, weights="raw",
                          graphs=[f"translate_{a}_to_{b}", f"translate_{b}_to_{a}"])
            bundle = Bundle(path, threads=args.threads, mode=args.mode)
            int8 = (Bundle(quantized(os.path.join(tmp, name), specs, np.random.default_rng(0)),
                           threads=args.threads, mode=args.mode) if args.int8 else None)
            for src, dst in ((a, b), (b, a)):
                rows += [{"model": name, **r} for r in bench_direction(model, bundle, src, dst,
                                                                       args, int8)]
    eager = {(r["model"], r["direction"]): r["median_ms"] for r in rows
             if r["engine"] == "keras eager"}
    print(f"\nmmALI translate, random init, {os.cpu_count()} CPUs, onnxruntime "
          f"Bundle mode={bundle.mode} threads={bundle.threads}, TensorFlow {tf.__version__} "
          f"default threads; host {start['cpu']}, AVX2 {start['avx2']}, AVX-512 "
          f"{start['avx512'] or 'none'}, load average {start['load_average'][0]:.1f}" +
          (" (LOADED: shared machine)" if start["loaded"] else "") + "\n")
    print(f"| model | direction | engine | batch 1 median (ms) | batch 1 p99 (ms) | "
          f"speed-up vs eager | batch {args.batch} throughput (examples/s) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        speedup = eager[(r["model"], r["direction"])] / r["median_ms"]
        print(f"| {r['model']} | {r['direction']} | {r['engine']} | {r['median_ms']:.3f} | "
              f"{r['p99_ms']:.3f} | {speedup:.1f}x | {r['throughput']:.0f} |")
    if args.json:
        host.write_record(args.json, {
            "command": " ".join(["python"] + sys.argv), "mode": bundle.mode,
            "threads": bundle.threads, "batch": args.batch, "machine_start": start,
            "machine_end": host.machine(), "rows": [{k: (float(v) if isinstance(v, np.floating)
                                                       else v) for k, v in r.items()}
                                                    for r in rows]})


if __name__ == "__main__":
    main()
