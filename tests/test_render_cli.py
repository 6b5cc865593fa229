"""``python -m engine render`` and ``python -m engine.bench render`` end to end (tiny sizes)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.__main__ import main as engine_main
from engine.bench.render import main as bench_main
from engine.core.cameras import orbit_cameras
from engine.core.formats.ply import read_ply


def test_render_orbit_views(fox_path, tmp_path, capsys) -> None:
    out = tmp_path / "views"
    rc = engine_main(["render", str(fox_path), "--out", str(out), "--views", "2", "--size", "80x48", "--depth"])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    files = sorted(p.name for p in out.iterdir())
    assert files == ["view_000.png", "view_000_depth.png", "view_001.png", "view_001_depth.png"]
    assert sorted(str(out / f) for f in files) == sorted(printed)
    img = np.asarray(Image.open(out / "view_000.png"))
    assert img.shape == (48, 80, 3)
    assert (img < 200).any(axis=-1).mean() > 0.05  # something other than the white background
    depth = np.asarray(Image.open(out / "view_000_depth.png"))
    assert depth.shape == (48, 80) and depth.max() > 0


def test_render_with_cameras_file(fox_path, tmp_path) -> None:
    scene = read_ply(fox_path)
    cams = orbit_cameras(scene, 3, 64, 64)
    npz = tmp_path / "cams.npz"
    np.savez(npz, viewmats=np.stack([c.viewmat for c in cams]), Ks=np.stack([c.K for c in cams]), width=64, height=64)
    out = tmp_path / "own"
    rc = engine_main(["render", str(fox_path), "--out", str(out), "--cameras", str(npz), "--size", "32x32",
                      "--background", "black"])  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["view_000.png", "view_001.png", "view_002.png"]
    img = np.asarray(Image.open(out / "view_002.png"))
    assert img.shape == (32, 32, 3) and img.max() > 50 and (img == 0).all(axis=-1).any()


def test_render_bad_arguments(fox_path, tmp_path, capsys) -> None:
    assert engine_main(["render", str(fox_path), "--out", str(tmp_path), "--size", "big"]) == 2
    assert "--size" in capsys.readouterr().err
    assert engine_main(["render", str(tmp_path / "missing.ply"), "--out", str(tmp_path)]) == 2
    assert "missing.ply" in capsys.readouterr().err
    assert engine_main(["render", str(fox_path), "--out", str(tmp_path), "--views", "0"]) == 2
    assert "--views" in capsys.readouterr().err
    assert engine_main(["render", str(fox_path), "--out", str(tmp_path), "--background", "pink"]) == 2
    assert "--background" in capsys.readouterr().err
    assert engine_main(["render", str(fox_path), "--out", str(tmp_path), "--device", "tpu"]) == 2
    assert "--device" in capsys.readouterr().err


def test_bench_render_tiny(capsys) -> None:
    assert bench_main(["--size", "48", "--views", "1", "--pixels", "200"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    labels = {line.split(":")[0] for line in lines}
    for label in ("render rgb cpu", "render rgb+contributors k=32 cpu", "contributor cache compact csr int32+fp16 per view",
                  "blend 200 pixels x 24 forward+backward cpu"):  # fmt: skip
        assert label in labels, lines
    assert all(": " in line for line in lines)


def test_bench_render_without_data(monkeypatch, tmp_path, capsys) -> None:
    import engine.bench.render as bench

    monkeypatch.setattr(bench, "FOX", tmp_path / "no_such.ply")
    assert bench.main(["--size", "32", "--views", "1", "--pixels", "50"]) == 0
    out = capsys.readouterr().out
    assert "scene: random scene (../shared/data/fox_cc0.ply not found)" in out
    assert "gaussians: 50000" in out
