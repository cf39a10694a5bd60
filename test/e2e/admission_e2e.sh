#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end test of deploy/admission.yaml on a real API server
# (test/cluster): the ValidatingAdmissionPolicy that keeps tenants from
# writing their own GPU quota.
#  - a tenant (service account default:tenant, impersonated, with RBAC to
#    create, patch and bind pods so that only the policy can refuse) may not
#    create a pod carrying flexpu.io/allocation, set it on a bound pod, bind
#    a pod with it, or create a pod that asks flexpu.io resources with
#    spec.nodeName set; the cluster admin may not either;
#  - a CPU pod with spec.nodeName and a plain flexpu pod are still admitted;
#  - flexpu-scheduler, with its own service account's token, binds with the
#    annotation (a slice without gpu-memory gets its share of the GPU's
#    memory) and warns when flexpu.io/priority asks above the pod's class;
#  - flexpu.io/remote-endpoint (flexpu-remote-endpoint): the node agents'
#    account (given create and patch on pods and pods/status, as the chart's
#    node.remote gives patch) records and changes it with the merge patch
#    remote_agent.c sends, and may change nothing else of a pod (another
#    annotation, the allocation, a label, the spec, finalizers, owners, the
#    status) nor create one; a tenant (on a pod, its create, a Binding),
#    flexpu-scheduler and the cluster admin may not set, change or remove it.
#  - flexpu.io/remote-gpu-node (flexpu-pods): flexpu-scheduler (given patch
#    on pods, as the chart's node.remote gives it) sets and changes it with
#    the merge patch bind.c sends, and may change nothing else of a pod; a
#    tenant (its pod's create, a label), the cluster admin and the node
#    agents may not set, change or remove it; the running flexpu-scheduler
#    labels a remote pod bound without it, and removes it from a pod bound
#    to a local slice.
#
#   admission_e2e.sh BUILD_DIR
E2E_NAME=admission-e2e
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_up


kubectl apply -k "$root/deploy" >"$work/apply.log" 2>&1 || { cat "$work/apply.log" >&2; fail "kubectl apply -k deploy"; }
kubectl get validatingadmissionpolicy flexpu-pods >/dev/null || fail "deploy/ did not create the policy"
kubectl get validatingadmissionpolicybinding flexpu-pods >/dev/null || fail "deploy/ did not create its binding"

# The tenant may create, patch and bind pods: whatever is refused below is
# refused by the policy, not by RBAC.
tenant=system:serviceaccount:default:tenant
kubectl create serviceaccount tenant -n default >/dev/null
kubectl create role tenant -n default --verb=create,get,list,patch,update \
  --resource=pods,pods/binding >/dev/null
kubectl create rolebinding tenant -n default --role=tenant --serviceaccount=default:tenant >/dev/null

kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Node","metadata":{"name":"gpu-1","labels":{"type":"kwok"},
 "annotations":{"kwok.x-k8s.io/node":"fake",
  "flexpu.io/gpus":"[{\"uuid\":\"GPU-a\",\"model\":\"A100\",\"memory\":85899345920,\"numa\":0,\"group\":0}]"}},
 "status":{"allocatable":{"cpu":"64","memory":"512Gi","pods":"110","flexpu.io/gpu":"16",
   "flexpu.io/gpu-cores":"100","flexpu.io/gpu-memory":"80Gi"},
  "capacity":{"cpu":"64","memory":"512Gi","pods":"110","flexpu.io/gpu":"16",
   "flexpu.io/gpu-cores":"100","flexpu.io/gpu-memory":"80Gi"}}}
EOF

# podjson NAME [NODE] [ANNOTATIONS-JSON] [LIMITS] [SCHEDULER]
podjson() {
  local node="" lim="${4:-\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"30\"}"
  [ -n "${2:-}" ] && node="\"nodeName\":\"$2\","
  cat <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default","annotations":${3:-{\}}},
 "spec":{$node"schedulerName":"${5:-flexpu-scheduler}","containers":[{"name":"c","image":"x",
   "resources":{"limits":{"cpu":"1","memory":"1Gi",$lim}}}]}}
EOF
}
unlimited='{"flexpu.io/allocation":"{\"gpus\":[{\"uuid\":\"GPU-a\",\"index\":0,\"cores\":0,\"memory\":0}]}"}'

