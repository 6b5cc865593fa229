"""Training from Blender: plain functions (request from the panel settings, results onto the
mesh) and the operators (Train with a progress bar and ETA, Cancel) that adapt them.

The engine trains on the object's Gaussians as they are now (uploaded from the mesh, edits
applied, in the file's axes), so feature rows are the mesh's vertices; the features are written
onto the mesh (:mod:`.feature_store`) only when training succeeds, and only if the mesh still has
as many vertices. A failure (engine crash, cancel) leaves the mesh untouched.
"""

from __future__ import annotations

import os

import bpy

from . import engine_link, feature_store, io_export, preferences, scene_settings, selection, vertex_order
from .engine.core.errors import EngineError, TrainingError
from .engine.core.schedule import GFL_START_LATEST, gfl_interval_for, gfl_start_for, preset_fields


def settings_dict(props) -> dict:
    """TrainSettings fields from the panel: iterations, pixels per iteration, and GFL from the
    panel's fraction of the run but no later than the product's latest start (engine.core.schedule);
    with *Paper Constants* on, the paper's L_neg weight and GFL start (2/3 of the run) instead."""
    it = int(props.iterations)
    out = {"iterations": it, "pixels_per_iter": int(props.pixels_per_iter)}
    if props.paper_constants:
        return {**out, **preset_fields("paper", it)}
    return {**out, "gfl_start": gfl_start_for(it, float(props.gfl_start_fraction), GFL_START_LATEST),
            "gfl_interval": gfl_interval_for(it)}


def training_request(context, obj, props=None, settings: dict | None = None) -> engine_link.TrainRequest:
    """A :class:`.engine_link.TrainRequest` for ``obj`` from the panel settings (``props``:
    ``scene.clickgs``). Raises EngineError with a user message for bad input."""
    props = props or scene_settings.get(context.scene)
    if not io_export.is_splat_object(obj):
        raise EngineError("select a Gaussian Splatting object (File > Import > 3D Gaussian Splatting) to train")
    scene = io_export.object_to_scene(obj, io_export.ExportSettings(apply_transform=False))
    req = engine_link.TrainRequest(object_name=obj.name, scene=scene,
                                   settings=dict(settings) if settings is not None else settings_dict(props))
    if props.training_input == "CAMERAS":
        path = bpy.path.abspath(props.cameras_path) if props.cameras_path else ""
        if not path or not os.path.exists(path):
            raise EngineError(f"the capture cameras file {path or '(none)'} does not exist: set it in the panel "
                              "or train on views rendered from the splats")
        req.cameras_path = path
        req.images_dir = bpy.path.abspath(props.images_dir) if props.images_dir else None
    else:
        req.orbit = (int(props.orbit_views), int(props.orbit_size), int(props.orbit_size))
    req.mask_kind = props.mask_source
    if req.mask_kind == "sam":
        req.mask_checkpoint = preferences.sam_checkpoint(context)
        if not req.mask_checkpoint:
            raise EngineError("mask source SAM needs a checkpoint: set it in the add-on preferences")
    elif req.mask_kind == "folder":
        req.mask_folder = bpy.path.abspath(props.mask_folder) if props.mask_folder else ""
        if not req.mask_folder or not os.path.isdir(req.mask_folder):
            raise EngineError(f"the mask folder {req.mask_folder or '(none)'} does not exist")
    return req


def store_result(job: engine_link.TrainJob) -> None:
    """``on_done`` of a training job (main thread): write the features onto the mesh."""
    if job.state != "done":
        return
    obj = bpy.data.objects.get(job.req.object_name)
    if obj is None or obj.type != "MESH":
        raise TrainingError(f"the object {job.req.object_name!r} is gone; its training result was dropped")
    with selection.object_mode(obj):
        feature_store.store_features(obj.data, job.result, extra_meta={"seconds": job.summary.get("seconds")})
        # each cluster's Gaussians next to each other: the click tool's per-vertex writes then
        # walk memory in order instead of missing the cache at each member (see vertex_order)
        why = vertex_order.order_by_clusters(obj)
    if why:
        job.warnings.append(f"{obj.name}: vertices left in their order ({why}); clicks on large scenes are slower")
    selection.invalidate(obj.data)
    selection.prepare(obj)


def store_provisional(job: engine_link.TrainJob) -> None:
    """``on_provisional`` of a training job (main thread): write an intermediate result onto the
    mesh at once so clicks work during training; its metadata says ``provisional`` (the panel shows
    it). The vertices keep their order: later results arrive in the order the engine was given."""
    obj = bpy.data.objects.get(job.req.object_name)
    if obj is None or obj.type != "MESH" or job.provisional is None:
        return
    run = (job.provisional.settings or {}).get("run", {})
    with selection.object_mode(obj):
        feature_store.store_features(obj.data, job.provisional, extra_meta={
            "provisional": True, "iteration": run.get("iteration"),
            "iterations": (job.provisional.settings or {}).get("iterations")})
    selection.invalidate(obj.data)
    selection.prepare(obj)


def start_training(context, obj, props=None, settings: dict | None = None) -> engine_link.TrainJob:
    """Validate, build the request and start the job (engine must be ready)."""
    req = training_request(context, obj, props, settings)
    return engine_link.LINK.train(req, on_done=store_result, on_provisional=store_provisional)


class CLICKGS_OT_train(bpy.types.Operator):
    """Train Click-Gaussian features for the active splat object in the engine (the UI stays
    responsive; progress, ETA and Cancel in the panel)"""

    bl_idname = "clickgs.train"
    bl_label = "Train"

    _timer = None

    @classmethod
    def poll(cls, context):
        return io_export.is_splat_object(context.active_object)

    def execute(self, context):
        try:
            start_training(context, context.active_object)
        except EngineError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        engine_link.ensure_timer()  # keeps the panel's progress moving even if this modal ends early
        wm = context.window_manager
        wm.progress_begin(0, 1000)
        self._timer = wm.event_timer_add(engine_link.POLL_S, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        link = engine_link.LINK
        link.poll()
        job = link.job
        wm = context.window_manager
        for area in context.screen.areas if context.screen else ():
            if area.type == "VIEW_3D":
                area.tag_redraw()
        if job is None:
            return self._end(context, {"CANCELLED"})
        wm.progress_update(int(job.fraction * 1000))
        if job.state == "running":
            return {"PASS_THROUGH"}
        props = scene_settings.get(context.scene)
        props.message = job.status_text()
        for w in job.warnings[:5]:  # e.g. views where the mask source found no segments
            self.report({"WARNING"}, w)
        if job.state == "done":
            self.report({"INFO"}, props.message)
            return self._end(context, {"FINISHED"})
        self.report({"ERROR"} if job.state == "failed" else {"WARNING"}, props.message)
        return self._end(context, {"CANCELLED"})

    def _end(self, context, result):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        return result


class CLICKGS_OT_train_cancel(bpy.types.Operator):
    """Cancel the running training (the mesh keeps its previous features, if any)"""

    bl_idname = "clickgs.train_cancel"
    bl_label = "Cancel Training"

    def execute(self, context):
        job = engine_link.LINK.job
        if job is None or job.state != "running":
            self.report({"WARNING"}, "No training is running")
            return {"CANCELLED"}
        job.cancel()
        self.report({"INFO"}, "Cancelling training…")
        return {"FINISHED"}


_CLASSES = (CLICKGS_OT_train, CLICKGS_OT_train_cancel)

register, unregister = bpy.utils.register_classes_factory(_CLASSES)
