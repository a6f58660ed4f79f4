"""Bundle manifest: schema, format versioning and sha256 checksums (json + hashlib only).

A bundle is a directory holding `manifest.json` and the ONNX graphs it lists. The manifest
records everything an application needs to run the graphs without TensorFlow: the modalities
(shape, dtype, value range), the latent layout, the posterior family and the distribution of the
explicit noise inputs, the fusion methods, the ONNX opset, every graph's inputs and outputs, the
training flags and checkpoint step, and the sha256 of every graph file. Readers refuse a bundle
whose format version they do not know or whose files are missing or altered.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

FORMAT = "mmali_tf.bundle"
#: bumped whenever a reader of the previous version would misinterpret a bundle.
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
NOISE_DISTRIBUTIONS = ("normal", "laplace")
#: top-level keys every manifest has (in writing order).
REQUIRED_KEYS = ("format", "format_version", "model", "modalities", "latent", "noise",
                 "fusion_methods", "opset", "weights", "checkpoint_step", "training_flags",
                 "graphs", "files")
#: the contract of the graph inputs, recorded verbatim in every manifest for other-language apps.
CONVENTIONS = {
    "batch": "axis 0 of every graph input and output is the dynamic axis named 'batch'",
    "noise": "every noise input holds i.i.d. draws of the standard `noise.distribution` "
             "(normal: N(0, 1); laplace: Laplace(0, 1))",
    "posterior_sample": "z = mean + scale(logvar) * noise, scale = exp(logvar / 2) (normal) or "
                        "exp(logvar / 2) / sqrt(2) (laplace); noise = 0 gives the posterior mean",
    "latent": "z = [style (style_dim) | content (content_dim)]",
    "translate": "x_to = decoder_to([prior style from style_noise | content of the sample of "
                 "q(z | x_from)])",
    "translate_subset": "x_to = decoder_to([prior style from style_noise | content sample of "
                        "the default fusion of the modalities marked in mask])",
    "generate": "z_m = prior_mean + prior_scale * [style_noise_m | content_noise] for every "
                "modality m (one shared content code)",
    "fuse": "mask[:, k] = 1 marks modality k (in `modalities` order) as present; rows need at "
            "least one present modality (an empty row yields zeros); absent inputs are ignored but must "
            "be finite (feed zeros)",
}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def core_fields(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest without its per-file parts (`graphs`, `files`): what every graph embeds."""
    return {k: v for k, v in manifest.items() if k not in ("graphs", "files")}


def metadata_props(manifest: Mapping[str, Any], graph: Mapping[str, Any]) -> dict[str, str]:
    """String key/values embedded in one ONNX graph's `metadata_props`."""
    props = {f"mmali.{k}": json.dumps(v, sort_keys=True) for k, v in core_fields(manifest).items()}
    props["mmali.graph"] = json.dumps(dict(graph), sort_keys=True)
    return props


def write_manifest(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Checksum every graph file listed in `manifest["graphs"]` and write `manifest.json`.

    Returns the manifest as written (with `files` filled in).
    """
    directory = Path(directory)
    out = dict(manifest)
    out["files"] = {g["file"]: sha256_file(directory / g["file"])
                    for g in manifest["graphs"].values()}
    validate(out)
    with open(directory / MANIFEST_NAME, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    return out


def validate(manifest: Mapping[str, Any]) -> None:
    """Raise a one-line ValueError if `manifest` does not follow this format version."""
    if not isinstance(manifest, Mapping):
        raise ValueError(f"bundle manifest must be a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"not an mmali_tf bundle manifest: format is {manifest.get('format')!r}, "
                         f"expected {FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"bundle format_version must be an integer, got {version!r}")
    if version != FORMAT_VERSION:
        newer = "newer than" if version > FORMAT_VERSION else "older than"
        raise ValueError(f"bundle format_version {version} is {newer} the version this runtime "
                         f"reads ({FORMAT_VERSION}); re-export the bundle or upgrade mmali_tf")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"bundle manifest lacks required keys {missing}")
    if manifest["noise"].get("distribution") not in NOISE_DISTRIBUTIONS:
        raise ValueError(f"bundle noise distribution {manifest['noise'].get('distribution')!r} "
                         f"is not one of {NOISE_DISTRIBUTIONS}")
    for name, graph in manifest["graphs"].items():
        if graph.get("file") not in manifest["files"]:
            raise ValueError(f"bundle graph {name!r} names file {graph.get('file')!r} that has "
                             f"no checksum in the manifest")


def load_manifest(directory: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Read and validate `directory/manifest.json`; with `verify`, check every file's sha256.

    Raises:
      FileNotFoundError: the directory, the manifest or a listed file is missing.
      ValueError: unreadable manifest, unknown format version, or a checksum mismatch.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"bundle directory {str(directory)!r} does not exist")
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"bundle {str(directory)!r} has no {MANIFEST_NAME}; "
                                f"expected a directory written by tools/export_onnx.py")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"bundle manifest {str(path)!r} is not valid JSON ({error.msg} at line "
                         f"{error.lineno})") from None
    validate(manifest)
    if verify:
        for name, expected in manifest["files"].items():
            file = directory / name
            if not file.is_file():
                raise FileNotFoundError(f"bundle {str(directory)!r} is incomplete: {name!r} "
                                        f"listed in the manifest is missing")
            if sha256_file(file) != expected:
                raise ValueError(f"bundle file {name!r} does not match its manifest sha256 "
                                 f"(modified or corrupted); refusing to load it")
    return manifest
