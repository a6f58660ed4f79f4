"""Suites of the reproduction harness: which configs run, with which flag overrides."""

from __future__ import annotations

import glob
import os

from mmali_tf.repro.run_spec import RunSpec
from mmali_tf.repro.study import study_runs

__all__ = ["SUITES", "RunSpec", "fashion_available", "select_runs", "suite_runs"]

SUITES = ("digits", "claims", "mnist_svhn", "polydigits", "digits_study", "digits_text")
#: the trimodal suite's models, in training order (the two with coherence targets first)
DIGITS_TEXT_MODELS = ("mmjsd", "mmali", "mopoe", "mvae", "mmvae")
#: its table has no log-likelihoods, whose IWAE estimates over every conditional of three
#: modalities take ~15 min per run on the shared 2-core machine
DIGITS_TEXT_EVAL = ("--ll_items=0",)
#: MultiMNIST views of the embedded digits for claim 1 (paper Table 1, 2 views).
MULTIMNIST_DIGITS = ("--base_set=digits", "--num_views=2")
FASHION_IDX = "/usr/share/datasets/fashion-mnist"


def _configs(root: str, pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "configs", pattern)))


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _bimodal_digits(root: str) -> list[str]:
    """The `digits_*.cfg` configs of the bimodal `digits` dataset (not `digits_text_*`)."""
    return [p for p in _configs(root, "digits_*.cfg") if not _stem(p).startswith("digits_text_")]


def fashion_available() -> bool:
    """Whether Debian's dataset-fashion-mnist IDX files are installed."""
    return os.path.isdir(FASHION_IDX)


def suite_runs(suite: str, root: str = ".") -> list[RunSpec]:
    """The runs of `suite` (configs under `root/configs`); ValueError for an unknown suite."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; expected one of {', '.join(SUITES)}")
    if suite == "digits":
        return [RunSpec(_stem(p), p) for p in _bimodal_digits(root)]
    if suite == "digits_text":  # hand, print, text; its table: repro/many_modalities.py
        return [RunSpec(f"digits_text_{m}", os.path.join(root, "configs", f"digits_text_{m}.cfg"),
                        eval_flags=DIGITS_TEXT_EVAL)
                for m in DIGITS_TEXT_MODELS]
    if suite == "mnist_svhn":
        return [RunSpec(_stem(p), p) for p in _configs(root, "mnist_svhn_*.cfg")]
    if suite == "polydigits":  # five modalities; its table: repro/many_modalities.py
        return [RunSpec(_stem(p), p) for p in _configs(root, "polydigits_*.cfg")]
    if suite == "digits_study":
        return study_runs(root)
    # claims: the two-view critic ablation first (its own runs), then mmALI and every VAE
    # baseline on digits (shared with the digits suite; a concurrent harness is waited for).
    views = [("multimnist_digits2", MULTIMNIST_DIGITS)]
    if fashion_available():
        # the multimnist configs' --base_set=fashion reads the same Debian IDX files as
        # --dataset=fashion_rotated, without a flag that dataset does not read
        views.append(("fashion_rotated2", ("--base_set=fashion", "--num_views=2")))
    runs = [RunSpec(f"{prefix}_{model}", os.path.join(root, "configs", f"multimnist_{model}.cfg"),
                    overrides)
            for prefix, overrides in views for model in ("mmali", "mmali_joint")]
    return runs + [RunSpec(_stem(p), p) for p in _bimodal_digits(root)
                   if _stem(p) != "digits_mmali_long"]


def select_runs(specs: list[RunSpec], names: list[str]) -> list[RunSpec]:
    """The runs of `specs` named in `names` (all when empty), in suite order; ValueError
    naming an unknown run."""
    known = [s.name for s in specs]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--runs: {', '.join(unknown)} not in this suite (runs: "
                         f"{', '.join(known)})")
    return [s for s in specs if not names or s.name in names]
