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
from mmali_tf.repro import claims, curves, runner, study, tables, targets
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


def _record(name: str, metrics: dict, steps: int = 500, config_steps: int = 1000,
            load: float | None = 1.0) -> dict:
    return {"name": name, "config": f"configs/{name}.cfg", "overrides": [],
            "model": metrics["meta"]["model"], "dataset": metrics["meta"]["dataset"],
            "batch_size": 64, "config_steps": config_steps, "target_steps": steps,
            "steps": steps, "train_wall_s": 90.0, "ms_per_step": 150.0, "protocol": "clean",
            "status": "ok", "flags_sha256": "ab" * 32, "metrics": metrics, "train_load": load}


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
    assert digits == [n for n in shipped if not n.startswith("digits_text_")]
    text = [s.name for s in suite_runs("digits_text", REPO)]
    assert sorted(text) == [n for n in shipped if n.startswith("digits_text_")]
    assert text[:2] == ["digits_text_mmjsd", "digits_text_mmali"]
    claim_runs = {s.name: s for s in suite_runs("claims", REPO)}
    assert set(claim_runs) == {f"{g}_s{seed}" for seed in (0, 1, 2) for g in (
        "fashion_rotated2_mmali", "fashion_rotated2_mmali_joint", "fashion_rotated3_mmali",
        "fashion_rotated3_mmali_joint", "fashion_pair_mmali",
        "fashion_pair_mvae", "fashion_pair_mmvae", "fashion_pair_mmjsd", "fashion_pair_mopoe")}
    flags = claim_runs["fashion_rotated2_mmali_joint_s1"].config_flags()
    assert (flags["dataset"], flags["num_views"], flags["model"], flags["seed"]) == (
        "fashion_rotated", "2", "mmali_joint", "1")
    factorised = claim_runs["fashion_rotated2_mmali_s1"].config_flags()
    differ = {k for k in set(flags) | set(factorised) if flags.get(k) != factorised.get(k)}
    assert differ == {"model", "run_dir", "lambda_unimodal"}   # the critic only
    assert claim_runs["fashion_rotated3_mmali_s0"].config_flags()["num_views"] == "3"
    assert claim_runs["fashion_rotated2_mmali_s0"].overrides == ("--seed=0",)
    assert claim_runs["fashion_pair_mopoe_s2"].config_flags()["dataset"] == "fashion_pair"
    with pytest.raises(ValueError, match="unknown suite 'x'"):
        suite_runs("x", REPO)


@pytest.mark.parametrize("suite", ["digits", "claims", "mnist_svhn", "digits_study",
                                   "digits_text"])
def test_every_suite_run_is_a_valid_training_config(suite):
    """Each run's config + overrides passes the training flags' parsers and dataset-flag
    check."""
    from mmali_tf import train

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
    # the budget line says what ran, not the harness's cap
    assert ("budget: 1 of 2 runs at their configs' full steps; the others: `digits_mvae` 500 "
            "of 1,000;") in block and "at most 500 steps" not in block
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


def _curve(*values: tuple[int, float, float], collapsed: tuple[str, ...] = ()) -> dict:
    """A record's `curve`: (step, joint, mean cross) per point, cross the same both ways."""
    return {"curve_every": 1500, "num_samples": 2000, "skipped": [], "points": [
        {"step": s, "joint": j, "cross": {"hand->print": c, "print->hand": c},
         "cross_mean": c, "collapsed": list(collapsed) if s == values[0][0] else []}
        for s, j, c in values]}


def test_passing_step_on_hand_made_curves():
    def pts(*pairs):
        return [{"step": s, "cross_mean": v} for s, v in pairs]

    below_then_above = curves.passing_step(pts((1500, 0.2), (3000, 0.4), (4500, 0.6)),
                                           pts((1500, 0.5), (3000, 0.5), (4500, 0.5), (6000, 0.9)))
    assert below_then_above == {"steps": [1500, 3000, 4500], "passes_at": 4500,
                                "ahead_from_start": False, "ahead_at_end": True}
    # ahead at the start, falls back (a tie is not ahead), passes again: the first pass counts
    again = curves.passing_step(pts((1, 0.6), (2, 0.5), (3, 0.7), (4, 0.4), (5, 0.9)),
                                pts((1, 0.5), (2, 0.5), (3, 0.5), (4, 0.5), (5, 0.5)))
    assert (again["passes_at"], again["ahead_from_start"]) == (3, True)
    never = curves.passing_step(pts((1, 0.1), (2, 0.2)), pts((1, 0.3), (2, 0.3), (3, 0.0)))
    assert (never["passes_at"], never["ahead_at_end"]) == (None, False)
    assert curves.passing_step(pts((1, 0.9)), pts((2, 0.1)))["steps"] == []


