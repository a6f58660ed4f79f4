"""The default-data study suite: its runs, its tables and its target checks."""

from __future__ import annotations

import copy
import os

from test_reproduce import REPO, _metrics, _record, _suite

from mmali_tf.repro import study, tables
from mmali_tf.repro.suites import suite_runs


def test_study_runs_share_the_shipped_runs_and_change_one_thing_each():
    runs = {s.name: s for s in suite_runs("digits_study", REPO)}
    digits = {s.name: s for s in suite_runs("digits", REPO)}
    for model in study.STUDY_MODELS:
        shipped = runs[f"digits_{model}"]
        assert shipped == digits[f"digits_{model}"]     # one run dir serves both suites
        assert f"study_{model}_previous" in runs
        assert model == "mmvae" or f"study_{model}_half_steps" in runs
    assert "study_mmali_paper_rec_equal_lr" in runs and "study_mvae_paper_rec_equal_lr" not in runs
    for name, spec in runs.items():
        if name.startswith("study_") and not name.endswith("_previous"):
            shipped = runs["digits_" + name.split("_")[1]].config_steps()
            assert spec.config_steps() == shipped // 2, name       # every change at half steps
        if name.startswith("study_"):
            assert spec.eval_flags == study.VARIANT_EVAL_FLAGS and spec.overrides


def _study_records(print_probe: float, cross: float) -> list[dict]:
    mmali = _metrics("mmali", cross, joint=0.7, style=True)
    mmali["latent_accuracy"]["hand"] = {"both": 0.9, "content": 0.8, "style": 0.3}
    mmali["latent_accuracy"]["print"] = {"both": print_probe, "content": 0.7, "style": 0.5}
    records = [_record("digits_mmali", mmali, 1500, 1500)]
    for model in study.VAE_MODELS:
        m = _metrics(model, 0.5, joint=0.3)
        m["latent_accuracy"]["hand"]["both"] = 0.85
        records.append(_record(f"digits_{model}", m, 1000, 1000))
    collapsed = _metrics("mvae", 0.5, joint=0.3, top_share=0.9)
    records.append(_record("study_mvae_uniform_colours", collapsed, 1000, 1000))
    return records


def test_targets_are_checked_on_the_shipped_runs():
    rows = study.targets_rows(_study_records(print_probe=0.65, cross=0.7))
    by = {(r["model"], r["target"]): r for r in rows}
    assert by[("mmali", "latent probe print >= 60")]["met"] is True
    assert by[("mmali", "cross print->hand >= 60")]["met"] is False      # 0.7 / 2
    gap = by[("mmali", "print content probe - style probe >= 30 points")]
    assert abs(gap["value"] - 20.0) < 1e-9 and gap["met"] is False
    assert by[("mvae", "latent probe print >= 50")]["met"] is True
    joint = [r for r in rows if r["target"].startswith("joint coherence above")][0]
    assert abs(joint["value"] - 40.0) < 1e-9 and joint["met"] is True     # 70 - 30
    worse = study.targets_rows(_study_records(print_probe=0.55, cross=0.7))
    assert {(r["model"], r["target"]): r for r in worse}[
        ("mmali", "latent probe print >= 60")]["met"] is False


def test_a_collapsed_shipped_baseline_fails_except_where_its_paper_expects_it():
    records = _study_records(0.65, 0.7)
    mvae = copy.deepcopy(records[1]["metrics"])
    mvae["prediction_stats"]["cross/print->hand"]["top_share"] = 0.9     # allowed for MVAE
    records[1] = _record("digits_mvae", mvae, 1000, 1000)
    row = [r for r in study.targets_rows(records) if r["model"] == "mvae"
           and r["target"].startswith("no collapsed")][0]
    assert row["met"] is True
    mvae["prediction_stats"]["joint/print"]["top_share"] = 0.9
    records[1] = _record("digits_mvae", mvae, 1000, 1000)
    row = [r for r in study.targets_rows(records) if r["model"] == "mvae"
           and r["target"].startswith("no collapsed")][0]
    assert row["met"] is False and "joint/print" in row["unit"]


def test_study_block_renders_targets_and_one_table_per_model():
    block = tables.readme_block(_suite("digits_study", _study_records(0.65, 0.7)))
    assert "| mmali | latent probe print >= 60 | 65.0 % | yes |" in block
    assert "| mmali | cross print->hand >= 60 | 35.0 % | **no** |" in block
    assert "`mvae`:" in block and "**shipped** `configs/digits_mvae.cfg`" in block
    assert "| dataset version 1 colours (uniform RGB, both polarities) | 1,000 x 64 |" in block
    assert "| 80.0 / 30.0 | 70.0 / 50.0 |" in block                      # content / style
    assert "(c)" in block                                                 # collapsed variant


def test_final_grids_of_the_main_run_are_copied_for_readme(tmp_path):
    from mmali_tf.repro import runner

    samples = tmp_path / "runs" / "digits_mmali" / "samples"
    samples.mkdir(parents=True)
    for step, modality in ((500, "hand"), (1500, "hand"), (1500, "print"), (1000, "print")):
        (samples / f"step_{step:07d}_{modality}.png").write_bytes(f"{step}{modality}".encode())
    out = tmp_path / "reproduction"
    written = runner.copy_final_grids(str(tmp_path / "runs"), "digits_mmali", str(out))
    assert [os.path.basename(p) for p in written] == ["digits_mmali_hand.png",
                                                      "digits_mmali_print.png"]
    assert (out / "digits_mmali_hand.png").read_bytes() == b"1500hand"
    assert (out / "digits_mmali_print.png").read_bytes() == b"1500print"
    assert runner.copy_final_grids(str(tmp_path / "runs"), "missing", str(out)) == []
