"""Classify images decoded from latents: the inner loop of every coherence metric.

`Scorer(view, classifiers)(key, target, z, seed)` returns the classes the target modality's
classifier predicts for `view.decode(target, z)`. For a classifier split into features and a
head (`DigitClassifier`: `embed` / `predict_features`), decoding and the features run as one
`tf.function` per target modality (traced once for any batch size) instead of layer by layer
in eager mode; the head and its noise (the reference protocol's always-on dropout) stay eager,
so the draws of the seed streams are those of decode-then-`predict`. Other classifiers (the
text modality's word classifier, test doubles) get the decoded batch through `predict`.

The penultimate features of every scored set go to an optional `FeatureBank` (sample
quality: `metrics.sample_quality`), keyed like `prediction_stats`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf

from mmali_tf.metrics.common import InferenceView, instance_batches, sample_rows
from mmali_tf.metrics.sample_quality import FeatureBank


class Scorer:
    """Decode-and-classify for one model view and its coherence classifiers."""

    def __init__(self, view: InferenceView, classifiers: Mapping[str, Any],
                 bank: FeatureBank | None = None) -> None:
        self.view = view
        self.classifiers = classifiers
        self.bank = bank
        self._embed: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {}

    def _embedder(self, target: str, z: tf.Tensor) -> Callable[[tf.Tensor], tf.Tensor]:
        if target not in self._embed:
            clf, view = self.classifiers[target], self.view
            self._embed[target] = tf.function(
                lambda latent: clf.embed(view.decode(target, latent)),
                input_signature=[tf.TensorSpec([None, *z.shape[1:]], tf.float32)])
        return self._embed[target]

    def __call__(self, key: str, target: str, z: Any, seed: Any = None) -> np.ndarray:
        """Predicted classes of `target` decoded from latents `z` (set `key`)."""
        clf = self.classifiers[target]
        if not hasattr(clf, "predict_features"):
            return clf.predict(self.view.decode(target, z), seed)
        z = tf.convert_to_tensor(z, tf.float32)
        h = self._embedder(target, z)(z)
        if self.bank is not None:
            self.bank.add(key, target, h)
        return clf.predict_features(h, seed)


def real_features(classifiers: Mapping[str, Any], instances: Mapping[str, np.ndarray],
                  limit: int, seed: int = 0, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Penultimate classifier features of at most `limit` real instances per modality (a
    seeded subset, in index order), the reference sets of sample quality."""
    out = {}
    for m, x in instances.items():
        rows = sample_rows(len(x), limit, seed)
        out[m] = np.concatenate([classifiers[m].embed(b).numpy()
                                 for b in instance_batches(x[rows], batch_size)])
    return out
