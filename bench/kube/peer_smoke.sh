#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Smoke test of the peer scheduler with gangs and queues that the Kubernetes
# benchmark can compare flexpu with (docs/KUBERNETES.md, "Peers with queues
# and gangs"): the scheduler of sigs.k8s.io/scheduler-plugins v0.33.5 with its
# Coscheduling (PodGroup, minMember: all or nothing) and CapacityScheduling
# (ElasticQuota min/max per namespace) plugins, on test/cluster with kwok
# nodes. Not part of CI; needs no flexpu build.
#
#   bench/kube/peer_smoke.sh      (KEEP=1 keeps the work directory and logs)
#
# Builds the peer once (test/cluster/build-binaries.sh --peers, minutes),
# starts the control plane, applies the PodGroup and ElasticQuota CRDs, runs
# the peer under the profile "scheduler-plugins" and, on 2 kwok nodes of 8
# nvidia.com/gpu each, checks:
#   1. a gang of 3 pods x 6 GPUs (minMember 3): 2 would fit, so none binds;
#   2. a gang of 3 pods x 4 GPUs: all 3 bind, and the first gang still has none;
#   3. in a namespace whose ElasticQuota has max 2 GPUs, a pod of 2 binds and
#      a pod of 1 more waits on the quota although 2 GPUs are still free.
# Exits 0 when all hold; otherwise prints the pods, events and the peer's log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
name=peer-smoke
sched=scheduler-plugins

bin="$("$root/test/cluster/build-binaries.sh" --peers)"
work="$(mktemp -d "/tmp/flexpu-$name.XXXXXX")"
peer_pid=""
cleanup() {
  [ -z "$peer_pid" ] || { kill "$peer_pid" 2>/dev/null || true; wait "$peer_pid" 2>/dev/null || true; }
  "$root/test/cluster/cluster.sh" down "$work/cluster" || true
  if [ "${KEEP:-0}" = 1 ]; then echo "$name: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$root/test/cluster/cluster.sh" up "$work/cluster" >/dev/null
# shellcheck disable=SC1091
. "$work/cluster/env"

fail() {
  echo "$name: FAIL: $*" >&2
  echo "--- pods:" >&2
  kubectl get pods -A -o wide >&2 || true
  echo "--- events:" >&2
  kubectl get events -A --sort-by=.lastTimestamp \
    -o custom-columns=NS:.metadata.namespace,OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message >&2 || true
  echo "--- $sched.log (tail):" >&2
  tail -n 30 "$work/$sched.log" >&2 || true
  exit 1
}
pass() { echo "$name: ok   $1"; }

# bound NAMESPACE SELECTOR: how many of the pods the selector picks have a node.
bound() {
  kubectl get pods -n "$1" -l "$2" -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' |
    grep -c . || true
}
# wait_bound SECS NAMESPACE SELECTOR N: until N of them are bound.
wait_bound() {
  local i
  for i in $(seq 1 $(($1 * 5))); do
    [ "$(bound "$2" "$3")" -ge "$4" ] && return 0
    sleep 0.2
  done
  return 1
}
# why NAMESPACE POD: the message of the pod's PodScheduled condition, which
# the scheduler writes at once (its events can take a minute to show).
why() {
  kubectl get pod -n "$1" "$2" -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}'
}
show() { # namespace: the pods, where they went, and why not
  local p node
  for p in $(kubectl get pods -n "$1" -o jsonpath='{.items[*].metadata.name}'); do
    node="$(kubectl get pod -n "$1" "$p" -o jsonpath='{.spec.nodeName}')"
    printf '  %s/%s: node %s%s\n' "$1" "$p" "${node:-(none)}" "${node:+, bound}"
    [ -n "$node" ] || printf '    %s\n' "$(why "$1" "$p")"
  done
}

crds="$bin/scheduler-plugins-crds"
kubectl apply -f "$crds/scheduling.x-k8s.io_podgroups.yaml" \
  -f "$crds/scheduling.x-k8s.io_elasticquotas.yaml" >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
  crd/podgroups.scheduling.x-k8s.io crd/elasticquotas.scheduling.x-k8s.io >/dev/null
pass "PodGroup and ElasticQuota CRDs from the module cache are established"

# One profile with both plugins, as the module's own Helm chart composes them
# (manifests/install/charts/as-a-second-scheduler): Coscheduling sorts the
# queue (so PrioritySort goes) and CapacityScheduling preempts within quotas
# (so DefaultPreemption goes, as in manifests/capacityscheduling). A gang
# waits at most permitWaitingTimeSeconds for its last member (default 60).
cat >"$work/$sched.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection:
  leaderElect: false
clientConnection:
  kubeconfig: $KUBECONFIG
profiles:
- schedulerName: $sched
  plugins:
    multiPoint:
      enabled:
      - name: Coscheduling
      - name: CapacityScheduling
      disabled:
      - name: PrioritySort
      - name: DefaultPreemption
  pluginConfig:
  - name: Coscheduling
    args:
      permitWaitingTimeSeconds: 5
