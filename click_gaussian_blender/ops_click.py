"""The click handler, the click tool (modal) and the selection-list actions.

The click handler (:func:`click`, a plain function that tests and the benchmark call):

1. The viewport camera (:mod:`.viewport`) sees the scene in the file's coordinates.
2. :func:`engine.core.click.click_query` (numpy, the same code the engine serves) blends the
   stored per-Gaussian features at the clicked pixel and matches the global clusters of the
   chosen level; every Gaussian whose stored label is that cluster is selected (the click data:
   :func:`.selection.click_data`).
3. The selection is written to Blender as the vertex selection and a vertex group named after
   the granularity and cluster (:func:`.selection.write_selection`).

Click tool (3D viewport): left-click selects the clicked object (coarse) or part (fine) as a
vertex group + the vertex selection; Shift+click adds, Ctrl+click removes, F toggles coarse /
fine, Esc or right-click leaves. Each click is one undo step; the status bar says what was
selected and how long it took. Navigation and every other key pass through, so G / R / S / X /
Shift+D act on the selection (in Edit Mode) while the tool runs.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import bpy
import numpy as np
from bpy.props import EnumProperty, StringProperty

from . import attributes as A
from . import feature_store, io_export, scene_settings, selection, vertex_order, viewport
from .engine.core.click import click_query
from .engine.core.errors import EngineError
from .engine.core.features import LEVELS

HELP = "Click: select   Shift: add   Ctrl: remove   F: coarse/fine   Esc: done"


@dataclass
class ClickOutcome:
    """What one click did. ``selected``: vertex indices of the clicked cluster(s) (int64);
    ``total_selected``: vertices selected after the click; ``timings`` in milliseconds:
    ``prepare_ms`` (click cache check), ``query_ms``, ``write_ms`` = ``select_ms`` +
    ``group_ms`` (see :func:`.selection.write_selection`), ``total_ms``."""

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


def click(obj, view: viewport.ViewCamera, u: float, v: float, *, level: str = "coarse", mode: str = "replace",
          min_similarity: float = 0.0) -> ClickOutcome:
    """The whole click handler: pixel (u, v) of ``view`` (engine pixel coordinates, see
    :func:`.viewport.region_to_pixel`) -> selection on ``obj`` (see the module docstring).
    Never raises for the user's mistakes: the outcome's ``ok``/``message`` say what happened."""
    t0 = time.perf_counter()
    out = ClickOutcome(False, "", level, mode)
    if level not in LEVELS:
        out.message = f"granularity must be {' or '.join(LEVELS)}, got {level!r}"
        return out
    try:
        index, trained = selection.click_data(obj)
    except EngineError as exc:
        out.message = str(exc)
        return out
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
    out.group = selection.group_name(level, out.clusters) if mode != "remove" else None
    out.selected = sel
    parts: dict[str, float] = {}
    out.total_selected = selection.write_selection(obj, sel, mode, out.group, timings=parts)
    t3 = time.perf_counter()
    out.ok = True
    verb = {"replace": "Selected", "add": "Added", "remove": "Removed"}[mode]
    out.timings = {"prepare_ms": (t1 - t0) * 1e3, "query_ms": (t2 - t1) * 1e3, "write_ms": (t3 - t2) * 1e3,
                   **parts, "total_ms": (t3 - t0) * 1e3}
    what = out.group or selection.group_name(level, out.clusters)
    out.message = (f"{verb} {sel.size:,} Gaussians ({what}, similarity {out.similarity:.2f}); "
                   f"{out.total_selected:,} selected; {out.timings['total_ms']:.1f} ms")
    return out


def view_under_mouse(context, event):
    """(region, RegionView3D) of the 3D viewport's main region under the mouse, or (None, None)."""
    for area in context.screen.areas if context.screen else ():
        if area.type != "VIEW_3D":
            continue
        for region in area.regions:
            if region.type != "WINDOW":
                continue
            if (region.x <= event.mouse_x < region.x + region.width
                    and region.y <= event.mouse_y < region.y + region.height):
                return region, area.spaces.active.region_3d
    return None, None


