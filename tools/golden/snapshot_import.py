"""Import an authors' snapshot whose top-level names (`utils`, `models`, `objectives`, ...) other
snapshots of the same fixture run also use (developer tool: needs torch via its callers).

`isolated(path, stubs)` forgets every cached module whose top-level name is a module or package
at the snapshot's root, puts the snapshot first on `sys.path` and installs `stubs` (modules the
training step never uses), so the next imports read this snapshot, unmodified.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys

from tools.golden.torch_common import stub_modules


def top_level_names(path: str) -> set[str]:
    """Module and package names at the root of `path`."""
    out = set()
    for entry in os.listdir(path):
        full = os.path.join(path, entry)
        if entry.endswith(".py"):
            out.add(entry[:-3])
        elif os.path.isdir(full) and not entry.startswith((".", "__")):
            out.add(entry)
    return out


def isolated(path: str, stubs: dict[str, dict]) -> None:
    """Make `path` the source of its top-level names and install `stubs` (see module doc)."""
    path = os.path.abspath(path)
    names = top_level_names(path) | {s.split(".")[0] for s in stubs}
    for mod in list(sys.modules):
        if mod.split(".")[0] in names:
            del sys.modules[mod]
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
    stub_modules(stubs)
    for stub in stubs:  # torch's optimizer import probes installed modules' specs
        if getattr(sys.modules[stub], "__spec__", None) is None:
            sys.modules[stub].__spec__ = importlib.machinery.ModuleSpec(stub, None)
