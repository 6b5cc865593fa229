"""What the splats say about a view's surfaces, for mask sources that use it.

Every training view rendered from the splats comes with exact per-pixel geometry for free: the
blended camera depth, the blended surface normal (each Gaussian's shortest axis, turned to face
the camera) and the accumulated opacity. :class:`ViewGeometry` carries them to a mask source
that asks for them (a ``geometry`` keyword on its ``segments`` / ``view_masks``, see
:func:`engine.masks.source.takes_geometry`); a photo taken by a camera has none, and sources then
work from the image alone.

The helpers here turn the geometry into what a segmenter can use: where depth jumps
(:func:`depth_edges`), where surfaces turn (:func:`normal_edges`) and which pixels lie on the
scene's support surface (:func:`support_mask`: the ground or table the objects stand on).

numpy (+ scipy.ndimage) only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..core.errors import MaskError


@dataclass
class ViewGeometry:
    """Per-pixel geometry of one view rendered from the splats.

    depth: float32 [H, W] expected camera z (world units) of the blended Gaussians, 0 where
        nothing was hit. normals: float32 [H, W, 3] unit surface normals in the camera frame
        (OpenCV: x right, y down, z forward), facing the camera; 0 where nothing was hit.
    alpha: float32 [H, W] accumulated opacity in [0, 1]. K: float64 [3, 3] the camera's
        intrinsics (pixels), to turn depth into camera-frame points.
    up: float64 [3] the scene's up direction in the camera frame (unit), or None when unknown.
    """

    depth: np.ndarray
    normals: np.ndarray
    alpha: np.ndarray
    K: np.ndarray
    up: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.depth = np.ascontiguousarray(self.depth, np.float32)
        self.normals = np.ascontiguousarray(self.normals, np.float32)
        self.alpha = np.ascontiguousarray(self.alpha, np.float32)
        self.K = np.asarray(self.K, np.float64)
        if self.depth.ndim != 2 or self.alpha.shape != self.depth.shape or self.normals.shape != self.depth.shape + (3,):
            raise MaskError(f"view geometry needs depth and alpha [H, W] and normals [H, W, 3] of one size, got "
                            f"{self.depth.shape}, {self.alpha.shape} and {self.normals.shape}")
        if self.K.shape != (3, 3):
            raise MaskError(f"view geometry needs 3x3 intrinsics, got {self.K.shape}")
        if self.up is not None:
            up = np.asarray(self.up, np.float64).reshape(-1)
            n = float(np.linalg.norm(up)) if up.size == 3 else 0.0
            if not n > 0:
                raise MaskError(f"view geometry's up must be a non-zero 3-vector, got {self.up!r}")
            self.up = up / n

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.depth.shape[0]), int(self.depth.shape[1]))

    def digest(self) -> str:
        """SHA-256 hex of everything a source may read (part of the mask cache key)."""
        h = hashlib.sha256(b"geometry-v1|")
        for a in (self.depth, self.normals, self.alpha, self.K, np.zeros(0) if self.up is None else self.up):
            arr = np.ascontiguousarray(a)
            h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
            h.update(memoryview(arr).cast("B"))
        return h.hexdigest()

    def crop_resize(self, box: tuple[int, int, int, int], rows: np.ndarray, cols: np.ndarray) -> "ViewGeometry":
        """The geometry of the crop ``box`` (y0, y1, x0, x1) sampled at crop rows [h] and columns
        [w] (nearest neighbour, indices into the crop), with the intrinsics changed to match
        (uniform scale per axis)."""
        y0, y1, x0, x1 = box
        sub = np.ix_(y0 + rows, x0 + cols)
        sy = len(rows) / max(y1 - y0, 1)
        sx = len(cols) / max(x1 - x0, 1)
        K = self.K.copy()
        K[0, 0] *= sx
        K[0, 2] = (K[0, 2] - x0) * sx
        K[1, 1] *= sy
        K[1, 2] = (K[1, 2] - y0) * sy
        return ViewGeometry(self.depth[sub], self.normals[sub], self.alpha[sub], K, self.up)

    def smoothed(self, normal_sigma: float, depth_median: int) -> "ViewGeometry":
        """A copy with the normals blurred by a Gaussian of ``normal_sigma`` pixels (and made unit
        again) and the depth median-filtered over ``depth_median`` x ``depth_median`` pixels, both
        within the covered pixels only. Why: the Gaussians of a trained real scene are not all
        flat, so single pixels' normals and blended depths scatter on rough surfaces (gravel,
        weathered stone) while their neighbourhoods agree."""
        from scipy import ndimage

        solid = (self.alpha >= 0.5).astype(np.float64)
        normals, depth = self.normals, self.depth
        if normal_sigma > 0:
            acc = np.stack([ndimage.gaussian_filter(self.normals[..., c] * solid, normal_sigma) for c in range(3)], -1)
            norm = np.linalg.norm(acc, axis=-1, keepdims=True)
            normals = np.where((norm > 1e-6) & (solid[..., None] > 0), acc / np.maximum(norm, 1e-6), 0.0)
        if depth_median > 1:
            # uncovered pixels (depth 0) must not pull the median down at an outline: give them
            # the covered neighbourhood's largest depth before filtering, then restore them
            big = ndimage.maximum_filter(np.where(solid > 0, self.depth, 0.0), size=depth_median)
            filled = np.where(solid > 0, self.depth, big)
            depth = np.where(solid > 0, ndimage.median_filter(filled, size=depth_median), 0.0)
        return ViewGeometry(depth, normals, self.alpha, self.K, self.up)

    def points(self) -> np.ndarray:
        """float64 [H, W, 3] camera-frame points of the pixels' centres at their depth."""
        h, w = self.shape
        v, u = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
        z = self.depth.astype(np.float64)
        x = (u - self.K[0, 2]) / self.K[0, 0] * z
        y = (v - self.K[1, 2]) / self.K[1, 1] * z
        return np.stack([x, y, z], -1)


