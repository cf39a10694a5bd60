#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end test of borrowing memory owners reserved but do not use (issue
# 16, docs/KUBERNETES.md "Borrowing reserved memory") on a real API server
# (test/cluster), the fake driver's device memory shared by the node's
# processes (FAKECUDA_NODE_MEM=1):
#  - flexpu-node on the fake NVML with one 80 GiB GPU; flexpu-scheduler with
#    --borrow-mem idle;
#  - two owners (50 cores, 40 GiB each) reserve all of the GPU's memory;
#    owner-b's process holds 38 GiB of its 40;
#  - a light opportunistic pod (30 cores, 4 GiB) borrows memory the owners
#    reserved and do not use; its process (in the pod's cgroup, cgroupfs
#    layout, on the host's cgroup v2) holds its 4 GiB;
#  - owner-a's process asks 39 GiB, within its 40: the driver refuses it
#    (38 + 4 + 39 > 80); the library waits, the agent kills the borrower's
#    cgroup (cgroup.kill), and the allocation succeeds: the owner never sees
#    the out-of-memory error;
#  - the borrower's pod gets a MemoryReclaimed event (Warning) from the
#    agent, naming the node, the GPU, the owner's pod and the bytes; the
#    agent runs with deploy/rbac.yaml's flexpu-node account, so its RBAC is
#    what posts it;
#  - three such events of one pod (kube_call event-series, the same
#    recorder) are one Event of count 3, patched with the agent's RBAC;
#  - the owners' measured memory then leaves the borrower no room: the
#    scheduler evicts it through the Eviction API (Reclaimed, naming the
#    memory); the owners stay bound.
# Without a writable cgroup v2 the pod's "cgroup" is a directory the test
# watches, killing the process when "1" is written (said in its output).
#
#   borrow_mem_e2e.sh BUILD_DIR
E2E_NAME=borrow-mem-e2e E2E_LOGS="scheduler.log node.log owner-a.log borrower.log"
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_on_exit() {
  exec 7>&- 8>&- 9>&- 2>/dev/null || true
}
e2e_up

pod_cgroups

kwok_agent_node gpu-m
export FAKECUDA_DEVICES=1 FAKECUDA_TOTAL_MEM=$((80 * 1073741824))
nport="$(free_port)"
# The agent as deployed: the flexpu-node service account of deploy/rbac.yaml.
kubectl apply -f "$root/deploy/namespace.yaml" -f "$root/deploy/rbac.yaml" >"$work/apply.log" 2>&1 ||
  { cat "$work/apply.log" >&2; fail "kubectl apply deploy/rbac.yaml"; }
token="$(kubectl create token flexpu-node -n flexpu-system --duration=1h)"
kubectl config view --raw --minify --flatten -o json |
  jq --arg t "$token" '.users[0].user = {token: $t}' >"$work/node.kubeconfig"
start_node gpu-m --cgroup-root "$cgroot" --metrics-address 127.0.0.1 --metrics-port "$nport" \
  --kubeconfig "$work/node.kubeconfig"
usage() { kubectl get node gpu-m -o jsonpath='{.metadata.annotations.flexpu\.io/gpu-usage}'; }
has_feed() { test -n "$(usage)"; }
wait_for 20 "flexpu-node published no usage" has_feed
start_scheduler --borrow-mem idle

# gpod NAME CORES MEMORY [OPPORTUNISTIC]
gpod() {
  local ann="{}" fin="[]"
  if [ -n "${4:-}" ]; then
    ann='{"flexpu.io/opportunistic":"true"}'
    fin='["flexpu.io/e2e-hold"]'
  fi
  kubectl create -f - >/dev/null <<JSON
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default","annotations":$ann,
  "finalizers":$fin},
 "spec":{"schedulerName":"flexpu-scheduler","containers":[{"name":"c","image":"x",
   "resources":{"limits":{"cpu":"1","memory":"1Gi","flexpu.io/gpu":"1",
     "flexpu.io/gpu-cores":"$2","flexpu.io/gpu-memory":"$3"}}}]}}
JSON
}
bound() { [ "$(kubectl get pod "$1" -o jsonpath='{.spec.nodeName}' 2>/dev/null)" = gpu-m ]; }
alloc() { kubectl get pod "$1" -o jsonpath='{.metadata.annotations.flexpu\.io/allocation}'; }
uid_of() { kubectl get pod "$1" -o jsonpath='{.metadata.uid}'; }

