"""Which HDBSCAN fine cluster (GFL's global clusters) the mask-average candidates of part A alone,
part B alone and of masks covering both (A+B: the object returned whole) fall into after ITERS
iterations without GFL (= the state at GFL's start), and where the two parts' Gaussians point.

Usage: python docs/quality/fine_clusters.py SEED "bottle 1/neck" "bottle 1/body" 266 2000
"""
import sys, warnings
import numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from engine.bench import quality as Q
from engine.gaussians import Gaussians
from engine.masksim import simulate_view_masks
from engine.synth import make_scene, render_ground_truth
from engine.train.data import cache_from_contributors
from engine.train.trainer import train_from_caches
from engine.train.gfl import blend_cached, min_cluster_size
from engine.train.losses import unit, fine_feature
from types import SimpleNamespace
import hdbscan
seed = int(sys.argv[1]); A, B = sys.argv[2], sys.argv[3]; its = [int(x) for x in sys.argv[4:]]
synth = make_scene(seed, n_gaussians=20000, n_objects=6, n_views=24, n_test_views=8, width=160, height=160, touch_prob=0.5, alike_prob=0.35)
g = Gaussians.from_scene(synth.scene, "cpu")
tg = render_ground_truth(synth, synth.cameras, gaussians=g, keep_contributors=True, contributors_k=32)
masks = simulate_view_masks([v.object_map for v in tg], [v.part_map for v in tg], "realistic", seed=seed)
caches, gts = [], []
for v, m in zip(tg, masks):
    d = v.contributors.to_dense(); c = cache_from_contributors(d.ids, d.weights, m, device="cpu", name=v.camera.name)
    if c is not None: caches.append(c); gts.append(v.part_map.reshape(-1))
names = list(synth.part_names); a, b = names.index(A), names.index(B)
for it in its:
    st = Q._settings(SimpleNamespace(iterations=it, pixels=1024, gfl_start=None, device="cpu")).replace(seed=seed, use_gfl=False)
    f = torch.from_numpy(train_from_caches(synth.scene, caches, st).features.astype(np.float32))
    cands, kinds = [], []
    for c, gt in zip(caches, gts):
        r = fine_feature(blend_cached(c, f)); seg = c.seg_f; part = torch.from_numpy(gt)[c.pixels]
        for s in torch.unique(seg[seg >= 0]):
            sel = seg == s
            if int(sel.sum()) < 4: continue
            cands.append(unit(r[sel].mean(0, keepdim=True))[0].numpy())
            pa = float((part[sel] == a).float().mean()); pb = float((part[sel] == b).float().mean())
            kinds.append("A+B" if pa > 0.1 and pb > 0.1 else A if pa > 0.6 else B if pb > 0.6 else "other")
    x = np.array(cands, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size(len(caches), 0.1), cluster_selection_epsilon=1e-3, algorithm="prims_kdtree").fit_predict(x)
    kinds = np.array(kinds)
    print(f"seed {seed} iteration {it}: {lab.max()+1} fine clusters from {len(x)} candidates")
    for k in (A, B, "A+B"):
        ls = lab[kinds == k]
        print(f"  {k:>16}: {len(ls)} candidates -> clusters {dict(zip(*np.unique(ls, return_counts=True)))}")
    ca = x[kinds == A].mean(0); cb = x[kinds == B].mean(0)
    print(f"  cos(mean {A} candidate, mean {B} candidate) = {ca @ cb / np.linalg.norm(ca) / np.linalg.norm(cb):.3f}", flush=True)
    cen = np.stack([x[lab == k].mean(0) for k in range(lab.max() + 1)]); cen /= np.linalg.norm(cen, axis=1, keepdims=True)
    u = fine_feature(f).numpy().astype(np.float64); u /= np.linalg.norm(u, axis=1, keepdims=True)
    cs = u @ cen.T; am = cs.argmax(1); best = cs.max(1)
    op = synth.scene.activated_opacities()
    for p, nm in ((a, A), (b, B)):
        sel = synth.part_id == p; w = op[sel] / op[sel].sum()
        top = np.bincount(am[sel], weights=w, minlength=len(cen))
        order = np.argsort(-top)[:3]
        print(f"  {nm} Gaussians (opacity mass) argmax clusters: " + ", ".join(f"{k}: {top[k]:.2f}" for k in order)
              + f"; share with cos > 0.9 to their argmax: {w[best[sel] > 0.9].sum():.2f}", flush=True)
