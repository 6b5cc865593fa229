"""engine.core.cameras: the OpenCV camera against gsplat's reference projection on real data, COLMAP
(binary and text), Inria cameras.json and transforms.json loaders (with a proof of the OpenGL ->
OpenCV conversion), image matching, and orbit views for scenes without cameras."""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from engine.core.cameras import (
    Camera,
    estimate_up,
    image_size,
    intrinsics,
    load_cameras,
    load_transforms_json,
    look_at_viewmat,
    opengl_to_opencv,
    orbit_cameras,
    parse_up,
)
from engine.core.errors import CameraError
from engine.core.formats.ply import read_ply
from engine.core.scene import GaussianScene


def _rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a rotation matrix (independent of the loader's qvec -> matrix)."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


def _png(path: Path, width: int, height: int) -> Path:
    """A valid tiny RGB PNG (stdlib only)."""
    raw = b"".join(b"\x00" + bytes(3 * width) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def garden(shared_data: Path) -> dict:
    with np.load(shared_data / "garden_cameras.npz") as z:
        return {k: np.asarray(z[k]) for k in z.files}


# ---------------------------------------------------------------- projection vs gsplat

def test_garden_projection_matches_gsplat_reference(garden: dict) -> None:
    import torch
    from gsplat.cuda._torch_impl import _fully_fused_projection

    w, h = int(garden["width"]), int(garden["height"])
    pts = garden["means3d"][::7].astype(np.float64)
    n = len(pts)
    covars = torch.eye(3, dtype=torch.float64).expand(n, 3, 3) * 1e-4
    radii, means2d, depths, _, _ = _fully_fused_projection(
        torch.from_numpy(pts), covars, torch.from_numpy(garden["viewmats"].astype(np.float64)),
        torch.from_numpy(garden["Ks"].astype(np.float64)), w, h)
    checked = 0
    for c in range(len(garden["viewmats"])):
        cam = Camera(garden["viewmats"][c], garden["Ks"][c], w, h)
        uv, z = cam.project(pts)
        valid = (radii[c] > 0).all(dim=-1).numpy() if radii.dim() == 3 else (radii[c] > 0).numpy()
        assert valid.sum() > 1000
        np.testing.assert_allclose(uv[valid], means2d[c].numpy()[valid], rtol=0, atol=1e-6)
        np.testing.assert_allclose(z[valid], depths[c].numpy()[valid], rtol=1e-12, atol=1e-9)
        checked += valid.sum()
    assert checked > 3000


def test_npz_loader_and_pixel_ray_round_trip(shared_data: Path, garden: dict) -> None:
    cams = load_cameras(shared_data / "garden_cameras.npz")
    assert len(cams) == 3 and cams[0].width == 648 and cams[0].height == 420
    cam = cams[1]
    pts = garden["means3d"][:300].astype(np.float64)
    uv, z = cam.project(pts)
    assert (z > 0).sum() > 50
    for (u, v), p in zip(uv[z > 0], pts[z > 0]):
        o, d = cam.pixel_ray(u, v)
        np.testing.assert_allclose(o + d * np.linalg.norm(p - o), p, atol=1e-6)


def test_camera_helpers() -> None:
    K = intrinsics(100, 100, 64, 48)
    cam = Camera.look_at([0, -5, 0], [0, 0, 0], [0, 0, 1], K, 128, 96, "c")
    # world +z is up in the image (smaller v), world +x is to the right
    uv, z = cam.project(np.array([[0, 0, 0], [0, 0, 1.0], [1.0, 0, 0]]))
    np.testing.assert_allclose(uv[0], [64, 48])
    assert uv[1, 1] < 48 and uv[2, 0] > 64 and np.allclose(z, 5)
    np.testing.assert_allclose(cam.center, [0, -5, 0], atol=1e-12)
    # OpenGL view: the camera looks along its -z
    gl = cam.opengl_c2w
    np.testing.assert_allclose(-gl[:3, 2], [0, 1, 0], atol=1e-12)
    back = Camera.from_opengl(gl, K, 128, 96)
    np.testing.assert_allclose(back.viewmat, cam.viewmat, atol=1e-12)
    assert math.isclose(cam.fov_x, 2 * math.atan(64 / 100))
    with pytest.raises(CameraError, match="parallel"):
        look_at_viewmat([0, 0, 5], [0, 0, 0], [0, 0, 1])


# --------------------------------------------------------------------------- COLMAP

_MODELS = {"SIMPLE_PINHOLE": (0, [500.0, 320.0, 240.0]), "PINHOLE": (1, [500.0, 510.0, 321.0, 241.0]),
           "SIMPLE_RADIAL": (2, [505.0, 320.0, 240.0, 0.01]), "RADIAL": (3, [505.0, 320.0, 240.0, 0.01, 0.0]),
           "OPENCV": (4, [500.0, 502.0, 320.0, 240.0, 0.01, 0.0, 0.0, 0.0])}


def _expected_K(model: str, params: list[float]) -> np.ndarray:
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        return intrinsics(params[0], params[0], params[1], params[2])
    return intrinsics(*params[:4])


def _write_colmap(folder: Path, garden: dict, names: list[str], binary: bool,
                  models: list[str]) -> None:
    """COLMAP sparse model of the garden poses, one camera per image with the given models."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = 648, 420
    cams = []
    images = []
    for i, (name, model) in enumerate(zip(names, models)):
        model_id, params = _MODELS[model]
        cams.append((i + 1, model, model_id, params))
        R, t = garden["viewmats"][i][:3, :3].astype(np.float64), garden["viewmats"][i][:3, 3].astype(np.float64)
        images.append((10 + i, _rotmat_to_qvec(R), t, i + 1, name))
    if binary:
        with open(folder / "cameras.bin", "wb") as f:
            f.write(struct.pack("<Q", len(cams)))
            for cid, _, mid, params in cams:
                f.write(struct.pack("<iiQQ", cid, mid, w, h) + struct.pack(f"<{len(params)}d", *params))
        with open(folder / "images.bin", "wb") as f:
            f.write(struct.pack("<Q", len(images)))
            for iid, q, t, cid, name in images:
                f.write(struct.pack("<i4d3di", iid, *q, *t, cid) + name.encode() + b"\x00")
                f.write(struct.pack("<Q", 2) + struct.pack("<ddq", 1.5, 2.5, 7) * 2)
    else:
        lines = ["# Camera list with one line of data per camera:"]
        lines += [f"{cid} {model} {w} {h} " + " ".join(repr(p) for p in params) for cid, model, _, params in cams]
        (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
        lines = ["# Image list with two lines of data per image:", "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
        for k, (iid, q, t, cid, name) in enumerate(images):
            lines.append(f"{iid} " + " ".join(repr(float(v)) for v in [*q, *t]) + f" {cid} {name}")
            lines.append("" if k == 0 else "1.5 2.5 7 3.5 4.5 -1")  # an empty POINTS2D line too
        (folder / "images.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_model_loads_poses_intrinsics_and_images(tmp_path: Path, garden: dict, binary: bool) -> None:
    root = tmp_path / "scene"
    names = ["c.jpg", "a.jpg", "b.jpg"]
    models = ["PINHOLE", "OPENCV", "SIMPLE_RADIAL"]
    _write_colmap(root / "sparse" / "0", garden, names, binary, models)
    for n in names:
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / n).write_bytes(b"")
    messages: list[str] = []
    cams = load_cameras(root, warn=messages.append)
    assert [c.name for c in cams] == ["a.jpg", "b.jpg", "c.jpg"]  # sorted by image name
    by_name = dict(zip(names, range(3)))
    for c in cams:
        i = by_name[c.name]
        np.testing.assert_allclose(c.viewmat, garden["viewmats"][i], atol=1e-6)
        np.testing.assert_allclose(c.K, _expected_K(models[i], _MODELS[models[i]][1]))
        assert (c.width, c.height) == (648, 420)
        assert c.image_path == str(root / "images" / c.name)
    assert len(messages) == 2 and all("distortion" in m for m in messages)  # OPENCV + SIMPLE_RADIAL
    # the same model through the sparse/0 folder and through one of its files
    again = load_cameras(root / "sparse" / "0" / ("images.bin" if binary else "cameras.txt"), warn=messages.append)
    assert [c.name for c in again] == [c.name for c in cams]
    # projections through the loaded cameras equal the real garden cameras
    pts = garden["means3d"][:500]
    for c in cams:
        i = by_name[c.name]
        ref = Camera(garden["viewmats"][i], c.K, 648, 420)
        ref_uv, ref_z = ref.project(pts)
        front = ref_z > 0.5  # the float32 garden poses went through a quaternion
        np.testing.assert_allclose(c.project(pts)[0][front], ref_uv[front], rtol=1e-5, atol=1e-3)


def test_colmap_all_pinhole_models_text(tmp_path: Path, garden: dict) -> None:
    for model in _MODELS:
        folder = tmp_path / model
        _write_colmap(folder, garden, ["x.png"], False, [model])
        cams = load_cameras(folder, warn=lambda m: None)
        np.testing.assert_allclose(cams[0].K, _expected_K(model, _MODELS[model][1]))
        assert cams[0].image_path is None  # no images folder: cameras only


def test_colmap_missing_images_named(tmp_path: Path, garden: dict) -> None:
    root = tmp_path / "scene"
    _write_colmap(root / "sparse" / "0", garden, ["img_001.jpg", "img_002.jpg", "img_003.jpg"], True,
                  ["PINHOLE"] * 3)
    (root / "images").mkdir()
    (root / "images" / "img_002.jpg").write_bytes(b"")
    with pytest.raises(CameraError, match=r"2 of 3 images are missing: img_001.jpg, img_003.jpg"):
        load_cameras(root)


def test_colmap_images_matched_by_name_in_other_folder(tmp_path: Path, garden: dict) -> None:
    root = tmp_path / "scene"
    _write_colmap(root / "sparse" / "0", garden, ["sub/A.JPG", "b.jpg", "c.jpg"], True, ["PINHOLE"] * 3)
    small = tmp_path / "images_4"
    for n in ("A.JPG", "b.png", "c.jpg"):  # same-size copies, one re-encoded as PNG
        _png(small / n, 648, 420)
    cams = load_cameras(root / "sparse" / "0", images_dir=small, warn=lambda m: None)
    assert [Path(c.image_path).name for c in cams] == ["b.png", "c.jpg", "A.JPG"]
    assert all((c.width, c.height) == (648, 420) for c in cams)


def test_cameras_scaled_to_downscaled_images(tmp_path: Path, garden: dict) -> None:
    root = tmp_path / "scene"
    _write_colmap(root / "sparse" / "0", garden, ["a.png", "b.png", "c.png"], True, ["PINHOLE"] * 3)
    for n in ("a.png", "b.png", "c.png"):
        _png(root / "images_4" / n, 162, 105)  # 648x420 / 4
    messages: list[str] = []
    cams = load_cameras(root, images_dir=root / "images_4", warn=messages.append)
    full = load_cameras(root, warn=lambda m: None)
    for c, f in zip(cams, full):
        assert (c.width, c.height) == (162, 105)
        np.testing.assert_allclose(c.K[:2], f.K[:2] / 4)
        pts = garden["means3d"][:100]
        np.testing.assert_allclose(c.project(pts)[0], f.project(pts)[0] / 4, rtol=1e-9)
    assert any("3 cameras scaled" in m for m in messages)
    _png(root / "images_4" / "b.png", 100, 100)
    with pytest.raises(CameraError, match=r"b.png is 100x100 but its camera is 648x420"):
        load_cameras(root, images_dir=root / "images_4", warn=lambda m: None)


def test_colmap_fisheye_and_truncated_refused(tmp_path: Path, garden: dict) -> None:
    folder = tmp_path / "fish"
    folder.mkdir()
    (folder / "cameras.txt").write_text("1 OPENCV_FISHEYE 640 480 300 300 320 240 0.1 0 0 0\n")
    (folder / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.jpg\n\n")
    with pytest.raises(CameraError, match="OPENCV_FISHEYE is not supported"):
        load_cameras(folder)
    binf = tmp_path / "bin"
    _write_colmap(binf, garden, ["a.jpg"], True, ["PINHOLE"])
    data = (binf / "images.bin").read_bytes()
    (binf / "images.bin").write_bytes(data[:30])
    with pytest.raises(CameraError, match="images.bin: truncated COLMAP file"):
        load_cameras(binf)


# ------------------------------------------------------------------- Inria cameras.json

def test_inria_cameras_json(tmp_path: Path, garden: dict) -> None:
    entries = []
    for i in range(3):
        c2w = np.linalg.inv(garden["viewmats"][i].astype(np.float64))
        K = garden["Ks"][i]
        entries.append({"id": i, "img_name": f"DSC{i:04d}", "width": 648, "height": 420,
                        "position": c2w[:3, 3].tolist(), "rotation": c2w[:3, :3].tolist(),
                        "fx": float(K[0, 0]), "fy": float(K[1, 1])})
    p = tmp_path / "model" / "cameras.json"
    p.parent.mkdir()
    p.write_text(json.dumps(entries))
    imgs = tmp_path / "images"
    for i in range(3):
        _png(imgs / f"DSC{i:04d}.JPG", 648, 420)
    cams = load_cameras(p, images_dir=imgs)
    assert [c.name for c in cams] == ["DSC0000", "DSC0001", "DSC0002"]
    for i, c in enumerate(cams):
        np.testing.assert_allclose(c.viewmat, garden["viewmats"][i], atol=1e-5)
        np.testing.assert_allclose(c.K[:2, 2], [324, 210])
        assert Path(c.image_path).name == f"DSC{i:04d}.JPG"
    messages: list[str] = []
    assert load_cameras(tmp_path / "model", warn=messages.append)[0].image_path is None
    assert "no images" in messages[0]
    p.write_text(json.dumps([{"id": 0, "width": 10}]))
    with pytest.raises(CameraError, match="cameras.json entry 0: missing 'height'"):
        load_cameras(p)


# ----------------------------------------------------------------------- transforms.json

def test_transforms_json_opengl_conversion_is_right(tmp_path: Path) -> None:
    """A camera 4 units in front of the origin along world +y, looking back at it, with world +z
    up, written in the OpenGL convention. Independently of our conversion, OpenGL maths says a
    point projects to u = cx + fx * x_gl / -z_gl, v = cy - fy * y_gl / -z_gl (y up -> v down)."""
    eye = np.array([0.3, 4.0, 0.5])
    # OpenGL camera axes in world space: x right, y up, z back (away from the view direction)
    z_back = (eye - np.array([0.0, 0.0, 0.5])) / np.linalg.norm(eye - np.array([0.0, 0.0, 0.5]))
    y_up = np.array([0.0, 0.0, 1.0])
    x_right = np.cross(y_up, z_back)
    x_right /= np.linalg.norm(x_right)
    y_up = np.cross(z_back, x_right)
    c2w_gl = np.eye(4)
    c2w_gl[:3, 0], c2w_gl[:3, 1], c2w_gl[:3, 2], c2w_gl[:3, 3] = x_right, y_up, z_back, eye
    fx, fy, cx, cy, w, h = 400.0, 410.0, 330.0, 235.0, 640, 480
    (tmp_path / "images").mkdir()
    _png(tmp_path / "images" / "f0.png", w, h)
    data = {"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": w, "h": h, "camera_model": "OPENCV",
            "frames": [{"file_path": "images/f0.png", "transform_matrix": c2w_gl.tolist()}]}
    (tmp_path / "transforms.json").write_text(json.dumps(data))
    (cam,) = load_cameras(tmp_path)
    assert cam.image_path == str(tmp_path / "images" / "f0.png") and cam.name == "images/f0.png"
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (100, 3))
    p_gl = (np.linalg.inv(c2w_gl) @ np.c_[pts, np.ones(100)].T).T[:, :3]
    expected = np.stack([cx + fx * p_gl[:, 0] / -p_gl[:, 2], cy - fy * p_gl[:, 1] / -p_gl[:, 2]], axis=1)
    uv, depth = cam.project(pts)
    np.testing.assert_allclose(uv, expected, atol=1e-9)
    np.testing.assert_allclose(depth, -p_gl[:, 2], atol=1e-12)  # depth along the view direction
    # and the intuitive check: the world origin is below the image centre (it is below the eye
    # height, with +z up), the point +x... is to the left when looking along -y
    uv0, _ = cam.project(np.array([[0.0, 0.0, 0.0], [-1.0, 0.0, 0.5]]))
    assert uv0[0, 1] > cy and uv0[1, 0] > uv0[0, 0]
    np.testing.assert_allclose(opengl_to_opencv(opengl_to_opencv(c2w_gl)), c2w_gl)


def test_transforms_json_back_to_colmap_world(tmp_path: Path, garden: dict) -> None:
    """nerfstudio's COLMAP conversion (colmap_to_json): OpenCV -> OpenGL camera axes, then the
    world rotated by applied_transform. Undoing it gives back the COLMAP cameras."""
    applied = np.eye(4)[:3][[0, 2, 1]]
    applied[2] *= -1
    frames = []
    for i in range(3):
        c2w = np.linalg.inv(garden["viewmats"][i].astype(np.float64))
        c2w[0:3, 1:3] *= -1
        c2w = c2w[[0, 2, 1, 3]]
        c2w[2] *= -1
        frames.append({"file_path": f"images/f{i}.png", "transform_matrix": c2w.tolist()})
    K = garden["Ks"][0]
    data = {"w": 648, "h": 420, "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]),
            "applied_transform": applied.tolist(), "frames": frames}
    (tmp_path / "transforms.json").write_text(json.dumps(data))
    cams = load_cameras(tmp_path, warn=lambda m: None)  # file world: rotated
    colmap = load_transforms_json(tmp_path / "transforms.json", warn=lambda m: None, undo_applied_transform=True)
    pts = garden["means3d"][:100].astype(np.float64)
    for i in range(3):
        np.testing.assert_allclose(colmap[i].viewmat, garden["viewmats"][i], atol=1e-6)
        # the file-world cameras see the rotated points exactly where the COLMAP ones see the originals
        moved = pts @ applied[:, :3].T
        np.testing.assert_allclose(cams[i].project(moved)[0], colmap[i].project(pts)[0], atol=1e-6)


def test_blender_synthetic_transforms(tmp_path: Path) -> None:
    """Blender-NeRF style: camera_angle_x only, file paths without extension, size from the PNG."""
    angle = 0.6911112070083618
    frames = []
    for i in range(3):
        c2w = np.eye(4)
        c2w[:3, 3] = [0, 0, 4 + i]
        frames.append({"file_path": f"./train/r_{i}", "rotation": 0.0125, "transform_matrix": c2w.tolist()})
        _png(tmp_path / "train" / f"r_{i}.png", 80, 60)
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    cams = load_cameras(tmp_path / "transforms_train.json")
    assert [c.name for c in cams] == ["train/r_0", "train/r_1", "train/r_2"]
    c = cams[0]
    assert (c.width, c.height) == (80, 60)
    np.testing.assert_allclose(c.K[0, 0], 40 / math.tan(angle / 2))
    np.testing.assert_allclose(c.K[:2, 2], [40, 30])
    # OpenGL identity pose at z=4 looks along world -z: the origin is in front, at the centre
    uv, z = c.project(np.zeros((1, 3)))
    np.testing.assert_allclose(uv[0], [40, 30])
    np.testing.assert_allclose(z, [4.0])
    # the same frames with images looked up by name in another folder
    moved = load_cameras(tmp_path / "transforms_train.json", images_dir=tmp_path / "train")
    assert [Path(c.image_path).name for c in moved] == ["r_0.png", "r_1.png", "r_2.png"]
    (tmp_path / "train" / "r_1.png").unlink()
    with pytest.raises(CameraError, match=r"1 of 3 images are missing: train/r_1"):
        load_cameras(tmp_path / "transforms_train.json")


def test_transforms_json_errors(tmp_path: Path) -> None:
    p = tmp_path / "transforms.json"
    p.write_text("{not json")
    with pytest.raises(CameraError, match="transforms.json: not valid JSON"):
        load_cameras(p)
    p.write_text(json.dumps({"camera_model": "OPENCV_FISHEYE", "frames": [{}]}))
    with pytest.raises(CameraError, match="OPENCV_FISHEYE is not supported"):
        load_cameras(p)
    p.write_text(json.dumps({"w": 4, "h": 4, "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}))
    with pytest.raises(CameraError, match="frame 0: no focal length"):
        load_cameras(p, warn=lambda m: None)
    p.write_text(json.dumps({"fl_x": 4, "frames": [{"file_path": "a.png", "transform_matrix": [[1, 0], [0, 1]]}]}))
    with pytest.raises(CameraError, match="frame 0 'transform_matrix': expected a finite 4x4 matrix"):
        load_cameras(p, warn=lambda m: None)
    with pytest.raises(CameraError, match="no cameras found"):
        load_cameras(_empty(tmp_path))
    with pytest.raises(CameraError, match="not found"):
        load_cameras(tmp_path / "nothing_here")


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_image_size_png_and_jpeg(tmp_path: Path) -> None:
    assert image_size(_png(tmp_path / "a.png", 37, 21)) == (37, 21)
    # a minimal JPEG header: SOI, an APP0 segment, then SOF0 with height 300, width 500
    jpg = tmp_path / "b.jpg"
    jpg.write_bytes(b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + bytes(14)
                    + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 300, 500, 3) + bytes(9))
    assert image_size(jpg) == (500, 300)
    bad = tmp_path / "c.gif"
    bad.write_bytes(b"GIF89a....")
    with pytest.raises(CameraError, match="cannot read the image size"):
        image_size(bad)


# ------------------------------------------------------------------------------ orbits

def _box_scene(lo, hi, n=4000, seed=0) -> GaussianScene:
    rng = np.random.default_rng(seed)
    means = rng.uniform(lo, hi, (n, 3)).astype(np.float32)
    z = np.zeros((n, 3), np.float32)
    return GaussianScene(means=means, scales=z, quats=np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
                         opacities=np.zeros(n, np.float32), sh_dc=z, sh_rest=np.zeros((n, 0, 3), np.float32))


def test_orbits_frame_the_scene_from_all_around(fox_path: Path) -> None:
    scene = read_ply(fox_path)
    cams = orbit_cameras(scene, 24, 320, 240, up="+z")
    assert len(cams) == 24 and len({c.name for c in cams}) == 24
    lo, hi = scene.robust_bounds()
    centre = (lo + hi) / 2
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    dirs = []
    for c in cams:
        uv, z = c.project(centre[None])
        np.testing.assert_allclose(uv[0], [160, 120], atol=1e-6)  # looks at the centre
        cuv, cz = c.project(corners)
        assert (cz > 0).all()
        assert (cuv[:, 0] >= 0).all() and (cuv[:, 0] <= 320).all() and (cuv[:, 1] >= 0).all() and (cuv[:, 1] <= 240).all()
        # "fill most of the frame": the bounds box reaches 90% of the frame on one axis
        extent = np.maximum(np.abs(cuv[:, 0] - 160) / 160, np.abs(cuv[:, 1] - 120) / 120).max()
        assert extent == pytest.approx(0.9, abs=1e-6)
        # upright: world +z points up in the image
        top, _ = c.project((centre + [0, 0, 0.1])[None])
        assert top[0, 1] < 120
        d = c.center - centre
        dirs.append(d / np.linalg.norm(d))
    dirs = np.array(dirs)
    elev = np.degrees(np.arcsin(dirs[:, 2]))
    assert elev.min() < -10 and elev.max() > 60  # below and above the horizon
    az = np.degrees(np.arctan2(dirs[:, 1], dirs[:, 0])) % 360
    assert np.diff(np.sort(az)).max() < 40 and (360 - az.max() + az.min()) < 40  # all around


def test_orbit_few_views_and_bad_arguments() -> None:
    scene = _box_scene([-1, -1, -1], [1, 1, 1])
    (one,) = orbit_cameras(scene, 1, 64, 64, up="-y")
    lo, hi = scene.robust_bounds()
    d = one.center - (lo + hi) / 2
    d /= np.linalg.norm(d)
    assert math.degrees(math.asin(-d[1])) == pytest.approx(15.0)  # the ring nearest 20 degrees
    assert len(orbit_cameras(scene, 7, 64, 48, up=[0, 0, 1])) == 7
    with pytest.raises(CameraError, match="n_views"):
        orbit_cameras(scene, 0, 64, 64)
    with pytest.raises(CameraError, match="up: 'sideways'"):
        orbit_cameras(scene, 4, 64, 64, up="sideways")
    with pytest.raises(CameraError, match="elevations_deg"):
        orbit_cameras(scene, 4, 64, 64, elevations_deg=(90.0,))
    np.testing.assert_array_equal(parse_up("z"), [0, 0, 1])


def test_estimate_up(shared_data: Path, fox_path: Path, garden: dict) -> None:
    np.testing.assert_array_equal(estimate_up(read_ply(fox_path)), [0, 0, 1])
    np.testing.assert_array_equal(estimate_up(read_ply(shared_data / "guitar.compressed.ply")), [0, -1, 0])
    cams = [Camera(v, k, 648, 420) for v, k in zip(garden["viewmats"], garden["Ks"])]
    assert estimate_up(cameras=cams)[2] > 0.95  # the garden capture is z-up
    points = _box_scene([0, 0, 0], [1, 1, 1], n=len(garden["means3d"]))
    points.means = garden["means3d"].astype(np.float32)
    np.testing.assert_array_equal(estimate_up(points), [0, 0, 1])  # and its points say so too
    # a table-top scene (wide heavy ground at the bottom, -y up as COLMAP scenes usually are)
    ground = _box_scene([-3, 0.0, -3], [3, 0.1, 3], n=8000).means
    obj = _box_scene([-0.3, -1.5, -0.3], [0.3, 0.0, 0.3], n=1500, seed=1).means
    table = _box_scene([0, 0, 0], [1, 1, 1], n=9500)
    table.means = np.concatenate([ground, obj])
    np.testing.assert_array_equal(estimate_up(table), [0, -1, 0])
