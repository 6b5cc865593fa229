"""The click tool's click cache and selection writer, in plain functions that the click handler
(:func:`.ops_click.click`), tests and the benchmark call directly.

**The click cache** (:func:`click_data`): per mesh, the click index
(:class:`engine.core.click.ClickIndex`) and the features read from the mesh
(:class:`.feature_store.MeshFeatures`, member lists precomputed per cluster). What is clicked
on is the mesh's current vertices, mapped back to the file's axes (so Gaussians moved in Edit
Mode are found where they are now; their covariances keep their original orientation: exact for
moves, an approximation for rotated parts). The index is built in a worker thread when training
results arrive (:func:`prepare`). The depsgraph handler (:mod:`.handlers`) marks an entry stale
on any geometry update of its mesh (:func:`mark_stale`); a stale entry is compared with the
current positions (Object Mode: read through the ``position`` attribute; Edit Mode: after one
sync of the edit mesh) and rebuilt only when they differ. The clicks' own Edit-Mode writes tag
only the selection, so clicking never makes the cache stale; G / X / Shift+D / undo do.

**The selection writer** (:func:`write_selection`): a click's vertex indices become the vertex
selection and a vertex group named after the granularity and cluster (``CG coarse 3``; several
clusters ``CG fine 4+7``), weight 1. Modes: ``replace`` (the selection becomes the clicked
cluster), ``add`` (Shift), ``remove`` (Ctrl: the cluster's Gaussians are deselected; no group is
written). It writes in the object's current mode, never switched per click:

- Edit Mode (the click tool's mode, :func:`enter_click_mode`): into the edit bmesh, so
  G / R / S / X / Shift+D act on the selection at once, with no Edit/Object Mode round trip per
  click (a whole mesh conversion each way). Edit Mode has no bulk write: each member's select
  flag and group weight is written through the bmesh API, one vertex at a time, so a click costs
  in proportion to the clicked cluster, and little when the cluster's vertices are next to each
  other, which training results arrange (:mod:`.vertex_order`; members spread over the rows, as
  in a .ply, each miss the cache). A replace click deselects only what the previous clicks
  selected, not every vertex (:func:`_deselect_hinted`), and tags the redraw without a pass over
  the vertices (:func:`_tag_edit_selection`). The tool's start makes the vertex wrappers the
  clicks write through (:func:`wrap_vertices`), so the first click costs about what the others do.
- Object Mode: the ``.select_vert`` attribute (bulk ``foreach_set``), one ``VertexGroup.add``,
  and the splat display's highlight (Object Mode draws no vertex selection). ``VertexGroup.add``
  dominates: the deform layer is shared with the evaluated mesh and copied on the first write
  after each evaluation.

Blender's undo step that the tool pushes after each click is not part of the writer: in Edit
Mode it copies the whole edit mesh, every attribute of every vertex, whatever the click changed.
What each part costs, per Blender version: the README (``python -m engine.bench blender_click``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable

import bpy
import numpy as np
from bmesh.types import BMVert

from . import attributes as A
from . import feature_store as FS
from .display import HIGHLIGHT_ATTR, set_highlight
from .engine.core.click import ClickIndex
from .engine.core.errors import EngineError, TrainingError
from .engine.core.features import LEVELS
from .engine.core.scene import GaussianScene
from .mesh_read import group_members as read_group_members
from .mesh_read import (SELECT_ATTR, attribute_array, edit_bmesh, readable_mesh, vertex_count, vertex_positions,
                        vertex_selection)
from .viewport import local_to_file

try:
    from _bpy import ops as _BPY_OPS  # the module bpy.ops itself calls (see _call_op)
except ImportError:  # pragma: no cover - every Blender 4.2-5.2 has it
    _BPY_OPS = None

GROUP_PREFIX = "CG"
MODES = ("replace", "add", "remove")


class ClickError(EngineError):
    """A click that cannot be answered (message for the user)."""


def group_name(level: str, clusters: list[int]) -> str:
    """Vertex-group name of a click selection: ``CG coarse 3``, ``CG fine 4+7``."""
    return f"{GROUP_PREFIX} {level} {'+'.join(str(int(c)) for c in clusters)}"


def is_click_group(name: str) -> bool:
    return any(name.startswith(f"{GROUP_PREFIX} {level} ") for level in LEVELS)


# ---------------------------------------------------------------------- the click cache

def mesh_scene(obj: Any, co: np.ndarray | None = None, mesh: Any = None) -> GaussianScene:
    """The object's Gaussians for clicking: current vertex positions mapped back to the file's
    axes, the stored scales / rotations / opacities / DC colours (no higher SH: a click needs
    no colour). ``mesh``: where to read them (default ``obj.data``; see :func:`.mesh_read.readable_mesh`)."""
    mesh = obj.data if mesh is None else mesh
    axis = np.asarray(obj[A.PROP_AXIS], np.float64).reshape(4, 4)
    co = vertex_positions(mesh) if co is None else co
    n = len(co)
    return GaussianScene(
        means=local_to_file(co, axis).astype(np.float32),
        scales=attribute_array(mesh, A.SCALE, "vector", 3),
        quats=attribute_array(mesh, A.ROTATION, "value", 4),
        opacities=attribute_array(mesh, A.OPACITY),
        sh_dc=attribute_array(mesh, A.F_DC, "vector", 3),
        sh_rest=np.zeros((n, 0, 3), np.float32),
    )


@dataclass
class _Entry:
    key: tuple
    co: np.ndarray  # [N, 3] positions the index was built from
    index: Any  # engine.core.click.ClickIndex, or its Future while the worker builds it (prepare)
    trained: Any  # feature_store.MeshFeatures read from the mesh
    stale: bool = False
    bm: Any = None  # Edit Mode: the bmesh the cached vertex wrappers belong to
    verts: list | None = None  # Edit Mode: every BMVert wrapper, by index
    # Edit Mode: vertex index arrays (int64, ascending) that held every vertex the clicks left
    # selected, or None when unknown; only a hint where to deselect (see _deselect_hinted)
    sel_hint: list | None = None


_CACHE: dict[int, _Entry] = {}


def _key(mesh: Any, count: int | None = None) -> tuple:
    n = len(mesh.vertices) if count is None else count
    return (mesh.as_pointer(), mesh.name, n, mesh.get(FS.PROP_META, ""))


def invalidate(mesh: Any | None = None) -> None:
    """Forget the cached click data of a mesh (all meshes when None)."""
    if mesh is None:
        _CACHE.clear()
    else:
        _CACHE.pop(mesh.as_pointer(), None)

def mark_stale(ptr: int) -> None:
    """A geometry update of the mesh at pointer ``ptr`` (the depsgraph handler, :mod:`.handlers`):
    its cache entry is verified before the next use, unless the update is this module's own."""
    entry = _CACHE.get(ptr)
    if entry is not None and ptr not in _SETTLING:
        entry.stale = True


