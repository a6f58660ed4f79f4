"""Import TensorFlow without the start-up lines its C++ layer prints on a CPU-only host.

TensorFlow's libraries write `Could not find cuda drivers`, `failed call to cuInit` and
`All log messages before absl::InitializeLog() ...` straight to file descriptor 2 while they
load and enumerate devices, before `TF_CPP_MIN_LOG_LEVEL` or absl's logging settings apply. A
command-line user on a CPU host would read them as errors. `import_tensorflow()` captures fd 2
during the import and device enumeration and passes through every line that is not one of
those known start-up notices, so real errors still reach the terminal.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from types import ModuleType

#: start-up notices of a CPU-only host; anything else TensorFlow writes is passed through.
CPU_HOST_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|cudart_stub\.cc.*Could not find cuda drivers"
    r"|cuda_platform\.cc.*failed call to cuInit"
    r"|cuda_executor\.cc.*(kernel driver|CUDA_ERROR)"
    r"|oneDNN custom operations are on"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|rebuild TensorFlow with the appropriate compiler flags"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|TF-TRT Warning: Could not find TensorRT")


def import_tensorflow() -> ModuleType:
    """Import `tensorflow` and list its devices with the CPU-host notices filtered out of fd 2.

    Listing physical devices does not initialise the runtime, so logical-device configuration
    (e.g. `--num_cpu_replicas`) and strategies can still be set up afterwards.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            passed = [line for line in text.splitlines(keepends=True)
                      if not CPU_HOST_NOTICES.search(line)]
            sys.stderr.write("".join(passed))
            sys.stderr.flush()
    return tf
