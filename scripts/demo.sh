#!/usr/bin/env bash
# The main job: set up, then run the whole Blender workflow headless (bpy): import a 3DGS scene,
# start the engine, train Click-Gaussian features, click an object, move/scale it, delete a part at
# the fine level, export the edited .ply, and write before/after Cycles PNGs and timings to out/demo/.
# Default scene: the project's own procedural scene; pass any 3DGS .ply to use it instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo_workflow.py "$@"
