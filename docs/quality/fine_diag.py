"""Why the fine level drops in long runs (docs/quality.md): one scene seed, several training
configurations from the same scene, ground-truth renders and contributor caches (the quality
benchmark's own functions), 1,024 px per iteration, 24 views of 160x160.

Usage: [TRAJ=1] python docs/quality/fine_diag.py SEED NAME:ITERS:VARIANT[:KEY=VALUE,...] ...
  VARIANT: a quality-benchmark variant (full, no_gfl, ...). KEY=VALUE: a `realistic` mask-noise
  strength (granularity=0, ragged_px=0, ...), trim=0/1 (boundary trimming), slivers=0/1,
  sampling=uniform (pixels drawn uniformly instead of the importance sampling), or a
  TrainSettings field (gfl_start=266, w_neg=1.0, lr=0.001, seed=104 ...; diagnosis only).
Prints per configuration: mIoU, the fine targets, and for every part whose fine mIoU is below
0.5 the cosine of its opacity-weighted mean fine feature with its nearest sibling part's, plus the
training-mask evidence: the share of the part's training pixels (after clean-up) that sit in a
fine segment of its own (>= 50% of that segment is this part) versus in a segment dominated by
another part of its object ("absorbed"), and the number of views where it is its own segment.
TRAJ=1 adds the sibling cosine of the worst parts every 250 iterations. CPU; ~1-2 min per 3,000 it.
"""
import json, os, sys, time
from dataclasses import fields, replace
from types import SimpleNamespace
import numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from diag_scene import diag_scene  # noqa: E402 (also puts the repository on the path)
from engine.bench.evaluation import metrics as M
from engine.bench import quality as Q
from engine.bench.evaluation.masksim import simulate_view_masks, NOISE_LEVELS
from engine.train.data import cache_from_contributors
from engine.train.settings import TrainSettings
from engine.train.trainer import train_from_caches, load_checkpoint
from engine.core.features import normalize_rows

TRAJ = os.environ.get("TRAJ") == "1"
seed = int(sys.argv[1]); configs = sys.argv[2:]
S = diag_scene(seed)
synth, g, train_gt, test_gt, dense, index, opac = S.synth, S.gaussians, S.train_gt, S.test_gt, S.dense, S.index, S.opac
pnames = synth.part_names
noise_keys = {f.name for f in fields(NOISE_LEVELS["realistic"])}
st_keys = {f.name for f in fields(TrainSettings)}


def part_means(fine: np.ndarray) -> dict[int, np.ndarray]:
    f = normalize_rows(fine)
    return {p: normalize_rows((f[synth.part_id == p] * opac[synth.part_id == p, None]).sum(0, keepdims=True))[0]
            for p in range(1, synth.num_parts + 1) if (synth.part_id == p).any()}


def sibling_cos(means: dict[int, np.ndarray], p: int) -> tuple[str, float]:
    sib = [q for q in means if q != p and synth.part_object[q] == synth.part_object[p]]
    if not sib:
        return "", float("nan")
    q = max(sib, key=lambda q: float(means[p] @ means[q]))
    return pnames[q].split("/")[-1], round(float(means[p] @ means[q]), 3)


def mask_evidence(caches, views) -> dict[int, dict]:
    """Per part: training pixels in own fine segments / absorbed into a sibling's / other."""
    ev: dict[int, dict] = {}
    for c, v in zip(caches, views):
        pm = v.part_map.reshape(-1)[c.pixels.numpy()]
        sf = c.seg_f.numpy()
        ok = sf >= 0
        for s in np.unique(sf[ok]):
            inside = pm[sf == s]
            inside = inside[inside >= 0]
            if not len(inside):
                continue
            dom = np.bincount(inside).argmax()
            share = np.bincount(inside, minlength=dom + 1)[dom] / len(inside)
            for p in np.unique(inside):
                n = int((inside == p).sum())
                e = ev.setdefault(int(p), {"own": 0, "absorbed": 0, "other": 0, "own_views": set(), "absorbed_views": set()})
                if p == dom and share >= 0.5:
                    e["own"] += n; e["own_views"].add(c.name)
                elif synth.part_object[dom] == synth.part_object[p] and p != dom:
                    e["absorbed"] += n; e["absorbed_views"].add(c.name)
                else:
                    e["other"] += n
    return ev


