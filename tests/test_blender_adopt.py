"""Adopting a mesh made by Blender's own PLY importer (File > Import > Stanford PLY) from a 3DGS
file as a Gaussian Splatting object (Object > Convert to Gaussian Splats): the same attributes
as our importer gives, the user's object kept, clear refusals that change nothing, export of
every value the built-in importer kept, and clicks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

SH3 = "pc_short_sh3_trailing.ply"
GS_PROPS = ("gs_layout", "gs_axis_matrix", "gs_source", "gs_sh_degree", "gs_count")


def _builtin_import(bpy, path):
    """A mesh object as Blender's own PLY importer makes it (its default axes: the identity)."""
    assert bpy.ops.wm.ply_import(filepath=str(path)) == {"FINISHED"}
    obj = bpy.context.active_object
    assert obj.type == "MESH" and "f_dc_0" in obj.data.attributes and "gs_axis_matrix" not in obj
    return obj


def _our_import(bpy, path):
    assert bpy.ops.import_scene.gaussian_splatting(filepath=str(path)) == {"FINISHED"}
    return bpy.context.active_object


def _adopt(bpy, obj, **kw):
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.object.gaussian_adopt(**kw) == {"FINISHED"}
    return obj


def _values(mesh, name: str) -> np.ndarray:
    attr = mesh.attributes[name]
    key, width, dtype = {"FLOAT": ("value", 1, np.float32), "INT": ("value", 1, np.int32),
                         "FLOAT_VECTOR": ("vector", 3, np.float32), "QUATERNION": ("value", 4, np.float32),
                         "FLOAT_COLOR": ("color", 4, np.float32)}[attr.data_type]
    out = np.empty(len(mesh.vertices) * width, dtype)
    attr.data.foreach_get(key, out)
    return out.reshape(len(mesh.vertices), width) if width > 1 else out


def _gs_attributes(mesh) -> dict[str, np.ndarray]:
    names = [a.name for a in mesh.attributes if a.name.startswith("gs_") or a.name == "position"]
    return {n: _values(mesh, n) for n in names}


def _assert_same_as_our_import(adopted, ours, inf_rows=None) -> None:
    """Every attribute and splat property of an adopted object equals our importer's, except
    the opacity (and its display alpha) of ``inf_rows``, which Blender's importer changed."""
    a, b = _gs_attributes(adopted.data), _gs_attributes(ours.data)
    assert sorted(a) == sorted(b)
    for name in a:
        x, y = a[name], b[name]
        if inf_rows is not None and name in ("gs_opacity", "gs_color"):
            keep = ~inf_rows
            np.testing.assert_array_equal(x[keep], y[keep], err_msg=name)
            continue
        np.testing.assert_array_equal(x, y, err_msg=name)
    for key in ("gs_axis_matrix", "gs_sh_degree", "gs_count"):
        np.testing.assert_array_equal(np.asarray(adopted[key]), np.asarray(ours[key]), err_msg=key)
    assert [m.type for m in adopted.modifiers][-1] == "NODES" and "Gaussian Splats" in adopted.modifiers


def test_adopted_fox_is_our_splat_object_and_keeps_the_users_object(bpy, fox_path: Path, capsys) -> None:
    from click_gaussian_blender import io_export
    from engine.core.formats.ply import read_ply

    file = read_ply(fox_path)
    inf_rows = ~np.isfinite(file.opacities)
    assert inf_rows.sum() == 37
    obj = _builtin_import(bpy, fox_path)
    # what Blender's importer gives: every value bit for bit but the +inf opacity logits (0.0)
    op = _values(obj.data, "opacity")
    np.testing.assert_array_equal(op[~inf_rows], file.opacities[~inf_rows])
    assert (op[inf_rows] == 0.0).all()
    # the user's object: parent, an extra collection, transform, another modifier
    parent = bpy.data.objects.new("Rig", None)
    bpy.context.scene.collection.objects.link(parent)
    obj.parent = parent
    extra = bpy.data.collections.new("Extra")
    bpy.context.scene.collection.children.link(extra)
    extra.objects.link(obj)
    obj.location = (1.0, 2.0, 3.0)
    user_mod = obj.modifiers.new("Mine", "NODES")
    bpy.context.view_layer.update()
    old_mesh, collections = obj.data.name, {c.name for c in obj.users_collection}
    matrix = np.array(obj.matrix_world)

    _adopt(bpy, obj)
    assert "Converted fox_cc0 to 50,000 Gaussians (SH degree 0, up axis +Z, detected)" in capsys.readouterr().out
    assert io_export.is_splat_object(obj) and obj.name == "fox_cc0" and obj.parent is parent
    assert {c.name for c in obj.users_collection} == collections and "Extra" in collections
    np.testing.assert_array_equal(np.array(obj.matrix_world), matrix)
    assert obj.modifiers[0] == user_mod and obj.modifiers[-1].name == "Gaussian Splats"
    assert obj.data.name == old_mesh and len(bpy.data.meshes) == 1  # the old mesh is gone
    assert obj["gs_source"] == ""
    ours = _our_import(bpy, fox_path)
    _assert_same_as_our_import(obj, ours, inf_rows)


