"""``python -m engine.bench formats [--n 1000000] [--formats spz,sog,...]``: read / write time of
each scene format for a generated N-Gaussian SH-3 scene, beside splat-transform's conversion of
the same .ply to that format (when scripts/setup_splat_transform.sh installed it).

Output lines are ``label: value unit``. The scene is generated at run time (smooth SH as a
function of position plus noise, so SOG's palette has structure to find); nothing is kept.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ..core.formats.scene_io import read_scene, write_scene
from ..core.scene import GaussianScene

REPO = Path(__file__).resolve().parents[2]
SPLAT_TRANSFORM = REPO / "tools" / "splat-transform" / "node_modules" / ".bin" / "splat-transform"
TARGETS = {"ply": "s.ply", "compressed_ply": "s.compressed.ply", "splat": "s.splat",
           "spz": "s.spz", "spz4": "s4.spz", "sog": "s.sog"}


def _scene(n: int) -> GaussianScene:
    rng = np.random.default_rng(0)
    means = rng.normal(0, 2, (n, 3)).astype(np.float32)
    basis = rng.standard_normal((3, 45)).astype(np.float32)
    sh = np.tanh(means @ basis) * 0.3 + rng.standard_normal((n, 45)).astype(np.float32) * 0.01
    return GaussianScene(means=means, scales=rng.normal(-4, 0.5, (n, 3)).astype(np.float32),
                         quats=rng.standard_normal((n, 4)).astype(np.float32),
                         opacities=rng.normal(0, 2, n).astype(np.float32),
                         sh_dc=rng.normal(0, 1, (n, 3)).astype(np.float32),
                         sh_rest=sh.reshape(n, 15, 3).astype(np.float32))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.bench formats", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--formats", default=",".join(TARGETS))
    args = parser.parse_args(argv)
    scene = _scene(args.n)
    st = SPLAT_TRANSFORM if SPLAT_TRANSFORM.exists() and shutil.which("node") else None
    with tempfile.TemporaryDirectory(prefix="clickgs-bench-formats-") as tmp:
        src = Path(tmp) / "src.ply"
        write_scene(scene, src)
        print(f"scene: {args.n} Gaussians, SH degree 3")
        for fmt in args.formats.split(","):
            out = Path(tmp) / TARGETS[fmt]
            t0 = time.perf_counter()
            write_scene(scene, out, overwrite=True, spz_version=4 if fmt == "spz4" else 3)
            t_write = time.perf_counter() - t0
            t0 = time.perf_counter()
            read_scene(out)
            t_read = time.perf_counter() - t0
            print(f"{fmt} write ours: {t_write:.2f} s")
            print(f"{fmt} read ours: {t_read:.2f} s")
            print(f"{fmt} size: {out.stat().st_size / 2**20:.1f} MiB")
            if st is not None and fmt != "splat":  # splat-transform writes no .splat
                extra = ["--spz-version", "4" if fmt == "spz4" else "3"] if fmt.startswith("spz") else []
                extra += ["-g", "cpu"] if fmt == "sog" else []  # no GPU adapter here
                t0 = time.perf_counter()
                subprocess.run([str(st), "-q", "-w", str(src), str(Path(tmp) / ("st_" + out.name)), *extra],
                               check=True, capture_output=True, timeout=1800)
                print(f"{fmt} write splat-transform (from .ply, incl. its read): {time.perf_counter() - t0:.2f} s")
                t0 = time.perf_counter()
                subprocess.run([str(st), "-q", "-w", str(Path(tmp) / ("st_" + out.name)), "null"],
                               check=True, capture_output=True, timeout=1800)
                print(f"{fmt} read splat-transform (to null): {time.perf_counter() - t0:.2f} s")
    return 0
