"""Edit-group estimation (click_gaussian_blender.edit_groups, numpy only): which transform moved
which Gaussians, from their original and current positions."""

from __future__ import annotations

import numpy as np
import pytest

from click_gaussian_blender.edit_groups import TRANSLATED, UNMOVED, estimate_edits
from engine.core.transform import quat_to_matrix

pytestmark = pytest.mark.bpy  # part of the Blender extension (runs without bpy itself)


def similarity(rng, scale: float = 1.0) -> np.ndarray:
    q = rng.normal(size=4)
    m = np.eye(4)
    m[:3, :3] = scale * quat_to_matrix(q / np.linalg.norm(q))
    m[:3, 3] = rng.normal(size=3)
    return m


def apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (p.astype(np.float64) @ m[:3, :3].T + m[:3, 3]).astype(np.float32)


def blobs(rng, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """k spatially separate blobs of n points each (float32), and the blob id per point."""
    centres = rng.uniform(-10, 10, size=(k, 3))
    pts = np.concatenate([c + rng.normal(size=(n, 3)) for c in centres]).astype(np.float32)
    return pts, np.repeat(np.arange(k), n)


def test_nothing_moved() -> None:
    pts = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    est = estimate_edits(pts, pts.copy())
    assert len(est.matrices) == 0 and (est.groups == UNMOVED).all()


def test_three_independent_edits_without_hints() -> None:
    rng = np.random.default_rng(1)
    pts, blob = blobs(rng, 4, 500)
    cur = pts.copy()
    truth = {0: similarity(rng, 1.3), 1: similarity(rng, 0.7)}
    truth[2] = np.eye(4)
    truth[2][:3, :3] = np.diag([1.0, 2.0, 0.5])  # non-uniform scale (S with axis constraint)
    for b, m in truth.items():
        cur[blob == b] = apply(m, pts[blob == b])
    est = estimate_edits(pts, cur)
    assert (est.groups[blob == 3] == UNMOVED).all()
    assert est.num_translated == 0
    for b, m in truth.items():
        g = np.unique(est.groups[blob == b])
        assert len(g) == 1 and g[0] >= 0, (b, g)
        np.testing.assert_allclose(est.matrices[g[0]], m, atol=1e-4)


def test_selection_hint_and_fixed_pivot_vertex() -> None:
    """Rotating about the active vertex leaves it in place; it must still get the rotation."""
    rng = np.random.default_rng(2)
    pts, blob = blobs(rng, 2, 300)
    sel = blob == 0
    pivot = pts[np.flatnonzero(sel)[0]].astype(np.float64)
    m = similarity(rng)
    m[:3, 3] = pivot - m[:3, :3] @ pivot  # rotate about the pivot vertex
    cur = pts.copy()
    cur[sel] = apply(m, pts[sel])
    cur[np.flatnonzero(sel)[0]] = pts[np.flatnonzero(sel)[0]]  # exactly unmoved, as Blender leaves it
    est = estimate_edits(pts, cur, selected=sel)
    assert len(est.matrices) == 1
    assert (est.groups[sel] == 0).all()
    assert (est.groups[~sel] == UNMOVED).all()
    np.testing.assert_allclose(est.matrices[0], m, atol=1e-4)


def test_pure_translation_is_exact_and_non_rigid_moves_are_translated_only() -> None:
    rng = np.random.default_rng(3)
    pts, blob = blobs(rng, 2, 200)
    cur = pts.copy()
    cur[blob == 0] += np.float32([1.5, 0.0, -2.0])
    cur[blob == 1] += rng.normal(scale=0.3, size=(200, 3)).astype(np.float32)  # proportional-edit-like
    est = estimate_edits(pts, cur)
    g = np.unique(est.groups[blob == 0])
    assert len(g) == 1 and g[0] >= 0
    np.testing.assert_array_equal(est.matrices[g[0]][:3, :3], np.eye(3))  # snapped: exact
    assert (est.groups[blob == 1] == TRANSLATED).sum() > 150
