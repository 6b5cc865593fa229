"""Niantic .spz: round trips within the documented bounds, files written by splat-transform
(npm @playcanvas/splat-transform, the reference's WASM build inside) read by us and ours read by
it, and one-line refusals of malformed files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from _splat_transform import quat_error, splat_transform, with_sh
from engine.core.errors import SceneFormatError
from engine.core.formats.scene_io import read_scene, write_scene
from engine.core.formats.spz import decode_spz, encode_spz


@pytest.fixture(scope="module")
def fox(fox_path: Path):
    return read_scene(fox_path)


def check_spz_bounds(ref, got, frac: int = 12, sh: bool = True) -> None:
    """The bounds stated in engine/core/formats/spz.py."""
    assert got.num_gaussians == ref.num_gaussians
    assert np.abs(got.means - ref.means).max() <= 2.0 ** -(frac + 1) + 1e-6
    assert np.abs(got.scales - np.clip(ref.scales, -10, 5.9375)).max() <= 1 / 32 + 1e-5
    assert quat_error(ref, got).max() <= 0.003
    assert np.abs(got.activated_opacities() - ref.activated_opacities()).max() <= 0.5 / 255 + 1e-6
    assert np.abs(got.sh_dc - np.clip(ref.sh_dc, -127.5 / 38.25, 127.5 / 38.25)).max() \
        <= 1 / (2 * 0.15 * 255) + 1e-5
    if sh and ref.sh_rest.shape[1]:
        err = np.abs(got.sh_rest - np.clip(ref.sh_rest, -1, 127 / 128))
        assert err[:, :3].max() <= 1 / 32 + 1 / 256 + 1e-6
        assert err[:, 3:].max() <= 1 / 16 + 1 / 256 + 1e-6


@pytest.mark.parametrize("version", [3, 4])
def test_fox_round_trip_within_bounds(fox, tmp_path: Path, version: int) -> None:
    scene = with_sh(fox)
    out = tmp_path / "fox.spz"
    assert write_scene(scene, out, spz_version=version) == []
    got = read_scene(out)
    assert got.sh_degree == 3
    check_spz_bounds(scene, got)


def test_version_2_keeps_positions_scales_colours(fox) -> None:
    got = decode_spz(encode_spz(fox, version=2)[0], "v2.spz")
    assert np.abs(got.means - fox.means).max() <= 2.0 ** -13 + 1e-6
    # 8-bit x, y, z with w derived: good where w is large, coarse near w = 0
    big_w = np.abs(fox.unit_quats()[:, 0]) > 0.5
    assert quat_error(fox, got)[big_w].max() <= 0.02


def test_large_scene_uses_fewer_fractional_bits(fox) -> None:
    scene = fox.subset(np.arange(1000))
    scene.means = scene.means * 0 + np.float32(5000.0) * (np.arange(1000)[:, None] % 2)
    data, warnings = encode_spz(scene)
    assert any("fractional bits" in w for w in warnings)
    frac = gzip.decompress(data)[13]
    assert frac == 10
    assert np.abs(decode_spz(data, "big.spz").means - scene.means).max() <= 2.0 ** -(frac + 1)


def test_extra_properties_dropped_with_a_warning(fox) -> None:
    scene = fox.subset(np.arange(100))
    scene.extra = {"segment": np.arange(100, dtype=np.int32)}
    _, warnings = encode_spz(scene)
    assert warnings == [".spz keeps no extra properties: dropped segment"]


def test_degree_4_file_reads_as_degree_3_with_warning() -> None:
    n, k = 10, 24
    rng = np.random.default_rng(0)
    payload = b"".join([bytes(n * 9), bytes([200] * n), bytes(n * 3), bytes(n * 3),
                        rng.integers(0, 256, n * 4, dtype=np.uint8).tobytes(),
                        rng.integers(0, 256, n * k * 3, dtype=np.uint8).tobytes()])
    data = gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 3, n, 4, 12, 0, 0) + payload)
    notes: list[str] = []
    scene = decode_spz(data, "deg4.spz", notes)
    assert scene.sh_degree == 3 and scene.num_gaussians == n
    assert notes and "SH degree 4" in notes[0] and "deg4.spz" in notes[0]


@pytest.mark.parametrize("make, message", [
    (lambda d: d[: len(d) // 2], "truncated or corrupt SPZ"),
    (lambda d: gzip.compress(gzip.decompress(d)[:-100]), "truncated SPZ"),
    (lambda d: b"hello world", "not an SPZ file"),
    (lambda d: gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 7, 1, 0, 12, 0, 0)), "version 7"),
    (lambda d: struct.pack("<IIIBBBBI12x", 0x5053474E, 5, 1, 0, 12, 0, 5, 32), "SPZ version 5 is newer"),
    (lambda d: gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 3, 0, 0, 12, 0, 0)), "no Gaussians"),
])
def test_malformed_files_are_one_line_errors(fox, tmp_path: Path, make, message: str) -> None:
    bad = tmp_path / "bad.spz"
    bad.write_bytes(make(encode_spz(fox.subset(np.arange(500)))[0]))
    with pytest.raises(SceneFormatError) as err:
        read_scene(bad)
    text = str(err.value)
    assert "bad.spz" in text and message in text and "\n" not in text


def test_truncated_version_4_is_refused(fox, tmp_path: Path) -> None:
    data = encode_spz(fox.subset(np.arange(500)), version=4)[0]
    bad = tmp_path / "cut.spz"
    bad.write_bytes(data[:-50])
    with pytest.raises(SceneFormatError, match="cut.spz: truncated SPZ"):
        read_scene(bad)


@pytest.mark.parametrize("version", ["3", "4"])
def test_splat_transform_spz_reads_within_bounds(fox_path: Path, fox, tmp_path: Path, version: str) -> None:
    out = tmp_path / "st.spz"
    splat_transform(str(fox_path), str(out), "--spz-version", version)
    check_spz_bounds(fox, read_scene(out))


@pytest.mark.parametrize("version", [3, 4])
def test_splat_transform_reads_our_spz(fox, tmp_path: Path, version: int) -> None:
    scene = with_sh(fox)
    ours = tmp_path / "ours.spz"
    write_scene(scene, ours, spz_version=version)
    back = tmp_path / "back.ply"
    splat_transform(str(ours), str(back))
    got = read_scene(back)  # splat-transform keeps the order for .spz
    check_spz_bounds(scene, got)
    # it decodes the same 8-bit SH codes as we do
    assert np.abs(got.sh_rest - read_scene(ours).sh_rest).max() <= 1e-6


def test_guitar_compressed_ply_to_spz_and_back(shared_data: Path, tmp_path: Path) -> None:
    guitar = read_scene(shared_data / "guitar.compressed.ply")
    write_scene(guitar, tmp_path / "guitar.spz")
    check_spz_bounds(guitar, read_scene(tmp_path / "guitar.spz"))
    write_scene(read_scene(tmp_path / "guitar.spz"), tmp_path / "again.compressed.ply", keep_order=True)
    again = read_scene(tmp_path / "again.compressed.ply")
    assert again.num_gaussians == guitar.num_gaussians
    assert np.abs(again.activated_opacities() - guitar.activated_opacities()).max() <= 1.5 / 255
