"""Screen training configs x fine-click rules on the quality benchmark's scenes (issue 15, fine level).
Per seed: the quality benchmark's preparation, then each config trained from the same caches, scored with
engine.bench.quality.evaluate (current click rule) and the fine clicks re-scored with alternative rules on
the same features; features saved as npz for later re-evaluation."""
import argparse, json, os, sys, time
from dataclasses import asdict
from pathlib import Path
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root


def parse_cfg(s):
    name, _, rest = s.partition(":")
    d = {"w_neg": 0.1}  # explicit: the paper's, whatever the defaults
    for kv in filter(None, rest.split(",")):
        k, v = kv.split("=")
        d[k] = float(v) if k in ("w_neg", "frac", "lr", "w_gfl", "margin_fine", "margin_coarse") else int(v)
    return name, d


def fine_rules(index, trained, cam, u, v, opac):
    """selections per rule for a fine click."""
    from engine.core import click as C
    feat, alpha, depth, ids = C.blended_feature(index, trained, cam, u, v, "fine")
    out = {}
    if alpha < C.EMPTY_ALPHA:
        return {k: np.zeros(0, np.int64) for k in ("old", "R1", "R2", "R3", "R1c")}
    cen_f = trained.centers("fine")
    min_f = float(trained.settings.get("label_min_cos_fine", 0.75))
    fl = trained.labels("fine")
    old, _ = C.match_clusters(feat, cen_f, min_f, None)
    out["old"] = trained.members("fine", old)
    # coarse selection at the same pixel
    featc, _, _, _ = C.blended_feature(index, trained, cam, u, v, "coarse")
    min_c = float(trained.settings.get("label_min_cos_coarse", 0.5))
    cc, _ = C.match_clusters(featc, trained.centers("coarse"), min_c, C.MATCH_COS)
    inobj = np.isin(trained.labels("coarse"), cc) if cc else np.zeros(len(fl), bool)
    if not cc or not len(cen_f):
        for k in ("R1", "R2", "R3", "R1c"):
            out[k] = out["old"]
        return out
    ok = fl >= 0
    tot = np.bincount(fl[ok], weights=opac[ok], minlength=len(cen_f))
    ins = np.bincount(fl[ok & inobj], weights=opac[ok & inobj], minlength=len(cen_f))
    frac = ins / np.maximum(tot, 1e-12)
    allowed = np.flatnonzero(frac >= 0.5)
    totc = np.bincount(fl[ok], minlength=len(cen_f)); insc = np.bincount(fl[ok & inobj], minlength=len(cen_f))
    allowed_c = np.flatnonzero(insc >= 0.5 * np.maximum(totc, 1))
    def pick(allow):
        if allow.size == 0:
            return old
        sub, best = C.match_clusters(feat, cen_f[allow], min_f, None)
        return [int(allow[k]) for k in sub]
    r1 = pick(allowed)
    out["R1"] = trained.members("fine", r1)
    out["R1c"] = trained.members("fine", pick(allowed_c))
    oi = np.flatnonzero(inobj)
    out["R2"] = np.intersect1d(out["old"], oi) if old else out["old"]
    out["R3"] = np.intersect1d(out["R1"], oi) if r1 else out["R1"]
    return out


