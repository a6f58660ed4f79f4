"""Conditional coherence from any subset of input modalities (the PolyMNIST protocol).

For every proper non-empty subset S of the M modalities and every target t not in S: draw
one content code from the model's posterior given x_S, join it with a style drawn from the
prior (t's own style is not observed), decode t and score t's classifier against the pair
label. The coherence of S is the mean accuracy over its targets; `by_size[k]` averages the
subsets of size k (k = 1..M-1), as reported for PolyMNIST by MoPoE-VAE, MMVAE+ and MultiVae.
The predicted classes of every target t decoded from the subsets of size k are also counted
(histogram `subset/<k>/<t>`), so a collapsed decoder is visible in `prediction_stats`.

Posterior given x_S, through the `MultimodalModel` interface only:
* |S| = 1: the unimodal posterior (`InferenceView.unimodal`, which adds the prior expert for
  PoE models that have one);
* |S| >= 2, default fusion `moe_mean` (mixture models): a sample of the mixture
  (1/|S|) sum_{m in S} q(z|x_m) -- a uniformly chosen expert per example -- rather than its
  moment-matched Gaussian;
* otherwise the model's default fusion (`fuse`, e.g. PoE or the geometric mean).
Deterministic encoders have no fused posterior, so only size 1 is scored for them.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
import numpy as np
import tensorflow as tf

from mmali_tf.data.specs import PairedDataset
from mmali_tf.latent import nonempty_subsets
from mmali_tf.metrics.coherence import Classifier
from mmali_tf.metrics.common import (InferenceView, paired_batches, progress, seed_stream,
                                     tick)
from mmali_tf.metrics.scoring import Scorer


def subset_key(modalities: tuple[str, ...]) -> str:
    """Key of an input subset in the metrics ("m0+m2")."""
    return "+".join(modalities)


def sample_subset_content(view: InferenceView, params: Mapping[str, tuple[Any, Any]],
                          seed: keras.random.SeedGenerator) -> tf.Tensor:
    """One content sample (B, content_dim) from the model's posterior given `params`' subset."""
    lay = view.layout
    if len(params) == 1:
        m, p = next(iter(params.items()))
        return lay.content(view.sample(*view.unimodal(m, p), seed))
    if view.default_fusion == "moe_mean":
        samples = tf.stack([lay.content(view.sample(*view.unimodal(m, p), seed))
                            for m, p in params.items()])                # (|S|, B, C)
        pick = keras.random.randint((samples.shape[1],), 0, len(params), seed=seed)
        return tf.gather(tf.transpose(samples, [1, 0, 2]), pick, batch_dims=1)
    return view.sample(*view.fuse(params), seed)


def subset_coherence(view: InferenceView, classifiers: Mapping[str, Classifier],
                     ds: PairedDataset, split: str, rows: np.ndarray, batch_size: int = 256,
                     seed: int = 0, verbose: bool = False, scorer: Scorer | None = None
                     ) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """({"by_size": {"k": acc}, "by_subset": {"m0+m1": acc}}, predicted-class histograms
    {"subset/<k>/<t>": counts}) over the given pair rows; `scorer` (default: one over
    `classifiers`) decodes and classifies, keyed like the histograms."""
    score = scorer or Scorer(view, classifiers)
    mods, lay = view.modalities, view.layout
    max_size = len(mods) - 1 if view.stochastic else 1
    subsets = [tuple(mods[i] for i in s) for s in nonempty_subsets(len(mods))
               if len(s) <= max_size]
    hits = {s: 0 for s in subsets}
    histograms = {f"subset/{k}/{t}": np.zeros(ds.num_classes, np.int64)
                  for k in sorted({len(s) for s in subsets}) for t in mods}
    gen, clf_gen = seed_stream(seed, 7), seed_stream(seed, 8)
    bar = progress(len(rows), "subset coherence", verbose)
    for batch in paired_batches(ds.split(split), mods, rows, batch_size):
        y, n = batch["label"], len(batch["label"])
        params = {m: view.encode(m, batch[m]) for m in mods}
        for s in subsets:
            content = sample_subset_content(view, {m: params[m] for m in s}, gen)
            styles = view.sample_prior(n, gen)
            for t in mods:
                if t not in s:
                    key = f"subset/{len(s)}/{t}"
                    pred = np.asarray(score(key, t, lay.join(lay.style(styles[t]), content),
                                            clf_gen), np.int64)
                    hits[s] += int(np.sum(pred == y)) / (len(mods) - len(s))
                    np.add.at(histograms[key], pred, 1)
        tick(bar, n)
    total = max(len(rows), 1)
    by_subset = {subset_key(s): h / total for s, h in hits.items()}
    by_size = {str(k): float(np.mean([v for s, v in zip(subsets, by_subset.values())
                                      if len(s) == k]))
               for k in sorted({len(s) for s in subsets})}
    return ({"by_size": by_size, "by_subset": by_subset},
            {k: h for k, h in histograms.items() if h.sum() > 0})
