"""The real-scene click benchmark (``python -m engine.bench scenes``): a quick run on the small
procedural scene, the scoring rule, and the fox / guitar ground-truth rules when the shared data
is there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.bench import SHARED_DATA
from engine.bench import scenes as B


def test_quick_run_on_procedural_scene(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = B.main(["--scene", "synth", "--iterations", "20", "--pixels", "256", "--views", "6", "--size", "64x64",
                 "--click-size", "64x64", "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "scenes.json").read_text())
    targets = rep["scenes"]["synth"]["targets"]
    assert [t["level"] for t in targets.values()] == ["coarse", "fine"]
    for name, t in targets.items():
        assert t["views_clicked"] >= 1, name  # each target is clicked in at least one view
        assert Path(t["picture"]).is_file()
        for c in t["clicks"]:
            if c["visible"]:
                assert 0 <= c["pixel"][0] <= 64 and 0 <= c["pixel"][1] <= 64
                assert f"synth/{name}/{c['view']}: {t['level']}, selected" in out
    assert (tmp_path / "synth.clickgs.npz").is_file()
    # the features file is accepted back instead of training
    rc = B.main(["--scene", "synth", "--features", str(tmp_path / "synth.clickgs.npz"), "--click-size", "64x64",
                 "--out", str(tmp_path / "again")])
    assert rc == 0
    assert "synth train: loaded" in capsys.readouterr().out


def test_scores_weighted_and_ignored() -> None:
    truth = np.array([1, 1, 0, 0, 0], bool)
    ground = np.array([0, 0, 1, 1, 0], bool)
    ignored = np.array([0, 0, 0, 0, 1], bool)
    t = B.Target("x", "coarse", truth, truth, {"ground": ground}, ignored)
    w = np.array([1.0, 3.0, 1.0, 1.0, 5.0])
    s = B.scores(np.array([1, 2, 4]), t, w)
    assert s["precision"] == pytest.approx(3 / 4)  # the ignored Gaussian counts neither way
    assert s["recall"] == pytest.approx(3 / 4)
    assert s["iou"] == pytest.approx(3 / 5)
    assert s["avoid"]["ground"] == pytest.approx(0.5)
    assert not s["pass"]  # half of the ground taken
    assert B.scores(np.array([0, 1]), t, w)["pass"]


def test_click_pixel_is_interior() -> None:
    alpha = np.ones((20, 30), np.float32)
    share = np.zeros_like(alpha)
    share[2:18, 3:13] = 1.0  # a 10-wide block: its centre column is 7.5 from both sides
    u, v = B.click_pixel(share, alpha)
    assert 7 <= u <= 9 and 9 <= v <= 11
    thin = np.zeros_like(alpha)
    thin[5, 5:25] = 1.0  # one pixel thick: too thin to click reliably
    assert B.click_pixel(thin, alpha) is None


def test_bad_arguments_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert B.main(["--scene", "fox", "guitar", "--features", "x.npz"]) == 2
    assert "exactly one --scene" in capsys.readouterr().err


@pytest.fixture
def shared_scene():
    def load(name: str):
        path = SHARED_DATA / name
        if not path.is_file():
            pytest.skip(f"{name} not in ../shared/data")
        from engine.core.formats.ply import read_ply

        return read_ply(str(path))
    return load


def test_fox_truth_classes(shared_scene) -> None:
    t = B.fox_truth(shared_scene("fox_cc0.ply"))
    c = t.classes
    assert sum(c.values()) - c["bib"] == 50_000  # the bib is part of the statue
    for k in ("statue", "pedestal block", "stone base", "ground"):
        assert c[k] > 2000, (k, c)
    assert 100 < c["bib"] < c["statue"] // 4
    assert c["rest"] < 500 and c["contact"] < 1500
    assert [x.name for x in t.targets] == ["statue", "pedestal block", "stone base", "bib"]
    assert abs(float(t.front @ t.up)) < 1e-9


def test_guitar_truth_classes(shared_scene) -> None:
    t = B.guitar_truth(shared_scene("guitar.compressed.ply"))
    assert t.classes["guitar"] + t.classes["stand"] == 90_854
    assert 0.05 < t.classes["stand"] / 90_854 < 0.25
    assert np.allclose(t.up, [0, -1, 0])
