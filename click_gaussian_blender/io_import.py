"""3DGS .ply -> Blender mesh object (one vertex per Gaussian, every property an attribute).

The file is read by the project's one PLY reader (:func:`engine.ply.read_ply`: Inria layout,
SuperSplat ``.compressed.ply``, antimatter15 ``.splat``); this module only moves arrays into Blender with bulk
``foreach_set`` calls (no per-vertex Python). See :mod:`.attributes` for the attribute scheme.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import bpy
import numpy as np

from . import attributes as A
from . import display
from .engine.ply import read_ply
from .engine.scene import GaussianScene

# 3DGS / COLMAP scenes use the OpenCV camera frame: y down, z forward. Blender is z up.
DEFAULT_AXIS_FORWARD = "Z"
DEFAULT_AXIS_UP = "-Y"


@dataclass
class ImportSettings:
    axis_matrix: np.ndarray = field(default_factory=lambda: np.eye(4))  # [4, 4] file -> local
    display_ratio: float = 1.0  # fraction of Gaussians drawn (display only)
    name: str | None = None  # object name (default: the file name)


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
        # (the position attribute takes a contiguous float32 buffer in one copy; vertices.co is ~100x slower)
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
    """Create, link, select and make active a splat object for ``scene``."""
    name = settings.name or _object_name(source or scene.path or "Gaussians")
    mesh = bpy.data.meshes.new(name)
    scene_to_mesh(scene, mesh, settings.axis_matrix)
    obj = bpy.data.objects.new(name, mesh)
    obj[A.PROP_LAYOUT] = A.layout_to_json(scene.layout)
    obj[A.PROP_AXIS] = [float(v) for v in np.asarray(settings.axis_matrix, np.float64).reshape(-1)]
    obj[A.PROP_SOURCE] = os.path.abspath(source) if source else ""
    obj[A.PROP_SH_DEGREE] = scene.sh_degree
    obj[A.PROP_COUNT] = scene.num_gaussians
    collection = context.collection if context.collection is not None else context.scene.collection
    collection.objects.link(obj)
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.attributes["position"].data.foreach_get("vector", co)
    display.setup_display(obj, display.robust_extent(co.reshape(-1, 3)), display_ratio=settings.display_ratio)
    view_layer = context.view_layer
    for other in list(view_layer.objects.selected):
        if other is not None:  # (entries of just-removed objects read as None until an update)
            other.select_set(False)
    obj.select_set(True)
    view_layer.objects.active = obj
    return obj


def _object_name(path: str) -> str:
    base = os.path.basename(os.fspath(path))
    for ext in (".compressed.ply", ".ply", ".splat"):
        if base.lower().endswith(ext):
            return base[: -len(ext)] or "Gaussians"
    return base or "Gaussians"


def import_ply(context: bpy.types.Context, path: str, settings: ImportSettings | None = None
               ) -> tuple[bpy.types.Object, dict[str, float]]:
    """Read a 3DGS .ply (raises :class:`engine.errors.EngineError` with a one-line message on
    bad input) and create its object. Returns (object, timings in seconds)."""
    settings = settings or ImportSettings()
    t0 = time.perf_counter()
    scene = read_ply(path, sh_coefficient_major=True)  # SH in Blender's per-coefficient order
    t1 = time.perf_counter()
    obj = scene_to_object(scene, context, settings, source=path)
    t2 = time.perf_counter()
    return obj, {"read": t1 - t0, "build": t2 - t1}
