"""Import an authors' snapshot whose top-level names (`utils`, `models`, `objectives`, ...) other
snapshots of the same fixture run also use (developer tool: needs torch via its callers).

`isolated(path, stubs)` forgets the cached modules of those names and of the stubs, puts the
snapshot first on `sys.path` (`torch_common.add_to_path`) and installs `stubs` (modules the
training step never uses), so the next imports read this snapshot, unmodified.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys

from tools.golden.torch_common import add_to_path, forget_modules, stub_modules


def isolated(path: str, stubs: dict[str, dict]) -> None:
    """Make `path` the source of its top-level names and install `stubs` (see module doc)."""
    forget_modules({s.split(".")[0] for s in stubs})
    if sys.path and sys.path[0] == os.path.abspath(path):
        sys.path.pop(0)   # re-read the snapshot too: an earlier case may have stubbed parts
    add_to_path(path)
    stub_modules(stubs)
    for stub in stubs:  # torch's optimizer import probes installed modules' specs
        if getattr(sys.modules[stub], "__spec__", None) is None:
            sys.modules[stub].__spec__ = importlib.machinery.ModuleSpec(stub, None)
