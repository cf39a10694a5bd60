#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The scheduling rules users rely on, on a real API server (test/cluster),
# with kube-scheduler as the reference: every case creates the same
# constraints on a flexpu pod (flexpu-scheduler, a GPU slice) and on a
# reference pod (the default scheduler, CPU only), and checks that both land
# on the same node (or zone) or both stay Pending with an event that says
# why.
#
#   rules_e2e.sh BUILD_DIR
#
# Rules: NoSchedule and NoExecute taints (skipped without a toleration, used
# with one), PreferNoSchedule (avoided when another node fits), cordon
# (spec.unschedulable), nodeSelector, required node affinity (In, NotIn,
# Exists + Gt, terms ORed), preferred node affinity, required and preferred
# inter-pod anti-affinity and affinity, and topology spread constraints
# (DoNotSchedule and ScheduleAnyway).
E2E_NAME=rules-e2e
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_on_fail() {
  echo "--- events:"
  kubectl get events -o custom-columns=OBJ:.involvedObject.name,REASON:.reason,MSG:.message || true
}
e2e_up
"$root/test/cluster/cluster.sh" scheduler "$work/cluster"

"$build/flexpu-scheduler" --kubeconfig "$KUBECONFIG" --lease-namespace kube-system \
  --log-level debug >>"$work/scheduler.log" 2>&1 &
pids+=($!)

# node NAME LABELS-JSON SPEC-JSON: a kwok node of 2 A100s with an inventory.
node() {
  local name="$1" labels="${2:-}" spec="${3:-}" inv="" i
  for i in 0 1; do
    [ -n "$inv" ] && inv="$inv,"
    inv="$inv{\\\"uuid\\\":\\\"GPU-$name-$i\\\",\\\"model\\\":\\\"A100\\\",\\\"memory\\\":85899345920,\\\"numa\\\":0,\\\"group\\\":0}"
  done
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Node","metadata":{"name":"$name","labels":{"type":"kwok"${labels:+,$labels}},
 "annotations":{"kwok.x-k8s.io/node":"fake","flexpu.io/gpus":"[$inv]"}},
 "spec":{${spec}},
 "status":{"allocatable":{"cpu":"64","memory":"512Gi","pods":"110","flexpu.io/gpu":"32",
   "flexpu.io/gpu-cores":"200","flexpu.io/gpu-memory":"160Gi"},
  "capacity":{"cpu":"64","memory":"512Gi","pods":"110","flexpu.io/gpu":"32",
   "flexpu.io/gpu-cores":"200","flexpu.io/gpu-memory":"160Gi"}}}
EOF
}

# pods NAME SPEC-JSON: NAME (flexpu-scheduler, a 20% slice) and NAME-ref (the
# default scheduler, 100m CPU), both with the spec members SPEC-JSON.
pods() {
  local name="$1" spec="${2:-}"
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$name","namespace":"default"},
 "spec":{"schedulerName":"flexpu-scheduler"${spec:+,$spec},"containers":[{"name":"c","image":"x",
   "resources":{"limits":{"cpu":"1","memory":"1Gi","flexpu.io/gpu":"1","flexpu.io/gpu-cores":"20"}}}]}}
EOF
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$name-ref","namespace":"default"},
 "spec":{${spec:+$spec,}"containers":[{"name":"c","image":"x",
   "resources":{"requests":{"cpu":"100m","memory":"64Mi"}}}]}}
EOF
}

node_of() { kubectl get pod "$1" -o jsonpath='{.spec.nodeName}' 2>/dev/null; }

events_of() {
  kubectl get events --field-selector "involvedObject.name=$1" \
    -o jsonpath='{range .items[*]}{.reason}: {.message}{"\n"}{end}' 2>/dev/null
}

wait_event() { # pod substring
  for _ in $(seq 1 150); do
    events_of "$1" | grep -qF -- "$2" && return 0
    sleep 0.2
  done
  fail "pod $1 has no event containing '$2' (events: $(events_of "$1" | tr '\n' ' '))"
}

