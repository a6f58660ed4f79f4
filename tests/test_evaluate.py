"""evaluate CLI end to end on a tiny run directory, determinism, metrics.json schema, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mmali_tf import evaluate
from mmali_tf.metrics import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--num_samples=120", "--probe_epochs=3", "--classifier_epochs=3", "--iwae_samples=8",
        "--ll_items=16", "--cca_dim=4", "--seed=5"]


def _features_file(path: str) -> str:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 16), ("test", 6)):
        y = np.repeat(np.arange(10), n)
        arrays[f"a_{split}"] = (np.eye(10)[y] + 0.1 * rng.standard_normal((len(y), 10))
                                ).astype(np.float32)
        arrays[f"b_{split}"] = (np.eye(10)[y][:, ::-1] + 0.1 * rng.standard_normal((len(y), 10))
                                ).astype(np.float32)
        arrays[f"label_{split}"] = y
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory (run.json + checkpoint) of a small MVAE on two vector modalities."""
    from absl import flags

    from mmali_tf import data, models
    from mmali_tf import flags as flags_lib
    from mmali_tf import run_dir as run_lib

    root = tmp_path_factory.mktemp("eval")
    flags_lib.define_train_flags()
    cfg = {n: flags.FLAGS[n].default for n in flags_lib.train_flag_names()}
    cfg.update(run_dir=str(root / "run"), model="mvae", dataset="features",
               features_file=_features_file(str(root / "f.npz")), cache_dir=str(root / "cache"),
               latent_dim=4, style_dim=0, ema_decay=0.99, ema_start=0, jit_compile=False)
    ds = data.load("features", cfg)
    model = models.build("mvae", ds.specs, cfg)
    model.build_from_specs()
    run = run_lib.prepare(cfg["run_dir"], cfg)
    run_lib.write_run_files(run, {**cfg, "model": "mvae"}, ds.specs)
    run_lib.TrainingCheckpoint(run.checkpoints, model).save(7)
    return cfg["run_dir"]


def _in_process(run_dir: str) -> dict:
    from mmali_tf import data
    from mmali_tf.run_dir import load_trained

    trained = load_trained(run_dir)
    ds = data.load(trained.dataset_name, trained.config)
    opts = evaluate.EvalOptions(num_samples=120, probe_epochs=3, classifier_epochs=3,
                                iwae_samples=8, ll_items=16, cca_dim=4, seed=5,
                                cache_dir=trained.config["cache_dir"])
    metrics, _ = evaluate.evaluate_model(trained.model, ds, opts, step=trained.step)
    return json.loads(json.dumps(metrics))