def run_seed(args, seed, cfgs):
    import torch
    from engine.bench import quality as Q
    from engine.bench.evaluation import metrics as M
    from engine.render.gaussians import Gaussians
    from engine.bench.evaluation.masksim import simulate_view_masks
    from engine.bench.evaluation.synth import make_scene, render_ground_truth
    from engine.train.data import cache_from_contributors
    from engine.train.trainer import train_from_caches
    from engine.core.click import ClickIndex
    from engine.core.schedule import gfl_interval_for, gfl_start_for
    from engine.train import TrainSettings
    torch.set_num_threads(1)
    synth = make_scene(seed, n_gaussians=20000, n_objects=6, n_views=24, n_test_views=8, width=160, height=160,
                       touch_prob=0.5, alike_prob=0.35)
    g = Gaussians.from_scene(synth.scene, "cpu")
    train_gt = render_ground_truth(synth, synth.cameras, gaussians=g, keep_contributors=True, contributors_k=32)
    test_gt = render_ground_truth(synth, synth.test_cameras, gaussians=g, keep_contributors=True, contributors_k=32)
    masks = simulate_view_masks([v.object_map for v in train_gt], [v.part_map for v in train_gt], "realistic", seed=seed)
    caches = []
    for v, m in zip(train_gt, masks):
        d = v.contributors.to_dense()
        c = cache_from_contributors(d.ids, d.weights, m, device="cpu", name=v.camera.name)
        if c is not None:
            caches.append(c)
        v.contributors = None
    index = ClickIndex.build(synth.scene)
    opac = synth.scene.activated_opacities()
    res = {}
    out = Path(args.out)
    for name, d in cfgs:
        d = dict(d)
        frac = d.pop("frac", 2 / 3)
        gfl = d.pop("gfl", None)
        s = TrainSettings(iterations=args.iterations, pixels_per_iter=1024,
                          gfl_start=gfl if gfl is not None else gfl_start_for(args.iterations, frac), gfl_interval=gfl_interval_for(args.iterations),
                          checkpoint_every=10**6, device="cpu", seed=seed, **d)
        t0 = time.perf_counter()
        trained = train_from_caches(synth.scene, caches, s)
        wall = time.perf_counter() - t0
        trained.save(str(out / f"seed{seed}_{name}.npz"))
        r = Q.evaluate(synth, test_gt, trained, g, index)
        summ = asdict(M.summarize(r))
        rules = {}
        per_t = []
        for t in r:
            if t.level != "fine":
                continue
            pt = M.interior_point(test_gt[t.ref_view].part_map == t.gt_id)
            sels = fine_rules(index, trained, test_gt[t.ref_view].camera, pt[0] + 0.5, pt[1] + 0.5, opac)
            gt = synth.part_id == t.gt_id
            ious = {k: M.weighted_iou(sv, gt, opac) for k, sv in sels.items()}
            per_t.append({"name": t.name, "miou": t.miou, **ious})
            for k, x in ious.items():
                rules.setdefault(k, []).append(x)
        summ["rules"] = {k: float(np.mean(v)) for k, v in rules.items()}
        res[name] = {"summary": summ, "wall": wall, "per_target": per_t,
                     "coarse_targets": [{"name": t.name, "miou": t.miou, "click": t.click_iou} for t in r if t.level == "coarse"]}
        print(f"seed {seed} {name}: coarse {summ['coarse']*100:.1f} fine {summ['fine']*100:.1f} all {summ['all']*100:.1f} "
              f"obj {summ['click_coarse']:.3f} part {summ['click_fine']:.3f} rules "
              + " ".join(f"{k} {v:.3f}" for k, v in summ["rules"].items()) + f" ({wall:.0f}s)", flush=True)
    return seed, res


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--iterations", type=int)
    p.add_argument("--cfg", nargs="+")
    p.add_argument("--out")
    p.add_argument("--jobs", type=int, default=5)
    a = p.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    cfgs = [parse_cfg(c) for c in a.cfg]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = dict(pool.map(run_seed, [a] * len(a.seeds), a.seeds, [cfgs] * len(a.seeds)))
    Path(a.out, "screen.json").write_text(json.dumps(results, indent=1, default=float))
    print("\nmeans over seeds", a.seeds)
    for name, _ in cfgs:
        ss = [results[s][name]["summary"] for s in a.seeds]
        m = lambda k: np.mean([x[k] for x in ss])
        print(f"{name:14s} coarse {m('coarse')*100:.1f} fine {m('fine')*100:.1f} all {m('all')*100:.1f} obj {m('click_coarse'):.3f} "
              f"part {m('click_fine'):.3f} | " + " ".join(f"{k} {np.mean([x['rules'][k] for x in ss]):.3f}" for k in ss[0]["rules"])
              + " | per-seed all " + " ".join(f"{x['all']*100:.1f}" for x in ss))


if __name__ == "__main__":
    main()
