"""The Click-Gaussian workflow in headless Blender (bpy): features stored on the mesh and kept
through .blend save/reopen, click selections as vertex groups, the engine link's faults (no
interpreter, engine killed mid-training, restart), clicking before training, and the end-to-end
run (import, engine, short training, click, move, delete, export, read back)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

REPO = Path(__file__).resolve().parents[1]


def _import(bpy, path):
    assert bpy.ops.import_scene.gaussian_splatting(filepath=str(path)) == {"FINISHED"}
    return bpy.context.active_object


def _fake_features(n: int, seed: int = 0):
    """Features with 3 coarse / 5 fine clusters and labels (a stand-in for a trained result,
    for the storage tests only)."""
    from click_gaussian_blender.engine.core.features import TrainedFeatures, normalize_rows

    rng = np.random.default_rng(seed)
    cc = normalize_rows(rng.normal(size=(3, 12)))
    fc = normalize_rows(rng.normal(size=(5, 24)))
    cl = rng.integers(-1, 3, n).astype(np.int32)
    fl = rng.integers(-1, 5, n).astype(np.int32)
    feats = rng.normal(size=(n, 24)).astype(np.float16)
    return TrainedFeatures(feats, cc, fc, cl, fl, settings={"iterations": 7}, scene_hash="abc")


def test_features_on_mesh_survive_save_reopen_and_delete(bpy, fox_path, tmp_path):
    from click_gaussian_blender import feature_store as FS

    obj = _import(bpy, fox_path)
    n = len(obj.data.vertices)
    tf = _fake_features(n)
    FS.store_features(obj.data, tf)
    name = obj.name
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    obj = bpy.data.objects[name]
    back = FS.load_features(obj.data)
    assert np.array_equal(back.features, tf.features)
    assert np.array_equal(back.coarse_labels, tf.coarse_labels)
    assert np.array_equal(back.fine_labels, tf.fine_labels)
    assert np.allclose(back.coarse_centers, tf.coarse_centers) and np.allclose(back.fine_centers, tf.fine_centers)
    assert back.settings["iterations"] == 7 and back.scene_hash == "abc"
    # delete every vertex of coarse cluster 1: the remaining rows stay aligned
    bpy.context.view_layer.objects.active = obj
    sel = tf.coarse_labels == 1
    obj.data.vertices.foreach_set("select", sel)
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.delete(type="VERT")
    bpy.ops.object.mode_set(mode="OBJECT")
    after = FS.load_features(obj.data)
    assert len(obj.data.vertices) == n - sel.sum()
    assert np.array_equal(after.features, tf.features[~sel])
    assert np.array_equal(after.fine_labels, tf.fine_labels[~sel])


def test_store_refuses_a_changed_mesh(bpy, fox_path):
    from click_gaussian_blender import feature_store as FS
    from click_gaussian_blender.engine.core.errors import TrainingError

    obj = _import(bpy, fox_path)
    with pytest.raises(TrainingError, match="changed during training"):
        FS.store_features(obj.data, _fake_features(len(obj.data.vertices) - 1))
    assert not FS.has_features(obj.data)


def test_write_selection_modes_and_group(bpy, fox_path):
    from click_gaussian_blender import mesh_read as MR
    from click_gaussian_blender import selection as S

    obj = _import(bpy, fox_path)
    n = len(obj.data.vertices)
    a, b = np.arange(0, 100), np.arange(50, 300)
    assert S.write_selection(obj, a, "replace", S.group_name("coarse", [2])) == 100
    assert S.write_selection(obj, b, "add", S.group_name("fine", [4, 7])) == 300
    assert S.write_selection(obj, np.arange(0, 10), "remove", None) == 290
    sel = MR.vertex_selection(obj.data)
    assert sel.sum() == 290 and not sel[:10].any() and sel[10:300].all() and not sel[300:].any()
    assert [g.name for g in S.click_groups(obj)] == ["CG coarse 2", "CG fine 4+7"]
    assert np.array_equal(S.group_members(obj, "CG fine 4+7"), b)
    assert n == len(obj.data.vertices)


def test_click_before_training_says_so(bpy, fox_path):
    from click_gaussian_blender import mesh_read as MR
    from click_gaussian_blender import ops_click
    from click_gaussian_blender import selection as S
    from click_gaussian_blender import viewport as VP

    obj = _import(bpy, fox_path)
    view = VP.view_camera(np.eye(4) + _translate(0, 0, -5), _persp(), 64, 64, np.array(obj.matrix_world), np.asarray(obj["gs_axis_matrix"]).reshape(4, 4))
    before = MR.vertex_selection(obj.data)
    out = ops_click.click(obj, view, 32, 32)
    assert not out.ok
    assert "no trained features" in out.message and "train it first" in out.message
    assert np.array_equal(MR.vertex_selection(obj.data), before) and not S.click_groups(obj)


def _translate(x, y, z):
    m = np.zeros((4, 4))
    m[:3, 3] = (x, y, z)
    return m


def _persp(fov=0.8, near=0.1, far=100.0):
    f = 1 / np.tan(fov / 2)
    return np.array([[f, 0, 0, 0], [0, f, 0, 0], [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
                     [0, 0, -1, 0]])


def _spatial_features(scene, seed: int = 0):
    """Stand-in features with spatial clusters (coarse: x halves; fine: x/z quadrants), exactly
    what a trained result looks like to the click path (labels, unit centres, features near them)."""
    from click_gaussian_blender.engine.core.features import TrainedFeatures, normalize_rows

    rng = np.random.default_rng(seed)
    m = scene.means
    coarse = (m[:, 0] > np.median(m[:, 0])).astype(np.int32)
    fine = coarse * 2 + (m[:, 2] > np.median(m[:, 2])).astype(np.int32)
    cc = normalize_rows(rng.normal(size=(2, 12)))
    fp = normalize_rows(rng.normal(size=(4, 12)))
    feats = np.concatenate([cc[coarse], fp[fine]], axis=1) + rng.normal(0, 0.01, (len(m), 24))
    fc = normalize_rows(np.concatenate([cc[np.arange(4) // 2], fp], axis=1))
    return TrainedFeatures(feats.astype(np.float16), cc, fc, coarse, fine)


def _view_of_camera(cam, axis, mw=np.eye(4)):
    """The Blender view/window matrices that show file-frame camera ``cam`` (object at ``mw``),
    turned back into an engine camera by the add-on's viewport math."""
    from click_gaussian_blender import viewport as VP

    gl_view = np.diag([1.0, -1.0, -1.0, 1.0]) @ cam.viewmat @ np.linalg.inv(mw @ axis)
    k, w, h, near, far = cam.K, cam.width, cam.height, 0.01, 100.0
    proj = np.array([[2 * k[0, 0] / w, 0, 1 - 2 * k[0, 2] / w, 0], [0, 2 * k[1, 1] / h, 2 * k[1, 2] / h - 1, 0],
                     [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)], [0, 0, -1, 0]])
    return VP.view_camera(gl_view, proj, w, h, mw, axis)


