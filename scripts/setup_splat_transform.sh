#!/usr/bin/env bash
# Install PlayCanvas splat-transform (the independent implementation the format tests check
# against) into tools/splat-transform (ignored by git), from the npm registry only.
# 2.7.1 is the newest release whose package declares node >= 18 (3.x needs node >= 22); it
# reads and writes .ply, .compressed.ply, .spz (versions 3 and 4) and .sog, and reads .splat.
# Skips quietly (exit 0) where node or npm is missing: the tests that need it then skip.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${SPLAT_TRANSFORM_VERSION:-2.7.1}
DEST=tools/splat-transform
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "setup_splat_transform: node/npm not found; the splat-transform cross-checks will skip" >&2
  exit 0
fi
if [ -x "$DEST/node_modules/.bin/splat-transform" ] && \
   grep -q "\"version\": \"$VERSION\"" "$DEST/node_modules/@playcanvas/splat-transform/package.json" 2>/dev/null; then
  exit 0
fi
mkdir -p "$DEST"
# --ignore-scripts: the webgpu dependency's postinstall is not needed (SOG writing falls back to
# the CPU) and must not fetch anything
npm install --prefix "$DEST" --no-audit --no-fund --ignore-scripts --loglevel=error \
  "@playcanvas/splat-transform@$VERSION" >/dev/null
"$DEST/node_modules/.bin/splat-transform" --version
