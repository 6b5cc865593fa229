#!/usr/bin/env bash
# Set up, then run the whole test suite (plain Python, headless Blender 5.0; CUDA tests skip without
# a GPU), then the Blender-side tests again under Blender 4.2 LTS (the oldest the manifest accepts)
# and 5.2 LTS (the current one, Python 3.13).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_splat_transform.sh  # format cross-checks; they skip without node/npm
.venv/bin/python -m pytest -q "$@"
bash scripts/test_blender.sh 4.2
bash scripts/test_blender.sh 5.2
