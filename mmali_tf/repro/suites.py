"""Suites of the reproduction harness: which configs run, with which flag overrides."""

from __future__ import annotations

import glob
import os

from mmali_tf.repro.contrastive import contrastive_runs
from mmali_tf.repro.run_spec import RunSpec
from mmali_tf.repro.study import study_runs

__all__ = ["SUITES", "RunSpec", "suite_runs"]

SUITES = ("digits", "claims", "mnist_svhn", "polydigits", "digits_study", "digits_text",
          "digits_contrastive")
#: the trimodal suite's models, in training order (the two with coherence targets first)
DIGITS_TEXT_MODELS = ("mmjsd", "mmali", "mopoe", "mvae", "mmvae")
#: its table has no log-likelihoods, whose IWAE estimates over every conditional of three
#: modalities take ~15 min per run on the shared 2-core machine
DIGITS_TEXT_EVAL = ("--ll_items=0",)
#: training seeds of every config of the `claims` suite (runs `<config>_s<seed>`).
CLAIMS_SEEDS = (0, 1, 2)
#: claim 1's numbers of rotated views (the paper's Table 1 has 2, 3 and 4): runs
#: `fashion_rotated<M>_<model>_s<seed>` of configs/fashion_rotated_<model>.cfg, whose own
#: `--num_views` is the first (the others override it).
CLAIM1_VIEWS = (2, 3)
#: claim 2's models on `fashion_pair` (configs/fashion_pair_<model>.cfg).
FASHION_PAIR_MODELS = ("mmali", "mvae", "mmvae", "mmjsd", "mopoe")


def _configs(root: str, pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "configs", pattern)))


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _bimodal_digits(root: str) -> list[str]:
    """The `digits_*.cfg` configs of the bimodal `digits` dataset (not `digits_text_*`)."""
    return [p for p in _configs(root, "digits_*.cfg") if not _stem(p).startswith("digits_text_")]


def seeded(name: str, config: str, overrides: tuple[str, ...] = ()) -> list[RunSpec]:
    """One run `<name>_s<seed>` per seed of CLAIMS_SEEDS."""
    return [RunSpec(f"{name}_s{seed}", config, (*overrides, f"--seed={seed}"))
            for seed in CLAIMS_SEEDS]


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
    if suite == "digits_contrastive":  # the 20 %-data comparison; its table: repro/contrastive.py
        return contrastive_runs(root)
    # claims, every config over CLAIMS_SEEDS: the critic ablation on rotated Fashion-MNIST
    # views (claim 1), then mmALI and four VAE baselines on fashion_pair (claim 2); claim 3
    # reads every mmALI run of both.
    runs = []
    for views in CLAIM1_VIEWS:
        for model in ("mmali", "mmali_joint"):
            runs += seeded(f"fashion_rotated{views}_{model}",
                           os.path.join(root, "configs", f"fashion_rotated_{model}.cfg"),
                           () if views == CLAIM1_VIEWS[0] else (f"--num_views={views}",))
    for model in FASHION_PAIR_MODELS:
        runs += seeded(f"fashion_pair_{model}",
                       os.path.join(root, "configs", f"fashion_pair_{model}.cfg"))
    return runs
