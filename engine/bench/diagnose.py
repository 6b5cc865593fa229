"""``python -m engine.bench diagnose MODE``: the diagnoses behind docs/quality.md, on one seed of
the quality benchmark's scenes (the benchmark's own scene, ground truth, mask simulation,
contributor caches, training settings and scoring; CPU).

Modes (each prints one result per configuration and writes them all as JSON with ``--out``):

- ``merges SEED NAME:ITERS:VARIANT:MERGE:TRIM[:GFL_START[:TRAIN_SEED]] ...``: why long runs merge
  touching objects. VARIANT: a quality-benchmark variant (full, no_gfl, ...); MERGE: the ``merge``
  strength of the ``realistic`` mask noise (0.3 = realistic); TRIM: 1/0 boundary trimming.
  Prints mIoU, per-object coarse mIoU and click IoU, and for every pair of objects the masks
  merged (views where one coarse segment holds most of both / views with both) the cosine of
  the two objects' opacity-weighted mean coarse features. ``--trajectory`` adds that cosine every
  250 iterations (pairs merged in 4+ views); ``--settings w_neg=1.0,...`` overrides
  TrainSettings fields (diagnosis only).
- ``fine SEED NAME:ITERS:VARIANT[:KEY=VALUE,...] ...``: why the fine level drops in long runs.
  KEY=VALUE: a ``realistic`` mask-noise strength (granularity=0, ragged_px=0, ...), trim=0/1
  (boundary trimming), slivers=0/1, sampling=uniform (pixels drawn uniformly instead of the
  importance sampling), or a TrainSettings field (gfl_start=266, w_neg=1.0, seed=104, ...).
  Prints mIoU and, per part, its fine mIoU, the cosine of its opacity-weighted mean fine feature
  with its nearest sibling part's, and the training-mask evidence: pixels in a fine segment of
  its own (>= 50% of that segment is this part) versus in a segment dominated by another part of
  its object ("absorbed"), and in how many views. ``--trajectory --watch 5,10`` adds the sibling
  cosine of those part ids every 250 iterations.
- ``gfl-clusters LEVEL SEED A B ITERS...``: which HDBSCAN cluster (GFL's global clusters) the
  mask-average candidates of A alone, B alone and of masks covering both fall into after ITERS
  iterations without GFL (the state at GFL's start), and where A's and B's Gaussians point.
  LEVEL coarse: A, B are objects ("chair 1"), a mask covering both is a merge; LEVEL fine:
  parts ("bottle 1/neck"), a mask covering both is the object returned whole.
- ``fine-rules SEED NAME:ITERS[:KEY=VALUE,...] ...``: training configurations x fine-click rules
  (docs/quality.md "The fine level (Dec 7)"). Every configuration is trained from the same
  contributor caches (``realistic`` masks), scored by :func:`engine.bench.quality.evaluate`
  (mIoU and click IoU with the current click rule), then every fine target's click (the
  benchmark's interior point in its reference view) is re-scored with each rule of ``--rules``
  on the same features. KEY=VALUE: ``preset=paper`` (the paper's training constants; default
  the product's), ``frac=0.1`` (GFL from that fraction of the run, no cap) or a TrainSettings
  field (w_neg=0.1, gfl_start=266, ...). A rule is ``all`` (best fine cluster among all) or
  ``obj`` (among the clicked object's fine clusters first), then optionally ``+dupC`` (clusters
  within cosine C of the matched one selected with it) and ``+cut`` (the selection cut to the
  Gaussians a coarse click at the same pixel selects); ``obj+dup0.95`` is the committed rule.
  ``--features DIR`` reads a configuration's trained features from ``DIR/seed<SEED>_<NAME>.npz``
  when that file exists (re-scoring without training) and writes them there otherwise.

Scene size: the quality benchmark's CPU schedule by default (about 20,000 Gaussians, 6 objects,
24 training and 8 test views of 160x160, 1,024 pixels per iteration); ``--gaussians``,
``--views``, ``--test-views``, ``--size`` and ``--pixels`` make it smaller (the tests run it
tiny).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

__all__ = ["main", "diag_scene", "cluster_candidates", "FineRule", "parse_rule", "click_with_rule"]


# ---------------------------------------------------------------------------- the scene

@dataclass
class DiagScene:
    synth: object  # engine.bench.evaluation.synth.SynthScene
    gaussians: object  # engine.render.gaussians.Gaussians: the scene on the CPU, for rendering
    train_gt: list  # ground truth per training view, with contributors
    test_gt: list  # ground truth per test view, with contributors
    dense: list  # dense contributors (ids, weights) per training view
    index: object  # engine.core.click.ClickIndex
    opac: np.ndarray  # [N] activated opacities


def diag_scene(seed: int, args: argparse.Namespace, *, test_views: bool = True) -> DiagScene:
    from ..core.click import ClickIndex
    from ..render.gaussians import Gaussians
    from .evaluation.synth import make_scene, render_ground_truth

    synth = make_scene(seed, n_gaussians=args.gaussians, n_objects=args.objects, n_views=args.views,
                       n_test_views=args.test_views, width=args.width, height=args.height,
                       touch_prob=0.5, alike_prob=0.35)
    g = Gaussians.from_scene(synth.scene, "cpu")
    train_gt = render_ground_truth(synth, synth.cameras, gaussians=g, keep_contributors=True, contributors_k=32)
    test_gt = (render_ground_truth(synth, synth.test_cameras, gaussians=g, keep_contributors=True, contributors_k=32)
               if test_views else [])
    return DiagScene(synth, g, train_gt, test_gt, [v.contributors.to_dense() for v in train_gt],
                     ClickIndex.build(synth.scene), synth.scene.activated_opacities())


def cluster_candidates(x: np.ndarray, n_views: int, epsilon: float) -> np.ndarray:
    """HDBSCAN labels of mask-average candidates ``x`` [M, D] as GFL clusters them."""
    import hdbscan

    from ..train.gfl import min_cluster_size

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hdbscan.HDBSCAN(min_cluster_size=min_cluster_size(n_views, 0.1), cluster_selection_epsilon=epsilon,
                               algorithm="prims_kdtree").fit_predict(x)


def _settings(args: argparse.Namespace, iterations: int):
    from .quality import train_settings

    return train_settings(SimpleNamespace(iterations=iterations, pixels=args.pixels, gfl_start=None, device="cpu"))


def _override(st, pairs: dict[str, str]):
    """TrainSettings ``st`` with the fields named in ``pairs`` set (typed as the field is)."""
    for k, v in pairs.items():
        st = st.replace(**{k: type(getattr(st, k))(v)})
    return st


def _mean_directions(features: np.ndarray, ids: np.ndarray, opac: np.ndarray, keys) -> dict[int, np.ndarray]:
    """Per id: the unit opacity-weighted mean of the unit features of its Gaussians."""
    from ..core.features import normalize_rows

    f = normalize_rows(features)
    return {k: normalize_rows((f[ids == k] * opac[ids == k, None]).sum(0, keepdims=True))[0]
            for k in keys if (ids == k).any()}


def _train_and_score(S: DiagScene, caches, st, trajectory: bool, checkpoint: str, on_checkpoint):
    """Train and score on the test views: (trained, wall seconds, per-target results, summary).
    With ``trajectory``, ``on_checkpoint(iteration, features)`` is called every 250 iterations
    (50 in runs under 1,000) from the checkpoint written then."""
    from .evaluation import metrics as M
    from .quality import evaluate
    from ..train.trainer import load_checkpoint, train_from_caches

    every = 250 if st.iterations >= 1000 else 50

    def progress(p):
        if p.iteration % every == 0 and p.iteration < st.iterations and p.phase == "train" \
                and os.path.isfile(checkpoint):
            on_checkpoint(p.iteration, load_checkpoint(checkpoint)["features"].numpy())

    t0 = time.time()
    if trajectory:
        tr = train_from_caches(S.synth.scene, caches, st.replace(checkpoint_every=every), progress=progress,
                               checkpoint_path=checkpoint)
    else:
        tr = train_from_caches(S.synth.scene, caches, st)
    wall = time.time() - t0
    res = evaluate(S.synth, S.test_gt, tr, S.gaussians, S.index)
    return tr, wall, res, M.summarize(res)


# ---------------------------------------------------------------------------- merges

def _merged_views(train_gt, masks) -> dict[tuple[int, int], list[int]]:
    """Per pair of objects seen together: [views where one coarse segment covers most of both,
    views with both]."""
    cnt: dict[tuple[int, int], list[int]] = {}
    for v, m in zip(train_gt, masks):
        om = v.object_map
        objs = [o for o in np.unique(om) if o > 0]
        for i, a in enumerate(objs):
            for b in objs[i + 1:]:
                ca, cb = m.coarse[om == a], m.coarse[om == b]
                ca, cb = ca[ca >= 0], cb[cb >= 0]
                if len(ca) == 0 or len(cb) == 0:
                    continue
                key = (int(a), int(b))
                cnt.setdefault(key, [0, 0])
                cnt[key][1] += 1
                if np.bincount(ca).argmax() == np.bincount(cb).argmax():
                    cnt[key][0] += 1
    return cnt


def _merges(args: argparse.Namespace, S: DiagScene, work: str) -> dict:
    from .evaluation.masksim import NOISE_LEVELS, simulate_view_masks
    from .quality import VARIANTS
    from ..train.data import cache_from_contributors

    synth, seed = S.synth, args.seed
    names = synth.object_names
    objects = range(1, synth.num_objects + 1)
    extra = dict(kv.split("=") for kv in args.settings.split(",") if kv)
    out = {}
    for cfg in args.configs:
        name, iters, variant, merge, trim, gs, ts = (cfg.split(":") + ["", ""])[:7]
        iters, merge, trim = int(iters), float(merge), trim == "1"
        noise = replace(NOISE_LEVELS["realistic"], merge=merge)
        masks = simulate_view_masks([v.object_map for v in S.train_gt], [v.part_map for v in S.train_gt], noise,
                                    seed=seed)
        mv = _merged_views(S.train_gt, masks)
        caches = [c for c in (cache_from_contributors(d.ids, d.weights, m, device="cpu", name=v.camera.name,
                                                      trim_edges=trim)
                              for d, m, v in zip(S.dense, masks, S.train_gt)) if c is not None]
        st = _settings(args, iters).replace(seed=int(ts) if ts else seed, **VARIANTS[variant])
        if gs:
            st = st.replace(gfl_start=int(gs))
        st = _override(st, extra)
        traj = []

        def on_checkpoint(it, f):
            mm = _mean_directions(f[:, :12], synth.object_id, S.opac, objects)
            traj.append((it, {f"{names[a]}+{names[b]}": round(float(mm[a] @ mm[b]), 3)
                              for (a, b), (k, n) in mv.items() if k >= 4}))

        tr, wall, res, s = _train_and_score(S, caches, st, args.trajectory, os.path.join(work, f"ck_{seed}_{name}.pt"),
                                            on_checkpoint)
        mean = _mean_directions(tr.level_features("coarse"), synth.object_id, S.opac, objects)
        pairs = {f"{names[a]}+{names[b]}": {"merged_views": f"{k}/{n}", "cos": round(float(mean[a] @ mean[b]), 3)}
                 for (a, b), (k, n) in mv.items() if (k > 0 or merge == 0) and a in mean and b in mean}
        tgt = {r.name: (round(r.miou, 3), None if r.click_iou is None else round(float(r.click_iou), 3))
               for r in res if r.level == "coarse"}
        out[name] = dict(coarse=s.coarse, fine=s.fine, all=s.all, click_obj=s.click_coarse, click_part=s.click_fine,
                         n_coarse_clusters=len(tr.centers("coarse")), traj=traj, wall=wall, pairs=pairs,
                         objects=tgt)
        print(name, json.dumps(out[name], default=float), flush=True)
    return out


# ---------------------------------------------------------------------------- fine

def _mask_evidence(synth, caches, views) -> dict[int, dict]:
    """Per part: training pixels in own fine segments / absorbed into a sibling's / other."""
    ev: dict[int, dict] = {}
    for c, v in zip(caches, views):
        pm = v.part_map.reshape(-1)[c.pixels.numpy()]
        sf = c.seg_f.numpy()
        for s in np.unique(sf[sf >= 0]):
            inside = pm[sf == s]
            inside = inside[inside >= 0]
            if not len(inside):
                continue
            dom = np.bincount(inside).argmax()
            share = np.bincount(inside, minlength=dom + 1)[dom] / len(inside)
            for p in np.unique(inside):
                n = int((inside == p).sum())
                e = ev.setdefault(int(p), {"own": 0, "absorbed": 0, "other": 0, "own_views": set(),
                                           "absorbed_views": set()})
                if p == dom and share >= 0.5:
                    e["own"] += n
                    e["own_views"].add(c.name)
                elif synth.part_object[dom] == synth.part_object[p] and p != dom:
                    e["absorbed"] += n
                    e["absorbed_views"].add(c.name)
                else:
                    e["other"] += n
    return ev


