"""The default samplers (`RandomDraws`) against the distributions the authors' code samples from.

The trajectory tests replay the authors' draws through `ReplayDraws`, which bypasses
`RandomDraws`; these tests hold the samplers themselves equal to the authors' at large N with a
fixed seed: moments and quantiles (Kolmogorov-Smirnov distance) of
- standard normal noise: `torch.randn_like` (iffsid/mmvae MNIST-SVHN Normal prior draws,
  thomassutter/mmjsd and MoPoE `utils.reparameterize`: `Tensor.normal_`, mhw32's
  `MVAE.reparametrize`, 6b5d/mmali's `torch.randn`), N(0, 1);
- standard Laplace noise: `torch.distributions.Laplace(loc, scale).rsample` (iffsid/mmvae and
  epalu/mmvaeplus posteriors), loc - scale * sign(u) * log1p(-|u|), u ~ U(-1, 1): Laplace(0, 1)
  with density exp(-|x|) / 2;
- uniforms: `torch.rand`, U(0, 1);
- permutations: `torch.randperm` (6b5d/mmali `utils.py` shuffles), uniform over all n!
  permutations: frequency of every permutation of 4 elements (a categorical over 24 outcomes)
  and of every value at every position (a categorical over n values).
Tolerances are 5-6 standard errors (or the KS critical value at p = 1e-6) of the stated N, so
a correct sampler passes for any seed and a wrong scale or a biased permutation fails.
"""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmali_tf.models.draws import RandomDraws

N = 1_000_000
SEED = 1234
#: Kolmogorov-Smirnov critical value c(alpha) / sqrt(N) at alpha = 1e-6
KS_CRITICAL = math.sqrt(-0.5 * math.log(1e-6 / 2)) / math.sqrt(N)
QUANTILES = np.array([0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999])


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def laplace_cdf(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, 0.5 * np.exp(np.minimum(x, 0)), 1.0 - 0.5 * np.exp(-np.maximum(x, 0)))


def laplace_quantile(p: np.ndarray) -> np.ndarray:
    return -np.sign(p - 0.5) * np.log1p(-2.0 * np.abs(p - 0.5))


def normal_quantile(p: np.ndarray) -> np.ndarray:
    """Inverse of `normal_cdf` by bisection (float64, |error| < 1e-12)."""
    lo, hi = np.full(p.shape, -10.0), np.full(p.shape, 10.0)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = normal_cdf(mid) < p
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


#: family -> (cdf, quantile function, variance, kurtosis, density at the quantiles)
FAMILIES = {
    "normal": (normal_cdf, normal_quantile, 1.0, 3.0,
               lambda q: np.exp(-0.5 * q * q) / math.sqrt(2 * math.pi)),
    "laplace": (laplace_cdf, laplace_quantile, 2.0, 6.0, lambda q: 0.5 * np.exp(-np.abs(q))),
}


def sample_noise(family: str) -> np.ndarray:
    draws = RandomDraws(keras.random.SeedGenerator(SEED))
    return np.asarray(draws.noise("eps", [N], family), np.float64)


