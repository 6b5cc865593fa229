"""A no-learning segmentation baseline: cluster the Gaussians on position and colour.

What it shows: how far plain geometry + colour clustering gets without any 2D masks or training,
so the value of Click-Gaussian's training is visible in the quality benchmark.

Method (:func:`cluster_baseline`): HDBSCAN (the ``hdbscan`` package) on per-Gaussian vectors
``[xyz / extent, w * rgb]`` — ``extent`` is the diagonal of the scene's robust bounds, ``rgb``
the DC colour — once with a small colour weight and a large minimum cluster size for the coarse
level ("objects": spatially separate blobs) and once with a larger colour weight and a smaller
minimum size for the fine level ("parts": same-coloured pieces). HDBSCAN runs on a random
subset (``max_fit`` points) for speed; every Gaussian then takes the label of its nearest fitted
neighbour in the same space that is not noise (scipy cKDTree).

The result is packaged as :class:`engine.core.features.TrainedFeatures` so the benchmark evaluates it
with exactly the same code as trained features (rendered features, cosine to cluster centres,
0.9 threshold, clicks through :func:`engine.core.click.click_query`): each cluster gets a unit
direction (coarse: 12-d, fine': 12-d, pairwise cosines below 0.3), a Gaussian's feature is its
clusters' directions ``[coarse dir | fine' dir]``, and the centres are those directions (fine:
the normalised mean of the members' 24-d features).

numpy + scipy + hdbscan; no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from ...core.features import COARSE_DIM, FEATURE_DIM, TrainedFeatures, normalize_rows, scene_hash
from ...core.scene import GaussianScene


@dataclass(frozen=True)
class BaselineSettings:
    """Clustering settings per level (colour weight relative to the unit scene diagonal)."""

    coarse_color_weight: float = 0.1
    coarse_min_cluster_fraction: float = 0.01  # of the fitted points
    fine_color_weight: float = 0.6
    fine_min_cluster_fraction: float = 0.002
    max_fit: int = 12_000
    seed: int = 0


def _directions(n: int, dim: int, rng: np.random.Generator, max_cos: float = 0.3) -> np.ndarray:
    """``n`` unit vectors [n, dim] with pairwise cosine below ``max_cos`` where possible
    (greedy rejection sampling; falls back to the least similar candidate)."""
    out: list[np.ndarray] = []
    for _ in range(n):
        best, best_cos = None, 2.0
        for _ in range(200):
            v = rng.normal(size=dim)
            v /= np.linalg.norm(v)
            c = max((abs(float(v @ u)) for u in out), default=0.0)
            if c < best_cos:
                best, best_cos = v, c
            if c < max_cos:
                break
        out.append(best)
    return np.array(out, dtype=np.float32).reshape(n, dim)


def _cluster(x: np.ndarray, min_fraction: float, max_fit: int, rng: np.random.Generator) -> np.ndarray:
    """HDBSCAN labels int32 [N] for points [N, D] (fitted on a subset, then nearest fitted
    non-noise neighbour); all -1 if HDBSCAN finds no cluster."""
    import hdbscan

    n = len(x)
    fit = rng.choice(n, size=min(n, max_fit), replace=False)
    min_size = max(5, int(round(min_fraction * len(fit))))
    labels_fit = hdbscan.HDBSCAN(min_cluster_size=min_size, min_samples=5, algorithm="prims_kdtree").fit_predict(x[fit])
    good = labels_fit >= 0
    if not good.any():
        return np.full(n, -1, np.int32)
    tree = cKDTree(x[fit][good])
    _, nn = tree.query(x, k=1)
    return labels_fit[good][nn].astype(np.int32)


def cluster_baseline(scene: GaussianScene, settings: BaselineSettings = BaselineSettings()) -> TrainedFeatures:
    """Cluster ``scene``'s Gaussians into coarse and fine groups without learning; returns a
    :class:`TrainedFeatures` (see the module docstring) whose ``settings`` record the method."""
    rng = np.random.default_rng(settings.seed)
    lo, hi = scene.robust_bounds()
    extent = max(float(np.linalg.norm(hi - lo)), 1e-9)
    xyz = (scene.means.astype(np.float64) - lo) / extent
    rgb = scene.base_colors().astype(np.float64)
    coarse = _cluster(np.concatenate([xyz, settings.coarse_color_weight * rgb], 1),
                      settings.coarse_min_cluster_fraction, settings.max_fit, rng)
    fine = _cluster(np.concatenate([xyz, settings.fine_color_weight * rgb], 1),
                    settings.fine_min_cluster_fraction, settings.max_fit, rng)
    return features_from_labels(
        scene, coarse, fine, seed=settings.seed,
        settings={"method": "baseline: HDBSCAN on position + colour (no learning)", **asdict(settings)},
    )


def features_from_labels(
    scene: GaussianScene, coarse: np.ndarray, fine: np.ndarray, *, seed: int = 0, settings: dict | None = None
) -> TrainedFeatures:
    """Package per-Gaussian cluster labels (int [N] per level, -1 = none) as
    :class:`TrainedFeatures`: each cluster a unit direction (pairwise cosines below 0.3 where
    possible), features ``[coarse dir | fine' dir]``, fine centres the normalised mean of their
    members' 24-d features. Labels must be 0..C-1 per level. Gaussians without a label get a
    random direction of their own (they match no cluster)."""
    rng = np.random.default_rng(seed)
    coarse = np.asarray(coarse, np.int32)
    fine = np.asarray(fine, np.int32)
    n_c, n_f = int(coarse.max()) + 1, int(fine.max()) + 1
    dir_c = _directions(max(n_c, 0), COARSE_DIM, rng)
    dir_f = _directions(max(n_f, 0), FEATURE_DIM - COARSE_DIM, rng)
    feats = np.zeros((scene.num_gaussians, FEATURE_DIM), np.float32)
    feats[:, :COARSE_DIM] = normalize_rows(rng.normal(size=(len(coarse), COARSE_DIM)))
    feats[:, COARSE_DIM:] = normalize_rows(rng.normal(size=(len(fine), FEATURE_DIM - COARSE_DIM)))
    if n_c:
        feats[coarse >= 0, :COARSE_DIM] = dir_c[coarse[coarse >= 0]]
    if n_f:
        feats[fine >= 0, COARSE_DIM:] = dir_f[fine[fine >= 0]]
    fine_centers = np.zeros((n_f, FEATURE_DIM), np.float32)
    for k in range(n_f):
        fine_centers[k] = feats[fine == k].mean(axis=0)
    return TrainedFeatures(
        features=feats.astype(np.float16),
        coarse_centers=dir_c,
        fine_centers=normalize_rows(fine_centers) if n_f else fine_centers,
        coarse_labels=coarse,
        fine_labels=fine,
        settings=dict(settings or {"method": "features from given labels"}),
        scene_hash=scene_hash(scene),
    )
