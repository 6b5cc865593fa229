"""Metrics: the paper's label propagation and click IoU on perfect and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from engine.bench.evaluation.metrics import (
    TargetResult,
    assign_clusters,
    interior_point,
    iou,
    mean_summaries,
    propagation_scores,
    summarize,
    target_clusters,
    vote_labels,
    weighted_iou,
)


def test_iou_hand_computed():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :3] = True  # 3 pixels
    b[0, 1:] = True  # 3 pixels, 2 shared
    assert iou(a, b) == pytest.approx(2 / 4)
    assert iou(a, a) == 1.0
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    with pytest.raises(ValueError):
        iou(a, b[:2])


def test_weighted_iou_hand_computed():
    w = np.array([1.0, 2.0, 3.0, 4.0])
    gt = np.array([True, True, False, False])
    # selected {1, 2}: intersection weight 2, union weight 1 + 2 + 3 = 6
    assert weighted_iou(np.array([1, 2]), gt, w) == pytest.approx(2 / 6)
    assert weighted_iou(gt, gt, w) == 1.0
    assert weighted_iou(np.array([], int), gt, w) == 0.0


def test_vote_labels_matches_onehot_blend():
    rng = np.random.default_rng(0)
    n, k = 30, 5
    labels = rng.integers(-1, 4, n)
    ids = rng.integers(-1, n, (6, 7, k))
    weights = rng.random((6, 7, k)) * 0.4
    got = vote_labels(ids, weights, labels, alpha_min=0.5)
    onehot = np.zeros((n, 4))
    onehot[labels >= 0, labels[labels >= 0]] = 1.0
    valid = ids >= 0
    blended = (np.where(valid, weights, 0)[..., None] * onehot[np.maximum(ids, 0)]).sum(axis=2)
    total = np.where(valid, weights, 0).sum(axis=2)
    expect = blended.argmax(axis=2)
    expect[(total < 0.5) | (blended.max(axis=2) <= 0)] = -1
    assert np.array_equal(got, expect)


def test_assign_clusters_threshold():
    centers = np.array([[1.0, 0.0], [0.0, 1.0]])
    feats = np.array([[[2.0, 0.0], [1.0, 1.0], [0.1, 1.0]]])  # cos to c1: 1, 0.707, 0.995
    a = assign_clusters(feats, centers)
    assert a.tolist() == [[0, -1, 1]]
    a = assign_clusters(feats, centers, alpha=np.array([[1.0, 1.0, 0.2]]))
    assert a.tolist() == [[0, -1, -1]]


def test_target_clusters_rule():
    ref = np.array([[0, 0, 1, 1], [0, 0, 1, 2], [3, 3, -1, 2]])
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], bool)
    # cluster 0: 4/4 inside; cluster 1: 1/3 inside -> not a target; 2, 3: 0 inside
    assert target_clusters(ref, mask) == [0]
    mask2 = np.zeros_like(mask)
    mask2[0, 2] = True  # only a minority of cluster 1 -> fallback to the most-covering cluster
    assert target_clusters(ref, mask2) == [1]
    assert target_clusters(ref, np.zeros_like(mask)) == []


def test_interior_point_is_deepest():
    m = np.zeros((9, 12), bool)
    m[1:8, 3:10] = True  # 7 x 7 square: the centre is row 4, column 6
    assert interior_point(m) == (6, 4)
    assert interior_point(np.zeros((3, 3), bool)) is None


def test_propagation_perfect_prediction_is_one():
    rng = np.random.default_rng(1)
    gts = [rng.integers(0, 3, (8, 8)) for _ in range(4)]
    # clusters are a relabeling of the ground truth: ids 0,1,2 -> 5,7,6
    relabel = np.array([5, 7, 6])
    assigned = [relabel[g] for g in gts]
    for t in range(3):
        ref, targets, miou, n = propagation_scores(gts, assigned, t, min_pixels=1)
        assert targets == [int(relabel[t])]
        assert miou == 1.0 and n == 3


def test_propagation_hand_computed():
    gt0 = np.array([[1, 1, 1, 0]])  # reference view (largest area of target 1)
    gt1 = np.array([[1, 1, 0, 0]])
    a0 = np.array([[4, 4, 4, 9]])
    a1 = np.array([[4, 9, 4, 4]])  # predicted {0, 2, 3}; gt {0, 1}: IoU 1/4
    ref, targets, miou, n = propagation_scores([gt0, gt1], [a0, a1], 1, min_pixels=1)
    assert (ref, targets, n) == (0, [4], 1)
    assert miou == pytest.approx(0.25)
    assert propagation_scores([gt0, gt1], [a0, a1], 7, min_pixels=1) is None


def test_summaries_pool_all_and_mean_over_scenes():
    rs = [
        TargetResult("coarse", 1, "a", 0, [0], 1.0, 3, click_iou=1.0, click_ms=2.0),
        TargetResult("fine", 1, "a/x", 0, [0], 0.5, 3, click_iou=0.5, click_ms=4.0),
        TargetResult("fine", 2, "a/y", 0, [1], 0.0, 3, click_iou=0.0, click_ms=6.0),
    ]
    s = summarize(rs)
    assert (s.coarse, s.fine, s.all) == (1.0, 0.25, pytest.approx(0.5))
    assert s.click_ms == 4.0 and (s.n_coarse, s.n_fine) == (1, 2)
    m = mean_summaries([s, summarize(rs[:1])])
    assert m.coarse == 1.0 and m.fine == 0.25 and m.all == pytest.approx(0.75)


@pytest.fixture(scope="module")
def tiny_scene():
    pytest.importorskip("engine.render.renderer")
    from engine.bench.evaluation.synth import make_scene, render_ground_truth

    synth = make_scene(1, n_gaussians=8000, n_objects=4, n_views=2, n_test_views=4, width=96, height=96)
    views = render_ground_truth(synth, synth.test_cameras, keep_contributors=True)
    return synth, views


@pytest.mark.slow
def test_harness_scores_ground_truth_features_near_one(tiny_scene):
    """End to end: features made from the ground-truth ids score ~1 through render + protocol."""
    from engine.bench.evaluation.baseline import features_from_labels
    from engine.bench.quality import evaluate

    synth, views = tiny_scene
    oracle = features_from_labels(synth.scene, synth.object_id, synth.part_id)
    s = summarize(evaluate(synth, views, oracle, None))
    assert s.n_coarse >= 3 and s.n_fine >= 6
    assert s.coarse > 0.85 and s.fine > 0.75  # only pixels blending two ids fall below cos 0.9
    # wrong labels (objects shuffled) score far lower
    perm = np.random.default_rng(0).permutation(synth.scene.num_gaussians)
    shuffled = features_from_labels(synth.scene, synth.object_id[perm], synth.part_id[perm])
    assert summarize(evaluate(synth, views, shuffled, None)).all < 0.5


@pytest.mark.slow
def test_quality_benchmark_runs_tiny(tmp_path):
    pytest.importorskip("engine.train.trainer")
    from engine.bench.quality import main

    report = tmp_path / "report.md"
    rc = main([
        "--seeds", "0", "1", "--iterations", "3", "--pixels", "64", "--views", "2", "--test-views", "3",
        "--size", "40x40", "--gaussians", "2500", "--objects", "2", "--variants", "full,no_gfl,baseline",
        "--pictures", "1", "--out", str(tmp_path / "q"), "--report", str(report),
    ])
    assert rc == 0
    text = report.read_text()
    assert "| Click-Gaussian (full) |" in text and "| w/o GFL |" in text and "seed 1" in text
    import json

    rows = json.loads((tmp_path / "q" / "results.json").read_text())
    assert {r["variant"] for r in rows} == {"full", "no_gfl", "baseline"} and {r["seed"] for r in rows} == {0, 1}
    assert all(0.0 <= r["miou"] <= 1.0 for r in rows)
    assert (tmp_path / "q" / "full_seed0.png").stat().st_size > 0


def test_quality_benchmark_rejects_bad_arguments(tmp_path, capsys):
    from engine.bench.quality import main

    assert main(["--variants", "full,nonsense", "--out", str(tmp_path)]) == 2
    assert "nonsense" in capsys.readouterr().err
    assert main(["--size", "big", "--out", str(tmp_path)]) == 2
    assert main(["--device", "tpu", "--out", str(tmp_path)]) == 2
    assert "--device" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert main(["--device", "cuda", "--out", str(tmp_path)]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
