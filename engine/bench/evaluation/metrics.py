"""Segmentation quality metrics: the paper's label-propagation mIoU and click extraction IoU.

Label propagation (Click-Gaussian §4.1.1, following Gaussian Grouping / SA3D / SAGA)
-------------------------------------------------------------------------------------
The paper: "we calculated cosine similarities between the rendered 2D feature map and the
pre-computed global clusters, applying a 0.9 threshold to determine cluster IDs of the target
object. Using the IDs, we generated 2D masks for test views and evaluated performance by
calculating mIoU between rendered and ground truth masks." It does not say how the pixels of
the reference mask vote. Our reading, made precise:

1. Pixel assignment (every view, each level separately): pixel p carries global cluster
   ``a(p) = argmax_c cos(F(p), g_c)`` when that cosine is at least 0.9 (``threshold``), else no
   cluster (-1). F is the rendered feature (12-d coarse, 24-d fine), g_c the unit cluster centres.
   Pixels the scene does not cover (alpha < 0.5) carry no cluster.
2. Target clusters from the ground-truth mask M in the reference view: every cluster c whose
   reference-view pixels lie mostly (> 50%, ``min_inside``) inside M. So an object that the
   features split into two clusters is still found whole, and a cluster that merely touches
   the mask is not taken. If no cluster qualifies, the one carrying the most pixels of M is taken.
3. Predicted mask in another view: the pixels whose a(p) is a target cluster.
4. IoU against that view's ground-truth mask; a target's score is the mean IoU over the
   evaluation views where it is visible (at least ``min_pixels``) except the reference view,
   which is the view where the target's ground-truth mask is largest.
5. Reported per level: coarse = mean over objects (ground-truth object ids >= 1; the table is
   not a target), fine = mean over parts (part ids >= 1), all = mean over the pooled targets of
   both levels (as Table 1's "All", which is not the mean of coarse and fine).

Click extraction
----------------
A click at the interior point of the target in the reference view (the mask pixel farthest from
the mask's boundary, ties to the first in raster order) selects Gaussians; the score is the
opacity-weighted IoU of the selected set against the ground-truth set (every Gaussian with that
object / part id): ``sum(o[sel & gt]) / sum(o[sel | gt])``.

numpy + scipy only; rendering is done by the caller (see :mod:`engine.bench.quality`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

SIMILARITY_THRESHOLD = 0.9  # paper §4.1.1


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two bool masks of one shape; 1.0 when both are empty."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"IoU of masks of different shapes {pred.shape} and {gt.shape}")
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def weighted_iou(selected: np.ndarray, gt: np.ndarray, weights: np.ndarray) -> float:
    """Weighted IoU of two Gaussian sets: ``sum(w[sel & gt]) / sum(w[sel | gt])``.

    selected: int indices [S] or bool [N]; gt: bool [N]; weights: float [N] (opacities).
    1.0 when both sets are empty.
    """
    gt = np.asarray(gt, bool)
    w = np.asarray(weights, np.float64)
    sel = np.zeros(gt.shape[0], bool)
    selected = np.asarray(selected)
    if selected.dtype == bool:
        sel[:] = selected
    else:
        sel[selected.astype(np.int64)] = True
    union = w[sel | gt].sum()
    return 1.0 if union <= 0 else float(w[sel & gt].sum() / union)


def vote_labels(
    ids: np.ndarray, weights: np.ndarray, labels: np.ndarray, alpha_min: float = 0.5
) -> np.ndarray:
    """Per-pixel label from blended contributors: the label with the largest summed blending
    weight (= argmax of the rendered one-hot labels), or -1 where the total weight is below
    ``alpha_min`` (background) or no contributor has a label >= 0.

    ids: int [..., K] Gaussian index per contributor slot (-1 empty); weights: float [..., K]
    (alpha * T); labels: int [N] per-Gaussian label (-1 = none). Returns int32 [...].
    """
    ids = np.asarray(ids)
    w = np.asarray(weights, np.float64)
    shape = ids.shape[:-1]
    k = ids.shape[-1]
    ids = ids.reshape(-1, k)
    w = w.reshape(-1, k)
    labels = np.asarray(labels, np.int64)
    lab = np.where(ids >= 0, labels[np.maximum(ids, 0)], -1)
    total = np.where(ids >= 0, w, 0.0).sum(axis=1)
    ok = lab >= 0
    n_lab = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 1
    pix = np.broadcast_to(np.arange(ids.shape[0])[:, None], ids.shape)
    acc = np.bincount(pix[ok] * n_lab + lab[ok], weights=w[ok], minlength=ids.shape[0] * n_lab)
    acc = acc.reshape(ids.shape[0], n_lab)
    out = acc.argmax(axis=1).astype(np.int32)
    out[(total < alpha_min) | (acc.max(axis=1) <= 0)] = -1
    return out.reshape(shape)


def assign_clusters(
    features: np.ndarray, centers: np.ndarray, alpha: np.ndarray | None = None,
    threshold: float = SIMILARITY_THRESHOLD, alpha_min: float = 0.5,
) -> np.ndarray:
    """Step 1 of label propagation: the global cluster each pixel carries.

    features: float [H, W, C] rendered features of one level; centers: float [M, C] (normalised
    here); alpha: optional float [H, W] accumulated opacity (pixels below ``alpha_min`` get -1).
    Returns int32 [H, W]: argmax cosine cluster where the cosine >= ``threshold``, else -1.
    """
    f = np.asarray(features, np.float32)
    h, w, c = f.shape
    if len(centers) == 0:
        return np.full((h, w), -1, np.int32)
    g = np.asarray(centers, np.float32)
    if g.shape[1] != c:
        raise ValueError(f"features have {c} channels but cluster centres {g.shape[1]}")
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    fl = f.reshape(-1, c)
    fl = fl / np.maximum(np.linalg.norm(fl, axis=1, keepdims=True), 1e-12)
    sim = fl @ g.T
    best = sim.argmax(axis=1)
    out = np.where(sim[np.arange(len(best)), best] >= threshold, best, -1).astype(np.int32)
    if alpha is not None:
        out[np.asarray(alpha).reshape(-1) < alpha_min] = -1
    return out.reshape(h, w)


def target_clusters(assigned_ref: np.ndarray, mask: np.ndarray, min_inside: float = 0.5) -> list[int]:
    """Step 2 of label propagation: the clusters of a reference-view mask.

    assigned_ref: int [H, W] cluster per pixel (-1 none) in the reference view; mask: bool
    [H, W] ground truth. Returns the sorted cluster ids whose reference-view pixels lie more
    than ``min_inside`` inside the mask; if none does, the cluster with most pixels in the mask;
    [] if no pixel of the mask carries a cluster.
    """
    a = np.asarray(assigned_ref).reshape(-1)
    m = np.asarray(mask, bool).reshape(-1)
    valid = a >= 0
    if not (valid & m).any():
        return []
    n = int(a.max()) + 1
    total = np.bincount(a[valid], minlength=n)
    inside = np.bincount(a[valid & m], minlength=n)
    chosen = np.flatnonzero((inside > 0) & (inside > min_inside * total))
    if chosen.size == 0:
        chosen = np.array([int(inside.argmax())])
    return [int(c) for c in chosen]


def interior_point(mask: np.ndarray) -> tuple[int, int] | None:
    """The mask pixel (x, y) farthest from the mask's boundary (outside pixels and the image
    border count as boundary); None for an empty mask."""
    m = np.pad(np.asarray(mask, bool), 1)
    if not m.any():
        return None
    d = ndimage.distance_transform_edt(m)[1:-1, 1:-1]
    y, x = np.unravel_index(int(d.argmax()), d.shape)
    return int(x), int(y)


@dataclass
class TargetResult:
    """One evaluated target (an object at the coarse level or a part at the fine level)."""

    level: str  # "coarse" or "fine"
    gt_id: int
    name: str
    ref_view: int
    clusters: list[int]
    miou: float  # mean IoU over the other views where it is visible
    n_views: int
    click_iou: float = float("nan")
    click_ms: float = float("nan")


@dataclass
class Summary:
    """Means over targets (one scene) or over scenes (see :func:`mean_summaries`)."""

    coarse: float
    fine: float
    all: float
    click_coarse: float
    click_fine: float
    click_ms: float  # median click latency
    n_coarse: int
    n_fine: int
    extra: dict = field(default_factory=dict)


def propagation_scores(
    gt_maps: Sequence[np.ndarray], assigned: Sequence[np.ndarray], gt_id: int, min_pixels: int = 16
) -> tuple[int, list[int], float, int] | None:
    """Label propagation for one target over the evaluation views.

    gt_maps: per view int [H, W] ground-truth ids of the level; assigned: per view int [H, W]
    cluster per pixel (:func:`assign_clusters`). Returns (reference view, target clusters,
    mean IoU over the other views, number of those views), or None when the target is visible
    (>= ``min_pixels``) in fewer than two views.
    """
    areas = np.array([np.count_nonzero(g == gt_id) for g in gt_maps])
    visible = np.flatnonzero(areas >= min_pixels)
    if visible.size < 2:
        return None
    ref = int(visible[areas[visible].argmax()])
    targets = target_clusters(assigned[ref], gt_maps[ref] == gt_id)
    ious = []
    for v in visible:
        if v == ref:
            continue
        pred = np.isin(assigned[v], targets) if targets else np.zeros(gt_maps[v].shape, bool)
        ious.append(iou(pred, gt_maps[v] == gt_id))
    return ref, targets, float(np.mean(ious)), len(ious)


def summarize(results: Sequence[TargetResult]) -> Summary:
    """Per-scene means: coarse over objects, fine over parts, all pooled; click IoU per level;
    median click latency."""

    def mean(vals: list[float]) -> float:
        vals = [v for v in vals if not np.isnan(v)]
        return float(np.mean(vals)) if vals else float("nan")

    coarse = [r for r in results if r.level == "coarse"]
    fine = [r for r in results if r.level == "fine"]
    ms = [r.click_ms for r in results if not np.isnan(r.click_ms)]
    return Summary(
        coarse=mean([r.miou for r in coarse]),
        fine=mean([r.miou for r in fine]),
        all=mean([r.miou for r in results]),
        click_coarse=mean([r.click_iou for r in coarse]),
        click_fine=mean([r.click_iou for r in fine]),
        click_ms=float(np.median(ms)) if ms else float("nan"),
        n_coarse=len(coarse),
        n_fine=len(fine),
    )


def mean_summaries(summaries: Sequence[Summary]) -> Summary:
    """Mean over scenes (seeds) of per-scene summaries (NaNs skipped); counts are summed."""

    def m(name: str) -> float:
        vals = [getattr(s, name) for s in summaries if not np.isnan(getattr(s, name))]
        return float(np.mean(vals)) if vals else float("nan")

    return Summary(
        coarse=m("coarse"), fine=m("fine"), all=m("all"),
        click_coarse=m("click_coarse"), click_fine=m("click_fine"), click_ms=m("click_ms"),
        n_coarse=sum(s.n_coarse for s in summaries), n_fine=sum(s.n_fine for s in summaries),
    )


def mask_best_iou(masks: np.ndarray, gt: np.ndarray, min_pixels: int = 16) -> list[float]:
    """How well one level of a view's training masks matches its ground truth, target by target.

    masks: int [H, W] segment IDs of one level (-1 = unassigned); gt: int [H, W] ground-truth ids
    of that level (-1 = background; id 0, the table, is scored too: it is a segment training
    sees). Returns, per ground-truth id visible with at least ``min_pixels``, the IoU of the
    mask segment that overlaps it best (0.0 when none overlaps). A quick screen of a mask source
    without training: an object split into two segments scores the larger piece, two objects
    merged into one segment score the union's IoU."""
    m = np.asarray(masks).reshape(-1).astype(np.int64)
    g = np.asarray(gt).reshape(-1).astype(np.int64)
    n_m = int(m.max()) + 1 if m.size and m.max() >= 0 else 0
    n_g = int(g.max()) + 1 if g.size and g.max() >= 0 else 0
    if n_g == 0:
        return []
    area_g = np.bincount(g[g >= 0], minlength=n_g)
    if n_m == 0:
        return [0.0 for t in range(n_g) if area_g[t] >= min_pixels]
    area_m = np.bincount(m[m >= 0], minlength=n_m)
    both = (m >= 0) & (g >= 0)
    inter = np.bincount(g[both] * n_m + m[both], minlength=n_g * n_m).reshape(n_g, n_m)
    ious = inter / np.maximum(area_g[:, None] + area_m[None, :] - inter, 1)
    return [float(ious[t].max()) for t in range(n_g) if area_g[t] >= min_pixels]
