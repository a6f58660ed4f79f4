"""A local multi-worker training job for tests: real `mmali_tf.train` worker processes on
loopback ports chosen at run time, bounded in time, always reaped.

Each worker runs in its own process group (so a kill reaches anything it started), writes
its output to `<log_dir>/worker_<i>.log`, and gets `TF_CONFIG` naming every worker at
`127.0.0.1:<port>`; all traffic goes over loopback. (TensorFlow's gRPC server itself listens
on the wildcard address of that port, `*:<port>`, and has no option to bind one interface;
the ports are ephemeral and live only while a test runs.) `data.load` is routed to a tiny in-memory paired dataset (two 6x6 grey
MLP modalities), so a worker pays the TensorFlow import and graph tracing, not data or big
convolutions.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
DRIVER = ("import sys; sys.path.insert(0, {tests!r}); import cluster; cluster.install_toy_data(); "
          "cluster.install_variable_dump(); from mmali_tf import train; train.run()")
#: environment variable: directory where each worker leaves `worker_<i>.npz`, its model
#: variables after training (the non-chief's own files are removed with its scratch dir).
DUMP_ENV = "MMALI_TEST_VARIABLE_DUMP"


def toy_dataset(name: str = "toy", config=None):
    """Two 6x6 grey modalities on the MLP networks, 40 training pairs (deterministic)."""
    from conftest import make_toy_dataset
    from mmali_tf.data.specs import ModalitySpec

    specs = (ModalitySpec("left", (6, 6, 1), "image", "mnist_mlp"),
             ModalitySpec("right", (6, 6, 1), "image", "mnist_mlp"))
    return make_toy_dataset(specs=specs, n_per_class=2, dm=2)


def install_toy_data() -> None:
    """Route every `--dataset` to `toy_dataset` (in a worker process, before training)."""
    import mmali_tf.data

    mmali_tf.data.load = toy_dataset


def install_variable_dump() -> None:
    """After `train.fit`, save the model variables to `$MMALI_TEST_VARIABLE_DUMP/worker_<i>.npz`
    (i from TF_CONFIG), so a test can compare the workers' states."""
    import numpy as np

    from mmali_tf import train

    fit = train.fit

    def fit_and_dump(session, verbose="auto"):
        result = fit(session, verbose)
        index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
        path = os.path.join(os.environ[DUMP_ENV], f"worker_{index}.npz")
        np.savez(path, *[v.numpy() for v in session.model.variables])
        return result

    train.fit = fit_and_dump


def load_dump(directory: str, index: int) -> list:
    """The variables worker `index` dumped (in `model.variables` order)."""
    import numpy as np

    with np.load(os.path.join(directory, f"worker_{index}.npz")) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: Sequence[int], index: int) -> str:
    """TF_CONFIG of worker `index` in a cluster of loopback workers (worker 0 is the chief)."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


class Cluster:
    """Start `workers` training processes with the same flags; a context manager that kills
    (SIGKILL to each process group) and reaps every process still running on exit."""

    def __init__(self, flags: Sequence[str], log_dir: str, workers: int = 2) -> None:
        self.flags, self.log_dir, self.workers = list(flags), log_dir, workers
        self.procs: list[subprocess.Popen] = []
        self.logs: list[str] = []
        self.ports: list[int] = []
        #: where workers dump their variables and create scratch dirs (TMPDIR)
        self.dump_dir = os.path.join(log_dir, "variables")
        self.scratch_dir = os.path.join(log_dir, "tmp")

    def start(self) -> "Cluster":
        """Start (or, after `wait`/`kill`, restart) every worker on fresh ports."""
        self.reap()
        self.ports = free_ports(self.workers)
        for d in (self.log_dir, self.dump_dir, self.scratch_dir):
            os.makedirs(d, exist_ok=True)
        self.procs, self.logs = [], []
        for i in range(self.workers):
            env = {**os.environ, "TF_CONFIG": tf_config(self.ports, i),
                   "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
                   "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   DUMP_ENV: self.dump_dir, "TMPDIR": self.scratch_dir}
            log = os.path.join(self.log_dir, f"worker_{i}.log")
            with open(log, "ab") as out:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-c", DRIVER.format(tests=TESTS), *self.flags], cwd=ROOT,
                    env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
            self.logs.append(log)
        return self

    def wait(self, timeout: float) -> list[int]:
        """Exit codes of all workers; kills everything and raises TimeoutError past
        `timeout` seconds."""
        deadline = time.monotonic() + timeout
        try:
            return [p.wait(timeout=max(0.1, deadline - time.monotonic())) for p in self.procs]
        except subprocess.TimeoutExpired:
            self.reap()
            raise TimeoutError(f"workers still running after {timeout} s:\n{self.tail()}")

    def kill(self, index: int) -> None:
        """SIGKILL worker `index` (its whole process group), as a preemption does."""
        _kill_group(self.procs[index])

    def reap(self) -> None:
        """SIGKILL every worker still running and collect its exit status."""
        for proc in self.procs:
            _kill_group(proc)

    def tail(self, chars: int = 3000) -> str:
        """The end of every worker's log (for assertion messages)."""
        parts = []
        for log in self.logs:
            with open(log, encoding="utf-8", errors="replace") as f:
                parts.append(f"--- {os.path.basename(log)}\n{f.read()[-chars:]}")
        return "\n".join(parts)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc_info) -> None:
        self.reap()


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
