#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end test of borrowing idle GPUs (issue 16, docs/KUBERNETES.md
# "Borrowing idle GPUs") on a real API server (test/cluster):
#  - flexpu-node, on the fake NVML with one 80 GiB GPU, publishes the
#    inventory and the usage feed of its kwok Node;
#  - two owner pods (50 cores and 20 GiB each) fill the GPU's cores and
#    leave 40 GiB of its memory unreserved;
#  - an opportunistic pod (30 cores, 10 GiB) that fits nowhere lands on that
#    GPU as a borrower: its allocation says "borrowed", a Borrowing event;
#  - a second one, which a PodDisruptionBudget protects, borrows the same
#    GPU beside it;
#  - a pod that does not borrow (62 CPUs, no GPU) takes back the node's CPU
#    the two borrowers hold: the first is evicted, the protected one's
#    eviction is refused by its budget and it is deleted instead (the
#    DisruptionTarget condition saying why), both with a Preempted event
#    naming that pod; the pod is bound, and the two borrow again;
#  - a process with the runtime library on the fake driver launches as one
#    owner's slice (its tenant name is the owner's pod UID, as the feed reads
#    it): the owners' use rises; the protected borrower (started last) is
#    reclaimed first: its eviction refused by the budget, it is deleted with
#    the DisruptionTarget condition (PreemptionByScheduler) and a Reclaimed
#    event saying why; then the first is evicted through the Eviction API
#    (the DisruptionTarget condition the API server sets; each pod is held by
#    a finalizer to see it) with a Reclaimed event naming the node, the GPU
#    and the measured use, within 60 s of the rise;
#  - the owners stay bound, untouched, and the owner's process was never
#    refused memory; the metrics count four borrows and two reclaims, one of
#    them a delete, and one eviction done by a delete.
#
#   borrow_e2e.sh BUILD_DIR
E2E_NAME=borrow-e2e E2E_LOGS="scheduler.log node.log client.log"
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_up

kwok_agent_node gpu-b
export FAKECUDA_DEVICES=1 FAKECUDA_TOTAL_MEM=$((80 * 1073741824))
start_node gpu-b
usage() { kubectl get node gpu-b -o jsonpath='{.metadata.annotations.flexpu\.io/gpu-usage}'; }
has_feed() {
  test -n "$(usage)" &&
    test -n "$(kubectl get node gpu-b -o jsonpath='{.metadata.annotations.flexpu\.io/gpus}')"
}
wait_for 20 "flexpu-node published no inventory or usage" has_feed

mport="$(free_port)"
start_scheduler --metrics-address 127.0.0.1 --metrics-port "$mport"

# gpod NAME CORES MEMORY [OPPORTUNISTIC] [FINALIZER]
gpod() {
  local ann="{}" fin="[]"
  [ -n "${4:-}" ] && ann='{"flexpu.io/opportunistic":"true"}'
  [ -n "${5:-}" ] && fin='["flexpu.io/e2e-hold"]'
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default","annotations":$ann,
  "labels":{"app":"$1"},"finalizers":$fin},
 "spec":{"schedulerName":"flexpu-scheduler","containers":[{"name":"c","image":"x",
   "resources":{"limits":{"cpu":"1","memory":"1Gi","flexpu.io/gpu":"1",
     "flexpu.io/gpu-cores":"$2","flexpu.io/gpu-memory":"$3"}}}]}}
EOF
}
node_of() { kubectl get pod "$1" -o jsonpath='{.spec.nodeName}' 2>/dev/null; }
bound() { [ "$(node_of "$1")" = gpu-b ]; }
alloc() { kubectl get pod "$1" -o jsonpath='{.metadata.annotations.flexpu\.io/allocation}'; }

gpod owner-a 50 20Gi
gpod owner-b 50 20Gi
wait_for 30 "the owners were not bound" bound owner-a
wait_for 30 "the owners were not bound" bound owner-b
alloc_a="$(alloc owner-a)" alloc_b="$(alloc owner-b)"
jq -e '.borrowed | not' <<<"$alloc_a" >/dev/null || fail "an owner is a borrower: $alloc_a"
pass "two owners (50 cores, 20 GiB each) fill GPU 0 of gpu-b"

gpod borrower 30 10Gi opportunistic hold
wait_for 40 "the opportunistic pod did not borrow" bound borrower
a="$(alloc borrower)"
jq -e '.borrowed == true and (.gpus | length) == 1 and .gpus[0].cores == 30 and
  .gpus[0].memory == 10737418240' <<<"$a" >/dev/null || fail "the borrower's allocation: $a"
[ "$(jq -r .gpus[0].uuid <<<"$a")" = "$(jq -r .gpus[0].uuid <<<"$alloc_a")" ] ||
  fail "the borrower is not on the owners' GPU: $a / $alloc_a"
wait_event borrower "borrows GPU 0"
pass "an opportunistic pod that fits nowhere borrows the owners' idle GPU: $a"