def test_adopted_sh3_scene_turned_upright_and_round_trip(bpy, shared_data: Path, tmp_path: Path) -> None:
    """The SH-3 file with normals (as Blender's ``normal`` vector): same attributes as our import
    (normals as nx/ny/nz extras), and its export is the file's every value in the file's layout."""
    from engine.core.formats.ply import read_ply

    obj = _adopt(bpy, _builtin_import(bpy, shared_data / SH3))
    ours = _our_import(bpy, shared_data / SH3)
    _assert_same_as_our_import(obj, ours)
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.export_scene.gaussian_splatting(filepath=str(tmp_path / "out.ply")) == {"FINISHED"}
    a, b = read_ply(shared_data / SH3), read_ply(tmp_path / "out.ply")
    assert b.layout.vertex_dtype == a.layout.vertex_dtype
    for name in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
    assert list(b.extra) == ["nx", "ny", "nz"]
    for name in a.extra:
        np.testing.assert_array_equal(b.extra[name], a.extra[name])


def test_auto_and_explicit_up_axis(bpy, fox_path: Path, tmp_path: Path, capsys) -> None:
    """A y-down copy of the fox (the COLMAP habit) is turned upright as our importer turns it;
    explicit axes are honoured."""
    from engine.core.formats.ply import read_ply, write_ply

    fox = read_ply(fox_path)
    fox.opacities = np.nan_to_num(fox.opacities, posinf=0.0)  # (what Blender's importer keeps)
    turned = fox.subset(np.arange(fox.num_gaussians))
    turned.means = fox.means[:, [0, 2, 1]] * np.array([1, -1, 1], np.float32)
    write_ply(turned, tmp_path / "ydown.ply")
    obj = _adopt(bpy, _builtin_import(bpy, tmp_path / "ydown.ply"))
    assert "SH degree 0, up axis -Y, detected)" in capsys.readouterr().out
    ours = _our_import(bpy, tmp_path / "ydown.ply")
    _assert_same_as_our_import(obj, ours)
    obj = _adopt(bpy, _builtin_import(bpy, fox_path), axis_up="-Y")
    assert "SH degree 0, up axis -Y)" in capsys.readouterr().out
    np.testing.assert_allclose(np.array(obj["gs_axis_matrix"]).reshape(4, 4),
                               [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], atol=1e-12)


def test_adopted_fox_exports_every_value_the_mesh_held(bpy, fox_path: Path, tmp_path: Path) -> None:
    """Unedited: the file's vertex records, in its layout, with the +inf opacities as Blender's
    importer left them (0.0); moved: the object's world matrix applied as for our own import."""
    from engine.core.formats.ply import read_ply

    file = read_ply(fox_path)
    inf_rows = ~np.isfinite(file.opacities)
    obj = _adopt(bpy, _builtin_import(bpy, fox_path))
    assert bpy.ops.export_scene.gaussian_splatting(filepath=str(tmp_path / "fox.ply")) == {"FINISHED"}
    back = read_ply(tmp_path / "fox.ply")
    assert back.layout.vertex_dtype == file.layout.vertex_dtype and not back.extra
    for name in ("means", "scales", "quats", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(back, name), getattr(file, name), err_msg=name)
    np.testing.assert_array_equal(back.opacities[~inf_rows], file.opacities[~inf_rows])
    assert (back.opacities[inf_rows] == 0.0).all()

    ours = _our_import(bpy, fox_path)
    for o in (obj, ours):
        o.location = (0.5, -1.0, 2.0)
        o.rotation_euler = (0.3, -0.7, 1.1)
        o.scale = (1.0, 2.5, 0.6)
    bpy.context.view_layer.update()
    outs = {}
    for o in (obj, ours):
        bpy.context.view_layer.objects.active = o
        path = tmp_path / f"moved_{o.name}.ply"
        assert bpy.ops.export_scene.gaussian_splatting(filepath=str(path)) == {"FINISHED"}
        outs[o.name] = read_ply(path)
    a, b = outs[obj.name], outs[ours.name]
    assert not np.allclose(a.means, file.means)
    for name in ("means", "scales", "quats", "sh_dc"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.opacities[~inf_rows], b.opacities[~inf_rows])


