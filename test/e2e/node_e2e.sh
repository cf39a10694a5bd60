#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end test of the node agent and the deploy/ manifests on a real API
# server (test/cluster):
#  - deploy/ applies cleanly; flexpu-scheduler and flexpu-node then run with
#    their own service accounts' tokens, so the RBAC rules are proven
#    sufficient (and a few verbs they must not have are checked);
#  - flexpu-node, on the fake NVML with 8 GPUs, publishes the inventory and
#    the node-level extended resources on its kwok Node;
#  - dppeer, a kubelet built from the official deviceplugin/v1beta1 and
#    podresources/v1 stubs, drives the device plugin: registration,
#    ListAndWatch through a health change, concurrent Allocate and
#    PreStartContainer for the pods flexpu-scheduler bound, a bad device,
#    and re-registration after a kubelet restart;
#  - metrics are served; slice directories go when their pods go;
#  - the root holds what the agent makes (lib/, ld.so.preload, slices/,
#    ledger/, arb/) and no shared state directory (no slice mounts one; only
#    remote slices' servers use it, and this agent runs none);
#  - where this machine lets root mount (CI), each slice's ledger is a
#    size-limited tmpfs mount (--size-limits=local) that goes with its
#    slice; elsewhere the agent runs with --size-limits=off.
#
#   node_e2e.sh BUILD_DIR
E2E_NAME=node-e2e E2E_LOGS="node.log scheduler.log dppeer.log"
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
# The tmpfs mounts the agent made under $work (it leaves them to the
# containers when it stops); mountinfo writes a space as \040.
e2e_on_exit() {
  awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sed 's/\\040/ /g' |
    sort -r | while IFS= read -r m; do umount -l "$m" 2>/dev/null || true; done
}
e2e_up


# --- deploy/ applies, and its RBAC is what the components need ---
kubectl apply -k "$root/deploy" >"$work/apply.log" 2>&1 || { cat "$work/apply.log" >&2; fail "kubectl apply -k deploy"; }
for o in namespace/flexpu-system configmap/flexpu-config deployment/flexpu-scheduler \
         daemonset/flexpu-node serviceaccount/flexpu-node clusterrole/flexpu-scheduler; do
  kubectl get -n flexpu-system "$o" >/dev/null || fail "deploy/ did not create $o"
done
can() { kubectl auth can-i --as="system:serviceaccount:flexpu-system:$1" "${@:2}" 2>/dev/null; }
[ "$(can flexpu-scheduler create pods --subresource=binding -n default)" = yes ] || fail "scheduler cannot bind"
# Deletes: RBAC allows them (reclaimed borrowers); deploy/admission.yaml's
# flexpu-scheduler-deletes limits them to borrowers (admission_e2e.sh checks it).
[ "$(can flexpu-scheduler delete pods -n default)" = yes ] || fail "scheduler cannot delete a borrower"
[ "$(can flexpu-scheduler deletecollection pods -n default)" = no ] || fail "scheduler may delete collections of pods"
[ "$(can flexpu-scheduler update leases/other -n flexpu-system)" = no ] || fail "scheduler may update any lease"
[ "$(can flexpu-node patch nodes --subresource=status)" = yes ] || fail "node agent cannot patch node status"
[ "$(can flexpu-node create pods -n default)" = no ] || fail "node agent may create pods"
[ "$(can flexpu-node list secrets -A)" = no ] || fail "node agent may list secrets"
pass "deploy/ applies; RBAC grants what is needed and not more"

# A kubeconfig with a service account's token (TokenRequest API).
sa_kubeconfig() { # sa out
  local token
  token="$(kubectl create token "$1" -n flexpu-system --duration=1h)"
  kubectl config view --raw --minify -o json |
    jq --arg t "$token" '.users[0].user = {token: $t}' >"$2"
}
sa_kubeconfig flexpu-node "$work/node.kubeconfig"
sa_kubeconfig flexpu-scheduler "$work/scheduler.kubeconfig"

# --- a kwok GPU node and the agent on it ---
kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Node","metadata":{"name":"gpu-1","labels":{"type":"kwok","flexpu.io/gpu-node":"true"},
 "annotations":{"kwok.x-k8s.io/node":"fake"}},
 "status":{"allocatable":{"cpu":"64","memory":"512Gi","pods":"110"},
  "capacity":{"cpu":"64","memory":"512Gi","pods":"110"}}}
