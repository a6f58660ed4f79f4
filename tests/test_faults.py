"""Everyday faults a run survives (damaged checkpoints, full disks, damaged run metadata).

Training runs are real: `python -m mmali_tf.train`-equivalent subprocesses (the toy data of
tests/cluster.py with MMVAE on 6x6 MLP networks: checkpoints of about 1 MB, so a disk with a
few hundred KiB left takes the run's small files but not a checkpoint), or `train.main`
in-process on tests/test_run_dir.py's ToyModel where only the CLI's reaction is checked.
Full disks are real tmpfs mounts (tests/full_disk.py; injected ENOSPC where mounting is
refused).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from mmali_tf import checkpoint_check, run_dir
from mmali_tf.run_dir import RunDir

from full_disk import FullDisk
from test_train_cli import TESTS, TOY_FLAGS, run_main, run_subprocess, snapshot
from test_run_dir import toys  # noqa: F401  (pytest fixture)

DRIVER = ("import sys; sys.path.insert(0, {tests!r}); import cluster, full_disk; "
          "cluster.install_toy_data(); full_disk.install_from_env(); "
          "from mmali_tf import train; train.run()")
VAE_FLAGS = ["--model=mmvae", "--dataset=digits", "--nojit_compile", "--batch_size=8",
             "--latent_dim=4", "--style_dim=0", "--num_importance_samples=2",
             "--sample_every=0"]
DATA = "data-00000-of-00001"


def train_cli(root: str, *extra: str):
    """The training CLI in a fresh process on the toy data (exit code, stdout, stderr)."""
    return run_subprocess(["-c", DRIVER.format(tests=TESTS), *VAE_FLAGS, f"--run_dir={root}",
                           *extra], timeout=400)


def tensors(prefix: str) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(prefix)
    return {k: reader.get_tensor(k) for k in sorted(reader.get_variable_to_shape_map())}


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


# ----------------------------------------------------------------------------- checkpoints
def test_truncated_newest_checkpoint_falls_back_and_ends_with_the_same_weights(tmp_path):
    """The issue's scenario: train, cut the newest checkpoint's data file to half, rerun the
    same command: it resumes from the older checkpoint, says why in one line, keeps the bad
    files aside and ends with the weights the uninterrupted run had, bit for bit."""
    root = str(tmp_path / "run")
    command = ["--max_steps=8", "--checkpoint_every=4", "--log_every=4"]
    first = train_cli(root, *command)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpts = RunDir(root).checkpoints
    uninterrupted = tensors(os.path.join(ckpts, "ckpt-8"))
    data = os.path.join(ckpts, f"ckpt-8.{DATA}")
    size = os.path.getsize(data)
    os.truncate(data, size // 2)
    second = train_cli(root, *command)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = [ln for ln in second.stdout.splitlines() if ln.startswith("Resuming")]
    corrupt = os.path.join(ckpts, "corrupt", "ckpt-8")
    assert resumed == [f"Resuming from step 4 ({os.path.join(ckpts, 'ckpt-4')}): newer "
                       f"checkpoint damaged, ckpt-8: ckpt-8.{DATA} has {size // 2} bytes, "
                       f"{size} were written; moved to {corrupt}"]
    assert "Trained 4 steps (4 -> 8)" in second.stdout
    assert sorted(os.listdir(corrupt)) == [f"ckpt-8.{DATA}", "ckpt-8.index"]
    assert os.path.getsize(os.path.join(corrupt, f"ckpt-8.{DATA}")) == size // 2
    again = tensors(os.path.join(ckpts, "ckpt-8"))
    assert sorted(again) == sorted(uninterrupted)
    for key, value in uninterrupted.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)
    assert checkpoint_check.problem(os.path.join(ckpts, "ckpt-8"), checkpoint_check.read_manifest(
        ckpts)["ckpt-8"]) is None


@pytest.fixture
def toy_run(tmp_path, toys):  # noqa: F811
    """A ToyModel run trained in-process to step 4 (checkpoints at 2 and 4): its root."""
    root = str(tmp_path / "run")
    assert run_main(*TOY_FLAGS, *toy_command(root)) == 0
    return root


def toy_command(root: str, steps: int = 4) -> list[str]:
    return [f"--max_steps={steps}", "--checkpoint_every=2", "--log_every=2",
            "--sample_every=0", f"--run_dir={root}"]


def test_no_intact_checkpoint_exits_2_naming_it_and_moves_nothing(toy_run, capsys):
    ckpts = RunDir(toy_run).checkpoints
    for step in (2, 4):
        data = os.path.join(ckpts, f"ckpt-{step}.{DATA}")
        os.truncate(data, os.path.getsize(data) // 2)
    before = snapshot(toy_run)
    capsys.readouterr()
    assert run_main(*TOY_FLAGS, *toy_command(toy_run, 6)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: no intact checkpoint in {ckpts} (ckpt-4: ckpt-4.{DATA} has ")
    assert "; ckpt-2: " in line and line.endswith("the files are left in place: move them "
                                                  "away to start the run over")
    assert snapshot(toy_run) == before


def test_evaluate_and_export_refuse_a_damaged_checkpoint_and_name_the_intact_one(toy_run):
    """Detected by the manifest's sha256 (same size, one byte changed) and, without a
    manifest entry, by the full read."""
    ckpts = RunDir(toy_run).checkpoints
    data = os.path.join(ckpts, f"ckpt-4.{DATA}")
    with open(data, "r+b") as f:
        f.seek(os.path.getsize(data) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    path = os.path.join(ckpts, "ckpt-4")
    with pytest.raises(ValueError) as error:
        run_dir.load_trained(toy_run)
    assert str(error.value) == (
        f"checkpoint {path} is damaged: ckpt-4.{DATA} differs from what was written (sha256); "
        "the newest intact one is step 2 (select a step, or rerun training, which falls back "
        "to it)")
    assert run_dir.load_trained(toy_run, step=2).step == 2
    os.remove(os.path.join(ckpts, checkpoint_check.MANIFEST))
    os.truncate(data, os.path.getsize(data) // 2)
    with pytest.raises(ValueError, match=r"ckpt-4 is damaged: cannot be read \(IndexError: "
                                         r"Read less bytes than requested\)"):
        run_dir.load_trained(toy_run)


def test_a_checkpoint_of_another_model_exits_2(tmp_path, toy_run, capsys):
    other = str(tmp_path / "other")
    assert run_main(*TOY_FLAGS, *toy_command(other), "--latent_dim=6") == 0
    ckpts = RunDir(toy_run).checkpoints
    shutil.rmtree(ckpts)
    shutil.copytree(RunDir(other).checkpoints, ckpts)
    capsys.readouterr()
    assert run_main(*TOY_FLAGS, *toy_command(toy_run, 6)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: checkpoint {os.path.join(ckpts, 'ckpt-4')} does not fit "
                           "this model (")
    with pytest.raises(ValueError, match="does not fit this model"):
        run_dir.load_trained(toy_run)


def test_a_relative_run_dir_resumes(tmp_path, toys, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    for steps in (4, 6):
        assert run_main(*TOY_FLAGS, *toy_command("run", steps)) == 0
    assert "Resuming from step 4 (run/checkpoints/ckpt-4)\n" in capsys.readouterr().out
    assert run_dir.load_trained("run").step == 6


def test_a_garbled_checkpoint_state_file_resumes_from_the_newest_intact_checkpoint(
        toy_run, capsys):
    """TensorFlow reads an unparsable `checkpoint` state file as "no checkpoint"; the run
    would restart from step 0 over its own checkpoints. The files are listed instead."""
    ckpts = RunDir(toy_run).checkpoints
    with open(os.path.join(ckpts, "checkpoint"), "w", encoding="utf-8") as f:
        f.write('model_checkpoint_path: "ckpt-4\n')
    capsys.readouterr()
    assert run_main(*TOY_FLAGS, *toy_command(toy_run, 6)) == 0
    assert f"Resuming from step 4 ({os.path.join(ckpts, 'ckpt-4')})\n" in capsys.readouterr().out
    assert run_dir.load_trained(toy_run).step == 6


# ----------------------------------------------------------------------------- run metadata
def _cut(path: str) -> None:
    text = open(path, encoding="utf-8").read()
    open(path, "w", encoding="utf-8").write(text[:len(text) // 2])


def _edit_json(path: str, change) -> None:
    record = json.load(open(path, encoding="utf-8"))
    change(record)
    open(path, "w", encoding="utf-8").write(json.dumps(record))


def _replace(path: str, old: str, new: str) -> None:
    text = open(path, encoding="utf-8").read()
    assert old in text
    open(path, "w", encoding="utf-8").write(text.replace(old, new))


METADATA_FAULTS = {
    "run.json cut short": ("run.json", _cut, "run.json is damaged: "),
    "run.json without specs": ("run.json", lambda p: _edit_json(p, lambda r: r.pop("specs")),
                               "run.json is damaged: no 'specs'"),
    "run.json edited latent_dim": (
        "run.json", lambda p: _edit_json(p, lambda r: r["config"].update(latent_dim=9)),
        "flags.txt and {root}/run.json disagree on --latent_dim (4 vs 9)"),
    "run.json of a newer release": (
        "run.json", lambda p: _edit_json(p, lambda r: r.update(format_version=99)),
        "run.json has format_version 99: the run was written by a newer mmali_tf (this one "
        "reads up to 1); upgrade mmali_tf"),
    "flags.txt cut short": ("flags.txt", _cut, "flags.txt is damaged: its last line is cut "
                                               "short"),
    "flags.txt with a stray line": (
        "flags.txt", lambda p: _replace(p, "--lr=", "lr 0.001\n--lr="),
        "flags.txt is damaged: line "),
    "flags.txt edited latent_dim": (
        "flags.txt", lambda p: _replace(p, "--latent_dim=4\n", "--latent_dim=9\n"),
        "flags.txt and {root}/run.json disagree on --latent_dim (9 vs 4)"),
}


@pytest.mark.parametrize("fault", sorted(METADATA_FAULTS))
def test_damaged_run_metadata_is_one_line_exit_2_for_train_and_load(fault, toy_run, capsys):
    name, damage, expected = METADATA_FAULTS[fault]
    damage(os.path.join(toy_run, name))
    expected = expected.format(root=toy_run)
    before = snapshot(toy_run)
    capsys.readouterr()
    # the run's own flags, not --flagfile=flags.txt: that replay is absl's parse, which
    # already reports a bad line as one line
    assert run_main(*TOY_FLAGS, *toy_command(toy_run, 6)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert expected in line and toy_run in line
    assert snapshot(toy_run) == before
    with pytest.raises(ValueError) as error:
        run_dir.load_trained(toy_run)
    assert expected in str(error.value)


def test_a_cut_authors_checkpoint_is_one_line_on_import(tmp_path):
    from mmali_tf.reference.import_run import read_checkpoint

    path = str(tmp_path / "authors.npz")
    np.savez(path, **{"model/enc.weight": np.ones((64, 64), np.float32)})
    os.truncate(path, os.path.getsize(path) // 2)
    with pytest.raises(ValueError, match=rf"^--checkpoint={path}: cannot be read completely "
                                         r"\(BadZipFile: .*\); is the file cut short\?$"):
        read_checkpoint(path)


# ----------------------------------------------------------------------------- full disks
def test_full_disk_at_a_checkpoint_exits_2_keeps_the_last_one_and_resumes(tmp_path):
    root = str(tmp_path / "run")
    command = ["--checkpoint_every=4", "--log_every=4"]
    with FullDisk(RunDir(root).checkpoints) as disk:
        assert train_cli(root, *command, "--max_steps=4").returncode == 0
        ckpts = RunDir(root).checkpoints
        kept = {p: digest(p) for p in glob.glob(os.path.join(ckpts, "ckpt-4.*"))}
        disk.fill()
        proc = train_cli(root, *command, "--max_steps=8")
        assert proc.returncode == 2, proc.stderr[-3000:]
        prefix = os.path.join(ckpts, "ckpt-8")
        assert one_error_line(proc.stderr) == (
            f"error: cannot write {prefix}: No space left on device; what was written before "
            "is intact: free some space and rerun the same command (it resumes)")
        assert {p: digest(p) for p in kept} == kept
        assert not glob.glob(prefix + "*")       # the failed save left nothing behind
        assert tf.train.latest_checkpoint(ckpts) == os.path.join(ckpts, "ckpt-4")
        disk.empty()
        proc = train_cli(root, *command, "--max_steps=8")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"Resuming from step 4 ({os.path.join(ckpts, 'ckpt-4')})\n" in proc.stdout
        assert "Trained 4 steps (4 -> 8)" in proc.stdout


@pytest.mark.parametrize("where", ["model.keras", "tensorboard", "samples"])
def test_full_disk_elsewhere_in_the_run_exits_2_naming_the_file_and_resumes(where, tmp_path):
    """model.keras: the run directory's disk keeps 256 KiB (its small files fit, the model
    does not; checkpoints sit on a second tmpfs); tensorboard/ and samples/: a full tmpfs."""
    root = str(tmp_path / "run")
    run = RunDir(root)
    command = ["--max_steps=4", "--checkpoint_every=2", "--log_every=2", "--sample_every=4"]
    if where == "model.keras":
        disk = FullDisk(root, free=256 << 10, target=run.model_keras)
        checkpoints = FullDisk(run.checkpoints)
    else:
        disk, checkpoints = FullDisk(os.path.join(root, where)), None
    try:
        disk.fill()
        proc = train_cli(root, *command)
        assert proc.returncode == 2, proc.stderr[-3000:]
        line = one_error_line(proc.stderr)
        assert line.startswith(f"error: cannot write {os.path.join(root, where)}")
        assert line.endswith(": No space left on device; what was written before is intact: "
                             "free some space and rerun the same command (it resumes)")
        assert not [p for p in glob.glob(os.path.join(root, "**", ".*"), recursive=True)
                    if ".tmp" in p]                       # no temporary file left
        saved = tf.train.latest_checkpoint(run.checkpoints)
        disk.empty()
        proc = train_cli(root, *command)
        assert proc.returncode == 0, proc.stderr[-3000:]
        if saved:
            assert f"Resuming from step {saved.rsplit('-', 1)[1]} ({saved})" in proc.stdout
        assert os.path.isfile(run.model_keras) and run_dir.load_trained(root).step == 4
    finally:
        disk.close()
        if checkpoints is not None:
            checkpoints.close()


def _full_line(capsys, path: str) -> None:
    assert one_error_line(capsys.readouterr().err) == (
        f"error: cannot write {path}: No space left on device; what was written before is "
        "intact: free some space and rerun the same command (it resumes)")


def test_full_disk_for_evaluation_outputs_keeps_the_previous_ones(tmp_path, capsys):
    from mmali_tf import cli, evaluate

    from test_reproduce import _metrics

    out = str(tmp_path / "eval")
    metrics = _metrics("mvae", 0.5)
    figures = {"confusion": {"hand->print": np.eye(10)}, "generations": {}}
    with FullDisk(out) as disk:
        evaluate.write_outputs(out, metrics, figures)
        before = snapshot(out)
        disk.fill()
        with pytest.raises(SystemExit) as exit_info:
            with cli.disk_full_errors():
                evaluate.write_outputs(out, _metrics("mvae", 0.25), figures)
        assert exit_info.value.code == 2
        _full_line(capsys, os.path.join(out, "metrics.json"))
        disk.empty()
        assert snapshot(out) == before


def test_full_disk_for_a_bundle_keeps_the_previous_one(tmp_path, capsys):
    from mmali_tf.export.onnx_export import export_bundle
    from mmali_tf import cli, models

    from conftest import HAND, PRINT

    model = models.build("mmali", [HAND, PRINT], {"latent_dim": 8, "style_dim": 3,
                                                  "ema_decay": 0.0, "seed": 0})
    model.build_from_specs()
    parent = str(tmp_path / "bundles")
    out = os.path.join(parent, "bundle")
    with FullDisk(parent) as disk:
        export_bundle(model, out, weights="raw", graphs=["decoder_hand"])
        before = snapshot(parent)
        disk.fill()
        with pytest.raises(SystemExit) as exit_info:
            with cli.disk_full_errors(out):
                export_bundle(model, out, weights="raw", graphs=["decoder_hand"],
                              overwrite=True)
        assert exit_info.value.code == 2
        _full_line(capsys, out)
        disk.empty()
        assert snapshot(parent) == before    # the old bundle, and no partial one beside it


def test_full_disk_for_the_reproduction_json_keeps_the_previous_one(tmp_path, capsys):
    from mmali_tf import cli, reproduce
    from mmali_tf.repro import runner

    from test_reproduce import _metrics, _record, _suite

    out = str(tmp_path / "reproduction")
    suite = _suite("digits", [_record("digits_mvae", _metrics("mvae", 0.2))])
    with FullDisk(out) as disk:
        reproduce.write_suite(suite, out)
        before = snapshot(out)
        disk.fill()
        with pytest.raises(SystemExit) as exit_info:
            with cli.disk_full_errors():
                reproduce.write_suite({**suite, "wall_s": 1.0}, out)
        assert exit_info.value.code == 2
        _full_line(capsys, os.path.join(out, "digits.json"))
        disk.empty()
        assert snapshot(out) == before
    # a child (training, evaluation) that stops on a full disk stops the harness too
    child = ("import sys; print('error: cannot write /runs/x/ckpt-8: No space left on device; "
             "what was written before is intact', file=sys.stderr); sys.exit(2)")
    with open(tmp_path / "lock", "w") as lock:
        with pytest.raises(runner.DiskFullError, match="cannot write /runs/x/ckpt-8: No space"):
            runner._child(["-c", child], str(tmp_path / "child.log"), lock.fileno())
