"""SAM-like mask simulator: `clean` yields the ground truth exactly; noise modes act as named."""

from __future__ import annotations

import numpy as np
import pytest

from engine.masks import area_rule
from engine.bench.evaluation.masksim import MaskNoise, noise_level, simulate_segments, simulate_view_masks


def _gt() -> tuple[np.ndarray, np.ndarray]:
    """Table (0) with two touching objects: 1 = parts 1 (body) + 3 (lid, 100 px) + 4 (tiny, 4 px),
    2 = parts 2 + 5; a background strip (-1)."""
    om = np.zeros((64, 64), np.int32)
    om[:, :4] = -1
    om[10:30, 10:30] = 1
    om[10:30, 30:50] = 2
    pm = np.where(om == 0, 0, -1).astype(np.int32)
    pm[om == 1] = 1
    pm[10:15, 10:30] = 3
    pm[20:22, 20:22] = 4
    pm[om == 2] = 2
    pm[25:30, 30:50] = 5
    return om, pm


def _is_relabeling(pred: np.ndarray, gt: np.ndarray) -> bool:
    """pred equals gt up to a one-to-one renaming of ids, with -1 exactly where gt is -1."""
    if not np.array_equal(pred < 0, gt < 0):
        return False
    pairs = np.unique(np.stack([pred[gt >= 0], gt[gt >= 0]]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def test_clean_gives_ground_truth_exactly():
    om, pm = _gt()
    for vm in simulate_view_masks([om, om], [pm, pm], "clean", seed=3):
        assert _is_relabeling(vm.coarse, om)
        assert _is_relabeling(vm.fine, pm)


def test_clean_segments_are_objects_and_parts():
    om, pm = _gt()
    segs = simulate_segments(om, pm, "clean")
    # table (one object of one part: one segment), object 1 and its 3 parts, object 2 and its 2
    assert len(segs) == 1 + 1 + 3 + 1 + 2
    for s in segs:
        assert s["segmentation"].dtype == bool and s["area"] == s["segmentation"].sum()


def test_seeded_and_view_varying():
    om, pm = _gt()
    a = simulate_view_masks([om] * 4, [pm] * 4, "hard", seed=5)
    b = simulate_view_masks([om] * 4, [pm] * 4, "hard", seed=5)
    for x, y in zip(a, b):
        assert np.array_equal(x.coarse, y.coarse) and np.array_equal(x.fine, y.fine)
    assert any(not np.array_equal(a[0].fine, v.fine) for v in a[1:])


def test_granularity_whole_or_parts():
    om, pm = _gt()
    only = MaskNoise(granularity=1.0)
    seen_whole = seen_parts = False
    for seed in range(20):
        vm = area_rule(simulate_segments(om, pm, only, seed), 64, 64)
        lid = vm.fine[12, 15]
        body = vm.fine[25, 15]
        if lid == body:  # object 1 returned whole: one segment at the fine level too
            seen_whole = True
        if vm.coarse[12, 15] != vm.coarse[25, 15]:  # returned as parts: split at the coarse level
            seen_parts = True
    assert seen_whole and seen_parts


def test_merge_touching_objects():
    om, pm = _gt()
    vm = area_rule(simulate_segments(om, pm, MaskNoise(merge=1.0), 0), 64, 64)
    assert vm.coarse[15, 15] == vm.coarse[15, 40]  # touching objects 1 and 2 merged
    assert vm.fine[15, 15] != vm.fine[15, 40]  # parts still apart
    assert vm.coarse[15, 15] != vm.coarse[40, 40]  # not with the table


def test_missed_small_part_is_unassigned():
    om, pm = _gt()
    vm = area_rule(simulate_segments(om, pm, MaskNoise(miss_small=1.0, small_area=0.01), 0), 64, 64)
    # the 4-pixel part (area < 1% of 4096 px) is missed everywhere; the 100-px lid is not small
    assert (vm.fine[20:22, 20:22] == -1).all() and (vm.coarse[20:22, 20:22] == -1).all()
    assert vm.fine[12, 15] >= 0


def test_ragged_boundaries_stay_near_truth():
    om, pm = _gt()
    vm = area_rule(simulate_segments(om, pm, MaskNoise(ragged_px=2.0), 0), 64, 64)
    clean = area_rule(simulate_segments(om, pm, "clean"), 64, 64)
    # each noisy coarse segment stands for the ground-truth object it overlaps most
    mapped = np.full(om.shape, -9)
    for i in np.unique(vm.coarse[vm.coarse >= 0]):
        mapped[vm.coarse == i] = np.bincount(om[vm.coarse == i] + 1).argmax() - 1
    changed = np.mean(mapped != om)
    assert 0 < changed < 0.2  # a 2-px band along ~300 px of boundary in a 64x64 view
    assert not np.array_equal(vm.fine, clean.fine)


def test_spurious_segments_add_ids():
    om, pm = _gt()
    counts = [area_rule(simulate_segments(om, pm, MaskNoise(spurious=4.0), s), 64, 64).num_segments("fine") for s in range(5)]
    assert max(counts) > 7


def test_bad_input():
    with pytest.raises(ValueError, match="granularity"):
        MaskNoise(granularity=1.5)
    with pytest.raises(ValueError, match="unknown mask noise level"):
        noise_level("extreme")
    with pytest.raises(ValueError, match="one size"):
        simulate_segments(np.zeros((4, 4), int), np.zeros((4, 5), int))


def test_noise_level_overrides_one_failure_mode():
    base = noise_level("realistic")
    off = noise_level("realistic, merge=0")
    assert off.merge == 0.0 and base.merge > 0
    assert {k: v for k, v in off.as_dict().items() if k != "merge"} == {k: v for k, v in base.as_dict().items() if k != "merge"}
    assert noise_level("clean,ragged_px=1.5").ragged_px == 1.5
    # without merges, touching objects are never one coarse segment
    om, pm = _gt()
    for s in range(5):
        vm = area_rule(simulate_segments(om, pm, noise_level("realistic,merge=0,granularity=0,spurious=0"), s), 64, 64)
        for a in np.unique(om[om > 0]):
            for b in np.unique(om[om > a]):
                ca, cb = vm.coarse[om == a], vm.coarse[om == b]
                ca, cb = ca[ca >= 0], cb[cb >= 0]
                if len(ca) and len(cb):
                    assert np.bincount(ca).argmax() != np.bincount(cb).argmax()
    for bad, msg in (("realistic,merge", "NAME=VALUE"), ("realistic,blur=1", "NAME=VALUE"),
                     ("realistic,merge=x", "must be a number"), ("realistic,merge=2", "merge")):
        with pytest.raises(ValueError, match=msg):
            noise_level(bad)
