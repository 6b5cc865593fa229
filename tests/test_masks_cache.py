"""prepare_masks: per-view disk cache keyed by image and source settings, progress, cancel with
completed views kept, damaged entries replaced, empty views warned about, bad input refused."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.core.errors import Cancelled, MaskError
from engine.masks import BuiltinMaskSource, FolderMaskSource, MaskSourceBase, MaskWarning, prepare_masks


class CountingSource(MaskSourceBase):
    """Two nested segments from the image's bright pixels; counts how often it runs."""

    name = "counting"
    quality = "test source"

    def __init__(self, threshold: int = 100) -> None:
        self.threshold = threshold
        self.calls = 0

    def settings(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    def segments(self, image: np.ndarray, cancel: threading.Event | None = None) -> list[dict]:
        self.calls += 1
        bright = image[..., 0] >= self.threshold
        if not bright.any():
            return []
        half = bright.copy()
        half[:, : image.shape[1] // 2] = False
        return [{"segmentation": bright, "area": int(bright.sum())}, {"segmentation": half, "area": int(half.sum())}]


def _views(n: int = 3) -> list[tuple[str, np.ndarray]]:
    out = []
    for i in range(n):
        im = np.zeros((8, 10, 3), np.uint8)
        im[2:6, 1 + i : 9] = 200
        out.append((f"view_{i}.png", im))
    return out


def _entries(d: Path) -> list[Path]:
    return sorted(d.glob("masks-*.npz"))


def test_cache_reused_only_when_inputs_unchanged(tmp_path: Path) -> None:
    src = CountingSource()
    views = _views()
    first = prepare_masks(src, views, cache_dir=tmp_path)
    assert src.calls == 3 and len(_entries(tmp_path)) == 3
    again = prepare_masks(src, views, cache_dir=tmp_path)
    assert src.calls == 3  # all from the cache
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.coarse, b.coarse)
        np.testing.assert_array_equal(a.fine, b.fine)
    assert first[0].coarse[3, 5] == 0 and first[0].fine[3, 5] == 1 and first[0].coarse[0, 0] == -1
    # Renamed views with the same pixels are the same input.
    prepare_masks(src, [(f"other_{n}", im) for n, im in views], cache_dir=tmp_path)
    assert src.calls == 3
    # One changed pixel: only that view runs again.
    changed = [(n, im.copy()) for n, im in views]
    changed[1][1][0, 0, 0] = 1
    prepare_masks(src, changed, cache_dir=tmp_path)
    assert src.calls == 4
    # Other source settings: everything runs again.
    other = CountingSource(threshold=150)
    prepare_masks(other, views, cache_dir=tmp_path)
    assert other.calls == 3
    assert not list(tmp_path.glob(".tmp-*"))


def test_progress_and_no_cache_dir(tmp_path: Path) -> None:
    src = CountingSource()
    calls: list[tuple[int, int, str]] = []
    prepare_masks(src, _views(), progress=lambda d, t, m: calls.append((d, t, m)))
    assert [(d, t) for d, t, _ in calls] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert "view_2.png" in calls[-1][2] and "computed" in calls[-1][2]
    prepare_masks(src, _views())
    assert src.calls == 6  # no cache_dir: nothing cached
    calls.clear()
    prepare_masks(src, _views(), cache_dir=tmp_path)
    prepare_masks(src, _views(), cache_dir=tmp_path, progress=lambda d, t, m: calls.append((d, t, m)))
    assert all("cached" in m for _, _, m in calls[1:])


def test_messages_from_inside_a_view_reach_progress() -> None:
    class Chatty(CountingSource):
        def segments(self, image, cancel=None, report=None):  # type: ignore[override]
            report("step one")
            return super().segments(image)

    calls: list[tuple[int, int, str]] = []
    prepare_masks(Chatty(), _views(2), progress=lambda d, t, m: calls.append((d, t, m)))
    assert (0, 2, "view 'view_0.png': step one") in calls
    assert (1, 2, "view 'view_1.png': step one") in calls


def test_cancel_keeps_completed_views(tmp_path: Path) -> None:
    src = CountingSource()
    stop = threading.Event()

    def progress(done: int, total: int, message: str) -> None:
        if done == 2:
            stop.set()

    with pytest.raises(Cancelled, match="after 2 of 3 views"):
        prepare_masks(src, _views(), cache_dir=tmp_path, progress=progress, cancel=stop)
    assert src.calls == 2 and len(_entries(tmp_path)) == 2
    result = prepare_masks(src, _views(), cache_dir=tmp_path)
    assert src.calls == 3 and len(result) == 3  # only the unfinished view ran


def test_damaged_entry_is_recomputed(tmp_path: Path) -> None:
    src = CountingSource()
    ref = prepare_masks(src, _views(1), cache_dir=tmp_path)
    (entry,) = _entries(tmp_path)
    entry.write_bytes(b"PK\x03\x04 truncated")
    again = prepare_masks(src, _views(1), cache_dir=tmp_path)
    assert src.calls == 2
    np.testing.assert_array_equal(ref[0].fine, again[0].fine)
    prepare_masks(src, _views(1), cache_dir=tmp_path)
    assert src.calls == 2  # the entry was replaced by a good one


def test_unwritable_cache_warns_and_continues(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    messages: list[str] = []
    out = prepare_masks(CountingSource(), _views(2), cache_dir=blocker / "cache", on_warning=messages.append)
    assert len(out) == 2 and len(messages) == 1 and "cannot be written" in messages[0]


def test_empty_views_warn_and_all_empty_is_an_error(tmp_path: Path) -> None:
    views = _views(2)
    dark = ("dark.png", np.zeros((8, 10, 3), np.uint8))
    messages: list[str] = []
    out = prepare_masks(CountingSource(), [views[0], dark], on_warning=messages.append)
    assert out[1].is_empty and out[1].shape == (8, 10)
    assert len(messages) == 1 and "'dark.png'" in messages[0] and "no segment" in messages[0]
    with pytest.warns(MaskWarning, match="dark.png"):
        prepare_masks(CountingSource(), [views[0], dark])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaskWarning)
        with pytest.raises(MaskError, match="no segment in any of the 2 views"):
            prepare_masks(CountingSource(), [dark, ("dark2", np.zeros((4, 4, 3), np.uint8))])


def test_bad_input() -> None:
    with pytest.raises(MaskError, match="'v.png' must be uint8"):
        prepare_masks(CountingSource(), [("v.png", np.zeros((4, 4, 3), np.float32))])
    with pytest.raises(MaskError, match=r"'v.png' must be \[H, W, 3\]"):
        prepare_masks(CountingSource(), [("v.png", np.zeros((4, 4, 5), np.uint8))])
    with pytest.raises(MaskError, match="view 0: expected a"):
        prepare_masks(CountingSource(), [np.zeros((4, 4, 3), np.uint8)])
    assert prepare_masks(CountingSource(), []) == []


def test_protocol_only_and_folder_sources_are_not_cached(tmp_path: Path) -> None:
    class Bare:
        name = "bare"
        quality = "bare"

        def segments(self, image: np.ndarray) -> list[dict]:
            m = image[..., 0] > 0
            return [{"segmentation": m, "area": int(m.sum())}]

    cache = tmp_path / "cache"
    out = prepare_masks(Bare(), _views(1), cache_dir=cache)
    assert out[0].coarse[3, 5] == 0
    assert not cache.exists() or not _entries(cache)
    folder = tmp_path / "masks"
    folder.mkdir()
    np.save(folder / "view_0.npy", np.ones((1, 8, 10), bool))
    out = prepare_masks(FolderMaskSource(folder), _views(1), cache_dir=cache)
    assert (out[0].coarse == 0).all()
    assert not cache.exists() or not _entries(cache)


def test_builtin_source_through_cache(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    im = np.zeros((64, 80, 3), np.uint8)
    im[10:50, 10:40] = (200, 60, 60)
    im[20:60, 45:75] = (60, 200, 90)
    im = np.clip(im + rng.normal(0, 3, im.shape), 0, 255).astype(np.uint8)
    fresh = prepare_masks(BuiltinMaskSource(), [("a", im)], cache_dir=tmp_path)
    cached = prepare_masks(BuiltinMaskSource(), [("a", im)], cache_dir=tmp_path)
    np.testing.assert_array_equal(fresh[0].coarse, cached[0].coarse)
    np.testing.assert_array_equal(fresh[0].fine, cached[0].fine)
    assert len(_entries(tmp_path)) == 1 and "builtin" in _entries(tmp_path)[0].name
    prepare_masks(BuiltinMaskSource(scales=(100, 400)), [("a", im)], cache_dir=tmp_path)
    assert len(_entries(tmp_path)) == 2