EOF
"$bin/scheduler-plugins" --config "$work/$sched.yaml" \
  --authentication-kubeconfig "$KUBECONFIG" --authorization-kubeconfig "$KUBECONFIG" \
  --bind-address 127.0.0.1 --secure-port "$("$root/test/cluster/cluster.sh" port .)" \
  >"$work/$sched.log" 2>&1 &
peer_pid=$!

# Two kwok nodes of 8 GPUs, as flexpu-kbench makes them for kube-scheduler.
for n in peer-node-0 peer-node-1; do
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Node","metadata":{"name":"$n","labels":{"type":"kwok"},
 "annotations":{"kwok.x-k8s.io/node":"fake"}},
 "status":{"allocatable":{"cpu":"64","memory":"512Gi","pods":"110","nvidia.com/gpu":"8"},
  "capacity":{"cpu":"64","memory":"512Gi","pods":"110","nvidia.com/gpu":"8"}}}
EOF
done
kubectl wait --for=condition=Ready --timeout=60s node/peer-node-0 node/peer-node-1 >/dev/null ||
  fail "the kwok nodes did not become Ready"

pod() { # namespace name gpus [group]
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$2","namespace":"$1",
  "labels":{"app":"$name"${4:+,\"scheduling.x-k8s.io/pod-group\":\"$4\"}}},
 "spec":{"schedulerName":"$sched","containers":[{"name":"c","image":"fake",
  "resources":{"limits":{"nvidia.com/gpu":"$3"}}}]}}
EOF
}
podgroup() { # namespace name min-member
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"scheduling.x-k8s.io/v1alpha1","kind":"PodGroup",
 "metadata":{"name":"$2","namespace":"$1"},"spec":{"minMember":$3,"scheduleTimeoutSeconds":5}}
EOF
}

# 1. A gang that cannot fit: 3 x 6 GPUs on 2 x 8. One pod per node would fit;
# all or nothing binds none.
kubectl create namespace gangs >/dev/null
podgroup gangs too-big 3
for i in 0 1 2; do pod gangs "too-big-$i" 6 too-big; done
sel_big=scheduling.x-k8s.io/pod-group=too-big
tried=0
for _ in $(seq 1 150); do
  if { why gangs too-big-0; why gangs too-big-1; why gangs too-big-2; } | grep -q .; then
    tried=1
    break
  fi
  sleep 0.2
done
[ "$tried" = 1 ] || fail "the peer never reported on gang too-big (is it running?)"
# Longer than permitWaitingTimeSeconds: a member held at Permit would be
# bound by now if the gang were not all or nothing.
sleep 8
n="$(bound gangs "$sel_big")"
[ "$n" = 0 ] || fail "gang too-big (minMember 3, 3 x 6 GPUs on 2 x 8) has $n of 3 pods bound; want 0"
pass "gang too-big (3 x 6 GPUs on 2 nodes x 8): 0 of 3 bound, all or nothing"
show gangs

# 2. A gang that fits: 3 x 4 GPUs.
podgroup gangs fits 3
for i in 0 1 2; do pod gangs "fits-$i" 4 fits; done
wait_bound 60 gangs scheduling.x-k8s.io/pod-group=fits 3 ||
  fail "gang fits (3 x 4 GPUs on 2 x 8) has $(bound gangs scheduling.x-k8s.io/pod-group=fits) of 3 bound after 60 s"
n="$(bound gangs "$sel_big")"
[ "$n" = 0 ] || fail "gang too-big has $n pods bound after gang fits; want 0"
pass "gang fits (3 x 4 GPUs): 3 of 3 bound; too-big still 0 of 3"
show gangs

# 3. A queue with a ceiling: ElasticQuota max 2 GPUs in namespace team-b.
# CapacityScheduling also rejects a pod when all quotas together would use
# more than the sum of their min, so min is 2 too.
kubectl create namespace team-b >/dev/null
kubectl create -f - >/dev/null <<EOF
{"apiVersion":"scheduling.x-k8s.io/v1alpha1","kind":"ElasticQuota",
 "metadata":{"name":"team-b","namespace":"team-b"},
 "spec":{"min":{"nvidia.com/gpu":"2"},"max":{"nvidia.com/gpu":"2"}}}
EOF
# The peer learns quotas from its informer; give it a moment.
sleep 2
pod team-b b-0 2
wait_bound 30 team-b "app=$name" 1 || fail "pod team-b/b-0 (2 GPUs, quota max 2) is not bound after 30 s"
pod team-b b-1 1
for _ in $(seq 1 100); do
  why team-b b-1 | grep -q 'more than Max' && break
  sleep 0.2
done
why team-b b-1 | grep -q 'more than Max' ||
  fail "pod team-b/b-1 is not held by its quota's max: $(why team-b b-1)"
[ -z "$(kubectl get pod -n team-b b-1 -o jsonpath='{.spec.nodeName}')" ] ||
  fail "pod team-b/b-1 is bound past its quota's max"
pass "ElasticQuota max 2 GPUs: b-0 (2) bound, b-1 (1 more) waits on the quota with 2 GPUs free"
show team-b
echo "$name: all checks passed (KEEP=1 keeps the peer's log, $sched.log in the work directory)"
