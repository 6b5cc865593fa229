"""Click query: the blended feature equals the renderer's pixel, the matching rule, selection,
empty space, and that the module is numpy-only."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.core.cameras import Camera
from engine.core import click
from engine.core.click import ClickIndex, blended_feature, click_query, match_clusters
from engine.core.errors import EngineError, TrainingError
from engine.core.features import TrainedFeatures, normalize_rows, scene_hash


@pytest.fixture(scope="module")
def fox(fox_path):
    from engine.core.formats.ply import read_ply

    return read_ply(fox_path)


def _camera(scene, width=64, height=48, az=0.6) -> Camera:
    lo, hi = scene.robust_bounds()
    center = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo)) * 1.1
    eye = center + radius * np.array([np.cos(az), 0.35, np.sin(az)])
    fwd = center - eye
    fwd /= np.linalg.norm(fwd)
    down = np.array([0.0, 1.0, 0.0])
    down = down - fwd * (down @ fwd)
    if np.linalg.norm(down) < 1e-6:
        down = np.array([0.0, 0.0, 1.0])
    down /= np.linalg.norm(down)
    right = np.cross(down, fwd)
    R = np.stack([right, down, fwd])
    vm = np.eye(4)
    vm[:3, :3] = R
    vm[:3, 3] = -R @ eye
    f = 0.9 * width
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    return Camera(vm, K, width, height, "test")


def _random_trained(scene, n_clusters=4, seed=0) -> TrainedFeatures:
    rng = np.random.default_rng(seed)
    n = scene.num_gaussians
    feats = rng.normal(size=(n, 24)).astype(np.float16)
    cc = normalize_rows(rng.normal(size=(n_clusters, 12)))
    cf = normalize_rows(rng.normal(size=(n_clusters, 24)))
    lab_c = np.argmax(normalize_rows(feats[:, :12].astype(np.float32)) @ cc.T, 1).astype(np.int32)
    lab_f = np.argmax(normalize_rows(feats.astype(np.float32)) @ cf.T, 1).astype(np.int32)
    return TrainedFeatures(feats, cc, cf, lab_c, lab_f, {}, scene_hash(scene))


def test_blended_feature_equals_renderer_pixel(fox):
    from engine.render.gaussians import Gaussians
    from engine.render.renderer import render

    cam = _camera(fox)
    tf = _random_trained(fox)
    index = ClickIndex.build(fox)
    g = Gaussians.from_scene(fox, "cpu")
    out = render(g, cam, torch.from_numpy(tf.level_features("fine")))
    vals, alpha = out.values.numpy(), out.alpha.numpy()
    ys, xs = np.nonzero(alpha > 0.5)
    assert len(ys) > 100
    rng = np.random.default_rng(1)
    pick = rng.choice(len(ys), 25, replace=False)
    for j, i in zip(ys[pick], xs[pick]):
        feat, a, depth, ids = blended_feature(index, tf, cam, i + 0.5, j + 0.5, "fine")
        assert a == pytest.approx(float(alpha[j, i]), abs=2e-3)
        np.testing.assert_allclose(feat, vals[j, i], atol=5e-3, rtol=1e-3)
        assert depth == pytest.approx(float(out.depth[j, i]), rel=1e-3)
    # the same pixels through the renderer's cached Contributors (top-32; where they hold all
    # of the pixel's weight, the sums must agree)
    con = render(g, cam, contributors_k=32).contributors
    ids32, w32 = con.ids.numpy(), con.weights.numpy()
    f32 = tf.level_features("fine")
    complete = (np.abs(w32.sum(-1) - alpha) < 1e-4) & (alpha > 0.5)
    yc, xc = np.nonzero(complete)
    assert len(yc) >= 10
    for k in rng.choice(len(yc), 10, replace=False):
        j, i = yc[k], xc[k]
        ok = ids32[j, i] >= 0
        want = (w32[j, i][ok, None] * f32[ids32[j, i][ok]]).sum(0)
        feat, _, _, ids = blended_feature(index, tf, cam, i + 0.5, j + 0.5, "fine")
        np.testing.assert_allclose(feat, want, atol=5e-3, rtol=1e-3)
        assert set(ids32[j, i][ok].tolist()) <= set(ids.tolist())
    # background pixel: nothing there
    yb, xb = np.nonzero(alpha < 1e-3)
    if len(yb):
        feat, a, _, _ = blended_feature(index, tf, cam, xb[0] + 0.5, yb[0] + 0.5, "coarse")
        assert a < 1e-3


def test_click_selects_cluster_members_and_reports_empty_space(fox):
    cam = _camera(fox)
    tf = _random_trained(fox)
    index = ClickIndex.build(fox)
    r = click_query(index, tf, cam, cam.width / 2 + 0.5, cam.height / 2 + 0.5, "coarse")
    assert r.alpha > 0.5 and r.feature.shape == (12,)
    if r.clusters:
        np.testing.assert_array_equal(r.selected, np.flatnonzero(np.isin(tf.coarse_labels, r.clusters)))
    r0 = click_query(index, tf, cam, 0.5, 0.5, "fine")
    assert r0.empty and "empty space" in r0.reason
    with pytest.raises(EngineError, match="outside"):
        click_query(index, tf, cam, -5, 3)
    with pytest.raises(TrainingError, match="retrain"):
        click_query(ClickIndex.build(fox.subset(np.arange(10))), tf, cam, 1, 1)


def test_match_rule():
    centers = normalize_rows(np.array([[1.0, 0, 0], [0.95, 0.3, 0], [0, 1.0, 0], [0, 0, 1.0]]))
    clusters, best = match_clusters(np.array([2.0, 0.1, 0]), centers, 0.5)
    assert clusters == [0, 1] and best > 0.99  # every cluster >= 0.9, best first
    clusters, best = match_clusters(np.array([1.0, 1.0, 0.3]), centers, 0.5)
    assert len(clusters) == 1 and 0.5 < best < 0.9  # none >= 0.9: the best one alone
    clusters, best = match_clusters(np.array([1.0, 1.0, 1.0]), centers, 0.75)
    assert clusters == [] and best < 0.75
    assert match_clusters(np.zeros(3), centers, 0.5)[0] == []
    # best cluster only (the fine level's rule): the near-duplicate cluster 1 is not added
    clusters, best = match_clusters(np.array([2.0, 0.1, 0]), centers, 0.5, None)
    assert clusters == [0] and best > 0.99
    clusters, best = match_clusters(np.array([1.0, 1.0, 0.3]), centers, 0.5, None)
    assert len(clusters) == 1 and 0.5 < best < 0.9
    assert match_clusters(np.array([1.0, 1.0, 1.0]), centers, 0.75, None)[0] == []


def test_click_module_is_numpy_only():
    code = "import sys, engine.core.click, engine.core.features; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- the fine click's rule
def _one_splat_scene(n_off: int):
    """Gaussian 0 fills the centre of :func:`_front_camera`'s view (opaque, 5 units ahead);
    ``n_off`` more lie far off to the side, where no click of that view reaches them."""
    from engine.core.scene import GaussianScene

    n = 1 + n_off
    means = np.zeros((n, 3), np.float32)
    means[0] = (0, 0, 5)
    means[1:, 0] = 100 + np.arange(n_off)
    scales = np.full((n, 3), np.log(0.02), np.float32)
    scales[0] = np.log(1.0)
    quats = np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1))
    opac = np.full(n, 4.0, np.float32)  # logit: opacity 0.98
    return GaussianScene(means, scales, quats, opac, np.zeros((n, 3), np.float32), np.zeros((n, 0, 3), np.float32))


def _front_camera() -> Camera:
    K = np.array([[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]])
    return Camera(np.eye(4), K, 64, 64, "front")


def _unit(*v: float) -> np.ndarray:
    x = np.asarray(v, np.float64)
    return x / np.linalg.norm(x)


def _trained(scene, coarse_feat, fine_feat, coarse_centers, fine_centers, coarse_labels, fine_labels):
    feats = np.zeros((scene.num_gaussians, 24), np.float32)
    feats[0, :12], feats[0, 12:] = coarse_feat, fine_feat
    return TrainedFeatures(feats, normalize_rows(coarse_centers), normalize_rows(fine_centers),
                           np.asarray(coarse_labels, np.int32), np.asarray(fine_labels, np.int32), {}, scene_hash(scene))


def _e(i: int, d: int = 12, scale: float = 1.0) -> np.ndarray:
    x = np.zeros(d)
    x[i] = scale
    return x


def test_fine_click_stays_inside_the_clicked_object():
    # Two alike objects A (coarse 0) and B (coarse 1), coarse cosine 0.95 (above the coarse
    # margin, below the 0.9 merge rule's reach of the clicked pixel's match: the click matches A
    # only). The clicked splat belongs to A, part cluster fine 0; fine 1 holds B's part. The
    # clicked fine feature lies nearer B's part (cosine 0.97) than A's (0.85): the old rule
    # (best fine cluster anywhere) selects B's part, the new one A's.
    scene = _one_splat_scene(8)
    coarse_a, coarse_b = _e(0), np.concatenate([_unit(1, 0.33), np.zeros(10)])
    tail_a, tail_b = _e(0), np.concatenate([_unit(0.7, np.sqrt(1 - 0.49)), np.zeros(10)])
    fine_centers = np.stack([np.concatenate([coarse_a, tail_a]), np.concatenate([coarse_b, tail_b])])
    tf = _trained(scene, coarse_a, tail_b, np.stack([coarse_a, _e(1)]), fine_centers,
                  [0, 0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1, 1, 1])
    index = ClickIndex.build(scene)
    cam = _front_camera()
    assert click_query(index, tf, cam, 32.5, 32.5, "coarse").clusters == [0]  # the object under the cursor: A
    old = click_query(index, tf, cam, 32.5, 32.5, "fine", within_object=False)
    new = click_query(index, tf, cam, 32.5, 32.5, "fine")
    assert old.clusters == [1] and set(old.selected) == {5, 6, 7, 8}  # B's part
    assert new.clusters == [0] and set(new.selected) == {0, 1, 2, 3, 4}  # A's part
    assert 0.8 < new.similarity < 0.9
    # none of A's parts matches (A's part cluster at cosine 0.5 < the fine threshold 0.75):
    # every fine cluster competes, as before
    fine_centers[0, 12:] = _e(2)
    tf = _trained(scene, coarse_a, tail_b, np.stack([coarse_a, _e(1)]), fine_centers,
                  [0, 0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1, 1, 1])
    assert click_query(index, tf, cam, 32.5, 32.5, "fine").clusters == [1]


def test_fine_click_takes_a_part_split_in_two_and_not_its_sibling(monkeypatch):
    # One object (coarse 0) with two parts; part P came out as two fine clusters (0 and 1, the
    # two sides of a thin part: centres at cosine 0.99), its sibling S as cluster 2 (cosine 0.8).
    scene = _one_splat_scene(6)
    coarse = _e(0)
    side_a = np.concatenate([coarse, _unit(1, 0.0, *[0] * 10)])
    side_b = np.concatenate([coarse, _unit(1, 0.2, *[0] * 10)])
    sibling = np.concatenate([coarse, _unit(0, 1, *[0] * 10)])
    fine_centers = np.stack([side_a, side_b, sibling])
    assert float(normalize_rows(fine_centers)[0] @ normalize_rows(fine_centers)[1]) > 0.98
    assert float(normalize_rows(fine_centers)[0] @ normalize_rows(fine_centers)[2]) < 0.9
    tf = _trained(scene, coarse, _unit(1, 0.0, *[0] * 10), coarse[None], fine_centers,
                  [0] * 7, [0, 0, 0, 1, 1, 2, 2])
    index = ClickIndex.build(scene)
    cam = _front_camera()
    new = click_query(index, tf, cam, 32.5, 32.5, "fine")
    monkeypatch.setattr(click, "SAME_PART_COS", None)  # the rule before: the best cluster alone
    old = click_query(index, tf, cam, 32.5, 32.5, "fine", within_object=False)
    assert old.clusters == [0] and set(old.selected) == {0, 1, 2}  # one side of the part only
    assert sorted(new.clusters) == [0, 1] and set(new.selected) == {0, 1, 2, 3, 4}  # the whole part, not S
    table = index.fine_in_coarse  # built by the first fine click, kept for the next ones
    assert table is not None and table[0] is tf.fine_labels
    monkeypatch.undo()  # today's rule again
    again = click_query(index, tf, cam, 32.5, 32.5, "fine")
    assert index.fine_in_coarse is table and again.clusters == new.clusters


def test_clusters_inside_counts_opacity_majorities():
    from engine.core.click import clusters_inside

    fine = np.array([0, 0, 0, 1, 1, 2, -1, 3])
    coarse = np.array([0, 0, 1, 1, 1, 0, 0, -1])
    w = np.array([1, 1, 1, 1, 1, 0.5, 9, 1.0])
    # fine 0: 2 of 3 inside object {0}; fine 1: none; fine 2: all; fine 3: its Gaussian has no coarse label
    np.testing.assert_array_equal(clusters_inside(fine, coarse, w, [0], 5), [0, 2])
    np.testing.assert_array_equal(clusters_inside(fine, coarse, w, [0, 1], 5), [0, 1, 2])
    np.testing.assert_array_equal(clusters_inside(fine, coarse, w, [0], 5, share=0.9), [2])
    assert clusters_inside(fine, coarse, w, [4], 5).size == 0


def test_fine_coarse_table_gives_the_same_clusters_and_is_built_once_per_labels():
    from engine.core.click import clusters_inside, fine_coarse_weights

    rng = np.random.default_rng(3)
    fine = rng.integers(-1, 6, 500)
    coarse = rng.integers(-1, 3, 500)
    w = rng.random(500)
    table = fine_coarse_weights(fine, coarse, w, 6, 3)
    assert table.shape == (6, 4)
    np.testing.assert_allclose(table.sum(), w[fine >= 0].sum())
    for objects in ([0], [1, 2], [0, 1, 2], [5]):
        for share in (0.3, 0.5, 0.9):
            np.testing.assert_array_equal(clusters_inside(fine, coarse, w, objects, 6, share),
                                          clusters_inside(fine, coarse, w, objects, 6, share, table=table))
