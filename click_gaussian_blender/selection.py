"""A click in the viewport -> a selection of Gaussians (mesh vertices), in plain functions that
tests and the benchmark call directly (the modal operator in :mod:`.ops_click` only adapts).

1. The viewport camera (:mod:`.viewport`) sees the scene in the file's coordinates.
2. :func:`engine.click.click_query` (numpy, the same code the engine serves) blends the stored
   per-Gaussian features at the clicked pixel and matches the global clusters of the chosen
   level; every Gaussian whose stored label is that cluster is selected.
3. The selection is written to Blender: a vertex group named after the granularity and cluster
   (``CG coarse 3``; several clusters ``CG fine 4+7``) and the vertex selection, with bulk
   calls (``foreach_set`` of the select flags, one ``VertexGroup.add`` of an index list).

Modes: ``replace`` (the selection becomes the clicked cluster), ``add`` (Shift), ``remove``
(Ctrl: the cluster's Gaussians are deselected; no group is written).

What is clicked on: the mesh's current vertices, mapped back to the file's axes (so Gaussians
moved in Edit Mode are found where they are now; their covariances keep their original
orientation — exact for moves, an approximation for rotated parts). The click index and the
features read from the mesh are cached per mesh and rebuilt when its vertices change (a
depsgraph handler marks the cache stale on any geometry update, our own selection writes
included; a stale cache is compared with the current positions — 2.5 ms at 1M vertices through
the ``position`` attribute — and rebuilt only when they differ).
"""

from __future__ import annotations

import concurrent.futures
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import attributes as A
from . import feature_store as FS
from .engine.errors import EngineError, TrainingError
from .engine.scene import GaussianScene
from .viewport import ViewCamera, local_to_file

GROUP_PREFIX = "CG"
MODES = ("replace", "add", "remove")


class ClickError(EngineError):
    """A click that cannot be answered (message for the user)."""


@dataclass
class ClickOutcome:
    """What one click did. ``selected``: vertex indices of the clicked cluster(s) (int64);
    ``total_selected``: vertices selected after the click; ``timings`` in milliseconds."""

    ok: bool
    message: str
    level: str
    mode: str
    clusters: list[int] = field(default_factory=list)
    similarity: float = float("nan")
    selected: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    group: str | None = None
    total_selected: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def group_name(level: str, clusters: list[int]) -> str:
    """Vertex-group name of a click selection: ``CG coarse 3``, ``CG fine 4+7``."""
    return f"{GROUP_PREFIX} {level} {'+'.join(str(int(c)) for c in clusters)}"


def is_click_group(name: str) -> bool:
    return name.startswith(GROUP_PREFIX + " coarse ") or name.startswith(GROUP_PREFIX + " fine ")


# ---------------------------------------------------------------------- mesh -> click data

def _get(mesh: Any, name: str, key: str, width: int) -> np.ndarray:
    attr = mesh.attributes.get(name)
    if attr is None:
        raise ClickError(f"{mesh.name!r} lacks the Gaussian attribute {name!r}: import the scene with "
                         "File > Import > 3D Gaussian Splatting")
    n = len(mesh.vertices)
    out = np.empty(n * width, np.float32)
    attr.data.foreach_get(key, out)
    return out.reshape(n, width) if width > 1 else out