def _snapshot(bpy, obj) -> tuple:
    mesh = obj.data
    return (obj.name, mesh.name, sorted(a.name for a in mesh.attributes), len(mesh.vertices),
            [m.name for m in obj.modifiers], sorted(k for k in obj.keys() if k.startswith("gs_")),
            sorted(m.name for m in bpy.data.meshes), sorted(bpy.data.node_groups.keys()))


def test_refusals_are_one_line_and_change_nothing(bpy, fox_path: Path, shared_data: Path) -> None:
    from click_gaussian_blender import io_adopt
    from click_gaussian_blender.engine.core.errors import SceneFormatError

    def refused(obj, *words):
        bpy.context.view_layer.objects.active = obj
        before = _snapshot(bpy, obj)
        assert not bpy.ops.object.gaussian_adopt.poll()
        with pytest.raises(SceneFormatError) as info:
            io_adopt.adopt_object(obj)
        msg = str(info.value)
        assert len(msg.splitlines()) == 1 and all(w in msg for w in words), msg
        assert _snapshot(bpy, obj) == before
        with pytest.raises(RuntimeError):
            bpy.ops.object.gaussian_adopt()
        assert _snapshot(bpy, obj) == before

    # a point cloud without the 3DGS attributes: all of them named
    mesh = bpy.data.meshes.new("points")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0)], [], [])
    plain = bpy.data.objects.new("points", mesh)
    bpy.context.scene.collection.objects.link(plain)
    refused(plain, "not a 3DGS point cloud", "f_dc_0", "opacity", "scale_2", "rot_3")
    # one attribute missing: only it named
    fox = _builtin_import(bpy, fox_path)
    fox.data.attributes.remove(fox.data.attributes["rot_3"])
    refused(fox, "lacks the attributes rot_3 (")
    # SH attributes that are not a whole degree
    sh3 = _builtin_import(bpy, shared_data / SH3)
    sh3.data.attributes.remove(sh3.data.attributes["f_rest_44"])
    refused(sh3, "44 SH attributes", "f_rest_0..f_rest_43")
    # edges
    fox = _builtin_import(bpy, fox_path)
    fox.data.edges.add(1)
    fox.data.edges[0].vertices = (0, 1)
    refused(fox, "has edges or faces", "1 edges")
    # Edit Mode
    fox = _builtin_import(bpy, fox_path)
    bpy.ops.object.mode_set(mode="EDIT")
    refused(fox, "Edit Mode")
    bpy.ops.object.mode_set(mode="OBJECT")
    # already ours
    refused(_our_import(bpy, fox_path), "already a Gaussian Splatting object")


def test_failure_while_building_leaves_the_object_as_it_was(bpy, fox_path: Path, monkeypatch) -> None:
    from click_gaussian_blender import io_adopt

    obj = _builtin_import(bpy, fox_path)
    obj["gs_count"] = [7, 8]  # a user's own property of that name stays as it was
    before = _snapshot(bpy, obj)
    mesh = obj.data

    def broken(o, ratio=1.0):
        o.modifiers.new("Gaussian Splats", "NODES")
        raise RuntimeError("display failed")

    monkeypatch.setattr(io_adopt, "setup_splat_display", broken)
    with pytest.raises(RuntimeError, match="display failed"):
        io_adopt.adopt_object(obj)
    assert obj.data == mesh and _snapshot(bpy, obj) == before and list(obj["gs_count"]) == [7, 8]


