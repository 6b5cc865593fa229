"""Blender's application handlers that keep the click cache (:mod:`.selection`) true to the meshes:
a geometry update of a mesh marks its cached click data stale (verified before the next click),
and opening another .blend forgets every entry (their mesh pointers are gone). Registered
persistent, so they survive opening files."""

from __future__ import annotations

from typing import Any

import bpy

from . import selection


def _on_depsgraph_update(scene: Any, depsgraph: Any) -> None:
    if not selection.has_entries():
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
        selection.mark_stale(ptr)


def _on_load(*_args: Any) -> None:
    selection.invalidate()  # another .blend: every cached mesh pointer is gone


def _pairs() -> tuple:
    return ((bpy.app.handlers.depsgraph_update_post, _on_depsgraph_update), (bpy.app.handlers.load_post, _on_load))


def register() -> None:
    for handlers, fn in _pairs():
        bpy.app.handlers.persistent(fn)  # the handlers must survive opening another .blend
        if fn not in handlers:
            handlers.append(fn)


def unregister() -> None:
    for handlers, fn in _pairs():
        if fn in handlers:
            handlers.remove(fn)
    selection.invalidate()
