"""Markdown, charts and the results page's tables rendered from `reproduction/<suite>.json`.

The results page (`docs/results.md`, linked from README) holds one generated block per suite between
`<!-- reproduction:<suite>:begin -->` and `<!-- reproduction:<suite>:end -->`;
`update_readme` rewrites those blocks from the JSON files and `readme_mismatches` lists the
blocks that differ (the test suite fails on any, so no published number is typed by hand).
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any, Mapping, Sequence

from mmali_tf.metrics import report
from mmali_tf.repro import claims as claims_lib
from mmali_tf.repro import contrastive, curves, many_modalities, study, targets
from mmali_tf.repro.runner import IDLE_LOAD, load_note

BEGIN, END = "<!-- reproduction:{}:begin -->", "<!-- reproduction:{}:end -->"


def _ok(suite: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in suite["runs"] if r.get("status") == "ok"]


def budget_cell(record: Mapping[str, Any]) -> str:
    """"steps/config steps x batch, training minutes (its load marked) + evaluation minutes"
    of one run."""
    cell = f"{record['steps']:,}/{record['config_steps']:,} x {record['batch_size']}"
    if record["steps"] < record["config_steps"]:
        share = 100.0 * record["steps"] / record["config_steps"]
        cell += f" ({share:.0f} %)" if share >= 1 else f" ({share:.2f} %)"
    cell += f", {record['train_wall_s'] / 60.0:.1f} min" + load_note(record)
    if record.get("eval_wall_s") is not None:
        cell += f" + eval {record['eval_wall_s'] / 60.0:.1f} min"
    return cell


def budget_line(records: Sequence[Mapping[str, Any]], not_run: Sequence[str] = ()) -> str:
    """What actually ran: how many runs reached their config's steps, the others, and the
    suite's runs that have no record yet (`not_run`)."""
    ok = [r for r in records if r.get("status") == "ok"]
    short = [r for r in ok if r["steps"] < r["config_steps"]]
    if not short:
        line = f"every run ({len(ok)}) at its config's full steps"
    else:
        line = (f"{len(ok) - len(short)} of {len(ok)} runs at their configs' full steps; the "
                "others: " + ", ".join(f"`{r['name']}` {r['steps']:,} of {r['config_steps']:,}"
                                       for r in short))
    if not_run:
        line += f"; not run yet ({len(not_run)}): " + ", ".join(f"`{n}`" for n in not_run)
    return line


