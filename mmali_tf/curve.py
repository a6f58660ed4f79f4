"""Step curve of one run: joint and cross coherence of every kept checkpoint.

`python -m mmali_tf.evaluate --run_dir=runs/x --curve_every=N [--checkpoint_dir=DIR]` restores,
one after the other into one model, every checkpoint of `DIR` (default: the run's
`checkpoints/`) whose step is a multiple of N (those `--keep_checkpoint_every=N` keeps for
good, and any rotating one that is), and scores each with the coherence part of the
evaluation only: joint coherence (prior samples), cross and self coherence (test pairs), and
the collapsed sets among them (`report.collapsed_sets`). No latent probe, synergy,
log-likelihood or CCA, so a point costs a fraction of a full evaluation. `DIR` may be any
directory of `ckpt-<step>.*` files of this run (copies kept aside, say); each checkpoint is
verified first (`checkpoint_check.problem`) and a damaged one is listed under `skipped`.

Writes `run_dir/eval/<protocol>[_<probe>]/curve.json` after every point (atomically), so an
interrupted curve keeps its points; a rerun with the same settings keeps them (also those whose
checkpoint is gone since) and scores only the new checkpoints. `curve.json`: `format`,
`format_version`, `settings` (what a point depends on), `checkpoint_dir`, `curve_every`,
`model`, `dataset`, `classifier_accuracy`,
`points` (by step: `step`, `checkpoint`, `joint`, `cross` {"a->b": fraction}, `cross_mean`,
`self` {m: fraction}, `collapsed` [set keys]) and `skipped` ([{step, why}]).
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any, Mapping

import numpy as np

FORMAT = "mmali_tf.curve"
FORMAT_VERSION = 1
CURVE_FILE = "curve.json"
_INDEX = re.compile(r"ckpt-(\d+)\.index$")


def curve_checkpoints(directory: str, every: int) -> list[str]:
    """Prefixes of the `ckpt-<step>` files in `directory` whose step is a multiple of
    `every`, by step (every `ckpt-*.index` file counts, listed in the manager's state or not:
    copies kept aside have no state file)."""
    steps = []
    for path in glob.glob(os.path.join(glob.escape(directory), "ckpt-*.index")):
        found = _INDEX.search(os.path.basename(path))
        if found and int(found.group(1)) % every == 0:
            steps.append(int(found.group(1)))
    return [os.path.join(directory, f"ckpt-{s}") for s in sorted(steps)]


def curve_settings(opts: Any) -> dict[str, Any]:
    """What a point's numbers depend on besides the checkpoint (resolved `EvalOptions`)."""
    return {"protocol": opts.protocol, "num_samples": opts.num_samples, "split": opts.split,
            "weights": opts.weights, "seed": opts.seed, "batch_size": opts.batch_size,
            "classifier_epochs": opts.classifier_epochs,
            "classifier_batch": opts.classifier_batch}


def coherence_point(model: Any, ds: Any, opts: Any, classifiers: Mapping[str, Any]
                    ) -> dict[str, Any]:
    """Joint, cross and self coherence of `model` and the collapsed sets among them, with the
    evaluation's seeds: joint coherence equals a full evaluation's; cross and self coherence
    estimate the same numbers with other posterior draws (the full evaluation draws its
    synergy samples from the same stream in between)."""
    import keras

    from mmali_tf.metrics import coherence, report
    from mmali_tf.metrics.common import InferenceView, sample_rows

    keras.utils.set_random_seed(opts.seed)
    view = InferenceView.of(model, opts.weights)
    joint, joint_hist = coherence.joint_coherence(
        view, classifiers, opts.num_samples, opts.batch_size, opts.seed,
        shared_z=opts.protocol == "reference", num_classes=ds.num_classes)
    rows = sample_rows(ds.split(opts.split).num_pairs, opts.num_samples, opts.seed)
    conditional = coherence.conditional_coherence(
        view, classifiers, ds, opts.split, rows, opts.batch_size, opts.seed,
        model_synergy=False)
    cross, self_rec, _ = conditional.accuracies()
    histograms = {f"joint/{m}": h for m, h in joint_hist.items()}
    histograms.update(conditional.histograms())
    stats = {k: coherence.prediction_stats(h) for k, h in histograms.items()}
    return {"joint": joint, "cross": cross, "cross_mean": float(np.mean(list(cross.values()))),
            "self": self_rec, "collapsed": report.collapsed_sets({"prediction_stats": stats})}


def read_curve(path: str) -> dict[str, Any] | None:
    """The curve.json at `path`, or None when missing, unreadable or of another format."""
    try:
        with open(path, encoding="utf-8") as f:
            curve = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(curve, dict) or curve.get("format") != FORMAT:
        return None
    return curve


def evaluate_curve(model: Any, ds: Any, checkpoint_dir: str, every: int, opts: Any,
                   classifiers: Mapping[str, Any], classifier_accuracy: Mapping[str, float],
                   out_path: str, verbose: bool = True) -> dict[str, Any]:
    """Restore into `model` (built from the run's record, `ds` its dataset) and score every
    checkpoint of `checkpoint_dir` at a multiple of `every` (`curve_checkpoints`) with
    `classifiers` under `opts` (resolved `EvalOptions`), reusing the points of `out_path` made
    with the same settings and writing `out_path` after each; the curve."""
    from mmali_tf import checkpoint_check
    from mmali_tf.metrics import report
    from mmali_tf.run_dir import TrainingCheckpoint

    settings = curve_settings(opts)
    old = read_curve(out_path)
    done = {p["step"]: p for p in (old or {}).get("points", [])
            if old and old.get("settings") == settings}
    curve = {"format": FORMAT, "format_version": FORMAT_VERSION, "settings": settings,
             "checkpoint_dir": os.path.abspath(checkpoint_dir), "curve_every": every,
             "model": model.variant, "dataset": ds.name,
             "classifier_accuracy": dict(classifier_accuracy), "skipped": [],
             "points": [p for s, p in sorted(done.items()) if s % every == 0]}
    restorer = TrainingCheckpoint(checkpoint_dir, model, optimizers=False)
    manifest = checkpoint_check.read_manifest(checkpoint_dir)
    for path in curve_checkpoints(checkpoint_dir, every):
        step = checkpoint_check.step_of(path)
        if step in done:
            continue
        why = checkpoint_check.problem(path, manifest.get(os.path.basename(path)))
        if why is not None:
            curve["skipped"].append({"step": step, "why": why})
            continue
        restorer.restore(path)
        point = {"step": step, "checkpoint": os.path.basename(path),
                 **coherence_point(model, ds, opts, classifiers)}
        curve["points"] = sorted(curve["points"] + [point], key=lambda p: p["step"])
        report.write_json(out_path, curve)
        if verbose:
            print(f"step {step}: joint {point['joint']:.4f}, cross mean "
                  f"{point['cross_mean']:.4f}" + (f" (collapsed: {', '.join(point['collapsed'])})"
                                                  if point["collapsed"] else ""), flush=True)
    report.write_json(out_path, curve)
    return curve
