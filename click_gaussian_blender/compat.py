"""Where Blender's Python API differs between the versions the extension supports (4.2 LTS and
newer): one small function per difference, named for what it does. The rest of the add-on calls
these and never tests ``bpy.app.version`` itself.

Differences handled here:

- Geometry Nodes modifier inputs: up to 5.0 they are ID properties of the modifier
  (``mod["Socket_2"]``); from 5.1 on, ``mod[...]`` is refused ("this type doesn't support
  IDProperties") and each input is a struct with a ``value`` in ``mod.properties.inputs``.
- Sort Elements (Geometry Nodes) keeps vertex-group weights with their vertices from 5.0 on; on
  4.x it scrambles them.
- A new material has a shader node tree from 5.0 on (``Material.use_nodes`` is deprecated); on
  4.x it has none until ``use_nodes`` is set.
- The Attribute shader node's scalar output is "Fac" on 4.x and "Factor" from 5.0 on.
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


def material_node_tree(mat: bpy.types.Material) -> bpy.types.NodeTree:
    """The material's shader node tree, made first where the version makes materials without one."""
    if mat.node_tree is None:
        mat.use_nodes = True
    return mat.node_tree


def attribute_factor_output(node: bpy.types.Node) -> bpy.types.NodeSocket:
    """The scalar output of an Attribute shader node (``ShaderNodeAttribute``)."""
    out = node.outputs.get("Factor")
    return out if out is not None else node.outputs["Fac"]


def sort_keeps_vertex_groups() -> bool:
    """Whether Geometry Nodes' Sort Elements carries vertex-group weights with their vertices
    (measured: bpy 4.2.0 scrambles them, 5.0.1 and 5.2.3 keep them)."""
    return bpy.app.version >= (5, 0, 0)
