"""The trained digits bundle that ships with the package: the CLIs' default bundle.

`mmali_tf/shipped/digits_mmali/` (package data) is the bundle of the README's main job,
`configs/digits_mmali.cfg` trained at its full budget, exported by one command from the
repository root (BUILD.md, "The shipped bundle"):

    python -m mmali_tf.cli.export_onnx --run_dir=runs/digits_mmali \
        --out=mmali_tf/shipped/digits_mmali --overwrite

which also writes `mmali_tf/shipped/digits_mmali.sha256`, the digest every load of the shipped
bundle is pinned to. numpy-, TensorFlow- and onnxruntime-free.
"""

from __future__ import annotations

from pathlib import Path

from mmali_tf.export import manifest as manifest_lib

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "shipped"
DIGITS = SHIPPED_DIR / "digits_mmali"


def digest(bundle: Path = DIGITS) -> str:
    """The pinned sha256 of the shipped bundle's manifest (from `<bundle>.sha256`)."""
    path = manifest_lib.digest_path(bundle)
    if not path.is_file():
        raise FileNotFoundError(f"this installation has no shipped bundle ({path} is missing); "
                                f"pass --bundle=<a bundle directory>")
    return path.read_text(encoding="ascii").split()[0]
