"""Generation coherence scored by pre-trained digit classifiers (Shi et al. 2019, sec. 4.1; 6b5d/mmali eval_mnist_svhn_gen.py).

* joint: decode prior samples in every modality; fraction whose predicted classes all agree.
  `shared_z=True` (reference protocol) feeds one full z, style included, to every decoder as
  the released mmALI code does; otherwise the prior's shared content with independent styles.
* cross a->b: z ~ q(z|x_a) (one sample), decode `model.cross_latent(z, b)` in b (the whole
  source sample for most models; mmJSD-MS swaps in a prior style), accuracy of b's classifier
  against the pair label.
* self m: z ~ q(z|x_m) decoded in m (reconstruction), accuracy against the label.
* synergy (source -> modality t): one content sample of the model's own joint posterior
  (`model.sample_joint_content`: JMVAE's joint encoder, MMVAE's mixture, the fused posterior
  otherwise; source "model") or of a named fusion of the unimodal posteriors (diagnostics),
  decoded in t through `model.synergy_latent`, accuracy against the pair label.

Every generated set also keeps the histogram of its predicted classes, so a decoder that
emits one image for every input shows up as a collapsed set (`prediction_stats`) instead of a
coherence near the share of one class.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from mmali_tf.data.specs import PairedDataset
from mmali_tf.metrics.common import (InferenceView, paired_batches, progress, seed_stream,
                                     tick)
from mmali_tf.metrics.report import MODEL_SYNERGY
from mmali_tf.metrics.scoring import Scorer


class Classifier(Protocol):
    def predict(self, x: Any, seed: Any = None) -> np.ndarray: ...


def pair_key(a: str, b: str) -> str:
    """Key of an ordered modality pair in the metrics ("a->b")."""
    return f"{a}->{b}"


def prediction_stats(counts: np.ndarray) -> dict[str, float]:
    """Share and index of the most predicted class and the entropy (bits) of a histogram."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("prediction_stats needs at least one prediction")
    p = counts / total
    nonzero = p[p > 0]
    return {"top_share": float(p.max()), "top_class": int(np.argmax(p)),
            "entropy_bits": float(max(0.0, -np.sum(nonzero * np.log2(nonzero))))}


@dataclasses.dataclass
class Tally:
    """Label x prediction counts of one generated set (label -1: unlabelled, joint), and
    whether each labelled prediction was right, in the order added."""

    num_classes: int

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.histogram = np.zeros(self.num_classes, np.int64)
        self.correct: list[np.ndarray] = []

    def add(self, pred: np.ndarray, labels: np.ndarray | None = None) -> None:
        pred = np.asarray(pred, np.int64)
        np.add.at(self.histogram, pred, 1)
        if labels is not None:
            np.add.at(self.confusion, (np.asarray(labels, np.int64), pred), 1)
            self.correct.append(pred == np.asarray(labels, np.int64))

    def correct_rows(self) -> np.ndarray:
        """Per labelled prediction (in order), whether it matched its label."""
        return np.concatenate(self.correct) if self.correct else np.zeros(0, bool)

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion)) / max(int(self.confusion.sum()), 1)


def joint_coherence(view: InferenceView, classifiers: Mapping[str, Classifier],
                    num_samples: int = 10000, batch_size: int = 256, seed: int = 0,
                    shared_z: bool = False, verbose: bool = False,
                    num_classes: int = 10, record: dict[str, np.ndarray] | None = None,
                    scorer: Scorer | None = None) -> tuple[float, dict[str, np.ndarray]]:
    """Fraction of prior samples whose decodings get the same class in every modality, and
    the predicted-class histogram of each modality; `record`, when given, receives the
    per-sample agreement under "all". `scorer` (default: one over `classifiers`) decodes and
    classifies (sets `joint/<m>`)."""
    score = scorer or Scorer(view, classifiers)
    gen, clf_gen = seed_stream(seed, 2), seed_stream(seed, 3)
    tallies = {m: Tally(num_classes) for m in view.modalities}
    agreed, bar = [], progress(num_samples, "joint coherence", verbose)
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        z = view.sample_prior(n, gen)
        if shared_z:
            z = {m: z[view.modalities[0]] for m in view.modalities}
        preds = np.stack([score(f"joint/{m}", m, z[m], clf_gen) for m in view.modalities])
        for m, pred in zip(view.modalities, preds):
            tallies[m].add(pred)
        agreed.append(np.all(preds == preds[:1], axis=0))
        tick(bar, n)
    agree = np.concatenate(agreed) if agreed else np.zeros(0, bool)
    if record is not None:
        record["all"] = agree
    return int(np.sum(agree)) / num_samples, {m: t.histogram for m, t in tallies.items()}


