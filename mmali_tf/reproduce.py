"""Reproduction harness: `python -m mmali_tf.reproduce --suite=digits [--jobs=1]
[--step_scale=1] [--max_steps=0] [--budget_minutes=0]`.

Trains every run of the suite (`mmali_tf.repro.suites`; resuming or skipping what exists in
`--runs_root`), evaluates it, and writes `reproduction/<suite>.json` (per run: config, flags
hash, steps, training wall time, ms/step, metrics, protocol; the machine and the budget),
`reproduction/<suite>.md` and `reproduction/<suite>.png` (with `--curve_every=N`, each run's
step curve too: `repro/curves.py`, `reproduction/<suite>_curve.png`). Reduced budgets are
recorded and printed in every table row. `--runs=REGEX` trains/evaluates only the matching
runs and keeps the other runs' records of the existing `reproduction/<suite>.json` (each record carries the
budget it ran under), so a suite can be filled in parts at different budgets.
`--update_readme` only re-renders the generated tables of the results page (`--readme`,
default `docs/results.md`, which README links) and `reproduction/<suite>.md/.png` from
`reproduction/*.json`; `--check_readme` exits 1 when the page differs.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import platform
import re
import sys
import time
from typing import Any, Sequence

from absl import app, flags

from mmali_tf import cli

#: the page that holds every suite's generated tables (README links it)
RESULTS_PAGE = "docs/results.md"

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Flags of the harness (idempotent)."""
    if "suite" in FLAGS:
        return
    from mmali_tf.repro.suites import SUITES

    flags.DEFINE_enum("suite", None, SUITES, "Suite to run.")
    flags.DEFINE_integer("jobs", 1, "Runs trained/evaluated in parallel processes.",
                         lower_bound=1)
    flags.DEFINE_float("step_scale", 1.0, "Train each config for this fraction of its "
                       "--max_steps.", lower_bound=1e-6, upper_bound=1.0)
    flags.DEFINE_integer("max_steps", 0, "Cap on every run's steps (0: none).", lower_bound=0)
    flags.DEFINE_float("budget_minutes", 0.0, "Training-time budget per run in minutes, "
                       "measured on its first steps (0: none).", lower_bound=0.0)
    flags.DEFINE_enum("protocol", "clean", ("clean", "reference"), "Evaluation protocol.")
    flags.DEFINE_integer("num_samples", 2000, "evaluate --num_samples.", lower_bound=1)
    flags.DEFINE_integer("curve_every", 0, "Also evaluate each run's step curve: joint and "
                         "cross coherence of its checkpoints at multiples of N (each run "
                         "trains with --keep_checkpoint_every=N added), in the suite JSON, a "
                         "curve table and <suite>_curve.png (mmali_tf/repro/curves.py; 0: off).",
                         lower_bound=0)
    flags.DEFINE_string("runs", "", "Regular expression: only the suite's runs whose name it "
                        "matches (re.search); the other runs' records of the existing suite "
                        "JSON are kept.")
    flags.DEFINE_string("runs_root", "runs/reproduce", "Run directories of the harness.")
    flags.DEFINE_string("out_dir", "reproduction", "Where <suite>.json/.md/.png go.")
    flags.DEFINE_string("readme", RESULTS_PAGE, "The page holding the generated tables "
                        "(README links it).")
    flags.DEFINE_boolean("update_readme", False, "Only re-render the results page's tables and "
                         "<out_dir>/<suite>.md/.png from <out_dir>/*.json.")
    flags.DEFINE_boolean("check_readme", False, "Only check the results page's tables against "
                         "<out_dir>/*.json (exit 1 on a difference).")


def machine() -> dict[str, Any]:
    """CPU model, core count, load, library versions."""
    cpu = platform.processor() or platform.machine()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    try:
        from importlib.metadata import version
        tf_version = version("tensorflow")
    except Exception:  # noqa: BLE001 - metadata missing: report unknown
        tf_version = "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf_version,
            "load_avg": " ".join(f"{x:.1f}" for x in os.getloadavg())}


def run_suite(suite: str, specs: Sequence[Any], budget: Any, runs_root: str, jobs: int,
              command: str) -> dict[str, Any]:
    """Train/evaluate `specs` (the runs of `suite`, `jobs` at a time); the suite record."""
    from mmali_tf.repro import claims, runner

    info = machine()
    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        records = list(pool.map(lambda s: runner.run_one(s, runs_root, budget), specs))
    for rec in records:
        rec["budget_label"] = budget.label()
        status = (f"{rec['steps']:,} steps" if rec["status"] == "ok" else
                  f"FAILED: {rec.get('error')}")
        print(f"{rec['name']}: {status}", flush=True)
    out = {"suite": suite, "command": command, "machine": info,
           "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "wall_s": round(time.time() - start, 1),
           "budget": {**vars(budget), "label": budget.label()}, "runs": records}
    if suite == "claims":
        out["claims"] = claims.claims_rows(records)
    return out


def select_runs(specs: Sequence[Any], pattern: str) -> list[Any]:
    """The specs whose name matches `pattern` (all when empty); ValueError when none does."""
    if not pattern:
        return list(specs)
    try:
        chosen = [s for s in specs if re.search(pattern, s.name)]
    except re.error as error:
        raise ValueError(f"--runs={pattern}: not a regular expression ({error})") from None
    if not chosen:
        raise ValueError(f"--runs={pattern} matches no run of the suite (runs: "
                         f"{', '.join(s.name for s in specs)})")
    return chosen


