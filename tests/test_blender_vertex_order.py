"""Sorting a trained splat mesh's vertices by cluster (click_gaussian_blender.vertex_order): the
permutation rule, and in headless Blender that every attribute, the stored features, vertex
groups and custom properties move with their vertices, and that clicks on the sorted mesh select
the same Gaussians (by source row) as before."""

from __future__ import annotations

import numpy as np
import pytest

from test_blender_workflow import _fox_with_features, _view_of_camera


def test_cluster_order_sorts_by_coarse_then_fine_with_unlabelled_last():
    from click_gaussian_blender.vertex_order import cluster_order, is_cluster_ordered

    coarse = np.array([1, 0, -1, 1, 0, 0, 1])
    fine = np.array([5, 3, 2, 4, -1, 3, 5])
    perm = cluster_order(coarse, fine)
    # coarse 0: rows 1 (fine 3), 5 (fine 3, after 1: stable), 4 (fine -1: last); coarse 1: rows 3, 0, 6; then -1
    assert perm.tolist() == [1, 5, 4, 3, 0, 6, 2]
    assert is_cluster_ordered(coarse[perm], fine[perm]) and not is_cluster_ordered(coarse, fine)
    with pytest.raises(ValueError):
        cluster_order(coarse, fine[:3])
    rng = np.random.default_rng(0)
    for size in (1, 2, 5, 50):  # the check without sorting agrees with the sort
        for _ in range(20):
            c, f = rng.integers(-1, 3, size), rng.integers(-1, 4, size)
            p = cluster_order(c, f)
            assert is_cluster_ordered(c, f) == bool(np.array_equal(p, np.arange(size)))
            assert is_cluster_ordered(c[p], f[p])


def test_member_verts_uses_slices_for_runs_and_lookups_for_scattered():
    from click_gaussian_blender.selection import member_verts

    items = list(range(1000))
    runs = np.concatenate([np.arange(10, 200), np.arange(300, 301), np.arange(500, 900)])
    assert list(member_verts(items, runs)) == runs.tolist()
    scattered = np.arange(0, 1000, 7)
    assert list(member_verts(items, scattered)) == scattered.tolist()
    assert list(member_verts(items, np.zeros(0, np.int64))) == []


def _attr(mesh, name, width, key="vector", dtype=np.float32):
    out = np.empty(len(mesh.vertices) * width, dtype)
    mesh.attributes[name].data.foreach_get(key, out)
    return out.reshape(-1, width) if width > 1 else out


@pytest.mark.bpy
def test_reorder_moves_everything_with_its_vertex(bpy, fox_path):
    from click_gaussian_blender import attributes as A
    from click_gaussian_blender import feature_store as FS
    from click_gaussian_blender import vertex_order as VO

    obj, scene, tf, _ = _fox_with_features(bpy, fox_path)
    mesh = obj.data
    n = len(mesh.vertices)
    before = {name: _attr(mesh, name, 3) for name in ("position", A.F_DC, A.SCALE, *FS.FEATURE_ATTRS)}
    rows_before = _attr(mesh, A.INDEX, 1, "value", np.int32)
    coarse, fine = FS.read_labels(mesh, "coarse"), FS.read_labels(mesh, "fine")
    meta = mesh[FS.PROP_META]
    mods = [m.name for m in obj.modifiers]
    perm = VO.cluster_order(coarse, fine)
    assert not np.array_equal(perm, np.arange(n))  # the fox's rows are not in cluster order

    assert VO.order_by_clusters(obj) == ""
    assert len(mesh.vertices) == n and obj.data is mesh and mesh[FS.PROP_META] == meta
    assert [m.name for m in obj.modifiers] == mods and not any(n_.startswith(".CG") for n_ in bpy.data.node_groups.keys())
    assert not any(k.startswith(".cg_sort") for k in mesh.attributes.keys())
    for name, arr in before.items():
        assert np.array_equal(_attr(mesh, name, 3), arr[perm]), name
    assert np.array_equal(_attr(mesh, A.INDEX, 1, "value", np.int32), rows_before[perm])
    assert VO.is_cluster_ordered(FS.read_labels(mesh, "coarse"), FS.read_labels(mesh, "fine"))
    loaded = FS.load_features(mesh)
    assert np.allclose(loaded.features, tf.features.astype(np.float32)[perm], atol=1e-3)
    assert VO.order_by_clusters(obj) == ""  # already sorted: nothing to do


