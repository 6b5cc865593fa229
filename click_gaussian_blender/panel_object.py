"""Object properties panel of a Gaussian Splatting object: what it is (count, SH degree, source)
and its display settings (point size, radius cap, display ratio: the splat modifier's inputs)."""

from __future__ import annotations

import bpy

from . import attributes as A
from . import display
from .compat import draw_modifier_input


class CLICKGS_PT_splat_object(bpy.types.Panel):
    bl_label = "Gaussian Splatting"
    bl_idname = "CLICKGS_PT_splat_object"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "object"

    @classmethod
    def poll(cls, context):
        obj = context.object
        return obj is not None and obj.type == "MESH" and A.PROP_AXIS in obj

    def draw(self, context):
        obj = context.object
        layout = self.layout
        layout.use_property_split = True
        col = layout.column(align=True)
        col.label(text=f"{len(obj.data.vertices):,} Gaussians, SH degree {obj.get(A.PROP_SH_DEGREE, 0)}")
        src = obj.get(A.PROP_SOURCE, "")
        if src:
            col.label(text=src, icon="FILE")
        mod = display.get_modifier(obj)
        if mod is None or mod.node_group is None:
            layout.label(text="No splat display modifier", icon="ERROR")
            return
        for item in mod.node_group.interface.items_tree:
            if getattr(item, "in_out", None) == "INPUT" and item.name in ("Point Size", "Max Radius", "Display Ratio"):
                draw_modifier_input(layout, mod, item.identifier, item.name)
        row = layout.row(align=True)
        row.operator("object.gaussian_highlight_selected", text="Highlight Selected")
        row.operator("object.gaussian_highlight_selected", text="Clear").clear = True


def register() -> None:
    bpy.utils.register_class(CLICKGS_PT_splat_object)


def unregister() -> None:
    bpy.utils.unregister_class(CLICKGS_PT_splat_object)
