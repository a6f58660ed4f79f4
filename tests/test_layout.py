"""BUILD.md's layout block is generated from the tree (tools/layout.py) and must match it."""

from __future__ import annotations

import os
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "tools"))
import layout  # noqa: E402


def test_build_md_layout_matches_the_tree():
    with open(os.path.join(ROOT, "BUILD.md"), encoding="utf-8") as f:
        text = f.read()
    assert layout.replace_block(text, layout.render()) == text, (
        "BUILD.md's layout differs from the tree; run python tools/layout.py")


def test_layout_lists_every_module_and_only_existing_folders():
    rendered = layout.render()
    for folder, _, files in os.walk(os.path.join(ROOT, "mmali_tf")):
        for name in files:
            if name.endswith(".py") and name != "__init__.py":
                assert f" {name} " in rendered, name
    assert all(os.path.isdir(os.path.join(ROOT, d)) for d in layout.OTHER_FOLDERS)


def test_a_new_module_makes_the_check_fail(tmp_path, monkeypatch):
    build_md = tmp_path / "BUILD.md"
    with open(os.path.join(ROOT, "BUILD.md"), encoding="utf-8") as f:
        build_md.write_text(f.read())
    assert layout.main(["--check", f"--build_md={build_md}"]) == 0
    original = layout.render
    monkeypatch.setattr(layout, "render", lambda: original().replace("```\n", "```\nnew.py\n", 1))
    assert layout.main(["--check", f"--build_md={build_md}"]) == 1
    assert layout.main([f"--build_md={build_md}"]) == 0
    assert "new.py" in build_md.read_text()
