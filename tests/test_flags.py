"""Flag validation through the real CLI (one line, exit code 2) and flags.txt replay.

Flag errors are reported before TensorFlow is imported, so each CLI call here takes well
under a second.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from absl import flags
from absl.testing import flagsaver

from mmali_tf import cli, run_dir
from mmali_tf import flags as flags_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "mmali_tf.train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, expected", [
    (["--batch_size=-3"], "--batch_size=-3: must be integer >= 2"),
    (["--max_steps=0"], "--max_steps=0: must be a positive integer"),
    (["--lr=-1"], "--lr=-1: must be a non-negative number"),
    (["--beta1=1.5"], "--beta1=1.5: must be a number in the range [0.0, 1.0]"),
    (["--num_views=5"], "--num_views=5: must be an integer in the range [2, 4]"),
    (["--batch_size=abc"], "--batch_size=abc: invalid literal"),
    (["--model=gan"], "--model=gan: value should be one of <mmali|"),
    (["--dataset=cifar"], "--dataset=cifar: value should be one of <digits|"),
    (["--strategy=tpu"], "--strategy=tpu: value should be one of <default|mirrored|"),
    (["--style_dim=20", "--latent_dim=20"],
     "--style_dim=20 --latent_dim=20: --style_dim must be smaller than --latent_dim"),
    (["--deterministic", "--joint_rec"], "--deterministic=True --joint_rec=True: --joint_rec "
                                         "needs stochastic encoders"),
    (["--dataset=features"], "--dataset=features --features_file=: --dataset=features needs "
                             "--features_file="),
    (["--ema_decay=0.2"], "--ema_decay must be 0 (off) or in (0.5, 1)"),
    (["--num_cpu_replicas=2"], "--num_cpu_replicas needs --strategy=mirrored"),
    (["--dataset=features", "--features_file=f.npz", "--percentage=0.2"],
     "--percentage=0.2: --dataset=features does not read it (dataset flags it reads: "
     "--features_file)"),
    (["--num_views=3"], "--num_views=3: --dataset=digits does not read it"),
    (["--plugins=no_such_plugin_module"], "--plugins=no_such_plugin_module: no Python module"),
    (["--no_such_flag=1"], "unknown flag --no_such_flag"),
    (["--latent_dm=3"], "unknown flag --latent_dm; Did you mean: latent_dim?"),
    (["--flagfile=configs/does_not_exist.cfg"], "cannot open --flagfile"),
    (["stray_argument"], "unexpected positional argument 'stray_argument'"),
])
def test_bad_flags_exit_2_with_one_line(args, expected):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert proc.stdout == ""


def test_bad_value_inside_flagfile_is_one_line(tmp_path):
    cfg = tmp_path / "exp.cfg"
    cfg.write_text("# experiment\n--model=mmali\n--latent_dim=8\n--style_dim=9\n")
    proc = run_cli(f"--flagfile={cfg}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: --style_dim=9 --latent_dim=8: --style_dim must be "
                                   "smaller than --latent_dim (the content part needs >= 1 "
                                   "dimension)")


def test_help_lists_the_training_flags():
    proc = run_cli("--helpshort")
    assert "--run_dir" in proc.stdout and "--latent_dim" in proc.stdout
    assert "error:" not in proc.stderr


def test_flag_error_message_rewrites_absl_errors():
    err = flags.IllegalFlagValueError("flag --batch_size=-3: -3 is not integer >= 2")
    assert cli.flag_error_message(err) == "--batch_size=-3: must be integer >= 2"
    err = flags.IllegalFlagValueError("flags a=1, b=2: --a must be below --b")
    assert cli.flag_error_message(err) == "--a=1 --b=2: --a must be below --b"


def test_user_errors_turn_value_and_file_errors_into_exit_2(capsys):
    for error in (ValueError("bad thing\nsecond line"), FileNotFoundError("no data.npz")):
        with pytest.raises(SystemExit) as exit_info:
            with cli.user_errors():
                raise error
        assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["error: bad thing", "error: no data.npz"]


def test_flags_txt_replays_the_resolved_flags(tmp_path):
    flags_lib.define_train_flags()
    names = flags_lib.train_flag_names()
    assert {"run_dir", "model", "latent_dim", "beta", "spectral_norm"} <= set(names)
    with flagsaver.flagsaver():
        argv = ["prog", "--model=mvae", "--latent_dim=12", "--style_dim=0", "--lr=0.00031",
                "--nospectral_norm", "--cache_dir=", "--run_dir=runs/x y", "--beta=2.5"]
        flags.FLAGS(argv)
        resolved = {n: flags.FLAGS[n].value for n in names}
        flags.FLAGS.unparse_flags()
    path = tmp_path / "flags.txt"
    run_dir.atomic_write_text(str(path), run_dir.format_flags(resolved))
    lines = path.read_text().splitlines()
    assert resolved["g_lr"] is None  # unset optional flags are omitted and replay as unset
    assert resolved["plugins"] == []  # so is an empty repeated flag
    assert len(lines) == len([n for n in names if resolved[n] not in (None, [])])
    assert not any(line.startswith("--g_lr=") for line in lines)
    assert "--spectral_norm=false" in lines and "--lr=0.00031" in lines
    with flagsaver.flagsaver():
        flags.FLAGS(["prog", f"--flagfile={path}"])
        replayed = {n: flags.FLAGS[n].value for n in names}
        flags.FLAGS.unparse_flags()
    assert replayed == resolved
