"""The claims table: groups over seeds, error bars, the verdict rule and the chart."""

from __future__ import annotations

import numpy as np
import pytest

from mmali_tf.repro import claims, stats, tables

N_TEST = 300


def _record(group: str, seed: int, model: str, probe: float, cross: float = 0.5,
            joint: float = 0.5, content: float | None = None, steps: int = 1000,
            collapsed: bool = False, classifier: float = 0.97, dataset: str = "d") -> dict:
    """A run record with per-input replicates drawn at the given accuracies."""
    rng = np.random.default_rng([seed, len(group), int(1000 * probe)])
    ids = np.arange(N_TEST)

    def number(p: float) -> dict:
        return stats.run_replicates(rng.random(N_TEST) < p, ids, 60)

    per_input = {"latent/a/both": number(probe), "latent/b/both": number(probe),
                 "joint/all": number(joint), "cross/a->b": number(cross),
                 "cross/b->a": number(cross)}
    part = {"both": per_input["latent/a/both"]["value"]}
    if content is not None:
        per_input["latent/a/content"] = number(content)
        per_input["latent/a/style"] = number(0.12)
        part.update(content=per_input["latent/a/content"]["value"],
                    style=per_input["latent/a/style"]["value"])
    share = 0.9 if collapsed else 0.2
    metrics = {"latent_accuracy": {"joint": {"both": 0.5}, "a": part, "b": {"both": 0.5}},
               "classifier_accuracy": {"a": classifier, "b": 0.99},
               "prediction_stats": {"joint/a": {"top_share": share, "top_class": 1,
                                                "entropy_bits": 1.0}},
               "meta": {"dataset": dataset, "model": model, "classifier_threshold": 0.95}}
    return {"name": f"{group}_s{seed}", "overrides": [f"--seed={seed}"], "model": model,
            "dataset": dataset, "status": "ok", "steps": steps, "config_steps": 1000,
            "batch_size": 64, "train_wall_s": 60.0, "ms_per_step": 60.0,
            "metrics": metrics, "per_input": per_input}


def _rows(records):
    return {(r["key"], r["claim"].split("(")[1].split(",")[0]): r
            for r in claims.claims_rows(records)}


def test_verdict_rule_by_hand():
    assert claims.verdict(0.2, 0.05, [3, 3], [], []) == (
        "holds", "difference +20.0 > 2 SE = 10.0")
    assert claims.verdict(-0.2, 0.05, [3, 4], [], [])[0] == "does not hold"
    assert claims.verdict(0.05, 0.05, [3, 3], [], []) == (
        "undecided", "|difference| 5.0 <= 2 SE = 10.0")
    assert claims.verdict(0.2, 0.05, [1, 3], [], ["g"]) == (
        "undecided", "1 seed(s) < 3; budget (g below its config's steps)")
    assert claims.verdict(0.2, 0.05, [3, 3], ["x probe 15.0 % < 20 %"], []) == (
        "undecided", "x probe 15.0 % < 20 %")
    assert claims.verdict(None, None, [3, 3], [], []) == ("undecided", "no error bar")


def test_claims_over_seeds_with_floors_and_budget():
    records = []
    for seed in range(3):
        records += [_record("rot_mmali", seed, "mmali", 0.8, content=0.8, classifier=0.89),
                    _record("rot_mmali_joint", seed, "mmali_joint", 0.4),
                    _record("short_mmali", seed, "mmali", 0.8, steps=500),
                    _record("short_mmali_joint", seed, "mmali_joint", 0.4, steps=500),
                    _record("pair_mmali", seed, "mmali", 0.8, cross=0.7, joint=0.6,
                            classifier=0.89),
                    _record("pair_mvae", seed, "mvae", 0.8, cross=0.5, joint=0.3),
                    # scores higher but collapsed: never the best baseline
                    _record("pair_mmvae", seed, "mmvae", 0.8, cross=0.9, joint=0.9,
                            collapsed=seed == 1),
                    _record("pair_mopoe", seed, "mopoe", 0.15, cross=0.6, joint=0.5)]
    records.append(_record("one_mmali", 0, "mmali", 0.8))
    records.append(_record("one_mmali_joint", 0, "mmali_joint", 0.3))
    rows = _rows(records)
    fac = rows[("factorised_vs_joint", "rot")]
    assert fac["verdict"] == "holds" and fac["ours"][0] == pytest.approx(
        np.mean([r["per_input"]["latent/a/both"]["value"] for r in records
                 if r["name"].startswith("rot_mmali_s")]))
    assert 0 < fac["difference_se"] < 0.06 and fac["labels"] == ["factorised", "joint critic"]
    assert fac["note"] == ""   # a probe claim: the coherence classifiers play no part
    short = rows[("factorised_vs_joint", "short")]
    assert short["verdict"] == "undecided" and short["reason"].startswith(
        "budget (short_mmali, short_mmali_joint below")
    assert "1 seed(s) < 3" in rows[("factorised_vs_joint", "one")]["reason"]
    joint = rows[("joint_coherence", "pair)")]
    assert joint["labels"] == ["mmALI", "mvae"] and joint["verdict"] == "holds"
    assert "below the floor: pair_mmvae, pair_mopoe" in joint["note"]
    assert "coherence classifiers a 89.0 % < 95 %" in joint["note"]
    content = [r for r in claims.claims_rows(records) if r["key"] == "content_vs_style"]
    assert [r["claim"] for r in content] == ["3. content > style code (rot_mmali, a probe)"]
    assert content[0]["verdict"] == "holds"


