"""The click tool's own path in headless Blender (bpy): the object stays in Edit Mode, the click
writes the selection and the vertex group into the edit mesh, and Blender's edit tools (G, X,
Shift+D) act on it at once; the click cache survives clicks and redraws and follows real edits.
Also the precomputed cluster member lists against the plain label scan."""

from __future__ import annotations

import numpy as np
import pytest

from test_blender_workflow import _fox_with_features, _view_of_camera

pytestmark = pytest.mark.bpy


@pytest.fixture
def bpy(bpy):
    """The clean scene of conftest, clicking at the coarse level with no similarity floor."""
    from click_gaussian_blender import scene_settings

    props = scene_settings.get(bpy.context.scene)
    props.level, props.min_similarity = "coarse", 0.0
    return bpy


def _pixel_of_cluster(index, tf, cam, scene, level, cluster):
    """A pixel the engine itself resolves to ``cluster`` at ``level``."""
    from click_gaussian_blender.engine.core.click import click_query

    uv, _ = cam.project(scene.means)
    inside = np.flatnonzero((uv[:, 0] > 0) & (uv[:, 0] < cam.width) & (uv[:, 1] > 0) & (uv[:, 1] < cam.height))
    for i in inside[::53]:
        u, v = np.floor(uv[i]) + 0.5
        r = click_query(index, tf, cam, u, v, level)
        if r.clusters and r.clusters[0] == cluster:
            return u, v, r
    raise AssertionError(f"no pixel of {level} cluster {cluster}")


def _edit_fox(bpy, fox_path):
    """The fox with features, in the click tool's mode (what its invoke does)."""
    from click_gaussian_blender import selection as S
    from click_gaussian_blender.engine.core.click import ClickIndex

    S.invalidate()
    obj, scene, tf, cam = _fox_with_features(bpy, fox_path)
    bpy.context.view_layer.objects.active = obj
    bpy.context.tool_settings.mesh_select_mode = (False, False, True)
    assert S.prepare(obj)
    S.enter_click_mode(obj)
    assert obj.mode == "EDIT" and tuple(bpy.context.tool_settings.mesh_select_mode) == (True, False, False)
    view = _view_of_camera(cam, np.asarray(obj["gs_axis_matrix"]).reshape(4, 4))
    return obj, scene, tf, cam, view, ClickIndex.build(scene)


def _edit_selection(obj) -> np.ndarray:
    import bmesh

    bm = bmesh.from_edit_mesh(obj.data)
    return np.array([v.select for v in bm.verts], bool)


def test_edit_mode_click_writes_selection_and_group_in_place(bpy, fox_path):
    from click_gaussian_blender import mesh_read as MR
    from click_gaussian_blender import ops_click
    from click_gaussian_blender import selection as S

    obj, scene, tf, cam, view, index = _edit_fox(bpy, fox_path)
    n = len(scene.means)
    left, right = tf.coarse_labels == 0, tf.coarse_labels == 1
    u0, v0, r0 = _pixel_of_cluster(index, tf, cam, scene, "coarse", 0)
    u1, v1, _ = _pixel_of_cluster(index, tf, cam, scene, "coarse", 1)

    out = ops_click.click_at(bpy.context, obj, view, u0, v0, "replace")
    assert out.ok, out.message
    assert obj.mode == "EDIT" and out.group == "CG coarse 0" and out.total_selected == left.sum()
    assert np.array_equal(out.selected, r0.selected)
    assert np.array_equal(_edit_selection(obj), left)
    t = out.timings  # the stages are parts of the write, the write a part of the whole click
    assert 0 <= t["select_ms"] + t["group_ms"] <= t["write_ms"] <= t["total_ms"]

    out = ops_click.click_at(bpy.context, obj, view, u1, v1, "add")
    assert out.ok and out.total_selected == n and np.array_equal(_edit_selection(obj), left | right)
    out = ops_click.click_at(bpy.context, obj, view, u0, v0, "remove")
    assert out.ok and out.group is None and np.array_equal(_edit_selection(obj), right)
    assert [g.name for g in S.click_groups(obj)] == ["CG coarse 0", "CG coarse 1"]
    # the groups and the selection are real mesh data once Edit Mode is left
    bpy.ops.object.mode_set(mode="OBJECT")
    assert np.array_equal(MR.vertex_selection(obj.data), right)
    assert np.array_equal(S.group_members(obj, "CG coarse 0"), np.flatnonzero(left))
    assert np.array_equal(S.group_members(obj, "CG coarse 1"), np.flatnonzero(right))
    weights = [g.weight for g in obj.data.vertices[int(np.flatnonzero(left)[0])].groups]
    assert weights == [1.0]


