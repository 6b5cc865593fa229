"""``python -m engine.bench masks [--scene PLY] [--views 4] [--repeats 3]``: mask source speed.

Renders ``--views`` orbit views of the scene (default: ``../shared/data/fox_cc0.ply``) at
256x256 and 512x512 with the project renderer, then prints the median of ``--repeats`` runs of:
- the built-in source (:class:`engine.masks.BuiltinMaskSource`) per view, with its segment counts;
- the area rule on SAM-sized input (100 random overlapping segments at 1024x1024);
- :func:`engine.masks.prepare_masks` per view when every view is already in the cache.
Output lines are ``label: value unit``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from ..masks import BuiltinMaskSource, area_rule, prepare_masks
from . import SHARED_DATA, median_time


def _render_views(scene_path: Path, n: int, size: int) -> list[tuple[str, np.ndarray]]:
    from ..core.cameras import orbit_cameras
    from ..render.gaussians import Gaussians
    from ..core.formats.ply import read_ply
    from ..render.renderer import render

    scene = read_ply(scene_path)
    g = Gaussians.from_scene(scene, "cpu")
    out = []
    for cam in orbit_cameras(scene, n, size, size):
        rgb = render(g, cam).values.detach().cpu().numpy()
        out.append((cam.name, (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.bench masks", description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=SHARED_DATA / "fox_cc0.ply")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    src = BuiltinMaskSource()
    for size in (256, 512):
        views = _render_views(args.scene, args.views, size)
        per_view = [median_time(lambda im=im: src.view_masks(im), args.repeats) for _, im in views]
        counts = [src.view_masks(im) for _, im in views]
        print(f"builtin masks {size}x{size} per view: {statistics.median(per_view) * 1000:.0f} ms")
        print(f"builtin masks {size}x{size} coarse segments per view: {statistics.median(m.num_segments('coarse') for m in counts):.0f} count")
        print(f"builtin masks {size}x{size} fine segments per view: {statistics.median(m.num_segments('fine') for m in counts):.0f} count")
        with tempfile.TemporaryDirectory() as tmp:
            prepare_masks(src, views, cache_dir=tmp)
            hit = median_time(lambda: prepare_masks(src, views, cache_dir=tmp), args.repeats)
        print(f"cached masks {size}x{size} per view: {hit / len(views) * 1000:.1f} ms")

    rng = np.random.default_rng(0)
    h = w = 1024
    segs = []
    for _ in range(100):
        y0, x0 = rng.integers(0, h - 64, 2)
        sh, sw = rng.integers(32, 700, 2)
        m = np.zeros((h, w), bool)
        m[y0 : y0 + sh, x0 : x0 + sw] = True
        segs.append({"segmentation": m, "area": int(m.sum())})
    t = median_time(lambda: area_rule(segs, h, w), args.repeats)
    print(f"area rule 100 segments 1024x1024: {t * 1000:.0f} ms")
    return 0
