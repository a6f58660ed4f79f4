"""The training CLI end to end: a 2-logical-CPU MirroredStrategy run in a subprocess, flags.txt
replay/resume, incompatible run dirs, NaN stop, user data errors, and a tiny real mmALI run.

CLI subprocesses pay the TensorFlow import, so only the mirrored run (the CPU split must happen
before TF initialises) and the real mmALI run use them; the other cases call `train.main`
in-process after parsing argv exactly like `absl.app.run` does.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver
from PIL import Image

from mmali_tf import cli, run_dir, train
from mmali_tf import flags as flags_lib

from test_run_dir import toys  # noqa: F401  (pytest fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
TOY_DRIVER = ("import sys; sys.path.insert(0, {tests!r}); import test_run_dir; "
              "test_run_dir.install_toys(); from mmali_tf import train; train.run()")
TOY_FLAGS = ["--model=mvae", "--batch_size=8", "--latent_dim=4", "--style_dim=1",
             "--nojit_compile", "--ema_decay=0.99", "--ema_start=0", "--lr=0.001"]


def run_subprocess(args: list[str], timeout: float = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def run_main(*args: str) -> int:
    """Parse argv with the CLI's parser and run `train.main` in-process; returns the exit code."""
    flags_lib.define_train_flags()
    with flagsaver.flagsaver():
        try:
            train.main(cli.parse_flags(["mmali-train", *args]))
            return 0
        except SystemExit as exit_info:
            return int(exit_info.code)
        finally:
            flags.FLAGS.unparse_flags()


def snapshot(root: str) -> dict[str, tuple[float, bytes]]:
    return {p: (os.path.getmtime(p), open(p, "rb").read())
            for p in glob.glob(os.path.join(root, "**"), recursive=True) if os.path.isfile(p)}


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cli") / "run")
    proc = run_subprocess(["-c", TOY_DRIVER.format(tests=TESTS), *TOY_FLAGS,
                           "--strategy=mirrored", "--num_cpu_replicas=2", "--max_steps=4",
                           "--checkpoint_every=2", "--log_every=2", "--sample_every=4",
                           f"--run_dir={root}"])
    return root, proc


def test_mirrored_two_cpu_run_writes_the_run_dir(mirrored_run):
    root, proc = mirrored_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Strategy: MirroredStrategy with 2 replica(s)" in proc.stdout
    assert f"Trained 4 steps (0 -> 4)" in proc.stdout
    assert f"Outputs in {root}" in proc.stdout and "ms/step" in proc.stdout
    assert "Traceback" not in proc.stderr
    files = sorted(os.path.relpath(p, root) for p in snapshot(root))
    assert [f for f in files if os.path.basename(f).startswith(".")] == []  # no temp files
    for expected in ("flags.txt", "run.json", "model.keras", "train_log.csv",
                     "checkpoints/checkpoint", "checkpoints/ckpt-2.index",
                     "checkpoints/ckpt-4.index", "samples/step_0000004_hand.png",
                     "samples/step_0000004_print.png"):
        assert expected in files
    assert any(f.startswith("tensorboard/events.out.tfevents") for f in files)
    flags_txt = open(os.path.join(root, "flags.txt")).read().splitlines()
    assert "--strategy=mirrored" in flags_txt and "--num_cpu_replicas=2" in flags_txt
    assert all(line.startswith("--") for line in flags_txt)
    rows = open(os.path.join(root, "train_log.csv")).read().splitlines()
    assert rows[0].startswith("step,loss") and [r.split(",")[0] for r in rows[1:]] == ["2", "4"]
    image = Image.open(os.path.join(root, "samples/step_0000004_print.png"))
    assert image.mode == "RGB" and image.size[0] > 16 * 4
    assert zipfile.is_zipfile(os.path.join(root, "model.keras"))


def test_flagfile_replay_resumes_under_another_strategy(mirrored_run, toys, capsys):
    root, proc = mirrored_run
    assert proc.returncode == 0
    code = run_main(f"--flagfile={root}/flags.txt", "--strategy=default",
                    "--num_cpu_replicas=0", "--max_steps=6")
    out = capsys.readouterr().out
    assert code == 0
    assert f"Resuming from step 4 ({os.path.join(root, 'checkpoints', 'ckpt-4')})" in out
    assert "Trained 2 steps (4 -> 6)" in out
    assert "--max_steps=6" in open(os.path.join(root, "flags.txt")).read().splitlines()
    assert run_dir.load_trained(root).step == 6


