"""The paper's claims, tested on the `claims` suite over seeds with error bars.

1. Factorised vs joint discriminator (Table 1, 2 views): linear probe of the first view's whole
   code, factorised mmALI above the monolithic-critic ablation (97.0 vs 86.0).
2. mmALI vs the best VAE baseline on generation (Table 2, MNIST-SVHN): joint and both cross
   coherences above the best baseline's (79.3 vs 48.95 joint; 95.2 vs 92.7 M->S; 83.8 vs
   79.7 S->M). The best baseline is the highest mean among the baselines that pass the floor.
3. Content vs style code (Table 3, MNIST): the content code's probe above the style code's
   (96.6 vs 23.6), on every modality of every mmALI group with a style code.

Runs are grouped by name (`<group>_s<seed>`, the seed read from `--seed=`); a number is the
mean over the group's seeds with the standard error of `repro/stats.py` (bootstrap over
distinct test inputs within each seed, then over seeds). `verdict` applies `VERDICT_RULE`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping, Sequence

from mmali_tf.metrics import report
from mmali_tf.repro import stats

#: (paper value of ours, paper value of the compared model) per row key.
PAPER = {"factorised_vs_joint": (97.02, 85.96), "joint_coherence": (79.31, 48.95),
         "cross_first_to_second": (95.22, 92.67), "cross_second_to_first": (83.80, 79.66),
         "content_vs_style": (96.61, 23.56)}
MIN_SEEDS = 3
CHANCE = 0.1                      # ten classes in every dataset of the suite
PROBE_FLOOR = 2 * CHANCE
GENERATED_SETS = ("joint/", "cross/", "self/")
VERDICT_RULE = (
    f"Verdict rule: **holds** when the difference exceeds 2 standard errors AND both compared "
    f"groups have >= {MIN_SEEDS} seeds, trained their configs' full steps, and work: the "
    f"whole-code probe of their first modality >= {100 * PROBE_FLOOR:.0f} % (2x chance) and no "
    "joint, cross or self generated set collapsed (one class > 50 % of it) in any seed; "
    "**does not hold** when the same holds with the difference reversed; otherwise "
    "**undecided** with every failed condition named. Numbers: mean over seeds +- standard "
    "error (bootstrap over distinct test inputs within each seed, then over seeds; the "
    "resample of the test inputs is shared by seeds and models scored on the same inputs).")


@dataclasses.dataclass
class Group:
    """The successful runs of one config over seeds."""

    name: str
    runs: list[Mapping[str, Any]]

    @property
    def model(self) -> str:
        return str(self.runs[0].get("model"))

    @property
    def metrics(self) -> Mapping[str, Any]:
        return self.runs[0]["metrics"]

    def modalities(self) -> list[str]:
        return [m for m in self.metrics["latent_accuracy"] if m != "joint"]

    def number(self, key: str) -> tuple[list[float], list[list[float]]] | None:
        """(per-seed values, per-seed bootstrap replicates) of a `per_input` set, or None
        when a run lacks it."""
        found = [r.get("per_input", {}).get(key) for r in self.runs]
        if not found or any(f is None for f in found):
            return None
        return [f["value"] for f in found], [f["replicates"] for f in found]

    def collapsed(self) -> list[str]:
        """Collapsed generated sets with the seeds they collapsed in."""
        seen: dict[str, int] = {}
        for run in self.runs:
            for key in report.collapsed_sets(run["metrics"]):
                if key.startswith(GENERATED_SETS):
                    seen[key] = seen.get(key, 0) + 1
        return [f"{k} ({n}/{len(self.runs)} seeds)" for k, n in sorted(seen.items())]

    def short_budget(self) -> bool:
        return any(r["steps"] < r["config_steps"] for r in self.runs)

    def budget(self) -> str:
        steps = sorted({r["steps"] for r in self.runs})
        return (f"{self.name}: {'/'.join(f'{s:,}' for s in steps)} of "
                f"{self.runs[0]['config_steps']:,} steps x {len(self.runs)} seed(s)")

    def unreliable(self) -> str:
        """"classifiers a 89 %, b 88 % < 95 %" when coherence classifiers miss the bar."""
        meta = self.metrics["meta"]
        bar = float(meta.get("classifier_threshold", 0.95))
        weak = {m: a for m, a in self.metrics.get("classifier_accuracy", {}).items() if a < bar}
        if not weak:
            return ""
        return ("classifiers " + ", ".join(f"{m} {100 * a:.1f} %" for m, a in weak.items())
                + f" < {100 * bar:.0f} %")


def seed_of(record: Mapping[str, Any]) -> int:
    """The run's `--seed=` override (0 when absent)."""
    for flag in record.get("overrides", []):
        if flag.startswith("--seed="):
            return int(flag.split("=", 1)[1])
    return 0


