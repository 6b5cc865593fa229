"""Small random scenes and trained features for tests (shared by several test modules)."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.core.features import TrainedFeatures, scene_hash
from engine.core.scene import GaussianScene


def random_scene(n: int = 50, seed: int = 0, sh_degree: int = 0) -> GaussianScene:
    """``n`` Gaussians with random positions, small scales, random rotations and SH of
    ``sh_degree`` (higher bands small random values)."""
    rng = np.random.default_rng(seed)
    k = (sh_degree + 1) ** 2 - 1
    return GaussianScene(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        scales=rng.normal(-3, 0.3, size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacities=rng.normal(size=n).astype(np.float32),
        sh_dc=rng.normal(size=(n, 3)).astype(np.float32),
        sh_rest=rng.normal(0, 0.1, size=(n, k, 3)).astype(np.float32),
    )


def random_trained(scene: GaussianScene, settings: dict[str, Any] | None = None) -> TrainedFeatures:
    """Random features for ``scene`` (3 coarse, 5 fine clusters; some Gaussians unlabelled),
    bound to the scene by its hash."""
    rng = np.random.default_rng(1)
    n = scene.num_gaussians
    return TrainedFeatures(
        features=rng.normal(size=(n, 24)),
        coarse_centers=rng.normal(size=(3, 12)),
        fine_centers=rng.normal(size=(5, 24)),
        coarse_labels=rng.integers(-1, 3, n),
        fine_labels=rng.integers(-1, 5, n),
        settings=dict(settings) if settings is not None else {"iterations": 10, "lr": 0.01, "views": 4},
        scene_hash=scene_hash(scene),
    )


def majority(ids: np.ndarray, where: np.ndarray) -> int:
    """The most frequent non-negative id of ``ids[where]`` (-1 when there is none): which
    segment a ground-truth region mostly falls in."""
    v = ids[where]
    v = v[v >= 0]
    if v.size == 0:
        return -1
    u, c = np.unique(v, return_counts=True)
    return int(u[np.argmax(c)])
