#!/usr/bin/env bash
# The main job: set up, then run the demo (default: the project's own procedural scene;
# pass any 3DGS .ply to use it instead). Pictures and timings go to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m engine demo "$@"
