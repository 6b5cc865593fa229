"""Re-score clicks on saved features with click-rule variants. Usage: q15f_reclick.py OUTDIR CONFIGS SEED..."""
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
import torch
torch.set_num_threads(1)
from engine.bench.evaluation import metrics as M
from engine.bench.evaluation.synth import make_scene, render_ground_truth
from engine.render.gaussians import Gaussians
from engine.core import click as C
from engine.core.features import TrainedFeatures

out, cfgs = sys.argv[1], sys.argv[2].split(",")
rules = [("old", False, None), ("obj", True, None)] + [(f"{'obj' if w else 'all'}+dup{d}", w, d)
                                                       for d in (0.9, 0.95, 0.97, 0.99) for w in (False, True)]
acc = {}
for seed in map(int, sys.argv[3:]):
    synth = make_scene(seed, n_gaussians=20000, n_objects=6, n_views=24, n_test_views=8, width=160, height=160,
                       touch_prob=0.5, alike_prob=0.35)
    g = Gaussians.from_scene(synth.scene, "cpu")
    test_gt = render_ground_truth(synth, synth.test_cameras, gaussians=g, keep_contributors=False)
    idx = C.ClickIndex.build(synth.scene)
    op = synth.scene.activated_opacities()
    for cfg in cfgs:
        p = Path(f"{out}/seed{seed}_{cfg}.npz")
        if not p.exists():
            continue
        tf = TrainedFeatures.load(p)
        for level, gtmap, ids in (("fine", "part_map", synth.part_id), ("coarse", "object_map", synth.object_id)):
            n = synth.num_parts if level == "fine" else synth.num_objects
            for t in range(1, n + 1):
                maps = [getattr(v, gtmap) for v in test_gt]
                areas = np.array([np.count_nonzero(m == t) for m in maps])
                if (areas >= 16).sum() < 2:
                    continue
                ref = int(areas.argmax())
                pt = M.interior_point(maps[ref] == t)
                for name, within, dup in (rules if level == "fine" else rules[:1]):
                    C.SAME_PART_COS = dup
                    r = C.click_query(idx, tf, test_gt[ref].camera, pt[0] + .5, pt[1] + .5, level, within_object=within)
                    acc.setdefault((cfg, level, name), {}).setdefault(seed, []).append(M.weighted_iou(r.selected, ids == t, op))
    print("seed", seed, "done", flush=True)
for cfg in cfgs:
    print(f"== {cfg}")
    for (c, level, name), per in acc.items():
        if c != cfg:
            continue
        means = [np.mean(v) for v in per.values()]
        print(f"  {level:6s} {name:14s} {np.mean(means):.3f}   per seed " + " ".join(f"{m:.3f}" for m in means))