def test_click_on_an_adopted_fox(bpy, fox_path: Path) -> None:
    from click_gaussian_blender import feature_store as FS
    from click_gaussian_blender import mesh_read as MR
    from click_gaussian_blender import ops_click
    from click_gaussian_blender import selection as S
    from click_gaussian_blender.engine.core.cameras import Camera, look_at_viewmat
    from click_gaussian_blender.engine.core.click import ClickIndex, click_query
    from engine.core.formats.ply import read_ply
    from test_blender_workflow import _spatial_features, _view_of_camera

    scene = read_ply(fox_path)
    obj = _adopt(bpy, _builtin_import(bpy, fox_path))
    tf = _spatial_features(scene)
    FS.store_features(obj.data, tf)
    centre = np.median(scene.means, axis=0)
    cam = Camera(look_at_viewmat(centre + np.array([0.0, -0.5, -3.0]), centre, np.array([0.0, -1.0, 0.0])),
                 np.array([[150.0, 0, 64], [0, 150.0, 64], [0, 0, 1]]), 128, 128)
    obj.location = (0.3, 0.0, -0.2)  # the object's own transform is part of the view
    bpy.context.view_layer.update()
    mw = np.array(obj.matrix_world)
    view = _view_of_camera(cam, np.asarray(obj["gs_axis_matrix"]).reshape(4, 4), mw)
    uv, _ = cam.project(scene.means)
    index = ClickIndex.build(scene)
    for i in range(0, scene.num_gaussians, 97):
        u, v = np.floor(uv[i]) + 0.5
        if not (0 < u < 128 and 0 < v < 128):
            continue
        want = click_query(index, tf, cam, u, v, "coarse")
        if want.clusters:
            break
    else:
        pytest.fail("no pixel of the view hits the fox")
    out = ops_click.click(obj, view, u, v, level="coarse", mode="replace")
    assert out.ok, out.message
    assert np.array_equal(S.group_members(obj, out.group), want.selected)
    assert np.array_equal(np.flatnonzero(MR.vertex_selection(obj.data)), want.selected)


def test_conversion_is_offered_where_it_fits(bpy, fox_path: Path) -> None:
    """The N-panel and the Object properties offer the conversion for a mesh from Blender's PLY
    importer only; the Object menu lists it."""
    from click_gaussian_blender import ops_adopt
    from test_blender_workflow import _draw_panel

    obj = _builtin_import(bpy, fox_path)
    assert ("operator", "object.gaussian_adopt") in _draw_panel(bpy)
    bpy.context.view_layer.objects.active = obj
    assert ops_adopt.CLICKGS_PT_adopt.poll(bpy.context) and bpy.ops.object.gaussian_adopt.poll()
    assert ops_adopt._menu_object in bpy.types.VIEW3D_MT_object._dyn_ui_initialize()
    _adopt(bpy, obj)
    assert ("operator", "object.gaussian_adopt") not in _draw_panel(bpy)
    assert not ops_adopt.CLICKGS_PT_adopt.poll(bpy.context)


def test_other_properties_are_kept_and_the_rest_named(bpy, shared_data: Path, tmp_path: Path, capsys) -> None:
    """Other per-vertex properties (Blender's importer makes every one a float) are exported with
    their values after the Inria ones; attributes that are not per-Gaussian numbers (a colour
    attribute painted on afterwards) are named in a warning."""
    from engine.core.formats.ply import read_ply, write_ply

    scene = read_ply(shared_data / SH3)
    n = scene.num_gaussians
    scene.extra["confidence"] = np.linspace(0, 1, n).astype(np.float32)
    scene.extra["label"] = np.arange(n, dtype=np.int32) - 5
    write_ply(scene, tmp_path / "extra.ply")
    obj = _builtin_import(bpy, tmp_path / "extra.ply")
    obj.data.color_attributes.new("Paint", "FLOAT_COLOR", "POINT")
    _adopt(bpy, obj)
    out = capsys.readouterr().out
    assert "Not kept (not per-Gaussian numbers): Paint" in out
    assert bpy.ops.export_scene.gaussian_splatting(filepath=str(tmp_path / "out.ply")) == {"FINISHED"}
    back = read_ply(tmp_path / "out.ply")
    assert list(back.extra) == ["nx", "ny", "nz", "confidence", "label"]
    assert back.layout.vertex_dtype.names == read_ply(tmp_path / "extra.ply").layout.vertex_dtype.names
    np.testing.assert_array_equal(back.extra["confidence"], scene.extra["confidence"])
    assert back.extra["label"].dtype == np.float32  # (Blender's importer reads it as a float)
    np.testing.assert_array_equal(back.extra["label"], scene.extra["label"])
    np.testing.assert_array_equal(back.sh_rest, scene.sh_rest)
