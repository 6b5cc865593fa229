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

How it is fast on a 2-core CPU (see /work/shared/paper/PERFORMANCE-NOTES.md):

- Gaussian/tile pairs (16x16 tiles) are expanded from each Gaussian's box and sorted (stable) by
  tile, with Gaussians pre-sorted by depth, so each tile's list is front to back.
- All unfinished tiles advance together in rounds; each round takes the next ``G`` Gaussians of
  each tile (padded with a transparent sentinel). The exponent for every pixel x Gaussian of the
  round is one batched matmul of per-pixel polynomial terms ``[x^2, xy, y^2, x, y, 1]`` (tile-local,
  centred coordinates) against per-Gaussian conic coefficients with ``-log(opacity)`` folded into
  the constant, so ``alpha = exp(-power)`` directly. The exponent is clamped before ``exp``
  (``exp`` of very negative numbers is ~10x slower on CPU).
- Transmittance within a round is a cumulative product; the 1e-4 stop is a threshold on it.
- As tiles finish (list exhausted or all pixels saturated) ``G`` grows, so the work per round and
  the memory stay bounded by ``budget`` elements.
- Top-K contributors are merged per round only for pixels where a new weight beats the current
  K-th.

Everything here runs under ``torch.no_grad()``: geometry is frozen in Click-Gaussian; gradients
with respect to rendered values go through :func:`engine.render.blend`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .gaussians import covariance_from_quat_scale

TILE = 16
ALPHA_MAX = 0.99  # 3DGS (Inria) clamp; gsplat's CUDA kernels use 0.999
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
EPS2D = 0.3
EXTENT_SIGMA = 3.33  # gsplat's box half-size in standard deviations
_POWER_LO = -math.log(ALPHA_MAX)  # exponent below this means alpha > ALPHA_MAX
_POWER_HI = 6.0  # exp(-6) < 1/255: clamping here changes nothing and keeps exp fast
_SENTINEL_POWER = 1.0e4


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


