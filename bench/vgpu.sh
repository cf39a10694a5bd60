#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The runtime library on a real GPU, in one command of under 8 minutes: the
# driver-path program test/gpu/quota_paths, the framework matrix and the cap probe
# (test/gpu/frameworks/), and the shared harness (../shared/bench/vgpu, see its
# README).
#
#   bench/vgpu.sh prepare        # here: build, copy everything into .gpu-bench/,
#                                # print the device tool's carry list and command
#   bench/vgpu.sh run            # on the GPU machine, from the checkout root
#   bench/vgpu.sh save OUT.tgz   # here: unpack a run's results into bench/results/
#
# Steps of `run` (outputs under .gpu-bench/out/), with estimates for an H200
# (PyTorch 2.11, CUDA 13). Each step has a timeout, shortened when earlier steps
# ran long so that the whole run stays within VGPU_BUDGET_S (510 s; each timeout
# can add 5 s to kill), and a failed or timed-out step does not stop the others:
#   quota_paths    ~10 s      limit 60 s   out/quota_paths.txt
#   oom_wait       ~2 s       limit 15 s   out/oom_wait.txt (test/gpu/oom_wait_check.sh)
#   frameworks     ~60-90 s   limit 165 s  out/frameworks.{txt,json}, out/frameworks-logs/
#                  (11 cases, 4 at a time; torch.compile's first compile is the longest)
#   cap_probe      ~50 s      limit 100 s  out/cap_probe.{txt,json}
#   compare.py     ~180-240 s limit 300 s  out/result.json (written only at its end)
#   score.py       ~1 s       limit 20 s   out/score.txt
#   agent          ~60-70 s   limit 100 s  out/agent_score.txt, agent_result.json,
#                  agent_host.log (test/gpu/frameworks/agent_cases.py: launch rate,
#                  a 30% cap, the 30/70 pair and high beside low again, with the
#                  node agent deciding as in Kubernetes, test/gpu/agent_host)
# About 6-7 minutes in all. out/summary.txt has each step's status and time; the
# run exits non-zero if any step failed. With the device tool, the command that
# `prepare` prints packs .gpu-bench/out into $OUT/vgpu-out.tgz; `save` unpacks it
# into bench/results/vgpu-<device>-<commit>/ (commit as of `prepare`, "+dirty" if
# the tree had changes), to be committed with the device and driver named there
# (device.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
  make build >/dev/null
  [ -x build/libflexpu-cuda.so ] && [ -x build/test/runtime/quota_paths ] &&
    [ -x build/test/runtime/cuda_client ] && [ -x build/test/runtime/agent_host ] ||
    { echo "build/libflexpu-cuda.so, build/test/runtime/quota_paths, cuda_client or agent_host missing" >&2
      exit 1; }
  rm -rf .gpu-bench && mkdir -p .gpu-bench/frameworks
  cp ../shared/bench/vgpu/*.py ../shared/bench/vgpu/README.md .gpu-bench/
  cp test/gpu/frameworks/*.py .gpu-bench/frameworks/
  python3 -m py_compile .gpu-bench/*.py .gpu-bench/frameworks/*.py
  rm -rf .gpu-bench/__pycache__ .gpu-bench/frameworks/__pycache__
  commit=$(git rev-parse --short=12 HEAD)
  [ -z "$(git status --porcelain)" ] || commit="$commit+dirty"
  echo "$commit" > .gpu-bench/commit.txt
  cat <<EOF
prepared .gpu-bench/ (commit $commit)
device tool, one call:
  carry:     [".gpu-bench", "build/libflexpu-cuda.so", "build/test/runtime/quota_paths", "build/test/runtime/cuda_client", "build/test/runtime/agent_host"]
  timeout_s: 560
  command:   bench/vgpu.sh run; rc=\$?; tar czf "\$OUT/vgpu-out.tgz" -C .gpu-bench out; exit \$rc
then here: bench/vgpu.sh save <files_at>/vgpu-out.tgz
EOF
  ;;
run)
  [ -f .gpu-bench/compare.py ] && [ -f .gpu-bench/frameworks/run.py ] ||
    { echo "no .gpu-bench/: run 'bench/vgpu.sh prepare' first (and carry .gpu-bench)" >&2; exit 2; }
  # VGPU_LIB / VGPU_QUOTA_PATHS: another build of the library and the
  # quota program (a snapshot carried under .gpu-bench/, say).
  lib="$(realpath "${VGPU_LIB:-build/libflexpu-cuda.so}")"
  quota_paths="${VGPU_QUOTA_PATHS:-build/test/runtime/quota_paths}"
  state=/tmp/flexpu-bench
  out=.gpu-bench/out
  rm -rf "$out" && mkdir -p "$out"
  sum="$out/summary.txt"
  cp .gpu-bench/commit.txt "$out/" 2>/dev/null || true
  export PYTHONUNBUFFERED=1
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/device.txt" 2>/dev/null ||
    echo "unknown (nvidia-smi failed)" > "$out/device.txt"
  echo "device: $(head -n 1 "$out/device.txt"); commit: $(cat "$out/commit.txt" 2>/dev/null)" > "$sum"
  deadline=$(( $(date +%s) + ${VGPU_BUDGET_S:-510} ))
  failed=0
  # step NAME LIMIT RESERVE CMD...: CMD under a timeout of LIMIT seconds, or less
  # so that RESERVE seconds stay for the steps after it (VGPU_STEP_S tells the
  # command its timeout). Its status and time go to the summary.
  step() {
    local name=$1 limit=$2 reserve=$3 t0 rc=0 st left
    shift 3
    t0=$(date +%s)
    left=$(( deadline - t0 - reserve ))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 10 ]; then
      printf '%-12s %-24s\n' "$name" "NOT RUN (budget spent)" >> "$sum"
      failed=1
      return 0
    fi
    VGPU_STEP_S=$limit timeout -k 5 "$limit" "$@" || rc=$?
    case $rc in
      0) st=ok ;;
      124|137) st="TIMEOUT" ;;
      *) st="FAIL (exit $rc)" ;;
    esac
    [ "$rc" -eq 0 ] || failed=1
    printf '%-12s %-24s %4d s (limit %d s)\n' "$name" "$st" $(( $(date +%s) - t0 )) "$limit" >> "$sum"
  }
  # Every path that takes device memory, under a 4 GiB quota.
  rm -rf "$state"
  step quota_paths 60 450 env LD_PRELOAD="$lib" FLEXPU_MEMORY_LIMIT=4Gi FLEXPU_TENANT=paths \
    FLEXPU_STATE_DIR="$state" "$quota_paths" 4294967296 > "$out/quota_paths.txt" 2>&1
  # An owner's allocation waiting while a borrower holding the memory is
  # killed: the driver's teardown of the killed process (docs/KUBERNETES.md).
  step oom_wait 15 435 bash test/gpu/oom_wait_check.sh "$lib" \
    "${VGPU_CUDA_CLIENT:-build/test/runtime/cuda_client}" > "$out/oom_wait.txt" 2>&1
  # PyTorch (eager, compile, graphs, both other allocators), JAX, CuPy, exit on signals.
  step frameworks 165 345 python3 .gpu-bench/frameworks/run.py --lib "$lib" --out "$out" \
    > "$out/frameworks.log" 2>&1
  # Throughput, busy fraction and clocks under caps; a high service beside a low batch.
  step cap_probe 100 285 python3 .gpu-bench/frameworks/cap_probe.py --lib "$lib" --out "$out" \
    > "$out/cap_probe.txt" 2>&1
  # The harness: FLEXPU_* variables filled per case.
  export VGPU_NAME=flexpu
  export VGPU_RESET="rm -rf $state"
  export VGPU_ENV_TEMPLATE="{\"LD_PRELOAD\":\"$lib\",\"FLEXPU_MEMORY_LIMIT\":\"{MEM}\",\"FLEXPU_COMPUTE_SHARE\":\"{SM}\",\"FLEXPU_COMPUTE_CAP\":\"{SMCAP}\",\"FLEXPU_TENANT\":\"{ID}\",\"FLEXPU_PRIORITY\":\"{PRIO}\",\"FLEXPU_STATE_DIR\":\"$state\"}"
  step compare 300 70 bash -c 'cd .gpu-bench && python3 compare.py > out/result.json'
  step score 20 60 bash -c 'cd .gpu-bench && python3 score.py out/result.json > out/score.txt 2>&1'
  # The cases that depend on who decides, as slices of the node agent (the
  # Kubernetes mode); scored against the bare figures of result.json above.
  step agent 100 0 python3 .gpu-bench/frameworks/agent_cases.py --lib "$lib" \
    --host "${VGPU_AGENT_HOST:-build/test/runtime/agent_host}" --bare "$out/result.json" \
    --out "$out" > "$out/agent_score.txt" 2>&1
  rm -rf "$state" /tmp/flexpu-fw /tmp/flexpu-capprobe /tmp/flexpu-agent
  { tail -n 1 "$out/frameworks.txt" 2>/dev/null | sed 's/^/frameworks: /'
    grep '^verdict' "$out/cap_probe.txt" 2>/dev/null || true; } >> "$sum"
  for f in summary.txt quota_paths.txt oom_wait.txt frameworks.txt cap_probe.txt score.txt agent_score.txt; do
    echo "==== $f"
    if [ "$f" = quota_paths.txt ]; then tail -n 15 "$out/$f" 2>/dev/null || true
    else cat "$out/$f" 2>/dev/null || echo "(missing)"; fi
  done
  exit "$failed"
  ;;
save)
  exec test/gpu/save_out.sh vgpu "${2:?usage: bench/vgpu.sh save vgpu-out.tgz}"
  ;;
*)
  echo "usage: bench/vgpu.sh prepare|run|save OUT.tgz" >&2
  exit 2
  ;;
esac