def groups(records: Sequence[Mapping[str, Any]]) -> dict[str, Group]:
    """Successful runs grouped by name without the `_s<seed>` suffix, seeds in order."""
    out: dict[str, Group] = {}
    for rec in sorted((r for r in records if r.get("status") == "ok"), key=seed_of):
        name = re.sub(r"_s\d+$", "", rec["name"])
        out.setdefault(name, Group(name, [])).runs.append(rec)
    return out


def floor_failures(group: Group) -> list[str]:
    """Why a group does not count as a working model (empty when it does)."""
    out = []
    probe = group.number(f"latent/{group.modalities()[0]}/both")
    if probe is None:
        out.append(f"{group.name}: no per-input probe results")
    elif sum(probe[0]) / len(probe[0]) < PROBE_FLOOR:
        out.append(f"{group.name} probe {100 * sum(probe[0]) / len(probe[0]):.1f} % < "
                   f"{100 * PROBE_FLOOR:.0f} %")
    collapsed = group.collapsed()
    if collapsed:
        out.append(f"{group.name} collapsed: {', '.join(collapsed[:3])}"
                   + (f" and {len(collapsed) - 3} more" if len(collapsed) > 3 else ""))
    return out


def verdict(diff: float | None, se: float | None, seeds: Sequence[int],
            problems: Sequence[str], short_budget: Sequence[str]) -> tuple[str, str]:
    """(verdict, reason) under VERDICT_RULE: "holds", "does not hold" or "undecided"."""
    reasons = []
    if min(seeds) < MIN_SEEDS:
        reasons.append(f"{min(seeds)} seed(s) < {MIN_SEEDS}")
    if short_budget:
        reasons.append("budget (" + ", ".join(short_budget) + " below its config's steps)")
    reasons += list(problems)
    if diff is None or se is None or not math.isfinite(se):
        reasons.append("no error bar")
    elif abs(diff) <= 2 * se:
        reasons.append(f"|difference| {100 * abs(diff):.1f} <= 2 SE = {200 * se:.1f}")
    if reasons:
        return "undecided", "; ".join(reasons)
    if diff > 0:
        return "holds", f"difference {100 * diff:+.1f} > 2 SE = {200 * se:.1f}"
    return "does not hold", f"reversed: difference {100 * diff:+.1f} beyond 2 SE = {200 * se:.1f}"


def _row(claim: str, key: str, a: Group, b: Group, key_a: str, key_b: str,
         labels: tuple[str, str], note: str = "", coherence: bool = False) -> dict[str, Any]:
    """A claims row comparing set `key_a` of group `a` with `key_b` of `b` (`coherence`: the
    numbers come from the coherence classifiers, whose weakness the note names)."""
    paired = a is b
    num_a, num_b = a.number(key_a), b.number(key_b)
    ours = other = diff = se = None
    if num_a is not None and num_b is not None:
        ours, other = stats.estimate(*num_a), stats.estimate(*num_b)
        diff, se = stats.difference(num_a, num_b, paired)
    problems = floor_failures(a) + ([] if paired else floor_failures(b))
    short = [g.name for g in ((a,) if paired else (a, b)) if g.short_budget()]
    decision, reason = verdict(diff, se, [len(a.runs), len(b.runs)], problems, short)
    unreliable = "; ".join(sorted({u for u in (a.unreliable(), b.unreliable()) if u})
                           ) if coherence else ""
    return {"claim": claim, "key": key, "paper": PAPER[key], "labels": list(labels),
            "ours": ours, "other": other, "difference": diff, "difference_se": se,
            "verdict": decision, "reason": reason, "note": "; ".join(x for x in (
                note, unreliable and f"coherence {unreliable}") if x),
            "budget": a.budget() if paired else f"{a.budget()}; {b.budget()}"}


def _factorised_rows(found: Mapping[str, Group]) -> list[dict[str, Any]]:
    rows = []
    for name, fac in found.items():
        joint = found.get(f"{name}_joint")
        if fac.model != "mmali" or joint is None or joint.model != "mmali_joint":
            continue
        view = fac.modalities()[0]
        key = f"latent/{view}/both"
        rows.append(_row(f"1. factorised > joint critic ({name.removesuffix('_mmali')}, "
                         f"view {view} probe)", "factorised_vs_joint", fac, joint, key, key,
                         ("factorised", "joint critic")))
    return rows