def depth_edges(geometry: ViewGeometry, rel_jump: float) -> np.ndarray:
    """bool [H, W]: pixels beside a depth discontinuity: their depth differs from a 4-neighbour's
    by more than ``rel_jump`` times the nearer of the two (relative, so a far table and a near mug
    are judged alike), with the surface there not sloping that steeply (a jump larger than a
    surface at grazing angle explains: four times the slope the normals predict), or they are
    covered (alpha >= 0.5) beside an uncovered pixel."""
    d = geometry.depth.astype(np.float64)
    solid = geometry.alpha >= 0.5
    h, w = d.shape
    edge = np.zeros((h, w), bool)
    nz = np.abs(geometry.normals[..., 2]).astype(np.float64)
    for axis, focal in ((1, geometry.K[0, 0]), (0, geometry.K[1, 1])):
        a = d[:, :-1] if axis == 1 else d[:-1]
        b = d[:, 1:] if axis == 1 else d[1:]
        sa = solid[:, :-1] if axis == 1 else solid[:-1]
        sb = solid[:, 1:] if axis == 1 else solid[1:]
        near = np.minimum(a, b)
        # a surface seen at an angle theta to the view axis changes depth by about z * tan(theta)
        # / focal per pixel; the slope the normals predict, with a floor for nearly-facing ones
        n_a = nz[:, :-1] if axis == 1 else nz[:-1]
        n_b = nz[:, 1:] if axis == 1 else nz[1:]
        cos = np.clip(np.maximum(n_a, n_b), 0.05, 1.0)
        slope = np.sqrt(1.0 - cos**2) / cos / focal
        jump = (np.abs(a - b) > near * np.maximum(rel_jump, 4.0 * slope)) & sa & sb
        jump |= sa != sb
        if axis == 1:
            edge[:, :-1] |= jump
            edge[:, 1:] |= jump
        else:
            edge[:-1] |= jump
            edge[1:] |= jump
    return edge


def normal_edges(geometry: ViewGeometry, max_turn_deg: float) -> np.ndarray:
    """bool [H, W]: covered pixels whose normal turns by more than ``max_turn_deg`` degrees from a
    4-neighbour's (a crease: a wall meeting the ground, a box's edge)."""
    n = geometry.normals.astype(np.float64)
    solid = geometry.alpha >= 0.5
    cos_max = np.cos(np.radians(max_turn_deg))
    edge = np.zeros(solid.shape, bool)
    dx = ((n[:, 1:] * n[:, :-1]).sum(-1) < cos_max) & solid[:, 1:] & solid[:, :-1]
    dy = ((n[1:] * n[:-1]).sum(-1) < cos_max) & solid[1:] & solid[:-1]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:] |= dy
    edge[:-1] |= dy
    return edge