def _with_current_steps(record: dict[str, Any], spec: Any) -> dict[str, Any]:
    """A previous record with its config's current `--max_steps` as `config_steps`, so a run
    whose config has grown since shows as below its config's steps."""
    if "config_steps" not in record or not os.path.isfile(spec.config):
        return record
    return {**record, "config_steps": spec.config_steps()}


def merge_previous(out: dict[str, Any], specs: Sequence[Any], path: str) -> None:
    """Put the records of `path` (the suite's previous JSON) for runs not in `out` back into
    `out["runs"]`, in the suite's order (`config_steps` read from their configs now), and
    name the suite's runs that have no record in either as `out["not_run"]`."""
    old = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            old = {r["name"]: r for r in json.load(f).get("runs", [])}
    new = {r["name"]: r for r in out["runs"]}
    out["runs"] = [new.get(s.name) or _with_current_steps(old[s.name], s) for s in specs
                   if s.name in new or s.name in old]
    out["not_run"] = [s.name for s in specs if s.name not in new and s.name not in old]
    labels = sorted({r["budget_label"] for r in out["runs"] if r.get("budget_label")})
    if len(labels) > 1:
        out["budget"]["label"] = "per run, one of: " + "; ".join(labels)


def write_suite(out: dict[str, Any], out_dir: str) -> None:
    """<suite>.json, .md and .png (and <suite>_curve.png when runs have step curves), each
    written atomically."""
    from mmali_tf.metrics import report
    from mmali_tf.repro import curves, tables

    base = os.path.join(out_dir, out["suite"])
    report.write_json(base + ".json", out)
    report.write_text(base + ".md", tables.suite_markdown(out))
    tables.suite_chart(out, base + ".png")
    curved = curves.with_curves(out["runs"])
    if curved:
        curves.curve_chart(curved, base + "_curve.png")


def main(argv: Sequence[str]) -> None:
    cli.reject_positional(argv)
    from mmali_tf.metrics import report
    from mmali_tf.repro import tables
    from mmali_tf.repro.runner import Budget

    with cli.user_errors():
        if FLAGS.update_readme or FLAGS.check_readme:
            if not os.path.isfile(FLAGS.readme):
                raise FileNotFoundError(f"--readme={FLAGS.readme}: no such file")
            with open(FLAGS.readme, encoding="utf-8") as f:
                text = f.read()
            suites = tables.load_suites(FLAGS.out_dir)
            if FLAGS.check_readme:
                bad = tables.readme_mismatches(text, suites)
                if bad:
                    print(f"{FLAGS.readme}: generated tables differ from {FLAGS.out_dir}/*.json for: "
                          f"{', '.join(bad)}; run python -m mmali_tf.reproduce --update_readme",
                          file=sys.stderr)
                    sys.exit(1)
                print(f"{FLAGS.readme}: generated tables match", flush=True)
                return
            report.write_text(FLAGS.readme, tables.update_readme(text, suites))
            from mmali_tf.repro import claims

            for suite in suites.values():
                if suite["suite"] == "claims":
                    suite["claims"] = claims.claims_rows(suite["runs"])
                write_suite(suite, FLAGS.out_dir)
            print(f"Rewrote the tables of {', '.join(suites)} in {FLAGS.readme} and "
                  f"{FLAGS.out_dir}/<suite>.md/.png", flush=True)
            return
        if FLAGS.suite is None:
            from mmali_tf.repro.suites import SUITES

            raise ValueError(f"--suite is required (one of {', '.join(SUITES)})")
        budget = Budget(FLAGS.step_scale, FLAGS.max_steps, FLAGS.budget_minutes,
                        FLAGS.protocol, FLAGS.num_samples, FLAGS.curve_every)
    command = "python -m mmali_tf.reproduce " + " ".join(argv_flags())
    from mmali_tf.repro.suites import suite_runs

    specs = suite_runs(FLAGS.suite)
    with cli.user_errors():
        chosen = select_runs(specs, FLAGS.runs)
    with cli.disk_full_errors():
        out = run_suite(FLAGS.suite, chosen, budget, FLAGS.runs_root, FLAGS.jobs, command)
        if FLAGS.runs:
            merge_previous(out, specs, os.path.join(FLAGS.out_dir, FLAGS.suite + ".json"))
            if FLAGS.suite == "claims":
                from mmali_tf.repro import claims
                out["claims"] = claims.claims_rows(out["runs"])
        write_suite(out, FLAGS.out_dir)
        if FLAGS.suite == "digits":   # the results page shows the main job's final grids
            from mmali_tf.repro import runner
            runner.copy_final_grids(FLAGS.runs_root, "digits_mmali", FLAGS.out_dir)
    print(f"Wrote {FLAGS.out_dir}/{FLAGS.suite}.json, .md and .png "
          f"({out['wall_s'] / 60.0:.1f} min)", flush=True)
    if any(r["status"] != "ok" for r in out["runs"]):
        sys.exit(1)


def argv_flags() -> list[str]:
    """The harness flags given on the command line, for the record."""
    names = ("suite", "runs", "jobs", "step_scale", "max_steps", "budget_minutes", "protocol",
             "num_samples", "curve_every", "runs_root", "out_dir")
    return [f"--{n}={FLAGS[n].value}" for n in names if FLAGS[n].present]


def run(argv: Sequence[str] | None = None) -> None:
    """Console entry."""
    define_flags()
    app.run(main, argv=list(argv) if argv is not None else sys.argv,
            flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