def _fox_with_features(bpy, fox_path):
    from click_gaussian_blender import feature_store as FS
    from click_gaussian_blender.engine.core.cameras import Camera, look_at_viewmat
    from click_gaussian_blender.engine.core.formats.ply import read_ply

    scene = read_ply(str(fox_path))
    obj = _import(bpy, fox_path)
    tf = _spatial_features(scene)
    FS.store_features(obj.data, tf)
    centre = np.median(scene.means, axis=0)
    eye = centre + np.array([0.0, -0.5, -3.0])
    cam = Camera(look_at_viewmat(eye, centre, np.array([0.0, -1.0, 0.0])), np.array([[150.0, 0, 64], [0, 150.0, 64], [0, 0, 1]]), 128, 128)
    return obj, scene, tf, cam


def test_click_selects_clusters_as_vertex_groups(bpy, fox_path):
    from click_gaussian_blender import mesh_read as MR
    from click_gaussian_blender import ops_click
    from click_gaussian_blender import selection as S
    from click_gaussian_blender.engine.core.click import ClickIndex, click_query

    obj, scene, tf, cam = _fox_with_features(bpy, fox_path)
    axis = np.asarray(obj["gs_axis_matrix"]).reshape(4, 4)
    view = _view_of_camera(cam, axis)
    uv, _ = cam.project(scene.means)
    left = tf.coarse_labels == 0
    inside = (uv[:, 0] > 0) & (uv[:, 0] < 128) & (uv[:, 1] > 0) & (uv[:, 1] < 128)
    # a pixel the engine itself resolves to coarse cluster 0 / 1
    index = ClickIndex.build(scene)
    picks = {}
    for i in np.flatnonzero(inside)[::97]:
        u, v = np.floor(uv[i]) + 0.5
        r = click_query(index, tf, cam, u, v, "coarse")
        if r.clusters and r.clusters[0] not in picks:
            picks[r.clusters[0]] = (u, v, r)
        if len(picks) == 2:
            break
    assert set(picks) == {0, 1}
    u0, v0, r0 = picks[0]
    out = ops_click.click(obj, view, u0, v0, level="coarse", mode="replace")
    assert out.ok, out.message
    assert out.group == "CG coarse 0" and "Selected" in out.message and "ms" in out.message
    assert np.array_equal(S.group_members(obj, out.group), r0.selected)
    assert np.array_equal(np.flatnonzero(MR.vertex_selection(obj.data)), np.flatnonzero(left))
    hl = np.empty(len(left), bool)
    obj.data.attributes["gs_highlight"].data.foreach_get("value", hl)
    assert np.array_equal(hl, left)  # visible in Object Mode through the splat display
    u1, v1, _ = picks[1]
    out = ops_click.click(obj, view, u1, v1, level="coarse", mode="add")
    assert out.ok and out.total_selected == len(scene.means)
    out = ops_click.click(obj, view, u0, v0, level="coarse", mode="remove")
    assert out.ok and np.array_equal(MR.vertex_selection(obj.data), ~left)
    assert [g.name for g in S.click_groups(obj)] == ["CG coarse 0", "CG coarse 1"]
    # fine level from Edit Mode: the helper switches to Object Mode and back
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    with S.object_mode(obj):
        out = ops_click.click(obj, view, u0, v0, level="fine", mode="replace")
    assert obj.mode == "EDIT"
    bpy.ops.object.mode_set(mode="OBJECT")
    assert out.ok and out.group.startswith("CG fine ")
    assert np.array_equal(S.group_members(obj, out.group), tf.members("fine", out.clusters))


