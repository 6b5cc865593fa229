"""Vertex order of a trained splat mesh: each cluster's Gaussians stored next to each other.

Why: a click in the click tool (Edit Mode) writes every selected Gaussian's select flag and
vertex-group weight through the bmesh API, one vertex at a time (Edit Mode has no bulk write).
Those writes are bound by memory latency when a cluster's members are spread over the mesh (a
real .ply lists its Gaussians in training order, so an object's Gaussians are scattered over all
its rows): each member's memory is a cache miss, where contiguous members are walked in order
(``python -m engine.bench blender_click --order shuffled`` times the scattered case). So when
training results arrive the mesh's vertices are sorted by (coarse cluster, fine cluster) once
(:func:`order_by_clusters`).

How: Blender's own Geometry Nodes *Sort Elements* node in a temporary modifier that is applied.
It moves every point attribute, vertex group (Blender 5.0+), edge and face with the vertices
(Blender does the bookkeeping, so nothing the user added to the mesh is lost) and keeps the
mesh datablock and its custom properties. Its cost, once per training result, is the
benchmark's ``reorder`` line (``python -m engine.bench blender_click [--sh-degree 3]``).

Nothing depends on the order: the features are stored per vertex (they move with it), the
source row of each Gaussian stays in ``gs_index``, and export writes the current vertices.
"""

from __future__ import annotations

from typing import Any

import bpy
import numpy as np

from . import feature_store as FS
from .compat import sort_keeps_vertex_groups

# Temporary point attributes giving each vertex's new position ``key`` to Sort Elements, which
# takes an integer group id (groups ordered by id) and a float weight (exact for integers below
# 2^24): group = key >> WEIGHT_BITS, weight = key & (2^WEIGHT_BITS - 1), so any count sorts exactly
# (an integer-math node would do the split in the tree, but Blender 4.2 has none).
GROUP_ATTR, WEIGHT_ATTR = ".cg_sort_group", ".cg_sort_weight"
WEIGHT_BITS = 22


