#!/usr/bin/env bash
# CUDA checks for a machine with an NVIDIA GPU and the engine's dependencies importable by $PYTHON
# (default python3): gsplat's JIT build, the cuda-marked tests, the GPU render benchmark
# (gsplat against our tile rasterizer), and a full 3,000-iteration training of SCENE on the GPU
# with segment-everything PNGs. CI machines have no GPU; run this by hand where one is.
#
#   scripts/cuda_check.sh [SCENE.ply] [OUT_DIR]     (defaults: ../shared/data/fox_cc0.ply, out/cuda)
set -u
PY=${PYTHON:-python3}
SCENE=${1:-../shared/data/fox_cc0.ply}
OUT=${2:-out/cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
step() { echo; echo "== $1 ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__)"

step "gsplat CUDA extension (JIT build on first use)"
t=$(date +%s)
timeout 330 $PY -c "from gsplat.cuda._backend import _C; assert _C is not None, 'gsplat CUDA extension did not build'" \
  || echo "gsplat build failed: renders fall back to the torch rasterizer on the GPU"
echo "gsplat build/load: $(( $(date +%s) - t )) s"

step "cuda tests"
timeout 90 $PY -m pytest -q -p no:cacheprovider -m cuda tests/test_render_raster.py tests/test_train.py

step "render benchmark on the GPU"
timeout 90 $PY -m engine.bench render --device cuda --scene "$SCENE" --size 512 --views 8

step "full training on the GPU"
timeout 240 $PY -m engine train "$SCENE" --device cuda --out "$OUT/scene.clickgs.npz"
timeout 60 $PY -m engine segment "$SCENE" --features "$OUT/scene.clickgs.npz" --out "$OUT/segments" --views 2 --device cuda

step "SAM mask source tests (CUDA when present)"
timeout 60 $PY -m pytest -q -p no:cacheprovider tests/test_masks_sam.py
