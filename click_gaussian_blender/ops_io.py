"""File > Import / Export "3D Gaussian Splatting" (.ply, .spz, .sog, .compressed.ply, .splat)
and drag-and-drop of those files.

Operators are adapters: properties -> settings -> one call (:func:`.io_import.import_ply`,
:func:`.io_export.export_ply`) -> report. Engine errors (messages written for users) become an
ERROR report and CANCELLED; warnings are reported after the operation.
"""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, FloatProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import io_export, io_formats, io_import
from .engine.core.errors import EngineError


def axis_items(auto_description: str) -> list[tuple[str, str, str]]:
    """Items of an Up / Forward axis property: Auto (described) and the six axes."""
    return [(io_import.AUTO, "Auto", auto_description)] + [
        (a, a, f"The file's {a} axis") for a in io_import.AXES]


def import_settings(op: bpy.types.Operator) -> io_import.ImportSettings:
    """The settings of an operator with ``axis_up``, ``axis_forward`` and ``display_ratio``
    properties (the importer, and Convert to Gaussian Splats in :mod:`.ops_adopt`)."""
    return io_import.ImportSettings(axis_up=op.axis_up, axis_forward=op.axis_forward, display_ratio=op.display_ratio)


def draw_import_settings(op: bpy.types.Operator) -> None:
    """Draw those three properties of ``op`` in its layout."""
    layout = op.layout
    layout.use_property_split = True
    layout.prop(op, "axis_forward")
    layout.prop(op, "axis_up")
    layout.prop(op, "display_ratio")


