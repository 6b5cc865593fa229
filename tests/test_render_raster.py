"""The tile rasterizer against a brute-force per-pixel blend, contributors + blend against direct
renders, blend's gradient, and edge cases (behind the camera, near plane, huge, off-screen, one
Gaussian)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_render_helpers import brute_force, look_at, random_gaussians

from engine.core.cameras import Camera
from engine.core.errors import CameraError, EngineError
from engine.render.gaussians import Gaussians
from engine.render.renderer import Contributors, PackedContributors, blend, render


def _close_fraction(a: torch.Tensor, b: torch.Tensor, tol: float) -> float:
    return float(((a.double() - b.double()).abs() <= tol).double().mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiles_match_brute_force(seed: int) -> None:
    g = random_gaussians(120, seed=seed)
    cam = look_at([0.3, -0.4, -3.2], [0, 0, 0], [0, -1, 0], 45, 37)  # odd size: partial tiles
    vals = torch.rand(len(g), 5, generator=torch.Generator().manual_seed(seed))
    ref_v, ref_a, ref_d, _ = brute_force(g, cam, vals)
    out = render(g, cam, vals)
    assert out.values.shape == (37, 45, 5) and out.alpha.shape == (37, 45) and out.depth.shape == (37, 45)
    assert float(ref_a.mean()) > 0.3  # the scene covers the view
    # float32 vs float64: a Gaussian sitting exactly on the 1/255 or T = 1e-4 threshold may flip
    # in a rare pixel; everywhere else the results agree to float precision.
    assert _close_fraction(out.values, ref_v, 1e-4) > 0.995
    assert _close_fraction(out.alpha, ref_a, 1e-4) > 0.995
    assert float((out.values.double() - ref_v).abs().max()) < 2e-2
    ref_depth = torch.where(ref_a > 0, ref_d / ref_a.clamp_min(1e-10), 0.0)
    assert _close_fraction(out.depth, ref_depth, 1e-3) > 0.995


def test_contributors_weights_match_brute_force() -> None:
    g = random_gaussians(60, seed=5)
    cam = look_at([0, 0, -3.0], [0, 0, 0], [0, -1, 0], 32, 32)
    ref_w = brute_force(g, cam, torch.zeros(len(g), 1))[3]  # [H, W, N]
    out = render(g, cam, contributors_k=64)  # more slots than any pixel needs: no truncation
    c = out.contributors
    assert c.ids.dtype == torch.int32 and c.ids.shape == (32, 32, 64)
    dense = torch.zeros_like(ref_w)
    ids = c.ids.long()
    filled = ids >= 0
    dense[filled.nonzero(as_tuple=True)[:2] + (ids[filled],)] = c.weights[filled].double()
    assert _close_fraction(dense, ref_w, 1e-4) > 0.999
    # Empty slots come last, carry weight 0, and filled slots run front to back.
    assert bool((c.weights[~filled] == 0).all())
    assert bool((filled[..., 1:] <= filled[..., :-1]).all())
    cam_z = torch.tensor(cam.viewmat[:3, :3], dtype=torch.float32) @ g.means.T
    z = (cam_z[2] + float(cam.viewmat[2, 3]))[ids.clamp_min(0)]
    z = torch.where(filled, z, torch.inf)
    assert bool((z[..., 1:] >= z[..., :-1]).all())


def test_blend_through_contributors_equals_direct_render() -> None:
    g = random_gaussians(300, seed=3, scale=(0.01, 0.15))
    cam = look_at([2.5, -1.0, -2.0], [0, 0, 0], [0, -1, 0], 64, 48)
    feats = torch.randn(len(g), 24, generator=torch.Generator().manual_seed(1))
    direct = render(g, cam, feats, contributors_k=128)
    via = direct.contributors.render(feats)
    assert torch.allclose(via, direct.values, atol=1e-5)
    # K = 32 keeps almost all the weight.
    k32 = render(g, cam, contributors_k=32).contributors
    assert float((k32.weights.sum(-1) - direct.alpha).abs().max()) < 0.05
    # Pixel subsets, dense and packed (float16 weights) agree.
    flat = torch.randperm(64 * 48, generator=torch.Generator().manual_seed(0))[:500]
    ids, w = k32.pixels(flat)
    packed = k32.compact()
    pids, pw = packed.pixels(flat)
    assert torch.equal(ids, pids)
    assert torch.allclose(w, pw, atol=1e-3)
    assert packed.nbytes < k32.nbytes
    assert torch.allclose(blend(ids, w, feats), k32.render(feats).reshape(-1, 24)[flat], atol=1e-5)
    back = packed.to_dense()
    assert torch.equal(back.ids, k32.ids)


def test_blend_gradcheck() -> None:
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(7, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    ids = torch.randint(-1, 7, (5, 4), generator=gen)
    weights = torch.rand(5, 4, dtype=torch.float64, generator=gen)
    weights = torch.where(ids >= 0, weights, 0.0)
    assert torch.autograd.gradcheck(lambda v: blend(ids, weights, v), (values,))
    w = weights.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w_, v: blend(ids, torch.where(ids >= 0, w_, 0.0), v), (w, values))
    out = blend(ids, weights, values)
    manual = (weights[..., None] * values[ids.clamp_min(0)]).sum(1)
    assert torch.allclose(out, manual)


def test_render_gradient_flows_to_values() -> None:
    g = random_gaussians(50, seed=4)
    cam = look_at([0, 0, -3.0], [0, 0, 0], [0, -1, 0], 24, 24)
    feats = torch.randn(len(g), 4, requires_grad=True)
    out = render(g, cam, feats)
    out.values.sum().backward()
    # d(sum of pixels)/d f_i = total weight of Gaussian i over the image, for every channel.
    w = render(g, cam, contributors_k=64).contributors
    total = torch.zeros(len(g)).index_add_(0, w.ids.reshape(-1).long().clamp_min(0), w.weights.reshape(-1))
    assert torch.allclose(feats.grad, total[:, None].expand(-1, 4), atol=1e-4)


def _single(mean, scale=0.1, opacity=0.9) -> Gaussians:
    return Gaussians.from_tensors(
        torch.tensor([mean], dtype=torch.float32),
        torch.tensor([[1.0, 0, 0, 0]]),
        torch.full((1, 3), float(scale)),
        torch.tensor([opacity]),
    )


def _front_cam(size: int = 32) -> Camera:
    return look_at([0, 0, -2.0], [0, 0, 0], [0, -1, 0], size, size)


def test_single_gaussian_centre_pixel() -> None:
    cam = _front_cam()
    out = render(_single([0, 0, 0]), cam, torch.ones(1, 1), contributors_k=4)
    # The mean projects onto the pixel corner (16, 16): the four pixels around it are 0.5 px away
    # on each axis; variance = (f * 0.1 / 2)^2 + 0.3 (low-pass) px^2.
    var = (cam.K[0, 0] * 0.1 / 2.0) ** 2 + 0.3
    expect = 0.9 * np.exp(-0.5 * (0.25 + 0.25) / var)
    for v, u in ((15, 15), (15, 16), (16, 15), (16, 16)):
        assert abs(float(out.alpha[v, u]) - expect) < 1e-5
    assert abs(float(out.values[16, 16, 0]) - expect) < 1e-5
    assert float(out.alpha[0, 0]) == 0.0
    assert abs(float(out.depth[16, 16]) - 2.0) < 1e-4
    assert int(out.contributors.ids[16, 16, 0]) == 0 and int(out.contributors.ids[16, 16, 1]) == -1


def test_behind_camera_and_off_screen_are_invisible() -> None:
    for mean in ([0, 0, -3.0], [50, 0, 0], [0, -40, 0.5]):
        out = render(_single(mean), _front_cam(), contributors_k=2)
        assert float(out.alpha.max()) == 0.0
        assert bool((out.contributors.ids == -1).all())


def test_straddling_near_plane_and_huge() -> None:
    # Centre just in front of the camera, extent far behind it: rendered, finite, no blow-up.
    g = _single([0, 0, -1.95], scale=0.5)
    out = render(g, _front_cam())
    assert torch.isfinite(out.values).all() and float(out.alpha.min()) > 0.5
    # Centre behind the near plane: culled like gsplat does.
    out = render(g, _front_cam(), near=0.1)
    assert float(out.alpha.max()) == 0.0
    # A huge Gaussian covering the whole image plus a small one in front of it.
    big = Gaussians.from_tensors(
        torch.tensor([[0, 0, 3.0], [0, 0, 0]]), torch.tensor([[1.0, 0, 0, 0]] * 2),
        torch.tensor([[50.0, 50.0, 0.01], [0.05, 0.05, 0.05]]), torch.tensor([0.8, 0.9]),
    )  # fmt: skip
    vals = torch.tensor([[1.0], [0.0]])
    out = render(big, _front_cam(), vals)
    ref_v, ref_a, _, _ = brute_force(big, _front_cam(), vals)
    assert torch.allclose(out.values.double(), ref_v, atol=1e-4)
    assert torch.allclose(out.alpha.double(), ref_a, atol=1e-4)


def test_background_and_rgb() -> None:
    g = random_gaussians(40, seed=8, sh_degree=2)
    cam = _front_cam(24)
    out = render(g, cam, background=torch.tensor([0.0, 1.0, 0.0]))
    assert out.values.shape == (24, 24, 3)
    assert float(out.values.min()) >= 0.0
    plain = render(g, cam)
    expect = plain.values + (1 - plain.alpha)[..., None] * torch.tensor([0.0, 1.0, 0.0])
    assert torch.allclose(out.values, expect, atol=1e-6)


def test_bad_input_is_a_clear_error() -> None:
    g = random_gaussians(10)
    cam = _front_cam(16)
    with pytest.raises(EngineError, match="NaN"):
        render(g, cam, torch.full((10, 2), float("nan")))
    with pytest.raises(EngineError, match=r"\[N=10, C\]"):
        render(g, cam, torch.zeros(9, 2))
    empty = Gaussians.from_tensors(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0))
    with pytest.raises(EngineError, match="no Gaussians"):
        render(empty, cam)
    zero = _front_cam(16)
    zero.width = 0
    with pytest.raises(CameraError, match="invalid size 0x16"):
        render(g, zero)
    nan_cam = _front_cam(16)
    nan_cam.viewmat[0, 0] = np.nan
    with pytest.raises(CameraError, match="NaN"):
        render(g, nan_cam)
    with pytest.raises(EngineError, match="gsplat backend needs CUDA"):
        render(g, cam, backend="gsplat")
    with pytest.raises(EngineError, match="out of range"):
        render(g, cam, contributors_k=4).contributors.pixels(torch.tensor([16 * 16]))
    assert isinstance(render(g, cam, contributors_k=4).contributors, Contributors)
    assert isinstance(render(g, cam, contributors_k=4).contributors.compact(), PackedContributors)


@pytest.mark.cuda
def test_cuda_gsplat_matches_torch_backend() -> None:
    g = random_gaussians(400, seed=9, sh_degree=3).to("cuda")
    cam = look_at([1.5, -1.0, -2.5], [0, 0, 0], [0, -1, 0], 96, 64)
    feats = torch.randn(len(g), 24, device="cuda")
    for values in (None, feats):
        a = render(g, cam, values, backend="gsplat")
        b = render(g, cam, values, backend="torch")
        # gsplat clamps alpha at 0.999 instead of 0.99; only near-opaque Gaussians differ.
        assert _close_fraction(a.values.cpu(), b.values.cpu(), 1e-2) > 0.98
        assert _close_fraction(a.alpha.cpu(), b.alpha.cpu(), 1e-2) > 0.98


def test_cancel_and_progress() -> None:
    import threading

    from engine.core.errors import Cancelled

    g = random_gaussians(400, seed=11, scale=(0.01, 0.1))
    cam = look_at([0, 0, -3.0], [0, 0, 0], [0, -1, 0], 96, 96)
    seen: list[float] = []
    render(g, cam, progress=seen.append)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        render(g, cam, cancel=ev)
    with pytest.raises(Cancelled):
        render(g, cam, progress=lambda f: False)


def test_scene_accepted_directly(fox_path) -> None:
    from engine.core.formats.ply import read_ply

    scene = read_ply(fox_path).subset(np.arange(0, 50000, 50))
    cam = look_at([3.0, 0.5, 1.5], [0, 0, 1.2], [0, 0, 1], 32, 32)
    a = render(scene, cam)
    b = render(Gaussians.from_scene(scene, "cpu"), cam)
    assert torch.equal(a.values, b.values) and float(a.alpha.max()) > 0


def test_workers_agree_and_threads_restored() -> None:
    from engine.render import raster_cpu

    g = random_gaussians(300, seed=12, scale=(0.01, 0.2))
    cam = look_at([0.5, -0.5, -3.0], [0, 0, 0], [0, -1, 0], 70, 50)
    vm = torch.tensor(cam.viewmat, dtype=torch.float32)
    K = torch.tensor(cam.K, dtype=torch.float32)
    proj = raster_cpu.project(g.means, g.quats, g.scales, g.opacities, vm, K, 70, 50)
    vals = torch.rand(len(g), 3, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    one = raster_cpu.rasterize(proj, vals, 70, 50, contributors_k=8, workers=1)
    three = raster_cpu.rasterize(proj, vals, 70, 50, contributors_k=8, workers=3, budget=256)
    assert torch.get_num_threads() == before
    assert torch.allclose(one.values, three.values, atol=1e-6)
    assert torch.equal(one.ids, three.ids)
    assert torch.allclose(one.weights, three.weights, atol=1e-7)
    render(g, cam, contributors_k=4)
    assert torch.get_num_threads() == before


def test_workers_leave_no_thread_setting_behind() -> None:
    import threading

    from engine.render import raster_cpu

    g = random_gaussians(200, seed=13)
    cam = look_at([0, 0, -3.0], [0, 0, 0], [0, -1, 0], 64, 64)
    vm, K = torch.tensor(cam.viewmat, dtype=torch.float32), torch.tensor(cam.K, dtype=torch.float32)
    proj = raster_cpu.project(g.means, g.quats, g.scales, g.opacities, vm, K, 64, 64)
    raster_cpu.rasterize(proj, None, 64, 64, workers=2)
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [torch.get_num_threads()]


@pytest.mark.cuda
def test_cuda_contributors_match_cpu() -> None:
    g = random_gaussians(300, seed=14)
    cam = look_at([0.5, -0.5, -3.0], [0, 0, 0], [0, -1, 0], 64, 48)
    feats = torch.randn(len(g), 8)
    cpu = render(g, cam, feats, contributors_k=16)
    gpu = render(g.to("cuda"), cam, feats.cuda(), contributors_k=16)  # our tile rasterizer on CUDA
    assert torch.allclose(gpu.values.cpu(), cpu.values, atol=1e-4)
    assert _close_fraction(gpu.contributors.weights.cpu(), cpu.contributors.weights, 1e-5) > 0.999
    # Truncated at K=16 (up to ~38 Gaussians reach a pixel here), contributors blend to the CPU's
    # truncated result; with K above the count they reproduce the full render.
    via = gpu.contributors.render(feats.cuda())
    assert torch.allclose(via.cpu(), cpu.contributors.render(feats), atol=1e-4)
    full = render(g.to("cuda"), cam, feats.cuda(), contributors_k=128)
    assert torch.allclose(full.contributors.render(feats.cuda()), full.values, atol=1e-4)


def test_tile_culling_is_conservative_and_tight() -> None:
    from engine.render import raster_cpu
    from engine.render.raster_cpu import TILE

    gen = torch.Generator().manual_seed(21)
    n = 400
    m2d = torch.rand(n, 2, generator=gen) * 40
    # Random anisotropic, rotated 2D covariances (std 0.5..12 px).
    ang = torch.rand(n, generator=gen) * 3.1416
    s = torch.exp(torch.rand(n, 2, generator=gen) * 3.2 - 0.7)
    R = torch.stack([torch.cos(ang), -torch.sin(ang), torch.sin(ang), torch.cos(ang)], -1).view(n, 2, 2)
    cov = R @ torch.diag_embed(s**2) @ R.transpose(1, 2)
    inv = torch.linalg.inv(cov)
    conics = torch.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], -1)
    op = torch.rand(n, generator=gen) * 0.99 + 0.01
    tx = torch.randint(0, 6, (n,), generator=gen)
    ty = torch.randint(0, 6, (n,), generator=gen)
    hit = raster_cpu._ellipse_hits_tile(m2d, conics, op, tx, ty)
    ar = torch.arange(TILE) + 0.5
    px = tx[:, None, None] * TILE + ar[None, None, :]  # [n, 1, T]
    py = ty[:, None, None] * TILE + ar[None, :, None]  # [n, T, 1]
    dx, dy = px - m2d[:, 0, None, None], py - m2d[:, 1, None, None]
    a, b, c = (conics[:, i, None, None] for i in range(3))
    alpha = op[:, None, None] * torch.exp(-0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy)
    truth = (alpha >= 1 / 255).flatten(1).any(1)
    assert bool((hit | ~truth).all())  # never drops a tile the Gaussian reaches
    assert int((hit & ~truth).sum()) <= 0.05 * n  # and keeps few it does not
    assert int(truth.sum()) > 20 and int((~truth).sum()) > 20


def test_pair_chunks_do_not_change_pairs() -> None:
    from engine.render import raster_cpu

    g = random_gaussians(300, seed=15, scale=(0.01, 0.4))
    cam = look_at([0.2, -0.3, -3.0], [0, 0, 0], [0, -1, 0], 80, 64)
    vm, K = torch.tensor(cam.viewmat, dtype=torch.float32), torch.tensor(cam.K, dtype=torch.float32)
    proj = raster_cpu.project(g.means, g.quats, g.scales, g.opacities, vm, K, 80, 64)
    tx, ty = 10, 8
    whole = raster_cpu._tile_pairs(proj, tx, ty)
    for chunk in (1, 7, 100):
        parts = raster_cpu._tile_pairs(proj, tx, ty, chunk=chunk)
        assert all(torch.equal(a, b) for a, b in zip(whole, parts))