def _best_baseline(baselines: Sequence[Group], key: str) -> tuple[Group | None, str]:
    """The baseline with the highest mean among those passing the floor (else the highest
    overall), and a note naming the baselines left out."""
    scored = [(sum(n[0]) / len(n[0]), g) for g in baselines
              if (n := g.number(key)) is not None]
    if not scored:
        return None, ""
    working = [(v, g) for v, g in scored if not floor_failures(g)]
    best = max(working or scored, key=lambda vg: vg[0])[1]
    failing = [g.name for _, g in scored if floor_failures(g)]
    return best, ("" if not failing else f"below the floor: {', '.join(failing)}")


def _generation_rows(found: Mapping[str, Group]) -> list[dict[str, Any]]:
    rows = []
    for name, mmali in found.items():
        prefix = name.removesuffix("_mmali")
        if mmali.model != "mmali" or f"{name}_joint" in found:
            continue   # claim-1 pairs (rotated views) have no baselines
        baselines = [g for n, g in found.items()
                     if n.startswith(prefix + "_") and not g.model.startswith("mmali")]
        if not baselines:
            continue
        first, second = mmali.modalities()[:2]
        checks = [("joint_coherence", "joint coherence", "joint/all")]
        checks += [("cross_first_to_second", f"cross {first}->{second}",
                    f"cross/{first}->{second}"),
                   ("cross_second_to_first", f"cross {second}->{first}",
                    f"cross/{second}->{first}")]
        for key, label, number in checks:
            best, note = _best_baseline(baselines, number)
            if best is None:
                continue
            rows.append(_row(f"2. mmALI > best VAE baseline, {label} ({prefix})", key, mmali,
                             best, number, number, ("mmALI", best.model), note, True))
    return rows


def _content_rows(found: Mapping[str, Group]) -> list[dict[str, Any]]:
    rows = []
    for name, group in found.items():
        if not group.model.startswith("mmali"):
            continue
        for m in group.modalities():
            if "content" not in group.metrics["latent_accuracy"][m]:
                continue
            rows.append(_row(f"3. content > style code ({name}, {m} probe)", "content_vs_style",
                             group, group, f"latent/{m}/content", f"latent/{m}/style",
                             ("content", "style")))
    return rows


def _seconds_per_step(run: Mapping[str, Any]) -> float | None:
    """Training wall seconds per step of a run (tracing included), None when unknown."""
    wall, steps = run.get("train_wall_s"), run.get("steps")
    return wall / steps if wall and steps else None


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error over seeds (nan SE for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var / len(values))


def _curve_value(run: Mapping[str, Any], budget_s: float, key: str, pair: str | None
                 ) -> tuple[int, float, bool] | None:
    """(step, value, within) of the run's last curve point reached within `budget_s` of
    training; when even its first point came later, that point and within=False (an upper
    bound on the run at `budget_s` while its coherence rises with steps)."""
    per_step = _seconds_per_step(run)
    points = (run.get("curve") or {}).get("points", [])
    if not per_step or not points:
        return None
    within = [p for p in points if p["step"] * per_step <= budget_s]
    point = within[-1] if within else points[0]
    return point["step"], point[key] if pair is None else point[key][pair], bool(within)


