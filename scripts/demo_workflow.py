"""The main job, headless in Blender (bpy): import a 3DGS scene, start the engine, train
Click-Gaussian features, click the main object in a real view, move and scale it, delete a part
at the fine level, export the edited .ply, and write before/after Cycles PNGs and the timings.

    .venv/bin/python scripts/demo_workflow.py                 # the project's procedural scene
    .venv/bin/python scripts/demo_workflow.py ../shared/data/fox_cc0.ply
    .venv/bin/python scripts/demo_workflow.py --quick         # short training (tests, smoke runs)
    .venv-blender52/bin/python scripts/demo_workflow.py --engine-python .venv/bin/python  # on Blender 5.2

Everything goes to ``out/demo/`` (``--out``): ``scene.ply`` (the generated scene), ``edited.ply``,
``before.png`` / ``after.png``, ``workflow.blend``, ``timings.json`` (also printed as
``label: value unit`` lines). The clicks go through the add-on's own code path: a Blender camera
placed at one of the scene's views gives the view/window matrices, :mod:`viewport` turns them
into the engine camera, :func:`ops_click.click` selects — the same functions the click tool
calls. Where the clicked pixel is (always the pixel deepest inside the target's pixels, so a
click lands on it, not on its edge): for the procedural scene, among the first 8 views and the
objects in them, the object whose distinct part (any part but the object's body, its part with
the most Gaussians: a lamp's shade, a mug's handle, a teapot's lid, a chair's backrest) lies
deepest inside its pixels (ties: the larger object); the coarse click goes on that object and
the fine click on that part (so never a sliver such as a chair leg, a part less than 3 pixels
deep, and never an object's body; only if it selects nothing, as after a very short training,
the object's other distinct parts, the other objects' and then any part in view are tried, and
the report says ``fallback``). Both clicks report
their IoU with the ground truth, by count and opacity-weighted (the quality benchmark's measure). For a file: the view showing the most red, the
opaque pixel just above its red region (coarse: on the fox, the statue above its bib; the
rendered scene's centre when nothing is red) and the inside of the red region (fine: the red
bib); on the fox (recognised by its geometry, :func:`engine.bench.scenes.fox_truth`) the clicks
report IoU with the statue and the bib.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.core.atomic import write_text  # noqa: E402  (torch-free: runs in Blender's Python too)

FULL = {}  # TrainSettings defaults: the paper's 3000 iterations at 10k pixels
QUICK = {"iterations": 150, "pixels_per_iter": 512, "gfl_start": 75, "gfl_interval": 37, "spatial_samples": 5000}


def _log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _blender_camera(bpy, cam, axis: np.ndarray, name: str = "DemoView"):
    """A Blender camera object at engine camera ``cam`` (file frame; object at identity)."""
    data = bpy.data.cameras.new(name)
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = 36.0
    data.lens = float(cam.K[0, 0]) * 36.0 / cam.width
    data.shift_x = (cam.width / 2 - cam.K[0, 2]) / cam.width
    data.shift_y = (cam.K[1, 2] - cam.height / 2) / cam.width
    data.clip_start, data.clip_end = 0.01, 1000.0
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    from mathutils import Matrix

    obj.matrix_world = Matrix((axis @ cam.opengl_c2w).tolist())
    scene = bpy.context.scene
    scene.camera = obj
    scene.render.resolution_x, scene.render.resolution_y = cam.width, cam.height
    scene.render.resolution_percentage = 100
    bpy.context.view_layer.update()
    return obj


def _view_from_blender_camera(bpy, cam_obj, splat, w: int, h: int):
    from click_gaussian_blender import ops_click

    class _Region:
        width, height = w, h

    class _RV3D:
        view_matrix = cam_obj.matrix_world.inverted()
        window_matrix = cam_obj.calc_matrix_camera(bpy.context.evaluated_depsgraph_get(), x=w, y=h)

    return ops_click.view_of(splat, _Region, _RV3D)


def _interior_pixel(mask: np.ndarray) -> tuple[float, float, int]:
    """(u, v, depth): the centre of the mask pixel deepest inside the mask (4-neighbour erosions
    it survives; of the deepest ones, the nearest their centroid) and that depth in pixels.
    numpy only: Blender's Python has no scipy."""
    m = np.asarray(mask, bool)
    if not m.any():
        raise RuntimeError("nothing to click on in this view")
    depth = 0
    while True:
        p = np.pad(m, 1)
        e = m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        if not e.any():
            break
        m, depth = e, depth + 1
    vs, us = np.nonzero(m)
    i = int(np.argmin((us - us.mean()) ** 2 + (vs - vs.mean()) ** 2))
    return us[i] + 0.5, vs[i] + 0.5, depth


