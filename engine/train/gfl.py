"""Global Feature-guided Learning: global clusters from mask-averaged rendered features.

1. Every training view's features are rendered without gradients through the frozen-geometry
   cache (:class:`engine.train.data.ViewCache`), and averaged inside every 2D mask, per level
   (coarse: the 12-d coarse feature; fine: the 24-d fine feature). Averages are L2-normalised.
2. All views' averages of a level are clustered with HDBSCAN (``hdbscan`` package,
   ``algorithm='prims_kdtree'``, faster than the default on these low-dimensional inputs),
   cluster_selection_epsilon 1e-2 (coarse) / 1e-3 (fine) (paper),
   min_cluster_size = max(3, ceil(min_cluster_views x #views)) (ours, 0.1: a global object
   must have been a mask in a tenth of the views). When HDBSCAN finds only noise, it is rerun
   allowing a single cluster, then (very few candidates) average-linkage groups at the level's
   margin are used.
3. A cluster's feature is the normalised mean of its members.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .data import ViewCache
from .losses import COARSE_DIM, fine_feature, unit

MIN_MASK_PIXELS = 4  # masks with fewer cached pixels give no candidate (too noisy)


@dataclass
class GlobalClusters:
    """Unit cluster centres of both levels: coarse [Cc, 12], fine [Cf, 24] (float32 tensors on
    the training device; C may be 0)."""

    coarse: torch.Tensor
    fine: torch.Tensor

    def level(self, name: str) -> torch.Tensor:
        return self.coarse if name == "coarse" else self.fine


def min_cluster_size(n_views: int, fraction: float) -> int:
    """HDBSCAN min_cluster_size for a number of training views (see module doc)."""
    return max(3, int(math.ceil(fraction * n_views)))


@torch.no_grad()
def blend_cached(cache: ViewCache, features: torch.Tensor, rows: torch.Tensor | None = None, chunk: int = 65536) -> torch.Tensor:
    """Rendered features [P, C] of a cache's pixels (all, or ``rows``) for per-Gaussian values
    ``features`` [N, C] (no gradient; chunked to bound memory)."""
    from ..render.renderer import blend

    ids, w = (cache.ids, cache.weights) if rows is None else (cache.ids[rows], cache.weights[rows])
    out = torch.empty(ids.shape[0], features.shape[1], dtype=features.dtype, device=features.device)
    for a in range(0, ids.shape[0], chunk):
        b = min(a + chunk, ids.shape[0])
        out[a:b] = blend(ids[a:b], w[a:b], features)
    return out


@torch.no_grad()
def mask_averages(
    caches: Sequence[ViewCache], features: torch.Tensor, *, use_prior: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised per-mask averages of rendered features over all views.

    features: [N, 24] per-Gaussian features. Returns (coarse [Mc, 12], fine [Mf, 24]) float32,
    one row per (view, segment) with at least :data:`MIN_MASK_PIXELS` cached pixels."""
    out_c: list[torch.Tensor] = []
    out_f: list[torch.Tensor] = []
    for cache in caches:
        rendered = blend_cached(cache, features)
        for seg, feats, out in (
            (cache.seg_c, rendered[:, :COARSE_DIM], out_c),
            (cache.seg_f, fine_feature(rendered, use_prior=use_prior), out_f),
        ):
            ok = seg >= 0
            if not bool(ok.any()):
                continue
            ids, inv, counts = torch.unique(seg[ok], return_inverse=True, return_counts=True)
            sums = torch.zeros(len(ids), feats.shape[1], dtype=feats.dtype, device=feats.device)
            sums.index_add_(0, inv, feats[ok])
            good = counts >= MIN_MASK_PIXELS
            if bool(good.any()):
                out.append(unit(sums[good] / counts[good, None].to(sums.dtype)))
    def cat(xs: list[torch.Tensor], d: int) -> np.ndarray:
        if not xs:
            return np.zeros((0, d), np.float32)
        return torch.cat(xs).float().cpu().numpy()

    return cat(out_c, COARSE_DIM), cat(out_f, 2 * COARSE_DIM)


def cluster_centers(
    vectors: np.ndarray, *, epsilon: float, min_size: int, fallback_cos: float | None = None
) -> np.ndarray:
    """HDBSCAN over unit vectors [M, D]; returns unit centres [C, D] float32. When HDBSCAN
    finds only noise (too few candidates), ``fallback_cos`` enables an average-linkage grouping
    at that cosine; without it C may be 0."""
    import hdbscan

    d = vectors.shape[1]
    if vectors.shape[0] < 2:
        return np.zeros((0, d), np.float32)
    x = np.ascontiguousarray(vectors, dtype=np.float64)
    def run(single: bool) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return hdbscan.HDBSCAN(
                min_cluster_size=int(min_size),
                cluster_selection_epsilon=float(epsilon),
                algorithm="prims_kdtree",
                core_dist_n_jobs=1,
                allow_single_cluster=single,
            ).fit_predict(x)

    labels = run(False)
    if not (labels >= 0).any():
        # HDBSCAN never returns a lone cluster by default: when all candidates form one blob
        # (early in training, or a scene of one object) that blob is the answer.
        labels = run(True)
    if not (labels >= 0).any() and fallback_cos is not None:
        # Too few candidates for density estimates (a handful of small views): average-linkage
        # groups whose members are on average at least ``fallback_cos`` similar, 2+ members.
        from scipy.cluster.hierarchy import fcluster, linkage

        groups = fcluster(linkage(x, method="average", metric="cosine"), t=1.0 - fallback_cos, criterion="distance")
        sizes = np.bincount(groups)
        labels = np.where(sizes[groups] >= 2, groups, -1)
    ks = [k for k in np.unique(labels) if k >= 0]
    if not ks:
        return np.zeros((0, d), np.float32)
    centers = np.stack([x[labels == k].mean(0) for k in ks])
    centers /= np.maximum(np.linalg.norm(centers, axis=1, keepdims=True), 1e-12)
    return centers.astype(np.float32)


