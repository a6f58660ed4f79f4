"""The default-data study (suite `digits_study`): what moves which metric on `digits`.

Around each studied model's shipped digits config (`configs/digits_<model>.cfg`, the run
shared with the `digits` suite) the study changes one thing at a time (`VARIANTS`), every run
at the config's own budget, and checks the shipped runs against the targets of the issue that
asked for the study (`targets_rows`). A variant run is evaluated without log-likelihoods (the
study compares probes and coherences only).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

from mmali_tf.metrics import report
from mmali_tf.repro.run_spec import RunSpec

STUDY_MODELS = ("mvae", "mmjsd", "mmvae", "mmali")
VAE_MODELS = ("mvae", "mmvae", "mmjsd")
VARIANT_EVAL_FLAGS = ("--ll_items=0",)
#: the paper's MNIST-SVHN joint coherence, mmALI vs the best baseline (mmALI Table 2).
PAPER_JOINT_MARGIN = (79.31, 48.95)
#: collapsed directions a paper reports at chance level, so they do not fail a target.
EXPECTED_COLLAPSE = {"mvae": ("cross/print->hand",)}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One change of a shipped config: a slug for run names, what it changes, its flags."""

    slug: str
    change: str
    overrides: tuple[str, ...]
    models: tuple[str, ...] = STUDY_MODELS


#: The old default for comparison: dataset version 1 and each model's previous config.
PREVIOUS = {
    "mmali": ("--digits_print_colours=uniform", "--nopair_all_instances", "--augment=",
              "--max_steps=1500", "--ema_start=750"),
    "mvae": ("--digits_print_colours=uniform", "--nopair_all_instances", "--augment=",
             "--max_steps=1000", "--kl_anneal_steps=250"),
    "mmvae": ("--digits_print_colours=uniform", "--nopair_all_instances", "--augment=",
              "--max_steps=1000"),
    "mmjsd": ("--digits_print_colours=uniform", "--nopair_all_instances", "--augment=",
              "--max_steps=1000"),
}

#: One change at a time, each at half the shipped config's steps and compared with the
#: shipped config at half its steps (`half_steps`, first): the 2-core budget of one study.
VARIANTS = (
    Variant("half_steps", "shipped config at half the steps (reference for the rows below)", (),
            ("mmali", "mvae", "mmjsd")),
    Variant("uniform_colours", "dataset version 1 colours (uniform RGB, both polarities)",
            ("--digits_print_colours=uniform",), ("mmali", "mvae", "mmjsd")),
    Variant("pairs_capped", "pairing capped at the smaller modality (prints left out)",
            ("--nopair_all_instances",), ("mmali", "mvae")),
    Variant("no_augment", "no augmentation of `hand`", ("--augment=",), ("mvae",)),
    Variant("paper_rec_equal_lr", "paper's reconstruction weights (0.05) and one learning rate",
            ("--lambda_x_rec=0.05", "--lambda_s_rec=0.05", "--lambda_c_rec=0.05", "--g_lr=0.0002"),
            ("mmali",)),
    Variant("distractors_03", "neighbouring digits at 0.3 per side instead of 0.6",
            ("--digits_distractor_prob=0.3",), ("mvae",)),
    Variant("batch_32", "batch 32", ("--batch_size=32",), ("mvae",)),
)


def _config(root: str, model: str) -> str:
    return os.path.join(root, "configs", f"digits_{model}.cfg")


