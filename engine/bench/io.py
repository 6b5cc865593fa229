"""``python -m engine.bench io [--n 1000000] [--repeats 3]``: scene file read/write speed.

Generates a temporary N-Gaussian SH-3 Inria .ply (62 float32 properties), then prints the median
of ``--repeats`` runs of:
- our :func:`engine.core.formats.ply.read_ply` (into a ready GaussianScene: split, transposed SH, NaN check)
  and :func:`engine.core.formats.ply.write_ply` (atomic, fsync'd);
- plain plyfile the way the Inria code uses it: ``PlyData.read`` (memory-mapped) plus one
  ``np.asarray`` per property into [N, k] arrays, and ``PlyData.write`` of a ready record array;
- the floor: ``np.fromfile`` of the raw vertex bytes;
and, when ``../shared/data`` is beside the checkout, the read times of ``fox_cc0.ply`` and
``guitar.compressed.ply``. Output lines are ``label: value unit``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import plyfile

from ..core.formats.ply import inria_vertex_dtype, read_ply, write_ply
from . import SHARED_DATA, median_time


def _plyfile_read_inria_style(path: Path) -> dict[str, np.ndarray]:
    """What graphdeco-inria's GaussianModel.load_ply does with plyfile (without torch)."""
    v = plyfile.PlyData.read(str(path))["vertex"]
    names = [p.name for p in v.properties]
    rest = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n.split("_")[-1]))
    out = {
        "xyz": np.stack([np.asarray(v[c]) for c in ("x", "y", "z")], axis=1),
        "opacity": np.asarray(v["opacity"])[..., None],
        "dc": np.stack([np.asarray(v[f"f_dc_{i}"]) for i in range(3)], axis=1),
        "scale": np.stack([np.asarray(v[f"scale_{i}"]) for i in range(3)], axis=1),
        "rot": np.stack([np.asarray(v[f"rot_{i}"]) for i in range(4)], axis=1),
    }
    extra = np.zeros((len(out["xyz"]), len(rest)), dtype=np.float32)
    for i, n in enumerate(rest):
        extra[:, i] = np.asarray(v[n])
    out["rest"] = extra.reshape(len(extra), 3, -1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.bench io", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="Gaussians in the generated file")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median printed)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1:
        parser.error("--n and --repeats must be positive")

    n = args.n
    dtype = inria_vertex_dtype(3)
    rng = np.random.default_rng(0)
    records = rng.standard_normal((n, len(dtype.names)), dtype=np.float32).view(dtype).reshape(n)
    with tempfile.TemporaryDirectory(prefix="clickgs-bench-io-") as tmp:
        src = Path(tmp) / "bench_sh3.ply"
        plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")]).write(str(src))
        size_mib = src.stat().st_size / 2**20
        print(f"generated file: {n} Gaussians, SH degree 3, {size_mib:.1f} MiB")
        read_ply(src)  # warm the page cache once so every reader sees the same state

        scene = read_ply(src)
        header_len = src.read_bytes()[:20000].index(b"end_header\n") + len(b"end_header\n")
        t_ours_read = median_time(lambda: read_ply(src), args.repeats)
        t_plyfile_read = median_time(lambda: _plyfile_read_inria_style(src), args.repeats)
        t_raw_read = median_time(
            lambda: np.fromfile(src, dtype=dtype, count=n, offset=header_len), args.repeats)
        out = Path(tmp) / "out.ply"
        t_ours_write = median_time(lambda: write_ply(scene, out, overwrite=True), args.repeats)
        out2 = Path(tmp) / "out_plyfile.ply"
        t_plyfile_write = median_time(
            lambda: plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")]).write(str(out2)),
            args.repeats)
        same = out.read_bytes()[-records.nbytes:] == src.read_bytes()[-records.nbytes:]

    print(f"read ours (read_ply -> GaussianScene): {t_ours_read:.3f} s")
    print(f"read plyfile (Inria-style per-property arrays): {t_plyfile_read:.3f} s")
    print(f"read raw vertex bytes (np.fromfile, no split): {t_raw_read:.3f} s")
    print(f"write ours (write_ply, atomic + fsync): {t_ours_write:.3f} s")
    print(f"write plyfile (PlyData.write of ready records): {t_plyfile_write:.3f} s")
    print(f"round trip vertex bytes identical: {int(same)} bool")
    for name in ("fox_cc0.ply", "guitar.compressed.ply"):
        path = SHARED_DATA / name
        if path.is_file():
            count = read_ply(path).num_gaussians
            t = median_time(lambda: read_ply(path), max(args.repeats, 3))
            print(f"read {name} ({count} Gaussians): {t * 1000:.1f} ms")
    return 0
