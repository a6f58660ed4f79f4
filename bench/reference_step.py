"""Side-by-side speed against the authors' code: their training iteration and ours, alternating,
in one invocation on one machine; prints the ratio (reference ms / our ms).

    python bench/reference_step.py --ref_python=/path/to/torch-venv/bin/python \\
        --mmali_src=REF/6b5d+mmali \\
        --mmvae_src=REF/iffsid+mmvae/src --mmjsd_src=REF/thomassutter+mmjsd \\
        [--models mmali,mmvae,mmjsd,mmjsd_text] [--rounds 3] [--threads 1] [--emulate_isa avx2] \\
        [--json bench/results/reference_step.json] [--readme docs/performance.md]
    python bench/reference_step.py --render bench/results/reference_step.json --readme docs/performance.md

Reference side: `bench/ref_mmali_step.py` (mmALI: D + G step, batch 64, MNIST-SVHN networks),
`bench/ref_mmvae_step.py` (MMVAE: DReG, K=30, batch 128) and
`bench/ref_mmjsd_step.py` (mmJSD: batch 256, text modality dropped, or with `mmjsd_text` their
whole MNIST-SVHN-Text step; see `DIFFERENCES`), run in a torch virtualenv as subprocesses
(torch is never imported here nor a project dependency).
Our side: `train_step` of the same model on its `configs/mnist_svhn_<model>.cfg` (same batch
and K) with the authors' networks where our dataset default differs (`NETWORKS`; `mmjsd_text`:
our `mmjsd` with mnist_svhn_mmjsd.cfg on the authors' three modalities and networks,
`text_specs`), random data of the same shapes, with and without XLA, each traced once and timed
again in every round; each record names its setup (`BENCH_SETUPS`). Each round runs reference,
then ours, for each model, so load from other processes hits both sides alike; the ratio uses
the medians over rounds.

`--json` writes every measurement, the medians, the ratios and the machine; `--readme`
rewrites the block between `<!-- reference_step:begin -->` and `<!-- reference_step:end -->`
from that record (or, with `--render a.json,b.json`, from several), so the README's figures
always come from this command. `--threads 1` runs both sides single-threaded: on a machine
shared with other jobs, a 2-thread OpenMP process (torch) suffers far more from losing a core
than TensorFlow's thread pool does, which inflates the ratio; one thread each is the fairer
comparison there.

`--emulate_isa avx2` caps oneDNN, XLA and ATen at AVX2 on both sides (`host.ISA_CAPS`, set
before TensorFlow is imported and inherited by the torch processes): an approximation of an
AVX2 host's kernels on an AVX-512 CPU, recorded as emulated next to the real CPU (it is not a
real AVX2 host: cores, caches and memory stay those of this CPU). Records name the host type
(`host.machine`: CPU model, ISA flags, class); the table has one row per host type, model and
thread count.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import host  # noqa: E402
import provenance  # noqa: E402

BEGIN, END = "<!-- reference_step:begin -->", "<!-- reference_step:end -->"
#: benchmark -> (reference script next to this file, its source flag, regex of its ms figure,
#: the script's extra arguments)
REFERENCE = {
    "mmali": ("ref_mmali_step.py", "mmali_src", r"iter_ms=([0-9.]+)", ()),
    "mmvae": ("ref_mmvae_step.py", "mmvae_src", r": ([0-9.]+) ms/step", ()),
    "mmjsd": ("ref_mmjsd_step.py", "mmjsd_src", r": ([0-9.]+) ms/step", ()),
    "mmjsd_text": ("ref_mmjsd_step.py", "mmjsd_src", r": ([0-9.]+) ms/step", ("--text",)),
}
#: benchmark -> our registered model (its `configs/mnist_svhn_<model>.cfg` gives batch and
#: hyper-parameters) where the names differ
OUR_MODEL = {"mmjsd_text": "mmjsd"}
#: benchmark -> the setup both sides time (stored in each record)
BENCH_SETUPS = {
    "mmali": "MNIST-SVHN, one critic + generator iteration, batch 64",
    "mmvae": "MNIST-SVHN, DReG, K=30, batch 128",
    "mmjsd": "MNIST-SVHN (the authors' text modality dropped), batch 256, latent 20",
    "mmjsd_text": "MNIST-SVHN-Text: mnist (28,28,1), svhn (32,32,3), text (8,71) one-hot; "
                  "batch 256, latent 20, JS weights 1/4, reconstruction weights 3072/784, 1, "
                  "3072/8; ours: mnist_mlp, mmjsd_svhn, text_conv with categorical_logratio "
                  "(the authors' networks and text likelihood)",
}
#: model -> {modality: network family} of our side where the authors' networks differ from our
#: dataset's default (their mmJSD SVHN convnets are narrower than Shi et al.'s `svhn_conv`)
NETWORKS = {"mmjsd": {"svhn": "mmjsd_svhn"}}
#: model -> target speed-up (authors' ms / ours) of our step on every host type (issue 26)
TARGETS = {"mmali": 2.0, "mmvae": 2.0, "mmjsd": 1.5}
#: model -> what differs between the authors' timed step and ours (printed under the table)
DIFFERENCES = {
    "mmjsd": "the authors' mmJSD class is trimodal (MNIST, SVHN, text); the text modality is "
             "dropped the way their `forward` allows (`input_text=None`, mixture weights 1/3 "
             "prior, MNIST, SVHN and 0 text), so both sides train MNIST+SVHN, batch 256, latent "
             "20; their text networks are built but never run. Our side runs the same networks: "
             "their SVHN convnets (64-channel third layer, 128-unit linear head) are our "
             "`mmjsd_svhn` family, which replaces the `svhn_conv` of our mnist_svhn config "
             "(`NETWORKS`); records made before 2026-12-07 timed `svhn_conv` (128 channels in "
             "the third layer of encoder and decoder), more work than theirs "
             "(`bench/ref_mmjsd_step.py`).",
    "mmjsd_text": "the authors' whole MNIST-SVHN-Text iteration (`bench/ref_mmjsd_step.py "
                  "--text`) and ours on the same networks: their SVHN convnets (our "
                  "mmjsd_svhn), their text 1-D convnets (our text_conv) and their text "
                  "likelihood (our categorical_logratio); random one-hot text on their side, "
                  "random values of the same shape on ours (same arithmetic).",
}


def text_specs():
    """Our specs of the `mmjsd_text` benchmark: the authors' MNIST-SVHN-Text modalities and
    networks (`mmjsd_svhn`, `text_conv`) with their text likelihood."""
    import dataclasses

    import train_step as ours
    from mmali_tf.data.text import WordRule

    mnist, svhn = ours.SETUPS["mnist_svhn"]
    return (mnist, dataclasses.replace(svhn, network="mmjsd_svhn"),
            WordRule().spec("text", likelihood="categorical_logratio"))


def reference_ms(args: argparse.Namespace, model: str) -> tuple[float, str]:
    """Run the authors' iteration of `model` once; (ms per iteration, its output line)."""
    script, src_flag, pattern, extra = REFERENCE[model]
    steps = args.ref_steps if model == "mmvae" else args.ref_steps * 5
    cmd = [args.ref_python, os.path.join(HERE, script), getattr(args, src_flag), str(steps),
           *extra]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=True,
                         env=env)
    line = next(ln for ln in out.stdout.splitlines()[::-1] if re.search(pattern, ln))
    return float(re.search(pattern, line).group(1)), line.strip()


