#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end test of the Queue custom resource and of the scheduler's
# preemption writes on a real API server (test/cluster):
#  - the CRD (deploy/helm/flexpu/crds/, the one copy Helm and deploy/ share)
#    is accepted and Established; a queue tree is created, and `kubectl get
#    queues` (and its short name fxq) shows the printer columns;
#  - the schema refuses bad queues with the field named: a negative weight,
#    malformed and negative quantities, an unknown resource, a limit below
#    its guarantee, a queue its own parent, an unknown field; none is stored;
#  - with the flexpu-scheduler service account's own token (deploy/rbac.yaml),
#    the scheduler's client code (test/e2e/kube_call.c) patches a queue's
#    status, which the printer columns then show; the account may not change
#    a queue's spec; the scheduler's queue path (parse, the engine's queues,
#    status builder) writes each queue's status, and its conditions for a
#    spec it refuses and for a missing parent;
#  - it evicts through the Eviction API: a pod whose PodDisruptionBudget
#    allows no disruption is refused with the budget's 429 (FLEXPU_EBUSY),
#    and stays; one whose budget allows it, and one with none, go; a stale
#    UID or a missing pod is FLEXPU_ENOENT; it nominates a pending pod for a
#    node (status.nominatedNodeName) and clears it, and a bound pod cannot be
#    nominated but can have its nomination cleared (what an FX_UNNOMINATE
#    racing a bind sends).
#
#   queue_crd_e2e.sh BUILD_DIR
E2E_NAME=queue-crd-e2e
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
call="$build/test/kube_call"
[ -x "$call" ] || fail "no $call (build the tests)"
crd="$root/deploy/helm/flexpu/crds/flexpu.io_queues.yaml"
e2e_up

# --- the CRD ---
kubectl apply -f "$crd" >"$work/apply.log" 2>&1 || { cat "$work/apply.log" >&2; fail "kubectl apply $crd"; }
kubectl wait --for=condition=Established crd/queues.flexpu.io --timeout=30s >/dev/null ||
  fail "the Queue CRD is not Established: $(kubectl get crd queues.flexpu.io -o jsonpath='{.status.conditions}')"
kubectl apply -f - >/dev/null <<'EOF2'
apiVersion: flexpu.io/v1alpha1
kind: Queue
metadata: {name: research}
spec:
  guaranteed: {flexpu.io/gpu: 16, cpu: "128", memory: 1Ti}
  limit: {flexpu.io/gpu: "32"}
---
apiVersion: flexpu.io/v1alpha1
kind: Queue
metadata: {name: team-a}
spec:
  parent: research
  overQuotaWeight: 2
  guaranteed: {flexpu.io/gpu: "8", flexpu.io/gpu-cores: "150", flexpu.io/gpu-memory: 80Gi}
  limit: {flexpu.io/gpu: "16", flexpu.io/gpu-memory: 80Gi}
EOF2
kubectl get queues >"$work/get.txt" || fail "kubectl get queues"
read -r -a head <"$work/get.txt"
[ "${head[*]}" = "NAME PARENT GPU-GUARANTEED GPU-LIMIT GPU-ALLOCATED GPU-FAIR-SHARE AGE" ] ||
  fail "kubectl get queues shows the columns '${head[*]}'"
row() { awk -v n="$1" '$1 == n' "$work/get.txt" | awk '{$NF = ""; print}' | sed 's/ *$//'; }
[ "$(row team-a)" = "team-a research 8 16" ] || fail "team-a's row is '$(row team-a)': $(cat "$work/get.txt")"
[ "$(row research)" = "research 16 32" ] || fail "research's row is '$(row research)'"
[ "$(kubectl get fxq team-a -o jsonpath='{.spec.overQuotaWeight}')" = 2 ] || fail "kubectl get fxq (the short name)"
[ "$(kubectl get queue research -o jsonpath='{.spec.overQuotaWeight}')" = 1 ] ||
  fail "overQuotaWeight does not default to 1: $(kubectl get queue research -o json | jq -c .spec)"