def test_curve_table_and_passing_lines_are_rendered_from_the_records(tmp_path):
    mmali = {**_record("digits_mmali", _metrics("mmali", 0.5), 3000, 3000),
             "curve": _curve((1500, 0.30, 0.40), (3000, 0.35, 0.62), collapsed=("joint/hand",))}
    mmjsd = {**_record("digits_mmjsd", _metrics("mmjsd", 0.6), 4500, 5000),
             "curve": _curve((1500, 0.50, 0.55), (3000, 0.52, 0.60), (4500, 0.55, 0.61))}
    plain = _record("digits_mvae", _metrics("mvae", 0.3))
    suite = _suite("digits", [plain, mmali, mmjsd])
    block = tables.readme_block(suite)
    assert "| step | `digits_mmali` | `digits_mmjsd` |" in block
    assert "chart: `reproduction/digits_curve.png`" in block
    assert "| 1,500 | 30.00 (collapsed) / 40.00 | 50.00 / 55.00 |" in block
    assert "| 4,500 | - | 55.00 / 61.00 |" in block
    assert ("- `digits_mmali` vs `digits_mmjsd`: step 1,500: `digits_mmjsd` ahead; "
            "`digits_mmali` passes `digits_mmjsd` at step 3,000; step 3,000: `digits_mmali` "
            "ahead") in block
    assert "`digits_mvae`" not in block.split("Step curve")[1]
    readme = tables.update_readme(tables.BEGIN.format("digits") + "\n" +
                                  tables.END.format("digits") + "\n", {"digits": suite})
    assert tables.readme_mismatches(readme, {"digits": suite}) == []
    reproduce.write_suite(suite, str(tmp_path))
    assert (tmp_path / "digits_curve.png").stat().st_size > 0
    assert "Step curve" in (tmp_path / "digits.md").read_text()
    # seeds of one config are not compared with each other
    seed = {**mmali, "name": "digits_mmali_s1"}
    assert curves.passing_lines([mmali, seed]) == []
    assert len(curves.passing_lines([mmali, seed, mmjsd])) == 2
    # a suite without curves renders as before (no curve text, no curve chart)
    assert "Step curve" not in tables.readme_block(_suite("digits", [plain]))


def test_times_taken_under_load_are_marked_in_every_table():
    runs = [_record("digits_mvae", _metrics("mvae", 0.5), 1000, load=1.2),
            _record("digits_mmjsd", _metrics("mmjsd", 0.5), 1000, load=7.25),
            _record("digits_mmvae", _metrics("mmvae", 0.5), 1000, load=None)]
    block = tables.readme_block(_suite("digits", runs))
    assert "| `digits_mvae` | mvae | 1,000/1,000 x 64, 1.5 min | 150 |" in block
    assert "| `digits_mmjsd` | mmjsd | 1,000/1,000 x 64, 1.5 min (load 7.2) | 150* |" in block
    assert "1.5 min (load not recorded) | 150* |" in block
    assert "budget: every run (3) at its config's full steps" in block
    targets = {t["model"]: t for t in study.targets_rows(runs) if "time" in t["target"]}
    assert targets["mvae"]["met"] is True
    assert targets["mmjsd"]["met"] is None and targets["mmvae"]["met"] is None
    table = study.targets_markdown(runs)
    assert "| mmjsd | training time <= 20 min on an idle machine | 1.5 min (load 7.2) | - |" in table
    assert "| 1,000 x 64 | 1.5 (load 7.2) |" in study.study_markdown(runs)