def has_entries() -> bool:
    """Whether any mesh has click data cached (the depsgraph handler returns at once when not)."""
    return bool(_CACHE)


def _build(scene: GaussianScene, trained: Any) -> Any:
    """Worker-thread part of the cache (numpy only): the click index and the member lists."""
    index = ClickIndex.build(scene)
    trained.index_members()
    return index


def _cached(obj: Any) -> _Entry | None:
    """The object's cache entry when it is known to match the mesh (no sync, no reading)."""
    mesh = obj.data
    entry = _CACHE.get(mesh.as_pointer())
    if entry is None or entry.stale or entry.key != _key(mesh, vertex_count(obj)):
        return None
    return entry


def _refresh(obj: Any, background: bool) -> _Entry:
    """A valid cache entry for ``obj``: the current one if the mesh is known unchanged, else
    verified against the current positions, else rebuilt (in the worker thread when
    ``background``: the entry then holds a Future until :func:`click_data` needs it)."""
    mesh = obj.data
    entry = _cached(obj)
    if entry is not None:
        return entry
    with readable_mesh(obj) as data:
        key = _key(mesh, len(data.vertices))
        ptr = key[0]
        entry = _CACHE.get(ptr)
        co = vertex_positions(data)
        if entry is not None and entry.key == key and np.array_equal(co, entry.co):
            entry.bm = entry.verts = None  # re-wrapped at the next Edit-Mode write
        else:
            trained = FS.load_features(data)
            scene = mesh_scene(obj, co, data)
            index = _POOL.submit(_build, scene, trained) if background else _build(scene, trained)
            entry = _CACHE[ptr] = _Entry(key, co, index, trained)
    _settle(obj, entry)  # after the temporary mesh is gone (its removal is a depsgraph update too)
    return entry


