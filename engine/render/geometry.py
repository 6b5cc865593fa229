"""Per-pixel surface geometry of a view rendered from the splats: depth, normals and opacity.

A trained 3DGS scene's Gaussians lie flat on its surfaces, so each Gaussian's shortest axis is
the surface normal there. Blending those axes (each turned to face the camera) with the same
weights as the colour gives the view's normal map; the render's expected depth and accumulated
opacity come from the same pass. Mask sources use them to find boundaries colour cannot show
(:mod:`engine.masks.geometry`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.cameras import Camera
from .gaussians import Gaussians, quat_to_rotmat
from .renderer import render


def camera_normals(gaussians: Gaussians, camera: Camera) -> torch.Tensor:
    """[N, 3] float32 unit normals in the camera frame (OpenCV: x right, y down, z forward): each
    Gaussian's shortest scale axis, flipped to point towards the camera."""
    rot = quat_to_rotmat(gaussians.quats)  # [N, 3, 3], columns = the Gaussian's axes
    short = gaussians.scales.argmin(dim=1)
    axis = rot.gather(2, short[:, None, None].expand(-1, 3, 1))[..., 0]  # [N, 3] world
    viewmat = torch.as_tensor(camera.viewmat, dtype=torch.float32, device=gaussians.device)
    n = axis @ viewmat[:3, :3].T
    centre = gaussians.means @ viewmat[:3, :3].T + viewmat[:3, 3]  # camera-frame positions
    flip = (n * centre).sum(dim=1) > 0  # pointing away from the camera (which sits at the origin)
    return torch.where(flip[:, None], -n, n)


def render_geometry(gaussians: Gaussians, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(depth float32 [H, W] expected camera z, 0 where nothing was hit; normals float32 [H, W, 3]
    unit camera-frame normals facing the camera, 0 where nothing was hit; alpha float32 [H, W])
    of one view, from one render of the Gaussians' normals."""
    with torch.no_grad():
        out = render(gaussians, camera, values=camera_normals(gaussians, camera))
        n = out.values
        norm = n.norm(dim=-1, keepdim=True)
        n = torch.where(norm > 1e-6, n / norm.clamp_min(1e-6), torch.zeros_like(n))
    return out.depth.cpu().numpy().astype(np.float32), n.cpu().numpy().astype(np.float32), \
        out.alpha.cpu().numpy().astype(np.float32)
