"""Text modalities made from class labels: the word of the class at a random start index.

mmJSD's MNIST-SVHN-Text rule (thomassutter/mmjsd, `utils/text.py`,
`create_text_from_label_mnist`): the text of an example is its label's English word placed
at a start index drawn uniformly from [0, L - 1 - len(word)] (Python's inclusive
`random.randint`, so the last position is always a space) in a string of L = 8 spaces,
one-hot over their 71-character alphabet, drawn afresh every time an example is read.

Here a text modality's stored instances are one such drawing per instance (bool one-hot,
seeded), which evaluation reads as they are; the training pipeline redraws the start index
of every example it yields (`WordRule.tf_draw`, keyed by the run seed and the step, so a
resumed run sees the same stream).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from mmali_tf import text_codec
from mmali_tf.data.pairing import PairingRule, build_split, pairing_rng
from mmali_tf.data.specs import ModalitySpec, PairedDataset

LENGTH = 8                       # the authors' --len_sequence
TEXT_SEED = 20_261_207           # the stored drawings: fixed, independent of the run seed
#: split -> modality -> (instances, int labels)
SplitArrays = Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class WordRule:
    """Class k is written as `words[k]` at a random start in `length` characters."""

    words: tuple[str, ...] = text_codec.DIGIT_WORDS
    alphabet: str = text_codec.MMJSD_ALPHABET
    length: int = LENGTH

    def __post_init__(self) -> None:
        text_codec.check_alphabet(self.alphabet)
        text_codec.codes(self.words, self.alphabet, self.length - 1)  # fits with a free end

    def spec(self, name: str = "text", network: str = "text_conv",
             likelihood: str = "categorical") -> ModalitySpec:
        """The (length, len(alphabet)) text spec with a categorical `likelihood`
        (`specs.CATEGORICAL`)."""
        return ModalitySpec(name, (self.length, len(self.alphabet)), "text", network,
                            likelihood=likelihood, alphabet=self.alphabet)

    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(word codes (C, length) left-aligned, number of start indices (C,))."""
        word_codes = text_codec.codes(self.words, self.alphabet, self.length)
        starts = np.array([self.length - len(w) for w in self.words], np.int32)
        return word_codes, starts

    def codes(self, labels: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """int32 (N, length) character positions: word of labels[i] from starts[i] on."""
        word_codes, _ = self._tables()
        shift = np.arange(self.length)[None, :] - np.asarray(starts)[:, None]
        pad = self.alphabet.find(text_codec.PAD)
        rows = word_codes[np.asarray(labels)]
        inside = shift >= 0
        return np.where(inside, np.take_along_axis(rows, np.maximum(shift, 0), 1), pad)

    def draw(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """bool (N, length, A): one drawing of every label's text (numpy rng)."""
        _, counts = self._tables()
        starts = rng.integers(0, counts[np.asarray(labels)])
        return text_codec.one_hot(self.codes(labels, starts), len(self.alphabet), bool)

    def tf_draw(self, labels, key):
        """float32 (B, length, A): a fresh drawing of every label's text from the stateless
        seed `key` (int64 (2,)); the TensorFlow twin of `draw`."""
        import tensorflow as tf

        word_codes, counts = self._tables()
        labels = tf.cast(labels, tf.int32)
        u = tf.random.stateless_uniform(tf.shape(labels), seed=key)
        n = tf.gather(tf.constant(counts), labels)
        starts = tf.minimum(tf.cast(u * tf.cast(n, tf.float32), tf.int32), n - 1)
        shift = tf.range(self.length)[None, :] - starts[:, None]
        rows = tf.gather(tf.constant(word_codes), labels)
        chars = tf.where(shift >= 0, tf.gather(rows, tf.maximum(shift, 0), batch_dims=1),
                         self.alphabet.find(text_codec.PAD))
        return tf.one_hot(chars, len(self.alphabet), dtype=tf.float32)


def text_dataset(name: str, specs: Sequence[ModalitySpec], arrays: SplitArrays,
                 config: Mapping[str, Any], seed: int, rule: WordRule = WordRule(),
                 text_name: str = "text", likelihood: str = "categorical") -> PairedDataset:
    """A PairedDataset of the modalities of `arrays` plus a text modality `text_name`.

    The text instances are one drawing (fixed seed) per instance of the first modality, with
    its labels; every split is paired by class with the pairing flags of `config` (the test
    split with `PairingRule.for_test`) and the run `seed`, and training redraws the text of
    every example. `likelihood`: the text modality's (`--text_likelihood`).
    """
    pairing = PairingRule.from_config(config)
    splits = {}
    for k, (split, per_modality) in enumerate(arrays.items()):
        base_labels = next(iter(per_modality.values()))[1].astype(np.int32)
        text = rule.draw(base_labels, np.random.default_rng([TEXT_SEED, k]))
        data = {**per_modality, text_name: (text, base_labels)}
        splits[split] = build_split({m: v[0] for m, v in data.items()},
                                    {m: v[1] for m, v in data.items()},
                                    pairing if split == "train" else pairing.for_test(),
                                    pairing_rng(seed, split))
    return PairedDataset(name=name, specs=(*specs, rule.spec(text_name, likelihood=likelihood)),
                         train=splits["train"], test=splits["test"],
                         redraw={text_name: rule})
