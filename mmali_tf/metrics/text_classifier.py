"""Coherence "classifier" of a text modality made from class words: no training.

A generated text is decoded to its argmax string (`text_codec.decode`), stripped of
whitespace and assigned the class whose word is nearest in edit distance (ties: the lower
class). mmJSD's authors score text with a trained 1-D convnet (networks/ConvNetworkTextClf.py);
with texts that are exactly the class words, the nearest word is that classifier's ideal and
needs no training, and a misspelt generation still counts as the word it is closest to.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from mmali_tf import text_codec


@dataclasses.dataclass
class WordClassifier:
    """Nearest-class-word classifier of the text modality `modality`."""

    modality: str
    alphabet: str
    words: tuple[str, ...]
    test_accuracy: float = float("nan")

    def __post_init__(self) -> None:
        self._nearest = functools.lru_cache(maxsize=None)(
            lambda s: text_codec.nearest_word(s, self.words))

    def predict(self, x: Any, seed: Any = None) -> np.ndarray:
        """Class of each text in a batch (N, L, A) of one-hot rows or probabilities."""
        strings = text_codec.decode(np.asarray(x), self.alphabet)
        return np.array([self._nearest(s) for s in strings], np.int32)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(x) == np.asarray(y)))


def word_classifier(ds: Any, modality: str) -> WordClassifier:
    """The classifier of a text modality of `ds` whose texts are class words (`ds.redraw`),
    with its accuracy on the stored test texts."""
    rule = ds.redraw.get(modality)
    if rule is None:
        raise ValueError(f"text modality {modality!r} of {ds.name} has no class words "
                         "(PairedDataset.redraw), so its coherence cannot be scored")
    clf = WordClassifier(modality, rule.alphabet, tuple(rule.words))
    clf.test_accuracy = clf.accuracy(ds.test.instances[modality], ds.test.labels[modality])
    return clf
