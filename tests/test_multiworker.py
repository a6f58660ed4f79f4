"""`--strategy=multi_worker` with real worker processes on loopback ports (tests/cluster.py).

Two-worker MultiWorkerMirroredStrategy jobs on a tiny in-memory dataset:
* MMVAE (DReG, K=2) trains; every worker ends with identical variables; the chief's
  checkpoints are the run's and one process (`--strategy=default`) loads and resumes them;
* one step with 2 workers at batch B/2 each equals one step of one worker at batch B on the
  same rows: same weights, same logged (batch-summed) loss;
* preemption: SIGKILL worker 1 mid-run, the chief stops by itself, the same command resumes
  from the chief's last checkpoint and ends with the weights of the uninterrupted run;
* single process (`--strategy=default`): SIGKILL + the same command == uninterrupted, bit
  for bit;
* a single-process checkpoint resumes on two workers and continues the same training;
* mmALI trains; both workers end with identical variables (generators, critics, spectral-norm
  vectors, EMA, RNG state). Its negatives are in-batch shuffles of each replica's rows, so
  two workers at B/2 are not one worker at B (docs/training.md, "Several machines").
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf
from absl import flags as absl_flags

import mmali_tf.data
from mmali_tf import cli, run_dir, train
from mmali_tf import flags as flags_lib

from cluster import Cluster, load_dump, toy_dataset

#: Adam's first update is lr * g / (|g| + eps): with the default eps it is ~lr * sign(g) and
#: blind to a wrongly scaled loss; eps = 1 makes it ~linear in the gradient.
VAE_FLAGS = ["--model=mmvae", "--dataset=digits", "--strategy=multi_worker", "--nojit_compile",
             "--batch_size=8", "--latent_dim=4", "--style_dim=0",
             "--num_importance_samples=2", "--adam_epsilon=1.0", "--lr=0.01",
             "--sample_every=0", "--keep_checkpoints=30"]
MAX_STEPS = 24
EVERY = ["--checkpoint_every=1", "--log_every=4"]
JOB_TIMEOUT = 300


def _job_flags(root: str, *extra: str) -> list[str]:
    return [*VAE_FLAGS, f"--max_steps={MAX_STEPS}", *EVERY, f"--run_dir={root}", *extra]


def _config(argv: list[str]) -> dict:
    """The training config the CLI resolves from `argv`."""
    flags_lib.define_train_flags()
    try:
        cli.parse_flags(["mmali-train", *argv])
        return train.config_from_flags()
    finally:
        absl_flags.FLAGS.unparse_flags()


def _checkpoint_variables(root: str, step: int | None = None) -> list[np.ndarray]:
    return [v.numpy() for v in run_dir.load_trained(root, step).model.variables]


def _assert_same(actual, expected, **tol) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, **tol)


@pytest.fixture(scope="module")
def vae_job(tmp_path_factory):
    """An uninterrupted 2-worker MMVAE run of MAX_STEPS steps: (run dir, cluster)."""
    base = tmp_path_factory.mktemp("vae_job")
    with Cluster(_job_flags(str(base / "run")), str(base)) as job:
        codes = job.start().wait(JOB_TIMEOUT)
        assert codes == [0, 0], job.tail()
    return str(base / "run"), job


@pytest.fixture
def toy_data(monkeypatch):
    monkeypatch.setattr(mmali_tf.data, "load", toy_dataset)


def test_two_workers_train_a_vae_and_only_the_chief_writes(vae_job, toy_data, tmp_path):
    root, job = vae_job
    run = run_dir.RunDir(root)
    kept = sorted(int(p.rsplit("-", 1)[1]) for p in
                  tf.train.get_checkpoint_state(run.checkpoints).all_model_checkpoint_paths)
    assert kept == list(range(1, MAX_STEPS + 1))
    assert sorted(os.listdir(root)) == ["checkpoints", "flags.txt", "model.keras", "run.json",
                                        "samples", "tensorboard", "train_log.csv"]
    assert os.listdir(job.scratch_dir) == []          # the non-chief removed its scratch dir
    assert "--strategy=multi_worker" in open(run.flags_txt).read().splitlines()
    steps = [int(line.split(",")[0]) for line in open(run.train_log).read().splitlines()[1:]]
    assert steps == list(range(4, MAX_STEPS + 1, 4))
    trained = run_dir.load_trained(root)
    assert trained.step == MAX_STEPS
    chief, other = load_dump(job.dump_dir, 0), load_dump(job.dump_dir, 1)
    _assert_same(other, chief, rtol=0, atol=0)
    _assert_same([v.numpy() for v in trained.model.variables], chief, rtol=0, atol=0)
    # one process resumes the multi-worker run directory (the strategy is not checkpointed)
    copy = str(tmp_path / "copy")
    shutil.copytree(root, copy)
    resumed = train.train(_config(_job_flags(copy, "--strategy=default",
                                             f"--max_steps={MAX_STEPS + 2}")), verbose=0)
    assert (resumed.start_step, resumed.final_step) == (MAX_STEPS, MAX_STEPS + 2)


def test_a_single_process_run_resumes_on_two_workers(vae_job, toy_data, tmp_path):
    """README's claim, the other way round: a `--strategy=default` checkpoint resumes under
    `--strategy=multi_worker` and continues the same training (equal, to float noise, to the
    run that was multi-worker from the start)."""
    root, _ = vae_job
    single = str(tmp_path / "single")
    first = train.train(_config(_job_flags(single, "--strategy=default", "--max_steps=4")),
                        verbose=0)
    assert first.final_step == 4
    with Cluster(_job_flags(single, "--max_steps=8"), str(tmp_path)) as job:
        assert job.start().wait(JOB_TIMEOUT) == [0, 0], job.tail()
        assert "Resuming from step 4 " in open(job.logs[0], encoding="utf-8").read()
    _assert_same(load_dump(job.dump_dir, 1), load_dump(job.dump_dir, 0), rtol=0, atol=0)
    assert run_dir.load_trained(single).step == 8
    _assert_same(_checkpoint_variables(single, 8), _checkpoint_variables(root, 8),
                 rtol=1e-5, atol=1e-5)


def _log_row(root: str, step: int) -> dict[str, float]:
    with open(run_dir.RunDir(root).train_log, encoding="utf-8") as f:
        lines = f.read().splitlines()
    rows = [dict(zip(lines[0].split(","), map(float, line.split(",")))) for line in lines[1:]]
    return next(r for r in rows if int(r["step"]) == step)


def test_two_workers_at_half_batch_equal_one_worker_at_full_batch(vae_job, toy_data, tmp_path):
    """Data rows and noise are split the same way (replica r: rows [r B/2, (r+1) B/2) and the
    matching slice of the global draw), the batch-summed MMVAE loss is not rescaled and
    gradients are summed over workers: one step of each is the same step."""
    root, _ = vae_job
    single = _config(_job_flags(str(tmp_path / "single"), "--strategy=default",
                                "--max_steps=4"))
    assert train.train(single, verbose=0).final_step == 4
    for step, tol in ((1, 1e-6), (4, 1e-5)):
        _assert_same(_checkpoint_variables(single["run_dir"], step),
                     _checkpoint_variables(root, step), rtol=tol, atol=tol)
    # the logged loss is the global batch's (sum over B rows), not a replica's B/2 rows
    one, two = _log_row(single["run_dir"], 4), _log_row(root, 4)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    np.testing.assert_allclose(two["bound"], one["bound"], rtol=1e-5)


def _latest_step(directory: str) -> int:
    """Step of the newest complete checkpoint in `directory` (0: none)."""
    latest = tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def test_sigkill_of_a_worker_then_the_same_command_resumes_to_the_same_weights(vae_job,
                                                                                tmp_path):
    root, baseline = vae_job
    preempted = str(tmp_path / "run")
    kill_after = MAX_STEPS // 3
    with Cluster(_job_flags(preempted), str(tmp_path)) as job:
        job.start()
        checkpoints = run_dir.RunDir(preempted).checkpoints
        _kill_when_checkpointed(job, 1, checkpoints, kill_after)
        # the surviving worker's collectives fail (peer gone): it exits by itself, non-zero
        assert job.procs[0].wait(timeout=120) != 0, job.tail()
        killed_at = _latest_step(checkpoints)
        assert kill_after <= killed_at < MAX_STEPS, "the job ended before the kill"
        assert job.start().wait(JOB_TIMEOUT) == [0, 0], job.tail()
        log = open(job.logs[0], encoding="utf-8").read()
    resumed = int(log.rsplit("Resuming from step ", 1)[1].split()[0])
    assert resumed == killed_at
    assert _latest_step(checkpoints) == MAX_STEPS
    _assert_same(_checkpoint_variables(preempted), _checkpoint_variables(root), rtol=0, atol=0)
    _assert_same(load_dump(job.dump_dir, 1), load_dump(baseline.dump_dir, 1), rtol=0, atol=0)


def _kill_when_checkpointed(job: Cluster, index: int, checkpoints: str, step: int) -> int:
    """SIGKILL worker `index` once `checkpoints` holds step >= `step`; returns that step."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while _latest_step(checkpoints) < step:
        assert job.procs[0].poll() is None and time.monotonic() < deadline, job.tail()
        time.sleep(0.02)
    job.kill(index)
    return _latest_step(checkpoints)


