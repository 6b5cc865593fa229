"""The scene formats in Blender (bpy): import of .spz / .sog written by the engine (WebP decoded
by Blender itself), export by extension or format choice, only the selected Gaussians, each
vertex group as its own file, and the per-Gaussian segment-id properties read back by plyfile.

Runs on every supported Blender (scripts/test_blender.sh): the files are written by the engine's
interpreter (``engine_python``: Pillow for WebP, zstandard), as in real use; the Blender side
has neither."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

REPO = Path(__file__).resolve().parents[1]


def _engine(engine_python: str, code: str) -> None:
    subprocess.run([engine_python, "-c", code], cwd=REPO, check=True, timeout=300,
                   capture_output=True, text=True)


@pytest.fixture(scope="module")
def fox_files(engine_python, fox_path, tmp_path_factory) -> dict[str, Path]:
    """The fox written by the engine as .spz (v3, v4), .sog (zip and folder), each read back by
    the engine (Pillow, zstandard) into .ply; and a random WebP with transparent texels, with
    Pillow's decode of it."""
    out = tmp_path_factory.mktemp("fox_formats")
    _engine(engine_python, f"""
import os, numpy as np
from PIL import Image
from engine.core.formats.scene_io import read_scene, write_scene
out = {str(out)!r}
fox = read_scene({str(fox_path)!r})
write_scene(fox, os.path.join(out, 'fox.spz'))
write_scene(fox, os.path.join(out, 'fox_v4.spz'), spz_version=4)
write_scene(fox, os.path.join(out, 'fox.sog'))
os.mkdir(os.path.join(out, 'fox_sog'))
write_scene(fox, os.path.join(out, 'fox_sog', 'meta.json'))
write_scene(read_scene(os.path.join(out, 'fox.sog')), os.path.join(out, 'fox_sog_engine.ply'))
write_scene(read_scene(os.path.join(out, 'fox.spz')), os.path.join(out, 'fox_spz_engine.ply'))
rng = np.random.default_rng(0)
a = rng.integers(0, 256, (12, 20, 4), dtype=np.uint8)
a[0, :, 3] = 0; a[1, :, 3] = 1
Image.fromarray(a, 'RGBA').save(os.path.join(out, 'rand.webp'), 'WEBP', lossless=True, exact=True)
np.save(os.path.join(out, 'rand_pillow.npy'), np.asarray(Image.open(os.path.join(out, 'rand.webp')).convert('RGBA')))
""")
    return {p.name: p for p in out.iterdir()}


def _attr(mesh, name: str, width: int, key: str = "vector", dtype=np.float32) -> np.ndarray:
    out = np.empty(len(mesh.vertices) * width, dtype)
    mesh.attributes[name].data.foreach_get(key, out)
    return out.reshape(len(mesh.vertices), width) if width > 1 else out


def _import(bpy, path, **kw):
    assert bpy.ops.import_scene.gaussian_splatting(filepath=str(path), **kw) == {"FINISHED"}
    return bpy.context.active_object


def _export(bpy, path, **kw):
    return bpy.ops.export_scene.gaussian_splatting(filepath=str(path), **kw)


def _refused(bpy, path, match: str, **kw) -> None:
    """The exporter refuses (an ERROR report, which bpy.ops raises as RuntimeError)."""
    with pytest.raises(RuntimeError, match=match):
        _export(bpy, path, **kw)


def _check_mesh_equals(mesh, scene) -> None:
    from click_gaussian_blender import attributes as A

    assert len(mesh.vertices) == scene.num_gaussians
    np.testing.assert_array_equal(_attr(mesh, A.POSITION, 3), scene.means)
    np.testing.assert_array_equal(_attr(mesh, A.SCALE, 3), scene.scales)
    np.testing.assert_array_equal(_attr(mesh, A.ROTATION, 4, "value"), scene.quats)
    np.testing.assert_array_equal(_attr(mesh, A.OPACITY, 1, "value"), scene.opacities)
    np.testing.assert_array_equal(_attr(mesh, A.F_DC, 3), scene.sh_dc)
    for k in range(scene.sh_rest.shape[1]):
        np.testing.assert_array_equal(_attr(mesh, A.sh_name(k + 1), 3), scene.sh_rest[:, k])


# ------------------------------------------------------------------------------- import


