"""Reproduction harness: budgets, resume, tables, the claims table and README's generated
tables (which must equal what reproduction/*.json says)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mmali_tf import reproduce
from mmali_tf.repro import claims, runner, tables
from mmali_tf.repro.suites import RunSpec, suite_runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _metrics(model: str, cross: float, joint: float = 0.3, top_share: float = 0.2,
             dataset: str = "digits", style: bool = False) -> dict:
    part = {"both": 0.6, **({"content": 0.7, "style": 0.2} if style else {})}
    stats = {"top_share": top_share, "top_class": 1, "entropy_bits": 2.0}
    return {"latent_accuracy": {"hand": dict(part), "print": dict(part)},
            "joint_coherence": {"all": joint},
            "cross_coherence": {"hand->print": cross, "print->hand": cross / 2},
            "self_coherence": {"hand": 0.9, "print": 0.8},
            "synergy_coherence": {"model": {"hand": 0.5, "print": 0.4}},
            "classifier_accuracy": {"hand": 0.97, "print": 0.97},
            "prediction_stats": {k: dict(stats) for k in (
                "joint/hand", "joint/print", "cross/hand->print", "cross/print->hand")},
            "meta": {"dataset": dataset, "model": model, "protocol": "clean",
                     "latent_probe": "shi", "step": 500, "num_pairs": 2000,
                     "num_prior_samples": 2000,
                     "latent_test_size": {"hand": 400, "print": 400}}}


def _record(name: str, metrics: dict, steps: int = 500, config_steps: int = 1000) -> dict:
    return {"name": name, "config": f"configs/{name}.cfg", "overrides": [],
            "model": metrics["meta"]["model"], "dataset": metrics["meta"]["dataset"],
            "batch_size": 64, "config_steps": config_steps, "target_steps": steps,
            "steps": steps, "train_wall_s": 90.0, "ms_per_step": 150.0, "protocol": "clean",
            "status": "ok", "flags_sha256": "ab" * 32, "metrics": metrics}


def _suite(name: str, records: list) -> dict:
    out = {"suite": name, "command": "python -m mmali_tf.reproduce --suite=" + name,
           "created": "2026-01-01 00:00 UTC", "wall_s": 600.0,
           "machine": {"cpu": "cpu", "cores": 2, "tensorflow": "2.x", "load_avg": "1 1 1"},
           "budget": {"step_scale": 1.0, "max_steps": 500, "budget_minutes": 0.0,
                      "protocol": "clean", "num_samples": 2000,
                      "label": "step scale 1, at most 500 steps"},
            "runs": records}
    if name == "claims":
        out["claims"] = claims.claims_rows(records)
    return out


def test_budget_and_run_dir_readers(tmp_path):
    assert runner.Budget(step_scale=0.25).target_steps(1500) == 375
    assert runner.Budget(max_steps=600).target_steps(1500) == 600
    assert "at most 6 training minutes" in runner.Budget(budget_minutes=6).label()
    run = tmp_path / "run"
    assert runner.checkpoint_step(str(run)) == 0
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-1000"\nall_model_checkpoint_paths: "ckpt-500"\n')
    assert runner.checkpoint_step(str(run)) == 1000
    (run / "train_log.csv").write_text("step,loss,ms_per_step\n100,1,900\n200,1,100\n"
                                       "300,1,120\n")
    wall, ms = runner.train_timing(str(run))
    assert wall == pytest.approx(112.0) and ms == pytest.approx(110.0)


def test_suites_list_every_shipped_config():
    digits = [s.name for s in suite_runs("digits", REPO)]
    shipped = sorted(f[:-4] for f in os.listdir(os.path.join(REPO, "configs"))
                     if f.startswith("digits_") and f.endswith(".cfg"))
    assert digits == shipped
    claim_runs = {s.name: s for s in suite_runs("claims", REPO)}
    assert {"multimnist_digits2_mmali", "multimnist_digits2_mmali_joint",
            "digits_mmali"} <= set(claim_runs)
    flags = claim_runs["multimnist_digits2_mmali_joint"].config_flags()
    assert (flags["base_set"], flags["num_views"], flags["model"]) == ("digits", "2",
                                                                        "mmali_joint")
    with pytest.raises(ValueError, match="unknown suite 'x'"):
        suite_runs("x", REPO)


@pytest.mark.parametrize("suite", ["digits", "claims", "mnist_svhn", "digits_study"])
def test_every_suite_run_is_a_valid_training_config(suite, monkeypatch):
    """Each run's config + overrides passes the training flags' parsers and dataset-flag
    check (the fashion views of `claims` included, as if the Debian files were installed)."""
    from mmali_tf import train
    from mmali_tf.repro import suites

    monkeypatch.setattr(suites, "fashion_available", lambda: True)
    for spec in suite_runs(suite, REPO):
        train.make_config(spec.config_flags())


def test_tables_mark_budget_and_collapse_and_readme_blocks_round_trip():
    evaluated = {**_record("digits_mmali", _metrics("mmali", 0.5), 1000), "eval_wall_s": 42.0}
    suite = _suite("digits", [_record("digits_mvae", _metrics("mvae", 0.095, top_share=0.9)),
                              evaluated])
    block = tables.readme_block(suite)
    assert "| `digits_mvae` | mvae | 500/1,000 x 64 (50 %), 1.5 min | 150 |" in block
    assert "9.50 (collapsed)" in block and "50.00 (collapsed)" not in block
    assert "| `digits_mmali` | mmali | 1,000/1,000 x 64, 1.5 min + eval 0.7 min |" in block
    assert "budget: step scale 1, at most 500 steps" in block
    readme = ("intro\n" + tables.BEGIN.format("digits") + "\nold\n" + tables.END.format("digits")
              + "\ntail\n")
    suites = {"digits": suite}
    assert tables.readme_mismatches(readme, suites) == ["digits"]
    updated = tables.update_readme(readme, suites)
    assert tables.readme_mismatches(updated, suites) == []
    assert updated.startswith("intro\n") and updated.endswith("\ntail\n")
    assert tables.readme_mismatches(updated.replace("9.50", "9.60"), suites) == ["digits"]
    with pytest.raises(ValueError, match="no <!-- reproduction:digits:begin -->"):
        tables.update_readme("no markers\n", suites)
    text = tables.suite_markdown(suite)
    assert "## Runs" in text and "Wall time: training 3.0 min" in text


def test_claims_direction_ignores_collapsed_baselines():
    records = [
        _record("multimnist_digits2_mmali", _metrics("mmali", 0.4, dataset="multimnist")),
        _record("multimnist_digits2_mmali_joint",
                _metrics("mmali_joint", 0.4, dataset="multimnist")),
        _record("digits_mmali", _metrics("mmali", 0.5, joint=0.6, style=True)),
        _record("digits_mvae", _metrics("mvae", 0.3, joint=0.2)),
        # collapsed generations score high without being evidence: never the "best baseline"
        _record("digits_jmvae", _metrics("jmvae", 0.9, joint=0.95, top_share=0.99)),
    ]
    records[1]["metrics"]["latent_accuracy"]["hand"]["both"] = 0.8
    for rec in records:  # metrics.json is written with sorted keys: "joint" first
        lat = rec["metrics"]["latent_accuracy"]
        rec["metrics"]["latent_accuracy"] = {"joint": {"content": 0.5}, **lat}
    rows = {r["key"]: r for r in claims.claims_rows(records)}
    assert "view hand" in claims.claims_rows(records)[0]["claim"]
    assert rows["factorised_vs_joint"]["holds"] is False  # 0.6 vs 0.8
    assert rows["joint_coherence"]["holds"] is True
    assert "digits_mvae" in rows["joint_coherence"]["compared"]
    assert "collapsed baselines left out (highest digits_jmvae 95.00 (collapsed))" in rows[
        "joint_coherence"]["compared"]
    assert rows["content_vs_style"]["ours"] == 0.7 and rows["content_vs_style"]["holds"]
    text = tables.readme_block(_suite("claims", records))
    assert "| 97.02 vs 85.96 | 60.00 vs 80.00 |" in text and "| no (reversed) |" in text


def test_claims_need_a_difference_beyond_noise():
    assert claims.decide(0.11, 0.10, 400, 400)[0] is None  # chance vs chance
    holds, margin = claims.decide(0.30, 0.10, 400, 400)
    assert holds is True and margin == pytest.approx(2 * ((0.21 + 0.09) / 400) ** 0.5)
    assert claims.decide(0.10, 0.30, 400, 400)[0] is False
    assert claims.decide(0.3, None, 400, 400) == (None, None)


def test_readme_tables_equal_the_committed_reproduction_json():
    suites = tables.load_suites(os.path.join(REPO, "reproduction"))
    assert {"digits", "claims"} <= set(suites)
    with open(os.path.join(REPO, reproduce.RESULTS_PAGE), encoding="utf-8") as f:
        readme = f.read()
    assert tables.readme_mismatches(readme, suites) == [], (
        "README's generated tables differ from reproduction/*.json; run "
        "python -m mmali_tf.reproduce --update_readme")


def _features_config(tmp_path) -> str:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("test", 4)):
        y = np.repeat(np.arange(10), n)
        for m, flip in (("a", 1), ("b", -1)):
            arrays[f"{m}_{split}"] = (np.eye(10)[y][:, ::flip]
                                      + 0.1 * rng.standard_normal((len(y), 10))
                                      ).astype(np.float32)
        arrays[f"label_{split}"] = y
    np.savez(tmp_path / "f.npz", **arrays)
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(f"# tiny MVAE\n--dataset=features\n--features_file={tmp_path / 'f.npz'}\n"
                   f"--cache_dir={tmp_path / 'cache'}\n--model=mvae\n--latent_dim=4\n"
                   "--style_dim=0\n--batch_size=16\n--max_steps=4\n--log_every=2\n"
                   "--jit_compile=false\n--ema_decay=0\n")
    return str(cfg)


def test_run_one_trains_evaluates_then_reruns_without_work(tmp_path):
    spec = RunSpec("tiny", _features_config(tmp_path))
    budget = runner.Budget(step_scale=0.5, num_samples=40)
    first = runner.run_one(spec, str(tmp_path / "runs"), budget)
    assert first["status"] == "ok", first.get("error")
    assert (first["steps"], first["config_steps"], first["target_steps"]) == (2, 4, 2)
    assert first["metrics"]["meta"]["step"] == 2 and first["eval_wall_s"] > 0
    assert first["train_wall_s"] > 0 and len(first["flags_sha256"]) == 64
    log = tmp_path / "runs" / "logs" / "tiny.train.log"
    launches = log.read_text().count("$ ")
    again = runner.run_one(spec, str(tmp_path / "runs"), budget)
    assert log.read_text().count("$ ") == launches
    assert again["eval_wall_s"] == first["eval_wall_s"]
    assert again["metrics"] == first["metrics"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmali_tf.reproduce", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_errors_and_readme_check(tmp_path):
    proc = _cli("--suite=nope")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--suite=nope" in proc.stderr
    proc = _cli("--check_readme")
    assert proc.returncode == 0, proc.stderr[-800:]
    bad = tmp_path / "README.md"
    with open(os.path.join(REPO, reproduce.RESULTS_PAGE), encoding="utf-8") as f:
        text = f.read()
    start = text.index(tables.BEGIN.format("digits"))  # edit a number inside the block
    bad.write_text(text[:start] + text[start:].replace("(collapsed)", "(fine)", 1))
    proc = _cli("--check_readme", f"--readme={bad}")
    assert proc.returncode == 1 and "--update_readme" in proc.stderr
    proc = _cli("--update_readme", f"--readme={tmp_path / 'missing.md'}")
    assert proc.returncode == 2 and "missing.md" in proc.stderr


def test_suite_json_round_trips(tmp_path):
    suite = _suite("digits", [_record("digits_mvae", _metrics("mvae", 0.2))])
    path = tmp_path / "digits.json"
    path.write_text(json.dumps(suite))
    assert tables.load_suites(str(tmp_path)) == {"digits": copy.deepcopy(suite)}