def distribution_mismatches(x: np.ndarray, family: str) -> list[str]:
    """Moments (mean, variance, skewness, kurtosis), quantiles and the KS distance of `x`
    against the analytic standard `family`, each beyond ~6 standard errors."""
    cdf, quantile, var, kurt, density = FAMILIES[family]
    out = []
    mean, sd = x.mean(), x.std()
    z = (x - mean) / sd
    # standard errors: mean sqrt(var/N); variance sqrt((mu4 - var^2)/N); skewness sqrt(6/N);
    # kurtosis ~sqrt(24 kurt^2 / N) (generous for heavy tails)
    checks = [("mean", mean, 0.0, 6 * math.sqrt(var / N)),
              ("variance", sd * sd, var, 6 * math.sqrt((kurt - 1) * var * var / N)),
              ("skewness", np.mean(z ** 3), 0.0, 6 * math.sqrt(6 * kurt / N)),
              ("kurtosis", np.mean(z ** 4), kurt, 6 * math.sqrt(24 * kurt * kurt / N))]
    for name, got, want, tol in checks:
        if abs(got - want) > tol:
            out.append(f"{family} {name}: {got:.5f}, the authors' sampler's {want:.5f} "
                       f"(tolerance {tol:.2g})")
    q_want = quantile(QUANTILES)
    q_got = np.quantile(x, QUANTILES)
    q_tol = 6 * np.sqrt(QUANTILES * (1 - QUANTILES) / N) / density(q_want)
    for p, g, w, t in zip(QUANTILES, q_got, q_want, q_tol):
        if abs(g - w) > t:
            out.append(f"{family} quantile {p}: {g:.5f}, the authors' sampler's {w:.5f} "
                       f"(tolerance {t:.2g})")
    xs = np.sort(x)
    f = cdf(xs[:: max(1, N // 20000)])
    emp = (np.arange(N)[:: max(1, N // 20000)] + 1) / N
    ks = float(np.max(np.abs(emp - f)))
    if ks > KS_CRITICAL:
        out.append(f"{family}: Kolmogorov-Smirnov distance {ks:.2e} > {KS_CRITICAL:.2e}")
    return out


@pytest.mark.parametrize("family", ["normal", "laplace"])
def test_noise_has_the_authors_distribution(family):
    problems = distribution_mismatches(sample_noise(family), family)
    assert not problems, "\n".join(problems)


def test_check_rejects_a_wrong_scale():
    """The comparison is sharp enough for a sampler bug of the kind it guards against."""
    x = sample_noise("laplace")
    assert distribution_mismatches(0.5 * x, "laplace")
    assert distribution_mismatches(x, "normal")


def test_uniform_is_the_authors():
    u = np.asarray(RandomDraws(keras.random.SeedGenerator(SEED)).uniform("u", [N]), np.float64)
    assert 0.0 <= u.min() and u.max() < 1.0
    xs = np.sort(u)
    ks = float(np.max(np.abs((np.arange(N) + 1) / N - xs)))
    assert ks <= KS_CRITICAL, f"uniform: Kolmogorov-Smirnov distance {ks:.2e}"
    assert abs(u.mean() - 0.5) <= 6 * math.sqrt(1 / 12 / N), u.mean()
    assert abs(u.var() - 1 / 12) <= 6 * math.sqrt(1 / 180 / N), u.var()


def permutation_counts(n: int, draws_per_call: int, calls: int) -> np.ndarray:
    """(calls * draws_per_call, n) permutations from `RandomDraws.permutation`."""
    draws = RandomDraws(keras.random.SeedGenerator(SEED))
    many = tf.function(lambda: tf.stack([draws.permutation("perm", n)
                                         for _ in range(draws_per_call)]))
    return np.concatenate([many().numpy() for _ in range(calls)])


def chi_square_excess(counts: np.ndarray) -> float:
    """Pearson chi-square of `counts` against equal cells, minus its p = 1e-6 critical value
    (Wilson-Hilferty approximation); > 0 rejects uniformity."""
    k = counts.size
    expected = counts.sum() / k
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    df = k - 1
    z = 4.753  # one-sided normal quantile of 1e-6
    critical = df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
    return chi2 - critical


def test_permutations_are_uniform_like_torch_randperm():
    n = 4
    perms = permutation_counts(n, 50, 600)                     # 30,000 permutations of 4
    assert all(sorted(p) == list(range(n)) for p in perms[:100])
    index = {p: i for i, p in enumerate(itertools.permutations(range(n)))}
    counts = np.bincount([index[tuple(p)] for p in perms], minlength=len(index))
    assert chi_square_excess(counts) <= 0, f"permutation frequencies {counts.tolist()}"
    for pos in range(n):
        cell = np.bincount(perms[:, pos], minlength=n)
        assert chi_square_excess(cell) <= 0, f"values at position {pos}: {cell.tolist()}"
    # a biased sampler (the last element kept in place a quarter more often) is rejected
    biased = perms.copy()
    fix = (biased[:, -1] != n - 1) & (np.arange(len(biased)) % 16 == 0)
    biased[fix] = np.arange(n)
    counts = np.bincount([index[tuple(p)] for p in biased], minlength=len(index))
    assert chi_square_excess(counts) > 0
