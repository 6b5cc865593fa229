"""``python -m engine masks SCENE.ply --out DIR`` — compute the two-level training masks of a
scene's views and write them as files.

The views are chosen exactly as ``python -m engine train`` chooses them (orbit views rendered
from the splats, or ``--cameras`` [+ ``--images``]), and the masks go through the same per-view
cache (default ``<scene>.clickgs.npz.masks``, train's default), so a following ``train`` with the
same options reuses them. Each view is written as ``<view>.coarse.png`` + ``<view>.fine.png``
(16-bit label PNGs, value = segment ID + 1, 0 = unassigned) — the layout ``train --masks DIR``
reads — plus ``<view>.preview.png`` (image | coarse | fine) with ``--preview``. Typical use: run
SAM here on a GPU machine, copy the folder, train anywhere with ``--masks``. Ctrl-C stops; the
views finished so far stay cached.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from ..core.errors import EngineError, MaskError
from .options import add_source_arguments, add_view_arguments, make_source, select_cameras


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scene", help="3DGS .ply scene")
    parser.add_argument("--out", required=True, help="folder for the mask PNGs (created if missing)")
    add_view_arguments(parser, "256x256", ", as train")
    add_source_arguments(parser)
    parser.add_argument("--mask-cache", help="mask cache folder (default <scene>.clickgs.npz.masks, as train)")
    parser.add_argument("--preview", action="store_true", help="also write <view>.preview.png")
    parser.add_argument("--overwrite", action="store_true", help="replace mask files already in --out")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")


def run(args: argparse.Namespace) -> int:
    from ..core.features import default_features_path
    from ..masks import save_preview, write_view_masks
    from ..core.formats.ply import read_ply
    from ..train import views_from_scene

    t0 = time.perf_counter()
    scene = read_ply(args.scene)
    if scene.num_gaussians == 0:
        raise EngineError(f"{args.scene}: the scene has no Gaussians")
    cameras = select_cameras(args, scene, lambda msg: print(f"warning: {msg}", file=sys.stderr))
    source = make_source(args)
    cache = args.mask_cache or default_features_path(args.scene) + ".masks"
    out = os.path.abspath(args.out)
    if not args.overwrite:
        clash = [c.name for c in cameras if os.path.exists(os.path.join(out, f"{_stem(c.name)}.coarse.png"))]
        if clash:
            raise MaskError(f"masks for {len(clash)} views (e.g. {clash[0]}) are already in {out}; use --overwrite")
    print(f"{len(cameras)} views at {cameras[0].width}x{cameras[0].height}; masks: {source.quality}; cache: {cache}",
          file=sys.stderr)

    def progress(stage: str, done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{stage}: {done}/{total}   ", end="", file=sys.stderr, flush=True)

    views = views_from_scene(scene, cameras, source, cache_dir=cache, device=args.device, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    written = 0
    for cam, view in zip(cameras, views):
        for path in write_view_masks(out, cam.name, view.masks, overwrite=args.overwrite):
            print(path)
            written += 1
        if args.preview:
            print(save_preview(os.path.join(out, f"{_stem(cam.name)}.preview.png"), view.image, view.masks))
            written += 1
        print(f"{cam.name}: {view.masks.num_segments('coarse')} coarse / {view.masks.num_segments('fine')} fine "
              f"segments, {view.masks.assigned_fraction():.0%} of pixels assigned", file=sys.stderr)
    print(f"wrote {written} files to {out} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def _stem(name: str) -> str:
    from ..masks.folder import view_stem

    return view_stem(name)
