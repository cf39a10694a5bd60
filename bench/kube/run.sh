#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Kubernetes scheduling benchmark (docs/KUBERNETES.md, "Benchmark"):
# starts a loopback control plane with kwok (test/cluster), creates the kwok
# GPU nodes, and measures flexpu-scheduler and the default kube-scheduler on
# the same cluster in the same run with build/flexpu-kbench. Writes the
# markdown result to bench/results/kube-scheduling.md (or --out) and prints it.
#
#   bench/kube/run.sh [--nodes 1000] [--pods 10000] [--stream-pods N] [--rate 100]
#                     [--clients 4] [--idle 10] [--timeout 1800] [--seed 42]
#                     [--no-tuned] [--flexpu-only] [--queues N] [--gang-size N]
#                     [--flexpu-variant NAME=ARGS]... [--flexpu-whole] [--peer]
#                     [--no-flexpu] [--out FILE]
#
# --flexpu-only leaves out kube-scheduler. --queues N puts flexpu's pods in N
# Queues (the CRD is installed first), --gang-size N in pod groups of N
# (bench/results/kube-queues.md: make bench-kube-queues).
# --flexpu-whole adds a run of flexpu-scheduler whose pods ask whole GPUs
# (flexpu.io/gpu: N, no gpu-cores), as the peer's and kube-scheduler's do.
# --peer adds the scheduler of sigs.k8s.io/scheduler-plugins (Coscheduling,
# CapacityScheduling; built once by test/cluster/build-binaries.sh --peers,
# minutes) with the same pods as PodGroups and a namespace + ElasticQuota per
# queue, its API client at 5000 QPS as kube-scheduler-qps5000
# (make bench-kube-peer). --no-flexpu leaves out the flexpu-scheduler run
# with GPU shares (to rerun a peer alone, with --flexpu-only).
# --no-tuned leaves out the second kube-scheduler run whose API client rate
# limit is raised from its defaults (50 QPS, burst 100) to 5000.
# --flexpu-variant adds a run of flexpu-scheduler named NAME with more
# options (--flexpu-variant one-sender='--bind-workers 1').
# Environment: BUILD (build directory, default build), TRACE (trace
# directory), KEEP=1 keeps the work directory (logs) after the run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
case "${BUILD:-build}" in
/*) build="$BUILD" ;;
*) build="$root/${BUILD:-build}" ;;
esac
trace="${TRACE:-$root/../shared/data/alibaba-gpu-v2023}"
out="$root/bench/results/kube-scheduling.md"
cmdline="bench/kube/run.sh $*"
tuned=1
kube=1
peer=0
whole=0
shares=1
stream=1
args=()
variants=()
while [ $# -gt 0 ]; do
  case "$1" in
  --nodes | --pods | --stream-pods | --rate | --clients | --idle | --timeout | --seed | \
    --queues | --gang-size)
    [ $# -ge 2 ] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
    [ "$1" = --stream-pods ] && [ "$2" = 0 ] && stream=0
    args+=("$1" "$2")
    shift 2
    ;;
  --out)
    [ $# -ge 2 ] || { echo "run.sh: --out needs a value" >&2; exit 2; }
    out="$2"
    shift 2
    ;;
  --no-tuned) tuned=0; shift ;;
  --peer) peer=1; shift ;;
  --flexpu-whole) whole=1; shift ;;
  --no-flexpu) shares=0; shift ;;
  --flexpu-only) kube=0; shift ;;
  --flexpu-variant)
    [ $# -ge 2 ] && [[ "$2" == ?*=* ]] || { echo "run.sh: --flexpu-variant needs NAME=ARGS" >&2; exit 2; }
    variants+=("$2")
    shift 2
    ;;
  -h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for b in flexpu-scheduler flexpu-kbench; do
  [ -x "$build/$b" ] || { echo "run.sh: $build/$b is missing: make build" >&2; exit 1; }
done
[ -f "$trace/openb_pod_list_default.csv" ] || { echo "run.sh: no trace in $trace" >&2; exit 1; }

if [ "$peer" = 1 ]; then
  bin="$("$root/test/cluster/build-binaries.sh" --peers)"
else
  bin="$("$root/test/cluster/build-binaries.sh")"
fi
work="$(mktemp -d /tmp/flexpu-kbench.XXXXXX)"
mkdir -p "$work/logs"
cleanup() {
  local f
  for f in "$work"/logs/*.pid; do
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  "$root/test/cluster/cluster.sh" down "$work/cluster" || true
  if [ "${KEEP:-0}" = 1 ]; then echo "run.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$root/test/cluster/cluster.sh" up "$work/cluster" >&2
kc="$work/cluster/admin.kubeconfig"
# The Queue CRD, so flexpu-scheduler reads queues as it would in a cluster.
"$bin/kubectl" --kubeconfig "$kc" apply -f "$root/deploy/helm/flexpu/crds/flexpu.io_queues.yaml" >/dev/null
"$bin/kubectl" --kubeconfig "$kc" wait --for=condition=Established crd/queues.flexpu.io --timeout=60s >/dev/null
if [ "$peer" = 1 ]; then
  crds="$bin/scheduler-plugins-crds"
  "$bin/kubectl" --kubeconfig "$kc" apply -f "$crds/scheduling.x-k8s.io_podgroups.yaml" \
    -f "$crds/scheduling.x-k8s.io_elasticquotas.yaml" >/dev/null
  "$bin/kubectl" --kubeconfig "$kc" wait --for=condition=Established --timeout=60s \
    crd/podgroups.scheduling.x-k8s.io crd/elasticquotas.scheduling.x-k8s.io >/dev/null
  # One profile with both plugins, composed as the module's Helm chart does
  # (bench/kube/peer_smoke.sh): Coscheduling sorts the queue, so PrioritySort
  # goes; CapacityScheduling preempts within quotas, so DefaultPreemption
  # goes. permitWaitingTimeSeconds 10 is the chart's value (the plugin's
  # default is 60). The client's rate limit is raised from 50 QPS (burst
  # 100) to 5000, as for kube-scheduler-qps5000: the peer at its fastest.
  cat >"$work/scheduler-plugins.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection:
  leaderElect: false
clientConnection:
  kubeconfig: $kc
  qps: 5000
  burst: 5000
profiles:
- schedulerName: scheduler-plugins
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
      permitWaitingTimeSeconds: 10
EOF
fi

# Each scheduler runs alone (the benchmark starts and stops it); leader
# election is off for both, as cluster.sh runs kube-scheduler. --secure-port 0:
# kube-scheduler serves no health/metrics endpoint (nothing here reads it).
scheds=()
if [ "$shares" = 1 ]; then
  scheds+=(--scheduler "flexpu-scheduler:flexpu:$build/flexpu-scheduler --kubeconfig $kc --leader-elect false")
fi
if [ "$whole" = 1 ]; then
  scheds+=(--scheduler "flexpu-scheduler-whole:flexpu-whole:$build/flexpu-scheduler --kubeconfig $kc --leader-elect false")
fi
for v in "${variants[@]}"; do
  scheds+=(--scheduler "${v%%=*}:flexpu:$build/flexpu-scheduler --kubeconfig $kc --leader-elect false ${v#*=}")
done
if [ "$kube" = 1 ]; then
  scheds+=(
    --scheduler "kube-scheduler:kube:$bin/kube-scheduler --kubeconfig $kc --leader-elect=false --secure-port 0"
  )
fi
if [ "$kube" = 1 ] && [ "$tuned" = 1 ]; then
  scheds+=(--scheduler "kube-scheduler-qps5000:kube:$bin/kube-scheduler --kubeconfig $kc --leader-elect=false --secure-port 0 --kube-api-qps 5000 --kube-api-burst 5000")
fi
if [ "$peer" = 1 ]; then
  scheds+=(--scheduler "scheduler-plugins:peer:$bin/scheduler-plugins --config $work/scheduler-plugins.yaml --authentication-kubeconfig $kc --authorization-kubeconfig $kc --bind-address 127.0.0.1 --secure-port 0")
fi

# Everything shares the machine's cores, so a busy machine skews the numbers:
# the load average before and after is part of the result.
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
"$build/flexpu-kbench" --kubeconfig "$kc" --trace "$trace" --log-dir "$work/logs" \
  --out "$work/result.md" "${args[@]}" "${scheds[@]}"
took=$(( $(date +%s) - start ))
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$(dirname "$out")"
{
  echo "# Kubernetes scheduling benchmark"
  echo
  echo "Generated by \`$cmdline\` (flexpu $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ', uncommitted changes')) on $(date -u +%Y-%m-%d) in ${took} s."
  echo
  echo "- machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) memory, Linux $(uname -r); etcd, kube-apiserver, kwok, the scheduler and the benchmark client all share it; load average (1, 5, 15 min) $load_before before the run, $load_after after"
  echo "- control plane: test/cluster (etcd 3.6.16, kube-apiserver and kube-scheduler 1.37.2, kwok 0.8.0), loopback TLS"
  if [ "$kube" = 1 ]; then
    echo "- schedulers: flexpu-scheduler (policy flexpu); kube-scheduler with its default configuration (API client limited to 50 QPS, burst 100)$([ "$tuned" = 1 ] && echo '; kube-scheduler-qps5000: the same with --kube-api-qps 5000 --kube-api-burst 5000')"
  else
    echo "- schedulers: flexpu-scheduler (policy flexpu)$([ "$peer" = 1 ] || echo ' only (--flexpu-only)')"
  fi
  [ "$whole" = 0 ] || echo "- flexpu-scheduler-whole: the same flexpu-scheduler, its pods asking whole GPUs (flexpu.io/gpu: N, no gpu-cores: a share takes a whole GPU, as for the peer)"
  [ "$peer" = 0 ] || echo "- scheduler-plugins: kube-scheduler 1.33.5 with sigs.k8s.io/scheduler-plugins v0.33.5's Coscheduling and CapacityScheduling in one profile (PrioritySort and DefaultPreemption off, permitWaitingTimeSeconds 10, API client 5000 QPS, burst 5000); its pods ask whole nvidia.com/gpu"
  echo "- GPU requests: flexpu-scheduler's pods ask flexpu.io/gpu (a trace share of gpu_milli < 1000 becomes flexpu.io/gpu: 1 and flexpu.io/gpu-cores: ceil(gpu_milli / 10)); kube-scheduler pods ask the same number of whole nvidia.com/gpu (a share takes a whole GPU: the no-slicing baseline). CPU and memory requests are the trace's."
  [ "$stream" = 0 ] || echo "- latency is client side: from the pod's create request being acknowledged to the watch event that shows it bound"
  echo
  cat "$work/result.md"
} >"$out"
cat "$out"
echo
echo "run.sh: this table is saved in $out"