def _fine(args: argparse.Namespace, S: DiagScene, work: str) -> dict:
    from .evaluation.masksim import NOISE_LEVELS, simulate_view_masks
    from .quality import VARIANTS
    from ..train.data import cache_from_contributors
    from ..train.settings import TrainSettings

    synth, seed = S.synth, args.seed
    pnames = synth.part_names
    parts_ = range(1, synth.num_parts + 1)
    noise_keys = {f.name for f in fields(NOISE_LEVELS["realistic"])}
    st_keys = {f.name for f in fields(TrainSettings)}
    watch = [int(p) for p in args.watch.split(",") if p]

    def sibling_cos(means: dict[int, np.ndarray], p: int) -> tuple[str, float]:
        sib = [q for q in means if q != p and synth.part_object[q] == synth.part_object[p]]
        if not sib or p not in means:
            return "", float("nan")
        q = max(sib, key=lambda q: float(means[p] @ means[q]))
        return pnames[q].split("/")[-1], round(float(means[p] @ means[q]), 3)

    out = {}
    for cfg in args.configs:
        parts = cfg.split(":")
        name, iters, variant = parts[0], int(parts[1]), parts[2]
        kv = dict(x.split("=") for x in (parts[3].split(",") if len(parts) > 3 and parts[3] else []))
        noise = replace(NOISE_LEVELS["realistic"], **{k: float(v) for k, v in kv.items() if k in noise_keys})
        trim, slivers = kv.get("trim", "1") == "1", kv.get("slivers", "1") == "1"
        masks = simulate_view_masks([v.object_map for v in S.train_gt], [v.part_map for v in S.train_gt], noise,
                                    seed=seed)
        pairs = [(cache_from_contributors(d.ids, d.weights, m, device="cpu", name=v.camera.name, trim_edges=trim,
                                          drop_slivers=slivers), v) for d, m, v in zip(S.dense, masks, S.train_gt)]
        pairs = [(c, v) for c, v in pairs if c is not None]
        caches = [c for c, _ in pairs]
        if kv.get("sampling") == "uniform":  # every training pixel equally likely (not per-segment shares)
            import torch
            for c in caches:
                c.prob = torch.full_like(c.prob, 1.0 / len(c))
        ev = _mask_evidence(synth, caches, [v for _, v in pairs])
        st = _settings(args, iters).replace(seed=seed, **VARIANTS[variant])
        st = _override(st, {k: v for k, v in kv.items() if k in st_keys})
        traj = []

        def on_checkpoint(it, f):
            means = _mean_directions(f, synth.part_id, S.opac, parts_)  # (all of the raw features)
            traj.append((it, {pnames[q]: sibling_cos(means, q) for q in watch}))

        tr, wall, res, s = _train_and_score(S, caches, st, args.trajectory, os.path.join(work, f"fck_{seed}_{name}.pt"),
                                            on_checkpoint)
        means = _mean_directions(tr.level_features("fine"), synth.part_id, S.opac, parts_)
        pid = {pnames[p]: p for p in parts_}
        fine_t = {}
        for r in res:
            if r.level != "fine" or r.name not in pid:
                continue
            p = pid[r.name]
            e = ev.get(p, {"own": 0, "absorbed": 0, "other": 0, "own_views": set(), "absorbed_views": set()})
            fine_t[r.name] = dict(miou=round(r.miou, 3),
                                  click=None if r.click_iou is None else round(float(r.click_iou), 3),
                                  sib=sibling_cos(means, p), own_px=e["own"], absorbed_px=e["absorbed"],
                                  own_views=len(e["own_views"]), absorbed_views=len(e["absorbed_views"]),
                                  gauss=int((synth.part_id == p).sum()))
        out[name] = dict(coarse=s.coarse, fine=s.fine, all=s.all, click_obj=s.click_coarse, click_part=s.click_fine,
                         n_fine_clusters=len(tr.centers("fine")), n_coarse_clusters=len(tr.centers("coarse")),
                         wall=round(wall, 1), traj=traj, fine_targets=fine_t)
        print(f"{name}: coarse {s.coarse * 100:.1f} fine {s.fine * 100:.1f} all {s.all * 100:.1f} "
              f"click obj {s.click_coarse:.3f} part {s.click_fine:.3f} clusters "
              f"{out[name]['n_coarse_clusters']}/{out[name]['n_fine_clusters']} ({wall:.0f} s)", flush=True)
        for t, d in sorted(fine_t.items(), key=lambda x: x[1]["miou"]):
            print(f"   {t:<20} {d['miou']:.2f} sib {d['sib'][0]}:{d['sib'][1]}  px own {d['own_px']} "
                  f"absorbed {d['absorbed_px']} views own {d['own_views']} absorbed {d['absorbed_views']}  "
                  f"N {d['gauss']}", flush=True)
        for it, d in traj:
            print("   traj", it, d, flush=True)
    return out


