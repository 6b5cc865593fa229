"""The scene the diagnosis scripts beside this file share: one seed of the quality benchmark's
CPU schedule (about 20,000 Gaussians, 6 objects, 24 training and 8 test views of 160x160), its
ground-truth renders with contributors, and the mask-average candidates GFL clusters.

Used by merge_diag.py / fine_diag.py (training configurations on one scene) and
gfl_clusters.py (where GFL's clusters fall at its start).
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.core.click import ClickIndex  # noqa: E402
from engine.render.gaussians import Gaussians  # noqa: E402
from engine.bench.evaluation.synth import make_scene, render_ground_truth  # noqa: E402


@dataclass
class DiagScene:
    synth: object  # engine.bench.evaluation.synth.SynthScene
    gaussians: Gaussians  # the scene on the CPU, for rendering
    train_gt: list  # ground truth per training view, with contributors
    test_gt: list  # ground truth per test view, with contributors
    dense: list  # dense contributors (ids, weights) per training view
    index: ClickIndex
    opac: np.ndarray  # [N] activated opacities


def diag_scene(seed: int, *, test_views: bool = True) -> DiagScene:
    synth = make_scene(seed, n_gaussians=20000, n_objects=6, n_views=24, n_test_views=8, width=160, height=160,
                       touch_prob=0.5, alike_prob=0.35)
    g = Gaussians.from_scene(synth.scene, "cpu")
    train_gt = render_ground_truth(synth, synth.cameras, gaussians=g, keep_contributors=True, contributors_k=32)
    test_gt = (render_ground_truth(synth, synth.test_cameras, gaussians=g, keep_contributors=True, contributors_k=32)
               if test_views else [])
    return DiagScene(synth, g, train_gt, test_gt, [v.contributors.to_dense() for v in train_gt],
                     ClickIndex.build(synth.scene), synth.scene.activated_opacities())


def cluster_candidates(x: np.ndarray, n_views: int, epsilon: float) -> np.ndarray:
    """HDBSCAN labels of mask-average candidates ``x`` [M, D] as GFL clusters them."""
    import hdbscan

    from engine.train.gfl import min_cluster_size

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hdbscan.HDBSCAN(min_cluster_size=min_cluster_size(n_views, 0.1), cluster_selection_epsilon=epsilon,
                               algorithm="prims_kdtree").fit_predict(x)
