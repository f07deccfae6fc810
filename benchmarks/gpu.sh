#!/usr/bin/env bash
# Everything worth checking on an accelerator, in one call of a few minutes: the tests that
# need no TensorFlow, the full train and eval steps on synthetic batches (fp32 and bf16, two
# batch sizes), then the LRN and grouped-convolution benchmarks.
#   bash benchmarks/gpu.sh [BATCH]        (from the repository root; BATCH defaults to 256)
#   SECTIONS="tests train_step" bash benchmarks/gpu.sh    # a subset
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
PYTHON=${PYTHON:-python3}
BATCH=${1:-256}
SECTIONS=${SECTIONS:-tests train_step layers}
"$PYTHON" -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
for section in $SECTIONS; do
  case $section in
    tests) "$PYTHON" -m pytest -q -p no:cacheprovider tests ;;
    train_step)
      for dtype in float32 bfloat16; do
        for batch in 128 "$((BATCH * 2))"; do
          "$PYTHON" -m benchmarks.train_step --batch="$batch" --dtype="$dtype" --repeats=20
        done
      done ;;
    layers)
      for dtype in float32 bfloat16; do
        "$PYTHON" -m benchmarks.lrn --batch="$BATCH" --dtype="$dtype" --repeats=20
        "$PYTHON" -m benchmarks.grouped_conv --batch="$BATCH" --dtype="$dtype" --repeats=20
      done ;;
  esac
done
