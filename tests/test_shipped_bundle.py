"""The trained digits bundle shipped as package data (mmali_tf.export.shipped): pinned digest,
provenance from the main job's config, size, and translation without --bundle."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from mmali_tf.export import shipped
from mmali_tf.export.runtime import Bundle

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "digits_mmali.cfg"
#: the issue's bound on the shipped bundle (bytes of all its files).
MAX_BYTES = 5 * 2 ** 20


def config_flags(path: Path) -> dict[str, str]:
    """`--name=value` / `--name` lines of an absl flagfile (comments skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("--"):
            name, _, value = line[2:].partition("=")
            out[name] = value if value else "true"
    return out


def test_shipped_bundle_matches_its_pinned_digest_and_size():
    digest_line = (shipped.SHIPPED_DIR / "digits_mmali.sha256").read_text()
    manifest = (shipped.DIGITS / "manifest.json").read_bytes()
    assert digest_line == f"{hashlib.sha256(manifest).hexdigest()}  digits_mmali/manifest.json\n"
    bundle = Bundle(shipped.DIGITS, digest=shipped.digest())
    assert bundle.modalities == ("hand", "print")
    assert sum(f.stat().st_size for f in shipped.DIGITS.iterdir()) <= MAX_BYTES


def test_shipped_bundle_comes_from_the_main_jobs_config():
    flags = Bundle(shipped.DIGITS).manifest["training_flags"]
    for name, value in config_flags(CONFIG).items():
        if name == "run_dir":
            continue
        recorded = flags[name]
        if isinstance(recorded, bool):
            recorded = str(recorded).lower()
        elif isinstance(recorded, list):
            recorded = ",".join(recorded)
        assert str(recorded) == value, (name, recorded, value)


def test_shipped_bundle_is_from_the_full_run():
    manifest = Bundle(shipped.DIGITS).manifest
    full = int(config_flags(CONFIG)["max_steps"])
    assert manifest["checkpoint_step"] == full, (
        f"the shipped bundle records step {manifest['checkpoint_step']}, the config trains "
        f"{full}: re-export it from a full run (BUILD.md, 'The shipped bundle')")


def test_translate_cli_defaults_to_the_shipped_bundle(tmp_path):
    yy, xx = np.mgrid[:28, :28]
    ring = np.abs(np.hypot(yy - 14, xx - 14) - 8) < 2
    Image.fromarray((ring * 255).astype(np.uint8)).save(tmp_path / "digit.png")
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "translate.py"), "--from=hand",
                          "--to=print", f"--input={tmp_path / 'digit.png'}",
                          f"--output={tmp_path / 'out.npy'}", "--seed=0"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    y = np.load(tmp_path / "out.npy")
    assert y.shape == (1, 32, 32, 3) and 0.0 <= y.min() and y.max() <= 1.0
    expected = Bundle(shipped.DIGITS).translate(
        "hand", "print", (ring[None, ..., None]).astype(np.float32), seed=0)
    np.testing.assert_allclose(y, expected, atol=1e-6)
