"""PlayCanvas SOG (.sog zip and meta.json folder), .compressed.ply and .splat writers: round
trips within the documented bounds, splat-transform's files read by us and ours read by it,
one-line refusals of malformed input, and the convert command."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from _splat_transform import match_by_position, quat_error, splat_transform, with_sh
from engine.core.errors import SceneFormatError
from engine.core.formats.scene_io import read_scene, write_scene
from engine.core.formats.sog import quantize_1d
from engine.core.scene import SH_C0


@pytest.fixture(scope="module")
def fox(fox_path: Path):
    return read_scene(fox_path)


def codebook_bound(values: np.ndarray) -> float:
    """Half the largest gap of the codebook the writer fits to these values."""
    cb, _ = quantize_1d(values)
    return float(np.max(np.diff(np.unique(cb)), initial=0.0)) / 2 + 1e-6


def check_sog_bounds(ref, got, sh_rms: float | None = 0.05) -> None:
    assert got.num_gaussians == ref.num_gaussians
    lt = np.sign(ref.means) * np.log1p(np.abs(ref.means))
    step = (lt.max(0) - lt.min(0)) / 65535
    assert np.all(np.abs(got.means - ref.means) <= (np.abs(ref.means) + 1) * step * 0.51 * np.e + 1e-6)
    assert np.abs(got.scales - ref.scales).max() <= codebook_bound(ref.scales)
    assert np.abs(got.sh_dc - ref.sh_dc).max() <= codebook_bound(ref.sh_dc)
    assert quat_error(ref, got).max() <= 0.012
    assert np.abs(got.activated_opacities() - ref.activated_opacities()).max() <= 1 / 255 + 1e-6
    if sh_rms is not None and ref.sh_rest.shape[1]:
        assert got.sh_degree == ref.sh_degree
        assert np.sqrt(np.mean((got.sh_rest - ref.sh_rest) ** 2)) <= sh_rms


@pytest.mark.parametrize("target", ["fox.sog", "folder/meta.json"])
def test_fox_round_trip_within_bounds(fox, tmp_path: Path, target: str) -> None:
    scene = with_sh(fox)
    scene.scales = scene.scales + np.random.default_rng(0).normal(0, 0.01, scene.scales.shape).astype(np.float32)
    out = tmp_path / target
    out.parent.mkdir(exist_ok=True)
    assert write_scene(scene, out) == []
    check_sog_bounds(scene, read_scene(out))
    if target.endswith("meta.json"):
        check_sog_bounds(scene, read_scene(out.parent))  # the folder itself


def test_extra_properties_dropped_with_a_warning(fox, tmp_path: Path) -> None:
    scene = fox.subset(np.arange(2000))
    scene.extra = {"coarse_label": np.zeros(2000, np.int32)}
    assert write_scene(scene, tmp_path / "x.sog") == [".sog keeps no extra properties: dropped coarse_label"]


def test_splat_transform_sog_reads_within_bounds(fox_path: Path, fox, tmp_path: Path) -> None:
    out = tmp_path / "st.sog"
    splat_transform(str(fox_path), str(out), "-g", "cpu")
    got = read_scene(out)
    ref = match_by_position(fox, got)  # splat-transform writes Morton order
    assert np.abs(got.means - ref.means).max() <= 1e-3
    assert np.abs(got.scales - ref.scales).max() <= codebook_bound(fox.scales)
    assert quat_error(ref, got).max() <= 0.012
    # its opacity byte is truncated, not rounded
    assert np.abs(got.activated_opacities() - ref.activated_opacities()).max() <= 1 / 255 + 1e-6


def test_splat_transform_reads_our_sog(fox, tmp_path: Path) -> None:
    scene = with_sh(fox)
    write_scene(scene, tmp_path / "ours.sog")
    splat_transform(str(tmp_path / "ours.sog"), str(tmp_path / "back.ply"))
    got, ours = read_scene(tmp_path / "back.ply"), read_scene(tmp_path / "ours.sog")
    assert got.num_gaussians == scene.num_gaussians and got.sh_degree == 3
    ref = match_by_position(ours, got)
    for a in ("means", "scales", "sh_dc", "sh_rest"):
        assert np.abs(getattr(got, a) - getattr(ref, a)).max() <= 1e-5, a
    assert quat_error(ref, got).max() <= 1e-5


def test_bad_meta_json_zip_without_meta_and_missing_image(fox, tmp_path: Path) -> None:
    good = tmp_path / "good.sog"
    write_scene(fox.subset(np.arange(3000)), good)
    with zipfile.ZipFile(good) as z:
        files = {n: z.read(n) for n in z.namelist()}
    cases = {
        "nometa.sog": ({k: v for k, v in files.items() if k != "meta.json"}, "zip without meta.json"),
        "badjson.sog": ({**files, "meta.json": b"{not json"}, "bad meta.json"),
        "badcount.sog": ({**files, "meta.json": json.dumps({**json.loads(files["meta.json"]), "count": -3}).encode()}, "count -3"),
        "noimage.sog": ({k: v for k, v in files.items() if k != "quats.webp"}, "quats.webp named in meta.json is missing"),
        "noversion9.sog": ({**files, "meta.json": json.dumps({**json.loads(files["meta.json"]), "version": 9}).encode()}, "SOG version 9"),
        "nomeans.sog": ({**files, "meta.json": json.dumps({k: v for k, v in json.loads(files["meta.json"]).items() if k != "means"}).encode()}, "bad meta.json: it has no 'means' entry"),
    }
    for name, (content, message) in cases.items():
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            for k, v in content.items():
                z.writestr(k, v)
        with pytest.raises(SceneFormatError) as err:
            read_scene(tmp_path / name)
        assert name in str(err.value) and message in str(err.value) and "\n" not in str(err.value)
    folder = tmp_path / "unpacked"  # a SOG folder: meta.json with its images beside it
    folder.mkdir()
    for k, v in files.items():
        if k != "quats.webp":
            (folder / k).write_bytes(v)
    with pytest.raises(SceneFormatError, match=r"^unpacked: quats.webp named in meta.json is missing$"):
        read_scene(folder)
    (tmp_path / "notzip.sog").write_bytes(b"PK nothing")
    with pytest.raises(SceneFormatError, match="notzip.sog: not a .sog file"):
        read_scene(tmp_path / "notzip.sog")


def test_compressed_ply_round_trip_within_bounds(fox, tmp_path: Path) -> None:
    scene = with_sh(fox)
    out = tmp_path / "fox.compressed.ply"
    warnings = write_scene(scene, out, keep_order=True)
    assert warnings == []
    got = read_scene(out)
    n = scene.num_gaussians
    chunk = np.arange(n) // 256
    for field, bits in (("means", (11, 10, 11)), ("scales", (11, 10, 11))):
        ref = getattr(scene, field)
        lo = np.minimum.reduceat(ref, np.arange(0, n, 256))[chunk]
        hi = np.maximum.reduceat(ref, np.arange(0, n, 256))[chunk]
        step = (hi - lo) / (2.0 ** np.array(bits) - 1)
        assert np.all(np.abs(getattr(got, field) - ref) <= step / 2 * 1.01 + 1e-5), field
    assert quat_error(scene, got).max() <= 0.003
    assert np.abs(got.activated_opacities() - scene.activated_opacities()).max() <= 0.5 / 255 + 1e-6
    rgb = scene.sh_dc * SH_C0 + 0.5
    lo = np.minimum.reduceat(rgb, np.arange(0, n, 256))[chunk]
    hi = np.maximum.reduceat(rgb, np.arange(0, n, 256))[chunk]
    assert np.all(np.abs(got.sh_dc * SH_C0 + 0.5 - rgb) <= (hi - lo) / 255 / 2 * 1.01 + 1e-5)
    assert np.abs(got.sh_rest - np.clip(scene.sh_rest, -4, 4)).max() <= 1 / 64 + 1e-5


def test_compressed_ply_morton_order_warns_and_keeps_every_gaussian(fox, tmp_path: Path) -> None:
    warnings = write_scene(fox, tmp_path / "m.compressed.ply")
    assert any("Morton order" in w for w in warnings)
    got = read_scene(tmp_path / "m.compressed.ply")
    ref = match_by_position(fox, got)
    assert got.num_gaussians == fox.num_gaussians
    assert np.abs(got.activated_opacities() - ref.activated_opacities()).max() <= 0.5 / 255 + 1e-6


def test_splat_round_trip_and_its_warnings(fox, tmp_path: Path) -> None:
    scene = with_sh(fox, degree=1)
    warnings = write_scene(scene, tmp_path / "fox.splat")
    assert any("SH degree 1 bands dropped" in w for w in warnings)
    got = read_scene(tmp_path / "fox.splat")
    assert np.array_equal(got.means, scene.means)
    assert np.allclose(got.scales, scene.scales, atol=1e-5)
    assert quat_error(scene, got).max() <= 0.012
    assert np.abs(got.base_colors() - scene.base_colors()).max() <= 0.5 / 255 + 1e-6
    assert np.abs(got.activated_opacities() - scene.activated_opacities()).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("target", ["b.compressed.ply", "b.splat"])
def test_splat_transform_reads_our_packed_files(fox, tmp_path: Path, target: str) -> None:
    write_scene(fox, tmp_path / target)
    splat_transform(str(tmp_path / target), str(tmp_path / "back.ply"))
    got, ours = read_scene(tmp_path / "back.ply"), read_scene(tmp_path / target)
    ref = match_by_position(ours, got)
    assert np.abs(got.means - ref.means).max() <= 1e-5
    assert np.abs(got.sh_dc - ref.sh_dc).max() <= 1e-4
    # .splat quaternion bytes: antimatter15 (and we) decode (b - 128) / 128, splat-transform
    # b / 127.5 - 1; both stay within the format's bound of the original
    assert quat_error(ref, got).max() <= (1e-5 if target.endswith(".ply") else 0.012)
    assert quat_error(match_by_position(fox, got), got).max() <= 0.012


def test_splat_transform_compressed_ply_reads(fox_path: Path, fox, tmp_path: Path) -> None:
    splat_transform(str(fox_path), str(tmp_path / "st.compressed.ply"))
    got = read_scene(tmp_path / "st.compressed.ply")
    ref = match_by_position(fox, got)
    assert got.num_gaussians == fox.num_gaussians
    assert np.abs(got.means - ref.means).max() <= 0.01
    # matched by nearest position, which is ambiguous for the few Gaussians that sit closer
    # together than the format's position step
    ok = np.abs(got.activated_opacities() - ref.activated_opacities()) <= 0.5 / 255 + 1e-6
    assert ok.mean() >= 0.999


def test_convert_command_refuses_to_overwrite(fox_path: Path, tmp_path: Path, capsys) -> None:
    from engine.__main__ import main

    out = tmp_path / "fox.spz"
    assert main(["convert", str(fox_path), str(out)]) == 0
    assert "50000 Gaussians" in capsys.readouterr().out
    before = out.read_bytes()
    assert main(["convert", str(fox_path), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["convert", str(out), str(tmp_path / "fox.sog"), "--overwrite"]) == 0
    assert read_scene(tmp_path / "fox.sog").num_gaussians == 50000
    assert main(["convert", str(out), str(tmp_path / "fox.xyz")]) == 2
