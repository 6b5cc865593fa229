"""Add-on preferences: the engine's Python interpreter (with a Check button: torch, gsplat,
CUDA or CPU), the SAM checkpoint, and where the engine runs (launched locally, or a remote
engine on a GPU machine reached through an SSH tunnel: host, port, token)."""

from __future__ import annotations

import concurrent.futures

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from .engine.link.launcher import check_interpreter
from .engine_link import EngineConfig

ADDON = __package__
_check: dict = {"future": None, "text": ""}
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickgs-check")


class ClickGaussianPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON

    engine_python: StringProperty(
        name="Engine Python", subtype="FILE_PATH",
        description="Python interpreter with torch (and gsplat for CUDA) that runs the engine, "
                    "e.g. /path/to/venv/bin/python")
    engine_mode: EnumProperty(
        name="Engine", default="local",
        items=[("local", "Launch Locally", "Start the engine on this computer with the interpreter above"),
               ("remote", "Remote", "Connect to an engine started elsewhere (e.g. a GPU box through an SSH "
                                    "tunnel: ssh -L PORT:127.0.0.1:PORT host, then python -m engine serve "
                                    "--port PORT on it)")])
    host: StringProperty(name="Host", default="127.0.0.1")
    port: IntProperty(name="Port", default=0, min=0, max=65535)
    token: StringProperty(name="Token", subtype="PASSWORD", description="The remote engine's access token")
    device: EnumProperty(name="Device", default="auto",
                         items=[("auto", "Auto", "CUDA when present, else CPU"), ("cpu", "CPU", ""),
                                ("cuda", "CUDA", "")])
    sam_checkpoint: StringProperty(name="SAM Checkpoint", subtype="FILE_PATH",
                                   description="segment-anything checkpoint (.pth, vit_b/l/h) on the engine's disk")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "engine_mode", expand=True)
        if self.engine_mode == "local":
            row = layout.row(align=True)
            row.prop(self, "engine_python")
            row.operator(CLICKGS_OT_check_engine.bl_idname, text="Check", icon="CHECKMARK")
            if _check["text"]:
                layout.label(text=_check["text"])
            layout.prop(self, "device")
        else:
            col = layout.column(align=True)
            col.prop(self, "host")
            col.prop(self, "port")
            col.prop(self, "token")
        layout.prop(self, "sam_checkpoint")


def prefs(context=None):
    """The add-on's preferences, or None when the add-on is registered without being enabled
    (scripts and tests register the modules directly)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON)
    return addon.preferences if addon is not None else None


def engine_config(context=None) -> EngineConfig:
    p = prefs(context)
    if p is None:
        return EngineConfig()
    return EngineConfig(python=bpy.path.abspath(p.engine_python) if p.engine_python else "", mode=p.engine_mode,
                        host=p.host, port=p.port, token=p.token, device=p.device)


def sam_checkpoint(context=None) -> str:
    p = prefs(context)
    return bpy.path.abspath(p.sam_checkpoint) if p is not None and p.sam_checkpoint else ""


def describe_check(info: dict) -> str:
    """One line from :func:`engine.link.launcher.check_interpreter`'s answer."""
    dev = f"CUDA ({info.get('gpu')})" if info.get("cuda") else "CPU only"
    gs = f"gsplat {info['gsplat']}" if info.get("gsplat") else "no gsplat"
    return f"OK: Python {info.get('python')}, torch {info.get('torch')}, {gs}, {dev}"


def _poll_check():
    fut = _check["future"]
    if fut is None or not fut.done():
        return 0.3
    _check["future"] = None
    try:
        _check["text"] = describe_check(fut.result())
    except Exception as exc:  # noqa: BLE001 - EngineStartError and friends: shown as text
        _check["text"] = f"Not usable: {exc}"
    for win in bpy.context.window_manager.windows:
        for area in win.screen.areas:
            area.tag_redraw()
    return None


class CLICKGS_OT_check_engine(bpy.types.Operator):
    """Check that the engine interpreter runs the engine: torch, gsplat, CUDA or CPU"""

    bl_idname = "clickgs.check_engine"
    bl_label = "Check Engine Interpreter"

    def execute(self, context):
        cfg = engine_config(context)
        if not cfg.python:
            self.report({"ERROR"}, "No engine Python interpreter is configured")
            return {"CANCELLED"}
        _check["text"] = "Checking…"
        _check["future"] = _pool.submit(check_interpreter, cfg.python)
        bpy.app.timers.register(_poll_check, first_interval=0.3)
        return {"FINISHED"}


_CLASSES = (CLICKGS_OT_check_engine, ClickGaussianPreferences)

register, unregister = bpy.utils.register_classes_factory(_CLASSES)
