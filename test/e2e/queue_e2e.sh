#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# flexpu-scheduler with Queues and pod groups on a real API server
# (test/cluster, kwok nodes with GPU inventories):
#  - two queues guaranteed half a node each, the first one's pods all
#    older: each gets its half; the Queue status shows it;
#  - an idle queue lends: the other borrows its half;
#  - a parent's limit holds its child's pods back, told so;
#  - a pod naming a queue that does not exist waits, told so, until it does;
#  - a gang that does not fit holds nothing and goes whole when a node comes;
#  - two gangs that each fit alone but not together: one goes whole, the
#    other holds nothing;
#  - a gang one of whose members is already bound (a restart in the middle
#    of binding it): the missing members go together;
#  - a scheduler killed (SIGKILL) with five of a gang's eight members bound:
#    the next leader binds the other three;
#  - a pod of a higher PriorityClass evicts a lower one through the Eviction
#    API: the one a PodDisruptionBudget protects stays (its eviction refused,
#    the preemption undone), the other goes, and the preemptor binds;
#  - a queue under its guarantee takes back what another queue borrowed.
#
#   queue_e2e.sh BUILD_DIR
E2E_NAME=queue-e2e
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_up

# queue NAME [PARENT] [GPU-GUARANTEED] [GPU-LIMIT]
queue() {
  local spec
  spec="$(jq -nc --arg p "${2:-}" --arg g "${3:-}" --arg l "${4:-}" '
    {} + (if $p != "" then {parent: $p} else {} end)
       + (if $g != "" then {guaranteed: {"flexpu.io/gpu": $g}} else {} end)
       + (if $l != "" then {limit: {"flexpu.io/gpu": $l}} else {} end)')"
  kubectl apply -f - >/dev/null <<EOF
{"apiVersion":"flexpu.io/v1alpha1","kind":"Queue","metadata":{"name":"$1"},"spec":$spec}
EOF
}

# qpod NAME QUEUE GPUS [GROUP MIN] [NODE ALLOCATION]: whole GPUs; QUEUE "-" for no label.
qpod() {
  local labels="{}" ann="{}" node=""
  [ "$2" != - ] && labels="{\"flexpu.io/queue\":\"$2\"}"
  if [ -n "${4:-}" ]; then
    labels="$(jq -c --arg g "$4" '. + {"flexpu.io/pod-group": $g}' <<<"$labels")"
    ann="{\"flexpu.io/min-members\":\"$5\"}"
  fi
  if [ -n "${6:-}" ]; then
    ann="$(jq -c --arg a "$7" '. + {"flexpu.io/allocation": $a}' <<<"$ann")"
    node=",\"nodeName\":\"$6\""
  fi
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default","labels":$labels,
  "annotations":$ann},
 "spec":{"schedulerName":"flexpu-scheduler"$node,"containers":[{"name":"c","image":"x",
   "resources":{"limits":{"cpu":"1","memory":"1Gi","flexpu.io/gpu":"$3"}}}]}}
EOF
}

bound_count() { # name-prefix
  kubectl get pods -o json |
    jq --arg p "$1" '[.items[] | select((.metadata.name | startswith($p)) and .spec.nodeName != null and .spec.nodeName != "")] | length'
}

want_bound() { # prefix count seconds
  local n=""
  for _ in $(seq 1 $((${3:-20} * 5))); do
    n="$(bound_count "$1")"
    [ "$n" = "$2" ] && return 0
    sleep 0.2
  done
  fail "$n pods named $1* bound, want $2"
}

stays_bound() { # prefix count seconds: no more, no fewer, for that long
  sleep "${3:-3}"
  local n
  n="$(bound_count "$1")"
  [ "$n" = "$2" ] || fail "$n pods named $1* bound, want $2 to stay"
}

reset() {
  stop_scheduler
  kubectl delete pods --all --grace-period=0 --force --wait=true >/dev/null 2>&1 || true
  kubectl delete queues --all --wait=true >/dev/null 2>&1 || true
  kubectl delete pdb --all >/dev/null 2>&1 || true
  kubectl delete nodes --all --wait=true >/dev/null 2>&1 || true
  kubectl delete events --all >/dev/null 2>&1 || true
}

crd="$root/deploy/helm/flexpu/crds/flexpu.io_queues.yaml"
kubectl apply -f "$crd" >/dev/null || fail "kubectl apply $crd"
kubectl wait --for=condition=Established crd/queues.flexpu.io --timeout=30s >/dev/null ||
  fail "the Queue CRD is not Established"

