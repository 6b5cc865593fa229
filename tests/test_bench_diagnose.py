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


def test_fine_rules_rescores_fine_clicks_and_rereads_saved_features(tmp_path: Path, capsys) -> None:
    from engine.core import click as C

    current = f"{'obj' if C.WITHIN_OBJECT else 'all'}" + (f"+dup{C.SAME_PART_COS}" if C.SAME_PART_COS else "")
    same_part = C.SAME_PART_COS
    rules = f"all,{current},{current}+cut"
    store = tmp_path / "features"
    res = _run(tmp_path, "fine-rules", "0", "a:60", "p:30:preset=paper,frac=0.1,w_neg=0.5", "--rules", rules,
               "--features", str(store))
    assert C.SAME_PART_COS == same_part  # the rule's threshold is put back
    assert set(res) == {"a", "p"} and sorted(p.name for p in store.iterdir()) == ["seed0_a.npz", "seed0_p.npz"]
    assert (res["p"]["gfl_start"], res["p"]["w_neg"]) == (3, 0.5) and not res["a"]["loaded"]
    for r in res.values():
        assert 0.0 <= r["all"] <= 1.0 and set(r["rules"]) == set(rules.split(","))
        assert r["per_target"] and all(0.0 <= x <= 1.0 for t in r["per_target"].values() for x in t.values())
        # the committed rule, re-scored through the rule machinery, is what the benchmark scored
        assert all(t[current] == pytest.approx(t["current"]) for t in r["per_target"].values())
        assert r["rules"][current] == pytest.approx(r["click_part"])
    assert "seed 0 a: coarse" in capsys.readouterr().out
    again = _run(tmp_path, "fine-rules", "0", "a:60", "--rules", rules, "--features", str(store))
    assert again["a"]["loaded"] and again["a"]["per_target"] == res["a"]["per_target"]


@pytest.mark.parametrize("argv", [["a:60", "--rules", "obj+dip"], ["a:60", "--rules", "any"], ["a"],
                                  ["a:60:frac=2"], ["a:60:no_such_field=1"], ["a:60:preset=other"]])
def test_fine_rules_refuses_bad_input_in_one_line(argv: list[str], capsys) -> None:
    assert diagnose.main(["fine-rules", "0", *argv, *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
