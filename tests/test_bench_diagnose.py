"""python -m engine.bench diagnose: the docs/quality.md diagnoses run end to end on a tiny scene
(2 objects, 4 views of 48x48, tens of iterations) and write their JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("hdbscan")

from engine.bench import diagnose  # noqa: E402

TINY = ["--gaussians", "2000", "--objects", "2", "--views", "4", "--test-views", "2", "--size", "48x48",
        "--pixels", "256"]


def _run(tmp_path: Path, *argv: str) -> dict:
    out = tmp_path / "out.json"
    assert diagnose.main([*argv, *TINY, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_merges_reports_pairs_and_the_trajectory(tmp_path: Path, capsys) -> None:
    res = _run(tmp_path, "merges", "0", "a:60:full:0.3:1", "b:20:no_gfl:0:0::7", "--trajectory",
               "--settings", "w_neg=1.0")
    assert set(res) == {"a", "b"}
    assert [it for it, _ in res["a"]["traj"]] == [50]
    assert 0.0 <= res["a"]["all"] <= 1.0 and res["a"]["objects"]
    assert all("/" in p["merged_views"] for p in res["b"]["pairs"].values())
    assert capsys.readouterr().out.startswith("a {")


def test_fine_reports_every_part_and_the_watched_trajectory(tmp_path: Path) -> None:
    res = _run(tmp_path, "fine", "0", "a:60:full:granularity=0,trim=0,gfl_start=30",
               "u:20:no_gfl:sampling=uniform,slivers=0", "--trajectory", "--watch", "1,2")
    assert set(res) == {"a", "u"}
    assert res["a"]["fine_targets"] and all({"miou", "sib", "own_px"} <= set(t) for t in res["a"]["fine_targets"].values())
    assert [it for it, _ in res["a"]["traj"]] == [50] and len(res["a"]["traj"][0][1]) == 2


@pytest.mark.parametrize("level", ["coarse", "fine"])
def test_gfl_clusters_counts_candidates_per_iteration(tmp_path: Path, level: str) -> None:
    from engine.bench.evaluation.synth import make_scene

    synth = make_scene(0, n_gaussians=2000, n_objects=2, n_views=4, n_test_views=2, width=48, height=48)
    names = synth.object_names[1:3] if level == "coarse" else synth.part_names[1:3]
    res = _run(tmp_path, "gfl-clusters", level, "0", names[0], names[1], "10", "20")
    assert set(res) == {"10", "20"} and all(r["candidates"] > 0 for r in res.values())
