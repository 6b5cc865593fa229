"""Import, display and export of 3DGS scenes in headless Blender (bpy), through the add-on's
operators, with the add-on registered from the repository."""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

REPO = Path(__file__).resolve().parents[1]
SH3 = "pc_short_sh3_trailing.ply"


def import_ply(bpy, path, **kw):
    assert bpy.ops.import_scene.gaussian_splatting(filepath=str(path), **kw) == {"FINISHED"}
    return bpy.context.active_object


def attr(mesh, name: str, width: int, key: str = "vector", dtype=np.float32) -> np.ndarray:
    out = np.empty(len(mesh.vertices) * width, dtype)
    mesh.attributes[name].data.foreach_get(key, out)
    return out.reshape(len(mesh.vertices), width) if width > 1 else out


def coords(mesh) -> np.ndarray:
    out = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", out)
    return out.reshape(-1, 3)


def export(bpy, path, **kw):
    return bpy.ops.export_scene.gaussian_splatting(filepath=str(path), **kw)


def check_all_properties(mesh, scene, axis: np.ndarray) -> None:
    from click_gaussian_blender import attributes as A

    n = scene.num_gaussians
    assert len(mesh.vertices) == n
    np.testing.assert_array_equal(attr(mesh, A.POSITION, 3), scene.means)
    np.testing.assert_array_equal(attr(mesh, A.INDEX, 1, "value", np.int32), np.arange(n))
    np.testing.assert_array_equal(attr(mesh, A.F_DC, 3), scene.sh_dc)
    for k in range(scene.sh_rest.shape[1]):
        np.testing.assert_array_equal(attr(mesh, A.sh_name(k + 1), 3), scene.sh_rest[:, k])
    assert A.sh_name(scene.sh_rest.shape[1] + 1) not in mesh.attributes
    np.testing.assert_array_equal(attr(mesh, A.OPACITY, 1, "value"), scene.opacities)
    np.testing.assert_array_equal(attr(mesh, A.SCALE, 3), scene.scales)
    np.testing.assert_array_equal(attr(mesh, A.ROTATION, 4, "value"), scene.quats)
    for name, arr in scene.extra.items():
        np.testing.assert_array_equal(attr(mesh, A.EXTRA_PREFIX + name, 1, "value", arr.dtype), arr)
    want = (scene.means.astype(np.float64) @ axis[:3, :3].T + axis[:3, 3]).astype(np.float32)
    np.testing.assert_array_equal(coords(mesh), want)
    rgba = attr(mesh, A.COLOR, 4, "color")
    np.testing.assert_allclose(rgba, A.display_colors(scene), atol=1e-6)


# ------------------------------------------------------------------------------- import


def test_import_fox_every_property(bpy, fox_path: Path) -> None:
    from engine.core.formats.ply import read_ply

    obj = import_ply(bpy, fox_path)
    scene = read_ply(fox_path)
    # default axes: Auto detects that this file is z-up, so it arrives upright as it is
    axis = np.eye(4)
    np.testing.assert_allclose(np.array(obj["gs_axis_matrix"]).reshape(4, 4), axis, atol=1e-12)
    check_all_properties(obj.data, scene, axis)
    assert obj.modifiers["Gaussian Splats"].type == "NODES"
    assert obj.name == "fox_cc0" and obj["gs_count"] == 50_000


