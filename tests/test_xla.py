"""`--jit_compile`: every spelling parses and replays, and `auto` measures both settings,
records its choice, leaves the training trajectory as the chosen setting alone gives it, and
is reused on resume. Trains `tests/test_run_dir.py`'s ToyModel on its toy dataset."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver

from mmali_tf import cli, config, run_dir, train, xla
from mmali_tf import flags as flags_lib

from test_flags import run_cli
from test_run_dir import toy_config, toys  # noqa: F401  (pytest fixture)


def _parsed(*args: str):
    flags_lib.define_train_flags()
    with flagsaver.flagsaver():
        cli.parse_flags(["mmali-train", *args])
        value = flags.FLAGS.jit_compile
        flags.FLAGS.unparse_flags()
    return value


@pytest.mark.parametrize("args, value", [
    ((), "auto"), (("--jit_compile",), True), (("--nojit_compile",), False),
    (("--jit_compile=true",), True), (("--jit_compile=false",), False),
    (("--jit_compile=auto",), "auto"), (("--jit_compile=AUTO",), "auto"),
    (("--jit_compile=1",), True), (("--jit_compile=0",), False),
    (("--nojit_compile", "--jit_compile=auto"), "auto")])
def test_every_spelling_parses(args, value):
    assert _parsed(*args) == value


@pytest.mark.parametrize("value", [True, False, "auto"])
def test_flags_txt_and_run_json_values_replay(value, tmp_path):
    path = tmp_path / "flags.txt"
    path.write_text(run_dir.format_flags({"jit_compile": value}))
    assert _parsed(f"--flagfile={path}") == value
    assert train.make_config(jit_compile=value)["jit_compile"] == value
    field = next(f for f in config.RunSettings.fields() if f.name == "jit_compile")
    text = json.loads(json.dumps(value))  # as run.json holds it
    assert config.coerce(field, text) == value == config.RunSettings.from_config(
        {"jit_compile": run_dir.flag_value_text(value)}).jit_compile


def test_a_bad_value_is_one_line():
    with pytest.raises(flags_lib.FlagUsageError, match="'maybe' is not true, false or auto"):
        train.make_config(jit_compile="maybe")
    proc = run_cli("--jit_compile=maybe")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --jit_compile=maybe: must be true, false or auto"]


def test_decide_without_measuring(monkeypatch):
    strategy = tf.distribute.get_strategy()
    assert xla.decide(True, strategy, None) == xla.Choice(True, "setting")
    assert xla.decide(False, strategy, {"xla": {"jit_compile": True, "how": "measured"}}) == (
        xla.Choice(False, "setting"))
    assert xla.decide("auto", strategy, None) is None
    assert xla.decide("auto", strategy, {"xla": {"jit_compile": True, "how": "setting"}}) is None
    measured = xla.Choice(True, "measured", {"xla": 1.0, "no_xla": 2.0}, 4)
    reused = xla.decide("auto", strategy, {"xla": measured.record()})
    assert reused == xla.Choice(True, "measured", {"xla": 1.0, "no_xla": 2.0}, 4, reused=True)
    assert reused.record() == measured.record()
    assert "reusing run.json's choice, measured at step 4" in reused.describe("auto")
    assert xla.Choice(False, "setting").describe(False) == ""
    monkeypatch.setattr("mmali_tf.distribute.no_xla_reason", lambda s: "no XLA here")
    assert xla.decide(False, strategy, None) == xla.Choice(False, "setting")
    for setting, given in ((True, " ignored"), ("auto", "=auto")):
        choice = xla.decide(setting, strategy, None)
        assert choice == xla.Choice(False, "unsupported", reason="no XLA here")
        assert choice.describe(setting) == (f"note: training without XLA (--jit_compile{given})"
                                            ": no XLA here")
        assert choice.record() == {"jit_compile": False, "how": "unsupported",
                                   "reason": "no XLA here"}


def _checkpoint(run: str, step: int) -> dict[str, np.ndarray]:
    """Every tensor of the run's checkpoint at `step` (weights, EMA, RNG, optimizers)."""
    reader = tf.train.load_checkpoint(os.path.join(run, "checkpoints", f"ckpt-{step}"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}  # layer names count up per process


def test_auto_measures_records_and_keeps_the_trajectory_and_resume_reuses_it(
        tmp_path, toys, capsys, monkeypatch):
    auto = toy_config(tmp_path / "auto", jit_compile="auto", max_steps=3)
    train.train(auto, verbose=0)
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("XLA")]
    record = json.loads(open(run_dir.RunDir(auto["run_dir"]).run_json).read())
    choice, ms = record["xla"], record["xla"]["ms_per_step"]
    assert record["config"]["jit_compile"] == "auto"
    assert (choice["how"], choice["step"], choice["timed_steps"]) == ("measured", 0,
                                                                      xla.TIMED_STEPS)
    assert ms["xla"] > 0 and ms["no_xla"] > 0 and choice["jit_compile"] == (
        ms["xla"] < ms["no_xla"])
    assert len(line) == 1 and f"{ms['xla']:.1f} ms/step with XLA" in line[0]
    # the measurement's steps left no trace: the chosen setting alone trains the same run
    fixed = toy_config(tmp_path / "fixed", jit_compile=choice["jit_compile"], max_steps=3)
    train.train(fixed, verbose=0)
    got, want = _checkpoint(auto["run_dir"], 3), _checkpoint(fixed["run_dir"], 3)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # a resume reuses the recorded choice (measuring again would fail here)
    monkeypatch.setattr(xla, "measure", lambda *a: pytest.fail("measured again"))
    capsys.readouterr()
    session = train.prepare({**auto, "max_steps": 6})
    assert "XLA (--jit_compile=auto): reusing run.json's choice, measured at step 0" in (
        capsys.readouterr().out)
    assert session.start_step == 3 and session.model.jit_compile == choice["jit_compile"]
    assert json.loads(open(run_dir.RunDir(auto["run_dir"]).run_json).read())["xla"] == choice
