"""Which HDBSCAN cluster (GFL's global clusters) the mask-average candidates of A alone, B alone
and of masks covering both fall into after ITERS iterations without GFL (= the state at GFL's
start), and where A's and B's Gaussians point. LEVEL coarse: A, B are objects ("chair 1"), a
mask covering both is a merge; LEVEL fine: parts ("bottle 1/neck"), a mask covering both is the
object returned whole.

Usage: python docs/quality/gfl_clusters.py coarse SEED "chair 1" "mug 1" 266 2000
       python docs/quality/gfl_clusters.py fine SEED "bottle 1/neck" "bottle 1/body" 266 2000
"""
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diag_scene import cluster_candidates, diag_scene  # noqa: E402 (also puts the repository on the path)
from engine.bench import quality as Q  # noqa: E402
from engine.bench.evaluation.masksim import simulate_view_masks  # noqa: E402
from engine.train.data import cache_from_contributors  # noqa: E402
from engine.train.gfl import blend_cached  # noqa: E402
from engine.train.losses import fine_feature, unit  # noqa: E402
from engine.train.trainer import train_from_caches  # noqa: E402

level, seed, A, B = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
its = [int(x) for x in sys.argv[5:]]
coarse = level == "coarse"
both, both_min, eps = ("merged", 0.2, 1e-2) if coarse else ("A+B", 0.1, 1e-3)
S = diag_scene(seed, test_views=False)
synth = S.synth
masks = simulate_view_masks([v.object_map for v in S.train_gt], [v.part_map for v in S.train_gt], "realistic", seed=seed)
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


for it in its:
    st = Q._settings(SimpleNamespace(iterations=it, pixels=1024, gfl_start=None, device="cpu")).replace(seed=seed, use_gfl=False)
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
            kinds.append(both if sa > both_min and sb > both_min else A if sa > 0.6 else B if sb > 0.6 else "other")
    x = np.array(cands, np.float64)
    lab = cluster_candidates(x, len(caches), eps)
    kinds = np.array(kinds)
    print(f"seed {seed} iteration {it}: {lab.max()+1} {level} clusters from {len(x)} candidates")
    for k in (A, B, both):
        ls = lab[kinds == k]
        print(f"  {k:>16}: {len(ls)} candidates -> clusters {dict(zip(*np.unique(ls, return_counts=True)))}")
    ca, cb = x[kinds == A].mean(0), x[kinds == B].mean(0)
    print(f"  cos(mean {A} candidate, mean {B} candidate) = {ca @ cb / np.linalg.norm(ca) / np.linalg.norm(cb):.3f}", flush=True)
    cen = np.stack([x[lab == k].mean(0) for k in range(lab.max() + 1)])
    cen /= np.linalg.norm(cen, axis=1, keepdims=True)
    u = level_features(f).numpy().astype(np.float64)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    cs = u @ cen.T
    am, best = cs.argmax(1), cs.max(1)
    op = synth.scene.activated_opacities()
    if coarse:
        ka = np.bincount(lab[kinds == A][lab[kinds == A] >= 0]).argmax()
        kb = np.bincount(lab[kinds == B][lab[kinds == B] >= 0]).argmax()
    for o, nm in ((a, A), (b, B)):
        sel = ids == o
        w = op[sel] / op[sel].sum()
        if coarse:
            print(f"  {nm} Gaussians (opacity mass): argmax {A}-cluster {w[am[sel] == ka].sum():.2f}, argmax {B}-cluster "
                  f"{w[am[sel] == kb].sum():.2f}; with cos > 0.9 to it: {w[(am[sel] == ka) & (best[sel] > 0.9)].sum():.2f} / "
                  f"{w[(am[sel] == kb) & (best[sel] > 0.9)].sum():.2f}; cos({A}-centre, {B}-centre) = {cen[ka] @ cen[kb]:.3f}",
                  flush=True)
        else:
            top = np.bincount(am[sel], weights=w, minlength=len(cen))
            print(f"  {nm} Gaussians (opacity mass) argmax clusters: "
                  + ", ".join(f"{k}: {top[k]:.2f}" for k in np.argsort(-top)[:3])
                  + f"; share with cos > 0.9 to their argmax: {w[best[sel] > 0.9].sum():.2f}", flush=True)
