"""``python -m engine demo [SCENE.ply]`` — the engine's whole pipeline on one scene, with pictures.

Default scene: the project's own procedural tabletop scene (:func:`engine.bench.evaluation.synth.make_scene`),
written to ``OUT/scene.ply`` so the Blender workflow can import the same file; any 3DGS .ply
(e.g. ``../shared/data/fox_cc0.ply``) works too. Steps: views (the synthetic scene's cameras, or
virtual orbits), built-in two-level masks, Click-Gaussian training (the paper's settings unless
``--iterations``), segment-everything maps, and a click in a view. It writes, under ``OUT``:

- ``views.png``        rendered training views
- ``masks.png``        a view, its coarse and fine masks (built-in source)
- ``segments.png``     a view, segment-everything at coarse and fine level
- ``click.png``        a view with the click point, and the selected Gaussians rendered alone
- ``timings.json``     wall times of every step, scene size, cluster counts, click latency
- ``scene.clickgs.npz`` (beside the scene file) the trained features
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

import numpy as np

from ..core.errors import EngineError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scene", nargs="?", default=None,
                        help="3DGS .ply (default: generate the procedural scene into OUT/scene.ply)")
    parser.add_argument("--out", default="out/engine_demo", help="output folder (default out/engine_demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the procedural scene (default 0)")
    parser.add_argument("--views", type=int, default=32, help="training views for a .ply without cameras (default 32)")
    parser.add_argument("--size", type=int, default=256, help="training view size in pixels (default 256)")
    parser.add_argument("--iterations", type=int, default=None, help="training iterations (default: the paper's 3000)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda (default auto)")


class _ProgressLine:
    """One self-overwriting terminal line: phase, counter, losses, ETA."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, info: Any) -> None:
        now = time.monotonic()
        d = info if isinstance(info, dict) else getattr(info, "__dict__", {})
        done, total = d.get("iteration", d.get("done")), d.get("total")
        final = total is not None and done == total
        if now - self._last < 0.5 and not final:
            return
        self._last = now
        parts = [str(d.get("phase", ""))]
        if total:
            parts.append(f"{done}/{total}")
        losses = d.get("losses") or {}
        if "total" in losses:
            parts.append(f"loss {losses['total']:.4f}")
        if d.get("eta_s") is not None:
            parts.append(f"ETA {d['eta_s']:.0f}s")
        sys.stderr.write("\r  " + "  ".join(parts).ljust(70))
        sys.stderr.flush()

    @staticmethod
    def end() -> None:
        sys.stderr.write("\n")


def _grid(images: list[np.ndarray], cols: int) -> np.ndarray:
    """uint8 [H, W, 3] images of one size -> one uint8 grid image (white padding)."""
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    out = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = im
    return out