# ---------------------------------------------------------------------------- gfl-clusters

def _gfl_clusters(args: argparse.Namespace, S: DiagScene) -> dict:
    import torch

    from .evaluation.masksim import simulate_view_masks
    from ..train.data import cache_from_contributors
    from ..train.gfl import blend_cached
    from ..train.losses import fine_feature, unit
    from ..train.trainer import train_from_caches

    level, seed, A, B = args.level, args.seed, args.a, args.b
    synth = S.synth
    coarse = level == "coarse"
    both, both_min, eps = ("merged", 0.2, 1e-2) if coarse else ("A+B", 0.1, 1e-3)
    masks = simulate_view_masks([v.object_map for v in S.train_gt], [v.part_map for v in S.train_gt], "realistic",
                                seed=seed)
    caches, gts = [], []
    for v, m, d in zip(S.train_gt, masks, S.dense):
        c = cache_from_contributors(d.ids, d.weights, m, device="cpu", name=v.camera.name)
        if c is not None:
            caches.append(c)
            gts.append((v.object_map if coarse else v.part_map).reshape(-1))
    names = list(synth.object_names if coarse else synth.part_names)
    a, b = names.index(A), names.index(B)
    ids = synth.object_id if coarse else synth.part_id

    def level_features(f: torch.Tensor) -> torch.Tensor:
        return f[:, :12] if coarse else fine_feature(f)

    out = {}
    for it in args.iterations:
        st = _settings(args, it).replace(seed=seed, use_gfl=False)
        f = torch.from_numpy(train_from_caches(synth.scene, caches, st).features.astype(np.float32))
        cands, kinds = [], []
        for c, gt in zip(caches, gts):
            r = level_features(blend_cached(c, f))
            seg = c.seg_c if coarse else c.seg_f
            truth = torch.from_numpy(gt)[c.pixels]
            for s in torch.unique(seg[seg >= 0]):
                sel = seg == s
                if int(sel.sum()) < 4:
                    continue
                cands.append(unit(r[sel].mean(0, keepdim=True))[0].numpy())
                sa = float((truth[sel] == a).float().mean())
                sb = float((truth[sel] == b).float().mean())
                kinds.append(both if sa > both_min and sb > both_min else A if sa > 0.6 else B if sb > 0.6
                             else "other")
        x = np.array(cands, np.float64)
        lab = cluster_candidates(x, len(caches), eps)
        kinds = np.array(kinds)
        result: dict = {"clusters": int(lab.max() + 1), "candidates": len(x)}
        print(f"seed {seed} iteration {it}: {lab.max() + 1} {level} clusters from {len(x)} candidates")
        for k in (A, B, both):
            ls = lab[kinds == k]
            counts = {int(c): int(n) for c, n in zip(*np.unique(ls, return_counts=True))}
            result[k] = counts
            print(f"  {k:>16}: {len(ls)} candidates -> clusters {counts}")
        if (kinds == A).any() and (kinds == B).any():
            ca, cb = x[kinds == A].mean(0), x[kinds == B].mean(0)
            print(f"  cos(mean {A} candidate, mean {B} candidate) = "
                  f"{ca @ cb / np.linalg.norm(ca) / np.linalg.norm(cb):.3f}", flush=True)
        if lab.max() < 0:
            out[str(it)] = result
            continue
        cen = np.stack([x[lab == k].mean(0) for k in range(lab.max() + 1)])
        cen /= np.linalg.norm(cen, axis=1, keepdims=True)
        u = level_features(f).numpy().astype(np.float64)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        cs = u @ cen.T
        am, best = cs.argmax(1), cs.max(1)
        op = synth.scene.activated_opacities()
        la, lb = lab[kinds == A], lab[kinds == B]
        if coarse and (la >= 0).any() and (lb >= 0).any():
            ka, kb = np.bincount(la[la >= 0]).argmax(), np.bincount(lb[lb >= 0]).argmax()
        for o, nm in ((a, A), (b, B)):
            sel = ids == o
            w = op[sel] / op[sel].sum()
            if coarse and (la >= 0).any() and (lb >= 0).any():
                print(f"  {nm} Gaussians (opacity mass): argmax {A}-cluster {w[am[sel] == ka].sum():.2f}, argmax "
                      f"{B}-cluster {w[am[sel] == kb].sum():.2f}; with cos > 0.9 to it: "
                      f"{w[(am[sel] == ka) & (best[sel] > 0.9)].sum():.2f} / "
                      f"{w[(am[sel] == kb) & (best[sel] > 0.9)].sum():.2f}; "
                      f"cos({A}-centre, {B}-centre) = {cen[ka] @ cen[kb]:.3f}", flush=True)
            elif not coarse:
                top = np.bincount(am[sel], weights=w, minlength=len(cen))
                print(f"  {nm} Gaussians (opacity mass) argmax clusters: "
                      + ", ".join(f"{k}: {top[k]:.2f}" for k in np.argsort(-top)[:3])
                      + f"; share with cos > 0.9 to their argmax: {w[best[sel] > 0.9].sum():.2f}", flush=True)
        out[str(it)] = result
    return out