# both_on NAME NODE: NAME and NAME-ref are bound to NODE.
both_on() {
  local p got
  for p in "$1" "$1-ref"; do
    got=""
    for _ in $(seq 1 150); do
      got=$(node_of "$p")
      [ -n "$got" ] && break
      sleep 0.2
    done
    [ "$got" = "$2" ] || fail "pod $p is on '${got:-nothing}', expected $2"
  done
}

# both_pending NAME FLEXPU-WORDS KUBE-WORDS: both stay unbound, each with
# its scheduler's event saying why.
both_pending() {
  wait_event "$1" "$2"
  wait_event "$1-ref" "$3"
  local p
  for p in "$1" "$1-ref"; do
    [ -z "$(node_of "$p")" ] || fail "pod $p was bound to $(node_of "$p")"
  done
}

reset() {
  kubectl delete pods --all --grace-period=0 --force --wait=true >/dev/null 2>&1 || true
  kubectl delete nodes --all --wait=true >/dev/null 2>&1 || true
  kubectl delete events --all >/dev/null 2>&1 || true
}


TOL_GPU='"tolerations":[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}]'

# ---- cases ----

case_no_schedule_taint() {
  reset
  node tainted '' '"taints":[{"key":"nvidia.com/gpu","value":"present","effect":"NoSchedule"}]'
  pods ns-plain
  both_pending ns-plain "untolerated taint {nvidia.com/gpu=present:NoSchedule}" "untolerated taint"
  pods ns-tolerant "$TOL_GPU"
  both_on ns-tolerant tainted
  # Equal needs the value too.
  pods ns-wrongvalue '"tolerations":[{"key":"nvidia.com/gpu","operator":"Equal","value":"absent"}]'
  both_pending ns-wrongvalue "untolerated taint" "untolerated taint"
  pass "NoSchedule taint: skipped without a toleration, used with one (Exists; Equal needs the value)"
}

case_no_execute_taint() {
  reset
  node dedicated '' '"taints":[{"key":"dedicated","value":"ml","effect":"NoExecute"}]'
  pods ne-plain
  both_pending ne-plain "untolerated taint {dedicated=ml:NoExecute}" "untolerated taint"
  # A toleration for another effect does not count.
  pods ne-noschedonly '"tolerations":[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]'
  both_pending ne-noschedonly "untolerated taint" "untolerated taint"
  pods ne-tolerant '"tolerations":[{"key":"dedicated","operator":"Equal","value":"ml","effect":"NoExecute","tolerationSeconds":3600}]'
  both_on ne-tolerant dedicated
  # An empty key with Exists tolerates every taint.
  pods ne-everything '"tolerations":[{"operator":"Exists"}]'
  both_on ne-everything dedicated
  pass "NoExecute taint: skipped without a toleration of that effect, used with one"
}

case_prefer_no_schedule() {
  reset
  node spot '' '"taints":[{"key":"spot","value":"true","effect":"PreferNoSchedule"}]'
  node ondemand
  local i
  for i in 1 2 3; do
    pods "pn-soft$i"
    both_on "pn-soft$i" ondemand
  done
  pass "PreferNoSchedule taint: another node that fits is preferred"
}

case_cordon() {
  reset
  node c1
  kubectl cordon c1 >/dev/null
  pods co-plain
  both_pending co-plain "untolerated taint {node.kubernetes.io/unschedulable:NoSchedule}" "unschedulable"
  pods co-tolerant '"tolerations":[{"key":"node.kubernetes.io/unschedulable","operator":"Exists","effect":"NoSchedule"}]'
  both_on co-tolerant c1
  kubectl uncordon c1 >/dev/null
  both_on co-plain c1
  pass "a cordoned node takes only pods tolerating node.kubernetes.io/unschedulable; uncordoned, the waiting pod is placed"
}