def test_prepared_index_is_used_by_the_first_click(bpy, fox_path):
    from click_gaussian_blender import selection as S

    obj, scene, tf, cam = _fox_with_features(bpy, fox_path)
    S.invalidate()
    assert S.prepare(obj) and not S.prepare(obj)  # the second call sees the pending build
    fut = S._CACHE[obj.data.as_pointer()].index  # a Future until the first click needs it
    index, trained = S.click_data(obj)
    assert index is fut.result() and S._CACHE[obj.data.as_pointer()].index is index
    assert not S.prepare(obj)  # cached now
    assert np.array_equal(trained.coarse_labels, tf.coarse_labels)


def test_click_empty_space_and_outside(bpy, fox_path):
    from click_gaussian_blender import mesh_read as MR
    from click_gaussian_blender import ops_click
    from click_gaussian_blender import selection as S
    from click_gaussian_blender.engine.core.cameras import Camera, look_at_viewmat

    obj, scene, tf, cam = _fox_with_features(bpy, fox_path)
    axis = np.asarray(obj["gs_axis_matrix"]).reshape(4, 4)
    before = MR.vertex_selection(obj.data)
    away = Camera(look_at_viewmat(cam.center, 2 * cam.center - np.median(scene.means, axis=0), np.array([0.0, -1.0, 0.0])),
                  cam.K, 128, 128)
    out = ops_click.click(obj, _view_of_camera(away, axis), 64.5, 64.5)
    assert not out.ok and out.message.startswith("Nothing selected") and "empty space" in out.message
    out = ops_click.click(obj, _view_of_camera(cam, axis), 500.0, 64.5)
    assert not out.ok and "outside" in out.message
    assert np.array_equal(MR.vertex_selection(obj.data), before) and not S.click_groups(obj)


def test_click_follows_moved_gaussians(bpy, fox_path):
    """After an edit moves the whole object's vertices, the cached click index is rebuilt and
    the click finds the Gaussians where they are now."""
    from click_gaussian_blender import mesh_read as MR
    from click_gaussian_blender import ops_click

    obj, scene, tf, cam = _fox_with_features(bpy, fox_path)
    axis = np.asarray(obj["gs_axis_matrix"]).reshape(4, 4)
    view = _view_of_camera(cam, axis)
    uv, _ = cam.project(np.median(scene.means, axis=0)[None])
    u, v = np.floor(uv[0]) + 0.5
    assert ops_click.click(obj, view, u, v).ok
    co = MR.vertex_positions(obj.data) + np.array([50.0, 0.0, 0.0], np.float32)  # far out of view
    obj.data.vertices.foreach_set("co", co.reshape(-1))
    obj.data.update()
    bpy.context.view_layer.update()  # depsgraph update: the cache is marked stale
    out = ops_click.click(obj, view, u, v)
    assert not out.ok and "empty space" in out.message


