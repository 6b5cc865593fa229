"""Our CPU rasterizer for 3D Gaussians: EWA projection + vectorised tile alpha blending (torch).

The projection is gsplat's (``gsplat/cuda/_torch_impl.py: _fully_fused_projection`` with the
pinhole model; ``tests/test_render_projection.py`` compares them): world -> camera, 3D covariance
``R S S^T R^T``, Jacobian of the perspective projection with the 1.3x-fov clamp of the mean's
direction, a ``+0.3`` px^2 low-pass dilation of the 2D covariance (3DGS), and an extent of at most
3.33 sigma shortened for faint Gaussians to where ``alpha = 1/255`` (gsplat's CUDA projection does
the same), so a bounding box contains every pixel the Gaussian can touch.

Blending follows the 3DGS rasterizer: per pixel, Gaussians front to back (global depth order),
``alpha = min(ALPHA_MAX, opacity * exp(-0.5 d^T Sigma2d^-1 d))`` at the pixel centre ``(x+0.5,
y+0.5)``, skipped when ``alpha < 1/255``, weight ``w = alpha * T`` with ``T`` the transmittance
before it, and a pixel stops before the Gaussian that would bring ``T`` to ``<= 1e-4``.

How it is fast on a CPU:

- Gaussian/tile pairs (8x8 tiles) are expanded from each Gaussian's box, pairs whose tile the
  alpha >= 1/255 ellipse misses are dropped (exact, ~30% of the fox's pairs), and the rest sorted
  (stable) by tile, with Gaussians pre-sorted by depth, so each tile's list is front to back.
- All unfinished tiles advance together in rounds; each round takes the next ``G`` Gaussians of
  each tile (padded with a transparent sentinel). The exponent for every pixel x Gaussian of the
  round is one batched matmul of per-pixel polynomial terms ``[x^2, xy, y^2, x, y, 1]`` (tile-local,
  centred coordinates) against per-Gaussian conic coefficients with ``-log(opacity)`` folded into
  the constant, so ``alpha = exp(-power)`` directly. The exponent is clamped before ``exp``
  (``exp`` of very negative numbers is much slower on CPU).
- Transmittance within a round is a cumulative product; the 1e-4 stop is a threshold on it.
- As tiles finish (list exhausted or all pixels saturated) ``G`` grows, so the work per round and
  the memory stay bounded by ``budget`` slots (temporaries of ~2 MiB, cache-sized).
- Top-K contributors: a pixel's positive weights are appended in order while it has fewer than K
  (most pixels use fewer than K slots); only pixels that overflow go
  through a top-K selection, and only they are re-sorted front to back at the end.
- Parallelism: tiles are split between worker threads that each run torch with ONE intra-op
  thread (see :func:`single_threaded`), instead of OpenMP inside every small op. The passes
  over all Gaussians before the tiles (projection, colours, tile pairs) are few large ops; on
  large scenes they use that many intra-op threads instead (:func:`threads_for`).

``python -m engine.bench render`` measures it (figures in README).

Everything here runs under ``torch.no_grad()``: geometry is frozen in Click-Gaussian; gradients
with respect to rendered values go through :func:`engine.render.renderer.blend`.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..core.errors import Cancelled
from ..core.projection import ALPHA_MAX, ALPHA_MIN, EPS2D, EXTENT_SIGMA, T_MIN
from .gaussians import covariance_from_quat_scale

TILE = 8  # 8x8 tiles: typical splats are a few px in radius, so smaller tiles waste fewer pairs
_POWER_LO = -math.log(ALPHA_MAX)  # exponent below this means alpha > ALPHA_MAX
_POWER_HI = 6.0  # exp(-6) < 1/255: clamping here changes nothing and keeps exp fast
_SENTINEL_POWER = 1.0e4
MIN_G = 32  # Gaussians per tile and round, at least (a power of two)


@dataclass
class Projection:
    """Gaussians projected into one camera (only those that can touch the image).

    Attributes:
        ids: [M] int64 indices into the scene's Gaussians.
        means2d: [M, 2] float32 pixel positions (u right, v down; pixel centres at +0.5).
        conics: [M, 3] float32 upper triangle (a, b, c) of the inverse 2D covariance, px^-2.
        depths: [M] float32 camera z (OpenCV, forward), world units.
        radii: [M, 2] int32 box half-sizes in pixels (x, y).
        opacities: [M] float32 opacities in (0, 1).
    """

    ids: Tensor
    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor
    opacities: Tensor

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def project_ewa(
    means: Tensor,  # [N, 3] world
    covars: Tensor,  # [N, 3, 3] world
    viewmat: Tensor,  # [4, 4] world-to-camera (OpenCV)
    K: Tensor,  # [3, 3] intrinsics
    width: int,
    height: int,
    eps2d: float = EPS2D,
    near: float = 0.01,
    far: float = 1e10,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """EWA projection, gsplat's pinhole ``_fully_fused_projection`` for one camera.

    Returns:
        means2d [N, 2], cov2d [N, 2, 2] (dilated by ``eps2d``), conics [N, 3] (a, b, c of the
        inverse), depths [N] (camera z), valid [N] bool (det > 0 and near < z < far).
    """
    R = viewmat[:3, :3]
    t = viewmat[:3, 3]
    means_c = means @ R.T + t  # [N, 3]
    covars_c = R @ covars @ R.T  # [N, 3, 3]
    tx, ty, tz = means_c.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    # Clamp the direction used for the Jacobian (not the mean itself) like 3DGS/gsplat, so
    # Gaussians far outside the frustum do not get exploding 2D covariances.
    tz_safe = torch.where(tz.abs() < 1e-12, torch.full_like(tz, 1e-12), tz)
    txc = tz_safe * torch.clamp(tx / tz_safe, min=-lim_x_neg, max=lim_x_pos)
    tyc = tz_safe * torch.clamp(ty / tz_safe, min=-lim_y_neg, max=lim_y_pos)
    zero = torch.zeros_like(tz)
    J = torch.stack(
        [fx / tz_safe, zero, -fx * txc / tz_safe**2, zero, fy / tz_safe, -fy * tyc / tz_safe**2], dim=-1
    ).reshape(-1, 2, 3)
    cov2d = J @ covars_c @ J.transpose(-1, -2)  # [N, 2, 2]
    means2d = torch.stack([fx * tx / tz_safe + cx, fy * ty / tz_safe + cy], dim=-1)
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    det = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]
    valid = (det > 0) & (tz > near) & (tz < far)
    det = det.clamp(min=1e-10)
    conics = torch.stack(
        [cov2d[:, 1, 1] / det, -(cov2d[:, 0, 1] + cov2d[:, 1, 0]) / 2.0 / det, cov2d[:, 0, 0] / det], dim=-1
    )
    return means2d, cov2d, conics, tz, valid


@torch.no_grad()
def project(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] unit wxyz
    scales: Tensor,  # [N, 3] activated
    opacities: Tensor,  # [N] activated
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
) -> Projection:
    """Project Gaussians into a camera and keep those whose box overlaps the image.

    The box half-size per axis is ``extent * sqrt(cov2d[i, i])`` rounded up, where
    ``extent = min(3.33, sqrt(2 ln(255 * opacity)))``: beyond it alpha < 1/255 everywhere.
    Gaussians with opacity < 1/255, behind the near plane or beyond far are dropped.
    """
    covars = covariance_from_quat_scale(quats, scales)
    means2d, cov2d, conics, depths, valid = project_ewa(means, covars, viewmat, K, width, height, near=near, far=far)
    op = opacities
    valid &= op >= ALPHA_MIN
    extent = torch.sqrt(torch.clamp(2.0 * torch.log(op.clamp_min(ALPHA_MIN) / ALPHA_MIN), min=0.0)).clamp(max=EXTENT_SIGMA)
    rx = torch.ceil(extent * torch.sqrt(cov2d[:, 0, 0].clamp_min(0)))
    ry = torch.ceil(extent * torch.sqrt(cov2d[:, 1, 1].clamp_min(0)))
    u, v = means2d.unbind(-1)
    inside = (u + rx > 0) & (u - rx < width) & (v + ry > 0) & (v - ry < height)
    finite = torch.isfinite(means2d).all(-1) & torch.isfinite(conics).all(-1) & torch.isfinite(rx) & torch.isfinite(ry)
    keep = torch.nonzero(valid & inside & finite & (rx > 0) & (ry > 0)).squeeze(1)
    return Projection(
        ids=keep,
        means2d=means2d[keep].float(),
        conics=conics[keep].float(),
        depths=depths[keep].float(),
        radii=torch.stack([rx[keep], ry[keep]], dim=-1).int(),
        opacities=op[keep].float(),
    )


@dataclass
class RasterResult:
    """Raw CPU rasterizer output for one view.

    Attributes:
        values: [H, W, C] float32 ``sum_i w_i v_i`` (no background).
        alpha: [H, W] float32 ``sum_i w_i``.
        depth_sum: [H, W] float32 ``sum_i w_i z_i`` (divide by alpha for expected depth).
        ids: [H, W, K] int32 scene indices of the top-K contributors, front to back, -1 = empty
            (None when K = 0).
        weights: [H, W, K] float32 their ``w = alpha * T`` (0 in empty slots), or None.
    """

    values: Tensor
    alpha: Tensor
    depth_sum: Tensor
    ids: Tensor | None
    weights: Tensor | None


def _tile_pairs(
    proj: Projection, tiles_x: int, tiles_y: int, chunk: int = 1 << 22
) -> tuple[Tensor, Tensor, Tensor]:
    """Gaussian/tile pairs sorted by (tile, depth).

    Pairs are expanded from the boxes and culled ``chunk`` at a time, so the transient memory
    stays bounded (~40 bytes x chunk) while only surviving pairs are kept (12 bytes each).

    Returns (order [M] int64 depth order of projection rows, gauss [E] int64 depth-rank of each
    pair sorted by tile then depth, tile_counts [tiles] int64)."""
    order = torch.argsort(proj.depths, stable=True)
    m2d = proj.means2d[order]
    con = proj.conics[order]
    op = proj.opacities[order]
    rad = proj.radii[order].float()
    x0 = torch.floor((m2d[:, 0] - rad[:, 0]) / TILE).clamp(0, tiles_x - 1).long()
    x1 = torch.floor((m2d[:, 0] + rad[:, 0]) / TILE).clamp(0, tiles_x - 1).long()
    y0 = torch.floor((m2d[:, 1] - rad[:, 1]) / TILE).clamp(0, tiles_y - 1).long()
    y1 = torch.floor((m2d[:, 1] + rad[:, 1]) / TILE).clamp(0, tiles_y - 1).long()
    wx = x1 - x0 + 1
    counts = wx * (y1 - y0 + 1)
    ends = torch.cumsum(counts, 0)
    dev = order.device
    gauss_parts, tile_parts = [], []
    g0, M = 0, len(order)
    while g0 < M:
        # Gaussians g0..g1 hold at most `chunk` pairs (at least one Gaussian per step).
        done = int(ends[g0 - 1]) if g0 else 0
        g1 = max(g0 + 1, int(torch.searchsorted(ends, done + chunk, right=True)))
        g1 = min(g1, M)
        cnt = counts[g0:g1]
        total = int(cnt.sum())
        if total:
            gauss = torch.repeat_interleave(torch.arange(g0, g1, device=dev), cnt, output_size=total)
            starts = torch.cumsum(cnt, 0) - cnt
            local = torch.arange(total, device=dev) - torch.repeat_interleave(starts, cnt, output_size=total)
            wxg = wx[gauss]
            ty = y0[gauss] + local // wxg
            tx = x0[gauss] + local % wxg
            # Drop pairs whose tile the alpha >= 1/255 ellipse misses (box corners): ~30% of the
            # fox's pairs. Exact minimum of the quadratic form over the rectangle spanned by the
            # tile's pixel centres (conservative: pixels are a subset), so nothing is lost.
            hit = _ellipse_hits_tile(m2d[gauss], con[gauss], op[gauss], tx, ty)
            gauss_parts.append(gauss[hit])
            tile_parts.append((ty * tiles_x + tx)[hit].to(torch.int32))
        g0 = g1
    gauss = torch.cat(gauss_parts) if gauss_parts else torch.zeros(0, dtype=torch.long, device=dev)
    tile = torch.cat(tile_parts) if tile_parts else torch.zeros(0, dtype=torch.int32, device=dev)
    tile_sorted, perm = torch.sort(tile, stable=True)
    tile_counts = torch.bincount(tile_sorted.long(), minlength=tiles_x * tiles_y)
    return order, gauss[perm], tile_counts


def _ellipse_hits_tile(m2d: Tensor, conics: Tensor, opacities: Tensor, tx: Tensor, ty: Tensor) -> Tensor:
    """[E] bool: may Gaussian (mean m2d [E, 2], conic [E, 3], opacity [E]) reach alpha >= 1/255
    at some pixel centre of tile (tx, ty) [E]? Minimises ``d^T Q d`` over the rectangle of the
    tile's pixel centres (0 inside; else the best of the four edges, each a 1-D quadratic)."""
    a, b, c = conics.unbind(-1)
    mx, my = m2d.unbind(-1)
    lo_x = tx.to(mx.dtype) * TILE + 0.5 - mx
    hi_x = lo_x + (TILE - 1)
    lo_y = ty.to(my.dtype) * TILE + 0.5 - my
    hi_y = lo_y + (TILE - 1)
    inside = (lo_x <= 0) & (hi_x >= 0) & (lo_y <= 0) & (hi_y >= 0)
    best = torch.full_like(mx, float("inf"))
    for dx in (lo_x, hi_x):  # vertical edges: dx fixed, best dy = -b dx / c within the edge
        dy = torch.minimum(torch.maximum(-b * dx / c, lo_y), hi_y)
        best = torch.minimum(best, a * dx * dx + 2 * b * dx * dy + c * dy * dy)
    for dy in (lo_y, hi_y):  # horizontal edges
        dx = torch.minimum(torch.maximum(-b * dy / a, lo_x), hi_x)
        best = torch.minimum(best, a * dx * dx + 2 * b * dx * dy + c * dy * dy)
    # alpha = opacity * exp(-q / 2) >= 1/255  <=>  q <= 2 ln(255 opacity); small float slack.
    return inside | (best <= 2.0 * torch.log(opacities * 255.0) + 1e-3)


