"""engine.core.atomic: the one atomic file write (temp file beside the target + os.replace)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from engine.core.atomic import atomic_write, replace_with_copy, write_png, write_text


def test_replaces_only_when_complete_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    with atomic_write(target, fsync=True) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_mode_is_kept_or_0644(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX modes")
    fresh = tmp_path / "fresh.txt"
    write_text(fresh, "x")
    assert fresh.stat().st_mode & 0o777 == 0o644
    fresh.chmod(0o600)
    write_text(fresh, "y")
    assert fresh.stat().st_mode & 0o777 == 0o600 and fresh.read_text() == "y"


def test_png_and_copy(tmp_path: Path) -> None:
    from PIL import Image

    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    write_png(tmp_path / "a.png", image)
    with Image.open(tmp_path / "a.png") as im:
        np.testing.assert_array_equal(np.asarray(im), image)
    labels = np.arange(16, dtype=np.uint16).reshape(4, 4) * 1000
    write_png(tmp_path / "ids.png", labels)
    with Image.open(tmp_path / "ids.png") as im:
        np.testing.assert_array_equal(np.asarray(im).astype(np.uint16), labels)
    replace_with_copy(tmp_path / "a.png", tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes() == (tmp_path / "a.png").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