pass "the Queue CRD is Established; kubectl get queues (and fxq) shows parent, GPU guaranteed, limit, allocated, fair share, age; the weight defaults to 1"

# --- the schema refuses bad queues, naming the field ---
refused() { # substring spec-json
  local name="bad-$RANDOM"
  if kubectl create -f - >"$work/bad.out" 2>&1 <<EOF2
{"apiVersion":"flexpu.io/v1alpha1","kind":"Queue","metadata":{"name":"$name"},"spec":$2}
EOF2
  then
    fail "the API server accepted the queue spec $2"
  fi
  grep -qF -- "$1" "$work/bad.out" || fail "refusing $2, the server did not say '$1': $(cat "$work/bad.out")"
  ! kubectl get queue "$name" >/dev/null 2>&1 || fail "a refused queue ($2) was stored"
}
refused "spec.overQuotaWeight: Invalid value: -1" '{"overQuotaWeight":-1}'
refused 'spec.guaranteed.cpu: Invalid value: "12x"' '{"guaranteed":{"cpu":"12x"}}'
refused 'spec.guaranteed.flexpu.io/gpu-memory: Invalid value: "8 Gi"' '{"guaranteed":{"flexpu.io/gpu-memory":"8 Gi"}}'
refused 'spec.limit.flexpu.io/gpu: Invalid value: "-1"' '{"limit":{"flexpu.io/gpu":"-1"}}'
refused "spec.limit.memory: Invalid value: -5" '{"limit":{"memory":-5}}'
refused "unknown resource nvidia.com/gpu" '{"guaranteed":{"nvidia.com/gpu":"1"}}'
refused "spec.limit: Invalid value: limit of flexpu.io/gpu is below its guarantee" \
  '{"guaranteed":{"flexpu.io/gpu":"8","memory":"1Gi"},"limit":{"flexpu.io/gpu":4,"memory":"1024Mi"}}'
refused 'spec.parent: Invalid value: "Team A"' '{"parent":"Team A"}'
refused 'unknown field "spec.weight"' '{"weight":3}'
# its own parent: the name is the queue's
if kubectl create -f - >"$work/bad.out" 2>&1 <<'EOF2'
{"apiVersion":"flexpu.io/v1alpha1","kind":"Queue","metadata":{"name":"loop"},"spec":{"parent":"loop"}}
EOF2
then fail "a queue that is its own parent was accepted"; fi
grep -qF "spec.parent: Invalid value: a queue cannot be its own parent" "$work/bad.out" ||
  fail "its own parent: $(cat "$work/bad.out")"
pass "the schema refuses a negative weight, malformed and negative quantities, an unknown resource, a limit below its guarantee, a bad or own parent and an unknown field, naming each field"

# --- the scheduler's account and client: a queue's status ---
kubectl apply -f "$root/deploy/namespace.yaml" -f "$root/deploy/rbac.yaml" >"$work/apply.log" 2>&1 ||
  { cat "$work/apply.log" >&2; fail "kubectl apply deploy/rbac.yaml"; }
token="$(kubectl create token flexpu-scheduler -n flexpu-system --duration=1h)"
kubectl config view --raw --minify --flatten -o json | jq --arg t "$token" '.users[0].user = {token: $t}' \
  >"$work/scheduler.kubeconfig"
sched="$work/scheduler.kubeconfig"
out="$("$call" "$sched" queue-status team-a \
  '{"status":{"allocated":{"flexpu.io/gpu":"3","cpu":"24"},"fairShare":{"flexpu.io/gpu":"12"},"guaranteed":{"flexpu.io/gpu":"8"},"pending":{"flexpu.io/gpu":"1"},"conditions":[{"type":"Valid","status":"True","reason":"Accepted","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}')" ||
  fail "patching team-a's status with the scheduler's account: $out"
