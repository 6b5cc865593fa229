"""3DGS scene file -> Blender mesh object (one vertex per Gaussian, every property an attribute).

The file is read by the engine's readers through :func:`.io_formats.read_for_blender` (Inria
``.ply``, SuperSplat ``.compressed.ply``, antimatter15 ``.splat``, Niantic ``.spz``, PlayCanvas
``.sog`` with Blender decoding its WebP images); this module only moves arrays into Blender with
bulk ``foreach_set`` calls (no per-vertex Python). See :mod:`.attributes` for the attribute scheme.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import bpy
import numpy as np
from bpy_extras.io_utils import axis_conversion

from . import attributes as A
from . import display, io_formats
from .engine.core.cameras import estimate_up
from .engine.core.errors import SceneFormatError
from .engine.core.scene import GaussianScene
from .mesh_read import vertex_positions

AXES = ("X", "Y", "Z", "-X", "-Y", "-Z")
AUTO = "AUTO"
# The file axis that goes with each up axis when the forward axis is not given: Blender's own
# (Y forward, Z up) for z-up files, the COLMAP/Inria habit (Z forward, -Y up) for y-down ones,
# the glTF/OpenGL one (-Z forward, Y up) for y-up ones.
FORWARD_FOR_UP = {"Z": "Y", "-Z": "Y", "-Y": "Z", "Y": "-Z", "X": "Y", "-X": "Y"}


@dataclass
class ImportSettings:
    """How a file's axes map to Blender's. ``axis_up`` / ``axis_forward``: one of :data:`AXES`
    or ``"AUTO"`` (up: detected from the scene's shape by :func:`engine.core.cameras.estimate_up`;
    forward: :data:`FORWARD_FOR_UP` of the up axis). An explicit ``axis_matrix`` [4, 4]
    (file -> local) overrides both."""

    axis_up: str = AUTO
    axis_forward: str = AUTO
    axis_matrix: np.ndarray | None = None
    display_ratio: float = 1.0  # fraction of Gaussians drawn (display only)
    name: str | None = None  # object name (default: the file name)


@dataclass
class ImportReport:
    """What :func:`import_ply` did: the file's up axis (one of :data:`AXES`, "" when an explicit
    matrix was given), whether it was detected, the time spent reading and building [s], and
    what the scene could not hold of the file (e.g. SPZ SH degree 4), one line each."""

    up_axis: str
    up_detected: bool
    read_s: float
    build_s: float
    warnings: list[str] = field(default_factory=list)

    def describe_up(self) -> str:
        if not self.up_axis:
            return "custom axes"
        up = self.up_axis if self.up_axis.startswith("-") else "+" + self.up_axis
        return f"up axis {up}" + (", detected" if self.up_detected else "")


def detect_up_axis(scene: GaussianScene) -> str:
    """The file axis (one of :data:`AXES`) nearest to the scene's up direction as the engine
    estimates it for its orbit views (:func:`engine.core.cameras.estimate_up`: one rule for both)."""
    up = estimate_up(scene)
    a = int(np.argmax(np.abs(up)))
    return ("-" if up[a] < 0 else "") + "XYZ"[a]


def resolve_axes(scene: GaussianScene, axis_forward: str, axis_up: str) -> tuple[str, str, bool]:
    """(forward, up, up_detected): ``AUTO`` replaced and a forward parallel to the up axis
    replaced by the one that goes with it."""
    for name, value in (("up", axis_up), ("forward", axis_forward)):
        if value != AUTO and value not in AXES:
            raise ValueError(f"{name} axis must be AUTO or one of {', '.join(AXES)}, not {value!r}")
    detected = axis_up == AUTO
    up = detect_up_axis(scene) if detected else axis_up
    forward = axis_forward
    if forward == AUTO or forward[-1] == up[-1]:
        forward = FORWARD_FOR_UP[up]
    return forward, up, detected


def axis_matrix(axis_forward: str, axis_up: str) -> np.ndarray:
    """[4, 4] rotation taking file coordinates with the given forward / up axes to Blender's
    (Y forward, Z up), as Blender's other importers do (``bpy_extras.io_utils.axis_conversion``)."""
    return np.array(axis_conversion(from_forward=axis_forward, from_up=axis_up).to_4x4(), np.float64)


