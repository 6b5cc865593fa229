"""The in-memory 3D Gaussian Splatting scene (numpy only; no torch, no bpy).

Conventions (Inria 3DGS, as stored in .ply files):
- ``means``      [N, 3] float32, world units.
- ``scales``     [N, 3] float32, *log* of the per-axis standard deviation.
- ``quats``      [N, 4] float32, rotation quaternion (w, x, y, z) exactly as stored (possibly
                 unnormalised); use :meth:`GaussianScene.unit_quats` where a rotation is needed.
- ``opacities``  [N]    float32, *logit* of opacity.
- ``sh_dc``      [N, 3] float32, degree-0 SH coefficient per colour channel.
- ``sh_rest``    [N, K, 3] float32, higher SH coefficients, K = (degree+1)^2 - 1 (0, 3, 8 or 15).
                 In the file they are ``f_rest_{c*K + k}`` (channel-major); here [N, k, c].
- ``extra``      unknown per-vertex properties (e.g. ``nx, ny, nz``), kept and written back.
- ``layout``     how the source file stored the vertices, so a write of an unedited scene is
                 byte-identical in the vertex data (see :mod:`engine.core.formats.ply`).

Per-Gaussian side data (features, labels, ...) elsewhere is index-aligned with these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SH_C0 = 0.28209479177387814  # Y_0^0: colour = SH_C0 * f_dc + 0.5


def sh_coeffs_for_degree(degree: int) -> int:
    """Number of SH coefficients beyond the DC term for a degree (0 -> 0, 3 -> 15)."""
    return (degree + 1) ** 2 - 1


def sh_degree_for_coeffs(k: int) -> int:
    """Inverse of :func:`sh_coeffs_for_degree`; raises ValueError for an invalid count."""
    for d in range(4):
        if sh_coeffs_for_degree(d) == k:
            return d
    raise ValueError(f"{k} higher-order SH coefficients per channel is not a valid SH degree 0-3")


def inria_vertex_dtype(sh_degree: int, byte_order: str = "<") -> np.dtype:
    """The standard Inria vertex layout for an SH degree: x y z nx ny nz f_dc_0-2 f_rest_*
    opacity scale_0-2 rot_0-3, all float32 (62 properties at degree 3)."""
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * sh_coeffs_for_degree(sh_degree))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return np.dtype([(n, byte_order + "f4") for n in names])


@dataclass
class PlyLayout:
    """How a scene was stored: the vertex dtype (field order and byte order), the PLY format,
    comments, and any non-vertex elements, so a writer can reproduce the file layout."""

    vertex_dtype: np.dtype
    format: str = "binary_little_endian"  # or "binary_big_endian", "ascii"
    comments: list[str] = field(default_factory=list)
    obj_info: list[str] = field(default_factory=list)
    source: str = "ply"  # "ply" or "compressed_ply" (SuperSplat)


@dataclass
class GaussianScene:
    means: np.ndarray  # [N, 3] float32
    scales: np.ndarray  # [N, 3] float32, log scale
    quats: np.ndarray  # [N, 4] float32, wxyz, as stored
    opacities: np.ndarray  # [N] float32, logit
    sh_dc: np.ndarray  # [N, 3] float32
    sh_rest: np.ndarray  # [N, K, 3] float32
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [N]
    layout: PlyLayout | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        checks = {
            "means": (self.means, (n, 3)),
            "scales": (self.scales, (n, 3)),
            "quats": (self.quats, (n, 4)),
            "opacities": (self.opacities, (n,)),
            "sh_dc": (self.sh_dc, (n, 3)),
        }
        for name, (arr, shape) in checks.items():
            if arr.shape != shape:
                raise ValueError(f"GaussianScene.{name} has shape {arr.shape}, expected {shape}")
        if self.sh_rest.ndim != 3 or self.sh_rest.shape[0] != n or self.sh_rest.shape[2] != 3:
            raise ValueError(f"GaussianScene.sh_rest has shape {self.sh_rest.shape}, expected [N, K, 3]")
        sh_degree_for_coeffs(self.sh_rest.shape[1])
        for name, arr in self.extra.items():
            if arr.shape[0] != n:
                raise ValueError(f"extra property {name!r} has {arr.shape[0]} values for {n} Gaussians")

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    def __len__(self) -> int:
        return self.num_gaussians

    @property
    def sh_degree(self) -> int:
        return sh_degree_for_coeffs(self.sh_rest.shape[1])

    def unit_quats(self) -> np.ndarray:
        """[N, 4] float32 normalised quaternions (wxyz); a zero quaternion becomes identity."""
        q = self.quats.astype(np.float32, copy=True)
        norm = np.linalg.norm(q, axis=1, keepdims=True)
        bad = norm[:, 0] < 1e-12
        q[bad] = (1.0, 0.0, 0.0, 0.0)
        norm[bad] = 1.0
        return q / norm

    def activated_scales(self) -> np.ndarray:
        """[N, 3] float32 standard deviations (exp of the stored log scales)."""
        return np.exp(self.scales).astype(np.float32)

    def activated_opacities(self) -> np.ndarray:
        """[N] float32 opacities in (0, 1) (sigmoid of the stored logits)."""
        return (1.0 / (1.0 + np.exp(-self.opacities.astype(np.float64)))).astype(np.float32)

    def base_colors(self) -> np.ndarray:
        """[N, 3] float32 view-independent colour from the DC term, clipped to [0, 1]."""
        return np.clip(SH_C0 * self.sh_dc + 0.5, 0.0, 1.0).astype(np.float32)

    def subset(self, index: np.ndarray) -> "GaussianScene":
        """A new scene holding the Gaussians selected by a boolean mask or index array
        (duplicates allowed), keeping the layout and all extra properties aligned."""
        return GaussianScene(
            means=self.means[index],
            scales=self.scales[index],
            quats=self.quats[index],
            opacities=self.opacities[index],
            sh_dc=self.sh_dc[index],
            sh_rest=self.sh_rest[index],
            extra={k: v[index] for k, v in self.extra.items()},
            layout=self.layout,
            path=self.path,
        )

    def robust_bounds(self, lo: float = 0.02, hi: float = 0.98) -> tuple[np.ndarray, np.ndarray]:
        """Per-axis quantile bounds [3], [3] of the means, ignoring stray far-away Gaussians."""
        return (
            np.quantile(self.means, lo, axis=0).astype(np.float64),
            np.quantile(self.means, hi, axis=0).astype(np.float64),
        )