kubectl get queues >"$work/get.txt"
[ "$(row team-a)" = "team-a research 8 16 3 12" ] || fail "after the status patch, team-a's row is '$(row team-a)'"
[ "$(kubectl get queue team-a -o jsonpath='{.status.conditions[0].reason}')" = Accepted ] || fail "the condition was not stored"
# a merge patch: what it leaves out stays
"$call" "$sched" queue-status team-a '{"status":{"allocated":{"flexpu.io/gpu":"5"}}}' >/dev/null || fail "second status patch"
[ "$(kubectl get queue team-a -o jsonpath='{.status.allocated.flexpu\.io/gpu}/{.status.allocated.cpu}/{.status.fairShare.flexpu\.io/gpu}')" = 5/24/12 ] ||
  fail "the second patch did not merge: $(kubectl get queue team-a -o json | jq -c .status)"
# the status subresource ignores spec, and the status is checked by the schema
"$call" "$sched" queue-status team-a '{"spec":{"overQuotaWeight":9},"status":{}}' >/dev/null || true
[ "$(kubectl get queue team-a -o jsonpath='{.spec.overQuotaWeight}')" = 2 ] || fail "a status patch changed the spec"
out="$("$call" "$sched" queue-status team-a '{"status":{"allocated":{"flexpu.io/gpu":"lots"}}}')" &&
  fail "a malformed status quantity was accepted"
grep -qF 'status.allocated.flexpu.io/gpu' <<<"$out" || fail "a malformed status: $out"
rc=0; out="$("$call" "$sched" queue-status nope '{"status":{}}')" || rc=$?
[ "$rc" = 4 ] || fail "patching a missing queue's status exited $rc: $out"
can() { kubectl auth can-i --as=system:serviceaccount:flexpu-system:flexpu-scheduler "$@" 2>/dev/null; }
[ "$(can patch queues)" = no ] && [ "$(can update queues)" = no ] && [ "$(can delete queues)" = no ] ||
  fail "the scheduler's account may change queues"
[ "$(can patch queues --subresource=status)" = yes ] && [ "$(can watch queues)" = yes ] ||
  fail "the scheduler's account cannot watch queues or patch their status"
# Its pod deletes (reclaimed borrowers) are limited by an admission policy,
# not RBAC (admission_e2e.sh); collections stay out of reach.
[ "$(can deletecollection pods -n default)" = no ] || fail "the scheduler's account may delete collections of pods"
pass "with the scheduler's account, kube_queue_patch_status writes allocated, fair share, guaranteed, pending and conditions (merged; spec untouched; bad values refused; a missing queue is ENOENT), shown by kubectl get queues; it may not change a queue's spec or delete collections of pods"

# --- the scheduler's whole queue path: parse, engine, status ---
# half passes the schema (a quantity) but not the scheduler (whole GPUs);
# lost names a parent that does not exist.
kubectl create -f - >/dev/null <<'EOF2'
{"apiVersion":"v1","kind":"List","items":[
 {"apiVersion":"flexpu.io/v1alpha1","kind":"Queue","metadata":{"name":"half"},"spec":{"guaranteed":{"flexpu.io/gpu":"1.5"}}},
 {"apiVersion":"flexpu.io/v1alpha1","kind":"Queue","metadata":{"name":"lost"},"spec":{"parent":"ghost"}}]}
EOF2
sync() { "$call" "$sched" queue-sync 64 research=2 team-a=10 half=0 lost=1 >"$work/sync.out" 2>&1 ||
  fail "queue-sync: $(cat "$work/sync.out")"; }
sync
grep -qx "team-a parent=research weight=2 guaranteed=8,1500,81920,0,0 limit=16,-1,81920,-1,-1" "$work/sync.out" ||
  fail "team-a as the scheduler parsed it: $(cat "$work/sync.out")"
grep -qx "research parent= weight=1 guaranteed=16,0,0,128000,1048576 limit=32,-1,-1,-1,-1" "$work/sync.out" ||
  fail "research as the scheduler parsed it: $(cat "$work/sync.out")"
