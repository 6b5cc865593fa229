"""A click becomes a selection: the blended feature at one pixel, the matching global cluster(s),
and every Gaussian that belongs to them (numpy only; the Blender extension runs this same code
without torch).

Algorithm (per click, after a one-off :meth:`ClickIndex.build` of the scene):

1. Ray cull: keep Gaussians whose mean lies within ``4 x max-scale + 2.5 pixels`` (the pixel
   footprint at the mean's distance) of the click ray and in front of the near plane, testing
   bounding spheres of Morton-ordered chunks first, then of their sub-chunks. Beyond 3.33
   standard deviations (the renderer's extent, plus its 0.3 px^2 low-pass) alpha < 1/255, so
   nothing that can touch the pixel is dropped. A few hundred survive at 1M Gaussians.
2. Exact EWA for the survivors, the renderer's projection (gsplat pinhole, see
   :mod:`engine.render.raster_cpu`): 2D covariance + 0.3 px^2, alpha = min(0.99, o exp(-d^T S^-1 d / 2))
   at the click position, alpha <= 1/255 skipped, depth (camera z) order, front to back blending
   that stops where the transmittance would reach 1e-4. The result equals the renderer's pixel.
3. Match (documented rule): cosine of the unit blended feature with the unit global clusters of
   the level. Coarse: every cluster with cosine >= :data:`MATCH_COS` (0.9, the paper's
   label-propagation threshold), so an object the clustering split in two is still selected
   whole. Fine: only the most similar cluster (:data:`MERGE_COS`), because with the granularity
   prior the 24-d fine features of the parts of one object share their coarse half and sit
   close in cosine: measured on the quality benchmark, the 0.9 rule selected a part together
   with its neighbours (lid + teapot body, seat + legs), part click IoU 0.60 -> 0.76 with the
   best cluster alone. And a part lies inside the object under the cursor: the fine match is
   made among the fine clusters that lie mostly (:data:`INSIDE_SHARE` of their labelled
   Gaussians' opacity) inside the object a coarse click at the same pixel selects
   (:func:`clusters_inside`); all fine clusters compete only when that object has none or the
   pixel matches none of its parts. Fine clusters whose centres are within cosine
   :data:`SAME_PART_COS` (0.95) of the matched one are selected with it: they are one part the
   clustering split in two (the two sides of a chair's backrest, a fruit seen from two sides;
   siblings end near the fine margin, 0.75). Measured on the quality benchmark (5 seeds, the same
   trained features, docs/quality.md "The fine level, Dec 7"): part click IoU 0.802 -> 0.834 at
   3,000 iterations and 0.777 -> 0.821 at 400 with the product's training defaults; the
   restriction to the object alone changed nothing there or cost 0.004 (a book whose Gaussians
   the coarse level gives to the table). When no cluster reaches 0.9 the single best one is
   taken if it passes the level's label threshold (coarse 0.5, fine 0.75 = the margins; stored
   in the features' settings). Otherwise nothing is selected and ``reason`` says why.
4. Selection: every Gaussian whose precomputed label (``TrainedFeatures.*_labels``: the cluster
   that gets most of the Gaussian's blending weight in the training views) is one of the
   selected clusters (``np.flatnonzero`` over the labels).

Click position convention: continuous image coordinates (u right, v down, pixels), so the centre
of pixel (i, j) is ``(i + 0.5, j + 0.5)`` — the renderer's pixel centres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cameras import Camera
from .errors import EngineError, TrainingError
from .features import COARSE_DIM, TrainedFeatures, level_dim
from .projection import ALPHA_MAX, ALPHA_MIN, EPS2D, T_MIN
from .quaternion import unit_quat_to_matrix

CULL_SIGMAS = 4.0  # > the renderer's 3.33-sigma extent
CULL_PIXELS = 2.5  # footprint margin, > 3.33 * sqrt(0.3 px^2) of the low-pass
MATCH_COS = 0.9  # clusters at least this similar to the clicked feature are selected (paper: 0.9)
# per level: other clusters at least this similar are selected too (None: the best cluster only)
MERGE_COS: dict[str, float | None] = {"coarse": MATCH_COS, "fine": None}
EMPTY_ALPHA = 0.5  # a pixel the splats cover less than this is empty space
# a fine cluster belongs to the clicked object when at least this share of its labelled
# Gaussians' opacity carries one of the object's coarse clusters (a majority)
INSIDE_SHARE = 0.5
WITHIN_OBJECT = True  # the fine match is made among the clicked object's fine clusters first
# fine clusters whose centres are at least this similar to the matched cluster's centre are the
# same part split in two by the clustering (e.g. the two sides of a thin part); None: off
SAME_PART_COS: float | None = 0.95
DEFAULT_MIN_COS = {"coarse": 0.5, "fine": 0.75}


CHUNK = 128  # Gaussians per culling chunk (Morton order: spatially compact chunks)
# Gaussians per sub-chunk: a chunk's sphere is as large as its largest splat's reach, so a ray
# meets many chunks it misses by far; testing the hit chunks' sub-chunk spheres first cuts the
# per-Gaussian test to the few sub-chunks the ray really passes (``python -m engine.bench click``)
SUB_CHUNK = 16


def _part1by2(x: np.ndarray) -> np.ndarray:
    """Spread the low 10 bits of x (uint64) to every third bit (Morton interleave)."""
    x = x & np.uint64(0x3FF)
    x = (x | (x << np.uint64(16))) & np.uint64(0x030000FF)
    x = (x | (x << np.uint64(8))) & np.uint64(0x0300F00F)
    x = (x | (x << np.uint64(4))) & np.uint64(0x030C30C3)
    x = (x | (x << np.uint64(2))) & np.uint64(0x09249249)
    return x


def morton_order(points: np.ndarray) -> np.ndarray:
    """Permutation (int64 [N]) sorting points [N, 3] along a 30-bit Morton (Z-order) curve."""
    lo = points.min(axis=0)
    span = np.maximum(points.max(axis=0) - lo, 1e-12)
    q = np.clip((points - lo) / span * 1023.0, 0, 1023).astype(np.uint64)
    code = _part1by2(q[:, 0]) | (_part1by2(q[:, 1]) << np.uint64(1)) | (_part1by2(q[:, 2]) << np.uint64(2))
    return np.argsort(code, kind="stable")


def _spheres(sm: np.ndarray, sr: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounding spheres (centres float64 [C, 3], radii float64 [C]) of consecutive groups of
    ``size`` points ``sm`` [N, 3] (float64), each covering every member's point plus its reach
    ``sr`` [N]."""
    if len(sm) == 0:
        return np.zeros((0, 3)), np.zeros(0)
    starts = np.arange(0, len(sm), size)
    counts = np.diff(np.append(starts, len(sm)))
    centers = np.add.reduceat(sm, starts, axis=0) / counts[:, None]
    member = np.repeat(np.arange(len(starts)), counts)
    dist = np.linalg.norm(sm - centers[member], axis=1) + sr
    return centers, np.maximum.reduceat(dist, starts)


