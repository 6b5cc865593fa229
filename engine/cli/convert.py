"""``python -m engine convert IN OUT [--overwrite] [--spz-version 3|4] [--keep-order]``:
convert a scene between .ply, .compressed.ply, .splat, .spz and .sog (formats from the names;
``meta.json`` for a SOG folder). Prints each stage with its time, then what the target format
dropped; never replaces an existing file without ``--overwrite``."""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="scene file (.ply, .compressed.ply, .splat, .spz, .sog, meta.json or its folder)")
    parser.add_argument("output", help="target file; the format comes from its name")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--spz-version", type=int, choices=(2, 3, 4), default=3,
                        help="SPZ version to write (3: gzip, read everywhere; 4: zstd streams)")
    parser.add_argument("--keep-order", action="store_true",
                        help=".compressed.ply: keep the Gaussian order instead of Morton order")
    parser.add_argument("--drop-invalid", action="store_true",
                        help="drop Gaussians with NaN / inf values instead of refusing the input")


def run(args: argparse.Namespace) -> int:
    import os

    from ..core.errors import SceneFormatError
    from ..core.formats.scene_io import format_of, read_scene, write_scene

    format_of(args.output, for_write=True)  # an unknown target is refused before the read
    if os.path.exists(args.output) and not args.overwrite:
        raise SceneFormatError(f"{args.output}: already exists; pass --overwrite to replace it")
    t0 = time.perf_counter()
    last = [t0]

    def stage(name: str) -> None:
        now = time.perf_counter()
        print(f"  {name} ... ({now - t0:.1f} s)", file=sys.stderr, flush=True)
        last[0] = now

    notes: list[str] = []
    stage(f"reading {args.input}")
    scene = read_scene(args.input, drop_invalid=args.drop_invalid, warnings=notes)
    stage(f"read {scene.num_gaussians} Gaussians, SH degree {scene.sh_degree}")
    notes += write_scene(scene, args.output, overwrite=args.overwrite, spz_version=args.spz_version,
                         keep_order=args.keep_order, progress=stage)
    print(f"wrote {args.output}: {scene.num_gaussians} Gaussians in "
          f"{time.perf_counter() - t0:.2f} s")
    for note in notes:
        print(f"warning: {note}")
    return 0