def _to_u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _label_colors(labels: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """int [H, W] ids (-1 = none) -> uint8 [H, W, 3] with a fixed colour per id, blended over
    ``base`` (uint8 [H, W, 3]) when given."""
    rng = np.random.default_rng(12345)
    palette = rng.integers(40, 255, size=(int(labels.max()) + 2 if labels.size else 1, 3)).astype(np.float32)
    out = np.full(labels.shape + (3,), 255.0, np.float32)
    hit = labels >= 0
    out[hit] = palette[labels[hit]]
    if base is not None:
        out[hit] = 0.6 * out[hit] + 0.4 * base[hit]
    return out.astype(np.uint8)


def _pick_click(image_alpha: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """A pixel to click: the interior point (farthest from its boundary) of the largest coarse
    segment that is not the biggest one (the biggest is usually the ground or pedestal)."""
    from scipy import ndimage

    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    if len(ids) == 0:
        ys, xs = np.nonzero(image_alpha > 0.5)
        if len(ys) == 0:
            raise EngineError("the demo view shows nothing to click")
        i = len(ys) // 2
        return float(xs[i]) + 0.5, float(ys[i]) + 0.5
    order = ids[np.argsort(-counts)]
    target = order[1] if len(order) > 1 else order[0]
    dist = ndimage.distance_transform_edt(labels == target)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x) + 0.5, float(y) + 0.5


def run(args: argparse.Namespace) -> int:
    from ..core.atomic import write_png, write_text
    from ..core.formats.ply import write_ply
    from ..serve.session import EngineSession

    if args.views < 1 or not 16 <= args.size <= 4096:
        raise EngineError("--views must be >= 1 and --size within 16..4096")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    timings: dict[str, Any] = {}
    t_all = time.perf_counter()
    session = EngineSession(device=args.device, cache_dir=os.path.join(out, "cache"))
    progress = _ProgressLine()

    t0 = time.perf_counter()
    cameras = None
    if args.scene is None:
        from ..bench.evaluation.synth import make_scene

        print(f"generating the procedural scene (seed {args.seed})")
        synth = make_scene(args.seed, width=args.size, height=args.size)
        scene_path = os.path.join(out, "scene.ply")
        write_ply(synth.scene, scene_path, overwrite=True)
        cameras = synth.cameras
    else:
        scene_path = os.path.abspath(args.scene)
    info = session.load_scene(scene_path, load_features=False)
    if cameras is None:
        from ..core.cameras import orbit_cameras

        cameras = orbit_cameras(session.scene, args.views, args.size, args.size)
    session.set_cameras(cameras)
    timings["scene_s"] = round(time.perf_counter() - t0, 3)
    timings["num_gaussians"] = info["num_gaussians"]
    timings["num_views"] = len(cameras)
    print(f"scene: {scene_path} ({info['num_gaussians']} Gaussians, SH degree {info['sh_degree']}), "
          f"{len(cameras)} views of {cameras[0].width}x{cameras[0].height}")

    t0 = time.perf_counter()
    prep = session.prepare_masks(progress=progress)
    progress.end()
    timings["views_and_masks_s"] = round(time.perf_counter() - t0, 3)
    views = session.views
    write_png(os.path.join(out, "views.png"), _grid([v.image for v in views[:8]], 4))
    v0 = views[0]
    write_png(os.path.join(out, "masks.png"), _grid(
        [v0.image, _label_colors(v0.masks.coarse, v0.image), _label_colors(v0.masks.fine, v0.image)], 3))
    print(f"masks: {prep['source'].get('quality') or prep['source'].get('name')}")

    settings: dict[str, Any] = {}
    if args.iterations is not None:
        settings["iterations"] = args.iterations
    cancel = threading.Event()
    t0 = time.perf_counter()
    try:
        summary = session.train(settings, progress=progress, cancel=cancel)
    finally:
        progress.end()
    timings["train_s"] = round(time.perf_counter() - t0, 3)
    timings["coarse_clusters"] = summary["coarse_clusters"]
    timings["fine_clusters"] = summary["fine_clusters"]
    print(f"trained: {summary['coarse_clusters']} objects (coarse), {summary['fine_clusters']} parts (fine) "
          f"in {timings['train_s']:.1f} s -> {summary['saved_to']}")

    t0 = time.perf_counter()
    seg_c = session.segment(0, "coarse")
    seg_f = session.segment(0, "fine")
    timings["segment_s"] = round((time.perf_counter() - t0) / 2, 3)
    write_png(os.path.join(out, "segments.png"),
              _grid([v0.image, _label_colors(seg_c, v0.image), _label_colors(seg_f, v0.image)], 3))

    rgb = session.render(0)
    u, v = _pick_click(rgb["alpha"], seg_c)
    session.click(0, u, v, "coarse")  # first call builds the click index
    t0 = time.perf_counter()
    result = session.click(0, u, v, "coarse")
    timings["click_ms"] = round((time.perf_counter() - t0) * 1000.0, 3)
    selected = np.asarray(result.selected)
    timings["click_selected"] = int(selected.size)
    marked = v0.image.copy()
    iu, iv = int(u), int(v)
    marked[max(iv - 3, 0):iv + 4, max(iu - 3, 0):iu + 4] = (255, 0, 255)
    if selected.size:
        sub = session.scene.subset(selected)
        from ..render.gaussians import Gaussians
        from ..render.renderer import render

        shown = render(Gaussians.from_scene(sub, session.device), session.camera(0))  # black background
        alone = _to_u8(shown.values.detach().cpu().numpy() + (1.0 - shown.alpha.detach().cpu().numpy())[..., None])
    else:
        alone = np.full_like(marked, 255)
    write_png(os.path.join(out, "click.png"), _grid([marked, alone], 2))
    print(f"click at ({u:.1f}, {v:.1f}) in view 0: {selected.size} Gaussians selected "
          f"(clusters {list(result.clusters)}) in {timings['click_ms']:.2f} ms")

    timings["total_s"] = round(time.perf_counter() - t_all, 3)
    write_text(os.path.join(out, "timings.json"), json.dumps(timings, indent=2))
    print(f"wrote views.png, masks.png, segments.png, click.png, timings.json to {out}")
    return 0
