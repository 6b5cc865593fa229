"""``python -m engine train SCENE.ply`` — train Click-Gaussian features and write the features file.

Views: the capture's cameras (``--cameras``: COLMAP, cameras.json, transforms.json or .npz; with
their images from ``--images`` or the capture) or, without cameras, ``--views`` virtual orbit
views rendered from the splats. Masks: ``--masks DIR`` (computed elsewhere), SAM
(``--sam-checkpoint``), or the built-in source (no download; lower quality than SAM). Masks are
cached per view in ``--mask-cache`` (default ``<out>.masks/``).

Ctrl-C cancels cleanly: a checkpoint (``<out>.ckpt``) is written and ``--resume`` continues
from it. A second Ctrl-C aborts at once.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import threading
import time
from typing import Any

from ..core.errors import Cancelled, TrainingError
from ..core.schedule import PRESETS, preset_fields
from .options import add_source_arguments, add_view_arguments, make_source, select_cameras


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scene", help="3DGS .ply scene")
    add_view_arguments(parser, "256x256", "")
    add_source_arguments(parser)
    parser.add_argument("--iterations", type=int, default=None, help="training iterations (default 3000, the paper's)")
    parser.add_argument("--pixels", type=int, default=None, help="sampled pixels per iteration (default 10000)")
    product, paper = PRESETS["product"], PRESETS["paper"]
    latest = "" if product.gfl_start_latest is None else f" but no later than iteration {product.gfl_start_latest}"
    parser.add_argument("--preset", choices=tuple(PRESETS), default="product",
                        help=f"training constants: product (default: L_neg weight {product.w_neg:g}, GFL from 2/3 of "
                             f"the run{latest}) or paper (L_neg weight {paper.w_neg:g}, GFL from 2/3 of the run); "
                             "see docs/quality.md")
    parser.add_argument("--gfl-start", type=int, default=None,
                        help="first iteration of global feature-guided learning (default: the preset's fraction "
                             "of the run)")
    parser.add_argument("--out", help="features file (default: <scene>.clickgs.npz beside the scene)")
    parser.add_argument("--mask-cache", help="mask cache folder (default <out>.masks)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint <out>.ckpt")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--seed", type=int, default=0)


def train_settings(args: argparse.Namespace):
    """TrainSettings from the command line: the ``--preset``'s constants (engine.core.schedule),
    GFL from the preset's fraction of any run (a 400-iteration run starts it within the run, not
    never) unless --gfl-start says otherwise. Raises TrainingError (one line) for values
    TrainSettings refuses."""
    from ..train import TrainSettings

    iterations = args.iterations if args.iterations is not None else TrainSettings.iterations
    overrides: dict[str, Any] = {"device": args.device, "seed": args.seed, "iterations": iterations,
                                 **preset_fields(getattr(args, "preset", "product"), iterations)}
    if args.gfl_start is not None:
        overrides["gfl_start"] = args.gfl_start
    if args.pixels is not None:
        overrides["pixels_per_iter"] = args.pixels
    return TrainSettings(**overrides)


def fmt_time(s: float | None) -> str:
    if s is None:
        return "--:--"
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ProgressBar:
    """A self-overwriting terminal line: bar, iteration, losses, elapsed, ETA (prints at most
    every 0.25 s, and every phase change)."""

    def __init__(self, stream: Any = None, width: int = 24) -> None:
        # Resolved at call time: sys.stderr may have been replaced since import (pytest, Blender).
        stream = sys.stderr if stream is None else stream
        self.stream, self.width = stream, width
        self._last = 0.0
        self._phase = ""
        self._tty = hasattr(stream, "isatty") and stream.isatty()

    def message(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self._tty else "") + text + "\n")
        self.stream.flush()

    def __call__(self, p: Any) -> None:
        if p.phase == "prepare":
            caching = p.message.startswith("caching view")
            if not caching:  # a warning about a view
                self.message(f"warning: {p.message}")
            elif time.monotonic() - self._last > 0.25:
                self._line(f"preparing: {p.message}")
                self._last = time.monotonic()
            return
        now = time.monotonic()
        final = p.iteration == p.total or p.phase != self._phase
        if now - self._last < 0.25 and not final:
            return
        self._last, self._phase = now, p.phase
        frac = p.iteration / max(p.total, 1)
        fill = int(round(frac * self.width))
        bar = "#" * fill + "-" * (self.width - fill)
        losses = " ".join(f"{k} {v:+.3f}" for k, v in p.losses.items())
        extra = f" [{p.message}]" if p.message else ""
        self._line(f"[{bar}] {p.iteration}/{p.total} {losses}  {fmt_time(p.elapsed_s)} elapsed, ETA {fmt_time(p.eta_s)}{extra}",
                   final=p.phase in ("clusters", "done"))

    def _line(self, text: str, final: bool = False) -> None:
        if self._tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final or time.monotonic() - getattr(self, "_printed", 0.0) > 10:
            self.stream.write(text + "\n")
            self._printed = time.monotonic()
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from ..core.features import check_features_target, default_features_path
    from ..core.formats.ply import read_ply
    from ..train import train, views_from_scene

    t0 = time.perf_counter()
    out = os.path.abspath(args.out or default_features_path(args.scene))
    folder = os.path.dirname(out)
    # before any work: --out must not name the scene itself or any other file that is not a
    # features file (save() checks again, but only after minutes of training)
    check_features_target(out)
    if not os.access(folder, os.W_OK):
        raise TrainingError(f"cannot write into {folder}; choose another place with --out")
    ckpt = out + ".ckpt"
    if args.resume and not os.path.isfile(ckpt):
        raise TrainingError(f"nothing to resume: checkpoint {ckpt} does not exist")
    settings = train_settings(args)

    bar = ProgressBar()
    scene = read_ply(args.scene)
    bar.message(f"scene: {args.scene} ({scene.num_gaussians:,} Gaussians)")
    cameras = select_cameras(args, scene, bar.message)
    source = make_source(args)
    bar.message(f"views: {len(cameras)} at {cameras[0].width}x{cameras[0].height}; masks: {getattr(source, 'quality', source)}")

    cancel = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        bar.message("cancelling (writing a checkpoint; Ctrl-C again to abort now)...")

    old = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    try:
        def view_progress(stage: str, done: int, total: int) -> None:
            bar._line(f"preparing: {stage} {done}/{total}", final=done == total)

        mask_cache = args.mask_cache or out + ".masks"
        views = views_from_scene(scene, cameras, source, cache_dir=mask_cache, device=args.device,
                                 progress=view_progress, cancel=cancel, contributors_k=settings.contributors_k)
        t_views = time.perf_counter() - t0
        try:
            trained = train(scene, views, settings, progress=bar, cancel=cancel, checkpoint_path=ckpt, resume=args.resume)
        except Cancelled as exc:
            bar.message(f"cancelled: {exc}")
            return 130
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
    trained.save(out)
    wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    import torch

    gpu = (f", GPU peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
           if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0 else "")
    for w in trained.settings.get("run", {}).get("warnings", []):
        bar.message(f"warning: {w}")
    bar.message(
        f"wrote {out}: {len(trained.coarse_centers)} coarse / {len(trained.fine_centers)} fine clusters; "
        f"views+masks {t_views:.1f} s, total {wall:.1f} s, peak memory {peak_mib:.0f} MiB{gpu}"
    )
    return 0
