#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The runtime library on a real GPU: the shared harness (../shared/bench/vgpu,
# see its README) and the driver-path program test/gpu/quota_paths.
#
#   bench/vgpu.sh prepare   # here: build, and copy the harness into .gpu-bench/
#   bench/vgpu.sh run       # on the GPU machine, from the checkout root
#
# `run` writes .gpu-bench/out/{result.json,score.txt,quota_paths.txt}; copy
# them to bench/results/ (vgpu-*.json, vgpu-score.txt) with the device named.
# With the `device` tool: carry .gpu-bench, build/libflexpu-cuda.so and
# build/test/runtime/quota_paths, and run `bench/vgpu.sh run` there, copying
# .gpu-bench/out to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
  make build >/dev/null
  rm -rf .gpu-bench && mkdir -p .gpu-bench
  cp ../shared/bench/vgpu/*.py ../shared/bench/vgpu/README.md .gpu-bench/
  echo "prepared .gpu-bench/; carry: .gpu-bench build/libflexpu-cuda.so build/test/runtime/quota_paths"
  ;;
run)
  lib="$PWD/build/libflexpu-cuda.so"
  state=/tmp/flexpu-bench
  out=.gpu-bench/out
  mkdir -p "$out"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/device.txt" || true
  # Every path that takes device memory, under a 4 GiB quota.
  rm -rf "$state"
  LD_PRELOAD="$lib" FLEXPU_MEMORY_LIMIT=4Gi FLEXPU_TENANT=paths FLEXPU_STATE_DIR="$state" \
    build/test/runtime/quota_paths 4294967296 > "$out/quota_paths.txt" 2>&1 || echo "quota_paths failed" >> "$out/quota_paths.txt"
  # The harness: FLEXPU_* variables filled per case.
  export VGPU_NAME=flexpu
  export VGPU_RESET="rm -rf $state"
  export VGPU_ENV_TEMPLATE="{\"LD_PRELOAD\":\"$lib\",\"FLEXPU_MEMORY_LIMIT\":\"{MEM}\",\"FLEXPU_COMPUTE_SHARE\":\"{SM}\",\"FLEXPU_COMPUTE_CAP\":\"{SMCAP}\",\"FLEXPU_TENANT\":\"{ID}\",\"FLEXPU_PRIORITY\":\"{PRIO}\",\"FLEXPU_STATE_DIR\":\"$state\"}"
  (cd .gpu-bench && python3 compare.py > out/result.json)
  (cd .gpu-bench && python3 score.py out/result.json > out/score.txt) || true
  cat "$out/quota_paths.txt" "$out/score.txt"
  ;;
*)
  echo "usage: bench/vgpu.sh prepare|run" >&2
  exit 2
  ;;
esac
