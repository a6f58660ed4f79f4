"""Step curves in the harness: each run's `curve.json` (`mmali_tf.curve`) in its suite record,
the curve table, the step at which one run passes another, and the curve chart.

`python -m mmali_tf.reproduce --curve_every=N` trains every run with
`--keep_checkpoint_every=N` added to its config's flags (so the configs stay as they are and
only curve runs keep the extra checkpoints), has a child write the run's step curve
(`python -m mmali_tf.evaluate --curve_every=N`) after its evaluation, and `curve_record` copies
it into the run's record as `curve` (any run with a curve.json gets it, so records keep their
curves when a later harness call has no `--curve_every`). A run trained before without the
flag has only its newest rotating checkpoints at multiples of N on its curve; one resumed
without it rotates its kept ones away. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from mmali_tf.checkpoint_check import step_of
from mmali_tf.curve import CURVE_FILE, curve_checkpoints, read_curve
from mmali_tf.metrics import report

#: the curve's values, in the table's and the chart's order: (point key, label)
VALUES = (("joint", "joint coherence"), ("cross_mean", "mean cross coherence"))


def curve_record(eval_dir: str) -> dict[str, Any] | None:
    """The `curve` entry of a run's record from `<eval_dir>/curve.json` (None without one):
    the step spacing, and per point its step, joint and cross coherence and collapsed sets."""
    curve = read_curve(os.path.join(eval_dir, CURVE_FILE))
    if curve is None:
        return None
    keep = ("step", "joint", "cross", "cross_mean", "collapsed")
    return {"curve_every": curve["curve_every"], "num_samples": curve["settings"]["num_samples"],
            "points": [{k: p[k] for k in keep} for p in curve["points"]],
            "skipped": list(curve["skipped"])}


def curve_is_current(eval_dir: str, checkpoint_dir: str, every: int, num_samples: int) -> bool:
    """Whether `<eval_dir>/curve.json` already scores, with `num_samples`, every checkpoint of
    `checkpoint_dir` at a multiple of `every` (then the harness starts no child for it)."""
    curve = read_curve(os.path.join(eval_dir, CURVE_FILE))
    if curve is None or curve["settings"]["num_samples"] != num_samples:
        return False
    scored = {p["step"] for p in curve["points"]}
    return all(step_of(p) in scored for p in curve_checkpoints(checkpoint_dir, every))


def with_curves(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The successful records that have a curve with at least one point."""
    return [r for r in records if r.get("status") == "ok" and r.get("curve")
            and r["curve"]["points"]]


def passing_step(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]],
                 key: str = "cross_mean") -> dict[str, Any]:
    """How curve `a` compares with curve `b` on `key` at their common steps: `steps` (the
    common steps), `passes_at` (the first common step where `a` is above `b` after being at
    or below it at the previous common step; None if never), `ahead_from_start` (`a` above
    at the first common step) and `ahead_at_end` (above at the last common step)."""
    va = {p["step"]: p[key] for p in a}
    vb = {p["step"]: p[key] for p in b}
    steps = sorted(set(va) & set(vb))
    above = [va[s] > vb[s] for s in steps]
    passes = next((s for s, prev, now in zip(steps[1:], above, above[1:]) if now and not prev),
                  None)
    return {"steps": steps, "passes_at": passes,
            "ahead_from_start": bool(above and above[0]),
            "ahead_at_end": bool(above and above[-1])}


def _leader(found: Mapping[str, Any], other: Mapping[str, Any], a: str, b: str,
            which: str) -> str:
    return (f"`{a}`" if found[which] else f"`{b}`" if other[which] else "neither") + " ahead"


def passing_lines(records: Sequence[Mapping[str, Any]], key: str = "cross_mean") -> list[str]:
    """One sentence per pair of curved runs of different configs that share steps (seeds of
    one config are not compared): who is ahead on `key` at the first and the last common
    step, and at which step either first passes the other."""
    lines = []
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            if a["config"] == b["config"]:
                continue
            ab = passing_step(a["curve"]["points"], b["curve"]["points"], key)
            ba = passing_step(b["curve"]["points"], a["curve"]["points"], key)
            if not ab["steps"]:
                continue
            first, last = ab["steps"][0], ab["steps"][-1]
            parts = [f"step {first:,}: {_leader(ab, ba, a['name'], b['name'], 'ahead_from_start')}"]
            parts += [f"`{x['name']}` passes `{y['name']}` at step {f['passes_at']:,}"
                      for x, y, f in ((a, b, ab), (b, a, ba)) if f["passes_at"] is not None]
            if last != first:
                parts.append(f"step {last:,}: "
                             f"{_leader(ab, ba, a['name'], b['name'], 'ahead_at_end')}")
            lines.append(f"- `{a['name']}` vs `{b['name']}`: " + "; ".join(parts))
    return lines


def _cell(point: Mapping[str, Any] | None) -> str:
    if point is None:
        return "-"
    joint, cross = (report.mark_cell(point[k], any(
        c.startswith(prefix) for c in point["collapsed"]))
        for k, prefix in (("joint", "joint/"), ("cross_mean", "cross/")))
    return f"{joint} / {cross}"


def curve_markdown(suite: str, records: Sequence[Mapping[str, Any]]) -> str:
    """Suite `suite`'s curve table (a row per step; per run joint / mean cross coherence in %, a
    collapsed set marked) and the passing sentences on mean cross coherence."""
    steps = sorted({p["step"] for r in records for p in r["curve"]["points"]})
    by_run = {r["name"]: {p["step"]: p for p in r["curve"]["points"]} for r in records}
    head = ["step"] + [f"`{r['name']}`" for r in records]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for step in steps:
        lines.append("| " + " | ".join([f"{step:,}"] + [_cell(by_run[r["name"]].get(step))
                                                         for r in records]) + " |")
    everies = sorted({r["curve"]["curve_every"] for r in records})
    samples = sorted({r["curve"]["num_samples"] for r in records})
    text = [f"Step curve (`--curve_every={'/'.join(map(str, everies))}`, "
            f"{'/'.join(f'{n:,}' for n in samples)} prior samples and test pairs per step; "
            "per run: joint / mean cross coherence in %; chart: "
            f"`reproduction/{suite}_curve.png`):", "", "\n".join(lines), "",
            "Mean cross coherence, computed from the curve table's values:", ""]
    text += passing_lines(records) or ["- no two curves of different configs share a step"]
    skipped = [f"`{r['name']}` step {s['step']:,} ({s['why']})" for r in records
               for s in r["curve"]["skipped"]]
    if skipped:
        text += ["", "Damaged checkpoints left off the curve: " + "; ".join(skipped)]
    return "\n".join(text) + "\n"


def curve_chart(records: Sequence[Mapping[str, Any]], path: str) -> None:
    """PNG: step on x, joint and mean cross coherence (%) on y, one panel each, a line per
    run."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(VALUES), figsize=(11, 4), sharey=True)
    for ax, (key, label) in zip(axes, VALUES):
        for rec in records:
            points = rec["curve"]["points"]
            ax.plot([p["step"] for p in points], [100.0 * p[key] for p in points], marker="o",
                    label=rec["name"])
        ax.set_xlabel("training step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("%")
    axes[0].legend()
    report.save_figure(fig, path)
