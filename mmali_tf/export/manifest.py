"""Bundle manifest: reading, writing, sha256 checksums and digest pinning (json + hashlib only).

A bundle is a directory holding `manifest.json`, the ONNX graphs it lists and (format
version 2) `weights.bin`, the initializers the graphs share (`external_data`). The manifest
records everything an application needs to run the graphs without TensorFlow: the modalities
(shape, dtype, value range), the latent layout, the posterior family and the distribution of the
explicit noise inputs, the fusion methods, the ONNX opset, every graph's inputs and outputs, the
training flags and checkpoint step, an int8 quantization record with its fidelity report
(if quantized), and the sha256 of every file. Readers refuse a bundle
whose format version they do not know or whose files are missing or altered; the structure
rules live in `mmali_tf.export.schema`, the file and graph checks in `mmali_tf.export.bundle_files`.

Pinning: the sha256 of `manifest.json` covers every graph (the manifest lists their sha256).
The export writes it beside the bundle as `<bundle>.sha256`, in `sha256sum` format; an app that
loads a bundle it did not build keeps that digest itself and passes it as `Bundle(path,
digest=...)`. A digest read from the same place as the bundle proves nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from mmali_tf.export import schema
from mmali_tf.export.errors import BundleError, show
from mmali_tf.export.limits import DEFAULT_LIMITS, Limits
from mmali_tf.export.schema import FORMAT, FORMAT_VERSION  # noqa: F401  (the format is part of this API)

MANIFEST_NAME = "manifest.json"
DIGEST_SUFFIX = ".sha256"
_HEX64 = re.compile(r"[0-9a-f]{64}")
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
    """The manifest without its per-file parts (`graphs`, `files`) and the quantization
    record (written after the graphs, with their measured fidelity): what every graph embeds."""
    return {k: v for k, v in manifest.items() if k not in ("graphs", "files", "quantization")}


def metadata_props(manifest: Mapping[str, Any], graph: Mapping[str, Any]) -> dict[str, str]:
    """String key/values embedded in one ONNX graph's `metadata_props`."""
    props = {f"mmali.{k}": json.dumps(v, sort_keys=True) for k, v in core_fields(manifest).items()}
    props["mmali.graph"] = json.dumps(dict(graph), sort_keys=True)
    return props


def write_manifest(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Checksum every graph file listed in `manifest["graphs"]` (and the `external_data`
    file, if any) and write `manifest.json`.

    The manifest is validated with the same rules the runtime applies. Returns the manifest as
    written (with `files` filled in).
    """
    directory = Path(directory)
    out = dict(manifest)
    names = [g["file"] for g in manifest["graphs"].values()]
    if manifest.get("external_data") is not None:
        names.append(manifest["external_data"])
    out["files"] = {name: sha256_file(directory / name) for name in names}
    schema.validate(out)
    with open(directory / MANIFEST_NAME, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2, allow_nan=False)  # the reader refuses NaN
        f.write("\n")
    return out


def digest_path(bundle_dir: str | os.PathLike) -> Path:
    """Where the export records the manifest digest: `<bundle>.sha256` beside the directory."""
    bundle_dir = Path(bundle_dir)
    return bundle_dir.parent / f"{bundle_dir.name}{DIGEST_SUFFIX}"


def digest_line(bundle_dir: str | os.PathLike, name: str | None = None) -> str:
    """`<sha256 of manifest.json>  <name>/manifest.json` (the `sha256sum` format; `name`
    defaults to the directory's own name)."""
    bundle_dir = Path(bundle_dir)
    return (f"{sha256_file(bundle_dir / MANIFEST_NAME)}  {name or bundle_dir.name}/"
            f"{MANIFEST_NAME}\n")


def check_digest(manifest_bytes: bytes, digest: str) -> None:
    """Refuse `manifest_bytes` unless their sha256 is `digest` (64 hex digits, any case)."""
    pinned = digest.strip().lower() if isinstance(digest, str) else None
    if pinned is None or not _HEX64.fullmatch(pinned):
        raise BundleError(f"bundle digest {show(digest)} is not a sha256; expected 64 "
                          f"hexadecimal digits (the first field of the export's .sha256 file)")
    actual = hashlib.sha256(manifest_bytes).hexdigest()
    if actual != pinned:
        raise BundleError(f"bundle manifest sha256 is {actual}, not the pinned digest {pinned}; "
                          f"refusing a bundle that differs from the one pinned")


def parse_manifest(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Parse and validate the bytes of `manifest.json` (strict JSON: UTF-8, no NaN or
    Infinity, no duplicate keys, bounded size and nesting). Raises `BundleError`."""
    if len(raw) > limits.manifest_bytes:
        raise BundleError(f"bundle manifest has {len(raw)} bytes; the limit is "
                          f"{limits.manifest_bytes} (Limits.manifest_bytes)")
    try:
        manifest = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant,
                              object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        raise BundleError(f"bundle manifest is not valid JSON ({error.msg} at line "
                          f"{error.lineno})") from None
    except UnicodeDecodeError:
        raise BundleError("bundle manifest is not valid UTF-8 text") from None
    except RecursionError:
        raise BundleError("bundle manifest nests arrays or objects too deeply") from None
    except BundleError:
        raise
    except ValueError as error:  # e.g. an integer literal of thousands of digits
        raise BundleError(f"bundle manifest holds an unreadable value "
                          f"({show(str(error), 120)})") from None
    schema.validate(manifest, limits)
    return manifest


def _reject_constant(name: str) -> None:
    raise BundleError(f"bundle manifest holds {name}; JSON numbers must be finite")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise BundleError(f"bundle manifest repeats key {show(twice)} in one object; "
                          f"expected every key once")
    return out