# ---------------------------------------------------------------------------- fine-rules

@dataclass(frozen=True)
class FineRule:
    """A fine-click rule (module doc, ``fine-rules``): ``within_object`` (match among the clicked
    object's fine clusters first), ``same_part_cos`` (clusters whose centres are at least this
    similar to the matched one are selected with it; None: off) and ``cut`` (keep only the
    Gaussians a coarse click at the same pixel selects)."""

    name: str
    within_object: bool
    same_part_cos: float | None
    cut: bool


def parse_rule(text: str) -> FineRule:
    """``all|obj[+dupC][+cut]`` as a :class:`FineRule`; ValueError with a one-line message otherwise."""
    head, *mods = text.strip().split("+")
    if head not in ("all", "obj"):
        raise ValueError(f"fine rule {text!r}: must start with 'all' or 'obj' (e.g. obj+dup0.95)")
    dup, cut = None, False
    for m in mods:
        if m == "cut":
            cut = True
        elif m.startswith("dup"):
            try:
                dup = float(m[3:])
            except ValueError:
                raise ValueError(f"fine rule {text!r}: {m!r} is not dup<cosine>, e.g. dup0.95") from None
            if not -1.0 <= dup <= 1.0:
                raise ValueError(f"fine rule {text!r}: cosine {dup} is outside [-1, 1]")
        else:
            raise ValueError(f"fine rule {text!r}: unknown part {m!r} (known: dup<cosine>, cut)")
    return FineRule(text.strip(), head == "obj", dup, cut)


