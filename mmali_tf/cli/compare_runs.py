"""Compare evaluated runs of one dataset: one markdown table and one bar chart (paper Table 2).

    python tools/compare_runs.py runs/digits_mmali runs/digits_mmvae [--compare_out=compare]
    python tools/compare_runs.py runs/a/eval/clean runs/a/eval/reference --compare_out=a

Each argument is a run directory (its `eval/<--eval>/metrics.json` is read, `--eval=clean` by
default, or the older `eval/metrics.json`) or an evaluation directory holding `metrics.json`
(`<run>/eval/<protocol>[_<probe>]`, written by `python -m mmali_tf.evaluate`). Prints the
table, and writes `<compare_out>.md` and `<compare_out>.png`; collapsed generations are marked.
Runs on different datasets, or without metrics, are refused with one line and exit code 2.
"""

from __future__ import annotations

import json
import os
from typing import Sequence


from absl import app, flags

from mmali_tf import cli
from mmali_tf import flags as mmali_flags
from mmali_tf.metrics import report

FLAGS = flags.FLAGS


def metrics_path(path: str, eval_name: str) -> tuple[str, str]:
    """(metrics.json path, display name) of a run directory or an evaluation directory."""
    direct = os.path.join(path, "metrics.json")
    norm = os.path.normpath(path)
    if os.path.isfile(direct):
        parent = os.path.dirname(norm)
        if os.path.basename(parent) == "eval":  # <run>/eval/<protocol>[_<probe>]
            return direct, f"{os.path.basename(os.path.dirname(parent))} ({os.path.basename(norm)})"
        return direct, os.path.basename(norm)
    for candidate in (os.path.join(path, "eval", eval_name, "metrics.json"),
                      os.path.join(path, "eval", "metrics.json")):
        if os.path.isfile(candidate):
            return candidate, os.path.basename(norm)
    raise FileNotFoundError(f"{path}: no metrics.json, eval/{eval_name}/metrics.json or "
                            f"eval/metrics.json; run python -m mmali_tf.evaluate "
                            f"--run_dir={path} first")


def load_metrics(paths: Sequence[str], eval_name: str = "clean") -> dict[str, dict]:
    """display name (made unique) -> metrics.json contents, for run or evaluation dirs."""
    runs: dict[str, dict] = {}
    for path in paths:
        json_path, name = metrics_path(path, eval_name)
        with open(json_path, encoding="utf-8") as f:
            metrics = json.load(f)
        report.validate_metrics(metrics)
        while name in runs:
            name += "'"
        runs[name] = metrics
    return runs


def main(argv: Sequence[str]) -> None:
    run_dirs = list(argv[1:])
    with cli.user_errors():
        if not run_dirs:
            raise ValueError("no run directories given; usage: compare_runs.py RUN_DIR...")
        runs = load_metrics(run_dirs, FLAGS["eval"].value)
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
