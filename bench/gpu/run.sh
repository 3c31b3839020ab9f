#!/usr/bin/env bash
# RIFE 4.26 on one GPU, one prepared run in under 5 minutes: engine and pipeline fps at
# 720p/1080p/2160p, fp32/fp16/bf16, CUDA graphs and torch.compile, PSNR of the fast paths
# against fp32, peak VRAM. Prints JSON and writes it to bench/out/gpu.json (or --out DIR).
#
#   bash bench/gpu/run.sh                        # a CUDA machine with this repo's dependencies
#   bash bench/gpu/run.sh --device cpu --quick   # the same stages at a tiny size, in seconds
#
# On a bare GPU image with only torch (the lent H200), `bench/gpu/prepare.sh` run beforehand
# on a machine with internet fills bench/gpu/carry/ with the weights and the wheels of PyAV
# and kornia; this script installs them into a scratch folder and points the run at them.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
carry=bench/gpu/carry
if [ -d "$carry/wheels" ] && ! "$PYTHON" -c "import av, kornia" 2>/dev/null; then
  site=$(mktemp -d /tmp/reframe-gpu-site.XXXXXX)
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target "$site" "$carry"/wheels/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -z "${REFRAME_RIFE_WEIGHTS:-}" ] && [ -f "$carry/flownet.pkl.xz" ]; then
  weights=$(mktemp /tmp/reframe-flownet.XXXXXX.pkl)
  "$PYTHON" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$carry/flownet.pkl.xz" "$weights"
  export REFRAME_RIFE_WEIGHTS="$weights"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# run.py keeps to its own --budget (255 s; the wheels and weights above take ~15 s more); the
# timeout is the backstop for a hung device.
exec timeout 290 "$PYTHON" bench/gpu/run.py --budget 255 "$@"
