"""A full disk for tests: a real tmpfs, or ENOSPC injected where one cannot be mounted.

`FullDisk(directory)` mounts a tmpfs of `size` bytes at `directory` (the tests run as root in
CI and in the development sandbox) and `fill()` then leaves `free` bytes, so every write the
code makes there, ours and TensorFlow's, meets the kernel's real ENOSPC. Where mounting is
refused (no CAP_SYS_ADMIN, or MMALI_TEST_NO_MOUNT=1), `fill()` instead injects ENOSPC at the
layers the code writes through: `mmali_tf.atomic`'s temporary files, TensorFlow checkpoint
writes (`tf.train.Checkpoint._write`), TensorBoard flushes and `onnx.save` (bundles), with the messages TensorFlow
gives for a real full disk ("<path>; No space left on device"). Injection covers this
process and, through the `ENV` variable that `child_env()` sets and `install_from_env()`
reads, the training processes a test starts.
"""

from __future__ import annotations

import errno
import os
import subprocess

ENV = "MMALI_TEST_ENOSPC_UNDER"
_NO_SPACE = os.strerror(errno.ENOSPC)


class FullDisk:
    """A directory whose disk becomes full on `fill()` (see the module docstring)."""

    def __init__(self, directory: str, size: int = 32 << 20, free: int = 0,
                 target: str | None = None) -> None:
        self.directory, self.size, self.free = directory, size, free
        #: with injection, writes to paths starting with `target` fail (default: directory)
        self.target = target or directory
        self.mounted = False
        self.injected = False
        os.makedirs(directory, exist_ok=True)
        if os.environ.get("MMALI_TEST_NO_MOUNT") != "1":
            proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                   directory], capture_output=True, check=False)
            self.mounted = proc.returncode == 0

    def fill(self) -> None:
        """Leave `free` bytes on the tmpfs (or start injecting ENOSPC under `target`)."""
        if not self.mounted:
            self.injected = True
            os.environ[ENV] = self.target
            install_from_env()
            return
        stat = os.statvfs(self.directory)
        spare = stat.f_bavail * stat.f_frsize - self.free
        with open(os.path.join(self.directory, ".filler"), "wb") as f:
            block = b"\0" * (1 << 16)
            while spare > 0:
                spare -= f.write(block[:min(len(block), spare)])
                f.flush()

    def empty(self) -> None:
        """Free the space again (or stop injecting)."""
        if self.injected:
            os.environ.pop(ENV, None)
            self.injected = False
        elif self.mounted and os.path.exists(os.path.join(self.directory, ".filler")):
            os.remove(os.path.join(self.directory, ".filler"))

    def close(self) -> None:
        """Stop injecting and unmount (the tmpfs contents go with it)."""
        self.empty()
        if self.mounted:
            subprocess.run(["umount", "-l", self.directory], check=False)
            self.mounted = False

    def __enter__(self) -> "FullDisk":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _under(path: str) -> bool:
    target = os.environ.get(ENV)
    return bool(target) and os.path.abspath(str(path)).startswith(os.path.abspath(target))


def _no_space_os(path: str) -> OSError:
    return OSError(errno.ENOSPC, _NO_SPACE, path)


_installed = False


def install_from_env() -> None:
    """Inject ENOSPC for writes under $MMALI_TEST_ENOSPC_UNDER while it is set (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    import tensorflow as tf
    from tensorflow.python.ops import summary_ops_v2

    from mmali_tf import atomic

    mkstemp = atomic.tempfile.mkstemp

    def mkstemp_full(suffix=None, prefix=None, dir=None, text=False):
        final = os.path.join(dir or ".", (prefix or ".")[1:-1] + (suffix or "").replace(
            ".tmp", "", 1))
        if _under(final):
            raise _no_space_os(os.path.join(dir or ".", f"{prefix}XXXX{suffix}"))
        return mkstemp(suffix=suffix, prefix=prefix, dir=dir, text=text)

    write = tf.train.Checkpoint._write

    def write_full(self, file_prefix, options=None):
        if _under(file_prefix):
            raise tf.errors.ResourceExhaustedError(None, None, (
                f"{file_prefix}_temp/part-00000-of-00001.data-00000-of-00001.tempstate0; "
                f"{_NO_SPACE} [Op:SaveV2]"))
        return write(self, file_prefix, options=options)

    flush = summary_ops_v2._ResourceSummaryWriter.flush

    def flush_full(self):
        logdir = getattr(self, "_mmali_logdir", "")
        if _under(logdir):
            raise tf.errors.ResourceExhaustedError(None, None, (
                f"{logdir}/events.out.tfevents.0; {_NO_SPACE}"))
        return flush(self)

    create = tf.summary.create_file_writer

    def create_recording(logdir, *args, **kwargs):
        writer = create(logdir, *args, **kwargs)
        writer._mmali_logdir = str(logdir)
        return writer

    import onnx

    save = onnx.save

    def save_full(proto, f, *args, **kwargs):  # ONNX graphs of a bundle
        if isinstance(f, (str, os.PathLike)) and _under(f):
            raise _no_space_os(os.fspath(f))
        return save(proto, f, *args, **kwargs)

    onnx.save = save_full
    atomic.tempfile.mkstemp = mkstemp_full
    tf.train.Checkpoint._write = write_full
    summary_ops_v2._ResourceSummaryWriter.flush = flush_full
    tf.summary.create_file_writer = create_recording
