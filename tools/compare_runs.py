"""Compare evaluated runs of one dataset: one markdown table and one bar chart (paper Table 2).

    python tools/compare_runs.py runs/digits_mmali runs/digits_mmvae [--compare_out=compare]

Reads `<run>/eval/metrics.json` of every run (written by `python -m mmali_tf.evaluate`),
prints the table, and writes `<compare_out>.md` and `<compare_out>.png`. Runs on different
datasets, or without metrics, are refused with one line and exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from mmali_tf import cli  # noqa: E402
from mmali_tf import flags as mmali_flags  # noqa: E402
from mmali_tf.metrics import report  # noqa: E402

FLAGS = flags.FLAGS


def load_metrics(run_dirs: Sequence[str]) -> dict[str, dict]:
    """run name (its directory's basename, made unique) -> metrics.json contents."""
    runs: dict[str, dict] = {}
    for run_dir in run_dirs:
        path = os.path.join(run_dir, "eval", "metrics.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found; run python -m mmali_tf.evaluate "
                                    f"--run_dir={run_dir} first")
        with open(path, encoding="utf-8") as f:
            metrics = json.load(f)
        report.validate_metrics(metrics)
        name = os.path.basename(os.path.normpath(run_dir))
        while name in runs:
            name += "'"
        runs[name] = metrics
    return runs


def main(argv: Sequence[str]) -> None:
    run_dirs = list(argv[1:])
    with cli.user_errors():
        if not run_dirs:
            raise ValueError("no run directories given; usage: compare_runs.py RUN_DIR...")
        runs = load_metrics(run_dirs)
        columns, values = report.comparison(runs)
    text = report.comparison_markdown(columns, values, runs)
    report.write_text(FLAGS.compare_out + ".md", text)
    report.bar_chart(columns, {n: [None if v is None else 100.0 * v for v in vals]
                               for n, vals in values.items()}, FLAGS.compare_out + ".png")
    print(text, end="")
    print(f"Wrote {FLAGS.compare_out}.md and {FLAGS.compare_out}.png", flush=True)


def run() -> None:
    """Console script entry."""
    mmali_flags.define_compare_flags()
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
