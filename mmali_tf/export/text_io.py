"""Strings in and out of a bundle's text modalities (numpy only, no TensorFlow).

A text modality's manifest entry carries its `alphabet`; its graphs take and return (batch,
L, A) arrays, one-hot inputs and per-position probabilities outputs. `Bundle` accepts a string
or a list of strings wherever it accepts such an input and returns strings for such outputs
(argmax per position, `mmali_tf.text_codec.decode`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from mmali_tf import text_codec
from mmali_tf.export.errors import BundleError, show


def is_text(spec: Mapping[str, Any]) -> bool:
    return spec.get("kind") == "text"


def as_input(spec: Mapping[str, Any], x: Any) -> Any:
    """`x` unchanged unless `spec` is text and `x` a string or a list/tuple of strings: then
    its one-hot array (float32 (N, L, A)); BundleError for a string that does not fit."""
    if not is_text(spec):
        return x
    strings = [x] if isinstance(x, str) else x
    if not isinstance(strings, (list, tuple)) or not all(isinstance(s, str) for s in strings):
        return x
    length = int(spec["shape"][0])
    try:
        return text_codec.encode(strings, spec["alphabet"], length)
    except ValueError as e:
        raise BundleError(f"input for {spec['name']!r}: {e}") from None


def as_output(spec: Mapping[str, Any], x: np.ndarray) -> Any:
    """Strings for a text modality's output batch, `x` itself for other kinds."""
    return text_codec.decode(x, spec["alphabet"]) if is_text(spec) else x


def check_alphabet(where: str, spec: Mapping[str, Any], text_limit: int) -> None:
    """BundleError unless a text entry's `alphabet` is a string of shape[1] characters with
    the padding space, and other kinds have none."""
    alphabet = spec.get("alphabet")
    if not is_text(spec):
        if alphabet is not None:
            raise BundleError(f"bundle manifest {where}.alphabet is {show(alphabet)}; only a "
                              "text modality has one")
        return
    shape = spec["shape"]
    if (not isinstance(alphabet, str) or len(alphabet) > text_limit or len(shape) != 2
            or len(alphabet) != shape[1] or text_codec.PAD not in alphabet):
        raise BundleError(f"bundle manifest {where}.alphabet is {show(alphabet)}; expected a "
                          f"string of shape[1] characters (at most {text_limit}) with a space "
                          f"for text of shape {show(shape)}")