q() { kubectl get queue "$1" -o json | jq -r "$2"; }
[ "$(q team-a '[.status.allocated["flexpu.io/gpu"], .status.guaranteed["flexpu.io/gpu"], .status.guaranteed["flexpu.io/gpu-memory"]] | join(" ")')" = "10 8 81920Mi" ] ||
  fail "team-a's status after queue-sync: $(q team-a ".status | tostring")"
[ "$(q research '.status.allocated["flexpu.io/gpu"]')" = 12 ] ||
  fail "research does not hold its child's GPUs: $(q research ".status | tostring")"
[[ "$(q team-a '.status.fairShare["flexpu.io/gpu"]')" =~ ^[0-9]+$ ]] || fail "team-a has no fair share: $(q team-a ".status | tostring")"
cond() { q "$1" ".status.conditions[] | select(.type == \"$2\") | \"\(.status) \(.reason)\""; }
[ "$(cond team-a Accepted)" = "True Applied" ] && [ "$(cond team-a ParentFound)" = "True ParentExists" ] ||
  fail "team-a's conditions: $(q team-a ".status.conditions | tostring")"
[ "$(cond lost ParentFound)" = "False ParentMissing" ] || fail "lost's conditions: $(q lost ".status.conditions | tostring")"
[ "$(cond half Accepted)" = "False InvalidSpec" ] || fail "half's conditions: $(q half ".status.conditions | tostring")"
q half '.status.conditions[0].message' | grep -qF "spec.guaranteed[flexpu.io/gpu]': invalid value '1.5'" ||
  fail "half's refusal does not name the field and value: $(q half '.status.conditions[0].message')"
kubectl get queues >"$work/get.txt"
[ "$(row lost | cut -d' ' -f1-3)" = "lost ghost 1" ] || fail "lost's row: '$(row lost)'"
since="$(q team-a '.status.conditions[0].lastTransitionTime')"
sleep 1.2
sync
[ "$(q team-a '.status.conditions[0].lastTransitionTime')" = "$since" ] ||
  fail "an unchanged condition's lastTransitionTime moved from $since"
pass "queue-sync (fx_queue_parse, the engine's queues, fx_queue_status_patch, kube_queue_patch_status) with the scheduler's account: specs in the engine's units, allocated summed up the tree, guarantees and fair shares written; Accepted False naming the field for a spec the schema lets through, ParentFound False for a missing parent; an unchanged condition keeps its time"

# --- eviction and nomination ---
kubectl create -f - >/dev/null <<'EOF2'
{"apiVersion":"v1","kind":"Node","metadata":{"name":"gpu-1","labels":{"type":"kwok"},
 "annotations":{"kwok.x-k8s.io/node":"fake"}},
 "status":{"allocatable":{"cpu":"64","memory":"512Gi","pods":"110"},
  "capacity":{"cpu":"64","memory":"512Gi","pods":"110"}}}
EOF2
pod() { # name app [node]
  local node=""
  [ -n "${3:-}" ] && node="\"nodeName\":\"$3\","
  kubectl create -f - >/dev/null <<EOF2
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default","labels":{"app":"$2"}},
 "spec":{$node"schedulerName":"nobody","containers":[{"name":"c","image":"x"}]}}
