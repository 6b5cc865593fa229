"""The one camera type of the project, and loaders that produce it.

Convention (OpenCV): camera x right, y down, z forward (looking along +z).
``viewmat`` is world-to-camera [4, 4]; a world point X maps to camera coordinates
``viewmat @ [X, 1]`` and to pixels ``K @ (x/z, y/z, 1)``, with pixel centres at integer+0.5
(the pixel (u, v) covers [u, u+1) x [v, v+1)).

Loaders (:func:`load_cameras`) read COLMAP sparse models (binary and text), Inria
``cameras.json``, nerfstudio / Blender-NeRF ``transforms.json`` (OpenGL camera axes, converted)
and gsplat-style ``.npz``; :func:`orbit_cameras` makes virtual views for scenes without cameras.
Conversions to and from the OpenGL / Blender camera axes (x right, y up, z back) live here only:
:func:`opengl_to_opencv`, :meth:`Camera.from_opengl`, :attr:`Camera.opengl_c2w`.

numpy + stdlib only: the Blender extension uses this module too.
"""

from __future__ import annotations

import json
import math
import os
import struct
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CameraError
from .quaternion import quat_to_matrix

if TYPE_CHECKING:
    from .scene import GaussianScene


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

    # ------------------------------------------------------------------ constructors / views

    @classmethod
    def look_at(cls, eye: np.ndarray, target: np.ndarray, up: np.ndarray, K: np.ndarray,
                width: int, height: int, name: str = "") -> "Camera":
        """A camera at ``eye`` [3] looking at ``target`` [3], rolled so that world ``up`` [3]
        points up in the image (towards -y of the camera). Raises CameraError if eye == target
        or the view direction is parallel to ``up``."""
        return cls(look_at_viewmat(eye, target, up), K, width, height, name)

    @classmethod
    def from_opengl(cls, c2w_gl: np.ndarray, K: np.ndarray, width: int, height: int,
                    name: str = "", image_path: str | None = None) -> "Camera":
        """From an OpenGL / Blender / nerfstudio camera-to-world [4, 4] (camera x right, y up,
        looking along -z)."""
        return cls(np.linalg.inv(opengl_to_opencv(c2w_gl)), K, width, height, name, image_path)

    @property
    def opengl_c2w(self) -> np.ndarray:
        """[4, 4] camera-to-world in the OpenGL / Blender convention (x right, y up, z back)."""
        return opengl_to_opencv(self.camtoworld)  # the flip is its own inverse

    @property
    def fov_x(self) -> float:
        """Horizontal field of view in radians (principal point assumed central)."""
        return 2.0 * math.atan(0.5 * self.width / self.K[0, 0])

    @property
    def fov_y(self) -> float:
        """Vertical field of view in radians (principal point assumed central)."""
        return 2.0 * math.atan(0.5 * self.height / self.K[1, 1])


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """[3, 3] float64 pinhole intrinsics."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


#: flips a camera's y and z axes: OpenGL/Blender camera axes <-> OpenCV ones (its own inverse)
GL_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


def opengl_to_opencv(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world [4, 4] (or [..., 4, 4]) between the OpenGL/Blender camera axes (x right,
    y up, z back) and the OpenCV ones (x right, y down, z forward): flips the camera's y and z
    axes. The same flip converts in both directions."""
    return np.asarray(c2w, dtype=np.float64) @ GL_FLIP