def test_blender_webp_decode_is_exact(bpy, fox_files):
    """Blender's own WebP decoding gives Pillow's 8-bit values exactly: no colour management,
    no premultiplied alpha (RGB under alpha 0 kept), rows top first."""
    from click_gaussian_blender.io_formats import blender_webp_decoder

    got = blender_webp_decoder(fox_files["rand.webp"].read_bytes())
    want = np.load(fox_files["rand_pillow.npy"])
    assert got.dtype == np.uint8 and got.shape == (12, 20, 4)
    np.testing.assert_array_equal(got, want)
    assert not bpy.data.images  # the temporary image is removed again


def test_blender_webp_decode_matches_pillow_here(bpy, fox_files):
    """Where Pillow is importable beside bpy (.venv): every image of the fox's .sog."""
    pil = pytest.importorskip("PIL.Image")
    import io
    import zipfile

    from click_gaussian_blender.io_formats import blender_webp_decoder

    with zipfile.ZipFile(fox_files["fox.sog"]) as z:
        names = [n for n in z.namelist() if n.endswith(".webp")]
        assert names
        for name in names:
            data = z.read(name)
            with pil.open(io.BytesIO(data)) as im:
                want = np.asarray(im.convert("RGBA"))
            np.testing.assert_array_equal(blender_webp_decoder(data), want, err_msg=name)


@pytest.mark.parametrize("name", ["fox.sog", "fox_sog/meta.json", "fox.spz"])
def test_import_fox_sog_and_spz(bpy, fox_files, fox_path, name):
    """The fox through .sog (zip and folder) and .spz imports with exactly the values the engine
    reads from the same file (Pillow / its own decoder), within the format's bounds of the
    original, upright, named after the file."""
    from click_gaussian_blender.engine.core.formats.ply import read_ply

    path = fox_files[name.split("/")[0]] / name.split("/")[1] if "/" in name else fox_files[name]
    obj = _import(bpy, path)
    engine_side = "fox_spz_engine.ply" if name.endswith(".spz") else "fox_sog_engine.ply"
    _check_mesh_equals(obj.data, read_ply(fox_files[engine_side]))
    assert obj.name == ("fox_sog" if name.endswith("meta.json") else "fox")
    assert obj["gs_count"] == 50_000
    np.testing.assert_allclose(np.array(obj["gs_axis_matrix"]).reshape(4, 4), np.eye(4), atol=1e-12)
    fox = read_ply(fox_path)
    pos = _attr(obj.data, "gs_position", 3)
    bound = 2.0 ** -13 if name.endswith(".spz") else (np.abs(fox.means) + 1) * 8 / 131070
    assert np.all(np.abs(pos - fox.means) <= bound + 1e-6)


def test_import_spz_v4_needs_zstandard(bpy, fox_files):
    """SPZ version 4 (zstd) imports where zstandard is importable, and is refused in one line
    naming it inside Blender, whose Python has no zstandard."""
    path = fox_files["fox_v4.spz"]
    if importlib.util.find_spec("zstandard") is not None:
        assert _import(bpy, path)["gs_count"] == 50_000
        return
    with pytest.raises(RuntimeError, match="zstandard"):
        bpy.ops.import_scene.gaussian_splatting(filepath=str(path))
    from click_gaussian_blender.engine.core.errors import SceneFormatError
    from click_gaussian_blender.io_formats import read_for_blender

    with pytest.raises(SceneFormatError, match="zstd") as err:
        read_for_blender(str(path))
    assert "\n" not in str(err.value)


def test_import_menu_and_drop_accept_the_formats(bpy):
    rna = bpy.ops.import_scene.gaussian_splatting.get_rna_type()
    glob = rna.properties["filter_glob"].default.split(";")
    assert {"*.ply", "*.splat", "*.spz", "*.sog", "meta.json"} <= set(glob)
    exts = bpy.types.CLICKGS_FH_ply.bl_file_extensions.split(";")
    assert exts[0] == ".ply" and {".splat", ".spz", ".sog"} <= set(exts)


# ------------------------------------------------------------------------------- export