@dataclasses.dataclass
class ConditionalResult:
    """Cross, self and synergy coherence with the tallies behind them."""

    cross: dict[str, Tally]
    self_rec: dict[str, Tally]
    synergy: dict[str, dict[str, Tally]]

    def accuracies(self) -> tuple[dict[str, float], dict[str, float],
                                  dict[str, dict[str, float]]]:
        """(cross {"a->b": acc}, self {m: acc}, synergy {source: {m: acc}})."""
        return ({k: t.accuracy for k, t in self.cross.items()},
                {k: t.accuracy for k, t in self.self_rec.items()},
                {f: {m: t.accuracy for m, t in per.items()} for f, per in self.synergy.items()})

    def correct_rows(self) -> dict[str, np.ndarray]:
        """Per scored pair row (in order), whether each generated set was right, keyed like
        `histograms`."""
        out = {f"cross/{k}": t.correct_rows() for k, t in self.cross.items()}
        out.update({f"self/{m}": t.correct_rows() for m, t in self.self_rec.items()})
        out.update({f"synergy/{f}/{m}": t.correct_rows()
                    for f, per in self.synergy.items() for m, t in per.items()})
        return out

    def confusion(self) -> dict[str, np.ndarray]:
        return {k: t.confusion for k, t in self.cross.items()}

    def histograms(self) -> dict[str, np.ndarray]:
        """Predicted-class histogram of every generated set, keyed like `prediction_stats`."""
        out = {f"cross/{k}": t.histogram for k, t in self.cross.items()}
        out.update({f"self/{m}": t.histogram for m, t in self.self_rec.items()})
        out.update({f"synergy/{f}/{m}": t.histogram
                    for f, per in self.synergy.items() for m, t in per.items()})
        return out


def conditional_coherence(view: InferenceView, classifiers: Mapping[str, Classifier],
                          ds: PairedDataset, split: str, rows: np.ndarray,
                          batch_size: int = 256, seed: int = 0,
                          fusion_methods: Sequence[str] = (), verbose: bool = False,
                          model_synergy: bool = True,
                          scorer: Scorer | None = None) -> ConditionalResult:
    """Cross, self and synergy coherence over the given pair rows, in one pass.

    Synergy (stochastic models only) is computed for the model's own joint posterior
    (MODEL_SYNERGY, unless `model_synergy` is False) and for each of `fusion_methods` of the
    unimodal posteriors. `scorer` (default: one over `classifiers`) decodes and classifies,
    keyed like `histograms`.
    """
    score = scorer or Scorer(view, classifiers)
    mods, c = view.modalities, ds.num_classes
    gen, clf_gen = seed_stream(seed, 4), seed_stream(seed, 5)
    result = ConditionalResult(
        {pair_key(a, b): Tally(c) for a in mods for b in mods if a != b},
        {m: Tally(c) for m in mods},
        {f: {m: Tally(c) for m in mods}
         for f in (((MODEL_SYNERGY,) if model_synergy else ()) + tuple(fusion_methods)
                   if view.stochastic else ())})
    bar = progress(len(rows), "cross/synergy coherence", verbose)
    for batch in paired_batches(ds.split(split), mods, rows, batch_size):
        y = batch["label"]
        xs = {m: batch[m] for m in mods}
        params = {m: view.encode(m, batch[m]) for m in mods}
        z = {m: view.sample(*view.unimodal(m, params[m]), gen) for m in mods}
        for a in mods:
            result.self_rec[a].add(score(f"self/{a}", a, z[a], clf_gen), y)
            for b in mods:
                if a != b:
                    key = pair_key(a, b)
                    result.cross[key].add(score(f"cross/{key}", b,
                                                view.cross_latent(z[a], b, gen), clf_gen), y)
        for source, tallies in result.synergy.items():
            if source == MODEL_SYNERGY:
                content = view.sample_joint_content(params, xs, gen)
            else:
                content = view.sample(*view.fuse(params, source), gen)
            for t in mods:
                tallies[t].add(score(f"synergy/{source}/{t}", t,
                                     view.synergy_latent(content, z[t], t, gen), clf_gen), y)
        tick(bar, len(y))
    return result


def class_examples(ds: PairedDataset, split: str) -> np.ndarray:
    """Pair rows holding the first pair of every class (sorted by class), for figures."""
    labels = ds.split(split).pair_labels()
    return np.array([int(np.flatnonzero(labels == k)[0]) for k in np.unique(labels)])


def cross_generations(view: InferenceView, ds: PairedDataset, split: str, seed: int = 0
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"a->b": (x_a, decode_b(cross_latent(z ~ q(z|x_a))))} on one example per class."""
    rows = class_examples(ds, split)
    batch = next(paired_batches(ds.split(split), view.modalities, rows, len(rows)))
    gen = seed_stream(seed, 6)
    out = {}
    for a in view.modalities:
        z = view.sample(*view.unimodal(a, view.encode(a, batch[a])), gen)
        for b in view.modalities:
            if a != b:
                out[pair_key(a, b)] = (batch[a],
                                       np.asarray(view.decode(b, view.cross_latent(z, b, gen))))
    return out
