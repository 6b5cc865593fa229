"""How an imported Gaussian scene looks in Blender: coloured points sized from each Gaussian's
scale and faded by its opacity, in Solid and Material Preview shading and in Cycles renders.

A geometry-nodes modifier ("Gaussian Splats") turns the mesh vertices into points:

- radius = ``Point Size`` x the Gaussian's largest standard deviation (``exp(max(gs_scale))``),
  capped at ``Max Radius`` (set at import from the scene's extent so stray huge Gaussians do not
  hide the scene);
- ``Display Ratio`` (0-1) keeps a stable random subset of the points (by ``gs_index``), for
  responsive viewports on huge scenes — display only; editing and export see every Gaussian;
- Gaussians flagged in the ``gs_highlight`` boolean attribute (:func:`set_highlight`: the click
  selection, or the vertex selection through the "Highlight Selected" operator) are stored as
  ``gs_selected`` (1.0) for the material to highlight. (Geometry nodes cannot read Blender's
  internal ``.select_vert``; in Edit Mode Blender's own overlay marks selected vertices.)
- the "Gaussian Splat" material emits the ``gs_color`` attribute (SH DC colour), mixes it towards
  orange where ``gs_selected`` is set, and is transparent by ``1 - opacity`` (the colour alpha).

The modifier shows in Edit Mode too (on cage), so Blender's own vertex selection and
transform tools work on the Gaussians while they stay visible. Changing the settings is just
changing the modifier's inputs (also drawn in the Object properties panel).
"""

from __future__ import annotations

import bpy
import numpy as np

from . import attributes as A
from .compat import attribute_factor_output, material_node_tree, modifier_input_get, modifier_input_set
from .mesh_read import vertex_selection

NODE_GROUP = "Gaussian Splats"
MATERIAL = "Gaussian Splat"
MODIFIER = "Gaussian Splats"
SELECTED = "gs_selected"  # float copy on the displayed points, read by the material
HIGHLIGHT_ATTR = "gs_highlight"  # BOOLEAN POINT attribute on the mesh: Gaussians to highlight
HIGHLIGHT = (1.0, 0.35, 0.0, 1.0)  # Blender's selection orange, linear
HIGHLIGHT_TINT = 0.7  # how far highlighted splats are mixed towards HIGHLIGHT


def _socket(sockets, type_: str, name: str | None = None):
    """The socket of a type (and name), preferring enabled ones (nodes such as Mix have one socket
    per data type under the same name)."""
    for s in sockets:
        if s.type == type_ and (name is None or s.name == name) and getattr(s, "enabled", True):
            return s
    for s in sockets:
        if s.type == type_ and (name is None or s.name == name):
            return s
    raise LookupError(f"no {type_} socket {name!r}")


def _math(nodes, op: str, location: tuple[int, int]):
    n = nodes.new("ShaderNodeMath")
    n.operation = op
    n.location = location
    return n


def _shared(blocks, name: str, version: int, *new_args) -> tuple[bpy.types.ID, bool]:
    """The shared datablock ``name`` of ``blocks`` (``bpy.data.materials``, ...) and whether it is
    to be built: made when missing, rebuilt when an older version of the add-on built it
    (``gs_version``)."""
    block = blocks.get(name)
    if block is not None and block.get("gs_version") == version:
        return block, False
    if block is None:
        block = blocks.new(name, *new_args)
    block["gs_version"] = version
    return block, True