def cluster_order(coarse: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """Permutation ``perm`` (int64 [N]; new vertex i is old vertex ``perm[i]``) that sorts by
    coarse label, then fine label, then current index (stable); label -1 (no cluster) last."""
    coarse = np.asarray(coarse, np.int64).reshape(-1)
    fine = np.asarray(fine, np.int64).reshape(-1)
    if coarse.shape != fine.shape:
        raise ValueError(f"label arrays differ in length: {coarse.shape} vs {fine.shape}")
    big = np.iinfo(np.int64).max
    return np.lexsort((np.where(fine < 0, big, fine), np.where(coarse < 0, big, coarse))).astype(np.int64)


def is_cluster_ordered(coarse: np.ndarray, fine: np.ndarray) -> bool:
    """True when :func:`cluster_order` would leave every vertex where it is (one vectorised pass,
    no sort)."""
    coarse = np.asarray(coarse, np.int64).reshape(-1)
    fine = np.asarray(fine, np.int64).reshape(-1)
    if coarse.size < 2:
        return True
    c = np.where(coarse < 0, coarse.max() + 1, coarse)
    f = np.where(fine < 0, fine.max() + 1, fine)
    key = c * (int(f.max()) + 1) + f
    return bool(np.all(key[1:] >= key[:-1]))


def _build_sort_group(ng: Any) -> None:
    """Fill node group ``ng``: Sort Elements (points) by the group id and weight attributes."""
    ng.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    ng.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = ng.nodes, ng.links
    gin, gout = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    group = nodes.new("GeometryNodeInputNamedAttribute")
    group.data_type = "INT"
    group.inputs["Name"].default_value = GROUP_ATTR
    weight = nodes.new("GeometryNodeInputNamedAttribute")
    weight.data_type = "FLOAT"
    weight.inputs["Name"].default_value = WEIGHT_ATTR
    sort = nodes.new("GeometryNodeSortElements")
    sort.domain = "POINT"
    links.new(group.outputs["Attribute"], sort.inputs["Group ID"])
    links.new(weight.outputs["Attribute"], sort.inputs["Sort Weight"])
    links.new(gin.outputs[0], sort.inputs["Geometry"])
    links.new(sort.outputs[0], gout.inputs[0])


def reorder_vertices(obj: Any, perm: np.ndarray, *, weight_bits: int = WEIGHT_BITS) -> str:
    """Move the vertices of mesh object ``obj`` (in Object Mode) so new vertex i is old vertex
    ``perm[i]`` (see the module docstring). Returns "" when done, else why the order was left as
    it was (a one-line reason; the mesh is then unchanged): shape keys, a mesh shared with other
    objects, or a Blender without the Sort Elements node (before 4.1)."""
    mesh = obj.data
    n = len(mesh.vertices)
    perm = np.asarray(perm, np.int64).reshape(-1)
    if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
        raise ValueError(f"perm must be a permutation of the {n:,} vertices")
    if obj.mode != "OBJECT":
        return "the object is not in Object Mode"
    if mesh.shape_keys is not None:
        return "the mesh has shape keys"
    if mesh.users > 1:
        return "the mesh is shared with other objects"
    if mesh.library is not None:
        return "the mesh is linked from a library"
    if len(obj.vertex_groups) and not sort_keeps_vertex_groups():
        return "Blender before 5.0 does not carry vertex groups through the sort"
    key = np.empty(n, np.int64)
    key[perm] = np.arange(n)  # old vertex perm[i] goes to position i
    for name, type_, values in ((GROUP_ATTR, "INT", (key >> weight_bits).astype(np.int32)),
                                (WEIGHT_ATTR, "FLOAT", (key & ((1 << weight_bits) - 1)).astype(np.float32))):
        _drop(mesh, name)
        mesh.attributes.new(name, type_, "POINT").data.foreach_set("value", values)
    ng = bpy.data.node_groups.new(".CG sort vertices", "GeometryNodeTree")
    mod = None
    try:
        _build_sort_group(ng)
        mod = obj.modifiers.new(".CG sort vertices", "NODES")
        mod.node_group = ng
        if len(obj.modifiers) > 1:  # applied first: the sort acts on the mesh itself
            obj.modifiers.move(len(obj.modifiers) - 1, 0)
        with bpy.context.temp_override(object=obj, active_object=obj, selected_objects=[obj]):
            bpy.ops.object.modifier_apply(modifier=mod.name)
        mod = None  # applied: gone from the stack
    except (RuntimeError, KeyError, AttributeError, TypeError) as exc:
        return f"Blender could not sort the vertices ({str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__})"
    finally:
        if mod is not None:
            obj.modifiers.remove(mod)
        bpy.data.node_groups.remove(ng)
        done = len(mesh.vertices) == n
        if done:  # check: the keys must now read 0, 1, 2, ...
            got = np.empty((2, n), np.float64)
            for row, (name, dtype) in enumerate(((GROUP_ATTR, np.int32), (WEIGHT_ATTR, np.float32))):
                a = mesh.attributes.get(name)
                if a is None:
                    done = False
                    break
                col = np.empty(n, dtype)
                a.data.foreach_get("value", col)
                got[row] = col
            done = done and np.array_equal(got[0].astype(np.int64) * (1 << weight_bits) + got[1].astype(np.int64),
                                           np.arange(n))
        _drop(mesh, GROUP_ATTR)
        _drop(mesh, WEIGHT_ATTR)
    return "" if done else "Blender's sort left the vertices in another order"


def _drop(mesh: Any, name: str) -> None:
    a = mesh.attributes.get(name)
    if a is not None:
        mesh.attributes.remove(a)


def order_by_clusters(obj: Any) -> str:
    """Sort the trained mesh object's vertices by cluster (:func:`cluster_order` of its stored
    labels) unless they already are. Returns "" when the mesh is in cluster order afterwards,
    else the reason it is not (clicks then work the same, only slower; see the module doc)."""
    mesh = obj.data
    coarse, fine = FS.read_labels(mesh, "coarse"), FS.read_labels(mesh, "fine")
    if is_cluster_ordered(coarse, fine):
        return ""
    return reorder_vertices(obj, cluster_order(coarse, fine))
