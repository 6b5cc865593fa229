#!/usr/bin/env bash
# Set up, then run the whole test suite (plain Python, headless Blender; CUDA tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
