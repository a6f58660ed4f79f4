"""metrics.json schema, markdown reports and PNG figures (no TensorFlow).

`metrics.json` top-level keys: `latent_accuracy`, `joint_coherence`, `cross_coherence`,
`synergy_coherence` (`{"model" | fusion: {modality: acc}}`; "model" is the model's own joint
posterior), `classifier_accuracy` (fractions in [0, 1]), `self_coherence` (fractions),
`prediction_stats` (`{"joint/m" | "cross/a->b" | "self/m" | "synergy/<source>/m" |
"subset/<size>/m": {"top_share", "top_class", "entropy_bits"}}`), optional `log_likelihood` (nats), optional
`cca_correlation` (cosines in [-1, 1]), optional `subset_coherence` (`by_size` {k: fraction}
and `by_subset` {"m0+m1": fraction}), optional `fid` ({set: FID >= 0}) and `prd` ({set:
{"precision", "recall", "ap"}} in [0, 1]) of every generated image set, keyed like
`prediction_stats` (`metrics.sample_quality`; settings in `meta["sample_quality"]`), and
`meta`. Evaluations written before
`self_coherence` and `prediction_stats` existed still validate.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mmali_tf.atomic import atomic_write_bytes  # noqa: E402

FRACTION_KEYS = ("latent_accuracy", "joint_coherence", "cross_coherence", "synergy_coherence",
                 "classifier_accuracy")
OPTIONAL_KEYS = {"log_likelihood": (-math.inf, 0.0), "cca_correlation": (-1.0, 1.0),
                 "self_coherence": (0.0, 1.0), "subset_coherence": (0.0, 1.0),
                 "fid": (0.0, math.inf), "prd": (0.0, 1.0)}
STAT_RANGES = {"top_share": (0.0, 1.0), "top_class": (0.0, math.inf),
               "entropy_bits": (0.0, math.inf)}
#: a generated set is collapsed when one class takes more than this share of it.
COLLAPSE_SHARE = 0.5
#: Adam updates of Shi et al.'s 30-epoch latent probe on MNIST (54,000 codes after the
#: validation split, batch 256): the `clean` protocol's minimum on any dataset
#: (`latent_accuracy.fit_probe`); here so the harness reads it without TensorFlow.
SHI_MNIST_UPDATES = 30 * math.ceil(54000 / 256)
#: synergy key of the model's own joint posterior.
MODEL_SYNERGY = "model"
#: how each `--text_scorer` reads a generated text (the first is the default).
TEXT_SCORERS = {"classifier": "mmJSD's 1-D convnet text classifier (trained on texts redrawn "
                              "with the dataset's rule) on the decoder's probabilities",
                "nearest_word": "the class word nearest to the argmax string (edit distance)"}


def eval_dir_name(protocol: str, probe: str = "shi") -> str:
    """Sub-directory of `run_dir/eval/` for one protocol and latent probe: `clean`,
    `reference`, `clean_sutter`, ..."""
    return protocol if probe == "shi" else f"{protocol}_{probe}"


def collapsed_sets(metrics: Mapping[str, Any]) -> list[str]:
    """Keys of `prediction_stats` whose most predicted class exceeds COLLAPSE_SHARE."""
    return [k for k, v in metrics.get("prediction_stats", {}).items()
            if float(v["top_share"]) > COLLAPSE_SHARE]


def _leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        out = []
        for k, v in tree.items():
            out += _leaves(v, f"{prefix}/{k}" if prefix else str(k))
        return out
    return [(prefix, tree)]


def validate_metrics(metrics: Mapping[str, Any]) -> None:
    """Raise ValueError unless `metrics` follows the metrics.json schema."""
    allowed = set(FRACTION_KEYS) | set(OPTIONAL_KEYS) | {"meta", "prediction_stats"}
    unknown = set(metrics) - allowed
    missing = (set(FRACTION_KEYS) | {"meta"}) - set(metrics)
    if unknown or missing:
        raise ValueError(f"metrics keys: unknown {sorted(unknown)}, missing {sorted(missing)}")
    for key in set(metrics) - {"meta"}:
        for name, value in _leaves(metrics[key], key):
            if key == "prediction_stats":
                lo, hi = STAT_RANGES.get(name.rsplit("/", 1)[-1], (math.nan, math.nan))
            else:
                lo, hi = OPTIONAL_KEYS.get(key, (0.0, 1.0))
            if not isinstance(value, (int, float)) or not lo <= float(value) <= hi:
                raise ValueError(f"metrics value {name}={value!r} is not a number in [{lo}, {hi}]")


def write_json(path: str, data: Mapping[str, Any]) -> None:
    """Atomically write JSON (sorted keys, indented)."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100.0 * float(v):.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def probe_label(meta: Mapping[str, Any]) -> str:
    """Which latent probe produced `latent_accuracy` (runs evaluated before the flag: shi)."""
    return f"{meta.get('latent_probe', 'shi')} probe"


