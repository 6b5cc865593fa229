"""engine.core.transform: Gaussians under affine maps (positions, covariances, quaternions, SH)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.errors import EngineError
from engine.core.scene import GaussianScene
from engine.core.transform import (
    apply_affine,
    apply_affine_groups,
    eval_sh_basis,
    fit_affine,
    fit_similarity,
    matrix_to_quat,
    quat_multiply,
    quat_to_matrix,
    rotate_sh,
    sh_rotation_matrix,
)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return quat_to_matrix(q / np.linalg.norm(q))


def random_scene(rng: np.random.Generator, n: int = 200, k: int = 15) -> GaussianScene:
    return GaussianScene(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        scales=rng.uniform(-4, -1, size=(n, 3)).astype(np.float32),
        quats=(rng.normal(size=(n, 4)) * rng.uniform(0.5, 2.0, size=(n, 1))).astype(np.float32),
        opacities=rng.normal(size=n).astype(np.float32),
        sh_dc=rng.normal(size=(n, 3)).astype(np.float32),
        sh_rest=(0.3 * rng.normal(size=(n, k, 3))).astype(np.float32),
        extra={"nx": rng.normal(size=n).astype(np.float32)},
    )


def covariances(scene: GaussianScene) -> np.ndarray:
    r = quat_to_matrix(scene.quats)
    s2 = np.exp(2 * scene.scales.astype(np.float64))
    return np.einsum("nij,nj,nkj->nik", r, s2, r)


def sh_colour(dc: np.ndarray, rest: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """[N, 3] colour (before the +0.5 offset) of each Gaussian seen along dirs [N, 3]."""
    basis = eval_sh_basis(dirs, 3)[:, : rest.shape[1] + 1]
    coeffs = np.concatenate([dc[:, None], rest], 1).astype(np.float64)
    return np.einsum("nk,nkc->nc", basis, coeffs)


def test_sh_basis_matches_gsplat_reference() -> None:
    torch = pytest.importorskip("torch")
    from gsplat.cuda._torch_impl import _eval_sh_bases_fast

    rng = np.random.default_rng(0)
    d = rng.normal(size=(500, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    ref = _eval_sh_bases_fast(16, torch.from_numpy(d)).numpy()
    np.testing.assert_allclose(eval_sh_basis(d, 3), ref, atol=1e-12)


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("k", [3, 8, 15])
def test_rotated_sh_colour_follows_direction(mirror: bool, k: int) -> None:
    """colour'(Q d) == colour(d) for rotations and mirrors, every SH degree."""
    rng = np.random.default_rng(k + 10 * mirror)
    n = 300
    dc = rng.normal(size=(n, 3))
    rest = rng.normal(size=(n, k, 3))
    for _ in range(5):
        q = random_rotation(rng)
        if mirror:
            q = q @ np.diag([1.0, -1.0, 1.0])
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        before = sh_colour(dc, rest, d)
        after = sh_colour(dc, rotate_sh(rest, q), d @ q.T)
        np.testing.assert_allclose(after, before, atol=1e-9)
        # and it is not trivially unchanged
        assert np.abs(sh_colour(dc, rest, d @ q.T) - before).max() > 1e-3


def test_sh_rotation_composes_and_inverts() -> None:
    rng = np.random.default_rng(1)
    a, b = random_rotation(rng), random_rotation(rng)
    wa, wb, wab = (sh_rotation_matrix(m, 3) for m in (a, b, a @ b))
    np.testing.assert_allclose(wa @ wb, wab, atol=1e-10)
    np.testing.assert_allclose(sh_rotation_matrix(a.T, 3) @ wa, np.eye(15), atol=1e-10)


def test_quaternion_roundtrip_and_composition() -> None:
    rng = np.random.default_rng(2)
    q = rng.normal(size=(1000, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    m = quat_to_matrix(q)
    q2 = matrix_to_quat(m)
    np.testing.assert_allclose(np.abs((q * q2).sum(1)), 1.0, atol=1e-12)  # same rotation, +-q
    # near 180 degree rotations (w ~ 0), where naive conversions break
    flips = quat_to_matrix(np.array([[0.0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1e-9, 0.6, 0.8, 0]]))
    np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(flips)), flips, atol=1e-9)
    p = rng.normal(size=(1000, 4))
    np.testing.assert_allclose(
        quat_to_matrix(quat_multiply(p, q)), quat_to_matrix(p) @ m, atol=1e-12
    )


def _check_transformed(scene: GaussianScene, out: GaussianScene, m: np.ndarray) -> None:
    a, t = m[:3, :3], m[:3, 3]
    np.testing.assert_allclose(out.means, scene.means.astype(np.float64) @ a.T + t, atol=1e-5)
    want = np.einsum("ij,njk,lk->nil", a, covariances(scene), a)
    got = covariances(out)
    scale = np.abs(want).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(got / scale, want / scale, atol=2e-5)
    np.testing.assert_array_equal(out.opacities, scene.opacities)
    np.testing.assert_array_equal(out.sh_dc, scene.sh_dc)
    np.testing.assert_array_equal(out.extra["nx"], scene.extra["nx"])
    assert out.means.dtype == out.quats.dtype == out.scales.dtype == np.float32


