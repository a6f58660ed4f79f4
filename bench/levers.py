"""Speed levers that need a fresh process (threading, oneDNN), measured alternately.

    python bench/levers.py [--models mmali,mmvae] [--rounds 2] [--steps 3]
                           [--json bench/results/levers.json]

Each variant runs `bench/train_step.py --setups mnist_svhn --jit on,off` in its own process
with its environment (TensorFlow reads these variables when it starts); variants alternate
round by round so that load from other processes spreads over all of them. Prints, per model,
variant and XLA setting, the median ms per iteration over rounds and its ratio to the
`default` variant.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import provenance  # noqa: E402

#: variant name -> environment overrides
VARIANTS = {
    "default": {},
    "onednn_off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "intra_op_1": {"TF_NUM_INTRAOP_THREADS": "1"},
}
ROW = re.compile(r"^\| (\w+) \| mnist_svhn \| (\d+) \| (on|off) \| ([0-9.]+) \|")


def run_variant(model: str, env: dict[str, str], steps: int) -> dict[str, float]:
    """{"on": ms, "off": ms} of one train_step.py process for `model` under `env`."""
    cmd = [sys.executable, os.path.join(HERE, "train_step.py"), "--models", model,
           "--setups", "mnist_svhn", "--steps", str(steps), "--jit", "on,off"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})
    return {m.group(3): float(m.group(4)) for m in map(ROW.match, out.stdout.splitlines()) if m}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mmali,mmvae")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    samples: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in range(args.rounds):
        for model in args.models.split(","):
            for v in variants:
                ms = run_variant(model, VARIANTS[v], args.steps)
                for jit, value in ms.items():
                    samples.setdefault(model, {}).setdefault(v, {}).setdefault(jit, []).append(
                        value)
                print(f"round {r + 1} {model} {v}: {ms}", flush=True)
    print("\n| model | variant | XLA | median ms | speed-up vs default |\n|---|---|---|---|---|")
    for model, by_variant in samples.items():
        for v, by_jit in by_variant.items():
            for jit, values in by_jit.items():
                base = statistics.median(by_variant["default"][jit])
                med = statistics.median(values)
                print(f"| {model} | {v} | {jit} | {med:.0f} | {base / med:.2f}x |")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"command": provenance.command_line("bench/levers.py"),
                       "load_average_end": list(os.getloadavg()), "samples": samples}, f,
                      indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
