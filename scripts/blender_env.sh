#!/usr/bin/env bash
# Make the virtual environment that stands in for one Blender release's own Python: the `bpy`
# module of that release on the Python it embeds, with numpy as Blender bundles it, plyfile (the
# wheel the extension bundles) and pytest. No torch: in real use the engine runs as its own process
# from .venv, and the Blender-side tests start it the same way.
#   bash scripts/blender_env.sh 4.2|5.2      -> prints the venv's python (.venv-blender42/bin/python, ...)
# Blender 5.0 is .venv itself (bpy 5.0.1 on Python 3.11, beside the engine). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  4.2) PYVER=3.11; PKGS=("bpy==4.2.0" "numpy==1.26.4") ;;   # Blender 4.2 LTS embeds Python 3.11, numpy 1.26
  5.2) PYVER=3.13; PKGS=("bpy==5.2.3") ;;                  # Blender 5.1+ embeds Python 3.13 (bpy pins its numpy)
  *) echo "usage: bash scripts/blender_env.sh 4.2|5.2" >&2; exit 2 ;;
esac
V=.venv-blender${1/./}

# Find a Python $PYVER: on PATH (a pyenv shim only counts if it runs), then in pyenv's versions,
# then the system's; PYTHON$PYVER (e.g. PYTHON3_13=/opt/py/bin/python3.13) overrides the search.
find_python() {
  local var="PYTHON${PYVER/./_}" cand
  if [ -n "${!var:-}" ]; then echo "${!var}"; return 0; fi
  for cand in "python$PYVER" \
              "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/"$PYVER"*/bin/"python$PYVER" \
              "/usr/bin/python$PYVER" "/usr/local/bin/python$PYVER"; do
    if "$cand" -c "import sys, venv; assert sys.version_info[:2] == tuple(map(int, '$PYVER'.split('.')))" >/dev/null 2>&1; then
      command -v "$cand" 2>/dev/null || echo "$cand"; return 0
    fi
  done
  return 1
}

if [ ! -f "$V/.installed" ]; then
  if ! PY=$(find_python); then
    echo "Blender $1 tests need Python $PYVER (the Python Blender $1 embeds) and none was found:" \
         "install it (e.g. 'pyenv install $PYVER') or set PYTHON${PYVER/./_} to its interpreter" >&2
    exit 1
  fi
  rm -rf "$V"
  "$PY" -m venv "$V" >&2
  "$V/bin/python" -m pip install -q --upgrade pip >&2
  "$V/bin/python" -m pip install -q "${PKGS[@]}" "plyfile==1.1.3" pytest >&2
  touch "$V/.installed"
fi
"$V/bin/python" -c "import bpy, sys; assert bpy.app.version_string.startswith('$1'), bpy.app.version_string" >&2
echo "$V/bin/python"
