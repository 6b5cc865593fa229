"""Every Click-Gaussian loss term (``../shared/paper/METHOD.md``), with its published constants.

Notation: P sampled pixels of one view, rendered features ``F`` [P, 24] = [coarse 12 | fine' 12];
per-pixel segment IDs ``seg_c``, ``seg_f`` [P] int64 (view-local, -1 = unassigned: such pixels
are left out of the contrastive terms of that level, and |P| counts only the assigned ones).
Per-Gaussian features ``f`` [N, 24]. All cosine similarities are of L2-normalised vectors.

Fast paths (measured in ``engine/bench/train.py``):
- the positive contrastive term needs no pairs: for unit vectors n_p,
  sum_{p1,p2 in S} n_p1 . n_p2 = ||sum_{p in S} n_p||^2, so it is exact in O(P d);
- the hinged negative term is a fused autograd Function over row blocks (:class:`HingedPairSum`):
  value and gradient in one pass, no P x P matrix kept; on the CPU the trainer uses its unbiased
  column-sampled estimate (:func:`negative_pair_loss` with ``columns``, :class:`HingedColumnSum`);
- GFL, the 3D norm and the spatial term have closed-form gradients (autograd Functions), the
  spatial term over every Gaussian one sparse product with the neighbour matrix.
Each has a direct-formula twin (``*_reference``) that the tests compare against.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from typing import Any

import torch
import torch.nn.functional as F

COARSE_DIM = 12
MARGIN_COARSE = 0.5  # m_coarse (paper)
MARGIN_FINE = 0.75  # m_fine (paper)
GFL_POS_THRESHOLD = 0.9  # tau (paper)
RADIUS_COARSE = 1.0  # 2D-norm target radius, coarse (paper)
RADIUS_FINE = math.sqrt(2.0)  # 2D-norm target radius, fine 24-d = concat of two unit halves (paper)
_EPS = 1e-8


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` [M, D] L2-normalised (differentiable; zero rows stay ~zero)."""
    return F.normalize(x, dim=-1, eps=_EPS)


def fine_feature(f: torch.Tensor, *, use_prior: bool = True, detach_coarse: bool = False) -> torch.Tensor:
    """The fine-level feature [M, 24] of features ``f`` [M, 24] ([coarse | fine']).

    With the granularity prior it is ``concat(f_c, f_f')`` (optionally with the coarse half
    detached, for the fine negative term); without it (ablation) the coarse half is zeroed, so the
    fine level is learned from ``f_f'`` alone, independently of the coarse level."""
    c, p = f[:, :COARSE_DIM], f[:, COARSE_DIM:]
    if not use_prior:
        return torch.cat([torch.zeros_like(c), p], dim=1)
    if detach_coarse:
        c = c.detach()
    return torch.cat([c, p], dim=1)


