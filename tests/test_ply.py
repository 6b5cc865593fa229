"""engine.core.formats.ply: reading real 3DGS files exactly, byte-identical round trips, SuperSplat compressed
files, and a clear SceneFormatError for each kind of bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import plyfile
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.errors import SceneFormatError
from engine.core.formats.ply import inria_vertex_dtype, read_ply, write_ply
from engine.core.scene import SH_C0, GaussianScene
from factories import random_scene


def _vertex_bytes(path: Path) -> bytes:
    """The raw vertex element bytes of a binary PLY, read independently with plyfile."""
    data = plyfile.PlyData.read(str(path))
    return np.asarray(data["vertex"].data).tobytes()


# ------------------------------------------------------------------------------ real files

def test_fox_reads_with_saturated_opacities(fox_path: Path) -> None:
    scene = read_ply(fox_path)
    raw = plyfile.PlyData.read(str(fox_path))["vertex"].data
    assert scene.num_gaussians == 50000 and scene.sh_degree == 0
    assert scene.extra == {}
    assert scene.layout.format == "binary_little_endian" and scene.layout.source == "ply"
    assert any("CC0" in c for c in scene.layout.comments)
    np.testing.assert_array_equal(scene.means[:, 1], raw["y"])
    np.testing.assert_array_equal(scene.quats[:, 0], raw["rot_0"])  # rot_0 is w
    np.testing.assert_array_equal(scene.opacities, raw["opacity"])
    # the file holds 37 +inf opacity logits (fully opaque): valid, kept as stored
    assert np.isposinf(scene.opacities).sum() == 37
    assert scene.path == str(fox_path)


def test_sh3_file_with_trailing_bytes_and_unnormalised_quats(shared_data: Path) -> None:
    path = shared_data / "pc_short_sh3_trailing.ply"
    scene = read_ply(path)
    raw = plyfile.PlyData.read(str(path))["vertex"].data
    assert scene.num_gaussians == 100 and scene.sh_degree == 3
    assert list(scene.extra) == ["nx", "ny", "nz"]
    # channel-major in the file: f_rest_{c*15 + k} -> sh_rest[:, k, c]
    for k, c in [(0, 0), (3, 1), (14, 2), (7, 2)]:
        np.testing.assert_array_equal(scene.sh_rest[:, k, c], raw[f"f_rest_{c * 15 + k}"])
    stored = np.stack([raw[f"rot_{i}"] for i in range(4)], axis=1)
    np.testing.assert_array_equal(scene.quats, stored)  # never normalised on read
    assert np.abs(np.linalg.norm(scene.quats, axis=1) - 1).max() > 0.1
    assert all(a.flags.c_contiguous and a.dtype == np.float32
               for a in (scene.means, scene.sh_rest, scene.quats, scene.opacities))


@pytest.mark.parametrize("name", ["fox_cc0.ply", "pc_short_sh3_trailing.ply"])
def test_round_trip_is_byte_identical(shared_data: Path, tmp_path: Path, name: str) -> None:
    src = shared_data / name
    out = tmp_path / "out.ply"
    write_ply(read_ply(src), out)
    assert _vertex_bytes(out) == _vertex_bytes(src)
    again = read_ply(out)
    assert again.layout.comments == read_ply(src).layout.comments


@pytest.mark.parametrize("text,byte_order", [(False, ">"), (False, "<"), (True, "=")])
def test_generated_formats_round_trip_byte_identical(
        shared_data: Path, tmp_path: Path, text: bool, byte_order: str) -> None:
    raw = np.asarray(plyfile.PlyData.read(str(shared_data / "pc_short_sh3_trailing.ply"))["vertex"].data)
    src = tmp_path / "gen.ply"
    element = plyfile.PlyElement.describe(raw, "vertex")
    plyfile.PlyData([element], text=text, byte_order=byte_order, comments=["made by plyfile"]).write(str(src))
    scene = read_ply(src)
    assert scene.layout.format == ("ascii" if text else {"<": "binary_little_endian", ">": "binary_big_endian"}[byte_order])
    np.testing.assert_array_equal(scene.means[:, 0], raw["x"])
    out = tmp_path / "out.ply"
    write_ply(scene, out)
    # the whole file: plyfile's header and number format are reproduced too
    assert out.read_bytes() == src.read_bytes()


def test_chunked_writes_match_whole_writes(shared_data: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes pack records in chunks; odd chunk sizes must not change a byte."""
    import engine.core.formats.ply

    for name, sizes in (("fox_cc0.ply", (997, 4096)), ("pc_short_sh3_trailing.ply", (1, 7, 64))):
        src = shared_data / name
        scene = read_ply(src)
        for rows in sizes:
            monkeypatch.setattr(engine.core.formats.ply, "_CHUNK_ROWS", rows)
            out = tmp_path / f"{rows}_{name}"
            write_ply(scene, out)
            assert _vertex_bytes(out) == _vertex_bytes(src)
    edited = read_ply(shared_data / "pc_short_sh3_trailing.ply").subset(np.arange(99, -1, -2))
    monkeypatch.setattr(engine.core.formats.ply, "_CHUNK_ROWS", 3)
    write_ply(edited, tmp_path / "edited.ply")
    back = read_ply(tmp_path / "edited.ply")
    np.testing.assert_array_equal(back.sh_rest, edited.sh_rest)
    np.testing.assert_array_equal(back.extra["ny"], edited.extra["ny"])


