"""``python -m engine.bench blender_click [--sizes 50000,1000000] [--clicks 15] [--modes object,edit]
[--order trained|shuffled|tiled] [--click-mode replace|add|remove] [--sh-degree 0-3] [--no-evaluate]
[--undo]``: the Blender add-on's click-to-selection
latency (whole handler: viewport camera, click query, vertex group and selection write) at 50k
and 1,000,000 Gaussians, in Object Mode and in the click tool's Edit Mode.

The engine never loads Blender, so the measurement runs in a child process with the same
interpreter (which has the ``bpy`` module): ``scripts/bench_blender_click.py`` (see its
docstring for the scene and features used). Its ``label: value unit`` lines are printed as-is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_blender_click.py"


def main(argv: list[str]) -> int:
    if not SCRIPT.is_file():
        print(f"blender_click: {SCRIPT} is missing (run from a source checkout)", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, str(SCRIPT), *argv])