def _ious(selected: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> dict:
    """IoU of selected vertex indices with the truth (bool per vertex): by count and weighted by
    ``weights`` (opacities, as the quality benchmark weighs)."""
    sel = np.zeros(len(truth), bool)
    sel[np.asarray(selected, np.int64)] = True
    inter, union = sel & truth, sel | truth
    return {"iou": float(inter.sum() / max(union.sum(), 1)),
            "weighted_iou": float(weights[inter].sum() / max(weights[union].sum(), 1e-12))}


def _synth_targets(synth, views, raycast_ids, min_depth: int = 3):
    """(camera, object id, object map, [(part id, pixel)]) for the procedural scene's clicks
    (module doc). The parts: first the chosen one, then the fallbacks in case it selects
    nothing (after a very short training): the object's other distinct parts, the other
    objects' distinct parts, then any part in view (bodies too), each group deepest first."""
    body = {}
    for obj in range(1, synth.num_objects + 1):
        parts, counts = np.unique(synth.part_id[synth.object_id == obj], return_counts=True)
        body[obj] = int(parts[np.argmax(counts)])
    best = None
    for cam in views[:8]:
        oid, pid = raycast_ids(synth, cam, "object"), raycast_ids(synth, cam, "part")
        seen = []  # (depth, part, object, pixel) of every part in view
        for part in np.unique(pid[pid > 0]):
            u, v, depth = _interior_pixel(pid == part)
            seen.append((depth, int(part), int(synth.part_object[part]), (u, v)))
        seen.sort(key=lambda c: -c[0])
        distinct = [c for c in seen if c[1] != body[c[2]] and c[0] >= min_depth]
        for depth, part, obj, px in distinct:
            score = (depth, int((oid == obj).sum()))  # its clearest part, then its size
            if best is None or score > best[0]:
                mine = [c for c in distinct if c[2] == obj]
                rest = [c for c in distinct if c[2] != obj] + [c for c in seen if c not in distinct and c[0] >= 1]
                best = (score, cam, obj, oid, [(c[1], c[3]) for c in mine + rest])
    if best is None:
        raise RuntimeError(f"no view shows a part of an object at least {min_depth} pixels deep")
    return best[1:]


def _render_png(bpy, path: Path, samples: int) -> float:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(path)
    t0 = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    return time.perf_counter() - t0


def run_workflow(ply: str | None, out_dir: str | os.PathLike, *, quick: bool = False, render: bool = True,
                 python: str | None = None, verify: bool = True, samples: int = 16) -> dict:
    """Run the workflow; returns the report (also written to ``out_dir/timings.json``)."""
    import bpy

    import click_gaussian_blender as cgb
    from click_gaussian_blender import attributes as A
    from click_gaussian_blender import engine_link, feature_store, io_export, ops_click, ops_train, scene_settings
    from click_gaussian_blender import mesh_read as MR
    from click_gaussian_blender import selection as S
    from click_gaussian_blender.engine.core.cameras import orbit_cameras
    from click_gaussian_blender.engine.core.formats.ply import read_ply, write_ply

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep: dict = {"timings": {}, "quick": quick}
    T = rep["timings"]
    synth = None
    if ply is None:
        from click_gaussian_blender.engine.bench.evaluation.synth import make_scene

        t0 = time.perf_counter()
        synth = make_scene(0, n_gaussians=20_000 if quick else 40_000, n_objects=4 if quick else 6,
                           n_views=8 if quick else 48, width=128 if quick else 256, height=128 if quick else 256)
        ply = str(out / "scene.ply")
        write_ply(synth.scene, ply, overwrite=True)
        T["generate_scene_s"] = time.perf_counter() - t0
    src = read_ply(ply)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        cgb.unregister()
    except Exception:  # noqa: BLE001 - not registered yet
        pass
    cgb.register()
    t0 = time.perf_counter()
    assert bpy.ops.import_scene.gaussian_splatting(filepath=str(ply)) == {"FINISHED"}
    splat = bpy.context.active_object
    T["import_s"] = time.perf_counter() - t0
    axis = np.asarray(splat[A.PROP_AXIS], np.float64).reshape(4, 4)
    n0 = len(splat.data.vertices)
    rep["num_gaussians"] = n0
    _log(f"imported {n0:,} Gaussians from {ply}")

    link = engine_link.LINK
    t0 = time.perf_counter()
    link.start(engine_link.EngineConfig(python=python or sys.executable, device="auto"))
    if not link.wait_ready(180):
        raise RuntimeError(link.error)
    T["engine_start_s"] = time.perf_counter() - t0
    _log(link.status_text())

    # the view to click in: a training view of the generated scene, or an orbit view of the file
    size = 128 if quick else 256
    if synth is not None:
        views = synth.cameras
    else:
        views = orbit_cameras(src, 8, size, size)
    props = scene_settings.get(bpy.context.scene)
    props.orbit_views, props.orbit_size = (12, 96) if quick else (24, 256)
    settings = dict(QUICK if quick else FULL)
    t0 = time.perf_counter()
    job = ops_train.start_training(bpy.context, splat, props, settings)
    last = ""
    while link.poll():
        txt = job.status_text()
        if txt != last and (int(time.perf_counter() - t0) % 10 == 0 or "Training" not in txt):
            _log(txt)
            last = txt
        time.sleep(0.1)
    T["train_s"] = time.perf_counter() - t0
    if job.state != "done":
        raise RuntimeError(job.error)
    _log(job.status_text())
    for w in job.warnings:
        _log(f"warning: {w}")
    rep["train"] = {k: job.summary.get(k) for k in ("coarse_clusters", "fine_clusters", "seconds")}
    # the add-on stored the features and sorted the vertices by cluster: vertex i is now file
    # row rows[i] (the engine answers in the rows it was sent, the file's order here)
    rows = np.empty(len(splat.data.vertices), np.int32)
    splat.data.attributes[A.INDEX].data.foreach_get("value", rows)
    rep["train"]["vertices_sorted_by_cluster"] = bool(not np.array_equal(rows, np.arange(len(rows))))

    # choose the view and the pixels
    fox = None
    if synth is not None:
        from click_gaussian_blender.engine.bench.evaluation.synth import raycast_ids

        cam, main_obj, oid, part_pxs = _synth_targets(synth, views, raycast_ids)
        parts = [p for p, _ in part_pxs]
        coarse_px = _interior_pixel(oid == main_obj)[:2]
        fine_pxs = [px for _, px in part_pxs]
        rep["targets"] = {"object": synth.object_names[main_obj], "parts": [synth.part_names[p] for p in parts]}
    else:
        best = None
        for cam in views:
            r = link.client.render(cam, "rgb").result(timeout=300)
            img, alpha = r["image"], r["alpha"]
            red = (alpha > 0.5) & (img[..., 0] > 0.35) & (img[..., 0] > 1.8 * img[..., 1]) & (img[..., 0] > 1.8 * img[..., 2])
            if best is None or red.sum() > best[0]:
                best = (int(red.sum()), cam, red, alpha)
        _, cam, red, alpha = best
        opaque = alpha > 0.9
        if red.any():  # the object wearing the red part: the opaque pixel just above its centre
            vs, us = np.nonzero(red)
            tu, tv = us.mean(), vs.min() - 0.08 * cam.height
            ov, ou = np.nonzero(opaque & ~red)
            i = int(np.argmin((ou - tu) ** 2 + (ov - tv) ** 2))
            coarse_px = (ou[i] + 0.5, ov[i] + 0.5)
        else:
            coarse_px = _interior_pixel(opaque)[:2]
        fine_pxs = [_interior_pixel(red)[:2]] if red.any() else []
        rep["targets"] = {"object": "the object above the reddest region", "parts": ["the reddest region"]}
        from click_gaussian_blender.engine.bench.scenes import fox_truth
        from click_gaussian_blender.engine.core.errors import EngineError

        try:
            fox = fox_truth(src)
            rep["targets"] = {"object": "statue (fox)", "parts": ["bib (fox)"]}
        except EngineError:  # not the fox: no ground truth to score against
            fox = None
    cam_obj = _blender_camera(bpy, cam, axis)
    view = _view_from_blender_camera(bpy, cam_obj, splat, cam.width, cam.height)
    rep["view"] = cam.name

    if render:
        T["render_before_s"] = _render_png(bpy, out / "before.png", samples)

    # click the main object (coarse)
    props.level = "coarse"
    bpy.context.view_layer.objects.active = splat
    res = ops_click.click_at(bpy.context, splat, view, *coarse_px, "replace")
    res2 = ops_click.click_at(bpy.context, splat, view, *coarse_px, "replace")  # cached index: the interactive case
    T["click_first_ms"] = res.timings.get("total_ms", float("nan"))
    T["click_ms"] = res2.timings.get("total_ms", float("nan"))
    rep["click"] = {"ok": res.ok, "message": res.message, "group": res.group, "count": int(res.selected.size),
                    "pixel": list(coarse_px)}
    _log(res2.message)
    if not res.ok:
        raise RuntimeError(res.message)
    # agreement with the ground truth (per file row: vertex i is row rows[i])
    opacity = src.activated_opacities()[rows]
    if synth is not None:
        ious = _ious(res.selected, synth.object_id[rows] == main_obj, opacity)
        rep["click"].update({"iou_with_object": ious["iou"], "weighted_iou_with_object": ious["weighted_iou"]})
    elif fox is not None:
        statue = next(t for t in fox.targets if t.name == "statue").truth
        ious = _ious(res.selected, statue[rows], opacity)
        rep["click"].update({"iou_with_object": ious["iou"], "weighted_iou_with_object": ious["weighted_iou"]})
    if verify:  # the engine's own answer for the same camera and pixel
        eng = link.client.click(view.camera, *coarse_px, level="coarse").result(timeout=120)
        members = S.group_members(splat, res.group)
        rep["click"]["matches_engine"] = bool(np.array_equal(np.sort(np.asarray(eng["selected"])),
                                                             np.sort(rows[members])))
        rep["click"]["engine_count"] = int(np.size(eng["selected"]))

    # move and scale it (what G and S do to the selected vertices, about their centre)
    sel = MR.vertex_selection(splat.data)
    co = MR.vertex_positions(splat.data).astype(np.float64)
    pivot = co[sel].mean(axis=0)
    offset = np.array([0.25, 0.0, 0.1]) * float(np.ptp(co, axis=0).max())
    co[sel] = (co[sel] - pivot) * 1.3 + pivot + offset
    splat.data.vertices.foreach_set("co", co.astype(np.float32).reshape(-1))
    splat.data.update()
    moved_idx = np.flatnonzero(sel)
    moved_gs_index = np.empty(len(sel), np.int32)
    splat.data.attributes[A.INDEX].data.foreach_get("value", moved_gs_index)
    moved_gs_index = moved_gs_index[moved_idx]
    expected_local = co[moved_idx].copy()

    # delete a part at the fine level (the first candidate pixel that hits a fine cluster)
    props.level = "fine"
    fine = None
    for px in fine_pxs:
        fine = ops_click.click_at(bpy.context, splat, view, *px, "replace")
        _log(fine.message)
        rep.setdefault("fine_clicks", []).append({"ok": fine.ok, "message": fine.message, "group": fine.group,
                                                  "count": int(fine.selected.size), "pixel": list(px)})
        if fine.ok:
            truth = None
            if synth is not None:
                truth = synth.part_id[rows] == parts[fine_pxs.index(px)]
                rep["fine_clicks"][-1]["part"] = synth.part_names[parts[fine_pxs.index(px)]]
            elif fox is not None:
                truth = next(t for t in fox.targets if t.name == "bib").truth[rows]
                rep["fine_clicks"][-1]["part"] = "bib"
            rep["fine_clicks"][-1]["fallback"] = len(rep["fine_clicks"]) > 1  # not the part aimed at
            if truth is not None:
                ious = _ious(fine.selected, truth, opacity)
                rep["fine_clicks"][-1].update({"iou_with_part": ious["iou"],
                                               "weighted_iou_with_part": ious["weighted_iou"]})
            break
    rep["fine_click"] = rep.get("fine_clicks", [{}])[-1] if fine is not None else {"ok": False}
    fine_ok = fine is not None and fine.ok
    deleted = 0
    deleted_gs: set = set()
    if fine_ok:
        gi = np.empty(len(splat.data.vertices), np.int32)
        splat.data.attributes[A.INDEX].data.foreach_get("value", gi)
        deleted_gs = set(gi[fine.selected].tolist())
        ops_click.group_action(bpy.context, splat, fine.group, "DELETE")
        deleted = n0 - len(splat.data.vertices)
    rep["deleted"] = deleted

    # export and read back
    t0 = time.perf_counter()
    edited = out / "edited.ply"
    er = io_export.export_ply(splat, str(edited), io_export.ExportSettings(overwrite=True))
    T["export_s"] = time.perf_counter() - t0
    back = read_ply(str(edited))
    keep = [i for i, g in enumerate(moved_gs_index) if g not in deleted_gs]
    exp_file = (expected_local[keep] - axis[:3, 3]) @ np.linalg.inv(axis[:3, :3]).T
    gi_now = np.empty(len(splat.data.vertices), np.int32)
    splat.data.attributes[A.INDEX].data.foreach_get("value", gi_now)
    pos_of = {int(g): i for i, g in enumerate(gi_now)}
    rows = np.array([pos_of[int(g)] for g in moved_gs_index[keep]], dtype=np.int64)
    rep["export"] = {"path": str(edited), "count": back.num_gaussians, "expected_count": n0 - deleted,
                     "edit_groups": er.edit_groups,
                     "moved_ok": bool(len(rows) == 0 or np.allclose(back.means[rows], exp_file, atol=1e-4))}
    _log(f"exported {back.num_gaussians:,} Gaussians to {edited}")

    if render:  # the exported file, imported back, seen by the same camera
        splat.hide_render = True
        assert bpy.ops.import_scene.gaussian_splatting(filepath=str(edited)) == {"FINISHED"}
        reimported = bpy.context.active_object
        T["render_after_s"] = _render_png(bpy, out / "after.png", samples)
        bpy.data.objects.remove(reimported)
        splat.hide_render = False
        bpy.context.view_layer.objects.active = splat

    # the features survive saving and reopening the .blend
    before = feature_store.load_features(splat.data)
    name = splat.name
    blend = out / "workflow.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    after = feature_store.load_features(bpy.data.objects[name].data)
    rep["blend_reopen"] = {"features_equal": bool(np.array_equal(before.features, after.features)
                                                  and np.array_equal(before.fine_labels, after.fine_labels))}
    link.stop()
    write_text(out / "timings.json", json.dumps(rep, indent=2, default=str))
    for k, v in T.items():
        unit = "ms" if k.endswith("_ms") else "s"
        print(f"{k[:-3] if k.endswith('_ms') else k[:-2]}: {v:.3f} {unit}")
    for label, c, key in (("coarse click", rep["click"], "object"), ("fine click", rep["fine_click"], "part")):
        if f"iou_with_{key}" in c:
            print(f"{label} ({c.get('part', rep['targets']['object'])}): {c['count']:,} selected, "
                  f"IoU {c[f'iou_with_{key}']:.3f}, opacity-weighted IoU {c[f'weighted_iou_with_{key}']:.3f}"
                  + (f" (fallback: the part aimed at, {rep['targets']['parts'][0]}, selected nothing)"
                     if c.get("fallback") else ""))
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ply", nargs="?", help="3DGS .ply (default: the project's procedural scene)")
    ap.add_argument("--out", default=str(REPO / "out" / "demo"))
    ap.add_argument("--quick", action="store_true", help="short training (smoke runs, tests)")
    ap.add_argument("--no-render", action="store_true", help="skip the Cycles PNGs")
    ap.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    ap.add_argument("--engine-python", default=None,
                    help="interpreter with torch that runs the engine (default: this one); e.g. "
                         ".venv/bin/python when this script runs on another Blender's Python")
    args = ap.parse_args(argv)
    from click_gaussian_blender.engine.core.errors import EngineError

    try:
        rep = run_workflow(args.ply, args.out, quick=args.quick, render=not args.no_render, samples=args.samples,
                           python=args.engine_python)
    except (EngineError, RuntimeError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: rep[k] for k in ("click", "fine_click", "export", "blend_reopen")}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