def text_scorer(meta: Mapping[str, Any]) -> str | None:
    """`--text_scorer` of an evaluation with text modalities, None without; evaluations
    written before the flag (no `meta["text_scorer"]`, but generated text) used nearest_word."""
    if "text_scorer" in meta:
        return str(meta["text_scorer"]["scorer"])
    return "nearest_word" if meta.get("text_generations") else None


def render_report(metrics: Mapping[str, Any]) -> str:
    """report.md: metadata, then one markdown table per metric family (percentages)."""
    meta = metrics["meta"]
    lines = [f"# Evaluation of `{meta.get('model')}` on `{meta.get('dataset')}`", "",
             f"protocol **{meta.get('protocol')}**, checkpoint step {meta.get('step')}, "
             f"{meta.get('weights')} weights, split {meta.get('split')}, seed {meta.get('seed')}; "
             f"{meta.get('num_pairs')} test pairs, {meta.get('num_prior_samples')} prior samples. "
             "Values in %.", ""]
    for note in meta.get("notes", []):
        lines.append(f"> **Note:** {note}")
    lat = metrics["latent_accuracy"]
    parts = sorted({p for v in lat.values() for p in v})
    lines += ["", f"## Latent linear probe ({probe_label(meta)})", ""]
    lines += _table(["code"] + parts, [[src] + [_pct(v.get(p)) for p in parts]
                                       for src, v in lat.items()])
    lines += ["", "## Coherence", ""]
    if meta.get("joint_posterior"):
        lines += [f"Synergy `model` decodes the model's joint posterior ({meta['joint_posterior']}); "
                  "the other synergy rows fuse the unimodal posteriors (diagnostics).", ""]
    lines += _table(["metric", "coherence", "top class share", "entropy (bits)", "status"],
                    coherence_rows(metrics))
    if "subset_coherence" in metrics:
        lines += ["", "## Coherence from subsets of input modalities", ""]
        lines += _table(["inputs", "coherence"],
                        [[f"any {k}", _pct(v)] for k, v in
                         metrics["subset_coherence"]["by_size"].items()]
                        + [[k, _pct(v)] for k, v in
                           metrics["subset_coherence"]["by_subset"].items()])
    lines += ["", "## Classifiers (test accuracy)", ""]
    lines += _table(["modality", "accuracy"],
                    [[m, _pct(v)] for m, v in metrics["classifier_accuracy"].items()])
    scorer = text_scorer(meta)
    if scorer:
        lines += ["", f"Text is scored by {TEXT_SCORERS.get(scorer, scorer)} "
                      f"(`--text_scorer={scorer}`)."]
    if "fid" in metrics:
        lines += ["", "## Sample quality (generated vs real images)", "",
                  sample_quality_legend(meta.get("sample_quality", {})), ""]
        prd = metrics.get("prd", {})
        lines += _table(["set", "FID", "PRD precision", "PRD recall", "PRD AP"],
                        [[k, f"{v:.2f}"] + [_pct(prd.get(k, {}).get(p))
                                            for p in ("precision", "recall", "ap")]
                         for k, v in metrics["fid"].items()])
    if "log_likelihood" in metrics:
        lines += ["", f"## Log-likelihoods (IWAE, K={meta.get('iwae_samples')}, nats)", ""]
        lines += _table(["term", "log p"], [[f"log p({k.replace('|', ' | ')})", f"{v:.2f}"]
                                            for k, v in metrics["log_likelihood"].items()])
    if meta.get("text_generations"):
        lines += ["", "## Generated text (one test example per class)", ""]
        lines += _table(["pair", "source => generated"],
                        [[k, "<br>".join(f"`{e}`" for e in v)]
                         for k, v in meta["text_generations"].items()])
    if "cca_correlation" in metrics:
        lines += ["", "## CCA correlation", ""]
        lines += _table(["pairing", "correlation"],
                        [[k, f"{v:.3f}"] for k, v in metrics["cca_correlation"].items()])
    return "\n".join(lines) + "\n"