def test_cli_end_to_end_is_deterministic_and_follows_the_schema(run_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate.run(["evaluate", f"--run_dir={run_dir}", *FAST])
    assert exc.value.code in (None, 0), capsys.readouterr().err[-2000:]
    assert "Wrote" in capsys.readouterr().out
    out = os.path.join(run_dir, "eval", "clean")
    assert sorted(os.listdir(out)) == ["cross_confusion.png", "metrics.json", "per_input.npz",
                                       "report.md"]
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    report.validate_metrics(metrics)
    # per-input correctness reproduces every published number and names the source instance
    with np.load(os.path.join(out, "per_input.npz")) as per:
        assert per["cross/a->b/correct"].mean() == metrics["cross_coherence"]["a->b"]
        assert per["self/b/correct"].mean() == metrics["self_coherence"]["b"]
        assert per["joint/all/correct"].mean() == metrics["joint_coherence"]["all"]
        assert per["latent/a/both/correct"].mean() == metrics["latent_accuracy"]["a"]["both"]
        assert per["latent/joint/both/correct"].mean() == \
            metrics["latent_accuracy"]["joint"]["both"]
        assert per["synergy/model/a/correct"].mean() == \
            metrics["synergy_coherence"]["model"]["a"]
        sources = per["cross/a->b/input"]
        assert len(sources) == metrics["meta"]["num_pairs"] and set(sources) <= set(range(60))
        np.testing.assert_array_equal(per["latent/b/both/input"], np.arange(60))
    assert set(metrics) == {"latent_accuracy", "joint_coherence", "cross_coherence",
                            "synergy_coherence", "classifier_accuracy", "log_likelihood",
                            "cca_correlation", "self_coherence", "prediction_stats",
                            "subset_coherence", "meta"}
    assert set(metrics["subset_coherence"]["by_subset"]) == {"a", "b"}
    meta = metrics["meta"]
    assert (meta["protocol"], meta["step"], meta["weights"], meta["dataset"], meta["model"],
            meta["seed"]) == ("clean", 7, "ema", "features", "mvae", 5)
    assert set(metrics["cross_coherence"]) == {"a->b", "b->a"}
    assert set(metrics["synergy_coherence"]) == {"model", "poe", "moe_mean", "geometric"}
    assert meta["joint_posterior"] == "poe fusion of the unimodal posteriors"
    assert (meta["probe_epochs"], meta["classifier_epochs"]) == (3, 3)
    assert set(metrics["prediction_stats"]) == {
        "joint/a", "joint/b", "cross/a->b", "cross/b->a", "self/a", "self/b",
        *(f"synergy/{f}/{m}" for f in ("model", "poe", "moe_mean", "geometric")
          for m in "ab"), "subset/1/a", "subset/1/b"}
    assert set(metrics["latent_accuracy"]) == {"a", "b", "joint"}
    assert "a,b|a,b" in metrics["log_likelihood"]
    assert metrics["log_likelihood"]["a,b|a,b"] < metrics["log_likelihood"]["a|a"]
    assert metrics["cca_correlation"]["ground_truth"] > 0.5
    with open(os.path.join(out, "report.md")) as f:
        text = f.read()
    assert "protocol **clean**" in text and "| cross a->b |" in text and "| self a |" in text
    # a rerun (classifiers now cached, fresh model and noise streams) gives identical metrics
    assert _in_process(run_dir) == metrics


def test_reference_protocol_is_labelled(run_dir):
    from mmali_tf import data
    from mmali_tf.run_dir import load_trained

    trained = load_trained(run_dir)
    ds = data.load(trained.dataset_name, trained.config)
    opts = evaluate.EvalOptions(protocol="reference", num_samples=60, probe_epochs=2,
                                latent_probe="sutter", classifier_epochs=2, ll_items=0, seed=1,
                                weights="raw", classifier_threshold=1.0,
                                cache_dir=trained.config["cache_dir"])
    metrics, figures = evaluate.evaluate_model(trained.model, ds, opts, step=trained.step)
    report.validate_metrics(metrics)
    assert metrics["meta"]["protocol"] == "reference" and metrics["meta"]["weights"] == "raw"
    assert metrics["meta"]["latent_probe"] == "sutter"
    assert "Latent linear probe (sutter probe)" in report.render_report(metrics)
    assert "log_likelihood" not in metrics
    assert not metrics["meta"]["coherence_reliable"]
    assert any("UNRELIABLE" in n for n in metrics["meta"]["notes"])
    assert figures["confusion"]["a->b"].sum() == 60


@pytest.mark.parametrize("bad", [{"cross_coherence": {"a->b": 1.2}}, {"extra": {}},
                                 {"joint_coherence": {"all": "high"}}])
def test_schema_rejects_bad_metrics(bad):
    good = {"latent_accuracy": {"a": {"both": 0.5}}, "joint_coherence": {"all": 0.3},
            "cross_coherence": {"a->b": 0.2}, "synergy_coherence": {}, "classifier_accuracy":
            {"a": 0.99}, "log_likelihood": {"a|a": -120.0}, "meta": {"protocol": "clean"}}
    report.validate_metrics(good)
    with pytest.raises(ValueError):
        report.validate_metrics({**good, **bad})


@pytest.mark.parametrize("args,message", [
    (["--run_dir=/nonexistent/run"], "no such directory"),
    (["--protocol=best"], "--protocol=best"),
    (["--num_samples=0"], "--num_samples=0"),
    (["--text_scorer=argmax"], "--text_scorer=argmax"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate.run(["evaluate", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_run_dir_without_checkpoint_is_rejected(run_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "no_ckpt" / "checkpoints").mkdir(parents=True)
    with open(os.path.join(run_dir, "run.json")) as f:
        (tmp_path / "no_ckpt" / "run.json").write_text(f.read())
    for name, message in (("empty", "no run.json"), ("no_ckpt", "no checkpoint")):
        with pytest.raises(SystemExit) as exc:
            evaluate.run(["evaluate", f"--run_dir={tmp_path / name}"])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err


def _write_metrics(root, name: str, dataset: str, cross: float) -> str:
    metrics = {"latent_accuracy": {"a": {"both": 0.9}, "b": {"both": 0.8},
                                   "joint": {"both": 0.85}},
               "joint_coherence": {"all": 0.4}, "cross_coherence": {"a->b": cross, "b->a": 0.5},
               "synergy_coherence": {"geometric": {"a": 0.7, "b": 0.6}},
               "classifier_accuracy": {"a": 0.99, "b": 0.97},
               "meta": {"dataset": dataset, "model": name, "protocol": "clean",
                        "default_fusion": "geometric"}}
    report.write_json(str(root / name / "eval" / "metrics.json"), metrics)
    return str(root / name)


def _compare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "compare_runs.py"), *args],
                          capture_output=True, text=True, timeout=120)


def test_compare_runs_table_chart_and_dataset_check(tmp_path):
    one = _write_metrics(tmp_path, "mmali", "digits", 0.25)
    two = _write_metrics(tmp_path, "mvae", "digits", 0.125)
    out = str(tmp_path / "cmp")
    proc = _compare(one, two, f"--compare_out={out}")
    assert proc.returncode == 0, proc.stderr[-1500:]
    with open(out + ".md") as f:
        table = f.read()
    header = "| latent a | latent b | joint coherence | cross a->b | cross b->a | synergy a |"
    assert header in table
    row = "| mvae | mvae | clean, shi probe | 90.00 | 80.00 | 40.00 | 12.50 | 50.00 | 70.00 |"
    assert row + " 60.00 |" in table
    with open(out + ".png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    other = _write_metrics(tmp_path, "svhn_run", "mnist_svhn", 0.3)
    proc = _compare(one, other, f"--compare_out={out}")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "different datasets" in proc.stderr


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    gens = {"hand->print": (rng.random((10, 28, 28, 1)), rng.random((10, 32, 32, 3)))}
    report.cross_grid_figure(gens, str(tmp_path / "grid.png"))
    report.confusion_figure({"a->b": np.eye(10) * 3}, str(tmp_path / "conf.png"))
    for name in ("grid.png", "conf.png"):
        with open(tmp_path / name, "rb") as f:
            assert f.read(4) == b"\x89PNG"


def _evaluate_exit(*args: str) -> int | None:
    """Exit code of an in-process evaluation CLI run (its flags reset afterwards)."""
    from absl import flags

    try:
        with pytest.raises(SystemExit) as exc:
            evaluate.run(["evaluate", *args])
    finally:
        flags.FLAGS.unparse_flags()
    return exc.value.code


def test_step_curve_scores_kept_steps_reuses_points_and_reads_copies(run_dir, tmp_path, capsys,
                                                                     monkeypatch):
    import shutil

    from mmali_tf import curve
    from mmali_tf import run_dir as run_lib

    root = tmp_path / "curved"
    root.mkdir()
    for name in ("run.json", "flags.txt"):
        shutil.copy(os.path.join(run_dir, name), root / name)
    model, _ = run_lib.rebuild(str(root))
    ckpt = run_lib.TrainingCheckpoint(str(root / "checkpoints"), model, keep=2, keep_every=3)
    rng = np.random.default_rng(0)
    for step in (3, 5, 6, 7):  # a different model at every step
        for v in model.trainable_variables:
            v.assign(v + 0.5 * rng.standard_normal(v.shape).astype(np.float32))
        ckpt.save(step)
    assert _evaluate_exit(f"--run_dir={root}", "--curve_every=3", *FAST) in (None, 0)
    path = root / "eval" / "clean" / "curve.json"
    result = json.loads(path.read_text())
    assert [p["step"] for p in result["points"]] == [3, 6] and result["skipped"] == []
    assert result["settings"]["num_samples"] == 120 and result["curve_every"] == 3
    for point in result["points"]:
        assert set(point["cross"]) == {"a->b", "b->a"} and set(point["self"]) == {"a", "b"}
        assert point["cross_mean"] == pytest.approx(np.mean(list(point["cross"].values())))
        assert 0.0 <= point["joint"] <= 1.0
    assert "Wrote" in capsys.readouterr().out
    # joint coherence at a step equals the full evaluation's at that step
    assert _evaluate_exit(f"--run_dir={root}", "--eval_step=6", *FAST) in (None, 0)
    full = json.loads((root / "eval" / "clean" / "metrics.json").read_text())
    assert full["joint_coherence"]["all"] == result["points"][1]["joint"]
    # a rerun with the same settings scores nothing again
    monkeypatch.setattr(curve, "coherence_point", lambda *a: pytest.fail("rescored"))
    assert _evaluate_exit(f"--run_dir={root}", "--curve_every=3", *FAST) in (None, 0)
    assert json.loads(path.read_text())["points"] == result["points"]
    monkeypatch.undo()
    # copies kept aside (no state file, no manifest); a damaged copy is skipped with its reason
    copies = tmp_path / "copies"
    copies.mkdir()
    for step in (3, 6):
        for f in (root / "checkpoints").glob(f"ckpt-{step}.*"):
            shutil.copy(f, copies / f.name)
    data_file = next(copies.glob("ckpt-6.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:-8])
    path.unlink()
    assert _evaluate_exit(f"--run_dir={root}", "--curve_every=3", f"--checkpoint_dir={copies}",
                          *FAST) in (None, 0)
    copied = json.loads(path.read_text())
    assert copied["points"] == result["points"][:1]
    assert [s["step"] for s in copied["skipped"]] == [6]
    assert "1 damaged checkpoints skipped" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--checkpoint_dir=/tmp"], "--checkpoint_dir needs --curve_every"),
    (["--curve_every=3", "--eval_step=3"], "exclude each other"),
    (["--curve_every=4"], "no ckpt-<step> checkpoint at a multiple of 4"),
])
def test_step_curve_bad_input_is_one_line(run_dir, args, message, capsys):
    assert _evaluate_exit(f"--run_dir={run_dir}", *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