def splat_material() -> bpy.types.Material:
    """The shared material (created once per .blend)."""
    mat, build = _shared(bpy.data.materials, MATERIAL, 2)
    if not build:
        return mat
    nt = material_node_tree(mat)
    nt.nodes.clear()
    nodes, links = nt.nodes, nt.links
    col = nodes.new("ShaderNodeAttribute")
    col.attribute_type = "GEOMETRY"
    col.attribute_name = A.COLOR
    col.location = (-600, 100)
    sel = nodes.new("ShaderNodeAttribute")
    sel.attribute_type = "GEOMETRY"
    sel.attribute_name = SELECTED
    sel.location = (-600, -150)
    tint = _math(nodes, "MULTIPLY", (-450, -50))  # a strong tint that keeps the splats' detail
    links.new(attribute_factor_output(sel), tint.inputs[0])
    tint.inputs[1].default_value = HIGHLIGHT_TINT
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.location = (-350, 50)
    links.new(tint.outputs[0], _socket(mix.inputs, "VALUE", "Factor"))
    links.new(_socket(col.outputs, "RGBA", "Color"), _socket(mix.inputs, "RGBA", "A"))
    _socket(mix.inputs, "RGBA", "B").default_value = HIGHLIGHT
    emit = nodes.new("ShaderNodeEmission")
    emit.location = (-100, 50)
    links.new(_socket(mix.outputs, "RGBA"), emit.inputs["Color"])
    transp = nodes.new("ShaderNodeBsdfTransparent")
    transp.location = (-100, -100)
    # alpha (opacity), raised to 1 where selected so highlighted splats stand out
    alpha = _math(nodes, "MAXIMUM", (-350, -200))
    links.new(col.outputs["Alpha"], alpha.inputs[0])
    links.new(attribute_factor_output(sel), alpha.inputs[1])
    shader = nodes.new("ShaderNodeMixShader")
    shader.location = (150, 0)
    links.new(alpha.outputs[0], shader.inputs[0])
    links.new(transp.outputs[0], shader.inputs[1])
    links.new(emit.outputs[0], shader.inputs[2])
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (350, 0)
    links.new(shader.outputs[0], out.inputs["Surface"])
    if hasattr(mat, "surface_render_method"):
        mat.surface_render_method = "DITHERED"
    if hasattr(mat, "blend_method"):
        try:
            mat.blend_method = "HASHED"
        except (TypeError, AttributeError):
            pass
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    return mat


