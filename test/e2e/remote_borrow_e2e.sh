#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end test of a remote slice as an owner of borrowed memory (issues
# 16 and 17, docs/REMOTE.md "Borrowed memory") on a real API server
# (test/cluster), the fake driver's device memory shared by the GPU node's
# processes (FAKECUDA_NODE_MEM=1):
#  - gpu-r, a kwok node with 2 CPUs and one 80 GiB GPU, its flexpu-node (with
#    deploy/rbac.yaml's flexpu-node account and the chart's pod patch for
#    remote slices) serving remote slices through
#    the real flexpu-remoted, each as a user of its own
#    (--remote-uid-range); cpu-r, a node without GPUs with 2 remote slots;
#    flexpu-scheduler with --borrow-mem idle;
#  - rowner (4 CPUs, more than gpu-r has; 50 cores, all 80 GiB) runs on
#    cpu-r, its slice on gpu-r, served by flexpu-remoted: it reserves all
#    of the GPU's memory and uses none;
#  - a light opportunistic pod of gpu-r (30 cores, 4 GiB) borrows that
#    memory; its process (in the pod's cgroup) holds its 4 GiB;
#  - rowner's unmodified CUDA program, with the environment cpu-r's plugin
#    gives its container, asks 77 GiB (within its 80) through the client
#    library and the server: the driver refuses the server's worker
#    (77 + 4 > 80), the worker waits, gpu-r's agent kills the borrower's
#    cgroup (cgroup.kill) for the remote slice's want, and the allocation
#    succeeds: the remote program never sees an out-of-memory error;
#  - the borrower's pod gets a MemoryReclaimed event naming rowner as
#    "pod default/rowner (a remote slice)".
# Without a writable cgroup v2 the pod's "cgroup" is a directory the test
# watches, killing the process when "1" is written (said in its output).
#
#   remote_borrow_e2e.sh BUILD_DIR
E2E_NAME=remote-borrow-e2e E2E_LOGS="scheduler.log node.log server.log app.out"
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_on_exit() {
  local f
  exec 9>&- 2>/dev/null || true
  # The servers run in sessions of their own (they outlive their agent).
  for f in "$work"/root/remote/*/server.pid; do
    [ -f "$f" ] && kill -KILL -- "-$(cut -d' ' -f1 "$f")" 2>/dev/null
  done
  return 0
}
e2e_on_fail() {
  local f
  for f in "$work"/root/remote/*/server.log; do
    [ -f "$f" ] && cp "$f" "$work/server.log"
  done
  return 0
}
e2e_up

pod_cgroups

# The cluster key (0400); the servers' users reach the arbiter's pages and
# their ledgers under $work/root, and the fake driver's files.
head -c 48 /dev/urandom | base64 -w0 >"$work/key"
chmod 400 "$work/key"
chmod 711 "$work"
mkdir -p "$work/fake"
chmod 1777 "$work/fake"

# gpu-r: 2 CPUs, one 80 GiB GPU whose memory the node's processes share.
kwok_agent_node gpu-r
kubectl patch node gpu-r --subresource=status --type=merge \
  -p '{"status":{"allocatable":{"cpu":"2"},"capacity":{"cpu":"2"}}}' >/dev/null
export FAKECUDA_DEVICES=1 FAKECUDA_TOTAL_MEM=$((80 * 1073741824))
kubectl apply -f "$root/deploy/namespace.yaml" -f "$root/deploy/rbac.yaml" >"$work/apply.log" 2>&1 ||
  { cat "$work/apply.log" >&2; fail "kubectl apply deploy/rbac.yaml"; }
# What the chart adds with node.remote.enabled: the GPU node's agent records
# each slice's endpoint on its pod (deploy/helm/flexpu/templates/rbac.yaml).
kubectl create clusterrole flexpu-node-remote --verb=patch --resource=pods >/dev/null
kubectl create clusterrolebinding flexpu-node-remote --clusterrole=flexpu-node-remote \
  --serviceaccount=flexpu-system:flexpu-node >/dev/null
token="$(kubectl create token flexpu-node -n flexpu-system --duration=1h)"
kubectl config view --raw --minify --flatten -o json |
  jq --arg t "$token" '.users[0].user = {token: $t}' >"$work/node.kubeconfig"
# The servers inherit FAKECUDA_* and the context overhead (none) from it.
LD_LIBRARY_PATH="$build/test/fakecuda" FAKECUDA_NODE_MEM=1 FAKECUDA_CTX_OVERHEAD=0 \
  FLEXPU_CONTEXT_OVERHEAD=0 FLEXPU_LOG_LEVEL=info ASAN_OPTIONS=detect_leaks=0 \
  start_node gpu-r --kubeconfig "$work/node.kubeconfig" --cgroup-root "$cgroot" \
  --remote-key "$work/key" --remote-address 127.0.0.1 --remote-ports 17200-17210 \
  --remote-server "$build/flexpu-remoted" --remote-runtime-library "$build/libflexpu-cuda.so" \
  --remote-uid-range 61010-61019
