"""Adopt a mesh that Blender's own PLY importer made from a 3DGS file as a splat object of ours.

File > Import > Stanford PLY (``bpy.ops.wm.ply_import``) turns a 3DGS ``.ply`` into a plain mesh:
one vertex per Gaussian at the file's ``x, y, z`` (file axes: the importer's default Y forward /
Z up is the identity), no edges or faces, and every other vertex property a separate POINT
attribute: FLOAT ``f_dc_0-2``, ``f_rest_0-44`` (when the SH degree is above 0), ``opacity``,
``scale_0-2``, ``rot_0-3``, any other property under its own name (integer ones too, as floats),
and ``nx, ny, nz`` as one FLOAT_VECTOR ``normal``. It keeps every float bit for bit except
non-finite ones: the +inf opacity logits some trainers write arrive as 0.0 (opacity 0.5), on every
Blender version tested (4.2.0, 5.0.1, 5.2.3); the file's header comments are not kept.

:func:`adopt_object` reads those attributes into a :class:`GaussianScene` (file frame), builds our
attribute set on a new mesh with :func:`.io_import.scene_to_mesh` (turned upright by the
importer's Auto up axis unless told otherwise) and gives it to the user's object in place of the
old mesh, so name, transform, parent, collections and other modifiers stay; from then on display,
training, clicks and export (which applies the object's world matrix) work as on an imported
object. An adopted scene is written in the Inria property order (``nx, ny, nz`` only where the
mesh had normals), other properties after it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import bpy
import numpy as np

from . import attributes as A
from . import display
from .engine.core.errors import SceneFormatError
from .engine.core.formats.ply import inria_vertex_dtype
from .engine.core.scene import GaussianScene, PlyLayout, sh_degree_for_coeffs
from .io_import import (ImportReport, ImportSettings, axis_matrix, resolve_axes, scene_to_mesh,
                        set_splat_properties, setup_splat_display)
from .mesh_read import attribute_array, vertex_positions

# The attributes Blender's PLY importer makes from the Inria layout's required properties.
REQUIRED = ("f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3")
NORMAL = "normal"  # nx, ny, nz as one FLOAT_VECTOR attribute
NORMAL_PROPERTIES = ("nx", "ny", "nz")
_REST = re.compile(r"f_rest_(\d+)$")
# per-vertex attribute types kept as extra properties: (foreach key, numpy type, PLY type)
_EXTRA_TYPES = {"FLOAT": (np.float32, "<f4"), "INT": (np.int32, "<i4")}


@dataclass
class AdoptReport:
    """What :func:`adopt_object` did: Gaussians adopted, their SH degree, the up axis chosen
    (:class:`.io_import.ImportReport`, read_s = reading the attributes, build_s = building the new
    mesh and display [s]), and the mesh attributes that could not be kept (names)."""

    count: int
    sh_degree: int
    axes: ImportReport
    dropped: list[str] = field(default_factory=list)

    def describe(self, name: str) -> str:
        """The Info line."""
        return (f"Converted {name} to {self.count:,} Gaussians (SH degree {self.sh_degree}, "
                f"{self.axes.describe_up()})")


def looks_like_gaussians(mesh: bpy.types.Mesh) -> bool:
    """Whether a mesh has every attribute a 3DGS file gives Blender's PLY importer (by name; a
    cheap test for drawing the UI)."""
    names = mesh.attributes
    return all(n in names for n in REQUIRED)


def _rest_indices(mesh: bpy.types.Mesh) -> list[int]:
    return sorted(int(m.group(1)) for a in mesh.attributes if (m := _REST.match(a.name)))


def refusal(obj: bpy.types.Object | None) -> str | None:
    """Why ``obj`` cannot be adopted (one line naming the object and what is wrong), or None
    when it can. Reads attribute names and element counts only."""
    if obj is None or obj.type != "MESH":
        return "select a mesh made by File > Import > Stanford PLY from a 3DGS .ply"
    mesh = obj.data
    if A.PROP_AXIS in obj or A.POSITION in mesh.attributes:
        return f"{obj.name} is already a Gaussian Splatting object"
    if obj.mode == "EDIT":
        return f"{obj.name} is in Edit Mode; go back to Object Mode to convert it"
    if len(mesh.vertices) == 0:
        return f"{obj.name} has no vertices"
    if len(mesh.edges) or len(mesh.polygons):
        return (f"{obj.name} has edges or faces ({len(mesh.edges):,} edges, {len(mesh.polygons):,} "
                "faces); a 3DGS file gives a point cloud")
    missing = [n for n in REQUIRED if n not in mesh.attributes]
    if missing:
        return (f"{obj.name} is not a 3DGS point cloud: it lacks the attributes {', '.join(missing)} "
                "(expected f_dc_0-2, opacity, scale_0-2, rot_0-3)")
    for n in REQUIRED + tuple(f"f_rest_{i}" for i in _rest_indices(mesh)):
        attr = mesh.attributes[n]
        if attr.domain != "POINT" or attr.data_type != "FLOAT":
            return f"{obj.name}: attribute {n} is {attr.data_type} on {attr.domain}, expected FLOAT on POINT"
    rest = _rest_indices(mesh)
    if rest != list(range(len(rest))) or len(rest) not in (0, 9, 24, 45):
        shown = f"f_rest_{rest[0]}..f_rest_{rest[-1]}" if rest else ""
        return (f"{obj.name} has {len(rest)} SH attributes ({shown}); a 3DGS file has f_rest_0 up "
                "to f_rest_8, _23 or _44 (SH degree 1, 2 or 3), or none")
    if NORMAL in mesh.attributes:
        attr = mesh.attributes[NORMAL]
        if attr.domain != "POINT" or attr.data_type != "FLOAT_VECTOR":
            return f"{obj.name}: attribute normal is {attr.data_type} on {attr.domain}, expected FLOAT_VECTOR on POINT"
    return None


def mesh_to_scene(mesh: bpy.types.Mesh) -> tuple[GaussianScene, list[str]]:
    """The Gaussians of a mesh Blender's PLY importer made (see the module docstring), in the
    file's frame: means = vertex positions, other arrays from the attributes, ``nx, ny, nz``
    (from ``normal``) and other FLOAT / INT POINT attributes as extra properties, and a PLY
    layout in the Inria order. Returns the scene and the names of the attributes that are not
    kept (other types; Blender-internal ``.*`` attributes are not user data and not listed).
    The mesh must have passed :func:`refusal`."""
    n = len(mesh.vertices)
    means = vertex_positions(mesh)

    def stacked(names: tuple[str, ...]) -> np.ndarray:
        buf = np.empty((len(names), n), np.float32)
        for row, name in zip(buf, names):
            attribute_array(mesh, name, out=row)
        return np.ascontiguousarray(buf.T)

    k = len(_rest_indices(mesh)) // 3
    # f_rest_{c*K + j} is channel c of coefficient j+1: read them channel-major, then store
    # coefficient-major [K, N, 3] (the order scene_to_mesh copies without another pass)
    rest = np.empty((3, k, n), np.float32)
    for i in range(3 * k):
        attribute_array(mesh, f"f_rest_{i}", out=rest[i // k, i % k])
    sh_rest = np.ascontiguousarray(rest.transpose(1, 2, 0)).transpose(1, 0, 2)  # [N, K, 3] view
    del rest

    used = {"position", *REQUIRED, *(f"f_rest_{i}" for i in range(3 * k))}
    extra: dict[str, np.ndarray] = {}
    has_normal = NORMAL in mesh.attributes
    if has_normal:
        normals = attribute_array(mesh, NORMAL, "vector", 3)
        extra.update({p: normals[:, i].copy() for i, p in enumerate(NORMAL_PROPERTIES)})
        used.add(NORMAL)
    extra_types: dict[str, str] = {}
    dropped = []
    for attr in mesh.attributes:
        if attr.name in used or attr.name.startswith(".") or attr.domain != "POINT":
            continue  # (other domains are empty: the mesh has no edges or faces)
        kind = _EXTRA_TYPES.get(attr.data_type)
        # (colours, vectors, ...; nx beside normal; a name a PLY header cannot hold)
        if kind is None or attr.name in extra or not attr.name.isascii() or len(attr.name.split()) != 1:
            dropped.append(attr.name)
            continue
        vals = np.empty(n, kind[0])
        attr.data.foreach_get("value", vals)
        extra[attr.name] = vals
        extra_types[attr.name] = kind[1]

    fields = [(f, t) for f, t in inria_vertex_dtype(sh_degree_for_coeffs(k)).descr
              if has_normal or f not in NORMAL_PROPERTIES]
    fields += [(name, t) for name, t in extra_types.items()]
    layout = PlyLayout(np.dtype(fields), "binary_little_endian", [], [], "ply")
    scene = GaussianScene(
        means=means,
        scales=stacked(("scale_0", "scale_1", "scale_2")),
        quats=stacked(("rot_0", "rot_1", "rot_2", "rot_3")),
        opacities=attribute_array(mesh, "opacity"),
        sh_dc=stacked(("f_dc_0", "f_dc_1", "f_dc_2")),
        sh_rest=sh_rest,
        extra=extra,
        layout=layout,
    )
    return scene, dropped


def _plain(value):
    """An ID property's value as Python data (an IDPropertyArray is a view that dies with it)."""
    return value.to_list() if hasattr(value, "to_list") else value


