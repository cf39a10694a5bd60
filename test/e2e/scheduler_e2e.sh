#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end tests of flexpu-scheduler on a real API server (test/cluster):
# kwok nodes with GPU inventories, pods asking for slices and whole GPUs.
#
#   scheduler_e2e.sh BUILD_DIR
#
# Each case starts from an empty namespace set; a failed assertion prints
# what was expected and what the cluster holds, and the script exits 1.
E2E_NAME=e2e
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_up

node() { kwok_gpu_node "$@"; }

# pod NAME GPUS [CORES] [MEMORY] [ANNOTATIONS-JSON]
pod() {
  local name="$1" gpus="$2" cores="${3:-}" mem="${4:-}" ann="${5:-{\}}"
  local lim="\"cpu\":\"1\",\"memory\":\"1Gi\",\"flexpu.io/gpu\":\"$gpus\""
  [ -n "$cores" ] && lim="$lim,\"flexpu.io/gpu-cores\":\"$cores\""
  [ -n "$mem" ] && lim="$lim,\"flexpu.io/gpu-memory\":\"$mem\""
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$name","namespace":"default","annotations":$ann},
 "spec":{"schedulerName":"flexpu-scheduler","containers":[{"name":"c","image":"x",
   "resources":{"limits":{$lim}}}]}}
EOF
}

node_of() { kubectl get pod "$1" -o jsonpath='{.spec.nodeName}'; }
alloc_of() { kubectl get pod "$1" -o jsonpath='{.metadata.annotations.flexpu\.io/allocation}'; }

wait_bound() { # pod [seconds]
  for _ in $(seq 1 $((${2:-20} * 5))); do
    [ -n "$(node_of "$1")" ] && return 0
    sleep 0.2
  done
  fail "pod $1 was not bound"
}

# No GPU holds more than 100% cores or its memory, summing every bound pod's
# allocation annotation: the double-allocation check.
check_no_overcommit() {
  kubectl get pods -A -o jsonpath='{range .items[*]}{.metadata.annotations.flexpu\.io/allocation}{"\n"}{end}' |
    grep -o '"uuid":"[^"]*","index":[0-9]*,"cores":[0-9]*,"memory":[0-9]*' |
    sed 's/"uuid":"\([^"]*\)","index":[0-9]*,"cores":\([0-9]*\),"memory":\([0-9]*\)/\1 \2 \3/' |
    awk '{c[$1]+=$2; m[$1]+=$3} END {for (g in c) if (c[g] > 100 || m[g] > 80*1073741824) {print g, c[g], m[g]; bad=1} exit bad}' ||
    fail "a GPU is over-committed (uuid, cores, memory above)"
}

reset() {
  stop_scheduler
  kubectl delete pods --all --grace-period=0 --force --wait=true >/dev/null 2>&1 || true
  kubectl delete nodes --all --wait=true >/dev/null 2>&1 || true
  kubectl delete events --all >/dev/null 2>&1 || true
}

# ---- cases ----