def vertex_positions(mesh: Any) -> np.ndarray:
    """[N, 3] float32 current vertex positions (object local), read from the ``position``
    attribute (1.2 ms at 1M vertices; ``mesh.vertices.foreach_get("co")`` takes ~85 ms)."""
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    attr = mesh.attributes.get("position")
    if attr is not None and attr.data_type == "FLOAT_VECTOR" and attr.domain == "POINT":
        attr.data.foreach_get("vector", co)
    else:
        mesh.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def mesh_scene(obj: Any, co: np.ndarray | None = None) -> GaussianScene:
    """The object's Gaussians for clicking: current vertex positions mapped back to the file's
    axes, the stored scales / rotations / opacities / DC colours (no higher SH: a click needs
    no colour)."""
    mesh = obj.data
    axis = np.asarray(obj[A.PROP_AXIS], np.float64).reshape(4, 4)
    co = vertex_positions(mesh) if co is None else co
    n = len(co)
    return GaussianScene(
        means=local_to_file(co, axis).astype(np.float32),
        scales=_get(mesh, A.SCALE, "vector", 3),
        quats=_get(mesh, A.ROTATION, "value", 4),
        opacities=_get(mesh, A.OPACITY, "value", 1),
        sh_dc=_get(mesh, A.F_DC, "vector", 3),
        sh_rest=np.zeros((n, 0, 3), np.float32),
    )


@dataclass
class _Entry:
    key: tuple
    co: np.ndarray  # [N, 3] positions the index was built from
    index: Any  # engine.click.ClickIndex
    trained: Any  # TrainedFeatures read from the mesh
    stale: bool = False


_CACHE: dict[int, _Entry] = {}


def _key(mesh: Any) -> tuple:
    return (mesh.as_pointer(), mesh.name, len(mesh.vertices), mesh.get(FS.PROP_META, ""))


def invalidate(mesh: Any | None = None) -> None:
    """Forget the cached click data of a mesh (all meshes when None)."""
    if mesh is None:
        _CACHE.clear()
        _PENDING.clear()
    else:
        _CACHE.pop(mesh.as_pointer(), None)
        _PENDING.pop(mesh.as_pointer(), None)


def click_data(obj: Any) -> tuple[Any, Any]:
    """(ClickIndex, TrainedFeatures) of an object, cached (see the module docstring). Raises
    ClickError / TrainingError with a user message when the object cannot be clicked yet."""
    mesh = obj.data
    if not FS.has_features(mesh):
        raise TrainingError(f"{obj.name!r} has no trained features yet: train it first (Click-Gaussian panel > Train)")
    from .engine.click import ClickIndex
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    key = _key(mesh)
    ptr = key[0]
    entry = _CACHE.get(ptr)
    if entry is not None and entry.key == key and not entry.stale:
        return entry.index, entry.trained
    co = vertex_positions(mesh)
    if entry is not None and entry.key == key and entry.stale and np.array_equal(co, entry.co):
        entry.stale = False
        return entry.index, entry.trained
    pending = _PENDING.pop(ptr, None)
    if pending is not None and pending[0] == key and np.array_equal(co, pending[1]):
        trained, index = pending[2], pending[3].result()  # built in the background (prepare)
    else:
        trained = FS.load_features(mesh)
        index = ClickIndex.build(mesh_scene(obj, co))
    _CACHE[ptr] = _Entry(key, co, index, trained)
    return index, trained


_PENDING: dict[int, tuple] = {}  # mesh pointer -> (key, co, trained, Future[ClickIndex])
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickgs-index")


def prepare(obj: Any) -> bool:
    """Start building the object's click index in a worker thread (numpy only; the mesh is read
    here, on the main thread), so the first click does not wait for it (~3 s at 1M Gaussians).
    Called when the click tool starts and when training results arrive. Returns False when
    there is nothing to prepare (no features, or already cached)."""
    from .engine.click import ClickIndex

    mesh = obj.data
    if not FS.has_features(mesh):
        return False
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    key = _key(mesh)
    entry = _CACHE.get(key[0])
    if entry is not None and entry.key == key and not entry.stale:
        return False
    pending = _PENDING.get(key[0])
    if pending is not None and pending[0] == key:
        return False
    co = vertex_positions(mesh)
    trained = FS.load_features(mesh)
    _PENDING[key[0]] = (key, co, trained, _POOL.submit(ClickIndex.build, mesh_scene(obj, co)))
    return True