# client NAME TENANT FD ENV...: a cuda_client fed through a FIFO on fd FD
# (kept open, so the process lives until the test ends), output in NAME.log.
client() {
  local name="$1" tenant="$2" fd="$3"
  shift 3
  mkfifo "$work/$name.in"
  mkdir -p "$work/root/ledger/$name"
  env LD_PRELOAD="$build/libflexpu-cuda.so" LD_LIBRARY_PATH="$build/test/fakecuda" \
    FLEXPU_STATE_DIR="$work/root/state" FLEXPU_LEDGER_DIR="$work/root/ledger/$name" \
    FAKECUDA_DIR="$work/fake" FAKECUDA_NODE_MEM=1 FAKECUDA_CTX_OVERHEAD=0 \
    FLEXPU_CONTEXT_OVERHEAD=0 FLEXPU_TENANT="$tenant" "$@" \
    "$build/test/runtime/cuda_client" <"$work/$name.in" >"$work/$name.log" 2>&1 &
  pids+=("$!")
  last_pid=$!
  eval "exec $fd>\"\$work/\$name.in\""
}
# answers NAME N: NAME's log has N answers
answers() { [ "$(grep -c . "$work/$1.log" 2>/dev/null)" -ge "$2" ]; }

gpod owner-a 50 40Gi
gpod owner-b 50 40Gi
wait_for 30 "the owners were not bound" bound owner-a
wait_for 30 "the owners were not bound" bound owner-b
client owner-b "$(uid_of owner-b)" 8 FLEXPU_MEMORY_LIMIT=40Gi
printf 'init\nctx 0\nalloc 40802189312\n' >&8 # 38 GiB
wait_for 10 "owner-b's process did not answer" answers owner-b 3
grep -q '^ok 0' "$work/owner-b.log" || fail "owner-b's 38 GiB: $(cat "$work/owner-b.log")"
owner_b_used() { jq -e '.gpus[0].memory >= 40000000000' <<<"$(usage)" >/dev/null; }
wait_for 25 "the feed does not show owner-b's 38 GiB" owner_b_used
pass "two owners reserve all 80 GiB of the GPU; owner-b's process holds 38 GiB of its 40"

gpod borrower 30 4Gi opportunistic
wait_for 40 "the light opportunistic pod did not borrow reserved memory" bound borrower
a="$(alloc borrower)"
jq -e '.borrowed == true and .gpus[0].memory == 4294967296' <<<"$a" >/dev/null ||
  fail "the borrower's allocation: $a"
jq -e '.borrow_mem == "idle"' <<<"$a" >/dev/null || fail "the allocation names no idle borrowing: $a"
# The kubelet's calls for the borrower's container (remote_kubelet.c): the
# agent checks it by the scheduler's rule, the owners' measured 38 GiB, not
# by memory no slice reserved (there is none), and marks its GPU.
"$build/test/remote_kubelet" "$work/dp" "$work/podresources.sock" default borrower \
  "$(jq -r '.gpus[0].uuid' <<<"$a")::0" >"$work/ctr.txt" 2>"$work/kubelet.err" ||
  fail "the borrower's PreStartContainer: $(cat "$work/kubelet.err")"
grep -q '^prestart ok$' "$work/ctr.txt" || fail "no PreStartContainer: $(cat "$work/ctr.txt")"
grep -q "^mount /etc/flexpu " "$work/ctr.txt" || fail "no slice mounted: $(cat "$work/ctr.txt")"
pass "the agent admits the borrower at PreStartContainer (memory its owners reserved, unused)"
buid="$(uid_of borrower)"
bcg="$cgroot/kubepods/pod$buid"
mkdir -p "$bcg"
client borrower "$buid" 9 FLEXPU_MEMORY_LIMIT=4Gi
echo "$last_pid" >"$bcg/cgroup.procs"
bpid=$last_pid
printf 'init\nctx 0\nalloc 4294967296\n' >&9
wait_for 10 "the borrower's process did not answer" answers borrower 3
grep -q '^ok 0' "$work/borrower.log" || fail "the borrower's 4 GiB: $(cat "$work/borrower.log")"
uuid="$(jq -r '.gpus[0].uuid' <<<"$a")"
marked() { [ -e "$work/root/borrowed/$uuid" ]; }
wait_for 5 "the agent did not mark the borrowed GPU" marked
pass "a light opportunistic pod (30 cores, 4 GiB) borrows memory the owners reserved: its process holds 4 GiB ($a)"

# The kernel's part where there is no cgroup v2 to write to.
fake_cgroup_kill "$bcg" "$bpid"

# owner-a's container through the kubelet's calls, so its process runs in
# the slice the agent wrote for the pod (the event names the pod by it).
"$build/test/remote_kubelet" "$work/dp" "$work/podresources.sock" default owner-a \
  "$uuid::1" >"$work/ctr-a.txt" 2>"$work/kubelet-a.err" ||
  fail "owner-a's PreStartContainer: $(cat "$work/kubelet-a.err")"
