"""``python -m engine segment SCENE.ply --out DIR`` — segment-everything PNGs of a trained scene.

Every pixel gets the global cluster its rendered feature is most similar to (Click-Gaussian's
automatic segmentation), drawn as one colour per cluster over the scene's own render. Views: the
capture's cameras (``--cameras``) or ``--views`` virtual orbit views. Writes, per view and level,
``<view>_<level>.png`` (overlay) and one ``<view>_<level>_ids.png`` (16-bit cluster id + 1, 0 =
background) for scripts.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from ..core.atomic import write_png
from ..core.errors import EngineError, TrainingError
from ..core.features import LEVELS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scene", help="3DGS .ply scene")
    parser.add_argument("--features", help="features file (default <scene>.clickgs.npz beside the scene)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--views", type=int, default=4, help="number of views (default 4)")
    parser.add_argument("--size", default="384x384", help="orbit view size WxH (default 384x384)")
    parser.add_argument("--cameras", help="use the capture's cameras instead of orbit views")
    parser.add_argument("--level", choices=(*LEVELS, "both"), default="both")
    parser.add_argument("--device", default="auto")


def palette(n: int) -> np.ndarray:
    """``n`` distinct RGB colours uint8 [n, 3] (golden-ratio hues, alternating brightness)."""
    import colorsys

    out = np.zeros((max(n, 1), 3), np.uint8)
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        s = 0.85 if i % 2 == 0 else 0.6
        v = 0.95 if i % 3 != 2 else 0.7
        out[i] = np.round(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    return out[:n]


def overlay(rgb: np.ndarray, labels: np.ndarray, n_clusters: int, strength: float = 0.6) -> np.ndarray:
    """The render uint8 [H, W, 3] with each labelled pixel tinted by its cluster's colour and
    cluster borders drawn dark; background (-1) left as rendered."""
    out = rgb.astype(np.float32)
    pal = palette(n_clusters).astype(np.float32)
    m = labels >= 0
    out[m] = (1 - strength) * out[m] + strength * pal[labels[m]]
    edge = np.zeros_like(m)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    out[edge & m] *= 0.35
    return np.clip(out, 0, 255).astype(np.uint8)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..core.cameras import load_cameras, orbit_cameras
    from .options import parse_size
    from ..core.features import TrainedFeatures, default_features_path
    from ..render.gaussians import Gaussians
    from ..core.formats.ply import read_ply
    from ..render.renderer import render
    from ..train import segment_everything

    scene = read_ply(args.scene)
    feats_path = args.features or default_features_path(args.scene)
    trained = TrainedFeatures.load(feats_path, scene=scene)
    if args.views < 1:
        raise EngineError(f"--views must be at least 1, got {args.views}")
    w, h = parse_size(args.size)
    if args.cameras:
        cams = load_cameras(args.cameras)
        step = max(1, len(cams) // args.views)
        cams = cams[::step][: args.views]
    else:
        cams = orbit_cameras(scene, args.views, w, h)
    os.makedirs(args.out, exist_ok=True)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    g = Gaussians.from_scene(scene, device)
    levels = LEVELS if args.level == "both" else (args.level,)
    written = 0
    for i, cam in enumerate(cams):
        rgb = render(g, cam).values[..., :3].clamp(0, 1).mul(255).round().byte().cpu().numpy()
        name = (cam.name or f"view_{i:03d}").replace(os.sep, "_")
        for level in levels:
            labels = segment_everything(g, trained, cam, level)
            n = len(trained.centers(level))
            if n == 0:
                raise TrainingError(f"{feats_path} has no {level} clusters to draw")
            write_png(os.path.join(args.out, f"{name}_{level}.png"), overlay(rgb, labels, n))
            write_png(os.path.join(args.out, f"{name}_{level}_ids.png"), (labels + 1).astype(np.uint16))
            shown = np.unique(labels[labels >= 0])
            print(f"{name} {level}: {len(shown)} of {n} clusters visible")
            written += 2
    print(f"wrote {written} PNGs to {args.out}")
    return 0
