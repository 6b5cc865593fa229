"""Blender 3D-viewport geometry -> the engine's camera, in the scene's original coordinates
(numpy only, no bpy: tests and the engine side can call it with plain matrices).

Frames, from a Gaussian's file coordinates to the screen:

- file -> object local: the import's axis conversion ``C`` [4, 4] (object custom property
  ``gs_axis_matrix``, see :mod:`.attributes`);
- local -> world: the object's ``matrix_world`` ``M`` [4, 4];
- world -> view: ``RegionView3D.view_matrix`` ``V`` [4, 4] (OpenGL/Blender camera axes: x right,
  y up, looking along -z);
- view -> clip: ``RegionView3D.window_matrix`` ``P`` [4, 4] (OpenGL projection; perspective, or
  orthographic when ``P[3, 3] == 1``), then the region of ``width`` x ``height`` pixels.

:func:`view_camera` returns an :class:`engine.core.cameras.Camera` (OpenCV: x right, y down, z
forward; ``viewmat`` world-to-camera where "world" is the *file's* coordinate frame), so the
engine renders / clicks the original scene exactly as the viewport shows the object.

- Perspective: exact. ``fx = W/2 P00``, ``cx = W/2 (1 - P02)``, ``fy = H/2 P11``,
  ``cy = H/2 (1 + P12)`` (lens shift and non-square regions included).
- Orthographic: a pinhole camera cannot be orthographic, so the view is replaced by a *far*
  pinhole: the camera steps back along the view direction to ``ortho_distance`` from the plane
  through ``ortho_center`` (default: the plane through the view matrix's origin) and its focal
  length grows so that plane keeps its on-screen size. A point at depth offset ``d`` from that plane lands off by a
  factor ``d / ortho_distance`` of its distance from the image centre; the default distance
  (``ORTHO_DISTANCE_FACTOR`` x the view's own extent) keeps this under ~0.1 %.
- ``C`` and ``M`` may hold a uniform scale (perspective is scale-invariant, the orthographic
  focal length absorbs it). A non-uniform object scale has no pinhole equivalent: the nearest
  rotation and the geometric-mean scale are used and ``ViewCamera.exact`` is False.

Mouse positions: Blender gives region coordinates ``(mx, my)`` in whole pixels from the
region's bottom-left corner (y up). :func:`region_to_pixel` maps the clicked pixel to the
engine's continuous pixel position of its centre: ``(u, v) = (mx + 0.5, H - my - 0.5)`` (x right,
y down; the pixel (u, v) covers [u, u+1) x [v, v+1)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine.core.cameras import GL_FLIP as GL_TO_CV, Camera  # GL_TO_CV: flips camera y and z
from .engine.core.errors import CameraError

ORTHO_DISTANCE_FACTOR = 1000.0


@dataclass
class ViewCamera:
    camera: Camera  # the engine camera (OpenCV), world = the scene file's coordinates
    orthographic: bool  # the view was orthographic (camera is the far-pinhole stand-in)
    exact: bool  # False when a non-uniform object scale had to be approximated
    scale: float  # uniform scale of file -> view (1 for an unscaled object)


def is_orthographic(window_matrix: np.ndarray) -> bool:
    """True for an OpenGL orthographic projection (last row ``[0, 0, 0, 1]``)."""
    p = np.asarray(window_matrix, dtype=np.float64).reshape(4, 4)
    return abs(p[3, 3] - 1.0) < 1e-9 and abs(p[3, 2]) < 1e-9


def _similarity(a: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """Split a 3x3 linear map into (rotation, uniform scale, exact): polar decomposition; the
    scale is the geometric mean of the singular values, exact when they agree within 1e-6."""
    u, s, vt = np.linalg.svd(a)
    r = u @ vt
    if np.linalg.det(r) < 0:
        raise CameraError("the object (or its axis conversion) is mirrored (negative scale): "
                          "apply the scale (Ctrl+A) before clicking")
    if s.min() <= 1e-12:
        raise CameraError("the object has zero scale on an axis: it cannot be clicked")
    scale = float(np.exp(np.mean(np.log(s))))
    return r, scale, bool(np.max(np.abs(s / scale - 1.0)) <= 1e-6)


def view_camera(
    view_matrix: np.ndarray,  # [4, 4] RegionView3D.view_matrix, world -> view (OpenGL axes)
    window_matrix: np.ndarray,  # [4, 4] RegionView3D.window_matrix, view -> clip (OpenGL)
    width: int,  # region width in pixels
    height: int,  # region height in pixels
    matrix_world: np.ndarray | None = None,  # [4, 4] object local -> world (None = identity)
    axis_matrix: np.ndarray | None = None,  # [4, 4] file -> object local (None = identity)
    *,
    ortho_center: np.ndarray | None = None,  # [3] file-frame point on the matched plane (ortho)
    ortho_distance: float | None = None,  # far-pinhole distance, file units (ortho)
    name: str = "viewport",
) -> ViewCamera:
    """The engine camera seeing the scene file's Gaussians as the viewport shows the object
    (see the module docstring)."""
    if width < 1 or height < 1:
        raise CameraError(f"the viewport region is {width}x{height} pixels: nothing to click")
    v = np.asarray(view_matrix, dtype=np.float64).reshape(4, 4)
    p = np.asarray(window_matrix, dtype=np.float64).reshape(4, 4)
    m = np.eye(4) if matrix_world is None else np.asarray(matrix_world, dtype=np.float64).reshape(4, 4)
    c = np.eye(4) if axis_matrix is None else np.asarray(axis_matrix, dtype=np.float64).reshape(4, 4)
    if not (np.isfinite(v).all() and np.isfinite(p).all() and np.isfinite(m).all() and np.isfinite(c).all()):
        raise CameraError("the view or object matrix has NaN or infinite values")
    a = GL_TO_CV @ v @ m @ c  # file -> OpenCV view coordinates (maybe scaled)
    rot, scale, exact = _similarity(a[:3, :3])
    w, h = float(width), float(height)
    viewmat = np.eye(4)
    viewmat[:3, :3] = rot
    viewmat[:3, 3] = a[:3, 3] / scale  # rigid frame: X_rigid = X_view / scale
    ortho = is_orthographic(p)
    if not ortho:
        if abs(p[3, 2] + 1.0) > 1e-6:
            raise CameraError("the viewport's projection matrix is neither perspective nor orthographic")
        k = np.array([[w / 2 * p[0, 0], 0.0, w / 2 * (1.0 - p[0, 2])],
                      [0.0, h / 2 * p[1, 1], h / 2 * (1.0 + p[1, 2])],
                      [0.0, 0.0, 1.0]])
        return ViewCamera(Camera(viewmat, k, width, height, name), False, exact, scale)
    # orthographic: u = W/2 (P00 X_view + P03 + 1), v = H/2 (1 + P11 Y_view - P13) where
    # X_view = scale * X_rigid. Far pinhole at rigid depth z0 - dist: u = fx X/(Z + dist - z0) + cx.
    if ortho_center is not None:
        z0 = float((viewmat[:3, :3] @ np.asarray(ortho_center, np.float64).reshape(3) + viewmat[:3, 3])[2])
    else:
        z0 = 0.0  # the view's origin plane
    if ortho_distance is None:
        # the view's extent in rigid units (the width the region spans), times the factor
        extent = max(2.0 / abs(p[0, 0]), 2.0 / abs(p[1, 1])) / scale
        ortho_distance = ORTHO_DISTANCE_FACTOR * extent
    dist = float(ortho_distance)
    if not (np.isfinite(dist) and dist > 0):
        raise CameraError(f"ortho_distance must be a positive number, got {ortho_distance!r}")
    viewmat[2, 3] += dist - z0
    k = np.array([[w / 2 * p[0, 0] * scale * dist, 0.0, w / 2 * (1.0 + p[0, 3])],
                  [0.0, h / 2 * p[1, 1] * scale * dist, h / 2 * (1.0 - p[1, 3])],
                  [0.0, 0.0, 1.0]])
    return ViewCamera(Camera(viewmat, k, width, height, name), True, exact, scale)


def region_to_pixel(mx: float, my: float, height: int) -> tuple[float, float]:
    """Blender region mouse coordinates (pixels from the bottom-left, y up) -> the engine's
    continuous pixel position of the clicked pixel's centre (x right, y down)."""
    return float(mx) + 0.5, float(height) - float(my) - 0.5


def pixel_to_region(u: float, v: float, height: int) -> tuple[float, float]:
    """Inverse of :func:`region_to_pixel` (continuous: a pixel centre maps to whole numbers)."""
    return float(u) - 0.5, float(height) - float(v) - 0.5


def file_to_local(points: np.ndarray, axis_matrix: np.ndarray) -> np.ndarray:
    """[M, 3] file-frame points -> object local (the import's axis conversion), float64."""
    c = np.asarray(axis_matrix, dtype=np.float64).reshape(4, 4)
    return np.asarray(points, dtype=np.float64) @ c[:3, :3].T + c[:3, 3]


def local_to_file(points: np.ndarray, axis_matrix: np.ndarray) -> np.ndarray:
    """[M, 3] object-local points -> the file's frame (inverse axis conversion), float64."""
    ci = np.linalg.inv(np.asarray(axis_matrix, dtype=np.float64).reshape(4, 4))
    return np.asarray(points, dtype=np.float64) @ ci[:3, :3].T + ci[:3, 3]