def _on_depsgraph_update(scene: Any, depsgraph: Any) -> None:
    if not _CACHE:
        return
    for upd in depsgraph.updates:
        if not upd.is_updated_geometry:
            continue
        idd = upd.id.original if hasattr(upd.id, "original") else upd.id
        data = getattr(idd, "data", idd)
        try:
            ptr = data.as_pointer()
        except (AttributeError, ReferenceError):
            continue
        entry = _CACHE.get(ptr)
        if entry is not None:
            entry.stale = True


# ---------------------------------------------------------------------- selection writing

SELECT_ATTR = ".select_vert"  # Blender 4+ stores the vertex selection as this BOOLEAN attribute


def read_selection(mesh: Any) -> np.ndarray:
    """[N] bool vertex selection (Object Mode data). Read from the ``.select_vert`` attribute
    (0.1 ms at 1M vertices; ``mesh.vertices.foreach_get("select")`` takes ~400 ms)."""
    sel = np.zeros(len(mesh.vertices), bool)
    attr = mesh.attributes.get(SELECT_ATTR)
    if attr is not None:
        attr.data.foreach_get("value", sel)
    return sel


def _set_selection(mesh: Any, sel: np.ndarray) -> None:
    """Write the vertex selection through ``.select_vert`` (measured 0.3 ms at 1M vertices vs
    ~700 ms for ``mesh.vertices.foreach_set("select")``)."""
    attr = mesh.attributes.get(SELECT_ATTR)
    if attr is None:
        attr = mesh.attributes.new(SELECT_ATTR, "BOOLEAN", "POINT")
    attr.data.foreach_set("value", np.ascontiguousarray(sel, dtype=bool))