case_fractional_packing() {
  reset
  node n1 A100 4
  mport="$(free_port)"
  start_scheduler --metrics-address 127.0.0.1 --metrics-port "$mport"
  for i in 1 2 3 4 5; do pod "s$i" 1 20 8Gi; done
  for i in 1 2 3 4 5; do wait_bound "s$i"; done
  # 5 x 20% fit on one GPU: inside a node the policy takes the fullest GPU
  # that fragments least, so they share one.
  local gpus
  gpus=$(for i in 1 2 3 4 5; do alloc_of "s$i" | grep -o '"uuid":"[^"]*"'; done | sort -u | wc -l)
  [ "$gpus" -eq 1 ] || fail "5 slices of 20% used $gpus GPUs, expected 1"
  alloc_of s1 | grep -q '"cores":20,"memory":8589934592' || fail "s1 allocation: $(alloc_of s1)"
  check_no_overcommit
  pass "fractional pods packed onto one shared GPU with their allocation annotations"
  # What it did, in its metrics: 5 binds, 5 pods bound (the model's figures
  # are copied once a second), leading, healthy.
  local m=""
  for _ in $(seq 1 50); do
    m="$(curl -sf "http://127.0.0.1:$mport/metrics")" || fail "no metrics on port $mport"
    grep -qx 'flexpu_scheduler_binds_total{result="bound"} 5' <<<"$m" &&
      grep -qx 'flexpu_scheduler_pods{state="bound"} 5' <<<"$m" && break
    sleep 0.2
  done
  for want in 'flexpu_scheduler_binds_total{result="bound"} 5' 'flexpu_scheduler_pods{state="bound"} 5' \
              'flexpu_scheduler_leader 1' 'flexpu_scheduler_gpus 4' 'flexpu_scheduler_gpu_allocated_milli 1000'; do
    grep -qxF "$want" <<<"$m" || fail "metrics lack '$want': $(grep '^flexpu_scheduler' <<<"$m" | tr '\n' ' ')"
  done
  [ "$(curl -s "http://127.0.0.1:$mport/healthz")" = ok ] || fail "/healthz is not ok"
  pass "its metrics count the binds and the bound pods; /healthz answers ok"
}

case_multi_gpu_one_node() {
  reset
  node m1 H100 8
  node m2 H100 4
  start_scheduler
  pod big 6
  wait_bound big
  [ "$(node_of big)" = m1 ] || fail "6-GPU pod on $(node_of big), expected m1"
  local n
  n=$(alloc_of big | grep -o '"uuid":"GPU-m1-[0-9]*","index":[0-9]*,"cores":100' | wc -l)
  [ "$n" -eq 6 ] || fail "6-GPU pod got $n whole GPUs of m1: $(alloc_of big)"
  pod four 4
  wait_bound four
  [ "$(node_of four)" = m2 ] || fail "4-GPU pod on $(node_of four), expected m2"
  pass "multi-GPU pods take whole GPUs of one node"
}

case_unschedulable_then_freed() {
  reset
  node u1 T4 1 16
  start_scheduler
  pod first 1 70
  wait_bound first
  pod second 1 50
  wait_event second "no node fits"
  [ -z "$(node_of second)" ] || fail "second bound although the GPU was full"
  # What autoscalers read: PodScheduled=False, Unschedulable, the event's words.
  wait_cond second "False Unschedulable" "no node fits"
  pod wrongmodel 1 10 "" '{"flexpu.io/gpu-model":"A100"}'
  wait_event wrongmodel "gpu model"
  wait_cond wrongmodel "False Unschedulable" "gpu model"
  kubectl delete pod first --grace-period=0 --force >/dev/null 2>&1
  wait_bound second
  # The API server sets True at the Binding; no late write undoes it.
  sleep 1
  [[ "$(cond_of second)" == "True "* ]] || fail "second bound, PodScheduled '$(cond_of second)'"
  [ -z "$(node_of wrongmodel)" ] || fail "a pod asking for A100 landed on a T4 node"
  pass "unschedulable pods get precise events and PodScheduled=False/Unschedulable, and are placed when capacity frees"
}

case_bad_requests() {
  reset
  node b1 A100 1
  start_scheduler
  pod badcores 1 130
  wait_event badcores "flexpu.io/gpu-cores"
  wait_event badcores "130"
  pod badprio 1 10 "" '{"flexpu.io/priority":"urgent"}'
  wait_event badprio "flexpu.io/priority"
  pod badmem 1 10 4096
  wait_event badmem "at least 1Mi"
  # No node fixes a malformed request: SchedulerError, not Unschedulable,
  # so no autoscaler adds nodes for it.
  wait_cond badcores "False SchedulerError" "130"
  pod good 1 10
  wait_bound good
  for p in badcores badprio badmem; do
    [ -z "$(node_of $p)" ] || fail "invalid pod $p was bound"
  done
  pass "bad requests and annotations get events naming the field and value; pods stay Pending"
}

# A pod created with spec.schedulingGates (as Kueue creates every pod) is
# left alone: one SchedulingGated event in kube-scheduler's words, no bind
# (the API server would refuse it, 409), with a GPU free; the gate removed
# with a JSON patch, it is bound at once.
case_scheduling_gates() {
  reset
  node q1 A100 1
  start_scheduler
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"gated","namespace":"default"},
 "spec":{"schedulerName":"flexpu-scheduler","schedulingGates":[{"name":"example.com/admission"}],
   "containers":[{"name":"c","image":"x","resources":{"limits":{"cpu":"1","memory":"1Gi","flexpu.io/gpu":"1"}}}]}}