def _set(attr: bpy.types.Attribute, key: str, values: np.ndarray, dtype=np.float32) -> None:
    attr.data.foreach_set(key, np.ascontiguousarray(values, dtype=dtype).reshape(-1))


def _new(mesh: bpy.types.Mesh, name: str, type_: str) -> bpy.types.Attribute:
    old = mesh.attributes.get(name)
    if old is not None:
        mesh.attributes.remove(old)
    return mesh.attributes.new(name, type_, "POINT")


def extra_attribute_type(arr: np.ndarray) -> str:
    """INT for integer properties that fit int32, FLOAT otherwise."""
    if arr.dtype.kind in "iub" and arr.dtype.itemsize <= 2 or arr.dtype.kind == "i" and arr.dtype.itemsize == 4:
        return "INT"
    return "FLOAT"


def scene_to_mesh(scene: GaussianScene, mesh: bpy.types.Mesh, axis_matrix: np.ndarray) -> None:
    """Fill an empty mesh with one vertex per Gaussian and all attributes.

    Every attribute is filled with one ``foreach_set`` from a contiguous float32 / int32 buffer
    (no copy when the scene's arrays already are; the SH are when the scene was read with
    ``read_ply(..., sh_coefficient_major=True)``, as :func:`import_ply` does). The display colours
    (numpy only) are computed in a worker thread while this, Blender's main thread, allocates the
    attributes; no bpy call is made off the main thread."""
    n = scene.num_gaussians
    m = np.asarray(axis_matrix, dtype=np.float64)
    k = scene.sh_rest.shape[1]
    with ThreadPoolExecutor(max_workers=1) as pool:
        color_future = pool.submit(A.display_colors, scene)
        mesh.vertices.add(n)
        co = A.map_points(scene.means, m)
        # (the position attribute takes a contiguous float32 buffer in one copy; vertices.co is a
        # per-vertex path)
        mesh.attributes["position"].data.foreach_set("vector", np.ascontiguousarray(co).reshape(-1))
        del co
        _set(_new(mesh, A.POSITION, "FLOAT_VECTOR"), "vector", scene.means)
        _set(_new(mesh, A.INDEX, "INT"), "value", np.arange(n, dtype=np.int32), np.int32)
        _set(_new(mesh, A.F_DC, "FLOAT_VECTOR"), "vector", scene.sh_dc)
        _set(_new(mesh, A.OPACITY, "FLOAT"), "value", scene.opacities)
        _set(_new(mesh, A.SCALE, "FLOAT_VECTOR"), "vector", scene.scales)
        _set(_new(mesh, A.ROTATION, "QUATERNION"), "value", scene.quats)
        for name, arr in scene.extra.items():
            t = extra_attribute_type(arr)
            _set(_new(mesh, A.EXTRA_PREFIX + name, t), "value", arr, np.int32 if t == "INT" else np.float32)
        if k:
            sh = scene.sh_rest.transpose(1, 0, 2)  # [K, N, 3]: coefficient j+1 is sh[j]
            if not sh.flags.c_contiguous:
                sh = A.coefficient_major(scene.sh_rest)
            for j in range(k):
                _set(_new(mesh, A.sh_name(j + 1), "FLOAT_VECTOR"), "vector", sh[j])
            del sh
        # (a new attribute can move the others' storage: each is filled right after it is added,
        # and none is kept across additions)
        _set(mesh.color_attributes.new(A.COLOR, "FLOAT_COLOR", "POINT"), "color", color_future.result())
    mesh.update()