def test_group_actions_keep_features_aligned(bpy, fox_path):
    """Separate / duplicate / hide / delete a click selection with Blender's own operators: the
    stored features travel with the Gaussians (a separated part can be clicked on its own)."""
    from click_gaussian_blender import feature_store as FS
    from click_gaussian_blender import ops_click
    from click_gaussian_blender import selection as S

    obj, scene, tf, cam = _fox_with_features(bpy, fox_path)
    n = len(scene.means)
    right = np.flatnonzero(tf.coarse_labels == 1)
    S.write_selection(obj, right, "replace", "CG coarse 1")
    S.write_selection(obj, np.flatnonzero(tf.fine_labels == 0), "replace", "CG fine 0")
    bpy.context.view_layer.objects.active = obj
    ops_click.group_action(bpy.context, obj, "CG fine 0", "DUPLICATE")
    bpy.ops.object.mode_set(mode="OBJECT")
    m0 = int((tf.fine_labels == 0).sum())
    assert len(obj.data.vertices) == n + m0
    dup = FS.load_features(obj.data)
    assert np.array_equal(dup.features[n:], tf.features[tf.fine_labels == 0])
    ops_click.group_action(bpy.context, obj, "CG coarse 1", "SEPARATE")
    assert obj.mode == "OBJECT" and len(obj.data.vertices) == n + m0 - len(right)
    parts = [o for o in bpy.data.objects if o is not obj and o.type == "MESH"]
    assert len(parts) == 1
    part = FS.load_features(parts[0].data)
    assert np.array_equal(part.coarse_labels, tf.coarse_labels[right])
    assert np.array_equal(part.features, tf.features[right])
    assert np.allclose(part.coarse_centers, tf.coarse_centers)  # centres travel with the mesh
    ops_click.group_action(bpy.context, obj, "CG fine 0", "HIDE")
    bpy.ops.object.mode_set(mode="OBJECT")
    hidden = np.empty(len(obj.data.vertices), bool)
    obj.data.vertices.foreach_get("hide", hidden)
    assert hidden.sum() == 2 * m0  # the duplicates carry the group too
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.reveal(select=False)  # Blender's tools act on visible vertices only
    ops_click.group_action(bpy.context, obj, "CG fine 0", "DELETE")
    assert len(obj.data.vertices) == n - len(right) - m0
    with pytest.raises(S.ClickError, match="no selection"):
        ops_click.group_action(bpy.context, obj, "CG fine 99", "SELECT")


def test_train_operator_without_engine_reports(bpy, fox_path):
    from click_gaussian_blender import engine_link

    obj = _import(bpy, fox_path)
    assert not engine_link.LINK.ready
    with pytest.raises(RuntimeError, match="engine is not running"):
        bpy.ops.clickgs.train()
    assert not obj.get("gs_features_meta")


class _Layout:
    """Records what a panel draws and checks every property and operator it names exists."""

    def __init__(self, bpy, log):
        self._bpy, self._log = bpy, log

    def _child(self, *a, **k):
        return _Layout(self._bpy, self._log)

    box = row = column = grid_flow = _child

    def label(self, text="", **k):
        self._log.append(("label", text))

    def prop(self, data, name, text="", **k):
        if name.startswith('["'):  # an ID property (Geometry Nodes modifier inputs before 5.1)
            assert name[2:-2] in data.keys(), f"{type(data).__name__} has no ID property {name!r}"
        else:
            assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self._log.append(("prop", text or name))

    def operator(self, idname, **k):
        mod, name = idname.split(".")
        assert hasattr(getattr(self._bpy.ops, mod), name), idname
        self._log.append(("operator", idname))
        return type("Props", (), {})()

    def progress(self, factor=0.0, text="", **k):
        assert 0.0 <= factor <= 1.0
        self._log.append(("progress", text))

    def template_list(self, listtype, listid, data, prop, active_data, active_prop, **k):
        assert hasattr(self._bpy.types, listtype) and prop in data.bl_rna.properties
        assert active_prop in active_data.bl_rna.properties
        self._log.append(("list", prop))


