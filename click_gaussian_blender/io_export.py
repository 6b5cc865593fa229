"""Blender splat object -> 3DGS .ply: the world-space result of everything the user did.

For each Gaussian (= mesh vertex, deleted ones are simply gone, duplicates carry their
attributes because Blender copies attributes on duplicate):

- position: the vertex's current position, through the object's world matrix and back into the
  file's axes (the inverse of the import's axis conversion ``C``), so the scene lands where it is
  seen in Blender, in the convention the file came in;
- rotation, scale, SH: the transform ``C^-1 W E C`` where ``W`` is the object's world matrix and
  ``E`` the vertex's Edit-Mode transform, estimated per edit group from the stored original
  positions (:mod:`.edit_groups`), applied by :func:`engine.core.transform.apply_affine_groups`
  (quaternion composition and SH rotation; non-uniform scale re-decomposes the covariance);
- everything else (opacity, DC colour, extra properties) as imported.

The file is written by the engine's writers (:func:`.io_formats.write_for_blender`) in the
format its name or the chosen format names (.ply, .spz, .sog, .compressed.ply, .splat; see
:mod:`.io_formats`): atomically, a .ply in the input's property layout, never over an existing file
(the source included) unless asked; what the format drops comes back as warnings. An unedited
object with an identity world matrix writes back to .ply exactly what was read.

Options (:class:`ExportSettings`): only the selected Gaussians; each vertex group as its own file
in a folder named as the file (file names from the group names, :func:`.io_formats.group_file_names`);
per-Gaussian segment ids as extra .ply properties (:func:`add_segment_ids`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace

import bpy
import numpy as np

from . import attributes as A
from . import feature_store as FS
from . import io_formats as F
from .edit_groups import estimate_edits
from .engine.core.errors import EngineError, SceneFormatError
from .engine.core.scene import GaussianScene, PlyLayout
from .engine.core.transform import apply_affine_groups
from .mesh_read import attribute_array, group_members, readable_mesh, vertex_positions, vertex_selection


@dataclass
class ExportSettings:
    apply_transform: bool = True  # apply the object's world matrix (world-space export)
    overwrite: bool = False  # replace an existing file (also the source file)
    file_format: str = F.AUTO  # a key of io_formats.EXPORT_EXTENSIONS, or AUTO: by the file name
    only_selected: bool = False  # only the selected Gaussians (vertices)
    split_groups: bool = False  # each vertex group as its own file, in a folder named as the file
    segment_ids: bool = False  # .ply: segment_coarse / segment_fine / segment_group properties


@dataclass
class ExportReport:
    count: int = 0
    edit_groups: int = 0
    translated_only: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the files written
    file_format: str = ""  # the format written (a key of io_formats.EXPORT_EXTENSIONS)


def is_splat_object(obj: bpy.types.Object | None) -> bool:
    return (obj is not None and obj.type == "MESH" and A.PROP_AXIS in obj
            and A.POSITION in obj.data.attributes)


def _check_exportable(obj: bpy.types.Object) -> None:
    """Raise SceneFormatError (a user message) unless ``obj`` is a splat object with Gaussians."""
    if not is_splat_object(obj):
        raise SceneFormatError(f"object {obj.name!r} is not an imported Gaussian Splatting scene")
    if obj.mode != "EDIT" and len(obj.data.vertices) == 0:
        raise SceneFormatError(f"object {obj.name!r} has no Gaussians left to export")


def object_to_scene(obj: bpy.types.Object, settings: ExportSettings | None = None,
                    report: ExportReport | None = None) -> GaussianScene:
    """The object's Gaussians, in file axes, with every edit applied."""
    settings = settings or ExportSettings()
    report = report if report is not None else ExportReport()
    _check_exportable(obj)
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
    """Write the object's Gaussians to ``path`` in the format it names or the settings choose
    (see the module docstring); with ``split_groups`` one file per vertex group into the folder
    ``path`` names without its extension. Raises :class:`engine.core.errors.EngineError` with a
    one-line message on failure; nothing is left half-written, and no file is written when any
    target exists without ``overwrite``."""
    settings = settings or ExportSettings()
    report = ExportReport()
    path, fmt = F.export_path(os.fspath(path), settings.file_format)
    report.file_format = fmt
    _check_exportable(obj)
    with readable_mesh(obj) as mesh:
        scene = _object_to_scene(obj, mesh, settings, report)
        t0 = time.perf_counter()
        selected = vertex_selection(mesh) if settings.only_selected else None
        if settings.only_selected and not selected.any():
            raise SceneFormatError(f"object {obj.name!r}: no Gaussians are selected (Only Selected)")
        groups = F.exported_groups(obj) if (settings.split_groups or settings.segment_ids) else []
        members = group_members(mesh, [vg.index for vg in groups]) if groups else {}
        members = [members[vg.index] for vg in groups]
        if settings.segment_ids:
            if fmt == "PLY":
                scene = add_segment_ids(scene, mesh, [vg.name for vg in groups], members, report.warnings)
            else:
                report.warnings.append("segment ids are written into .ply files only")
    parts = _parts(obj, path, fmt, settings, selected, groups, members, report)
    if not settings.overwrite:
        source = obj.get(A.PROP_SOURCE) or ""
        for target, _ in parts:
            if os.path.exists(target):
                same = bool(source) and os.path.exists(source) and os.path.samefile(target, source)
                what = "is the scene's source file" if same else "already exists"
                raise SceneFormatError(f"{target}: {what}; refusing to overwrite it (use Overwrite Existing)")
    if settings.split_groups:
        folder = os.path.dirname(parts[0][0])
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise SceneFormatError(f"{folder}: is a file, not a folder")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise SceneFormatError(f"{folder}: cannot make the folder: {exc.strerror or exc}") from None
    report.timings["select"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report.count = 0
    for target, index in parts:
        sub = scene if index is None else scene.subset(index)
        try:
            warnings = F.write_for_blender(sub, target, overwrite=settings.overwrite)
        except EngineError:
            raise
        except OSError as exc:  # e.g. a read-only folder
            raise SceneFormatError(f"{target}: cannot write: {exc.strerror or exc}") from None
        report.files.append(target)
        report.count += sub.num_gaussians
        for w in warnings:
            if w not in report.warnings:
                report.warnings.append(w)
    report.timings["write"] = time.perf_counter() - t0
    return report


def _parts(obj: bpy.types.Object, path: str, fmt: str, settings: ExportSettings,
           selected: np.ndarray | None, groups: list, members: list[np.ndarray],
           report: ExportReport) -> list[tuple[str, np.ndarray | None]]:
    """(target file, Gaussian indices or None for all) of each file to write."""
    if not settings.split_groups:
        return [(path, None if selected is None else np.flatnonzero(selected))]
    if not groups:
        raise SceneFormatError(f"object {obj.name!r} has no vertex groups to export one by one")
    folder = F.strip_extension(path)
    ext = F.EXPORT_EXTENSIONS[fmt]
    parts = []
    for vg, name, idx in zip(groups, F.group_file_names([vg.name for vg in groups]), members):
        if selected is not None:
            idx = idx[selected[idx]]
        if idx.size == 0:
            report.warnings.append(f"vertex group {vg.name!r} holds no "
                                   f"{'selected ' if selected is not None else ''}Gaussians: no file")
            continue
        parts.append((os.path.join(folder, name + ext), idx))
    if not parts:
        raise SceneFormatError(f"object {obj.name!r}: every vertex group is empty; nothing to export")
    return parts


def add_segment_ids(scene: GaussianScene, mesh: bpy.types.Mesh, group_names: list[str],
                    members: list[np.ndarray], warnings: list[str]) -> GaussianScene:
    """The scene with the int32 extra properties ``segment_coarse`` / ``segment_fine`` (the
    stored cluster labels, -1 = none; see :mod:`.feature_store`) and ``segment_group`` (0 = no
    group, i = the i-th of ``group_names``, :func:`.io_formats.group_ids`), and header comments
    ``segment_group <i> = <name>`` naming each id (earlier such comments replaced).

    Without stored features, ``segment_coarse`` / ``segment_fine`` keep the values the mesh was
    imported with, or are -1 (with a warning)."""
    n = scene.num_gaussians
    extra = dict(scene.extra)
    if FS.has_features(mesh):
        for level, prop in (("coarse", F.SEGMENT_COARSE), ("fine", F.SEGMENT_FINE)):
            extra[prop] = FS.read_labels(mesh, level)
    else:
        missing = [p for p in (F.SEGMENT_COARSE, F.SEGMENT_FINE) if p not in extra]
        for prop in missing:
            extra[prop] = np.full(n, -1, np.int32)
        if missing:
            warnings.append(f"{mesh.name!r} has no trained features: {' and '.join(missing)} written as -1")
    for prop in (F.SEGMENT_COARSE, F.SEGMENT_FINE):
        extra[prop] = np.asarray(extra[prop], np.int32)  # (no copy when int32 already)
    extra[F.SEGMENT_GROUP] = F.group_ids(n, members)
    layout = scene.layout
    comments = [c for c in (layout.comments if layout is not None else []) if not c.startswith(F.GROUP_COMMENT)]
    comments.append(f"{F.GROUP_COMMENT}0 = no vertex group")
    comments += [f"{F.GROUP_COMMENT}{i} = {name}" for i, name in enumerate(group_names, start=1)]
    if layout is not None and layout.source == "ply":
        layout = replace(layout, comments=comments)
    else:  # only the comments matter: the writer lays the properties out in the Inria order
        layout = PlyLayout(np.dtype([("x", "<f4")]), comments=comments)
    return replace(scene, extra=extra, layout=layout)


def export_scene_path_default(obj: bpy.types.Object, ext: str = ".ply") -> str:
    """``<source name>_edited<ext>`` beside the source file (a SOG folder's: beside the folder),
    or ``<object name><ext>``."""
    src = obj.get(A.PROP_SOURCE) or ""
    if not src:
        return obj.name + ext
    if os.path.basename(src).lower() == "meta.json":
        src = os.path.dirname(src)
    return F.strip_extension(src) + "_edited" + ext
