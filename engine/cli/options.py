"""Options and parsing shared by several commands: ``--size``, the views (``--cameras`` /
``--images`` / ``--views``) and the mask source (``--masks`` / ``--sam-checkpoint``). Commands
import from here, never from each other."""

from __future__ import annotations

import argparse
from typing import Any

from ..core.errors import EngineError, TrainingError


def parse_size(text: str, *, low: int = 16, high: int = 8192, error: type[EngineError] = TrainingError
               ) -> tuple[int, int]:
    """``"640x480"`` -> (640, 480); raises ``error`` (one line naming ``--size``) for text that is
    not WxH or a side outside ``low..high``."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise error(f"--size must look like 256x256, got {text!r}") from None
    if not (low <= w <= high and low <= h <= high):
        raise error(f"--size {text} is out of range ({low}..{high} per side)")
    return w, h


def add_view_arguments(parser: argparse.ArgumentParser, size_default: str, size_note: str) -> None:
    """``--cameras``, ``--images``, ``--views``, ``--size`` as ``masks`` and ``train`` take them."""
    parser.add_argument("--cameras", help="cameras of the capture (COLMAP folder, cameras.json, transforms.json, .npz)")
    parser.add_argument("--images", help="images folder for --cameras")
    parser.add_argument("--views", type=int, default=None,
                        help="number of views: orbit views without --cameras (default 32); with --cameras, "
                             "an evenly spaced subset (default all)")
    parser.add_argument("--size", default=size_default,
                        help=f"orbit view size WxH (default {size_default}{size_note}); with --cameras the longer "
                             "image side is scaled down to max(W, H)")


def select_cameras(args: argparse.Namespace, scene: Any, warn: Any) -> list:
    """The training views the options ask for: ``--views`` orbit views around the scene, or the
    capture's cameras (an evenly spaced subset with ``--views``), scaled down to ``--size``."""
    from ..core.cameras import load_cameras, orbit_cameras

    w, h = parse_size(args.size)
    if args.views is not None and args.views < 1:
        raise TrainingError(f"--views must be at least 1, got {args.views}")
    if not args.cameras:
        if args.images:
            raise TrainingError("--images needs --cameras (which camera took which image)")
        return orbit_cameras(scene, args.views or 32, w, h)
    cams = load_cameras(args.cameras, args.images, warn=warn)
    if not cams:
        raise TrainingError(f"no cameras in {args.cameras}")
    if args.views is not None and args.views < len(cams):
        step = len(cams) / args.views
        cams = [cams[int(i * step)] for i in range(args.views)]
    longest = max(w, h)
    out = []
    for c in cams:
        s = min(1.0, longest / max(c.width, c.height))
        out.append(c.scaled(max(1, round(c.width * s)), max(1, round(c.height * s))) if s < 1 else c)
    return out


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The mask-source options shared by ``masks`` and ``train``."""
    parser.add_argument("--sam-checkpoint", help="segment-anything checkpoint (vit_h / vit_l / vit_b .pth)")
    parser.add_argument("--sam-model-type", default=None, help="vit_h, vit_l or vit_b (default: detected)")
    parser.add_argument("--sam-points", type=int, default=None, help="SAM points per side (default SAM's 32)")
    parser.add_argument("--masks", help="folder of precomputed masks, one per view (see engine.masks.folder)")


def make_source(args: argparse.Namespace) -> Any:
    """The mask source the options ask for (folder, SAM or the built-in one), made by the same
    registry the engine server uses (:mod:`engine.masks.registry`)."""
    from ..core.errors import MaskError
    from ..masks import registry

    if args.masks and args.sam_checkpoint:
        raise MaskError("give either --masks or --sam-checkpoint, not both")
    device = None if args.device == "auto" else args.device
    if args.masks:
        return registry.make_source("folder", folder=args.masks)
    if args.sam_checkpoint:
        options = {} if args.sam_points is None else {"points_per_side": args.sam_points}
        return registry.make_source("sam", checkpoint=args.sam_checkpoint, model_type=args.sam_model_type,
                                    device=device, options=options)
    return registry.make_source("builtin")