@torch.no_grad()
def rasterize(
    proj: Projection,
    values: Tensor | None,  # [N, C] per scene Gaussian (indexed by proj.ids), or None
    width: int,
    height: int,
    *,
    contributors_k: int = 0,
    budget: int = 8192,
    progress: Callable[[float], object] | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
) -> RasterResult:
    """Alpha-blend projected Gaussians into a ``height x width`` image, tile by tile.

    Args:
        proj: from :func:`project`.
        values: [N, C] float values per scene Gaussian (C may be 0 / None for alpha, depth and
            contributors only).
        contributors_k: keep the K largest weights per pixel (0 = none).
        budget: Gaussian-tile slots per batched step and worker (each temporary is
            ``budget * 64 * 4`` bytes: 8192 -> 2 MiB, which stays in cache).
        progress: called with the fraction of tiles finished (from worker threads, one at a
            time); returning False cancels.
        cancel: set it (from any thread) to stop; :class:`~engine.core.errors.Cancelled` is raised.
        workers: parallel tile workers (default: torch's thread count on CPU, 1 elsewhere).
    """
    device = proj.means2d.device
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    P = TILE * TILE
    C = 0 if values is None else int(values.shape[1])
    M = len(proj)
    Kc = int(contributors_k)

    # Per-Gaussian tables in depth order, plus a transparent sentinel at index M.
    n_workers = workers if workers is not None else worker_count(device)
    with threads_for(device, M, n_workers):
        order, gauss, tile_counts = _tile_pairs(proj, tiles_x, tiles_y) if M else (None, None, None)
    if M == 0 or gauss.numel() == 0:
        return _empty_result(height, width, C, Kc, device)
    m2d = proj.means2d[order]
    con = proj.conics[order]
    neg_log_op = -torch.log(proj.opacities[order])
    mx = torch.cat([m2d[:, 0], m2d.new_zeros(1)])
    my = torch.cat([m2d[:, 1], m2d.new_zeros(1)])
    ca = torch.cat([con[:, 0], con.new_zeros(1)])
    cb = torch.cat([con[:, 1], con.new_zeros(1)])
    cc = torch.cat([con[:, 2], con.new_zeros(1)])
    lo = torch.cat([neg_log_op, neg_log_op.new_full((1,), _SENTINEL_POWER)])
    depth_col = proj.depths[order][:, None]
    chan = [depth_col, torch.ones_like(depth_col)]
    if C:
        chan.insert(0, values[proj.ids[order]].float())
    vals = torch.cat(chan, dim=1)
    vals = torch.cat([vals, vals.new_zeros(1, vals.shape[1])])  # [M+1, C+2]: values, depth, 1
    scene_ids = torch.cat([proj.ids[order], proj.ids.new_full((1,), -1)])

    # Pixel polynomial terms in tile-local coordinates centred on the tile (|x|, |y| <= TILE/2).
    lin = torch.arange(P, device=device)
    px = (lin % TILE).float() + 0.5 - TILE / 2
    py = (lin // TILE).float() + 0.5 - TILE / 2
    terms = torch.stack([px * px, px * py, py * py, px, py, torch.ones_like(px)], dim=0)  # [6, P]

    tile_starts = torch.cumsum(tile_counts, 0) - tile_counts
    tiles = torch.nonzero(tile_counts).squeeze(1)  # tiles with any Gaussian
    A = len(tiles)
    Hp, Wp = tiles_y * TILE, tiles_x * TILE
    img = torch.zeros(Hp, Wp, vals.shape[1], device=device)  # values, depth_sum, alpha
    out_w = torch.zeros(Hp, Wp, Kc, device=device) if Kc else None
    out_i = torch.full((Hp, Wp, Kc), -1, dtype=torch.int32, device=device) if Kc else None
    tables = _Tables(
        gauss=gauss, mx=mx, my=my, ca=ca, cb=cb, cc=cc, lo=lo, vals=vals, terms=terms, sentinel=M,
        scene_ids=scene_ids.to(torch.int32), tiles_x=tiles_x, budget=budget, k=Kc,
    )  # fmt: skip
    done_count = [0]
    lock = threading.Lock()
    stop = threading.Event()  # set by a False from progress, or when the caller is interrupted

    def report(n: int) -> bool:
        """Count finished tiles; False when the render should stop."""
        if progress is not None:
            with lock:
                done_count[0] += n
                if progress(done_count[0] / max(A, 1)) is False:
                    stop.set()
        return not (stop.is_set() or (cancel is not None and cancel.is_set()))

    # Split the tiles between workers, interleaved so each gets a similar mix of busy and quiet
    # tiles. Each worker runs torch with one intra-op thread: the ops here are small, and
    # OpenMP's barriers inside each of them cost more than they gain on a 2-core machine (and
    # far more when other processes compete for the cores), while independent workers only
    # share the GIL between ops.
    n_workers = max(1, min(n_workers, A // 4))
    parts = [tiles[i::n_workers] for i in range(n_workers)]

    def work(part: Tensor) -> None:
        if device.type == "cpu" and n_workers > 1:
            torch.set_num_threads(1)  # thread-local in torch's OpenMP backend
        acc, top_w, ids = _blend_tiles(tables, part, tile_starts[part], tile_counts[part], report)
        _write_tiles(img, tiles_x, part, acc)
        if Kc:
            _write_tiles(out_w, tiles_x, part, top_w)
            _write_tiles(out_i, tiles_x, part, ids)

    if n_workers == 1:
        work(parts[0])
    else:
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_blend_in_thread, args=(work, part, errors), daemon=True) for part in parts]
        caller_threads = torch.get_num_threads()
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        except BaseException:  # Ctrl-C in the caller: stop the workers before leaving
            stop.set()
            for t in threads:
                if t.ident is not None:
                    t.join()
            raise
        finally:
            # torch.set_num_threads also stores a process-wide default that threads started
            # later inherit; put back the caller's value that the workers' calls replaced.
            torch.set_num_threads(caller_threads)
        if errors:
            raise errors[0]
    if stop.is_set() or (cancel is not None and cancel.is_set()):
        raise Cancelled("render cancelled")

    def crop(t: Tensor | None) -> Tensor | None:
        return t if t is None or (Hp == height and Wp == width) else t[:height, :width].contiguous()

    img = crop(img)
    return RasterResult(
        values=img[..., :C], alpha=img[..., C + 1], depth_sum=img[..., C], ids=crop(out_i), weights=crop(out_w)
    )


@dataclass
class _Tables:
    """Read-only per-Gaussian tables (depth order, sentinel last) shared by the tile workers."""

    gauss: Tensor  # [pairs] int64 depth rank of each (tile, Gaussian) pair, sorted by tile
    mx: Tensor  # [M+1] pixel x of the mean
    my: Tensor  # [M+1] pixel y of the mean
    ca: Tensor  # [M+1] conic a
    cb: Tensor  # [M+1] conic b
    cc: Tensor  # [M+1] conic c
    lo: Tensor  # [M+1] -log(opacity) (sentinel: huge)
    vals: Tensor  # [M+1, D] values, depth, 1
    terms: Tensor  # [6, TILE*TILE] pixel polynomial terms
    sentinel: int  # M
    scene_ids: Tensor  # [M+1] int32 scene index of each depth rank (sentinel: -1)
    tiles_x: int
    budget: int
    k: int


@contextlib.contextmanager
def single_threaded(device: torch.device):
    """Run the enclosed torch ops of this thread with one intra-op thread on CPU (thread-local;
    restored afterwards). The renderer's ops are small and memory-bound; on a 2-core machine
    OpenMP's fork/join per op costs more than it gains, and much more when other processes
    compete for the cores. Parallelism comes from the tile workers instead."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# Per-Gaussian passes over at least this many Gaussians (projection, colours, tile pairs) run with
# the tile workers' count of intra-op threads instead of one: their ops are large enough that
# OpenMP's fork/join is negligible, and at a million Gaussians they are most of a render.
PARALLEL_MIN = 1 << 16


@contextlib.contextmanager
def threads_for(device: torch.device, n: int, threads: int):
    """Run the enclosed torch ops of this thread on CPU with ``threads`` intra-op threads when
    they work on ``n`` >= :data:`PARALLEL_MIN` items, else with one (thread-local; restored
    afterwards). Element-wise ops, sorts and integer scans give the same results with any thread
    count. Nothing changes on other devices."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)) if n >= PARALLEL_MIN else 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def worker_count(device: torch.device) -> int:
    """Tile workers for a device: torch's intra-op thread count of the calling thread on CPU
    (at most 8), 1 on GPUs (one stream does the work)."""
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), 8))