# ---- queues ----
reset
kwok_gpu_node q1 A100 8
queue team-a "" 4
queue team-b "" 4
for i in 1 2 3 4 5 6; do qpod "a$i" team-a 1; done
for i in 1 2 3 4 5 6; do qpod "b$i" team-b 1; done
start_scheduler
want_bound a 4
want_bound b 4
stays_bound a 4 2
pass "two queues guaranteed 4 GPUs each share an 8-GPU node 4/4 though one queue's pods are all older"

status_gpu() { kubectl get queue "$1" -o jsonpath="{.status.$2.flexpu\.io/gpu}"; }
wait_for 25 "team-a's status does not show 4 GPUs allocated and 2 pending (allocated '$(status_gpu team-a allocated)', pending '$(status_gpu team-a pending)')" \
  bash -c "[ \"\$(kubectl get queue team-a -o jsonpath='{.status.allocated.flexpu\.io/gpu}/{.status.pending.flexpu\.io/gpu}')\" = 4/2 ]"
kubectl get queues >"$work/queues.txt"
grep -q '^team-a .* 4 ' "$work/queues.txt" || fail "kubectl get queues: $(cat "$work/queues.txt")"
pass "the Queue status shows what the scheduler holds and waits for (kubectl get queues: allocated 4)"

kubectl delete pods -l flexpu.io/queue=team-b --grace-period=0 --force --wait=true >/dev/null 2>&1
want_bound a 6
pass "team-b idle: team-a borrows its guarantee (6 of 8 GPUs)"

queue org "" "" 1
queue team-c org
qpod c1 team-c 1
qpod c2 team-c 1
want_bound c 1
stays_bound c 1 2
wait_event c2 "limit"
# No node ends this wait: not Unschedulable, which autoscalers add nodes for.
wait_cond c2 "False QueueLimitExceeded" "limit"
pass "a parent's limit (org: 1 GPU) holds its child's second pod back, with an event naming the limit and PodScheduled False, QueueLimitExceeded"

qpod g1 ghost 1
wait_event g1 'queue "ghost" does not exist'
wait_cond g1 "False QueueNotFound"
queue ghost
want_bound g 1
pass "a pod naming a queue that does not exist waits, told so, and goes once the Queue is created"

# ---- gangs ----
reset
kwok_gpu_node n1 A100 8
start_scheduler
for i in 0 1 2; do qpod "t$i" - 4 train 3; done
wait_event t0 "do not fit together"
stays_bound t 0 2
kwok_gpu_node n2 A100 8
want_bound t 3
pass "a gang of 3 x 4 GPUs holds nothing on one 8-GPU node and goes whole when a second node comes"

reset
kwok_gpu_node n1 A100 8
kwok_gpu_node n2 A100 8
for i in 0 1; do qpod "x$i" - 6 gx 2; qpod "y$i" - 6 gy 2; done
start_scheduler
for _ in $(seq 1 100); do
  [ $(( $(bound_count x) + $(bound_count y) )) -ge 2 ] && break
  sleep 0.2
done
sleep 3 # and nothing more comes
xb="$(bound_count x)" yb="$(bound_count y)"
{ [ "$xb" = 2 ] && [ "$yb" = 0 ]; } || { [ "$xb" = 0 ] && [ "$yb" = 2 ]; } ||
  fail "two gangs that fit only one at a time: $xb and $yb of their 2 members bound, want 2 and 0"
pass "two gangs that each fit alone but not together: one goes whole ($xb/$yb), the other holds nothing"

reset
kwok_gpu_node n1 A100 4
qpod z0 - 1 gz 3 n1 '{"gpus":[{"uuid":"GPU-n1-0","index":0,"cores":100,"memory":0}]}'
qpod z1 - 1 gz 3
qpod z2 - 1 gz 3
start_scheduler
want_bound z 3
alloc="$(kubectl get pods z1 z2 -o jsonpath='{range .items[*]}{.metadata.annotations.flexpu\.io/allocation}{"\n"}{end}')"
grep -q 'GPU-n1-0' <<<"$alloc" && fail "a missing member took the bound member's GPU: $alloc"
pass "a gang with one member already bound (a restart mid-gang): the two missing members go together"

# A scheduler killed in the middle of a gang: an admission policy refuses the
# bindings of three of its eight members, so five are bound and three wait
# when the leader dies (SIGKILL: no Lease released, nothing flushed). The
# next instance waits out the dead one's Lease, counts the five bound
# members toward min-members and binds the other three, on GPUs of their own.
reset
kwok_gpu_node k1 A100 4
kwok_gpu_node k2 A100 4
kubectl apply -f - >/dev/null <<'EOF'
{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingAdmissionPolicy",
 "metadata":{"name":"e2e-hold-binds"},
 "spec":{"failurePolicy":"Fail",
  "matchConstraints":{"resourceRules":[{"apiGroups":[""],"apiVersions":["v1"],
    "operations":["CREATE"],"resources":["pods/binding"]}]},
  "validations":[{"expression":"!(object.metadata.name in ['k5','k6','k7'])",
    "message":"held by queue_e2e"}]}}
