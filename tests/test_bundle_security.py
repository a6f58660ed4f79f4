"""Bundles as untrusted input: every refusal of mmali_tf.export.bundle_files / schema / limits / pinning.

Each test copies the session's exported bundle, alters it as an attacker (or an accident) would,
and checks the one-line `BundleError` that names what is wrong. Graph-level refusals also check
that onnxruntime never saw the refused bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from mmali_tf.export import bundle_files
from mmali_tf.export import manifest as manifest_lib
from mmali_tf.export.errors import BundleError
from mmali_tf.export.limits import Limits
from mmali_tf.export.runtime import Bundle


@pytest.fixture
def bundle(bundle_path) -> Bundle:
    return Bundle(bundle_path)


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def read_manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def write_manifest(path: Path, manifest: dict) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))


def put_graph(path: Path, graph: str, data: bytes) -> None:
    """Replace `graph`'s file with `data` and record its sha256, as a tamperer would."""
    manifest = read_manifest(path)
    file = manifest["graphs"][graph]["file"]
    (path / file).write_bytes(data)
    manifest["files"][file] = hashlib.sha256(data).hexdigest()
    write_manifest(path, manifest)


def refused(match: str, call, *args, **kwargs) -> str:
    with pytest.raises(BundleError, match=match) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def no_onnxruntime(monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("onnxruntime was asked to open a refused graph")
    monkeypatch.setattr(bundle_files.ort, "InferenceSession", forbidden)


# ---------------------------------------------------------------------- files inside the bundle
def test_graph_path_outside_the_bundle_is_refused(bundle_path, tmp_path, monkeypatch):
    """The issue's case: encoder_hand -> ../elsewhere/x.onnx (a decoder), its sha256 added."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(bundle_path / "decoder_hand.onnx", elsewhere / "x.onnx")
    digest = manifest_lib.sha256_file(elsewhere / "x.onnx")
    no_onnxruntime(monkeypatch)
    for i, target in enumerate(["../elsewhere/x.onnx", str(elsewhere / "x.onnx"),
                                "sub/x.onnx", "..", ".hidden.onnx", "x.onnx\\..\\y.onnx"]):
        bundle = copy_bundle(bundle_path, tmp_path / f"traversal{i}")
        manifest = read_manifest(bundle)
        manifest["graphs"]["encoder_hand"]["file"] = target
        manifest["files"][target] = digest
        del manifest["files"]["encoder_hand.onnx"]
        write_manifest(bundle, manifest)
        message = refused(r"graphs\['encoder_hand'\]\.file", Bundle, bundle)
        assert "inside the bundle directory" in message


def test_symbolic_links_are_refused(bundle_path, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.copy(bundle_path / "decoder_hand.onnx", outside)
    leaving = copy_bundle(bundle_path, tmp_path / "leaving")
    (leaving / "encoder_hand.onnx").unlink()
    (leaving / "encoder_hand.onnx").symlink_to(outside)
    manifest = read_manifest(leaving)
    manifest["files"]["encoder_hand.onnx"] = manifest_lib.sha256_file(outside)
    write_manifest(leaving, manifest)
    refused("'encoder_hand.onnx' is a symbolic link", Bundle, leaving)
    # a link inside the bundle and a linked manifest are refused too
    inside = copy_bundle(bundle_path, tmp_path / "inside")
    (inside / "generate.onnx").unlink()
    (inside / "generate.onnx").symlink_to(inside / "decoder_hand.onnx")
    refused("'generate.onnx' is a symbolic link", Bundle, inside)
    linked = copy_bundle(bundle_path, tmp_path / "linked")
    shutil.move(linked / "manifest.json", tmp_path / "manifest.json")
    (linked / "manifest.json").symlink_to(tmp_path / "manifest.json")
    refused("'manifest.json' is a symbolic link", Bundle, linked)


def test_files_the_manifest_does_not_list_are_refused(bundle_path, tmp_path):
    extra = copy_bundle(bundle_path, tmp_path / "extra")
    (extra / "spare.bin").write_bytes(b"\0" * 16)
    refused("holds 'spare.bin', which its manifest does not list", Bundle, extra)
    subdir = copy_bundle(bundle_path, tmp_path / "subdir")
    (subdir / "data").mkdir()
    refused("holds 'data'", Bundle, subdir)
    unused = copy_bundle(bundle_path, tmp_path / "unused")
    manifest = read_manifest(unused)
    manifest["files"]["spare.onnx"] = "0" * 64
    write_manifest(unused, manifest)
    refused("files lists 'spare.onnx', which no graph uses", Bundle, unused)


def external_graph(source: Path, location: str, offset: int | str = 0,
                   length: int | str | None = None, extra: dict | None = None) -> bytes:
    """`source` (its shared weights copied in) with its largest initializer turned into a
    reference to `location` (offset, length, extra keys as given; length defaults to the
    tensor's own size)."""
    model = onnx.load(str(source))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    size = len(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    keys = {"location": location, "offset": offset, "length": size if length is None else length,
            **(extra or {})}
    for key, value in keys.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)
    return model.SerializeToString()


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "other.bin",
                                      "manifest.json"])
