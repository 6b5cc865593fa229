"""Apply 4x4 affine transforms to 3D Gaussians: positions, rotations, scales and SH colour.

numpy only (the Blender extension uses this module to export edited scenes).

What a transform ``x -> A x + t`` (``A`` = ``matrix[:3, :3]``, ``t`` = ``matrix[:3, 3]``) does to a
Gaussian with mean ``mu``, rotation ``R`` (from the wxyz quaternion) and standard deviations
``s = exp(log_scales)``:

- mean: ``A mu + t`` (exact).
- covariance: ``Sigma' = A Sigma A^T`` with ``Sigma = R diag(s^2) R^T`` (exact: the transformed
  Gaussian is the push-forward of the original density).

  * Similarity ``A = c Q`` (``Q`` orthogonal, ``c > 0``): the new rotation is ``P R`` with
    ``P = Q`` (proper) or ``P = -Q`` (a mirror; ``-I`` does not change a covariance), composed as
    quaternions ``q' = q_P * q`` so the stored quaternion keeps its norm, and
    ``log_scales' = log_scales + log c``. Exact, no decomposition.
  * Anything else (non-uniform scale, shear): ``Sigma'`` is re-decomposed through the SVD of
    ``M = A R diag(s)`` (``Sigma' = M M^T = U diag(sigma^2) U^T``): rotation ``U`` (a column sign
    flipped if needed to make it proper), scales ``sigma``. The covariance is exact; the
    quaternion comes out unit-norm, and the axis order may differ from the input's (the same
    ellipsoid either way).
- view-dependent colour (SH degree 1-3): the colour seen along direction ``d`` must be seen along
  ``Q d`` afterwards, ``colour'(Q d) = colour(d)``, where ``Q`` is the orthogonal polar factor of
  ``A`` (``A = Q P`` with ``P`` symmetric positive definite). For rotations and similarities this
  is exact; mirrors are exact too (the SH space of each degree is closed under all orthogonal
  maps, so the same rotation matrices apply). For non-uniform scale / shear a linear map does not
  map directions to directions rigidly, and using the polar rotation is the standard
  approximation (exact when the non-uniform part is along the Gaussian's axes and the view
  direction is along one of them; otherwise directions are off by the angle ``P`` bends them).
  The DC term is view-independent and never changes.

SH basis and coefficient order follow gsplat / Inria 3DGS (``sh_rest[:, k]`` multiplies basis
function ``k + 1`` of :func:`eval_sh_basis`).
"""

from __future__ import annotations

import numpy as np

from .errors import EngineError
from .quaternion import matrix_to_quat, quat_multiply, quat_to_matrix
from .scene import GaussianScene

SIMILARITY_RTOL = 1e-6  # A^T A within this relative tolerance of c^2 I counts as a similarity


# ----------------------------------------------------------------------------------------------
# Spherical harmonics