def _config_steps(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip().startswith("--max_steps="):
                return int(line.strip().split("=", 1)[1])
    raise ValueError(f"{path} sets no --max_steps (the study halves it)")


def study_runs(root: str = ".") -> list[RunSpec]:
    """RunSpecs: per model the shipped config (name `digits_<model>`, shared with the digits
    suite), the previous default, then every variant that applies to it (at half steps)."""
    runs = []
    for model in STUDY_MODELS:
        config = _config(root, model)
        half = str(_config_steps(config) // 2)
        runs.append(RunSpec(f"digits_{model}", config))
        runs.append(RunSpec(f"study_{model}_previous", config, PREVIOUS[model],
                            VARIANT_EVAL_FLAGS))
        runs += [RunSpec(f"study_{model}_{v.slug}", config,
                         (*v.overrides, f"--max_steps={half}"), VARIANT_EVAL_FLAGS)
                 for v in VARIANTS if model in v.models]
    return runs


def _change(name: str) -> str:
    model, _, slug = name[len("study_"):].partition("_")
    if slug == "previous":
        return "previous default (dataset version 1, previous config)"
    return next(v.change for v in VARIANTS if v.slug == slug)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.1f}"


def _probe(metrics: Mapping[str, Any], modality: str, part: str = "both") -> float | None:
    return metrics["latent_accuracy"].get(modality, {}).get(part)


def _row_cells(record: Mapping[str, Any], change: str) -> list[str]:
    m = record["metrics"]
    bad = report.collapsed_sets(m)
    cross = m["cross_coherence"]
    mark = lambda key, v: _pct(v) + (" (c)" if any(b.startswith(key) for b in bad) else "")
    content = [f"{_pct(_probe(m, x, 'content'))} / {_pct(_probe(m, x, 'style'))}"
               if _probe(m, x, "style") is not None else "-" for x in ("hand", "print")]
    return [change, f"{record['steps']:,} x {record['batch_size']}",
            f"{record['train_wall_s'] / 60.0:.1f}", _pct(_probe(m, "hand")),
            _pct(_probe(m, "print")), *content, mark("joint/", m["joint_coherence"].get("all")),
            mark("cross/hand->print", cross.get("hand->print")),
            mark("cross/print->hand", cross.get("print->hand"))]


STUDY_HEAD = ["change", "steps x batch", "train min", "latent hand", "latent print",
              "hand content / style", "print content / style", "joint", "cross hand->print",
              "cross print->hand"]


def study_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """One table per model: the shipped config, then one change at a time."""
    ok = {r["name"]: r for r in records if r.get("status") == "ok"}
    parts = []
    for model in STUDY_MODELS:
        rows = [(f"**shipped** `configs/digits_{model}.cfg`", ok[f"digits_{model}"])
                ] if f"digits_{model}" in ok else []
        rows += [(_change(n), r) for n, r in ok.items() if n.startswith(f"study_{model}_")]
        if not rows:
            continue
        lines = [f"`{model}`:", "", "| " + " | ".join(STUDY_HEAD) + " |",
                 "|" + "---|" * len(STUDY_HEAD)]
        lines += ["| " + " | ".join(_row_cells(r, c)) + " |" for c, r in rows]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _target(what: str, value: float | None, bound: float, unit: str = " %") -> dict[str, Any]:
    return {"target": what, "value": value, "bound": bound,
            "met": None if value is None else value >= bound, "unit": unit}


def _model_targets(model: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    m, minutes = record["metrics"], record["train_wall_s"] / 60.0
    pct = lambda v: None if v is None else 100.0 * v
    cross = m["cross_coherence"]
    limit = 15.0 if model == "mmali" else 20.0
    rows = [{"target": f"training time <= {limit:g} min", "value": minutes, "bound": limit,
             "met": minutes <= limit, "unit": " min"}]
    if model == "mmali":
        rows += [_target("latent probe hand >= 85", pct(_probe(m, "hand")), 85.0),
                 _target("latent probe print >= 60", pct(_probe(m, "print")), 60.0),
                 _target("cross hand->print >= 60", pct(cross.get("hand->print")), 60.0),
                 _target("cross print->hand >= 60", pct(cross.get("print->hand")), 60.0),
                 _target("joint coherence >= 60", pct(m["joint_coherence"].get("all")), 60.0)]
        for x in ("hand", "print"):
            c, s = _probe(m, x, "content"), _probe(m, x, "style")
            gap = None if c is None or s is None else 100.0 * (c - s)
            rows.append(_target(f"{x} content probe - style probe >= 30 points", gap, 30.0,
                                " points"))
        return rows
    rows += [_target("latent probe hand >= 80", pct(_probe(m, "hand")), 80.0),
             _target("latent probe print >= 50", pct(_probe(m, "print")), 50.0)]
    allowed = EXPECTED_COLLAPSE.get(model, ())
    bad = [s for s in report.collapsed_sets(m) if s.split("/")[0] in ("joint", "cross")
           and s not in allowed]
    rows.append({"target": "no collapsed joint/cross set" + (
        f" (except {', '.join(allowed)}: chance level in the paper)" if allowed else ""),
        "value": len(bad), "bound": 0, "met": not bad, "unit": " collapsed: "
        + (", ".join(bad) or "none")})
    return rows


def targets_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every target of the study's issue, checked on the shipped runs (missing runs skipped)."""
    ok = {r["name"]: r for r in records if r.get("status") == "ok"}
    rows = []
    for model in STUDY_MODELS:
        if f"digits_{model}" in ok:
            rows += [{"model": model, **t} for t in _model_targets(model, ok[f"digits_{model}"])]
    mmali = ok.get("digits_mmali")
    baselines = [ok[f"digits_{v}"] for v in VAE_MODELS if f"digits_{v}" in ok]
    if mmali and baselines:
        best = max(100.0 * (r["metrics"]["joint_coherence"].get("all") or 0.0)
                   for r in baselines)
        margin = PAPER_JOINT_MARGIN[0] - PAPER_JOINT_MARGIN[1]
        ours = 100.0 * (mmali["metrics"]["joint_coherence"].get("all") or 0.0) - best
        rows.append({"model": "mmali", **_target(
            f"joint coherence above the best baseline's by >= {margin:.2f} points (paper)",
            ours, margin, " points")})
    return rows


def targets_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """The targets table: model, target, measured value, met."""
    lines = ["| model | target | measured | met |", "|---|---|---|---|"]
    for t in targets_rows(records):
        value = "-" if t["value"] is None else (
            f"{t['value']:.1f}{t['unit']}" if t["unit"] in (" %", " min", " points")
            else f"{t['value']}{t['unit']}")
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['model']} | {t['target']} | {value} | {met} |")
    return "\n".join(lines) + "\n"
