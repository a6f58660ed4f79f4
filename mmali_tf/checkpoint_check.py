"""Checkpoints verified before use: a size + sha256 manifest, a full read, fallback, set-aside.

Every save records, in `checkpoints/manifest.json` (rewritten atomically, after TensorFlow
has written the checkpoint and its state file), the byte size and sha256 of each file of
each kept checkpoint. Before a checkpoint is used (training resume, evaluation, export),
`problem()` checks those sizes and digests (a truncated or altered file), then reads every
tensor through `tf.train.load_checkpoint` (TensorFlow checks each tensor's crc32c), which also
covers checkpoints without a manifest entry (older releases, a crash between the state update
and the manifest). Only then are the values restored into the model, so a restore error means
"another model" (exit 2), never "damaged file".

Training resumes from the newest checkpoint without a problem (`readable()`), sets the newer
damaged ones aside in `checkpoints/corrupt/<name>/` (renamed, never deleted) and rewrites the
CheckpointManager state so it no longer lists them. Every worker of a multi-worker job runs
the same checks on the chief's directory and so picks the same checkpoint; only the chief
moves files.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
from typing import Mapping

from mmali_tf.atomic import atomic_write_text

MANIFEST = "manifest.json"
FORMAT = "mmali_tf.checkpoints"
FORMAT_VERSION = 1
CORRUPT_DIR = "corrupt"
_STEP = re.compile(r"-(\d+)$")


def _files(prefix: str) -> list[str]:
    return [prefix + ".index"] + sorted(glob.glob(glob.escape(prefix) + ".data-?????-of-?????"))


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def step_of(prefix: str) -> int:
    """The step in a `ckpt-<step>` prefix."""
    return int(_STEP.search(prefix).group(1))


def read_manifest(directory: str) -> dict[str, dict[str, list]]:
    """{checkpoint name: {file name: [bytes, sha256]}}; empty when the manifest is missing or
    unreadable (then only the full read judges a checkpoint). ValueError for a manifest of
    a newer release."""
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        version = record["format_version"]
        entries = dict(record["checkpoints"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {version!r}, newer than the "
                         f"{FORMAT_VERSION} this mmali_tf reads; upgrade mmali_tf")
    return entries


def record(directory: str, prefix: str, kept: list[str]) -> None:
    """Add checkpoint `prefix` to the manifest of `directory`, keeping entries of `kept`."""
    entries = {name: entry for name, entry in read_manifest(directory).items()
               if name in {os.path.basename(p) for p in kept}}
    entries[os.path.basename(prefix)] = {os.path.basename(f): [os.path.getsize(f), _sha256(f)]
                                         for f in _files(prefix)}
    atomic_write_text(os.path.join(directory, MANIFEST), json.dumps(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "checkpoints": entries},
        indent=1, sort_keys=True) + "\n")


def problem(prefix: str, entry: Mapping[str, list] | None) -> str | None:
    """Why checkpoint `prefix` cannot be used (sizes, digests, then a full read), or None."""
    import tensorflow as tf

    for name, (size, sha) in sorted((entry or {}).items()):
        path = os.path.join(os.path.dirname(prefix), name)
        if not os.path.isfile(path):
            return f"{name} is missing"
        actual = os.path.getsize(path)
        if actual != size:
            return f"{name} has {actual} bytes, {size} were written"
        if _sha256(path) != sha:
            return f"{name} differs from what was written (sha256)"
    if not os.path.isfile(prefix + ".index"):
        return f"{os.path.basename(prefix)}.index is missing"
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key in sorted(reader.get_variable_to_shape_map()):
            reader.get_tensor(key)
    except Exception as error:  # noqa: BLE001 - any failure to read means "damaged"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"cannot be read ({type(error).__name__}: {first[:200]})"
    return None


def candidates(directory: str) -> list[str]:
    """Checkpoint prefixes of `directory`, newest first: those the CheckpointManager state
    lists, or, when the state file is missing or unreadable, every `ckpt-<n>.index`."""
    import tensorflow as tf

    try:
        state = tf.train.get_checkpoint_state(directory)
    except ValueError:
        state = None
    if state is not None and state.model_checkpoint_path:  # paths joined to `directory`
        paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    else:
        paths = [p[:-len(".index")] for p in glob.glob(os.path.join(directory, "ckpt-*.index"))]
        paths = [p for p in paths if _STEP.search(p)]
    return sorted(set(paths), key=step_of, reverse=True)


@dataclasses.dataclass
class Choice:
    """The newest usable checkpoint of a directory and the newer ones that are damaged."""

    path: str | None
    damaged: list[tuple[str, str]]

    def describe(self) -> str:
        """The damaged checkpoints and why, in a few words (for a one-line message)."""
        return "; ".join(f"{os.path.basename(p)}: {why}" for p, why in self.damaged)


def readable(directory: str, newest: int | None = None) -> Choice:
    """The newest checkpoint of `directory` (at most step `newest`) without a `problem`."""
    entries = read_manifest(directory)
    damaged = []
    for prefix in candidates(directory):
        if newest is not None and step_of(prefix) > newest:
            continue
        why = problem(prefix, entries.get(os.path.basename(prefix)))
        if why is None:
            return Choice(prefix, damaged)
        damaged.append((prefix, why))
    return Choice(None, damaged)


def set_aside(directory: str, choice: Choice) -> list[str]:
    """Move the damaged checkpoints of `choice` (which has a `path`) into
    `<directory>/corrupt/<name>[.<n>]/` and make the CheckpointManager state name `path` as
    the latest and list only it and older ones; returns the folders."""
    from tensorflow.python.checkpoint import checkpoint_management

    moved = []
    for prefix, _ in choice.damaged:
        name = os.path.basename(prefix)
        target = os.path.join(directory, CORRUPT_DIR, name)
        n = 0
        while os.path.exists(target):
            n += 1
            target = os.path.join(directory, CORRUPT_DIR, f"{name}.{n}")
        os.makedirs(target)
        for path in glob.glob(glob.escape(prefix) + ".*"):
            os.replace(path, os.path.join(target, os.path.basename(path)))
        moved.append(target)
    keep = [p for p in candidates(directory) if step_of(p) <= step_of(choice.path)
            and os.path.isfile(p + ".index")]
    checkpoint_management.update_checkpoint_state_internal(
        directory, choice.path, all_model_checkpoint_paths=sorted(keep, key=step_of),
        save_relative_paths=True)
    return moved
