"""Blender splat object -> 3DGS .ply: the world-space result of everything the user did.

For each Gaussian (= mesh vertex, deleted ones are simply gone, duplicates carry their
attributes because Blender copies attributes on duplicate):

- position: the vertex's current position, through the object's world matrix and back into the
  file's axes (the inverse of the import's axis conversion ``C``), so the scene lands where it is
  seen in Blender, in the convention the file came in;
- rotation, scale, SH: the transform ``C^-1 W E C`` where ``W`` is the object's world matrix and
  ``E`` the vertex's Edit-Mode transform, estimated per edit group from the stored original
  positions (:mod:`.edit_groups`), applied by :func:`engine.transform.apply_affine_groups`
  (quaternion composition and SH rotation; non-uniform scale re-decomposes the covariance);
- everything else (opacity, DC colour, extra properties) as imported.

The file is written by the project's one writer (:func:`engine.ply.write_ply`): atomically, in the
input's property layout, never over an existing file (the source included) unless asked.
An unedited object with an identity world matrix writes back exactly what was read.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import bpy
import numpy as np

from . import attributes as A
from .edit_groups import estimate_edits
from .engine.core.errors import EngineError, SceneFormatError
from .engine.core.formats.ply import write_ply
from .engine.core.scene import GaussianScene
from .engine.core.transform import apply_affine_groups
from .mesh_read import attribute_array, readable_mesh, vertex_positions, vertex_selection


@dataclass
class ExportSettings:
    apply_transform: bool = True  # apply the object's world matrix (world-space export)
    overwrite: bool = False  # replace an existing file (also the source file)


@dataclass
class ExportReport:
    count: int = 0
    edit_groups: int = 0
    translated_only: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def is_splat_object(obj: bpy.types.Object | None) -> bool:
    return (obj is not None and obj.type == "MESH" and A.PROP_AXIS in obj
            and A.POSITION in obj.data.attributes)


def object_to_scene(obj: bpy.types.Object, settings: ExportSettings | None = None,
                    report: ExportReport | None = None) -> GaussianScene:
    """The object's Gaussians, in file axes, with every edit applied."""
    settings = settings or ExportSettings()
    report = report if report is not None else ExportReport()
    if not is_splat_object(obj):
        raise SceneFormatError(f"object {obj.name!r} is not an imported Gaussian Splatting scene")
    if obj.mode != "EDIT" and len(obj.data.vertices) == 0:
        raise SceneFormatError(f"object {obj.name!r} has no Gaussians left to export")
    with readable_mesh(obj) as mesh:  # (in Edit Mode a synced copy: the edit mesh has no arrays)
        return _object_to_scene(obj, mesh, settings, report)