@contextlib.contextmanager
def _same_part_cos(value: float | None) -> Iterator[None]:
    """:data:`engine.core.click.SAME_PART_COS` set to ``value`` inside the block, restored after."""
    from ..core import click as C

    old = C.SAME_PART_COS
    C.SAME_PART_COS = value
    try:
        yield
    finally:
        C.SAME_PART_COS = old


def click_with_rule(index, trained, camera, u: float, v: float, rule: FineRule) -> np.ndarray:
    """Gaussian indices (int64 [K]) a fine click at image point (u, v) (pixels) selects under
    ``rule``, through :func:`engine.core.click.click_query` itself."""
    from ..core.click import click_query

    with _same_part_cos(rule.same_part_cos):
        sel = np.asarray(click_query(index, trained, camera, u, v, "fine", within_object=rule.within_object).selected,
                         np.int64)
    if rule.cut and sel.size:
        obj = np.asarray(click_query(index, trained, camera, u, v, "coarse").selected, np.int64)
        if obj.size:  # no object under the cursor: nothing to cut to
            sel = np.intersect1d(sel, obj)
    return sel


def _rules_settings(args: argparse.Namespace, iters: int, kv: dict[str, str]):
    """TrainSettings of a ``fine-rules`` configuration: :func:`engine.bench.quality.train_settings`
    with the configuration's preset and TrainSettings overrides; ``frac`` sets the GFL start."""
    from ..core.schedule import gfl_start_for
    from .quality import train_settings

    kv = dict(kv)
    preset = kv.pop("preset", "product")
    frac = kv.pop("frac", None)
    gfl_start = gfl_start_for(iters, float(frac)) if frac is not None and "gfl_start" not in kv else None
    return train_settings(SimpleNamespace(iterations=iters, pixels=args.pixels, gfl_start=gfl_start, device="cpu",
                                          preset=preset, settings=[f"{k}={v}" for k, v in kv.items()]))


