"""Real spherical harmonics up to degree 3, evaluated in torch (3DGS colour model).

Basis ordering and signs follow the Inria 3DGS / gsplat convention (``Y_0^0``, then degree 1
as ``-C1*y, C1*z, -C1*x``, ...), so coefficients read from a 3DGS ``.ply`` give the same colour
here as in gsplat and in the original rasterizer. Colour = ``sum_k basis_k(dir) * coeff_k + 0.5``,
clamped at 0 (see :func:`sh_to_rgb`).

The formulas are the closed-form polynomials of Sloan, "Efficient Spherical Harmonic Evaluation"
(JCGT 2013), the same ones gsplat's ``_eval_sh_bases_fast`` uses; ``tests/test_render_sh.py``
checks them against gsplat's torch reference.
"""

from __future__ import annotations

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def num_bases(degree: int) -> int:
    """Number of SH basis functions up to ``degree`` (0 -> 1, 3 -> 16)."""
    return (degree + 1) ** 2


def eval_sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """SH basis values at unit directions.

    Args:
        degree: 0..3.
        dirs: [..., 3] unit direction vectors (world frame, from the camera to the Gaussian).

    Returns:
        [..., (degree+1)^2] basis values, same dtype/device as ``dirs``.
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    out = [torch.full_like(dirs[..., 0], SH_C0)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
        if degree >= 2:
            xx, yy, zz = x * x, y * y, z * z
            xy, yz, xz = x * y, y * z, x * z
            out += [
                SH_C2[0] * xy,
                SH_C2[1] * yz,
                SH_C2[2] * (2.0 * zz - xx - yy),
                SH_C2[3] * xz,
                SH_C2[4] * (xx - yy),
            ]
            if degree >= 3:
                out += [
                    SH_C3[0] * y * (3.0 * xx - yy),
                    SH_C3[1] * xy * z,
                    SH_C3[2] * y * (4.0 * zz - xx - yy),
                    SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
                    SH_C3[4] * x * (4.0 * zz - xx - yy),
                    SH_C3[5] * z * (xx - yy),
                    SH_C3[6] * x * (xx - 3.0 * yy),
                ]
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH colour (without the +0.5 offset).

    Args:
        degree: SH degree to use, 0..3; ``(degree+1)^2 <= K``.
        dirs: [N, 3] view directions (need not be unit; zero vectors give the DC colour).
        coeffs: [N, K, 3] SH coefficients (K = 1, 4, 9 or 16), channel last.

    Returns:
        [N, 3] ``sum_k basis_k * coeffs[:, k]``.
    """
    nb = num_bases(degree)
    if coeffs.shape[-2] < nb:
        raise ValueError(f"SH degree {degree} needs {nb} coefficients, got {coeffs.shape[-2]}")
    if degree == 0:
        return SH_C0 * coeffs[..., 0, :]
    unit = torch.nn.functional.normalize(dirs, dim=-1)
    bases = eval_sh_bases(degree, unit)  # [N, nb]
    return torch.einsum("nk,nkc->nc", bases, coeffs[..., :nb, :])


def sh_to_rgb(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """3DGS colour: ``max(eval_sh + 0.5, 0)`` -> [N, 3] (not clamped above 1, as in 3DGS)."""
    return torch.clamp_min(eval_sh(degree, dirs, coeffs) + 0.5, 0.0)
