"""Shared pieces for the renderer tests: random scenes, look-at cameras and a brute-force
per-pixel reference blend (slow, obviously correct, independent of the tile rasterizer)."""

from __future__ import annotations

import numpy as np
import torch

from engine.core.cameras import Camera
from engine.render.gaussians import Gaussians


def look_at(eye, target, up, width: int, height: int, fov_deg: float = 50.0) -> Camera:
    """OpenCV camera at ``eye`` looking at ``target``; ``up`` is the world direction shown up."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # down in the image
    R = np.stack([x, y, z])
    viewmat = np.eye(4)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ eye
    f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    return Camera(viewmat, K, width, height, name="look_at")


def random_gaussians(n: int, seed: int = 0, spread: float = 1.0, scale: tuple[float, float] = (0.02, 0.3), sh_degree: int = 0) -> Gaussians:
    """n random anisotropic Gaussians in a cube of half-size ``spread`` around the origin."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * spread
    quats = torch.randn(n, 4, generator=g)
    lo, hi = np.log(scale[0]), np.log(scale[1])
    scales = torch.exp(torch.rand(n, 3, generator=g) * (hi - lo) + lo)
    opacities = torch.rand(n, generator=g) * 0.95 + 0.04
    sh = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.5
    return Gaussians.from_tensors(means, quats, scales, opacities, sh)


def brute_force(gaussians: Gaussians, camera: Camera, values: torch.Tensor, near: float = 0.01):
    """Reference blend in float64: every pixel against every Gaussian, depth sorted, with the
    3DGS rules (alpha clamp 0.99, skip < 1/255, stop before T <= 1e-4), using gsplat's torch
    projection. Returns (values [H,W,C], alpha [H,W], depth_sum [H,W], weights [H,W,N])."""
    from gsplat.cuda._torch_impl import _fully_fused_projection

    from engine.render.gaussians import covariance_from_quat_scale

    d = torch.float64
    covars = covariance_from_quat_scale(gaussians.quats.to(d), gaussians.scales.to(d))
    vm = torch.tensor(camera.viewmat, dtype=d)[None]
    K = torch.tensor(camera.K, dtype=d)[None]
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        gaussians.means.to(d), covars, vm, K, camera.width, camera.height, near_plane=near
    )
    means2d, depths, conics = means2d[0], depths[0], conics[0]
    valid = (depths > near) & (radii[0] > 0).all(-1)
    H, W = camera.height, camera.width
    ys, xs = torch.meshgrid(torch.arange(H, dtype=d) + 0.5, torch.arange(W, dtype=d) + 0.5, indexing="ij")
    T = torch.ones(H, W, dtype=d)
    done = torch.zeros(H, W, dtype=torch.bool)
    out = torch.zeros(H, W, values.shape[1], dtype=d)
    depth_sum = torch.zeros(H, W, dtype=d)
    weights = torch.zeros(H, W, len(depths), dtype=d)
    for i in torch.argsort(depths).tolist():
        if not valid[i]:
            continue
        dx, dy = xs - means2d[i, 0], ys - means2d[i, 1]
        a, b, c = conics[i]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(gaussians.opacities[i].to(d) * torch.exp(-sigma), max=0.99)
        use = (alpha >= 1.0 / 255.0) & ~done
        next_T = T * (1 - alpha)
        stop = use & (next_T <= 1e-4)
        use = use & ~stop
        done |= stop
        w = torch.where(use, alpha * T, torch.zeros_like(T))
        out += w[..., None] * values[i].to(d)
        depth_sum += w * depths[i]
        weights[..., i] = w
        T = torch.where(use, next_T, T)
    return out, 1.0 - T, depth_sum, weights
