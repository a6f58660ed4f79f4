"""Error-bar statistics of the reproduction harness against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from mmali_tf.repro import stats


def test_input_counts_group_scorings_by_distinct_input():
    ids, k, n = stats.input_counts(np.array([True, False, True, True]), np.array([3, 1, 3, 1]))
    np.testing.assert_array_equal(ids, [1, 3])
    np.testing.assert_array_equal(k, [1, 2])
    np.testing.assert_array_equal(n, [2, 2])


def test_replicate_values_are_weighted_ratios():
    weights = np.array([[1, 0], [0, 1], [2, 1], [0, 0]], np.float64)
    reps = stats.replicate_values(np.array([1.0, 2.0]), np.array([2.0, 2.0]), weights)
    np.testing.assert_allclose(reps[:3], [0.5, 1.0, 4.0 / 6.0])
    assert np.isnan(reps[3])   # no input drawn


def test_input_weights_depend_on_the_input_id_only():
    table = np.random.default_rng(stats.WEIGHT_SEED).poisson(1.0, size=(6, 5))
    np.testing.assert_array_equal(stats.input_weights(np.array([5]), 5)[:, 0], table[5])
    both = stats.input_weights(np.array([2, 5]), 5)
    np.testing.assert_array_equal(both[:, 1], table[5])
    np.testing.assert_array_equal(both[:, 0], table[2])
    with pytest.raises(ValueError, match="input ids must be >= 0"):
        stats.input_weights(np.array([-1]))


def test_group_replicates_average_the_drawn_seeds_per_replicate():
    reps = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    draws = np.array([[0, 0, 2], [1, 2, 2]])
    np.testing.assert_allclose(stats.group_replicates(reps, draws),
                               [(0.1 + 0.1 + 0.5) / 3, (0.4 + 0.6 + 0.6) / 3])


def test_standard_error_is_the_replicates_std():
    assert stats.standard_error(np.array([0.2, 0.4, np.nan])) == pytest.approx(np.sqrt(0.02))
    assert np.isnan(stats.standard_error(np.array([0.3])))


def test_estimate_and_difference_by_hand():
    a = ([0.6, 0.8], [[0.6, 0.5], [0.8, 0.9]])
    b = ([0.5, 0.5], [[0.4, 0.5], [0.5, 0.6]])
    draws = np.array([[0, 1], [1, 1]])
    mean, se = stats.estimate(*a, draws=draws)
    # replicate 0: mean(0.6, 0.8) = 0.7; replicate 1: mean(0.9, 0.9) = 0.9
    assert mean == pytest.approx(0.7) and se == pytest.approx(np.std([0.7, 0.9], ddof=1))
    diff, se = stats.difference(a, b, paired=True, draws=(draws, draws))
    # b: replicate 0 mean(0.4, 0.5) = 0.45; replicate 1 mean(0.6, 0.6) = 0.6
    assert diff == pytest.approx(0.2)
    assert se == pytest.approx(np.std([0.7 - 0.45, 0.9 - 0.6], ddof=1))
    with pytest.raises(ValueError, match="same seeds"):
        stats.difference(a, ([0.5], [[0.5, 0.5]]), paired=True)


def test_repeated_inputs_widen_the_error_bar():
    """400 scorings of 80 distinct inputs (5 each, same outcome) carry the information of 80
    inputs: the bootstrap SE is near sqrt(p(1-p)/80), not sqrt(p(1-p)/400)."""
    rng = np.random.default_rng(0)
    outcome = rng.random(80) < 0.5
    ids = np.repeat(np.arange(80), 5)
    summary = stats.run_replicates(outcome[ids], ids, replicates=2000)
    assert (summary["scored"], summary["distinct"]) == (400, 80)
    assert summary["value"] == pytest.approx(outcome.mean())
    se = stats.standard_error(np.array(summary["replicates"]))
    p = outcome.mean()
    assert se == pytest.approx(np.sqrt(p * (1 - p) / 80), rel=0.15)
    independent = stats.run_replicates(rng.random(400) < 0.5, np.arange(400), 2000)
    assert stats.standard_error(np.array(independent["replicates"])) < 0.6 * se


def test_shared_inputs_are_not_averaged_away_by_seeds():
    """Three seeds that score the same test inputs identically: the group SE stays the
    test set's SE (the weights are shared), it does not shrink by sqrt(3)."""
    rng = np.random.default_rng(1)
    correct = rng.random(300) < 0.7
    one = stats.run_replicates(correct, np.arange(300), 1000)
    reps = [one["replicates"]] * 3
    _, se = stats.estimate([one["value"]] * 3, reps)
    assert se == pytest.approx(stats.standard_error(np.array(one["replicates"])), rel=1e-6)


def test_summarise_file_reads_per_input_npz(tmp_path):
    path = tmp_path / "per_input.npz"
    np.savez(path, **{"cross/a->b/correct": np.array([True, False, True]),
                      "cross/a->b/input": np.array([0, 0, 1]),
                      "self/a/correct": np.array([True]), "self/a/input": np.array([0])})
    out = stats.summarise_file(str(path), replicates=10)
    assert set(out) == {"cross/a->b"}
    assert out["cross/a->b"]["value"] == pytest.approx(2 / 3)
    assert (out["cross/a->b"]["scored"], out["cross/a->b"]["distinct"]) == (3, 2)
    assert len(out["cross/a->b"]["replicates"]) == 10
