"""``python -m engine.bench click [--scene PLY] [--sizes 50000,1000000] [--clicks 50]``: click
latency (blended feature + cluster match + selection) at 50k and 1,000,000 Gaussians.

Larger sizes tile copies of the scene side by side on a grid (each copy a new object, as in a
big capture), and clicks land on pixels of the central copy that the splats cover, from a view
that frames it. Features are random (the latency does not depend on their values); labels are
the argmax over 16 coarse / 64 fine clusters. Prints ``label: value unit`` lines."""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..core.cameras import Camera
from ..core.click import ClickIndex, click_query
from ..core.features import LEVELS, TrainedFeatures, normalize_rows, scene_hash
from ..core.scene import GaussianScene


def tiled(scene: GaussianScene, n: int) -> GaussianScene:
    """``n`` Gaussians from copies of ``scene`` on a square grid (copy 0 in the middle)."""
    copies = int(np.ceil(n / scene.num_gaussians))
    lo, hi = scene.robust_bounds()
    step = 1.3 * float(np.max(hi - lo))
    side = int(np.ceil(np.sqrt(copies)))
    cells = sorted(((i - side // 2, j - side // 2) for i in range(side) for j in range(side)), key=lambda c: abs(c[0]) + abs(c[1]))
    idx = np.concatenate([np.arange(scene.num_gaussians)] * copies)[:n]
    out = scene.subset(idx)
    offs = np.array([[c[0] * step, 0.0, c[1] * step] for c in cells[:copies]], np.float32)
    out.means = out.means + np.repeat(offs, scene.num_gaussians, axis=0)[:n]
    return out


def framing_camera(scene: GaussianScene, width: int = 800, height: int = 600) -> Camera:
    """A camera 1.6 scene-diagonals away from the robust centre, slightly above (y-down world)."""
    lo, hi = scene.robust_bounds()
    c = (lo + hi) / 2
    eye = c + float(np.linalg.norm(hi - lo)) * np.array([0.9, -0.5, 1.2])
    fwd = (c - eye) / np.linalg.norm(c - eye)
    down = np.array([0.0, 1.0, 0.0]) - fwd * fwd[1]
    down /= np.linalg.norm(down)
    right = np.cross(down, fwd)
    R = np.stack([right, down, fwd])
    vm = np.eye(4)
    vm[:3, :3], vm[:3, 3] = R, -R @ eye
    f = 0.8 * width
    return Camera(vm, np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]]), width, height, "bench")


def random_features(scene: GaussianScene, seed: int = 0) -> TrainedFeatures:
    rng = np.random.default_rng(seed)
    n = scene.num_gaussians
    f = rng.normal(size=(n, 24)).astype(np.float16)
    cc, cf = normalize_rows(rng.normal(size=(16, 12))), normalize_rows(rng.normal(size=(64, 24)))
    lc = np.argmax(normalize_rows(f[:, :12]) @ cc.T, 1).astype(np.int32)
    lf = np.argmax(normalize_rows(f) @ cf.T, 1).astype(np.int32)
    return TrainedFeatures(f, cc, cf, lc, lf, {"label_min_cos_coarse": -1.0, "label_min_cos_fine": -1.0}, scene_hash(scene))


def main(argv: list[str] | None = None) -> int:
    from ..core.formats.ply import read_ply
    from . import SHARED_DATA

    default = SHARED_DATA / "fox_cc0.ply"
    ap = argparse.ArgumentParser(prog="python -m engine.bench click", description=__doc__.splitlines()[0])
    ap.add_argument("--scene", default=str(default))
    ap.add_argument("--sizes", default="50000,1000000")
    ap.add_argument("--clicks", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    base = read_ply(args.scene)
    cam = framing_camera(base)
    # foreground pixels of the central copy: where the click ray meets its Gaussians
    probe = ClickIndex.build(base)
    rng = np.random.default_rng(args.seed)
    pts: list[tuple[float, float]] = []
    tries = 0
    while len(pts) < args.clicks and tries < 50 * args.clicks:
        tries += 1
        u, v = rng.uniform(0.25, 0.75) * cam.width, rng.uniform(0.25, 0.75) * cam.height
        _, w, _ = probe.pixel_weights(cam, u, v)
        if w.sum() > 0.5:
            pts.append((u, v))
    print(f"clicks: {len(pts)} on covered pixels of a {cam.width}x{cam.height} view")
    for n in [int(s) for s in args.sizes.split(",") if s]:
        scene = tiled(base, n)
        t = time.perf_counter()
        index = ClickIndex.build(scene)
        build = time.perf_counter() - t
        tf = random_features(scene, args.seed)
        for lvl in LEVELS:
            click_query(index, tf, cam, *pts[0], level=lvl)  # warm-up
            times, cands, sel = [], [], []
            for u, v in pts:
                t = time.perf_counter()
                r = click_query(index, tf, cam, u, v, level=lvl)
                times.append(time.perf_counter() - t)
                cands.append(len(index.candidates(cam, u, v)))
                sel.append(r.selected.size)
            ms = np.array(times) * 1e3
            print(f"click_{lvl}_median_{n}: {np.median(ms):.2f} ms")
            print(f"click_{lvl}_p90_{n}: {np.percentile(ms, 90):.2f} ms")
        print(f"click_candidates_median_{n}: {int(np.median(cands))} gaussians")
        print(f"click_selected_median_{n}: {int(np.median(sel))} gaussians")
        print(f"click_index_build_{n}: {build * 1e3:.0f} ms")
    return 0
