#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The usage feed's cost (docs/KUBERNETES.md, "Usage feed"): API writes per
# node per minute that flexpu-node makes to publish flexpu.io/gpu-usage, on
# a real API server (test/cluster) with the fake driver, under four loads
# of PHASE seconds each (default 180) on GPU 0 of 2:
#   idle      no process
#   steady    one tenant keeping the GPU busy all the time
#   bursty    one tenant launching 20 ms of work every 5 s (an inference
#             service at low load: at one-second sampling, active 1 s in 5)
#   on-off    one tenant busy for 30 s, idle for 30 s, again
# Prints one line per phase: writes, writes per minute, annotation bytes,
# and what GPU 0 reads at the end of the phase (the last write).
#
#   bench/kube/usage_feed_cost.sh BUILD_DIR [PHASE_SECONDS]
E2E_NAME=usage-cost E2E_LOGS="node.log"
phase="${2:-180}"
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/../../test/e2e/lib.sh"
e2e_up

kwok_agent_node gpu-c
mkdir -p "$work/root/ledger/t"
export FAKECUDA_DEVICES=2 FAKECUDA_TOTAL_MEM=$((80 * 1073741824))
start_node gpu-c
usage() { kubectl get node gpu-c -o jsonpath='{.metadata.annotations.flexpu\.io/gpu-usage}'; }
has_usage() { test -n "$(usage)"; }
writes() { grep -c 'msg="usage published"' "$work/node.log" || true; }
wait_for 20 "flexpu-node published no usage" has_usage
sleep 15 # the first writes of a starting agent are not steady state

client() { # commands for cuda_client (run in the background)
  printf 'init\nctx 0\nalloc 2147483648\n%s\nexit\n' "$1" |
    env LD_PRELOAD="$build/libflexpu-cuda.so" LD_LIBRARY_PATH="$build/test/fakecuda" \
      FLEXPU_STATE_DIR="$work/root/state" FLEXPU_LEDGER_DIR="$work/root/ledger/t" \
      FAKECUDA_DIR="$work/fake" FLEXPU_CONTEXT_OVERHEAD=0 FLEXPU_TENANT=tenant-uid \
      "$build/test/runtime/cuda_client" >>"$work/client.log" 2>&1 &
  client_pid=$!
  pids+=("$client_pid")
}
client_pid=""
measure() { # name
  local w0 w1
  w0="$(writes)"
  sleep "$phase"
  w1="$(writes)"
  [ -z "$client_pid" ] || wait "$client_pid" 2>/dev/null || true
  client_pid=""
  printf '%-8s %3d writes in %d s: %5.2f per node per minute; annotation %d bytes; GPU 0 reads busy %s, mean %s /1000 at the end\n' \
    "$1" $((w1 - w0)) "$phase" "$(echo "($w1 - $w0) * 60 / $phase" | bc -l)" "$(usage | wc -c)" \
    "$(usage | jq '.gpus[] | select(.index == 0) | .busy')" \
    "$(usage | jq '.gpus[] | select(.index == 0) | .mean')"
}
echo "# usage feed cost, $(date -u +%F), $(nproc) cores, fake driver, 2 GPUs"
measure idle
ms=$((phase * 1000))
client "burn 200 $ms"
measure steady
sleep 70 # back to idle between phases
client "bursts 200 $ms 100 5000"
measure bursty
sleep 70
client "bursts 200 $ms 150000 30000"
measure on-off
