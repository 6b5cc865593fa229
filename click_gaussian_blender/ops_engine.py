"""Operators: start / stop the engine (adapters over :data:`.engine_link.LINK`)."""

from __future__ import annotations

import bpy

from . import engine_link, preferences
from .engine.core.errors import EngineError


def start_engine(config: engine_link.EngineConfig | None = None) -> None:
    """Start (or connect to) the engine with the preferences' settings; raises EngineError
    with a user message (e.g. no interpreter configured)."""
    engine_link.LINK.start(config or preferences.engine_config())


class CLICKGS_OT_engine_start(bpy.types.Operator):
    """Start the Click-Gaussian engine (or connect to the remote one set in the preferences)"""

    bl_idname = "clickgs.engine_start"
    bl_label = "Start Engine"

    def execute(self, context):
        try:
            start_engine(preferences.engine_config(context))
        except EngineError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        engine_link.ensure_timer()
        self.report({"INFO"}, "Starting the engine…")
        return {"FINISHED"}


class CLICKGS_OT_engine_stop(bpy.types.Operator):
    """Stop the Click-Gaussian engine (trained features stay on the meshes; clicking still works)"""

    bl_idname = "clickgs.engine_stop"
    bl_label = "Stop Engine"

    def execute(self, context):
        engine_link.LINK.stop()
        self.report({"INFO"}, "Engine stopped")
        return {"FINISHED"}


_CLASSES = (CLICKGS_OT_engine_start, CLICKGS_OT_engine_stop)

register, unregister = bpy.utils.register_classes_factory(_CLASSES)
