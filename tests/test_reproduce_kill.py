"""The reproduction harness under kill -9: rerunning finishes with an uninterrupted run's JSON.

A two-run suite (tiny MVAE configs on a features file, named `digits_*` so `--suite=digits`
picks them up from the test's own `configs/`) is run by `python -m mmali_tf.reproduce`,
killed with SIGKILL three times (while training the first run, while evaluating it, while
training the second) and rerun each time; then the same suite runs uninterrupted elsewhere.
The two suite JSONs must be equal byte for byte once the fields that measure the clock
(dates, wall times, ms/step, load average) are blanked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from test_reproduce import REPO, _features_config

HARNESS = ["-m", "mmali_tf.reproduce", "--suite=digits", "--runs_root=runs", "--out_dir=out",
           "--protocol=reference", "--num_samples=40"]
TIMEOUT = 900
#: what a rerun cannot reproduce: when it ran, how long things took, how loaded the machine was.
CLOCK_FIELDS = ("created", "wall_s", "load_avg", "train_load", "train_wall_s", "ms_per_step",
                "eval_wall_s")


def _suite_dir(root: str, config: str) -> str:
    os.makedirs(os.path.join(root, "configs"))
    text = open(config, encoding="utf-8").read()
    for name, extra in (("digits_a", ""), ("digits_b", "--latent_dim=3\n")):
        with open(os.path.join(root, "configs", f"{name}.cfg"), "w", encoding="utf-8") as f:
            f.write(text + extra)
    return root


def _start(cwd: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(os.path.join(cwd, "harness.log"), "ab") as log:
        return subprocess.Popen([sys.executable, *HARNESS], cwd=cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _kill_when(proc: subprocess.Popen, path: str) -> None:
    """SIGKILL the harness alone (its running child lives on) once `path` names a started
    child (its log has the command line), a second later."""
    deadline = time.monotonic() + TIMEOUT
    while not (os.path.isfile(path) and "$ " in open(path, encoding="utf-8").read()):
        assert proc.poll() is None, "the harness ended before the kill point"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _clockless(path: str) -> bytes:
    def blank(tree):
        if isinstance(tree, dict):
            return {k: (0 if k in CLOCK_FIELDS else blank(v)) for k, v in tree.items()}
        return [blank(v) for v in tree] if isinstance(tree, list) else tree
    with open(path, encoding="utf-8") as f:
        return (json.dumps(blank(json.load(f)), indent=2, sort_keys=True) + "\n").encode()


def test_killing_the_harness_at_any_point_then_rerunning_gives_the_same_json(tmp_path):
    config = _features_config(tmp_path)
    killed = _suite_dir(str(tmp_path / "killed"), config)
    straight = _suite_dir(str(tmp_path / "straight"), config)
    logs = os.path.join(killed, "runs", "logs")
    started = []
    try:
        for milestone in ("digits_a.train.log", "digits_a.eval.log", "digits_b.train.log"):
            started.append(_start(killed))
            _kill_when(started[-1], os.path.join(logs, milestone))
            assert not os.path.exists(os.path.join(killed, "out", "digits.json"))
        started.append(_start(killed))
        assert started[-1].wait(TIMEOUT) == 0, open(os.path.join(killed, "harness.log")).read()
        started.append(_start(straight))
        assert started[-1].wait(TIMEOUT) == 0, open(os.path.join(straight, "harness.log")).read()
    finally:
        for proc in started:  # the harness and any child it left behind
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    out = os.path.join(killed, "out")
    assert _clockless(os.path.join(out, "digits.json")) == _clockless(
        os.path.join(straight, "out", "digits.json"))
    assert sorted(os.listdir(out)) == ["digits.json", "digits.md", "digits.png"]
    # each run was trained and evaluated exactly once: a rerun skips finished work and
    # waits for the child a killed harness left running instead of starting it again
    for name in ("digits_a.train.log", "digits_a.eval.log", "digits_b.train.log",
                 "digits_b.eval.log"):
        assert open(os.path.join(logs, name), encoding="utf-8").read().count("$ ") == 1, name