def click_data(obj: Any) -> tuple[Any, Any]:
    """(ClickIndex, MeshFeatures) of an object, cached (see the module docstring). Raises
    ClickError / TrainingError with a user message when the object cannot be clicked yet.

    Edit Mode: a valid cache entry is used as is (nothing is synced: the depsgraph handler marks
    the entry stale on any geometry change of the mesh, and the click's own writes change only
    the selection and vertex groups); a stale one costs one Edit Mode sync (a whole mesh
    conversion) and a position comparison, and a rebuild only if the positions differ."""
    entry = _cached(obj)  # its key holds the feature metadata: valid means the features are there
    if entry is None:
        # (checked only here, not per click: each attribute lookup by name walks Blender's
        # attribute list)
        if not FS.has_features(obj.data):
            raise TrainingError(f"{obj.name!r} has no trained features yet: train it first "
                                "(Click-Gaussian panel > Train)")
        entry = _refresh(obj, background=False)
    if isinstance(entry.index, concurrent.futures.Future):  # built in the background (prepare)
        entry.index = entry.index.result()
    return entry.index, entry.trained


_SETTLING: set[int] = set()  # mesh pointers whose geometry updates are our own doing


def _settle(obj: Any, entry: _Entry) -> None:
    """Mark a verified entry valid. In Edit Mode the sync that read the mesh
    (``update_from_editmode``) tagged its geometry for update, which would mark the entry stale
    again at the next redraw: the depsgraph is evaluated here, with that update ignored (the
    redraw would evaluate it anyway; only after real edits)."""
    entry.stale = False
    if obj.mode == "EDIT":
        _evaluate_own_update(obj)
        entry.stale = False


@contextmanager
def _own_updates(obj: Any):
    """Geometry updates of ``obj``'s mesh evaluated inside the body are this module's own and
    known to leave every vertex where it is: they do not make the click cache stale."""
    ptr = obj.data.as_pointer()
    _SETTLING.add(ptr)
    try:
        yield
    finally:
        _SETTLING.discard(ptr)


def _evaluate_own_update(obj: Any) -> None:
    """Evaluate the depsgraph now, ignoring the geometry update of ``obj``'s mesh that this
    module just caused."""
    with _own_updates(obj):
        bpy.context.view_layer.update()


_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickgs-index")


def prepare(obj: Any) -> bool:
    """Start building the object's click index and member lists in a worker thread (numpy only;
    the mesh is read here, on the main thread), so the first click does not wait for them.
    Called when training results arrive (the index is normally ready long before the tool
    starts) and when the click tool starts (a .blend opened since: its first click waits for
    what is left of the build).
    Returns False when there is nothing to prepare (no features, or already cached)."""
    if not FS.has_features(obj.data) or _cached(obj) is not None:
        return False
    entry = _refresh(obj, background=True)
    return isinstance(entry.index, concurrent.futures.Future)  # a build started (or still running)


# ---------------------------------------------------------------------- selection writing

def _set_selection(mesh: Any, sel: np.ndarray) -> None:
    """Write the vertex selection through ``.select_vert`` (a bulk copy; ``mesh.vertices``'
    ``foreach_set("select")`` is a per-vertex path)."""
    attr = mesh.attributes.get(SELECT_ATTR)
    if attr is None:
        attr = mesh.attributes.new(SELECT_ATTR, "BOOLEAN", "POINT")
    attr.data.foreach_set("value", np.ascontiguousarray(sel, dtype=bool))


def _group(obj: Any, name: str) -> Any:
    vg = obj.vertex_groups.get(name)
    return vg if vg is not None else obj.vertex_groups.new(name=name)  # new() makes it active


