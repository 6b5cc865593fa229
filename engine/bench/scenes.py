"""``python -m engine.bench scenes``: what a click selects on real scenes, scored against a
per-Gaussian ground truth defined from the scene's geometry.

For each scene (``--scene fox guitar``; ``synth`` is a small procedural scene for tests): train
features with the product's defaults (the same views, built-in masks and settings as
``python -m engine train SCENE.ply``; ``--iterations/--pixels/--views/--size`` for a quick run) or
load them (``--features``), then click every named target in four views around it (front,
right, back, left at 20 degrees elevation) and report per click: the level, how many Gaussians
were selected, and the opacity-weighted precision and recall against the target's ground truth,
plus the share of each "must not select" set (the ground, the stand) that the click took.

Click positions are chosen from the ground truth, never typed in: per view the target's
Gaussians are rendered as values, and the click goes to the pixel farthest from the boundary of
the pixels they own (>= 70% of the pixel's blending weight; the quality benchmark's rule,
:func:`engine.bench.evaluation.metrics.interior_point`). A view where that pixel is less than
3 pixels from the boundary does not show the target: no click there.

Scores (weights = activated opacities, so faint floaters count little): precision
``w(sel & truth) / w(sel - ignored)``, recall ``w(sel & truth) / w(truth)``, IoU
``w(sel & truth) / w((sel | truth) - ignored)``; ``ignored`` is a thin band where two objects
touch and neither answer is wrong (below). A click *passes* when precision >= 0.8, recall >= 0.7
and it takes at most 5% of every must-not set.

Ground truth (derived by inspecting the files: height histograms, per-slab footprints, renders
of candidate rules; heights in the file's units):

- **fox** (``../shared/data/fox_cc0.ply``, up +z). The stone base is a tapered box whose
  footprint is a rotated rectangle: its centre and angle are fitted to the Gaussians of the walls
  (0.3 <= z < 1.2; the angle minimising the area of the 97th-percentile extents) and its
  half-extents are linear in z (fitted to the 97th percentiles of 0.1-high slabs) plus a 0.03
  margin. *Ground* (gravel): z < 1.25 outside that footprint. *Contact* (ignored): inside it and
  z < 0.17 (the base's bottom edge meets the gravel at z 0.10-0.17). *Stone base*: inside,
  0.17 <= z < 1.25, and its top face (1.25 <= z < 1.3 outside the block's footprint). *Pedestal
  block* (the small block the statue sits on): 1.25 <= z < 1.6 inside the block's footprint (its
  97th-percentile extents over 1.3 <= z < 1.55 in the same rotated frame, plus 0.02; the footprint
  shrinks from the base's at z 1.275 and again, to the statue's plinth, at z 1.6). *Statue*:
  inside, z >= 1.6. *Bib*: statue Gaussians above z 1.75 whose
  base colour is red: r > 0.2 and r > 1.6 max(g, b) (the bib's colours have r / max(g, b) of
  1.7-4.4, the stone's 1.0-1.2; tests/test_masks_builtin.py's stricter r > 0.45, g, b < 0.3
  leaves out the bib's lighter, pinker half).
  Everything else (floaters outside the footprint above z 1.25) is *rest*. Front: from the
  statue's centre towards the bib's.
- **guitar** (``../shared/data/guitar.compressed.ply``, up -y by
  :func:`engine.core.cameras.estimate_up`, height h = position . up, 0 to 4.1). A plane is fitted
  (PCA) to the opaque (o > 0.5) Gaussians with 0.4 < h < 3.6: the guitar's body and neck; d is the
  signed distance to it, negative on the stand's side. Across the body (0.5 < h < 1.7) d has a
  gap at -0.27..-0.20: the guitar's back is at d >= -0.2, the stand's support column at
  -0.54..-0.27 (dark, unsaturated). *Stand*: h < 0.3 (its feet and the cradle under the body) or
  h < 1.9 and d < -0.24. *Guitar*: everything else. The coarse click aims at the body (guitar
  Gaussians with h < 1.9) and is scored against the whole guitar. Front: the plane's normal
  (away from the stand).
- **synth** (procedural, :func:`engine.bench.evaluation.synth.make_scene`): exact ids. The
  coarse target is the object with the most Gaussians, the fine one its largest part other than
  its body (its largest part); must-not: the table.

Writes to ``--out`` (default ``out/scenes``): ``<scene>_<target>.png`` (per target a strip of
the four views: top row the selection of the click made in that view, tinted orange, the click
a cyan cross; bottom row the ground truth tinted green), ``<scene>_clicks.png`` (the
selection rows of all targets, one under the other), ``scenes.json`` (every click and the
run's settings) and the trained features ``<scene>.clickgs.npz`` (reuse with ``--features``).
Prints ``label: value`` lines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import SHARED_DATA
from ..cli.options import parse_size
from ..core.atomic import write_png, write_text
from ..core.errors import EngineError

PASS_PRECISION = 0.8
PASS_RECALL = 0.7
PASS_LEAK = 0.05
OWN_SHARE = 0.7  # a pixel shows the target when the target has this share of its blending weight
MIN_INTERIOR_PX = 3.0  # the click pixel must lie at least this far inside the target's pixels
VIEW_NAMES = ("front", "right", "back", "left")
ELEVATION_DEG = 20.0
SELECT_TINT = np.array([1.0, 0.55, 0.0], np.float32)
TRUTH_TINT = np.array([0.15, 0.9, 0.3], np.float32)


@dataclass
class Target:
    """One thing to click. Boolean masks are [N] over the scene's Gaussians.

    truth: what the click should select; aim: whose pixels may be clicked (a subset of truth,
    e.g. the guitar's body); avoid: named sets the click must not take (the ground); ignored:
    Gaussians counted neither right nor wrong (where two objects touch)."""

    name: str
    level: str
    truth: np.ndarray
    aim: np.ndarray
    avoid: dict[str, np.ndarray] = field(default_factory=dict)
    ignored: np.ndarray | None = None


@dataclass
class SceneTruth:
    """A scene's ground truth: the targets, world up [3] and the horizontal front direction [3]
    the "front" view looks from, and each class's Gaussian count (for the report)."""

    targets: list[Target]
    up: np.ndarray
    front: np.ndarray
    classes: dict[str, int]


# ----------------------------------------------------------------------------- ground truth
def _horizontal(v: np.ndarray, up: np.ndarray) -> np.ndarray:
    h = np.asarray(v, np.float64) - float(np.dot(v, up)) * up
    n = float(np.linalg.norm(h))
    if n < 1e-9:
        raise EngineError("scenes: the front direction is vertical")
    return h / n


def fox_truth(scene: Any) -> SceneTruth:
    """The fox's ground truth (module doc): statue, bib, pedestal block, stone base, ground."""
    m = np.asarray(scene.means, np.float64)
    z = m[:, 2]
    col = scene.base_colors()
    walls = (z >= 0.3) & (z < 1.2)
    if walls.sum() < 100:
        raise EngineError("scenes: this is not the fox scene (no stone-base walls at 0.3 <= z < 1.2)")
    centre = m[walls, :2].mean(axis=0)
    best = None
    for ang in np.radians(np.arange(0.0, 90.0, 0.5)):
        rot = np.array([[math.cos(ang), math.sin(ang)], [-math.sin(ang), math.cos(ang)]])
        ext = np.percentile(np.abs((m[walls, :2] - centre) @ rot.T), 97, axis=0)
        if best is None or ext.prod() < best[0]:
            best = (float(ext.prod()), rot)
    rot = best[1]
    uv = np.abs((m[:, :2] - centre) @ rot.T)
    slabs = np.arange(0.3, 1.2, 0.1)
    ext = np.array([np.percentile(uv[(z >= s) & (z < s + 0.1)], 97, axis=0) for s in slabs])
    fit_u = np.polyfit(slabs + 0.05, ext[:, 0], 1)
    fit_v = np.polyfit(slabs + 0.05, ext[:, 1], 1)
    inside = (uv[:, 0] <= np.polyval(fit_u, z) + 0.03) & (uv[:, 1] <= np.polyval(fit_v, z) + 0.03)
    blk = (z >= 1.3) & (z < 1.55)
    on_block = np.all(uv <= np.percentile(uv[blk], 97, axis=0) + 0.02, axis=1)
    ground = (z < 1.25) & ~inside
    contact = inside & (z < 0.17)
    base = inside & (((z >= 0.17) & (z < 1.25)) | ((z >= 1.25) & (z < 1.3) & ~on_block))
    block = inside & on_block & (z >= 1.25) & (z < 1.6)
    statue = inside & (z >= 1.6)
    bib = statue & (z > 1.75) & (col[:, 0] > 0.2) & (col[:, 0] > 1.6 * np.maximum(col[:, 1], col[:, 2]))
    if bib.sum() < 20:
        raise EngineError("scenes: this is not the fox scene (no red bib on the statue)")
    up = np.array([0.0, 0.0, 1.0])
    front = _horizontal(m[bib].mean(axis=0) - m[statue].mean(axis=0), up)
    targets = [
        Target("statue", "coarse", statue, statue, {"ground": ground, "stone base": base}, contact),
        Target("pedestal block", "coarse", block, block, {"ground": ground, "statue": statue}, contact),
        Target("stone base", "coarse", base, base, {"ground": ground, "statue": statue}, contact),
        Target("bib", "fine", bib, bib, {"statue without bib": statue & ~bib}, contact),
    ]
    classes = {"statue": int(statue.sum()), "bib": int(bib.sum()), "pedestal block": int(block.sum()),
               "stone base": int(base.sum()), "ground": int(ground.sum()), "contact": int(contact.sum()),
               "rest": int((~(ground | contact | base | block | statue)).sum())}
    return SceneTruth(targets, up, front, classes)


def guitar_truth(scene: Any) -> SceneTruth:
    """The guitar's ground truth (module doc): guitar vs its stand."""
    from ..core.cameras import estimate_up

    up = estimate_up(scene)
    m = np.asarray(scene.means, np.float64)
    h = m @ up
    band = (h > 0.4) & (h < 3.6) & (scene.activated_opacities() > 0.5)
    if band.sum() < 100:
        raise EngineError("scenes: this is not the guitar scene (nothing at heights 0.4-3.6)")
    mu = m[band].mean(axis=0)
    normal = np.linalg.svd(m[band] - mu, full_matrices=False)[2][2]
    d = (m - mu) @ normal
    body = (h > 0.5) & (h < 1.7)
    if -np.percentile(d[body], 2) < np.percentile(d[body], 98):  # the stand sticks out behind
        normal, d = -normal, -d
    stand = (h < 0.3) | ((h < 1.9) & (d < -0.24))
    guitar = ~stand
    targets = [Target("guitar body", "coarse", guitar, guitar & (h < 1.9), {"stand": stand})]
    return SceneTruth(targets, up, _horizontal(normal, up), {"guitar": int(guitar.sum()), "stand": int(stand.sum())})


def synth_truth(synth: Any) -> SceneTruth:
    """Ground truth of a procedural scene (:class:`engine.bench.evaluation.synth.SynthScene`)."""
    oid, pid = synth.object_id, synth.part_id
    objects, counts = np.unique(oid[oid > 0], return_counts=True)
    obj = int(objects[np.argmax(counts)])
    parts, pcounts = np.unique(pid[oid == obj], return_counts=True)
    order = np.argsort(-pcounts)
    part = int(parts[order[1]]) if len(parts) > 1 else int(parts[order[0]])
    table = oid == 0
    truth_o, truth_p = oid == obj, pid == part
    targets = [Target(synth.object_names[obj], "coarse", truth_o, truth_o, {"table": table}),
               Target(synth.part_names[part], "fine", truth_p, truth_p, {"table": table})]
    up = np.array([0.0, -1.0, 0.0])
    return SceneTruth(targets, up, np.array([1.0, 0.0, 0.0]),
                      {"object": int(truth_o.sum()), "part": int(truth_p.sum()), "table": int(table.sum())})


def _load_scene(name: str, ply: str | None) -> tuple[Any, SceneTruth, str]:
    """(scene, truth, path or description) for a scene name."""
    from ..core.formats.ply import read_ply

    if name == "synth":
        from .evaluation.synth import make_scene

        synth = make_scene(0, n_gaussians=4000, n_objects=2, n_views=4, n_test_views=1, width=64, height=64)
        return synth.scene, synth_truth(synth), "procedural scene (seed 0, 2 objects)"
    files = {"fox": "fox_cc0.ply", "guitar": "guitar.compressed.ply"}
    path = Path(ply) if ply else SHARED_DATA / files[name]
    if not path.is_file():
        raise EngineError(f"scenes: {path} not found (give the scene's file with --ply)")
    scene = read_ply(str(path))
    truth = fox_truth(scene) if name == "fox" else guitar_truth(scene)
    return scene, truth, f"../shared/data/{path.name}" if not ply else str(ply)


# ----------------------------------------------------------------------------- views and clicks
def click_cameras(scene: Any, up: np.ndarray, front: np.ndarray, width: int, height: int) -> list:
    """Four orbit cameras (:func:`engine.core.cameras.orbit_cameras` framing) looking from the
    front, right, back and left of the scene at :data:`ELEVATION_DEG`."""
    from ..core.cameras import orbit_cameras

    ring = orbit_cameras(scene, 72, width, height, up=up, elevations_deg=(ELEVATION_DEG,), name="ring")
    lo, hi = scene.robust_bounds()
    centre = (lo + hi) / 2.0
    dirs = np.array([_horizontal(c.center - centre, up) for c in ring])
    right = np.cross(front, up)  # looking at the front, the scene's right is on the viewer's left
    out = []
    for name, want in zip(VIEW_NAMES, (front, -right, -front, right)):
        cam = ring[int(np.argmax(dirs @ want))]
        cam.name = name
        out.append(cam)
    return out


def click_pixel(share: np.ndarray, alpha: np.ndarray) -> tuple[float, float] | None:
    """The click position (u, v) (pixel centre) of a target in one view: the pixel farthest from
    the boundary of the pixels the target owns (of equally far ones, the most central) (``share`` [H, W]: the target's blended weight,
    ``alpha`` [H, W]); None when it is nearer than :data:`MIN_INTERIOR_PX` to the boundary."""
    from scipy import ndimage

    own = (alpha > 0.5) & (share >= OWN_SHARE * np.maximum(alpha, 1e-6))
    if not own.any():
        return None
    dist = ndimage.distance_transform_edt(np.pad(own, 1))[1:-1, 1:-1]
    if dist.max() < MIN_INTERIOR_PX:
        return None
    # ties (a band of equally deep pixels): the one nearest the band's centroid
    vs, us = np.nonzero(dist >= dist.max() - 0.5)
    i = int(np.argmin((us - us.mean()) ** 2 + (vs - vs.mean()) ** 2))
    return float(us[i]) + 0.5, float(vs[i]) + 0.5


def scores(selected: np.ndarray, target: Target, weights: np.ndarray) -> dict[str, Any]:
    """Opacity-weighted precision, recall, IoU and must-not shares of a selection (module doc)."""
    sel = np.zeros(len(weights), bool)
    sel[np.asarray(selected, np.int64)] = True
    ign = target.ignored if target.ignored is not None else np.zeros(len(weights), bool)
    w = np.asarray(weights, np.float64)
    hit = float(w[sel & target.truth].sum())
    counted = float(w[sel & ~ign].sum())
    union = float(w[(sel | target.truth) & ~ign].sum())
    out: dict[str, Any] = {
        "precision": hit / counted if counted > 0 else float("nan"),
        "recall": hit / max(float(w[target.truth].sum()), 1e-12),
        "iou": hit / union if union > 0 else float("nan"),
        "avoid": {k: float(w[sel & a].sum()) / max(float(w[a].sum()), 1e-12) for k, a in target.avoid.items()},
    }
    out["pass"] = bool(out["precision"] >= PASS_PRECISION and out["recall"] >= PASS_RECALL
                       and all(v <= PASS_LEAK for v in out["avoid"].values()))
    return out


# ----------------------------------------------------------------------------- pictures
def _tinted(rgb: np.ndarray, share: np.ndarray, alpha: np.ndarray, tint: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3]: the view dimmed, with the pixels' share of a Gaussian set tinted."""
    s = np.clip(share / np.maximum(alpha, 1e-6), 0.0, 1.0)[..., None] * (alpha[..., None] > 0.05)
    out = rgb * (0.45 + 0.2 * s) + 0.55 * s * tint * np.maximum(alpha[..., None], 0.0)
    return (np.clip(out, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _mark(img: np.ndarray, u: float, v: float) -> None:
    """Draw a cyan cross with a black outline centred on (u, v), in place."""
    h, w = img.shape[:2]
    r = max(4, min(h, w) // 40)
    cu, cv = int(u), int(v)
    for colour, half in (((0, 0, 0), 1), ((0, 255, 255), 0)):
        img[max(cv - half, 0):cv + half + 1, max(cu - r, 0):cu + r + 1] = colour
        img[max(cv - r, 0):cv + r + 1, max(cu - half, 0):cu + half + 1] = colour


def _label(img: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    ImageDraw.Draw(pil).text((4, 3), text, fill=(255, 255, 255))
    return np.asarray(pil)


# ----------------------------------------------------------------------------- training
def train_features(scene: Any, args: argparse.Namespace, log: Callable[[str], None]) -> tuple[Any, float]:
    """Train with the product's defaults (``python -m engine train``'s views, built-in masks and
    settings; ``args.iterations/pixels/views/size`` override). Returns (features, seconds)."""
    from ..cli.train import train_settings
    from ..core.cameras import orbit_cameras
    from ..masks import registry
    from ..train import train, views_from_scene

    settings = train_settings(argparse.Namespace(iterations=args.iterations, pixels=args.pixels, gfl_start=None,
                                                 device=args.device, seed=args.seed))
    w, h = parse_size(args.size)
    t0 = time.perf_counter()
    cams = orbit_cameras(scene, args.views, w, h)
    views = views_from_scene(scene, cams, registry.make_source("builtin"), device=args.device,
                             contributors_k=settings.contributors_k)
    log(f"views: {len(views)} at {w}x{h}, built-in masks, {time.perf_counter() - t0:.1f} s")
    last = [0.0]

    def progress(p: Any) -> None:
        if p.phase == "train" and time.monotonic() - last[0] > 30:
            last[0] = time.monotonic()
            log(f"training {p.iteration}/{p.total}")

    trained = train(scene, views, settings, progress=progress)
    return trained, time.perf_counter() - t0


# ----------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.bench scenes", description=__doc__.splitlines()[0])
    p.add_argument("--scene", nargs="+", default=["fox", "guitar"], choices=["fox", "guitar", "synth"],
                   help="scenes to run (fox and guitar read ../shared/data; synth is procedural)")
    p.add_argument("--ply", help="the scene's file when it is not in ../shared/data (one scene only)")
    p.add_argument("--features", help="trained features of the scene instead of training (one scene only)")
    p.add_argument("--iterations", type=int, default=None, help="training iterations (default: the product's)")
    p.add_argument("--pixels", type=int, default=None, help="pixels per iteration (default: the product's)")
    p.add_argument("--views", type=int, default=32, help="training orbit views (default 32, the product's)")
    p.add_argument("--size", default="256x256", help="training view size (default 256x256, the product's)")
    p.add_argument("--click-size", default="256x256", help="size of the click views and pictures")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/scenes", help="output folder (PNGs, scenes.json, features)")
    return p


def _code_version() -> str:
    try:
        here = Path(__file__).resolve().parents[2]
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not top or Path(top).resolve() != here:  # an exported copy inside another checkout
            return "unknown (not a git checkout)"
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "engine"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "unknown") + (" (engine/ modified)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_scene(name: str, args: argparse.Namespace, out: Path, log: Callable[[str], None]) -> dict:
    """Train (or load), click every target in every view, write the pictures; the scene's report."""
    import torch

    from ..core.click import ClickIndex, click_query
    from ..core.features import TrainedFeatures
    from ..render.gaussians import Gaussians
    from ..render.renderer import render

    scene, truth, where = _load_scene(name, args.ply)
    log(f"{name}: {where}, {scene.num_gaussians:,} Gaussians; classes " +
        ", ".join(f"{k} {v:,}" for k, v in truth.classes.items()))
    rep: dict[str, Any] = {"scene": where, "gaussians": scene.num_gaussians, "classes": truth.classes}
    if args.features:
        trained = TrainedFeatures.load(args.features, scene)
        rep["features"] = str(args.features)
        rep["train_s"] = None
    else:
        trained, secs = train_features(scene, args, log)
        rep["train_s"] = round(secs, 1)
        trained.save(str(out / f"{name}.clickgs.npz"))
    rep["train_settings"] = {k: trained.settings.get(k) for k in ("iterations", "pixels_per_iter", "gfl_start")
                             if k in trained.settings}
    rep["clusters"] = {"coarse": len(trained.coarse_centers), "fine": len(trained.fine_centers)}
    w, h = parse_size(args.click_size)
    cams = click_cameras(scene, truth.up, truth.front, w, h)
    g = Gaussians.from_scene(scene, "cpu")
    index = ClickIndex.build(scene)
    weights = scene.activated_opacities()
    rgbs, alphas = [], []
    for cam in cams:
        o = render(g, cam)
        rgbs.append(np.clip(o.values.numpy(), 0.0, 1.0))
        alphas.append(o.alpha.numpy())
    rep["targets"] = {}
    overview: list[np.ndarray] = []  # every target's selection row, one under the other
    for target in truth.targets:
        values = torch.from_numpy(np.stack([target.aim, target.truth], 1).astype(np.float32))
        rows_sel, rows_truth, clicks = [], [], []
        for cam, rgb, alpha in zip(cams, rgbs, alphas):
            shares = render(g, cam, values=values).values.numpy()
            px = click_pixel(shares[..., 0], alpha)
            truth_img = _tinted(rgb, shares[..., 1], alpha, TRUTH_TINT)
            if px is None:
                clicks.append({"view": cam.name, "visible": False})
                rows_sel.append(_label((rgb * 0.45 * 255).astype(np.uint8), f"{target.name}, {cam.name}: not visible"))
                rows_truth.append(_label(truth_img, "ground truth"))
                continue
            t0 = time.perf_counter()
            res = click_query(index, trained, cam, px[0], px[1], level=target.level)
            ms = (time.perf_counter() - t0) * 1000.0
            sc = scores(res.selected, target, weights)
            clicks.append({"view": cam.name, "visible": True, "pixel": [round(px[0], 1), round(px[1], 1)],
                           "selected": int(res.selected.size), "clusters": res.clusters, "reason": res.reason,
                           "click_ms": round(ms, 1), **sc})
            sel_vals = np.zeros((scene.num_gaussians, 1), np.float32)
            sel_vals[res.selected] = 1.0
            share = render(g, cam, values=torch.from_numpy(sel_vals)).values.numpy()[..., 0]
            img = _tinted(rgb, share, alpha, SELECT_TINT)
            _mark(img, *px)
            label = f"{target.name} ({target.level}), {cam.name}: " + (
                f"P {sc['precision']:.2f} R {sc['recall']:.2f}" if res.selected.size else "nothing selected")
            rows_sel.append(_label(img, label))
            rows_truth.append(_label(truth_img, "ground truth"))
        picture = out / f"{name}_{re.sub(r'[^A-Za-z0-9]+', '_', target.name).strip('_')}.png"
        write_png(picture, np.concatenate([np.concatenate(rows_sel, 1), np.concatenate(rows_truth, 1)], 0))
        done = [c for c in clicks if c.get("visible")]
        summary = {
            "level": target.level, "truth_gaussians": int(target.truth.sum()), "picture": str(picture),
            "clicks": clicks, "views_clicked": len(done), "passed": sum(bool(c["pass"]) for c in done),
        }
        for key in ("precision", "recall", "iou"):
            vals = [c[key] for c in done if not np.isnan(c[key])]
            summary[f"mean_{key}"] = float(np.mean(vals)) if vals else float("nan")
        for k in target.avoid:
            summary[f"max_{k}"] = max((c["avoid"][k] for c in done), default=float("nan"))
        rep["targets"][target.name] = summary
        overview.append(np.concatenate(rows_sel, 1))
    if len(overview) > 1:
        write_png(out / f"{name}_clicks.png", np.concatenate(overview, 0))
    return rep


def _print(name: str, rep: dict) -> None:
    print(f"{name} scene: {rep['scene']} ({rep['gaussians']:,} Gaussians)")
    print(f"{name} train: " + (f"{rep['train_s']} s" if rep["train_s"] is not None else f"loaded {rep['features']}"))
    print(f"{name} clusters: {rep['clusters']['coarse']} coarse / {rep['clusters']['fine']} fine")
    for tname, t in rep["targets"].items():
        for c in t["clicks"]:
            label = f"{name}/{tname}/{c['view']}"
            if not c["visible"]:
                print(f"{label}: not visible")
                continue
            avoid = ", ".join(f"{k} {v:.3f}" for k, v in c["avoid"].items())
            print(f"{label}: {t['level']}, selected {c['selected']:,}, precision {c['precision']:.3f}, "
                  f"recall {c['recall']:.3f}, iou {c['iou']:.3f}, took {avoid}, "
                  f"{'pass' if c['pass'] else 'FAIL'}" + (f" ({c['reason']})" if c["reason"] else ""))
        print(f"{name}/{tname}: {t['passed']}/{t['views_clicked']} clicks pass, mean precision "
              f"{t['mean_precision']:.3f}, recall {t['mean_recall']:.3f}, iou {t['mean_iou']:.3f}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if (args.features or args.ply) and len(args.scene) != 1:
        print("error: --features and --ply need exactly one --scene", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[scenes] {msg}", file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "command": "python -m engine.bench scenes " + " ".join(argv), "code": _code_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "scenes": {},
    }
    t0 = time.perf_counter()
    try:
        for name in args.scene:
            rep = run_scene(name, args, out, log)
            report["scenes"][name] = rep
            _print(name, rep)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report["total_s"] = round(time.perf_counter() - t0, 1)
    print(f"code: {report['code']}")
    print(f"total: {report['total_s']} s")
    write_text(out / "scenes.json", json.dumps(report, indent=2, default=float))
    return 0
