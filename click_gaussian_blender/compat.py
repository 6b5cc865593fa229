"""Where Blender's Python API differs between the versions the extension supports (4.2 LTS and
newer): one small function per difference, named for what it does. The rest of the add-on calls
these and never tests ``bpy.app.version`` itself.

Differences handled here:

- Geometry Nodes modifier inputs: up to 5.0 they are ID properties of the modifier
  (``mod["Socket_2"]``); from 5.1 on, ``mod[...]`` is refused ("this type doesn't support
  IDProperties") and each input is a struct with a ``value`` in ``mod.properties.inputs``.
- Sort Elements (Geometry Nodes) keeps vertex-group weights with their vertices from 5.0 on; on
  4.x it scrambles them.
"""

from __future__ import annotations

from typing import Any

import bpy


def _input_struct(mod: bpy.types.Modifier, identifier: str):
    """The 5.1+ input struct of a Geometry Nodes modifier, or None on versions without it."""
    props = getattr(mod, "properties", None)
    inputs = getattr(props, "inputs", None) if props is not None else None
    if inputs is None:
        return None
    try:
        return getattr(inputs, identifier)
    except AttributeError:
        raise LookupError(f"modifier {mod.name!r} has no input {identifier!r}") from None


def modifier_input_get(mod: bpy.types.Modifier, identifier: str) -> Any:
    """The value of a Geometry Nodes modifier input, by socket identifier (``"Socket_2"``)."""
    struct = _input_struct(mod, identifier)
    if struct is not None:
        return struct.value
    return mod[identifier]


def modifier_input_set(mod: bpy.types.Modifier, identifier: str, value: Any) -> None:
    """Set a Geometry Nodes modifier input (a number, a material, ...) by socket identifier."""
    struct = _input_struct(mod, identifier)
    if struct is not None:
        struct.value = value
    else:
        mod[identifier] = value


def draw_modifier_input(layout: bpy.types.UILayout, mod: bpy.types.Modifier, identifier: str,
                        text: str) -> None:
    """Draw a Geometry Nodes modifier input as an editable field."""
    struct = _input_struct(mod, identifier)
    if struct is not None:
        layout.prop(struct, "value", text=text)
    else:
        layout.prop(mod, f'["{identifier}"]', text=text)


def sort_keeps_vertex_groups() -> bool:
    """Whether Geometry Nodes' Sort Elements carries vertex-group weights with their vertices
    (measured: bpy 4.2.0 scrambles them, 5.0.1 and 5.2.3 keep them)."""
    return bpy.app.version >= (5, 0, 0)