def _draw_panel(bpy):
    from click_gaussian_blender import panel

    log = []
    fake = type("P", (), {})()
    fake.layout = _Layout(bpy, log)
    panel.CLICKGS_PT_main.draw(fake, bpy.context)
    return log


def test_object_panel_draws_the_display_settings(bpy, fox_path):
    """The Object properties panel of a splat object draws its three display settings as
    editable fields (modifier inputs are stored differently from Blender 5.1 on)."""
    from click_gaussian_blender import panel_object

    _import(bpy, fox_path)
    log = []
    fake = type("P", (), {})()
    fake.layout = _Layout(bpy, log)
    panel_object.CLICKGS_PT_splat_object.draw(fake, bpy.context)
    assert [t for k, t in log if k == "prop"] == ["Point Size", "Max Radius", "Display Ratio"]
    assert ("operator", "object.gaussian_highlight_selected") in log


def test_panel_draws_engine_training_selection_and_export(bpy, fox_path):
    from click_gaussian_blender import engine_link, selection as S

    log = _draw_panel(bpy)
    assert ("operator", "clickgs.engine_start") in log and ("operator", "import_scene.gaussian_splatting") in log
    obj, scene, tf, cam = _fox_with_features(bpy, fox_path)
    S.write_selection(obj, np.arange(10), "replace", "CG coarse 0")
    bpy.context.scene.clickgs.group_index = 0
    # a failed engine and a failed training run are shown as text
    link = engine_link.LINK
    link.state, link.error = "failed", "The engine stopped: engine exited with code -9 (SIGKILL)"
    job = engine_link.TrainJob.__new__(engine_link.TrainJob)
    job.state, job.error, job.progress, job.phase = "failed", "The engine stopped during train: gone", {}, "train"
    link.job = job
    try:
        log = _draw_panel(bpy)
    finally:
        link.state, link.error, link.job = "stopped", "", None
    labels = [t for k, t in log if k == "label"]
    assert "The engine stopped: engine exited with code -9 (SIGKILL)" in labels
    assert "The engine stopped during train: gone" in labels
    assert any(t.startswith("Features: 2 objects, 4 parts") for t in labels)
    ops = [t for k, t in log if k == "operator"]
    assert {"clickgs.train", "clickgs.click_select", "clickgs.group_action", "export_scene.gaussian_splatting"} <= set(ops)
    assert ("list", "vertex_groups") in log


def test_interpreter_check_describes_the_engine_python(bpy, engine_python):
    from click_gaussian_blender import preferences
    from click_gaussian_blender.engine.link.launcher import EngineStartError, check_interpreter

    text = preferences.describe_check(check_interpreter(engine_python))
    assert text.startswith("OK: Python ") and "torch " in text and ("CPU only" in text or "CUDA" in text)
    with pytest.raises(EngineStartError, match="does not exist"):
        check_interpreter("/nonexistent/python3")


# ---------------------------------------------------------------------- engine link faults

def test_training_progress_text_and_fraction():
    from click_gaussian_blender import engine_link

    job = engine_link.TrainJob.__new__(engine_link.TrainJob)
    job.state, job.phase, job.error, job.summary = "running", "train", "", {}
    job.progress = {"phase": "masks", "done": 3, "total": 12}
    assert job.status_text() == "Preparing masks 3/12" and job.fraction == 0.0
    job.progress = {"phase": "train", "iteration": 750, "total": 3000, "losses": {"total": -0.5}, "eta_s": 125.0}
    assert job.status_text() == "Training 750/3000, loss -0.500, ETA 2 min 05 s" and job.fraction == 0.25
    job.state, job.summary = "done", {"seconds": 61.2, "coarse_clusters": 8, "fine_clusters": 28}
    assert job.status_text() == "Trained in 61 s: 8 objects, 28 parts"
    assert engine_link.format_seconds(3725) == "1 h 02 min"


