"""The "Click-Gaussian" N-panel in the 3D viewport sidebar (draw only): engine, training,
click tool, the selections made so far, export."""

from __future__ import annotations

import bpy

from . import engine_link, feature_store, io_export, ops_adopt, scene_settings, selection


class CLICKGS_UL_groups(bpy.types.UIList):
    """The click selections (vertex groups named CG coarse/fine N) of the object."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        layout.label(text=item.name, icon="GROUP_VERTEX")

    def filter_items(self, context, data, propname):
        groups = getattr(data, propname)
        flags = [self.bitflag_filter_item if selection.is_click_group(g.name) else 0 for g in groups]
        return flags, []


class _Base:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Click-Gaussian"


class CLICKGS_PT_main(_Base, bpy.types.Panel):
    bl_label = "Click-Gaussian"
    bl_idname = "CLICKGS_PT_main"

    def draw(self, context):
        layout = self.layout
        link = engine_link.LINK
        props = scene_settings.get(context.scene)
        obj = context.active_object
        splat = io_export.is_splat_object(obj)

        box = layout.box()
        row = box.row()
        icon = {"ready": "CHECKMARK", "starting": "SORTTIME", "failed": "ERROR"}.get(link.state, "RADIOBUT_OFF")
        row.label(text=link.status_text(), icon=icon)
        if link.state in ("ready", "starting"):
            box.operator("clickgs.engine_stop", icon="CANCEL")
        else:
            box.operator("clickgs.engine_start", icon="PLAY")

        if not splat:
            layout.label(text="Import a 3DGS .ply (File > Import) and select it", icon="INFO")
            layout.operator("import_scene.gaussian_splatting", icon="IMPORT")
            ops_adopt.draw_offer(layout, obj)  # a mesh from Blender's own PLY importer
            return

        box = layout.box()
        box.label(text="Training", icon="PHYSICS")
        box.prop(props, "training_input", text="")
        if props.training_input == "CAMERAS":
            box.prop(props, "cameras_path")
            box.prop(props, "images_dir")
        else:
            row = box.row(align=True)
            row.prop(props, "orbit_views")
            row.prop(props, "orbit_size")
        box.prop(props, "mask_source")
        if props.mask_source == "folder":
            box.prop(props, "mask_folder")
        row = box.row(align=True)
        row.prop(props, "iterations")
        row.prop(props, "pixels_per_iter", text="Pixels")
        row = box.row(align=True)
        row.prop(props, "paper_constants")
        sub = row.row(align=True)
        sub.enabled = not props.paper_constants  # the paper's constants fix GFL's start at 2/3
        sub.prop(props, "gfl_start_fraction")
        job = link.job
        if job is not None and job.state == "running":
            box.progress(factor=job.fraction, type="BAR", text=job.status_text())
            box.operator("clickgs.train_cancel", icon="CANCEL")
        else:
            col = box.column()
            col.enabled = link.ready
            col.operator("clickgs.train", icon="PLAY")
            if job is not None and job.state != "running":
                box.label(text=job.status_text(), icon="CHECKMARK" if job.state == "done" else "ERROR")
        meta = feature_store.read_meta(obj.data) if feature_store.has_features(obj.data) else {}
        if meta.get("provisional"):
            box.label(text=f"Provisional: {meta.get('coarse_clusters', 0)} objects, {meta.get('fine_clusters', 0)} parts "
                           f"(iteration {meta.get('iteration', '?')} of {meta.get('iterations', '?')})", icon="TIME")
        elif meta:
            box.label(text=f"Features: {meta.get('coarse_clusters', 0)} objects, {meta.get('fine_clusters', 0)} parts "
                           f"({meta.get('trained_at', '')})", icon="CHECKMARK")
        else:
            box.label(text="Not trained yet", icon="INFO")

        box = layout.box()
        box.label(text="Select", icon="RESTRICT_SELECT_OFF")
        box.row().prop(props, "level", expand=True)
        box.prop(props, "min_similarity")
        col = box.column()
        col.enabled = bool(meta)
        col.operator("clickgs.click_select", icon="EYEDROPPER")
        if props.message:
            box.label(text=props.message)

        box = layout.box()
        box.label(text="Selections", icon="GROUP_VERTEX")
        box.template_list("CLICKGS_UL_groups", "", obj, "vertex_groups", props, "group_index", rows=3)
        groups = obj.vertex_groups
        if 0 <= props.group_index < len(groups) and selection.is_click_group(groups[props.group_index].name):
            name = groups[props.group_index].name
            grid = box.grid_flow(columns=3, align=True)
            for action, label, _ in (("SELECT", "Select", 0), ("DESELECT", "Deselect", 0), ("HIDE", "Hide", 0),
                                     ("DELETE", "Delete", 0), ("SEPARATE", "Separate", 0),
                                     ("DUPLICATE", "Duplicate", 0)):
                op = grid.operator("clickgs.group_action", text=label)
                op.group, op.action = name, action

        layout.operator("export_scene.gaussian_splatting", icon="EXPORT", text="Export .ply")


_CLASSES = (CLICKGS_UL_groups, CLICKGS_PT_main)

register, unregister = bpy.utils.register_classes_factory(_CLASSES)