def _groups(suite: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """Successful runs grouped by dataset (comparison tables need one dataset)."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for rec in _ok(suite):
        out.setdefault(str(rec["metrics"]["meta"].get("dataset")), []).append(rec)
    return out


#: sample-quality columns: (column, prefix of the `fid` keys it averages)
FID_COLUMNS = (("FID cross", "cross/"), ("FID joint", "joint/"))
FID_LEGEND = ("FID cross / FID joint: mean FID of the cross-modal / prior-sampled image sets "
              "against the real test images, on the penultimate features of the coherence "
              "classifiers (not Inception: not comparable with papers' FIDs; lower is better); "
              "- where the evaluation predates sample quality.")


def fid_cell(metrics: Mapping[str, Any], prefix: str) -> str:
    """Mean FID of a run's generated image sets whose key starts with `prefix` ("-" if none)."""
    values = [v for k, v in metrics.get("fid", {}).items() if k.startswith(prefix)]
    return f"{sum(values) / len(values):.1f}" if values else "-"


def _has_fid(records: Sequence[Mapping[str, Any]]) -> bool:
    return any("fid" in r["metrics"] for r in records)


def _metric_cells(records: Sequence[Mapping[str, Any]]) -> tuple[list[str], dict[str, list]]:
    """Columns and per-run cells: Table-2 layout for two modalities, `many_modalities`'
    compact layout beyond; FID columns when any run has sample quality."""
    if many_modalities.applies(records):
        columns = many_modalities.columns(records)
        cells = {r["name"]: many_modalities.cells(r, columns) for r in records}
    else:
        columns, values = report.comparison({r["name"]: r["metrics"] for r in records})
        cells = {}
        for rec in records:
            bad = report.collapsed_columns(rec["metrics"], columns)
            cells[rec["name"]] = [report.mark_cell(v, c in bad)
                                  for v, c in zip(values[rec["name"]], columns)]
    if _has_fid(records):
        columns = list(columns) + [c for c, _ in FID_COLUMNS]
        for rec in records:
            cells[rec["name"]] += [fid_cell(rec["metrics"], p) for _, p in FID_COLUMNS]
    return list(columns), cells


def runs_table(records: Sequence[Mapping[str, Any]]) -> str:
    """One row per run: budget, ms/step and the metric columns; collapsed sets marked."""
    columns, metric_cells = _metric_cells(records)
    head = ["run (config)", "model", "steps x batch, train + eval time", "ms/step"] + columns
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rec in records:
        ms = "-" if rec.get("ms_per_step") is None else f"{rec['ms_per_step']:.0f}"
        cells = [f"`{rec['name']}`", str(rec["model"]), budget_cell(rec),
                 ms + ("" if ms == "-" or not load_note(rec) else "*")]
        lines.append("| " + " | ".join(cells + metric_cells[rec["name"]]) + " |")
    if many_modalities.applies(records):
        lines += ["", many_modalities.legend(records)]
    if _has_fid(records):
        lines += ["", FID_LEGEND]
    return "\n".join(lines) + "\n"


def protocol_line(suite: Mapping[str, Any]) -> str:
    """What the numbers are: protocol, evaluation size, budget, machine."""
    b, machine = suite["budget"], suite["machine"]
    budget = budget_line(suite["runs"], suite.get("not_run", ()))
    return (f"Protocol `{b['protocol']}` (Shi probe), {b['num_samples']:,} test pairs and prior "
            f"samples, seed 0; budget: {budget}; machine: {machine['cpu']} "
            f"({machine['cores']} cores; load average {machine['load_avg']} at the harness's "
            f"start), TensorFlow {machine['tensorflow']}. Times are wall times; one measured "
            f"while the 1-minute load average was above {IDLE_LOAD:g} (other jobs running) is "
            "marked (load x) with the mean load during that training, its ms/step with *, and "
            "is not an idle-machine time. Values in %; "
            "(collapsed): one class takes more than 50 % of the generated samples.")


def readme_block(suite: Mapping[str, Any]) -> str:
    """README's generated text for a suite (runs table(s), and the claims table)."""
    parts = [protocol_line(suite), ""]
    if suite["suite"] == "claims":
        matched = claims_lib.matched_time_markdown(claims_lib.matched_time_rows(suite["runs"]))
        parts += [claims_lib.claims_markdown(claims_lib.claims_rows(suite["runs"]))]
        parts += [matched] if matched else []
    elif suite["suite"] == "digits_study":
        parts += ["Targets, on the shipped configs:", "", study.targets_markdown(suite["runs"]),
                  "One change at a time (content / style: probes of the two parts of the code; "
                  "(c): collapsed):", "", study.study_markdown(suite["runs"])]
    else:
        groups = _groups(suite)
        for dataset, records in groups.items():
            parts += ([f"`{dataset}`:", ""] if len(groups) > 1 else []) + [runs_table(records)]
        if suite["suite"] == "digits":
            parts += ["Targets of every shipped config (`mmali_tf/repro/targets.py`): full "
                      f"steps, latent probe hand >= {targets.PROBE_HAND:g} and print >= "
                      f"{targets.PROBE_PRINT:g}, no collapsed joint or cross set, content probe "
                      f"- style probe >= {targets.CONTENT_GAP:g} points where a style code "
                      f"exists, training time <= {targets.MINUTES:g} min when measured on an "
                      "idle machine (or, under load, longer than that by the idle step "
                      "benchmark alone):", "",
                      targets.targets_markdown(suite["runs"], idle_ms=targets.idle_step_ms())]
        if suite["suite"] in ("digits", "digits_contrastive"):
            data = ("all pairs" if suite["suite"] == "digits" else
                    f"{100 * contrastive.PAIRS_SHARE:g} % of each class before pairing")
            compared = contrastive.comparison_markdown(suite["runs"], data)
            parts += [compared] if compared else []
        if suite["suite"] == "digits_text":
            parts += [f"Targets (`mmali_tf/repro/targets.py`): full steps, hand->text and "
                      f"text->hand coherence >= {targets.TEXT_COHERENCE:g} for "
                      f"{', '.join(targets.TEXT_TARGET_MODELS)}:", "",
                      targets.targets_markdown(suite["runs"], "digits_text")]
    curved = curves.with_curves(suite["runs"])
    if curved:
        parts += [curves.curve_markdown(suite["suite"], curved)]
    failed = [r for r in suite["runs"] if r.get("status") != "ok"]
    if failed:
        parts += ["Not run: " + "; ".join(f"`{r['name']}` ({r.get('error', r['status'])})"
                                          for r in failed), ""]
    return "\n".join(parts).rstrip("\n") + "\n"


def _minutes(suite: Mapping[str, Any], key: str) -> str:
    return f"{sum(r.get(key) or 0.0 for r in _ok(suite)) / 60.0:.1f} min"


def suite_markdown(suite: Mapping[str, Any]) -> str:
    """reproduction/<suite>.md: command, wall time, the generated block, per-run records."""
    lines = [f"# Reproduction suite `{suite['suite']}`", "",
             f"Generated by `{suite['command']}` on {suite['created']}. Wall time: training "
             f"{_minutes(suite, 'train_wall_s')} and evaluation {_minutes(suite, 'eval_wall_s')} "
             f"(sums over the runs, whenever they ran, at the loads the table shows), this "
             f"invocation "
             f"{suite['wall_s'] / 60.0:.1f} min (runs already trained or evaluated are reused).",
             "", readme_block(suite)]
    if suite["suite"] == "claims":
        for dataset, records in _groups(suite).items():
            lines += [f"## Runs on `{dataset}`", "", runs_table(records)]
    lines += ["## Runs", ""]
    for rec in suite["runs"]:
        line = f"- `{rec['name']}`: `{rec['config']}`"
        if rec.get("overrides"):
            line += " " + " ".join(f"`{o}`" for o in rec["overrides"])
        if rec.get("status") == "ok":
            line += (f", {rec['steps']:,} steps, flags sha256 {rec['flags_sha256'][:12]}, "
                     f"collapsed sets: {', '.join(report.collapsed_sets(rec['metrics'])) or 'none'}")
        else:
            line += f": FAILED: {rec.get('error')}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def suite_chart(suite: Mapping[str, Any], path: str) -> None:
    """Bar chart PNG of the suite's digits runs (else its first dataset's), %, in the columns
    of its table; for `claims`, the claims with their error bars."""
    if suite["suite"] == "claims":
        claims_lib.claims_chart(claims_lib.claims_rows(suite["runs"]), path)
        return
    groups = _groups(suite)
    records = groups.get("digits") or next(iter(groups.values()), [])
    if suite["suite"] == "digits_study":   # the shipped configs; the variants are in its tables
        records = [r for r in records if not r["name"].startswith("study_")]
    if not records:
        return
    if many_modalities.applies(records):
        columns = many_modalities.columns(records)
        values = {r["name"]: many_modalities.values(r, columns) for r in records}
        columns = many_modalities.chart_labels(columns)
    else:
        columns, values = report.comparison({r["name"]: r["metrics"] for r in records})
    report.bar_chart(columns, {n: [None if v is None else 100.0 * v for v in vals]
                               for n, vals in values.items()}, path)


def load_suites(directory: str) -> dict[str, dict[str, Any]]:
    """suite name -> contents of every `<directory>/*.json`."""
    out = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        out[data["suite"]] = data
    return out


def _block_pattern(suite: str) -> re.Pattern[str]:
    return re.compile(re.escape(BEGIN.format(suite)) + r"\n(.*?)" + re.escape(END.format(suite)),
                      re.S)


def readme_mismatches(readme: str, suites: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Suites whose README block is missing or differs from the JSON's rendering."""
    bad = []
    for name, suite in suites.items():
        found = _block_pattern(name).search(readme)
        if found is None or found.group(1) != readme_block(suite):
            bad.append(name)
    return bad


def update_readme(readme: str, suites: Mapping[str, Mapping[str, Any]]) -> str:
    """README text with every suite's block re-rendered (blocks must already exist)."""
    for name, suite in suites.items():
        pattern = _block_pattern(name)
        if pattern.search(readme) is None:
            raise ValueError(f"README has no {BEGIN.format(name)} ... {END.format(name)} block "
                             f"for suite {name!r}; add the two markers where the table goes")
        block = BEGIN.format(name) + "\n" + readme_block(suite) + END.format(name)
        readme = pattern.sub(lambda _: block, readme, count=1)
    return readme