EOF
mkdir -p "$work/dp"
lost="$work/lost-gpus"
: >"$lost"
metrics_port="$(free_port)"
# Size limits need CAP_SYS_ADMIN: probe it.
size_limits=off
mkdir -p "$work/probe"
if mount -t tmpfs -o size=64k flexpu-probe "$work/probe" 2>/dev/null; then
  umount "$work/probe"
  size_limits=local
fi
FAKECUDA_DEVICES=8 FAKECUDA_TOTAL_MEM=$((80 * 1073741824)) FAKENVML_NAME="NVIDIA A100-SXM4-80GB" \
FAKENVML_NUMA=0,0,0,0,1,1,1,1 FAKENVML_NVLINK=0-3,4-7 FAKENVML_LOST_FILE="$lost" \
  "$build/flexpu-node" --kubeconfig "$work/node.kubeconfig" --node-name gpu-1 \
  --nvml-library "$build/test/fakecuda/libnvidia-ml.so.1" \
  --device-plugin-dir "$work/dp" --pod-resources-socket "$work/podresources.sock" \
  --root "$work/root" --runtime-library "$build/libflexpu-cuda.so" --size-limits "$size_limits" \
  --metrics-address 127.0.0.1 --metrics-port "$metrics_port" --log-level debug \
  >"$work/node.log" 2>&1 &
pids+=($!)

inventory() { kubectl get node gpu-1 -o jsonpath='{.metadata.annotations.flexpu\.io/gpus}'; }
# A function, so that each try reads the node again (an argument
# "$(inventory)" would be expanded once, before the first try).
has_inventory() { test -n "$(inventory)"; }
wait_for 20 "flexpu-node published no inventory" has_inventory
inv="$(inventory)"
[ "$(jq length <<<"$inv")" = 8 ] || fail "inventory has $(jq length <<<"$inv") GPUs, want 8: $inv"
[ "$(jq -r '[.[].group] | unique | length' <<<"$inv")" = 2 ] || fail "want 2 NVLink groups: $inv"
[ "$(jq -r '.[0].model' <<<"$inv")" = A100-SXM4-80GB ] || fail "model: $inv"
[ "$(jq -r '.[7].numa' <<<"$inv")" = 1 ] || fail "numa: $inv"
cores="$(kubectl get node gpu-1 -o jsonpath='{.status.allocatable.flexpu\.io/gpu-cores}')"
[ "$cores" = 800 ] || fail "node allocatable flexpu.io/gpu-cores is '$cores', want 800"
[ -x "$work/root/lib/libflexpu-cuda.so" ] || fail "runtime library not installed"
grep -qx /usr/lib/flexpu/libflexpu-cuda.so "$work/root/ld.so.preload" || fail "ld.so.preload content"
# What the root holds: no state/, which under the agent nothing mounts or writes.
listing="$(cd "$work/root" && ls -A | tr '\n' ' ')"
[ "$listing" = "arb borrowed ld.so.preload ledger lib slices " ] ||
  fail "the agent's root holds '$listing', want 'arb borrowed ld.so.preload ledger lib slices '"
pass "flexpu-node publishes 8 GPUs (models, NUMA, NVLink groups) and gpu-cores/gpu-memory capacity; its root holds no shared state directory"

# --- the scheduler places pods on it ---
"$build/flexpu-scheduler" --kubeconfig "$work/scheduler.kubeconfig" --leader-elect=true \
  --lease-namespace flexpu-system --log-level debug >"$work/scheduler.log" 2>&1 &
pids+=($!)
pod() { # name gpus [cores] [memory]
  local lim="\"cpu\":\"1\",\"memory\":\"1Gi\",\"flexpu.io/gpu\":\"$2\""
  [ -n "${3:-}" ] && lim="$lim,\"flexpu.io/gpu-cores\":\"$3\""
  [ -n "${4:-}" ] && lim="$lim,\"flexpu.io/gpu-memory\":\"$4\""
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default"},
 "spec":{"schedulerName":"flexpu-scheduler","containers":[{"name":"main","image":"x",
   "resources":{"limits":{$lim}}}]}}
