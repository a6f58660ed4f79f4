"""Coherence scorers of a text modality made from class words: a trained 1-D convnet (default)
or the nearest class word (no training).

`classifier` (`--text_scorer=classifier`): mmJSD's text classifier (Sutter et al. 2020;
thomassutter/mmjsd, networks/ConvNetworkTextClf.py, `ClfText`), applied to the decoder's
per-position probabilities as the authors apply it to their text likelihood's mean
(networks/VAEtrimodalSVHNMNIST.py, `generate_from_latents`). `text_cnn_features` builds its
feature stack; `metrics.classifiers` trains, caches and reports it like the image classifiers,
on training texts redrawn with the dataset's own rule every epoch (`PairedDataset.redraw`).
A text generated from another modality carries no offset, so its probabilities are a blur over
the word's start positions: the convnet still reads the word in it, where the argmax string is
mostly spaces.

`nearest_word` (`--text_scorer=nearest_word`, how coherence was scored before the classifier):
the argmax string (`text_codec.decode`), stripped of whitespace, is assigned the class whose
word is nearest in edit distance (ties: the lower class).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import keras
import numpy as np

from mmali_tf import text_codec

#: the authors' --dim: channels 2*DIM and 3*DIM.
DIM = 64
#: the authors' residual branch weight (out = residual + 0.3 * branch).
BRANCH_WEIGHT = 0.3
#: kernel and stride of both strided blocks.
KERNEL, STRIDE = 4, 2


def _batch_norm(x: Any) -> Any:
    """BatchNorm1d with PyTorch's defaults (momentum 0.1, eps 1e-5)."""
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)


def _strided(x: Any, filters: int, padding: int) -> Any:
    """Conv1d(kernel 4, stride 2, zero padding `padding` on both ends)."""
    if padding:
        x = keras.layers.ZeroPadding1D(padding)(x)
    return keras.layers.Conv1D(filters, KERNEL, strides=STRIDE)(x)


def _residual_block(x: Any, filters: int, padding: int) -> Any:
    """The authors' `ResidualBlockEncoder`: BN-ReLU-conv k1-BN-ReLU-conv k4 s2 branch, added
    with weight 0.3 to the input through a conv k4 s2 + BN shortcut."""
    branch = keras.layers.ReLU()(_batch_norm(x))
    branch = keras.layers.Conv1D(x.shape[-1], 1)(branch)
    branch = _strided(keras.layers.ReLU()(_batch_norm(branch)), filters, padding)
    shortcut = _batch_norm(_strided(x, filters, padding))
    return shortcut + BRANCH_WEIGHT * branch


def text_cnn_features(inp: Any) -> Any:
    """Features of `ClfText` for (L, A) inputs: conv k1 2*DIM -> residual block to 3*DIM
    (padding 1) -> residual block to 2*DIM (padding 0) -> flatten (2*DIM at L = 8). The
    authors' dropout and linear layer are the classifier's head (`classifiers.build_networks`);
    their final sigmoid is monotone, so the class is the argmax of the logits."""
    length = inp.shape[1]
    if length < 8:
        raise ValueError(f"the text classifier needs at least 8 characters, got {length}")
    h = keras.layers.Conv1D(2 * DIM, 1)(inp)
    h = _residual_block(h, 3 * DIM, padding=1)
    h = _residual_block(h, 2 * DIM, padding=0)
    return keras.layers.Flatten()(h)


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


def word_rule(ds: Any, modality: str) -> Any:
    """The rule (`data.text.WordRule`) that writes the texts of `modality` from class words;
    ValueError when `ds` has none (`PairedDataset.redraw`)."""
    rule = ds.redraw.get(modality)
    if rule is None:
        raise ValueError(f"text modality {modality!r} of {ds.name} has no class words "
                         "(PairedDataset.redraw), so its coherence cannot be scored")
    return rule


def word_classifier(ds: Any, modality: str) -> WordClassifier:
    """The nearest-word classifier of a text modality of `ds` whose texts are class words,
    with its accuracy on the stored test texts."""
    rule = word_rule(ds, modality)
    clf = WordClassifier(modality, rule.alphabet, tuple(rule.words))
    clf.test_accuracy = clf.accuracy(ds.test.instances[modality], ds.test.labels[modality])
    return clf