@dataclass
class ClickIndex:
    """One-off per-scene preparation for clicks (float32 unless noted).

    means [N, 3]; cov [N, 6] world covariance upper triangle (xx, xy, xz, yy, yz, zz);
    opacities [N] activated, in (0, 1); reach [N] = CULL_SIGMAS x max standard deviation.
    Culling structure: ``order`` int64 [N] Morton permutation, ``sorted_means`` [N, 3] and
    ``sorted_reach`` [N] in that order, and per chunk of :data:`CHUNK` sorted Gaussians a
    bounding sphere (``chunk_centers`` float64 [C, 3], ``chunk_radii`` float64 [C], covering
    every member's mean plus its reach), and the same per sub-chunk of :data:`SUB_CHUNK`
    (``sub_centers`` float64 [S, 3], ``sub_radii`` float64 [S]). A click tests the C spheres, then the
    sub-chunks of the chunks its ray meets, then only the members of the sub-chunks it meets."""

    means: np.ndarray
    cov: np.ndarray
    opacities: np.ndarray
    reach: np.ndarray
    order: np.ndarray
    sorted_means: np.ndarray
    sorted_reach: np.ndarray
    chunk_centers: np.ndarray
    chunk_radii: np.ndarray
    sub_centers: np.ndarray
    sub_radii: np.ndarray
    # (fine labels, coarse labels, fine_coarse_weights of them): built on the first fine click
    # with those labels, so a click does not pass over all N labels (:func:`_fine_within_object`)
    fine_in_coarse: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    @classmethod
    def build(cls, scene) -> "ClickIndex":
        """Prepare a :class:`engine.core.scene.GaussianScene` (Inria conventions: log scales, logit
        opacities, wxyz quaternions)."""
        n = scene.num_gaussians
        means = np.ascontiguousarray(scene.means, dtype=np.float32)
        s = scene.activated_scales().astype(np.float32)
        q = scene.unit_quats().astype(np.float32)
        r = unit_quat_to_matrix(q)  # float32, as the rest of the index
        rs = r * s[:, None, :]  # R diag(s)
        cov = np.einsum("nij,nkj->nik", rs, rs)  # R S S^T R^T
        iu = ([0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2])
        cov6 = np.ascontiguousarray(cov[:, iu[0], iu[1]], dtype=np.float32)
        reach = (CULL_SIGMAS * s.max(axis=1)).astype(np.float32)
        finite = np.isfinite(means).all(axis=1) & np.isfinite(reach)
        order = morton_order(np.where(finite[:, None], means, 0.0)) if n else np.zeros(0, np.int64)
        order = order[finite[order]]  # non-finite Gaussians can never be clicked
        sm = means[order].astype(np.float64)
        sr = reach[order].astype(np.float64)
        centers, radii = _spheres(sm, sr, CHUNK)
        sub_c, sub_r = _spheres(sm, sr, SUB_CHUNK)
        return cls(means, cov6, scene.activated_opacities().astype(np.float32), reach, order.astype(np.int64),
                   np.ascontiguousarray(sm, dtype=np.float32), sr.astype(np.float32), centers, radii,
                   sub_c, sub_r)

    # ------------------------------------------------------------------ ray queries
    def candidates(self, camera: Camera, u: float, v: float, near: float = 0.01) -> np.ndarray:
        """Indices (int64, ascending) of Gaussians that may touch the image point (u, v):
        mean within reach + 2.5 px footprint (at its distance along the ray) of the ray."""
        origin, direction = camera.pixel_ray(u, v)
        k = CULL_PIXELS / float(min(camera.K[0, 0], camera.K[1, 1]))  # footprint per unit distance
        # 1) chunk spheres
        dc = self.chunk_centers - origin
        tc = dc @ direction
        perp2 = np.einsum("ij,ij->i", dc, dc) - tc * tc
        far_t = tc + self.chunk_radii
        lim = self.chunk_radii + k * np.maximum(far_t, 0.0)
        hit = np.flatnonzero((far_t > near) & (perp2 <= lim * lim))
        if hit.size == 0:
            return np.zeros(0, np.int64)
        # 2) sub-chunks of the chunks hit (float64 like the chunks: |d|^2 - t^2 cancels)
        per = CHUNK // SUB_CHUNK
        sub = (hit[:, None] * per + np.arange(per)).reshape(-1)
        sub = sub[sub < len(self.sub_radii)]
        ds = self.sub_centers[sub] - origin
        ts = ds @ direction
        far_s = ts + self.sub_radii[sub]
        lim_s = self.sub_radii[sub] + k * np.maximum(far_s, 0.0)
        sub = sub[(far_s > near) & (np.einsum("ij,ij->i", ds, ds) - ts * ts <= lim_s * lim_s)]
        if sub.size == 0:
            return np.zeros(0, np.int64)
        # 3) members of the sub-chunks hit
        starts = sub * SUB_CHUNK
        counts = np.minimum(starts + SUB_CHUNK, len(self.order)) - starts
        offs = np.repeat(starts - np.cumsum(counts) + counts, counts)
        pos = np.arange(int(counts.sum())) + offs
        # float32 here: rounding (~1e-6 of the distance) is far below the footprint margin
        d = self.sorted_means[pos] - origin.astype(np.float32)
        t = d @ direction.astype(np.float32)
        perp2 = np.einsum("ij,ij->i", d, d) - t * t
        lim = self.sorted_reach[pos] + np.float32(k) * np.maximum(t, np.float32(0.0))
        keep = (t > near) & (perp2 <= lim * lim)
        return np.sort(self.order[pos[keep]])

    def pixel_weights(
        self, camera: Camera, u: float, v: float, near: float = 0.01, far: float = 1e10
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """The renderer's blend at image point (u, v): (ids int64 [M] front to back, weights
        float64 [M] = alpha * T, depth float = expected camera z or 0)."""
        idx = self.candidates(camera, u, v, near)
        if idx.size == 0:
            return idx, np.zeros(0), 0.0
        vm = camera.viewmat
        R, tvec = vm[:3, :3], vm[:3, 3]
        m = self.means[idx].astype(np.float64) @ R.T + tvec  # camera space
        c6 = self.cov[idx].astype(np.float64)
        cov = np.empty((len(idx), 3, 3))
        cov[:, 0, 0], cov[:, 0, 1], cov[:, 0, 2] = c6[:, 0], c6[:, 1], c6[:, 2]
        cov[:, 1, 0], cov[:, 1, 1], cov[:, 1, 2] = c6[:, 1], c6[:, 3], c6[:, 4]
        cov[:, 2, 0], cov[:, 2, 1], cov[:, 2, 2] = c6[:, 2], c6[:, 4], c6[:, 5]
        cov_c = R @ cov @ R.T
        fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
        w, h = camera.width, camera.height
        tan_fx, tan_fy = 0.5 * w / fx, 0.5 * h / fy
        tx, ty, tz = m[:, 0], m[:, 1], m[:, 2]
        tzs = np.where(np.abs(tz) < 1e-12, 1e-12, tz)
        txc = tzs * np.clip(tx / tzs, -(cx / fx + 0.3 * tan_fx), (w - cx) / fx + 0.3 * tan_fx)
        tyc = tzs * np.clip(ty / tzs, -(cy / fy + 0.3 * tan_fy), (h - cy) / fy + 0.3 * tan_fy)
        J = np.zeros((len(idx), 2, 3))
        J[:, 0, 0] = fx / tzs
        J[:, 0, 2] = -fx * txc / tzs**2
        J[:, 1, 1] = fy / tzs
        J[:, 1, 2] = -fy * tyc / tzs**2
        c2 = J @ cov_c @ J.transpose(0, 2, 1)
        a, b, c = c2[:, 0, 0] + EPS2D, 0.5 * (c2[:, 0, 1] + c2[:, 1, 0]), c2[:, 1, 1] + EPS2D
        det = a * c - b * b
        ok = (det > 0) & (tz > near) & (tz < far)
        det = np.maximum(det, 1e-10)
        dx = fx * tx / tzs + cx - u
        dy = fy * ty / tzs + cy - v
        power = 0.5 * (c * dx * dx - 2.0 * b * dx * dy + a * dy * dy) / det
        with np.errstate(over="ignore", divide="ignore"):
            power = power - np.log(self.opacities[idx].astype(np.float64))
        alpha = np.exp(-np.clip(power, -np.log(ALPHA_MAX), 6.0))
        alpha[~ok | (alpha <= ALPHA_MIN)] = 0.0
        keep = alpha > 0
        if not keep.any():
            return idx[:0], np.zeros(0), 0.0
        idx, alpha, z = idx[keep], alpha[keep], tz[keep]
        order = np.argsort(z, kind="stable")
        idx, alpha, z = idx[order], alpha[order], z[order]
        t_incl = np.cumprod(1.0 - alpha)
        live = t_incl > T_MIN  # the renderer stops at the first Gaussian that brings T to <= 1e-4
        n_live = int(np.argmin(live)) if not live.all() else len(live)
        idx, alpha, z, t_incl = idx[:n_live], alpha[:n_live], z[:n_live], t_incl[:n_live]
        weights = alpha * t_incl / (1.0 - alpha)
        total = float(weights.sum())
        depth = float((weights * z).sum() / total) if total > 0 else 0.0
        return idx, weights, depth


@dataclass
class ClickResult:
    """The outcome of one click.

    feature: float32 [D] blended feature at the pixel (D = 12 coarse, 24 fine; zeros when empty);
    clusters: matched global cluster ids of the level, most similar first; selected: int64 [S]
    indices of the selected Gaussians (ascending); similarity: cosine of the best cluster (nan when
    none); alpha: the pixel's accumulated opacity; depth: expected camera-z depth (0 when empty);
    level: "coarse" or "fine"; reason: "" when something is selected, else why not."""

    feature: np.ndarray
    clusters: list[int]
    selected: np.ndarray
    similarity: float
    alpha: float = 0.0
    depth: float = 0.0
    level: str = "coarse"
    reason: str = ""
    contributors: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    @property
    def empty(self) -> bool:
        return self.selected.size == 0


def _blend(trained: TrainedFeatures, ids: np.ndarray, w: np.ndarray, level: str) -> np.ndarray:
    """Feature float32 [D] of ``level`` blended from Gaussians ``ids`` [M] with weights ``w`` [M]."""
    d = level_dim(level)
    if ids.size == 0:
        return np.zeros(d, np.float32)
    f = trained.features[ids, :d].astype(np.float64)
    if level == "fine" and not trained.granularity_prior:
        f[:, :COARSE_DIM] = 0.0
    return (w @ f).astype(np.float32)


def blended_feature(
    index: ClickIndex, trained: TrainedFeatures, camera: Camera, u: float, v: float, level: str = "coarse"
) -> tuple[np.ndarray, float, float, np.ndarray]:
    """(feature float32 [D], alpha, depth, contributor ids) at image point (u, v)."""
    ids, w, depth = index.pixel_weights(camera, u, v)
    feature = _blend(trained, ids, w, level)
    if ids.size == 0:
        return feature, 0.0, 0.0, ids
    return feature, float(w.sum()), depth, ids


def fine_coarse_weights(
    fine_labels: np.ndarray, coarse_labels: np.ndarray, weights: np.ndarray, n_fine: int, n_coarse: int,
) -> np.ndarray:
    """float64 [n_fine, n_coarse + 1]: per fine cluster, the summed ``weights`` (opacities [N]) of
    its labelled Gaussians by their coarse label (last column: no coarse label).

    fine_labels, coarse_labels: int [N] per-Gaussian labels (-1 = none)."""
    fine = np.asarray(fine_labels)
    coarse = np.asarray(coarse_labels)
    ok = fine >= 0
    col = np.where((coarse >= 0) & (coarse < n_coarse), coarse, n_coarse)[ok]
    flat = np.bincount(fine[ok].astype(np.int64) * (n_coarse + 1) + col,
                       weights=np.asarray(weights, np.float64)[ok], minlength=n_fine * (n_coarse + 1))
    return flat[: n_fine * (n_coarse + 1)].reshape(n_fine, n_coarse + 1)


def clusters_inside(
    fine_labels: np.ndarray, coarse_labels: np.ndarray, weights: np.ndarray, objects: list[int],
    n_fine: int, share: float = INSIDE_SHARE, table: np.ndarray | None = None,
) -> np.ndarray:
    """Fine clusters (int64 [K], ascending) that lie inside the object made of the coarse
    clusters ``objects``: at least ``share`` of the summed ``weights`` (opacities [N]) of the
    Gaussians labelled with the fine cluster have one of ``objects`` as coarse label.

    fine_labels, coarse_labels: int [N] per-Gaussian labels (-1 = none); n_fine: number of fine
    clusters; table: their :func:`fine_coarse_weights` when already at hand (then the labels
    are not read). A fine cluster with no labelled Gaussian is never inside."""
    if table is None:
        n_coarse = int(max(np.max(coarse_labels, initial=-1), max(objects, default=-1))) + 1
        table = fine_coarse_weights(fine_labels, coarse_labels, weights, n_fine, n_coarse)
    objects_ok = [k for k in objects if 0 <= k < table.shape[1] - 1]
    total = table.sum(axis=1)
    held = table[:, objects_ok].sum(axis=1)
    return np.flatnonzero((held > 0) & (held >= share * total)).astype(np.int64)


def match_clusters(
    feature: np.ndarray, centers: np.ndarray, min_cos: float, merge_cos: float | None = MATCH_COS
) -> tuple[list[int], float]:
    """The documented matching rule (module doc, step 3): (clusters most similar first, best cos).

    ``merge_cos``: every cluster at least this similar is selected (None: the best one only);
    when none is, the best cluster alone if it reaches ``min_cos``."""
    if len(centers) == 0:
        return [], float("nan")
    nrm = float(np.linalg.norm(feature))
    if nrm < 1e-12:
        return [], float("nan")
    cos = centers @ (feature.astype(np.float32) / nrm)
    order = np.argsort(-cos, kind="stable")
    best = float(cos[order[0]])
    if merge_cos is None:
        picked = [int(order[0])] if best >= MATCH_COS else []
    else:
        picked = [int(k) for k in order if cos[k] >= merge_cos]
    if not picked and best >= min_cos:
        picked = [int(order[0])]
    return picked, best


def click_query(
    index: ClickIndex,
    trained: TrainedFeatures,
    camera: Camera,
    u: float,
    v: float,
    level: str = "coarse",
    within_object: bool | None = None,
) -> ClickResult:
    """Select what is under image point (u, v) of ``camera`` at ``level`` (module doc).

    within_object: at the fine level, match only fine clusters inside the object under the
    cursor (module doc, step 3); False: among all fine clusters; None: :data:`WITHIN_OBJECT`."""
    if index.num_gaussians != trained.num_gaussians:
        raise TrainingError(
            f"features are for {trained.num_gaussians} Gaussians but the scene has {index.num_gaussians}: retrain"
        )
    level_dim(level)
    if not (np.isfinite(u) and np.isfinite(v)):
        raise EngineError(f"click position ({u}, {v}) is not a finite pixel position")
    if not (0 <= u <= camera.width and 0 <= v <= camera.height):
        raise EngineError(f"click position ({u:.1f}, {v:.1f}) is outside the {camera.width}x{camera.height} view")
    ids, w, depth = index.pixel_weights(camera, u, v)
    feature, alpha = _blend(trained, ids, w, level), float(w.sum())
    none = np.zeros(0, np.int64)
    if alpha < EMPTY_ALPHA:
        return ClickResult(feature, [], none, float("nan"), alpha, depth, level,
                           "empty space: nothing of the scene under the cursor", ids)
    centers = trained.centers(level)
    if len(centers) == 0:
        return ClickResult(feature, [], none, float("nan"), alpha, depth, level,
                           f"the features have no {level} clusters (train longer or with more views)", ids)
    min_cos = float(trained.settings.get(f"label_min_cos_{level}", DEFAULT_MIN_COS[level]))
    allowed = None
    if level == "fine" and (WITHIN_OBJECT if within_object is None else within_object):
        allowed = _fine_within_object(index, trained, _blend(trained, ids, w, "coarse"))
    pool = np.arange(len(centers))
    if allowed is not None:
        sub, best = match_clusters(feature, centers[allowed], min_cos, MERGE_COS[level])
        if sub:
            pool = allowed
    if pool is not allowed:  # no object under the cursor, or none of its parts matches: every cluster
        sub, best = match_clusters(feature, centers, min_cos, MERGE_COS[level])
    clusters = [int(pool[k]) for k in sub]
    if level == "fine" and SAME_PART_COS is not None and clusters:
        twins = pool[centers[pool] @ centers[clusters[0]] >= SAME_PART_COS]
        clusters += [int(k) for k in twins if int(k) not in clusters]
    if not clusters:
        return ClickResult(feature, [], none, best, alpha, depth, level,
                           f"no {level} cluster matches this point (best cosine {best:.2f} < {min_cos:.2f})", ids)
    selected = trained.members(level, clusters).astype(np.int64)
    reason = "" if selected.size else f"{level} cluster(s) {clusters} have no labelled Gaussians"
    return ClickResult(feature, clusters, selected, best, alpha, depth, level, reason, ids)


def _fine_within_object(index: ClickIndex, trained: TrainedFeatures, coarse_feature: np.ndarray) -> np.ndarray | None:
    """The fine clusters a fine click may choose from (module doc, step 3): those inside the
    object a coarse click with ``coarse_feature`` [12] selects; None (every fine cluster) when
    that click selects no object or the object holds no fine cluster."""
    coarse_centers = trained.centers("coarse")
    if len(coarse_centers) == 0:
        return None
    min_cos = float(trained.settings.get("label_min_cos_coarse", DEFAULT_MIN_COS["coarse"]))
    objects, _ = match_clusters(coarse_feature, coarse_centers, min_cos, MERGE_COS["coarse"])
    if not objects:
        return None
    cached = index.fine_in_coarse
    if cached is None or cached[0] is not trained.fine_labels or cached[1] is not trained.coarse_labels:
        table = fine_coarse_weights(trained.fine_labels, trained.coarse_labels, index.opacities,
                                    len(trained.fine_centers), len(coarse_centers))
        index.fine_in_coarse = cached = (trained.fine_labels, trained.coarse_labels, table)
    inside = clusters_inside(trained.fine_labels, trained.coarse_labels, index.opacities, objects,
                             len(trained.fine_centers), table=cached[2])
    return inside if inside.size else None