def test_mixed_types_and_extra_properties_round_trip(tmp_path: Path) -> None:
    n = 257
    base = inria_vertex_dtype(1)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("label", "<i4"), ("red", "u1")]
    fields += [(f, "<f4") for f in base.names if f not in ("x", "y", "z", "nx", "ny", "nz")]
    fields.insert(6, ("weight", "<f8"))
    rng = np.random.default_rng(3)
    rec = np.zeros(n, np.dtype(fields))
    for f in rec.dtype.names:
        rec[f] = rng.integers(0, 200, n) if rec.dtype[f].kind in "iu" else rng.normal(size=n)
    src = tmp_path / "mixed.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(rec, "vertex")]).write(str(src))
    scene = read_ply(src)
    assert list(scene.extra) == ["label", "red", "weight"]
    assert scene.extra["label"].dtype == np.int32 and scene.extra["red"].dtype == np.uint8
    assert scene.sh_degree == 1
    out = tmp_path / "out.ply"
    write_ply(scene, out)
    assert _vertex_bytes(out) == _vertex_bytes(src)


def test_double_precision_big_endian_file(shared_data: Path, tmp_path: Path) -> None:
    raw = np.asarray(plyfile.PlyData.read(str(shared_data / "pc_short_sh3_trailing.ply"))["vertex"].data)
    wide = raw.astype([(n, ">f8") for n in raw.dtype.names])
    src = tmp_path / "double.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(wide, "vertex")], byte_order=">").write(str(src))
    scene = read_ply(src)
    assert scene.means.dtype == np.float32 and scene.sh_degree == 3
    np.testing.assert_array_equal(scene.sh_rest[:, 14, 2], raw["f_rest_44"])
    np.testing.assert_array_equal(scene.quats[:, 3], raw["rot_3"])
    out = tmp_path / "out.ply"
    write_ply(scene, out)  # the layout (big-endian doubles) is kept
    assert _vertex_bytes(out) == _vertex_bytes(src)  # exact: the doubles came from float32


def test_scene_without_layout_writes_standard_inria(tmp_path: Path) -> None:
    scene = random_scene(50, sh_degree=3)
    out = tmp_path / "new.ply"
    write_ply(scene, out)
    data = plyfile.PlyData.read(str(out))
    assert data["vertex"].data.dtype == inria_vertex_dtype(3)  # 62 float properties, Inria order
    assert not data.text and data.byte_order == "<"
    back = read_ply(out)
    for attr in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(scene, attr))
    np.testing.assert_array_equal(back.extra["nx"], 0)


