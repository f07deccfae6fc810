#!/usr/bin/env bash
# Everything worth checking on an accelerator, in one call of a few minutes:
# the test suite, then the LRN and grouped-convolution benchmarks in float32 and bfloat16.
#   bash benchmarks/gpu.sh [BATCH]        (from the repository root; BATCH defaults to 256)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
PYTHON=${PYTHON:-python3}
BATCH=${1:-256}
"$PYTHON" -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
"$PYTHON" -m pytest -q -p no:cacheprovider tests
for dtype in float32 bfloat16; do
  "$PYTHON" -m benchmarks.lrn --batch="$BATCH" --dtype="$dtype" --repeats=20
  "$PYTHON" -m benchmarks.grouped_conv --batch="$BATCH" --dtype="$dtype" --repeats=20
done
