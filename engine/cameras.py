"""The one camera type of the project, and loaders that produce it.

Convention (OpenCV): camera x right, y down, z forward (looking along +z).
``viewmat`` is world-to-camera [4, 4]; a world point X maps to camera coordinates
``viewmat @ [X, 1]`` and to pixels ``K @ (x/z, y/z, 1)``, with pixel centres at integer+0.5
(the pixel (u, v) covers [u, u+1) x [v, v+1)).

numpy only: the Blender extension uses this module too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Camera:
    viewmat: np.ndarray  # [4, 4] float64 world-to-camera (OpenCV)
    K: np.ndarray  # [3, 3] float64 intrinsics (fx, fy, cx, cy in pixels)
    width: int
    height: int
    name: str = ""
    image_path: str | None = None

    def __post_init__(self) -> None:
        self.viewmat = np.asarray(self.viewmat, dtype=np.float64).reshape(4, 4)
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.width = int(self.width)
        self.height = int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera {self.name!r} has invalid size {self.width}x{self.height}")

    @property
    def camtoworld(self) -> np.ndarray:
        """[4, 4] camera-to-world."""
        return np.linalg.inv(self.viewmat)

    @property
    def center(self) -> np.ndarray:
        """[3] camera centre in world coordinates."""
        return self.camtoworld[:3, 3]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points [M, 3] -> (pixels [M, 2] (u right, v down), depth [M] along +z)."""
        pts = np.asarray(points, dtype=np.float64)
        cam = pts @ self.viewmat[:3, :3].T + self.viewmat[:3, 3]
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam[:, :2] / z[:, None]) @ self.K[:2, :2].T + self.K[:2, 2]
        return uv, z

    def pixel_ray(self, u: float, v: float) -> tuple[np.ndarray, np.ndarray]:
        """World-space ray (origin [3], unit direction [3]) through the pixel position (u, v),
        where (u + 0.5, v + 0.5) is the centre of pixel (u, v)."""
        d_cam = np.linalg.solve(self.K, np.array([u, v, 1.0]))
        c2w = self.camtoworld
        d = c2w[:3, :3] @ d_cam
        return c2w[:3, 3].copy(), d / np.linalg.norm(d)

    def scaled(self, width: int, height: int) -> "Camera":
        """The same camera resampled to another image size (intrinsics scaled)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        return Camera(self.viewmat.copy(), K, width, height, self.name, self.image_path)
