"""Training-step benchmark: median ms per full iteration of any registered model.

    python bench/train_step.py [--models mmali,mvae|all] [--steps 20] [--jit on,off]
                               [--setups mnist_svhn,digits] [--profile] [--flops]
                               [--json bench/results/train_step_digits_idle.json]

One iteration is one `train_step` (for mmALI: critic + generator update + EMA) on random data
of `batch_size * model.draws_per_step` rows. Setups:

* `mnist_svhn`: mnist (28,28,1) mnist_mlp + svhn (32,32,3) svhn_conv;
* `digits`: hand (28,28,1) + print (32,32,3);
* `fashion_pair`: grey (28,28,1) mnist_mlp + colour (32,32,3) svhn_conv, the `claims` suite's
  claim-2 configs (`configs/fashion_pair_<model>.cfg`).

`--models` takes registered model names (`all`: every one). Each model's hyper-parameters and
batch size come from its own `configs/<setup>_<model>.cfg` (every model has a digits config; a
setup without the model's config is refused). `--profile` times the
critic and generator updates of adversarial models separately and the forward pass of every
critic sub-network at the row counts one step uses. `--flops` counts the floating-point
operations of one iteration's graph (TensorFlow's static count, forward and backward) and
compares the measured time with the machine's float32 matrix-multiply peak (NumPy's BLAS on
2048 x 2048), i.e. the fastest any implementation of the same arithmetic could run here.
Prints markdown tables; `--json` also writes the rows with the machine (ISA flags, load average
at the start and the end: `bench/host.py`), the record `repro/targets.py` reads for its
idle-machine estimate of each digits config's training time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import host  # noqa: E402
import provenance  # noqa: E402
from mmali_tf import flags as mflags  # noqa: E402
from mmali_tf import models  # noqa: E402
from mmali_tf.data.fashion_pair import COLOUR, GREY  # noqa: E402
from mmali_tf.data.specs import ModalitySpec  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUPS = {
    "mnist_svhn": (ModalitySpec("mnist", (28, 28, 1), "image", "mnist_mlp"),
                   ModalitySpec("svhn", (32, 32, 3), "image", "svhn_conv")),
    "digits": (ModalitySpec("hand", (28, 28, 1), "image", "mnist_mlp"),
               ModalitySpec("print", (32, 32, 3), "image", "svhn_conv")),
    "fashion_pair": (GREY, COLOUR),   # the dataset's order
}


def setup_config(name: str, setup: str) -> tuple[tuple[ModalitySpec, ...], dict, int]:
    """(specs, config, batch size) of model `name` in `setup`, from its config file."""
    path = os.path.join(ROOT, "configs", f"{setup}_{name}.cfg")
    if not os.path.exists(path):
        raise SystemExit(f"error: no configs/{setup}_{name}.cfg: model {name!r} has no "
                         f"{setup} setup")
    config = config_from_flagfile(path)
    return SETUPS[setup], config, int(config["batch_size"])


def config_from_flagfile(path: str) -> dict:
    """Every training flag's value after parsing `--flagfile=path` (defaults otherwise)."""
    mflags.define_train_flags()
    flag_values = mflags.FLAGS
    flag_values.unparse_flags()
    flag_values(["bench"] + ([f"--flagfile={path}"] if os.path.exists(path) else []))
    return {f.name: f.value for f in flag_values.get_flags_for_module(mflags)}


def random_batch(specs, rows: int, seed: int = 0) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(seed)
    out = {}
    for s in specs:
        for key in (s.name, f"{s.name}_unpaired"):
            out[key] = tf.constant(rng.random((rows,) + s.shape, dtype=np.float32))
    out["label"] = tf.constant(rng.integers(0, 10, rows, dtype=np.int32))
    return out