class CLICKGS_OT_import_ply(bpy.types.Operator, ImportHelper):
    """Import a 3D Gaussian Splatting scene (.ply, SuperSplat .compressed.ply, .splat, Niantic
    .spz, PlayCanvas .sog or its meta.json) as a mesh with one vertex per Gaussian"""

    bl_idname = "import_scene.gaussian_splatting"
    bl_label = "Import 3D Gaussian Splatting"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filename_ext = ".ply"
    filter_glob: StringProperty(default=io_formats.IMPORT_GLOB, options={"HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    axis_up: EnumProperty(
        name="Up", default=io_import.AUTO,
        items=axis_items("Detect the file's up axis from the scene's shape (the end with "
                                  "more and wider-spread Gaussians, ground or pedestal, is down)"),
        description="The file's axis that becomes Blender's up (+Z)")
    axis_forward: EnumProperty(
        name="Forward", default=io_import.AUTO,
        items=axis_items("The forward axis that goes with the up axis (Z for -Y up, "
                                  "Y for Z up, -Z for Y up)"),
        description="The file's axis that becomes Blender's forward (+Y); one parallel to Up is "
                    "replaced by the one that goes with it")
    display_ratio: FloatProperty(
        name="Display Ratio", default=1.0, min=0.0, max=1.0, subtype="FACTOR",
        description="Fraction of Gaussians drawn in the viewport (display only; all are kept)")

    def _paths(self) -> list[str]:
        if self.files and self.directory:
            return [os.path.join(self.directory, f.name) for f in self.files if f.name]
        return [self.filepath]

    def execute(self, context):
        settings = import_settings(self)
        done = 0
        for path in self._paths():
            try:
                obj, report = io_import.import_ply(context, path, settings)
            except EngineError as exc:
                self.report({"ERROR"}, str(exc))
                continue
            done += 1
            for w in report.warnings:
                self.report({"WARNING"}, w)
            self.report({"INFO"}, f"Imported {obj[io_import.A.PROP_COUNT]:,} Gaussians from "
                                  f"{os.path.basename(path)} ({report.describe_up()})")
        return {"FINISHED"} if done else {"CANCELLED"}

    def invoke(self, context, event):
        # Dropped files (FileHandler) arrive with directory + files set: import them directly.
        if self.directory and self.files:
            return self.execute(context)
        return ImportHelper.invoke(self, context, event)

    def draw(self, context):
        draw_import_settings(self)


class CLICKGS_OT_export_ply(bpy.types.Operator, ExportHelper):
    """Export the active Gaussian Splatting object (.ply, .spz, .sog, .compressed.ply, .splat)
    with every edit applied (moves, rotations, scales, duplicates, deletions; SH rotated), in the
    file's own axes"""

    bl_idname = "export_scene.gaussian_splatting"
    bl_label = "Export 3D Gaussian Splatting"
    bl_options = {"REGISTER", "PRESET"}

    filename_ext = ".ply"
    filter_glob: StringProperty(default="*.ply;*.spz;*.sog;*.splat", options={"HIDDEN"})
    check_extension = None  # the extension follows file_format (see check), not filename_ext
    file_format: EnumProperty(
        name="Format", default=io_formats.AUTO, items=io_formats.EXPORT_FORMAT_ITEMS,
        description="The file format; By Extension takes it from the file name")
    only_selected: BoolProperty(
        name="Only Selected", default=False,
        description="Export only the selected Gaussians (vertices)")
    split_groups: BoolProperty(
        name="Each Selection as a File", default=False,
        description="Write each selection (vertex group) as its own file, named after the group, "
                    "into a folder named as the file without its extension")
    segment_ids: BoolProperty(
        name="Segment IDs", default=False,
        description="Write per-Gaussian segment_coarse, segment_fine (cluster labels) and "
                    "segment_group (vertex group; ids named in the header) as .ply properties")
    apply_transform: BoolProperty(
        name="Apply Object Transform", default=True,
        description="Export in world space (the object's location, rotation and scale applied)")
    overwrite: BoolProperty(
        name="Overwrite Existing", default=False,
        description="Replace the file if it exists, even the scene's source file")

    @classmethod
    def poll(cls, context):
        return io_export.is_splat_object(context.active_object)

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = io_export.export_scene_path_default(context.active_object)
        return ExportHelper.invoke(self, context, event)

    def execute(self, context):
        obj = context.active_object
        settings = io_export.ExportSettings(
            apply_transform=self.apply_transform, overwrite=self.overwrite, file_format=self.file_format,
            only_selected=self.only_selected, split_groups=self.split_groups, segment_ids=self.segment_ids)
        try:
            rep = io_export.export_ply(obj, self.filepath, settings)
        except EngineError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for w in rep.warnings:
            self.report({"WARNING"}, w)
        if len(rep.files) == 1:
            where = os.path.basename(rep.files[0])
        else:
            where = f"{len(rep.files)} files in {os.path.dirname(rep.files[0])}"
        self.report({"INFO"}, f"Exported {rep.count:,} Gaussians to {where}")
        return {"FINISHED"}

    def check(self, context):
        """Keep the file name's extension that of the chosen format (Blender calls this as the
        file browser's settings change)."""
        if not os.path.basename(self.filepath):
            return False
        path, _ = io_formats.export_path(self.filepath, self.file_format)
        if path != self.filepath:
            self.filepath = path
            return True
        return False

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "file_format")
        layout.prop(self, "apply_transform")
        layout.prop(self, "only_selected")
        layout.prop(self, "split_groups")
        layout.prop(self, "segment_ids")
        layout.prop(self, "overwrite")


class CLICKGS_FH_ply(bpy.types.FileHandler):
    bl_idname = "CLICKGS_FH_ply"
    bl_label = "3D Gaussian Splatting"
    bl_import_operator = CLICKGS_OT_import_ply.bl_idname
    bl_export_operator = CLICKGS_OT_export_ply.bl_idname
    bl_file_extensions = io_formats.DROP_EXTENSIONS  # as the Import dialog (.ply first: the export extension)

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


def _menu_import(self, context):
    self.layout.operator(CLICKGS_OT_import_ply.bl_idname, text="3D Gaussian Splatting (.ply, .spz, .sog)")


def _menu_export(self, context):
    self.layout.operator(CLICKGS_OT_export_ply.bl_idname, text="3D Gaussian Splatting (.ply, .spz, .sog)")


_CLASSES = (CLICKGS_OT_import_ply, CLICKGS_OT_export_ply, CLICKGS_FH_ply)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(_menu_import)
    bpy.types.TOPBAR_MT_file_export.append(_menu_export)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_export.remove(_menu_export)
    bpy.types.TOPBAR_MT_file_import.remove(_menu_import)
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
