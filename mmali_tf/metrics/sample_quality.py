"""Sample quality of generated images: FID and PRD on the coherence classifiers' features.

mmJSD (Sutter et al. 2020, Table 3; thomassutter/mmjsd utils/test_functions.py) reports,
next to coherence, the Frechet distance (FID; Heusel et al. 2017) and precision/recall for
distributions (PRD; Sajjadi et al. 2018, "Assessing Generative Models via Precision and
Recall") between generated and real images. Here the embedding is not Inception: it is the
penultimate layer (`DigitClassifier.features`) of this project's own per-modality coherence
classifier, so nothing is downloaded -- and the values are NOT comparable with the
Inception-based FIDs of the papers, only between runs evaluated with the same classifiers.

* FID: ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) of the two feature sets' means
  and covariances (float64; when the square root of a singular product is not finite, the
  covariances get FID_JITTER on their diagonals), clipped at 0.
* PRD: the union of equally many real and generated features is clustered by mini-batch
  k-means into PRD_CLUSTERS bins, PRD_RUNS times (seeded); each run's two bin histograms give
  the PRD curve on PRD_ANGLES angles of (0, pi/2), averaged over runs. The curve is summarised
  as Sajjadi et al. do: `recall` = max F_8 and `precision` = max F_{1/8} over the curve;
  `ap` is mmJSD's scalar (the mean of the averaged precision and recall curves).

Generated sets are keyed like `prediction_stats` (`joint/m`, `cross/a->b`, `self/m`,
`synergy/<source>/m`, `subset/<k>/m`); only image modalities are scored. `FeatureBank`
collects the features while coherence classifies the same images, so the generated images
are produced once and the coherence numbers do not change.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Mapping

import numpy as np
from scipy import linalg

#: PRD settings of Sajjadi et al.'s `compute_prd_from_embedding`, which mmJSD calls with its
#: defaults.
PRD_CLUSTERS = 20
PRD_ANGLES = 1001
PRD_RUNS = 10
PRD_BETA = 8.0
#: k-means restarts per PRD run (as in the authors' clustering).
PRD_KMEANS_INIT = 10
#: the curve's angles start and stop this far inside (0, pi/2).
PRD_EPS = 1e-10
#: diagonal jitter of the covariances when their product is singular.
FID_JITTER = 1e-6
#: what the values may be compared with (stored in metrics.json's meta).
COMPARABILITY = ("features of this project's own coherence classifiers, not Inception: "
                 "comparable only between evaluations with the same classifiers, not with "
                 "the Inception FIDs of papers")


class FeatureBank:
    """Classifier features of generated image sets, gathered while coherence classifies them
    (`metrics.scoring.Scorer`): the first `limit` rows of every set whose modality is one of
    `modalities`."""

    def __init__(self, modalities: Iterable[str], limit: int) -> None:
        self.modalities = frozenset(modalities)
        self.limit = int(limit)
        self._parts: dict[str, list[np.ndarray]] = {}
        self._modality: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def add(self, key: str, modality: str, features: Any) -> None:
        """Keep (up to the limit) a batch of features of set `key`, generated in `modality`."""
        have = self._counts.get(key, 0)
        if modality not in self.modalities or have >= self.limit:
            return
        keep = np.asarray(features, np.float32)[:self.limit - have]
        self._parts.setdefault(key, []).append(keep)
        self._modality[key] = modality
        self._counts[key] = have + len(keep)

    def sets(self) -> dict[str, tuple[str, np.ndarray]]:
        """{set key: (modality, (n, d) features)}, in the order the sets were first seen."""
        return {k: (self._modality[k], np.concatenate(v)) for k, v in self._parts.items()}


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two (n, d) feature sets (each n >= 2)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"FID needs at least 2 samples per set, got {len(real)} and {len(fake)}")
    mu_r, mu_f = real.mean(axis=0), fake.mean(axis=0)
    cov_r = np.atleast_2d(np.cov(real, rowvar=False))
    cov_f = np.atleast_2d(np.cov(fake, rowvar=False))
    with warnings.catch_warnings():
        # feature units that never fire make the covariances singular; scipy then warns
        # "Matrix is singular" and still returns the principal root, which is used unless it
        # is not finite (then the jittered product below)
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_r @ cov_f)
    if not np.all(np.isfinite(root)):
        jitter = FID_JITTER * np.eye(len(cov_r))
        root = linalg.sqrtm((cov_r + jitter) @ (cov_f + jitter))
    value = (np.sum((mu_r - mu_f) ** 2) + np.trace(cov_r) + np.trace(cov_f)
             - 2.0 * np.trace(np.real(root)))
    return float(max(value, 0.0))


def prd_curve(fake_hist: np.ndarray, real_hist: np.ndarray,
              num_angles: int = PRD_ANGLES) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) curves of two discrete distributions over the same bins
    (Sajjadi et al. 2018, Theorem 2: alpha(l) = sum min(l P, Q), beta = alpha / l)."""
    slopes = np.tan(np.linspace(PRD_EPS, np.pi / 2 - PRD_EPS, num_angles))
    precision = np.minimum(np.asarray(real_hist)[None, :] * slopes[:, None],
                           np.asarray(fake_hist)[None, :]).sum(axis=1)
    recall = precision / slopes
    return np.clip(precision, 0.0, 1.0), np.clip(recall, 0.0, 1.0)


