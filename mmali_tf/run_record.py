"""Checked reading of a run directory's metadata: flags.txt and run.json.

Both are written by `run_dir.write_run_files` (flags.txt from run.json's `config`, with a
trailing newline). A file cut short, edited into something that is not `--name=value` lines
or JSON of the expected shape, the two disagreeing on a flag that fixes the variables, or a
run.json from a newer release (`format_version`) is reported as a ValueError naming the file
and what to do; the CLIs print it as one line and exit 2.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

from mmali_tf.flags_text import format_flags, parse_flags_text, shape_flags

#: run.json layout this release writes and reads (a newer one is refused, older ones read).
FORMAT_VERSION = 1
_FLAG_LINE = re.compile(r"^--[A-Za-z0-9_]+=")


def _damaged(path: str, why: str, fix: str) -> ValueError:
    return ValueError(f"{path} is damaged: {why}; {fix}")


def read_flags(run: Any) -> dict[str, str] | None:
    """flags.txt as {name: value text}, None when absent; ValueError when damaged."""
    if not os.path.exists(run.flags_txt):
        return None
    fix = ("restore it, or delete it and run training with the run's flags (run.json has "
           "them) to rewrite it")
    try:
        with open(run.flags_txt, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as error:
        raise _damaged(run.flags_txt, str(error), fix) from None
    if not text.endswith("\n"):
        raise _damaged(run.flags_txt, "its last line is cut short", fix)
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not _FLAG_LINE.match(line.strip()):
            raise _damaged(run.flags_txt, f"line {number} {line.strip()[:60]!r} is not "
                           "--name=value", fix)
    flags = parse_flags_text(text)
    missing = [name for name in ("model", "dataset") if name not in flags]
    if missing:
        raise _damaged(run.flags_txt, f"it has no --{missing[0]}", fix)
    return flags


def read_record(run: Any) -> dict[str, Any] | None:
    """run.json ({"config", "specs", "format_version"} and, since --jit_compile=auto, "xla"),
    None when absent; ValueError when damaged, from a newer release, or contradicting
    flags.txt on a shape flag."""
    if not os.path.exists(run.run_json):
        return None
    fix = "restore it, or delete it and rerun the training command to rewrite it"
    try:
        with open(run.run_json, encoding="utf-8") as f:
            record = json.load(f)
        version = record.get("format_version", 1)
        config, specs = record["config"], record["specs"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError,
            AttributeError) as error:
        why = f"no {error}" if isinstance(error, KeyError) else str(error).splitlines()[0]
        raise _damaged(run.run_json, why, fix) from None
    if not isinstance(version, int):
        raise _damaged(run.run_json, f"format_version {version!r} is not an integer", fix)
    if version > FORMAT_VERSION:
        raise ValueError(f"{run.run_json} has format_version {version}: the run was written "
                         f"by a newer mmali_tf (this one reads up to {FORMAT_VERSION}); "
                         "upgrade mmali_tf")
    if not (isinstance(config, dict) and isinstance(specs, list)
            and all(isinstance(config.get(k), str) for k in ("model", "dataset"))):
        raise _damaged(run.run_json, "config, specs, model or dataset has the wrong type", fix)
    flags = read_flags(run)
    if flags is not None:
        for name in shape_flags(config["model"], config["dataset"]):
            recorded = parse_flags_text(
                format_flags({name: config.get(name)})).get(name)
            if recorded is not None and flags.get(name) != recorded:
                raise ValueError(f"{run.flags_txt} and {run.run_json} disagree on --{name} "
                                 f"({flags.get(name, 'missing')} vs {recorded}): one was "
                                 "edited or cut short; restore it")
    return record


def record_of(config: dict[str, Any], specs: list[dict[str, Any]],
              xla: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What run.json holds for `config`, the modality specs (as dicts) and, when given, how
    XLA was chosen (`mmali_tf.xla.Choice.record`; absent in runs written before it)."""
    record = {"format_version": FORMAT_VERSION, "config": config, "specs": specs}
    if xla is not None:
        record["xla"] = dict(xla)
    return record