def _blend_in_thread(fn: Callable[[Tensor], None], part: Tensor, errors: list) -> None:
    try:
        with torch.no_grad():
            fn(part)
    except BaseException as exc:  # re-raised by the caller's thread
        errors.append(exc)


def _write_tiles(img: Tensor, tiles_x: int, tiles: Tensor, data: Tensor) -> None:
    """Write per-tile data [A, TILE*TILE, ...] (row-major within a tile) into the padded image
    [tiles_y*TILE, tiles_x*TILE, ...] at tile indices ``tiles`` [A]."""
    if len(tiles) == 0:
        return
    rest = img.shape[2:]
    view = img.view(img.shape[0] // TILE, TILE, tiles_x, TILE, *rest)
    ar = torch.arange(TILE, device=img.device)
    ty = (tiles // tiles_x)[:, None, None]
    tx = (tiles % tiles_x)[:, None, None]
    view[ty, ar[None, :, None], tx, ar[None, None, :]] = data.reshape(len(tiles), TILE, TILE, *rest)


def _blend_tiles(
    tb: _Tables,
    tiles: Tensor,  # [A] tile indices (row-major over the tile grid)
    t_start: Tensor,  # [A] first pair of each tile in tb.gauss
    t_count: Tensor,  # [A] number of pairs of each tile
    report: Callable[[int], bool],
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Blend the given tiles front to back. Returns acc [A, P, D] (P = TILE*TILE; weighted sums of
    tb.vals), and with tb.k > 0 the per-pixel top-K weights [A, P, K] float32 and scene ids [A, P, K]
    int32 (-1 = empty, after the filled slots), front to back."""
    device = tiles.device
    A, P, M, Kc = len(tiles), tb.terms.shape[1], tb.sentinel, tb.k
    t_cx = (tiles % tb.tiles_x).float() * TILE + TILE / 2
    t_cy = (tiles // tb.tiles_x).float() * TILE + TILE / 2
    pos = torch.zeros(A, dtype=torch.long, device=device)
    trans = torch.ones(A, P, device=device)
    acc = torch.zeros(A, P, tb.vals.shape[1], device=device)
    top_w = top_r = top_n = mixed = None
    if Kc:
        top_w = torch.zeros(A, P, Kc, device=device)
        top_r = torch.full((A, P, Kc), M, dtype=torch.int32, device=device)  # depth rank, M = empty
        top_n = torch.zeros(A, P, dtype=torch.long, device=device)
        mixed = torch.zeros(A, P, dtype=torch.bool, device=device)
    neg_terms = -tb.terms.T  # [P, 6]: the matmul yields -power directly
    last = len(tb.gauss) - 1
    active = torch.arange(A, device=device)
    max_g = 1024  # a power of two
    while len(active):
        # A power of two, so the top-K bookkeeping divides by shifts (int64 division is slow).
        g = 1 << max(0, (max(1, tb.budget // len(active))).bit_length() - 1)
        g = int(min(max_g, max(MIN_G, g)))
        step = max(1, tb.budget // g)
        ar = torch.arange(g, device=device)
        for s0 in range(0, len(active), step):
            sel = active[s0 : s0 + step]
            off = pos[sel, None] + ar  # [S, G]
            ok = off < t_count[sel, None]
            gi = torch.where(ok, tb.gauss[(t_start[sel, None] + off).clamp_(max=last)], M)  # [S, G] ranks
            dx = tb.mx[gi] - t_cx[sel, None]
            dy = tb.my[gi] - t_cy[sel, None]
            a, b, c = tb.ca[gi], tb.cb[gi], tb.cc[gi]
            coef = torch.stack(
                [
                    0.5 * a,
                    b,
                    0.5 * c,
                    -(a * dx + b * dy),
                    -(c * dy + b * dx),
                    0.5 * a * dx * dx + b * dx * dy + 0.5 * c * dy * dy + tb.lo[gi],
                ],
                dim=1,
            )  # [S, 6, G]
            alpha = torch.matmul(neg_terms, coef)  # [S, P, G] = -power
            alpha = alpha.clamp_(-_POWER_HI, -_POWER_LO).exp_()
            alpha = torch.nn.functional.threshold_(alpha, ALPHA_MIN - 1e-12, 0.0)
            one_m = torch.sub(1.0, alpha)
            t_incl = torch.cumprod(one_m, dim=2).mul_(trans[sel, :, None])
            t_incl = torch.nn.functional.threshold_(t_incl, T_MIN, 0.0)  # stop where T <= 1e-4
            w = alpha.mul_(t_incl).div_(one_m)  # alpha * T_before, 0 after the stop
            trans[sel] = t_incl[:, :, -1]
            acc[sel] += torch.bmm(w, tb.vals[gi])
            if Kc:
                _merge_topk(top_w, top_r, top_n, mixed, sel, w, gi)
        pos[active] += g
        done = (pos[active] >= t_count[active]) | (trans[active].amax(dim=1) <= 0)
        if not report(int(done.sum())):
            break  # cancelled; the caller raises
        if bool(done.any()):
            active = active[~done]
    ids = None
    if Kc:
        # Pixels that went through a selection: restore front-to-back order (depth rank).
        fix = torch.nonzero(mixed.view(-1)).squeeze(1)
        if len(fix):
            r = top_r.view(-1, Kc)[fix]
            r, perm = torch.sort(r, dim=1)
            top_r.view(-1, Kc)[fix] = r
            top_w.view(-1, Kc)[fix] = torch.gather(top_w.view(-1, Kc)[fix], 1, perm)
        ids = tb.scene_ids[top_r]  # [A, P, K] int32 scene index, -1 = empty
    return acc, top_w, ids


def _merge_topk(top_w: Tensor, top_r: Tensor, top_n: Tensor, mixed: Tensor, sel: Tensor, w: Tensor, gi: Tensor) -> None:
    """Merge a round's weights w [S, P, G] (Gaussian depth ranks gi [S, G]) into the running
    per-pixel top-K of tiles ``sel``: weights top_w [A, P, K], depth ranks top_r [A, P, K],
    filled-slot counts top_n [A, P], and ``mixed`` [A, P] marking pixels whose slots are no longer
    in front-to-back order (they went through a selection). All indexing is on flattened views
    (one linear index instead of three: fewer index computations and temporaries)."""
    S, P, G = w.shape
    K = top_w.shape[2]
    flat = torch.nonzero(w.view(-1)).squeeze(1)  # [E] positive weights, row-major
    if len(flat) == 0:
        return
    g_bits, p_bits = G.bit_length() - 1, P.bit_length() - 1  # G and P are powers of two
    row = flat >> g_bits  # [E] s * P + p, non-decreasing
    n_new = torch.bincount(row, minlength=S * P)  # [S*P]
    pix = (sel[:, None] * P + torch.arange(P, device=sel.device)).view(-1)  # [S*P] rows of top_*
    tn = top_n.view(-1)
    filled = tn[pix]
    total = filled + n_new
    fits = total <= K
    tw, tr = top_w.view(-1), top_r.view(-1)
    # Most pixels have fewer than K contributors in total: append their new weights in order
    # (front to back) without any selection.
    row_start = torch.cumsum(n_new, 0) - n_new
    base = pix * K + filled - row_start  # [S*P]: entry e of row r goes to flat slot base[r] + e
    e_fit = torch.nonzero(fits[row]).squeeze(1)
    if len(e_fit):
        rf = row[e_fit]
        lin = base[rf] + e_fit
        fe = flat[e_fit]
        tw[lin] = w.view(-1)[fe]
        tr[lin] = gi.view(-1)[((rf >> p_bits) << g_bits) + (fe & (G - 1))].to(tr.dtype)
    tn[pix] = torch.where(fits, total, K)
    # Pixels that overflow K: keep the K largest of (current K, this round's G).
    over = torch.nonzero(~fits).squeeze(1)
    if len(over) == 0:
        return
    rows = pix[over]
    tw2, tr2 = top_w.view(-1, K), top_r.view(-1, K)
    cand_w = torch.cat([tw2[rows], w.view(S * P, G)[over]], dim=1)  # [R, K+G]
    cand_r = torch.cat([tr2[rows], gi[over >> p_bits].to(tr.dtype)], dim=1)
    best_w, best = torch.topk(cand_w, K, dim=1, sorted=False)
    tw2[rows] = best_w
    tr2[rows] = torch.gather(cand_r, 1, best)
    mixed.view(-1)[rows] = True


def _empty_result(height: int, width: int, C: int, K: int, device: torch.device) -> RasterResult:
    z = torch.zeros(height, width, device=device)
    return RasterResult(
        values=torch.zeros(height, width, C, device=device),
        alpha=z,
        depth_sum=z.clone(),
        ids=torch.full((height, width, K), -1, dtype=torch.int32, device=device) if K else None,
        weights=torch.zeros(height, width, K, device=device) if K else None,
    )