def test_provisional_result_is_fetched_beside_training_and_handed_over():
    from click_gaussian_blender import engine_link

    class Reply:
        def features(self):
            return "provisional features"

    class Fut:
        def done(self):
            return True

        def result(self):
            return Reply()

    class Client:
        calls = 0

        def get_features(self):
            Client.calls += 1
            return Fut()

    class Pending:
        def done(self):
            return False

    link = type("L", (), {"client": Client()})()
    got = []
    job = engine_link.TrainJob.__new__(engine_link.TrainJob)
    job.link, job.state, job.phase, job.warnings = link, "running", "train", []
    job.on_provisional, job.provisional = got.append, None
    job._provisional_wanted, job._provisional_future, job._future = False, None, Pending()
    job._on_progress({"phase": "train", "iteration": 100, "total": 3000, "provisional_result": 100})
    job.poll()  # asks for the features
    job.poll()  # hands them over
    assert Client.calls == 1 and got == [job] and job.provisional == "provisional features"
    assert job.state == "running"
    # the connection lost (the link dropped its client): no traceback, the train step reports it
    link.client = None
    job._on_progress({"phase": "train", "iteration": 200, "total": 3000, "provisional_result": 200})
    job.poll()
    assert Client.calls == 1 and job.state == "running"


def test_no_interpreter_configured(bpy):
    from click_gaussian_blender import engine_link, ops_engine
    from click_gaussian_blender.engine.core.errors import EngineError

    link = engine_link.EngineLink()
    with pytest.raises(EngineError, match="No engine Python interpreter is configured"):
        link.start(engine_link.EngineConfig(python=""))
    assert link.state == "failed" and "Preferences" in link.status_text()
    # the operator reports it as an error instead of raising (the add-on is not enabled here)
    old = engine_link.LINK
    engine_link.LINK = link
    try:
        with pytest.raises(RuntimeError, match="No engine Python interpreter"):
            bpy.ops.clickgs.engine_start()  # bpy turns an ERROR report into RuntimeError
    finally:
        engine_link.LINK = old
    with pytest.raises(EngineError, match="not running"):
        link.train(None)  # type: ignore[arg-type]
    _ = ops_engine


def test_wrong_interpreter_is_reported(bpy, tmp_path):
    from click_gaussian_blender import engine_link

    link = engine_link.EngineLink()
    link.start(engine_link.EngineConfig(python=str(tmp_path / "nope" / "python")))
    link.wait_ready(30)
    assert link.state == "failed" and "does not exist" in link.error


def test_training_inputs_are_checked(bpy, fox_path, shared_data, tmp_path):
    from click_gaussian_blender import ops_train, scene_settings
    from click_gaussian_blender.engine.core.errors import EngineError
    from click_gaussian_blender.engine.core.schedule import GFL_START_LATEST, gfl_start_for

    obj = _import(bpy, fox_path)
    props = scene_settings.get(bpy.context.scene)
    props.training_input, props.cameras_path = "CAMERAS", str(tmp_path / "missing.json")
    with pytest.raises(EngineError, match="capture cameras file .*missing.json does not exist"):
        ops_train.training_request(bpy.context, obj, props)
    props.cameras_path = str(shared_data / "garden_cameras.npz")
    req = ops_train.training_request(bpy.context, obj, props)
    assert req.cameras_path.endswith("garden_cameras.npz") and req.scene.num_gaussians == 50000
    props.training_input, props.mask_source = "ORBIT", "sam"
    with pytest.raises(EngineError, match="SAM needs a checkpoint"):
        ops_train.training_request(bpy.context, obj, props)
    props.mask_source, props.mask_folder = "folder", str(tmp_path / "nope")
    with pytest.raises(EngineError, match="mask folder .* does not exist"):
        ops_train.training_request(bpy.context, obj, props)
    props.mask_source = "builtin"
    req = ops_train.training_request(bpy.context, obj, props)
    assert req.orbit == (props.orbit_views, props.orbit_size, props.orbit_size) and req.mask_kind == "builtin"
    assert req.settings["iterations"] == 3000
    assert req.settings["gfl_start"] == gfl_start_for(3000, latest=GFL_START_LATEST)  # the product's start
    props.iterations, props.gfl_start_fraction = 400, 0.1  # GFL within short runs, from the panel's fraction
    req = ops_train.training_request(bpy.context, obj, props)
    assert (req.settings["iterations"], req.settings["gfl_start"], req.settings["gfl_interval"]) == (400, 40, 13)
    props.paper_constants = True  # the paper's constants: GFL from 2/3 of the run, L_neg weight 0.1
    req = ops_train.training_request(bpy.context, obj, props)
    assert (req.settings["gfl_start"], req.settings["w_neg"]) == (266, 0.1)
    props.iterations, props.gfl_start_fraction, props.paper_constants = 3000, 2 / 3, False
    empty = bpy.data.objects.new("empty", None)
    with pytest.raises(EngineError, match="select a Gaussian Splatting object"):
        ops_train.training_request(bpy.context, empty, props)