# refused WHAT SUBSTRING command...: the command fails and says SUBSTRING.
refused() {
  local what="$1" want="$2"
  shift 2
  if "$@" >"$work/out" 2>&1; then fail "$what was admitted"; fi
  grep -qF -- "$want" "$work/out" || fail "$what: refused without naming '$want': $(cat "$work/out")"
}

# The policy takes effect shortly after it is created: wait for a refusal.
probe() {
  if podjson probe "" "$unlimited" | kubectl --as="$tenant" create -f - >"$work/probe" 2>&1; then
    kubectl delete pod probe --grace-period=0 --force --wait=true >/dev/null 2>&1
    return 1
  fi
  grep -qF "flexpu.io/allocation" "$work/probe"
}
wait_for 30 "the admission policy never took effect" probe

refused "a tenant's pod with flexpu.io/allocation" "flexpu.io/allocation" \
  kubectl --as="$tenant" create -f - <<<"$(podjson t-ann "" "$unlimited")"
refused "a tenant's pod with spec.nodeName and flexpu.io/gpu" "spec.nodeName" \
  kubectl --as="$tenant" create -f - <<<"$(podjson t-node gpu-1)"
refused "a tenant's pod with spec.nodeName, flexpu.io/gpu and an allocation" "flexpu.io" \
  kubectl --as="$tenant" create -f - <<<"$(podjson t-both gpu-1 "$unlimited")"
refused "a tenant's pod with spec.nodeName and flexpu.io/gpu-memory only" "spec.nodeName" \
  kubectl --as="$tenant" create -f - <<<"$(podjson t-mem gpu-1 '{}' '"flexpu.io/gpu":"1","flexpu.io/gpu-memory":"1Gi"')"
refused "the cluster admin's pod with flexpu.io/allocation" "flexpu.io/allocation" \
  kubectl create -f - <<<"$(podjson a-ann "" "$unlimited")"
pass "pods carrying flexpu.io/allocation, or asking flexpu.io resources with spec.nodeName, are refused"

kubectl --as="$tenant" create -f - >/dev/null <<<"$(podjson cpu-on-node gpu-1 '{}' '"ephemeral-storage":"1Gi"')" ||
  fail "a CPU pod with spec.nodeName was refused"
kubectl --as="$tenant" create -f - >/dev/null <<<"$(podjson other "" '{}' '"flexpu.io/gpu":"1"' other-scheduler)" ||
  fail "a plain flexpu pod was refused"
binding() { # pod annotations-json
  printf '{"apiVersion":"v1","kind":"Binding","metadata":{"name":"%s","annotations":%s},"target":{"apiVersion":"v1","kind":"Node","name":"gpu-1"}}' "$1" "$2"
}
refused "a tenant's Binding with flexpu.io/allocation" "flexpu.io/allocation" \
  kubectl --as="$tenant" create --raw /api/v1/namespaces/default/pods/other/binding -f - <<<"$(binding other "$unlimited")"
[ -z "$(kubectl get pod other -o jsonpath='{.spec.nodeName}')" ] || fail "the refused Binding bound the pod"
pass "a tenant's Binding with flexpu.io/allocation is refused; plain pods are admitted"

# --- flexpu-scheduler, with its own token, binds with the annotation ---
token="$(kubectl create token flexpu-scheduler -n flexpu-system --duration=1h)"
kubectl config view --raw --minify -o json | jq --arg t "$token" '.users[0].user = {token: $t}' \
  >"$work/scheduler.kubeconfig"
"$build/flexpu-scheduler" --kubeconfig "$work/scheduler.kubeconfig" --leader-elect=false \
  --log-level debug >"$work/scheduler.log" 2>&1 &
pids+=($!)
kubectl --as="$tenant" create -f - >/dev/null <<<"$(podjson slice "" '{"flexpu.io/priority":"high"}')" ||
  fail "the tenant's slice pod was refused"
bound() { [ -n "$(kubectl get pod slice -o jsonpath='{.spec.nodeName}')" ]; }
wait_for 30 "flexpu-scheduler did not bind the slice pod" bound
alloc="$(kubectl get pod slice -o jsonpath='{.metadata.annotations.flexpu\.io/allocation}')"
[ "$(jq -c '.gpus[0] | [.cores, .memory]' <<<"$alloc")" = "[30,$((24 * 1073741824))]" ] ||
  fail "slice allocation is $alloc, want 30 cores and 24Gi (30% of 80Gi)"
