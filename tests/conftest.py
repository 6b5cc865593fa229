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