def matched_time_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Claim 2 at matched wall time: per mmALI group and measure, the best baseline (as in
    the claims table) at its full steps against mmALI's step curve read at the last step
    mmALI reached within the baseline's mean training time (fractions; mean and SE over the
    seeds that have a curve, the SE across seeds only: curve points keep no per-input
    results)."""
    found = groups(records)
    rows = []
    for name, mmali in found.items():
        prefix = name.removesuffix("_mmali")
        baselines = [g for n, g in found.items()
                     if n.startswith(prefix + "_") and not g.model.startswith("mmali")]
        if mmali.model != "mmali" or not baselines or not any(r.get("curve")
                                                                for r in mmali.runs):
            continue
        first, second = mmali.modalities()[:2]
        for label, number, key, pair in (
                ("joint coherence", "joint/all", "joint", None),
                (f"cross {first}->{second}", f"cross/{first}->{second}", "cross",
                 f"{first}->{second}"),
                (f"cross {second}->{first}", f"cross/{second}->{first}", "cross",
                 f"{second}->{first}")):
            best, _ = _best_baseline(baselines, number)
            walls = [r["train_wall_s"] for r in best.runs if r.get("train_wall_s")] \
                if best is not None else []
            if not walls:
                continue
            budget_s = sum(walls) / len(walls)
            read = [v for r in mmali.runs if (v := _curve_value(r, budget_s, key, pair))]
            late = sum(not within for *_, within in read)
            other = _mean_se(best.number(number)[0])
            ours = _mean_se([v for _, v, _ in read]) if read else None
            if ours is None:
                decision, reason = "undecided", "no mmALI training time"
            else:
                decision, reason = verdict(
                    ours[0] - other[0], math.sqrt(ours[1] ** 2 + other[1] ** 2),
                    [len(read), len(best.runs)], floor_failures(mmali) + floor_failures(best),
                    [best.name] if best.short_budget() else [])
            if late:  # an upper bound can refute the claim, not confirm it
                bound = (f"{late} seed(s) read at their first curve point, reached after "
                         f"{budget_s / 60:.1f} min: an upper bound on mmALI at that time")
                decision, reason = ("undecided", bound) if decision == "holds" else (
                    decision, f"{reason}; {bound}")
            rows.append({"measure": f"{label} ({prefix})", "baseline": best.model,
                         "budget_min": budget_s / 60, "steps": sorted({s for s, *_ in read}),
                         "late": late, "ours": ours, "other": other,
                         "verdict": decision, "reason": reason})
    return rows


def matched_time_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The matched-wall-time table (empty when no mmALI run has a step curve)."""
    if not rows:
        return ""
    lines = ["Claim 2 at matched wall time: mmALI's step curve (`--curve_every`) read at the "
             "last step its training reached within the best baseline's mean training time "
             "(both timed in the same suite, loads as in the runs table); SE across seeds "
             "only (curve points keep no per-input results), so the rule needs >= "
             f"{MIN_SEEDS} seeds with a curve. A seed whose first curve point came after that "
             "time is read there, an upper bound on mmALI while its coherence rises with "
             "steps: such a row can refute the claim, not confirm it:", "",
             "| measure | best baseline (full steps) | wall time | mmALI step(s) | mmALI | "
             "baseline | verdict |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['measure']} | {r['baseline']} | {r['budget_min']:.1f} min | "
                     f"{', '.join(f'{s:,}' for s in r['steps'])} | {_cell(r['ours'])} | "
                     f"{_cell(r['other'])} | **{r['verdict']}**: {r['reason']} |")
    return "\n".join(lines) + "\n"


def claims_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per tested claim and group (fractions; numbers are (mean, SE) or None)."""
    found = groups(records)
    return _factorised_rows(found) + _generation_rows(found) + _content_rows(found)


def _cell(number: Sequence[float] | None) -> str:
    if number is None:
        return "-"
    mean, se = number
    return f"{100 * mean:.1f} +- {100 * se:.1f}" if math.isfinite(se) else f"{100 * mean:.1f}"


def claims_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rule and the claims table (percentages)."""
    lines = [VERDICT_RULE, "",
             "| claim | paper | ours (+- SE) | difference +- 2 SE | verdict | budget |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["labels"]
        diff = "-" if r["difference"] is None else (
            f"{100 * r['difference']:+.1f} +- {200 * r['difference_se']:.1f}")
        note = f" ({r['note']})" if r["note"] else ""
        verdict_cell = r["verdict"] if r["verdict"] != "undecided" else "undecided"
        lines.append(f"| {r['claim']} | {r['paper'][0]:.2f} vs {r['paper'][1]:.2f} | "
                     f"{a} {_cell(r['ours'])} vs {b} {_cell(r['other'])}{note} | {diff} | "
                     f"**{verdict_cell}**: {r['reason']} | {r['budget']} |")
    return "\n".join(lines) + "\n"


def claims_chart(rows: Sequence[Mapping[str, Any]], path: str) -> None:
    """PNG: per claim row, the two compared means with 2-SE error bars, the paper's two
    numbers (x) and the verdict."""
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["ours"] is not None and r["other"] is not None]
    if not shown:
        return
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(shown) + 1.4))
    for i, r in enumerate(shown):
        for offset, (mean, se), label, colour, paper in (
                (0.15, r["ours"], r["labels"][0], "C0", r["paper"][0]),
                (-0.15, r["other"], r["labels"][1], "C1", r["paper"][1])):
            err = 200 * se if math.isfinite(se) else 0.0
            ax.plot(paper, i + offset, "x", color=colour, alpha=0.6)
            ax.errorbar(100 * mean, i + offset, xerr=err, fmt="o", color=colour, capsize=3)
            ax.annotate(label, (100 * mean, i + offset), xytext=(4, 2),
                        textcoords="offset points", fontsize=6, color=colour)
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([f"{r['claim'][:80]}\n[{r['verdict']}]" for r in shown], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% (dots: mean over seeds, bars: +- 2 standard errors; x: the paper)")
    ax.grid(axis="x", alpha=0.3)
    report.save_figure(fig, path)
