"""Why long runs merge touching objects (docs/quality.md): one scene seed, several training
configurations from the same scene, ground-truth renders and contributor caches (the quality
benchmark's own functions), 1,024 px per iteration, 24 views of 160x160.

Usage: [TRAJ=1] python docs/quality/merge_diag.py SEED NAME:ITERS:VARIANT:MERGE:TRIM[:GFL_START[:TRAIN_SEED]] ...
  VARIANT: a quality-benchmark variant (full, no_gfl, no_spatial, ...); MERGE: the `merge`
  strength of the `realistic` mask noise (0.3 = realistic); TRIM: 1/0 boundary trimming.
Prints per configuration: mIoU, per-object coarse mIoU and click IoU, and for every pair of
objects the masks merged (views where one coarse segment holds most of both / views with both)
the cosine of the two objects' opacity-weighted mean coarse features; with TRAJ=1 also that
cosine every 250 iterations (pairs merged in 4+ views); SETTINGS=w_neg=1.0 overrides
TrainSettings fields (diagnosis only). CPU only; about 1-2 min per 3,000 it.
"""
import json, sys, time
from dataclasses import replace
from types import SimpleNamespace
import numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from diag_scene import diag_scene  # noqa: E402 (also puts the repository on the path)
from engine.bench.evaluation import metrics as M
from engine.bench import quality as Q
from engine.bench.evaluation.masksim import simulate_view_masks, NOISE_LEVELS
from engine.train.data import cache_from_contributors
from engine.train.trainer import train_from_caches
from engine.core.features import normalize_rows

import os; TRAJ = os.environ.get('TRAJ') == '1'; seed = int(sys.argv[1]); configs = sys.argv[2:]
args = SimpleNamespace(iterations=3000, pixels=1024, gfl_start=None, device="cpu")
S = diag_scene(seed)
synth, g, train_gt, test_gt, dense, index, opac = S.synth, S.gaussians, S.train_gt, S.test_gt, S.dense, S.index, S.opac
names = synth.object_names
# touching pairs: how often one coarse segment covers most of both objects in the training masks
def merged_views(masks):
    cnt = {}
    for v, m in zip(train_gt, masks):
        om = v.object_map
        objs = [o for o in np.unique(om) if o > 0]
        for i, a in enumerate(objs):
            for b in objs[i+1:]:
                ca, cb = m.coarse[om == a], m.coarse[om == b]
                ca, cb = ca[ca >= 0], cb[cb >= 0]
                if len(ca) == 0 or len(cb) == 0: continue
                sa = np.bincount(ca).argmax(); sb = np.bincount(cb).argmax()
                key = (int(a), int(b))
                cnt.setdefault(key, [0, 0])
                cnt[key][1] += 1
                if sa == sb: cnt[key][0] += 1
    return cnt
out = {}
for cfg in configs:
    parts = cfg.split(":") + ["", ""]
    name, iters, variant, merge, trim, gs, ts = parts[:7]
    iters = int(iters); merge = float(merge); trim = trim == "1"
    noise = replace(NOISE_LEVELS["realistic"], merge=merge)
    masks = simulate_view_masks([v.object_map for v in train_gt], [v.part_map for v in train_gt], noise, seed=seed)
    mv = merged_views(masks)
    caches = [c for c in (cache_from_contributors(d.ids, d.weights, m, device="cpu", name=v.camera.name, trim_edges=trim)
                          for d, m, v in zip(dense, masks, train_gt)) if c is not None]
    a2 = SimpleNamespace(iterations=iters, pixels=1024, gfl_start=None, device="cpu")
    st = Q._settings(a2).replace(seed=int(ts) if ts else seed, **Q.VARIANTS[variant])
    if gs: st = st.replace(gfl_start=int(gs))
    for kv in filter(None, os.environ.get("SETTINGS", "").split(",")):  # e.g. SETTINGS=w_neg=1.0 (diagnosis only)
        k, v = kv.split("="); st = st.replace(**{k: type(getattr(st, k))(v)})
    cke = 250 if iters >= 1000 else 50
    t0 = time.time()
    traj = []
    ck = f"/tmp/ck_{seed}_{name}.pt"
    def prog(p):
        if p.iteration % cke == 0 and p.iteration < iters and p.phase == "train":
            import os
            if os.path.isfile(ck):
                from engine.train.trainer import load_checkpoint
                f = load_checkpoint(ck)["features"].numpy()
                fc_ = normalize_rows(f[:, :12])
                mm = {o: normalize_rows((fc_[synth.object_id == o] * opac[synth.object_id == o, None]).sum(0, keepdims=True))[0] for o in range(1, synth.num_objects + 1)}
                traj.append((p.iteration, {f"{names[a]}+{names[b]}": round(float(mm[a] @ mm[b]), 3) for (a, b), (k, n) in mv.items() if k >= 4}))
    tr = train_from_caches(synth.scene, caches, st.replace(checkpoint_every=cke), progress=prog, checkpoint_path=ck) if TRAJ else train_from_caches(synth.scene, caches, st)
    wall = time.time() - t0
    res = Q.evaluate(synth, test_gt, tr, g, index)
    s = M.summarize(res)
    # mean coarse feature per object, pairwise cosines for pairs seen merged in the masks
    fc = normalize_rows(tr.level_features("coarse"))
    mean = {o: normalize_rows((fc[synth.object_id == o] * opac[synth.object_id == o, None]).sum(0, keepdims=True))[0]
            for o in range(1, synth.num_objects + 1)}
    pairs = {f"{names[a]}+{names[b]}": {"merged_views": f"{k}/{n}", "cos": round(float(mean[a] @ mean[b]), 3)}
             for (a, b), (k, n) in mv.items() if k > 0 or merge == 0}
    tgt = {r.name: (round(r.miou, 3), None if r.click_iou is None else round(float(r.click_iou), 3))
           for r in res if r.level == "coarse"}
    out[name] = dict(coarse=s.coarse, fine=s.fine, all=s.all, click_obj=s.click_coarse, click_part=s.click_fine,
                     n_coarse_clusters=len(tr.centers("coarse")), traj=traj, wall=wall, pairs=pairs, objects=tgt)
    print(name, json.dumps(out[name]), flush=True)
json.dump(out, open(f"/tmp/seed{seed}_{configs[0].split(':')[0]}.json", "w"), indent=1, default=float)
