"""The `polydigits` reproduction suite: every shipped five-modality config runs, and its table
is the compact M=5 layout (latent mean and range, subset coherence by input-subset size,
joint coherence, collapse marks), rendered from metrics.json and kept in README."""

from __future__ import annotations

import os

import pytest

from mmali_tf import reproduce
from mmali_tf.repro import many_modalities, tables
from mmali_tf.repro.suites import suite_runs
from test_reproduce import REPO, _record, _suite

MODS = ("m0", "m1", "m2", "m3", "m4")


def test_suite_lists_every_polydigits_config_and_each_is_a_valid_training_config():
    from mmali_tf import train

    shipped = sorted(f[:-4] for f in os.listdir(os.path.join(REPO, "configs"))
                     if f.startswith("polydigits_") and f.endswith(".cfg"))
    runs = suite_runs("polydigits", REPO)
    assert [s.name for s in runs] == shipped and len(shipped) >= 6
    assert {s.config_flags()["model"] for s in runs} >= {"mmali", "mopoe", "mmvae_plus"}
    for spec in runs:
        assert spec.config_flags()["dataset"] == "polydigits"
        train.make_config(spec.config_flags())


def _poly_metrics(model: str, latent: tuple[float, ...], by_size: dict[str, float],
                  collapsed: tuple[str, ...] = ()) -> dict:
    """A five-modality metrics.json as evaluate writes it (the keys the table reads)."""
    stats = {k: {"top_share": 0.9 if k in collapsed else 0.2, "top_class": 3,
                 "entropy_bits": 1.0}
             for k in [f"joint/{m}" for m in MODS]
             + [f"subset/{k}/{m}" for k in by_size for m in MODS]}
    return {"latent_accuracy": {"joint": {"content": 0.5},
                                **{m: {"both": v} for m, v in zip(MODS, latent)}},
            "joint_coherence": {"all": 0.4},
            "cross_coherence": {f"{a}->{b}": 0.3 for a in MODS for b in MODS if a != b},
            "synergy_coherence": {"model": {m: 0.5 for m in MODS}},
            "subset_coherence": {"by_size": by_size, "by_subset": {}},
            "classifier_accuracy": {m: 0.94 if m == "m3" else 0.97 for m in MODS},
            "prediction_stats": stats,
            "meta": {"dataset": "polydigits", "model": model, "protocol": "clean",
                     "classifier_threshold": 0.95, "step": 300}}


def test_five_modality_table_from_fake_metrics(tmp_path):
    good = _poly_metrics("mopoe", (0.2, 0.3, 0.4, 0.5, 0.6),
                         {"1": 0.8, "2": 0.9, "3": 0.925, "4": 0.95})
    flat = _poly_metrics("mmali", (0.1, 0.1, 0.1, 0.1, 0.1),
                         {"1": 0.1, "2": 0.11, "3": 0.12, "4": 0.13},
                         collapsed=("joint/m0", "joint/m1", "subset/4/m2"))
    suite = _suite("polydigits", [_record("polydigits_mopoe", good, steps=300),
                                  _record("polydigits_mmali", flat, 300, 1500)])
    block = tables.readme_block(suite)
    lines = block.splitlines()
    header = next(ln for ln in lines if ln.startswith("| run (config)"))
    assert header == ("| run (config) | model | steps x batch, train + eval time | ms/step | "
                      "latent mean (min-max) | subset coherence 1 | subset coherence 2 | "
                      "subset coherence 3 | subset coherence 4 | joint coherence |")
    assert "cross m0->m1" not in block and "synergy" not in block  # no M^2 wall of columns
    assert ("| `polydigits_mopoe` | mopoe | 300/1,000 x 64 (30 %), 1.5 min | 150 | "
            "40.00 (20.0-60.0) | 80.00 | 90.00 | 92.50 | 95.00 | 40.00 |") in lines
    assert ("| `polydigits_mmali` | mmali | 300/1,500 x 64 (20 %), 1.5 min | 150 | "
            "10.00 (10.0-10.0) | 10.00 | 11.00 | 12.00 | 13.00 (1/5 collapsed) | "
            "40.00 (2/5 collapsed) |") in lines
    assert "m3 94.0" in block and "threshold for m3" in block
    text = tables.suite_markdown(suite)
    assert "# Reproduction suite `polydigits`" in text and block in text
    assert "collapsed sets: joint/m0, joint/m1, subset/4/m2" in text
    tables.suite_chart(suite, str(tmp_path / "poly.png"))
    assert (tmp_path / "poly.png").read_bytes().startswith(b"\x89PNG")
    assert many_modalities.chart_labels(many_modalities.columns(suite["runs"]))[0] == "latent mean"


def test_table_keeps_runs_without_subset_sizes_and_two_modality_suites_unchanged():
    """A deterministic model scores size 1 only: its other size cells read '-'; a
    two-modality suite keeps the Table-2 layout."""
    point = _poly_metrics("mmali", (0.3,) * 5, {"1": 0.5})
    full = _poly_metrics("mvae", (0.3,) * 5, {"1": 0.5, "2": 0.6, "3": 0.7, "4": 0.8})
    records = [_record("a", full), _record("b", point)]
    cols = many_modalities.columns(records)
    assert cols[1:5] == [f"subset coherence {k}" for k in "1234"]
    assert many_modalities.cells(records[1], cols)[2:5] == ["-", "-", "-"]
    assert many_modalities.values(records[0], cols) == pytest.approx(
        [0.3, 0.5, 0.6, 0.7, 0.8, 0.4])
    from test_reproduce import _metrics

    two = [_record("digits_mvae", _metrics("mvae", 0.2))]
    assert not many_modalities.applies(two)
    assert "| cross hand->print |" in tables.runs_table(two)


def test_readme_holds_the_generated_polydigits_table():
    suites = tables.load_suites(os.path.join(REPO, "reproduction"))
    assert "polydigits" in suites
    runs = suites["polydigits"]["runs"]
    assert sorted(r["name"] for r in runs) == [s.name for s in suite_runs("polydigits", REPO)]
    with open(os.path.join(REPO, reproduce.RESULTS_PAGE), encoding="utf-8") as f:
        readme = f.read()
    assert tables.readme_mismatches(readme, {"polydigits": suites["polydigits"]}) == []
    assert "subset coherence 4" in readme
