# SPDX-License-Identifier: Apache-2.0
# What every end-to-end script shares, sourced with the script's arguments
# ($1: the build directory) after it sets
#   E2E_NAME  the prefix of its lines ("node-e2e: ok   ...")
#   E2E_LOGS  files in $work whose tails a failure prints (default:
#             scheduler.log)
# It sets build, here, root, work (a fresh directory under /tmp) and pids
# (processes killed at exit), and gives
#   e2e_up    the control plane's binaries built once ($bin), test/cluster
#             started in $work/cluster, its environment sourced
#   fail, pass, wait_for, free_port, kwok_gpu_node,
#   wait_event POD TEXT: an event of POD (default namespace) contains TEXT, within 20 s
#   start_scheduler ARGS... / stop_scheduler [SIGNAL]: flexpu-scheduler on the
#             cluster (admin kubeconfig, debug log in $work/scheduler.log;
#             $sched_pid, stopped at exit)
#   kwok_agent_node NAME: a kwok node with no inventory, for flexpu-node to
#             publish its GPUs on
#   start_node NAME ARGS...: flexpu-node for node NAME on the fake NVML
#             (debug log appended to $work/node.log; $node_pid, stopped at exit)
#   pod_cgroups: $cgroot, the root of the pods' cgroups (--cgroup-root),
#             real or a stand-in ($real_cg); fake_cgroup_kill DIR PID: the
#             stand-in's kill
# A script may define e2e_on_fail (more to print on a failure) and
# e2e_on_exit (more to stop or undo at exit: after $pids are signalled,
# before the wait for them and before the cluster goes).
# shellcheck shell=bash
set -euo pipefail
build="$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "/tmp/flexpu-$E2E_NAME.XXXXXX")"
pids=()

sched_pid=""
e2e_cg="" # the cgroup pod_cgroups made under the host's cgroup v2

e2e_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -z "$sched_pid" ] || kill "$sched_pid" 2>/dev/null || true
  if declare -F e2e_on_exit >/dev/null; then e2e_on_exit || true; fi
  wait 2>/dev/null || true
  # Its pods' cgroups first; after the wait, so that no process is left in one.
  [ -z "$e2e_cg" ] || [ ! -d "$e2e_cg" ] ||
    find "$e2e_cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  "$root/test/cluster/cluster.sh" down "$work/cluster" || true
  if [ "${KEEP:-0}" = 1 ]; then echo "$E2E_NAME: kept $work" >&2; else rm -rf "$work"; fi
}
trap e2e_cleanup EXIT

e2e_up() {
  bin="$("$root/test/cluster/build-binaries.sh")"
  "$root/test/cluster/cluster.sh" up "$work/cluster" >/dev/null
  # shellcheck disable=SC1091
  . "$work/cluster/env"
}

fail() {
  local f
  echo "$E2E_NAME: FAIL: $*" >&2
  echo "--- pods:" >&2
  kubectl get pods -A -o wide >&2 || true
  if declare -F e2e_on_fail >/dev/null; then e2e_on_fail >&2 || true; fi
  for f in ${E2E_LOGS:-scheduler.log}; do
    echo "--- $f (tail):" >&2
    tail -n 25 "$work/$f" >&2 || true
  done
  exit 1
}

pass() { echo "$E2E_NAME: ok   $1"; }

wait_for() { # seconds description command...
  local secs="$1" what="$2"
  shift 2
  for _ in $(seq 1 $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "$what (waited $secs s)"
}

free_port() { "$root/test/cluster/cluster.sh" port .; }

# kwok_gpu_node NAME MODEL NGPU [MEM_GIB] [CPU]: a kwok node with a GPU inventory
# (flexpu.io/gpus) and the extended resources flexpu-node would publish.
kwok_gpu_node() {
  local name="$1" model="$2" n="$3" mem="${4:-80}" cpu="${5:-64}"
  local inv="" i
  for i in $(seq 0 $((n - 1))); do
    [ -n "$inv" ] && inv="$inv,"
    inv="$inv{\\\"uuid\\\":\\\"GPU-$name-$i\\\",\\\"model\\\":\\\"$model\\\",\\\"memory\\\":$((mem * 1073741824)),\\\"numa\\\":$((i / 4)),\\\"group\\\":$((i / 4))}"
  done
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Node","metadata":{"name":"$name","labels":{"type":"kwok"},
 "annotations":{"kwok.x-k8s.io/node":"fake","flexpu.io/gpus":"[$inv]"}},
 "status":{"allocatable":{"cpu":"$cpu","memory":"512Gi","pods":"110","flexpu.io/gpu":"$((n * 16))",
   "flexpu.io/gpu-cores":"$((n * 100))","flexpu.io/gpu-memory":"$((n * mem))Gi"},
  "capacity":{"cpu":"$cpu","memory":"512Gi","pods":"110","flexpu.io/gpu":"$((n * 16))",
   "flexpu.io/gpu-cores":"$((n * 100))","flexpu.io/gpu-memory":"$((n * mem))Gi"}}}
EOF
}

start_scheduler() {
  "$build/flexpu-scheduler" --kubeconfig "$KUBECONFIG" --lease-namespace kube-system \
    --log-level debug "$@" >>"$work/scheduler.log" 2>&1 &
  sched_pid=$!
}