def test_digits_targets_say_met_or_missed_with_what_was_measured():
    good = _metrics("mvae", 0.5)
    good["latent_accuracy"] = {"hand": {"both": 0.9}, "print": {"both": 0.6}}
    styled = _metrics("mmali", 0.5, style=True)  # content 70, style 20: gap 50 points
    styled["latent_accuracy"]["hand"]["both"] = 0.9
    runs = [_record("digits_mvae", good, 1000, load=1.0),
            _record("digits_mmali_long", _metrics("mopoe", 0.095, top_share=0.9)),
            _record("digits_mmali", styled, 1000, load=3.0)]
    table = tables.readme_block(_suite("digits", runs))
    assert "| `digits_mvae` | met | - | - |" in table
    assert ("| `digits_mmali_long` | **missed** | full steps (500 of 1,000); latent hand >= 85 "
            "(60.0); no collapsed joint/cross set (joint/hand, joint/print, cross/hand->print, "
            "cross/print->hand) |") in table
    assert targets.NEXT_LEVER["digits_mmali_long"] in table
    assert "| `digits_mmali` | met (not judged: idle training time <= 20 min) |" in table
    checks = {t: (met, v) for t, met, v in targets.config_checks(runs[2])}
    assert checks["hand content - style >= 20 points"] == (True, "50.0")


def test_text_targets_hold_mmjsd_and_mmali_to_coherence_into_and_out_of_text():
    def run(name: str, model: str, to_text: float, from_text: float, steps: int = 1000) -> dict:
        m = _metrics(model, 0.5, dataset="digits_text")
        m["cross_coherence"].update({"hand->text": to_text, "text->hand": from_text})
        return _record(name, m, steps)

    runs = [run("digits_text_mmjsd", "mmjsd", 0.9755, 0.997),
            run("digits_text_mmali", "mmali", 0.6895, 0.8575, steps=600),
            run("digits_text_mvae", "mvae", 0.3, 0.2)]
    table = tables.readme_block(_suite("digits_text", runs))
    assert "hand->text and text->hand coherence >= 80 for mmjsd, mmali" in table
    assert "| `digits_text_mmjsd` | met | - | - |" in table
    assert ("| `digits_text_mmali` | **missed** | full steps (600 of 1,000); hand->text >= 80 "
            "(69.0) |") in table
    assert "`digits_text_mvae` |" not in table.split("Targets")[1]   # no target for MVAE
    assert targets.targets_markdown(runs[2:], "digits_text").count("\n") == 2   # header only


def test_load_sampler_and_the_runs_load_record(tmp_path):
    loads = iter([0.5, 3.0, 2.5, 2.0, 2.0, 2.0, 2.0, 2.0])
    with runner.LoadSampler(interval=0.01, read=lambda: (next(loads), 0.0, 0.0)) as sampler:
        while len(sampler.samples) < 3:
            pass
    summary = sampler.summary()
    assert summary["load_max"] == 3.0 and summary["samples"] >= 4
    assert summary["load_mean"] == pytest.approx(sum(sampler.samples) / len(sampler.samples),
                                                 abs=0.01)
    assert runner.train_load(str(tmp_path)) is None
    (tmp_path / runner.LOAD_FILE).write_text(json.dumps({"segments": [
        {"to_step": 100, "load_mean": 0.9}, {"to_step": 500, "load_mean": 4.0}]}))
    assert runner.train_load(str(tmp_path)) == 4.0


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
    assert first["train_load"] is not None and first["train_load"] >= 0  # sampled while training
    log = tmp_path / "runs" / "logs" / "tiny.train.log"
    launches = log.read_text().count("$ ")
    again = runner.run_one(spec, str(tmp_path / "runs"), budget)
    assert log.read_text().count("$ ") == launches
    assert again["eval_wall_s"] == first["eval_wall_s"]
    assert again["metrics"] == first["metrics"]


def test_run_one_with_a_curve_keeps_and_scores_the_curve_steps(tmp_path):
    spec = RunSpec("tiny", _features_config(tmp_path), ("--checkpoint_every=1",))
    budget = runner.Budget(num_samples=40, curve_every=2)
    record = runner.run_one(spec, str(tmp_path / "runs"), budget)
    assert record["status"] == "ok", record.get("error")
    assert record["overrides"] == ["--checkpoint_every=1", "--keep_checkpoint_every=2"]
    curve = record["curve"]
    assert [p["step"] for p in curve["points"]] == [2, 4] and curve["curve_every"] == 2
    assert curve["num_samples"] == 40 and curve["skipped"] == []
    # the curve's last step is the evaluated one: same joint coherence
    assert curve["points"][-1]["joint"] == record["metrics"]["joint_coherence"]["all"]
    # a rerun starts no curve child and keeps the curve
    log = tmp_path / "runs" / "logs" / "tiny.curve.log"
    launches = log.read_text().count("$ ")
    again = runner.run_one(spec, str(tmp_path / "runs"), budget)
    assert again["curve"] == curve and log.read_text().count("$ ") == launches


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