def view_of(obj, region, rv3d, *, ortho_center=None) -> viewport.ViewCamera:
    """The engine camera of a viewport region looking at ``obj``."""
    return viewport.view_camera(np.array(rv3d.view_matrix), np.array(rv3d.window_matrix), region.width,
                                region.height, np.array(obj.matrix_world),
                                np.asarray(obj[A.PROP_AXIS], np.float64).reshape(4, 4), ortho_center=ortho_center)


def click_at(context, obj, view: viewport.ViewCamera, u: float, v: float, mode: str) -> ClickOutcome:
    """One click through the panel's settings, in the object's current mode (plain function:
    tests). In Edit Mode the selection is written into the edit mesh, so G / R / S / X / Shift+D
    act on it at once, without an Edit/Object Mode round trip (a whole mesh conversion each way)."""
    props = scene_settings.get(context.scene)
    out = click(obj, view, u, v, level=props.level, mode=mode, min_similarity=props.min_similarity)
    props.message = out.message
    return out


def start_click_tool(obj, timings: dict[str, float] | None = None, *, sort: bool = True) -> str:
    """What the click tool does when it starts on ``obj`` (the active object; plain function: the
    benchmark times it). In Object Mode, sort the vertices by cluster unless they are (features
    stored before the add-on sorted training results; a vectorised check otherwise), start
    building the click index in the background unless it is cached (it normally was built when
    the training results arrived), and enter Edit Mode with vertex selection
    (:func:`selection.enter_click_mode`, vertex wrappers left to :func:`selection.wrap_vertices`).
    Returns "" or why the vertices are left in their order. ``timings``: see enter_click_mode;
    ``sort=False`` leaves the order as it is (the benchmark's meshes that cannot be sorted).
    Raises RuntimeError (Blender's message) when the object cannot enter Edit Mode."""
    why = vertex_order.order_by_clusters(obj) if sort and obj.mode == "OBJECT" else ""
    selection.prepare(obj)  # build the click index in the background while the user aims
    # clicks become the Edit-Mode selection: G / R / S / X / Shift+D act on them at once
    selection.enter_click_mode(obj, timings, wrap=False)
    return why


def _wrap_vertices_of(name: str) -> None:
    """Timer: :func:`selection.wrap_vertices` of the object ``name`` if it still exists."""
    obj = bpy.data.objects.get(name)
    if obj is not None:
        selection.wrap_vertices(obj)
    return None  # once


class CLICKGS_OT_click_select(bpy.types.Operator):
    """Click objects (or their parts) in the splat scene to select them as vertex groups"""

    bl_idname = "clickgs.click_select"
    bl_label = "Click Select"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D" and io_export.is_splat_object(
            context.active_object)

    def invoke(self, context, event):
        obj = context.active_object
        if not feature_store.has_features(obj.data):
            self.report({"ERROR"}, f"{obj.name!r} has no trained features yet: train it first (Click-Gaussian panel > Train)")
            return {"CANCELLED"}
        self._obj_name = obj.name
        try:
            why = start_click_tool(obj)
        except RuntimeError as exc:
            self.report({"ERROR"}, f"{obj.name!r} cannot enter Edit Mode: {exc}")
            return {"CANCELLED"}
        if why:
            self.report({"INFO"}, f"{obj.name!r}: vertices not sorted by cluster ({why}); clicks are slower")
        # the vertex wrappers in the first idle moment: after the viewport shows Edit Mode, before
        # the events of the next turn of Blender's event loop (timers run first in each turn); a
        # click queued together with the tool's start wraps them itself
        bpy.app.timers.register(functools.partial(_wrap_vertices_of, obj.name), first_interval=0.0)
        context.window_manager.modal_handler_add(self)
        self._status(context, HELP)
        return {"RUNNING_MODAL"}

    def _status(self, context, text: str) -> None:
        props = scene_settings.get(context.scene)
        context.workspace.status_text_set(f"Click-Gaussian [{props.level}]  {text}")

    def modal(self, context, event):
        props = scene_settings.get(context.scene)
        if event.type in {"ESC", "RIGHTMOUSE"} and event.value == "PRESS":
            context.workspace.status_text_set(None)
            return {"FINISHED"}
        if event.type == "F" and event.value == "PRESS" and not (event.ctrl or event.alt or event.shift):
            props.level = LEVELS[(LEVELS.index(props.level) + 1) % len(LEVELS)]
            self._status(context, HELP)
            return {"RUNNING_MODAL"}
        if event.type != "LEFTMOUSE" or event.value != "PRESS" or event.alt:
            return {"PASS_THROUGH"}
        region, rv3d = view_under_mouse(context, event)
        obj = bpy.data.objects.get(self._obj_name)
        if region is None or rv3d is None:
            return {"PASS_THROUGH"}
        if obj is None:
            context.workspace.status_text_set(None)
            self.report({"WARNING"}, "The clicked object is gone")
            return {"CANCELLED"}
        mode = "add" if event.shift else "remove" if event.ctrl else "replace"
        try:
            view = view_of(obj, region, rv3d)
        except Exception as exc:  # noqa: BLE001 - CameraError and friends: a message, not a traceback
            self.report({"ERROR"}, str(exc))
            return {"RUNNING_MODAL"}
        u, v = viewport.region_to_pixel(event.mouse_x - region.x, event.mouse_y - region.y, region.height)
        out = click_at(context, obj, view, u, v, mode)
        if out.ok:
            bpy.ops.ed.undo_push(message=f"Click-Gaussian {mode}: {out.group or ''}")
        self.report({"INFO"} if out.ok else {"WARNING"}, out.message)
        self._status(context, out.message)
        for area in context.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
        return {"RUNNING_MODAL"}