def test_edited_scene_keeps_format_with_new_layout(shared_data: Path, tmp_path: Path) -> None:
    scene = read_ply(shared_data / "pc_short_sh3_trailing.ply")
    keep = np.arange(0, 100, 3)
    sub = scene.subset(keep)
    sub.sh_rest = np.ascontiguousarray(sub.sh_rest[:, :3])  # drop to SH degree 1
    sub.extra["seg"] = np.arange(len(keep), dtype=np.int32)
    out = tmp_path / "edited.ply"
    write_ply(sub, out)
    back = read_ply(out)
    assert back.sh_degree == 1 and back.num_gaussians == len(keep)
    np.testing.assert_array_equal(back.extra["seg"], np.arange(len(keep)))
    np.testing.assert_array_equal(back.extra["nx"], scene.extra["nx"][keep])
    np.testing.assert_array_equal(back.sh_rest, scene.sh_rest[keep, :3])


def test_extra_property_types_on_write(tmp_path: Path) -> None:
    scene = random_scene(20, sh_degree=0)
    scene.extra["selected"] = np.arange(20) % 3 == 0  # bool -> uchar
    write_ply(scene, tmp_path / "a.ply")
    back = read_ply(tmp_path / "a.ply")
    assert back.extra["selected"].dtype == np.uint8
    np.testing.assert_array_equal(back.extra["selected"], scene.extra["selected"])
    scene.extra["big"] = np.arange(20, dtype=np.int64)
    with pytest.raises(SceneFormatError, match="extra property 'big' has type int64"):
        write_ply(scene, tmp_path / "b.ply")
    assert not (tmp_path / "b.ply").exists()


def test_write_refuses_to_replace_files(fox_path: Path, tmp_path: Path) -> None:
    scene = read_ply(fox_path)
    with pytest.raises(SceneFormatError, match="source file"):
        write_ply(scene, fox_path)
    out = tmp_path / "a.ply"
    write_ply(scene, out)
    with pytest.raises(SceneFormatError, match="already exists"):
        write_ply(scene, out)
    sub = scene.subset(np.arange(10))
    write_ply(sub, out, overwrite=True)
    assert read_ply(out).num_gaussians == 10
    assert [p.name for p in tmp_path.iterdir()] == ["a.ply"]  # no temporary file left behind
    if os.name == "posix":
        assert out.stat().st_mode & 0o777 == 0o644  # not the temporary file's private 0600
    with pytest.raises(SceneFormatError, match="does not exist"):
        write_ply(sub, tmp_path / "nope" / "b.ply")