def write_selection(obj: Any, indices: np.ndarray, mode: str, group: str | None, *, highlight: bool = True) -> int:
    """Apply a click's vertex indices to the selection (``mode``) and, for replace/add, to the
    vertex group ``group`` (created if needed; members get weight 1), and highlight the selection
    in the splat display (:func:`.display.set_highlight`). Object Mode only (see
    :func:`object_mode`). Returns the number of selected vertices afterwards."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    mesh = obj.data
    n = len(mesh.vertices)
    idx = np.asarray(indices, dtype=np.int64)
    if mode == "replace":
        sel = np.zeros(n, bool)
    else:
        sel = read_selection(mesh)
    sel[idx] = mode != "remove"
    _set_selection(mesh, sel)
    if highlight:  # Object Mode shows no vertex selection: the splat display highlights it
        from .display import set_highlight

        set_highlight(obj, sel)
    if group and mode != "remove" and len(idx):
        vg = obj.vertex_groups.get(group) or obj.vertex_groups.new(name=group)
        vg.add(idx.tolist(), 1.0, "REPLACE")
        obj.vertex_groups.active_index = vg.index
    mesh.update_tag()
    return int(np.count_nonzero(sel))


@contextmanager
def object_mode(obj: Any):
    """Run the body with ``obj`` in Object Mode (mesh data writable), restoring Edit Mode after.
    Needs a context where ``obj`` is the active object (operators, the test fixture)."""
    import bpy

    was_edit = obj.mode == "EDIT"
    if was_edit:
        bpy.ops.object.mode_set(mode="OBJECT")
    try:
        yield
    finally:
        if was_edit:
            bpy.ops.object.mode_set(mode="EDIT")


def click(obj: Any, view: ViewCamera, u: float, v: float, *, level: str = "coarse", mode: str = "replace",
          min_similarity: float = 0.0) -> ClickOutcome:
    """The whole click handler: pixel (u, v) of ``view`` (engine pixel coordinates, see
    :func:`.viewport.region_to_pixel`) -> selection on ``obj`` (see the module docstring).
    Never raises for the user's mistakes: the outcome's ``ok``/``message`` say what happened."""
    t0 = time.perf_counter()
    out = ClickOutcome(False, "", level, mode)
    if level not in ("coarse", "fine"):
        out.message = f"granularity must be coarse or fine, got {level!r}"
        return out
    try:
        index, trained = click_data(obj)
    except EngineError as exc:
        out.message = str(exc)
        return out
    from .engine.click import click_query

    t1 = time.perf_counter()
    cam = view.camera
    if not (0 <= u <= cam.width and 0 <= v <= cam.height):
        out.message = f"the click at ({u:.0f}, {v:.0f}) is outside the {cam.width}x{cam.height} view"
        return out
    try:
        res = click_query(index, trained, cam, u, v, level=level)
    except (EngineError, ValueError) as exc:
        out.message = f"click failed: {exc}"
        return out
    t2 = time.perf_counter()
    out.clusters = [int(c) for c in (res.clusters or [])]
    out.similarity = float(res.similarity) if res.similarity is not None else float("nan")
    sel = np.asarray(res.selected, dtype=np.int64)
    if not out.clusters or sel.size == 0:
        reason = getattr(res, "reason", "") or "no Gaussians there"
        out.message = f"Nothing selected: {reason}"
        out.timings = {"prepare_ms": (t1 - t0) * 1e3, "query_ms": (t2 - t1) * 1e3, "total_ms": (t2 - t0) * 1e3}
        return out
    if min_similarity > 0 and out.similarity < min_similarity:
        out.message = (f"Nothing selected: the best {level} cluster is only {out.similarity:.2f} similar "
                       f"(threshold {min_similarity:.2f})")
        out.timings = {"prepare_ms": (t1 - t0) * 1e3, "query_ms": (t2 - t1) * 1e3, "total_ms": (t2 - t0) * 1e3}
        return out
    out.group = group_name(level, out.clusters) if mode != "remove" else None
    out.selected = sel
    out.total_selected = write_selection(obj, sel, mode, out.group)
    t3 = time.perf_counter()
    out.ok = True
    verb = {"replace": "Selected", "add": "Added", "remove": "Removed"}[mode]
    out.timings = {"prepare_ms": (t1 - t0) * 1e3, "query_ms": (t2 - t1) * 1e3, "write_ms": (t3 - t2) * 1e3,
                   "total_ms": (t3 - t0) * 1e3}
    what = out.group or group_name(level, out.clusters)
    out.message = (f"{verb} {sel.size:,} Gaussians ({what}, similarity {out.similarity:.2f}); "
                   f"{out.total_selected:,} selected; {out.timings['total_ms']:.1f} ms")
    return out


# ---------------------------------------------------------------------- selection-list actions

def click_groups(obj: Any) -> list[Any]:
    """The object's vertex groups made by clicks, in creation order."""
    return [vg for vg in obj.vertex_groups if is_click_group(vg.name)]


def group_members(obj: Any, group: str) -> np.ndarray:
    """Sorted int64 vertex indices in a vertex group (weight > 0). One pass over the vertices'
    group memberships; fine for the list actions (not on the click path)."""
    vg = obj.vertex_groups.get(group)
    if vg is None:
        raise ClickError(f"{obj.name!r} has no vertex group {group!r}")
    gi = vg.index
    mesh = obj.data
    out = [v.index for v in mesh.vertices if any(g.group == gi and g.weight > 0 for g in v.groups)]
    return np.asarray(out, dtype=np.int64)


def _on_load(*_args: Any) -> None:
    _CACHE.clear()
    _PENDING.clear()  # another .blend: every cached mesh pointer is gone


def register() -> None:
    import bpy

    # persistent: the handlers must survive opening another .blend
    for handlers, fn in ((bpy.app.handlers.depsgraph_update_post, _on_depsgraph_update),
                         (bpy.app.handlers.load_post, _on_load)):
        bpy.app.handlers.persistent(fn)
        if fn not in handlers:
            handlers.append(fn)


def unregister() -> None:
    import bpy

    for handlers, fn in ((bpy.app.handlers.depsgraph_update_post, _on_depsgraph_update),
                         (bpy.app.handlers.load_post, _on_load)):
        if fn in handlers:
            handlers.remove(fn)
    _CACHE.clear()
