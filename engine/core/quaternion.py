"""Quaternions (w, x, y, z; the 3DGS / Inria order), numpy only: to and from rotation
matrices and the Hamilton product. The rotation formula lives here once; the torch renderer
builds its matrices from :func:`rotation_entries` too."""

from __future__ import annotations

from typing import Any

import numpy as np


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of wxyz quaternions, broadcasting over leading dims
    ([..., 4] x [..., 4] -> [..., 4], float64). Rotating by ``a * b`` = rotate by b, then by a."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def rotation_entries(w: Any, x: Any, y: Any, z: Any) -> tuple:
    """The nine entries (row-major) of the rotation matrix of the unit quaternion (w, x, y, z):
    the one formula, written with arithmetic only so numpy arrays (here) and torch tensors
    (:func:`engine.render.gaussians.quat_to_rotmat`) both use it."""
    return (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip


def unit_quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] from unit wxyz quaternions [..., 4], in their dtype (no
    normalisation: for quaternions already normalised, e.g. float32 on a hot path)."""
    q = np.asarray(q)
    return np.stack(rotation_entries(*np.moveaxis(q, -1, 0)), axis=-1).reshape(q.shape[:-1] + (3, 3))


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] (float64) from wxyz quaternions [..., 4] (normalised here;
    a zero quaternion gives the identity)."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(n > 1e-12, q / np.where(n > 1e-12, n, 1.0), np.array([1.0, 0.0, 0.0, 0.0]))
    return unit_quat_to_matrix(q)


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Unit wxyz quaternions [..., 4] (float64, w >= 0) from proper rotation matrices
    [..., 3, 3] (Shepperd's method: the largest of w, x, y, z is computed first, so it is
    accurate for every rotation)."""
    m = np.asarray(m, dtype=np.float64)
    shape = m.shape[:-2]
    m = m.reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    cand = np.stack([m00 + m11 + m22, m00 - m11 - m22, -m00 + m11 - m22, -m00 - m11 + m22], 1)
    pick = np.argmax(cand, axis=1)
    r = np.sqrt(np.maximum(1.0 + cand[np.arange(len(m)), pick], 1e-300))
    s = 0.5 / r
    q = np.empty((len(m), 4))
    d21, d02, d10 = m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]
    s21, s02, s10 = m[:, 2, 1] + m[:, 1, 2], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 0] + m[:, 0, 1]
    rows = [
        (0.5 * r, d21 * s, d02 * s, d10 * s),
        (d21 * s, 0.5 * r, s10 * s, s02 * s),
        (d02 * s, s10 * s, 0.5 * r, s21 * s),
        (d10 * s, s02 * s, s21 * s, 0.5 * r),
    ]
    for k, row in enumerate(rows):
        sel = pick == k
        if sel.any():
            q[sel] = np.stack([c[sel] for c in row], 1)
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return q.reshape(*shape, 4)


# The three indices other than each largest-component index 0..3, ascending: [4, 3].
_OTHERS = np.array([[j for j in range(4) if j != w] for w in range(4)])


def smallest_three(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smallest-three split of unit quaternions [N, 4] (any component order): the index of
    the largest component by magnitude [N] and the other three [N, 3] (in index order, float64),
    signed as if the largest were made positive. Each lies in [-1/sqrt2, 1/sqrt2]."""
    q = np.asarray(q, dtype=np.float64)
    largest = np.argmax(np.abs(q), axis=1)
    q = np.where(q[np.arange(q.shape[0]), largest][:, None] < 0, -q, q)
    return largest, np.take_along_axis(q, _OTHERS[largest], axis=1)


def from_smallest_three(largest: np.ndarray, abc: np.ndarray) -> np.ndarray:
    """Unit quaternions [N, 4] (float32) from :func:`smallest_three`'s parts: the largest
    component, derived as ``sqrt(1 - |abc|^2)`` (>= 0), at index ``largest``."""
    n = abc.shape[0]
    quats = np.empty((n, 4), np.float32)
    rows = np.arange(n)
    quats[rows[:, None], _OTHERS[largest]] = abc
    quats[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - np.sum(abc * abc, axis=1)))
    return quats