def _make_active(obj: Any, vg: Any) -> None:
    # setting the index tags the object's geometry for update (even to the same value), which
    # would make the click cache verify itself; set it only when it changes
    if obj.vertex_groups.active_index != vg.index:
        obj.vertex_groups.active_index = vg.index


def _write_object_mode(obj: Any, idx: np.ndarray, mode: str, group: str | None, highlight: bool,
                       timings: dict[str, float]) -> int:
    t0 = time.perf_counter()
    mesh = obj.data
    if mode == "replace":
        sel = np.zeros(len(mesh.vertices), bool)
    else:
        sel = vertex_selection(mesh)
    sel[idx] = mode != "remove"
    _set_selection(mesh, sel)
    if highlight:  # Object Mode shows no vertex selection: the splat display highlights it
        set_highlight(obj, sel)
    t1 = time.perf_counter()
    if group and mode != "remove" and len(idx):
        vg = _group(obj, group)
        # one bulk call (the list conversion is a small part of it); slower when the depsgraph
        # has evaluated the mesh since the last write (the deform layer is shared with the
        # evaluated copy and is copied on write); attribute_convert of a float attribute is
        # slower still
        vg.add(idx.tolist(), 1.0, "REPLACE")
        _make_active(obj, vg)
    mesh.update_tag()
    timings["select_ms"], timings["group_ms"] = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
    return int(np.count_nonzero(sel))


def _edit_verts(obj: Any) -> tuple[Any, list]:
    """(bmesh, every BMVert wrapper by index) of an object in Edit Mode, cached with its click
    data: wrapping every vertex once is far cheaper than looking the members up at each click."""
    bm = edit_bmesh(obj)
    bm.verts.layers.deform.verify()  # before wrapping: adding a bmesh layer invalidates wrappers
    entry = _cached(obj)
    if (entry is not None and entry.bm is bm and entry.verts is not None and len(entry.verts) == len(bm.verts)
            and (not entry.verts or (entry.verts[0].is_valid and entry.verts[-1].is_valid))):
        return bm, entry.verts
    bm.verts.ensure_lookup_table()
    verts = list(bm.verts)
    if entry is not None:
        entry.bm, entry.verts, entry.sel_hint = bm, verts, None
    return bm, verts


def _call_op(idname: str, **props: Any) -> bool:
    """Run an operator in the current context without the depsgraph evaluations ``bpy.ops``
    wraps every call in (``view_layer.update()`` before and after: a whole depsgraph evaluation
    each, and the redraw evaluates the depsgraph anyway). Returns False when its poll fails."""
    _ops = _BPY_OPS
    if _ops is not None and hasattr(_ops, "call") and hasattr(_ops, "poll"):
        if not _ops.poll(idname, "EXEC_DEFAULT"):
            return False
        return "FINISHED" in _ops.call(idname, props, "EXEC_DEFAULT", False)
    mod, fn = idname.split(".")
    op = getattr(getattr(bpy.ops, mod), fn)
    return op.poll() and "FINISHED" in op(**props)


def member_verts(verts: list, idx: np.ndarray) -> Iterable[Any]:
    """The items of ``verts`` at indices ``idx`` (int [S], ascending). Runs of consecutive
    indices — a cluster of a mesh in cluster order (:mod:`.vertex_order`) is one or a few — are
    taken as slices of the list, without a lookup or a Python int per member; scattered indices
    are looked up one by one."""
    if idx.size == 0:
        return ()
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    if len(breaks) * 16 > idx.size:  # runs shorter than ~16 on average: per-index lookups
        return map(verts.__getitem__, idx.tolist())
    first = idx[np.concatenate(([0], breaks))].tolist()
    last = idx[np.concatenate((breaks - 1, [idx.size - 1]))].tolist()
    return itertools.chain.from_iterable(itertools.starmap(lambda a, b: verts[a:b + 1], zip(first, last)))


# Relative cost of deselecting one vertex of a click's hint through the bmesh API, in vertices of
# Blender's own deselect-all (C, one pass over every vertex): a hint in runs (a mesh in cluster
# order) costs a few, a scattered one a cache miss per vertex.
_HINT_RUN_COST, _HINT_SCATTERED_COST = 6, 100


