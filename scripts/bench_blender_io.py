"""Benchmark: import and export of a large SH-3 3DGS .ply in Blender (bpy), ours vs Blender's own
C++ PLY importer/exporter, side by side.

    .venv/bin/python scripts/bench_blender_io.py [--n 1000000] [--repeat 3] [--ply FILE]

Generates a random N-Gaussian SH-3 scene in the standard Inria layout (62 float properties) in a
temporary folder (or uses --ply), then times, best of ``--repeat`` (imports also as median and
every run; ours and Blender's alternate):

- ours: File > Import "3D Gaussian Splatting" (read + mesh with every property as an attribute
  + display modifier) and File > Export (every attribute read back, edit analysis, write):
  unedited, with the object rotated and scaled, and with half the Gaussians rotated and scaled
  in Edit Mode;
- Blender: ``bpy.ops.wm.ply_import`` / ``bpy.ops.wm.ply_export`` of the same file (which keep
  positions and the known PLY properties only and apply no Gaussian transforms).

Prints plain ``label: value unit`` lines. Lives in scripts/ because it imports bpy (the engine
package never does).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_scene(n: int, seed: int = 0):
    from engine.core.scene import GaussianScene

    rng = np.random.default_rng(seed)
    return GaussianScene(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        scales=rng.uniform(-5, -2, size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacities=rng.normal(size=n).astype(np.float32),
        sh_dc=rng.normal(size=(n, 3)).astype(np.float32),
        sh_rest=(0.1 * rng.normal(size=(n, 15, 3))).astype(np.float32),
    )


def clear(bpy) -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for mesh in list(bpy.data.meshes):
        bpy.data.meshes.remove(mesh)


def timed(fn, repeat: int, before=None) -> list[float]:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def best(fn, repeat: int, before=None) -> float:
    return min(timed(fn, repeat, before))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="Gaussians in the generated scene")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ply", type=Path, default=None, help="use this .ply instead of a generated one")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    import click_gaussian_blender as cgb

    cgb.register()
    with tempfile.TemporaryDirectory(prefix="cgs_bench_") as tmp:
        if args.ply is None:
            from engine.core.formats.ply import write_ply

            src = os.path.join(tmp, "bench.ply")
            write_ply(make_scene(args.n), src)
        else:
            src = str(args.ply)
        out_ours = os.path.join(tmp, "ours.ply")
        out_blender = os.path.join(tmp, "blender.ply")

        def ours_import():
            bpy.ops.import_scene.gaussian_splatting(filepath=src)

        def blender_import():
            bpy.ops.wm.ply_import(filepath=src)

        # imports alternate (ours, Blender's, ours, ...) so both see the same machine state
        # (a process's first large allocations are slower than later ones)
        imp_ours, imp_blender = [], []
        for _ in range(args.repeat):
            imp_ours += timed(ours_import, 1, lambda: clear(bpy))
            imp_blender += timed(blender_import, 1, lambda: clear(bpy))
        clear(bpy)
        ours_import()
        n = len(bpy.context.active_object.data.vertices)
        t_exp = best(lambda: bpy.ops.export_scene.gaussian_splatting(filepath=out_ours, overwrite=True),
                     args.repeat)
        # ours again, with the whole object moved (every Gaussian transformed, SH rotated)
        obj = bpy.context.active_object
        obj.rotation_euler = (0.3, 0.2, 0.1)
        obj.scale = (1.5, 1.5, 1.5)
        bpy.context.view_layer.update()
        t_exp_tf = best(lambda: bpy.ops.export_scene.gaussian_splatting(filepath=out_ours, overwrite=True),
                        args.repeat)
        # ours again, after an Edit-Mode rotation + scale of half the Gaussians (edit groups
        # estimated from original vs current positions)
        obj.rotation_euler = (0.0, 0.0, 0.0)
        obj.scale = (1.0, 1.0, 1.0)
        sel = np.zeros(n, bool)
        sel[: n // 2] = True
        obj.data.vertices.foreach_set("select", sel)
        obj.data.update()
        bpy.ops.object.mode_set(mode="EDIT")
        bpy.ops.transform.rotate(value=0.5, orient_axis="Z", orient_type="GLOBAL")
        bpy.ops.transform.resize(value=(1.2, 1.2, 1.2))
        bpy.ops.object.mode_set(mode="OBJECT")
        t_exp_edit = best(lambda: bpy.ops.export_scene.gaussian_splatting(filepath=out_ours, overwrite=True),
                          args.repeat)
        clear(bpy)
        blender_import()
        t_bexp = best(lambda: bpy.ops.wm.ply_export(filepath=out_blender, export_selected_objects=False),
                      args.repeat)
        print(f"gaussians: {n}")
        print(f"file size: {os.path.getsize(src) / 2**20:.1f} MiB")
        for label, runs in (("ours", imp_ours), ("blender ply_import", imp_blender)):
            print(f"import {label}: {min(runs):.3f} s")
            print(f"import {label} median: {float(np.median(runs)):.3f} s")
            print(f"import {label} runs: {' '.join(f'{t:.3f}' for t in runs)} s")
        print(f"export ours (unedited): {t_exp:.3f} s")
        print(f"export ours (object rotated+scaled, SH rotated): {t_exp_tf:.3f} s")
        print(f"export ours (half rotated+scaled in Edit Mode, SH rotated): {t_exp_edit:.3f} s")
        print(f"export blender ply_export: {t_bexp:.3f} s")
    cgb.unregister()
    return 0


if __name__ == "__main__":
    sys.exit(main())