def sample_quality_legend(settings: Mapping[str, Any]) -> str:
    """One paragraph: the embedding, sample counts and PRD settings behind the FID/PRD table."""
    prd = settings.get("prd", {})
    return ("Embedding: " + "; ".join(f"{m}: {e}" for m, e in
                                      settings.get("embedding", {}).items())
            + f". Real images per modality: {settings.get('real_samples')}; generated images "
            f"per set: at most {settings.get('fid_samples')}. PRD (Sajjadi et al. 2018): "
            f"{prd.get('num_clusters')} clusters, {prd.get('num_angles')} angles, "
            f"{prd.get('num_runs')} runs on equally many real and generated images; precision "
            f"= max F_1/{prd.get('beta'):g}, recall = max F_{prd.get('beta'):g}, AP = mean of "
            f"the curves (mmJSD). Values: {settings.get('note')}."
            if prd else "")


def coherence_rows(metrics: Mapping[str, Any]) -> list[list[str]]:
    """Report rows: every generated set's coherence, its top class share and entropy, and
    "collapsed" when one class takes more than COLLAPSE_SHARE of it."""
    stats = metrics.get("prediction_stats", {})
    sets = [("joint (prior)", metrics["joint_coherence"].get("all"),
             [k for k in stats if k.startswith("joint/")])]
    sets += [(f"cross {k}", v, [f"cross/{k}"]) for k, v in metrics["cross_coherence"].items()]
    sets += [(f"self {m}", v, [f"self/{m}"])
             for m, v in metrics.get("self_coherence", {}).items()]
    sets += [(f"synergy {f} -> {m}", v, [f"synergy/{f}/{m}"])
             for f, per in metrics["synergy_coherence"].items() for m, v in per.items()]
    rows = []
    for label, value, keys in sets:
        found = [stats[k] for k in keys if k in stats]
        share = ", ".join(_pct(s["top_share"]) for s in found) or "-"
        entropy = ", ".join(f"{s['entropy_bits']:.2f}" for s in found) or "-"
        status = ("collapsed" if any(float(s["top_share"]) > COLLAPSE_SHARE for s in found)
                  else ("ok" if found else "-"))
        rows.append([label, _pct(value), share, entropy, status])
    return rows


