"""Reading a splat mesh into numpy: the bulk reads the importer, the exporter, the click cache and
the selection list share, written once.

Every read goes through an attribute's ``data.foreach_get`` (one copy of a contiguous array).
The per-vertex properties that hold the same values (``mesh.vertices.foreach_get("co")``,
``("select")``) go through each vertex's RNA struct instead, far slower on large meshes.

In Edit Mode the attribute API sees the edit mesh, whose arrays read as empty: :func:`readable_mesh`
gives a mesh that can be read in any mode, and :func:`vertex_count` counts without reading.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import bpy
import numpy as np
from bmesh import from_edit_mesh

from .engine.core.errors import SceneFormatError

SELECT_ATTR = ".select_vert"  # Blender 4+ stores the vertex selection as this BOOLEAN attribute


def attribute_array(mesh: Any, name: str, key: str = "value", width: int = 1, dtype: Any = np.float32, *,
                    out: np.ndarray | None = None) -> np.ndarray:
    """The POINT attribute ``name`` of ``mesh`` as [N] (``width`` 1) or [N, width] ``dtype``
    (``key``: "value", "vector", "color"), or read into ``out`` (contiguous, N * width items).
    Raises SceneFormatError (a user message) when the mesh lacks it."""
    attr = mesh.attributes.get(name)
    if attr is None or attr.domain != "POINT":
        raise SceneFormatError(f"mesh {mesh.name!r} lacks the Gaussian attribute {name!r}; "
                               "was it imported as a 3D Gaussian Splatting scene?")
    if out is not None:
        attr.data.foreach_get(key, out)
        return out
    n = len(mesh.vertices)
    out = np.empty(n * width, dtype)
    attr.data.foreach_get(key, out)
    return out.reshape(n, width) if width > 1 else out


def vertex_positions(mesh: Any) -> np.ndarray:
    """[N, 3] float32 current vertex positions (object local), read from the ``position``
    attribute (through the vertices only for a mesh without one)."""
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    attr = mesh.attributes.get("position")
    if attr is not None and attr.data_type == "FLOAT_VECTOR" and attr.domain == "POINT":
        attr.data.foreach_get("vector", co)
    else:
        mesh.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def vertex_selection(mesh: Any) -> np.ndarray:
    """[N] bool vertex selection of a mesh (Object Mode data, or :func:`readable_mesh`), read
    from Blender's ``.select_vert`` attribute. No attribute = nothing selected."""
    out = np.zeros(len(mesh.vertices), bool)
    attr = mesh.attributes.get(SELECT_ATTR)
    if attr is not None and attr.domain == "POINT" and attr.data_type == "BOOLEAN":
        attr.data.foreach_get("value", out)
    return out


def edit_bmesh(obj: Any) -> Any:
    """The edit bmesh of a mesh object in Edit Mode."""
    return from_edit_mesh(obj.data)


def vertex_count(obj: Any) -> int:
    """Number of vertices (Gaussians) of a mesh object now, Edit Mode included (the edit bmesh's
    count, O(1); ``mesh.vertices`` lags behind until Edit Mode is synced)."""
    return len(edit_bmesh(obj).verts) if obj.mode == "EDIT" else len(obj.data.vertices)


@contextmanager
def readable_mesh(obj: Any):
    """A mesh whose attribute arrays can be read now: ``obj.data`` in Object Mode; in Edit Mode
    the edit mesh is synced (``update_from_editmode``) and a temporary copy is read (its arrays
    are shared with the mesh, not copied) and removed afterwards."""
    if obj.mode != "EDIT":
        yield obj.data
        return
    obj.update_from_editmode()
    tmp = obj.data.copy()
    try:
        yield tmp
    finally:
        bpy.data.meshes.remove(tmp)


def group_members(mesh: Any, group_indices: list[int]) -> dict[int, np.ndarray]:
    """Sorted int64 vertex indices [M] of each vertex group (weight > 0), by group index, read in
    one pass over the vertices' memberships for all groups together (Blender exposes vertex-group
    weights only per vertex). ``mesh`` must be readable (:func:`readable_mesh` in Edit Mode)."""
    wanted = set(group_indices)
    members: dict[int, list[int]] = {g: [] for g in group_indices}
    for v in mesh.vertices:
        for g in v.groups:
            if g.group in wanted and g.weight > 0:
                members[g.group].append(v.index)
    return {g: np.asarray(m, np.int64) for g, m in members.items()}
