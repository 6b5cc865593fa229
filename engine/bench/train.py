"""``python -m engine.bench train [--pixels 10000] [--iterations 20] [--scene PLY] [--views 8]``:
where a training iteration's time goes.

1. The pair terms on ``--pixels`` random unit features with 30 segments: the fused hinged
   negative term (:class:`engine.train.losses.HingedPairSum`) against autograd over the P x P
   matrix (its reference twin), and the exact O(P d) positive term against its P x P twin
   (values compared too).
2. Whole iterations on a real scene: ``--views`` orbit views rendered from the splats with
   built-in masks, frozen-geometry caches, then ``--iterations`` iterations at the paper's
   settings (reported per iteration), plus one global-cluster computation (GFL).

Prints ``label: value unit`` lines. Timings depend on the machine's load (shared CPUs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..train import losses as L


def _time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def pair_terms(p: int, d: int = 24, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(p, d, generator=g) + 0.5).requires_grad_()
    seg = torch.randint(0, 30, (p,), generator=g)

    def fused() -> None:
        v = L.negative_pair_loss(L.unit(x), seg, 0.5)
        v.backward()

    def reference() -> None:
        v = L.negative_pair_loss_reference(L.unit(x), seg, 0.5)
        v.backward()

    vf = float(L.negative_pair_loss(L.unit(x), seg, 0.5).detach())
    vr = float(L.negative_pair_loss_reference(L.unit(x), seg, 0.5).detach())
    print(f"neg_term_fused_{p}x{d}: {_time(fused) * 1e3:.1f} ms")
    print(f"neg_term_autograd_{p}x{d}: {_time(reference, 1) * 1e3:.1f} ms")
    print(f"neg_term_rel_diff: {abs(vf - vr) / max(abs(vr), 1e-12):.2e} ratio")

    def pos_fast() -> None:
        L.positive_pair_loss(L.unit(x), seg).backward()

    def pos_ref() -> None:
        L.positive_pair_loss_reference(L.unit(x), seg).backward()

    print(f"pos_term_exact_{p}x{d}: {_time(pos_fast) * 1e3:.2f} ms")
    print(f"pos_term_pairs_{p}x{d}: {_time(pos_ref, 1) * 1e3:.1f} ms")


def iterations(scene_path: str, views: int, size: int, n_iter: int, pixels: int) -> None:
    from ..core.cameras import orbit_cameras
    from ..render.gaussians import Gaussians
    from ..masks import BuiltinMaskSource
    from ..core.formats.ply import read_ply
    from ..train import TrainSettings, views_from_scene
    from ..train.data import build_caches
    from ..train.gfl import compute_global_clusters
    from ..train.trainer import init_features, train_from_caches

    scene = read_ply(scene_path)
    cams = orbit_cameras(scene, views, size, size)
    t = time.perf_counter()
    tv = views_from_scene(scene, cams, BuiltinMaskSource(), device="cpu")
    print(f"views_and_masks_{views}x{size}: {time.perf_counter() - t:.2f} s")
    g = Gaussians.from_scene(scene, "cpu")
    t = time.perf_counter()
    caches, _ = build_caches(g, tv, 32)
    print(f"contributor_cache_{views}x{size}: {time.perf_counter() - t:.2f} s")
    print(f"contributor_cache_size: {sum(c.nbytes() for c in caches) / 2**20:.1f} MiB")
    s = TrainSettings(iterations=n_iter, pixels_per_iter=pixels, gfl_start=0, gfl_interval=10**6, device="cpu")
    t = time.perf_counter()
    train_from_caches(scene, caches, s)
    total = time.perf_counter() - t
    feats = init_features(scene.num_gaussians, 0)
    t = time.perf_counter()
    compute_global_clusters(caches, feats, eps_coarse=1e-2, eps_fine=1e-3, min_cluster_views=0.1)
    clusters = time.perf_counter() - t
    # the run above = n_iter iterations + 2 cluster computations (start of GFL and final)
    per_iter = max(total - 2 * clusters, 0.0) / n_iter
    print(f"global_clusters_{views}_views: {clusters:.2f} s")
    print(f"iteration_{pixels}_pixels: {per_iter * 1e3:.0f} ms")
    print(f"projected_3000_iterations: {per_iter * 3000 / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    default = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fox_cc0.ply"
    ap = argparse.ArgumentParser(prog="python -m engine.bench train", description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=10_000)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--scene", default=str(default))
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--skip-scene", action="store_true", help="only the pair-term measurements")
    args = ap.parse_args(argv)
    print(f"torch_threads: {torch.get_num_threads()} threads")
    pair_terms(args.pixels)
    if not args.skip_scene:
        iterations(args.scene, args.views, args.size, args.iterations, args.pixels)
    return 0