def test_auto_up_axis_turns_each_scene_upright(bpy, fox_path: Path, shared_data: Path, capsys) -> None:
    """The importer's default (Auto) uses the engine's own up estimate: the z-up fox arrives as
    it is, the y-down guitar (the COLMAP habit) turned to z-up; the Info line names the axis.
    Explicit axes are honoured, and a forward parallel to the up axis is replaced."""
    from click_gaussian_blender import io_import
    from engine.core.formats.ply import read_ply

    import_ply(bpy, fox_path)
    assert "(up axis +Z, detected)" in capsys.readouterr().out
    obj = import_ply(bpy, shared_data / "guitar.compressed.ply")
    assert "(up axis -Y, detected)" in capsys.readouterr().out
    # -Y up with its forward Z: (x, y, z) -> (x, z, -y)
    np.testing.assert_allclose(np.array(obj["gs_axis_matrix"]).reshape(4, 4),
                               [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], atol=1e-12)
    obj = import_ply(bpy, fox_path, axis_up="-Y")
    assert "(up axis -Y)" in capsys.readouterr().out
    np.testing.assert_allclose(np.array(obj["gs_axis_matrix"]).reshape(4, 4),
                               [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], atol=1e-12)
    fox = read_ply(fox_path)
    assert io_import.resolve_axes(fox, "AUTO", "AUTO") == ("Y", "Z", True)
    assert io_import.resolve_axes(fox, "-Z", "Y") == ("-Z", "Y", False)
    assert io_import.resolve_axes(fox, "Y", "-Y") == ("Z", "-Y", False)  # parallel: replaced
    with pytest.raises(ValueError, match="up axis must be AUTO or one of"):
        io_import.resolve_axes(fox, "AUTO", "UP")
    # a scene turned so its up is another axis is detected as that axis
    turned = fox.subset(np.arange(fox.num_gaussians))
    turned.means = fox.means[:, [0, 2, 1]] * np.array([1, -1, 1], np.float32)  # file up +Z -> -Y
    assert io_import.detect_up_axis(turned) == "-Y"