# ----------------------------------------------------------------------------- contrastive
def positive_pair_loss(n: torch.Tensor, seg: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """L_pos of one level: -(1/|P|^2) sum_{p1,p2} [M(p1) == M(p2)] S(p1,p2), exact in O(P d).

    n: [P, D] unit rendered features; seg: [P] int64 segment IDs >= 0 (unassigned removed);
    weights: [P] optional multiplicities (a pixel drawn c times counts as c pixels; |P| = sum)."""
    p = n.shape[0]
    if p == 0:
        return n.sum() * 0.0
    _, inv = torch.unique(seg, return_inverse=True)
    sums = torch.zeros(int(inv.max()) + 1, n.shape[1], dtype=n.dtype, device=n.device)
    if weights is None:
        sums = sums.index_add(0, inv, n)
        total = float(p)
    else:
        sums = sums.index_add(0, inv, n * weights[:, None].to(n.dtype))
        total = float(weights.sum())
    return -(sums * sums).sum() / (total * total)


def positive_pair_loss_reference(n: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """Direct P x P formula of :func:`positive_pair_loss` (tests only)."""
    s = n @ n.T
    same = (seg[:, None] == seg[None, :]).to(n.dtype)
    return -(same * s).sum() / float(n.shape[0] ** 2)


def pair_workers(device: torch.device, p: int) -> int:
    """Threads for :class:`HingedPairSum`: 2 on a multi-core CPU for P >= 2048, else 1."""
    if device.type != "cpu" or p < 2048:
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def _dealt_to_threads(run: Any, starts: list[int], workers: int) -> list[Any]:
    """``[run(starts[i::workers]) for i in range(workers)]``, each in its own Python thread with
    one torch thread (blocks dealt alternately, so a triangle's work is balanced).

    Why threads and not torch's OpenMP: the GIL is released inside the ops, and on a shared
    2-core CPU OpenMP's barriers stall whenever another process holds a core."""
    parts: list[Any] = [None] * workers

    def work(i: int) -> None:
        torch.set_num_threads(1)
        parts[i] = run(starts[i::workers])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any(x is None for x in parts):
        raise RuntimeError("a pair-loss worker failed")
    return parts


def _hinged_blocks(
    nd: torch.Tensor, m: torch.Tensor, bounds: list[tuple[int, int]], margin: float, block: int, starts: list[int]
) -> tuple[float, torch.Tensor]:
    """The row blocks ``starts`` of :class:`HingedPairSum`: (value, un-scaled gradient g)."""
    p = nd.shape[0]
    grad = torch.zeros_like(nd)
    total = 0.0
    keep_buf = torch.empty(min(block, p) * p, dtype=nd.dtype, device=nd.device)
    seg_starts = [b[0] for b in bounds]
    import bisect

    for r0 in starts:
        r1 = min(r0 + block, p)
        b = r1 - r0
        s = nd[r0:r1] @ nd[r0:].T  # [b, P - r0]
        j = max(0, bisect.bisect_right(seg_starts, r0) - 1)
        while j < len(bounds) and bounds[j][0] < r1:
            a, e = bounds[j]
            if e > r0:
                s[max(a, r0) - r0 : min(e, r1) - r0, max(a, r0) - r0 : e - r0] = 0.0
            j += 1
        keep = keep_buf[: s.numel()].view(s.shape)
        torch.gt(s, margin, out=keep)
        g_rows = keep @ m[r0:]  # [b, D]
        whole = float((m[r0:r1] * g_rows).sum())
        diag = float((m[r0:r1] * (keep[:, :b] @ m[r0:r1])).sum())
        total += 2.0 * whole - diag
        grad[r0:r1] += g_rows
        if r1 < p:
            grad[r1:] += keep[:, b:].T @ m[r0:r1]
    return total, grad


class HingedPairSum(torch.autograd.Function):
    """sum_{p1 != p2: seg differs, S > margin} c_p1 c_p2 S(p1, p2) (ordered pairs) for unit rows
    ``n`` [P, D] sorted by segment, multiplicities ``c`` [P], and ``bounds`` [(start, end), ...]
    the row range of each segment.

    Forward walks the upper triangle in row blocks (S is symmetric, so half the work):
    S_b = n_b @ n_{r0:}^T, the same-segment band (a contiguous column range per segment thanks to
    the sorting) set to 0, which is below every margin > 0; keep = [S_b > margin]; with m = c n,
    g_rows += keep @ m, g_cols += keep^T @ m_b; value += 2 <m_b, g_rows_b> - <diagonal block>
    (the value comes from the gradient matmul: no extra pass). d value / d n_i = 2 c_i g_i.
    The gradient is kept for backward ([P, D]); no P x P matrix ever exists, and a block
    ([block, P] float32) stays in cache, unlike full row blocks or autograd over the P x P
    matrix (``python -m engine.bench train`` compares them)."""

    @staticmethod
    def forward(ctx, n: torch.Tensor, c: torch.Tensor, bounds: list[tuple[int, int]], margin: float, block: int):  # type: ignore[override]
        if margin <= 0:
            raise ValueError("HingedPairSum needs a positive margin")
        p = n.shape[0]
        nd = n.detach().contiguous()
        cw = c.detach().to(nd.dtype)
        m = nd * cw[:, None]
        starts = list(range(0, p, block))
        workers = pair_workers(nd.device, p)
        if workers == 1:
            total, grad = _hinged_blocks(nd, m, bounds, margin, block, starts)
        else:
            parts = _dealt_to_threads(lambda mine: _hinged_blocks(nd, m, bounds, margin, block, mine), starts, workers)
            total = sum(x[0] for x in parts)
            grad = parts[0][1]
            for x in parts[1:]:
                grad += x[1]
        grad.mul_(2.0 * cw[:, None])
        ctx.save_for_backward(grad)
        return torch.tensor(total, dtype=n.dtype, device=n.device)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * g, None, None, None, None


def _hinged_rect_blocks(
    nr: torch.Tensor, nc: torch.Tensor, mc: torch.Tensor, col_bounds: list[tuple[int, int, int, int]],
    margin: float, block: int, starts: list[int],
) -> torch.Tensor:
    """The row blocks ``starts`` of :class:`HingedColumnSum`: g = keep @ mc for those rows
    ([P, D], zero elsewhere)."""
    import bisect

    p = nr.shape[0]
    g_rows = torch.zeros_like(nr)
    keep_buf = torch.empty(min(block, p) * nc.shape[0], dtype=nr.dtype, device=nr.device)
    seg_starts = [b[0] for b in col_bounds]
    for r0 in starts:
        r1 = min(r0 + block, p)
        s = nr[r0:r1] @ nc.T  # [b, Q]
        j = max(0, bisect.bisect_right(seg_starts, r0) - 1)
        while j < len(col_bounds) and col_bounds[j][0] < r1:
            a, e, ca, ce = col_bounds[j]
            if e > r0 and ce > ca:
                s[max(a, r0) - r0 : min(e, r1) - r0, ca:ce] = 0.0
            j += 1
        keep = keep_buf[: s.numel()].view(s.shape)
        torch.gt(s, margin, out=keep)
        torch.mm(keep, mc, out=g_rows[r0:r1])
    return g_rows


class HingedColumnSum(torch.autograd.Function):
    """sum_{i, j: seg differs, S > margin} c_i c'_j S(i, j) between every row ``n`` [P, D] (unit,
    sorted by segment, multiplicities ``c`` [P]) and the columns ``n[cols]`` ([Q] indices into the
    rows, ascending, multiplicities ``cc`` [Q]): the rectangular twin of :class:`HingedPairSum`
    for the column-sampled estimate (:func:`negative_pair_loss` with ``columns``).

    ``bounds`` [(start, end, col_start, col_end), ...] give each segment's row range and the
    range of its columns (both contiguous thanks to the sorting); that band of every row block is
    set to 0 (below every margin > 0). With mc = cc n[cols], keep = [S > margin], g = keep @ mc:
    value = sum_i c_i n_i . g_i, and the gradient handed back is 2 c_i g_i: the rows' part of the
    derivative, doubled. Why doubled: in the exact symmetric sum every pixel is a row and a
    column alike, so its derivative is twice its row part; E[row part of the estimate] is the
    exact row part, so 2 c_i g_i is an unbiased estimate of the exact gradient. It is also the
    lower-variance choice: a pixel's column part would be non-zero only when it is one of the Q
    columns (then |P|/Q times too large), and skipping it saves one of three products."""

    @staticmethod
    def forward(ctx, n: torch.Tensor, c: torch.Tensor, cols: torch.Tensor, cc: torch.Tensor,  # type: ignore[override]
                bounds: list[tuple[int, int, int, int]], margin: float, block: int):
        if margin <= 0:
            raise ValueError("HingedColumnSum needs a positive margin")
        p = n.shape[0]
        nd = n.detach().contiguous()
        cw = c.detach().to(nd.dtype)
        nc = nd[cols]
        mc = nc * cc.detach().to(nd.dtype)[:, None]
        starts = list(range(0, p, block))
        # as many pairs as the triangle of sqrt(2 P Q) rows: the same threading rule
        workers = pair_workers(nd.device, int(math.sqrt(2.0 * p * nc.shape[0])))
        if workers == 1:
            g = _hinged_rect_blocks(nd, nc, mc, bounds, margin, block, starts)
        else:
            parts = _dealt_to_threads(lambda mine: _hinged_rect_blocks(nd, nc, mc, bounds, margin, block, mine),
                                      starts, workers)
            g = parts[0]
            for x in parts[1:]:
                g += x
        g.mul_(cw[:, None])
        total = float((nd * g).sum())
        ctx.save_for_backward(g.mul_(2.0))
        return torch.tensor(total, dtype=n.dtype, device=n.device)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * g, None, None, None, None, None, None


def sample_columns(c: torch.Tensor, q: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Multiplicities [P] (int64) of ``q`` draws taken without replacement from the ``sum(c)``
    draws that the multiplicities ``c`` [P] (int, >= 1) stand for: each draw of the pixel sample
    is a column with probability q / sum(c), so E[result] = c q / sum(c) exactly."""
    ends = torch.cumsum(c.long(), 0)  # draw t belongs to the pixel whose range holds it
    pick = torch.randperm(int(ends[-1]), generator=generator, device=c.device)[:q]
    return torch.bincount(torch.searchsorted(ends, pick, right=True), minlength=c.shape[0])


def negative_pair_loss(
    n: torch.Tensor, seg: torch.Tensor, margin: float, weights: torch.Tensor | None = None, *, block: int = 128,
    columns: int = 0, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_neg of one level: (1/|P|^2) sum_{p1,p2} [M(p1) != M(p2)] [S > m] S, fused (see
    :class:`HingedPairSum`). n: [P, D] unit rendered features; seg: [P] int64 IDs >= 0;
    weights: [P] optional integer multiplicities (|P| = their sum).

    ``columns`` Q > 0 (ours, a CPU speed-up): when |P| > Q, every pixel is compared with Q
    columns only, drawn without replacement from the |P| sampled pixels (:func:`sample_columns`,
    with ``generator``), and the sum is scaled by |P| / Q:
    L_neg ~= (1/(|P| Q)) sum_{p1 in P} sum_{p2 in columns} [M(p1) != M(p2)] [S > m] S.
    Each of the |P| draws is a column with probability Q/|P|, so the estimate's expectation is
    the paper's term exactly; the gradient used is an unbiased estimate of the exact term's
    gradient too (:class:`HingedColumnSum`: twice the rows' part; the hinge's indicator is
    piecewise constant). It is the paper's term itself, value and gradient, when |P| <= Q. The
    cost is O(|P| Q d) instead of O(|P|^2 d); the extra noise is like that of the pixel sampling
    the paper already does (each pixel is pushed away from Q sampled negatives instead of all
    |P|). ``columns`` 0: the exact term."""
    p = n.shape[0]
    if p == 0:
        return n.sum() * 0.0
    if weights is None:
        c = torch.ones(p, dtype=torch.long, device=n.device)
    else:
        c = weights
    size = float(c.sum())
    order = torch.argsort(seg, stable=True)
    seg_sorted = seg[order]
    change = torch.nonzero(seg_sorted[1:] != seg_sorted[:-1]).flatten() + 1
    edges = [0] + change.tolist() + [p]
    bounds = list(zip(edges[:-1], edges[1:]))
    c_sorted = c[order]
    if columns <= 0 or size <= columns:
        total = HingedPairSum.apply(n[order], c_sorted.to(n.dtype), bounds, float(margin), int(block))
        return total / (size * size)
    if weights is not None and (weights.dtype.is_floating_point or bool((weights < 1).any())):
        raise ValueError("the column-sampled negative term needs integer multiplicities >= 1")
    cc = sample_columns(c_sorted, int(columns), generator)
    cols = torch.nonzero(cc).flatten()  # ascending: sorted by segment like the rows
    col_edges = torch.searchsorted(cols, torch.tensor(edges, device=cols.device)).tolist()
    rect = [(a, e, col_edges[k], col_edges[k + 1]) for k, (a, e) in enumerate(bounds)]
    total = HingedColumnSum.apply(n[order], c_sorted.to(n.dtype), cols, cc[cols], rect, float(margin), int(block))
    return total / (size * float(columns))


def negative_pair_loss_reference(n: torch.Tensor, seg: torch.Tensor, margin: float) -> torch.Tensor:
    """Direct P x P formula of :func:`negative_pair_loss` (tests only)."""
    s = n @ n.T
    diff = seg[:, None] != seg[None, :]
    keep = (diff & (s > margin)).to(n.dtype)
    return (keep * s).sum() / float(n.shape[0] ** 2)


def contrastive_loss(
    rendered: torch.Tensor,
    seg_c: torch.Tensor,
    seg_f: torch.Tensor,
    *,
    use_prior: bool = True,
    margin_coarse: float = MARGIN_COARSE,
    margin_fine: float = MARGIN_FINE,
    weights: torch.Tensor | None = None,
    block: int = 128,
    reference: bool = False,
    neg_columns: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_pos, L_neg) summed over both levels; the caller forms L_cont = L_pos + 0.1 L_neg.

    rendered: [P, 24] rendered features of sampled pixels; seg_c, seg_f: [P] int64 (-1 ignored).
    The fine negative term uses concat(sg(F_c), F_f'): it cannot push the coarse half apart.
    weights: [P] optional pixel multiplicities (pixels drawn several times are passed once with
    their count: exactly the same losses, fewer pairs). ``reference=True`` uses the direct
    P x P formulas (tests; no weights). ``neg_columns`` Q > 0: each level's negative term is the
    unbiased column-sampled estimate (:func:`negative_pair_loss`, columns drawn with
    ``generator``); 0: exact."""
    if reference and weights is not None:
        raise ValueError("the reference formulas take no weights")
    pos = rendered.sum() * 0.0
    neg = rendered.sum() * 0.0
    for level, seg, margin in (("coarse", seg_c, margin_coarse), ("fine", seg_f, margin_fine)):
        ok = seg >= 0
        if not bool(ok.any()):
            continue
        r, s = rendered[ok], seg[ok]
        w = None if weights is None else weights[ok]
        if level == "coarse":
            f_pos = f_neg = r[:, :COARSE_DIM]
        else:
            f_pos = fine_feature(r, use_prior=use_prior)
            f_neg = fine_feature(r, use_prior=use_prior, detach_coarse=True)
        if reference:
            pos = pos + positive_pair_loss_reference(unit(f_pos), s)
            neg = neg + negative_pair_loss_reference(unit(f_neg), s, margin)
        else:
            pos = pos + positive_pair_loss(unit(f_pos), s, w)
            neg = neg + negative_pair_loss(unit(f_neg), s, margin, w, block=block, columns=neg_columns,
                                           generator=generator)
    return pos, neg


# ----------------------------------------------------------------------------- GFL
class _GflLevel(torch.autograd.Function):
    """(pos, neg) of :func:`gfl_loss_level` with their gradients in closed form: with
    cos = unit(f) @ centers^T, d pos/dcos[i, c] = -(1/M) [c = c_i][cos > tau] and
    d neg/dcos[i, c] = (1/(M C)) [c != c_i][cos > m] (the indicators are piecewise constant), so
    dL/df = unit-backward(dL/dcos @ centers): two products and a few [M, C] passes, where
    autograd over the formula makes a dozen passes and a scatter for the max."""

    @staticmethod
    def forward(ctx, fl: torch.Tensor, centers: torch.Tensor, margin: float):  # type: ignore[override]
        m, c = fl.shape[0], centers.shape[0]
        fd = fl.detach()
        norms = torch.linalg.vector_norm(fd, dim=1)
        u = fd / norms.clamp_min(_EPS)[:, None]
        cos = u @ centers.T  # [M, C]
        best, ci = cos.max(dim=1)
        hit = (best > GFL_POS_THRESHOLD).to(cos.dtype)
        pos = -torch.dot(best, hit) / m
        others = torch.gt(cos, margin, out=torch.empty_like(cos))  # 0/1 in cos's dtype: one pass
        others.scatter_(1, ci[:, None], 0.0)  # the own cluster is not a negative
        neg = torch.dot(cos.view(-1), others.view(-1)) / (m * c)
        ctx.save_for_backward(u, norms, others, ci, hit, centers)
        return pos, neg

    @staticmethod
    def backward(ctx, g_pos: torch.Tensor, g_neg: torch.Tensor):  # type: ignore[override]
        u, norms, others, ci, hit, centers = ctx.saved_tensors
        m, c = others.shape
        g = others * (g_neg / (m * c))
        g.scatter_(1, ci[:, None], (hit * (-g_pos / m))[:, None])
        return _unit_backward(u, norms, g @ centers), None, None


def gfl_loss_level(fl: torch.Tensor, centers: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_gfl_pos, L_gfl_neg) of one level for per-Gaussian level features ``fl`` [M, D] and unit
    global cluster centres ``centers`` [C, D] (C >= 1):

    c_i = argmax_c cos(f_i, g_c);
    pos = -(1/M) sum_i [cos(f_i, g_ci) > 0.9] cos(f_i, g_ci);
    neg = (1/M) sum_i (1/C) sum_{c != c_i} [cos(f_i, g_c) > m] cos(f_i, g_c).

    Fused with closed-form gradients (:class:`_GflLevel`); :func:`gfl_loss_level_reference`
    is the formula under autograd."""
    if fl.shape[0] == 0 or centers.shape[0] == 0:
        z = fl.sum() * 0.0
        return z, z
    return _GflLevel.apply(fl.contiguous(), centers.to(fl.dtype), float(margin))


def gfl_loss_level_reference(fl: torch.Tensor, centers: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_gfl_pos, L_gfl_neg) of :func:`gfl_loss_level` by the direct formula (tests only)."""
    m, c = fl.shape[0], centers.shape[0]
    if m == 0 or c == 0:
        z = fl.sum() * 0.0
        return z, z
    cos = unit(fl) @ centers.T  # [M, C]
    best, ci = cos.max(dim=1)
    pos = -(best * (best.detach() > GFL_POS_THRESHOLD)).sum() / m
    others = torch.ones_like(cos, dtype=torch.bool)
    others[torch.arange(m, device=fl.device), ci] = False
    neg = (cos * (others & (cos.detach() > margin))).sum() / (m * c)
    return pos, neg


def gfl_loss(
    f: torch.Tensor,
    centers_c: torch.Tensor | None,
    centers_f: torch.Tensor | None,
    *,
    use_prior: bool = True,
    margin_coarse: float = MARGIN_COARSE,
    margin_fine: float = MARGIN_FINE,
) -> torch.Tensor:
    """L_gfl = sum over levels of (L_gfl_pos + L_gfl_neg); f: [M, 24] per-Gaussian features,
    centres: [Cc, 12] and [Cf, 24] unit (a level without clusters contributes 0)."""
    total = f.sum() * 0.0
    if centers_c is not None and len(centers_c):
        pos, neg = gfl_loss_level(f[:, :COARSE_DIM], centers_c, margin_coarse)
        total = total + pos + neg
    if centers_f is not None and len(centers_f):
        # with the prior the fine feature [f_c | f_f'] is f itself: no copy
        fine = f if use_prior else fine_feature(f, use_prior=False)
        pos, neg = gfl_loss_level(fine, centers_f, margin_fine)
        total = total + pos + neg
    return total


# ----------------------------------------------------------------------------- regularisers
def _unit_backward(u: torch.Tensor, norms: torch.Tensor, grad_u: torch.Tensor) -> torch.Tensor:
    """d/dx of :func:`unit` (x / max(||x||, eps)) given u = unit(x) [M, D], the raw row norms
    [M] and dL/du [M, D]: (g - u (u . g)) / ||x|| (just g / eps for rows shorter than eps)."""
    long_rows = (norms > _EPS).to(u.dtype)[:, None]
    radial = (u * grad_u).sum(1, keepdim=True) * long_rows
    return grad_u.sub_(u * radial).div_(norms.clamp_min(_EPS)[:, None])


class _Norm3d(torch.autograd.Function):
    """:func:`norm3d_loss` with its gradient in closed form: d/df_h (||f_h|| - 1)^2 / M =
    2 (1 - 1/||f_h||) f_h / M for each half h (one pass; autograd's would make ~10)."""

    @staticmethod
    def forward(ctx, f: torch.Tensor):  # type: ignore[override]
        halves = f.detach().view(f.shape[0], 2, COARSE_DIM)
        norms = torch.linalg.vector_norm(halves, dim=2)  # [M, 2]
        ctx.save_for_backward(f, norms)
        return ((norms - 1.0) ** 2).sum() / f.shape[0]

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        f, norms = ctx.saved_tensors
        coef = (1.0 - 1.0 / norms.clamp_min(_EPS)).mul_(2.0 * g / f.shape[0])  # [M, 2]
        return (f.detach().view(f.shape[0], 2, COARSE_DIM) * coef[:, :, None]).view(f.shape)


def norm3d_loss(f: torch.Tensor) -> torch.Tensor:
    """L_3d = (1/M) sum_i (||f_c|| - 1)^2 + (||f_f'|| - 1)^2 for features f [M, 24]: the coarse
    feature on the unit sphere, the 24-d fine feature on the sphere of radius sqrt(2)."""
    if f.shape[0] == 0:
        return f.sum() * 0.0
    return _Norm3d.apply(f.contiguous())


def norm3d_loss_reference(f: torch.Tensor) -> torch.Tensor:
    """:func:`norm3d_loss` by autograd over the direct formula (tests only)."""
    nc = f[:, :COARSE_DIM].norm(dim=1)
    nf = f[:, COARSE_DIM:].norm(dim=1)
    return ((nc - 1.0) ** 2 + (nf - 1.0) ** 2).mean()


def norm2d_loss(rendered: torch.Tensor, *, use_prior: bool = True, weights: torch.Tensor | None = None) -> torch.Tensor:
    """L_2d = mean over sampled pixels and both levels of (||F^l(p)|| - r_l)^2, r_coarse = 1,
    r_fine = sqrt(2) (1 without the granularity prior): a pixel's contributors must agree in
    direction for the blended feature to keep its length. rendered: [P, 24]; weights: [P]
    optional pixel multiplicities."""
    nc = rendered[:, :COARSE_DIM].norm(dim=1)
    nf = fine_feature(rendered, use_prior=use_prior).norm(dim=1)
    rf = RADIUS_FINE if use_prior else 1.0
    per = (nc - RADIUS_COARSE) ** 2 + (nf - rf) ** 2
    if weights is None:
        return 0.5 * per.mean()
    w = weights.to(per.dtype)
    return 0.5 * (per * w).sum() / w.sum()


class _Spatial(torch.autograd.Function):
    """:func:`spatial_loss` with its gradient in closed form. With u = unit(f), a_i = u_idx[i]
    and nsum_i = sum_k u_nbr[i, k]: L = -(1/(N_s K)) sum_i a_i . nsum_i, so
    dL/du = -(1/(N_s K)) (scatter of nsum_i to idx[i] + scatter of a_i to each nbr[i, k]), then
    through the normalisation (:func:`_unit_backward`). No [N_s, K, D] tensor and no sort (the
    embedding_bag backward sorts its indices)."""

    @staticmethod
    def forward(ctx, f: torch.Tensor, idx: torch.Tensor | None, nbr: torch.Tensor):  # type: ignore[override]
        fd = f.detach()
        norms = torch.linalg.vector_norm(fd, dim=1)
        u = fd / norms.clamp_min(_EPS)[:, None]
        nsum = F.embedding_bag(nbr, u, mode="sum")  # [N_s, D]: fused gather + sum
        a = u if idx is None else u[idx]
        ctx.save_for_backward(u, norms, nbr, nsum, a, idx)
        ctx.all_rows = idx is None
        return -(a * nsum).sum() / float(nbr.numel())

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        u, norms, nbr, nsum, a, idx = ctx.saved_tensors
        if ctx.all_rows:
            grad_u = nsum.clone()
        else:
            grad_u = torch.zeros_like(u).index_add_(0, idx, nsum)
        for k in range(nbr.shape[1]):
            grad_u.index_add_(0, nbr[:, k], a)
        grad_u.mul_(-g / float(nbr.numel()))
        return _unit_backward(u, norms, grad_u), None, None


class _SpatialAll(torch.autograd.Function):
    """:func:`spatial_loss` over every row, through the symmetric neighbour matrix
    B = A + A^T (:func:`spatial_adjacency`): sum_i u_i . sum_k u_nbr[i, k] = u . (A u) =
    (1/2) u . (B u), and d/du of it is B u, so one sparse product gives value and gradient."""

    @staticmethod
    def forward(ctx, f: torch.Tensor, adjacency: torch.Tensor, count: int):  # type: ignore[override]
        fd = f.detach()
        norms = torch.linalg.vector_norm(fd, dim=1)
        u = fd / norms.clamp_min(_EPS)[:, None]
        bu = adjacency @ u  # [N, D]
        ctx.save_for_backward(u, norms, bu)
        ctx.count = count
        return -0.5 * (u * bu).sum() / float(count)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        u, norms, bu = ctx.saved_tensors
        return _unit_backward(u, norms, bu * (-g / float(ctx.count))), None, None


def spatial_adjacency(neighbours: torch.Tensor) -> torch.Tensor:
    """B = A + A^T as a sparse CSR matrix [N, N] (values: how often a pair is linked) for the
    neighbour lists ``neighbours`` [N, K] of every row (A[i, j] = #k with neighbours[i, k] = j),
    for :func:`spatial_loss` over all rows."""
    n, k = neighbours.shape
    rows = torch.arange(n, device=neighbours.device).repeat_interleave(k)
    cols = neighbours.reshape(-1)
    both = torch.stack([torch.cat([rows, cols]), torch.cat([cols, rows])])
    vals = torch.ones(both.shape[1], dtype=torch.float32, device=neighbours.device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")  # "beta state" notices
        return torch.sparse_coo_tensor(both, vals, (n, n)).coalesce().to_sparse_csr()


def spatial_loss(
    f: torch.Tensor, idx: torch.Tensor, neighbours: torch.Tensor, adjacency: torch.Tensor | None = None
) -> torch.Tensor:
    """L_spatial = -(1/(N_s K)) sum_{i in sample} sum_{k in KNN(i)} cos(f_i, f_k) on the full
    24-d features. idx: [N_s] int64 sampled Gaussians; neighbours: [N_s, K] int64;
    ``adjacency``: :func:`spatial_adjacency` of ``neighbours``, used when the sample is every row
    of ``f`` in order (one sparse product instead of gathers and scatters)."""
    if idx.numel() == 0:
        return f.sum() * 0.0
    every = idx.numel() == f.shape[0] and _is_arange(idx)
    if every and adjacency is not None:
        return _SpatialAll.apply(f.contiguous(), adjacency.to(f.dtype), neighbours.numel())
    return _Spatial.apply(f.contiguous(), None if every else idx, neighbours)


def spatial_loss_reference(f: torch.Tensor, idx: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """:func:`spatial_loss` by autograd over the direct formula (tests only)."""
    u = unit(f)
    return -(u[idx][:, None, :] * u[neighbours]).sum() / float(neighbours.numel())


def _is_arange(idx: torch.Tensor) -> bool:
    return bool(torch.equal(idx, torch.arange(idx.numel(), device=idx.device)))
