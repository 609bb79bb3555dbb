#!/bin/bash
# The default DGIA run and the ITC baseline (seed 0, 8 epochs) under settings that change
# only how the CPU rounds: the matrix-product library's code path (MKL_CBWR), the
# element-wise kernels' instruction set (ATEN_CPU_CAPABILITY) and the thread count.
# Usage: bash results/rounding.sh OUT_DIR   (about 10 runs of 1-2 minutes on 2 cores)
# docs/results.md, "Float rounding and one run's result", reads OUT_DIR/*/*/metrics.json.
set -euo pipefail
out=${1:?usage: bash results/rounding.sh OUT_DIR}
for setting in "default" "MKL_CBWR=AVX2" "MKL_CBWR=COMPATIBLE" "ATEN_CPU_CAPABILITY=avx2" "OMP_NUM_THREADS=1"; do
  name=$(echo "$setting" | tr '=' '_')
  env_args=()
  [ "$setting" != "default" ] && env_args=("$setting")
  for recipe in dgia baselines/itc; do
    env "${env_args[@]}" wsreid run "recipes/$recipe.yaml" --output-dir "$out/$name/$(basename $recipe)" --overwrite
  done
done
