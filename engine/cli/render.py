"""``python -m engine render SCENE.ply --out DIR`` — render views of a 3DGS scene to PNG files.

Without ``--cameras`` the views are virtual orbits around the scene
(:func:`engine.core.cameras.orbit_cameras`, up axis guessed from the scene unless ``--up``); with it,
the capture's own cameras (COLMAP, cameras.json, transforms.json, .npz), optionally resized
with ``--size``. Each view is written atomically as ``view_000.png`` (RGB; ``--depth`` adds
``view_000_depth.png``, near = bright). Ctrl-C stops after the current view; finished files stay.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from ..core.errors import CameraError, EngineError
from ..core.atomic import write_png
from .options import parse_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scene", help="3DGS scene (.ply or SuperSplat .compressed.ply)")
    parser.add_argument("--out", required=True, help="folder for the PNG files (created if missing)")
    parser.add_argument("--views", type=int, default=None, help="number of orbit views (default 8; with --cameras: the first N, default all)")
    parser.add_argument("--size", default=None, help="image size WxH (default 512x512 for orbits, the cameras' own size otherwise)")
    parser.add_argument("--cameras", default=None, help="the scene's cameras: COLMAP folder, cameras.json, transforms.json or .npz")
    parser.add_argument("--up", default=None, help="world up axis for orbits: +x, -x, +y, -y, +z, -z (default: guessed from the scene)")
    parser.add_argument("--background", default="white", help="white, black, or R,G,B in 0..1 (default white)")
    parser.add_argument("--depth", action="store_true", help="also write a depth PNG per view")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda (default auto)")


def parse_background(text: str) -> tuple[float, float, float]:
    named = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
    if text.lower() in named:
        return named[text.lower()]
    try:
        rgb = tuple(float(p) for p in text.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
        raise EngineError(f"--background: expected white, black or R,G,B in 0..1, got {text!r}")
    return rgb  # type: ignore[return-value]


def depth_to_uint8(depth: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Expected depth [H, W] -> uint8 [H, W], near = 255, far = 1, nothing hit = 0 (robust range)."""
    hit = alpha > 0.5
    out = np.zeros(depth.shape, dtype=np.uint8)
    if not hit.any():
        return out
    lo, hi = np.quantile(depth[hit], [0.01, 0.99])
    t = np.clip((depth - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    out[hit] = (255 - np.round(t[hit] * 254)).astype(np.uint8)
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from ..core.cameras import load_cameras, orbit_cameras
    from ..render.gaussians import Gaussians
    from ..core.formats.ply import read_ply
    from ..render.renderer import render

    if args.views is not None and args.views < 1:
        raise EngineError(f"--views: must be at least 1, got {args.views}")
    size = parse_size(args.size, low=1, high=16384, error=EngineError) if args.size else None
    background = parse_background(args.background)
    t0 = time.perf_counter()
    scene = read_ply(args.scene)
    if scene.num_gaussians == 0:
        raise EngineError(f"{args.scene}: the scene has no Gaussians")
    if args.cameras:
        cams = load_cameras(args.cameras, warn=lambda msg: print(f"warning: {msg}", file=sys.stderr))
        if not cams:
            raise CameraError(f"{args.cameras}: no cameras")
        if args.views is not None:
            cams = cams[: args.views]
        if size:
            cams = [c.scaled(*size) for c in cams]
    else:
        w, h = size or (512, 512)
        cams = orbit_cameras(scene, args.views or 8, w, h, up=args.up)
    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        raise EngineError(f"--device: expected auto, cpu or cuda[:N], got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineError(f"--device {args.device}: torch sees no CUDA GPU (use --device cpu or auto)")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    gaussians = Gaussians.from_scene(scene, device)
    os.makedirs(args.out, exist_ok=True)
    load_s = time.perf_counter() - t0
    print(f"{os.path.basename(args.scene)}: {scene.num_gaussians} Gaussians, SH degree {scene.sh_degree}, "
          f"loaded in {load_s:.2f} s; rendering {len(cams)} views on {device.type}", file=sys.stderr)
    written: list[str] = []
    times: list[float] = []
    bg = torch.tensor(background, device=device)
    try:
        for i, cam in enumerate(cams):
            _progress(i, len(cams), times)
            t = time.perf_counter()
            with torch.no_grad():
                out = render(gaussians, cam, background=bg)
            rgb = (out.values.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
            times.append(time.perf_counter() - t)
            stem = f"view_{i:03d}"
            path = os.path.join(args.out, stem + ".png")
            write_png(path, rgb)
            written.append(path)
            if args.depth:
                dpath = os.path.join(args.out, stem + "_depth.png")
                write_png(dpath, depth_to_uint8(out.depth.cpu().numpy(), out.alpha.cpu().numpy()))
                written.append(dpath)
        _progress(len(cams), len(cams), times)
    except KeyboardInterrupt:
        print(f"\ncancelled after {len(times)} of {len(cams)} views", file=sys.stderr)
        _report(written, times, args.out)
        raise
    print(file=sys.stderr)
    _report(written, times, args.out)
    return 0


def _progress(done: int, total: int, times: list[float]) -> None:
    if not sys.stderr.isatty():
        return
    per = sum(times) / len(times) if times else 0.0
    eta = f", {per * (total - done):.0f} s left" if times and done < total else ""
    print(f"\rrendering view {min(done + 1, total)}/{total}{eta}   ", end="", file=sys.stderr, flush=True)


def _report(written: list[str], times: list[float], out: str) -> None:
    for p in written:
        print(p)
    if times:
        print(f"wrote {len(written)} files to {out} ({sum(times) / len(times):.3f} s per view)", file=sys.stderr)