def compared_setup(model: str) -> tuple[tuple[Any, ...], dict[str, Any], int]:
    """(specs, config, batch size) of our side of `model`'s comparison: its mnist_svhn config
    with the authors' network families of `NETWORKS`."""
    import train_step as ours

    specs, config, batch = ours.setup_config(model, "mnist_svhn")
    families = NETWORKS.get(model, {})
    return (tuple(dataclasses.replace(s, network=families.get(s.name, s.network))
                  for s in specs), config, batch)


def our_timers(model: str, jits: list[bool], steps: int) -> dict[bool, Callable[[], float]]:
    """jit -> a function timing `steps` iterations of our side of benchmark `model` (median
    ms); built and traced once, here."""
    import tensorflow as tf
    import train_step as ours

    out = {}
    name = OUR_MODEL.get(model, model)
    for jit in jits:
        specs, config, batch = compared_setup(name)
        if model == "mmjsd_text":
            specs = text_specs()
        net = ours.make_model(name, specs, config, jit)
        data = ours.random_batch(specs, batch * net.draws_per_step)
        step = tf.function(net.train_step, jit_compile=jit, reduce_retracing=True)
        ours.median_ms(step, (data,), 1, warmup=2)  # trace / compile now, not in round 1
        out[jit] = lambda step=step, data=data: ours.median_ms(step, (data,), steps, warmup=1)
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate reference and ours for `args.rounds` rounds; the full record."""
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    jits = [j.strip() == "on" for j in args.jit.split(",") if j.strip()]
    models = [m for m in args.models.split(",") if m]
    timers = {m: our_timers(m, jits, args.steps) for m in models}
    record: dict[str, Any] = {
        "command": provenance.command_line("bench/reference_step.py"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "tensorflow": tf.__version__, "threads": args.threads or "default",
        "emulated_isa": args.emulate_isa or None,
        "machine_start": host.machine(args.emulate_isa), "models": {}}
    for m in models:
        record["models"][m] = {"setup": BENCH_SETUPS[m], "reference_ms": [],
                               "reference_output": "",
                               **{f"ours_ms_jit_{'on' if j else 'off'}": [] for j in jits}}
    for r in range(args.rounds):
        for m in models:
            entry = record["models"][m]
            ms, line = reference_ms(args, m)
            entry["reference_ms"].append(ms)
            entry["reference_output"] = line
            print(f"round {r + 1} {m}: reference {ms:.1f} ms", end="", flush=True)
            for jit in jits:
                ours_ms = timers[m][jit]()
                entry[f"ours_ms_jit_{'on' if jit else 'off'}"].append(ours_ms)
                print(f", ours (XLA {'on' if jit else 'off'}) {ours_ms:.1f} ms", end="",
                      flush=True)
            print(flush=True)
    for entry in record["models"].values():
        ref = statistics.median(entry["reference_ms"])
        entry["reference_median_ms"] = ref
        for key in [k for k in entry if k.startswith("ours_ms_jit_")]:
            jit = key.rsplit("_", 1)[1]
            entry[f"ours_median_ms_jit_{jit}"] = statistics.median(entry[key])
            entry[f"ratio_jit_{jit}"] = ref / statistics.median(entry[key])
    record["machine_end"] = host.machine(args.emulate_isa)
    return record


def _speedups(entry: dict[str, Any]) -> list[str]:
    """The speed-up cells (XLA on, XLA off) of one model entry; "-" where not measured."""
    return ["-" if entry.get(f"ratio_jit_{jit}") is None else f"{entry[f'ratio_jit_{jit}']:.2f}x"
            for jit in ("on", "off")]


def render(records: list[dict[str, Any]]) -> str:
    """The README block (markdown table, one row per host type, model and threads, + the
    provenance of every record) of one or more records."""
    lines = [BEGIN, "", "| host type | model | threads | authors' iteration (ms) | ours, XLA on "
             "(ms) | ours, XLA off (ms) | speed-up XLA on | speed-up XLA off | target |",
             "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for record in records:
        kind = host.host_type(record["machine_start"])
        for name, e in record["models"].items():
            ours = ["-" if e.get(f"ours_median_ms_jit_{jit}") is None
                    else f"{e[f'ours_median_ms_jit_{jit}']:.0f}" for jit in ("on", "off")]
            target = f"{TARGETS[name]:.1f}x" if name in TARGETS else "-"
            rows.append((kind, name, str(record.get("threads", "default")),
                         f"{e['reference_median_ms']:.0f}", *ours, *_speedups(e), target))
    lines += ["| " + " | ".join(row) + " |" for row in sorted(rows, key=lambda r: r[:3])]
    lines.append("")
    for record in records:
        start, end = record["machine_start"], record["machine_end"]
        rounds = len(next(iter(record["models"].values()))["reference_ms"])
        isa = ", ".join(start.get("isa", [])) or "not recorded"
        emulated = (f"; kernels capped at {start['emulated_isa'].upper()} on this "
                    f"{start['isa_class']} CPU (`{' '.join(f'{k}={v}' for k, v in start['emulation_env'].items())}`): "
                    f"emulated, not a real {start['emulated_isa'].upper()} host"
                    if start.get("emulated_isa") else "")
        lines += [f"{host.host_type(start)}, threads {record.get('threads', 'default')}: "
                  f"medians of {rounds} alternating rounds, {record['date']}, {start['cores']} "
                  f"cores ({start['cpu']}; ISA flags: {isa}){emulated}, TensorFlow "
                  f"{record['tensorflow']}, load average {start['load_average'][0]:.1f} at the "
                  f"start and {end['load_average'][0]:.1f} at the end; `{record['command']}`.",
                  ""]
    shown = {name for record in records for name in record["models"]}
    lines += [f"{name}: {text}" for name, text in DIFFERENCES.items() if name in shown]
    lines += [""] if shown & set(DIFFERENCES) else []
    lines += ["Reference versions and output lines, and every single measurement, are in the "
              "JSON records under `bench/results/`.", "", END]
    return "\n".join(lines)


def replace_block(path: str, begin: str, end: str, block: str) -> None:
    """Replace the begin..end block (markers included) of file `path` with `block`."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if begin not in text or end not in text:
        raise SystemExit(f"error: {path} has no {begin} ... {end} block to rewrite")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(head + block + tail)
    os.replace(path + ".tmp", path)