def _cluster_histograms(fake: np.ndarray, real: np.ndarray, num_clusters: int,
                        seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import MiniBatchKMeans

    kmeans = MiniBatchKMeans(n_clusters=num_clusters, n_init=PRD_KMEANS_INIT,
                             random_state=seed)
    labels = kmeans.fit(np.vstack([fake, real])).labels_
    return (np.bincount(labels[:len(fake)], minlength=num_clusters) / len(fake),
            np.bincount(labels[len(fake):], minlength=num_clusters) / len(real))


def f_beta(precision: np.ndarray, recall: np.ndarray, beta: float) -> np.ndarray:
    """F_beta of each (precision, recall) point (0 where both are 0)."""
    den = beta ** 2 * precision + recall
    return np.where(den > 0, (1 + beta ** 2) * precision * recall / np.where(den > 0, den, 1),
                    0.0)


def prd_scores(real: np.ndarray, fake: np.ndarray, seed: int = 0,
               num_clusters: int = PRD_CLUSTERS, num_angles: int = PRD_ANGLES,
               num_runs: int = PRD_RUNS) -> dict[str, float]:
    """{"precision": max F_{1/8}, "recall": max F_8, "ap": mean of both curves} of `fake`
    against `real` (equally many rows; run r clusters with seed `seed + r`)."""
    if len(real) != len(fake):
        raise ValueError(f"PRD needs equally many real and generated samples, got {len(real)} "
                         f"and {len(fake)}")
    if len(real) < num_clusters:
        raise ValueError(f"PRD needs at least num_clusters={num_clusters} samples per set, got "
                         f"{len(real)}")
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    curves = [prd_curve(*_cluster_histograms(fake, real, num_clusters, seed + r), num_angles)
              for r in range(num_runs)]
    precision = np.mean([c[0] for c in curves], axis=0)
    recall = np.mean([c[1] for c in curves], axis=0)
    return {"precision": float(np.max(f_beta(precision, recall, 1.0 / PRD_BETA))),
            "recall": float(np.max(f_beta(precision, recall, PRD_BETA))),
            "ap": float((precision.mean() + recall.mean()) / 2.0)}


def _subset(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n rows of x drawn without replacement (all of x, in order, when n covers it)."""
    return x if n >= len(x) else x[np.sort(rng.permutation(len(x))[:n])]


def sample_quality(generated: Mapping[str, tuple[str, np.ndarray]],
                   real: Mapping[str, np.ndarray], seed: int = 0
                   ) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, int]]:
    """(fid {set: value}, prd {set: {"precision", "recall", "ap"}}, PRD sample count per set)
    of every generated (modality, features) set against the real features of its modality.
    FID uses every row; PRD balances the two sets to the smaller count (seeded subsets). A
    set too small for a score (FID: 2 rows, PRD: PRD_CLUSTERS rows) has none."""
    fid, prd, counts = {}, {}, {}
    for key, (modality, fake) in generated.items():
        ref = real[modality]
        if min(len(ref), len(fake)) >= 2:
            fid[key] = frechet_distance(ref, fake)
        n = min(len(ref), len(fake))
        if n >= PRD_CLUSTERS:
            rng = np.random.default_rng(seed)
            prd[key] = prd_scores(_subset(ref, n, rng), _subset(fake, n, rng), seed)
            counts[key] = n
    return fid, prd, counts