case_node_selector() {
  reset
  node train '"pool":"train"'
  node serve '"pool":"serve"'
  pods sel-sel '"nodeSelector":{"pool":"serve"}'
  both_on sel-sel serve
  pods sel-nosuch '"nodeSelector":{"pool":"batch"}'
  both_pending sel-nosuch "2 node affinity/selector mismatch" "didn't match Pod's node affinity/selector"
  # The waiting pod goes where a matching node appears.
  node batch '"pool":"batch"'
  both_on sel-nosuch batch
  pass "nodeSelector: exact label match; a pod waits until a matching node appears"
}

case_required_affinity() {
  reset
  node z1 '"zone":"z1","gen":"8"'
  node z2 '"zone":"z2","gen":"9"'
  node bare
  local req='"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":'
  pods req-in "$req[{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"In\",\"values\":[\"z2\",\"z9\"]}]}]}}}"
  both_on req-in z2
  # NotIn matches a node without the label.
  pods req-notin "$req[{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"NotIn\",\"values\":[\"z1\",\"z2\"]}]}]}}}"
  both_on req-notin bare
  # Requirements of a term are ANDed: zone exists and gen > 8.
  pods req-and "$req[{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"Exists\"},{\"key\":\"gen\",\"operator\":\"Gt\",\"values\":[\"8\"]}]}]}}}"
  both_on req-and z2
  # Terms are ORed: an unmatchable term beside one that matches z1 by name.
  pods req-or "$req[{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"In\",\"values\":[\"z7\"]}]},{\"matchFields\":[{\"key\":\"metadata.name\",\"operator\":\"In\",\"values\":[\"z1\"]}]}]}}}"
  both_on req-or z1
  pods req-none "$req[{\"matchExpressions\":[{\"key\":\"gen\",\"operator\":\"Lt\",\"values\":[\"8\"]}]}]}}}"
  both_pending req-none "3 node affinity/selector mismatch" "didn't match Pod's node affinity/selector"
  pass "required node affinity: In, NotIn (absent label matches), Exists AND Gt, terms ORed, matchFields, none matching"
}

case_preferred_affinity() {
  reset
  node gold '"tier":"gold"'
  node bronze '"tier":"bronze"'
  local pref='"affinity":{"nodeAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":'
  local i
  for i in 1 2 3; do
    pods "pref-w$i" "$pref[{\"weight\":10,\"preference\":{\"matchExpressions\":[{\"key\":\"tier\",\"operator\":\"In\",\"values\":[\"bronze\"]}]}},{\"weight\":60,\"preference\":{\"matchExpressions\":[{\"key\":\"tier\",\"operator\":\"In\",\"values\":[\"gold\"]}]}}]}}"
    both_on "pref-w$i" gold
  done
  # A preference nothing matches excludes nothing.
  pods pref-nomatch "$pref[{\"weight\":100,\"preference\":{\"matchExpressions\":[{\"key\":\"tier\",\"operator\":\"In\",\"values\":[\"platinum\"]}]}}]}}"
  for _ in $(seq 1 100); do [ -n "$(node_of pref-nomatch)" ] && break; sleep 0.2; done
  [ -n "$(node_of pref-nomatch)" ] || fail "a pod whose preference matches nothing was not placed"
  pass "preferred node affinity: the heavier matching term wins; an unmatched preference excludes nothing"
}

# app_pod NAME SCHEDULER APP SPEC [NODE]: a pod labelled app=APP with the spec
# fields SPEC (empty, or ending in a comma), for SCHEDULER (flexpu: a 20%
# slice; default: 100m CPU), or bound to NODE directly when given.
app_pod() {
  local name="$1" sched="$2" app="$3" spec="$4" on="${5:-}" res
  if [ "$sched" = flexpu ]; then
    sched='"schedulerName":"flexpu-scheduler",'
    res='"limits":{"cpu":"1","memory":"1Gi","flexpu.io/gpu":"1","flexpu.io/gpu-cores":"20"}'
  else
    sched=""
    res='"requests":{"cpu":"100m","memory":"64Mi"}'
  fi
  [ -n "$on" ] && sched="\"nodeName\":\"$on\","
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$name","namespace":"default","labels":{"app":"$app"}},
 "spec":{$sched$spec"containers":[{"name":"c","image":"x","resources":{$res}}]}}
