"""Click-Gaussian for Blender: import, display, edit and export 3D Gaussian Splatting scenes,
and select objects in them with one click (Blender 4.2+ extension).

This file only registers: each feature lives in its own module with ``register()`` /
``unregister()``; add a module to ``_MODULES`` to include it. The engine package it launches is
bundled as ``click_gaussian_blender.engine`` (a symlink to ``../engine`` in the repository, a real
copy in the built extension).
"""

from __future__ import annotations

import importlib

_MODULES = [
    "panel_object",
    "display",
    "ops_io",
    "scene_settings", "preferences", "engine_link", "handlers", "ops_engine", "ops_train", "ops_click", "panel",
    "ops_adopt",
]

_loaded: list = []


def _modules() -> list:
    mods = []
    for name in _MODULES:
        mod = importlib.import_module(f".{name}", __package__)
        mods.append(importlib.reload(mod) if mod in _loaded else mod)
    return mods


def register() -> None:
    global _loaded
    _loaded = _modules()
    for mod in _loaded:
        mod.register()


def unregister() -> None:
    for mod in reversed(_loaded):
        mod.unregister()