def _tile_pairs(proj: Projection, tiles_x: int, tiles_y: int) -> tuple[Tensor, Tensor, Tensor]:
    """Gaussian/tile pairs sorted by (tile, depth).

    Returns (order [M] int64 depth order of projection rows, gauss [P] int64 depth-rank of each
    pair sorted by tile then depth, tile_counts [tiles] int64)."""
    order = torch.argsort(proj.depths, stable=True)
    m2d = proj.means2d[order]
    rad = proj.radii[order].float()
    x0 = torch.floor((m2d[:, 0] - rad[:, 0]) / TILE).clamp(0, tiles_x - 1).long()
    x1 = torch.floor((m2d[:, 0] + rad[:, 0]) / TILE).clamp(0, tiles_x - 1).long()
    y0 = torch.floor((m2d[:, 1] - rad[:, 1]) / TILE).clamp(0, tiles_y - 1).long()
    y1 = torch.floor((m2d[:, 1] + rad[:, 1]) / TILE).clamp(0, tiles_y - 1).long()
    wx = x1 - x0 + 1
    counts = wx * (y1 - y0 + 1)
    total = int(counts.sum())
    dev = order.device
    gauss = torch.repeat_interleave(torch.arange(len(order), device=dev), counts, output_size=total)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=dev) - torch.repeat_interleave(starts, counts, output_size=total)
    wxg = wx[gauss]
    tile = (y0[gauss] + local // wxg) * tiles_x + x0[gauss] + local % wxg
    tile_sorted, perm = torch.sort(tile, stable=True)
    tile_counts = torch.bincount(tile_sorted, minlength=tiles_x * tiles_y)
    return order, gauss[perm], tile_counts


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
) -> RasterResult:
    """Alpha-blend projected Gaussians into a ``height x width`` image, tile by tile.

    Args:
        proj: from :func:`project`.
        values: [N, C] float values per scene Gaussian (C may be 0 / None for alpha, depth and
            contributors only).
        contributors_k: keep the K largest weights per pixel (0 = none).
        budget: Gaussian-tile slots per batched step (memory ~ budget * 256 * 4 bytes per
            temporary; 8192 -> 8 MiB).
        progress: called with the fraction of tiles finished.
    """
    device = proj.means2d.device
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    n_tiles = tiles_x * tiles_y
    P = TILE * TILE
    C = 0 if values is None else int(values.shape[1])
    M = len(proj)
    Kc = int(contributors_k)

    # Per-Gaussian tables in depth order, plus a transparent sentinel at index M.
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

    # Pixel polynomial terms in tile-local coordinates centred on the tile (|x|, |y| <= 8).
    lin = torch.arange(P, device=device)
    px = (lin % TILE).float() + 0.5 - TILE / 2
    py = (lin // TILE).float() + 0.5 - TILE / 2
    terms = torch.stack([px * px, px * py, py * py, px, py, torch.ones_like(px)], dim=0)  # [6, P]

    tile_starts = torch.cumsum(tile_counts, 0) - tile_counts
    tiles = torch.nonzero(tile_counts).squeeze(1)  # tiles with any Gaussian
    A = len(tiles)
    t_start = tile_starts[tiles]
    t_count = tile_counts[tiles]
    t_cx = (tiles % tiles_x).float() * TILE + TILE / 2
    t_cy = (tiles // tiles_x).float() * TILE + TILE / 2
    pos = torch.zeros(A, dtype=torch.long, device=device)
    trans = torch.ones(A, P, device=device)
    acc = torch.zeros(A, P, vals.shape[1], device=device)
    if Kc:
        top_w = torch.zeros(A, P, Kc, device=device)
        top_r = torch.full((A, P, Kc), M, dtype=torch.long, device=device)  # depth rank, M = empty
        top_n = torch.zeros(A, P, dtype=torch.long, device=device)
    active = torch.arange(A, device=device)
    max_g = 1024
    while len(active):
        g = int(min(max_g, max(32, budget // len(active))))
        step = max(1, budget // g)
        for s0 in range(0, len(active), step):
            sel = active[s0 : s0 + step]
            ar = torch.arange(g, device=device)
            idx = t_start[sel, None] + pos[sel, None] + ar  # [S, G]
            ok = (pos[sel, None] + ar) < t_count[sel, None]
            gi = torch.where(ok, gauss[idx.clamp(max=len(gauss) - 1)], M)  # [S, G] depth ranks
            dx = mx[gi] - t_cx[sel, None]
            dy = my[gi] - t_cy[sel, None]
            a, b, c = ca[gi], cb[gi], cc[gi]
            coef = torch.stack(
                [
                    0.5 * a,
                    b,
                    0.5 * c,
                    -(a * dx + b * dy),
                    -(c * dy + b * dx),
                    0.5 * a * dx * dx + b * dx * dy + 0.5 * c * dy * dy + lo[gi],
                ],
                dim=1,
            )  # [S, 6, G]
            power = torch.matmul(terms.T, coef)  # [S, P, G]
            alpha = power.clamp_(_POWER_LO, _POWER_HI).neg_().exp_()
            alpha = torch.nn.functional.threshold_(alpha, ALPHA_MIN - 1e-12, 0.0)
            one_m = torch.sub(1.0, alpha)
            t_incl = torch.cumprod(one_m, dim=2).mul_(trans[sel, :, None])
            t_incl = torch.nn.functional.threshold_(t_incl, T_MIN, 0.0)  # stop where T <= 1e-4
            w = alpha.mul_(t_incl).div_(one_m)  # alpha * T_before, 0 after the stop
            trans[sel] = t_incl[:, :, -1]
            acc[sel] += torch.bmm(w, vals[gi])
            if Kc:
                _merge_topk(top_w, top_r, top_n, sel, w, gi)
            pos[sel] += g
        done = (pos[active] >= t_count[active]) | (trans[active].amax(dim=1) <= 0)
        active = active[~done]
        if progress is not None:
            progress(1.0 - len(active) / max(A, 1))

    full = torch.zeros(n_tiles, P, vals.shape[1], device=device)
    full[tiles] = acc
    img = _untile(full, tiles_x, tiles_y, width, height)  # [H, W, C+2]
    ids = weights = None
    if Kc:
        # Order each pixel's kept contributors front to back (depth rank ascending, empty last).
        top_r = torch.where(top_w > 0, top_r, M)
        top_r, perm = torch.sort(top_r, dim=2)
        top_w = torch.gather(top_w, 2, perm)
        ful_r = torch.full((n_tiles, P, Kc), M, dtype=torch.long, device=device)
        ful_w = torch.zeros(n_tiles, P, Kc, device=device)
        ful_r[tiles] = top_r
        ful_w[tiles] = top_w
        ids = scene_ids[_untile(ful_r, tiles_x, tiles_y, width, height)].int()
        weights = _untile(ful_w, tiles_x, tiles_y, width, height)
    return RasterResult(values=img[..., :C], alpha=img[..., C + 1], depth_sum=img[..., C], ids=ids, weights=weights)


def _merge_topk(top_w: Tensor, top_r: Tensor, top_n: Tensor, sel: Tensor, w: Tensor, gi: Tensor) -> None:
    """Merge a round's weights w [S, P, G] (Gaussian depth ranks gi [S, G]) into the running
    per-pixel top-K (top_w, top_r [A, P, K], filled-slot counts top_n [A, P]) of tiles ``sel``."""
    K = top_w.shape[2]
    filled = top_n[sel]  # [S, P] slots in use
    nz = w > 0  # [S, P, G]
    n_new = nz.sum(dim=2)  # [S, P]
    fits = (filled + n_new) <= K
    # Most pixels have fewer than K contributors in total: append their new weights in order
    # (front to back) without any selection.
    app = (nz & fits[:, :, None]).nonzero()  # [E, 3] (tile-in-batch, pixel, g), row-major
    if len(app):
        s_i, p_i, g_i = app.unbind(1)
        rank_in_row = torch.cumsum(nz, dim=2)[s_i, p_i, g_i] - 1
        slot = filled[s_i, p_i] + rank_in_row
        rows = sel[s_i]
        top_w[rows, p_i, slot] = w[s_i, p_i, g_i]
        top_r[rows, p_i, slot] = gi[s_i, g_i]
        top_n[sel] = torch.where(fits, filled + n_new, filled)
    # Pixels that overflow K: merge by weight, only where a new weight beats the current K-th.
    over = ~fits
    if not bool(over.any()):
        return
    cur_w = top_w[sel]  # [S, P, K]
    kth = torch.where(filled >= K, cur_w.amin(dim=2), 0.0)
    need = (over & (w.amax(dim=2) > kth)).nonzero()  # [R, 2] (tile-in-batch, pixel)
    top_n[sel] = torch.where(over, K, top_n[sel])
    if len(need) == 0:
        return
    si, pi = need[:, 0], need[:, 1]
    cand_w = torch.cat([cur_w[si, pi], w[si, pi]], dim=1)  # [R, K+G]
    cand_r = torch.cat([top_r[sel[si], pi], gi[si]], dim=1)
    best_w, best = torch.topk(cand_w, K, dim=1, sorted=False)
    rows = sel[si]
    top_w[rows, pi] = best_w
    top_r[rows, pi] = torch.gather(cand_r, 1, best)


def _untile(t: Tensor, tiles_x: int, tiles_y: int, width: int, height: int) -> Tensor:
    """[tiles, 256, ...] in tile-major, row-major-within-tile order -> [H, W, ...]."""
    rest = t.shape[2:]
    img = t.reshape(tiles_y, tiles_x, TILE, TILE, *rest).transpose(1, 2)
    return img.reshape(tiles_y * TILE, tiles_x * TILE, *rest)[:height, :width].contiguous()


def _empty_result(height: int, width: int, C: int, K: int, device: torch.device) -> RasterResult:
    z = torch.zeros(height, width, device=device)
    return RasterResult(
        values=torch.zeros(height, width, C, device=device),
        alpha=z,
        depth_sum=z.clone(),
        ids=torch.full((height, width, K), -1, dtype=torch.int32, device=device) if K else None,
        weights=torch.zeros(height, width, K, device=device) if K else None,
    )
