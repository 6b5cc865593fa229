"""Torch-side Gaussians, prepared once from a :class:`~engine.core.scene.GaussianScene` for rendering.

Activations are applied here (exp of log-scales, sigmoid of logit opacities, unit quaternions),
so repeated renders of the same scene do no conversion work. Geometry is frozen in
Click-Gaussian: these tensors carry no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..core.errors import EngineError, SceneFormatError
from ..core.quaternion import rotation_entries


def resolve_device(
    device: str | torch.device | None, what: str = "device", error: type[EngineError] = EngineError
) -> torch.device:
    """The engine's one device rule: ``"auto"``/None -> CUDA when available, else CPU; anything
    else as torch understands it. A device torch does not know, or CUDA on a machine without a
    GPU, raises ``error`` with a one-line message that names ``what`` was asked for."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise error(f"{what} {device!r} is not a valid torch device (auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise error(f"{what} {device!r} was asked for but no CUDA GPU is available")
    return dev


@dataclass(frozen=True)
class Gaussians:
    """Activated 3D Gaussians on one device (all float32, index-aligned with the scene).

    Attributes:
        means: [N, 3] world positions.
        quats: [N, 4] unit quaternions, wxyz (zero quaternions became identity).
        scales: [N, 3] per-axis standard deviations (world units, exp of the stored log scales).
        opacities: [N] opacity in (0, 1) (sigmoid of the stored logits).
        sh: [N, (d+1)^2, 3] SH coefficients, DC first (``sh[:, 0] = f_dc``), channel last.
        sh_degree: d, 0..3.
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh: Tensor
    sh_degree: int

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    def __len__(self) -> int:
        return self.num_gaussians

    @property
    def device(self) -> torch.device:
        return self.means.device

    @classmethod
    def from_scene(cls, scene, device: str | torch.device | None = "auto") -> "Gaussians":
        """Convert a :class:`GaussianScene` (numpy, stored parameters) to activated tensors.

        Raises :class:`SceneFormatError` when a value would poison a render (naming the scene file
        and the property): NaN anywhere, infinite positions, rotations, colours or +inf log-scales.
        Infinite opacity logits are accepted (real scenes contain them: opacity exactly 1 or 0),
        as are -inf log-scales (a zero-size axis; the 2D low-pass filter keeps it visible).
        """
        dev = resolve_device(device)
        where = scene.path or "the scene"
        checks = {
            "means": np.isfinite,
            "quats": np.isfinite,
            "sh_dc": np.isfinite,
            "sh_rest": np.isfinite,
            "scales": lambda a: ~np.isnan(a) & (a != np.inf),
            "opacities": lambda a: ~np.isnan(a),
        }
        for name, ok_fn in checks.items():
            arr = getattr(scene, name)
            if arr.size:
                ok = ok_fn(arr).reshape(arr.shape[0], -1).all(axis=1)
                if not ok.all():
                    bad = int(np.count_nonzero(~ok))
                    raise SceneFormatError(f"{where}: {bad} Gaussians have NaN or infinite {name} (first: #{int(np.argmin(ok))})")
        sh = np.concatenate([scene.sh_dc[:, None, :], scene.sh_rest], axis=1).astype(np.float32)

        def t(a: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(dev)

        return cls(
            means=t(scene.means),
            quats=t(scene.unit_quats()),
            scales=t(scene.activated_scales()),
            opacities=t(scene.activated_opacities()),
            sh=t(sh),
            sh_degree=int(scene.sh_degree),
        )

    @classmethod
    def from_tensors(
        cls,
        means: Tensor,  # [N, 3]
        quats: Tensor,  # [N, 4] wxyz, any norm
        scales: Tensor,  # [N, 3] activated
        opacities: Tensor,  # [N] activated
        sh: Tensor | None = None,  # [N, K, 3]; None -> mid-grey DC
    ) -> "Gaussians":
        """Build from already-activated tensors (tests, procedural scenes); quats are normalised."""
        n = means.shape[0]
        q = quats.float()
        norm = q.norm(dim=-1, keepdim=True)
        q = torch.where(norm > 1e-12, q / norm.clamp_min(1e-12), torch.tensor([1.0, 0, 0, 0], device=q.device))
        if sh is None:
            sh = torch.zeros(n, 1, 3, device=means.device)
        k = sh.shape[1]
        degree = {1: 0, 4: 1, 9: 2, 16: 3}.get(k)
        if degree is None:
            raise SceneFormatError(f"SH coefficient count {k} is not (d+1)^2 for d in 0..3")
        return cls(means.float(), q, scales.float(), opacities.float(), sh.float(), degree)

    def to(self, device: str | torch.device) -> "Gaussians":
        dev = torch.device(device)
        return Gaussians(
            self.means.to(dev), self.quats.to(dev), self.scales.to(dev), self.opacities.to(dev), self.sh.to(dev), self.sh_degree
        )

    def covariances(self) -> Tensor:
        """[N, 3, 3] world-space covariances ``R S S^T R^T``."""
        return covariance_from_quat_scale(self.quats, self.scales)


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[..., 4] unit quaternions (wxyz) -> [..., 3, 3] rotation matrices (the formula of
    :func:`engine.core.quaternion.rotation_entries`)."""
    return torch.stack(rotation_entries(*quats.unbind(-1)), dim=-1).reshape(quats.shape[:-1] + (3, 3))


def covariance_from_quat_scale(quats: Tensor, scales: Tensor) -> Tensor:
    """[..., 4] unit wxyz quats and [..., 3] std devs -> [..., 3, 3] covariance ``M M^T``, M = R S."""
    m = quat_to_rotmat(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)