def test_clicks_keep_the_cache_and_clear_an_object_mode_highlight(bpy, fox_path):
    from click_gaussian_blender import display, ops_click
    from click_gaussian_blender import selection as S

    obj, scene, tf, cam, view, index = _edit_fox(bpy, fox_path)
    bpy.ops.object.mode_set(mode="OBJECT")
    display.set_highlight(obj, tf.coarse_labels == 1)  # what an Object-Mode click leaves
    bpy.ops.object.mode_set(mode="EDIT")
    u0, v0, _ = _pixel_of_cluster(index, tf, cam, scene, "coarse", 0)
    assert ops_click.click_at(bpy.context, obj, view, u0, v0, "replace").ok
    assert obj.data.attributes.get(display.HIGHLIGHT_ATTR) is None  # Blender's overlay shows it now
    entry = S._cached(obj)
    assert entry is not None
    for mode in ("replace", "add", "replace"):  # clicks, each followed by a redraw's evaluation
        bpy.context.view_layer.update()
        assert S._cached(obj) is entry, "a click's own writes must not invalidate the click cache"
        out = ops_click.click_at(bpy.context, obj, view, u0, v0, mode)
        assert out.ok and S._cached(obj) is entry  # answered from the cache: no sync, no rebuild
    bpy.context.view_layer.update()
    assert S._cached(obj) is entry and entry.verts is not None
    # leaving and re-entering through the tool's start keeps the cache (no sync at the next click)
    bpy.ops.object.mode_set(mode="OBJECT")
    display.set_highlight(obj, tf.coarse_labels == 1)
    bpy.context.view_layer.update()
    S.enter_click_mode(obj)
    assert obj.mode == "EDIT" and obj.data.attributes.get(display.HIGHLIGHT_ATTR) is None
    bpy.context.view_layer.update()
    entry = S._cached(obj)
    assert entry is not None and entry.verts is not None
    out = ops_click.click_at(bpy.context, obj, view, u0, v0, "replace")
    assert out.ok and S._cached(obj) is entry


def test_edit_tools_act_on_the_click_at_once(bpy, fox_path):
    """G moves exactly the clicked Gaussians, and the next click finds them where they are now;
    Shift+D duplicates them with their group and features; X deletes them; clicking goes on."""
    from click_gaussian_blender import feature_store as FS
    from click_gaussian_blender import mesh_read as MR
    from click_gaussian_blender import ops_click
    from click_gaussian_blender import selection as S

    obj, scene, tf, cam, view, index = _edit_fox(bpy, fox_path)
    n = len(scene.means)
    left = tf.coarse_labels == 0
    m = int(left.sum())
    u0, v0, _ = _pixel_of_cluster(index, tf, cam, scene, "coarse", 0)
    before = MR.vertex_positions(obj.data).copy()
    assert ops_click.click_at(bpy.context, obj, view, u0, v0, "replace").ok
    # G: move the selection far out of the view (local +x)
    bpy.ops.transform.translate(value=(100.0, 0.0, 0.0))
    bpy.context.view_layer.update()
    out = ops_click.click_at(bpy.context, obj, view, u0, v0, "replace")
    assert not (out.ok and out.clusters == [0]), "the moved cluster must no longer be under the cursor"
    bpy.ops.object.mode_set(mode="OBJECT")
    after = MR.vertex_positions(obj.data)
    np.testing.assert_allclose(after[left] - before[left], np.tile([100.0, 0.0, 0.0], (m, 1)), atol=1e-3)
    np.testing.assert_array_equal(after[~left], before[~left])
    # move it back, then Shift+D and X on a fresh click
    obj.data.vertices.foreach_set("co", before.reshape(-1))
    obj.data.update()
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.context.view_layer.update()
    out = ops_click.click_at(bpy.context, obj, view, u0, v0, "replace")
    assert out.ok and out.clusters == [0] and out.total_selected == m
    bpy.ops.mesh.duplicate()
    bpy.ops.object.mode_set(mode="OBJECT")
    assert len(obj.data.vertices) == n + m
    assert np.array_equal(S.group_members(obj, "CG coarse 0"), np.concatenate([np.flatnonzero(left), n + np.arange(m)]))
    dup = FS.load_features(obj.data)
    assert np.array_equal(dup.features[n:], tf.features[left])
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.context.view_layer.update()
    out = ops_click.click_at(bpy.context, obj, view, u0, v0, "replace")  # the count changed: rebuilt
    assert out.ok and out.total_selected == 2 * m
    bpy.ops.mesh.delete(type="VERT")
    bpy.context.view_layer.update()
    u1, v1, _ = _pixel_of_cluster(index, tf, cam, scene, "coarse", 1)
    out = ops_click.click_at(bpy.context, obj, view, u1, v1, "replace")
    assert out.ok and out.clusters == [1] and out.total_selected == n - m
    bpy.ops.object.mode_set(mode="OBJECT")
    assert len(obj.data.vertices) == n - m
    assert np.array_equal(FS.load_features(obj.data).coarse_labels, tf.coarse_labels[~left])


