#!/usr/bin/env bash
# RIFE 4.26 fps at 720p and 1080p on a CUDA machine; about 2 minutes with the defaults.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
exec timeout 290 "$PY" bench/gpu/run.py --seconds "${SECONDS_PER_CASE:-8}" "$@"