def write_readme(path: str, records: list[dict[str, Any]]) -> None:
    """Replace the BEGIN..END block of `path` with `render(records)`."""
    replace_block(path, BEGIN, END, render(records))


def _fail(message: str) -> None:
    """Bad command-line input: one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mmali,mmvae", help=f"comma list of {sorted(REFERENCE)}")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5, help="our iterations per round (median)")
    p.add_argument("--ref_steps", type=int, default=2,
                   help="reference MMVAE steps per round (mmALI: 5x as many iterations)")
    p.add_argument("--jit", default="on,off")
    p.add_argument("--ref_python", default=os.environ.get("REF_PYTHON", ""))
    p.add_argument("--mmali_src", default="")
    p.add_argument("--mmvae_src", default="")
    p.add_argument("--mmjsd_src", default="", help="unpacked thomassutter/mmjsd snapshot")
    p.add_argument("--threads", type=int, default=0,
                   help="threads of both sides (torch: OMP_NUM_THREADS; TensorFlow: intra- and "
                        "inter-op pools); 0: each library's default")
    p.add_argument("--emulate_isa", default="", choices=["", *host.ISA_CAPS],
                   help="cap both sides' kernel libraries at this ISA (an AVX2 host emulated "
                        "on an AVX-512 CPU; recorded as emulated)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per reference run")
    p.add_argument("--json", default="", help="write the record here")
    p.add_argument("--readme", default="", help="rewrite this file's reference_step block")
    p.add_argument("--render", default="",
                   help="only render these records (comma list of JSON files) into --readme")
    args = p.parse_args(argv)
    if args.render:
        records = []
        for path in args.render.split(","):
            records.append(provenance.load_record(path))
    else:
        unknown = [m for m in args.models.split(",") if m not in REFERENCE]
        missing = [flag for m in args.models.split(",") if m in REFERENCE
                   for flag in ("ref_python", REFERENCE[m][1]) if not getattr(args, flag)]
        if unknown or missing:
            _fail(f"unknown --models {unknown} (expected {sorted(REFERENCE)})" if unknown
                  else f"set --{' --'.join(sorted(set(missing)))}")
        try:
            os.environ.update(host.emulation_env(args.emulate_isa))  # before TF is imported
        except ValueError as e:
            _fail(f"--emulate_isa: {e}")
        record = measure(args)
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            host.write_record(args.json, record)
        records = [record]
    print(render(records))
    if args.readme:
        write_readme(args.readme, records)


if __name__ == "__main__":
    main()
