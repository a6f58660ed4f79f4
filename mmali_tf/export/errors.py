"""`BundleError`: the one exception for a bundle, or an input given to it, that is refused."""

from __future__ import annotations

from typing import Any


class BundleError(ValueError):
    """A refused bundle (manifest, files, graphs, pinned digest) or a refused inference input.

    The message is one line naming the bad value and what was expected. Command-line tools turn
    it into `error: ...` and exit code 2. (A bundle directory or `manifest.json` that does not
    exist raises FileNotFoundError instead.)
    """


def show(value: Any, width: int = 60) -> str:
    """`repr(value)` cut to about `width` characters: safe to put untrusted values in a message."""
    text = repr(value)
    return text if len(text) <= width else f"{text[:width - 5]}...{text[-2:]}"


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type if empty), cut to 200 characters."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:200]
