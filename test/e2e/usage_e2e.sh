#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end test of the usage feed (issue 16, docs/KUBERNETES.md "Usage
# feed") on a real API server (test/cluster):
#  - flexpu-node, on the fake NVML with 2 GPUs, publishes flexpu.io/gpu-usage
#    on its kwok Node (version 1, every GPU listed, idle);
#  - nothing changing, the annotation is not written again (15 s);
#  - a tenant's process, with the runtime library on the fake driver, holds
#    2 GiB and launches kernels on GPU 0 for 30 s: the busy GPU, its slice
#    (the tenant's name) and the memory, fed through the agent's arbiter page
#    and the ledger, show on the Node within 15 s; GPU 1 stays idle;
#  - while the use changes, at most one write per 10 s;
#  - the driver's utilization is a floor: the fake NVML says GPU 1 is 100%
#    busy (FAKECUDA_DIR/gpu1.util) while no tenant launched there, and GPU 1
#    reads busy on the Node within 20 s, its slices idle.
#
#   usage_e2e.sh BUILD_DIR
E2E_NAME=usage-e2e E2E_LOGS="node.log client.log"
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_up

kwok_agent_node gpu-u
export FAKECUDA_DEVICES=2 FAKECUDA_TOTAL_MEM=$((80 * 1073741824))
start_node gpu-u

usage() { kubectl get node gpu-u -o jsonpath='{.metadata.annotations.flexpu\.io/gpu-usage}'; }
has_usage() { test -n "$(usage)"; }
writes() { grep -c 'msg="usage published"' "$work/node.log" || true; }

wait_for 20 "flexpu-node published no usage" has_usage
u="$(usage)"
[ "$(jq -r .v <<<"$u")" = 1 ] || fail "version: $u"
[ "$(jq '.gpus | length' <<<"$u")" = 2 ] || fail "want 2 GPUs: $u"
[ "$(jq '[.gpus[].busy] | add' <<<"$u")" = 0 ] || fail "idle GPUs are busy: $u"
pass "flexpu-node publishes flexpu.io/gpu-usage: version 1, 2 GPUs, idle"

ts="$(jq .ts <<<"$u")"
w="$(writes)"
sleep 15
[ "$(jq .ts <<<"$(usage)")" = "$ts" ] || fail "rewritten with nothing changed: was ts $ts, now $(usage)"
[ "$(writes)" = "$w" ] || fail "the agent wrote $(($(writes) - w)) times with nothing changed"
pass "nothing changed for 15 s: not written again"

# The owner: a tenant holding 2 GiB on GPU 0 and keeping it busy for 30 s,
# a slice of the agent (its slice.conf, its ledger, the agent's arbiter
# pages, from which the feed reads GPU time and activity).
mkdir -p "$work/root/ledger/owner" "$work/root/slices/owner"
printf 'tenant = owner-uid\ncompute_share = 100\n' >"$work/root/slices/owner/slice.conf"
w0="$(writes)"
printf 'init\nctx 0\nalloc 2147483648\nburn 200 30000\nexit\n' |
  env LD_PRELOAD="$build/libflexpu-cuda.so" LD_LIBRARY_PATH="$build/test/fakecuda" \
    FLEXPU_STATE_DIR="$work/root/state" FLEXPU_LEDGER_DIR="$work/root/ledger/owner" \
    FLEXPU_ARBITER_DIR="$work/root/arb" \
    FAKECUDA_DIR="$work/fake" FLEXPU_CONTEXT_OVERHEAD=0 FLEXPU_TENANT=owner-uid \
    "$build/test/runtime/cuda_client" >"$work/client.log" 2>&1 &
client=$!
pids+=("$client")
start=$SECONDS
busy0() { [ "$(jq '.gpus[] | select(.index == 0) | .busy' <<<"$(usage)")" -ge 500 ]; }
wait_for 15 "GPU 0's use did not reach the Node" busy0
took=$((SECONDS - start))
u="$(usage)"
[ "$(jq -r '.gpus[0].slices[0].pod' <<<"$u")" = owner-uid ] || fail "slice: $u"
[ "$(jq '.gpus[0].memory' <<<"$u")" -ge 2147483648 ] || fail "GPU 0 memory: $u"
[ "$(jq '.gpus[0].slices[0].memory' <<<"$u")" -ge 2147483648 ] || fail "slice memory: $u"
[ "$(jq '.gpus[1].busy' <<<"$u")" = 0 ] || fail "GPU 1 is busy: $u"
# The even mean of the last minute trails the owner-protecting figure.
jq -e '.gpus[0].mean > 0 and .gpus[0].mean < .gpus[0].busy' <<<"$u" >/dev/null ||
  fail "GPU 0 mean: $u"
pass "a tenant's kernels on GPU 0 show on the Node in ${took} s (busy $(jq '.gpus[0].busy' <<<"$u"), mean $(jq '.gpus[0].mean' <<<"$u") /1000, 2 GiB, its slice)"

wait "$client" || fail "the client failed: $(cat "$work/client.log")"
grep -q '^ok [0-9]' <(tail -n 2 "$work/client.log") || fail "burn: $(cat "$work/client.log")"
elapsed=$((SECONDS - start))
n=$(($(writes) - w0))
[ "$n" -le $((elapsed / 10 + 1)) ] || fail "$n writes in ${elapsed} s: more than one per 10 s"
pass "while the use changed: $n writes in ${elapsed} s (at most one per 10 s)"

# The driver's measure as a floor: the state file says nothing ran on GPU 1,
# the fake NVML says it is fully busy.
echo 100 >"$work/fake/gpu1.util"
start=$SECONDS
busy1() { [ "$(jq '.gpus[] | select(.index == 1) | .busy' <<<"$(usage)")" -ge 500 ]; }
wait_for 20 "GPU 1's driver utilization did not reach the Node" busy1
u="$(usage)"
# (the owner's process had the runtime's state of GPU 1 open too: its
# slice is listed there, idle)
[ "$(jq '[.gpus[1].slices[].busy] | add // 0' <<<"$u")" = 0 ] || fail "GPU 1 slices: $u"
pass "the driver says GPU 1 is busy, its slices idle: busy $(jq '.gpus[1].busy' <<<"$u") on the Node in $((SECONDS - start)) s"