def test_write_into_unwritable_places_fails_with_one_line(fox_path: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A target whose folder is a file, or a folder that refuses new files, gives a one-line
    SceneFormatError naming the target (never a bare OSError) and leaves nothing behind.
    (Permissions do not stop root, so the refusing folder is made deterministic by making the
    temporary-file creation fail as a read-only folder does.)"""
    import engine.core.formats.ply

    scene = read_ply(fox_path).subset(np.arange(5))
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(SceneFormatError, match="is a file, not a folder") as info:
        write_ply(scene, blocker / "out.ply")
    assert str(blocker / "out.ply") in str(info.value) and "\n" not in str(info.value)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(engine.core.atomic.tempfile, "mkstemp", refuse)
    target = tmp_path / "out.ply"
    with pytest.raises(SceneFormatError, match="Permission denied") as info:
        write_ply(scene, target)
    assert str(target) in str(info.value) and "\n" not in str(info.value)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    for folder in (Path("/proc/sys"), Path("/sys/fs")):  # kernel folders refuse files even for root
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            with pytest.raises(SceneFormatError, match="cannot write"):
                write_ply(scene, folder / "cgs_test.ply")


def _assert_same_scene(a: GaussianScene, b: GaussianScene) -> None:
    for f in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert list(a.extra) == list(b.extra)
    for k in a.extra:
        np.testing.assert_array_equal(a.extra[k], b.extra[k])
        assert a.extra[k].dtype == b.extra[k].dtype


def test_sh_coefficient_major_and_block_sizes_give_the_same_values(
        shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The single blocked pass over the file gives the same scene for any block size (records
    split across blocks), and sh_coefficient_major only changes the SH memory order: each
    coefficient's [N, 3] RGB block is then contiguous (what Blender attributes take)."""
    import engine.core.formats.ply

    path = shared_data / "pc_short_sh3_trailing.ply"
    raw = plyfile.PlyData.read(str(path))["vertex"].data
    ref = read_ply(path)
    assert ref.sh_rest.flags.c_contiguous
    for rows in (1, 7, 64, 100, 4096):
        monkeypatch.setattr(engine.core.formats.ply, "_GATHER_ROWS", rows)
        for cm in (False, True):
            scene = read_ply(path, sh_coefficient_major=cm)
            _assert_same_scene(scene, ref)
            coeffs = scene.sh_rest.transpose(1, 0, 2)
            assert coeffs.flags.c_contiguous == cm
            for j in (0, 7, 14):
                for c in range(3):
                    np.testing.assert_array_equal(coeffs[j][:, c], raw[f"f_rest_{c * 15 + j}"])
    for name in ("guitar.compressed.ply", "fox_cc0.ply"):  # other sources honour the order too
        scene = read_ply(shared_data / name, sh_coefficient_major=True)
        assert scene.sh_rest.transpose(1, 0, 2).flags.c_contiguous
        _assert_same_scene(scene, read_ply(shared_data / name))


def test_file_read_and_memory_mapped_paths_agree(shared_data: Path, tmp_path: Path) -> None:
    """Vertex-only files are read block by block from the file; any other shape (here a second
    element after the vertices) through plyfile's memory map: same scene either way."""
    src = plyfile.PlyData.read(str(shared_data / "pc_short_sh3_trailing.ply"))
    vertex = plyfile.PlyElement.describe(np.asarray(src["vertex"].data), "vertex")
    meta = plyfile.PlyElement.describe(np.array([(7,)], dtype=[("version", "<i4")]), "meta")
    for order in ("<", ">"):
        one = tmp_path / f"one{order}.ply"
        two = tmp_path / f"two{order}.ply"
        plyfile.PlyData([vertex], byte_order=order).write(str(one))
        plyfile.PlyData([vertex, meta], byte_order=order).write(str(two))
        a, b = read_ply(one), read_ply(two)
        _assert_same_scene(a, b)
        _assert_same_scene(a, read_ply(shared_data / "pc_short_sh3_trailing.ply"))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), degree=st.integers(0, 3), order=st.sampled_from("<>"),
       rows=st.sampled_from([1, 5, 64, 8192]), text=st.booleans())