EOF
  wait_event gated "waiting for scheduling gates: [example.com/admission]"
  # Set by the API server at creation; the scheduler writes no condition.
  wait_cond gated "False SchedulingGated"
  sleep 2
  [ -z "$(node_of gated)" ] || fail "the gated pod was bound"
  local reasons
  reasons="$(kubectl get events --field-selector involvedObject.name=gated \
    -o jsonpath='{range .items[*]}{.reason} {.count}{"\n"}{end}')"
  [ "$reasons" = "SchedulingGated 1" ] || fail "gated pod's events: '$reasons', expected one SchedulingGated"
  grep -q 'non-empty .spec.schedulingGates' "$work/scheduler.log" &&
    fail "a bind of the gated pod was sent: $(grep 'schedulingGates' "$work/scheduler.log")"
  kubectl patch pod gated --type=json -p '[{"op":"remove","path":"/spec/schedulingGates"}]' >/dev/null
  wait_bound gated 10
  pass "a pod with scheduling gates waits, told once, and is bound when its gate is removed"
}

case_restart_no_double_allocation() {
  reset
  for i in 1 2 3 4; do node "r$i" A100 4; done
  start_scheduler
  # 64 slices of 25% fill the 16 GPUs exactly; the scheduler is killed with
  # SIGKILL while they arrive and started again.
  for i in $(seq 1 32); do pod "q$i" 1 25; done
  sleep 0.5
  stop_scheduler KILL
  for i in $(seq 33 64); do pod "q$i" 1 25; done
  start_scheduler
  for i in $(seq 1 64); do wait_bound "q$i" 30; done
  check_no_overcommit
  stop_scheduler KILL
  pod extra 1 25
  start_scheduler
  wait_event extra "no node fits"
  check_no_overcommit
  pass "scheduler killed and restarted mid-stream: every GPU exactly full, no double allocation"
}

case_node_removal() {
  reset
  node d1 A100 1
  node d2 A100 1
  start_scheduler
  pod a 1 60
  pod b 1 60
  wait_bound a
  wait_bound b
  pod c 1 60
  wait_event c "no node fits"
  local gone
  gone=$(node_of a)
  kubectl delete node "$gone" >/dev/null
  # The node registers again (a kubelet does after its Node was deleted):
  # pod a still runs there, so its share must be accounted again and c
  # must keep waiting.
  sleep 1
  node "$gone" A100 1
  sleep 2
  [ -z "$(node_of c)" ] || fail "c was bound to $(node_of c) on top of a's share"
  kubectl delete node "$gone" >/dev/null
  # The pods on the removed node hold nothing now; a new node brings room.
  node d3 A100 1
  wait_bound c
  [ "$(node_of c)" = d3 ] || fail "c on $(node_of c), expected d3"
  if grep -q "cannot be accounted" "$work/scheduler.log"; then
    fail "the scheduler found a pod it could not account"
  fi
  pass "node removal releases its pods' allocations"
}

case_leader_election() {
  reset
  node l1 A100 2
  start_scheduler --identity one
  local first=$sched_pid
  "$build/flexpu-scheduler" --kubeconfig "$KUBECONFIG" --lease-namespace kube-system \
    --identity two >>"$work/scheduler2.log" 2>&1 &
  local second=$!
  sleep 3
  for i in 1 2 3 4; do pod "e$i" 1 50; done
  for i in 1 2 3 4; do wait_bound "e$i"; done
  check_no_overcommit
  kill "$first"; wait "$first" 2>/dev/null || true
  sched_pid=$second
  pod e5 1 50
  wait_event e5 "no node fits"
  grep -q 'msg="leading"' "$work/scheduler2.log" || fail "the second instance never led"
  pass "two instances: one leads, the other takes over on release"
}

case_fractional_packing
case_multi_gpu_one_node
case_unschedulable_then_freed
case_bad_requests
case_scheduling_gates
case_restart_no_double_allocation
case_node_removal
case_leader_election
echo "$E2E_NAME: all passed"
