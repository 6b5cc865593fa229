#!/usr/bin/env bash
# The Blender-side tests under another Blender release than .venv's bpy 5.0.1:
#   bash scripts/test_blender.sh 4.2|5.2 [pytest args]
# 4.2 LTS is the oldest release the manifest accepts; 5.2 LTS the current one (Python 3.13).
# The tests run on that release's Python with its bpy and no torch; the engine they start is
# .venv's, as in real use. First use downloads bpy (~400 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=$(bash scripts/blender_env.sh "$1")
shift
export CLICKGS_ENGINE_PYTHON="$PWD/.venv/bin/python"
exec "$PY" -m pytest -q -p no:cacheprovider tests/test_blender_*.py tests/test_viewport.py "$@"