def _is_runs(idx: np.ndarray) -> bool:
    """Whether ascending indices ``idx`` (int [S]) form runs of consecutive indices long enough
    (~16 on average) to be walked as list slices (see :func:`member_verts`)."""
    return idx.size < 2 or int(np.count_nonzero(np.diff(idx) != 1)) * 16 <= idx.size


def _hint_cost(hint: list) -> int:
    """Cost of deselecting the vertices of ``hint`` one by one, in deselect-all vertices."""
    return sum(c.size * (_HINT_RUN_COST if _is_runs(c) else _HINT_SCATTERED_COST) for c in hint)


def _deselect_hinted(obj: Any, verts: list, hint: list) -> bool:
    """Deselect the vertices of ``hint`` (index arrays that held every vertex the clicks left
    selected) one by one; True when nothing is selected afterwards. The check is exact: the edit
    mesh counts its selected vertices (``Mesh.total_vert_sel``, kept by every select path,
    Python's included), so a selection made elsewhere since the last click (box select, select
    all, a script, undo) shows there and the caller deselects everything instead."""
    for c in hint:
        collections.deque(map(BMVert.select_set, member_verts(verts, c), itertools.repeat(False)), 0)
    return int(obj.data.total_vert_sel) == 0


def _tag_edit_selection() -> None:
    """Tag the edit meshes' selection for redraw as Blender's select operators do
    (``ID_RECALC_SELECT``: the overlay redraws the selection; no geometry update, which would
    send the click cache through a sync), without a pass over the vertices: assigning the mesh
    select mode (its current value) runs its RNA update, which tags every mesh in Edit Mode and
    flushes the vertex selection to edges and faces (a point cloud has none). The per-vertex
    writes of the bmesh API tag nothing, and ``bmesh.update_edit_mesh`` tags the geometry."""
    ts = bpy.context.tool_settings
    ts.mesh_select_mode = tuple(ts.mesh_select_mode)


def _write_edit_mode(obj: Any, idx: np.ndarray, mode: str, group: str | None, timings: dict[str, float]) -> int:
    """The selection and vertex group written into the edit bmesh, so Blender's edit tools act
    on them at once (no Edit/Object Mode round trip).

    Replace on a point cloud (a splat mesh: no edges): the vertices the previous clicks left
    selected (the entry's ``sel_hint``) are deselected one by one when that is cheaper than
    Blender's deselect-all, which touches every vertex; the mesh's selected-vertex count then
    proves nothing else is selected, else deselect-all runs as well (:func:`_deselect_hinted`).
    The members' select flags and deform weights are written per vertex through the bmesh API
    over cached vertex wrappers (no bulk call exists in Edit Mode; Blender's
    ``vertex_group_assign`` operator also adds every other selected vertex, and tags the
    geometry): fast when each cluster's vertices are next to each other (:mod:`.vertex_order`),
    bound by memory latency when they are spread over the rows. The redraw tag is
    :func:`_tag_edit_selection` (no pass over the vertices).

    A mesh with edges or faces keeps Blender's own operators for the selection semantics of
    edges and faces: replace runs deselect-all; add / remove run a select operator for its
    redraw tag ("select sharp edges" selects nothing without faces; otherwise the selection is
    inverted twice), and the selection is flushed to edges and faces after the writes."""
    t0 = time.perf_counter()
    bm, verts = _edit_verts(obj)
    entry = _cached(obj)
    if idx.size and not (verts[idx[0]].is_valid and verts[idx[-1]].is_valid):  # pragma: no cover - defensive
        raise ClickError("the mesh changed under the click; click again")
    cloud = len(bm.edges) == 0 and len(bm.faces) == 0
    hint = entry.sel_hint if cloud and entry is not None and entry.verts is verts else None
    if hint is not None and _hint_cost(hint) > len(verts):
        hint = None  # Blender's deselect-all is cheaper
    if mode == "replace":
        if not (hint is not None and _deselect_hinted(obj, verts, hint)):
            if not _call_op("mesh.select_all", action="DESELECT"):  # no Edit-Mode context: a plain loop
                collections.deque(map(BMVert.select_set, verts, itertools.repeat(False)), 0)
    elif not cloud and not (len(bm.faces) == 0 and _call_op("mesh.edges_select_sharp")):
        if _call_op("mesh.select_all", action="INVERT"):  # (without a context: no redraw to tag)
            _call_op("mesh.select_all", action="INVERT")
    t1 = time.perf_counter()
    if group and mode != "remove" and idx.size:
        vg = _group(obj, group)
        layer, gi = bm.verts.layers.deform.active, vg.index  # the layer is made by _edit_verts
        # flags and weights in one pass: each member's memory is touched once
        for v in member_verts(verts, idx):
            v.select_set(True)
            v[layer][gi] = 1.0
        # a new group is the active one; an existing one is not made active here: setting the
        # active index tags the mesh geometry, and the next click would have to sync Edit Mode
    else:
        collections.deque(map(BMVert.select_set, member_verts(verts, idx), itertools.repeat(mode != "remove")), 0)
    if cloud:
        _tag_edit_selection()
        if entry is not None and entry.verts is verts:
            entry.sel_hint = ([idx] if mode == "replace" else hint + [idx] if mode == "add" and hint is not None
                              else hint if mode == "remove" else None)
    elif len(bm.edges):
        bm.select_flush_mode()
    timings["select_ms"], timings["group_ms"] = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
    return int(obj.data.total_vert_sel)