def look_at_viewmat(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World-to-camera [4, 4] (OpenCV) of a camera at ``eye`` looking at ``target`` with world
    ``up`` appearing up in the image."""
    eye = np.asarray(eye, dtype=np.float64).reshape(3)
    fwd = np.asarray(target, dtype=np.float64).reshape(3) - eye
    if np.linalg.norm(fwd) < 1e-12:
        raise CameraError("look-at camera: eye and target are the same point")
    fwd /= np.linalg.norm(fwd)
    up = np.asarray(up, dtype=np.float64).reshape(3)
    right = np.cross(fwd, up)
    if np.linalg.norm(right) < 1e-9 * max(np.linalg.norm(up), 1e-300):
        raise CameraError("look-at camera: view direction is parallel to the up vector")
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, eye
    w2c = np.eye(4)
    w2c[:3, :3] = c2w[:3, :3].T
    w2c[:3, 3] = -c2w[:3, :3].T @ eye
    return w2c


# ============================================================================ validation

MAX_IMAGE_SIDE = 32768  # pixels; the wire protocol's limit too. Larger sizes are file errors
# (a width of 10**12 would otherwise reach numpy as a bincount of that many bins).


def _check_size(width: Any, height: Any, label: str) -> tuple[int, int]:
    """(width, height) as ints within 1..MAX_IMAGE_SIDE, else a CameraError under ``label``."""
    out = []
    for field, value in (("width", width), ("height", height)):
        if isinstance(value, bool):
            raise CameraError(f"{label}: {field} must be an integer, got {value!r}")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise CameraError(f"{label}: {field} must be an integer, got {value!r}") from None
        if not math.isfinite(as_float) or as_float != int(as_float):
            raise CameraError(f"{label}: {field} must be an integer, got {value!r}")
        n = int(as_float)
        if not 1 <= n <= MAX_IMAGE_SIDE:
            raise CameraError(f"{label}: {field} must be within 1..{MAX_IMAGE_SIDE} pixels, got {n}")
        out.append(n)
    return out[0], out[1]


def validate_camera(camera: Camera, where: str) -> Camera:
    """Check that ``camera`` can be rendered and clicked, and return it unchanged.

    The one camera check of the project: every loader in this module calls it on each camera it
    makes, so a bad file is refused when it is loaded (naming the file, the camera and the field)
    rather than when a view is first rendered; the socket command layer and the renderer call it
    on cameras they receive.

    Checks: ``width``/``height`` are integers within 1..:data:`MAX_IMAGE_SIDE`; ``viewmat`` is a
    finite [4, 4] world-to-camera matrix with bottom row (0, 0, 0, 1) and an invertible,
    well-conditioned 3x3 part (an all-zero or singular pose has no camera centre or direction);
    ``K`` is a finite [3, 3] pinhole matrix with positive focal lengths and bottom row (0, 0, 1).

    Args:
        camera: the camera to check (any object: a non-Camera is refused).
        where: what the camera came from, first in the message: a file name
            (``"cameras.json"``), ``"set_cameras"``, ``"render"``...

    Raises:
        CameraError: one line, ``"{where}: camera {name!r}: {field} ..."``.
    """
    if not isinstance(camera, Camera):
        raise CameraError(f"{where}: expected an engine Camera, got {type(camera).__name__}")
    label = f"{where}: camera {camera.name!r}"
    if (isinstance(camera.width, (int, np.integer)) and isinstance(camera.height, (int, np.integer))
            and (camera.width <= 0 or camera.height <= 0)):
        # kept word for word: callers and tests match "invalid size WxH"
        raise CameraError(f"{label}: invalid size {camera.width}x{camera.height} "
                          f"(width and height must be positive)")
    _check_size(camera.width, camera.height, label)
    viewmat = np.asarray(camera.viewmat)
    K = np.asarray(camera.K)
    for field, m, shape in (("viewmat", viewmat, (4, 4)), ("K", K, (3, 3))):
        if m.shape != shape or m.dtype.kind not in "fiu":
            raise CameraError(f"{label}: {field} must be a {shape[0]}x{shape[1]} number matrix, "
                              f"got {m.dtype} {list(m.shape)}")
        if not np.isfinite(m).all():
            raise CameraError(f"{label}: {field} has NaN or infinite values")
    # a singular rotation part has no camera centre or viewing direction; the ratio allows the
    # uniformly scaled poses some exporters write
    sv = np.linalg.svd(viewmat[:3, :3].astype(np.float64), compute_uv=False)
    if sv[0] == 0.0 or sv[-1] < 1e-9 * sv[0]:
        raise CameraError(f"{label}: viewmat is singular (its 3x3 rotation part is "
                          f"{'all zero' if sv[0] == 0.0 else 'not invertible'})")
    if not np.allclose(viewmat[3], (0.0, 0.0, 0.0, 1.0), atol=1e-6):
        raise CameraError(f"{label}: viewmat's bottom row must be (0, 0, 0, 1), "
                          f"got {viewmat[3].tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CameraError(f"{label}: K has a non-positive focal length "
                          f"(fx={K[0, 0]:g}, fy={K[1, 1]:g})")
    if not np.allclose(K[2], (0.0, 0.0, 1.0), atol=1e-6):
        raise CameraError(f"{label}: K must be a pinhole matrix with bottom row (0, 0, 1), "
                          f"got {K.tolist()}")
    return camera


def _new_camera(where: str, pose: Any, K: Any, width: Any, height: Any, name: str,
                image_path: str | None = None, *, kind: str = "w2c") -> Camera:
    """A validated Camera from a file's raw values; every refusal is a one-line CameraError
    naming ``where``, the camera and the field.

    ``kind`` says what ``pose`` is: ``"w2c"`` a world-to-camera (OpenCV) matrix, ``"c2w"`` a
    camera-to-world (OpenCV axes), ``"c2w_gl"`` a camera-to-world in OpenGL axes (converted)."""
    label = f"{where}: camera {name!r}"
    w, h = _check_size(width, height, label)
    try:
        m = np.asarray(pose, dtype=np.float64).reshape(4, 4)
        k = np.asarray(K, dtype=np.float64).reshape(3, 3)
    except (TypeError, ValueError):
        raise CameraError(f"{label}: the pose must be a 4x4 and K a 3x3 matrix of numbers") from None
    if kind != "w2c":
        # checked before inverting: a singular or NaN camera-to-world has no inverse to check
        validate_camera(Camera(m, k, w, h, name), f"{where} (camera-to-world pose)")
        m = np.linalg.inv(opengl_to_opencv(m) if kind == "c2w_gl" else m)
    return validate_camera(Camera(m, k, w, h, name, image_path), where)


# ============================================================================ loaders

Warn = Callable[[str], None]


def _default_warn(message: str) -> None:
    warnings.warn(message, CameraWarning, stacklevel=3)


class CameraWarning(UserWarning):
    """A non-fatal camera-loading problem (distortion ignored, no images found, ...)."""


def load_cameras(path: str | os.PathLike, images_dir: str | os.PathLike | None = None, *,
                 warn: Warn | None = None) -> list[Camera]:
    """Load the cameras of a capture, detecting the kind from ``path``:

    - a COLMAP model: a folder holding ``cameras.bin``+``images.bin`` or ``cameras.txt``+
      ``images.txt`` (or one of those files), or a dataset root with ``sparse/0/`` or ``sparse/``;
      images default to ``<root>/images`` where root holds ``sparse/``;
    - an Inria ``cameras.json`` (gaussian-splatting's output: a list of cameras);
    - a nerfstudio / Blender-NeRF ``transforms.json`` (a dict with ``frames``); images are the
      frames' ``file_path`` relative to the json's folder;
    - an ``.npz`` with ``viewmats`` [C, 4, 4] (world-to-camera, OpenCV), ``Ks`` [C, 3, 3],
      ``width``, ``height`` (gsplat's test-data format).

    Cameras come back sorted by image name, in the OpenCV convention. Images are matched by file
    name (exact relative path, then base name, then stem with any image extension) in
    ``images_dir`` when given. Missing images are a CameraError naming them when there is an
    images folder (``images_dir``, or COLMAP's ``<root>/images``) or, for transforms.json, when
    some frames' images exist; with no images at all the cameras come back with
    ``image_path=None`` and a warning. A camera whose PNG/JPEG image has another size (e.g. the
    downscaled ``images_4`` of a full-resolution COLMAP model) is scaled to the image's size,
    with a warning; a different aspect ratio is an error.

    Args:
        path: file or folder as above.
        images_dir: where the images are (overrides the default location).
        warn: receives non-fatal warnings (default: :func:`warnings.warn` with
            :class:`CameraWarning`).

    Raises:
        CameraError: nothing recognisable at ``path``, malformed files, unsupported camera
            models (fisheye), or missing images.
    """
    warn = warn or _default_warn
    p = Path(path)
    if not p.exists():
        raise CameraError(f"{p}: not found")
    if images_dir is not None and not Path(images_dir).is_dir():
        raise CameraError(f"{images_dir}: images folder not found")
    if p.is_file():
        name = p.name.lower()
        if name.endswith(".json"):
            return _load_json(p, images_dir, warn)
        if name.endswith(".npz"):
            return _load_npz(p, images_dir, warn)
        if name in _COLMAP_FILES:
            return load_colmap(p.parent, images_dir, warn=warn)
        raise CameraError(f"{p}: not a camera file (expected a COLMAP model, cameras.json, "
                          f"transforms.json or .npz)")
    model = _find_colmap_model(p)
    if model is not None:
        return load_colmap(model, images_dir, warn=warn)
    for candidate in ("transforms.json", "transforms_train.json", "cameras.json"):
        if (p / candidate).is_file():
            return _load_json(p / candidate, images_dir, warn)
    raise CameraError(f"{p}: no cameras found (looked for a COLMAP model in sparse/0, "
                      f"transforms.json and cameras.json)")


_COLMAP_FILES = ("cameras.bin", "images.bin", "cameras.txt", "images.txt")


def _find_colmap_model(folder: Path) -> Path | None:
    for sub in (Path("."), Path("sparse") / "0", Path("sparse"), Path("colmap") / "sparse" / "0"):
        d = folder / sub
        if ((d / "cameras.bin").is_file() and (d / "images.bin").is_file()) or (
                (d / "cameras.txt").is_file() and (d / "images.txt").is_file()):
            return d
    return None


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CameraError(f"{p.name}: not valid JSON: {exc}") from None


def _load_json(p: Path, images_dir, warn: Warn) -> list[Camera]:
    data = _read_json(p)
    if isinstance(data, list):
        return load_inria_cameras_json(p, images_dir, warn=warn, _data=data)
    if isinstance(data, dict) and "frames" in data:
        return load_transforms_json(p, images_dir, warn=warn, _data=data)
    raise CameraError(f"{p.name}: neither an Inria cameras.json (a list) nor a transforms.json "
                      f"(a dict with 'frames')")


# ------------------------------------------------------------------------------ COLMAP

# COLMAP model id -> (model name, number of parameters)
_COLMAP_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
}
_COLMAP_BY_NAME = {name: (mid, n) for mid, (name, n) in _COLMAP_MODELS.items()}
_PINHOLE_LIKE = {"SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV"}


def _colmap_intrinsics(model: str, params: np.ndarray, where: str, warn: Warn) -> np.ndarray:
    if model not in _PINHOLE_LIKE:
        raise CameraError(f"{where}: COLMAP camera model {model} is not supported (only pinhole-"
                          f"like models: {', '.join(sorted(_PINHOLE_LIKE))}); undistort the "
                          f"images with 'colmap image_undistorter' first")
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        f, cx, cy = params[:3]
        fx = fy = f
        dist = params[3:]
    else:
        fx, fy, cx, cy = params[:4]
        dist = params[4:]
    if np.any(dist != 0):
        warn(f"{where}: camera model {model} has lens distortion; it is ignored (the pinhole part "
             f"is used). Undistorted images give better results")
    return intrinsics(fx, fy, cx, cy)


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """[3, 3] rotation of a COLMAP quaternion (w, x, y, z) (normalised first)."""
    return quat_to_matrix(q)


def load_colmap(model_dir: str | os.PathLike, images_dir: str | os.PathLike | None = None, *,
                warn: Warn | None = None) -> list[Camera]:
    """Cameras of a COLMAP sparse model folder (``cameras.bin``/``images.bin``, or the ``.txt``
    pair), registered images only, sorted by image name. COLMAP poses are world-to-camera in the
    OpenCV convention already (``X_cam = R(q) X + t``). See :func:`load_cameras` for images."""
    warn = warn or _default_warn
    d = Path(model_dir)
    if (d / "cameras.bin").is_file() and (d / "images.bin").is_file():
        intr = _read_cameras_bin(d / "cameras.bin", warn)
        images = _read_images_bin(d / "images.bin")
    elif (d / "cameras.txt").is_file() and (d / "images.txt").is_file():
        intr = _read_cameras_txt(d / "cameras.txt", warn)
        images = _read_images_txt(d / "images.txt")
    else:
        raise CameraError(f"{d}: no COLMAP model (cameras.bin + images.bin or cameras.txt + "
                          f"images.txt)")
    if not images:
        raise CameraError(f"{d}: the COLMAP model has no registered images")
    cams = []
    for image_id, q, t, cam_id, name in sorted(images, key=lambda r: r[4]):
        if cam_id not in intr:
            raise CameraError(f"{d}: image {name!r} refers to camera {cam_id}, which is not in "
                              f"the cameras file")
        K, w, h = intr[cam_id]
        viewmat = np.eye(4)
        viewmat[:3, :3] = qvec_to_rotmat(q)
        viewmat[:3, 3] = t
        cams.append(_new_camera(f"COLMAP model {d}", viewmat, K.copy(), w, h, name))
    if images_dir is None:
        root = d.parent.parent if d.parent.name == "sparse" else (d.parent if d.name == "sparse" else d)
        guess = root / "images"
        _attach_images(cams, guess if guess.is_dir() else None, explicit=False,
                       where=f"COLMAP model {d}", warn=warn)
    else:
        _attach_images(cams, Path(images_dir), explicit=True, where=f"COLMAP model {d}", warn=warn)
    return cams


class _Reader:
    """Exact little-endian reads from a COLMAP binary file, with a clear error when it ends."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.buf = path.read_bytes()
        except OSError as exc:
            raise CameraError(f"{path}: cannot read: {exc.strerror or exc}") from None
        self.pos = 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise CameraError(f"{self.path.name}: truncated COLMAP file (ends at byte {len(self.buf)})")
        out = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return out

    def string(self) -> str:
        end = self.buf.find(b"\x00", self.pos)
        if end < 0:
            raise CameraError(f"{self.path.name}: truncated COLMAP file (unterminated name)")
        s = self.buf[self.pos:end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise CameraError(f"{self.path.name}: truncated COLMAP file (ends at byte {len(self.buf)})")
        self.pos += n


def _read_cameras_bin(path: Path, warn: Warn) -> dict[int, tuple[np.ndarray, int, int]]:
    r = _Reader(path)
    (count,) = r.read("Q")
    out = {}
    for _ in range(count):
        cam_id, model_id, w, h = r.read("iiQQ")
        if model_id not in _COLMAP_MODELS:
            raise CameraError(f"{path.name}: camera {cam_id} has unknown COLMAP model id {model_id}")
        model, nparams = _COLMAP_MODELS[model_id]
        params = np.array(r.read("d" * nparams))
        out[cam_id] = (_colmap_intrinsics(model, params, f"{path.name} camera {cam_id}", warn), w, h)
    return out


def _read_images_bin(path: Path) -> list[tuple[int, np.ndarray, np.ndarray, int, str]]:
    r = _Reader(path)
    (count,) = r.read("Q")
    out = []
    for _ in range(count):
        vals = r.read("idddddddi")
        name = r.string()
        (npts,) = r.read("Q")
        r.skip(24 * npts)  # points2D: x, y (double), point3D id (int64)
        out.append((vals[0], np.array(vals[1:5]), np.array(vals[5:8]), vals[8], name))
    return out


def _text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CameraError(f"{path}: cannot read: {exc}") from None


def _read_cameras_txt(path: Path, warn: Warn) -> dict[int, tuple[np.ndarray, int, int]]:
    out = {}
    for lineno, line in enumerate(_text_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            cam_id, model, w, h = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
            params = np.array([float(v) for v in parts[4:]])
        except (ValueError, IndexError):
            raise CameraError(f"{path.name} line {lineno}: malformed camera line") from None
        if model not in _COLMAP_BY_NAME:
            raise CameraError(f"{path.name} line {lineno}: unknown COLMAP camera model {model}")
        if len(params) != _COLMAP_BY_NAME[model][1]:
            raise CameraError(f"{path.name} line {lineno}: {model} needs "
                              f"{_COLMAP_BY_NAME[model][1]} parameters, found {len(params)}")
        out[cam_id] = (_colmap_intrinsics(model, params, f"{path.name} camera {cam_id}", warn), w, h)
    return out


def _read_images_txt(path: Path) -> list[tuple[int, np.ndarray, np.ndarray, int, str]]:
    lines = _text_lines(path)
    out = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=9)
        try:
            vals = [float(v) for v in parts[1:8]]
            image_id, cam_id, name = int(parts[0]), int(parts[8]), parts[9]
        except (ValueError, IndexError):
            raise CameraError(f"{path.name} line {i}: malformed image line") from None
        out.append((image_id, np.array(vals[:4]), np.array(vals[4:7]), cam_id, name))
        i += 1  # the POINTS2D line that follows (possibly empty)
    return out


# ------------------------------------------------------------------------- json formats

def _num(d: dict, key: str, where: str) -> float:
    try:
        return float(d[key])
    except KeyError:
        raise CameraError(f"{where}: missing '{key}'") from None
    except (TypeError, ValueError):
        raise CameraError(f"{where}: '{key}' is not a number") from None


def _matrix(value, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        m = None
    if m is None or m.shape != shape or not np.isfinite(m).all():
        raise CameraError(f"{where}: expected a finite {'x'.join(map(str, shape))} matrix")
    return m


def _focal_from_angle(size: float, angle: float, where: str, key: str) -> float:
    """Focal length in pixels of a field of view ``angle`` (radians) across ``size`` pixels."""
    if not 0.0 < angle < math.pi:
        raise CameraError(f"{where}: '{key}' must be an angle within (0, pi) radians, got {angle:g}")
    return 0.5 * size / math.tan(0.5 * angle)


def load_inria_cameras_json(path: str | os.PathLike, images_dir: str | os.PathLike | None = None,
                            *, warn: Warn | None = None, _data: list | None = None) -> list[Camera]:
    """Cameras of graphdeco-inria/gaussian-splatting's ``cameras.json``: entries with ``id``,
    ``img_name`` (no extension), ``width``, ``height``, ``position`` [3] (camera centre),
    ``rotation`` [3][3] (camera-to-world rotation, OpenCV axes), ``fx``, ``fy`` (principal point
    at the image centre). Images are looked up by stem in ``images_dir`` when given (the json
    sits in the model output folder, which has no images)."""
    warn = warn or _default_warn
    p = Path(path)
    if _data is None:
        _data = _read_json(p)
    if not isinstance(_data, list) or not _data:
        raise CameraError(f"{p.name}: expected a non-empty list of cameras")
    cams = []
    for i, e in enumerate(_data):
        where = f"{p.name} entry {i}"
        if not isinstance(e, dict):
            raise CameraError(f"{where}: not an object")
        w, h = _num(e, "width", where), _num(e, "height", where)
        c2w = np.eye(4)
        c2w[:3, :3] = _matrix(e.get("rotation"), (3, 3), f"{where} 'rotation'")
        c2w[:3, 3] = _matrix(e.get("position"), (3,), f"{where} 'position'")
        K = intrinsics(_num(e, "fx", where), _num(e, "fy", where), w / 2.0, h / 2.0)
        name = str(e.get("img_name", e.get("id", i)))
        cams.append(_new_camera(p.name, c2w, K, w, h, name, kind="c2w"))
    cams.sort(key=lambda c: c.name)
    _attach_images(cams, Path(images_dir) if images_dir is not None else None,
                   explicit=images_dir is not None, where=p.name, warn=warn)
    return cams


def load_transforms_json(path: str | os.PathLike, images_dir: str | os.PathLike | None = None,
                         *, warn: Warn | None = None, undo_applied_transform: bool = False,
                         _data: dict | None = None) -> list[Camera]:
    """Cameras of a nerfstudio or Blender-NeRF ``transforms.json``.

    World frame: the file's. nerfstudio's COLMAP converter (``ns-process-data``) rotates the
    COLMAP world and records it as ``applied_transform`` [3, 4]; ``undo_applied_transform=True``
    maps the cameras back to the COLMAP world, which is the frame of a scene trained from the
    same COLMAP model by the Inria code (a CameraError if the file has no such transform).

    Each frame's ``transform_matrix`` is camera-to-world in the OpenGL convention (x right, y up,
    looking along -z); it is converted to OpenCV by flipping the camera's y and z axes.
    Intrinsics per frame or global: ``fl_x``/``fl_y``/``cx``/``cy``/``w``/``h``, or
    ``camera_angle_x`` (and optionally ``camera_angle_y``) with the size read from the image
    header (PNG/JPEG) when ``w``/``h`` are absent; ``cx``/``cy`` default to the image centre.
    Distortion (``k1``... or a fisheye ``camera_model``) is ignored with a warning / refused.
    Images are ``file_path`` relative to the json's folder (``.png`` tried when it has no
    extension), or looked up by name in ``images_dir``."""
    warn = warn or _default_warn
    p = Path(path)
    if _data is None:
        _data = _read_json(p)
    frames = _data.get("frames") if isinstance(_data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise CameraError(f"{p.name}: no 'frames' list")
    model = str(_data.get("camera_model", "OPENCV")).upper()
    if "FISHEYE" in model or model == "EQUIRECTANGULAR":
        raise CameraError(f"{p.name}: camera_model {model} is not supported (pinhole only)")
    folder = Path(images_dir) if images_dir is not None else None
    index = _folder_index(folder) if folder is not None else None
    names, found = [], []
    for i, fr in enumerate(frames):
        file_path = fr.get("file_path") if isinstance(fr, dict) else None
        if not isinstance(file_path, str) or not file_path:
            raise CameraError(f"{p.name} frame {i}: missing 'file_path'")
        name = file_path.replace("\\", "/")
        names.append(name[2:] if name.startswith("./") else name)
        found.append(_frame_image(p.parent, file_path, folder, index))
    missing = [n for n, img in zip(names, found) if img is None]
    if missing and (images_dir is not None or len(missing) < len(frames)):
        raise CameraError(_missing_message(p.name, missing, len(frames)))
    if missing:
        warn(f"{p.name}: none of the {len(frames)} images were found; cameras only")
    to_colmap = None
    if undo_applied_transform:
        if "applied_transform" not in _data:
            raise CameraError(f"{p.name}: no 'applied_transform' to undo")
        applied = np.eye(4)
        applied[:3] = _matrix(_data["applied_transform"], (3, 4), f"{p.name} 'applied_transform'")
        to_colmap = np.linalg.inv(applied)
    warned = False
    cams = []
    for i, (fr, name, image) in enumerate(zip(frames, names, found)):
        where = f"{p.name} frame {i}"
        merged = {**_data, **fr}  # per-frame intrinsics override the global ones
        fr_model = str(merged.get("camera_model", "OPENCV")).upper()
        if "FISHEYE" in fr_model or fr_model == "EQUIRECTANGULAR":
            raise CameraError(f"{where}: camera_model {fr_model} is not supported (pinhole only)")
        c2w = _matrix(fr.get("transform_matrix"), (4, 4), f"{where} 'transform_matrix'")
        if to_colmap is not None:
            c2w = to_colmap @ c2w
        if "w" in merged and "h" in merged:
            w, h = _num(merged, "w", where), _num(merged, "h", where)
        elif image is not None:
            w, h = image_size(image)
        else:
            raise CameraError(f"{where}: no image size ('w'/'h') and the image {name} "
                              f"was not found to read it from")
        if "fl_x" in merged:
            fx = _num(merged, "fl_x", where)
            fy = _num(merged, "fl_y", where) if "fl_y" in merged else fx
        elif "camera_angle_x" in merged:
            fx = _focal_from_angle(w, _num(merged, "camera_angle_x", where), where, "camera_angle_x")
            fy = (_focal_from_angle(h, _num(merged, "camera_angle_y", where), where, "camera_angle_y")
                  if "camera_angle_y" in merged else fx)
        else:
            raise CameraError(f"{where}: no focal length ('fl_x' or 'camera_angle_x')")
        cx = _num(merged, "cx", where) if "cx" in merged else w / 2.0
        cy = _num(merged, "cy", where) if "cy" in merged else h / 2.0
        if not warned and any(float(merged.get(k, 0) or 0) != 0
                              for k in ("k1", "k2", "k3", "k4", "p1", "p2")):
            warn(f"{p.name}: lens distortion coefficients are ignored (pinhole part used)")
            warned = True
        cams.append(_new_camera(p.name, c2w, intrinsics(fx, fy, cx, cy), w, h, name,
                                str(image) if image is not None else None, kind="c2w_gl"))
    _fit_to_images(cams, p.name, warn)
    return cams


def _frame_image(base: Path, file_path: str, images_dir: Path | None,
                 index: dict[str, list[Path]] | None) -> Path | None:
    rel = Path(file_path.replace("\\", "/"))
    if images_dir is not None:
        return _match_image(images_dir, rel.name, index or {})
    cand = base / rel
    if cand.is_file():
        return cand
    if not rel.suffix:
        for ext in _IMAGE_EXTS:
            if cand.with_name(cand.name + ext).is_file():
                return cand.with_name(cand.name + ext)
    return None


def _load_npz(p: Path, images_dir, warn: Warn) -> list[Camera]:
    try:
        with np.load(p) as z:
            viewmats, Ks = np.asarray(z["viewmats"]), np.asarray(z["Ks"])
            w, h = np.asarray(z["width"]), np.asarray(z["height"])
    except KeyError as exc:
        raise CameraError(f"{p.name}: missing array {exc} (needs viewmats, Ks, width, height)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CameraError(f"{p.name}: not a readable .npz: {exc}") from None
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4) or Ks.shape != (len(viewmats), 3, 3):
        raise CameraError(f"{p.name}: viewmats must be [C, 4, 4] and Ks [C, 3, 3]")
    if len(viewmats) == 0:
        raise CameraError(f"{p.name}: has no cameras (viewmats is empty)")
    if w.size != 1 or h.size != 1:
        raise CameraError(f"{p.name}: width and height must be single numbers, "
                          f"got shapes {list(w.shape)} and {list(h.shape)}")
    cams = [_new_camera(p.name, v, k, w.item(), h.item(), f"{p.stem}_{i:03d}")
            for i, (v, k) in enumerate(zip(viewmats, Ks))]
    if images_dir is not None:
        _attach_images(cams, Path(images_dir), explicit=True, where=p.name, warn=warn)
    return cams


# ------------------------------------------------------------------------------- images

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG", ".webp", ".tif", ".tiff", ".bmp")


def _folder_index(folder: Path) -> dict[str, list[Path]]:
    """Base name (lower case) and stem (lower case) -> files, for name matching."""
    index: dict[str, list[Path]] = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix.lower() in {e.lower() for e in _IMAGE_EXTS}:
            index.setdefault(f.name.lower(), []).append(f)
            index.setdefault("stem:" + f.stem.lower(), []).append(f)
    return index


def _match_image(folder: Path, name: str, index: dict[str, list[Path]]) -> Path | None:
    exact = folder / name
    if exact.is_file():
        return exact
    base = Path(name.replace("\\", "/")).name
    hits = index.get(base.lower())
    if not hits:
        hits = index.get("stem:" + (Path(base).stem if Path(base).suffix.lower() in
                                    {e.lower() for e in _IMAGE_EXTS} else base).lower())
    return hits[0] if hits else None


def _missing_message(where: str, missing: list[str], total: int) -> str:
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return f"{where}: {len(missing)} of {total} images are missing: {shown}"


def _attach_images(cams: list[Camera], folder: Path | None, *, explicit: bool, where: str,
                   warn: Warn) -> None:
    if folder is None:
        warn(f"{where}: no images folder found; cameras only")
        return
    if not folder.is_dir():
        raise CameraError(f"{folder}: images folder not found")
    index = _folder_index(folder)
    matched = [_match_image(folder, c.name, index) for c in cams]
    missing = [c.name for c, m in zip(cams, matched) if m is None]
    if missing:
        raise CameraError(_missing_message(f"{where} (images in {folder})", missing, len(cams)))
    for c, m in zip(cams, matched):
        c.image_path = str(m)
    _fit_to_images(cams, where, warn)


def _fit_to_images(cams: list[Camera], where: str, warn: Warn) -> None:
    """Scale each camera (in place) to the size of its image when they differ, e.g. a COLMAP
    model at full resolution with the downscaled ``images_4`` folder. The aspect ratios must
    agree within 1% (downscalers round sizes); images whose size cannot be read from the header
    (formats other than PNG/JPEG) are left alone."""
    scaled = []
    for c in cams:
        if c.image_path is None:
            continue
        try:
            w, h = image_size(c.image_path)
        except CameraError:
            continue
        if (w, h) == (c.width, c.height):
            continue
        _check_size(w, h, f"{where}: image {c.image_path}")  # a crafted header can say 0 or 10**9
        sx, sy = w / c.width, h / c.height
        if abs(sx - sy) > 0.01 * max(sx, sy):
            raise CameraError(f"{where}: image {c.image_path} is {w}x{h} but its camera is "
                              f"{c.width}x{c.height} (a different aspect ratio)")
        fitted = c.scaled(w, h)
        c.K, c.width, c.height = fitted.K, fitted.width, fitted.height
        scaled.append(c.name)
    if scaled:
        warn(f"{where}: {len(scaled)} cameras scaled to the size of their images "
             f"(e.g. {scaled[0]})")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of a PNG or JPEG file from its header (stdlib only; no decoding)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return int(w), int(h)
            if head[:2] == b"\xff\xd8":
                f.seek(2)
                while True:
                    marker = f.read(2)
                    if len(marker) < 2 or marker[0] != 0xFF:
                        break
                    kind = marker[1]
                    if kind in (0xD8, 0x01) or 0xD0 <= kind <= 0xD7:
                        continue
                    (length,) = struct.unpack(">H", f.read(2))
                    if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
                        h, w = struct.unpack(">xHH", f.read(5))
                        return int(w), int(h)
                    f.seek(length - 2, 1)
    except (OSError, struct.error) as exc:
        raise CameraError(f"{p}: cannot read the image size: {exc}") from None
    raise CameraError(f"{p}: cannot read the image size (only PNG and JPEG headers are read)")


# ============================================================================ orbits

_AXES = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0),
         "+z": (0, 0, 1), "-z": (0, 0, -1)}


def parse_up(up: str | np.ndarray | tuple[float, float, float]) -> np.ndarray:
    """A unit up vector [3] from "+x"/"-x"/"+y"/"-y"/"+z"/"-z" or a 3-vector."""
    if isinstance(up, str):
        key = up.strip().lower()
        key = key if key[0] in "+-" else "+" + key
        if key not in _AXES:
            raise CameraError(f"up: {up!r} is not one of +x, -x, +y, -y, +z, -z or a 3-vector")
        return np.array(_AXES[key], dtype=np.float64)
    v = np.asarray(up, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.isfinite(v).all() or np.linalg.norm(v) < 1e-12:
        raise CameraError(f"up: {up!r} is not a non-zero 3-vector")
    return v / np.linalg.norm(v)


UP_SAMPLE = 200_000  # Gaussians looked at by estimate_up


def estimate_up(scene: "GaussianScene | None" = None,
                cameras: Sequence[Camera] | None = None) -> np.ndarray:
    """A unit world up vector [3].

    With cameras: the normalised mean of their image-up directions (-y of each camera in world
    space) — photographers hold cameras mostly upright, which is also what COLMAP-based tools use.

    Without cameras (a downloaded .ply): a world axis chosen by shape, as 3DGS scenes are nearly
    always axis-aligned (COLMAP/Inria files are usually -y up, others +z or +y). For each axis,
    the Gaussians in the bottom and top 20% of the robust bounds are compared: the "bottom" end
    has more Gaussians (ground, pedestal, table) and is wider (objects stand on a base); the
    score is log(count ratio) + log(spread ratio) and the axis with the largest |score| wins,
    pointing away from the heavy, wide end. It picks +z for fox_cc0, -y for
    guitar.compressed.ply, +z for the garden points — but it is a heuristic: pass ``up``
    explicitly when it guesses wrong. Falls back to -y (the COLMAP habit) when the scene gives no
    signal.
    """
    if cameras:
        ups = np.array([-c.camtoworld[:3, 1] for c in cameras])
        v = ups.sum(axis=0)
        if np.linalg.norm(v) > 1e-6 * len(cameras):
            return v / np.linalg.norm(v)
    default = np.array([0.0, -1.0, 0.0])
    if scene is None or scene.num_gaussians < 10:
        return default
    # A regular subsample of at most UP_SAMPLE Gaussians decides as well as all of them (the
    # score compares counts and spreads of 20% slabs) and keeps this cheap on multi-million
    # Gaussian scenes, where the Blender importer calls it for every file.
    m = np.asarray(scene.means)[:: max(1, -(-scene.num_gaussians // UP_SAMPLE))].astype(np.float64)
    lo, hi = np.quantile(m, 0.02, axis=0), np.quantile(m, 0.98, axis=0)
    inside = np.all((m >= lo) & (m <= hi), axis=1)
    m = m[inside]
    best, best_score = default, 0.0
    for a in range(3):
        span = hi[a] - lo[a]
        if span <= 0:
            continue
        t = (m[:, a] - lo[a]) / span
        others = [i for i in range(3) if i != a]
        low, high = m[t < 0.2][:, others], m[t > 0.8][:, others]
        if len(low) < 5 or len(high) < 5:
            continue
        spread_low, spread_high = low.std(axis=0).mean(), high.std(axis=0).mean()
        if spread_low <= 0 or spread_high <= 0:
            continue
        score = math.log(len(low) / len(high)) + math.log(spread_low / spread_high)
        if abs(score) > abs(best_score):
            best_score = score
            best = np.zeros(3)
            best[a] = 1.0 if score > 0 else -1.0
    return best


def orbit_cameras(scene: "GaussianScene", n_views: int, width: int, height: int, *,
                  up: str | np.ndarray | None = None, fov_deg: float = 50.0, fill: float = 0.9,
                  elevations_deg: Sequence[float] = (-15.0, 15.0, 40.0, 65.0),
                  name: str = "orbit") -> list[Camera]:
    """Virtual views around a scene without cameras, looking at the centre of its robust bounds.

    The views lie on orbits (rings) at ``elevations_deg`` above (positive) and below (negative)
    the horizon of the ``up`` axis; each ring gets views in proportion to its circumference
    (cos of the elevation, at least one), azimuths evenly spaced and each ring turned by the
    golden angle from the previous one, so the scene is seen from all around. Each view's
    distance is the smallest at which the 8 corners of the robust bounds box
    (:meth:`GaussianScene.robust_bounds`) project within ``fill`` of the image half-width and
    half-height, so the scene fills most of every frame.
    With fewer views than rings, the rings closest to 20 degrees are used.

    Args:
        scene: the scene (only its means are used).
        n_views: number of cameras (>= 1).
        width, height: image size in pixels.
        up: world up: "+x", "-y", ..., a 3-vector, or None for :func:`estimate_up` (scene shape).
        fov_deg: field of view across the shorter image side, degrees (square pixels, principal
            point at the centre).
        fill: fraction of the image (from the centre to each edge) the bounds may cover (0, 1].
        elevations_deg: ring elevations in degrees, each within (-85, 85).
        name: camera name prefix (names are ``{name}_{index:03d}``).

    Returns:
        ``n_views`` cameras (OpenCV convention), ring by ring.
    """
    if n_views < 1:
        raise CameraError(f"n_views: must be at least 1, got {n_views}")
    if width < 1 or height < 1:
        raise CameraError(f"image size: must be positive, got {width}x{height}")
    if not 1.0 <= fov_deg <= 170.0:
        raise CameraError(f"fov_deg: must be within [1, 170], got {fov_deg}")
    if not 0.0 < fill <= 1.0:
        raise CameraError(f"fill: must be within (0, 1], got {fill}")
    elevations = [float(e) for e in elevations_deg]
    if not elevations or any(abs(e) >= 85.0 for e in elevations):
        raise CameraError(f"elevations_deg: need at least one, each within (-85, 85): {elevations}")
    if scene.num_gaussians == 0:
        raise CameraError("orbit cameras: the scene has no Gaussians")
    up_vec = estimate_up(scene) if up is None else parse_up(up)
    lo, hi = scene.robust_bounds()
    centre = (lo + hi) / 2.0
    radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-6)
    half = math.radians(fov_deg) / 2.0
    f = 0.5 * min(width, height) / math.tan(half)
    K = intrinsics(f, f, width / 2.0, height / 2.0)
    tan_x, tan_y = fill * 0.5 * width / f, fill * 0.5 * height / f
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])]) - centre

    # ring allocation: the rings closest to 20 degrees first when there are few views
    rings = sorted(elevations, key=lambda e: abs(e - 20.0))[: min(len(elevations), n_views)]
    rings.sort()
    weights = np.array([math.cos(math.radians(e)) for e in rings])
    counts = np.maximum(1, np.floor(weights / weights.sum() * n_views)).astype(int)
    while counts.sum() > n_views:
        counts[np.argmax(counts)] -= 1
    order = np.argsort(-(weights / weights.sum() * n_views - counts))
    k = 0
    while counts.sum() < n_views:
        counts[order[k % len(order)]] += 1
        k += 1

    # an orthonormal horizontal basis (e1, e2) around up
    helper = np.array([1.0, 0.0, 0.0]) if abs(up_vec[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(up_vec, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up_vec, e1)
    cams = []
    for r, (elev, count) in enumerate(zip(rings, counts)):
        el = math.radians(elev)
        stagger = r * math.pi * (3.0 - math.sqrt(5.0))  # golden-angle turn per ring: interleave
        for j in range(count):
            az = stagger + 2 * math.pi * j / count
            direction = math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * up_vec
            # camera axes do not depend on the distance: fit the box corners in that frame.
            # A corner (x, y, z) relative to the centre is at depth z + d; it is inside the
            # filled frame when |x| <= tan_x (z + d) and |y| <= tan_y (z + d).
            rot = look_at_viewmat(centre + direction, centre, up_vec)[:3, :3]
            local = corners @ rot.T
            need = np.maximum(np.abs(local[:, 0]) / tan_x, np.abs(local[:, 1]) / tan_y) - local[:, 2]
            distance = max(float(need.max()), float(np.max(local[:, 2])) + 0.05 * radius)
            eye = centre + distance * direction
            cams.append(Camera(look_at_viewmat(eye, centre, up_vec), K.copy(), width, height,
                               f"{name}_{len(cams):03d}"))
    return cams
