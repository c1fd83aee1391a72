#!/usr/bin/env bash
# The GPU check: run on a machine with a CUDA GPU from the repository root; it takes under 5 minutes.
#   bash bench/gpu_check.sh
# bf16 BT training on the small preset with and without the Mamba CUDA kernels (mamba-ssm and
# causal-conv1d from `pip install '.[gpu]'`; without them only the torch path is measured), eval on
# the GPU, and a burst of requests to `helpsteer serve --device cuda` (batched vs batch size 1).
# Prints tokens/s, MFU against the GPU's bf16 peak and requests/s with p99; JSON in bench/_work/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "warning: nvidia-smi not found" >&2
exec timeout 300 "$PY" bench/gpu_check.py "$@"