def test_selection_list_actions_after_edit_mode_clicks(bpy, fox_path):
    from click_gaussian_blender import ops_click

    obj, scene, tf, cam, view, index = _edit_fox(bpy, fox_path)
    u0, v0, _ = _pixel_of_cluster(index, tf, cam, scene, "coarse", 0)
    u1, v1, _ = _pixel_of_cluster(index, tf, cam, scene, "coarse", 1)
    assert ops_click.click_at(bpy.context, obj, view, u0, v0, "replace").ok
    assert ops_click.click_at(bpy.context, obj, view, u1, v1, "replace").ok
    ops_click.group_action(bpy.context, obj, "CG coarse 0", "HIDE")
    bpy.ops.object.mode_set(mode="OBJECT")
    hidden = np.empty(len(obj.data.vertices), bool)
    obj.data.vertices.foreach_get("hide", hidden)
    assert np.array_equal(hidden, tf.coarse_labels == 0)


def test_precomputed_members_match_the_label_scan():
    from click_gaussian_blender.engine.core.features import TrainedFeatures
    from click_gaussian_blender.feature_store import MeshFeatures

    rng = np.random.default_rng(3)
    n = 20_000
    cl, fl = rng.integers(-1, 6, n).astype(np.int32), rng.integers(-1, 11, n).astype(np.int32)
    args = (rng.normal(size=(n, 24)), rng.normal(size=(6, 12)), rng.normal(size=(11, 24)), cl, fl)
    fast, plain = MeshFeatures(*args), TrainedFeatures(*args)
    fast.index_members()
    for level, clusters in (("coarse", [0]), ("coarse", [5]), ("fine", [3, 7]), ("fine", [10, 0, 10]),
                            ("coarse", []), ("fine", [2])):
        got = fast.members(level, clusters)
        assert got.dtype == np.int64 and np.array_equal(got, plain.members(level, clusters)), (level, clusters)


def test_edit_mode_clicks_tag_the_selection_for_redraw_only(bpy, fox_path):
    """Every click mode leaves a selection update for the viewport (the edit overlay redraws
    the selection) and no geometry update (which would make the click cache verify itself)."""
    from click_gaussian_blender import ops_click

    obj, scene, tf, cam, view, index = _edit_fox(bpy, fox_path)
    u0, v0, _ = _pixel_of_cluster(index, tf, cam, scene, "coarse", 0)
    u1, v1, _ = _pixel_of_cluster(index, tf, cam, scene, "coarse", 1)
    for u, v in ((u1, v1), (u0, v0)):  # the first clicks may settle the click cache (its own sync)
        assert ops_click.click_at(bpy.context, obj, view, u, v, "replace").ok
        bpy.context.view_layer.update()
    seen: list = []

    def record(_scene, depsgraph):
        seen.extend((u.id.original.name, u.is_updated_geometry, u.is_updated_shading) for u in depsgraph.updates)

    bpy.app.handlers.depsgraph_update_post.append(record)
    try:
        for u, v, mode in ((u0, v0, "replace"), (u1, v1, "add"), (u0, v0, "remove")):
            seen.clear()
            assert ops_click.click_at(bpy.context, obj, view, u, v, mode).ok
            bpy.context.view_layer.update()
            mesh_updates = [s for s in seen if s[0] == obj.data.name]
            assert mesh_updates and not any(g for _, g, _ in mesh_updates), (mode, seen)
            assert any(sh for _, _, sh in mesh_updates), (mode, seen)
    finally:
        bpy.app.handlers.depsgraph_update_post.remove(record)
    bpy.ops.object.mode_set(mode="OBJECT")