def _fine_rules_inputs(args: argparse.Namespace) -> tuple[list[FineRule], list[tuple[str, int, dict[str, str]]]]:
    """``--rules`` and the configurations of ``fine-rules`` parsed and checked (training settings
    included) before the scene is built; ValueError / TrainingError with a one-line message."""
    rules = [parse_rule(r) for r in args.rules.split(",") if r.strip()]
    if not rules:
        raise ValueError("--rules: give at least one fine-click rule, e.g. obj+dup0.95")
    configs = []
    for cfg in args.configs:
        parts = cfg.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1].isdigit() or int(parts[1]) < 1:
            raise ValueError(f"configuration {cfg!r}: expected NAME:ITERS[:KEY=VALUE,...] with ITERS >= 1")
        pairs = parts[2].split(",") if len(parts) == 3 and parts[2] else []
        if any("=" not in x for x in pairs):
            raise ValueError(f"configuration {cfg!r}: settings must be KEY=VALUE, comma-separated")
        kv = dict(x.split("=", 1) for x in pairs)
        _rules_settings(args, int(parts[1]), kv)  # an unknown field or bad value fails here, in one line
        configs.append((parts[0], int(parts[1]), kv))
    return rules, configs


def _fine_rules(args: argparse.Namespace, S: DiagScene) -> dict:
    from .evaluation import metrics as M
    from .evaluation.masksim import simulate_view_masks
    from .quality import evaluate
    from ..core.features import TrainedFeatures
    from ..train.data import cache_from_contributors
    from ..train.trainer import train_from_caches

    synth, seed = S.synth, args.seed
    rules, configs = _fine_rules_inputs(args)
    masks = simulate_view_masks([v.object_map for v in S.train_gt], [v.part_map for v in S.train_gt], "realistic",
                                seed=seed)
    caches = [c for c in (cache_from_contributors(d.ids, d.weights, m, device="cpu", name=v.camera.name)
                          for d, m, v in zip(S.dense, masks, S.train_gt)) if c is not None]
    store = Path(args.features) if args.features else None
    out = {}
    for name, iters, kv in configs:
        path = store / f"seed{seed}_{name}.npz" if store else None
        st = _rules_settings(args, iters, kv).replace(seed=seed)
        t0 = time.time()
        if path is not None and path.is_file():
            trained, wall, loaded = TrainedFeatures.load(path), 0.0, True
        else:
            trained = train_from_caches(synth.scene, caches, st)
            wall, loaded = time.time() - t0, False
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                trained.save(path)
        res = evaluate(synth, S.test_gt, trained, S.gaussians, S.index)
        s = M.summarize(res)
        per_target: dict[str, dict[str, float]] = {}
        for r in res:
            if r.level != "fine":
                continue
            view = S.test_gt[r.ref_view]
            pt = M.interior_point(view.part_map == r.gt_id)
            truth = synth.part_id == r.gt_id
            per_target[r.name] = {"current": float(r.click_iou)}
            for rule in rules:
                sel = click_with_rule(S.index, trained, view.camera, pt[0] + 0.5, pt[1] + 0.5, rule)
                per_target[r.name][rule.name] = float(M.weighted_iou(sel, truth, S.opac))
        means = {rule.name: float(np.mean([t[rule.name] for t in per_target.values()])) if per_target
                 else float("nan") for rule in rules}
        out[name] = dict(coarse=s.coarse, fine=s.fine, all=s.all, click_obj=s.click_coarse, click_part=s.click_fine,
                         rules=means, per_target=per_target, wall=round(wall, 1), loaded=loaded,
                         w_neg=st.w_neg, gfl_start=st.gfl_start, iterations=iters)
        print(f"seed {seed} {name}: coarse {s.coarse * 100:.1f} fine {s.fine * 100:.1f} all {s.all * 100:.1f} "
              f"click obj {s.click_coarse:.3f} part {s.click_fine:.3f} | part click by rule "
              + " ".join(f"{k} {v:.3f}" for k, v in means.items())
              + (" (features read)" if loaded else f" ({wall:.0f} s)"), flush=True)
    return out


