#!/usr/bin/env bash
# What is worth measuring on an accelerator, in one call of under 5 minutes: the full train and
# eval steps on synthetic on-device batches (float32 and bfloat16, batch 128 to 1024, images/s,
# MFU against the best float32/bfloat16 matmul measured in the same process), the layer
# benchmarks, and the input pipeline on this machine's CPU cores where TensorFlow is installed.
#   bash benchmarks/gpu.sh                          (from the repository root)
#   SECTIONS="tests train_step" bash benchmarks/gpu.sh   # a subset; tests are not in the default
#   BATCHES="128 512" LAYER_BATCH=64 bash benchmarks/gpu.sh
# A smoke run on a CPU, with small sizes:
#   PYTHON=.venv/bin/python BATCHES=2 LAYER_BATCH=2 PIPELINE_ARGS="--images=24 --batch=8" \
#     bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
PYTHON=${PYTHON:-python3}
BATCHES=${BATCHES:-128 256 512 1024}
LAYER_BATCH=${LAYER_BATCH:-256}
PIPELINE_ARGS=${PIPELINE_ARGS:---images=2048 --batch=256 --repeats=3}
SECTIONS=${SECTIONS:-train_step layers pipeline}
failed=0
# Runs one measurement; a failure is reported and the rest still run, and the exit status says.
run() { "$@" || { echo "FAILED ($?): $*"; failed=1; }; }
"$PYTHON" -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
nproc
for section in $SECTIONS; do
  echo "=== $section"
  case $section in
    tests) run "$PYTHON" -m pytest -q -p no:cacheprovider tests ;;
    train_step)
      for dtype in float32 bfloat16; do
        for batch in $BATCHES; do
          run "$PYTHON" -m benchmarks.train_step --batch="$batch" --dtype="$dtype" --repeats=20 \
            --baseline=none --device_crop
        done
      done ;;
    layers)
      for dtype in float32 bfloat16; do
        for module in lrn max_pool grouped_conv conv_grad; do
          run "$PYTHON" -m benchmarks.$module --batch="$LAYER_BATCH" --dtype="$dtype" --repeats=20
        done
      done ;;
    pipeline)
      if "$PYTHON" -c 'import tensorflow, tensorflow_datasets' 2>/dev/null; then
        run "$PYTHON" -m benchmarks.input_pipeline $PIPELINE_ARGS  # word splitting intended
      else
        echo "skipped: TensorFlow and tensorflow-datasets are not installed here"
      fi ;;
    *) echo "unknown section $section" >&2; exit 2 ;;
  esac
done
exit $failed
