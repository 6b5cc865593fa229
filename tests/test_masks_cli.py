"""``python -m engine masks``: writes label PNG pairs the folder source (and ``train --masks``)
reads back to the same masks, shares train's mask cache, refuses to overwrite by default."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from engine.cli import masks as cli_masks
from engine.core.errors import MaskError
from engine.masks import FolderMaskSource


def _run(*argv: str) -> int:
    p = argparse.ArgumentParser()
    cli_masks.add_arguments(p)
    return cli_masks.run(p.parse_args(list(argv)))


def test_masks_cli_round_trip(fox_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, cache = tmp_path / "a", tmp_path / "b", tmp_path / "cache"
    common = ["--views", "2", "--size", "96x96", "--mask-cache", str(cache)]
    assert _run(str(fox_path), "--out", str(a), "--preview", *common) == 0
    names = sorted(p.name for p in a.iterdir())
    assert names == [f"orbit_00{i}.{k}.png" for i in range(2) for k in ("coarse", "fine", "preview")]
    assert len(list(cache.glob("masks-builtin-*.npz"))) == 2
    out = capsys.readouterr()
    assert "fine segments" in out.err and str(a / "orbit_000.coarse.png") in out.out

    # Converting the written folder gives the same maps.
    assert _run(str(fox_path), "--out", str(b), "--masks", str(a), *common) == 0
    image = np.zeros((96, 96, 3), np.uint8)
    for i in range(2):
        va = FolderMaskSource(a).view_masks(image, f"orbit_00{i}")
        vb = FolderMaskSource(b).view_masks(image, f"orbit_00{i}")
        np.testing.assert_array_equal(va.coarse, vb.coarse)
        np.testing.assert_array_equal(va.fine, vb.fine)
        assert not va.is_empty and va.num_segments("coarse") < va.num_segments("fine")

    with pytest.raises(MaskError, match="already in"):
        _run(str(fox_path), "--out", str(a), *common)
    with pytest.raises(MaskError, match="either --masks or --sam-checkpoint"):
        _run(str(fox_path), "--out", str(tmp_path / "c"), "--masks", str(a), "--sam-checkpoint", "x.pth", *common)