pass "flexpu-scheduler's own Binding carries the allocation (30% and a default 24Gi of memory)"

capped() {
  kubectl get events --field-selector involvedObject.name=slice \
    -o jsonpath='{range .items[*]}{.reason}{" "}{.message}{"\n"}{end}' | grep -q '^PriorityCapped .*high'
}
wait_for 20 "no PriorityCapped event for a high annotation without a PriorityClass" capped
pass "flexpu.io/priority: high without a PriorityClass is ignored with a warning event"

refused "a tenant changing flexpu.io/allocation on a bound pod" "flexpu.io/allocation" \
  kubectl --as="$tenant" annotate pod slice --overwrite \
  'flexpu.io/allocation={"gpus":[{"uuid":"GPU-a","index":0,"cores":100,"memory":0}]}'
refused "a tenant removing flexpu.io/allocation" "flexpu.io/allocation" \
  kubectl --as="$tenant" annotate pod slice 'flexpu.io/allocation-'
kubectl --as="$tenant" annotate pod slice note=fine >/dev/null || fail "a tenant's other annotation was refused"
[ "$(kubectl get pod slice -o jsonpath='{.metadata.annotations.flexpu\.io/allocation}')" = "$alloc" ] ||
  fail "the allocation changed"
pass "a tenant may not change or remove the allocation of a bound pod (other annotations still may)"

# --- flexpu-scheduler deletes only borrowers (its reclaim when a budget refuses) ---
kubectl get validatingadmissionpolicy flexpu-scheduler-deletes >/dev/null ||
  fail "deploy/ did not create the delete policy"
sched=system:serviceaccount:flexpu-system:flexpu-scheduler
refused "flexpu-scheduler deleting a pod that does not borrow" "deletes only borrowers" \
  kubectl --as="$sched" delete pod other --wait=false
kubectl get pod other >/dev/null 2>&1 || fail "the refused delete deleted the pod"
kubectl --as="$tenant" create -f - >/dev/null \
  <<<"$(podjson lender "" '{"flexpu.io/opportunistic":"true"}' '"ephemeral-storage":"1Gi"' other-scheduler)" ||
  fail "an opportunistic pod was refused"
refused "flexpu-scheduler deleting an opportunistic pod with no borrowed allocation" \
  "deletes only borrowers" kubectl --as="$sched" delete pod lender --wait=false
borrowed='{"flexpu.io/allocation":"{\"gpus\":[{\"uuid\":\"GPU-a\",\"index\":0,\"cores\":30,\"memory\":1073741824}],\"borrowed\":true}"}'
kubectl --as="$sched" create --raw /api/v1/namespaces/default/pods/lender/binding -f - \
  <<<"$(binding lender "$borrowed")" >/dev/null || fail "flexpu-scheduler could not bind a borrower"
kubectl --as="$sched" delete pod lender --wait=false >"$work/out" 2>&1 ||
  fail "flexpu-scheduler could not delete a borrower: $(cat "$work/out")"
pass "flexpu-scheduler may delete a borrower (RBAC delete on pods), and no other pod (the policy)"

# --- flexpu.io/remote-endpoint: the node agents' only write on pods ---
kubectl get validatingadmissionpolicy flexpu-remote-endpoint >/dev/null ||
  fail "deploy/ did not create the remote endpoint policy"
agent=system:serviceaccount:flexpu-system:flexpu-node
# The chart's node.remote lets the agents patch pods (deploy/rbac.yaml does
# not); here they may also create pods and patch their status, so that what
# is refused below is refused by the policy, not by RBAC.
kubectl create clusterrole flexpu-node-remote-e2e --verb=create,get,patch \
  --resource=pods,pods/status >/dev/null
kubectl create clusterrolebinding flexpu-node-remote-e2e --clusterrole=flexpu-node-remote-e2e \
  --serviceaccount=flexpu-system:flexpu-node >/dev/null
kubectl --as="$tenant" create -f - >/dev/null \
  <<<"$(podjson remote "" '{"flexpu.io/remote":"allowed","note":"a"}' '"flexpu.io/gpu":"1"' other-scheduler)" ||
  fail "a remote-allowed pod was refused"