def test_similarity_is_exact_composition() -> None:
    rng = np.random.default_rng(3)
    scene = random_scene(rng)
    m = np.eye(4)
    rot = random_rotation(rng)
    m[:3, :3] = 2.5 * rot
    m[:3, 3] = (1.0, -2.0, 0.5)
    out = apply_affine(scene, m)
    _check_transformed(scene, out, m)
    np.testing.assert_allclose(out.scales, scene.scales + np.log(2.5), atol=1e-6)
    # quaternion composed, stored norm kept (unnormalised input stays unnormalised)
    np.testing.assert_allclose(
        np.linalg.norm(out.quats, axis=1), np.linalg.norm(scene.quats, axis=1), rtol=1e-5
    )
    # SH rotated with the rotation: colour seen along R d equals colour along d
    d = rng.normal(size=(len(scene), 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(
        sh_colour(out.sh_dc, out.sh_rest, d @ rot.T), sh_colour(scene.sh_dc, scene.sh_rest, d), atol=2e-5
    )


def test_non_uniform_scale_and_shear_transform_covariance() -> None:
    rng = np.random.default_rng(4)
    scene = random_scene(rng)
    m = np.eye(4)
    m[:3, :3] = random_rotation(rng) @ np.diag([3.0, 0.5, 1.2]) @ random_rotation(rng)
    m[0, 1] += 0.7  # shear
    m[:3, 3] = (0.1, 0.2, 0.3)
    out = apply_affine(scene, m)
    _check_transformed(scene, out, m)
    np.testing.assert_allclose(np.linalg.norm(out.quats, axis=1), 1.0, atol=1e-6)


def test_mirror_is_handled() -> None:
    rng = np.random.default_rng(5)
    scene = random_scene(rng)
    m = np.diag([-1.0, 1.0, 1.0, 1.0])
    out = apply_affine(scene, m)
    _check_transformed(scene, out, m)
    d = rng.normal(size=(len(scene), 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(
        sh_colour(out.sh_dc, out.sh_rest, d * (-1, 1, 1)), sh_colour(scene.sh_dc, scene.sh_rest, d), atol=2e-5
    )
    # mirror with non-uniform scale goes through the decomposition path
    m2 = np.diag([-2.0, 1.0, 0.5, 1.0])
    _check_transformed(scene, apply_affine(scene, m2), m2)


def test_groups_leave_untouched_gaussians_bit_exact() -> None:
    rng = np.random.default_rng(6)
    scene = random_scene(rng)
    groups = np.full(len(scene), -1)
    groups[10:50] = 1
    groups[60:70] = 0
    mats = np.stack([np.eye(4), np.eye(4)])
    mats[1, :3, 3] = (5, 0, 0)
    out = apply_affine_groups(scene, mats, groups)
    same = np.ones(len(scene), bool)
    same[10:50] = False
    for name in ("means", "quats", "scales", "sh_rest"):
        np.testing.assert_array_equal(getattr(out, name)[same], getattr(scene, name)[same])
    np.testing.assert_allclose(out.means[10:50], scene.means[10:50] + (5, 0, 0), atol=1e-6)
    np.testing.assert_array_equal(out.quats[10:50], scene.quats[10:50])


def test_bad_matrices_are_engine_errors() -> None:
    scene = random_scene(np.random.default_rng(7), n=5)
    with pytest.raises(EngineError, match="singular"):
        apply_affine(scene, np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(EngineError, match="projective"):
        m = np.eye(4)
        m[3, 0] = 1
        apply_affine(scene, m)
    with pytest.raises(EngineError, match="non-finite"):
        apply_affine(scene, np.full((4, 4), np.nan))
    with pytest.raises(EngineError, match="4, 4"):
        apply_affine(scene, np.eye(3))


def test_fits_recover_transforms() -> None:
    rng = np.random.default_rng(8)
    src = rng.normal(size=(50, 3))
    m = np.eye(4)
    m[:3, :3] = 0.7 * random_rotation(rng)
    m[:3, 3] = (3, 2, 1)
    dst = src @ m[:3, :3].T + m[:3, 3]
    np.testing.assert_allclose(fit_similarity(src, dst), m, atol=1e-10)
    a = np.eye(4)
    a[:3, :3] = np.diag([1.0, 2.0, 3.0]) @ random_rotation(rng)
    np.testing.assert_allclose(fit_affine(src, src @ a[:3, :3].T), a, atol=1e-10)
    assert fit_affine(src[:, :] * (1, 1, 0), dst) is None  # coplanar
    t = fit_similarity(src[:1], src[:1] + 1)
    np.testing.assert_allclose(t[:3, 3], 1.0)


@pytest.mark.parametrize("coefficient_major", [False, True])
def test_partial_groups_rotate_only_their_sh(coefficient_major: bool) -> None:
    rng = np.random.default_rng(9)
    scene = random_scene(rng, n=300)
    if coefficient_major:  # the Blender exporter's layout: a view of a [K, N, 3] buffer
        scene.sh_rest = np.ascontiguousarray(scene.sh_rest.transpose(1, 0, 2)).transpose(1, 0, 2)
    groups = np.full(300, -1)
    groups[rng.permutation(300)[:100]] = 0  # scattered members
    groups[200:260] = 1  # a contiguous run
    mats = np.stack([np.eye(4), np.eye(4)])
    mats[0, :3, :3] = 1.5 * random_rotation(rng)
    mats[1, :3, :3] = random_rotation(rng) @ np.diag([1.0, 2.0, 0.5])
    out = apply_affine_groups(scene, mats, groups)
    for g in (0, 1):
        sel = groups == g
        want = apply_affine(scene.subset(sel), mats[g])
        for name in ("means", "quats", "scales", "sh_rest"):
            np.testing.assert_allclose(getattr(out, name)[sel], getattr(want, name), atol=1e-5, err_msg=name)
    rest = groups == -1
    np.testing.assert_array_equal(out.sh_rest[rest], scene.sh_rest[rest])