def write_selection(obj: Any, indices: np.ndarray, mode: str, group: str | None, *, highlight: bool = True,
                    timings: dict[str, float] | None = None) -> int:
    """Apply a click's vertex indices to the selection (``mode``) and, for replace/add, to the
    vertex group ``group`` (created if needed; members get weight 1). Object Mode: through the
    ``.select_vert`` attribute and one ``VertexGroup.add``, and the selection is highlighted in
    the splat display (:func:`.display.set_highlight`). Edit Mode: into the edit bmesh (Blender's
    own overlay shows the selection; an Object-Mode highlight left on the mesh is cleared once).
    Returns the number of selected vertices afterwards; ``timings`` (if given) receives
    ``select_ms`` (Object Mode: the selection and highlight; Edit Mode: clearing / tagging the
    selection) and ``group_ms`` (Object Mode: the vertex group; Edit Mode: the members' select
    flags and weights, written in one pass)."""
    timings = {} if timings is None else timings
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    n = vertex_count(obj)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ClickError(f"selection indices out of range for {obj.name!r} ({n:,} vertices)")
    if obj.mode != "EDIT":
        return _write_object_mode(obj, idx, mode, group, highlight, timings)
    if highlight:
        if HIGHLIGHT_ATTR in obj.data.attributes.keys():  # (by name: no lookup, no unsharing)
            set_highlight(obj, None)  # once; it tags the geometry, which moves no vertex
            _evaluate_own_update(obj)
    return _write_edit_mode(obj, idx, mode, group, timings)


# ---------------------------------------------------------------------- the click tool's mode

_DEFORM_PROBE = ".CG deform layer"  # temporary vertex group of enter_click_mode


def _deform_probe(obj: Any) -> Any | None:
    """Object Mode, before entering Edit Mode: give the mesh its deform-weight layer, so that the
    Edit-Mode conversion carries it. Adding it to the edit mesh later (the first click's group
    needs it) reallocates every vertex's data block, all attributes included, and invalidates
    the cached vertex wrappers. A mesh without vertex groups has no such layer, and removing the
    last group in Object Mode drops it again: a temporary group is made (vertex 0 added and
    removed at once, so no vertex keeps a weight) and returned, to be removed in Edit Mode, where
    the removal leaves the edit mesh's layer (empty: no vertex is in any group). None when the
    object has vertex groups already (their layer exists once any vertex has a weight), and when
    Blender refuses the group (linked data: entering Edit Mode then says why)."""
    if len(obj.vertex_groups) or len(obj.data.vertices) == 0:
        return None
    vg = None
    try:
        vg = obj.vertex_groups.new(name=_DEFORM_PROBE)
        vg.add([0], 0.0, "REPLACE")
        vg.remove([0])
    except (RuntimeError, TypeError, AttributeError):
        if vg is not None and obj.vertex_groups.get(vg.name) is not None:
            obj.vertex_groups.remove(vg)
        return None
    return vg


