"""Atomic file writes: a temporary file beside the target, fsync, rename.

Every file of a run, an evaluation and the reproduction harness goes through `atomic_path`,
so a crash or a full disk never leaves a half-written file under its final name, and a write
refused for lack of space surfaces as one `DiskFullError` naming the file the user knows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from typing import Iterator

#: errno values of a write refused for lack of space (a full disk, an exceeded quota).
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
#: how TensorFlow's file layer words ENOSPC: "<path>; No space left on device".
_TF_NO_SPACE = re.compile(r"(\S+); " + re.escape(os.strerror(errno.ENOSPC)))


class DiskFullError(OSError):
    """A write that failed for lack of space; `path` is the file the user knows (the final
    name, never the temporary one). Whatever it replaces is left intact."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(errno.ENOSPC, reason, path)
        self.path = path

    def __str__(self) -> str:
        return (f"cannot write {self.path}: {self.strerror}; what was written before is "
                "intact: free some space and rerun the same command (it resumes)")


def disk_full(error: BaseException, path: str | None = None) -> DiskFullError | None:
    """`error` as a DiskFullError when it is a write refused for lack of space (an OSError
    with ENOSPC/EDQUOT, or a TensorFlow error whose message says so), else None; `path`
    overrides the file named in the error."""
    if isinstance(error, DiskFullError):
        return error
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        return DiskFullError(path or error.filename or "?", os.strerror(error.errno))
    found = _TF_NO_SPACE.search(str(error))
    if found and type(error).__module__.startswith("tensorflow"):
        return DiskFullError(path or found.group(1), os.strerror(errno.ENOSPC))
    return None


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path next to `path` (same suffix); on success move it onto `path`.

    Every file of a run, an evaluation and the reproduction harness is written through here:
    a failure leaves `path` as it was, and a full disk raises DiskFullError naming `path`.
    """
    directory, name = os.path.split(os.path.abspath(path))
    stem, suffix = os.path.splitext(name)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=directory)
    except OSError as error:
        raise disk_full(error, path) or error
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as error:
        full = disk_full(error, path)
        if full is None:
            raise
        raise full from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file + fsync + rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (temporary file + fsync + rename)."""
    atomic_write_bytes(path, text.encode("utf-8"))