def test_any_property_order_and_types_read_like_plyfile(seed: int, degree: int, order: str, rows: int,
                                                        text: bool) -> None:
    """Shuffled property order, mixed widths (float64, int8/16/32, uint8) among the Gaussian
    properties and extras, either byte order or ASCII, any block size: every value lands where
    plyfile's own per-property arrays say."""
    import tempfile

    import engine.core.formats.ply

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    k = (degree + 1) ** 2 - 1
    names = list(inria_vertex_dtype(degree).names) + ["label", "weight", "flag"]
    rng.shuffle(names)
    types = {nm: rng.choice(["f4", "f4", "f4", "f8", "i2"]) for nm in names}
    types.update(label="i4", weight="f8", flag="u1")
    rec = np.zeros(n, [(nm, order + types[nm]) for nm in names])
    for nm in names:
        rec[nm] = rng.integers(-100, 100, size=n) if types[nm][0] in "iu" else rng.normal(size=n)
    rec["flag"] = rng.integers(0, 255, size=n)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.ply")
        plyfile.PlyData([plyfile.PlyElement.describe(rec, "vertex")], text=text,
                        byte_order=order).write(path)
        raw = plyfile.PlyData.read(path)["vertex"].data
        old = engine.core.formats.ply._GATHER_ROWS
        engine.core.formats.ply._GATHER_ROWS = rows
        try:
            scene = read_ply(path, sh_coefficient_major=bool(seed % 2))
        finally:
            engine.core.formats.ply._GATHER_ROWS = old
    f32 = lambda nm: np.asarray(raw[nm], dtype=np.float32)  # noqa: E731
    np.testing.assert_array_equal(scene.means, np.c_[f32("x"), f32("y"), f32("z")])
    np.testing.assert_array_equal(scene.quats, np.c_[tuple(f32(f"rot_{i}") for i in range(4))])
    np.testing.assert_array_equal(scene.scales, np.c_[tuple(f32(f"scale_{i}") for i in range(3))])
    np.testing.assert_array_equal(scene.sh_dc, np.c_[tuple(f32(f"f_dc_{i}") for i in range(3))])
    np.testing.assert_array_equal(scene.opacities, f32("opacity"))
    for j in range(k):
        for c in range(3):
            np.testing.assert_array_equal(scene.sh_rest[:, j, c], f32(f"f_rest_{c * k + j}"))
    assert list(scene.extra) == [nm for nm in names if nm in ("nx", "ny", "nz", "label", "weight", "flag")]
    for nm, values in scene.extra.items():
        assert values.dtype == np.dtype(types[nm]) and values.dtype.isnative
        np.testing.assert_array_equal(values, raw[nm])


def test_huge_finite_values_are_not_mistaken_for_infinite(tmp_path: Path) -> None:
    """Finiteness is checked per block through the block's sum; a sum that overflows on finite
    values must fall back to the exact check and accept the file."""
    scene = random_scene(300, sh_degree=1)
    scene.sh_rest[:, :, :] = 3e38  # every record sums past float32's range
    write_ply(scene, tmp_path / "big.ply")
    back = read_ply(tmp_path / "big.ply")
    np.testing.assert_array_equal(back.sh_rest, scene.sh_rest)
    scene.sh_rest[250, 1, 2] = np.nan  # ... while a real NaN in a later record is still found
    write_ply(scene, tmp_path / "nan.ply")
    with pytest.raises(SceneFormatError, match="1 of 300 Gaussians have NaN"):
        read_ply(tmp_path / "nan.ply")


# ---------------------------------------------------------------- SuperSplat compressed PLY

def test_guitar_compressed_reads(shared_data: Path, tmp_path: Path) -> None:
    scene = read_ply(shared_data / "guitar.compressed.ply")
    assert scene.num_gaussians == 90854 and scene.layout.source == "compressed_ply"
    assert np.isfinite(scene.opacities).all()
    np.testing.assert_allclose(np.linalg.norm(scene.quats, axis=1), 1, atol=2e-3)
    colours = scene.base_colors()
    assert 0.2 < colours.mean() < 0.8 and colours.std() > 0.05
    lo, hi = scene.robust_bounds()
    assert np.all(hi - lo > 0.1) and np.all(hi - lo < 10)
    # writing it writes a normal Inria ply
    out = tmp_path / "guitar.ply"
    write_ply(scene, out)
    assert plyfile.PlyData.read(str(out))["vertex"].data.dtype == inria_vertex_dtype(0)
    back = read_ply(out)
    np.testing.assert_array_equal(back.means, scene.means)
    assert back.layout.source == "ply"


def _pack(values: np.ndarray, bits: tuple[int, ...]) -> np.ndarray:
    """Pack unit-range values [N, len(bits)] into uint32, first value in the highest bits."""
    out = np.zeros(values.shape[0], np.uint64)
    for j, b in enumerate(bits):
        q = np.round(np.clip(values[:, j], 0, 1) * ((1 << b) - 1)).astype(np.uint64)
        out = (out << np.uint64(b)) | q
    return out.astype(np.uint32)


