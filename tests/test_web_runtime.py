"""mmali_tf.cli.web_runtime: the pinned onnxruntime-web fetch, against local tarballs (no network)."""

from __future__ import annotations

import io
import tarfile

import pytest

from mmali_tf.cli import web_runtime


def tarball(path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.as_uri()


def package(extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    files = {f"package/dist/{name}": name.encode() * 3 for name in web_runtime.ORT_FILES}
    return {**files, "package/dist/other.js": b"x", **(extra or {})}


def test_fetch_checks_the_integrity_and_extracts_only_the_page_files(tmp_path):
    url = tarball(tmp_path / "ort.tgz", package({"../escape.txt": b"no"}))
    pinned = web_runtime.integrity((tmp_path / "ort.tgz").read_bytes())
    dest = web_runtime.fetch(tmp_path / "cache" / "ort", url=url, expected=pinned)
    assert sorted(p.name for p in dest.iterdir()) == sorted(web_runtime.ORT_FILES)
    assert (dest / "ort.wasm.min.mjs").read_bytes() == b"ort.wasm.min.mjs" * 3
    assert web_runtime.has_files(dest)
    assert not (tmp_path / "cache" / "escape.txt").exists()
    # fetching again replaces the directory atomically
    assert web_runtime.fetch(dest, url=url, expected=pinned) == dest


def test_fetch_refuses_a_tarball_that_is_not_the_pinned_one(tmp_path):
    url = tarball(tmp_path / "ort.tgz", package())
    with pytest.raises(ValueError, match="has integrity sha512-.*, not the pinned sha512-abc"):
        web_runtime.fetch(tmp_path / "dest", url=url, expected="sha512-abc")
    assert not (tmp_path / "dest").exists()
    broken = package()
    del broken["package/dist/ort-wasm-simd-threaded.wasm"]
    url = tarball(tmp_path / "broken.tgz", broken)
    pinned = web_runtime.integrity((tmp_path / "broken.tgz").read_bytes())
    with pytest.raises(ValueError, match="lacks .*ort-wasm-simd-threaded.wasm"):
        web_runtime.fetch(tmp_path / "dest", url=url, expected=pinned)
    assert list(tmp_path.glob(".dest*")) == [] and not (tmp_path / "dest").exists()


def test_missing_runtime_names_the_fetch_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `mmali-web --fetch_runtime` once"):
        web_runtime.check_dir(tmp_path)
    assert web_runtime.cache_dir().name == f"onnxruntime-web-{web_runtime.ORT_VERSION}"
