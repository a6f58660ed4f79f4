"""Config comments never contradict their flags: every hyper-parameter a header comment
states with a number (K=4, batch 64, 1,000 steps, ...) equals the config's flag."""

from __future__ import annotations

import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.cfg")))
NUM = r"(\d+(?:,\d{3})*(?:\.\d+)?(?:e-?\d+)?k?)"
#: comment pattern -> flag it states (first group: the number).
STATEMENTS = [
    (rf"\bK\s*=\s*{NUM}", "num_importance_samples"),
    (rf"\bN\s*=\s*{NUM}", "num_negatives"),
    (rf"\bD\s*=\s*{NUM}", "latent_dim"),
    (rf"\bgamma\s*=\s*{NUM}", "gamma"),
    (rf"\bbeta\s*=\s*{NUM}", "beta"),
    (rf"\bbeta_content\s*=\s*{NUM}", "beta_content"),
    (rf"\bbeta_style\s*=\s*(?:M\s*=\s*)?{NUM}", "beta_style"),
    (rf"\balpha\s*=\s*{NUM}", "jmvae_alpha"),
    (rf"\bdm\s*=\s*{NUM}", "data_multiplication"),
    (rf"\bbatch\s+(?:size\s+)?{NUM}", "batch_size"),
    (rf"{NUM}\s+(?:steps|iterations)\b", "max_steps"),
    (rf"{NUM}\s+style\s*\+", "style_dim"),
    (rf"\blr\s+{NUM}", "lr"),
    (rf"EMA decay\s+{NUM}", "ema_decay"),
    (rf"\bviews?\s*=\s*{NUM}", "num_views"),
]
#: numbers a comment must not state at all: measurements belong in reproduction/*.md.
MEASUREMENTS = re.compile(r"\d[\d.,]*\s*(?:ms|min|minutes|h|hours|%)(?:/step)?(?!\w)")


def _number(text: str) -> float:
    text = text.replace(",", "")
    return float(text[:-1]) * 1000 if text.endswith("k") else float(text)


def _parse(path: str) -> tuple[list[str], dict[str, str]]:
    comments, flags = [], {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("#"):
                comments.append(line[1:])
            elif line.startswith("--"):
                name, _, value = line[2:].partition("=")
                flags[name] = value or "true"
    return comments, flags


def contradictions(path: str) -> list[str]:
    """Statements of the config's comments that disagree with its flags (or are
    measurements)."""
    comments, flags = _parse(path)
    out = []
    for comment in comments:
        for pattern, flag in STATEMENTS:
            for match in re.finditer(pattern, comment):
                if flag not in flags:
                    out.append(f"{match.group(0)!r} but the config sets no --{flag}")
                elif not _number(match.group(1)) == pytest.approx(_number(flags[flag])):
                    out.append(f"{match.group(0)!r} but --{flag}={flags[flag]}")
        out += [f"measurement {m.group(0)!r} typed into a comment"
                for m in MEASUREMENTS.finditer(comment)]
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_comments_match_flags(path):
    assert contradictions(path) == []


def test_checker_catches_a_contradiction(tmp_path):
    cfg = tmp_path / "x.cfg"
    cfg.write_text("# MMVAE: K=30, batch 128, 30 epochs; ~17 min\n--num_importance_samples=4\n"
                   "--batch_size=128\n")
    found = contradictions(str(cfg))
    assert len(found) == 2 and "K=30" in found[0] and "17 min" in found[1]