def splat_node_group() -> bpy.types.NodeTree:
    """The shared geometry-nodes group (created once per .blend)."""
    ng, build = _shared(bpy.data.node_groups, NODE_GROUP, 3, "GeometryNodeTree")
    if not build:
        return ng
    ng.nodes.clear()
    ng.interface.clear()
    iface = ng.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    size = iface.new_socket("Point Size", in_out="INPUT", socket_type="NodeSocketFloat")
    size.default_value, size.min_value, size.max_value = 1.0, 0.0, 100.0
    cap = iface.new_socket("Max Radius", in_out="INPUT", socket_type="NodeSocketFloat")
    cap.default_value, cap.min_value = 0.05, 0.0
    ratio = iface.new_socket("Display Ratio", in_out="INPUT", socket_type="NodeSocketFloat")
    ratio.default_value, ratio.min_value, ratio.max_value = 1.0, 0.0, 1.0
    ratio.subtype = "FACTOR"
    iface.new_socket("Material", in_out="INPUT", socket_type="NodeSocketMaterial")
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = ng.nodes, ng.links
    gin = nodes.new("NodeGroupInput")
    gin.location = (-1200, 0)
    gout = nodes.new("NodeGroupOutput")
    gout.location = (600, 0)

    # highlight (bool) -> gs_selected (float) on the vertices, before they become points
    selattr = nodes.new("GeometryNodeInputNamedAttribute")
    selattr.data_type = "BOOLEAN"
    selattr.location = (-1000, -300)
    selattr.inputs["Name"].default_value = HIGHLIGHT_ATTR
    store = nodes.new("GeometryNodeStoreNamedAttribute")
    store.data_type = "FLOAT"
    store.domain = "POINT"
    store.location = (-800, 0)
    store.inputs["Name"].default_value = SELECTED
    links.new(gin.outputs["Geometry"], store.inputs["Geometry"])
    links.new(_socket(selattr.outputs, "BOOLEAN", "Attribute"), _socket(store.inputs, "VALUE", "Value"))

    # display ratio: keep a stable random subset
    idx = nodes.new("GeometryNodeInputNamedAttribute")
    idx.data_type = "INT"
    idx.location = (-1000, -500)
    idx.inputs["Name"].default_value = A.INDEX
    rnd = nodes.new("FunctionNodeRandomValue")
    rnd.data_type = "BOOLEAN"
    rnd.location = (-800, -400)
    links.new(gin.outputs["Display Ratio"], _socket(rnd.inputs, "VALUE", "Probability"))
    links.new(_socket(idx.outputs, "INT", "Attribute"), _socket(rnd.inputs, "INT", "ID"))
    keep = nodes.new("FunctionNodeBooleanMath")
    keep.operation = "NOT"
    keep.location = (-600, -400)
    links.new(_socket(rnd.outputs, "BOOLEAN"), keep.inputs[0])
    delete = nodes.new("GeometryNodeDeleteGeometry")
    delete.domain = "POINT"
    delete.location = (-600, 0)
    links.new(store.outputs["Geometry"], delete.inputs["Geometry"])
    links.new(keep.outputs[0], delete.inputs["Selection"])

    # radius = min(size * exp(max(log scales)), cap)
    scl = nodes.new("GeometryNodeInputNamedAttribute")
    scl.data_type = "FLOAT_VECTOR"
    scl.location = (-1000, 300)
    scl.inputs["Name"].default_value = A.SCALE
    sep = nodes.new("ShaderNodeSeparateXYZ")
    sep.location = (-800, 300)
    links.new(_socket(scl.outputs, "VECTOR", "Attribute"), sep.inputs[0])
    mx1 = _math(nodes, "MAXIMUM", (-650, 350))
    links.new(sep.outputs[0], mx1.inputs[0])
    links.new(sep.outputs[1], mx1.inputs[1])
    mx2 = _math(nodes, "MAXIMUM", (-500, 350))
    links.new(mx1.outputs[0], mx2.inputs[0])
    links.new(sep.outputs[2], mx2.inputs[1])
    ex = _math(nodes, "EXPONENT", (-350, 350))
    links.new(mx2.outputs[0], ex.inputs[0])
    mul = _math(nodes, "MULTIPLY", (-200, 350))
    links.new(ex.outputs[0], mul.inputs[0])
    links.new(gin.outputs["Point Size"], mul.inputs[1])
    mn = _math(nodes, "MINIMUM", (-50, 350))
    links.new(mul.outputs[0], mn.inputs[0])
    links.new(gin.outputs["Max Radius"], mn.inputs[1])

    # the random subset only when Display Ratio < 1 (a Switch evaluates one branch only)
    partial = nodes.new("FunctionNodeCompare")
    partial.data_type = "FLOAT"
    partial.operation = "LESS_THAN"
    partial.location = (-600, -200)
    links.new(gin.outputs["Display Ratio"], _socket(partial.inputs, "VALUE", "A"))
    _socket(partial.inputs, "VALUE", "B").default_value = 1.0
    pick = nodes.new("GeometryNodeSwitch")
    pick.input_type = "GEOMETRY"
    pick.location = (-400, 0)
    links.new(partial.outputs[0], pick.inputs["Switch"])
    links.new(store.outputs["Geometry"], pick.inputs["False"])
    links.new(delete.outputs["Geometry"], pick.inputs["True"])

    m2p = nodes.new("GeometryNodeMeshToPoints")
    m2p.location = (150, 0)
    links.new(pick.outputs[0], m2p.inputs["Mesh"])
    links.new(mn.outputs[0], m2p.inputs["Radius"])
    setmat = nodes.new("GeometryNodeSetMaterial")
    setmat.location = (400, 0)
    links.new(m2p.outputs["Points"], setmat.inputs["Geometry"])
    links.new(gin.outputs["Material"], setmat.inputs["Material"])
    links.new(setmat.outputs["Geometry"], gout.inputs["Geometry"])
    return ng


def _input_id(ng: bpy.types.NodeTree, name: str) -> str:
    for item in ng.interface.items_tree:
        if getattr(item, "in_out", None) == "INPUT" and item.name == name:
            return item.identifier
    raise LookupError(name)


def get_modifier(obj: bpy.types.Object) -> bpy.types.Modifier | None:
    mod = obj.modifiers.get(MODIFIER)
    return mod if mod is not None and mod.type == "NODES" else None


def set_display(obj: bpy.types.Object, *, point_size: float | None = None,
                max_radius: float | None = None, display_ratio: float | None = None) -> None:
    """Change the display settings of a splat object (None leaves a setting as it is)."""
    mod = get_modifier(obj)
    if mod is None:
        raise LookupError(f"{obj.name} has no {MODIFIER!r} modifier")
    ng = mod.node_group
    for name, value in (("Point Size", point_size), ("Max Radius", max_radius),
                        ("Display Ratio", display_ratio)):
        if value is not None:
            modifier_input_set(mod, _input_id(ng, name), float(value))
    obj.update_tag()


