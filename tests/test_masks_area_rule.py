"""The area rule on hand-made overlapping segments, with the expected maps written by hand."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.errors import MaskError
from engine.masks import ViewMasks, area_rule, area_rule_stack


def _seg(rows: list[str]) -> dict:
    m = np.array([[c == "#" for c in r] for r in rows])
    return {"segmentation": m, "area": int(m.sum()), "predicted_iou": 0.9}


# A 4x6 view: a "table" (big), an "object" on it (medium), a "part" of the object (small), and a
# separate blob that overlaps nothing.
TABLE = _seg([
    "####..",
    "####..",
    "####..",
    "......",
])  # area 12
OBJECT = _seg([
    ".##...",
    ".##...",
    "......",
    "......",
])  # area 4
PART = _seg([
    "..#...",
    "......",
    "......",
    "......",
])  # area 1
BLOB = _seg([
    "......",
    "....##",
    "....##",
    "......",
])  # area 4


def test_coarse_keeps_largest_fine_keeps_smallest() -> None:
    vm = area_rule([OBJECT, TABLE, BLOB, PART], 4, 6)  # ids: OBJECT 0, TABLE 1, BLOB 2, PART 3
    expected_coarse = np.array([
        [1, 1, 1, 1, -1, -1],
        [1, 1, 1, 1, 2, 2],
        [1, 1, 1, 1, 2, 2],
        [-1, -1, -1, -1, -1, -1],
    ])
    expected_fine = np.array([
        [1, 0, 3, 1, -1, -1],
        [1, 0, 0, 1, 2, 2],
        [1, 1, 1, 1, 2, 2],
        [-1, -1, -1, -1, -1, -1],
    ])
    assert vm.coarse.dtype == np.int32 and vm.fine.dtype == np.int32
    np.testing.assert_array_equal(vm.coarse, expected_coarse)
    np.testing.assert_array_equal(vm.fine, expected_fine)
    assert vm.num_segments("coarse") == 2 and vm.num_segments("fine") == 4
    assert vm.assigned_fraction() == pytest.approx(16 / 24)
    assert not vm.is_empty


def test_order_of_segments_only_changes_ids() -> None:
    a = area_rule([TABLE, OBJECT, PART, BLOB], 4, 6)
    b = area_rule([BLOB, PART, OBJECT, TABLE], 4, 6)
    perm = np.array([3, 2, 1, 0])  # id in a -> id in b
    for level in ("coarse", "fine"):
        la, lb = a.level(level), b.level(level)
        np.testing.assert_array_equal(np.where(la >= 0, perm[la], -1), lb)


def test_equal_areas_lower_index_wins() -> None:
    left = _seg(["##.", "##."])
    right = _seg([".##", ".##"])
    vm = area_rule([left, right], 2, 3)
    np.testing.assert_array_equal(vm.coarse, [[0, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(vm.fine, [[0, 0, 1], [0, 0, 1]])


def test_area_key_is_used_and_counted_when_missing() -> None:
    # The declared area decides (SAM's area may differ from the pixel count after cropping).
    big_declared = {"segmentation": OBJECT["segmentation"], "area": 100}
    vm = area_rule([TABLE, big_declared], 4, 6)
    assert vm.coarse[0, 1] == 1 and vm.fine[0, 1] == 0
    no_area = {"segmentation": OBJECT["segmentation"].astype(np.uint8)}
    vm = area_rule([TABLE, no_area], 4, 6)
    assert vm.coarse[0, 1] == 0 and vm.fine[0, 1] == 1


def test_no_segments_gives_empty_maps() -> None:
    vm = area_rule([], 3, 5)
    assert vm.shape == (3, 5) and vm.is_empty
    assert (vm.coarse == -1).all() and (vm.fine == -1).all()


def test_stack_matches_dicts_on_random_segments() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((12, 20, 30)) < rng.random((12, 1, 1)) * 0.5
    vm_d = area_rule([{"segmentation": m, "area": int(m.sum())} for m in masks], 20, 30)
    vm_s = area_rule_stack(masks)
    np.testing.assert_array_equal(vm_d.coarse, vm_s.coarse)
    np.testing.assert_array_equal(vm_d.fine, vm_s.fine)
    # Brute-force reference: per pixel, the covering segment with max/min (area, -index).
    areas = masks.reshape(12, -1).sum(1)
    for y in range(20):
        for x in range(30):
            cover = [i for i in range(12) if masks[i, y, x]]
            if not cover:
                assert vm_s.coarse[y, x] == -1 and vm_s.fine[y, x] == -1
                continue
            assert vm_s.coarse[y, x] == max(cover, key=lambda i: (areas[i], -i))
            assert vm_s.fine[y, x] == min(cover, key=lambda i: (areas[i], i))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"area": 3}, "segmentation"),
        ({"segmentation": np.zeros((5, 5), bool), "area": 0}, "shape"),
        ({"segmentation": np.full((4, 6), 7), "area": 1}, "binary"),
        ({"segmentation": {"size": [4, 6], "counts": "x"}, "area": 1}, "run-length"),
    ],
)
def test_bad_segments_raise_mask_error(bad: dict, message: str) -> None:
    with pytest.raises(MaskError, match=message):
        area_rule([TABLE, bad], 4, 6)


def test_view_masks_validates() -> None:
    with pytest.raises(ValueError):
        ViewMasks(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError):
        ViewMasks(np.full((2, 2), -2), np.zeros((2, 2)))


def test_masks_package_imports_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, engine.masks as m; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'segment_anything' not in sys.modules; print(m.BuiltinMaskSource.quality)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "lower quality than SAM" in out.stdout