EOF
}

# ipod NAME SCHEDULER APP AFFINITY-JSON [NODE]: app_pod with spec.affinity
# AFFINITY-JSON (may be empty).
ipod() {
  local aff="${4:-}"
  [ -n "$aff" ] && aff="\"affinity\":$aff,"
  app_pod "$1" "$2" "$3" "$aff" "${5:-}"
}

# wait_bound POD...: each is bound (or the wait runs out).
wait_bound() {
  local p
  for p in "$@"; do
    for _ in $(seq 1 150); do [ -n "$(node_of "$p")" ] && break; sleep 0.2; done
  done
}

# Required pod anti-affinity one per node, the third replica pending until a
# node appears; required pod affinity to a pod already running. The flexpu
# pods select app=fx, the reference pods app=ref: the two sets never meet.
case_inter_pod_affinity() {
  reset
  node h1 '"kubernetes.io/hostname":"h1"'
  node h2 '"kubernetes.io/hostname":"h2"'
  local s i sched got p
  for s in fx ref; do
    sched=$([ "$s" = fx ] && echo flexpu || echo default)
    for i in 1 2 3; do
      ipod "anti$i-$s" "$sched" "$s" "{\"podAntiAffinity\":{\"requiredDuringSchedulingIgnoredDuringExecution\":[{\"labelSelector\":{\"matchLabels\":{\"app\":\"$s\"}},\"topologyKey\":\"kubernetes.io/hostname\"}]}}"
    done
  done
  wait_bound anti1-fx anti2-fx anti1-ref anti2-ref
  for s in fx ref; do
    [ -n "$(node_of "anti1-$s")" ] && [ -n "$(node_of "anti2-$s")" ] &&
      [ "$(node_of "anti1-$s")" != "$(node_of "anti2-$s")" ] ||
      fail "$s replicas with anti-affinity on '$(node_of "anti1-$s")' and '$(node_of "anti2-$s")'"
  done
  wait_event anti3-fx "pod anti-affinity: not kubernetes.io/hostname in [h1 h2]"
  wait_event anti3-ref "didn't match pod anti-affinity rules"
  for p in anti3-fx anti3-ref; do
    [ -z "$(node_of "$p")" ] || fail "$p was bound to $(node_of "$p")"
  done
  node h3 '"kubernetes.io/hostname":"h3"'
  wait_bound anti3-fx anti3-ref
  for p in anti3-fx anti3-ref; do
    got=$(node_of "$p")
    [ "$got" = h3 ] || fail "pod $p is on '${got:-nothing}' once h3 appeared, expected h3"
  done
  # Pod affinity: next to the cache pod on h2, under both schedulers.
  ipod cache default cache "" h2
  local aff='{"podAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"labelSelector":{"matchLabels":{"app":"cache"}},"topologyKey":"kubernetes.io/hostname"}]}}'
  ipod near flexpu near "$aff"
  ipod near-ref default near "$aff"
  both_on near h2
  pass "inter-pod rules: anti-affinity one per node (the third placed when a node appears), affinity next to its pod, as kube-scheduler"
}

zone_count() { # ZONE POD...: how many of the pods are on nodes of ZONE (named ZONE-*)
  local z="$1" n=0 p
  shift
  for p in "$@"; do
    case "$(node_of "$p")" in "$z"-*) n=$((n + 1)) ;; esac
  done
  echo "$n"
}