def test_collapsed_and_weak_models_are_undecided():
    records = []
    for seed in range(3):
        records += [_record("c_mmali", seed, "mmali", 0.6, collapsed=seed == 2),
                    _record("c_mmali_joint", seed, "mmali_joint", 0.15)]
    row = claims.claims_rows(records)[0]
    assert row["verdict"] == "undecided"
    assert "c_mmali collapsed: joint/a (1/3 seeds)" in row["reason"]
    assert "c_mmali_joint probe" in row["reason"] and "< 20 %" in row["reason"]


def test_claims_markdown_and_chart(tmp_path):
    records = [_record("g_mmali", s, "mmali", 0.8, content=0.7, steps=10) for s in range(3)]
    text = claims.claims_markdown(claims.claims_rows(records))
    assert text.startswith("Verdict rule: **holds** when the difference exceeds 2 standard")
    assert "| 3. content > style code (g_mmali, a probe) | 96.61 vs 23.56 | content " in text
    assert "**undecided**: budget (g_mmali below its config's steps)" in text
    assert "g_mmali: 10 of 1,000 steps x 3 seed(s)" in text
    suite = {"suite": "claims", "runs": records}
    tables.suite_chart(suite, str(tmp_path / "claims.png"))
    assert (tmp_path / "claims.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _with_curve(record: dict, joint_by_step: dict[int, float], seconds_per_step: float) -> dict:
    """`record` with a step curve (joint coherence per step; cross at 0.5) and its timing."""
    points = [{"step": step, "joint": joint, "cross": {"a->b": 0.5, "b->a": 0.5},
               "cross_mean": 0.5, "collapsed": []} for step, joint in joint_by_step.items()]
    return {**record, "curve": {"curve_every": 500, "num_samples": 100, "points": points,
                                "skipped": []},
            "train_wall_s": seconds_per_step * record["steps"]}


def test_matched_wall_time_reads_the_curve_at_the_baselines_training_time():
    base = [{**_record("p_mmvae", s, "mmvae", 0.6, joint=0.3), "train_wall_s": 1200.0}
            for s in range(3)]
    curve = {500: 0.20, 1000: 0.62, 1500: 0.70, 2000: 0.75}
    one = [_with_curve(_record("p_mmali", 0, "mmali", 0.6, steps=2000), curve, 1.0)]
    (joint, *_), = [claims.matched_time_rows(base + one)]
    # 1,200 s of mmALI training (1 s/step) reach step 1,000 of its curve, not 1,500
    assert (joint["measure"], joint["baseline"], joint["steps"]) == (
        "joint coherence (p)", "mmvae", [1000])
    assert joint["ours"][0] == pytest.approx(0.62)
    assert joint["verdict"] == "undecided" and "1 seed(s) < 3" in joint["reason"]
    # three seeds whose curves sit far above the baseline at that time: holds
    three = [_with_curve(_record("p_mmali", s, "mmali", 0.6, steps=2000),
                         {**curve, 1000: 0.60 + 0.01 * s}, 1.0) for s in range(3)]
    joint = claims.matched_time_rows(base + three)[0]
    assert joint["verdict"] == "holds", joint["reason"]
    text = claims.matched_time_markdown(claims.matched_time_rows(base + three))
    assert "| joint coherence (p) | mmvae | 20.0 min | 1,000 | 61.0 +- 0.6 |" in text
    # a slower mmALI (2 s/step) has reached only step 500 at 1,200 s: reversed
    slow = [_with_curve(_record("p_mmali", s, "mmali", 0.6, steps=2000),
                        {**curve, 500: 0.10 + 0.01 * s}, 2.0) for s in range(3)]
    assert claims.matched_time_rows(base + slow)[0]["verdict"] == "does not hold"
    # slower still (3 s/step): step 500 comes after the 20 min, so it is read as an upper
    # bound, which can refute the claim (0.20 < 0.30) ...
    slower = [_with_curve(r, curve, 3.0) for r in slow]
    row = claims.matched_time_rows(base + slower)[0]
    assert (row["steps"], row["late"], row["ours"][0]) == ([500], 3, pytest.approx(0.20))
    assert row["verdict"] == "does not hold"
    assert row["reason"].endswith("3 seed(s) read at their first curve point, reached after "
                                  "20.0 min: an upper bound on mmALI at that time")
    # ... but not confirm it
    high = [_with_curve(r, {**curve, 500: 0.9 + 0.01 * i}, 3.0) for i, r in enumerate(slow)]
    row = claims.matched_time_rows(base + high)[0]
    assert (row["verdict"], row["late"]) == ("undecided", 3)
    assert row["reason"].startswith("3 seed(s) read at their first curve point")
    # no curve, no row
    assert claims.matched_time_rows(base + [_record("p_mmali", 0, "mmali", 0.6)]) == []