out = {}
for cfg in configs:
    parts = cfg.split(":")
    name, iters, variant = parts[0], int(parts[1]), parts[2]
    kv = dict(x.split("=") for x in (parts[3].split(",") if len(parts) > 3 and parts[3] else []))
    noise = replace(NOISE_LEVELS["realistic"], **{k: float(v) for k, v in kv.items() if k in noise_keys})
    trim = kv.get("trim", "1") == "1"; slivers = kv.get("slivers", "1") == "1"
    masks = simulate_view_masks([v.object_map for v in train_gt], [v.part_map for v in train_gt], noise, seed=seed)
    pairs = [(cache_from_contributors(d.ids, d.weights, m, device="cpu", name=v.camera.name, trim_edges=trim,
                                      drop_slivers=slivers), v) for d, m, v in zip(dense, masks, train_gt)]
    pairs = [(c, v) for c, v in pairs if c is not None]
    caches = [c for c, _ in pairs]
    if kv.get("sampling") == "uniform":  # every training pixel equally likely (instead of per-segment shares)
        import torch
        for c in caches:
            c.prob = torch.full_like(c.prob, 1.0 / len(c))
    ev = mask_evidence(caches, [v for _, v in pairs])
    a2 = SimpleNamespace(iterations=iters, pixels=1024, gfl_start=None, device="cpu")
    st = Q._settings(a2).replace(seed=seed, **Q.VARIANTS[variant])
    for k, v in kv.items():
        if k in st_keys:
            st = st.replace(**{k: type(getattr(st, k))(v)})
    cke = 250 if iters >= 1000 else 50
    traj = []
    ck = f"/tmp/fck_{seed}_{name}.pt"
    watch = [int(p) for p in os.environ.get("WATCH", "").split(",") if p]

    def prog(p):
        if p.iteration % cke == 0 and p.iteration < iters and p.phase == "train" and os.path.isfile(ck):
            f = load_checkpoint(ck)["features"].numpy()
            means = part_means(f)
            traj.append((p.iteration, {pnames[q]: sibling_cos(means, q) for q in watch}))
    t0 = time.time()
    if TRAJ:
        tr = train_from_caches(synth.scene, caches, st.replace(checkpoint_every=cke), progress=prog, checkpoint_path=ck)
    else:
        tr = train_from_caches(synth.scene, caches, st)
    wall = time.time() - t0
    res = Q.evaluate(synth, test_gt, tr, g, index)
    s = M.summarize(res)
    means = part_means(tr.level_features("fine"))
    pid = {pnames[p]: p for p in range(1, synth.num_parts + 1)}
    fine_t = {}
    for r in res:
        if r.level != "fine" or r.name not in pid:
            continue
        p = pid[r.name]
        e = ev.get(p, {"own": 0, "absorbed": 0, "other": 0, "own_views": set(), "absorbed_views": set()})
        fine_t[r.name] = dict(miou=round(r.miou, 3), click=None if r.click_iou is None else round(float(r.click_iou), 3),
                              sib=sibling_cos(means, p), own_px=e["own"], absorbed_px=e["absorbed"],
                              own_views=len(e["own_views"]), absorbed_views=len(e["absorbed_views"]),
                              gauss=int((synth.part_id == p).sum()))
    out[name] = dict(coarse=s.coarse, fine=s.fine, all=s.all, click_obj=s.click_coarse, click_part=s.click_fine,
                     n_fine_clusters=len(tr.centers("fine")), n_coarse_clusters=len(tr.centers("coarse")),
                     wall=round(wall, 1), traj=traj, fine_targets=fine_t)
    print(f"{name}: coarse {s.coarse*100:.1f} fine {s.fine*100:.1f} all {s.all*100:.1f} click obj {s.click_coarse:.3f} "
          f"part {s.click_fine:.3f} clusters {out[name]['n_coarse_clusters']}/{out[name]['n_fine_clusters']} ({wall:.0f} s)", flush=True)
    for t, d in sorted(fine_t.items(), key=lambda x: x[1]["miou"]):
        print(f"   {t:<20} {d['miou']:.2f} sib {d['sib'][0]}:{d['sib'][1]}  px own {d['own_px']} absorbed {d['absorbed_px']} "
              f"views own {d['own_views']} absorbed {d['absorbed_views']}  N {d['gauss']}", flush=True)
    for it, d in traj:
        print("   traj", it, d, flush=True)
json.dump(out, open(f"/tmp/fine_seed{seed}_{configs[0].split(':')[0]}.json", "w"), indent=1, default=float)