def enter_click_mode(obj: Any, timings: dict[str, float] | None = None, *, wrap: bool = True) -> None:
    """Put ``obj`` (the active object) in Edit Mode with vertex selection: the click tool's
    mode, in which each click is the edit selection, so G / R / S / X / Shift+D act on it at
    once. One conversion when the tool starts, none per click. ``wrap``: also make the vertex
    wrappers the clicks write through (:func:`wrap_vertices`) now; the click tool does that in
    the first idle moment after it started instead. ``timings`` (if given) receives
    milliseconds: ``edit_mode_ms`` (the conversion and the depsgraph evaluation after it, which
    the redraw would do otherwise) and ``wrap_ms``.
    Raises RuntimeError (Blender's message) when the object cannot enter Edit Mode."""
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    if obj.mode != "EDIT":
        bpy.context.view_layer.update()  # pending changes judged as usual first
        if HIGHLIGHT_ATTR in obj.data.attributes.keys():  # (by name: no lookup, no unsharing)
            set_highlight(obj, None)  # Edit Mode shows the selection itself; cheaper removed here
            bpy.context.view_layer.update()
        prepare(obj)  # a stale cache is verified here, in Object Mode, not synced later
        # entering Edit Mode keeps every vertex, and the probe group changes no weight: the
        # click cache stays valid through the one evaluation below
        with _own_updates(obj):
            probe = _deform_probe(obj)
            try:
                if not _call_op("object.mode_set", mode="EDIT"):
                    bpy.ops.object.mode_set(mode="EDIT")  # raises Blender's message
            finally:
                if probe is not None:
                    obj.vertex_groups.remove(probe)
            bpy.context.view_layer.update()
    if tuple(bpy.context.tool_settings.mesh_select_mode) != (True, False, False):
        bpy.ops.mesh.select_mode(type="VERT")
    t1 = time.perf_counter()
    if wrap:
        wrap_vertices(obj)
    timings["edit_mode_ms"], timings["wrap_ms"] = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3


def wrap_vertices(obj: Any) -> bool:
    """Make (and cache with the click data) the Python wrappers of every vertex of ``obj``'s edit
    mesh, which the clicks write through, so the first click does not: the first wrapper of an
    edit mesh adds Blender's per-vertex wrapper slot (a reallocation of every vertex's data
    block), then one object per vertex. False when there is nothing to do here (not in Edit Mode,
    or no valid click data to attach them to: the next click wraps them then)."""
    if obj.mode != "EDIT" or _cached(obj) is None:
        return False
    _edit_verts(obj)
    return True


@contextmanager
def object_mode(obj: Any):
    """Run the body with ``obj`` in Object Mode (mesh data writable), restoring Edit Mode after.
    Works from any context (a timer, an operator on another object): the mode switches are run
    with ``obj`` as the context's object."""
    was_edit = obj.mode == "EDIT"
    if was_edit:
        with bpy.context.temp_override(object=obj, active_object=obj):
            bpy.ops.object.mode_set(mode="OBJECT")
    try:
        yield
    finally:
        if was_edit:
            with bpy.context.temp_override(object=obj, active_object=obj):
                bpy.ops.object.mode_set(mode="EDIT")


# ---------------------------------------------------------------------- selection-list actions

def click_groups(obj: Any) -> list[Any]:
    """The object's vertex groups made by clicks, in creation order."""
    return [vg for vg in obj.vertex_groups if is_click_group(vg.name)]


def group_members(obj: Any, group: str) -> np.ndarray:
    """Sorted int64 vertex indices in a vertex group (weight > 0); for the list actions (not on
    the click path)."""
    vg = obj.vertex_groups.get(group)
    if vg is None:
        raise ClickError(f"{obj.name!r} has no vertex group {group!r}")
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    return read_group_members(obj.data, [vg.index])[vg.index]