def _fox_with_clicks(bpy, fox_path):
    """The fox with stand-in features (coarse: x halves, fine: quadrants) and a click's vertex
    group on coarse cluster 0, which is also the selection."""
    from click_gaussian_blender import feature_store as FS
    from click_gaussian_blender import selection as S
    from click_gaussian_blender.engine.core.features import TrainedFeatures, normalize_rows
    from click_gaussian_blender.engine.core.formats.ply import read_ply

    scene = read_ply(fox_path)
    obj = _import(bpy, fox_path)
    rng = np.random.default_rng(0)
    m = scene.means
    coarse = (m[:, 0] > np.median(m[:, 0])).astype(np.int32)
    fine = coarse * 2 + (m[:, 2] > np.median(m[:, 2])).astype(np.int32)
    cc = normalize_rows(rng.normal(size=(2, 12)))
    fp = normalize_rows(rng.normal(size=(4, 12)))
    feats = np.concatenate([cc[coarse], fp[fine]], axis=1)
    fc = normalize_rows(np.concatenate([cc[np.arange(4) // 2], fp], axis=1))
    tf = TrainedFeatures(feats.astype(np.float16), cc, fc, coarse, fine)
    FS.store_features(obj.data, tf)
    members = tf.members("coarse", [0])
    S.write_selection(obj, members, "replace", S.group_name("coarse", [0]), highlight=False)
    return obj, scene, tf, members


def test_export_clicked_object_as_spz_and_ply(bpy, fox_path, tmp_path):
    """One clicked object (its vertex group, selected) exported alone: .ply exact, .spz within
    its quantisation; both read back by the engine with the object's count."""
    from click_gaussian_blender.engine.core.formats.ply import read_ply
    from click_gaussian_blender.engine.core.formats.scene_io import read_scene

    obj, scene, tf, members = _fox_with_clicks(bpy, fox_path)
    assert 0 < len(members) < scene.num_gaussians
    assert _export(bpy, tmp_path / "statue.ply", only_selected=True) == {"FINISHED"}
    got = read_ply(tmp_path / "statue.ply")
    want = scene.subset(members)
    np.testing.assert_array_equal(got.means, want.means)
    np.testing.assert_array_equal(got.quats, want.quats)
    np.testing.assert_array_equal(got.opacities, want.opacities)
    # the same object as .spz, chosen in the menu (the extension follows the choice)
    assert _export(bpy, tmp_path / "statue.ply", only_selected=True, file_format="SPZ") == {"FINISHED"}
    spz = read_scene(tmp_path / "statue.spz")
    assert spz.num_gaussians == len(members)
    assert np.abs(spz.means - want.means).max() <= 2.0 ** -13 + 1e-6
    assert np.abs(spz.scales - want.scales).max() <= 1 / 32 + 1e-5
    # by extension: .spz written as SPZ without a format choice
    assert _export(bpy, tmp_path / "statue2.spz", only_selected=True) == {"FINISHED"}
    assert (tmp_path / "statue2.spz").read_bytes() == (tmp_path / "statue.spz").read_bytes()
    # the whole object when the option is off
    assert _export(bpy, tmp_path / "all.ply") == {"FINISHED"}
    assert read_ply(tmp_path / "all.ply").num_gaussians == scene.num_gaussians


def test_export_only_selected_in_edit_mode(bpy, fox_path, tmp_path):
    """In Edit Mode the edit mesh's selection is what Only Selected exports."""
    from click_gaussian_blender.engine.core.formats.ply import read_ply

    obj, scene, tf, members = _fox_with_clicks(bpy, fox_path)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.select_all(action="INVERT")
    try:
        assert _export(bpy, tmp_path / "rest.ply", only_selected=True) == {"FINISHED"}
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
    rest = np.setdiff1d(np.arange(scene.num_gaussians), members)
    np.testing.assert_array_equal(read_ply(tmp_path / "rest.ply").means, scene.means[rest])


def test_segment_ids_read_back_by_plyfile_and_on_import(bpy, fox_path, tmp_path):
    """segment_coarse / segment_fine (cluster labels) and segment_group (vertex group id, named
    in the header comments) as int properties of the .ply; re-imported as INT attributes."""
    import plyfile

    from click_gaussian_blender import selection as S

    obj, scene, tf, members = _fox_with_clicks(bpy, fox_path)
    fine = tf.members("fine", [1])
    S.write_selection(obj, fine, "replace", S.group_name("fine", [1]), highlight=False)
    assert _export(bpy, tmp_path / "seg.ply", segment_ids=True) == {"FINISHED"}
    ply = plyfile.PlyData.read(str(tmp_path / "seg.ply"))
    v = ply["vertex"].data
    for prop in ("segment_coarse", "segment_fine", "segment_group"):
        assert v.dtype[prop] == np.dtype("<i4")
    np.testing.assert_array_equal(v["segment_coarse"], tf.coarse_labels)
    np.testing.assert_array_equal(v["segment_fine"], tf.fine_labels)
    want = np.zeros(scene.num_gaussians, np.int32)
    want[members] = 1
    want[fine] = 2  # in both groups: the later group's id
    np.testing.assert_array_equal(v["segment_group"], want)
    assert "segment_group 1 = CG coarse 0" in ply.comments
    assert "segment_group 2 = CG fine 1" in ply.comments
    assert "segment_group 0 = no vertex group" in ply.comments
    np.testing.assert_array_equal(v["x"], scene.means[:, 0])  # the Gaussians themselves as before
    # read back on import as INT attributes
    back = _import(bpy, tmp_path / "seg.ply")
    for prop, values in (("segment_coarse", tf.coarse_labels), ("segment_group", want)):
        a = back.data.attributes["gs_x_" + prop]
        assert a.data_type == "INT"
        np.testing.assert_array_equal(_attr(back.data, a.name, 1, "value", np.int32), values)
    # exported again from the re-imported object (no features): the ids pass through as they were
    assert _export(bpy, tmp_path / "seg2.ply", segment_ids=True) == {"FINISHED"}
    v2 = plyfile.PlyData.read(str(tmp_path / "seg2.ply"))["vertex"].data
    np.testing.assert_array_equal(v2["segment_fine"], tf.fine_labels)
    np.testing.assert_array_equal(v2["segment_group"], np.zeros_like(want))  # no groups now


def test_export_each_group_as_a_file(bpy, fox_path, tmp_path):
    """Each vertex group into the folder named as the file, named after the group (safe names,
    made unique), never over existing files without Overwrite."""
    from click_gaussian_blender import selection as S
    from click_gaussian_blender.engine.core.formats.ply import read_ply
    from click_gaussian_blender.engine.core.formats.scene_io import read_scene

    obj, scene, tf, members = _fox_with_clicks(bpy, fox_path)
    fine = tf.members("fine", [1])
    S.write_selection(obj, fine, "add", "tail/ear: left", highlight=False)
    S.write_selection(obj, fine[:10], "add", "tail ear  left", highlight=False)
    obj.vertex_groups.new(name="empty")
    target = tmp_path / "fox parts.spz"
    assert _export(bpy, target, split_groups=True) == {"FINISHED"}
    folder = tmp_path / "fox parts"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["CG_coarse_0.spz", "tail_ear_left.spz", "tail_ear_left_2.spz"]
    assert not target.exists()
    assert read_scene(folder / "CG_coarse_0.spz").num_gaussians == len(members)
    assert read_scene(folder / "tail_ear_left.spz").num_gaussians == len(fine)
    assert read_scene(folder / "tail_ear_left_2.spz").num_gaussians == 10
    # again: refused as a whole (nothing rewritten), then replaced with Overwrite
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    _refused(bpy, target, "already exists", split_groups=True)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert _export(bpy, target, split_groups=True, overwrite=True) == {"FINISHED"}
    # as .ply, only the selected part of each group (the fine part selected alone)
    assert set(fine) <= set(members)
    S.write_selection(obj, fine, "replace", None, highlight=False)
    assert _export(bpy, tmp_path / "sel.ply", split_groups=True, only_selected=True) == {"FINISHED"}
    sel = tmp_path / "sel"
    assert sorted(p.name for p in sel.iterdir()) == ["CG_coarse_0.ply", "tail_ear_left.ply", "tail_ear_left_2.ply"]
    part = read_ply(sel / "CG_coarse_0.ply")
    np.testing.assert_array_equal(part.means, scene.means[fine])


def test_export_refusals_and_overwrite(bpy, fox_path, tmp_path):
    from click_gaussian_blender import io_export
    from click_gaussian_blender.engine.core.errors import SceneFormatError

    obj = _import(bpy, fox_path)
    path = tmp_path / "fox.spz"
    assert _export(bpy, path) == {"FINISHED"}
    data = path.read_bytes()
    _refused(bpy, path, "already exists")
    assert _export(bpy, path, overwrite=True) == {"FINISHED"}
    assert path.read_bytes() == data
    _refused(bpy, fox_path, "source file")
    # nothing selected; no groups to split
    for v in obj.data.vertices:
        v.select = False
    with pytest.raises(SceneFormatError, match="no Gaussians are selected"):
        io_export.export_ply(obj, str(tmp_path / "none.ply"), io_export.ExportSettings(only_selected=True))
    with pytest.raises(SceneFormatError, match="no vertex groups"):
        io_export.export_ply(obj, str(tmp_path / "g.ply"), io_export.ExportSettings(split_groups=True))
    assert not (tmp_path / "none.ply").exists() and not (tmp_path / "g").exists()
    # a file where the group folder would go
    obj.vertex_groups.new(name="g").add([0, 1], 1.0, "REPLACE")
    (tmp_path / "g").write_text("")
    with pytest.raises(SceneFormatError, match="not a folder"):
        io_export.export_ply(obj, str(tmp_path / "g.ply"), io_export.ExportSettings(split_groups=True))


def test_export_formats_and_their_warnings(bpy, fox_path, tmp_path):
    """Every format by extension; what a format drops comes back as warnings (and WARNING
    reports from the operator); segment ids asked for a non-.ply format say so."""
    from click_gaussian_blender import io_export, io_formats

    obj = _import(bpy, fox_path)
    obj.data.attributes.new("gs_x_label", "INT", "POINT")  # an extra property no packed format keeps
    for fmt, ext in io_formats.EXPORT_EXTENSIONS.items():
        rep = io_export.export_ply(obj, str(tmp_path / ("fox" + ext)), io_export.ExportSettings(segment_ids=True))
        assert rep.file_format == fmt and rep.files == [str(tmp_path / ("fox" + ext))]
        assert io_formats.read_for_blender(str(tmp_path / ("fox" + ext))).num_gaussians == 50_000
        if fmt == "PLY":
            assert rep.warnings == ["'fox_cc0' has no trained features: segment_coarse and "
                                    "segment_fine written as -1"]
        else:
            assert any("label" in w for w in rep.warnings), (fmt, rep.warnings)
            assert "segment ids are written into .ply files only" in rep.warnings
    assert _export(bpy, tmp_path / "op.splat") == {"FINISHED"}


def test_export_sog_with_blenders_webp_writer(bpy, fox_files, fox_path, tmp_path, engine_python):
    """.sog written in Blender (WebP by Blender's writer) reads back in the engine (Pillow) with
    exactly the values of the engine's own .sog of the fox; a Gaussian of opacity below 0.5/255
    keeps its colour and is written with opacity 1/255 (with a warning)."""
    from click_gaussian_blender import io_export
    from click_gaussian_blender.engine.core.formats.ply import read_ply

    obj = _import(bpy, fox_path)
    faint = np.array([3, 500, 4242])
    op = _attr(obj.data, "gs_opacity", 1, "value")
    op[faint] = -20.0
    obj.data.attributes["gs_opacity"].data.foreach_set("value", op)
    rep = io_export.export_ply(obj, str(tmp_path / "fox.sog"))
    assert rep.file_format == "SOG"
    assert any("3 Gaussians of opacity below 0.5/255" in w for w in rep.warnings)
    _engine(engine_python, f"""
from engine.core.formats.scene_io import read_scene, write_scene
write_scene(read_scene({str(tmp_path / 'fox.sog')!r}), {str(tmp_path / 'back.ply')!r})
""")
    back, ref = read_ply(tmp_path / "back.ply"), read_ply(fox_files["fox_sog_engine.ply"])
    for name in ("means", "scales", "quats", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ref, name), err_msg=name)
    keep = np.ones(len(op), bool)
    keep[faint] = False
    np.testing.assert_array_equal(back.opacities[keep], ref.opacities[keep])
    np.testing.assert_allclose(back.activated_opacities()[faint] * 255, 1.0, atol=1e-3)
    # and back into Blender: the same values
    _check_mesh_equals(_import(bpy, tmp_path / "fox.sog").data, back)


def test_export_paths_and_safe_names():
    from click_gaussian_blender import io_formats as F

    assert F.export_path("a/b.ply") == ("a/b.ply", "PLY")
    assert F.export_path("a/b.compressed.ply") == ("a/b.compressed.ply", "COMPRESSED_PLY")
    assert F.export_path("a/b") == ("a/b.ply", "PLY")
    assert F.export_path("a/b.ply", "SPZ") == ("a/b.spz", "SPZ")
    assert F.export_path("a/b.compressed.ply", "SOG") == ("a/b.sog", "SOG")
    assert F.export_path("a/b.txt", "SPLAT") == ("a/b.txt.splat", "SPLAT")
    assert F.safe_file_name("CG coarse 3") == "CG_coarse_3"
    assert F.safe_file_name("CG fine 4+7") == "CG_fine_4+7"
    assert F.safe_file_name("../..") == "group" and F.safe_file_name("") == "group"
    assert F.safe_file_name("con") == "_con" and F.safe_file_name("Stühle") == "St_hle"
    assert F.group_file_names(["a b", "a:b", "A_B", "c"]) == ["a_b", "a_b_2", "A_B_3", "c"]
    assert os.sep not in F.safe_file_name("a/b\\c")