def set_highlight(obj: bpy.types.Object, mask: np.ndarray | None) -> int:
    """Highlight the Gaussians where ``mask`` [N] bool is set (None clears). Returns the count."""
    mesh = obj.data
    attr = mesh.attributes.get(HIGHLIGHT_ATTR)
    if mask is None:
        if attr is not None:
            mesh.attributes.remove(attr)
        obj.update_tag()
        return 0
    mask = np.ascontiguousarray(mask, dtype=bool).reshape(-1)
    if len(mask) != len(mesh.vertices):
        raise ValueError(f"highlight mask has {len(mask)} entries for {len(mesh.vertices)} Gaussians")
    if attr is None or attr.data_type != "BOOLEAN" or attr.domain != "POINT":
        if attr is not None:
            mesh.attributes.remove(attr)
        attr = mesh.attributes.new(HIGHLIGHT_ATTR, "BOOLEAN", "POINT")
    attr.data.foreach_set("value", mask)
    mesh.update()
    obj.update_tag()
    return int(mask.sum())


def selected_vertices(obj: bpy.types.Object) -> np.ndarray:
    """[N] bool current vertex selection (Edit-Mode changes synced first)."""
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    return vertex_selection(obj.data)


class CLICKGS_OT_highlight_selected(bpy.types.Operator):
    """Highlight the selected Gaussians (vertex selection) in Object Mode and renders"""

    bl_idname = "object.gaussian_highlight_selected"
    bl_label = "Highlight Selected Gaussians"
    bl_options = {"REGISTER", "UNDO"}

    clear: bpy.props.BoolProperty(name="Clear", default=False, description="Remove the highlight")

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        # (in Edit Mode Blender's own overlay already marks the selected vertices)
        return obj is not None and obj.mode == "OBJECT" and get_modifier(obj) is not None

    def execute(self, context):
        obj = context.active_object
        n = set_highlight(obj, None if self.clear else selected_vertices(obj))
        self.report({"INFO"}, f"{n:,} Gaussians highlighted")
        return {"FINISHED"}


def get_display(obj: bpy.types.Object) -> dict[str, float]:
    mod = get_modifier(obj)
    if mod is None:
        return {}
    ng = mod.node_group
    return {n: float(modifier_input_get(mod, _input_id(ng, n))) for n in ("Point Size", "Max Radius", "Display Ratio")}


def setup_display(obj: bpy.types.Object, extent: float, *, display_ratio: float = 1.0) -> None:
    """Add (or refresh) the splat display on a freshly imported object. ``extent`` is the
    scene's size in local units (used for the radius cap: 2% of it)."""
    ng = splat_node_group()
    mat = splat_material()
    mod = get_modifier(obj) or obj.modifiers.new(MODIFIER, "NODES")
    mod.node_group = ng
    mod.show_in_editmode = True
    mod.show_on_cage = True
    modifier_input_set(mod, _input_id(ng, "Material"), mat)
    if not obj.data.materials:
        obj.data.materials.append(mat)
    set_display(obj, point_size=1.0, max_radius=max(0.02 * float(extent), 1e-6),
                display_ratio=display_ratio)
    mesh = obj.data
    if A.COLOR in mesh.color_attributes:
        mesh.color_attributes.active_color = mesh.color_attributes[A.COLOR]
        try:
            mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index
        except AttributeError:
            pass


def robust_extent(points: np.ndarray) -> float:
    """Size [local units] of the central 96% of points (largest axis span)."""
    if len(points) == 0:
        return 1.0
    sample = points[:: max(1, len(points) // 100_000)]
    lo, hi = np.quantile(sample, 0.02, axis=0), np.quantile(sample, 0.98, axis=0)
    return float(max((hi - lo).max(), 1e-6))


def register() -> None:
    bpy.utils.register_class(CLICKGS_OT_highlight_selected)


def unregister() -> None:
    bpy.utils.unregister_class(CLICKGS_OT_highlight_selected)