def test_single_process_sigkill_then_resume_is_bit_identical(toy_data, tmp_path):
    argv = _job_flags(str(tmp_path / "killed"), "--strategy=default")
    with Cluster(argv, str(tmp_path), workers=1) as job:
        job.start()
        killed_at = _kill_when_checkpointed(job, 0, str(tmp_path / "killed" / "checkpoints"),
                                            MAX_STEPS // 3)
        assert killed_at < MAX_STEPS, "the run ended before the kill"
        assert job.start().wait(JOB_TIMEOUT) == [0], job.tail()
        assert f"Resuming from step {killed_at} " in open(job.logs[0]).read()
    straight = _config(_job_flags(str(tmp_path / "straight"), "--strategy=default"))
    train.train(straight, verbose=0)
    _assert_same(_checkpoint_variables(str(tmp_path / "killed")),
                 _checkpoint_variables(straight["run_dir"]), rtol=0, atol=0)


def test_two_workers_train_mmali_with_identical_state_on_both(tmp_path):
    root = str(tmp_path / "run")
    flags = ["--model=mmali", "--dataset=digits", "--strategy=multi_worker", "--jit_compile",
             "--batch_size=8", "--latent_dim=4", "--style_dim=2", "--ema_decay=0.9",
             "--ema_start=0", "--max_steps=2", "--checkpoint_every=1", "--log_every=1",
             "--sample_every=2", f"--run_dir={root}"]
    with Cluster(flags, str(tmp_path)) as job:
        assert job.start().wait(JOB_TIMEOUT) == [0, 0], job.tail()
    assert "note: training without XLA" in open(job.logs[0]).read()   # CPU collectives
    chief, other = load_dump(job.dump_dir, 0), load_dump(job.dump_dir, 1)
    _assert_same(other, chief, rtol=0, atol=0)
    trained = run_dir.load_trained(root)
    assert trained.step == 2 and trained.model.ema is not None
    _assert_same([v.numpy() for v in trained.model.variables], chief, rtol=0, atol=0)
    assert sorted(os.listdir(run_dir.RunDir(root).samples)) == [
        "step_0000002_left.png", "step_0000002_right.png"]
    names = open(run_dir.RunDir(root).train_log).readline().strip().split(",")
    assert {"d_loss", "g_loss", "d_joint", "ms_per_step"} <= set(names)


def test_a_damaged_newest_chief_checkpoint_makes_every_worker_fall_back_alike(vae_job,
                                                                             tmp_path):
    """Cut the chief's newest checkpoint to half and restart the job: both workers resume
    from the same older checkpoint (the chief sets the bad one aside), and the job ends with
    the uninterrupted job's weights, bit for bit."""
    root, baseline = vae_job
    copy = str(tmp_path / "run")
    shutil.copytree(root, copy)
    checkpoints = run_dir.RunDir(copy).checkpoints
    data = os.path.join(checkpoints, f"ckpt-{MAX_STEPS}.data-00000-of-00001")
    os.truncate(data, os.path.getsize(data) // 2)
    with Cluster(_job_flags(copy), str(tmp_path)) as job:
        assert job.start().wait(JOB_TIMEOUT) == [0, 0], job.tail()
        logs = [open(log, encoding="utf-8").read() for log in job.logs]
    older = os.path.join(checkpoints, f"ckpt-{MAX_STEPS - 1}")
    for log in logs:
        assert f"Resuming from step {MAX_STEPS - 1} ({older}): newer checkpoint damaged, " \
               f"ckpt-{MAX_STEPS}: " in log
    assert f"moved to {os.path.join(checkpoints, 'corrupt', f'ckpt-{MAX_STEPS}')}" in logs[0]
    assert _latest_step(checkpoints) == MAX_STEPS
    _assert_same(load_dump(job.dump_dir, 1), load_dump(job.dump_dir, 0), rtol=0, atol=0)
    _assert_same(load_dump(job.dump_dir, 0), load_dump(baseline.dump_dir, 0), rtol=0, atol=0)
