"""CCA correlation score for two vector modalities (Shi et al. 2019, sec. 4.2; 6b5d/mmali eval_cap_img_ft.py, iffsid/mmvae src/report/analyse_cub.py).

CCA is fitted on training pairs as the generalised eigenproblem `A v = lambda B v` (A: the
cross-covariance blocks, B: the block-diagonal within-view covariances, 1e-12 added to both
diagonals), solved with `scipy.linalg.eig` like the reference code so that the eigenvector
scaling (unit 2-norm of the stacked vector) -- which enters the score -- matches. The top-k
eigenvalues are the canonical correlations. The score of a set of pairs is the cosine between
the two centred, projected views.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator

import numpy as np
import scipy.linalg

from mmali_tf.data.specs import PairedDataset
from mmali_tf.metrics.common import InferenceView, paired_batches, seed_stream

EPS = 1e-12


@dataclasses.dataclass
class CCAProjection:
    """Train means, projection matrices (d_i, k) and the top-k canonical correlations."""

    mean1: np.ndarray
    mean2: np.ndarray
    w1: np.ndarray
    w2: np.ndarray
    correlations: np.ndarray

    def cosine(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        """Per-pair cosine of the two projected views, shape (n,)."""
        p1 = (np.asarray(x1, np.float64) - self.mean1) @ self.w1
        p2 = (np.asarray(x2, np.float64) - self.mean2) @ self.w2
        denom = np.linalg.norm(p1, axis=1) * np.linalg.norm(p2, axis=1)
        return np.sum(p1 * p2, axis=1) / np.maximum(denom, 1e-300)


def fit_cca(batches: Iterable[tuple[np.ndarray, np.ndarray]], k: int = 40) -> CCAProjection:
    """Fit CCA on paired batches (x1 (n, d1), x2 (n, d2)); covariances accumulated in float64."""
    n, sums, prods = 0, None, None
    for x1, x2 in batches:
        v = np.concatenate([np.asarray(x1, np.float64), np.asarray(x2, np.float64)], axis=1)
        if sums is None:
            d1, sums, prods = x1.shape[1], np.zeros(v.shape[1]), np.zeros((v.shape[1],) * 2)
        n += len(v)
        sums += v.sum(axis=0)
        prods += v.T @ v
    if n < 2:
        raise ValueError(f"fit_cca needs at least 2 pairs, got {n}")
    mean = sums / n
    cov = (prods - n * np.outer(mean, mean)) / (n - 1)
    d = len(mean)
    if not 1 <= k <= min(d1, d - d1):
        raise ValueError(f"CCA dimension k={k} must be in [1, {min(d1, d - d1)}]")
    a = np.zeros_like(cov)
    a[:d1, d1:], a[d1:, :d1] = cov[:d1, d1:], cov[d1:, :d1]
    b = np.zeros_like(cov)
    b[:d1, :d1], b[d1:, d1:] = cov[:d1, :d1], cov[d1:, d1:]
    a += EPS * np.eye(d)
    b += EPS * np.eye(d)
    values, vectors = scipy.linalg.eig(a, b)
    order = np.argsort(-values.real, kind="stable")[:k]
    w = vectors[:, order].real
    return CCAProjection(mean[:d1], mean[d1:], w[:d1], w[d1:], values[order].real)


def cca_score(proj: CCAProjection, pairs: Iterable[tuple[np.ndarray, np.ndarray]],
              per_batch_mean: bool = False) -> float:
    """Mean cosine over pairs; `per_batch_mean` averages per-batch means (reference quirk)."""
    cosines = [proj.cosine(x1, x2) for x1, x2 in pairs]
    if not cosines:
        raise ValueError("cca_score needs at least one batch of pairs")
    if per_batch_mean:
        return float(np.mean([c.mean() for c in cosines]))
    return float(np.concatenate(cosines).mean())


def cca_correlations(view: InferenceView, ds: PairedDataset, a: str, b: str, split: str,
                     rows: np.ndarray, k: int = 40, batch_size: int = 256, seed: int = 0,
                     num_prior: int = 10000, per_batch_mean: bool = False) -> dict[str, float]:
    """Ground-truth, cross, joint and synergy CCA correlations of vector modalities a and b.

    CCA is fitted on every training pair with k = min(k, both dimensions).
    """
    mods = view.modalities
    train_rows = np.arange(ds.train.num_pairs)
    k = min(k, ds.spec(a).size, ds.spec(b).size)
    proj = fit_cca(((t[a], t[b]) for t in paired_batches(ds.train, mods, train_rows, 4096)), k)
    gen = seed_stream(seed, 7)
    lay = view.layout
    scored: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        "ground_truth": [], f"{a}->{b}": [], f"{b}->{a}": []}
    if view.stochastic:
        scored.update({f"synergy->{a}": [], f"synergy->{b}": []})
    for batch in paired_batches(ds.split(split), mods, rows, batch_size):
        xa, xb = batch[a], batch[b]
        params = {m: view.encode(m, batch[m]) for m in mods}
        za = view.sample(*view.unimodal(a, params[a]), gen)
        zb = view.sample(*view.unimodal(b, params[b]), gen)
        scored["ground_truth"].append((xa, xb))
        scored[f"{a}->{b}"].append((xa, np.asarray(view.decode(b, za))))
        scored[f"{b}->{a}"].append((np.asarray(view.decode(a, zb)), xb))
        if view.stochastic:
            content = view.sample(*view.fuse(params), gen)
            ga = view.decode(a, lay.join(lay.style(za), content))
            gb = view.decode(b, lay.join(lay.style(zb), content))
            scored[f"synergy->{a}"].append((np.asarray(ga), xb))
            scored[f"synergy->{b}"].append((xa, np.asarray(gb)))
    out = {key: cca_score(proj, pairs, per_batch_mean) for key, pairs in scored.items()}
    out["joint"] = cca_score(proj, _prior_pairs(view, a, b, num_prior, batch_size, gen),
                             per_batch_mean)
    return out


def _prior_pairs(view: InferenceView, a: str, b: str, n: int, batch_size: int,
                 gen: object) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, n, batch_size):
        z = view.sample_prior(min(batch_size, n - start), gen)
        yield np.asarray(view.decode(a, z[a])), np.asarray(view.decode(b, z[b]))
