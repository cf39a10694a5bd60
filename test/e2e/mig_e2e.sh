#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end test of the MIG hard mode (docs/KUBERNETES.md, "Sharing modes") on a
# real API server (test/cluster), the node agent on the fake NVML's MIG:
#  - flexpu-node --sharing-mode mig --mig-layout 3g.40gb,4g.40gb on two GPUs, GPU 0
#    MIG-capable and GPU 1 not: the Node's inventory lists GPU 0's two MIG devices
#    (MIG- UUIDs, "mig" profiles, models A100-SXM4-80GB-MIG-<profile>) and GPU 1 as a
#    plain GPU; the Node is labelled flexpu.io/sharing-mode=mig, capacity 300 cores;
#  - flexpu-scheduler binds a pod asking a whole GPU of a MIG model to that MIG device
#    (cores 100), a pod asking 30% of a GPU to the plain GPU and never to a MIG device
#    (two of them: the second waits rather than take one), and tells a pod asking a
#    share of a MIG model why it cannot have one;
#  - the agent restarted adopts the same MIG devices (same UUIDs);
#  - with a process on the 4g instance, the agent started with a layout without it
#    refuses to start, naming the GPU, the instance and the process, and the GPU's
#    instances are unchanged.
#
#   mig_e2e.sh BUILD_DIR
E2E_NAME=mig-e2e E2E_LOGS="node.log scheduler.log"
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_up

kwok_agent_node gpu-m
export FAKECUDA_DEVICES=2 FAKECUDA_TOTAL_MEM=$((80 * 1073741824)) \
  FAKENVML_NAME="NVIDIA A100-SXM4-80GB" FAKENVML_MIG=0 FAKENVML_MIG_PROCS="$work/procs"
agent() { start_node gpu-m --sharing-mode mig --mig-layout "$1"; } # layout; pid in $node_pid
agent 3g.40gb,4g.40gb

inventory() { kubectl get node gpu-m -o jsonpath='{.metadata.annotations.flexpu\.io/gpus}'; }
has_inventory() { test -n "$(inventory)"; }
wait_for 20 "flexpu-node published no inventory" has_inventory
inv="$(inventory)"
[ "$(jq length <<<"$inv")" = 3 ] || fail "want 3 GPUs (2 MIG devices, 1 plain): $inv"
[ "$(jq -r '[.[] | select(.mig) | .uuid[:4]] | unique | .[]' <<<"$inv")" = MIG- ] || fail "MIG UUIDs: $inv"
[ "$(jq -r '[.[] | select(.mig) | .model] | sort | join(" ")' <<<"$inv")" = \
  "A100-SXM4-80GB-MIG-3g.40gb A100-SXM4-80GB-MIG-4g.40gb" ] || fail "MIG models: $inv"
[ "$(jq -r '.[] | select(.mig | not) | .model' <<<"$inv")" = A100-SXM4-80GB ] || fail "plain GPU: $inv"
label="$(kubectl get node gpu-m -o jsonpath='{.metadata.labels.flexpu\.io/sharing-mode}')"
[ "$label" = mig ] || fail "label flexpu.io/sharing-mode is '$label'"
cores="$(kubectl get node gpu-m -o jsonpath='{.status.allocatable.flexpu\.io/gpu-cores}')"
[ "$cores" = 300 ] || fail "allocatable flexpu.io/gpu-cores is '$cores', want 300"
pass "flexpu-node in mig mode publishes 2 MIG devices and 1 plain GPU; label sharing-mode=mig"

# --- the scheduler: MIG devices whole, shares elsewhere ---
start_scheduler
pod() { # name cores [model]
  local ann=""
  [ -n "${3:-}" ] && ann=",\"annotations\":{\"flexpu.io/gpu-model\":\"$3\"}"
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default"$ann},
 "spec":{"schedulerName":"flexpu-scheduler","nodeSelector":{"flexpu.io/sharing-mode":"mig"},
   "containers":[{"name":"main","image":"x","resources":{"limits":{"cpu":"1","memory":"1Gi",
   "flexpu.io/gpu":"1","flexpu.io/gpu-cores":"$2"}}}]}}
EOF
}
alloc() { kubectl get pod "$1" -o jsonpath='{.metadata.annotations.flexpu\.io/allocation}'; }
has_alloc() { test -n "$(alloc "$1")"; }
mig3="$(jq -r '.[] | select(.mig == "3g.40gb") | .uuid' <<<"$inv")"
plain="$(jq -r '.[] | select(.mig | not) | .uuid' <<<"$inv")"
pod whole-mig 100 A100-SXM4-80GB-MIG-3g.40gb
wait_for 20 "the whole-GPU pod of a MIG model was not bound" has_alloc whole-mig
a="$(alloc whole-mig)"
[ "$(jq -r '.gpus[0].uuid' <<<"$a")" = "$mig3" ] && [ "$(jq '.gpus[0].cores' <<<"$a")" = 100 ] ||
  fail "whole-mig allocation: $a (want $mig3, cores 100)"
pass "a pod asking a whole A100-SXM4-80GB-MIG-3g.40gb gets the MIG device, cores 100"

pod share-a 30
wait_for 20 "the 30% pod was not bound" has_alloc share-a
[ "$(jq -r '.gpus[0].uuid' <<<"$(alloc share-a)")" = "$plain" ] || fail "share-a: $(alloc share-a)"
pod share-b 80
wait_event share-b "no node fits"
[ -z "$(alloc share-b)" ] || fail "share-b took $(alloc share-b): the 4g MIG device was free but is whole only"
pass "shares of a GPU go to the plain GPU; one that no longer fits there waits rather than take the free MIG device"

pod share-mig 50 A100-SXM4-80GB-MIG-4g.40gb
wait_event share-mig "allocated whole"
pass "a share of a MIG model is refused with the reason"

# --- a restart adopts ---
stop_agent() { kill -TERM "$node_pid"; wait "$node_pid" 2>/dev/null || true; }
same_devices_after() { # layout, when (for the failures): the agent again, its inventory anew
  kubectl annotate node gpu-m flexpu.io/gpus- >/dev/null
  agent "$1"
  wait_for 20 "flexpu-node published no inventory $2" has_inventory
  [ "$(jq -c '[.[].uuid] | sort' <<<"$(inventory)")" = "$(jq -c '[.[].uuid] | sort' <<<"$inv")" ] ||
    fail "$2, the devices changed: $(inventory), was $inv"
}
stop_agent
same_devices_after 4g.40gb,3g.40gb "after the restart"
pass "flexpu-node restarted adopts the same MIG devices"

# --- a busy instance that the new layout would destroy ---
stop_agent
gi4="$(grep -o 'msg="MIG instance adopted" gpu=[^ ]* gi=[0-9]* profile=4g.40gb' "$work/node.log" |
  tail -n 1 | sed 's/.* gi=\([0-9]*\) .*/\1/')"
[ -n "$gi4" ] || fail "no adopted 4g instance in the agent's log"
echo "0 $gi4 4242" >"$work/procs"
agent "1g.10gb*7"
if wait "$node_pid"; then fail "flexpu-node started with a layout that destroys a busy instance"; fi
grep -q "MIG instance $gi4 (4g.40gb) runs process 4242 and --mig-layout '1g.10gb\*7' has no place for it" \
  "$work/node.log" || fail "the refusal does not name the instance and the process"
: >"$work/procs"
same_devices_after 3g.40gb,4g.40gb "after the refused layout"
pass "a layout that would destroy a busy instance is refused (instance, process named); nothing changed"
