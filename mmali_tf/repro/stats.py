"""Error bars over seeds and distinct test inputs (pure NumPy).

A reported number is a mean over training seeds. Its uncertainty has two sources: the seeds
(a different seed trains a different model) and the test inputs (a finite set, and some
metrics score the same input many times: `digits` has 359 distinct `hand` test images behind
2,000 scored pairs). Both are resampled, in two stages:

1. within each seed, a *Poisson bootstrap over distinct inputs*: replicate b gives distinct
   input i the weight w_bi ~ Poisson(1), a function of (b, i) only (`input_weights`), and the
   replicate value is sum_i w_bi k_i / sum_i w_bi n_i (k_i correct out of n_i scorings of
   input i; `replicate_values`). Because the weights depend on the input id, not on the seed,
   the seeds of a group (and two models scored on the same test inputs) see the *same*
   resample of the test set in replicate b: the test set's sampling error is shared, as it is
   in reality, and does not shrink by averaging seeds;
2. across seeds, replicate b of the group mean averages the replicate-b values of S seeds
   drawn with replacement (`group_replicates`).

The standard error is the standard deviation of the group replicates (`standard_error`); a
difference of two groups is replicate-wise (`difference`), paired when both numbers come from
the same runs (content vs style probe of one model: the same seed draws).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: bootstrap replicates per number, and the seeds of the input weights and the seed draws.
REPLICATES = 200
WEIGHT_SEED = 2_024_001
DRAW_SEED = 2_024_002


def input_weights(input_ids: np.ndarray, replicates: int = REPLICATES,
                  seed: int = WEIGHT_SEED) -> np.ndarray:
    """(replicates, len(input_ids)) Poisson(1) weights; column j depends only on
    (input_ids[j], seed): row i of a (max_id + 1, replicates) draw, generated in order."""
    ids = np.asarray(input_ids, np.int64)
    if ids.size and ids.min() < 0:
        raise ValueError(f"input ids must be >= 0, got {int(ids.min())}")
    rows = int(ids.max()) + 1 if ids.size else 0
    table = np.random.default_rng(seed).poisson(1.0, size=(rows, replicates))
    return table[ids].T.astype(np.float64)


def input_counts(correct: np.ndarray, input_ids: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct ids, correct count k_i, scorings n_i) of per-scoring booleans."""
    ids, inverse = np.unique(np.asarray(input_ids, np.int64), return_inverse=True)
    k = np.bincount(inverse, weights=np.asarray(correct, np.float64), minlength=len(ids))
    n = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    return ids, k, n


def replicate_values(k: np.ndarray, n: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B,) weighted accuracies sum_i w_bi k_i / sum_i w_bi n_i (NaN where no input drawn)."""
    num, den = weights @ np.asarray(k, np.float64), weights @ np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def run_replicates(correct: np.ndarray, input_ids: np.ndarray,
                   replicates: int = REPLICATES) -> dict[str, object]:
    """One run's number with its bootstrap over distinct inputs: value (the plain mean of
    `correct`), scorings, distinct inputs and the replicate values (rounded to 1e-5)."""
    correct = np.asarray(correct, bool)
    if correct.size == 0 or correct.shape != np.shape(input_ids):
        raise ValueError(f"run_replicates needs equal-length non-empty arrays, got "
                         f"{correct.shape} and {np.shape(input_ids)}")
    ids, k, n = input_counts(correct, input_ids)
    reps = replicate_values(k, n, input_weights(ids, replicates))
    return {"value": float(correct.mean()), "scored": int(correct.size),
            "distinct": int(len(ids)), "replicates": np.round(reps, 5).tolist()}


def seed_draws(num_seeds: int, replicates: int = REPLICATES, seed: int = DRAW_SEED
               ) -> np.ndarray:
    """(replicates, num_seeds) seed indices drawn with replacement."""
    return np.random.default_rng([seed, num_seeds]).integers(0, num_seeds,
                                                               size=(replicates, num_seeds))


def group_replicates(replicates: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(B,) replicate b of the mean over seeds: mean_j replicates[draws[b, j], b], from
    per-seed replicates (S, B) and seed draws (B, S)."""
    reps = np.asarray(replicates, np.float64)
    cols = np.arange(reps.shape[1])[:, None]
    return np.nanmean(reps[np.asarray(draws), cols], axis=1)


def standard_error(group: np.ndarray) -> float:
    """Standard deviation (ddof 1) of finite bootstrap replicates."""
    finite = np.asarray(group, np.float64)
    finite = finite[np.isfinite(finite)]
    return float(np.std(finite, ddof=1)) if finite.size > 1 else float("nan")


def estimate(values: Sequence[float], replicates: Sequence[Sequence[float]],
             draws: np.ndarray | None = None) -> tuple[float, float]:
    """(mean over seeds, standard error) of one group (`draws`: default `seed_draws`)."""
    reps = np.asarray(replicates, np.float64)
    draws = seed_draws(len(values), reps.shape[1]) if draws is None else draws
    return float(np.mean(values)), standard_error(group_replicates(reps, draws))


def difference(a: tuple[Sequence[float], Sequence[Sequence[float]]],
               b: tuple[Sequence[float], Sequence[Sequence[float]]], paired: bool,
               draws: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[float, float]:
    """(mean(a) - mean(b), standard error) of two groups given as (values, replicates).

    Paired groups (the same runs) share the seed draws; unpaired ones draw independently.
    """
    reps_a, reps_b = np.asarray(a[1], np.float64), np.asarray(b[1], np.float64)
    if paired and len(a[0]) != len(b[0]):
        raise ValueError(f"paired groups need the same seeds, got {len(a[0])} and {len(b[0])}")
    if draws is None:
        draws_a = seed_draws(len(a[0]), reps_a.shape[1])
        draws_b = draws_a if paired else seed_draws(len(b[0]), reps_b.shape[1],
                                                    DRAW_SEED + 1)
    else:
        draws_a, draws_b = draws
    diff = group_replicates(reps_a, draws_a) - group_replicates(reps_b, draws_b)
    return float(np.mean(a[0]) - np.mean(b[0])), standard_error(diff)


def summarise_file(path: str, prefixes: Sequence[str] = ("latent/", "joint/", "cross/"),
                   replicates: int = REPLICATES) -> dict[str, dict[str, object]]:
    """`run_replicates` of every set in an evaluation's `per_input.npz` whose key starts with
    one of `prefixes` ("<set>/correct" and "<set>/input" arrays)."""
    out = {}
    with np.load(path) as arrays:
        for key in sorted(arrays.files):
            name, _, kind = key.rpartition("/")
            if kind == "correct" and name.startswith(tuple(prefixes)):
                out[name] = run_replicates(arrays[key], arrays[f"{name}/input"], replicates)
    return out
