"""The contrastive variants against their base models, with all the data and with 20 % of it.

Shi et al. (ICLR 2021, section 5) report that cI- and cC- models match or beat their base
models in both settings.

Suite `digits_contrastive` trains the base and contrastive configs of every family on
PAIRS_SHARE of each class's instances (`--percentage`: that share of each modality is kept
before pairing, the paper's 20 %-data setting), each at its config's own steps and batch;
the full-data runs are the `digits` suite's. `comparison_markdown` sets each variant beside
its base run of the same data share.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from mmali_tf.repro.run_spec import RunSpec

#: base model -> its contrastive variants (IWAE and CUBO negatives).
FAMILIES = {"mvae": ("ci_mvae", "cc_mvae"), "jmvae": ("ci_jmvae", "cc_jmvae"),
            "mmvae": ("ci_mmvae", "cc_mmvae")}
#: the share of each class's instances the reduced-data runs keep (the paper's 20 %).
PAIRS_SHARE = 0.2
#: the compared metrics: (column, metrics section, key)
METRICS = (("latent hand", "latent_accuracy", "hand"),
           ("latent print", "latent_accuracy", "print"),
           ("joint", "joint_coherence", "all"),
           ("cross hand->print", "cross_coherence", "hand->print"),
           ("cross print->hand", "cross_coherence", "print->hand"))
#: mean difference (points) inside which a variant "matches" its base (one seed each: the
#: seed-to-seed spread of these metrics on digits is a few points).
MATCH_MARGIN = 3.0


def run_prefix() -> str:
    """Name prefix of the reduced-data runs (`digits_pairs20_` at PAIRS_SHARE = 0.2)."""
    return f"digits_pairs{round(100 * PAIRS_SHARE)}_"


def contrastive_runs(root: str) -> list[RunSpec]:
    """Every family's base and contrastive digits configs at PAIRS_SHARE of the data."""
    return [RunSpec(run_prefix() + model, os.path.join(root, "configs", f"digits_{model}.cfg"),
                    (f"--percentage={PAIRS_SHARE:g}",))
            for base, variants in FAMILIES.items() for model in (base, *variants)]


def _value(record: Mapping[str, Any], section: str, key: str) -> float | None:
    value = record["metrics"][section].get(key)
    if isinstance(value, Mapping):  # latent accuracy: the whole code's probe
        value = value.get("both")
    return None if value is None else 100.0 * value


def comparison_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per contrastive run whose base model ran on the same data: its values, the
    differences from the base and a verdict ("beats", "matches", "loses"; "not comparable"
    while either run is short of its config's steps)."""
    ok = {str(r["model"]): r for r in records if r.get("status") == "ok"}
    rows = []
    for base, variants in FAMILIES.items():
        for model in variants:
            if base not in ok or model not in ok:
                continue
            pair = (ok[model], ok[base])
            values = [_value(ok[model], section, key) for _, section, key in METRICS]
            bases = [_value(ok[base], section, key) for _, section, key in METRICS]
            diffs = [None if v is None or b is None else v - b for v, b in zip(values, bases)]
            known = [d for d in diffs if d is not None]
            mean = sum(known) / len(known) if known else None
            if any(r["steps"] < r["config_steps"] for r in pair) or mean is None:
                verdict = "not comparable"
            elif mean >= MATCH_MARGIN:
                verdict = "beats"
            elif mean > -MATCH_MARGIN:
                verdict = "matches"
            else:
                verdict = "loses"
            rows.append({"base": ok[base]["name"], "run": ok[model]["name"], "values": values,
                         "diffs": diffs, "mean_diff": mean, "verdict": verdict,
                         "steps": [f"{r['steps']:,}/{r['config_steps']:,}" for r in pair]})
    return rows


def _cell(value: float | None, diff: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" + ("" if diff is None else f" ({diff:+.1f})")


def comparison_markdown(records: Sequence[Mapping[str, Any]], data: str) -> str:
    """Each contrastive run beside its base (`data`: which share of the pairs they saw);
    empty when no family has both runs."""
    rows = comparison_rows(records)
    if not rows:
        return ""
    head = ["variant", "base", "steps (variant, base)"] + [c for c, _, _ in METRICS] + [
        "mean difference", "verdict"]
    lines = [f"Contrastive variants vs their base models, {data} (value, and in brackets its "
             f"difference from the base, in points; verdict on the mean difference: beats >= "
             f"+{MATCH_MARGIN:g}, loses <= -{MATCH_MARGIN:g}, else matches; one seed each):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        mean = "-" if row["mean_diff"] is None else f"{row['mean_diff']:+.1f}"
        cells = ([f"`{row['run']}`", f"`{row['base']}`", ", ".join(row["steps"])]
                 + [_cell(v, d) for v, d in zip(row["values"], row["diffs"])]
                 + [mean, row["verdict"]])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