def compute_global_clusters(
    caches: Sequence[ViewCache],
    features: torch.Tensor,
    *,
    eps_coarse: float,
    eps_fine: float,
    min_cluster_views: float,
    use_prior: bool = True,
    margin_coarse: float = 0.5,
    margin_fine: float = 0.75,
) -> GlobalClusters:
    """Steps 1-3 of the module doc for both levels."""
    avg_c, avg_f = mask_averages(caches, features.detach(), use_prior=use_prior)
    size = min_cluster_size(len(caches), min_cluster_views)
    cc = cluster_centers(avg_c, epsilon=eps_coarse, min_size=size, fallback_cos=margin_coarse)
    cf = cluster_centers(avg_f, epsilon=eps_fine, min_size=size, fallback_cos=margin_fine)
    dev = features.device
    return GlobalClusters(torch.from_numpy(cc).to(dev), torch.from_numpy(cf).to(dev))


@torch.no_grad()
def rendered_votes(
    caches: Sequence[ViewCache], level_features: torch.Tensor, centers: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where every Gaussian's blending weight goes, by cluster (ours, see :func:`vote_labels`).

    Each training pixel of every cache is given the cluster its rendered feature is most similar
    to (the segment-everything rule); each Gaussian accumulates its blending weights ``w`` over
    those pixels per cluster. level_features: [N, D] per-Gaussian features of one level (D = 12
    or 24, :func:`engine.train.losses.fine_feature` for the fine level); centers: [C, D] unit,
    C >= 1. Returns (votes [N, C] float32, total [N] float32 = the Gaussian's weight over all
    training pixels), on the features' device."""
    n, c = level_features.shape[0], centers.shape[0]
    # float32: the [N, C] table is 0.8 GB at 1M Gaussians x 200 clusters (float64 twice that); only
    # its argmax and row sums are used.
    votes = torch.zeros(n * c, dtype=torch.float32, device=level_features.device)
    cen = centers.to(level_features.dtype)
    for cache in caches:
        rendered = blend_cached(cache, level_features)
        best = (unit(rendered) @ cen.T).argmax(1)  # [P]
        ids = cache.ids.long()
        votes.index_add_(0, (ids * c + best[:, None]).reshape(-1), cache.weights.reshape(-1).float())
    votes = votes.view(n, c)
    return votes, votes.sum(1)


@torch.no_grad()
def vote_labels(
    caches: Sequence[ViewCache], level_features: torch.Tensor, centers: torch.Tensor, min_cos: float,
    min_weight: float = 1e-3,
) -> np.ndarray:
    """Per-Gaussian labels int32 [N] of one level for selection (ours).

    A Gaussian belongs to the cluster that receives most of its blending weight over the training
    pixels (:func:`rendered_votes`), so a selection is what segment-everything shows in the
    training views. Why not the argmax of the Gaussian's own feature (the paper's c_i of GFL):
    the losses see only blended features, and Gaussians with little blending weight (behind the
    front surface layer, seen at grazing angles) keep nearly untrained features; measured on the
    quality benchmark, ~9% of an object's opacity mass had no cluster within the label threshold
    and fell out of every click selection (object click IoU 0.90 -> 0.98 with these labels).
    Gaussians with less than ``min_weight`` of blending weight in all training pixels fall back
    to their own feature (:func:`assign_labels` with ``min_cos``), -1 when that does not match."""
    n = level_features.shape[0]
    if centers.shape[0] == 0:
        return np.full(n, -1, np.int32)
    votes, total = rendered_votes(caches, level_features, centers)
    own = assign_labels(level_features, centers, min_cos)
    voted = votes.argmax(1).to(torch.int32).cpu().numpy()
    return np.where(total.cpu().numpy() >= min_weight, voted, own).astype(np.int32)


@torch.no_grad()
def assign_labels(level_features: torch.Tensor, centers: torch.Tensor, min_cos: float) -> np.ndarray:
    """Per-Gaussian labels int32 [N]: index of the most similar centre when its cosine is
    >= ``min_cos``, else -1."""
    n = level_features.shape[0]
    if centers.shape[0] == 0:
        return np.full(n, -1, np.int32)
    labels = torch.full((n,), -1, dtype=torch.int32)
    u = unit(level_features.float())
    for a in range(0, n, 262144):
        b = min(a + 262144, n)
        best, idx = (u[a:b] @ centers.T.float()).max(1)
        labels[a:b] = torch.where(best >= min_cos, idx, torch.full_like(idx, -1)).to(torch.int32).cpu()
    return labels.numpy()