kubectl label pod remote team=ml >/dev/null || fail "the admin could not label the pod"
uid="$(kubectl get pod remote -o jsonpath='{.metadata.uid}')"
endpoint() { kubectl get pod remote -o jsonpath='{.metadata.annotations.flexpu\.io/remote-endpoint}'; }
# agent_patch JSON-of-metadata-fields-and-more: a merge patch as the GPU
# node's agent sends it (the pod's UID as precondition, remote_agent.c).
agent_patch() { kubectl --as="$agent" patch pod remote --type=merge -p "$1"; }
ann() { printf '{"metadata":{"uid":"%s","annotations":%s}}' "$uid" "$1"; }

agent_patch "$(ann '{"flexpu.io/remote-endpoint":"10.0.0.7:7100"}')" >"$work/out" 2>&1 ||
  fail "the node agent could not record the endpoint: $(cat "$work/out")"
[ "$(endpoint)" = 10.0.0.7:7100 ] || fail "the endpoint is '$(endpoint)', want 10.0.0.7:7100"
agent_patch "$(ann '{"flexpu.io/remote-endpoint":"10.0.0.7:7101"}')" >"$work/out" 2>&1 ||
  fail "the node agent could not change the endpoint (a restarted server's port): $(cat "$work/out")"
[ "$(endpoint)" = 10.0.0.7:7101 ] || fail "the endpoint is '$(endpoint)', want 10.0.0.7:7101"
pass "the node agents' account records and changes flexpu.io/remote-endpoint (a merge patch with the UID, as remote_agent.c sends it)"

refused "the agent setting the endpoint and another annotation" "metadata.annotations: flexpu-node" \
  agent_patch "$(ann '{"flexpu.io/remote-endpoint":"10.0.0.7:7102","other":"x"}')"
refused "the agent changing another annotation" "metadata.annotations: flexpu-node" \
  agent_patch "$(ann '{"note":"b"}')"
refused "the agent removing another annotation" "metadata.annotations: flexpu-node" \
  agent_patch "$(ann '{"note":null}')"
# Two policies refuse it, and the API server answers with whichever it
# evaluated first: both messages name metadata.annotations.
refused "the agent changing flexpu.io/allocation" "metadata.annotations" \
  agent_patch "$(ann "$unlimited")"
refused "the agent changing a label" "metadata.labels: flexpu-node" \
  agent_patch "{\"metadata\":{\"uid\":\"$uid\",\"labels\":{\"team\":\"other\"}}}"
refused "the agent changing the spec" "spec: flexpu-node" \
  agent_patch '{"spec":{"activeDeadlineSeconds":60}}'
refused "the agent adding a finalizer" "metadata.finalizers: flexpu-node" \
  agent_patch '{"metadata":{"finalizers":["example.com/hold"]}}'
refused "the agent adding an owner" "metadata.ownerReferences: flexpu-node" \
  agent_patch "{\"metadata\":{\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"name\":\"gpu-1\",\"uid\":\"$uid\"}]}}"
refused "the agent writing a pod's status" "not UPDATE pods/status" \
  kubectl --as="$agent" patch pod remote --subresource=status --type=merge \
  -p '{"status":{"conditions":[{"type":"Ready","status":"False"}]}}'
refused "the agent creating a pod" "not CREATE pods" \
  kubectl --as="$agent" create -f - <<<"$(podjson agent-made "" '{}' '"ephemeral-storage":"1Gi"' other-scheduler)"
[ "$(endpoint)" = 10.0.0.7:7101 ] && [ "$(kubectl get pod remote -o jsonpath='{.metadata.labels.team}/{.metadata.annotations.note}/{.spec.activeDeadlineSeconds}')" = ml/a/ ] ||
  fail "a refused agent patch changed the pod: $(kubectl get pod remote -o json | jq -c '[.metadata.labels, .metadata.annotations, .spec.activeDeadlineSeconds]')"
pass "the agents' account may change nothing else of a pod (annotations, the allocation, labels, spec, finalizers, owners, status) nor create pods"

refused "a tenant changing the endpoint" "metadata.annotations[flexpu.io/remote-endpoint]" \
  kubectl --as="$tenant" annotate pod remote --overwrite flexpu.io/remote-endpoint=192.0.2.1:443
refused "a tenant removing the endpoint" "metadata.annotations[flexpu.io/remote-endpoint]" \
  kubectl --as="$tenant" annotate pod remote flexpu.io/remote-endpoint-