def support_mask(geometry: ViewGeometry, *, max_tilt_deg: float = 25.0, min_share: float = 0.08,
                 height_tol: float = 0.03) -> np.ndarray:
    """bool [H, W]: the pixels on the scene's support surface (the ground, a table top), or all
    False when the view shows none.

    The support is the main plane facing up: among covered pixels whose normal is within
    ``max_tilt_deg`` of ``geometry.up``, heights along up (camera-frame points . up) are
    histogrammed in bins of ``height_tol`` times the median depth; of the heights holding at
    least ``min_share`` of those pixels (and 3% of the covered ones) and at least half as many
    as the fullest, the lowest is the plane's. The support is every up-facing pixel within
    ``height_tol`` times its own depth of that height (blended depth errs in proportion to
    depth, most at grazing angles), plus pixels of any normal within half that (the plane's rim,
    where normals blend). Tops of objects face up too but stand above the plane. Needs
    ``geometry.up``; without it there is no support.
    """
    h, w = geometry.shape
    none = np.zeros((h, w), bool)
    if geometry.up is None:
        return none
    solid = geometry.alpha >= 0.5
    if solid.sum() < 16:
        return none
    up = geometry.up
    facing = solid & (geometry.normals.astype(np.float64) @ up > np.cos(np.radians(max_tilt_deg)))
    if facing.sum() < max(16, 0.03 * solid.sum()):
        return none
    # the plane's own normal: the given up (the mean of the cameras' up, a guess) refined to the
    # mean normal of the pixels facing roughly up, once
    mean = geometry.normals[facing].astype(np.float64).mean(axis=0)
    if np.linalg.norm(mean) > 0.5:
        up = mean / np.linalg.norm(mean)
        facing = solid & (geometry.normals.astype(np.float64) @ up > np.cos(np.radians(max_tilt_deg)))
        if facing.sum() < max(16, 0.03 * solid.sum()):
            return none
    height = geometry.points() @ up  # larger = higher
    depth = geometry.depth.astype(np.float64)
    hs = height[facing]
    step = height_tol * float(np.median(depth[facing]))
    if not step > 0:
        return none
    lo, hi = float(hs.min()), float(hs.max())
    bins = max(1, int(np.ceil((hi - lo) / step)))
    counts, edges = np.histogram(hs, bins=bins, range=(lo, lo + bins * step))
    # a plane's heights spread over neighbouring bins: count each bin with both neighbours
    pad = np.concatenate([[0], counts, [0]])
    triple = pad[:-2] + pad[1:-1] + pad[2:]
    need = max(min_share * hs.size, 0.03 * solid.sum(), 0.5 * triple.max())
    big = np.flatnonzero(triple >= need)
    if big.size == 0:
        return none
    b = int(big[0])
    b = max(range(max(b - 1, 0), min(b + 2, bins)), key=lambda i: counts[i])  # the fullest bin of the lowest mode
    sel = (hs >= edges[b] - step) & (hs < edges[b + 1] + step)
    plane = float(np.median(hs[sel]))
    tol = height_tol * depth
    support = facing & (np.abs(height - plane) <= tol)
    support |= solid & (np.abs(height - plane) <= 0.5 * tol)
    return support


def pair_continuity(labels: np.ndarray, geometry: ViewGeometry, rel_jump: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where regions of ``labels`` int [H, W] (-1 = none) meet: for every 4-neighbour pixel pair
    of two different regions, (region a [M], region b [M], continuous bool [M]: whether depth
    runs on across the pair (no jump as :func:`depth_edges` defines it), flat pixel index of the
    a side [M], of the b side [M])."""
    d = geometry.depth.astype(np.float64)
    nz = np.abs(geometry.normals[..., 2]).astype(np.float64)
    h, w = d.shape
    flat = np.arange(h * w).reshape(h, w)
    out: list[list[np.ndarray]] = [[], [], [], [], []]
    for axis, focal in ((1, geometry.K[0, 0]), (0, geometry.K[1, 1])):
        sl_a = (slice(None), slice(None, -1)) if axis == 1 else (slice(None, -1), slice(None))
        sl_b = (slice(None), slice(1, None)) if axis == 1 else (slice(1, None), slice(None))
        la, lb = labels[sl_a], labels[sl_b]
        m = (la != lb) & (la >= 0) & (lb >= 0)
        da, db = d[sl_a][m], d[sl_b][m]
        cos = np.clip(np.maximum(nz[sl_a][m], nz[sl_b][m]), 0.05, 1.0)
        slope = np.sqrt(1.0 - cos**2) / cos / focal
        for k, v in enumerate((la[m], lb[m], np.abs(da - db) <= np.minimum(da, db) * np.maximum(rel_jump, 4.0 * slope),
                               flat[sl_a][m], flat[sl_b][m])):
            out[k].append(v)
    a, b, c, pa, pb = (np.concatenate(v) for v in out)
    return a, b, c, pa, pb
