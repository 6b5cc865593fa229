"""Work out what the user did to the Gaussians in Edit Mode, from where they were and are.

Blender edits vertex *positions* only; a Gaussian also has a rotation, a scale and SH colours
that must follow the edit. Each moved vertex is assigned to an edit group whose 3D transform is
estimated from the original positions (stored at import) and the current ones:

1. ``moved``: vertices whose current position differs from the original (bitwise).
2. Hints first: index sets that were probably edited together (the current selection, vertex
   groups such as Click-Gaussian selections). For each, the moved members are fitted with a
   least-squares similarity (Umeyama: rotation + uniform scale + translation, exact for Blender's
   G / R / S) and, if that leaves residuals, an affine fit (S with an axis constraint, shear).
   Accepted when every member is within ``tol`` of the fit.
3. What is left is split by RANSAC: hypotheses from a random vertex and 3 of its nearest
   neighbours (in original space; edits are usually spatially coherent), scored on a
   subsample, refined on all inliers; repeated until no model explains >= 8 vertices (an
   affine fit interpolates any 4 points, so smaller "groups" would be chance), or ``max_groups``.
4. Unmoved vertices that are selected and fit a group's transform (e.g. the pivot of a rotation
   about the active element) join that group, so their rotation is applied too.
5. Anything still unexplained (proportional editing, sculpt-like per-vertex moves, a few
   vertices moved apart from any selection) is ``TRANSLATED``: its position is kept as edited, its rotation/scale/SH are not
   changed (there is no rigid transform to take them from).

Limits: two different edits that coincide on a vertex within ``tol`` can swap that vertex
between groups (its position is right either way; its orientation is the other group's);
non-rigid edits keep orientations. numpy only, vectorised over the vertices of the common cases
(one or a few groups).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine.core.transform import fit_affine, fit_similarity

UNMOVED = -1
TRANSLATED = -2
MIN_AFFINE = 8  # an affine fit (12 unknowns) interpolates any 4 points: trust it from 8 on
MIN_GROUP = 8  # fewest vertices a RANSAC group may have (explained beyond its sample)


@dataclass
class EditEstimate:
    matrices: np.ndarray  # [G, 4, 4] float64 local-space transforms (original -> current)
    groups: np.ndarray  # [M] int32: group index, UNMOVED (-1) or TRANSLATED (-2)

    @property
    def num_translated(self) -> int:
        return int((self.groups == TRANSLATED).sum())


def _residuals(m: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return np.linalg.norm(src @ m[:3, :3].T + m[:3, 3] - dst, axis=1)


def _snap(m: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """A fitted matrix whose linear part is the identity within ``rtol`` becomes an exact
    translation, so moved-only Gaussians keep their rotation and scale bit for bit."""
    if np.max(np.abs(m[:3, :3] - np.eye(3))) <= rtol:
        m = m.copy()
        m[:3, :3] = np.eye(3)
    return m


def _best_fit(src: np.ndarray, dst: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, residuals): the similarity if it explains the points within tol, else the
    affine fit if it does better."""
    sim = fit_similarity(src, dst)
    r_sim = _residuals(sim, src, dst)
    if r_sim.max(initial=0.0) <= tol:
        return sim, r_sim
    aff = fit_affine(src, dst) if len(src) >= MIN_AFFINE else None
    if aff is None:
        return sim, r_sim
    r_aff = _residuals(aff, src, dst)
    return (aff, r_aff) if (r_aff <= tol).sum() > (r_sim <= tol).sum() else (sim, r_sim)


def default_tolerance(original: np.ndarray, current: np.ndarray) -> float:
    """Inlier distance: 1e-5 of the largest coordinate magnitude of the given (moved) points;
    float32 positions carry ~1e-7 relative error per operation."""
    mag = max(float(np.abs(original).max(initial=0.0)), float(np.abs(current).max(initial=0.0)), 1e-3)
    return 1e-5 * mag


def estimate_edits(
    original: np.ndarray,  # [M, 3] positions at import (local space)
    current: np.ndarray,  # [M, 3] positions now (local space)
    hints: list[np.ndarray] | None = None,  # index arrays into [0, M)
    selected: np.ndarray | None = None,  # [M] bool, current vertex selection
    *,
    tol: float | None = None,
    max_groups: int = 64,
    seed: int = 0,
    moved: np.ndarray | None = None,  # [M] bool, if the caller already knows (else computed)
) -> EditEstimate:
    """Assign every vertex to an edit group (see the module docstring)."""
    orig = np.asarray(original, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    m = len(orig)
    groups = np.full(m, UNMOVED, np.int32)
    mats: list[np.ndarray] = []
    if moved is None:
        moved = np.any(np.asarray(original) != np.asarray(current), axis=1)
    if not moved.any():
        return EditEstimate(np.zeros((0, 4, 4)), groups)
    tol = default_tolerance(orig[moved], cur[moved]) if tol is None else tol
    free = moved.copy()  # moved and not yet explained

    hint_list = [np.flatnonzero(selected)] if selected is not None else []
    hint_list += [np.asarray(h, dtype=np.int64) for h in (hints or [])]
    for h in hint_list:
        idx = h[free[h]]
        if len(idx) < 3 or len(mats) >= max_groups:
            continue
        mat, res = _best_fit(orig[idx], cur[idx], tol)
        if res.max() <= tol:
            groups[idx] = len(mats)
            free[idx] = False
            mats.append(_snap(mat))

    rng = np.random.default_rng(seed)
    while free.sum() >= MIN_GROUP and len(mats) < max_groups:
        rem = np.flatnonzero(free)
        sub = rem if len(rem) <= 4096 else rng.choice(rem, 4096, replace=False)
        best, best_score = None, 0
        for _ in range(48):
            s = sub[rng.integers(len(sub))]
            d = np.linalg.norm(orig[sub] - orig[s], axis=1)
            near = sub[np.argsort(d)[1:13]]
            if len(near) < 3:
                break
            pick = np.concatenate([[s], rng.choice(near, 3, replace=False)])
            for fit in (fit_similarity, fit_affine):
                mat = fit(orig[pick], cur[pick])
                if mat is None:
                    continue
                score = int((_residuals(mat, orig[sub], cur[sub]) <= tol).sum())
                if score > best_score:
                    best, best_score = mat, score
            if best_score == len(sub):
                break
        if best is None or best_score < MIN_GROUP:
            break
        inl = rem[_residuals(best, orig[rem], cur[rem]) <= tol]
        for _ in range(2):  # refine on all inliers
            if len(inl) < MIN_GROUP:
                break
            mat, _ = _best_fit(orig[inl], cur[inl], tol)
            new = rem[_residuals(mat, orig[rem], cur[rem]) <= tol]
            if len(new) < len(inl):
                break
            best, inl = mat, new
        if len(inl) < MIN_GROUP:
            break
        groups[inl] = len(mats)
        free[inl] = False
        mats.append(_snap(best))

    groups[free] = TRANSLATED
    if selected is not None and mats:
        still = np.flatnonzero(np.asarray(selected) & ~moved)
        for g, mat in enumerate(mats):
            if len(still) == 0:
                break
            ok = _residuals(mat, orig[still], cur[still]) <= tol
            groups[still[ok]] = g
            still = still[~ok]
    return EditEstimate(np.stack(mats) if mats else np.zeros((0, 4, 4)), groups)