# topologySpreadConstraints DoNotSchedule with maxSkew 1 over two zones of
# unequal size (two nodes in a, one in b): four replicas land two per zone
# under both schedulers, though zone a has twice the nodes.
case_topology_spread() {
  reset
  node a-1 '"topology.kubernetes.io/zone":"a"'
  node a-2 '"topology.kubernetes.io/zone":"a"'
  node b-1 '"topology.kubernetes.io/zone":"b"'
  local s i sched pods_of
  for s in fx ref; do
    sched=$([ "$s" = fx ] && echo flexpu || echo default)
    for i in 1 2 3 4; do
      spod "spread$i-$s" "$sched" "s$s"
    done
  done
  wait_bound spread1-fx spread2-fx spread3-fx spread4-fx spread1-ref spread2-ref spread3-ref spread4-ref
  for s in fx ref; do
    pods_of="spread1-$s spread2-$s spread3-$s spread4-$s"
    # shellcheck disable=SC2086
    [ "$(zone_count a $pods_of)" = 2 ] && [ "$(zone_count b $pods_of)" = 2 ] ||
      fail "$s replicas spread a=$(zone_count a $pods_of) b=$(zone_count b $pods_of), expected 2 and 2"
  done
  pass "topology spread (DoNotSchedule, maxSkew 1): two replicas per zone under both schedulers"
}

# spod NAME SCHEDULER APP: a pod labelled app=APP spread with maxSkew 1 over
# the zone key against the pods labelled so.
spod() {
  app_pod "$1" "$2" "$3" "\"topologySpreadConstraints\":[{\"maxSkew\":1,\"topologyKey\":\"topology.kubernetes.io/zone\",
   \"whenUnsatisfiable\":\"DoNotSchedule\",\"labelSelector\":{\"matchLabels\":{\"app\":\"$3\"}}}],"
}

# zone_nodes: two identical free nodes in each of zones a and b, so that only
# a rule on the zone can tell a-2 from b-1 or b-2.
zone_nodes() {
  local n
  for n in a-1 a-2 b-1 b-2; do
    node "$n" "\"topology.kubernetes.io/zone\":\"${n%%-*}\""
  done
}

# in_zone POD ZONE [WHY]: POD is bound, to a node of ZONE (WHY: the rule
# that puts it there, for the failure message).
in_zone() {
  local got
  wait_bound "$1"
  got=$(node_of "$1")
  case "$got" in "$2"-*) ;; *) fail "pod $1${3:+ ($3)} is on '${got:-nothing}', expected a node of zone $2" ;; esac
}

# both_in_zone NAME ZONE: NAME and NAME-ref are bound to nodes of ZONE.
both_in_zone() {
  in_zone "$1" "$2"
  in_zone "$1-ref" "$2"
}

# zone_term APP: a pod affinity term selecting app=APP over zones.
zone_term() {
  echo "{\"labelSelector\":{\"matchLabels\":{\"app\":\"$1\"}},\"topologyKey\":\"topology.kubernetes.io/zone\"}"
}

# Preferred pod affinity and anti-affinity (kube-scheduler's InterPodAffinity
# score) over two zones of identical free nodes: the only thing telling the
# zones apart is where the selected pods are, so both schedulers must choose
# the same zone. The seeds are CPU pods bound directly, seen by both; every
# pod is expected in zone a, as flexpu with no scores would pick b-2 (so each
# step fails if its score were lost).
case_preferred_inter_pod() {
  reset
  zone_nodes
  ipod x1 default x "" b-1
  local soft='"affinity":{"podAntiAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":100,"podAffinityTerm":'
  pods pa-avoid "$soft$(zone_term x)}]}}"
  both_in_zone pa-avoid a
  ipod cache default cache "" a-1
  pods pa-near "\"affinity\":{\"podAffinity\":{\"preferredDuringSchedulingIgnoredDuringExecution\":[{\"weight\":100,\"podAffinityTerm\":$(zone_term cache)}]}}"
  both_in_zone pa-near a
  # Symmetric: a pod already in zone b that prefers to stay away from app=shy
  # keeps pods without rules of their own out of zone b.
  ipod guard default guard "{\"podAntiAffinity\":{\"preferredDuringSchedulingIgnoredDuringExecution\":[{\"weight\":100,\"podAffinityTerm\":$(zone_term shy)}]}}" b-2
  ipod pa-shy flexpu shy ""
  ipod pa-shy-ref default shy ""
  both_in_zone pa-shy a
  # With app=x in both zones the preference cannot be honoured: the pod is
  # placed all the same, where the required form leaves it pending.
  ipod x2 default x "" a-2
  pods pa-anyway "$soft$(zone_term x)}]}}"
  wait_bound pa-anyway pa-anyway-ref
  local p
  for p in pa-anyway pa-anyway-ref; do
    [ -n "$(node_of "$p")" ] || fail "pod $p with a preference nothing can honour was not placed"
  done
  pods pa-must "\"affinity\":{\"podAntiAffinity\":{\"requiredDuringSchedulingIgnoredDuringExecution\":[$(zone_term x)]}}"
  both_pending pa-must "pod anti-affinity: not topology.kubernetes.io/zone in [a b]" "didn't match pod anti-affinity rules"
  pass "preferred inter-pod rules: anti-affinity and affinity choose the zone, an existing pod's preference repels, an unhonourable preference still places (required: pending), as kube-scheduler"
}

