"""Shared fixtures. Real data is read from ../shared/data (read-only, beside the clone);
tests write only to pytest's temporary folders."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fox_path(shared_data: Path) -> Path:
    return shared_data / "fox_cc0.ply"


@pytest.fixture(scope="session", autouse=True)
def _blender_user_resources(tmp_path_factory: pytest.TempPathFactory) -> None:
    # bpy must never write into the real user's Blender config during tests.
    os.environ["BLENDER_USER_RESOURCES"] = str(tmp_path_factory.mktemp("blender_user"))


def _cuda_available() -> bool:
    # The Blender-side runs (scripts/test_blender.sh) have no torch in-process, as in Blender.
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def engine_python() -> str:
    """The interpreter that runs the engine process, as the add-on's preferences name it in real
    use: ``CLICKGS_ENGINE_PYTHON`` (set by scripts/test_blender.sh to .venv's python when the tests
    run on another Blender's Python, which has no torch), else this interpreter."""
    python = os.environ.get("CLICKGS_ENGINE_PYTHON") or sys.executable
    if not Path(python).exists():
        pytest.fail(f"CLICKGS_ENGINE_PYTHON={python} does not exist")
    return python


@pytest.fixture(scope="module")
def bpy_addon():
    """Headless Blender (the ``bpy`` module) with factory settings and the add-on registered, once
    per test module; the engine the add-on may have started is stopped afterwards."""
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    import click_gaussian_blender as cgb

    cgb.register()
    yield bpy
    from click_gaussian_blender import engine_link

    engine_link.LINK.stop()
    cgb.unregister()


@pytest.fixture
def bpy(bpy_addon):
    """A clean scene for each test: Object Mode, no objects, no meshes."""
    b = bpy_addon
    if b.context.object is not None and b.context.object.mode != "OBJECT":
        b.ops.object.mode_set(mode="OBJECT")
    for obj in list(b.data.objects):
        b.data.objects.remove(obj)
    for mesh in list(b.data.meshes):
        b.data.meshes.remove(mesh)
    return b