def _write_compressed(path: Path, scene_means, log_scales, quats, rgb, alpha, sh_rest=None):
    """An independent encoder of SuperSplat's compressed PLY (chunks of 256)."""
    n = scene_means.shape[0]
    nc = -(-n // 256)
    chunk_names = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                   "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y",
                   "max_scale_z", "min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
    chunk = np.zeros(nc, [(c, "<f4") for c in chunk_names])
    tpos, tscale, tcol = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros((n, 3))
    for c in range(nc):
        s = slice(c * 256, min(n, (c + 1) * 256))
        for arr, t, keys in [(scene_means, tpos, "xyz"), (log_scales, tscale, ["scale_x", "scale_y", "scale_z"]),
                             (rgb, tcol, "rgb")]:
            lo, hi = arr[s].min(0), arr[s].max(0)
            for j, key in enumerate(keys):
                chunk[f"min_{key}"][c], chunk[f"max_{key}"][c] = lo[j], hi[j]
            lo32 = np.array([chunk[f"min_{k}"][c] for k in keys], np.float64)
            hi32 = np.array([chunk[f"max_{k}"][c] for k in keys], np.float64)
            t[s] = (arr[s] - lo32) / np.maximum(hi32 - lo32, 1e-12)
    q = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    largest = np.argmax(np.abs(q), axis=1)
    q = q * np.sign(q[np.arange(n), largest])[:, None]
    rest = np.stack([np.delete(q[i], largest[i]) for i in range(n)])
    rot = _pack(rest / np.sqrt(2) + 0.5, (10, 10, 10)) | (largest.astype(np.uint32) << np.uint32(30))
    vertex = np.zeros(n, [("packed_position", "<u4"), ("packed_rotation", "<u4"),
                          ("packed_scale", "<u4"), ("packed_color", "<u4")])
    vertex["packed_position"] = _pack(tpos, (11, 10, 11))
    vertex["packed_rotation"] = rot
    vertex["packed_scale"] = _pack(tscale, (11, 10, 11))
    vertex["packed_color"] = _pack(np.concatenate([tcol, alpha[:, None]], axis=1), (8, 8, 8, 8))
    elements = [plyfile.PlyElement.describe(chunk, "chunk"), plyfile.PlyElement.describe(vertex, "vertex")]
    if sh_rest is not None:
        k3 = sh_rest.shape[1] * 3
        flat = sh_rest.transpose(0, 2, 1).reshape(n, k3)  # f_rest_{c*K + k}
        codes = np.clip(np.round((flat / 8 + 0.5) * 256 - 0.5), 0, 255).astype(np.uint8)
        sh = np.zeros(n, [(f"f_rest_{i}", "u1") for i in range(k3)])
        for i in range(k3):
            sh[f"f_rest_{i}"] = codes[:, i]
        elements.append(plyfile.PlyElement.describe(sh, "sh"))
    plyfile.PlyData(elements).write(str(path))


def test_compressed_decoding_matches_an_independent_encoder(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 700  # three chunks, the last one partial
    means = rng.uniform(-3, 3, (n, 3))
    log_scales = rng.uniform(-7, -1, (n, 3))
    quats = rng.normal(size=(n, 4))
    rgb = rng.uniform(0.05, 0.95, (n, 3))
    alpha = rng.uniform(0.02, 0.98, n)
    sh_rest = rng.uniform(-1, 1, (n, 3, 3))  # degree 1
    path = tmp_path / "s.compressed.ply"
    _write_compressed(path, means, log_scales, quats, rgb, alpha, sh_rest)
    scene = read_ply(path)
    assert scene.num_gaussians == n and scene.sh_degree == 1
    extent = means.max(0) - means.min(0)
    assert np.all(np.abs(scene.means - means) <= extent / 1023 + 1e-5)
    assert np.abs(scene.scales - log_scales).max() < 6 / 1023 + 1e-5
    q = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    agree = np.abs(np.sum(q * scene.quats, axis=1))  # |cos| of the half angle; sign is free
    assert agree.min() > 0.9995
    np.testing.assert_allclose(SH_C0 * scene.sh_dc + 0.5, rgb, atol=1 / 255 + 1e-5)
    np.testing.assert_allclose(scene.activated_opacities(), alpha, atol=1 / 255 + 1e-5)
    np.testing.assert_allclose(scene.sh_rest, sh_rest, atol=8 / 256 + 1e-5)


def test_compressed_saturated_alpha_gives_finite_logits(tmp_path: Path) -> None:
    n = 10
    alpha = np.array([0.0, 1.0] * 5)
    path = tmp_path / "a.compressed.ply"
    _write_compressed(path, np.random.default_rng(0).normal(size=(n, 3)), np.full((n, 3), -3.0),
                      np.tile([1.0, 0, 0, 0], (n, 1)), np.full((n, 3), 0.5), alpha)
    scene = read_ply(path)
    assert np.isfinite(scene.opacities).all()
    np.testing.assert_allclose(scene.activated_opacities(), alpha, atol=0.003)


def test_splat_file_decodes_like_its_encoder(fox_path: Path, tmp_path: Path) -> None:
    """antimatter15's convert.py encoding of the fox, decoded back within quantisation error."""
    fox = read_ply(fox_path)
    keep = np.isfinite(fox.opacities)
    fox = fox.subset(keep)
    n = fox.num_gaussians
    rec = np.zeros(n, [("p", "<f4", (3,)), ("s", "<f4", (3,)), ("c", "u1", (4,)), ("r", "u1", (4,))])
    rec["p"] = fox.means
    rec["s"] = np.exp(fox.scales)
    colour = np.c_[0.5 + SH_C0 * fox.sh_dc, 1 / (1 + np.exp(-fox.opacities))]
    rec["c"] = (colour * 255).clip(0, 255).astype(np.uint8)
    q = fox.quats / np.linalg.norm(fox.quats, axis=1, keepdims=True)
    rec["r"] = (q * 128 + 128).clip(0, 255).astype(np.uint8)
    path = tmp_path / "fox.splat"
    rec.tofile(path)
    scene = read_ply(path)
    assert scene.num_gaussians == n and scene.sh_degree == 0 and scene.layout.source == "splat"
    np.testing.assert_array_equal(scene.means, fox.means)
    np.testing.assert_allclose(scene.scales, fox.scales, atol=1e-5)
    np.testing.assert_allclose(scene.base_colors(), np.clip(colour[:, :3], 0, 1), atol=1 / 255 + 1e-6)
    visible = colour[:, 3] > 0.01
    np.testing.assert_allclose(scene.activated_opacities()[visible], colour[visible, 3], atol=1 / 255 + 1e-6)
    agree = np.abs(np.sum(scene.unit_quats() * q, axis=1))
    assert agree.min() > 0.999
    bad = tmp_path / "bad.splat"
    bad.write_bytes(bytes(33))
    with pytest.raises(SceneFormatError, match="bad.splat: not a .splat file"):
        read_ply(bad)


# ------------------------------------------------------------------------------ bad input

def _write_raw(path: Path, header_lines: list[str], body: bytes = b"") -> Path:
    path.write_bytes(("\n".join(["ply", *header_lines, "end_header"]) + "\n").encode() + body)
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SceneFormatError, match="nope.ply: file not found"):
        read_ply(tmp_path / "nope.ply")


def test_not_a_ply(tmp_path: Path) -> None:
    p = tmp_path / "photo.ply"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(SceneFormatError, match="photo.ply: not a PLY file"):
        read_ply(p)
    p2 = _write_raw(tmp_path / "garbled.ply", ["format binary_little_endian 1.0", "element vertex x"])
    with pytest.raises(SceneFormatError, match="garbled.ply: malformed PLY header"):
        read_ply(p2)


def test_truncated_file(fox_path: Path, tmp_path: Path) -> None:
    data = fox_path.read_bytes()
    p = tmp_path / "cut.ply"
    p.write_bytes(data[: len(data) - 1000])
    with pytest.raises(SceneFormatError, match=r"cut.ply: truncated file: .*50000 records but only 49982"):
        read_ply(p)


def test_truncated_ascii(tmp_path: Path) -> None:
    rec = np.zeros(3, inria_vertex_dtype(0))
    p = tmp_path / "a.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(rec, "vertex")], text=True).write(str(p))
    text = p.read_text().splitlines()
    p.write_text("\n".join(text[:-1]) + "\n")
    with pytest.raises(SceneFormatError, match="a.ply: truncated file"):
        read_ply(p)


def test_point_cloud_without_gaussian_properties(tmp_path: Path) -> None:
    rec = np.zeros(5, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1")])
    p = tmp_path / "points.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(rec, "vertex")]).write(str(p))
    with pytest.raises(SceneFormatError, match="points.ply: not a 3D Gaussian Splatting scene: missing vertex properties f_dc_0"):
        read_ply(p)


def test_mesh_with_faces(tmp_path: Path) -> None:
    verts = np.zeros(3, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    p = tmp_path / "mesh.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(verts, "vertex"),
                     plyfile.PlyElement.describe(faces, "face")], text=True).write(str(p))
    with pytest.raises(SceneFormatError, match="mesh.ply: .*looks like a mesh"):
        read_ply(p)


def test_invalid_sh_count(tmp_path: Path) -> None:
    names = list(inria_vertex_dtype(0).names) + [f"f_rest_{i}" for i in range(6)]
    rec = np.zeros(4, [(n, "<f4") for n in names])
    p = tmp_path / "sh.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(rec, "vertex")]).write(str(p))
    with pytest.raises(SceneFormatError, match="sh.ply: 6 f_rest_\\* properties; expected 0, 9, 24 or 45"):
        read_ply(p)


def test_nan_values_refused_or_dropped(fox_path: Path, tmp_path: Path) -> None:
    raw = np.array(plyfile.PlyData.read(str(fox_path))["vertex"].data)
    raw["x"][[5, 9]] = np.nan
    raw["scale_1"][20] = np.inf
    raw["opacity"][30] = np.nan
    p = tmp_path / "nan.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(raw, "vertex")]).write(str(p))
    with pytest.raises(SceneFormatError, match=r"nan.ply: 4 of 50000 Gaussians have NaN or infinite values \(first at row 5\)"):
        read_ply(p)
    scene = read_ply(p, drop_invalid=True)
    assert scene.num_gaussians == 49996
    keep = np.setdiff1d(np.arange(50000), [5, 9, 20, 30])
    np.testing.assert_array_equal(scene.means[:, 0], raw["x"][keep])


def test_empty_scene_refused(tmp_path: Path) -> None:
    p = tmp_path / "empty.ply"
    write_ply(random_scene(0, sh_degree=1), p)
    with pytest.raises(SceneFormatError, match="empty.ply: the file holds no Gaussians"):
        read_ply(p)


def test_io_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from engine.bench.io import main

    assert main(["--n", "2000", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert lines["round trip vertex bytes identical"] == "1 bool"
    for label in ("read ours (read_ply -> GaussianScene)", "write ours (write_ply, atomic + fsync)",
                  "read plyfile (Inria-style per-property arrays)"):
        value, unit = lines[label].split()
        assert unit == "s" and float(value) >= 0


def test_engine_ply_is_torch_free() -> None:
    import subprocess
    import sys

    code = ("import sys, engine.core.formats.ply, engine.core.cameras; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root,
                   env={**os.environ, "PYTHONPATH": str(root)})
