"""Click-to-selection latency in headless Blender (bpy): the whole click handler of the add-on
(``ops_click.click_at``, the click tool's own call: viewport camera, engine.core.click.click_query on
the mesh's stored features, vertex group + selection write) at 50k and 1,000,000 Gaussians.

Run through ``python -m engine.bench blender_click [--sizes 50000,1000000] [--clicks 15]
[--modes object,edit] [--order trained|shuffled|tiled] [--click-mode replace|add|remove]
[--sh-degree 0-3] [--no-evaluate] [--undo] [--cold]``.

Scene: the fox (``../shared/data/fox_cc0.ply``) tiled on a grid up to the size (or the
procedural scene when the fox is absent), its rows shuffled (a real file's cluster members are
spread over its rows). ``--order trained`` (default) then sorts the vertices by cluster as the
add-on does when training results arrive (``vertex_order.order_by_clusters``, timed as
``reorder``); ``shuffled`` leaves them spread (a mesh whose order could not be changed, e.g. one
with vertex groups on Blender 4.x); ``tiled`` keeps each tile contiguous in file order. Features: NOT trained here (training 1M Gaussians on a CPU
takes hours); each tile is one coarse cluster and each tile quadrant one fine cluster, with unit
cluster centres plus small noise as features — the selection sizes (one tile: 50k Gaussians)
and every code path are those of a trained scene.

Training results: the add-on sorts the vertices (above) and starts building the click index in
a worker thread when they arrive (``ops_train.store_result``); the benchmark does the same and
reports its main-thread part (``results_prepare``) and the time until the index is ready
(``index_build``), before any click. ``--cold`` skips that (a .blend opened and the tool started
at once): the tool start then starts the build, and the first click waits for what is left.

Modes: ``object`` clicks the object in Object Mode; ``edit`` starts the click tool as its
operator does (``ops_click.start_click_tool``: order check, Edit Mode, vertex select; timed as
``tool_start_edit``, its Edit-Mode entry as ``tool_edit_mode_edit``), then the vertex wrappers
its timer makes in the first idle moment after (``tool_idle_wrap_edit``, before the first
click), and clicks in Edit Mode, where G / R / S / X / Shift+D act on the result.
Between clicks the depsgraph is evaluated as the redraw after a click does (not timed; it
matters: it shares the mesh's arrays with the evaluated copy, so the next write copies them);
``--no-evaluate`` skips it. ``--undo`` also times the undo step the tool pushes after a click;
the click figures of such a run are not the handler's alone: Blender compacts each Edit-Mode
undo step in a background thread, which here still runs during the next click (measured at 1M:
query 1.6 -> 9.5 ms), while a user's next click comes long after it has finished.

Prints ``label: value unit`` lines per mode: the first click (under ``--cold`` it waits for the
click index), then the median / p90 of the following clicks on different tiles, and the median of
each stage (camera, prepare = cache check, query, write = select (deselecting) + group (the
members' select flags and weights)).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FOX = REPO.parent / "shared" / "data" / "fox_cc0.ply"


def tiled_scene(n: int, sh_degree: int = 0):
    from click_gaussian_blender.engine.core.formats.ply import read_ply
    from click_gaussian_blender.engine.core.scene import GaussianScene

    base = read_ply(str(FOX)) if FOX.is_file() else __import__(
        "click_gaussian_blender.engine.bench.evaluation.synth", fromlist=["make_scene"]).make_scene(0).scene
    m = base.num_gaussians
    tiles = max(1, -(-n // m))
    side = int(np.ceil(np.sqrt(tiles)))
    ext = float(np.ptp(base.means, axis=0).max()) * 1.2
    idx = np.arange(n) % m
    tile = np.arange(n) // m
    off = np.stack([(tile % side) * ext, np.zeros(n), (tile // side) * ext], axis=1).astype(np.float32)
    means = base.means[idx] + off
    scene = GaussianScene(means, base.scales[idx], base.quats[idx], base.opacities[idx], base.sh_dc[idx],
                          np.random.default_rng(2).normal(0, 0.05, (n, (sh_degree + 1) ** 2 - 1, 3)).astype(np.float32))
    quad = (base.means[idx, 0] > np.median(base.means[:, 0])).astype(np.int32) * 2 + (
        base.means[idx, 2] > np.median(base.means[:, 2])).astype(np.int32)
    return scene, tile.astype(np.int32), (tile * 4 + quad).astype(np.int32), side, ext, base


def fake_features(coarse: np.ndarray, fine: np.ndarray, seed: int = 0):
    from click_gaussian_blender.engine.core.features import TrainedFeatures, normalize_rows

    rng = np.random.default_rng(seed)
    cc = normalize_rows(rng.normal(size=(int(coarse.max()) + 1, 12)))
    fp = normalize_rows(rng.normal(size=(int(fine.max()) + 1, 12)))
    feats = np.concatenate([cc[coarse], fp[fine]], axis=1) + rng.normal(0, 0.02, (len(coarse), 24))
    fc = normalize_rows(np.concatenate([cc[np.arange(len(fp)) // 4], fp], axis=1))
    return TrainedFeatures(feats.astype(np.float16), cc, fc, coarse, fine, settings={"synthetic": True})


def _percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[int(q * (len(v) - 1))]


def _clicks(obj, n_tiles: int, side: int, ext: float, centre: np.ndarray, axis: np.ndarray, clicks: int,
            mode_name: str, label: str, *, evaluate: bool, undo: bool, click_mode: str = "replace") -> None:
    """``clicks + 1`` clicks on successive tiles through ``ops_click.click_at`` (the click tool's
    own call); the first (cold cache) is reported apart. Prints the medians."""
    import bpy

    from click_gaussian_blender import ops_click, viewport
    from click_gaussian_blender.engine.core.cameras import GL_FLIP, Camera, look_at_viewmat

    w = h = 512
    K = np.array([[500.0, 0, w / 2], [0, 500.0, h / 2], [0, 0, 1]])
    near, far = 0.01, 1000.0
    proj = np.array([[2 * K[0, 0] / w, 0, 0, 0], [0, 2 * K[1, 1] / h, 0, 0],
                     [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)], [0, 0, -1, 0]])
    stages: dict[str, list[float]] = {k: [] for k in ("total", "camera", "prepare", "query", "write", "select", "group",
                                                      "undo")}
    sizes, oks, first = [], 0, float("nan")
    for i in range(clicks + 1):
        t = (i + (1 if mode_name == "edit" else 0)) % n_tiles
        target = centre + np.array([(t % side) * ext, 0, (t // side) * ext])
        eye = target + np.array([0.0, -0.4, -2.2]) * ext / 1.2
        cam = Camera(look_at_viewmat(eye, target, np.array([0.0, -1.0, 0.0])), K, w, h)
        # the Blender view of that camera (what the viewport hands the click tool)
        gl_view = GL_FLIP @ cam.viewmat @ np.linalg.inv(axis)
        if evaluate:  # what the redraw after the previous click does (not timed)
            bpy.context.view_layer.update()
        t0 = time.perf_counter()
        view = viewport.view_camera(gl_view, proj, w, h, np.array(obj.matrix_world), axis)
        t1 = time.perf_counter()
        out = ops_click.click_at(bpy.context, obj, view, w / 2 + 0.5, h / 2 + 0.5, click_mode if i else "replace")
        t2 = time.perf_counter()
        if undo and out.ok:  # the click tool's undo step, after the handler
            bpy.ops.ed.undo_push(message="click")
        t3 = time.perf_counter()
        if i == 0:
            first = (t2 - t0) * 1e3
            continue
        oks += out.ok
        if out.ok:
            stages["total"].append((t2 - t0) * 1e3)
            stages["camera"].append((t1 - t0) * 1e3)
            for k in ("prepare", "query", "write", "select", "group"):
                stages[k].append(out.timings.get(f"{k}_ms", float("nan")))
            if undo:
                stages["undo"].append((t3 - t2) * 1e3)
            sizes.append(out.selected.size)
    p = f"{mode_name}_{label}"
    print(f"click_first_{p}: {first:.1f} ms")
    if stages["total"]:
        print(f"click_median_{p}: {statistics.median(stages['total']):.2f} ms")
        print(f"click_p90_{p}: {_percentile(stages['total'], 0.9):.2f} ms")
        for k in ("camera", "prepare", "query", "write", "select", "group"):
            print(f"click_{k}_median_{p}: {statistics.median(stages[k]):.2f} ms")
        if stages["undo"]:
            print(f"undo_push_median_{p}: {statistics.median(stages['undo']):.2f} ms")
        print(f"click_selected_median_{p}: {int(statistics.median(sizes))} gaussians")
    print(f"click_ok_{p}: {oks}/{clicks} clicks")


def bench(n: int, clicks: int, modes: list[str], *, order: str, evaluate: bool, undo: bool,
          click_mode: str = "replace", sh_degree: int = 0, cold: bool = False) -> None:
    import bpy

    import click_gaussian_blender as cgb
    from click_gaussian_blender import feature_store, io_import, ops_click, selection, vertex_order
    from click_gaussian_blender.engine.core.scene import GaussianScene

    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        cgb.unregister()
    except Exception:  # noqa: BLE001
        pass
    cgb.register()
    scene, coarse, fine, side, ext, base = tiled_scene(n, sh_degree)
    if order != "tiled":  # a real file's cluster members are spread over its rows, not contiguous
        perm = np.random.default_rng(1).permutation(n)
        scene = GaussianScene(scene.means[perm], scene.scales[perm], scene.quats[perm], scene.opacities[perm],
                              scene.sh_dc[perm], scene.sh_rest[perm])
        coarse, fine = coarse[perm], fine[perm]
    axis = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)
    t0 = time.perf_counter()
    obj = io_import.scene_to_object(scene, bpy.context, io_import.ImportSettings(axis_matrix=axis, name=f"bench{n}"))
    t_import = time.perf_counter() - t0
    feature_store.store_features(obj.data, fake_features(coarse, fine))
    bpy.context.view_layer.objects.active = obj
    t_reorder = None
    if order == "trained":
        t0 = time.perf_counter()
        why = vertex_order.order_by_clusters(obj)
        t_reorder = time.perf_counter() - t0
        if why:
            raise SystemExit(f"blender_click: the vertices could not be sorted by cluster: {why}")
    centre = np.median(base.means[:min(n, base.num_gaussians)], axis=0)  # tile 0 (all of it when n < one tile)
    label = f"{n // 1000}k" if n < 1_000_000 else f"{n / 1e6:g}M"
    print(f"gaussians: {n}")
    print(f"order: {order}")
    print(f"import_{label}: {t_import:.3f} s")
    if t_reorder is not None:
        print(f"reorder_{label}: {t_reorder:.3f} s")
    if not cold:  # what the add-on does when training results arrive (ops_train.store_result)
        t0 = time.perf_counter()
        selection.invalidate(obj.data)
        selection.prepare(obj)
        t1 = time.perf_counter()
        selection.click_data(obj)  # waits for the worker thread
        print(f"results_prepare_{label}: {(t1 - t0) * 1e3:.0f} ms")
        print(f"index_build_{label}: {(time.perf_counter() - t0) * 1e3:.0f} ms")
    for mode_name in modes:
        if mode_name == "edit":  # what the click tool does when it starts
            parts: dict[str, float] = {}
            t0 = time.perf_counter()
            ops_click.start_click_tool(obj, parts, sort=order == "trained")  # others: as if it could not sort
            t1 = time.perf_counter()
            selection.wrap_vertices(obj)  # the tool's timer, in the first idle moment after the start
            t2 = time.perf_counter()
            print(f"tool_start_edit_{label}: {(t1 - t0) * 1e3:.0f} ms")
            print(f"tool_edit_mode_edit_{label}: {parts.get('edit_mode_ms', float('nan')):.0f} ms")
            print(f"tool_idle_wrap_edit_{label}: {(t2 - t1) * 1e3:.0f} ms")
        elif obj.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        _clicks(obj, int(coarse.max()) + 1, side, ext, centre, axis, clicks, mode_name, label,
                evaluate=evaluate, undo=undo, click_mode=click_mode)
    if obj.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="50000,1000000")
    ap.add_argument("--clicks", type=int, default=15)
    ap.add_argument("--modes", default="object,edit", help="object: the object in Object Mode; edit: in Edit "
                    "Mode (the click tool's mode, so G/R/S/X/Shift+D act on the selection)")
    ap.add_argument("--sh-degree", type=int, choices=(0, 1, 2, 3), default=0,
                    help="SH degree of the scene (random higher coefficients; the fox has degree 0): more "
                    "attributes per vertex make Blender's undo step heavier")
    ap.add_argument("--order", choices=("trained", "shuffled", "tiled"), default="trained",
                    help="vertex order: trained (shuffled rows, then sorted by cluster as training results "
                    "are), shuffled (rows spread, as in a real file) or tiled (each tile contiguous)")
    ap.add_argument("--no-evaluate", action="store_true", help="skip the depsgraph update between clicks")
    ap.add_argument("--undo", action="store_true", help="also time the undo step pushed after each click")
    ap.add_argument("--cold", action="store_true", help="no click index built when the results arrive (a "
                    ".blend opened and the tool started at once): the first click waits for it")
    ap.add_argument("--click-mode", choices=("replace", "add", "remove"), default="replace",
                    help="what the timed clicks do: replace (click), add (Shift+click), remove (Ctrl+click)")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in ("object", "edit") for m in modes):
        ap.error(f"--modes takes object and/or edit, got {args.modes!r}")
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--sizes takes comma-separated Gaussian counts, got {args.sizes!r}")
    if not sizes or min(sizes) < 1 or args.clicks < 1:
        ap.error("--sizes and --clicks must be positive")
    try:
        for n in sizes:
            bench(n, args.clicks, modes, order=args.order, evaluate=not args.no_evaluate,
                  undo=args.undo, click_mode=args.click_mode, sh_degree=args.sh_degree, cold=args.cold)
    finally:
        # Blender disables add-ons when it quits; bpy as a module does not, and bpy 4.2 crashes
        # at interpreter exit with the add-on still registered
        import click_gaussian_blender as cgb

        try:
            cgb.unregister()
        except Exception:  # noqa: BLE001 - never registered (an early error)
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