ACTIONS = [("SELECT", "Select", "Add the group to the selection"),
           ("DESELECT", "Deselect", "Remove the group from the selection"),
           ("HIDE", "Hide", "Hide the group's Gaussians"),
           ("DELETE", "Delete", "Delete the group's Gaussians"),
           ("SEPARATE", "Separate", "Move the group's Gaussians into a new object (features travel along)"),
           ("DUPLICATE", "Duplicate", "Duplicate the group's Gaussians (selected, ready to move)")]


def group_action(context, obj, group: str, action: str) -> int:
    """Apply a selection-list action to vertex group ``group`` of ``obj`` with Blender's own
    Edit-Mode operators (C speed at any size). Leaves ``obj`` in Edit Mode except after DELETE
    and SEPARATE (Object Mode). Returns the number of vertices now in the object."""
    vg = obj.vertex_groups.get(group)
    if vg is None:
        raise selection.ClickError(f"{obj.name!r} has no selection {group!r}")
    obj.vertex_groups.active_index = vg.index
    if obj.mode != "EDIT":
        bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.select_mode(type="VERT")
    if action in ("HIDE", "DELETE", "SEPARATE", "DUPLICATE"):
        bpy.ops.mesh.select_all(action="DESELECT")
    if action == "DESELECT":
        bpy.ops.object.vertex_group_deselect()
    else:
        bpy.ops.object.vertex_group_select()
    if action == "HIDE":
        bpy.ops.mesh.hide(unselected=False)
    elif action == "DELETE":
        bpy.ops.mesh.delete(type="VERT")
    elif action == "SEPARATE":
        bpy.ops.mesh.separate(type="SELECTED")
    elif action == "DUPLICATE":
        bpy.ops.mesh.duplicate()
    if action in ("DELETE", "SEPARATE"):
        bpy.ops.object.mode_set(mode="OBJECT")
        selection.invalidate(obj.data)
    return len(obj.data.vertices)


class CLICKGS_OT_group_action(bpy.types.Operator):
    """Act on a click selection (vertex group)"""

    bl_idname = "clickgs.group_action"
    bl_label = "Selection Action"
    bl_options = {"REGISTER", "UNDO"}

    group: StringProperty(name="Group")
    action: EnumProperty(name="Action", items=ACTIONS)

    @classmethod
    def poll(cls, context):
        return io_export.is_splat_object(context.active_object)

    def execute(self, context):
        obj = context.active_object
        try:
            group_action(context, obj, self.group, self.action)
        except selection.ClickError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{self.action.capitalize()}: {self.group}")
        return {"FINISHED"}


_CLASSES = (CLICKGS_OT_click_select, CLICKGS_OT_group_action)

register, unregister = bpy.utils.register_classes_factory(_CLASSES)