# A second borrower, which a PodDisruptionBudget protects: no disruption
# controller runs in test/cluster, so its status is written as it would be
# (its one pod needed: no disruption allowed).
gpod guarded 30 10Gi opportunistic hold
wait_for 40 "the protected opportunistic pod did not borrow" bound guarded
jq -e '.borrowed == true' <<<"$(alloc guarded)" >/dev/null || fail "guarded: $(alloc guarded)"
kubectl create pdb guarded --selector=app=guarded --min-available=1 >/dev/null
kubectl patch pdb guarded --subresource=status --type=merge -p \
  '{"status":{"observedGeneration":1,"currentHealthy":1,"desiredHealthy":1,"disruptionsAllowed":0,"expectedPods":1}}' \
  >/dev/null
pass "a second borrower, protected by a PodDisruptionBudget, borrows the same GPU"

# A pod that does not borrow takes back the node's CPU ("A borrower yields
# its node's CPU and memory"): cpuhog (62 of gpu-b's 64 CPUs, no GPU) needs
# the CPU both borrowers hold (1 each, the owners 1 each): borrower is
# evicted; guarded's eviction its budget refuses, so it is deleted instead
# ("A PodDisruptionBudget does not keep a borrower"); each gets a Preempted
# event naming cpuhog, as a victim of a preemption.
kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"cpuhog","namespace":"default"},
 "spec":{"schedulerName":"flexpu-scheduler","containers":[{"name":"c","image":"x",
   "resources":{"limits":{"cpu":"62","memory":"1Gi"}}}]}}
EOF
disrupted() { # pod condition-reason
  kubectl get pod "$1" -o json |
    jq -e --arg r "$2" '.metadata.deletionTimestamp != null and
      any(.status.conditions[]?; .type == "DisruptionTarget" and .reason == $r)'
}
wait_for 45 "guarded was not deleted for cpuhog" disrupted guarded PreemptionByScheduler
wait_for 45 "borrower was not evicted for cpuhog" disrupted borrower EvictionByEvictionAPI
wait_event guarded "evicted for default/cpuhog"
msg="$(kubectl get events --field-selector involvedObject.name=guarded,reason=Preempted \
  -o jsonpath='{.items[0].message}')"
grep -q "by deleting it" <<<"$msg" && grep -q "refused by a PodDisruptionBudget" <<<"$msg" ||
  fail "guarded's Preempted event: $msg"
cond="$(kubectl get pod guarded -o jsonpath='{.status.conditions[?(@.type=="DisruptionTarget")].message}')"
grep -q "CPU and memory" <<<"$cond" || fail "guarded's DisruptionTarget condition: $cond"
[ -z "$(kubectl get events --field-selector involvedObject.name=guarded,reason=Reclaimed \
  -o jsonpath='{.items[*].message}')" ] || fail "guarded has a Reclaimed event: no GPU owner took it back"
msg2="$(kubectl get events --field-selector involvedObject.name=borrower,reason=Preempted \
  -o jsonpath='{.items[0].message}')"
grep -q "evicted for default/cpuhog" <<<"$msg2" || fail "borrower's Preempted event: $msg2"
grep -q 'a borrower.s eviction refused by a budget; it is deleted' "$work/scheduler.log" ||
  fail "the scheduler logged no refused eviction"
for b in borrower guarded; do
  kubectl patch pod "$b" --type=json -p '[{"op":"remove","path":"/metadata/finalizers"}]' \
    >/dev/null
done
wait_for 30 "cpuhog was not bound once the borrowers were gone" bound cpuhog
wait_metrics "$mport" 'flexpu_scheduler_evictions_total{result="deleted"} 1' \
  'flexpu_scheduler_evictions_total{result="refused"} 0' ||
  fail "the metrics: $(curl -sf "http://127.0.0.1:$mport/metrics" | grep -E 'evictions' | tr '\n' ' ')"
pass "a pod that does not borrow takes back the node's CPU: borrower evicted, guarded (its budget refused) deleted, both Preempted: $msg"

# The same two borrow again for what follows (cpuhog gone).
kubectl delete pod cpuhog --wait=false >/dev/null
nohog() { ! kubectl get pod cpuhog >/dev/null 2>&1; }
wait_for 30 "cpuhog is still there" nohog
gpod borrower 30 10Gi opportunistic hold
wait_for 40 "the opportunistic pod did not borrow again" bound borrower
gpod guarded 30 10Gi opportunistic hold
wait_for 40 "the protected opportunistic pod did not borrow again" bound guarded
jq -e '.borrowed == true' <<<"$(alloc guarded)" >/dev/null || fail "guarded: $(alloc guarded)"