def adopt_object(obj: bpy.types.Object, settings: ImportSettings | None = None) -> AdoptReport:
    """Make ``obj`` (a mesh from Blender's PLY importer, in Object Mode) a splat object: its
    mesh is replaced by one with our attributes (:mod:`.attributes`), vertices turned by the
    axis conversion of ``settings`` (default: Auto up axis, as the importer), and the splat
    display is added. The object itself (name, transform, parent, collections, other
    modifiers) stays; the old mesh is removed unless something else uses it, and the new one
    takes its name then. Raises :class:`engine.core.errors.SceneFormatError` with a one-line message
    (:func:`refusal`) and changes nothing when the object cannot be adopted or building fails."""
    settings = settings or ImportSettings()
    reason = refusal(obj)
    if reason is not None:
        raise SceneFormatError(reason)
    t0 = time.perf_counter()
    old = obj.data
    scene, dropped = mesh_to_scene(old)
    if settings.axis_matrix is not None:
        axis, up, detected = np.asarray(settings.axis_matrix, np.float64), "", False
    else:
        forward, up, detected = resolve_axes(scene, settings.axis_forward, settings.axis_up)
        axis = axis_matrix(forward, up)
    t1 = time.perf_counter()
    name = old.name
    new = bpy.data.meshes.new(name)
    had_display = display.MODIFIER in obj.modifiers
    props = (A.PROP_LAYOUT, A.PROP_AXIS, A.PROP_SOURCE, A.PROP_SH_DEGREE, A.PROP_COUNT)
    kept = {key: _plain(obj[key]) for key in props if key in obj}
    try:
        scene_to_mesh(scene, new, axis)
        obj.data = new
        set_splat_properties(obj, scene, axis)
        setup_splat_display(obj, settings.display_ratio)
    except BaseException:
        # leave the user's object as it was: its mesh, no splat properties or display
        obj.data = old
        for key in props:
            obj.pop(key, None)
        for key, value in kept.items():
            obj[key] = value
        mod = obj.modifiers.get(display.MODIFIER)
        if mod is not None and not had_display:
            obj.modifiers.remove(mod)
        bpy.data.meshes.remove(new)
        raise
    if old.users == 0:
        bpy.data.meshes.remove(old)
        new.name = name
    obj.update_tag()
    t2 = time.perf_counter()
    return AdoptReport(scene.num_gaussians, scene.sh_degree, ImportReport(up, detected, t1 - t0, t2 - t1),
                       dropped)
