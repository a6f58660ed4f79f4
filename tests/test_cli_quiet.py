"""The CLIs start quiet on a CPU host: TensorFlow's start-up notices are filtered, errors are not."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT
from mmali_tf.cli import quiet_tf

# lines TensorFlow 2.21 printed on this project's CPU hosts before the filter existed
CPU_HOST_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796607728.921288   19893 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "E0000 00:00:1796607742.308205   19893 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]


def test_the_filter_drops_cpu_host_notices_and_keeps_other_lines():
    assert all(quiet_tf.CPU_HOST_NOTICES.search(line) for line in CPU_HOST_LINES)
    kept = ["E0000 00:00:1.0 1 op_kernel.cc:1] OOM when allocating tensor",
            "Traceback (most recent call last):", "error: --batch_size=-3: must be integer >= 2"]
    assert not any(quiet_tf.CPU_HOST_NOTICES.search(line) for line in kept)


def test_importing_tensorflow_through_the_cli_prints_no_cuda_lines():
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    script = ("import os, sys\n"
              "from mmali_tf.cli import quiet_tf\n"
              "tf = quiet_tf.import_tensorflow()\n"
              "print(tf.__version__)\n"
              "os.write(2, b'after import: fd 2 restored\\n')\n")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith("2."), proc.stdout
    assert "cuInit" not in proc.stderr and "cudart_stub" not in proc.stderr, proc.stderr
    assert "InitializeLog" not in proc.stderr, proc.stderr
    assert "after import: fd 2 restored" in proc.stderr
