"""Segment everything: every pixel of a view gets the global cluster its rendered feature is most
similar to (cosine), at one level (paper, supplementary)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..core.cameras import Camera
from ..core.features import TrainedFeatures, normalize_rows

BACKGROUND_ALPHA = 0.5  # pixels the splats cover less than this are background (-1)


@torch.no_grad()
def segment_everything(
    gaussians_or_scene: Any,
    trained: TrainedFeatures,
    camera: Camera,
    level: str = "coarse",
    *,
    min_cos: float | None = None,
    return_render: bool = False,
) -> np.ndarray | tuple[np.ndarray, Any]:
    """Per-pixel cluster map int32 [H, W] of ``camera``: argmax over the level's global clusters
    of cos(rendered feature, centre); -1 where alpha < 0.5 (background), where the level has no
    clusters, or (with ``min_cos``) where the best cosine is below it.

    gaussians_or_scene: :class:`engine.render.gaussians.Gaussians` (reused) or a GaussianScene.
    With ``return_render`` also returns the :class:`engine.render.renderer.RenderOutput` of the features."""
    from ..render.gaussians import Gaussians
    from ..render.renderer import render

    g = gaussians_or_scene if isinstance(gaussians_or_scene, Gaussians) else Gaussians.from_scene(gaussians_or_scene)
    if g.num_gaussians != trained.num_gaussians:
        from ..core.errors import TrainingError

        raise TrainingError(
            f"features are for {trained.num_gaussians} Gaussians but the scene has {g.num_gaussians}"
        )
    feats = torch.from_numpy(trained.level_features(level)).to(g.device)
    out = render(g, camera, feats)
    centers = trained.centers(level)
    h, w = camera.height, camera.width
    labels = np.full((h, w), -1, np.int32)
    if len(centers):
        f = normalize_rows(out.values.reshape(-1, feats.shape[1]).cpu().numpy())
        cos = f @ centers.T
        best = cos.argmax(1)
        ok = out.alpha.reshape(-1).cpu().numpy() >= BACKGROUND_ALPHA
        if min_cos is not None:
            ok &= cos[np.arange(len(best)), best] >= min_cos
        labels.reshape(-1)[ok] = best[ok].astype(np.int32)
    return (labels, out) if return_render else labels
