"""Generation coherence scored by pre-trained digit classifiers (SPEC_MMALI 7.2, BASELINES 7.2).

* joint: decode prior samples in every modality; fraction whose predicted classes all agree.
  `shared_z=True` (reference protocol) feeds one full z, style included, to every decoder as
  the released mmALI code does; otherwise the prior's shared content with independent styles.
* cross a->b: z ~ q(z|x_a) (one sample, the source's style included), decode b, accuracy of
  b's classifier against the pair label.
* synergy (method -> modality t): one sample of the fused content of all modalities joined
  with t's own sampled style, decoded in t, accuracy against the pair label.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from mmali_tf.data.specs import PairedDataset
from mmali_tf.metrics.common import (InferenceView, paired_batches, progress, seed_stream,
                                     tick)


class Classifier(Protocol):
    def predict(self, x: Any, seed: Any = None) -> np.ndarray: ...


def pair_key(a: str, b: str) -> str:
    """Key of an ordered modality pair in the metrics ("a->b")."""
    return f"{a}->{b}"


def joint_coherence(view: InferenceView, classifiers: Mapping[str, Classifier],
                    num_samples: int = 10000, batch_size: int = 256, seed: int = 0,
                    shared_z: bool = False, verbose: bool = False) -> float:
    """Fraction of prior samples whose decodings get the same class in every modality."""
    gen, clf_gen = seed_stream(seed, 2), seed_stream(seed, 3)
    agree, bar = 0, progress(num_samples, "joint coherence", verbose)
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        z = view.sample_prior(n, gen)
        if shared_z:
            z = {m: z[view.modalities[0]] for m in view.modalities}
        preds = np.stack([classifiers[m].predict(view.decode(m, z[m]), clf_gen)
                          for m in view.modalities])
        agree += int(np.sum(np.all(preds == preds[:1], axis=0)))
        tick(bar, n)
    return agree / num_samples


def conditional_coherence(view: InferenceView, classifiers: Mapping[str, Classifier],
                          ds: PairedDataset, split: str, rows: np.ndarray,
                          batch_size: int = 256, seed: int = 0,
                          fusion_methods: Sequence[str] = (), verbose: bool = False
                          ) -> tuple[dict[str, float], dict[str, np.ndarray],
                                     dict[str, dict[str, float]]]:
    """Cross and synergy coherence over the given pair rows, in one pass.

    Returns (cross {"a->b": acc}, confusion {"a->b": (C, C) counts [true, predicted]},
    synergy {method: {modality: acc}}); synergy needs a stochastic model.
    """
    mods, lay, c = view.modalities, view.layout, ds.num_classes
    gen, clf_gen = seed_stream(seed, 4), seed_stream(seed, 5)
    confusion = {pair_key(a, b): np.zeros((c, c), np.int64) for a in mods for b in mods if a != b}
    synergy_hits = {f: {m: 0 for m in mods} for f in fusion_methods}
    bar = progress(len(rows), "cross/synergy coherence", verbose)
    for batch in paired_batches(ds.split(split), mods, rows, batch_size):
        y = batch["label"]
        params = {m: view.encode(m, batch[m]) for m in mods}
        z = {m: view.sample(*view.unimodal(m, params[m]), gen) for m in mods}
        for a in mods:
            for b in mods:
                if a != b:
                    pred = classifiers[b].predict(view.decode(b, z[a]), clf_gen)
                    np.add.at(confusion[pair_key(a, b)], (y, pred), 1)
        for method in fusion_methods:
            content = view.sample(*view.fuse(params, method), gen)
            for t in mods:
                x = view.decode(t, lay.join(lay.style(z[t]), content))
                synergy_hits[method][t] += int(np.sum(classifiers[t].predict(x, clf_gen) == y))
        tick(bar, len(y))
    n = max(len(rows), 1)
    cross = {k: float(np.trace(v)) / n for k, v in confusion.items()}
    synergy = {f: {m: hits / n for m, hits in h.items()} for f, h in synergy_hits.items()}
    return cross, confusion, synergy


def class_examples(ds: PairedDataset, split: str) -> np.ndarray:
    """Pair rows holding the first pair of every class (sorted by class), for figures."""
    labels = ds.split(split).pair_labels()
    return np.array([int(np.flatnonzero(labels == k)[0]) for k in np.unique(labels)])


def cross_generations(view: InferenceView, ds: PairedDataset, split: str, seed: int = 0
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"a->b": (x_a, decode_b(z ~ q(z|x_a)))} on one example per class (figure material)."""
    rows = class_examples(ds, split)
    batch = next(paired_batches(ds.split(split), view.modalities, rows, len(rows)))
    gen = seed_stream(seed, 6)
    out = {}
    for a in view.modalities:
        z = view.sample(*view.unimodal(a, view.encode(a, batch[a])), gen)
        for b in view.modalities:
            if a != b:
                out[pair_key(a, b)] = (batch[a], np.asarray(view.decode(b, z)))
    return out
