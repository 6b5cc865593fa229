"""Every loss term against its direct formula on tiny inputs (values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.train import losses as L


def _seg(p: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, k, (p,), generator=g)


def _feat(p: int, d: int, seed: int, bias: float = 0.7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(p, d, generator=g, dtype=torch.float64) + bias).requires_grad_()


@pytest.mark.parametrize("p,k,seed", [(1, 1, 0), (7, 3, 1), (40, 5, 2), (97, 11, 3), (64, 1, 4)])
def test_positive_term_equals_pair_formula(p, k, seed):
    seg = _seg(p, k, seed)
    x = _feat(p, 12, seed)
    fast = L.positive_pair_loss(L.unit(x), seg)
    (gf,) = torch.autograd.grad(fast, x)
    ref = L.positive_pair_loss_reference(L.unit(x), seg)
    (gr,) = torch.autograd.grad(ref, x)
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(gf, gr)


@pytest.mark.parametrize("p,k,seed,block", [(2, 2, 0, 1), (9, 3, 1, 4), (50, 4, 2, 7), (130, 9, 3, 32), (33, 1, 5, 8)])
@pytest.mark.parametrize("margin", [0.5, 0.75])
def test_fused_negative_term_equals_pair_formula(p, k, seed, block, margin):
    seg = _seg(p, k, seed)
    x = _feat(p, 24, seed)
    fast = L.negative_pair_loss(L.unit(x), seg, margin, block=block)
    (gf,) = torch.autograd.grad(fast, x)
    ref = L.negative_pair_loss_reference(L.unit(x), seg, margin)
    (gr,) = torch.autograd.grad(ref, x)
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(gf, gr)
    if p >= 40 and k > 1:
        assert float(ref.detach()) > 0  # the case is not vacuous


def test_negative_term_ignores_same_segment_pairs():
    # all pixels identical and in one segment: no negative pairs at all
    x = torch.ones(10, 12, requires_grad=True)
    assert float(L.negative_pair_loss(L.unit(x), torch.zeros(10, dtype=torch.long), 0.5).detach()) == 0.0
    # two segments with identical features: every cross pair counts with S = 1
    seg = torch.tensor([0] * 4 + [1] * 6)
    v = L.negative_pair_loss(L.unit(x), seg, 0.5)
    assert math.isclose(float(v.detach()), 2 * 4 * 6 / 100, rel_tol=1e-6)


def test_contrastive_uses_published_margins_and_ignores_unassigned():
    p = 60
    seg_c, seg_f = _seg(p, 3, 7), _seg(p, 6, 8)
    seg_f[:10] = -1
    x = _feat(p, 24, 9, bias=0.3)
    pos, neg = L.contrastive_loss(x, seg_c, seg_f)
    ok = seg_f >= 0
    fine = x[ok]
    want_pos = L.positive_pair_loss_reference(L.unit(x[:, :12]), seg_c) + L.positive_pair_loss_reference(
        L.unit(fine), seg_f[ok]
    )
    want_neg = L.negative_pair_loss_reference(L.unit(x[:, :12]), seg_c, 0.5) + L.negative_pair_loss_reference(
        L.unit(fine), seg_f[ok], 0.75
    )
    torch.testing.assert_close(pos, want_pos)
    torch.testing.assert_close(neg, want_neg)
    rp, rn = L.contrastive_loss(x, seg_c, seg_f, reference=True)
    torch.testing.assert_close(rp, pos)
    torch.testing.assert_close(rn, neg)


def test_stop_gradient_blocks_coarse_half_in_fine_negative_term():
    p = 50
    seg_c = torch.zeros(p, dtype=torch.long)  # one coarse segment: coarse negative term is 0
    seg_f = _seg(p, 5, 11)
    x = _feat(p, 24, 12, bias=1.0)
    _, neg = L.contrastive_loss(x, torch.full_like(seg_c, -1), seg_f)
    assert float(neg) > 0
    (g,) = torch.autograd.grad(neg, x)
    assert torch.all(g[:, :12] == 0)  # no gradient into the coarse half
    assert g[:, 12:].abs().sum() > 0
    # without the stop-gradient the coarse half would receive gradient
    nf = L.negative_pair_loss_reference(L.unit(x), seg_f, 0.75)
    (g2,) = torch.autograd.grad(nf, x)
    assert g2[:, :12].abs().sum() > 0
    # the positive fine term does train the coarse half (granularity prior)
    pos, _ = L.contrastive_loss(x, torch.full_like(seg_c, -1), seg_f)
    (g3,) = torch.autograd.grad(pos, x)
    assert g3[:, :12].abs().sum() > 0


def test_without_prior_fine_level_ignores_coarse_half():
    p = 30
    seg_f = _seg(p, 4, 2)
    x = _feat(p, 24, 3)
    pos, neg = L.contrastive_loss(x, torch.full_like(seg_f, -1), seg_f, use_prior=False)
    (g,) = torch.autograd.grad(pos + neg, x)
    assert torch.all(g[:, :12] == 0)
    torch.testing.assert_close(pos, L.positive_pair_loss_reference(L.unit(x[:, 12:]), seg_f))


def _gfl_direct(f, centers, margin):
    m, c = f.shape[0], centers.shape[0]
    pos = 0.0
    neg = 0.0
    for i in range(m):
        cos = [float(torch.dot(f[i] / f[i].norm(), centers[k])) for k in range(c)]
        ci = max(range(c), key=lambda k: cos[k])
        if cos[ci] > 0.9:
            pos -= cos[ci]
        neg += sum(cos[k] for k in range(c) if k != ci and cos[k] > margin) / c
    return pos / m, neg / m


def test_gfl_terms_match_direct_formula():
    g = torch.Generator().manual_seed(5)
    centers = L.unit(torch.randn(4, 12, generator=g, dtype=torch.float64))
    # features near the centres so that both the 0.9 threshold and the margin are crossed
    f = centers[torch.randint(0, 4, (40,), generator=g)] + 0.08 * torch.randn(40, 12, generator=g, dtype=torch.float64)
    f[:5] = centers[0] + centers[1]  # between two clusters: negative term active
    pos, neg = L.gfl_loss_level(f, centers, 0.5)
    wp, wn = _gfl_direct(f, centers, 0.5)
    assert wp < 0 and wn > 0
    assert math.isclose(float(pos), wp, rel_tol=1e-9)
    assert math.isclose(float(neg), wn, rel_tol=1e-9)
    # the closed-form gradients against autograd over the formula, each term and a mix
    for wpos, wneg in ((1.0, 0.0), (0.0, 1.0), (2.0, -3.0)):
        x = f.clone().requires_grad_()
        p_, n_ = L.gfl_loss_level(x, centers, 0.5)
        (gf,) = torch.autograd.grad(wpos * p_ + wneg * n_, x)
        y = f.clone().requires_grad_()
        rp, rn = L.gfl_loss_level_reference(y, centers, 0.5)
        (gr,) = torch.autograd.grad(wpos * rp + wneg * rn, y)
        torch.testing.assert_close(gf, gr)
        assert float(gf.abs().sum()) > 0


def test_gfl_total_uses_fine_prior():
    g = torch.Generator().manual_seed(6)
    f = torch.randn(20, 24, generator=g, dtype=torch.float64)
    cc = L.unit(torch.randn(3, 12, generator=g, dtype=torch.float64))
    cf = L.unit(torch.randn(5, 24, generator=g, dtype=torch.float64))
    total = L.gfl_loss(f, cc, cf)
    want = sum(L.gfl_loss_level(f[:, :12], cc, 0.5)) + sum(L.gfl_loss_level(f, cf, 0.75))
    torch.testing.assert_close(total, want)
    assert float(L.gfl_loss(f, None, None)) == 0.0


def test_norm3d_radii():
    f = torch.zeros(2, 24, dtype=torch.float64)
    f[0, 0] = 1.0
    f[0, 12] = 1.0  # coarse radius 1, fine' radius 1 -> fine 24-d radius sqrt(2): loss 0
    f[1, :12] = 2.0 / math.sqrt(12)  # coarse norm 2, fine' norm 0
    assert math.isclose(float(L.norm3d_loss(f)), (0 + (1 + 1)) / 2, rel_tol=1e-9)
    assert math.isclose(float(L.fine_feature(f[:1]).norm()), math.sqrt(2), rel_tol=1e-9)


def test_norm2d_matches_direct_formula():
    x = _feat(9, 24, 4)
    v = L.norm2d_loss(x)
    want = 0.0
    for row in x:
        want += (float(row[:12].norm()) - 1.0) ** 2 + (float(row.norm()) - math.sqrt(2)) ** 2
    assert math.isclose(float(v), want / (2 * 9), rel_tol=1e-9)


def test_spatial_matches_direct_formula():
    f = _feat(12, 24, 6)
    idx = torch.tensor([0, 3, 7])
    nbr = torch.tensor([[1, 2], [4, 5], [8, 11]])
    v = L.spatial_loss(f, idx, nbr)
    want = 0.0
    for i, row in zip(idx.tolist(), nbr.tolist()):
        for k in row:
            want -= float(torch.nn.functional.cosine_similarity(f[i], f[k], dim=0))
    assert math.isclose(float(v), want / 6, rel_tol=1e-9)
    v.backward()
    assert f.grad[[0, 1, 2, 3, 4, 5, 7, 8, 11]].abs().sum() > 0
    assert torch.all(f.grad[[6, 9, 10]] == 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_unique_pixels_equal_the_expanded_draw(seed):
    """Pixels drawn several times, passed once with their count, give exactly the losses (and
    gradients) of the full draw with repeats."""
    g = torch.Generator().manual_seed(seed)
    u = 37
    x = _feat(u, 24, seed + 10, bias=0.6)
    seg_c, seg_f = _seg(u, 3, seed), _seg(u, 7, seed + 1)
    seg_f[:4] = -1
    counts = torch.randint(1, 5, (u,), generator=g)
    rep = torch.repeat_interleave(torch.arange(u), counts)
    pos_w, neg_w = L.contrastive_loss(x, seg_c, seg_f, weights=counts, block=8)
    n2d_w = L.norm2d_loss(x, weights=counts)
    gw = torch.autograd.grad(pos_w + neg_w + n2d_w, x)[0]
    pos_r, neg_r = L.contrastive_loss(x[rep], seg_c[rep], seg_f[rep], reference=True)
    n2d_r = L.norm2d_loss(x[rep])
    gr = torch.autograd.grad(pos_r + neg_r + n2d_r, x)[0]
    torch.testing.assert_close(pos_w, pos_r)
    torch.testing.assert_close(neg_w, neg_r)
    torch.testing.assert_close(n2d_w, n2d_r)
    torch.testing.assert_close(gw, gr)
    assert float(neg_r.detach()) > 0


def _rect_direct(n, seg, c, cc, margin, cols=None):
    """The column-sampled sum by its direct formula: sum_ij c_i cc_j [seg differs][S > m] S, with
    the columns' features ``cols`` (default: ``n``)."""
    s = n @ (n if cols is None else cols).T
    keep = ((seg[:, None] != seg[None, :]) & (s > margin)).to(n.dtype)
    return (c.to(n.dtype)[:, None] * cc.to(n.dtype)[None, :] * keep * s).sum()


