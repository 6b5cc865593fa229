"""The extension zip's engine: exactly ``engine/__init__.py``, ``engine/core`` and ``engine/link``
(what Blender may import), none of it importing torch or an engine module left out."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _build_module():
    spec = importlib.util.spec_from_file_location("build_extension", REPO / "scripts" / "build_extension.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_extension", module)
    spec.loader.exec_module(module)
    return module


def test_bundled_engine_is_core_and_link_only(tmp_path: Path) -> None:
    build = _build_module()
    dest = tmp_path / "engine"
    build.stage_engine(dest)
    names = sorted(str(p.relative_to(tmp_path)) for p in dest.rglob("*.py"))
    expected = sorted(
        ["engine/__init__.py"]
        + [str(p.relative_to(REPO)) for pkg in ("core", "link") for p in (REPO / "engine" / pkg).rglob("*.py")
           if "__pycache__" not in p.parts]
    )
    assert names == expected
    assert "engine/core/schedule.py" in names and "engine/link/client.py" in names
    assert not any(n.startswith(("engine/render", "engine/train", "engine/serve", "engine/masks")) for n in names)
    for rel, imported in build.bundled_imports(dest).items():
        tops = {name.split(".")[0] for name in imported}
        assert not tops & {"torch", "gsplat", "hdbscan", "segment_anything", "bpy"}, rel


def test_build_refuses_a_bundled_torch_import(tmp_path: Path) -> None:
    build = _build_module()
    dest = tmp_path / "engine"
    build.stage_engine(dest)
    (dest / "core" / "sneaky.py").write_text("def f():\n    import torch\n")
    with pytest.raises(build.BuildError, match="torch"):
        build.check_bundled_engine(dest)
    (dest / "core" / "sneaky.py").write_text("from ..render.renderer import render\n")
    with pytest.raises(build.BuildError, match="not bundled"):
        build.check_bundled_engine(dest)