def save_figure(fig: Any, path: str) -> None:
    """Atomically save a matplotlib figure as PNG and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _show(ax: Any, img: np.ndarray) -> None:
    img = np.clip(np.asarray(img, np.float32), 0.0, 1.0)
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0.0, vmax=1.0)
    ax.axis("off")


def cross_grid_figure(generations: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str) -> None:
    """Two rows per ordered image pair "a->b": source examples, then their translations."""
    n = max(len(src) for src, _ in generations.values())
    fig, axes = plt.subplots(2 * len(generations), n, figsize=(n, 2 * len(generations)),
                             squeeze=False)
    for r, (key, (src, gen)) in enumerate(generations.items()):
        for c in range(n):
            for row, imgs in ((2 * r, src), (2 * r + 1, gen)):
                axes[row, c].axis("off")
                if c < len(imgs):
                    _show(axes[row, c], imgs[c])
        axes[2 * r, 0].set_title(key, fontsize=8, loc="left")
    save_figure(fig, path)


def confusion_figure(confusion: Mapping[str, np.ndarray], path: str) -> None:
    """Row-normalised confusion matrix (true class x classifier prediction) per ordered pair."""
    fig, axes = plt.subplots(1, len(confusion), figsize=(4 * len(confusion), 4), squeeze=False)
    for ax, (key, counts) in zip(axes[0], confusion.items()):
        counts = np.asarray(counts, np.float64)
        ax.imshow(counts / np.maximum(counts.sum(axis=1, keepdims=True), 1), vmin=0, vmax=1,
                  cmap="viridis")
        ax.set_title(f"cross {key}")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    save_figure(fig, path)


def bar_chart(columns: Sequence[str], values: Mapping[str, Sequence[float | None]],
              path: str, ylabel: str = "%") -> None:
    """Grouped bars: one group per column, one bar per series (missing values skipped)."""
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(columns)), 4))
    width = 0.8 / max(len(values), 1)
    for i, (name, vals) in enumerate(values.items()):
        xs = [j + i * width for j, v in enumerate(vals) if v is not None]
        ax.bar(xs, [v for v in vals if v is not None], width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(columns))])
    ax.set_xticklabels(columns, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend()
    save_figure(fig, path)


def write_text(path: str, text: str) -> None:
    """Atomically write a text file."""
    atomic_write_bytes(path, text.encode())



def comparison(runs: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], dict[str, list]]:
    """Columns and per-run fractions in the layout of the paper's Table 2.

    Latent accuracy per modality (whole code), joint coherence, cross coherence for every
    ordered pair, synergy coherence per modality (the run's default fusion). Raises ValueError
    when the runs are on different datasets.
    """
    datasets = {name: m["meta"].get("dataset") for name, m in runs.items()}
    if len(set(datasets.values())) != 1:
        listed = ", ".join(f"{n} ({d})" for n, d in datasets.items())
        raise ValueError(f"runs are on different datasets: {listed}; compare runs of one dataset")
    first = next(iter(runs.values()))
    mods = [k for k in first["latent_accuracy"] if k != "joint"]
    pairs = list(first["cross_coherence"])
    columns = ([f"latent {m}" for m in mods] + ["joint coherence"]
               + [f"cross {p}" for p in pairs] + [f"synergy {m}" for m in mods])
    values: dict[str, list] = {}
    for name, m in runs.items():
        synergy = synergy_of(m)
        values[name] = ([m["latent_accuracy"].get(x, {}).get("both") for x in mods]
                        + [m["joint_coherence"].get("all")]
                        + [m["cross_coherence"].get(p) for p in pairs]
                        + [synergy.get(x) for x in mods])
    return columns, values


def synergy_of(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Synergy per modality through the model's own joint posterior (older evaluations: the
    default fusion they used)."""
    synergy = metrics["synergy_coherence"]
    if MODEL_SYNERGY in synergy:
        return dict(synergy[MODEL_SYNERGY])
    return dict(synergy.get(metrics["meta"].get("default_fusion", "geometric"), {}))


def collapsed_columns(metrics: Mapping[str, Any], columns: Sequence[str]) -> set[str]:
    """Comparison columns (joint / cross / synergy) whose generated sets collapsed."""
    bad = set(collapsed_sets(metrics))
    out = set()
    for col in columns:
        kind, _, rest = col.partition(" ")
        if kind == "joint" and any(k.startswith("joint/") for k in bad):
            out.add(col)
        elif kind == "cross" and f"cross/{rest}" in bad:
            out.add(col)
        elif kind == "synergy" and f"synergy/{MODEL_SYNERGY}/{rest}" in bad:
            out.add(col)
    return out


def mark_cell(value: Any, collapsed: bool) -> str:
    """A percentage cell, suffixed " (collapsed)" for a collapsed generated set."""
    return _pct(value) + (" (collapsed)" if collapsed and value is not None else "")


def comparison_markdown(columns: Sequence[str], values: Mapping[str, Sequence[Any]],
                        runs: Mapping[str, Mapping[str, Any]]) -> str:
    """One markdown table (percentages) with each run's model and protocol."""
    rows = []
    for name, vals in values.items():
        bad = collapsed_columns(runs[name], columns)
        rows.append([name, runs[name]["meta"].get("model"),
                     f"{runs[name]['meta'].get('protocol')}, {probe_label(runs[name]['meta'])}"]
                    + [mark_cell(v, c in bad) for v, c in zip(vals, columns)])
    dataset = next(iter(runs.values()))["meta"].get("dataset")
    head = [f"# Comparison on `{dataset}` (%)", ""]
    foot = ["", f"(collapsed): one class takes more than {COLLAPSE_SHARE:.0%} of the generated "
            "samples, so the value is that class's share, not coherence."]
    return "\n".join(head + _table(["run", "model", "protocol"] + list(columns), rows)
                     + foot) + "\n"