EOF
}
pod whole-2a 2
pod whole-2b 2
pod slice-30a 1 30 8Gi
pod slice-30b 1 30 8Gi
pod slice-40 1 40
pod slice-50 1 50 16Gi
bound() { [ "$(kubectl get pods -o json | jq '[.items[] | select(.spec.nodeName == "gpu-1" and .metadata.annotations["flexpu.io/allocation"] != null)] | length')" = 6 ]; }
wait_for 30 "the scheduler (with its service account) did not bind 6 pods" bound
pass "flexpu-scheduler, running as its service account, binds 6 pods to the agent's node"

# --- a kubelet built from the official stubs drives the device plugin ---
# Its socket removed before any kubelet registered it (a kubelet cleaning its
# directory at start): the agent serves it again, and the registration below
# dials the new one.
wait_for 10 "flexpu-node does not serve its device plugin socket" test -S "$work/dp/flexpu-gpu.sock"
rm -f "$work/dp/flexpu-gpu.sock"
wait_for 10 "flexpu-node did not serve its removed socket again" test -S "$work/dp/flexpu-gpu.sock"
"$bin/dppeer" --dir "$work/dp" --podresources "$work/podresources.sock" \
  --kubeconfig "$KUBECONFIG" --node gpu-1 --gpus 8 --lost-file "$lost" --pods 6 --timeout 150 \
  >"$work/dppeer.log" 2>&1 || fail "dppeer failed"
grep 'dppeer:' "$work/dppeer.log" | sed 's/^/node-e2e:      /'
pass "device plugin: registration, health, concurrent Allocate/PreStart, bad device, kubelet restart"

# --- what tenants write is bounded ---
if [ "$size_limits" = local ]; then
  nledger=0
  for d in "$work"/root/ledger/*/; do
    [ "$(stat -f -c %T "$d")" = tmpfs ] || fail "ledger $d is not a tmpfs"
    nledger=$((nledger + 1))
  done
  [ "$nledger" -ge 6 ] || fail "want a ledger directory per slice, found $nledger"
  # A tenant filling its ledger stops at the limit.
  d="$(ls -d "$work"/root/ledger/*/ | head -n 1)"
  if dd if=/dev/zero of="$d/fill" bs=1M count=64 2>"$work/dd.log"; then fail "64 MiB fit in a ledger"; fi
  grep -q 'No space left' "$work/dd.log" || fail "ledger fill: $(cat "$work/dd.log")"
  rm -f "$d/fill"
  pass "ledgers are size-limited tmpfs mounts ($nledger ledgers; a tenant's 64 MiB write stops at its limit)"
else
  echo "node-e2e: skip size limits: this machine does not let root mount a tmpfs"
fi

# --- metrics ---
m="$(curl -sf "http://127.0.0.1:$metrics_port/metrics")" || fail "no metrics"
[ "$(grep -c '^flexpu_gpu_info{' <<<"$m")" = 8 ] || fail "metrics: want 8 flexpu_gpu_info lines"
grep -q '^flexpu_gpu_healthy{uuid="GPU-[^"]*"} 1$' <<<"$m" || fail "metrics: no healthy GPU"
pass "metrics served"

# --- pods end: their slices go ---
[ "$(find "$work/root/slices" -name slice.conf | wc -l)" -ge 6 ] || fail "want 6 slice files"
kubectl delete pods --all --grace-period=0 --force --wait=true >/dev/null 2>&1
no_slices() { [ "$(find "$work/root/slices" -name slice.conf | wc -l)" = 0 ]; }
wait_for 20 "slice directories remain after their pods were deleted" no_slices
ledger_mounts() { awk -v w="$work/root/ledger/" 'index($5, w) == 1' /proc/self/mountinfo | wc -l; }
[ "$(ledger_mounts)" = 0 ] || fail "$(ledger_mounts) ledger tmpfs mounts remain after their pods ended"
pass "slices (and their ledger mounts) are removed when their pods end"

kill -TERM "${pids[0]}"
wait_for 10 "flexpu-node did not remove its socket on SIGTERM" test ! -e "$work/dp/flexpu-gpu.sock"
pass "flexpu-node stops cleanly"
