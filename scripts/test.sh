#!/usr/bin/env bash
# Set up, then run the whole test suite (plain Python, headless Blender 5.0; CUDA tests skip without
# a GPU), then the Blender-side tests again under Blender 4.2 LTS, the oldest the manifest accepts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
bash scripts/test_blender42.sh