usage() { kubectl get node gpu-r -o jsonpath='{.metadata.annotations.flexpu\.io/gpu-usage}'; }
has_feed() { test -n "$(usage)"; }
wait_for 20 "gpu-r's agent published no usage" has_feed

kwok_agent_node cpu-r
kubectl patch node cpu-r --subresource=status --type=merge \
  -p '{"status":{"allocatable":{"flexpu.io/gpu":"2"},"capacity":{"flexpu.io/gpu":"2"}}}' >/dev/null
mkdir -p "$work/cdp"
"$build/flexpu-node" --node-name cpu-r \
  --device-plugin-dir "$work/cdp" --pod-resources-socket "$work/cpodres.sock" \
  --root "$work/croot" --runtime-library "" --size-limits off --metrics-port 0 \
  --remote-slots 2 --remote-key "$work/key" --remote-client-dir "$build/remote" \
  --log-level debug >>"$work/cpunode.log" 2>&1 &
pids+=($!)
wait_for 20 "cpu-r's agent did not install the client" test -s "$work/croot/remote-lib/libcudart.so.12"

start_scheduler --borrow-mem idle

# pod NAME CPU CORES MEMORY ANNOTATIONS
pod() {
  kubectl create -f - >/dev/null <<JSON
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default","annotations":$5},
 "spec":{"schedulerName":"flexpu-scheduler","containers":[{"name":"c","image":"x",
   "resources":{"limits":{"cpu":"$2","memory":"1Gi","flexpu.io/gpu":"1",
     "flexpu.io/gpu-cores":"$3","flexpu.io/gpu-memory":"$4"}}}]}}
JSON
}
node_of() { kubectl get pod "$1" -o jsonpath='{.spec.nodeName}' 2>/dev/null; }
on_node() { [ "$(node_of "$1")" = "$2" ]; }
alloc() { kubectl get pod "$1" -o jsonpath='{.metadata.annotations.flexpu\.io/allocation}'; }
uid_of() { kubectl get pod "$1" -o jsonpath='{.metadata.uid}'; }

pod rowner 4 50 80Gi '{"flexpu.io/remote":"allowed"}'
wait_for 30 "the remote owner was not bound to cpu-r" on_node rowner cpu-r
ra="$(alloc rowner)"
jq -e '.remote.node == "gpu-r" and .gpus[0].memory == 85899345920' <<<"$ra" >/dev/null ||
  fail "the remote owner's allocation: $ra"
ruid="$(uid_of rowner)"
uuid="$(jq -r '.gpus[0].uuid' <<<"$ra")"
# The kubelet's calls on cpu-r: the container's environment and files.
"$build/test/remote_kubelet" "$work/cdp" "$work/cpodres.sock" default rowner remote-0 \
  >"$work/ctr-r.txt" 2>"$work/kubelet-r.err" || fail "rowner's kubelet calls: $(cat "$work/kubelet-r.err")"
