#!/usr/bin/env bash
# The Blender-side tests under Blender 4.2 LTS (bpy 4.2.0, the oldest Blender the manifest accepts),
# beside the default bpy 5.0.1 of .venv. Makes .venv-blender42 with bpy 4.2.0 and numpy 1.26 (as
# Blender 4.2 bundles) and reads everything else (torch, pytest, plyfile) from .venv.
# About 520 MB download on first use.     bash scripts/test_blender42.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
V=.venv-blender42
if [ ! -f "$V/.installed" ]; then
  "$PY" -m venv "$V"
  "$V/bin/python" -m pip install -q "bpy==4.2.0" "numpy==1.26.4"
  main_site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  v_site=$("$V/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "$main_site" > "$v_site/zz_main_venv.pth"  # after bpy 4.2's own site-packages: 4.2 wins
  touch "$V/.installed"
fi
"$V/bin/python" -c "import bpy; assert bpy.app.version[:2] == (4, 2), bpy.app.version_string"
exec "$V/bin/python" -m pytest -q -p no:cacheprovider tests/test_blender_*.py tests/test_viewport.py "$@"
