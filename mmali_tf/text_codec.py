"""Fixed-length character strings <-> one-hot arrays over an alphabet (numpy only).

Shared by the datasets, the evaluation and the bundle runtime (which never imports
TensorFlow). A text example of length L over an alphabet of A characters is an (L, A) array,
one-hot per position; decoding takes the argmax per position, so model outputs (softmax
probabilities) decode the same way as data.

`MMJSD_ALPHABET` is the 71-character alphabet of mmJSD's authors (thomassutter/mmjsd,
`alphabet.json`, joined into one string as their `main_svhnmnist.py` does). It lists `-` twice
(positions 36 and 59); like their `utils/text.py` (`alphabet.find`), encoding uses the first
position, so position 59 never occurs in data.
"""

from __future__ import annotations

import re

from typing import Iterable, Sequence

import numpy as np

MMJSD_ALPHABET = ("abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"\\/|_@#$%^&*~`+-=<>()[]{} "
                  "\n")
#: the English digit words of mmJSD's `utils/text.py` (`digit_text_english`), class order.
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAD = " "


def check_alphabet(alphabet: str) -> str:
    """`alphabet` if it is a non-empty string that contains the padding space, else ValueError."""
    if not isinstance(alphabet, str) or not alphabet or PAD not in alphabet:
        raise ValueError(f"a text alphabet must be a non-empty string containing a space, "
                         f"got {alphabet!r}")
    return alphabet


def codes(strings: Iterable[str], alphabet: str, length: int) -> np.ndarray:
    """int32 (N, length) character positions of `strings`, right-padded with spaces.

    ValueError names a string longer than `length` or a character outside `alphabet`.
    """
    alphabet = check_alphabet(alphabet)
    strings = list(strings)
    out = np.full((len(strings), length), alphabet.find(PAD), np.int32)
    for i, s in enumerate(strings):
        if not isinstance(s, str) or len(s) > length:
            raise ValueError(f"text {s!r}: expected a string of at most {length} characters")
        for k, ch in enumerate(s):
            pos = alphabet.find(ch)
            if pos < 0:
                raise ValueError(f"text {s!r}: character {ch!r} is not in the alphabet "
                                 f"{alphabet!r}")
            out[i, k] = pos
    return out


def one_hot(char_codes: np.ndarray, alphabet_size: int, dtype=np.float32) -> np.ndarray:
    """(..., L) character positions -> (..., L, alphabet_size) one-hot of `dtype`."""
    return np.eye(alphabet_size, dtype=dtype)[np.asarray(char_codes)]


def encode(strings: Iterable[str], alphabet: str, length: int) -> np.ndarray:
    """float32 (N, length, len(alphabet)) one-hot of `strings` (right-padded with spaces)."""
    return one_hot(codes(strings, alphabet, length), len(alphabet))


def decode(x: np.ndarray, alphabet: str) -> list[str]:
    """Strings of a batch (N, L, A) of one-hot rows or probabilities (argmax per position)."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[-1] != len(alphabet):
        raise ValueError(f"decode expects (N, L, {len(alphabet)}) text arrays, got {x.shape}")
    table = np.array(list(alphabet))
    return ["".join(row) for row in table[np.argmax(x, axis=-1)]]


def to_line(text: str) -> str:
    """`text` as one line of a .txt file: backslash and newline (both in the alphabet) escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def from_line(line: str) -> str:
    """The text of a .txt line written by `to_line` (`\\n` -> newline, `\\\\` -> backslash)."""
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), line)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions and substitutions cost 1)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def nearest_word(text: str, words: Sequence[str]) -> int:
    """Index of the word of `words` closest to `text` stripped of whitespace (edit distance;
    ties go to the lower index)."""
    core = text.strip()
    return int(np.argmin([edit_distance(core, w) for w in words]))
