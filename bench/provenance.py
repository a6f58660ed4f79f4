"""The command a benchmark record was made with, with this machine's paths named by role.

A record's `command` is shown in the docs under its numbers. Absolute paths of the machine that
ran it (a virtualenv, unpacked snapshots, temporary files) mean nothing to a reader, so they
are written by role: `$REF_VENV` (the torch virtualenv), `$SNAPSHOTS/<owner>+<name>` (an
unpacked snapshot of the authors' repository), `$SHARED/reference` (the reference scripts) and
`bench/results/<file>` for the record itself.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_ROLES = (
    (re.compile(r"--ref_python[= ]\S+"), lambda m: "--ref_python=$REF_VENV/bin/python"),
    (re.compile(r"--ref_scripts[= ]\S+"), lambda m: "--ref_scripts=$SHARED/reference"),
    (re.compile(r"--(\w+)_src[= ](\S+)"), lambda m: f"--{m.group(1)}_src={_snapshot(m.group(2))}"),
)
_JSON = re.compile(r"--json[= ](\S+)")


def _snapshot(path: str) -> str:
    """`$SNAPSHOTS/<owner>+<name>[/sub/dir]` for a path inside an unpacked snapshot."""
    parts = path.rstrip("/").split("/")
    named = [i for i, part in enumerate(parts) if "+" in part]
    if not named:
        return f"$SNAPSHOTS/{parts[-1]}"
    return "$SNAPSHOTS/" + "/".join(parts[named[-1]:])


def by_role(command: str, record_path: str | None = None) -> str:
    """`command` with machine paths replaced by their roles (idempotent); `--json` names
    `record_path` (relative to the repository) when the record was moved there."""
    for pattern, replace in _ROLES:
        command = pattern.sub(replace, command)
    if record_path is None:
        return _JSON.sub(lambda m: f"--json bench/results/{os.path.basename(m.group(1))}",
                         command)
    where = os.path.relpath(os.path.abspath(record_path), REPO)
    return _JSON.sub(lambda m: f"--json {where}", command)


def load_record(path: str) -> dict[str, Any]:
    """A benchmark record read from `path`, its command named by role."""
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    record["command"] = by_role(record["command"], path)
    return record


def command_line(script: str) -> str:
    """This process's command line as a record stores it: `python <script> <args>`, by role."""
    return by_role(" ".join(["python", script, *sys.argv[1:]]))