def _slab_features(scene, slabs: int = 16, seed: int = 1):
    """Stand-in features with ``slabs`` coarse clusters (x slabs of equal count) and two fine
    parts each (z halves): clusters small against the mesh, as in a real scene."""
    from click_gaussian_blender.engine.core.features import TrainedFeatures, normalize_rows

    rng = np.random.default_rng(seed)
    m = scene.means
    coarse = np.searchsorted(np.quantile(m[:, 0], np.linspace(0, 1, slabs + 1)[1:-1]), m[:, 0]).astype(np.int32)
    fine = coarse * 2 + (m[:, 2] > np.median(m[:, 2])).astype(np.int32)
    cc = normalize_rows(rng.normal(size=(slabs, 12)))
    fp = normalize_rows(rng.normal(size=(2 * slabs, 12)))
    feats = np.concatenate([cc[coarse], fp[fine]], axis=1) + rng.normal(0, 0.01, (len(m), 24))
    fc = normalize_rows(np.concatenate([cc[np.arange(2 * slabs) // 2], fp], axis=1))
    return TrainedFeatures(feats.astype(np.float16), cc, fc, coarse, fine)


def test_replace_clicks_on_a_sorted_mesh_select_exactly_the_cluster(bpy, fox_path, monkeypatch):
    """The click tool's start sorts the vertices by cluster and leaves no vertex group behind;
    a replace click then deselects only what the previous clicks selected (no deselect-all),
    and whatever else is selected by then (a script's select_set, select all, Shift+click,
    Ctrl+click) is still cleared: the selection is always exactly the clicked cluster."""
    import bmesh

    from click_gaussian_blender import feature_store as FS
    from click_gaussian_blender import mesh_read as MR
    from click_gaussian_blender import ops_click
    from click_gaussian_blender import selection as S
    from click_gaussian_blender.engine.core.cameras import Camera, look_at_viewmat
    from click_gaussian_blender.engine.core.click import ClickIndex
    from click_gaussian_blender.engine.core.formats.ply import read_ply
    from test_blender_workflow import _import

    S.invalidate()
    scene = read_ply(str(fox_path))
    obj = _import(bpy, fox_path)
    tf = _slab_features(scene)
    FS.store_features(obj.data, tf)
    bpy.context.view_layer.objects.active = obj
    assert ops_click.start_click_tool(obj) == ""  # sorted by cluster, Edit Mode
    assert obj.mode == "EDIT" and len(obj.vertex_groups) == 0  # the deform probe group is gone
    assert len(bmesh.from_edit_mesh(obj.data).verts.layers.deform) == 1  # its layer stays
    assert S.wrap_vertices(obj)
    labels = S.click_data(obj)[1].coarse_labels  # read from the sorted mesh
    assert np.all(np.diff(labels) >= 0)
    centre = np.median(scene.means, axis=0)  # the camera of the other tests
    cam = Camera(look_at_viewmat(centre + np.array([0.0, -0.5, -3.0]), centre, np.array([0.0, -1.0, 0.0])),
                 np.array([[150.0, 0, 64], [0, 150.0, 64], [0, 0, 1]]), 128, 128)
    view = _view_of_camera(cam, np.asarray(obj["gs_axis_matrix"]).reshape(4, 4))
    index = ClickIndex.build(scene)
    (u0, v0, _), (u1, v1, _) = (_pixel_of_cluster(index, tf, cam, scene, "coarse", c) for c in (2, 5))
    ran = []  # whether each Blender operator the clicks ran was deselect-all
    call_op = S._call_op
    monkeypatch.setattr(S, "_call_op", lambda idname, **kw: (
        ran.append(idname == "mesh.select_all" and kw.get("action") == "DESELECT") or call_op(idname, **kw)))

    def click(u, v, mode, want, deselect_all):
        ran.clear()
        out = ops_click.click_at(bpy.context, obj, view, u, v, mode)
        assert out.ok, out.message
        bpy.context.view_layer.update()  # the redraw
        assert np.array_equal(_edit_selection(obj), want), mode
        assert out.total_selected == want.sum()
        assert ran == ([True] if deselect_all else []), (mode, ran)  # add / remove run no operator

    two, five = labels == 2, labels == 5
    click(u0, v0, "replace", two, True)  # nothing known yet
    click(u1, v1, "replace", five, False)  # the previous click's cluster deselected alone
    bm = bmesh.from_edit_mesh(obj.data)
    bm.verts.ensure_lookup_table()
    bm.verts[int(np.flatnonzero(labels == 0)[3])].select_set(True)  # a script, no redraw tag
    click(u1, v1, "replace", five, True)  # the count shows the stray vertex: deselect-all as well
    bpy.ops.mesh.select_all(action="SELECT")
    click(u0, v0, "replace", two, True)
    click(u1, v1, "add", two | five, False)
    click(u0, v0, "replace", two, False)  # the union is known: both clusters deselected
    click(u1, v1, "add", two | five, False)
    click(u0, v0, "remove", five, False)
    click(u0, v0, "replace", two, False)
    bpy.ops.object.mode_set(mode="OBJECT")
    assert np.array_equal(MR.vertex_selection(obj.data), two)
    assert [g.name for g in S.click_groups(obj)] == ["CG coarse 2", "CG coarse 5"]
    assert np.array_equal(S.group_members(obj, "CG coarse 2"), np.flatnonzero(two))
    assert np.array_equal(S.group_members(obj, "CG coarse 5"), np.flatnonzero(five))
