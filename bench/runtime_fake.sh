#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The runtime library's figures against the fake driver (docs/RUNTIME.md):
# the share / cap / priority measurements printed by the runtime tests, and
# the launch rate with and without the library (zero-length kernels, one
# second per run, bare and library runs alternated, 7 each, medians). The
# launch rate of the fake is a ping-pong between two threads and swings
# by 2x from run to run on 2 cores: it shows gross regressions, not the
# per-launch cost on a GPU. Writes bench/results/runtime-fake.txt. These
# are the fake GPU's figures: bench/vgpu.sh is for a real one.
# Bounded: about 1.5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}
[ -x "$B/test/runtime/runtime_test" ] || { echo "build first: make build" >&2; exit 1; }
OUT=bench/results/runtime-fake.txt
mkdir -p bench/results
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

one_run() { # LD_PRELOAD value (empty: bare) -> launches in one second
  rm -rf "$tmp/state" "$tmp/fake" && mkdir -p "$tmp/fake"
  printf 'init\nctx 0\nburn 0 1000\nexit\n' |
    env LD_PRELOAD="$1" LD_LIBRARY_PATH="$B/test/fakecuda" FLEXPU_STATE_DIR="$tmp/state" \
      FAKECUDA_DIR="$tmp/fake" FLEXPU_CONTEXT_OVERHEAD=0 "$B/test/runtime/cuda_client" |
    tail -n 1 | awk '{print $3}'
}

{
  echo "# runtime library on the fake driver ($(date -u +%F), $(nproc) cores)"
  echo "## shares, caps, priorities (ctest -R runtime_test -V)"
  "$B/test/runtime/runtime_test" 2>&1 |
    grep -E '^(pair|three|capped|share|high|bursty|after|kernel_ptsz|ex|ex_ptsz|coop|graph) ' || true
  echo "## a high service beside a low batch (service: 8 kernels of 30 us and a"
  echo "## synchronize per request, exponential gaps of 4 ms; batch: 200 us kernels)"
  service() { # extra env for the service...
    rm -rf "$tmp/state" "$tmp/fake" && mkdir -p "$tmp/fake"
    if [ "$1" = beside ]; then
      printf 'init\nctx 0\nburn 200 4500 0\nexit\n' |
        env LD_PRELOAD="$PWD/$B/libflexpu-cuda.so" LD_LIBRARY_PATH="$B/test/fakecuda" \
          FLEXPU_STATE_DIR="$tmp/state" FAKECUDA_DIR="$tmp/fake" FLEXPU_CONTEXT_OVERHEAD=0 \
          FLEXPU_TENANT=batch FLEXPU_PRIORITY=low FLEXPU_COMPUTE_SHARE=50 \
          "$B/test/runtime/cuda_client" | sed -n 3p > "$tmp/batch" &
      sleep 0.5
    fi
    printf 'init\nctx 0\nservice 30 8 4 3000\nexit\n' |
      env LD_PRELOAD="$PWD/$B/libflexpu-cuda.so" LD_LIBRARY_PATH="$B/test/fakecuda" \
        FLEXPU_STATE_DIR="$tmp/state" FAKECUDA_DIR="$tmp/fake" FLEXPU_CONTEXT_OVERHEAD=0 \
        FLEXPU_TENANT=svc FLEXPU_PRIORITY=high FLEXPU_COMPUTE_SHARE=50 \
        "$B/test/runtime/cuda_client" | sed -n 3p
    wait
  }
  alone=$(service alone)
  beside=$(service beside)
  echo "service alone        p50 $(echo "$alone" | awk '{print $2}') us, p99 $(echo "$alone" | awk '{print $3}') us"
  echo "service beside batch p50 $(echo "$beside" | awk '{print $2}') us, p99 $(echo "$beside" | awk '{print $3}') us"
  awk -v a="$(echo "$alone" | awk '{print $3}')" -v b="$(echo "$beside" | awk '{print $3}')" \
    -v w="$(awk '{print $2}' "$tmp/batch")" \
    'BEGIN { printf "p99 beside / alone %.2f; batch GPU time %.2f of its 4.5 s\n", b / a, w / 4.5e6 }'
  echo "## launch rate, zero-length kernels, alternated runs (launches/s)"
  : > "$tmp/bare"
  : > "$tmp/lib"
  for i in 1 2 3 4 5 6 7; do
    one_run "" >> "$tmp/bare"
    one_run "$PWD/$B/libflexpu-cuda.so" >> "$tmp/lib"
  done
  echo "bare runs       $(sort -n "$tmp/bare" | tr '\n' ' ')"
  echo "library runs    $(sort -n "$tmp/lib" | tr '\n' ' ')"
  bare=$(sort -n "$tmp/bare" | sed -n 4p)
  lib=$(sort -n "$tmp/lib" | sed -n 4p)
  awk -v a="$bare" -v b="$lib" 'BEGIN { printf "median ratio    %.3f\n", b / a }'
  echo "## one allocation and its free (1 MiB, 20000 pairs per run, 7 runs alternated; ns)"
  echo "## the library's part: the quota check under the tenant's ledger lock, the credit"
  alloc_run() { # LD_PRELOAD value -> mean ns of one pair
    rm -rf "$tmp/state" "$tmp/fake" && mkdir -p "$tmp/fake"
    printf 'init\nctx 0\nallocrate 20000 1048576\nexit\n' |
      env LD_PRELOAD="$1" LD_LIBRARY_PATH="$B/test/fakecuda" FLEXPU_STATE_DIR="$tmp/state" \
        FAKECUDA_DIR="$tmp/fake" FLEXPU_CONTEXT_OVERHEAD=0 FLEXPU_MEMORY_LIMIT=4Gi \
        "$B/test/runtime/cuda_client" | sed -n 3p | awk '{print $2}'
  }
  : > "$tmp/abare"
  : > "$tmp/alib"
  for i in 1 2 3 4 5 6 7; do
    alloc_run "" >> "$tmp/abare"
    alloc_run "$PWD/$B/libflexpu-cuda.so" >> "$tmp/alib"
  done
  echo "bare runs       $(sort -n "$tmp/abare" | tr '\n' ' ')"
  echo "library runs    $(sort -n "$tmp/alib" | tr '\n' ' ')"
  awk -v a="$(sort -n "$tmp/abare" | sed -n 4p)" -v b="$(sort -n "$tmp/alib" | sed -n 4p)" \
    'BEGIN { printf "median: bare %d ns, library %d ns, added %d ns per allocation and free\n", a, b, b - a }'
} | tee "$OUT"