# The owner's use rises: a process as owner-a's slice keeps GPU 0 busy for
# 50 s, holding 2 GiB (within its 20 GiB). It runs as the node agent's
# slices do (its slice.conf, its ledger, the agent's arbiter pages, from
# which the usage feed reads GPU time: the library writes no shared state
# under the agent, so a process outside it would never show on the Node).
uid_a="$(kubectl get pod owner-a -o jsonpath='{.metadata.uid}')"
mkdir -p "$work/root/ledger/owner-a" "$work/root/slices/owner-a"
printf 'tenant = %s\ncompute_share = 50\n' "$uid_a" >"$work/root/slices/owner-a/slice.conf"
printf 'init\nctx 0\nalloc 2147483648\nburn 200 50000\nexit\n' |
  env LD_PRELOAD="$build/libflexpu-cuda.so" LD_LIBRARY_PATH="$build/test/fakecuda" \
    FLEXPU_STATE_DIR="$work/root/state" FLEXPU_LEDGER_DIR="$work/root/ledger/owner-a" \
    FLEXPU_ARBITER_DIR="$work/root/arb" \
    FAKECUDA_DIR="$work/fake" FLEXPU_CONTEXT_OVERHEAD=0 FLEXPU_TENANT="$uid_a" \
    "$build/test/runtime/cuda_client" >"$work/client.log" 2>&1 &
client=$!
pids+=("$client")
start=$SECONDS
deleted() {
  kubectl get pod guarded -o json |
    jq -e '.metadata.deletionTimestamp != null and
      any(.status.conditions[]?; .type == "DisruptionTarget" and .reason == "PreemptionByScheduler")'
}
wait_for 45 "the protected borrower was not deleted after the owner's rise" deleted
wait_event guarded "refused by a PodDisruptionBudget"
msg="$(kubectl get events --field-selector involvedObject.name=guarded,reason=Reclaimed \
  -o jsonpath='{.items[0].message}')"
grep -q "by deleting it" <<<"$msg" || fail "the protected borrower's Reclaimed event: $msg"
[ "$(grep -c 'a borrower.s eviction refused by a budget; it is deleted' "$work/scheduler.log")" -ge 2 ] ||
  fail "the scheduler logged no refused eviction for the reclaim"
pass "the borrower the budget protects, started last, reclaimed first: its eviction refused, deleted in $((SECONDS - start)) s: $msg"
evicted() {
  kubectl get pod borrower -o json |
    jq -e '.metadata.deletionTimestamp != null and
      any(.status.conditions[]?; .type == "DisruptionTarget" and .reason == "EvictionByEvictionAPI")'
}
wait_for 60 "the borrower was not evicted through the Eviction API after the owner's rise" evicted
took=$((SECONDS - start))
wait_event borrower "reclaimed from GPU 0"
msg="$(kubectl get events --field-selector involvedObject.name=borrower,reason=Reclaimed \
  -o jsonpath='{.items[0].message}')"
grep -q "node gpu-b" <<<"$msg" && grep -qE "owners use [0-9]+/1000" <<<"$msg" ||
  fail "the Reclaimed event does not name the node and the measured use: $msg"
u="$(usage)"
[ "$(jq -r --arg u "$uid_a" '.gpus[0].slices[] | select(.pod == $u) | .busy' <<<"$u")" -ge 500 ] ||
  fail "the feed does not show owner-a's slice busy: $u"
pass "the owner's use rose (its slice in the feed); the borrower was evicted through the Eviction API in ${took} s: $msg"

# Nothing lost: the owners stay bound as they were, never evicted; the
# borrower leaves by the eviction's graceful deletion (its finalizer, the
# test's, let go now).
for b in borrower guarded; do
  kubectl patch pod "$b" --type=json -p '[{"op":"remove","path":"/metadata/finalizers"}]' \
    >/dev/null
done
gone() { ! kubectl get pod borrower >/dev/null 2>&1 && ! kubectl get pod guarded >/dev/null 2>&1; }
wait_for 30 "a borrower is still there" gone
for o in owner-a owner-b; do
  bound "$o" || fail "$o is no longer bound"
  [ -z "$(kubectl get pod "$o" -o jsonpath='{.metadata.deletionTimestamp}')" ] ||
    fail "$o is being deleted"
done
[ "$(alloc owner-a)" = "$alloc_a" ] && [ "$(alloc owner-b)" = "$alloc_b" ] ||
  fail "an owner's allocation changed"
[ -z "$(kubectl get events --field-selector reason=Reclaimed -o jsonpath='{.items[*].involvedObject.name}' |
  tr ' ' '\n' | grep owner || true)" ] || fail "an owner was reclaimed"
grep -q 'msg="reclaimed"' "$work/scheduler.log" || fail "the scheduler logged no reclaim"
wait_metrics "$mport" 'flexpu_scheduler_borrows_total 4' \
  'flexpu_scheduler_reclaims_total{result="chosen"} 2' \
  'flexpu_scheduler_reclaims_total{result="deleted"} 1' \
  'flexpu_scheduler_reclaims_total{result="refused"} 0' 'flexpu_scheduler_borrowers 0' ||
  fail "the metrics: $(curl -sf "http://127.0.0.1:$mport/metrics" | grep -E 'borrow|reclaim' | tr '\n' ' ')"
wait "$client" || fail "the owner's process failed: $(cat "$work/client.log")"
grep -q '^ok [0-9]' <(tail -n 2 "$work/client.log") || fail "burn: $(cat "$work/client.log")"
pass "the owners stay bound with their allocations, never evicted; the owner's process got its memory and ran; metrics: 4 borrows, 2 reclaims (1 a delete), 0 borrowers"
