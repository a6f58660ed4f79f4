"""Latency of cross-modal translation: onnxruntime bundle vs the Keras model (eager, tf.function).

    python bench/onnx_latency.py [--runs 2000] [--batch 256] [--threads N] \
        [--mode latency|throughput]

Builds randomly initialised mmALI models with the digits and MNIST-SVHN modality shapes
(28x28x1 through the MLP family, 32x32x3 through the conv family; latent 20 = style 10 +
content 10), exports their translate graphs, and times one translation in both directions:

* `ort run`: `session.run` of the translate graph with prepared feeds (graph only);
* `Bundle`: `Bundle.translate(..., seed=0)` (input validation + a seeded numpy Generator +
  noise + run), what apps call; `Bundle, reused rng` passes one Generator for every call;
* `keras eager`: the same computation (`mmali_tf.export.onnx_export.graph_plans`) called eagerly;
* `tf.function`: the same computation traced once.
TensorFlow engines receive the numpy inputs (converted per call), like an application would.

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


def bench_direction(model, bundle, src: str, dst: str, args) -> list[dict]:
    """Rows of the table for one translation direction."""
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
    args = parser.parse_args()

    import tensorflow as tf

    from mmali_tf.export.onnx_export import export_bundle
    from mmali_tf.export.runtime import Bundle
    from mmali_tf import models

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, specs in MODELS.items():
            model = models.build("mmali", list(specs), CONFIG)
            model.build_from_specs()
            a, b = (s.name for s in specs)
            path = os.path.join(tmp, name)
            export_bundle(model, path, weights="raw",
                          graphs=[f"translate_{a}_to_{b}", f"translate_{b}_to_{a}"])
            bundle = Bundle(path, threads=args.threads, mode=args.mode)
            for src, dst in ((a, b), (b, a)):
                rows += [{"model": name, **r} for r in bench_direction(model, bundle, src, dst,
                                                                       args)]
    eager = {(r["model"], r["direction"]): r["median_ms"] for r in rows
             if r["engine"] == "keras eager"}
    print(f"\nmmALI translate, random init, {os.cpu_count()} CPUs, onnxruntime "
          f"Bundle mode={bundle.mode} threads={bundle.threads}, TensorFlow {tf.__version__} "
          f"default threads\n")
    print(f"| model | direction | engine | batch 1 median (ms) | batch 1 p99 (ms) | "
          f"speed-up vs eager | batch {args.batch} throughput (examples/s) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        speedup = eager[(r["model"], r["direction"])] / r["median_ms"]
        print(f"| {r['model']} | {r['direction']} | {r['engine']} | {r['median_ms']:.3f} | "
              f"{r['p99_ms']:.3f} | {speedup:.1f}x | {r['throughput']:.0f} |")


if __name__ == "__main__":
    main()