def test_remote_engine_connect_wrong_token_and_disconnect(bpy, engine_python):
    """A remote engine (e.g. a GPU box through an SSH tunnel): host:port + token; a wrong token
    is a clear failure; stopping only disconnects (the remote engine keeps running)."""
    from click_gaussian_blender import engine_link
    from click_gaussian_blender.engine.link.launcher import launch_engine

    proc = launch_engine(engine_python, device="cpu")
    try:
        link = engine_link.EngineLink()
        link.start(engine_link.EngineConfig(mode="remote", host="127.0.0.1", port=proc.port, token="0" * 64))
        link.wait_ready(30)
        assert link.state == "failed" and "could not start" in link.error
        link.start(engine_link.EngineConfig(mode="remote", host="127.0.0.1", port=proc.port, token=proc.token))
        assert link.wait_ready(30), link.error
        assert link.status_text().startswith("Engine running (remote; ")
        link.stop()
        assert link.state == "stopped" and proc.alive()
        link2 = engine_link.EngineLink()
        with pytest.raises(Exception, match="port and token"):
            link2.start(engine_link.EngineConfig(mode="remote", port=0, token=""))
    finally:
        proc.stop()


@pytest.mark.slow
def test_engine_killed_mid_training_then_restart(bpy, fox_path, engine_python):
    from click_gaussian_blender import engine_link, feature_store, ops_train, scene_settings

    obj = _import(bpy, fox_path)
    co_before = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co_before)
    link = engine_link.LINK
    link.start(engine_link.EngineConfig(python=engine_python, device="cpu"))
    assert link.wait_ready(120), link.error
    props = scene_settings.get(bpy.context.scene)
    props.orbit_views, props.orbit_size = 4, 64
    job = ops_train.start_training(bpy.context, obj, props, {"iterations": 100000, "pixels_per_iter": 256})
    os.kill(link.process.pid, signal.SIGKILL)
    link.run_until_idle(60)
    assert job.state == "failed"
    assert "engine stopped" in job.error and "start the engine and train again" in job.error
    assert link.state == "failed" and "SIGKILL" in link.status_text()
    # the scene is intact and untouched by the failed run
    co_after = np.empty_like(co_before)
    obj.data.vertices.foreach_get("co", co_after)
    assert np.array_equal(co_before, co_after) and not feature_store.has_features(obj.data)
    # training can be restarted with a fresh engine
    link.start(engine_link.EngineConfig(python=engine_python, device="cpu"))
    assert link.wait_ready(120), link.error
    job = ops_train.start_training(bpy.context, obj, props, {"iterations": 100000, "pixels_per_iter": 256})
    deadline = time.monotonic() + 60
    while job.phase in ("upload", "cameras", "masks source") and job.state == "running" and time.monotonic() < deadline:
        link.poll()
        time.sleep(0.05)
    assert job.state == "running" and job.phase == "train", job.error
    job.cancel()
    link.run_until_idle(120)
    assert job.state == "cancelled" and "cancelled" in job.status_text()
    assert not feature_store.has_features(obj.data) and link.ready  # the engine lives on
    link.stop()
    assert link.state == "stopped"


# ---------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_end_to_end_workflow(bpy, tmp_path, engine_python):
    """Procedural scene -> import -> engine -> short training -> click -> move -> fine delete
    -> export -> read back; the vertex group equals what the engine's click selects."""
    sys.path.insert(0, str(REPO / "scripts"))
    import demo_workflow

    report = demo_workflow.run_workflow(None, tmp_path / "demo", quick=True, render=False,
                                        python=engine_python, verify=True)
    assert report["click"]["ok"], report["click"]
    assert report["click"]["matches_engine"]
    assert report["train"]["vertices_sorted_by_cluster"]  # the add-on sorted the mesh by cluster
    assert report["deleted"] > 0 and report["fine_click"]["ok"]
    assert report["export"]["count"] == report["export"]["expected_count"] == report["num_gaussians"] - report["deleted"]
    assert report["export"]["moved_ok"]
    assert report["blend_reopen"]["features_equal"]