refused "a tenant setting an endpoint on another pod" "metadata.annotations[flexpu.io/remote-endpoint]" \
  kubectl --as="$tenant" annotate pod other flexpu.io/remote-endpoint=192.0.2.1:443
refused "a tenant's pod created with an endpoint" "metadata.annotations[flexpu.io/remote-endpoint]" \
  kubectl --as="$tenant" create -f - \
  <<<"$(podjson forged "" '{"flexpu.io/remote":"allowed","flexpu.io/remote-endpoint":"192.0.2.1:443"}' '"flexpu.io/gpu":"1"' other-scheduler)"
refused "a tenant's Binding with an endpoint" "metadata.annotations[flexpu.io/remote-endpoint]" \
  kubectl --as="$tenant" create --raw /api/v1/namespaces/default/pods/remote/binding -f - \
  <<<"$(binding remote '{"flexpu.io/remote-endpoint":"192.0.2.1:443"}')"
refused "flexpu-scheduler setting the endpoint" "metadata.annotations[flexpu.io/remote-endpoint]" \
  kubectl --as="$sched" create --raw /api/v1/namespaces/default/pods/remote/binding -f - \
  <<<"$(binding remote '{"flexpu.io/remote-endpoint":"192.0.2.1:443"}')"
refused "the cluster admin changing the endpoint" "metadata.annotations[flexpu.io/remote-endpoint]" \
  kubectl annotate pod remote --overwrite flexpu.io/remote-endpoint=192.0.2.1:443
kubectl --as="$tenant" annotate pod remote --overwrite note=b >/dev/null ||
  fail "a tenant's other annotation on a pod with an endpoint was refused"
[ "$(endpoint)" = 10.0.0.7:7101 ] || fail "the endpoint is '$(endpoint)' after the refusals, want 10.0.0.7:7101"
pass "nobody else may set, change or remove flexpu.io/remote-endpoint (a tenant, its pod or Binding, flexpu-scheduler, the cluster admin); other annotations still may"

# --- flexpu.io/remote-gpu-node: the label only flexpu-scheduler sets ---
# The chart's node.remote lets the scheduler patch pods (deploy/rbac.yaml
# does not): granted here, so that what is refused below is refused by
# the policy, not by RBAC.
kubectl create clusterrole flexpu-scheduler-remote-e2e --verb=patch --resource=pods >/dev/null
kubectl create clusterrolebinding flexpu-scheduler-remote-e2e \
  --clusterrole=flexpu-scheduler-remote-e2e --serviceaccount=flexpu-system:flexpu-scheduler >/dev/null
lbl=flexpu.io/remote-gpu-node
rlabel() { kubectl get pod "$1" -o jsonpath='{.metadata.labels.flexpu\.io/remote-gpu-node}'; }
rpodjson() { podjson "$1" "" '{"flexpu.io/remote":"allowed"}' '"flexpu.io/gpu":"1"' other-scheduler; }
refused "a tenant's pod created with $lbl" "metadata.labels[$lbl]: only flexpu-scheduler" \
  kubectl --as="$tenant" create -f - <<<"$(rpodjson rl-forged | jq -c --arg l "$lbl" '.metadata.labels = {($l): "gpu-1"}')"
kubectl --as="$tenant" create -f - >/dev/null <<<"$(rpodjson rl)" || fail "a remote-allowed pod was refused"
rluid="$(kubectl get pod rl -o jsonpath='{.metadata.uid}')"
refused "a tenant labelling its pod $lbl" "metadata.labels[$lbl]: only flexpu-scheduler" \
  kubectl --as="$tenant" label pod rl "$lbl=gpu-1"
refused "the cluster admin labelling a pod $lbl" "metadata.labels[$lbl]: only flexpu-scheduler" \
  kubectl label pod rl "$lbl=gpu-1"
# sched_patch JSON: a merge patch as flexpu-scheduler sends it before a
# Binding (kube_label_pod: the pod's UID as precondition, the label).
sched_patch() { kubectl --as="$sched" patch pod rl --type=merge -p "$1"; }
slabel() { printf '{"metadata":{"uid":"%s","labels":{"%s":"%s"}}}' "$rluid" "$lbl" "$1"; }
sched_patch "$(slabel gpu-1)" >"$work/out" 2>&1 ||
  fail "flexpu-scheduler could not label the pod: $(cat "$work/out")"
