"""``python -m engine.bench train [--pixels 10000] [--iterations 20] [--scene PLY] [--views 8] [--grid 1 20 120]``:
where a training iteration's time goes, and how it grows with the number of Gaussians.

1. The pair terms on ``--pixels`` random unit features with 30 segments: the fused hinged
   negative term (:class:`engine.train.losses.HingedPairSum`) against autograd over the P x P
   matrix (its reference twin) and against the CPU's column-sampled estimate
   (``TrainSettings.neg_columns``), and the exact O(P d) positive term against its P x P twin
   (values compared too).
2. Whole iterations on a real scene (``--grid G``: G copies of it side by side, 20 x the fox =
   1M Gaussians, built at run time): ``--views`` orbit views rendered from the splats with
   built-in masks, frozen-geometry caches, then ``--iterations`` iterations at the product's
   settings (half without GFL, half with it), the final clusters and labels; per-iteration time,
   the projection to 3,000 iterations, the time to the first clickable result and peak memory.

Prints ``label: value unit`` lines. Timings depend on the machine's load (shared CPUs).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
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
    from ..train import TrainSettings

    q = TrainSettings().neg_columns
    gen = torch.Generator().manual_seed(seed)

    def sampled() -> None:
        L.negative_pair_loss(L.unit(x), seg, 0.5, columns=q, generator=gen).backward()

    print(f"neg_term_columns_{q}_{p}x{d}: {_time(sampled) * 1e3:.1f} ms (unbiased estimate, CPU default)")

    def pos_fast() -> None:
        L.positive_pair_loss(L.unit(x), seg).backward()

    def pos_ref() -> None:
        L.positive_pair_loss_reference(L.unit(x), seg).backward()

    print(f"pos_term_exact_{p}x{d}: {_time(pos_fast) * 1e3:.2f} ms")
    print(f"pos_term_pairs_{p}x{d}: {_time(pos_ref, 1) * 1e3:.1f} ms")


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def iterations(scene_path: str, views: int, size: int, n_iter: int, pixels: int, grid: int = 1) -> None:
    """Whole training iterations on ``scene_path`` (tiled ``grid`` times, :func:`engine.bench.click.tiled`)
    at the product's settings: ``n_iter`` iterations, the first half without GFL, the second half
    with it (clusters computed once when it starts), then the final clusters and labels. Reports
    per-iteration time of both phases, the projection to the paper's 3,000 iterations (2,000
    without GFL, 1,000 with it, 10 cluster recomputations), the time to the first clickable result
    (the first published intermediate result when the run publishes one, else the end of the
    run) and the process's peak memory (RSS)."""
    from ..core.cameras import orbit_cameras
    from ..core.formats.ply import read_ply
    from ..masks import BuiltinMaskSource
    from ..render.gaussians import Gaussians
    from ..train import TrainSettings, views_from_scene
    from ..train.data import build_caches
    from ..train.trainer import train_from_caches
    from .click import tiled

    scene = read_ply(scene_path)
    if grid > 1:
        scene = tiled(scene, scene.num_gaussians * grid)
    n = scene.num_gaussians
    print(f"gaussians: {n}")
    cams = orbit_cameras(scene, views, size, size)
    t_start = time.perf_counter()
    tv = views_from_scene(scene, cams, BuiltinMaskSource(), device="cpu", contributors_k=32)
    t_views = time.perf_counter() - t_start
    print(f"views_and_masks_{views}x{size}: {t_views:.2f} s")
    g = Gaussians.from_scene(scene, "cpu")
    t = time.perf_counter()
    caches, _ = build_caches(g, tv, 32)
    t_cache = time.perf_counter() - t
    print(f"contributor_cache_{views}x{size}: {t_cache:.2f} s")
    print(f"contributor_cache_size: {sum(c.nbytes() for c in caches) / 2**20:.1f} MiB")
    del g, tv
    half = max(1, n_iter // 2)
    s = TrainSettings(iterations=n_iter, pixels_per_iter=pixels, gfl_start=half, gfl_interval=10**6, device="cpu")
    marks: list[tuple[int, str, float, str]] = []
    cpu_marks: list[tuple[int, str, float, str]] = []  # the same with the process's CPU time

    def progress(p) -> None:
        marks.append((p.iteration, p.phase, time.perf_counter(), p.message))
        cpu_marks.append((p.iteration, p.phase, time.process_time(), p.message))

    t = time.perf_counter()
    published: list[float] = []
    try:
        train_from_caches(scene, caches, s, progress=progress,
                          publish=lambda r: published.append(time.perf_counter()))
    except TypeError:  # a trainer without intermediate results
        marks.clear()
        t = time.perf_counter()
        train_from_caches(scene, caches, s, progress=progress)
    t_end = time.perf_counter()
    # intermediate results: from the progress message that announces one to its publication
    pub_start = [tt for i, ph, tt, m in marks if m == "building an intermediate result"]
    pubs = list(zip(pub_start, published))
    train_marks = [(i, tt) for i, ph, tt, m in marks if ph == "train" and m != "building an intermediate result"]
    first_it, first_t = train_marks[0]
    setup = first_t - t  # kNN etc. plus the first iteration

    def per_iteration(seg: list[tuple[int, float]]) -> float:
        a, b = seg[0][1], seg[-1][1]
        busy = sum(e - s for s, e in pubs if a <= s and e <= b)
        return (b - a - busy) / max(1, seg[-1][0] - seg[0][0])

    pre = [(i, tt) for i, tt in train_marks if i <= half]
    post = [(i, tt) for i, tt in train_marks if i > half]
    per_pre = per_iteration(pre)
    # the GFL phase's first report comes after the cluster computation at its start
    cl = [tt for i, ph, tt, m in marks if ph == "clusters"]
    per_post = per_iteration(post) if len(post) > 1 else per_pre
    final_clusters = t_end - (cl[-1] if cl else t_end)
    first_clusters = (post[0][1] - pre[-1][1] - per_post) if post else 0.0
    for s_, e_ in pubs:
        print(f"intermediate_result_build: {e_ - s_:.2f} s")
    print(f"setup_before_first_iteration: {setup - per_pre:.2f} s")
    print(f"iteration_{pixels}_pixels_no_gfl: {per_pre * 1e3:.0f} ms")
    print(f"iteration_{pixels}_pixels_gfl: {per_post * 1e3:.0f} ms")
    # CPU time (all threads) per iteration over the same stretches: on a shared machine the wall
    # time grows with the other processes' load, the CPU time much less
    ct = [(i, tt) for i, ph, tt, m in cpu_marks if ph == "train" and m != "building an intermediate result"]
    built = [i for i, ph, tt, m in cpu_marks if m == "building an intermediate result"]
    gfl_from = max([half] + [i for i in built if i >= half])  # after the last result built in the phase
    for name, seg in (("no_gfl", [x for x in ct if x[0] <= min([half] + built)]),
                      ("gfl", [x for x in ct if x[0] > gfl_from])):
        if len(seg) > 1:
            print(f"iteration_{pixels}_pixels_{name}_cpu: {(seg[-1][1] - seg[0][1]) / (seg[-1][0] - seg[0][0]) * 1e3:.0f} ms CPU time")
    print(f"global_clusters: {max(first_clusters, 0.0):.2f} s")
    print(f"final_clusters_and_labels: {final_clusters:.2f} s")
    proj = setup - per_pre + 2000 * per_pre + 1000 * per_post + 10 * max(first_clusters, 0.0) + final_clusters
    print(f"projected_3000_iterations: {proj / 60:.2f} min")
    before_train = t_views + t_cache
    if published:
        print(f"first_clickable_result: {before_train + published[0] - t:.1f} s (intermediate result, this run)")
    else:
        print(f"first_clickable_result: {before_train + proj:.1f} s (end of a 3,000-iteration run, projected)")
    print(f"peak_rss: {_peak_rss_mib():.0f} MiB")
    print(f"load_average_1min: {os.getloadavg()[0]:.2f}")


def main(argv: list[str] | None = None) -> int:
    default = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fox_cc0.ply"
    ap = argparse.ArgumentParser(prog="python -m engine.bench train", description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=10_000)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--scene", default=str(default))
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--grid", type=int, nargs="+", default=[1],
                    help="tile the scene this many times (20 x the fox = 1M Gaussians, 120 x = 6M); several "
                         "values: one child process each (own peak memory), then a summary table")
    ap.add_argument("--skip-scene", action="store_true", help="only the pair-term measurements")
    ap.add_argument("--skip-pairs", action="store_true", help="only the whole-iteration measurements")
    args = ap.parse_args(argv)
    print(f"torch_threads: {torch.get_num_threads()} threads")
    if not args.skip_pairs:
        before = torch.get_num_threads()
        torch.set_num_threads(1)  # as in training (the pair term makes its own threads)
        try:
            pair_terms(args.pixels)
        finally:
            torch.set_num_threads(before)
    if args.skip_scene:
        return 0
    if len(args.grid) == 1:
        iterations(args.scene, args.views, args.size, args.iterations, args.pixels, args.grid[0])
        return 0
    rows = []
    for grid in args.grid:
        cmd = [sys.executable, "-m", "engine.bench", "train", "--skip-pairs", "--grid", str(grid), "--scene", args.scene,
               "--views", str(args.views), "--size", str(args.size), "--iterations", str(args.iterations),
               "--pixels", str(args.pixels)]
        print(f"# {' '.join(cmd[1:])}", flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
        sys.stdout.write(out.stdout)
        if out.returncode != 0:
            sys.stdout.write(out.stderr)
            print(f"grid {grid}: failed (exit {out.returncode})")
            continue
        rows.append(dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line and not line.startswith("#")))
    keys = ["gaussians", f"iteration_{args.pixels}_pixels_no_gfl", f"iteration_{args.pixels}_pixels_gfl",
            f"iteration_{args.pixels}_pixels_no_gfl_cpu", f"iteration_{args.pixels}_pixels_gfl_cpu",
            "projected_3000_iterations", "first_clickable_result", "peak_rss", "load_average_1min"]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(r.get(k, "n/a").split(" (")[0] for k in keys) + " |")
    return 0
