"""``python -m engine.bench render [--size 512] [--views N]``: CPU render speed of the real fox scene
(RGB, and RGB + top-K contributors), contributor cache size per view (dense and compact), and the
cost of rendering 10k sampled pixels of 24-d features through cached contributors (forward +
backward), as plain ``label: value unit`` lines.

Times are medians over the views (after one warm-up render); "cpu" is process CPU time, which is
less disturbed than wall time when other processes share the cores. Without ``../shared/data``
a random scene of the same size is used, and the output says so.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from . import SHARED_DATA

FOX = SHARED_DATA / "fox_cc0.ply"


def _random_scene(n: int, seed: int = 0):
    from ..core.scene import GaussianScene

    rng = np.random.default_rng(seed)
    return GaussianScene(
        means=rng.normal(size=(n, 3)).astype(np.float32) * 0.5,
        scales=np.log(rng.uniform(0.003, 0.03, size=(n, 3))).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacities=rng.normal(1.0, 1.5, size=n).astype(np.float32),
        sh_dc=rng.normal(size=(n, 3)).astype(np.float32),
        sh_rest=np.zeros((n, 0, 3), np.float32),
    )


def main(argv: list[str] | None = None) -> int:
    import torch

    from ..core.cameras import orbit_cameras
    from ..render.gaussians import Gaussians
    from ..render.renderer import DEFAULT_K, blend, render

    ap = argparse.ArgumentParser(prog="python -m engine.bench render", description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="square image size in pixels (default 512)")
    ap.add_argument("--views", type=int, default=4, help="orbit views to time (default 4)")
    ap.add_argument("--k", type=int, default=DEFAULT_K, help="contributors per pixel (default 32)")
    ap.add_argument("--pixels", type=int, default=10000, help="sampled pixels for the blend timing (default 10000)")
    ap.add_argument("--scene", default=None, help="a .ply to use instead of fox_cc0")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="cpu (default) or cuda: gsplat's rasterization against our tile rasterizer on the GPU")
    args = ap.parse_args(argv)
    if args.size < 1 or args.views < 1 or args.k < 1 or args.pixels < 1:
        ap.error("--size, --views, --k and --pixels must be positive")

    if args.scene:
        from ..core.formats.ply import read_ply

        scene, label = read_ply(args.scene), Path(args.scene).name
    elif FOX.is_file():
        from ..core.formats.ply import read_ply

        scene, label = read_ply(FOX), FOX.name
    else:
        scene, label = _random_scene(50_000), "random scene (../shared/data/fox_cc0.ply not found)"
    print(f"scene: {label}")
    print(f"gaussians: {scene.num_gaussians}")
    print(f"torch threads: {torch.get_num_threads()}")
    cams = orbit_cameras(scene, args.views, args.size, args.size)
    print(f"image: {args.size}x{args.size}")
    if args.device == "cuda":
        return _cuda(scene, cams, args.k)
    g = Gaussians.from_scene(scene, "cpu")

    def timed(fn) -> tuple[float, float, object]:
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        return time.perf_counter() - t, time.process_time() - c, out

    render(g, cams[0])  # warm-up (allocator, first-call dispatch)
    rgb = [timed(lambda cam=cam: render(g, cam)) for cam in cams]
    print(f"render rgb wall: {statistics.median(r[0] for r in rgb) * 1e3:.0f} ms")
    print(f"render rgb cpu: {statistics.median(r[1] for r in rgb) * 1e3:.0f} ms")
    con = [timed(lambda cam=cam: render(g, cam, contributors_k=args.k)) for cam in cams]
    print(f"render rgb+contributors k={args.k} wall: {statistics.median(r[0] for r in con) * 1e3:.0f} ms")
    print(f"render rgb+contributors k={args.k} cpu: {statistics.median(r[1] for r in con) * 1e3:.0f} ms")

    outs = [r[2] for r in con]
    dense32 = statistics.median(o.contributors.nbytes for o in outs)
    dense16 = statistics.median(o.contributors.half().nbytes for o in outs)
    packed = statistics.median(o.contributors.compact().nbytes for o in outs)
    mib = 2.0**20
    print(f"contributor cache dense int32+fp32 per view: {dense32 / mib:.2f} MiB")
    print(f"contributor cache dense int32+fp16 per view: {dense16 / mib:.2f} MiB")
    print(f"contributor cache compact csr int32+fp16 per view: {packed / mib:.2f} MiB")
    fg = [o.alpha > 0.05 for o in outs]
    kept = sum(float(o.contributors.weights.sum(-1)[m].sum()) for o, m in zip(outs, fg))
    total = sum(float(o.alpha[m].sum()) for o, m in zip(outs, fg))
    print(f"blend weight kept by top-{args.k}: {100.0 * kept / max(total, 1e-12):.2f} %")
    filled = statistics.median(float((o.contributors.ids >= 0).sum(-1)[m].float().mean()) for o, m in zip(outs, fg))
    print(f"contributors per foreground pixel: {filled:.1f} slots")

    # Training-style blend: 10k random pixels of one view, 24-d features, forward + backward.
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(scene.num_gaussians, 24, generator=gen, requires_grad=True)
    cache = outs[0].contributors.compact()
    n_pix = cache.height * cache.width
    fwd, both, both_cpu = [], [], []
    for _ in range(5):
        flat = torch.randint(0, n_pix, (args.pixels,), generator=gen)
        t0, c0 = time.perf_counter(), time.process_time()
        ids, w = cache.pixels(flat)
        f = blend(ids, w, feats)
        t1 = time.perf_counter()
        f.square().sum().backward()
        t2, c2 = time.perf_counter(), time.process_time()
        feats.grad = None
        fwd.append(t1 - t0)
        both.append(t2 - t0)
        both_cpu.append(c2 - c0)
    print(f"blend {args.pixels} pixels x 24 forward wall: {statistics.median(fwd) * 1e3:.1f} ms")
    print(f"blend {args.pixels} pixels x 24 forward+backward wall: {statistics.median(both) * 1e3:.1f} ms")
    print(f"blend {args.pixels} pixels x 24 forward+backward cpu: {statistics.median(both_cpu) * 1e3:.1f} ms")
    return 0


def _cuda(scene, cams, k: int) -> int:
    """GPU timings: gsplat RGB and 24-d features, our tile rasterizer with contributors on the
    same GPU, and how closely the two backends agree (fraction of pixels within 1e-2)."""
    import torch

    from ..render.gaussians import Gaussians
    from ..render.renderer import render

    if not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA GPU")
        return 2
    print(f"gpu: {torch.cuda.get_device_name()}")
    g = Gaussians.from_scene(scene, "cuda")
    feats = torch.randn(scene.num_gaussians, 24, device="cuda", generator=torch.Generator("cuda").manual_seed(0))

    def timed(fn) -> tuple[float, object]:
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t, out

    cases = {
        "gsplat rgb": lambda cam: render(g, cam, backend="gsplat"),
        "gsplat 24-d features": lambda cam: render(g, cam, feats, backend="gsplat"),
        "torch-on-cuda rgb": lambda cam: render(g, cam, backend="torch"),
        f"torch-on-cuda rgb+contributors k={k}": lambda cam: render(g, cam, contributors_k=k, backend="torch"),
    }
    outs: dict[str, list] = {}
    for name, fn in cases.items():
        try:
            fn(cams[0])  # warm-up (kernel load, allocator)
        except Exception as e:  # e.g. gsplat's extension failed to build: time the rest
            print(f"render {name}: failed: {type(e).__name__}: {e}")
            continue
        runs = [timed(lambda cam=cam: fn(cam)) for cam in cams]
        outs[name] = [r[1] for r in runs]
        print(f"render {name} wall: {statistics.median(r[0] for r in runs) * 1e3:.2f} ms")
    for a, b in (("gsplat rgb", "torch-on-cuda rgb"),):
        if a not in outs or b not in outs:
            continue
        close = [float(((x.values - y.values).abs() <= 1e-2).float().mean()) for x, y in zip(outs[a], outs[b])]
        print(f"{a} vs {b}: {100.0 * min(close):.2f} % of pixel channels within 1e-2 (worst view)")
    print(f"gpu peak memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    return 0
