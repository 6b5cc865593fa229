"""``python -m engine.bench quality``: segmentation quality on scenes with known ground truth.

For every seed: a procedural tabletop scene (:mod:`engine.bench.evaluation.synth`), its training views rendered
once through the project renderer with their top-K contributors (ground-truth id maps by
contributor vote), SAM-like two-level masks simulated from that ground truth
(:mod:`engine.bench.evaluation.masksim` -> :func:`engine.masks.area_rule`), then every variant trained from the
same frozen-geometry caches (:func:`engine.train.trainer.train_from_caches`) and scored on
held-out test views with the paper's protocol (:mod:`engine.bench.evaluation.metrics`): label-propagation mIoU
(coarse = objects, fine = parts, all = pooled), click-extraction IoU (opacity-weighted) and click
latency (:func:`engine.core.click.click_query`). Results are means over seeds; a Markdown table in the
shape of the paper's Tables 1 and 3 is printed and written with PNG pictures (image, ground
truth, segment-everything and PCA pictures of the coarse and fine feature maps).

Variants: ``full`` (the paper's model), ``no_gfl``, ``no_prior`` (no granularity prior),
``no_3d`` / ``no_2d`` / ``no_spatial`` (each regulariser off), ``baseline`` (no learning:
:mod:`engine.bench.evaluation.baseline`), and on request ``oracle`` (the ground-truth ids packaged as features:
the best score the protocol can give on these scenes, limited by pixels that blend two ids).

Default sizes are reduced from the paper's protocol so 5 seeds x 7 variants (+ oracle) take
about 5 minutes with ``--jobs 5`` on 2 CPU cores (measured; docs/quality.md lists the
reductions); ``--iterations 3000 --pixels 10000 --views 48 --size 256x256`` restores the paper's
schedule (GFL then starts at 2/3 of the iterations = 2000, recomputed every iterations/30 = 100).

Device: ``--device auto`` (default) renders, trains and scores on CUDA when torch sees a GPU
(rendering with contributors uses the project's tile rasterizer on the GPU; gsplat is never
called), else on the CPU. Parallel ``--jobs`` share the one GPU; measured on an H200 with 16
cores, 5 jobs ran the paper's schedule for 5 seeds far inside 10 minutes (docs/quality.md).
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..cli.options import parse_size
from ..core.atomic import write_png, write_text
from ..core.errors import EngineError
from ..core.features import LEVELS

VARIANTS = {
    "full": {},
    "no_gfl": {"use_gfl": False},
    "no_prior": {"use_prior": False},
    "no_3d": {"use_3d_norm": False},
    "no_2d": {"use_2d_norm": False},
    "no_spatial": {"use_spatial": False},
    "baseline": None,  # no learning: engine.bench.evaluation.baseline
    "oracle": None,  # ground-truth ids as features: the protocol's ceiling (not in the default list)
}
MASK_MODES = ("simulated", "builtin", "sam")
DEFAULT_VARIANTS = ("full", "no_gfl", "no_prior", "no_3d", "no_2d", "no_spatial", "baseline")
LABELS = {
    "full": "Click-Gaussian (full)",
    "no_gfl": "w/o GFL",
    "no_prior": "w/o granularity prior",
    "no_3d": "w/o 3D norm",
    "no_2d": "w/o 2D norm",
    "no_spatial": "w/o spatial",
    "baseline": "baseline: HDBSCAN on xyz+rgb (no learning)",
    "oracle": "oracle: ground-truth ids as features (protocol ceiling)",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.bench quality", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="scene seeds (results are means over them)")
    p.add_argument("--noise", default="realistic",
                   help="mask noise level: clean, realistic (default), hard; overrides of single failure modes "
                        "after commas, e.g. realistic,merge=0 (engine.bench.evaluation.masksim.MaskNoise)")
    p.add_argument("--masks", default="simulated", choices=MASK_MODES,
                   help="training masks: simulated (SAM-like masks from the ground truth, degraded by --noise; "
                        "default), builtin (end-to-end: the product's built-in mask source on the training views "
                        "rendered from the splats, through engine.train.views_from_scene as in the product) or sam "
                        "(end-to-end with segment-anything; needs --sam-checkpoint)")
    p.add_argument("--masks-options", default=None,
                   help='JSON settings of the --masks source, e.g. \'{"use_geometry": false}\' (the built-in '
                        "masks from colour alone, as before they used the splats' geometry)")
    p.add_argument("--sam-checkpoint", default=None, help="SAM checkpoint file for --masks sam")
    p.add_argument("--sam-model", default=None, help="SAM model type for --masks sam (default: from the file name)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    p.add_argument("--iterations", type=int, default=400, help="training iterations (paper: 3000)")
    p.add_argument("--pixels", type=int, default=1024, help="pixels per iteration (paper: 10000)")
    p.add_argument("--preset", choices=("product", "paper"), default="product",
                   help="training constants (engine.core.schedule): product (default) or the paper's")
    p.add_argument("--gfl-start", type=int, default=None,
                   help="GFL start iteration (default: the preset's fraction of --iterations; paper: 2000 of 3000)")
    p.add_argument("--settings", nargs="+", default=[], metavar="KEY=VALUE",
                   help="TrainSettings fields to change for every variant, e.g. neg_columns=0")
    p.add_argument("--gaussians", type=int, default=20_000, help="Gaussians per scene (approximate)")
    p.add_argument("--objects", type=int, default=6, help="objects per scene (1-8)")
    p.add_argument("--views", type=int, default=24, help="training views per scene")
    p.add_argument("--test-views", type=int, default=8, help="held-out evaluation views per scene")
    p.add_argument("--size", default="160x160", help="view size WxH in pixels")
    p.add_argument("--touch", type=float, default=0.5, help="scene family: chance an object touches another")
    p.add_argument("--alike", type=float, default=0.35, help="scene family: chance of alike colours")
    p.add_argument("--pictures", type=int, default=3, help="test views pictured per variant (first seed)")
    p.add_argument("--out", default="out/quality", help="output folder (table, results.json, PNGs)")
    p.add_argument("--report", default=None, help="also write the Markdown report here (e.g. docs/quality.md)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when torch sees a GPU, else CPU), cpu, cuda or cuda:N: where scenes are "
                        "rendered, trained and scored")
    p.add_argument("--jobs", type=int, default=1, help="seeds run in parallel worker processes (they share a GPU)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = torch's default, or cores/jobs)")
    return p


# ----------------------------------------------------------------------------- pictures
def _palette(n: int) -> np.ndarray:
    """[n + 1, 3] uint8 distinct colours; index 0 is for -1 (black)."""
    cols = [(0, 0, 0)]
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.65 + 0.35 * ((i // 7) % 2), 0.95 - 0.3 * ((i // 3) % 2))
        cols.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.array(cols, np.uint8)


def _colorize(ids: np.ndarray) -> np.ndarray:
    pal = _palette(int(ids.max()) + 1 if ids.size else 1)
    return pal[np.asarray(ids) + 1]


def _pca_rgb(feat: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """PCA picture uint8 [H, W, 3] of a feature map [H, W, C]: the first three principal
    components over covered pixels, each stretched to its 1-99 percentile range."""
    h, w, c = feat.shape
    x = feat.reshape(-1, c).astype(np.float64)
    fg = alpha.reshape(-1) >= 0.5
    out = np.zeros((h * w, 3))
    if fg.sum() >= 3:
        mu = x[fg].mean(0)
        _, _, vt = np.linalg.svd(x[fg] - mu, full_matrices=False)
        proj = (x - mu) @ vt[:3].T
        for k in range(proj.shape[1]):
            lo, hi = np.percentile(proj[fg, k], [1, 99])
            out[:, k] = np.clip((proj[:, k] - lo) / max(hi - lo, 1e-9), 0, 1)
    out[~fg] = 0
    return (out.reshape(h, w, 3) * 255).astype(np.uint8)


def _save_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, rgb)


# ----------------------------------------------------------------------------- evaluation
def evaluate(synth, test_views, trained, gaussians, click_index=None, pictures: int = 0, picture_path: Path | None = None):
    """Score ``trained`` (:class:`engine.core.features.TrainedFeatures`) on the test views.

    test_views: :class:`engine.bench.evaluation.synth.GroundTruthView` with packed contributors. Returns a list
    of :class:`engine.bench.evaluation.metrics.TargetResult` (objects at the coarse level, parts at the fine).
    """
    import torch

    from .evaluation import metrics as M

    maps: dict[str, list[np.ndarray]] = {"coarse": [], "fine": []}
    feats_render: dict[str, list[np.ndarray]] = {"coarse": [], "fine": []}
    for v in test_views:
        dense = v.contributors.to_dense()
        for level in LEVELS:
            f = dense.render(torch.from_numpy(trained.level_features(level)).to(dense.ids.device)).cpu().numpy()
            maps[level].append(M.assign_clusters(f, trained.centers(level), alpha=v.alpha))
            if len(feats_render[level]) < pictures:
                feats_render[level].append(f)
    gt = {"coarse": [v.object_map for v in test_views], "fine": [v.part_map for v in test_views]}
    names = {"coarse": synth.object_names, "fine": synth.part_names}
    ids_of = {"coarse": synth.object_id, "fine": synth.part_id}
    opac = synth.scene.activated_opacities()
    results = []
    for level in LEVELS:
        n_targets = synth.num_objects if level == "coarse" else synth.num_parts
        for t in range(1, n_targets + 1):
            r = M.propagation_scores(gt[level], maps[level], t)
            if r is None:
                continue
            ref, clusters, miou, n = r
            res = M.TargetResult(level, t, names[level][t], ref, clusters, miou, n)
            if click_index is not None:
                from ..core.click import click_query

                pt = M.interior_point(gt[level][ref] == t)
                cam = test_views[ref].camera
                t0 = time.perf_counter()
                cr = click_query(click_index, trained, cam, pt[0] + 0.5, pt[1] + 0.5, level=level)
                res.click_ms = (time.perf_counter() - t0) * 1000.0
                res.click_iou = M.weighted_iou(np.asarray(cr.selected), ids_of[level] == t, opac)
            results.append(res)
    if pictures and picture_path is not None:
        rows = []
        for i in range(min(pictures, len(test_views))):
            v = test_views[i]
            panels = [v.image, _colorize(v.object_map), _colorize(v.part_map)]
            for level in LEVELS:
                f = feats_render[level][i]
                c = trained.centers(level)
                seg = np.full(v.alpha.shape, -1, np.int32)
                if len(c):
                    seg = M.assign_clusters(f, c, alpha=v.alpha, threshold=-1.0)  # segment everything: argmax
                panels.append(_colorize(seg))
            for level in LEVELS:
                panels.append(_pca_rgb(feats_render[level][i], v.alpha))
            rows.append(np.concatenate(panels, axis=1))
        _save_png(picture_path, np.concatenate(rows, axis=0))
    return results


# ----------------------------------------------------------------------------- main
def _fmt(x: float, scale: float = 1.0, digits: int = 1) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{x * scale:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    from .evaluation.synth import scene_size_problem

    problem = scene_size_problem(args.gaussians, args.objects)
    if problem:
        parser.error(problem.replace("n_gaussians", "--gaussians").replace("n_objects", "--objects"))
    args.command_line = "python -m engine.bench quality " + " ".join(argv)
    try:
        return _run(args)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130


def train_settings(args: argparse.Namespace):
    """The TrainSettings of a run: the preset's constants (``args.preset``, default the product's),
    iterations, pixels, GFL start (the preset's fraction of the run unless given) and device from
    ``args`` (also used by ``python -m engine.bench diagnose``)."""
    from ..render.gaussians import resolve_device
    from ..core.schedule import preset_fields
    from ..train import TrainSettings

    fields = preset_fields(getattr(args, "preset", "product"), args.iterations)
    if args.gfl_start is not None:
        fields["gfl_start"] = args.gfl_start
    settings = TrainSettings(
        iterations=args.iterations, pixels_per_iter=args.pixels, checkpoint_every=10**6,
        device=str(resolve_device(args.device, "--device")), **fields,
    )
    return settings.replace(**_settings_overrides(getattr(args, "settings", None) or [], settings))


def _settings_overrides(pairs: list[str], settings) -> dict:
    """``--settings KEY=VALUE`` pairs as TrainSettings fields, each value read as the type of the
    field's current value (bool: true/false/1/0); TrainingError for an unknown field or value."""
    from ..core.errors import TrainingError

    out: dict = {}
    known = settings.to_dict()
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in known:
            raise TrainingError(f"--settings {pair!r}: expected FIELD=VALUE with a TrainSettings field")
        kind = type(known[key])
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                out[key] = text.lower() in ("true", "1")
            else:
                out[key] = kind(text)
        except ValueError:
            raise TrainingError(f"--settings {pair!r}: {text!r} is not a {kind.__name__}") from None
    return out


def _run_seed(args: argparse.Namespace, seed: int, variants: list[str], pictures: int, threads: int) -> dict:
    """Everything for one scene: generate, render ground truth, simulate masks, train and score
    every variant. Returns plain data (picklable): per variant the summary, wall time and the
    per-target results, plus the preparation time."""
    import torch

    from .evaluation import metrics as M
    from .evaluation.baseline import cluster_baseline, features_from_labels
    from ..render.gaussians import Gaussians
    from .evaluation.masksim import simulate_view_masks
    from .evaluation.synth import make_scene, render_ground_truth
    from ..train.data import cache_from_contributors
    from ..train.trainer import train_from_caches

    try:
        from ..core.click import ClickIndex
    except ImportError:
        ClickIndex = None  # noqa: N806 - click metrics are reported as n/a

    if threads:
        torch.set_num_threads(threads)
    width, height = parse_size(args.size, high=4096, error=EngineError)
    base = train_settings(args)
    device = base.device
    out = Path(args.out)
    t0 = time.perf_counter()
    synth = make_scene(
        seed, n_gaussians=args.gaussians, n_objects=args.objects, n_views=args.views,
        n_test_views=args.test_views, width=width, height=height, touch_prob=args.touch, alike_prob=args.alike,
    )
    g = Gaussians.from_scene(synth.scene, device)
    k = base.contributors_k
    test_gt = render_ground_truth(synth, synth.test_cameras, gaussians=g, keep_contributors=True, contributors_k=k)
    if args.masks == "simulated":
        train_gt = render_ground_truth(synth, synth.cameras, gaussians=g, keep_contributors=True, contributors_k=k)
        masks = simulate_view_masks([v.object_map for v in train_gt], [v.part_map for v in train_gt], args.noise,
                                    seed=seed)
        caches = []
        for v, m in zip(train_gt, masks):
            d = v.contributors.to_dense()
            c = cache_from_contributors(d.ids, d.weights, m, device=device, name=v.camera.name)
            if c is not None:
                caches.append(c)
            v.contributors = None  # the caches hold what training needs
        truth = [(v.object_map, v.part_map) for v in train_gt]
        images = [v.image for v in train_gt]
    else:
        caches, masks, truth, images = _product_masks(args, synth, g, k)
    mask_scores = {level: [s for m, t in zip(masks, truth) for s in M.mask_best_iou(m.level(level), t[i])]
                   for i, level in enumerate(LEVELS)}
    if pictures:
        from ..masks.preview import preview

        rows = [preview(images[i], masks[i]) for i in range(min(2, len(masks)))]
        _save_png(out / f"masks_{args.masks}_seed{seed}.png", np.concatenate(rows, axis=0))
    index = ClickIndex.build(synth.scene) if ClickIndex is not None else None
    prep = time.perf_counter() - t0
    print(f"seed {seed}: {synth.scene.num_gaussians} Gaussians, {synth.num_objects} objects, {synth.num_parts} parts, "
          f"{len(caches)} training views, prepared in {prep:.1f} s", flush=True)
    result = {"seed": seed, "prep_s": prep, "variants": {},
              "mask_iou": {level: float(np.mean(v)) if v else float("nan") for level, v in mask_scores.items()}}
    for variant in variants:
        t1 = time.perf_counter()
        if variant == "oracle":
            trained = features_from_labels(synth.scene, synth.object_id, synth.part_id, seed=seed)
        elif variant == "baseline":
            trained = cluster_baseline(synth.scene)
        else:
            trained = train_from_caches(synth.scene, caches, base.replace(seed=seed, **VARIANTS[variant]))
        wall = time.perf_counter() - t1
        pic = out / f"{variant}_seed{seed}.png" if pictures else None
        res = evaluate(synth, test_gt, trained, g, index, pictures=pictures, picture_path=pic)
        s = M.summarize(res)
        result["variants"][variant] = {
            "summary": asdict(s), "wall_s": wall,
            "targets": [{"seed": seed, "variant": variant, **asdict(r)} for r in res],
        }
        print(f"  seed {seed} {variant:<10} coarse {_fmt(s.coarse, 100)}  fine {_fmt(s.fine, 100)}  all {_fmt(s.all, 100)}  "
              f"click IoU obj {_fmt(s.click_coarse, 1, 3)} part {_fmt(s.click_fine, 1, 3)}  "
              f"click {_fmt(s.click_ms, 1, 2)} ms  ({wall:.1f} s)", flush=True)
    return result


def _mask_source(args: argparse.Namespace):
    """The product's mask source for an end-to-end run (``--masks builtin`` or ``sam``), made by
    :func:`engine.masks.registry.make_source` as the engine session makes it."""
    from ..masks.registry import make_source

    if args.masks == "sam" and not args.sam_checkpoint:
        raise EngineError("--masks sam needs --sam-checkpoint PATH (a segment-anything checkpoint file)")
    device = None if args.device == "auto" else args.device
    return make_source(args.masks, checkpoint=args.sam_checkpoint, model_type=args.sam_model, device=device,
                       options=_masks_options(args))


def _masks_options(args: argparse.Namespace) -> dict:
    """``--masks-options`` as a dict (a JSON object), with a one-line error otherwise."""
    if not args.masks_options:
        return {}
    try:
        options = json.loads(args.masks_options)
    except json.JSONDecodeError as exc:
        raise EngineError(f"--masks-options must be a JSON object ({exc.msg})") from None
    if not isinstance(options, dict):
        raise EngineError("--masks-options must be a JSON object, e.g. '{\"use_geometry\": false}'")
    return options


def _product_masks(args: argparse.Namespace, synth, g, k: int):
    """End-to-end training data: the training views rendered from the splats and masked by the
    product's mask source, through the product's own path (:func:`engine.train.data.views_from_scene`,
    :func:`engine.train.data.build_caches`). Returns (caches, per-view ViewMasks, per-view
    (object map, part map) ground truth by contributor vote, per-view images)."""
    from .evaluation.metrics import vote_labels
    from ..train.data import build_caches, views_from_scene

    source = _mask_source(args)
    views = views_from_scene(synth.scene, synth.cameras, source, gaussians=g, contributors_k=k,
                             on_warning=lambda message: None)
    truth = []
    for v in views:
        if v.contributors is not None:
            d = v.contributors.to_dense()
            ids, w = d.ids.cpu().numpy(), d.weights.float().cpu().numpy()
        else:  # gsplat made the image (CUDA): no contributors were kept
            from ..render.renderer import render

            c = render(g, v.camera, contributors_k=k).contributors
            ids, w = c.ids.cpu().numpy(), c.weights.float().cpu().numpy()
        truth.append((vote_labels(ids, w, synth.object_id), vote_labels(ids, w, synth.part_id)))
    caches, _ = build_caches(g, views, k)
    masks, images = [v.masks for v in views], [v.image for v in views]
    for v in views:
        v.contributors = None  # the caches hold what training needs
    return caches, masks, truth, images


def _run(args: argparse.Namespace) -> int:
    from .evaluation import metrics as M
    from .evaluation.masksim import noise_level

    width, height = parse_size(args.size, high=4096, error=EngineError)
    try:
        noise = noise_level(args.noise)
    except ValueError as exc:
        raise EngineError(f"--noise: {exc}") from None
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            raise EngineError(f"--variants: unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    if args.iterations < 1 or args.pixels < 2:
        raise EngineError("--iterations must be >= 1 and --pixels >= 2")
    if args.jobs < 1:
        raise EngineError("--jobs must be >= 1")
    if args.masks == "sam" and not args.sam_checkpoint:
        raise EngineError("--masks sam needs --sam-checkpoint PATH (a segment-anything checkpoint file)")
    if args.masks == "builtin":
        _mask_source(args)  # bad --masks-options fail here, in one line, not in every worker
    base = train_settings(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    code_version = _code_version()  # at start: the code the workers import
    jobs = min(args.jobs, len(args.seeds))
    threads = args.threads or (max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0)
    tasks = [(args, seed, variants, args.pictures if i == 0 else 0, threads) for i, seed in enumerate(args.seeds)]
    if jobs == 1:
        seed_results = [_run_seed(*t) for t in tasks]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            seed_results = list(pool.map(_run_seed, *zip(*tasks)))
    per_seed = {v: [M.Summary(**r["variants"][v]["summary"]) for r in seed_results] for v in variants}
    wall = {v: [r["variants"][v]["wall_s"] for r in seed_results] for v in variants}
    prep_s = [r["prep_s"] for r in seed_results]
    all_results = [t for r in seed_results for v in variants for t in r["variants"][v]["targets"]]
    total_s = time.perf_counter() - t_all
    mask_iou = {level: [r["mask_iou"][level] for r in seed_results] for level in LEVELS}
    report = _report(args, variants, per_seed, wall, prep_s, total_s, noise, width, height, base.gfl_start, base, jobs,
                     code_version, mask_iou)
    print()
    print(report)
    _write_text(out / "quality.md", report)
    _write_text(out / "results.json", json.dumps(all_results, indent=1, default=float))
    if args.report:
        _write_text(Path(args.report), report)
    print(f"wrote {out / 'quality.md'}, {out / 'results.json'} and pictures in {out}")
    return 0


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)


def _report(args, variants, per_seed, wall, prep_s, total_s, noise, width, height, gfl_start, base, jobs=1,
            code_version: str = "unknown", mask_iou: dict | None = None) -> str:
    from .evaluation import metrics as M

    if args.masks == "simulated":
        masks_text = (f"Training masks: simulated SAM-like masks, noise `{args.noise}` "
                      f"({', '.join(f'{k}={v}' for k, v in noise.as_dict().items())}).")
    else:
        masks_text = (f"Training masks: **end-to-end, the product's `{args.masks}` mask source**"
                      f"{f' with settings `{args.masks_options}`' if args.masks_options else ''} on the training "
                      "views rendered from the splats (engine.train.data.views_from_scene, as in the product).")
    mask_line = []
    if mask_iou:
        mc, mf = (float(np.nanmean(mask_iou[level])) for level in LEVELS)
        mask_line = ["", f"Training masks against the ground truth (best-overlapping segment's IoU per visible "
                         f"object / part and view, x100, before training): coarse {_fmt(mc, 100)}, fine {_fmt(mf, 100)}."]

    lines = [
        "# Segmentation quality on scenes with known ground truth"
        + ("" if args.masks == "simulated" else f" (end-to-end: {args.masks} masks)"),
        "",
        f"`{args.command_line.strip()}`",
        "",
        f"Means over seeds {args.seeds} ({len(args.seeds)} procedural tabletop scenes, "
        f"~{args.gaussians} Gaussians, {args.objects} objects of 2-4 parts each). {masks_text} {args.views} training "
        f"views and {args.test_views} held-out test views of {width}x{height} px per scene.",
        f"Training: {args.iterations} iterations, {args.pixels} pixels per iteration, GFL from iteration {gfl_start} "
        f"(clusters every {base.gfl_interval}), L_neg weight {base.w_neg:g}, preset "
        f"`{getattr(args, 'preset', 'product')}`, other settings engine.train.TrainSettings'; "
        "training masks without sliver segments and segment-boundary pixels (engine.train.data).",
        "",
        "Label propagation mIoU (x100) as in the paper's Tables 1 and 3: coarse = objects, fine = parts, "
        "all = pooled targets. Click IoU: opacity-weighted IoU of the Gaussians one click at the target's "
        "interior point selects, against the ground-truth set. Click latency: median per click. "
        "Train s: mean wall time of one training run.",
        "",
        "| variant | coarse | fine | all | click IoU objects | click IoU parts | click ms | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        m = M.mean_summaries(per_seed[v])
        lines.append(
            f"| {LABELS[v]} | {_fmt(m.coarse, 100)} | {_fmt(m.fine, 100)} | {_fmt(m.all, 100)} | "
            f"{_fmt(m.click_coarse, 1, 3)} | {_fmt(m.click_fine, 1, 3)} | {_fmt(m.click_ms, 1, 2)} | "
            f"{np.mean(wall[v]):.1f} |"
        )
    lines += ["", "Per seed, all mIoU (x100):", "", "| variant | " + " | ".join(f"seed {s}" for s in args.seeds) + " |",
              "|---|" + "---|" * len(args.seeds)]
    for v in variants:
        lines.append(f"| {v} | " + " | ".join(_fmt(s.all, 100) for s in per_seed[v]) + " |")
    n_c = per_seed[variants[0]][0].n_coarse if variants else 0
    lines += mask_line
    lines += [
        "",
        f"Targets per scene: about {n_c} objects and their parts (targets visible in fewer than two test views are skipped).",
        f"Wall time: {total_s / 60:.1f} min in all, {jobs} scene(s) at a time ({np.mean(prep_s):.1f} s per scene to "
        f"generate, render ground truth and simulate masks), on {platform.machine()} with {os.cpu_count()} CPU cores"
        f"{_gpu_text(base.device)}, training on {base.device}, torch {_torch_version()}; per-run times include "
        f"waiting for the CPU/GPU when scenes run in parallel. "
        f"Engine code: {code_version}.",
        "",
        "Pictures (first seed, per variant, `<variant>_seed<N>.png`): per test view, left to right: render, "
        "ground-truth objects, ground-truth parts, segment-everything coarse, segment-everything fine, PCA of the "
        "coarse feature map, PCA of the fine feature map. "
        f"`masks_{args.masks}_seed<N>.png`: the first two training views' masks (image, coarse, fine).",
    ]
    return "\n".join(lines) + "\n"


def _code_version() -> str:
    """The engine's git commit, with a note when engine/ has uncommitted changes (best effort)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return f"{head}{' with uncommitted changes in engine/' if dirty else ''}"


def _gpu_text(device: str) -> str:
    """`` and an NVIDIA H200`` style words for a CUDA device, else empty."""
    if not device.startswith("cuda"):
        return ""
    import torch

    return f" and one {torch.cuda.get_device_name(torch.device(device))}"


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    sys.exit(main())
