"""Shared fixtures. Real data is read from ../shared/data (read-only, beside the clone);
tests write only to pytest's temporary folders."""

from __future__ import annotations

import os
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


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