def test_incompatible_run_dir_exits_2_and_leaves_files(mirrored_run, toys, capsys):
    root, _ = mirrored_run
    before = snapshot(root)
    code = run_main(f"--flagfile={root}/flags.txt", "--strategy=default",
                    "--num_cpu_replicas=0", "--latent_dim=6", "--model=jmvae")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: --run_dir={root} holds a run with different "
                             "--model=mvae (now jmvae), --latent_dim=4 (now 6)")
    assert snapshot(root) == before


def test_nan_stops_with_exit_1_and_keeps_last_good_checkpoint(tmp_path, toys, capsys):
    root = str(tmp_path / "run")
    code = run_main(*TOY_FLAGS, "--model=jmvae", "--max_steps=8", "--checkpoint_every=2",
                    "--log_every=2", "--sample_every=0", f"--run_dir={root}")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1] == (f"error: training stopped: loss 'loss' became nan at step 5; no "
                       f"checkpoint is saved after it, the last good checkpoint "
                       f"{os.path.join(root, 'checkpoints', 'ckpt-4')} is kept")
    checkpoints = os.path.join(root, "checkpoints")
    assert sorted(f for f in os.listdir(checkpoints) if f.endswith(".index")) == [
        "ckpt-2.index", "ckpt-4.index"]
    assert not os.path.exists(os.path.join(root, "model.keras"))
    trained = run_dir.load_trained(root)  # the kept checkpoint still loads, with finite weights
    assert trained.step == 4
    assert all(np.all(np.isfinite(v.numpy())) for v in trained.model.variables
               if v.dtype == "float32")


def test_missing_data_files_exit_2_with_one_line(tmp_path, capsys):
    code = run_main("--dataset=mnist_svhn", f"--data_dir={tmp_path / 'nothing'}",
                    f"--cache_dir={tmp_path / 'cache'}", f"--run_dir={tmp_path / 'run'}",
                    "--nojit_compile")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: ") and "not found" in err[0]
    assert not os.path.exists(tmp_path / "run" / "flags.txt")


@pytest.mark.slow
def test_real_mmali_on_digits_end_to_end(tmp_path, capsys):
    """The real model and dataset through the CLI path (in-process: the subprocess wiring is
    covered by the mirrored run above, and this saves a second TensorFlow import). EMA and
    spectral norm are off only to keep graph tracing short on a loaded 2-core machine."""
    root = str(tmp_path / "run")
    code = run_main("--model=mmali", "--dataset=digits", "--digits_print_per_class=20",
                    "--data_multiplication=2", "--batch_size=8", "--max_steps=2",
                    "--checkpoint_every=1", "--log_every=2", "--sample_every=2",
                    "--nojit_compile", "--ema_decay=0", "--nospectral_norm",
                    f"--cache_dir={tmp_path / 'cache'}", f"--run_dir={root}")
    out = capsys.readouterr().out
    assert code == 0
    assert "Trained 2 steps (0 -> 2)" in out
    for expected in ("flags.txt", "run.json", "model.keras", "train_log.csv",
                     "checkpoints/ckpt-1.index", "checkpoints/ckpt-2.index",
                     "samples/step_0000002_hand.png", "samples/step_0000002_print.png"):
        assert os.path.exists(os.path.join(root, expected)), expected
    header = open(os.path.join(root, "train_log.csv")).readline().strip().split(",")
    assert {"step", "d_loss", "g_loss", "ms_per_step"} <= set(header)
    trained = run_dir.load_trained(root)
    assert trained.step == 2 and trained.dataset_name == "digits"
    assert trained.model.modalities == ("hand", "print")
    keys = [name for name, _ in tf.train.list_variables(trained.checkpoint_path)]
    assert {"d_optimizer", "g_optimizer"} <= {k.split("/")[1] for k in keys
                                              if k.startswith("optimizers/")}