EOF
kubectl apply -f - >/dev/null <<'EOF'
{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingAdmissionPolicyBinding",
 "metadata":{"name":"e2e-hold-binds"},
 "spec":{"policyName":"e2e-hold-binds","validationActions":["Deny"]}}
EOF
sleep 2 # the policy takes effect once the API server's informer has it
for i in 0 1 2 3 4 5 6 7; do qpod "k$i" - 1 gk 8; done
start_scheduler
want_bound k 5 30
grep -q 'held by queue_e2e' "$work/scheduler.log" ||
  fail "the scheduler did not log the refused bindings"
stop_scheduler KILL
kubectl delete validatingadmissionpolicybinding e2e-hold-binds >/dev/null
kubectl delete validatingadmissionpolicy e2e-hold-binds >/dev/null
stays_bound k 5 1
start_scheduler
want_bound k 8 40 # the dead leader's Lease runs out first (15 s)
uuids="$(kubectl get pods -o json | jq -r '[.items[] | select(.metadata.name | startswith("k"))
  | .metadata.annotations["flexpu.io/allocation"] | fromjson | .gpus[].uuid] | sort | .[]')"
[ "$(wc -l <<<"$uuids")" = 8 ] && [ "$(uniq <<<"$uuids" | wc -l)" = 8 ] ||
  fail "the gang's 8 members do not hold 8 distinct GPUs: $(tr '\n' ' ' <<<"$uuids")"
pass "a scheduler killed mid-gang (5 of 8 bound, 3 refused by admission): the next leader binds the other 3 on free GPUs"

# ---- preemption and reclaim ----
# ppod NAME PRIORITY-CLASS(- none) APP: one whole GPU.
ppod() {
  local class=""
  [ "$2" != - ] && class="\"priorityClassName\":\"$2\","
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default","labels":{"app":"$3"}},
 "spec":{$class"schedulerName":"flexpu-scheduler","containers":[{"name":"c","image":"x",
   "resources":{"limits":{"cpu":"1","memory":"1Gi","flexpu.io/gpu":"1"}}}]}}
EOF
}
reset
kubectl create priorityclass e2e-high --value=1000 >/dev/null
kwok_gpu_node p1 A100 2
mport="$(free_port)"
start_scheduler --metrics-address 127.0.0.1 --metrics-port "$mport"
ppod low-spare - batch
want_bound low-spare 1
sleep 1.1 # a later creation second: the guarded pod is the newer, the first choice
ppod low-guarded - web
want_bound low 2
kubectl create pdb web --selector=app=web --min-available=1 >/dev/null
# No disruption controller runs in test/cluster: the budget's status as it
# would write it (its one pod is needed).
kubectl patch pdb web --subresource=status --type=merge -p \
  '{"status":{"observedGeneration":1,"currentHealthy":1,"desiredHealthy":1,"disruptionsAllowed":0,"expectedPods":1}}' >/dev/null
ppod hi e2e-high api
want_bound hi 1 30
[ "$(kubectl get pod hi -o jsonpath='{.spec.nodeName}')" = p1 ] || fail "hi is not on p1"
kubectl get pod low-guarded >/dev/null 2>&1 || fail "the pod its budget protects was evicted"
[ -z "$(kubectl get pod low-guarded -o jsonpath='{.metadata.deletionTimestamp}')" ] ||
  fail "the pod its budget protects is being deleted"
kubectl get pod low-spare >/dev/null 2>&1 && fail "low-spare was not evicted"
wait_event low-guarded "not evicted for preemption"
wait_event hi "preempting 1 pod(s) on node p1 (priority)"
wait_metrics "$mport" 'flexpu_scheduler_preemptions_total 2' \
  'flexpu_scheduler_evictions_total{result="refused"} 1' ||
  fail "the metrics do not count 2 preemptions and 1 refused eviction: $(curl -sf "http://127.0.0.1:$mport/metrics" | grep -E 'preempt|evictions' | tr '\n' ' ')"
pass "a higher PriorityClass preempts through the Eviction API: the budget-protected pod's eviction is refused and undone, the other goes, the preemptor binds"

reset
kwok_gpu_node r1 A100 8
queue ra "" 4
queue rb "" 4
start_scheduler
for i in 1 2 3 4 5 6 7 8; do qpod "ra$i" ra 1; done
want_bound ra 8
qpod rb1 rb 1
qpod rb2 rb 1
want_bound rb 2 40
want_bound ra 6
wait_event rb1 "(reclaim)"
pass "queue rb, under its guarantee, reclaims 2 GPUs that queue ra borrowed (ra 8 -> 6, rb 0 -> 2)"