EOF2
}
uid() { kubectl get pod "$1" -o jsonpath='{.metadata.uid}'; }
pod guarded web gpu-1
pod spare batch gpu-1
pod free solo gpu-1
kubectl create pdb web --selector=app=web --min-available=1 >/dev/null
kubectl create pdb batch --selector=app=batch --max-unavailable=1 >/dev/null
# No disruption controller runs in test/cluster: write the budgets' status
# as it would (web: its one pod is needed; batch: one may go).
budget() { # name healthy desired allowed
  kubectl patch pdb "$1" --subresource=status --type=merge -p \
    "{\"status\":{\"observedGeneration\":1,\"currentHealthy\":$2,\"desiredHealthy\":$3,\"disruptionsAllowed\":$4,\"expectedPods\":1}}" >/dev/null
}
budget web 1 1 0
budget batch 1 0 1
rc=0; out="$("$call" "$sched" evict default guarded "$(uid guarded)")" || rc=$?
[ "$rc" = 3 ] || fail "evicting a pod its budget protects exited $rc (want 3, EBUSY): $out"
grep -qF "EBUSY: evicting pod default/guarded: refused by its PodDisruptionBudget" <<<"$out" || fail "the refusal says: $out"
grep -qF "The disruption budget web needs 1 healthy pods and has 1 currently" <<<"$out" || fail "the refusal does not give the budget's reason: $out"
[ -z "$(kubectl get pod guarded -o jsonpath='{.metadata.deletionTimestamp}')" ] || fail "the protected pod is being deleted"
gone() { ! kubectl get pod "$1" >/dev/null 2>&1 || [ -n "$(kubectl get pod "$1" -o jsonpath='{.metadata.deletionTimestamp}')" ]; }
out="$("$call" "$sched" evict default spare "$(uid spare)")" || fail "evicting a pod its budget allows: $out"
gone spare || fail "the evicted pod spare is not being deleted"
[ "$(kubectl get pdb batch -o jsonpath='{.status.disruptionsAllowed}')" = 0 ] ||
  fail "the API server did not count the eviction against the budget"
rc=0; out="$("$call" "$sched" evict default free 00000000-0000-0000-0000-000000000000)" || rc=$?
[ "$rc" = 4 ] || fail "evicting with a stale UID exited $rc (want 4, ENOENT): $out"
gone free && fail "a stale UID's eviction deleted the pod"
out="$("$call" "$sched" evict default free "$(uid free)")" || fail "evicting a pod without a budget: $out"
gone free || fail "the evicted pod free is not being deleted"
rc=0; out="$("$call" "$sched" evict default nope -)" || rc=$?
[ "$rc" = 4 ] || fail "evicting a missing pod exited $rc (want 4): $out"
pass "eviction through the Eviction API with the scheduler's account: a PodDisruptionBudget's refusal is EBUSY with the budget's reason and the pod stays; a budget that allows it and no budget let the pod go; a stale UID or a missing pod is ENOENT"

pod waiting train
out="$("$call" "$sched" nominate default waiting "$(uid waiting)" gpu-1)" || fail "nominating a pending pod: $out"
[ "$(kubectl get pod waiting -o jsonpath='{.status.nominatedNodeName}')" = gpu-1 ] || fail "status.nominatedNodeName is not gpu-1"
out="$("$call" "$sched" nominate default waiting "$(uid waiting)" -)" || fail "clearing the nomination: $out"
[ -z "$(kubectl get pod waiting -o jsonpath='{.status.nominatedNodeName}')" ] || fail "the nomination was not cleared"
rc=0; out="$("$call" "$sched" nominate default waiting 00000000-0000-0000-0000-000000000000 gpu-1)" || rc=$?
[ "$rc" = 4 ] || fail "nominating with a stale UID exited $rc (want 4): $out"
[ -z "$(kubectl get pod waiting -o jsonpath='{.status.nominatedNodeName}')" ] || fail "a stale UID's nomination was written"
rc=0; out="$("$call" "$sched" nominate default guarded "$(uid guarded)" gpu-1)" || rc=$?
[ "$rc" = 1 ] && grep -qF "already bound" <<<"$out" || fail "nominating a bound pod exited $rc: $out"
out="$("$call" "$sched" nominate default guarded "$(uid guarded)" -)" || fail "clearing a bound pod's nomination (a clear racing a bind): $out"
pass "nomination: status.nominatedNodeName set on a pending pod and cleared; a stale UID is ENOENT and writes nothing; a bound pod is refused, and its nomination cleared"