def eval_sh_basis(dirs: np.ndarray, degree: int = 3) -> np.ndarray:
    """Real SH basis [M, (degree+1)^2] (float64) at unit directions [M, 3], in gsplat's order
    and sign convention (numpy twin of ``gsplat.cuda._torch_impl._eval_sh_bases_fast``)."""
    d = np.asarray(dirs, dtype=np.float64)
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    out = np.empty((len(d), (degree + 1) ** 2))
    out[:, 0] = 0.2820947917738781
    if degree < 1:
        return out
    a = -0.48860251190292
    out[:, 1], out[:, 2], out[:, 3] = a * y, -a * z, a * x
    if degree < 2:
        return out
    z2 = z * z
    b = -1.092548430592079 * z
    c1, s1 = x * x - y * y, 2 * x * y
    out[:, 4] = 0.5462742152960395 * s1
    out[:, 5] = b * y
    out[:, 6] = 0.9461746957575601 * z2 - 0.3153915652525201
    out[:, 7] = b * x
    out[:, 8] = 0.5462742152960395 * c1
    if degree < 3:
        return out
    tc = -2.285228997322329 * z2 + 0.4570457994644658
    tb = 1.445305721320277 * z
    ta = -0.5900435899266435
    c2, s2 = x * c1 - y * s1, x * s1 + y * c1
    out[:, 9] = ta * s2
    out[:, 10] = tb * s1
    out[:, 11] = tc * y
    out[:, 12] = z * (1.865881662950577 * z2 - 1.119528997770346)
    out[:, 13] = tc * x
    out[:, 14] = tb * c1
    out[:, 15] = ta * c2
    return out


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (1 + 5**0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


_SAMPLE_DIRS = _fibonacci_sphere(64)
_SAMPLE_BASIS = eval_sh_basis(_SAMPLE_DIRS, 3)
_SAMPLE_PINV = {
    deg: np.linalg.pinv(_SAMPLE_BASIS[:, deg * deg : (deg + 1) ** 2]) for deg in (1, 2, 3)
}


def sh_rotation_matrix(orthogonal: np.ndarray, degree: int) -> np.ndarray:
    """Block-diagonal [K, K] (K = (degree+1)^2 - 1, float64) acting on the SH coefficients
    beyond DC so that the rotated function satisfies ``f'(Q d) = f(d)`` for an orthogonal
    ``Q`` [3, 3] (rotation or mirror). Built per degree l by fitting the (exact, closed) degree-l
    subspace at 64 fixed sphere directions: ``W_l = pinv(Y_l(D)) @ Y_l(Q^T D)``."""
    q = np.asarray(orthogonal, dtype=np.float64)
    k = (degree + 1) ** 2 - 1
    out = np.zeros((k, k))
    if degree == 0:
        return out
    rotated = eval_sh_basis(_SAMPLE_DIRS @ q, degree)  # rows are Y(Q^T d_i)
    for deg in range(1, degree + 1):
        lo, hi = deg * deg, (deg + 1) ** 2
        out[lo - 1 : hi - 1, lo - 1 : hi - 1] = _SAMPLE_PINV[deg] @ rotated[:, lo:hi]
    return out


def rotate_sh(sh_rest: np.ndarray, orthogonal: np.ndarray) -> np.ndarray:
    """SH coefficients beyond DC [N, K, 3] rotated by an orthogonal [3, 3]; same dtype.

    Computed as one [K, K] x [K, N*3] matrix product in the input's float precision (float32
    here: ~1e-7 relative error); when ``sh_rest`` is a view of a contiguous [K, N, 3] buffer
    (as the Blender exporter builds it) no transposing copy is made, and the result is such a
    view too."""
    if sh_rest.shape[1] == 0:
        return sh_rest.copy()
    return np.moveaxis(_rotate_sh_cm(np.moveaxis(sh_rest, 1, 0), orthogonal), 0, 1)


def _rotate_sh_cm(sh_cm: np.ndarray, orthogonal: np.ndarray) -> np.ndarray:
    """Coefficient-major twin of :func:`rotate_sh`: [K, M, 3] -> new contiguous [K, M, 3]."""
    k, m, _ = sh_cm.shape
    if k == 0:
        return np.array(sh_cm)
    degree = {3: 1, 8: 2, 15: 3}[k]
    w = sh_rotation_matrix(orthogonal, degree)
    dtype = sh_cm.dtype if sh_cm.dtype in (np.float32, np.float64) else np.float64
    flat = np.ascontiguousarray(sh_cm, dtype=dtype).reshape(k, m * 3)
    return (w.astype(dtype) @ flat).reshape(k, m, 3).astype(sh_cm.dtype, copy=False)


# ----------------------------------------------------------------------------------------------
# Affine maps


def polar_decompose(linear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A = Q P`` for a [3, 3] matrix: Q orthogonal (det +-1), P symmetric positive
    semi-definite (both float64), through the SVD ``A = U S V^T``: ``Q = U V^T``,
    ``P = V S V^T``."""
    u, s, vt = np.linalg.svd(np.asarray(linear, dtype=np.float64))
    return u @ vt, (vt.T * s) @ vt


def similarity_scale(linear: np.ndarray, rtol: float = SIMILARITY_RTOL) -> float | None:
    """The factor ``c`` if ``linear`` [3, 3] is ``c * Q`` with Q orthogonal (within rtol),
    else None."""
    a = np.asarray(linear, dtype=np.float64)
    ata = a.T @ a
    c2 = np.trace(ata) / 3.0
    if c2 <= 0:
        return None
    if np.max(np.abs(ata - c2 * np.eye(3))) > rtol * c2:
        return None
    return float(np.sqrt(c2))


def _check_matrix(matrix: np.ndarray, what: str = "transform") -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise EngineError(f"{what} must be a 4x4 matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise EngineError(f"{what} contains non-finite values")
    if np.max(np.abs(m[3] - (0.0, 0.0, 0.0, 1.0))) > 1e-9:
        raise EngineError(f"{what} is projective (last row {m[3].tolist()}), not affine")
    if abs(np.linalg.det(m[:3, :3])) < 1e-15:
        raise EngineError(f"{what} is singular (it flattens the scene)")
    return m


def _transform_arrays(
    means: np.ndarray,  # [M, 3] float32
    quats: np.ndarray,  # [M, 4] float32 wxyz as stored
    log_scales: np.ndarray,  # [M, 3] float32
    sh_cm: np.ndarray,  # [K, M, 3] float32, coefficient-major
    m: np.ndarray,  # [4, 4] float64, checked
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    a, t = m[:3, :3], m[:3, 3]
    new_means = (means.astype(np.float64) @ a.T + t).astype(means.dtype)
    q_orth, _ = polar_decompose(a)
    c = similarity_scale(a)
    if c is not None:
        proper = q_orth if np.linalg.det(q_orth) > 0 else -q_orth
        qp = matrix_to_quat(proper)
        new_quats = quat_multiply(qp, quats.astype(np.float64)).astype(quats.dtype)
        new_scales = (log_scales.astype(np.float64) + np.log(c)).astype(log_scales.dtype)
    else:
        rot = quat_to_matrix(quats)  # [M, 3, 3]
        s = np.exp(log_scales.astype(np.float64))  # [M, 3]
        mm = np.einsum("ij,njk->nik", a, rot) * s[:, None, :]  # A R diag(s)
        u, sig, _ = np.linalg.svd(mm)
        flip = np.linalg.det(u) < 0
        u[flip, :, 2] *= -1.0
        new_quats = matrix_to_quat(u).astype(quats.dtype)
        new_scales = np.log(np.maximum(sig, 1e-30)).astype(log_scales.dtype)
    new_sh = _rotate_sh_cm(sh_cm, q_orth) if sh_cm.shape[0] else sh_cm
    return new_means, new_quats, new_scales, new_sh


def apply_affine(scene: GaussianScene, matrix: np.ndarray) -> GaussianScene:
    """A new scene with every Gaussian mapped by the affine ``matrix`` [4, 4] (see the module
    docstring for what happens to rotations, scales and SH). Opacity, DC colour and extra
    properties are copied unchanged; the layout is kept. Raises EngineError for a singular,
    projective or non-finite matrix."""
    groups = np.zeros(scene.num_gaussians, dtype=np.int32)
    return apply_affine_groups(scene, np.asarray(matrix)[None], groups)


def apply_affine_groups(
    scene: GaussianScene,
    matrices: np.ndarray,  # [G, 4, 4]
    groups: np.ndarray,  # [N] int, group index per Gaussian, -1 = left unchanged
    *,
    copy: bool = True,
) -> GaussianScene:
    """A new scene where each Gaussian ``i`` with ``groups[i] = g >= 0`` is mapped by
    ``matrices[g]`` and the others are copied bit-for-bit. Identity matrices are skipped, so an
    untouched Gaussian's values stay exact. With ``copy=False`` arrays that do not change are
    shared with ``scene`` instead of copied (for callers that own the scene, e.g. exporters)."""
    mats = np.asarray(matrices, dtype=np.float64)
    if mats.ndim != 3 or mats.shape[1:] != (4, 4):
        raise EngineError(f"transform matrices must have shape [G, 4, 4], got {mats.shape}")
    groups = np.asarray(groups)
    if groups.shape != (scene.num_gaussians,):
        raise EngineError(f"group index has shape {groups.shape}, expected ({scene.num_gaussians},)")
    if len(groups) and groups.max(initial=-1) >= len(mats):
        raise EngineError(f"group index {int(groups.max())} has no matrix ({len(mats)} given)")
    # SH handled coefficient-major [K, N, 3]: a free view when the scene's sh_rest is a view of
    # such a buffer (the Blender exporter's), and the layout a batched SH rotation wants.
    arrays = {"means": scene.means, "quats": scene.quats, "scales": scene.scales,
              "sh_cm": np.moveaxis(scene.sh_rest, 1, 0)}
    source = dict(arrays)
    owned = {name: False for name in arrays}
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(len(mats) + 1))
    for g in range(len(mats)):
        idx = order[bounds[g] : bounds[g + 1]]
        if len(idx) == 0 or np.array_equal(mats[g], np.eye(4)):
            continue
        m = _check_matrix(mats[g], f"transform {g}")
        if len(idx) == len(groups):
            results = _transform_arrays(source["means"], source["quats"], source["scales"], source["sh_cm"], m)
            for name, value in zip(arrays, results):
                arrays[name], owned[name] = value, True
            continue
        if len(idx) > 1 and idx[-1] - idx[0] == len(idx) - 1:
            idx = slice(int(idx[0]), int(idx[-1]) + 1)  # a contiguous run: views, no gathers
        results = _transform_arrays(source["means"][idx], source["quats"][idx], source["scales"][idx],
                                    source["sh_cm"][:, idx], m)
        for name, value in zip(arrays, results):
            if not owned[name]:
                arrays[name], owned[name] = np.array(arrays[name]), True
            if name == "sh_cm":
                arrays[name][:, idx] = value
            else:
                arrays[name][idx] = value
    if copy:
        arrays = {k: (v if owned[k] else v.copy()) for k, v in arrays.items()}
    return GaussianScene(
        means=arrays["means"],
        scales=arrays["scales"],
        quats=arrays["quats"],
        opacities=scene.opacities.copy() if copy else scene.opacities,
        sh_dc=scene.sh_dc.copy() if copy else scene.sh_dc,
        sh_rest=np.moveaxis(arrays["sh_cm"], 0, 1),
        extra={k: (v.copy() if copy else v) for k, v in scene.extra.items()},
        layout=scene.layout,
        path=scene.path,
    )


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991, with scale, no reflection) mapping points
    ``src`` [M, 3] onto ``dst`` [M, 3]: returns [4, 4] float64 ``T`` minimising
    ``sum |c R src_i + t - dst_i|^2``. Needs 3 non-collinear points for a unique rotation;
    with fewer it still returns the best fit (a translation for one point)."""
    x = np.asarray(src, dtype=np.float64)
    y = np.asarray(dst, dtype=np.float64)
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    var = (xc * xc).sum() / len(x)
    out = np.eye(4)
    if var <= 0:
        out[:3, 3] = my - mx
        return out
    cov = yc.T @ xc / len(x)
    u, d, vt = np.linalg.svd(cov)
    s = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2] = -1.0
    r = (u * s) @ vt
    c = float((d * s).sum() / var)
    out[:3, :3] = c * r
    out[:3, 3] = my - c * r @ mx
    return out


def fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares affine [4, 4] float64 mapping ``src`` [M, 3] onto ``dst`` [M, 3], or None
    when the points do not span 3D well enough (coplanar, fewer than 4)."""
    x = np.asarray(src, dtype=np.float64)
    y = np.asarray(dst, dtype=np.float64)
    if len(x) < 4:
        return None
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    sv = np.linalg.svd(xc, compute_uv=False)
    if sv[0] <= 0 or sv[2] < 1e-6 * sv[0]:
        return None
    sol, *_ = np.linalg.lstsq(xc, y - my, rcond=None)  # [3, 3]: y_c = x_c @ sol
    out = np.eye(4)
    out[:3, :3] = sol.T
    out[:3, 3] = my - sol.T @ mx
    return out
