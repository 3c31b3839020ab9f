#!/usr/bin/env bash
# Fills bench/gpu/carry/ (git-ignored) with what bench/gpu/run.sh needs on a GPU image that has
# torch but nothing of this project's stack and no network: the RIFE 4.26 weights (xz, to stay
# under a 64 MiB transfer) and Python 3.12 wheels of PyAV and kornia at the locked versions.
# Run it here (needs the weights in the model cache and PyPI), then carry bench/gpu/carry.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
carry=bench/gpu/carry
mkdir -p "$carry/wheels"
pins=$(grep -E '^(av|kornia|kornia_rs)==' requirements.lock)
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$carry/wheels" $pins
weights=$("$PY" -c 'import sys; sys.path.insert(0, "."); from bench.gpu.run import default_weights; print(default_weights())')
if [ ! -f "$carry/flownet.pkl.xz" ]; then
  "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(open(sys.argv[1], "rb"), lzma.open(sys.argv[2], "wb", preset=6))' \
    "$weights" "$carry/flownet.pkl.xz"
fi
du -sh "$carry"
echo "carry: [\"$carry\"]   command: bash bench/gpu/run.sh --out \$OUT"