def test_runs_filter_keeps_the_other_records(tmp_path):
    from mmali_tf import reproduce

    specs = [RunSpec(n, "c.cfg") for n in ("a_s0", "a_s1", "b_s0")]
    assert [s.name for s in reproduce.select_runs(specs, "^a_")] == ["a_s0", "a_s1"]
    assert reproduce.select_runs(specs, "") == specs
    with pytest.raises(ValueError, match=r"--runs=zz matches no run of the suite \(runs: a_s0"):
        reproduce.select_runs(specs, "zz")
    with pytest.raises(ValueError, match=r"--runs=\(: not a regular expression"):
        reproduce.select_runs(specs, "(")
    old = {"runs": [{"name": "b_s0", "budget_label": "at most 300 steps"},
                    {"name": "gone", "budget_label": "x"},
                    {"name": "a_s0", "budget_label": "old"}]}
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(old))
    out = {"runs": [{"name": "a_s0", "budget_label": "at most 500 steps"}],
           "budget": {"label": "at most 500 steps"}}
    reproduce.merge_previous(out, specs, str(path))
    assert [r["name"] for r in out["runs"]] == ["a_s0", "b_s0"]   # suite order, new wins
    assert out["runs"][0]["budget_label"] == "at most 500 steps"
    assert out["budget"]["label"] == "per run, one of: at most 300 steps; at most 500 steps"
    assert out["not_run"] == ["a_s1"]   # the suite's run with no record, named in the budget
    line = tables.budget_line(out["runs"][:0], out["not_run"])
    assert line == "every run (0) at its config's full steps; not run yet (1): `a_s1`"
    first = {"runs": [{"name": "b_s0"}], "budget": {"label": "x"}}   # no previous JSON
    reproduce.merge_previous(first, specs, str(tmp_path / "none.json"))
    assert first["not_run"] == ["a_s0", "a_s1"]
    # a kept record whose config has grown since shows the config's current steps
    cfg = tmp_path / "b.cfg"
    cfg.write_text("--max_steps=5000\n")
    path.write_text(json.dumps({"runs": [{"name": "b_s0", "config_steps": 500, "steps": 500}]}))
    out = {"runs": [], "budget": {"label": "x"}}
    reproduce.merge_previous(out, [RunSpec("b_s0", str(cfg))], str(path))
    assert (out["runs"][0]["steps"], out["runs"][0]["config_steps"]) == (500, 5000)


def test_tables_add_fid_columns_when_a_run_has_sample_quality():
    old = _record("digits_mvae", _metrics("mvae", 0.5))
    new = _record("digits_mmali", {**_metrics("mmali", 0.5),
                                   "fid": {"cross/hand->print": 10.0, "cross/print->hand": 20.0,
                                           "joint/hand": 3.0, "joint/print": 4.0,
                                           "self/hand": 1.0}})
    assert "FID" not in tables.runs_table([old])   # committed evaluations render unchanged
    table = tables.runs_table([old, new])
    header = table.splitlines()[0]
    assert header.endswith("| FID cross | FID joint |")
    assert table.splitlines()[2].endswith("| - | - |")
    assert table.splitlines()[3].endswith("| 15.0 | 3.5 |")
    assert tables.FID_LEGEND in table