@pytest.mark.parametrize("p,k,q,seed,block", [(30, 4, 7, 0, 4), (61, 6, 20, 1, 16), (2100, 12, 1000, 2, 128)])
def test_column_sampled_negative_term_matches_its_formula(p, k, q, seed, block):
    """The column-sampled estimate is (1/(|P| Q)) sum_ij c_i c'_j h_ij for the columns c' it drew,
    and its gradient twice the rows' part of that formula's (columns held fixed) (the last case
    runs the two-thread path)."""
    g = torch.Generator().manual_seed(seed)
    seg = _seg(p, k, seed)
    x = _feat(p, 24, seed, bias=0.8)
    c = torch.randint(1, 4, (p,), generator=g)
    gen = torch.Generator().manual_seed(99)
    est = L.negative_pair_loss(L.unit(x), seg, 0.5, c, block=block, columns=q, generator=gen)
    (ge,) = torch.autograd.grad(est, x)
    # the same columns: draw them again the way negative_pair_loss does (rows sorted by segment)
    order = torch.argsort(seg, stable=True)
    cc_sorted = L.sample_columns(c[order], q, torch.Generator().manual_seed(99))
    cc = torch.zeros_like(c)
    cc[order] = cc_sorted
    assert int(cc.sum()) == q and bool((cc <= c).all())
    ref = _rect_direct(L.unit(x), seg, c, cc, 0.5) / (float(c.sum()) * q)
    rows_part = _rect_direct(L.unit(x), seg, c, cc, 0.5, cols=L.unit(x).detach()) / (float(c.sum()) * q)
    (gr,) = torch.autograd.grad(2.0 * rows_part, x)
    torch.testing.assert_close(est, ref)
    torch.testing.assert_close(ge, gr)
    assert float(ref.detach()) > 0


