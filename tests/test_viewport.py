"""Viewport math: Blender view/window matrices + object + axis conversion -> the engine camera.

The bpy tests build real Blender cameras (perspective with lens shift, orthographic), use their
own ``calc_matrix_camera`` as the window matrix and ``matrix_world.inverted()`` as the view
matrix, and check that Gaussians (file coordinates) land where Blender's
``world_to_camera_view`` puts the same points through the object's transform.
"""

from __future__ import annotations

import numpy as np
import pytest

from click_gaussian_blender import viewport as VP
from click_gaussian_blender.engine.core.errors import CameraError  # the add-on's copy of the engine


def _perspective(fov_y: float, aspect: float, near: float = 0.1, far: float = 100.0,
                 shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    t = near * np.tan(fov_y / 2)
    r = t * aspect
    l, rr = -r + shift[0] * 2 * r, r + shift[0] * 2 * r
    b, tt = -t + shift[1] * 2 * t, t + shift[1] * 2 * t
    return np.array([[2 * near / (rr - l), 0, (rr + l) / (rr - l), 0],
                     [0, 2 * near / (tt - b), (tt + b) / (tt - b), 0],
                     [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
                     [0, 0, -1, 0]])


def _gl_region(points_world, view, proj, w, h):
    """OpenGL reference: world points -> region coordinates (x right, y up, continuous)."""
    ph = np.c_[points_world, np.ones(len(points_world))] @ (proj @ view).T
    ndc = ph[:, :3] / ph[:, 3:4]
    return np.c_[(ndc[:, 0] + 1) * w / 2, (ndc[:, 1] + 1) * h / 2]


def _rot(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _affine(r=np.eye(3), t=(0, 0, 0), s=1.0):
    m = np.eye(4)
    m[:3, :3] = np.asarray(r) * s
    m[:3, 3] = t
    return m


AXIS = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)  # 3DGS y-down -> z-up


@pytest.mark.parametrize("shift", [(0.0, 0.0), (0.1, -0.05)])
@pytest.mark.parametrize("obj_scale", [1.0, 2.5])
def test_perspective_matches_opengl_projection(shift, obj_scale):
    rng = np.random.default_rng(1)
    w, h = 640, 360
    view = np.linalg.inv(_affine(_rot([1, 0.3, 0.2], 1.1), (0.5, -4.0, 2.0)))
    proj = _perspective(0.8, w / h, shift=shift)
    mw = _affine(_rot([0, 0, 1], 0.4), (0.2, 0.1, -0.3), obj_scale)
    pts_file = rng.normal(0, 0.5, (200, 3))
    vc = VP.view_camera(view, proj, w, h, mw, AXIS)
    assert not vc.orthographic and vc.exact
    assert np.allclose(vc.camera.viewmat[:3, :3] @ vc.camera.viewmat[:3, :3].T, np.eye(3))
    uv, z = vc.camera.project(pts_file)
    world = VP.file_to_local(pts_file, AXIS) @ mw[:3, :3].T + mw[:3, 3]
    ref = _gl_region(world, view, proj, w, h)
    front = (np.c_[world, np.ones(len(world))] @ view.T)[:, 2] < 0
    assert front.sum() > 100
    assert np.all(z[front] > 0)
    assert np.allclose(uv[front, 0], ref[front, 0], atol=1e-6)
    assert np.allclose(uv[front, 1], h - ref[front, 1], atol=1e-6)


def test_orthographic_far_pinhole_within_tolerance():
    rng = np.random.default_rng(2)
    w, h = 500, 400
    view = np.linalg.inv(_affine(_rot([0.2, 1, 0.1], 0.7), (1.0, -6.0, 3.0)))
    half_w, half_h = 3.0, 3.0 * h / w
    proj = np.array([[1 / half_w, 0, 0, -0.1], [0, 1 / half_h, 0, 0.05], [0, 0, -2 / 100, -1], [0, 0, 0, 1]], float)
    mw = _affine(_rot([1, 0, 0], 0.3), (0.0, 0.5, 0.0), 1.7)
    pts_file = rng.normal(0, 0.5, (300, 3))
    vc = VP.view_camera(view, proj, w, h, mw, AXIS, ortho_center=pts_file.mean(0))
    assert vc.orthographic
    uv, z = vc.camera.project(pts_file)
    world = VP.file_to_local(pts_file, AXIS) @ mw[:3, :3].T + mw[:3, 3]
    ref = _gl_region(world, view, proj, w, h)
    assert np.all(z > 0)
    # far pinhole: error below 0.1 % of the offset from the image centre (well under a pixel)
    assert np.max(np.abs(uv[:, 0] - ref[:, 0])) < 0.25
    assert np.max(np.abs(uv[:, 1] - (h - ref[:, 1]))) < 0.25


def test_non_uniform_scale_is_flagged_and_mirror_refused():
    view = np.linalg.inv(_affine(t=(0, 0, 5)))
    proj = _perspective(0.8, 1.0)
    mw = np.diag([1.0, 2.0, 1.0, 1.0])
    assert not VP.view_camera(view, proj, 64, 64, mw).exact
    with pytest.raises(CameraError, match="mirrored"):
        VP.view_camera(view, proj, 64, 64, np.diag([-1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(CameraError, match="pixels"):
        VP.view_camera(view, proj, 0, 64)


def test_region_pixel_mapping_round_trip():
    u, v = VP.region_to_pixel(10, 0, 100)
    assert (u, v) == (10.5, 99.5)  # bottom row in Blender = last row of the image
    assert VP.pixel_to_region(u, v, 100) == (10.0, 0.0)


def test_click_ray_passes_through_the_point():
    rng = np.random.default_rng(3)
    w, h = 320, 240
    view = np.linalg.inv(_affine(_rot([1, 0, 0], 1.2), (0, -5, 1)))
    vc = VP.view_camera(view, _perspective(0.9, w / h), w, h, None, AXIS)
    p = rng.normal(0, 0.3, (1, 3))
    (u, v), = vc.camera.project(p)[0]
    o, d = vc.camera.pixel_ray(u, v)
    assert np.linalg.norm(np.cross(p[0] - o, d)) < 1e-9


# ---------------------------------------------------------------- real Blender cameras (bpy)


@pytest.fixture(scope="module")
def bpy():
    b = pytest.importorskip("bpy")
    b.ops.wm.read_factory_settings(use_empty=True)
    return b


def _blender_check(bpy, cam_type: str, shift=(0.0, 0.0)):
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Euler, Matrix, Vector

    scene = bpy.context.scene
    w, h = 480, 270
    scene.render.resolution_x, scene.render.resolution_y = w, h
    scene.render.resolution_percentage = 100
    cam_data = bpy.data.cameras.new("cam")
    cam_data.type = cam_type
    cam_data.ortho_scale = 4.0
    cam_data.shift_x, cam_data.shift_y = shift
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    cam.location = (3.0, -5.0, 2.5)
    cam.rotation_euler = Euler((1.2, 0.0, 0.55))
    obj = bpy.data.objects.new("splats", bpy.data.meshes.new("splats"))
    scene.collection.objects.link(obj)
    obj.location = (0.3, -0.2, 0.4)
    obj.rotation_euler = Euler((0.1, 0.2, 0.9))
    obj.scale = (1.5, 1.5, 1.5)
    bpy.context.view_layer.update()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    window = np.array(cam.calc_matrix_camera(depsgraph, x=w, y=h))
    view = np.array(cam.matrix_world.inverted())
    mw = np.array(obj.matrix_world)
    rng = np.random.default_rng(4)
    pts_file = rng.normal(0, 0.4, (100, 3))
    vc = VP.view_camera(view, window, w, h, mw, AXIS, ortho_center=pts_file.mean(0))
    uv, _ = vc.camera.project(pts_file)
    for p, (u, v) in zip(pts_file, uv):
        world = Matrix(mw.tolist()) @ Vector(VP.file_to_local(p[None], AXIS)[0].tolist())
        ndc = world_to_camera_view(scene, cam, world)  # (x, y) in [0, 1], y up
        assert abs(u - ndc.x * w) < (0.2 if cam_type == "ORTHO" else 1e-3)
        assert abs(v - (1 - ndc.y) * h) < (0.2 if cam_type == "ORTHO" else 1e-3)
    return vc


@pytest.mark.bpy
def test_blender_perspective_camera(bpy):
    vc = _blender_check(bpy, "PERSP", shift=(0.1, -0.05))
    assert not vc.orthographic and vc.exact


@pytest.mark.bpy
def test_blender_orthographic_camera(bpy):
    vc = _blender_check(bpy, "ORTHO")
    assert vc.orthographic