@pytest.mark.bpy
def test_reorder_keeps_vertex_groups_or_leaves_the_order(bpy, fox_path):
    from click_gaussian_blender import attributes as A
    from click_gaussian_blender import selection as S
    from click_gaussian_blender import vertex_order as VO

    obj, scene, tf, _ = _fox_with_features(bpy, fox_path)
    n = len(obj.data.vertices)
    members = np.arange(0, n, 5)
    obj.vertex_groups.new(name="mine").add(members.tolist(), 1.0, "REPLACE")
    rows = _attr(obj.data, A.INDEX, 1, "value", np.int32)
    why = VO.order_by_clusters(obj)
    rows_after = _attr(obj.data, A.INDEX, 1, "value", np.int32)
    from click_gaussian_blender.compat import sort_keeps_vertex_groups

    if not sort_keeps_vertex_groups():
        assert "vertex groups" in why and np.array_equal(rows_after, rows)
    else:
        assert why == "" and not np.array_equal(rows_after, rows)
    # either way the group holds the same Gaussians (by source row)
    assert np.array_equal(np.sort(rows_after[S.group_members(obj, "mine")]), np.sort(rows[members]))


@pytest.mark.bpy
def test_reorder_refuses_shared_meshes_and_shape_keys(bpy, fox_path):
    from click_gaussian_blender import vertex_order as VO

    obj, *_ = _fox_with_features(bpy, fox_path)
    twin = obj.copy()  # shares the mesh
    bpy.context.collection.objects.link(twin)
    assert "shared" in VO.order_by_clusters(obj)
    bpy.data.objects.remove(twin)
    obj.shape_key_add(name="Basis")
    assert "shape keys" in VO.order_by_clusters(obj)
    with pytest.raises(ValueError):
        VO.reorder_vertices(obj, np.zeros(len(obj.data.vertices), np.int64))


@pytest.mark.bpy
def test_clicks_on_the_sorted_mesh_select_the_same_gaussians(bpy, fox_path):
    from click_gaussian_blender import attributes as A
    from click_gaussian_blender import ops_click, scene_settings
    from click_gaussian_blender import selection as S
    from click_gaussian_blender import vertex_order as VO
    from click_gaussian_blender.engine.core.click import ClickIndex, click_query

    obj, scene, tf, cam = _fox_with_features(bpy, fox_path)
    props = scene_settings.get(bpy.context.scene)
    props.min_similarity = 0.0
    bpy.context.view_layer.objects.active = obj
    index = ClickIndex.build(scene)
    uv, _ = cam.project(scene.means)
    inside = np.flatnonzero((uv[:, 0] > 1) & (uv[:, 0] < cam.width - 1) & (uv[:, 1] > 1) & (uv[:, 1] < cam.height - 1))
    assert VO.order_by_clusters(obj) == ""
    S.invalidate()
    rows = _attr(obj.data, A.INDEX, 1, "value", np.int32)
    view = _view_of_camera(cam, np.asarray(obj[A.PROP_AXIS]).reshape(4, 4))
    S.enter_click_mode(obj)
    checked = 0
    for level in ("coarse", "fine"):
        props.level = level
        for i in inside[::301][:4]:
            u, v = np.floor(uv[i]) + 0.5
            want = click_query(index, tf, cam, u, v, level)  # in the file's row order
            out = ops_click.click_at(bpy.context, obj, view, u, v, "replace")
            assert out.ok == bool(want.clusters), out.message
            if out.ok:
                assert np.array_equal(np.sort(rows[out.selected]), want.selected)
                # a cluster of the sorted mesh is one run of vertices
                assert out.selected[-1] - out.selected[0] + 1 == out.selected.size
                checked += 1
    assert checked >= 4
    bpy.ops.object.mode_set(mode="OBJECT")
