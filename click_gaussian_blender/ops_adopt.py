"""Object > Convert to Gaussian Splats: adopt a mesh that Blender's own PLY importer made from a
3DGS file (:mod:`.io_adopt`). Also offered in the Object properties and (through
:func:`draw_offer`) the Click-Gaussian N-panel when the active object looks like such a mesh."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, FloatProperty

from . import io_adopt, io_export, io_import
from .engine.core.errors import EngineError
from .ops_io import axis_items, draw_import_settings, import_settings


def _candidate(obj: bpy.types.Object | None) -> bool:
    """Whether to offer the conversion in a panel: a mesh with the 3DGS attributes, not ours."""
    return (obj is not None and obj.type == "MESH" and not io_export.is_splat_object(obj)
            and io_adopt.looks_like_gaussians(obj.data))


class CLICKGS_OT_adopt(bpy.types.Operator):
    """Make a mesh imported with Blender's own PLY importer from a 3D Gaussian Splatting .ply a
    Gaussian Splatting object (splat display, training, click selection, export)"""

    bl_idname = "object.gaussian_adopt"
    bl_label = "Convert to Gaussian Splats"
    bl_options = {"REGISTER", "UNDO"}

    axis_up: EnumProperty(
        name="Up", default=io_import.AUTO,
        items=axis_items("Detect the scene's up axis from its shape, as the 3DGS importer does"),
        description="The mesh's axis that becomes up (+Z) in the object's space")
    axis_forward: EnumProperty(
        name="Forward", default=io_import.AUTO,
        items=axis_items("The forward axis that goes with the up axis"),
        description="The mesh's axis that becomes forward (+Y) in the object's space")
    display_ratio: FloatProperty(
        name="Display Ratio", default=1.0, min=0.0, max=1.0, subtype="FACTOR",
        description="Fraction of Gaussians drawn in the viewport (display only; all are kept)")

    @classmethod
    def poll(cls, context):
        reason = io_adopt.refusal(context.active_object)
        if reason is not None:
            cls.poll_message_set(reason)
        return reason is None

    def execute(self, context):
        obj = context.active_object
        try:
            report = io_adopt.adopt_object(obj, import_settings(self))
        except EngineError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if report.dropped:
            self.report({"WARNING"}, f"Not kept (not per-Gaussian numbers): {', '.join(report.dropped)}")
        self.report({"INFO"}, report.describe(obj.name))
        return {"FINISHED"}

    def draw(self, context):
        draw_import_settings(self)


class CLICKGS_PT_adopt(bpy.types.Panel):
    """Object properties: the conversion, for a mesh from Blender's PLY importer."""

    bl_label = "Gaussian Splatting"
    bl_idname = "CLICKGS_PT_adopt"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "object"

    @classmethod
    def poll(cls, context):
        return _candidate(context.object)

    def draw(self, context):
        draw_offer(self.layout, context.object)


def draw_offer(layout: bpy.types.UILayout, obj: bpy.types.Object | None) -> None:
    """Draw the conversion button when ``obj`` looks like a mesh from Blender's PLY importer."""
    if _candidate(obj):
        layout.label(text="This mesh holds a 3DGS .ply's properties", icon="INFO")
        layout.operator(CLICKGS_OT_adopt.bl_idname, icon="POINTCLOUD_DATA")


def _menu_object(self, context):
    self.layout.separator()
    self.layout.operator(CLICKGS_OT_adopt.bl_idname, icon="POINTCLOUD_DATA")


_CLASSES = (CLICKGS_OT_adopt, CLICKGS_PT_adopt)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.VIEW3D_MT_object.append(_menu_object)


def unregister() -> None:
    bpy.types.VIEW3D_MT_object.remove(_menu_object)
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