[ "$(rlabel rl)" = gpu-1 ] || fail "the label is '$(rlabel rl)', want gpu-1"
sched_patch "$(slabel gpu-2)" >"$work/out" 2>&1 ||
  fail "flexpu-scheduler could not change the label (a pod placed again): $(cat "$work/out")"
[ "$(rlabel rl)" = gpu-2 ] || fail "the label is '$(rlabel rl)', want gpu-2"
pass "flexpu-scheduler sets and changes $lbl (a merge patch with the UID, as bind.c sends it)"

refused "a tenant changing $lbl" "metadata.labels[$lbl]: only flexpu-scheduler" \
  kubectl --as="$tenant" label pod rl --overwrite "$lbl=gpu-1"
refused "a tenant removing $lbl" "metadata.labels[$lbl]: only flexpu-scheduler" \
  kubectl --as="$tenant" label pod rl "$lbl-"
refused "the cluster admin removing $lbl" "metadata.labels[$lbl]: only flexpu-scheduler" \
  kubectl label pod rl "$lbl-"
refused "the node agents changing $lbl" "metadata.labels" \
  kubectl --as="$agent" label pod rl --overwrite "$lbl=gpu-1"
refused "flexpu-scheduler changing another label" "metadata: flexpu-scheduler may change only" \
  sched_patch '{"metadata":{"labels":{"team":"x"}}}'
refused "flexpu-scheduler changing an annotation beside the label" "metadata: flexpu-scheduler may change only" \
  sched_patch "$(slabel gpu-1 | jq -c '.metadata.annotations = {"note": "x"}')"
refused "flexpu-scheduler changing the spec" "spec, status: flexpu-scheduler may change only" \
  sched_patch '{"spec":{"activeDeadlineSeconds":60}}'
kubectl --as="$tenant" label pod rl team=ml >/dev/null || fail "a tenant's other label was refused"
[ "$(rlabel rl)" = gpu-2 ] && [ -z "$(kubectl get pod rl -o jsonpath='{.metadata.annotations.note}{.spec.activeDeadlineSeconds}')" ] ||
  fail "a refused request changed the pod: $(kubectl get pod rl -o json | jq -c '[.metadata.labels, .metadata.annotations, .spec.activeDeadlineSeconds]')"
pass "nobody else may set, change or remove $lbl (a tenant, its pod, the cluster admin, the node agents); flexpu-scheduler's pod updates change nothing else"

# A remote pod bound without the label (by a scheduler before this one):
# the running flexpu-scheduler labels it with its GPU node, through the
# policy, with its own token.
kubectl --as="$tenant" create -f - >/dev/null <<<"$(rpodjson rl-old)" || fail "a remote-allowed pod was refused"
remote_alloc='{"flexpu.io/allocation":"{\"gpus\":[{\"uuid\":\"GPU-a\",\"index\":0,\"cores\":30,\"memory\":1073741824}],\"remote\":{\"node\":\"gpu-9\"}}"}'
kubectl --as="$sched" create --raw /api/v1/namespaces/default/pods/rl-old/binding -f - \
  <<<"$(binding rl-old "$remote_alloc")" >/dev/null || fail "flexpu-scheduler could not bind a remote pod"
old_labelled() { [ "$(rlabel rl-old)" = gpu-9 ]; }
wait_for 20 "flexpu-scheduler did not label the remote pod bound without the label" old_labelled
grep -q 'remote pod labelled with its GPU node.*pod=default/rl-old' "$work/scheduler.log" ||
  fail "the scheduler's log does not say it labelled rl-old"
pass "a remote pod bound without $lbl: flexpu-scheduler labels it with its GPU node (gpu-9)"

# A label left on a pod then bound to a local slice (a remote attempt whose
# Binding failed): the running flexpu-scheduler removes it.
kubectl --as="$sched" create --raw /api/v1/namespaces/default/pods/rl/binding -f - \
  <<<"$(binding rl "$unlimited")" >/dev/null || fail "flexpu-scheduler could not bind a local pod"
unlabelled() { [ -z "$(rlabel rl)" ]; }
wait_for 20 "flexpu-scheduler did not remove the label from a pod bound to a local slice" unlabelled
pass "a pod bound to a local slice with a stale $lbl: flexpu-scheduler removes it"