# wspread S WHEN: the spec fields of a maxSkew 1 zone spread over app=wS.
wspread() {
  echo "\"topologySpreadConstraints\":[{\"maxSkew\":1,\"topologyKey\":\"topology.kubernetes.io/zone\",\"whenUnsatisfiable\":\"$2\",\"labelSelector\":{\"matchLabels\":{\"app\":\"w$1\"}}}],"
}

# topologySpreadConstraints ScheduleAnyway (kube-scheduler's PodTopologySpread
# score) over two zones of identical free nodes, zone a holding two matching
# pods: the next two go to zone b under both schedulers.
case_soft_spread() {
  reset
  zone_nodes
  local s i sched
  for s in fx ref; do
    app_pod "wseed1-$s" default "w$s" "" a-1
    app_pod "wseed2-$s" default "w$s" "" a-2
  done
  for i in 1 2; do
    for s in fx ref; do
      sched=$([ "$s" = fx ] && echo flexpu || echo default)
      app_pod "wsoft$i-$s" "$sched" "w$s" "$(wspread "$s" ScheduleAnyway)"
    done
    for s in fx ref; do
      in_zone "wsoft$i-$s" b "ScheduleAnyway, zone a holding more"
    done
  done
  # Zone b cordoned (a=2, b=2 matching): ScheduleAnyway still places the
  # pod in zone a; then DoNotSchedule (a would hold 4 against 2; cordoned
  # nodes still count, nodeTaintsPolicy Ignore) leaves the next pending.
  kubectl cordon b-1 b-2 >/dev/null
  for s in fx ref; do
    sched=$([ "$s" = fx ] && echo flexpu || echo default)
    app_pod "wsoft3-$s" "$sched" "w$s" "$(wspread "$s" ScheduleAnyway)"
  done
  for s in fx ref; do
    in_zone "wsoft3-$s" a "ScheduleAnyway, zone b cordoned"
    sched=$([ "$s" = fx ] && echo flexpu || echo default)
    app_pod "wmust-$s" "$sched" "w$s" "$(wspread "$s" DoNotSchedule)"
  done
  wait_event wmust-fx "topology spread: only topology.kubernetes.io/zone in [b]"
  wait_event wmust-ref "didn't match pod topology spread constraints"
  for s in fx ref; do
    [ -z "$(node_of "wmust-$s")" ] || fail "wmust-$s (DoNotSchedule, skew 2) was bound to $(node_of "wmust-$s")"
  done
  pass "topology spread (ScheduleAnyway): with two matching pods in zone a, the next two go to zone b; with zone b cordoned the next is placed in zone a (DoNotSchedule: pending), under both schedulers"
}

case_no_schedule_taint
case_no_execute_taint
case_prefer_no_schedule
case_cordon
case_node_selector
case_required_affinity
case_preferred_affinity
case_inter_pod_affinity
case_topology_spread
case_preferred_inter_pod
case_soft_spread
echo "$E2E_NAME: all passed"
