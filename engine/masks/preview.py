"""Pictures of masks for people: segment-ID maps as colours over the view image.

numpy only (Pillow to write PNG files).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .area_rule import ViewMasks


def id_colours(n: int, seed: int = 7) -> np.ndarray:
    """uint8 [n, 3] distinct-looking colours, the same for a given (n, seed)."""
    rng = np.random.default_rng(seed)
    hue = (np.arange(n) * 0.618033988749895 + rng.random()) % 1.0  # golden-ratio hue steps
    sat = 0.55 + 0.35 * rng.random(n)
    val = 0.75 + 0.25 * rng.random(n)
    k = (np.array([5.0, 3.0, 1.0])[None, :] + hue[:, None] * 6.0) % 6.0
    rgb = val[:, None] - val[:, None] * sat[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (rgb * 255 + 0.5).astype(np.uint8)


def colorize(ids: np.ndarray, image: np.ndarray | None = None, *, opacity: float = 0.65) -> np.ndarray:
    """ids int [H, W] (-1 = unassigned) -> uint8 [H, W, 3]: each ID a colour, blended over
    ``image`` uint8 [H, W, 3] when given (unassigned pixels show the image darkened, or black),
    with 1-pixel white segment borders."""
    ids = np.asarray(ids)
    h, w = ids.shape
    base = np.zeros((h, w, 3), np.float32) if image is None else np.asarray(image, np.float32)[..., :3]
    pal = id_colours(int(ids.max()) + 1 if ids.size and ids.max() >= 0 else 0).astype(np.float32)
    out = base * 0.3
    has = ids >= 0
    if has.any():
        out[has] = (1.0 - opacity) * base[has] + opacity * pal[ids[has]]
    edge = np.zeros((h, w), bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[1:] |= ids[1:] != ids[:-1]
    out[edge] = 255.0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def preview(image: np.ndarray, masks: ViewMasks) -> np.ndarray:
    """uint8 [H, 3W, 3]: the image, its coarse map and its fine map side by side."""
    image = np.asarray(image, np.uint8)[..., :3]
    return np.concatenate([image, colorize(masks.coarse, image), colorize(masks.fine, image)], axis=1)


def save_preview(path: str | os.PathLike[str], image: np.ndarray, masks: ViewMasks) -> Path:
    """Write :func:`preview` as a PNG (atomically). Returns the path."""
    from ..core.atomic import write_png

    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    write_png(p, preview(image, masks))
    return p


def compare_builtin(scene_path: str, out: str | os.PathLike[str], *, views: int = 8, pick: list[int] | None = None,
                    size: tuple[int, int] = (192, 192)) -> Path:
    """Write a PNG comparing the built-in source's masks from colour alone with those using the
    splats' geometry on orbit views of a scene, through the product's own path
    (:func:`engine.train.views_from_scene`). One row per picked view: image | coarse, fine
    (colour only) | coarse, fine (with geometry). Returns the path."""
    from ..core.atomic import write_png
    from ..core.cameras import orbit_cameras
    from ..core.formats.scene_io import read_scene
    from ..train.data import views_from_scene
    from .builtin import BuiltinMaskSource

    scene = read_scene(scene_path)
    cams = orbit_cameras(scene, views, size[0], size[1])
    cams = [cams[i] for i in (pick if pick is not None else range(len(cams)))]
    plain = views_from_scene(scene, cams, BuiltinMaskSource(use_geometry=False), device="cpu")
    geo = views_from_scene(scene, cams, BuiltinMaskSource(), device="cpu")
    rows = []
    for a, b in zip(plain, geo):
        rows.append(np.concatenate([a.image, colorize(a.masks.coarse, a.image), colorize(a.masks.fine, a.image),
                                    colorize(b.masks.coarse, b.image), colorize(b.masks.fine, b.image)], axis=1))
    p = Path(out).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    write_png(p, np.concatenate(rows, axis=0))
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.masks SCENE --out PNG [--views N] [--pick 2,6] [--size WxH]``:
    :func:`compare_builtin`."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m engine.masks", description=compare_builtin.__doc__.split(".")[0])
    ap.add_argument("scene")
    ap.add_argument("--out", required=True)
    ap.add_argument("--views", type=int, default=8, help="orbit views to choose from")
    ap.add_argument("--pick", default=None, help="comma-separated view indices to show (default all)")
    ap.add_argument("--size", default="192x192")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    pick = [int(v) for v in args.pick.split(",")] if args.pick else None
    print(compare_builtin(args.scene, args.out, views=args.views, pick=pick, size=(w, h)))
    return 0