def median_ms(fn, args, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        _block(fn(*args))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        _block(fn(*args))
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _block(out) -> None:
    for v in tf.nest.flatten(out):
        if hasattr(v, "numpy"):
            v.numpy()


def make_model(name: str, specs, config: dict, jit: bool):
    model = models.build(name, specs, config)
    model.build_from_specs()
    model.compile(jit_compile=jit)
    return model


def bench_step(name: str, setup: str, steps: int, jit: bool) -> tuple[float, int]:
    specs, config, batch = setup_config(name, setup)
    model = make_model(name, specs, config, jit)
    data = random_batch(specs, batch * model.draws_per_step)
    step = tf.function(model.train_step, jit_compile=jit, reduce_retracing=True)
    return median_ms(step, (data,), steps), batch


def step_gflop(name: str, setup: str) -> float:
    """Float operations (GFLOP) in the graph of one `train_step` of `name` on `setup`."""
    from tensorflow.python.framework import ops as tf_ops  # static per-op FLOP statistics

    specs, config, batch = setup_config(name, setup)
    model = make_model(name, specs, config, jit=False)
    graph = tf.function(model.train_step).get_concrete_function(
        random_batch(specs, batch * model.draws_per_step)).graph
    total = 0
    for op in graph.get_operations():
        try:
            total += tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value or 0
        except ValueError:  # op type without a registered FLOP count (elementwise, shapes)
            continue
    return total / 1e9


def sgemm_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Measured float32 GFLOP/s of an n x n matrix product through NumPy's BLAS."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    seconds = median_ms(lambda: a @ a, (), repeats) / 1e3
    return 2 * n ** 3 / seconds / 1e9


def _updater(model, fn, variables, opt):
    def update(*batches):
        return model._update(fn, batches, variables, opt)  # noqa: SLF001
    return update


def profile(name: str, setup: str, steps: int, jit: bool) -> list[tuple[str, float]]:
    """(what, median ms) of the critic/generator updates and of each critic sub-network."""
    specs, config, batch = setup_config(name, setup)
    model = make_model(name, specs, config, jit)
    if not hasattr(model, "critic_losses"):
        return []
    k = model.draws_per_update
    chunks = model._chunks(random_batch(specs, batch * model.draws_per_step))  # noqa: SLF001
    rows = []
    for what, fn, variables, opt in (
            ("critic update", model.critic_losses, model.critic_variables, model.d_optimizer),
            ("generator update", model.generator_losses, model.generator_variables,
             model.g_optimizer)):
        upd = tf.function(_updater(model, fn, variables, opt), jit_compile=jit)
        rows.append((what, median_ms(upd, chunks[:k], steps)))
    critics = {}
    for attr in ("critics_a", "critics_b"):
        for m, net in getattr(model, attr, {}).items():
            critics[f"{attr[-1].upper()}_{m}"] = net
    for label, net in critics.items():
        x_net, head = net.get_layer("x_features"), net.get_layer("head")
        spec = next(s for s in specs if net.name.startswith(s.name))
        x = tf.zeros((3 * batch,) + spec.shape)
        f = x_net(x)
        z = tf.zeros((3 * batch, model.layout.latent_dim))
        fwd = tf.function(lambda a, b, x_net=x_net, head=head:
                          head([x_net(a, training=True), b], training=True), jit_compile=jit)
        rows.append((f"{label} forward, {3 * batch} rows (features {f.shape[-1]})",
                     median_ms(fwd, (x, z), steps)))
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mmali")
    p.add_argument("--setups", default="mnist_svhn,digits")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--jit", default="on,off", help="comma list of on/off")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--flops", action="store_true",
                   help="count GFLOP per iteration and compare with the sgemm peak")
    p.add_argument("--json", default="", help="also write the rows and the machine here")
    args = p.parse_args(argv)
    names = models.model_names() if args.models == "all" else args.models.split(",")
    unknown = [n for n in names if n not in models.model_names()]
    if unknown:
        p.error(f"--models: unknown model {unknown[0]!r}; registered: "
                f"{', '.join(models.model_names())}")
    tf.config.threading.set_inter_op_parallelism_threads(2)
    start = host.machine()
    records = []
    jits = [j.strip() == "on" for j in args.jit.split(",") if j.strip()]
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPUs, median of {args.steps} steps\n")
    peak = sgemm_peak_gflops() if args.flops else None
    if peak:
        print(f"float32 matmul peak (NumPy BLAS, 2048^3): {peak:.0f} GFLOP/s\n")
    extra = " GFLOP / iteration | GFLOP/s | ms at matmul peak |" if peak else ""
    print("| model | setup | batch | jit | ms / iteration |" + extra)
    print("|---|---|---|---|---|" + ("---|---|---|" if peak else ""))
    for name in names:
        for setup in args.setups.split(","):
            gflop = step_gflop(name, setup) if peak else None
            for jit in jits:
                ms, batch = bench_step(name, setup, args.steps, jit)
                records.append({"model": name, "setup": setup, "batch": batch,
                                "jit": jit, "ms": round(ms, 1)})
                row = f"| {name} | {setup} | {batch} | {'on' if jit else 'off'} | {ms:.1f} |"
                if gflop:
                    row += f" {gflop:.1f} | {gflop / ms * 1e3:.0f} | {gflop / peak * 1e3:.0f} |"
                print(row, flush=True)
    if args.json:
        host.write_record(args.json, {"command": provenance.command_line("bench/train_step.py"),
                                      "steps": args.steps, "machine": start,
                                      "load_average_end": list(os.getloadavg()),
                                      "rows": records})
    if args.profile:
        for name in names:
            for jit in jits:
                rows = profile(name, "mnist_svhn", args.steps, jit)
                if rows:
                    print(f"\n{name}, mnist_svhn, jit {'on' if jit else 'off'}\n")
                    print("| part | ms |\n|---|---|")
                    for what, ms in rows:
                        print(f"| {what} | {ms:.1f} |", flush=True)


if __name__ == "__main__":
    main()