def test_import_sh3_fixture_with_axis_options(bpy, shared_data: Path) -> None:
    from engine.core.formats.ply import read_ply

    path = shared_data / SH3
    obj = import_ply(bpy, path, axis_forward="-Z", axis_up="Y")  # OpenGL-style file
    scene = read_ply(path)
    assert scene.sh_degree == 3 and set(scene.extra) == {"nx", "ny", "nz"}
    axis = np.array(obj["gs_axis_matrix"]).reshape(4, 4)
    np.testing.assert_allclose(axis, [[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], atol=1e-12)
    check_all_properties(obj.data, scene, axis)


def test_import_supersplat_compressed(bpy, shared_data: Path) -> None:
    from engine.core.formats.ply import read_ply

    path = shared_data / "guitar.compressed.ply"
    obj = import_ply(bpy, path, display_ratio=0.25)
    assert obj.name == "guitar"
    check_all_properties(obj.data, read_ply(path), np.array(obj["gs_axis_matrix"]).reshape(4, 4))


def test_import_splat_file_and_point_major_scenes(bpy, fox_path: Path, shared_data: Path,
                                                   tmp_path: Path) -> None:
    """An antimatter15 .splat imports through the same operator (its dialog lists *.splat); a
    scene whose SH are point-major (not read for Blender) builds the same attributes."""
    from click_gaussian_blender import io_import
    from engine.core.formats.ply import read_ply

    rna = bpy.ops.import_scene.gaussian_splatting.get_rna_type()
    assert "*.splat" in rna.properties["filter_glob"].default.split(";")
    fox = read_ply(fox_path).subset(np.arange(0, 50_000, 7))
    rec = np.zeros(fox.num_gaussians, [("p", "<f4", (3,)), ("s", "<f4", (3,)), ("c", "u1", (4,)),
                                       ("r", "u1", (4,))])
    rec["p"], rec["s"] = fox.means, np.exp(fox.scales)
    rec["c"], rec["r"] = 200, 128
    path = tmp_path / "statue.splat"
    rec.tofile(path)
    obj = import_ply(bpy, path)
    assert obj.name == "statue" and obj["gs_count"] == fox.num_gaussians
    check_all_properties(obj.data, read_ply(path), np.array(obj["gs_axis_matrix"]).reshape(4, 4))
    # drag and drop: the file handler takes .splat too, and a dropped one imports directly
    assert ".splat" in bpy.types.CLICKGS_FH_ply.bl_file_extensions.split(";")
    bpy.data.objects.remove(obj)
    res = bpy.ops.import_scene.gaussian_splatting("INVOKE_DEFAULT", directory=str(tmp_path),
                                                  files=[{"name": path.name}])
    assert res == {"FINISHED"} and bpy.data.objects["statue"]["gs_count"] == fox.num_gaussians

    scene = read_ply(shared_data / SH3)  # point-major SH [N, K, 3]
    assert scene.sh_rest.flags.c_contiguous and scene.sh_degree == 3
    obj = io_import.scene_to_object(scene, bpy.context, io_import.ImportSettings(), source=str(shared_data / SH3))
    check_all_properties(obj.data, scene, np.eye(4))


def test_bad_input_is_a_one_line_error(bpy, tmp_path: Path, fox_path: Path) -> None:
    import plyfile

    mesh_ply = tmp_path / "cube.ply"
    verts = np.array([(0, 0, 0), (1, 0, 0), (0, 1, 0)], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    plyfile.PlyData([plyfile.PlyElement.describe(verts, "vertex"),
                     plyfile.PlyElement.describe(faces, "face")]).write(str(mesh_ply))
    truncated = tmp_path / "truncated.ply"
    truncated.write_bytes(fox_path.read_bytes()[:1_000_000])
    for path in (mesh_ply, truncated, tmp_path / "missing.ply"):
        with pytest.raises(RuntimeError) as info:
            bpy.ops.import_scene.gaussian_splatting(filepath=str(path))
        msg = str(info.value)
        assert path.name in msg and "Traceback" not in msg, msg
        assert len(msg.strip().splitlines()) == 1, msg
    assert len(bpy.data.objects) == 0


# ------------------------------------------------------------------------------- display


def test_display_sizes_ratio_and_highlight(bpy, fox_path: Path) -> None:
    from click_gaussian_blender import display

    obj = import_ply(bpy, fox_path)
    n = len(obj.data.vertices)

    def points():
        dg = bpy.context.evaluated_depsgraph_get()
        dg.update()
        ev = obj.evaluated_get(dg)
        if not hasattr(ev, "evaluated_geometry"):
            pytest.skip("reading evaluated point clouds needs Object.evaluated_geometry (Blender 5.0+)")
        geometry = ev.evaluated_geometry()  # keep a reference while reading
        pc = geometry.pointcloud
        m = len(pc.points)
        r = np.empty(m, np.float32)
        pc.attributes["radius"].data.foreach_get("value", r)
        idx = np.empty(m, np.int32)
        pc.attributes["gs_index"].data.foreach_get("value", idx)
        sel = np.empty(m, np.float32)
        pc.attributes["gs_selected"].data.foreach_get("value", sel)
        return r, idx, sel

    r, idx, _ = points()
    assert len(r) == n
    scales = attr(obj.data, "gs_scale", 3)[idx]
    cap = display.get_display(obj)["Max Radius"]
    np.testing.assert_allclose(r, np.minimum(np.exp(scales.max(1)), cap), rtol=1e-5)
    display.set_display(obj, point_size=2.0, display_ratio=0.3)
    r2, idx2, _ = points()
    assert 0.25 * n < len(r2) < 0.35 * n
    np.testing.assert_allclose(r2, np.minimum(2 * np.exp(attr(obj.data, "gs_scale", 3)[idx2].max(1)), cap), rtol=1e-5)
    display.set_display(obj, point_size=1.0, display_ratio=1.0)
    mask = np.zeros(n, bool)
    mask[1000:3000] = True
    obj.data.vertices.foreach_set("select", mask)
    assert bpy.ops.object.gaussian_highlight_selected() == {"FINISHED"}
    _, idx3, sel = points()
    np.testing.assert_array_equal(sel > 0.5, mask[idx3])
    assert bpy.ops.object.gaussian_highlight_selected(clear=True) == {"FINISHED"}
    assert points()[2].sum() == 0


@pytest.mark.slow
def test_cycles_render_of_the_fox(bpy, fox_path: Path, tmp_path: Path) -> None:
    """Writes a small Cycles PNG of the imported fox (look at it: tmp_path/fox_cycles.png)."""
    import mathutils

    obj = import_ply(bpy, fox_path, axis_forward="Y", axis_up="Z")  # this file is z-up
    sc = bpy.context.scene
    co = coords(obj.data)
    lo, hi = np.quantile(co, 0.02, 0), np.quantile(co, 0.98, 0)
    centre, size = mathutils.Vector((lo + hi) / 2), float((hi - lo).max())
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    sc.collection.objects.link(cam)
    cam.location = centre + mathutils.Vector((0.0, 1.5 * size, 0.15 * size))
    cam.rotation_euler = (centre - cam.location).to_track_quat("-Z", "Y").to_euler()
    sc.camera = cam
    sc.render.engine = "CYCLES"
    sc.cycles.device = "CPU"
    sc.cycles.samples = 4
    sc.cycles.use_denoising = False
    sc.render.resolution_x = sc.render.resolution_y = 128
    sc.render.resolution_percentage = 100
    sc.render.film_transparent = True
    out = tmp_path / "fox_cycles.png"

    def render(path: Path) -> np.ndarray:
        sc.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
        img = bpy.data.images.load(str(path))
        px = np.array(img.pixels[:], np.float32).reshape(128, 128, 4)
        bpy.data.images.remove(img)
        return px

    from click_gaussian_blender import display

    try:
        px = render(out)
        # highlight the top fifth (the fox): it turns orange in the render
        display.set_highlight(obj, co[:, 2] > np.quantile(co[:, 2], 0.8))
        hl = render(tmp_path / "fox_highlight.png")
    finally:
        bpy.data.objects.remove(cam)

    def orange(p: np.ndarray) -> int:
        return int(((p[..., 3] > 0.5) & (p[..., 0] > 0.5) & (p[..., 1] > 0.1) & (p[..., 2] < 0.5 * p[..., 1])).sum())

    assert orange(hl) > orange(px) + 200
    covered = px[..., 3] > 0.5
    assert 0.1 < covered.mean() < 0.9  # the statue fills part of the frame
    red = covered & (px[..., 0] > 0.3) & (px[..., 0] > 2 * px[..., 1]) & (px[..., 0] > 2 * px[..., 2])
    assert red.sum() >= 10  # the fox's red bib
    rows = np.flatnonzero(covered.any(1))
    assert rows.max() - rows.min() > 0.6 * 128  # tall statue, upright


# ------------------------------------------------------------------------------- export


def test_unedited_roundtrip_is_exact(bpy, fox_path: Path, shared_data: Path, tmp_path: Path) -> None:
    from engine.core.formats.ply import read_ply

    import_ply(bpy, fox_path)
    assert export(bpy, tmp_path / "fox.ply") == {"FINISHED"}
    assert filecmp.cmp(tmp_path / "fox.ply", fox_path, shallow=False)  # byte for byte
    assert np.isposinf(read_ply(tmp_path / "fox.ply").opacities).sum() == 37  # kept, not clamped
    import_ply(bpy, shared_data / SH3)
    assert export(bpy, tmp_path / "sh3.ply") == {"FINISHED"}
    a, b = read_ply(shared_data / SH3), read_ply(tmp_path / "sh3.ply")
    assert a.layout.vertex_dtype == b.layout.vertex_dtype
    for name in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in a.extra:
        np.testing.assert_array_equal(a.extra[name], b.extra[name])


def test_export_never_overwrites_without_asking(bpy, shared_data: Path, tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "scene.ply"
    shutil.copy(shared_data / SH3, src)
    before = src.read_bytes()
    obj = import_ply(bpy, src)
    obj.location = (1, 2, 3)
    with pytest.raises(RuntimeError, match="refusing to overwrite"):
        export(bpy, src)
    assert src.read_bytes() == before
    assert export(bpy, src, overwrite=True) == {"FINISHED"}
    assert src.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.ply"]  # no temp files left


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a chmod 555 folder, or (as root, who
    ignores permissions) a kernel folder such as /sys/fs that refuses new files."""
    import tempfile

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    for cand in (folder, Path("/sys/fs"), Path("/proc/sys")):
        try:
            fd, probe = tempfile.mkstemp(dir=cand)
        except OSError:
            return cand
        os.close(fd)
        os.unlink(probe)
    pytest.skip("no folder refuses writes here (root on a writable filesystem)")


def test_export_into_read_only_folder_fails_cleanly(bpy, shared_data: Path, tmp_path: Path) -> None:
    folder = _read_only_folder(tmp_path)
    target = folder / "cgs_export_test.ply"
    before = sorted(os.listdir(folder))
    import_ply(bpy, shared_data / SH3)
    with pytest.raises(RuntimeError) as info:
        export(bpy, target)
    msg = str(info.value)
    assert target.name in msg and "Traceback" not in msg, msg
    assert len(msg.strip().splitlines()) == 1, msg
    assert sorted(os.listdir(folder)) == before  # nothing half-written
    assert not target.exists()


def _gaussian_arrays(obj):
    from click_gaussian_blender import io_export

    return io_export.object_to_scene(obj)


@pytest.mark.parametrize("scale", [(1.7, 1.7, 1.7), (1.0, 2.5, 0.6), (-1.2, 1.2, 1.2)],
                         ids=["uniform", "non-uniform", "mirror"])
def test_object_transform_export_matches_transform_module(bpy, shared_data: Path, tmp_path: Path, scale) -> None:
    from engine.core.formats.ply import read_ply
    from engine.core.transform import apply_affine

    obj = import_ply(bpy, shared_data / SH3)
    obj.location = (0.5, -1.0, 2.0)
    obj.rotation_euler = (0.3, -0.7, 1.1)
    obj.scale = scale
    bpy.context.view_layer.update()
    assert export(bpy, tmp_path / "moved.ply") == {"FINISHED"}
    axis = np.array(obj["gs_axis_matrix"]).reshape(4, 4)
    total = np.linalg.inv(axis) @ np.array(obj.matrix_world) @ axis
    want = apply_affine(read_ply(shared_data / SH3), total)
    got = read_ply(tmp_path / "moved.ply")
    np.testing.assert_allclose(got.means, want.means, atol=1e-5)
    np.testing.assert_allclose(got.scales, want.scales, atol=1e-5)
    np.testing.assert_allclose(got.quats, want.quats, atol=1e-5)
    np.testing.assert_allclose(got.sh_rest, want.sh_rest, atol=1e-5)
    np.testing.assert_array_equal(got.sh_dc, want.sh_dc)
    assert got.layout.vertex_dtype == want.layout.vertex_dtype  # the input's property layout


def _select(bpy, obj, mask) -> None:
    if obj.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    obj.data.vertices.foreach_set("select", np.asarray(mask, bool))
    obj.data.update()
    bpy.ops.object.mode_set(mode="EDIT")


def test_duplicate_delete_and_non_uniform_scale(bpy, shared_data: Path, tmp_path: Path) -> None:
    from engine.core.formats.ply import read_ply
    from engine.core.transform import quat_to_matrix

    src = read_ply(shared_data / SH3)
    obj = import_ply(bpy, shared_data / SH3, axis_forward="Y", axis_up="Z")  # identity axes
    n = len(obj.data.vertices)
    # 1. non-uniform scale of the first 30 about the origin, in Edit Mode
    m1 = np.zeros(n, bool)
    m1[:30] = True
    _select(bpy, obj, m1)
    bpy.ops.transform.resize(value=(1.0, 1.0, 2.5), center_override=(0.0, 0.0, 0.0))
    # 2. duplicate Gaussians 40-49 and move the copies
    bpy.ops.object.mode_set(mode="OBJECT")
    m2 = np.zeros(n, bool)
    m2[40:50] = True
    _select(bpy, obj, m2)
    bpy.ops.mesh.duplicate_move(TRANSFORM_OT_translate={"value": (3.0, 0.0, 0.0)})
    # 3. delete Gaussians 60-69
    bpy.ops.object.mode_set(mode="OBJECT")
    m3 = np.zeros(n + 10, bool)
    m3[60:70] = True
    _select(bpy, obj, m3)
    bpy.ops.mesh.delete(type="VERT")
    bpy.ops.object.mode_set(mode="OBJECT")
    assert export(bpy, tmp_path / "edited.ply") == {"FINISHED"}
    out = read_ply(tmp_path / "edited.ply")
    keep = np.r_[0:60, 70:n]
    assert out.num_gaussians == n - 10 + 10
    # kept originals first (Blender keeps vertex order), then the 10 duplicates
    orig_rows = out.subset(np.arange(n - 10))
    dup = out.subset(np.arange(n - 10, n))
    np.testing.assert_array_equal(orig_rows.sh_dc, src.sh_dc[keep])
    np.testing.assert_array_equal(dup.sh_dc, src.sh_dc[40:50])
    np.testing.assert_array_equal(dup.extra["nx"], src.extra["nx"][40:50])
    np.testing.assert_allclose(dup.means, src.means[40:50] + (3, 0, 0), atol=1e-5)
    np.testing.assert_array_equal(dup.quats, src.quats[40:50])
    np.testing.assert_array_equal(orig_rows.means[30:60], src.means[30:60])  # untouched, exact
    np.testing.assert_array_equal(orig_rows.quats[30:60], src.quats[30:60])
    # non-uniform scale: covariance A Sigma A^T, SH rotated by the (identity) polar rotation
    a = np.diag([1.0, 1.0, 2.5])

    def cov(q, s):
        r = quat_to_matrix(q)
        return np.einsum("nij,nj,nkj->nik", r, np.exp(2 * s.astype(np.float64)), r)

    want = np.einsum("ij,njk,lk->nil", a, cov(src.quats[:30], src.scales[:30]), a)
    got = cov(orig_rows.quats[:30], orig_rows.scales[:30])
    np.testing.assert_allclose(got / np.abs(want).max((1, 2), keepdims=True),
                               want / np.abs(want).max((1, 2), keepdims=True), atol=1e-4)
    np.testing.assert_allclose(orig_rows.means[:30], src.means[:30] * (1, 1, 2.5), atol=1e-5)
    np.testing.assert_allclose(orig_rows.sh_rest[:30], src.sh_rest[:30], atol=1e-5)


# ------------------------------------------------------------------------ render equivalence


def _sh3_scene(seed: int = 0):
    """Two clusters of strongly view-dependent (SH-3) Gaussians in front of an OpenCV camera at
    the origin (file axes: y down, z forward)."""
    from engine.core.scene import GaussianScene

    rng = np.random.default_rng(seed)
    n = 160
    centres = np.where(np.arange(n)[:, None] < n // 2, (-0.45, 0.0, 4.0), (0.5, 0.15, 4.3))
    return GaussianScene(
        means=(centres + 0.25 * rng.normal(size=(n, 3))).astype(np.float32),
        scales=np.log(rng.uniform(0.03, 0.09, size=(n, 3))).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacities=rng.uniform(0.0, 3.0, size=n).astype(np.float32),
        sh_dc=rng.uniform(-1.0, 1.0, size=(n, 3)).astype(np.float32),
        sh_rest=(0.5 * rng.normal(size=(n, 15, 3))).astype(np.float32),
    )


def _look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera [4, 4] at position, looking at target, image y along world +y."""
    z = target - position
    z /= np.linalg.norm(z)
    x = np.cross((0.0, 1.0, 0.0), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    v = np.eye(4)
    v[:3, :3] = np.stack([x, y, z])
    v[:3, 3] = -v[:3, :3] @ position
    return v


def _equivalent_viewmat(viewmat: np.ndarray, total: np.ndarray) -> np.ndarray:
    """For a similarity ``total`` = [c R | t]: the rigid viewmat that sees the original scene as
    ``viewmat`` sees the transformed one (uniform scaling about the camera leaves the image as
    it is)."""
    c = np.cbrt(np.linalg.det(total[:3, :3]))
    r = total[:3, :3] / c
    out = np.eye(4)
    out[:3, :3] = viewmat[:3, :3] @ r
    out[:3, 3] = (viewmat[:3, :3] @ total[:3, 3] + viewmat[:3, 3]) / c
    return out


@pytest.mark.slow
def test_render_equivalence_after_edits(bpy, tmp_path: Path) -> None:
    """Rotate + scale + move a selection in Edit Mode and the whole object in Object Mode, export,
    render the exported file with the engine: each part must match the original scene rendered
    with the correspondingly transformed camera (SH-3 colours included)."""
    render_mod = pytest.importorskip("engine.render.renderer")
    import mathutils
    import torch

    from engine.core.cameras import Camera
    from engine.render.gaussians import Gaussians
    from engine.core.formats.ply import read_ply, write_ply

    src = _sh3_scene()
    path = tmp_path / "two.ply"
    write_ply(src, path)
    src = read_ply(path)
    obj = import_ply(bpy, path)  # default 3DGS axes (y down -> z up)
    n = len(obj.data.vertices)
    part = np.arange(n) < n // 2
    _select(bpy, obj, part)
    pivot = (-0.4, 4.0, 0.1)
    if bpy.app.version >= (5, 0, 0):  # the transform operators, as R / S / G do it
        bpy.ops.transform.rotate(value=0.8, orient_axis="Z", orient_type="GLOBAL", center_override=pivot)
        bpy.ops.transform.rotate(value=-0.5, orient_axis="X", orient_type="GLOBAL", center_override=pivot)
        bpy.ops.transform.resize(value=(1.3, 1.3, 1.3), center_override=pivot)
        bpy.ops.transform.translate(value=(0.2, -0.3, 0.25))
    else:  # headless 4.x turns transform.rotate the other way round: apply the same edit with bmesh
        import bmesh

        bm = bmesh.from_edit_mesh(obj.data)
        verts = [v for v in bm.verts if v.select]
        for m in (mathutils.Matrix.Rotation(0.8, 3, "Z"), mathutils.Matrix.Rotation(-0.5, 3, "X"),
                  mathutils.Matrix.Diagonal((1.3, 1.3, 1.3))):
            bmesh.ops.rotate(bm, cent=pivot, matrix=m, verts=verts)
        bmesh.ops.translate(bm, vec=(0.2, -0.3, 0.25), verts=verts)
        bmesh.update_edit_mesh(obj.data)
    bpy.ops.object.mode_set(mode="OBJECT")
    obj.location = (0.3, 0.2, -0.1)
    obj.rotation_euler = (0.2, -0.25, 0.6)
    obj.scale = (0.8, 0.8, 0.8)
    bpy.context.view_layer.update()
    assert export(bpy, tmp_path / "edited.ply") == {"FINISHED"}
    out = read_ply(tmp_path / "edited.ply")
    assert out.num_gaussians == n

    # ground truth, in file axes: C^-1 W E C per part
    piv = np.array(pivot)
    rz = np.array(mathutils.Matrix.Rotation(0.8, 4, "Z"))
    rx = np.array(mathutils.Matrix.Rotation(-0.5, 4, "X"))
    about = lambda m: np.block([[m[:3, :3], (piv - m[:3, :3] @ piv)[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]])
    edit = np.eye(4)
    edit[:3, 3] = (0.2, -0.3, 0.25)
    edit = edit @ about(np.diag([1.3, 1.3, 1.3, 1.0])) @ about(rx) @ about(rz)
    axis = np.array(obj["gs_axis_matrix"]).reshape(4, 4)
    world = np.array(obj.matrix_world)
    totals = {"edited": np.linalg.inv(axis) @ world @ edit @ axis,
              "rest": np.linalg.inv(axis) @ world @ axis}
    k = np.array([[90.0, 0, 48], [0, 90.0, 48], [0, 0, 1]])

    def rgb(scene, viewmat) -> np.ndarray:
        g = Gaussians.from_scene(scene, device="cpu")
        res = render_mod.render(g, Camera(viewmat, k, 96, 96), background=torch.zeros(3))
        return res.values.numpy()

    for name, sel in (("edited", part), ("rest", ~part)):
        moved = out.subset(sel)
        centre = moved.means.mean(0).astype(np.float64)
        view = _look_at(centre + np.array([0.5, -0.4, -2.0]), centre)
        got = rgb(moved, view)
        want = rgb(src.subset(sel), _equivalent_viewmat(view, totals[name]))
        assert (want.max(-1) > 0.05).mean() > 0.1, "the part must fill some of the frame"
        err = np.abs(got - want)
        print(f"{name}: colour error mean {err.mean():.2e} max {err.max():.2e}")
        assert err.mean() < 1e-4 and err.max() < 1e-3, (name, err.mean(), err.max())
        # the SH rotation matters here: leaving SH unrotated would be far off
        stale = moved.subset(np.arange(moved.num_gaussians))
        stale.sh_rest = src.subset(sel).sh_rest
        assert np.abs(rgb(stale, view) - want).mean() > 10 * max(err.mean(), 1e-4)


def test_export_from_edit_mode_and_compressed_source(bpy, shared_data: Path, tmp_path: Path) -> None:
    """Exporting while still in Edit Mode sees the latest edits; a SuperSplat compressed scene
    exports in the standard Inria layout with its decoded values."""
    from engine.core.formats.ply import read_ply

    path = shared_data / "guitar.compressed.ply"
    obj = import_ply(bpy, path)
    n = len(obj.data.vertices)
    mask = np.zeros(n, bool)
    mask[:1000] = True
    _select(bpy, obj, mask)
    bpy.ops.transform.translate(value=(0.0, 0.0, 1.0))
    assert obj.mode == "EDIT"
    assert export(bpy, tmp_path / "guitar.ply") == {"FINISHED"}
    src, out = read_ply(path), read_ply(tmp_path / "guitar.ply")
    assert out.layout.source == "ply" and out.num_gaussians == n
    assert out.layout.vertex_dtype.names[:3] == ("x", "y", "z") and "f_dc_0" in out.layout.vertex_dtype.names
    # Blender +Z is the file's -Y with the default axes
    np.testing.assert_allclose(out.means[:1000], src.means[:1000] - (0, 1, 0), atol=1e-5)
    np.testing.assert_array_equal(out.means[1000:], src.means[1000:])
    np.testing.assert_array_equal(out.quats, src.quats)
    np.testing.assert_array_equal(out.sh_dc, src.sh_dc)
    bpy.ops.object.mode_set(mode="OBJECT")


def test_dropped_files_import_directly(bpy, shared_data: Path) -> None:
    """What the FileHandler does on drag and drop: invoke with directory + files."""
    res = bpy.ops.import_scene.gaussian_splatting(
        "INVOKE_DEFAULT", directory=str(shared_data),
        files=[{"name": "fox_cc0.ply"}, {"name": SH3}])
    assert res == {"FINISHED"}
    assert sorted(o.name for o in bpy.data.objects) == ["fox_cc0", "pc_short_sh3_trailing"]
    assert bpy.types.FileHandler.bl_rna is not None and hasattr(bpy.types, "CLICKGS_FH_ply")


def test_extra_properties_of_any_type_survive(bpy, tmp_path: Path) -> None:
    """Integer and float extra per-vertex properties come back with their values and types."""
    from engine.core.formats.ply import read_ply, write_ply

    src = _sh3_scene(seed=4).subset(np.arange(50))
    src.extra = {"label": np.arange(50, dtype=np.uint8), "segment": np.arange(50, dtype=np.int32) - 7,
                 "confidence": np.linspace(0, 1, 50, dtype=np.float32)}
    path = tmp_path / "extra.ply"
    write_ply(src, path)
    src = read_ply(path)
    obj = import_ply(bpy, path)
    assert obj.data.attributes["gs_x_label"].data_type == "INT"
    assert export(bpy, tmp_path / "back.ply") == {"FINISHED"}
    back = read_ply(tmp_path / "back.ply")
    assert back.layout.vertex_dtype == src.layout.vertex_dtype
    for name, arr in src.extra.items():
        assert back.extra[name].dtype == arr.dtype
        np.testing.assert_array_equal(back.extra[name], arr)
    assert filecmp.cmp(path, tmp_path / "back.ply", shallow=False)


def test_applied_object_transform_exports_the_same(bpy, shared_data: Path, tmp_path: Path) -> None:
    """Object > Apply > All Transforms (Ctrl+A) bakes the matrix into the vertices; the export
    must not change: the baked transform is recovered from original vs current positions."""
    from engine.core.formats.ply import read_ply

    obj = import_ply(bpy, shared_data / SH3)
    obj.location = (0.2, 0.1, -0.3)
    obj.rotation_euler = (0.4, 0.1, -0.8)
    obj.scale = (1.3, 1.3, 1.3)
    bpy.context.view_layer.update()
    assert export(bpy, tmp_path / "before.ply") == {"FINISHED"}
    bpy.ops.object.transform_apply(location=True, rotation=True, scale=True)
    assert np.allclose(np.array(obj.matrix_world), np.eye(4))
    assert export(bpy, tmp_path / "after.ply") == {"FINISHED"}
    a, b = read_ply(tmp_path / "before.ply"), read_ply(tmp_path / "after.ply")
    for name in ("means", "scales", "quats", "sh_rest"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), atol=2e-5, err_msg=name)
    np.testing.assert_array_equal(b.sh_dc, a.sh_dc)


def test_exporting_nothing_is_a_clear_error(bpy, shared_data: Path, tmp_path: Path) -> None:
    obj = import_ply(bpy, shared_data / SH3)
    _select(bpy, obj, np.ones(len(obj.data.vertices), bool))
    bpy.ops.mesh.delete(type="VERT")
    for mode in ("EDIT", "OBJECT"):
        bpy.ops.object.mode_set(mode=mode)
        with pytest.raises(RuntimeError, match="no Gaussians left to export"):
            export(bpy, tmp_path / "empty.ply")
    assert not (tmp_path / "empty.ply").exists()