map=()
while read -r _ ctr host _; do map+=("$ctr" "$host"); done < <(grep '^mount ' "$work/ctr-r.txt")
host_path() {
  local v="$1" i
  for ((i = 0; i < ${#map[@]}; i += 2)); do v="${v//${map[i]}/${map[i + 1]}}"; done
  printf '%s' "$v"
}
envs=()
while read -r kv; do envs+=("$(host_path "$kv")"); done < <(sed -n 's/^env //p' "$work/ctr-r.txt")
ep() { kubectl get pod rowner -o jsonpath='{.metadata.annotations.flexpu\.io/remote-endpoint}'; }
has_ep() { [ -n "$(ep)" ]; }
wait_for 30 "gpu-r recorded no endpoint for the remote owner" has_ep
spid="$(cut -d' ' -f1 "$work/root/remote/$ruid/server.pid")"
pass "rowner runs on cpu-r, its slice (50 cores, all 80 GiB of GPU $uuid) on gpu-r, served by flexpu-remoted (pid $spid) at $(ep)"

pod borrower 1 30 4Gi '{"flexpu.io/opportunistic":"true"}'
wait_for 40 "the light opportunistic pod did not borrow the remote owner's memory" on_node borrower gpu-r
ba="$(alloc borrower)"
jq -e '.borrowed == true and .borrow_mem == "idle" and .gpus[0].memory == 4294967296' \
  <<<"$ba" >/dev/null || fail "the borrower's allocation: $ba"
"$build/test/remote_kubelet" "$work/dp" "$work/podresources.sock" default borrower "$uuid::0" \
  >"$work/ctr-b.txt" 2>"$work/kubelet-b.err" ||
  fail "the borrower's PreStartContainer: $(cat "$work/kubelet-b.err")"
grep -q '^prestart ok$' "$work/ctr-b.txt" || fail "no PreStartContainer: $(cat "$work/ctr-b.txt")"
bledger="$(awk '$1 == "mount" && $2 == "/run/flexpu/ledger" {print $3}' "$work/ctr-b.txt")"
[ -d "$bledger" ] || fail "the borrower's slice has no ledger directory: $(cat "$work/ctr-b.txt")"
buid="$(uid_of borrower)"
bcg="$cgroot/kubepods/pod$buid"
mkdir -p "$bcg"
# Its process: a cuda_client fed through a FIFO (kept open on fd 9).
mkfifo "$work/borrower.in"
env LD_PRELOAD="$build/libflexpu-cuda.so" LD_LIBRARY_PATH="$build/test/fakecuda" \
  FLEXPU_STATE_DIR="$work/state" FLEXPU_LEDGER_DIR="$bledger" FLEXPU_MEMORY_LIMIT=4Gi \
  FAKECUDA_DIR="$work/fake" FAKECUDA_NODE_MEM=1 FAKECUDA_CTX_OVERHEAD=0 \
  FLEXPU_CONTEXT_OVERHEAD=0 FLEXPU_TENANT="$buid" \
  "$build/test/runtime/cuda_client" <"$work/borrower.in" >"$work/borrower.log" 2>&1 &
bpid=$!
pids+=("$bpid")
exec 9>"$work/borrower.in"
echo "$bpid" >"$bcg/cgroup.procs"
printf 'init\nctx 0\nalloc 4294967296\n' >&9
answered() { [ "$(grep -c . "$work/borrower.log")" -ge 3 ]; }
wait_for 10 "the borrower's process did not answer" answered
grep -q '^ok 0' "$work/borrower.log" || fail "the borrower's 4 GiB: $(cat "$work/borrower.log")"
marked() { [ -e "$work/root/borrowed/$uuid" ]; }
wait_for 5 "the agent did not mark the borrowed GPU" marked
pass "a light opportunistic pod of gpu-r borrows the memory the remote owner reserved: its process holds 4 GiB ($ba)"

fake_cgroup_kill "$bcg" "$bpid"

# rowner's unmodified program asks 77 GiB of its 80 through the server:
# 77 + the borrower's 4 > 80.
t0=$(date +%s%N)
timeout 120 env -i PATH="$PATH" "${envs[@]}" ASAN_OPTIONS=detect_leaks=0 \
  "$build/test/remote/remote_app" hold $((77 * 1024)) >"$work/app.out" 2>&1 &
app=$!
pids+=("$app")
held() { grep -q '^holding' "$work/app.out" || ! kill -0 "$app"; }
wait_for 60 "the remote program's allocation did not return" held
t1=$(date +%s%N)
grep -q "^holding $((77 * 1024)) MiB" "$work/app.out" ||
  fail "the remote owner's 77 GiB (within its 80): $(cat "$work/app.out") (a remote owner saw the borrower's memory refused)"
! kill -0 "$bpid" 2>/dev/null || fail "the borrower's process is alive"
grep -q "msg=\"borrower killed\" pod_uid=$buid .*slice remote-$ruid" "$work/node.log" ||
  fail "the agent logged no kill of the borrower for the remote slice: $(grep -i borrower "$work/node.log" | tail -3)"
slog="$work/root/remote/$ruid/server.log"
grep -q 'borrowed memory given back' "$slog" || fail "the server's worker did not say it waited: $(tail -5 "$slog")"
pass "rowner's 77 GiB (within its 80) through flexpu-remoted succeeded after $(( (t1 - t0) / 1000000 )) ms: the server's worker waited ($(grep -o 'waited_ms=[0-9]*' "$slog" | head -1)), gpu-r's agent killed the borrower's cgroup for slice remote-$ruid ($( [ "$real_cg" = 1 ] && echo "cgroup.kill on $cg_mnt" || echo "stand-in"))"

reclaimed_msg() {
  kubectl get events --field-selector involvedObject.name=borrower,reason=MemoryReclaimed \
    -o jsonpath='{range .items[*]}{.type} {.source.component}: {.message}{"\n"}{end}'
}
has_reclaimed_event() { [ -n "$(reclaimed_msg)" ]; }
wait_for 20 "the borrower's pod has no MemoryReclaimed event (the agent's log: $(grep -i event "$work/node.log" | tail -3))" \
  has_reclaimed_event
ev="$(reclaimed_msg)"
for want in "Warning flexpu-node:" "node gpu-r" "GPU $uuid" "pod default/rowner (a remote slice)" \
  "$((77 * 1073741824)) bytes"; do
  grep -qF "$want" <<<"$ev" || fail "the MemoryReclaimed event does not say '$want': $ev"
done
pass "the killed borrower's pod has the agent's event naming the remote owner: $ev"