def test_column_sampled_negative_term_is_exact_when_the_pixels_fit():
    seg = _seg(50, 5, 3)
    x = _feat(50, 24, 4)
    c = torch.randint(1, 3, (50,), generator=torch.Generator().manual_seed(5))
    exact = L.negative_pair_loss(L.unit(x), seg, 0.5, c)
    for q in (int(c.sum()), int(c.sum()) + 10):
        torch.testing.assert_close(L.negative_pair_loss(L.unit(x), seg, 0.5, c, columns=q), exact)


def test_column_sampled_negative_term_is_unbiased():
    """E[estimate] is the paper's exact term: each pixel's expected column count is c q / |P|
    (checked by sampling), the estimate and its gradient are linear in the column counts (their
    formulas evaluated at the expected counts give the exact value and gradient), and plain
    averages of estimates approach the exact value and gradient."""
    p, q = 24, 6
    seg = _seg(p, 3, 8)
    x = _feat(p, 12, 9, bias=0.9)
    c = torch.randint(1, 4, (p,), generator=torch.Generator().manual_seed(10))
    rep = torch.repeat_interleave(torch.arange(p), c)
    exact = L.negative_pair_loss_reference(L.unit(x[rep]), seg[rep], 0.5)
    (g_exact,) = torch.autograd.grad(exact, x)
    assert float(exact) > 0
    gen = torch.Generator().manual_seed(11)
    runs = 4000
    cols = torch.stack([L.sample_columns(c, q, gen) for _ in range(runs)]).double().mean(0)
    expected_cols = c.double() * q / float(c.sum())
    torch.testing.assert_close(cols, expected_cols, atol=0.04, rtol=0)
    at_mean = _rect_direct(L.unit(x), seg, c, expected_cols, 0.5) / (float(c.sum()) * q)
    rows_at_mean = _rect_direct(L.unit(x), seg, c, expected_cols, 0.5, cols=L.unit(x).detach()) / (float(c.sum()) * q)
    (g_mean,) = torch.autograd.grad(2.0 * rows_at_mean, x)
    torch.testing.assert_close(at_mean, exact)
    torch.testing.assert_close(g_mean, g_exact)
    vals, grads = [], []
    for _ in range(400):
        est = L.negative_pair_loss(L.unit(x), seg, 0.5, c, columns=q, generator=gen)
        grads.append(torch.autograd.grad(est, x)[0])
        vals.append(float(est.detach()))
    ests, gs = torch.tensor(vals, dtype=torch.float64), torch.stack(grads)
    assert float(ests.std()) > 0.05 * float(exact)  # one estimate alone is not the exact value
    assert abs(float(ests.mean()) - float(exact)) < 4 * float(ests.std()) / 20
    spread = float(gs.std(0).norm()) / 20  # standard error of the mean gradient, all entries
    assert float((gs.mean(0) - g_exact).norm()) < 4 * spread