# ---------------------------------------------------------------------------- main

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.bench diagnose", description=__doc__.splitlines()[0])
    size = argparse.ArgumentParser(add_help=False)
    size.add_argument("--gaussians", type=int, default=20000)
    size.add_argument("--objects", type=int, default=6)
    size.add_argument("--views", type=int, default=24)
    size.add_argument("--test-views", type=int, default=8)
    size.add_argument("--size", default="160x160", help="view size WxH")
    size.add_argument("--pixels", type=int, default=1024, help="pixels per iteration")
    size.add_argument("--out", default=None, help="write the results as JSON here")
    sub = p.add_subparsers(dest="mode", required=True)
    for mode in ("merges", "fine"):
        m = sub.add_parser(mode, parents=[size], help=f"see the module docstring ({mode})")
        m.add_argument("seed", type=int)
        m.add_argument("configs", nargs="+")
        m.add_argument("--trajectory", action="store_true", help="cosines every 250 iterations")
        if mode == "merges":
            m.add_argument("--settings", default="", help="TrainSettings overrides, KEY=VALUE,...")
        else:
            m.add_argument("--watch", default="", help="part ids whose trajectory to print, e.g. 5,10")
    r = sub.add_parser("fine-rules", parents=[size], help="see the module docstring (fine-rules)")
    r.add_argument("seed", type=int)
    r.add_argument("configs", nargs="+", help="NAME:ITERS[:KEY=VALUE,...]")
    r.add_argument("--rules", default="all,obj,all+dup0.95,obj+dup0.95",
                   help="comma-separated fine-click rules: all|obj[+dupC][+cut]")
    r.add_argument("--features", default=None,
                   help="folder of trained features seed<SEED>_<NAME>.npz: read when there, else written")
    g = sub.add_parser("gfl-clusters", parents=[size], help="see the module docstring (gfl-clusters)")
    g.add_argument("level", choices=("coarse", "fine"))
    g.add_argument("seed", type=int)
    g.add_argument("a")
    g.add_argument("b")
    g.add_argument("iterations", type=int, nargs="+")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    from .evaluation.synth import scene_size_problem

    problem = scene_size_problem(args.gaussians, args.objects)
    if problem:
        parser.error(problem.replace("n_gaussians", "--gaussians").replace("n_objects", "--objects"))
    args.width, args.height = (int(v) for v in args.size.lower().split("x"))
    if args.mode == "fine-rules":
        from ..core.errors import EngineError

        try:
            _fine_rules_inputs(args)
        except (ValueError, EngineError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    S = diag_scene(args.seed, args, test_views=args.mode != "gfl-clusters")
    with tempfile.TemporaryDirectory(prefix="clickgs-diagnose-") as work:
        if args.mode == "merges":
            out = _merges(args, S, work)
        elif args.mode == "fine":
            out = _fine(args, S, work)
        elif args.mode == "fine-rules":
            out = _fine_rules(args, S)
        else:
            out = _gfl_clusters(args, S)
    if args.out:
        from ..core.atomic import write_text

        write_text(args.out, json.dumps(out, indent=1, default=lambda v: sorted(v) if isinstance(v, set) else float(v)))
    return 0