def _object_to_scene(obj: bpy.types.Object, mesh: bpy.types.Mesh, settings: ExportSettings,
                     report: ExportReport) -> GaussianScene:
    n = len(mesh.vertices)
    if n == 0:
        raise SceneFormatError(f"object {obj.name!r} has no Gaussians left to export")
    t0 = time.perf_counter()
    axis = np.asarray(obj[A.PROP_AXIS], dtype=np.float64).reshape(4, 4)
    layout = A.layout_from_json(obj.get(A.PROP_LAYOUT, ""))
    co = vertex_positions(mesh)
    orig_file = attribute_array(mesh, A.POSITION, "vector", 3)
    present = {a.name for a in mesh.attributes}
    ks = [k for k in range(1, 16) if A.sh_name(k) in present]
    if ks != list(range(1, len(ks) + 1)) or len(ks) not in (0, 3, 8, 15):
        raise SceneFormatError(f"mesh {mesh.name!r} has an incomplete set of SH attributes ({len(ks)})")
    sh_buf = np.empty((len(ks), n * 3), np.float32)  # coefficient-major: no strided copies
    for k in ks:
        attribute_array(mesh, A.sh_name(k), "vector", out=sh_buf[k - 1])
    sh_rest = sh_buf.reshape(len(ks), n, 3).transpose(1, 0, 2)  # [N, K, 3] view
    extra = {}
    names = layout.vertex_dtype.names if layout is not None else ()
    for attr in mesh.attributes:
        if attr.name.startswith(A.EXTRA_PREFIX) and attr.domain == "POINT":
            pname = attr.name[len(A.EXTRA_PREFIX):]
            is_int = attr.data_type == "INT"
            vals = attribute_array(mesh, attr.name, "value", 1, np.int32 if is_int else np.float32)
            if pname in names:
                vals = vals.astype(layout.vertex_dtype.fields[pname][0].newbyteorder("="))
            extra[pname] = vals
    if layout is not None:  # keep the file's order of extra properties
        extra = {k: extra[k] for k in names if k in extra} | {k: v for k, v in extra.items() if k not in names}
    scene = GaussianScene(
        means=orig_file.copy(),
        scales=attribute_array(mesh, A.SCALE, "vector", 3),
        quats=attribute_array(mesh, A.ROTATION, "value", 4),
        opacities=attribute_array(mesh, A.OPACITY),
        sh_dc=attribute_array(mesh, A.F_DC, "vector", 3),
        sh_rest=sh_rest,
        extra=extra,
        layout=layout,
        path=obj.get(A.PROP_SOURCE) or None,
    )
    t1 = time.perf_counter()
    report.timings["read"] = t1 - t0

    # Edit-Mode transforms, in local space
    orig_local = A.map_points(orig_file, axis)  # bit-identical to what the import computed
    moved = np.any(orig_local != co, axis=1)
    world = np.array(obj.matrix_world, dtype=np.float64) if settings.apply_transform else np.eye(4)
    inv_axis = np.linalg.inv(axis)
    base = inv_axis @ world @ axis  # file -> file for unedited Gaussians
    if np.allclose(base, np.eye(4), rtol=0, atol=1e-12):
        base = np.eye(4)
    if moved.any():
        sel = vertex_selection(mesh)
        est = estimate_edits(orig_local, co, None, sel, moved=moved)
        mats = np.concatenate([(inv_axis @ world @ e @ axis)[None] for e in est.matrices] + [base[None]])
        groups = np.where(est.groups >= 0, est.groups, len(est.matrices)).astype(np.int32)
        report.edit_groups = len(est.matrices)
        report.translated_only = est.num_translated
        if est.num_translated:
            report.warnings.append(
                f"{est.num_translated} Gaussians were moved non-rigidly (no common transform): "
                "their positions are exported, their rotations and scales are left as they were")
    else:
        mats = base[None]
        groups = np.zeros(n, np.int32)
    if len(mats) == 1 and np.array_equal(mats[0], np.eye(4)):
        out = scene  # nothing to transform: the imported values, exactly
    else:
        out = apply_affine_groups(scene, mats, groups, copy=False)
    # positions: exactly where the vertices are now
    if moved.any() or not np.array_equal(base, np.eye(4)):
        out.means = A.map_points(co, inv_axis @ world)
    report.timings["transform"] = time.perf_counter() - t1
    report.count = n
    return out


def export_ply(obj: bpy.types.Object, path: str, settings: ExportSettings | None = None
               ) -> ExportReport:
    """Write the object's Gaussians to ``path`` (see the module docstring). Raises
    :class:`engine.errors.EngineError` with a one-line message on failure; nothing is left
    half-written."""
    settings = settings or ExportSettings()
    report = ExportReport()
    scene = object_to_scene(obj, settings, report)
    t0 = time.perf_counter()
    try:
        write_ply(scene, path, overwrite=settings.overwrite)
    except EngineError:
        raise
    except OSError as exc:  # e.g. a read-only folder
        raise SceneFormatError(f"{path}: cannot write: {exc.strerror or exc}") from None
    report.timings["write"] = time.perf_counter() - t0
    return report


def export_scene_path_default(obj: bpy.types.Object) -> str:
    src = obj.get(A.PROP_SOURCE) or ""
    if not src:
        return obj.name + ".ply"
    base = os.path.basename(src)
    stem = base[: -len(".compressed.ply")] if base.lower().endswith(".compressed.ply") else os.path.splitext(base)[0]
    return os.path.join(os.path.dirname(src), stem + "_edited.ply")