aledger="$(awk '$1 == "mount" && $2 == "/run/flexpu/ledger" {print $3}' "$work/ctr-a.txt")"
[ -d "$aledger" ] || fail "owner-a's slice has no ledger directory: $(cat "$work/ctr-a.txt")"
client owner-a "$(uid_of owner-a)" 7 FLEXPU_MEMORY_LIMIT=40Gi \
  FLEXPU_BORROWED_DIR="$work/root/borrowed" FLEXPU_LOG_LEVEL=info FLEXPU_LEDGER_DIR="$aledger"
printf 'init\nctx 0\n' >&7
wait_for 10 "owner-a's process did not answer" answers owner-a 2
t0=$(date +%s%N)
printf 'alloc 41875931136\n' >&7 # 39 GiB: 38 + 4 + 39 > 80
got() { grep -qE '^(ok|err)' <(sed -n '3,$p' "$work/owner-a.log" | grep -v '^time='); }
wait_for 10 "owner-a's allocation did not return" got
t1=$(date +%s%N)
ans="$(grep -v '^time=' "$work/owner-a.log" | sed -n 3p)"
[ "$ans" = "ok 0" ] || fail "owner-a's 39 GiB: '$ans' (an owner saw the borrower's memory refused)"
! kill -0 "$bpid" 2>/dev/null || fail "the borrower's process is alive"
grep -q 'msg="borrower killed"' "$work/node.log" || fail "the agent logged no kill"
grep -q 'borrowed memory given back' "$work/owner-a.log" || fail "the library did not say it waited"
m="$(curl -sf "http://127.0.0.1:$nport/metrics")" || fail "no agent metrics"
grep -qx 'flexpu_node_borrowers_killed_total{result="killed"} 1' <<<"$m" ||
  fail "the agent's metrics: $(grep borrowers_killed <<<"$m" | tr '\n' ' ')"
pass "owner-a's 39 GiB (within its 40) that needed the borrowed memory succeeded after $(( (t1 - t0) / 1000000 )) ms: the agent killed the borrower's cgroup ($( [ "$real_cg" = 1 ] && echo "cgroup.kill on $cg_mnt" || echo "stand-in")); $(grep -o 'waited_ms=[0-9]*' "$work/owner-a.log")"

reclaimed_msg() {
  kubectl get events --field-selector involvedObject.name=borrower,reason=MemoryReclaimed \
    -o jsonpath='{range .items[*]}{.type} {.source.component}: {.message}{"\n"}{end}'
}
has_reclaimed_event() { [ -n "$(reclaimed_msg)" ]; }
wait_for 15 "the borrower's pod has no MemoryReclaimed event (the agent's log: $(grep -i event "$work/node.log" | tail -3))" \
  has_reclaimed_event
ev="$(reclaimed_msg)"
for want in "Warning flexpu-node:" "node gpu-m" "GPU $uuid" "pod default/owner-a" "41875931136 bytes"; do
  grep -qF "$want" <<<"$ev" || fail "the MemoryReclaimed event does not say '$want': $ev"
done
pass "the killed borrower's pod has the agent's event, posted with flexpu-node's RBAC: $ev"

# A pod killed again gets no second Event: the agent's recorder patches the
# first one's count and message (test/e2e/kube_call.c event-series: the
# recorder as flexpu-node runs it, with its account).
out="$("$build/test/kube_call" "$work/node.kubeconfig" event-series default series-check \
  uid-series-check 3)" || fail "three MemoryReclaimed events of one pod: $out"
series="$(kubectl get events --field-selector involvedObject.name=series-check,reason=MemoryReclaimed \
  -o jsonpath='{range .items[*]}{.count} {.message}{"\n"}{end}')"
[ "$series" = "3 series check 3 of 3" ] ||
  fail "three MemoryReclaimed events of one pod are not one Event of count 3: '$series'"
pass "three MemoryReclaimed events of one pod are one Event, its count patched to 3 with flexpu-node's RBAC"

# The owners now use 77 GiB: the scheduler evicts the borrower.
evicted() {
  kubectl get pod borrower -o json |
    jq -e '.metadata.deletionTimestamp != null and
      any(.status.conditions[]?; .type == "DisruptionTarget" and .reason == "EvictionByEvictionAPI")'
}
wait_for 40 "the borrower was not evicted after the owners' memory rose" evicted
msg="$(kubectl get events --field-selector involvedObject.name=borrower,reason=Reclaimed \
  -o jsonpath='{.items[0].message}')"
grep -q "MiB of its memory" <<<"$msg" || fail "the Reclaimed event: $msg"
kubectl patch pod borrower --type=json -p '[{"op":"remove","path":"/metadata/finalizers"}]' \
  >/dev/null
for o in owner-a owner-b; do
  bound "$o" || fail "$o is no longer bound"
done
pass "the owners' measured memory left the borrower no room: evicted through the Eviction API: $msg"