def test_graphs_with_external_data_are_refused_before_onnxruntime(bundle_path, tmp_path,
                                                                  monkeypatch, location):
    bundle = copy_bundle(bundle_path, tmp_path / "external")
    put_graph(bundle, "decoder_hand", external_graph(bundle / "decoder_hand.onnx", location))
    loaded = Bundle(bundle)  # checksums match: the refusal comes when the graph is loaded
    no_onnxruntime(monkeypatch)
    message = refused("'decoder_hand' keeps tensor", loaded.session, "decoder_hand")
    assert repr(location) in message and "refer to the manifest's external_data" in message


def test_references_into_the_weights_file_are_bounded(bundle_path, tmp_path, monkeypatch):
    """The shared weights file is the only external data, and only in range, exact sizes."""
    size = (bundle_path / "weights.bin").stat().st_size
    no_onnxruntime(monkeypatch)
    for i, (kwargs, match) in enumerate([
        ({"offset": size}, rf"expected \d+ bytes inside its {size}"),
        ({"offset": -64}, "refers to bytes '-64'"),
        ({"offset": "0x10"}, "refers to bytes '0x10'"),
        ({"length": 4}, "expected \\d+ bytes"),
        ({"extra": {"checksum": "0"}}, r"expected exactly \['location', 'offset', 'length'\]"),
    ]):
        bundle = copy_bundle(bundle_path, tmp_path / f"ref{i}")
        put_graph(bundle, "decoder_hand",
                  external_graph(bundle / "decoder_hand.onnx", "weights.bin", **kwargs))
        refused(match, Bundle(bundle).session, "decoder_hand")
    # a reference anywhere but a top-level initializer (here a Constant node) is refused
    model = onnx.load(str(bundle_path / "decoder_hand.onnx"))
    tensor = onnx.helper.make_tensor("c", onnx.TensorProto.FLOAT, [1], [0.0])
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", "4")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    model.graph.node.append(onnx.helper.make_node("Constant", [], ["c_out"], value=tensor))
    bundle = copy_bundle(bundle_path, tmp_path / "constant")
    put_graph(bundle, "decoder_hand", model.SerializeToString())
    refused("only top-level initializers may refer", Bundle(bundle).session, "decoder_hand")


