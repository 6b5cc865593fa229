"""The trainer: settings validation, importance sampling, learning on a synthetic cache,
cancel + checkpoint + exact resume, bad input, and the render-backed cache."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from engine.core.cameras import Camera
from engine.core.errors import Cancelled, TrainingError
from engine.core.scene import GaussianScene
from engine.train import TrainSettings, TrainView, train
from engine.train.data import ViewCache, cache_from_contributors, importance_probabilities
from engine.train.trainer import load_checkpoint, train_from_caches

GROUPS = 3  # objects (coarse); each has 2 parts (fine)
PER_PART = 40


def _scene() -> GaussianScene:
    rng = np.random.default_rng(0)
    n = GROUPS * 2 * PER_PART
    part = np.arange(n) // PER_PART
    centers = np.array([[3.0 * (p // 2), 0.8 * (p % 2), 0.0] for p in range(GROUPS * 2)])
    means = centers[part] + rng.normal(0, 0.1, (n, 3))
    return GaussianScene(
        means=means.astype(np.float32),
        scales=np.full((n, 3), -3.0, np.float32),
        quats=np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1)),
        opacities=np.zeros(n, np.float32),
        sh_dc=np.zeros((n, 3), np.float32),
        sh_rest=np.zeros((n, 0, 3), np.float32),
    )


class _Masks:
    def __init__(self, coarse: np.ndarray, fine: np.ndarray) -> None:
        self.coarse, self.fine = coarse, fine
        self.shape = coarse.shape


def _caches(n_views: int = 4, h: int = 12, w: int = 18, k: int = 6) -> list[ViewCache]:
    """Synthetic views: each pixel blends k Gaussians of one part; masks follow the parts, with
    view-local IDs (shuffled per view) as a real mask source would give."""
    out = []
    for v in range(n_views):
        rng = np.random.default_rng(100 + v)
        part_of_pixel = (np.arange(w)[None, :] * (GROUPS * 2) // w).repeat(h, 0)  # [h, w]
        ids = np.empty((h, w, k), np.int64)
        for p in range(GROUPS * 2):
            sel = part_of_pixel == p
            ids[sel] = rng.integers(p * PER_PART, (p + 1) * PER_PART, (int(sel.sum()), k))
        wts = rng.dirichlet(np.ones(k), size=(h, w)) * 0.95
        perm_c, perm_f = rng.permutation(GROUPS), rng.permutation(GROUPS * 2)
        coarse = perm_c[part_of_pixel // 2].astype(np.int32)
        fine = perm_f[part_of_pixel].astype(np.int32)
        coarse[0, :] = -1  # some unassigned pixels
        cache = cache_from_contributors(ids, wts, _Masks(coarse, fine), name=f"v{v}")
        assert cache is not None
        out.append(cache)
    return out


FAST = dict(iterations=60, pixels_per_iter=200, gfl_start=40, gfl_interval=10, checkpoint_every=25, device="cpu")


def test_settings_reject_absurd_values():
    with pytest.raises(TrainingError, match="iterations"):
        TrainSettings(iterations=-5)
    with pytest.raises(TrainingError, match="lr"):
        TrainSettings(lr=-0.01)
    with pytest.raises(TrainingError, match="lr"):
        TrainSettings(lr=float("nan"))
    with pytest.raises(TrainingError, match="pixels_per_iter"):
        TrainSettings(pixels_per_iter=1)
    with pytest.raises(TrainingError, match="margin_fine"):
        TrainSettings(margin_fine=1.5)
    with pytest.raises(TrainingError, match="at least one"):
        TrainSettings(use_contrastive=False, use_gfl=False, use_spatial=False)
    s = TrainSettings.paper()  # the paper's constants (the defaults differ in two: engine.core.schedule)
    assert (s.iterations, s.lr, s.pixels_per_iter, s.gfl_start) == (3000, 0.01, 10_000, 2000)
    assert (s.margin_coarse, s.margin_fine, s.w_neg, s.w_gfl, s.w_3d, s.w_2d, s.w_spatial) == (
        0.5, 0.75, 0.1, 10.0, 0.2, 0.2, 0.5)
    assert TrainSettings.from_dict(s.to_dict()) == s
    assert TrainSettings().replace(w_neg=s.w_neg, gfl_start=s.gfl_start) == s


def test_importance_sampling_gives_every_segment_equal_mass():
    seg_c = np.array([0] * 90 + [1] * 10 + [-1] * 5)
    seg_f = np.array([0] * 50 + [1] * 40 + [2] * 10 + [-1] * 5)
    p = importance_probabilities(seg_c, seg_f)
    assert p.sum() == pytest.approx(1.0)
    assert p[100:].sum() == 0
    # coarse half: 0.25 per coarse segment; fine half: 1/6 per fine segment
    assert p[90:100].sum() == pytest.approx(0.25 + 1 / 6)
    assert p[:50].sum() == pytest.approx(0.25 * 50 / 90 + 1 / 6)
    # only one level assigned: all the mass goes to it
    p2 = importance_probabilities(np.full(4, -1), np.array([0, 0, 0, 1]))
    assert p2[3] == pytest.approx(0.5)


def _purity(labels: np.ndarray, truth: np.ndarray) -> float:
    ok = labels >= 0
    if not ok.any():
        return 0.0
    good = 0
    for k in np.unique(labels[ok]):
        good += np.bincount(truth[labels == k]).max()
    return good / len(labels)


def test_training_separates_objects_and_parts():
    scene = _scene()
    tf = train_from_caches(scene, _caches(), TrainSettings(**FAST))
    n = scene.num_gaussians
    part = np.arange(n) // PER_PART
    assert tf.features.shape == (n, 24) and tf.features.dtype == np.float16
    assert len(tf.coarse_centers) >= 2 and len(tf.fine_centers) >= 2
    # Gaussians of different objects have dissimilar coarse features, same object similar
    u = tf.unit_features("coarse")
    obj_mean = np.stack([u[part // 2 == o].mean(0) for o in range(GROUPS)])
    obj_mean /= np.linalg.norm(obj_mean, axis=1, keepdims=True)
    cos = obj_mean @ obj_mean.T
    assert np.all(cos[~np.eye(GROUPS, dtype=bool)] < 0.6)
    assert _purity(tf.coarse_labels, part // 2) > 0.9
    assert (tf.coarse_labels >= 0).mean() > 0.9
    assert tf.settings["iterations"] == 60 and tf.settings["run"]["views"] == 4


def test_cancel_writes_checkpoint_and_resume_reproduces_the_full_run(tmp_path):
    scene = _scene()
    caches = _caches()
    s = TrainSettings(**FAST)
    full = train_from_caches(scene, caches, s)
    ck = str(tmp_path / "run.ckpt")
    cancel = threading.Event()

    def prog(p):
        if p.phase == "train" and p.iteration >= 47:
            cancel.set()

    with pytest.raises(Cancelled, match="checkpoint"):
        train_from_caches(scene, caches, s, progress=prog, cancel=cancel, checkpoint_path=ck)
    st = load_checkpoint(ck)
    assert 47 <= st["iteration"] < 60
    seen = []
    resumed = train_from_caches(scene, caches, s, checkpoint_path=ck, resume=True,
                                progress=lambda p: seen.append(p.iteration))
    assert min(i for i in seen if i > 0) > st["iteration"]  # continued, not restarted
    np.testing.assert_array_equal(resumed.features, full.features)
    np.testing.assert_array_equal(resumed.coarse_labels, full.coarse_labels)
    assert load_checkpoint(ck)["iteration"] == 60


def test_progress_returning_false_cancels():
    with pytest.raises(Cancelled):
        train_from_caches(_scene(), _caches(), TrainSettings(**FAST), progress=lambda p: False)


def test_resume_refuses_other_scene_or_settings(tmp_path):
    scene = _scene()
    caches = _caches()
    ck = str(tmp_path / "c.ckpt")
    train_from_caches(scene, caches, TrainSettings(**{**FAST, "iterations": 30}), checkpoint_path=ck)
    with pytest.raises(TrainingError, match="other settings"):
        train_from_caches(scene, caches, TrainSettings(**{**FAST, "lr": 0.02}), checkpoint_path=ck, resume=True)
    other = scene.subset(np.arange(scene.num_gaussians))
    other.means = other.means + 1
    with pytest.raises(TrainingError, match="another scene"):
        train_from_caches(other, caches, TrainSettings(**FAST), checkpoint_path=ck, resume=True)
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(TrainingError, match="not a readable"):
        train_from_caches(scene, caches, TrainSettings(**FAST), checkpoint_path=str(tmp_path / "junk.ckpt"), resume=True)


def test_ablation_switches_change_the_loss_terms():
    scene = _scene()
    caches = _caches()
    seen: dict[str, float] = {}
    s = TrainSettings(**{**FAST, "iterations": 5, "use_gfl": False, "use_spatial": False, "use_2d_norm": False})
    train_from_caches(scene, caches, s, progress=lambda p: seen.update(p.losses))
    assert set(seen) == {"pos", "neg", "3d", "total"}
    tf = train_from_caches(scene, caches, TrainSettings(**{**FAST, "iterations": 5, "use_prior": False}))
    assert not tf.granularity_prior
    assert np.all(tf.level_features("fine")[:, :12] == 0)


def _cam(w: int = 24, h: int = 20) -> Camera:
    K = np.array([[30.0, 0, w / 2], [0, 30.0, h / 2], [0, 0, 1]])
    vm = np.eye(4)
    vm[:3, 3] = [-3.0, -0.4, 8.0]  # look at the middle object from 8 units
    return Camera(vm, K, w, h, "cam")


def test_bad_views_give_clear_errors():
    scene = _scene()
    cam = _cam()
    with pytest.raises(TrainingError, match="no training views"):
        train(scene, [], TrainSettings(**FAST))
    with pytest.raises(TrainingError, match="has no masks"):
        train(scene, [TrainView(cam, None, None)], TrainSettings(**FAST))
    empty = _Masks(np.full((20, 24), -1, np.int32), np.full((20, 24), -1, np.int32))
    with pytest.raises(TrainingError, match="none of the 1 training views"):
        train(scene, [TrainView(cam, None, empty)], TrainSettings(**FAST))
    wrong = _Masks(np.zeros((10, 10), np.int32), np.zeros((10, 10), np.int32))
    with pytest.raises(TrainingError, match="masks are 10x10"):
        train(scene, [TrainView(cam, None, wrong)], TrainSettings(**FAST))


def test_cache_blend_equals_renderer_feature_render():
    from engine.render.gaussians import Gaussians
    from engine.render.renderer import render

    scene = _scene()
    scene.scales[:] = -1.5
    g = Gaussians.from_scene(scene, "cpu")
    cam = _cam()
    out = render(g, cam, contributors_k=32)
    masks = _Masks(np.zeros((20, 24), np.int32), np.zeros((20, 24), np.int32))
    cache = cache_from_contributors(out.contributors.ids, out.contributors.weights, masks)
    assert cache is not None and len(cache) > 50
    feats = torch.randn(scene.num_gaussians, 24)
    full = render(g, cam, feats).values.reshape(-1, 24)
    from engine.train.gfl import blend_cached

    # pixels whose top-32 contributors hold all of the pixel's weight must match exactly
    complete = (cache.weights.sum(1) - out.alpha.reshape(-1)[cache.pixels]).abs() < 1e-4
    assert complete.sum() > 20
    torch.testing.assert_close(blend_cached(cache, feats)[complete], full[cache.pixels][complete], atol=1e-3, rtol=1e-3)


def test_train_benchmark_pair_terms_runs(capsys):
    from engine.bench import train as bench

    assert bench.main(["--pixels", "300", "--skip-scene"]) == 0
    out = capsys.readouterr().out
    assert "neg_term_fused_300x24:" in out and "pos_term_exact_300x24:" in out
    rel = float(out.split("neg_term_rel_diff:")[1].split()[0])
    assert rel < 1e-4


@pytest.mark.slow
def test_train_and_segment_commands_on_the_fox(fox_path, tmp_path):
    """End to end on the real fox: orbit views rendered from the splats, built-in masks, a short
    training, the features file, a resumable checkpoint, then segment-everything PNGs."""
    from PIL import Image

    from engine.__main__ import main
    from engine.core.features import TrainedFeatures

    out = tmp_path / "fox.clickgs.npz"
    rc = main(["train", str(fox_path), "--out", str(out), "--views", "8", "--size", "96x96",
               "--iterations", "150", "--pixels", "800", "--device", "cpu"])
    assert rc == 0
    tf = TrainedFeatures.load(out)
    assert tf.num_gaussians == 50_000 and tf.settings["iterations"] == 150
    assert (tmp_path / "fox.clickgs.npz.ckpt").is_file()
    assert any((tmp_path / "fox.clickgs.npz.masks").iterdir())  # masks cached
    seg = tmp_path / "seg"
    rc = main(["segment", str(fox_path), "--features", str(out), "--out", str(seg), "--views", "1",
               "--size", "48x40", "--level", "coarse"])
    assert rc == 0
    pngs = sorted(p.name for p in seg.iterdir())
    assert len(pngs) == 2 and pngs[0].endswith("_coarse.png")
    im = np.asarray(Image.open(seg / pngs[0]))
    assert im.shape == (40, 48, 3)
    ids = np.asarray(Image.open(seg / pngs[1]))
    assert ids.shape == (40, 48) and ids.max() <= len(tf.coarse_centers)
    # bad input: features for another scene, an unknown checkpoint to resume
    assert main(["train", str(fox_path), "--out", str(tmp_path / "x.npz"), "--resume"]) == 2
    assert main(["train", str(fox_path), "--out", str(out), "--iterations", "-3"]) == 2


@pytest.mark.cuda
def test_training_on_cuda_separates_objects():
    scene = _scene()
    caches = [c.to("cuda") for c in _caches()]
    tf = train_from_caches(scene, caches, TrainSettings(**{**FAST, "device": "cuda"}))
    part = np.arange(scene.num_gaussians) // PER_PART
    assert _purity(tf.coarse_labels, part // 2) > 0.9


def test_global_clusters_from_few_candidates():
    from engine.train.gfl import cluster_centers

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    vecs = np.stack([a + 0.05 * rng.normal(size=12) for _ in range(4)] + [b + 0.05 * rng.normal(size=12) for _ in range(3)])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    c = cluster_centers(vecs, epsilon=1e-2, min_size=3, fallback_cos=0.5)
    assert c.shape == (2, 12)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1, atol=1e-5)
    # many candidates: HDBSCAN proper finds the three groups
    g = rng.normal(size=(3, 12))
    many = np.concatenate([gi + 0.03 * rng.normal(size=(40, 12)) for gi in g])
    many /= np.linalg.norm(many, axis=1, keepdims=True)
    assert cluster_centers(many, epsilon=1e-2, min_size=5).shape == (3, 12)


def test_remove_slivers_drops_thin_remnants_and_keeps_regions():
    from engine.train.data import remove_slivers, solid_share

    m = np.full((14, 16), -1, np.int32)
    m[1:12, 1:12] = 1  # ring (id 1) one pixel wide around a solid 9x9 block (id 0)
    m[2:11, 2:11] = 0
    m[:, 13:16] = 2  # a stripe three pixels wide: thin but a region
    m[13, 0] = 3  # a lone pixel
    total, solid = solid_share(m)
    assert total.tolist() == [81, 40, 42, 1] and solid.tolist() == [81, 0, 42, 0]
    out = remove_slivers(m)
    assert (out[m == 1] == -1).all() and (out[m == 3] == -1).all()
    assert (out[m == 0] == 0).all() and (out[m == 2] == 2).all() and (out[m == -1] == -1).all()
    assert remove_slivers(np.full((4, 4), -1)).tolist() == np.full((4, 4), -1).tolist()


def test_vote_labels_follow_blending_weight_and_fall_back_to_own_feature():
    from engine.train.gfl import vote_labels

    # 3 Gaussians, 2 clusters (x and y axes). Pixel 0 renders ~x (G0 strong, G1 weak), pixel 1
    # renders ~y (G1 strong). G1's own feature points at x, but most of its weight goes to y.
    # G2 is in no pixel: its own feature decides (y), unless below the threshold.
    ids = torch.tensor([[0, 1], [1, 0]], dtype=torch.int32)
    w = torch.tensor([[0.9, 0.05], [0.9, 0.01]])
    cache = ViewCache(ids, w, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                      torch.full((2,), 0.5), torch.arange(2), 1, 2)
    feats = torch.tensor([[1.0, 0.0], [0.6, 0.4], [0.1, 1.0]])
    centers = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    feats_y = feats.clone()
    feats_y[1] = torch.tensor([0.0, 1.0])  # make pixel 1 render y
    labels = vote_labels([cache], feats_y, centers, 0.5)
    assert labels.tolist() == [0, 1, 1]
    feats_y[2] = torch.tensor([-1.0, 0.2])  # unseen and matching nothing -> -1
    assert vote_labels([cache], feats_y, centers, 0.5).tolist() == [0, 1, -1]


def test_trim_boundaries_unassigns_pixels_where_two_segments_meet():
    from engine.train.data import trim_boundaries

    m = np.full((6, 9), -1, np.int32)
    m[:, 0:4] = 0
    m[:, 4:7] = 1  # columns 7-8 stay unassigned: a border with nothing is kept
    out = trim_boundaries(m)
    assert (out[:, 0:3] == 0).all() and (out[:, 3] == -1).all()
    assert (out[:, 4] == -1).all() and (out[:, 5:7] == 1).all() and (out[:, 7:] == -1).all()
    diag = np.array([[0, -1], [-1, 1]])  # diagonal neighbours count (8-neighbourhood)
    assert (trim_boundaries(diag) == -1).all()
    assert (trim_boundaries(np.zeros((3, 3), int)) == 0).all()  # one segment: no seam, the image border stays


def test_absurd_number_of_views_is_refused_before_rendering():
    from engine.core.cameras import Camera, intrinsics
    from engine.core.errors import TrainingError
    from engine.train.data import check_memory_for_views

    cam = Camera(np.eye(4), intrinsics(200.0, 200.0, 128.0, 128.0), 256, 256, "v")
    check_memory_for_views([cam] * 32)
    with pytest.raises(TrainingError, match="fewer or smaller views"):
        check_memory_for_views([cam] * 10_000_000)


def test_row_adam_matches_torch_adam_on_rows_it_steps():
    import torch
    from engine.train.trainer import RowAdam

    g = torch.Generator().manual_seed(0)
    p_ref = torch.randn(50, 24, generator=g)
    p = p_ref.clone()
    p_ref.requires_grad_()
    ref = torch.optim.Adam([p_ref], lr=0.01)
    mine = RowAdam(50, 24, 0.01, torch.device("cpu"))
    for _ in range(5):
        grad = torch.randn(50, 24, generator=g)
        p_ref.grad = grad.clone()
        ref.step()
        mine.step(p, grad, None)
    assert torch.allclose(p, p_ref.detach(), atol=1e-6)
    # lazy: rows not given are not moved, rows given step like Adam with their own step count
    before = p.clone()
    rows = torch.tensor([3, 7])
    mine.step(p, torch.randn(2, 24, generator=g), rows)
    untouched = torch.ones(50, dtype=torch.bool)
    untouched[rows] = False
    assert torch.equal(p[untouched], before[untouched])
    assert not torch.equal(p[rows], before[rows])
    assert mine.steps[rows].tolist() == [6, 6] and int(mine.steps[0]) == 5


def test_sparse_iterations_learn_and_resume_exactly(tmp_path):
    """Spatial and GFL samples smaller than N: each iteration steps only the rows it touches."""
    scene = _scene()
    caches = _caches()
    n = scene.num_gaussians
    s = TrainSettings(**{**FAST, "spatial_samples": max(2, n // 8), "gfl_samples": max(2, n // 8)})
    full = train_from_caches(scene, caches, s)
    part = np.arange(n) // PER_PART
    assert _purity(full.coarse_labels, part // 2) > 0.9
    ck = str(tmp_path / "run.ckpt")
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        train_from_caches(scene, caches, s, cancel=cancel, checkpoint_path=ck,
                          progress=lambda p: cancel.set() if p.phase == "train" and p.iteration >= 30 else None)
    resumed = train_from_caches(scene, caches, s, checkpoint_path=ck, resume=True)
    np.testing.assert_array_equal(resumed.features, full.features)


def test_intermediate_results_are_published_and_do_not_change_the_run(monkeypatch):
    from engine.train import trainer as T

    monkeypatch.setattr(T, "FIRST_RESULT_ITERATION", 20)
    monkeypatch.setattr(T, "RESULT_INTERVAL", 25)
    scene = _scene()
    caches = _caches()
    s = TrainSettings(**FAST)
    plain = train_from_caches(scene, caches, s)
    got = []
    final = train_from_caches(scene, caches, s, publish=got.append)
    assert [r.settings["run"]["iteration"] for r in got] == [20, 45]
    assert all(r.settings["run"]["provisional"] for r in got)
    assert "provisional" not in final.settings["run"]
    assert got[0].coarse_labels.shape == (scene.num_gaussians,)
    np.testing.assert_array_equal(final.features, plain.features)


def test_views_keep_the_contributors_of_their_render_and_give_the_same_caches(fox_path):
    """Views whose images are rendered keep that render's contributors; the caches built from
    them equal the caches from rendering every view again (the reference), bit for bit, and the
    images equal the plain image render."""
    from engine.core.cameras import orbit_cameras
    from engine.core.formats.ply import read_ply
    from engine.masks import BuiltinMaskSource
    from engine.render.gaussians import Gaussians
    from engine.train import views_from_scene
    from engine.train.data import build_caches, render_image

    scene = read_ply(str(fox_path))
    g = Gaussians.from_scene(scene, "cpu")
    cams = orbit_cameras(scene, 3, 64, 48)
    fused = views_from_scene(scene, cams, BuiltinMaskSource(), gaussians=g, device="cpu", contributors_k=32)
    plain = [TrainView(v.camera, v.image, v.masks) for v in fused]  # no contributors: rendered again
    assert all(v.contributors is not None and v.contributors.weights.dtype == torch.float32 for v in fused)
    for v in fused:
        np.testing.assert_array_equal(v.image, render_image(g, v.camera))
    got, _ = build_caches(g, fused, 32)
    want, _ = build_caches(g, plain, 32)
    assert len(got) == len(want) == 3
    for a, b in zip(got, want):
        for name in ("ids", "weights", "seg_c", "seg_f", "prob", "pixels"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    # another K than the kept one renders the view again
    other, _ = build_caches(g, fused, 8)
    assert all(c.ids.shape[1] <= 8 for c in other)