stop_scheduler() { # [signal]
  [ -n "$sched_pid" ] || return 0
  kill "-${1:-TERM}" "$sched_pid" 2>/dev/null || true
  wait "$sched_pid" 2>/dev/null || true
  sched_pid=""
}

# The pod's PodScheduled condition: "STATUS REASON MESSAGE".
cond_of() {
  kubectl get pod "$1" -o jsonpath='{range .status.conditions[?(@.type=="PodScheduled")]}{.status} {.reason} {.message}{end}'
}
wait_cond() { # pod "STATUS REASON" [message part]
  local c=""
  for _ in $(seq 1 50); do
    c="$(cond_of "$1")"
    [[ "$c" == "$2"* && "$c" == *"${3:-}"* ]] && return 0
    sleep 0.2
  done
  fail "pod $1's PodScheduled is '$c', expected '$2' with '${3:-}'"
}

# Waits up to 10 s until every line given is, exactly, a line of the
# metrics served on 127.0.0.1:PORT. flexpu-scheduler's model counters are a
# snapshot it takes at most once a second, so a scrape right after an event
# may still read the counts before it.
wait_metrics() { # port line...
  local port="$1" m l ok
  shift
  for _ in $(seq 1 50); do
    ok=1
    m="$(curl -sf "http://127.0.0.1:$port/metrics")" || ok=0
    for l in "$@"; do
      [ "$ok" = 1 ] && ! grep -qxF -- "$l" <<<"$m" && ok=0
    done
    [ "$ok" = 1 ] && return 0
    sleep 0.2
  done
  return 1
}

wait_event() { # pod substring
  for _ in $(seq 1 100); do
    if kubectl get events --field-selector "involvedObject.name=$1" \
      -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' | grep -qF -- "$2"; then
      return 0
    fi
    sleep 0.2
  done
  fail "pod $1 has no event containing '$2': $(kubectl get events --field-selector "involvedObject.name=$1" -o jsonpath='{range .items[*]}{.message}{"\n"}{end}')"
}

kwok_agent_node() { # name
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Node","metadata":{"name":"$1","labels":{"type":"kwok"},
 "annotations":{"kwok.x-k8s.io/node":"fake"}},
 "status":{"allocatable":{"cpu":"64","memory":"512Gi","pods":"110"},
  "capacity":{"cpu":"64","memory":"512Gi","pods":"110"}}}
EOF
}

# start_node NAME ARGS...: the fake NVML's and driver's files are this test's
# own ($work/fake, FAKECUDA_DIR: a GPU's utilization in gpu<N>.util), its
# devices as FAKECUDA_* in the environment say; the device plugin's sockets
# in $work/dp, no runtime library, ARGS after the rest.
start_node() {
  local name="$1"
  shift
  mkdir -p "$work/dp" "$work/fake"
  FAKECUDA_DIR="$work/fake" "$build/flexpu-node" --node-name "$name" \
    --nvml-library "$build/test/fakecuda/libnvidia-ml.so.1" \
    --device-plugin-dir "$work/dp" --pod-resources-socket "$work/podresources.sock" \
    --root "$work/root" --runtime-library "" --size-limits off --metrics-port 0 \
    --log-level debug "$@" >>"$work/node.log" 2>&1 &
  node_pid=$!
  pids+=("$node_pid")
}

# pod_cgroups: sets cgroot, the root under which the agent finds pods'
# cgroups (--cgroup-root, cgroupfs layout). Where the test may make a cgroup
# of its own under the host's cgroup v2 and it has cgroup.kill (Linux 5.14),
# that cgroup (real_cg=1, cg_mnt the mount; removed at exit with the pods'
# cgroups in it), so the agent's kill is the kernel's; else a directory of
# $work with the cgroup.controllers the agent looks for (real_cg=0), whose
# kill fake_cgroup_kill plays.
pod_cgroups() {
  local cg
  cg_mnt="$(findmnt -rn -t cgroup2 -o TARGET | head -n 1 || true)"
  real_cg=0
  if [ -n "$cg_mnt" ] && mkdir "$cg_mnt/flexpu-e2e-$$" 2>/dev/null; then
    cg="$cg_mnt/flexpu-e2e-$$"
    if [ -e "$cg/cgroup.kill" ]; then
      real_cg=1
      e2e_cg="$cg"
    else
      rmdir "$cg"
    fi
  fi
  if [ "$real_cg" = 1 ]; then
    cgroot="$e2e_cg"
  else
    cgroot="$work/cgroup"
    mkdir -p "$cgroot"
    echo "cpu memory" >"$cgroot/cgroup.controllers"
  fi
}

# fake_cgroup_kill DIR PID: the kernel's part of DIR/cgroup.kill where
# pod_cgroups found no cgroup v2 to write to: PID is killed once the agent
# writes 1 there (said in the output). Nothing where the cgroup is real.
fake_cgroup_kill() {
  if [ "$real_cg" = 1 ]; then
    return 0
  fi
  echo "$E2E_NAME: no writable cgroup v2: the test kills the process when cgroup.kill says 1"
  # The file the kernel gives every cgroup: the agent opens it, never creates it.
  : >"$1/cgroup.kill"
  (while ! grep -q 1 "$1/cgroup.kill" 2>/dev/null; do sleep 0.01; done; kill -9 "$2") &
  pids+=("$!")
}