def test_contrastive_comparison_sets_each_variant_beside_its_base_of_the_same_data():
    from mmali_tf.repro import contrastive

    names = [s.name for s in suite_runs("digits_contrastive", REPO)]
    assert names[:3] == ["digits_pairs20_mvae", "digits_pairs20_ci_mvae", "digits_pairs20_cc_mvae"]
    assert len(names) == 9
    assert all(s.overrides == ("--percentage=0.2",) and s.config_flags()["percentage"] == "0.2"
               for s in suite_runs("digits_contrastive", REPO))
    runs = [_record("digits_pairs20_mmvae", _metrics("mmvae", 0.5), 1000),
            _record("digits_pairs20_ci_mmvae", _metrics("ci_mmvae", 0.6), 1000),   # cross +10/+5
            _record("digits_pairs20_cc_mmvae", _metrics("cc_mmvae", 0.4, joint=0.2), 1000),
            _record("digits_pairs20_ci_mvae", _metrics("ci_mvae", 0.5), 500),      # no base run
            _record("digits_pairs20_jmvae", _metrics("jmvae", 0.5), 1000),
            _record("digits_pairs20_ci_jmvae", _metrics("ci_jmvae", 0.9), 500)]   # short
    rows = {r["run"]: r for r in contrastive.comparison_rows(runs)}
    assert set(rows) == {"digits_pairs20_ci_mmvae", "digits_pairs20_cc_mmvae",
                         "digits_pairs20_ci_jmvae"}
    ci = rows["digits_pairs20_ci_mmvae"]
    assert ci["diffs"] == pytest.approx([0.0, 0.0, 0.0, 10.0, 5.0])
    assert ci["mean_diff"] == pytest.approx(3.0) and ci["verdict"] == "beats"
    cc = rows["digits_pairs20_cc_mmvae"]   # joint -10, cross -10 and -5: mean -5
    assert cc["mean_diff"] == pytest.approx(-5.0) and cc["verdict"] == "loses"
    assert rows["digits_pairs20_ci_jmvae"]["verdict"] == "not comparable"
    table = tables.readme_block(_suite("digits_contrastive", runs))
    assert "Contrastive variants vs their base models, 20 % of each class before pairing" in table
    assert ("| `digits_pairs20_ci_mmvae` | `digits_pairs20_mmvae` | 1,000/1,000, 1,000/1,000 | "
            "60.0 (+0.0) | 60.0 (+0.0) | 30.0 (+0.0) | 60.0 (+10.0) | 30.0 (+5.0) | +3.0 | beats |"
            ) in table
    assert ("| `digits_pairs20_ci_jmvae` | `digits_pairs20_jmvae` | 500/1,000, 1,000/1,000 |"
            in table)
    matched = contrastive.comparison_rows(runs[:1] + [_record(
        "digits_pairs20_ci_mmvae", _metrics("ci_mmvae", 0.52), 1000)])
    assert matched[0]["verdict"] == "matches"
    assert contrastive.comparison_markdown(runs[3:4], "all pairs") == ""


def test_time_target_under_load_is_missed_only_when_the_idle_benchmark_alone_exceeds_it(tmp_path):
    bench = tmp_path / "train_step_digits_idle.json"
    bench.write_text(json.dumps({"rows": [
        {"model": "ci_mvae", "setup": "digits", "batch": 64, "jit": True, "ms": 300.0},
        {"model": "ci_mvae", "setup": "digits", "batch": 64, "jit": False, "ms": 250.0},
        {"model": "mvae", "setup": "digits", "batch": 64, "jit": False, "ms": 60.0},
        {"model": "mvae", "setup": "mnist_svhn", "batch": 64, "jit": False, "ms": 1.0}]}))
    idle = targets.idle_step_ms(str(bench))
    assert idle == {("ci_mvae", 64): 250.0, ("mvae", 64): 60.0}
    assert targets.idle_step_ms(str(tmp_path / "missing.json")) == {}

    def time_check(model: str, load: float) -> tuple:
        rec = _record(f"digits_{model}", _metrics(model, 0.5), 5000, 5000, load=load)
        return next(c for c in targets.config_checks(rec, idle) if "time" in c[0])

    # 250 ms x 5,000 steps = 20.8 min > 20 even on an idle machine
    assert time_check("ci_mvae", 2.0) == (
        "idle training time <= 20 min", False,
        "1.5 min (load 2.0); idle step benchmark x steps: at least 20.8 min")
    assert time_check("mvae", 2.0)[1] is None          # 5.0 min: cannot tell under load
    assert time_check("mvae", 1.0)[1] is True          # an idle run is judged on its own time
    assert time_check("mmvae", 2.0) == ("idle training time <= 20 min", None, "1.5 min (load 2.0)")
    long_run = _record("digits_ci_mvae_long", _metrics("ci_mvae", 0.5), 5000, 5000, load=2.0)
    assert not any("time" in c[0] for c in targets.config_checks(long_run, idle))