def scene_to_object(
    scene: GaussianScene,
    context: bpy.types.Context,
    settings: ImportSettings,
    source: str = "",
) -> bpy.types.Object:
    """Create, link, select and make active a splat object for ``scene``. On any failure the
    mesh and object made so far are removed again (nothing half-created is left in the file);
    a scene without Gaussians is a SceneFormatError."""
    name = settings.name or _object_name(source or scene.path or "Gaussians")
    if scene.num_gaussians == 0:
        raise SceneFormatError(f"{os.path.basename(source) or name}: the scene holds no Gaussians")
    mesh = bpy.data.meshes.new(name)
    obj = None
    try:
        axis = np.eye(4) if settings.axis_matrix is None else np.asarray(settings.axis_matrix, np.float64)
        scene_to_mesh(scene, mesh, axis)
        obj = bpy.data.objects.new(name, mesh)
        set_splat_properties(obj, scene, axis, source)
        collection = context.collection if context.collection is not None else context.scene.collection
        collection.objects.link(obj)
        setup_splat_display(obj, settings.display_ratio)
    except BaseException:
        if obj is not None:
            bpy.data.objects.remove(obj)  # (also unlinks it from every collection)
        bpy.data.meshes.remove(mesh)
        raise
    view_layer = context.view_layer
    for other in list(view_layer.objects.selected):
        if other is not None:  # (entries of just-removed objects read as None until an update)
            other.select_set(False)
    obj.select_set(True)
    view_layer.objects.active = obj
    return obj


def set_splat_properties(obj: bpy.types.Object, scene: GaussianScene, axis_matrix: np.ndarray,
                         source: str = "") -> None:
    """Record on ``obj`` what makes it a splat object (:mod:`.attributes`): the file layout, the
    [4, 4] axis conversion (file -> local), the source path ("" for none), SH degree and count."""
    obj[A.PROP_LAYOUT] = A.layout_to_json(scene.layout)
    obj[A.PROP_AXIS] = [float(v) for v in np.asarray(axis_matrix, np.float64).reshape(-1)]
    obj[A.PROP_SOURCE] = os.path.abspath(source) if source else ""
    obj[A.PROP_SH_DEGREE] = scene.sh_degree
    obj[A.PROP_COUNT] = scene.num_gaussians


def setup_splat_display(obj: bpy.types.Object, display_ratio: float = 1.0) -> None:
    """Add the splat display to an object whose mesh :func:`scene_to_mesh` filled, with the
    radius cap taken from the extent of its vertices (local units)."""
    display.setup_display(obj, display.robust_extent(vertex_positions(obj.data)), display_ratio=display_ratio)


def _object_name(path: str) -> str:
    path = os.fspath(path).rstrip("/\\")
    base = os.path.basename(path)
    if base.lower() == "meta.json":  # a SOG folder: named after the folder
        base = os.path.basename(os.path.dirname(os.path.abspath(path)))
    for ext in (".compressed.ply", ".ply", ".splat", ".spz", ".sog"):
        if base.lower().endswith(ext):
            return base[: -len(ext)] or "Gaussians"
    return base or "Gaussians"


def import_ply(context: bpy.types.Context, path: str, settings: ImportSettings | None = None
               ) -> tuple[bpy.types.Object, ImportReport]:
    """Read a scene file of any supported format (raises :class:`engine.core.errors.EngineError`
    with a one-line message on bad input) and create its object, turned so the scene's up is
    Blender's +Z."""
    settings = settings or ImportSettings()
    t0 = time.perf_counter()
    warnings: list[str] = []
    scene = io_formats.read_for_blender(path, warnings)
    t1 = time.perf_counter()
    if settings.axis_matrix is not None:
        up, detected = "", False
    else:
        forward, up, detected = resolve_axes(scene, settings.axis_forward, settings.axis_up)
        settings = replace(settings, axis_matrix=axis_matrix(forward, up))
    obj = scene_to_object(scene, context, settings, source=path)
    t2 = time.perf_counter()
    return obj, ImportReport(up, detected, t1 - t0, t2 - t1, warnings)