@pytest.mark.parametrize("every", [False, True])
def test_fused_regularisers_equal_autograd_over_their_formulas(every):
    """norm3d_loss and spatial_loss (closed-form gradients) against autograd over the direct
    formulas: a sample with a repeated index, all rows at once, and a zero feature row."""
    m, k = 40, 5
    g = torch.Generator().manual_seed(3)
    f0 = torch.randn(m, 24, generator=g, dtype=torch.float64)
    f0[7] = 0.0
    idx = torch.arange(m) if every else torch.tensor([0, 3, 3, 7, 19, 39])
    nbr = torch.randint(0, m, (idx.numel(), k), generator=g)
    cases = [(L.norm3d_loss, L.norm3d_loss_reference, ()), (L.spatial_loss, L.spatial_loss_reference, (idx, nbr))]
    if every:  # the same through the neighbour matrix
        cases.append((lambda x, i, n: L.spatial_loss(x, i, n, L.spatial_adjacency(n)), L.spatial_loss_reference,
                      (idx, nbr)))
    for fast, ref, args in cases:
        x = f0.clone().requires_grad_()
        v = fast(x, *args)
        (gf,) = torch.autograd.grad(3.0 * v, x)
        y = f0.clone().requires_grad_()
        w = ref(y, *args)
        (gr,) = torch.autograd.grad(3.0 * w, y)
        torch.testing.assert_close(v, w)
        torch.testing.assert_close(gf, gr)
        assert float(gf.abs().sum()) > 0