def test_the_weights_file_is_checked_like_a_graph(bundle_path, tmp_path):
    tampered = copy_bundle(bundle_path, tmp_path / "tampered")
    data = bytearray((tampered / "weights.bin").read_bytes())
    data[len(data) // 2] ^= 0x01
    (tampered / "weights.bin").write_bytes(bytes(data))
    refused("'weights.bin' does not match its manifest sha256", Bundle, tampered)
    renamed = copy_bundle(bundle_path, tmp_path / "renamed")
    manifest = read_manifest(renamed)
    for bad, match in [("../weights.bin", r"external_data is '../weights.bin'; expected a name"),
                       ("weights.onnx", "external_data is 'weights.onnx'")]:
        write_manifest(renamed, {**manifest, "external_data": bad})
        refused(match, Bundle, renamed)
    version1 = copy_bundle(bundle_path, tmp_path / "version1")
    write_manifest(version1, {**manifest, "format_version": 1})
    refused("no 'external_data' in a format_version 1 bundle", Bundle, version1)


def test_graphs_with_foreign_operators_or_garbage_are_refused(bundle_path, tmp_path, monkeypatch):
    model = onnx.load(str(bundle_path / "decoder_hand.onnx"))
    model.graph.node[0].domain = "com.microsoft"
    bundle = copy_bundle(bundle_path, tmp_path / "foreign")
    put_graph(bundle, "decoder_hand", model.SerializeToString())
    no_onnxruntime(monkeypatch)
    refused("of domain 'com.microsoft'; expected standard ONNX", Bundle(bundle).session,
            "decoder_hand")
    put_graph(bundle, "decoder_hand", b"\xff" * 64)
    refused("'decoder_hand' is not a readable ONNX model", Bundle(bundle).session, "decoder_hand")


def test_a_file_swapped_after_opening_is_refused_when_loaded(bundle_path, tmp_path):
    bundle = copy_bundle(bundle_path, tmp_path / "swapped")
    opened = Bundle(bundle)
    shutil.copy(bundle / "decoder_print.onnx", bundle / "decoder_hand.onnx")
    refused("'decoder_hand.onnx' does not match its manifest sha256", opened.session,
            "decoder_hand")


# ---------------------------------------------------------------------- graph interface
def test_graph_inputs_and_outputs_must_match_the_manifest(bundle_path, tmp_path):
    names = copy_bundle(bundle_path, tmp_path / "names")
    put_graph(names, "encoder_hand", (names / "decoder_hand.onnx").read_bytes())
    refused(r"'encoder_hand' has inputs \['z'\] in its ONNX file, but the manifest declares "
            r"\['x'\]", Bundle(names).session, "encoder_hand")
    shapes = copy_bundle(bundle_path, tmp_path / "shapes")
    put_graph(shapes, "encoder_hand", (shapes / "encoder_print.onnx").read_bytes())
    refused(r"'encoder_hand' input 'x' is tensor\(float\) \['batch', 32, 32, 3\] in its ONNX "
            r"file, but the manifest declares tensor\(float\) \['batch', 28, 28, 1\]",
            Bundle(shapes).session, "encoder_hand")


def test_declared_interfaces_must_follow_the_modalities(bundle_path, tmp_path):
    bundle = copy_bundle(bundle_path, tmp_path / "declared")
    original = read_manifest(bundle)
    edits = [
        (lambda m: m["graphs"]["decoder_hand"]["outputs"][0].update(shape=["batch", 9]),
         r"graph 'decoder_hand' output 'x' is declared as .*; expected \[\"float32\", "
         r"\[\"batch\", 28, 28, 1\]\]"),
        (lambda m: m["graphs"]["encoder_hand"]["inputs"][0].update(dtype="float64"),
         "graph 'encoder_hand' input 'x' is declared as"),
        (lambda m: m["graphs"]["generate"].update(outputs=[]),
         r"graph 'generate' declares outputs \[\]; expected \['x_hand', 'x_print'\]"),
        (lambda m: m["graphs"]["encoder_hand"].update(role="decoder"),
         r"graphs\['encoder_hand'\]\.role is 'decoder'; expected 'encoder'"),
        (lambda m: m["graphs"].update(backdoor=m["graphs"]["generate"]),
         "graph 'backdoor' is not a graph of these modalities"),
        (lambda m: m["latent"].update(latent_dim=9), "latent_dim = style_dim \\+ content_dim"),
        (lambda m: m["modalities"][0].update(shape=[28, 28]), r"\[height, width, 1 or 3\]"),
        (lambda m: m["modalities"][0].update(value_range=[1.0, 0.0]), "finite low < high"),
    ]
    for edit, match in edits:
        manifest = json.loads(json.dumps(original))
        edit(manifest)
        write_manifest(bundle, manifest)
        refused(match, Bundle, bundle)


# ---------------------------------------------------------------------- pinning
def test_pinned_digest_accepts_the_bundle_and_refuses_any_other(bundle_path, tmp_path):
    digest_file = manifest_lib.digest_path(bundle_path)
    line = digest_file.read_text()
    digest = hashlib.sha256((bundle_path / "manifest.json").read_bytes()).hexdigest()
    assert line == f"{digest}  bundle/manifest.json\n"
    if shutil.which("sha256sum"):  # the file is in the standard tool's format
        subprocess.run(["sha256sum", "--check", "--quiet", digest_file.name],
                       cwd=bundle_path.parent, check=True, timeout=60)
    assert Bundle(bundle_path, digest=digest).manifest["checkpoint_step"] == 5
    assert Bundle(bundle_path, digest=f" {digest.upper()}\n").path == bundle_path.resolve()
    # a re-signed manifest (every file sha256 consistent) is still not the pinned bundle
    bundle = copy_bundle(bundle_path, tmp_path / "resigned")
    put_graph(bundle, "encoder_hand", (bundle / "encoder_hand.onnx").read_bytes() + b"\0")
    Bundle(bundle)  # internally consistent
    refused(f"not the pinned digest {digest}", Bundle, bundle, digest=digest)
    for bad in ["", "abc", "g" * 64, digest[:-1], 12]:
        refused("is not a sha256; expected 64 hexadecimal digits", Bundle, bundle_path,
                digest=bad)


# ---------------------------------------------------------------------- limits
def test_limits_bound_what_a_bundle_declares(bundle_path, tmp_path):
    size = (bundle_path / "manifest.json").stat().st_size
    refused(f"'manifest.json' has {size} bytes; the limit is 1000 \\(Limits.manifest_bytes\\)",
            Bundle, bundle_path, limits=Limits(manifest_bytes=1000))
    refused(r"lists 8 graphs; expected 1 to 3 \(Limits.graphs\)", Bundle, bundle_path,
            limits=Limits(graphs=3))
    refused(r"has \d+ bytes; the limit is 100000 \(Limits.graph_bytes\)", Bundle, bundle_path,
            limits=Limits(graph_bytes=100_000))
    refused(r"the limit is 1000000 \(Limits.bundle_bytes\)", Bundle, bundle_path,
            limits=Limits(bundle_bytes=1_000_000))
    refused(r"modalities is .*; expected a JSON array of 1 to 1 items", Bundle, bundle_path,
            limits=Limits(modalities=1))
    bundle = copy_bundle(bundle_path, tmp_path / "huge")
    original = read_manifest(bundle)
    for edit, match in [
        (lambda m: m["latent"].update(latent_dim=10 ** 12, content_dim=10 ** 12 - 3),
         r"latent.latent_dim is 1000000000000; expected an integer in \[1, 1048576\]"),
        (lambda m: m["modalities"][1].update(shape=[4096, 4096, 3]),
         r"at most 16777216 elements per example"),
        (lambda m: m["modalities"][0].update(name="x" * 300), "at most 256 characters"),
    ]:
        manifest = json.loads(json.dumps(original))
        edit(manifest)
        write_manifest(bundle, manifest)
        refused(match, Bundle, bundle)


def test_limits_bound_each_call(bundle_path):
    small = Bundle(bundle_path, limits=Limits(batch=4, batch_elements=10_000))
    x = np.full((5, 28, 28, 1), 0.5, np.float32)
    refused(r"batch of 5 examples exceeds the limit of 4 \(Limits.batch\)", small.encode, "hand",
            x)
    refused(r"batch of 5 examples exceeds the limit", small.generate, 5)
    # 4 x 28 x 28 fits, but 4 translated 32 x 32 x 3 images do not
    refused(r"batch of 4 x \(32, 32, 3\) exceeds the limit of 10000 values", small.translate,
            "hand", "print", x[:4])
    bundle = Bundle(bundle_path)
    refused("exceeds the limit of 65536", bundle.generate, 10 ** 12)
    # latents (noise, z) count too, whatever the modality shapes
    tight = Bundle(bundle_path, limits=Limits(batch_elements=8 * 1000))
    tight._check_batch(1000)
    refused(r"batch of 1001 x \(8,\) exceeds the limit of 8000 values", tight._check_batch, 1001)
    # a declared (broadcast) batch of 10^9 images is refused before any value is read
    huge = np.broadcast_to(np.float32(0.5), (10 ** 9, 28, 28, 1))
    refused("exceeds the limit", bundle.translate, "hand", "print", huge)
    refused("exceeds the limit", bundle.run, "decoder_hand",
            {"z": np.broadcast_to(np.float32(0), (10 ** 9, 8))})


def test_run_checks_feeds_against_the_graph(bundle):
    refused(r"graph 'decoder_hand' takes inputs \['z'\]; got \['x'\]", bundle.run, "decoder_hand",
            {"x": np.zeros((1, 8), np.float32)})
    refused(r"input 'z' of 'decoder_hand' has shape \(2, 7\)", bundle.run, "decoder_hand",
            {"z": np.zeros((2, 7), np.float32)})
    refused("have batch sizes \\[1, 2\\]", bundle.run, "reconstruct_hand",
            {"x": np.zeros((1, 28, 28, 1), np.float32), "noise": np.zeros((2, 8), np.float32)})
    refused(r"bundle has no graph \['generate'\]", bundle.run, ["generate"], {})

