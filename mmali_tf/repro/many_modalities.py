"""Suite table columns for runs with more than two modalities (polydigits, PolyMNIST).

The two-modality table (paper Table 2: latent per modality, every cross pair, synergy per
modality) grows as M^2; with M=5 it would be 35 columns. Here a run is one row of
* `latent`: the Shi probe on each modality's whole code, mean over the M modalities, with
  the lowest and highest modality;
* `subset coherence k`: coherence of the missing modalities generated from k input
  modalities, averaged over every subset of size k (k = 1..M-1, the PolyMNIST protocol of
  `metrics/subset_coherence.py`);
* `joint coherence`;
* with three modalities (digits_text, MNIST-SVHN-Text) also `a->b`: the cross coherence of
  every ordered pair (six columns), as mmJSD's Table 1 reports them.
A generated set is marked `(j/M collapsed)` when for j of the M target modalities one class
takes more than `report.COLLAPSE_SHARE` of the samples (`prediction_stats` keys `joint/<m>`
and `subset/<k>/<m>`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mmali_tf.metrics import report

LATENT = "latent mean (min-max)"
JOINT = "joint coherence"
#: up to this many modalities the table also has one column per ordered cross pair
MAX_CROSS_MODALITIES = 3


def _modalities(metrics: Mapping[str, Any]) -> list[str]:
    return [m for m in metrics["latent_accuracy"] if m != "joint"]


def _probes(metrics: Mapping[str, Any]) -> list[float]:
    """Whole-code probe accuracy of every modality that has one."""
    probes = [metrics["latent_accuracy"][m].get("both") for m in _modalities(metrics)]
    return [p for p in probes if p is not None]


def applies(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the runs have more than two modalities (then this layout is used)."""
    return bool(records) and len(_modalities(records[0]["metrics"])) > 2


def _sizes(records: Sequence[Mapping[str, Any]]) -> list[str]:
    sizes = {k for r in records for k in r["metrics"].get("subset_coherence", {})
             .get("by_size", {})}
    return sorted(sizes, key=int)


def _cross_pairs(records: Sequence[Mapping[str, Any]]) -> list[str]:
    first = records[0]["metrics"]
    if len(_modalities(first)) > MAX_CROSS_MODALITIES:
        return []
    return list(first["cross_coherence"])


def columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Column names: latent, cross pairs (M <= 3), subset coherence per input-subset size,
    joint coherence."""
    return ([LATENT] + _cross_pairs(records) + [f"subset coherence {k}" for k in _sizes(records)]
            + [JOINT])


def values(record: Mapping[str, Any], cols: Sequence[str]) -> list[float | None]:
    """Fractions of one run in `cols` order (latent: the mean over modalities)."""
    m = record["metrics"]
    out: list[float | None] = []
    for col in cols:
        if col == LATENT:
            probes = _probes(m)
            out.append(sum(probes) / len(probes) if probes else None)
        elif col == JOINT:
            out.append(m["joint_coherence"].get("all"))
        elif "->" in col:
            out.append(m["cross_coherence"].get(col))
        else:
            size = col.rsplit(" ", 1)[1]
            out.append(m.get("subset_coherence", {}).get("by_size", {}).get(size))
    return out


def chart_labels(cols: Sequence[str]) -> list[str]:
    """`cols` as bar-chart labels (a bar shows the latent mean only, not the range)."""
    return ["latent mean" if c == LATENT else c for c in cols]


def _collapsed_targets(metrics: Mapping[str, Any], col: str) -> int:
    prefix = "joint/" if col == JOINT else f"subset/{col.rsplit(' ', 1)[1]}/"
    return sum(k.startswith(prefix) for k in report.collapsed_sets(metrics))


def cells(record: Mapping[str, Any], cols: Sequence[str]) -> list[str]:
    """Table cells of one run: percentages, the latent range, collapse marks."""
    m = record["metrics"]
    num_mods = len(_modalities(m))
    out = []
    for col, value in zip(cols, values(record, cols)):
        cell = report.mark_cell(value, False)
        if col == LATENT and value is not None:
            probes = _probes(m)
            cell += f" ({100 * min(probes):.1f}-{100 * max(probes):.1f})"
        elif "->" in col and value is not None:
            cell = report.mark_cell(value, f"cross/{col}" in report.collapsed_sets(m))
        elif col != LATENT and value is not None:
            bad = _collapsed_targets(m, col)
            cell += f" ({bad}/{num_mods} collapsed)" if bad else ""
        out.append(cell)
    return out


def legend(records: Sequence[Mapping[str, Any]]) -> str:
    """What the columns are, and the coherence classifiers' test accuracy."""
    first = records[0]["metrics"]
    mods = _modalities(first)
    text = (f"{len(mods)} modalities ({', '.join(mods)}). Latent: the Shi probe's test accuracy "
            "on each modality's whole code, mean over the modalities (lowest-highest). Subset "
            "coherence k: coherence of the missing modalities generated from k input "
            "modalities, mean over the subsets of size k (PolyMNIST protocol)"
            + ("; a->b: cross coherence from a to b" if len(mods) <= MAX_CROSS_MODALITIES
               else "") + ". (j/"
            f"{len(mods)} collapsed): for j target modalities one class takes more than "
            f"{report.COLLAPSE_SHARE:.0%} of the samples generated from all subsets of that "
            "size (or, for joint coherence, from the prior); collapses of single cross pairs "
            "are listed per run in the suite's .md file.")
    accuracies = {tuple(sorted(r["metrics"]["classifier_accuracy"].items())) for r in records}
    if len(accuracies) == 1:
        acc = first["classifier_accuracy"]
        threshold = first["meta"].get("classifier_threshold")
        text += (" Coherence classifiers' test accuracy: "
                 + ", ".join(f"{k} {100 * v:.1f}" for k, v in acc.items()))
        weak = [k for k, v in acc.items() if threshold is not None and v < threshold]
        if weak:
            text += (f"; below the {100 * threshold:.0f} % reliability threshold for "
                     f"{', '.join(weak)}, so coherence is marked unreliable in the reports")
        text += "."
    else:
        text += " The coherence classifiers differ between runs (see each run's report.md)."
    scorers = {report.text_scorer(r["metrics"]["meta"]) for r in records} - {None}
    if len(scorers) == 1:
        scorer = scorers.pop()
        text += f" Generated text is scored by {report.TEXT_SCORERS.get(scorer, scorer)}."
    elif scorers:
        text += (" Generated text is scored differently between runs (`--text_scorer` "
                 f"{' / '.join(sorted(scorers))}; see each run's report.md).")
    return text
