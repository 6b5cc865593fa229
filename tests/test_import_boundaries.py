"""Module boundaries: what runs inside Blender never imports torch, and engine code that needs
no Blender never imports bpy (STYLE.md habit 5). Checked in a fresh interpreter per module."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Everything the Blender extension may import (and the zip bundles): the ``engine.core`` and
# ``engine.link`` packages, walked here, never a list kept by hand. numpy, stdlib, plyfile only.
BLENDER_SIDE_PACKAGES = ("core", "link")


def _blender_side_modules() -> list[str]:
    modules = ["engine"]
    for pkg in BLENDER_SIDE_PACKAGES:
        root = REPO / "engine" / pkg
        for p in sorted(root.rglob("*.py")):
            parts = list(p.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules.append(".".join(parts))
    return modules


TORCH_FREE = _blender_side_modules()


def test_blender_side_walk_finds_the_modules_the_extension_uses() -> None:
    for module in ("engine.core.schedule", "engine.core.scene", "engine.link.client"):
        assert module in TORCH_FREE


def _exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("module", TORCH_FREE)
def test_blender_side_modules_do_not_import_torch(module: str) -> None:
    if not _exists(module):
        pytest.skip(f"{module} is not part of this version")
    code = (
        "import sys, importlib; importlib.import_module(%r); "
        "bad = [m for m in ('torch', 'gsplat', 'hdbscan', 'segment_anything', 'bpy') if m in sys.modules]; "
        "print(','.join(bad))" % module
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"


def test_engine_never_imports_bpy() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "engine").rglob("*.py")
        if "import bpy" in p.read_text(encoding="utf-8") or "from bpy" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_extension_never_imports_torch() -> None:
    root = REPO / "click_gaussian_blender"
    if not root.is_dir():
        pytest.skip("no extension package in this version")
    offenders = []
    for p in root.rglob("*.py"):
        if "engine" in p.relative_to(root).parts[:1]:
            continue  # the bundled engine copy is checked module by module above
        text = p.read_text(encoding="utf-8")
        if any(s in text for s in ("import torch", "from torch", "import gsplat", "import hdbscan")):
            offenders.append(str(p.relative_to(REPO)))
    assert offenders == []
