#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end test of remote slices in Kubernetes (issue 17, docs/REMOTE.md
# "Kubernetes") on a real API server (test/cluster):
#  - gpu-r, a kwok node with 2 CPUs and one 80 GiB GPU of the fake stack,
#    its flexpu-node given the cluster key: it serves remote slices;
#  - cpu-r, a kwok node without GPUs whose flexpu-node has --remote-slots 2
#    (its kubelet's allocatable flexpu.io/gpu, which a kubelet would take
#    from the plugin's two devices, set as it would be);
#  - cpu-far, a kwok node without GPUs (and no agent) with more CPU and 2
#    remote slots, in zone-b where gpu-r and cpu-r are in zone-a;
#  - a pod with flexpu.io/remote: "allowed" asking 4 CPUs (more than gpu-r
#    has) and 30 cores, 64 MiB of the GPU: flexpu-scheduler binds it to
#    cpu-r (near gpu-r: its zone, not cpu-far), its allocation naming
#    gpu-r, with a RemoteSlice event naming both nodes and the zone;
#  - gpu-r tainted flexpu.io/team=a:NoSchedule first: the pod, without the
#    toleration, waits (untolerated taint); the toleration added on the
#    waiting pod, it is bound at once (the taint then removed);
#  - a pod whose rule flexpu.io/remote-topology-key no zone can meet (a
#    key no node has) waits, its event saying the rule; a malformed key is
#    refused (InvalidRequest) naming the annotation and the value;
#  - gpu-r's agent starts flexpu-remoted for it under libflexpu-cuda.so
#    with the slice's quota, as a slice of its arbiter (slices/ and ledger/
#    under the key remote-<pod UID>, no shared state directory: its page,
#    read by flexpu-smi, lists the slice's tenant while a program runs
#    through the server), and records the endpoint on the pod; as root,
#    the server runs as a user of its own (--remote-uid-range 61000-61009,
#    recorded in its server.pid, its ledger directory that user's; group
#    65534) with no_new_privs and oom_score_adj 1000 and holds no descriptor on the cluster key or
#    its token file (neither of which that user can open); the server
#    killed and started again, and its agent restarted, it keeps that uid;
#  - the kubelet's calls to cpu-r's plugin (test/e2e/remote_kubelet.c:
#    options, preferred allocation, Allocate, PreStartContainer, with the
#    PodResources API naming the pod) give what the container gets; the
#    test runs test/remote's unmodified CUDA program with exactly that
#    environment and those files (container paths mapped to the host paths
#    the mounts name), started before the endpoint is known: it waits for
#    it; its results and its memory quota are checked;
#  - gpu-r's agent restarted: it adopts the server (same pid), no second;
#  - the pod is labelled flexpu.io/remote-gpu-node=gpu-r by the scheduler;
#    with the label removed (a pod bound before the label), the restarted
#    agent keeps its server and the scheduler labels the pod again; the API
#    server's audit shows gpu-r's agent watching only with its label
#    selector and listing every pod once per start;
#  - a rollout of gpu-r's agent (the agent and its servers SIGKILLed, as
#    the end of its container does): a running program gets
#    cudaErrorDevicesUnavailable, not a hang, and so does one started
#    before the new agent (the old endpoint); the new agent, at another
#    address (a new pod IP), starts the server again and records it, the
#    container's endpoint file follows, and the program runs through it;
#  - the pod deleted: the server stops and its files go, its slice too
#    (the arbiter's page forgets its tenant); cpu-r's slot directory loses
#    the token and the endpoint;
#  - a remote pod of 2 GPUs (gpu-r's agent restarted with 2): bound to
#    cpu-r with both slices on gpu-r, the kubelet's calls naming 2 devices;
#    one server for both, the program sees 2 devices and each device's
#    quota; the pod deleted, all of it gone.
#
#   remote_e2e.sh BUILD_DIR
E2E_NAME=remote-e2e E2E_LOGS="scheduler.log node.log cpunode.log server.log"
# The API server's audit of pod lists and watches (cluster/audit.log): what
# the agents asked, checked below.
export CLUSTER_AUDIT_PODS=1
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_up
# The servers run in sessions of their own (they outlive their agent): a
# failed run stops the ones its agent left.
e2e_on_exit() {
  local f
  for f in "$work"/root/remote/*/server.pid; do
    [ -f "$f" ] && kill -KILL -- "-$(cut -d' ' -f1 "$f")" 2>/dev/null
  done
  return 0
}

# The cluster key, as the chart's Secret would mount it (0400).
head -c 48 /dev/urandom | base64 -w0 >"$work/key"
chmod 400 "$work/key"
# As root, the agent runs each server as a uid of its own (61000-61009,
# --remote-uid-range), group 65534: they must reach the arbiter's pages and
# their ledgers under $work/root.
chmod 711 "$work"

# gpu-r: 2 CPUs (kwok_agent_node has 64: patched down), one GPU.
kwok_agent_node gpu-r
kubectl patch node gpu-r --subresource=status --type=merge \
  -p '{"status":{"allocatable":{"cpu":"2"},"capacity":{"cpu":"2"}}}' >/dev/null
export FAKECUDA_DEVICES=1 FAKECUDA_TOTAL_MEM=$((80 * 1073741824))
mkdir -p "$work/fake"
# The fake driver's device files (FAKECUDA_DIR): open to the servers' user
# as NVIDIA's /dev/nvidia* are (mode 0666).
chmod 1777 "$work/fake"
gpu_node() { # [ADDRESS, default 127.0.0.1]
  LD_LIBRARY_PATH="$build/test/fakecuda" FLEXPU_CONTEXT_OVERHEAD=16Mi ASAN_OPTIONS=detect_leaks=0 \
    start_node gpu-r --remote-key "$work/key" --remote-address "${1:-127.0.0.1}" \
    --remote-ports 17100-17110 --remote-server "$build/flexpu-remoted" \
    --remote-runtime-library "$build/libflexpu-cuda.so" --remote-uid-range 61000-61009 \
    --remote-max-clients 8 --remote-max-module-mib 512
}
gpu_node
has_inv() { test -n "$(kubectl get node gpu-r -o jsonpath='{.metadata.annotations.flexpu\.io/gpus}')"; }
wait_for 20 "gpu-r's agent published no inventory" has_inv

# cpu-r: no GPUs; its agent offers 2 remote slots (its own root and
# device-plugin directory: the two agents are two nodes).
kwok_agent_node cpu-r
kubectl patch node cpu-r --subresource=status --type=merge \
  -p '{"status":{"allocatable":{"flexpu.io/gpu":"2"},"capacity":{"flexpu.io/gpu":"2"}}}' >/dev/null
mkdir -p "$work/cdp"
# No NVML: a node without GPUs may have no driver at all.
"$build/flexpu-node" --node-name cpu-r \
  --device-plugin-dir "$work/cdp" --pod-resources-socket "$work/cpodres.sock" \
  --root "$work/croot" --runtime-library "" --size-limits off --metrics-port 0 \
  --remote-slots 2 --remote-key "$work/key" --remote-client-dir "$build/remote" \
  --log-level debug >>"$work/cpunode.log" 2>&1 &
pids+=($!)
wait_for 20 "cpu-r's agent did not install the client" test -s "$work/croot/remote-lib/libcudart.so.12"

# Near its GPU (docs/REMOTE.md): gpu-r and cpu-r in zone-a; cpu-far, in
# zone-b with more CPU (128) and 2 remote slots (no agent: the pod must not
# go there), would take the pod without the scheduler's topology keys.
kubectl label node gpu-r cpu-r topology.kubernetes.io/zone=zone-a >/dev/null
kwok_agent_node cpu-far
kubectl label node cpu-far topology.kubernetes.io/zone=zone-b >/dev/null
kubectl patch node cpu-far --subresource=status --type=merge \
  -p '{"status":{"allocatable":{"cpu":"128","flexpu.io/gpu":"2"},"capacity":{"cpu":"128","flexpu.io/gpu":"2"}}}' >/dev/null

# A tainted GPU node (docs/REMOTE.md, "A tainted GPU node"): gpu-r kept
# for team a gives a remote slice only to a pod that tolerates the taint.
kubectl taint node gpu-r flexpu.io/team=a:NoSchedule >/dev/null

start_scheduler

kubectl create -f - >/dev/null <<EOF2
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"rpod","namespace":"default",
  "annotations":{"flexpu.io/remote":"allowed"}},
 "spec":{"schedulerName":"flexpu-scheduler","containers":[{"name":"c","image":"x",
   "resources":{"limits":{"cpu":"4","memory":"1Gi","flexpu.io/gpu":"1",
     "flexpu.io/gpu-cores":"30","flexpu.io/gpu-memory":"64Mi"}}}]}}
EOF2
node_of() { kubectl get pod rpod -o jsonpath='{.spec.nodeName}' 2>/dev/null; }
bound() { [ "$(node_of)" = cpu-r ]; }
wait_event rpod "untolerated taint {flexpu.io/team=a:NoSchedule}"
[ -z "$(node_of)" ] || fail "a pod without the toleration was bound to $(node_of)"
# The toleration added on the waiting pod (Kubernetes lets a pending pod
# gain tolerations): it is tried again at once, nothing else changing.
tols="$(kubectl get pod rpod -o json | jq -c '{spec:{tolerations:((.spec.tolerations // []) +
  [{"key":"flexpu.io/team","operator":"Equal","value":"a","effect":"NoSchedule"}])}}')"
kubectl patch pod rpod --type=merge -p "$tols" >/dev/null
wait_for 30 "the remote pod was not bound to cpu-r once it tolerated gpu-r's taint" bound
kubectl taint node gpu-r flexpu.io/team- >/dev/null
pass "gpu-r tainted flexpu.io/team=a:NoSchedule: no slice for a pod without the toleration; the toleration added, bound at once"
alloc="$(kubectl get pod rpod -o jsonpath='{.metadata.annotations.flexpu\.io/allocation}')"
jq -e '.remote.node == "gpu-r" and .gpus[0].uuid != null and .gpus[0].cores == 30' \
  <<<"$alloc" >/dev/null || fail "the allocation: $alloc"
uid="$(kubectl get pod rpod -o jsonpath='{.metadata.uid}')"
rlabel() { kubectl get pod rpod -o jsonpath='{.metadata.labels.flexpu\.io/remote-gpu-node}'; }
[ "$(rlabel)" = gpu-r ] || fail "the pod's flexpu.io/remote-gpu-node is '$(rlabel)', want gpu-r"
pass "a pod that fits no GPU node's CPU runs on cpu-r, its slice on gpu-r (and labelled flexpu.io/remote-gpu-node=gpu-r): $alloc"
wait_event rpod "runs on node cpu-r (no GPUs) with a remote slice of GPU 0 of node gpu-r (flexpu.io/remote: \"allowed\"); both in topology.kubernetes.io/zone=zone-a"
reasons="$(kubectl get events --field-selector involvedObject.name=rpod -o jsonpath='{.items[*].reason}')"
grep -qw RemoteSlice <<<"$reasons" || fail "no RemoteSlice event: $reasons"
pass "near its GPU: cpu-r in gpu-r's zone-a, not cpu-far (zone-b, more CPU); a RemoteSlice event says so"

# The rule (docs/REMOTE.md, "Never across a zone"), read through the API
# server: a key no node has leaves the pod waiting, its event saying the
# rule; a malformed one makes it invalid, naming the annotation and value.
for r in "rrule topology.kubernetes.io/region" "rbad Zone/x"; do
  read -r pname pkey <<<"$r"
  kubectl create -f - >/dev/null <<EOF2
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$pname","namespace":"default",
  "annotations":{"flexpu.io/remote":"allowed","flexpu.io/remote-topology-key":"$pkey"}},
 "spec":{"schedulerName":"flexpu-scheduler","containers":[{"name":"c","image":"x",
   "resources":{"limits":{"cpu":"4","memory":"1Gi","flexpu.io/gpu":"1",
     "flexpu.io/gpu-cores":"30","flexpu.io/gpu-memory":"64Mi"}}}]}}
EOF2
done
wait_event rrule "flexpu.io/remote-topology-key: no topology.kubernetes.io/region has both a free slice for it and a node without GPUs with a remote slot and room for it (0 with such a node)"
wait_event rbad "field 'metadata.annotations[flexpu.io/remote-topology-key]': invalid value 'Zone/x'"
[ -z "$(kubectl get pod rrule rbad -o jsonpath='{.items[*].spec.nodeName}')" ] || fail "a pod of a rule that cannot hold was bound"
kubectl delete pod rrule rbad --wait=false >/dev/null
pass "flexpu.io/remote-topology-key: a rule no zone can meet waits saying so; a malformed key is refused naming it"

# The kubelet's calls on cpu-r, before the endpoint may be known.
"$build/test/remote_kubelet" "$work/cdp" "$work/cpodres.sock" default rpod remote-0 \
  >"$work/ctr.txt" 2>"$work/kubelet.err" || fail "the kubelet's calls: $(cat "$work/kubelet.err")"
grep -q '^prestart ok$' "$work/ctr.txt" || fail "no PreStartContainer: $(cat "$work/ctr.txt")"
# The container's view: each mount's container path is its host path here.
map=()
while read -r _ ctr host mode; do
  [ "$mode" = ro ] || fail "a mount is writable: $ctr $host"
  map+=("$ctr" "$host")
done < <(grep '^mount ' "$work/ctr.txt")
[ "${#map[@]}" = 4 ] || fail "want two mounts: $(cat "$work/ctr.txt")"
host_path() {
  local v="$1" i
  for ((i = 0; i < ${#map[@]}; i += 2)); do v="${v//${map[i]}/${map[i + 1]}}"; done
  printf '%s' "$v"
}
envs=()
while read -r kv; do envs+=("$(host_path "$kv")"); done < <(sed -n 's/^env //p' "$work/ctr.txt")
printf '%s\n' "${envs[@]}" | grep -q '^LD_PRELOAD=.*/libcudart.so.12 .*/libcublas.so.12$' ||
  fail "no LD_PRELOAD of the client: ${envs[*]}"
tokf="$(printf '%s\n' "${envs[@]}" | sed -n 's/^FLEXPU_REMOTE_TOKEN_FILE=//p')"
[ -s "$tokf" ] || fail "no token at $tokf after PreStartContainer"
sv_tok="$work/root/remote/$uid/token"
wait_for 20 "gpu-r's agent wrote no token for the slice" test -s "$sv_tok"
cmp -s "$tokf" "$sv_tok" || fail "the two nodes derived different tokens"
pass "cpu-r's Allocate gives the client preloaded, the token and endpoint files (read-only); both nodes derive one token"

# The program starts now, with the container's environment only (and the
# fake libcuda's directory for the fake cuBLAS the server loads: none here):
# it waits for the endpoint if gpu-r has not recorded it yet.
timeout 60 env -i PATH="$PATH" "${envs[@]}" FLEXPU_REMOTE_WAIT_MS=30000 ASAN_OPTIONS=detect_leaks=0 \
  "$build/test/remote/remote_app" basic >"$work/app.out" 2>&1 &
app=$!
ep() { kubectl get pod rpod -o jsonpath='{.metadata.annotations.flexpu\.io/remote-endpoint}'; }
# A function: `test -n "$(ep)"` would be expanded once, before the wait.
has_ep() { [ -n "$(ep)" ]; }
wait_for 30 "gpu-r recorded no endpoint" has_ep
endpoint="$(ep)"
[[ $endpoint == 127.0.0.1:171[01][0-9] ]] || fail "endpoint $endpoint"
spid="$(cut -d' ' -f1 "$work/root/remote/$uid/server.pid")"
# The slice's uid from the range, as its server.pid records it ("PID PORT UID").
ruid="$(cut -d' ' -f3 "$work/root/remote/$uid/server.pid")"
[[ $ruid =~ ^610(0[0-9])$ ]] || fail "the slice's uid '$ruid' is not of --remote-uid-range 61000-61009"
# The server got the agent's limits (--remote-max-clients, --remote-max-module-mib).
grep -q "listening.*max_clients=8 .*max_module_mib=512 " "$work/root/remote/$uid/server.log" ||
  fail "the server did not get --remote-max-clients 8 and --remote-max-module-mib 512: $(cat "$work/root/remote/$uid/server.log")"
# Its environment (readable only with CAP_SYS_PTRACE: the server makes
# itself non-dumpable) has the slice's quota and nothing of the key.
if env_text="$(tr '\0' ' ' <"/proc/$spid/environ" 2>/dev/null)"; then
  grep -q "FLEXPU_MEMORY_LIMIT=67108864" <<<"$env_text" ||
    fail "the server has not the slice's quota: $env_text"
  ! grep -qF "$(cat "$work/key")" <<<"$env_text" || fail "the cluster key is in the server's environment"
fi
# What it runs as and holds (docs/REMOTE.md, "The servers' privileges"):
# as root, the agent gives it the slice's uid and group 65534, no
# supplementary group, no_new_privs; no descriptor on the key nor on its token file (it
# read the token from the descriptor it was given, then closed it).
status="$(cat "/proc/$spid/status")"
grep -q $'^NoNewPrivs:\t1$' <<<"$status" || fail "the server may gain privileges: $status"
# The OOM killer's first choice in the agent's container (docs/REMOTE.md,
# "The servers' host memory"), and so is any worker it forked.
for p in "$spid" $(pgrep -P "$spid"); do
  adj="$(cat "/proc/$p/oom_score_adj" 2>/dev/null || echo gone)"
  [ "$adj" = 1000 ] || [ "$adj" = gone ] || fail "process $p of the server has oom_score_adj $adj, not 1000"
done
[ "$(cat "/proc/$spid/oom_score_adj")" = 1000 ] || fail "the server's oom_score_adj is not 1000"
if [ "$(id -u)" = 0 ]; then
  grep -q $'^Uid:\t'"$ruid"$'\t'"$ruid"$'\t'"$ruid"$'\t'"$ruid"'$' <<<"$status" &&
    grep -q $'^Gid:\t65534\t65534\t65534\t65534$' <<<"$status" &&
    grep -q '^Groups:[[:space:]]*$' <<<"$status" || fail "the server is not user $ruid: $status"
  fds="$(ls -l "/proc/$spid/fd")"
  ! grep -q -e "$work/key" -e "$work/root/remote/$uid/token" <<<"$fds" ||
    fail "the server holds the key or its token file: $fds"
  # Its user cannot open the key, nor its own token file (root's).
  ! setpriv --reuid "$ruid" --regid 65534 --clear-groups cat "$work/key" >/dev/null 2>&1 ||
    fail "user $ruid can read the cluster key"
  ! setpriv --reuid "$ruid" --regid 65534 --clear-groups cat "$work/root/remote/$uid/token" \
    >/dev/null 2>&1 || fail "user $ruid can read the slice's token file"
  ids="the slice's own user $ruid, no_new_privs, oom_score_adj 1000, no key or token descriptor"
else
  grep -q "not root: the remote servers run as this agent's user" "$work/node.log" ||
    fail "the agent, not root, did not warn that it cannot change the servers' user"
  ids="this agent's user (not root: said in its log), no_new_privs, oom_score_adj 1000"
fi
wait "$app" || fail "the program failed: $(cat "$work/app.out")"
echo "$(cat "$work/app.out")" | sed 's/^/remote-e2e:      /'
# The server is a slice of the agent's arbiter (docs/REMOTE.md, "The
# servers' slices"): its policy in slices/remote-<UID>/slice.conf, its
# ledger directory its user's alone, no shared state directory at all.
key="remote-$uid"
conf="$work/root/slices/$key/slice.conf"
grep -qx "tenant = $uid" "$conf" && grep -qx "compute_share = 30" "$conf" &&
  grep -qx "memory_limit = 67108864" "$conf" &&
  grep -qx "ledger_dir = $work/root/ledger/$key" "$conf" &&
  grep -qx "arbiter_dir = $work/root/arb" "$conf" ||
  fail "the server's slice.conf: $(cat "$conf" 2>&1)"
owner="$(stat -c '%a %u:%g' "$work/root/ledger/$key")"
if [ "$(id -u)" = 0 ]; then want_owner="700 $ruid:65534"; else want_owner="700 $(id -u):$(id -g)"; fi
[ "$owner" = "$want_owner" ] || fail "the server's ledger directory is '$owner', want '$want_owner'"
[ ! -e "$work/root/state" ] || fail "the agent made a shared state directory: $(ls -ld "$work/root/state")"
if env_text="$(tr '\0' ' ' <"/proc/$spid/environ" 2>/dev/null)"; then
  grep -q "FLEXPU_ARBITER_DIR=$work/root/arb " <<<"$env_text" &&
    grep -q "FLEXPU_LEDGER_DIR=$work/root/ledger/$key " <<<"$env_text" &&
    ! grep -q "FLEXPU_STATE_DIR=" <<<"$env_text" ||
    fail "the server is not the arbiter's slice: $env_text"
fi
addrf="$(printf '%s\n' "${envs[@]}" | sed -n 's/^FLEXPU_REMOTE_ADDR_FILE=//p')"
[ "$(cat "$addrf")" = "$endpoint" ] || fail "the endpoint file: $(cat "$addrf")"
pass "gpu-r's agent started flexpu-remoted (pid $spid, the slice's 64 MiB quota, $ids, a slice of its arbiter: key $key, ledger $owner, no state directory) at $endpoint; the unmodified program ran through it"

# The quota: 64 MiB, 16 of them the context: refused after 48 MiB.
out="$(timeout 60 env -i PATH="$PATH" "${envs[@]}" ASAN_OPTIONS=detect_leaks=0 \
  "$build/test/remote/remote_app" quota 2>&1)" || fail "quota: $out"
[[ $out == *"refused after 48 MiB"* ]] || fail "quota: expected a refusal after 48 MiB: $out"
pass "the slice's memory quota holds remotely: $out"

# The server killed: its agent starts it again (after its 1 s back-off),
# with the slice's settings, and the program runs through the new one.
kill -KILL -- "-$spid"
newpid() { local p; p="$(cut -d' ' -f1 "$work/root/remote/$uid/server.pid" 2>/dev/null)"; [ -n "$p" ] && [ "$p" != "$spid" ] && kill -0 "$p"; }
wait_for 20 "the killed server was not started again" newpid
spid="$(cut -d' ' -f1 "$work/root/remote/$uid/server.pid")"
[ "$(cut -d' ' -f3 "$work/root/remote/$uid/server.pid")" = "$ruid" ] ||
  fail "the server started again left the slice's uid $ruid: $(cat "$work/root/remote/$uid/server.pid")"
grep -q "remote server ended.*status=137" "$work/node.log" || fail "the agent logged no server end"
wait_for 20 "no endpoint for the new server" has_ep
same_ep() { [ "$(cat "$addrf")" = "$(ep)" ]; }
wait_for 20 "the container's endpoint file does not follow the annotation" same_ep
out="$(timeout 60 env -i PATH="$PATH" "${envs[@]}" ASAN_OPTIONS=detect_leaks=0 \
  "$build/test/remote/remote_app" basic 2>&1)" || fail "basic after a restart: $out"
pass "the server killed: started again (pid $spid, the slice's uid $ruid kept) at $(ep); the program runs through it"

# gpu-r's agent restarted: the server is adopted, not doubled.
kill "$node_pid"
wait "$node_pid" 2>/dev/null || true
gpu_node
wait_for 20 "the restarted agent did not adopt the server" grep -q "remote server adopted.*pid=$spid port=[0-9]* uid=$ruid" "$work/node.log"
sleep 1
kill -0 "$spid" || fail "the server died with its agent"
[ "$(pgrep -fc -- "--slice $uid")" = 1 ] ||
  fail "not one server: $(pgrep -fa flexpu-remoted)"
pass "gpu-r's agent restarted: server $spid adopted with its uid $ruid, still the only one"

# A remote pod bound before the scheduler labelled pods (no label): gpu-r's
# agent, restarted, keeps its server (its one full list at start finds the
# pod; the label watch that follows does not show it), and the scheduler,
# back, labels it; the server stays the same all along.
stop_scheduler
kill "$node_pid"
wait "$node_pid" 2>/dev/null || true
kubectl label pod rpod flexpu.io/remote-gpu-node- >/dev/null
[ -z "$(rlabel)" ] || fail "the label was not removed"
audit="$work/cluster/audit.log"
sel='labelSelector=flexpu.io%2Fremote-gpu-node%3Dgpu-r'
label_lists() { jq -r --arg s "$sel" 'select(.verb == "list" and (.requestURI | contains($s))) | .auditID' "$audit" | sort -u | wc -l; }
n0="$(label_lists)"
gpu_node
adopted_twice() { [ "$(grep -c "remote server adopted.*pid=$spid" "$work/node.log")" = 2 ]; }
wait_for 20 "the restarted agent did not adopt the server" adopted_twice
more_lists() { [ "$(label_lists)" -gt "$n0" ]; }
wait_for 20 "the restarted agent did not list the labelled pods" more_lists
sleep 1
kill -0 "$spid" || fail "the server of the pod without the label was stopped"
grep -q "remote server stopped.*pod_uid=$uid" "$work/node.log" &&
  fail "the agent stopped the server of the pod without the label"
start_scheduler
relabelled() { [ "$(rlabel)" = gpu-r ]; }
wait_for 20 "the scheduler did not label the remote pod bound without the label" relabelled
sleep 1
kill -0 "$spid" && [ "$(pgrep -fc -- "--slice $uid")" = 1 ] ||
  fail "the server changed when the pod was labelled: $(pgrep -fa flexpu-remoted)"
pass "a remote pod without the label: the restarted agent kept its server ($spid), the scheduler labelled it"

# What gpu-r's agent asked the API server (the audit): one list of every
# pod at each start (above: pods bound before the label), then lists and
# watches of the pods labelled with gpu-r only; never a watch of every pod.
jq -r 'select(.userAgent == "flexpu-node" and .objectRef.namespace == null) | "\(.verb) \(.requestURI)"' \
  "$audit" >"$work/agent-requests.txt"
unfiltered_watch="$(grep '^watch ' "$work/agent-requests.txt" | grep -v -e 'fieldSelector=spec.nodeName' -e "$sel" || true)"
[ -z "$unfiltered_watch" ] || fail "an agent watches every pod: $unfiltered_watch"
grep -q "^watch .*$sel" "$work/agent-requests.txt" || fail "gpu-r's agent never watched with its label selector: $(sort -u "$work/agent-requests.txt")"
full="$(grep '^list ' "$work/agent-requests.txt" | grep -v -e 'fieldSelector=' -e 'labelSelector=' | wc -l)"
[ "$full" = 3 ] ||
  fail "want one full list of pods per start of gpu-r's agent (3 so far), got $full: $(sort -u "$work/agent-requests.txt")"
pass "gpu-r's agent watches only the pods labelled with it ($sel); one full list per start ($full)"

# An agent upgraded from a version whose servers ran on a shared state
# directory (their slice had no slice.conf): the server it finds outside its
# arbiter is stopped and started again as a slice, not adopted.
kill "$node_pid"
wait "$node_pid" 2>/dev/null || true
rm "$conf"
gpu_node
wait_for 20 "the restarted agent did not stop the server outside its arbiter" \
  grep -q "remote server outside the node's arbiter stopped.*pid=$spid" "$work/node.log"
wait_for 20 "the server outside the arbiter was not started again" newpid
old_spid="$spid"
spid="$(cut -d' ' -f1 "$work/root/remote/$uid/server.pid")"
wait_for 10 "the server started again has no slice.conf" grep -qx "tenant = $uid" "$conf"
wait_for 20 "the container's endpoint file does not follow the annotation" same_ep
pass "a server found outside the agent's arbiter (no slice.conf: an earlier version's) was stopped ($old_spid) and started again as a slice ($spid)"

# A rollout of gpu-r's agent: its container ends, and the servers with it
# (they run in it; the end of its PID namespace SIGKILLs them whatever
# their session). A program running through the server gets an error, not
# a hang (timeout would end it with 124).
timeout 60 env -i PATH="$PATH" "${envs[@]}" ASAN_OPTIONS=detect_leaks=0 \
  "$build/test/remote/remote_app" loop >"$work/loop.out" 2>&1 &
app=$!
wait_for 20 "the looping program did not start: $(cat "$work/loop.out")" grep -q '^running' "$work/loop.out"
# While it runs, the agent's arbiter page of the GPU lists the slice's
# tenant with its share and the worker's process (flexpu-smi reads the page
# and the ledgers): the server is arbitrated with the node's local slices.
smi() { "$build/flexpu-smi" --state-dir "$work/root/arb" --ledger-root "$work/root/ledger" 2>&1; }
on_page() { smi | grep -Eq "^  $uid +[0-9.]+ MiB +[0-9.]+ [KMG]?i?B +30% +100% normal .* [1-9][0-9]*\$"; }
wait_for 20 "the arbiter's page does not list the remote slice's tenant with a process: $(smi)" on_page
page_row="$(smi | grep "^  $uid ")"
kill -KILL "$node_pid"
kill -KILL -- "-$spid"
wait "$node_pid" 2>/dev/null || true
rc=0
wait "$app" || rc=$?
[ "$rc" = 3 ] && grep -q '^loop: cudaErrorDevicesUnavailable after' "$work/loop.out" ||
  fail "the running program at the rollout: exit $rc, want 3 and cudaErrorDevicesUnavailable: $(cat "$work/loop.out")"
# Restarted by the kubelet before the new agent: the old endpoint, nothing
# there (its connect tried once: FLEXPU_REMOTE_WAIT_MS=0).
out="$(timeout 30 env -i PATH="$PATH" "${envs[@]}" FLEXPU_REMOTE_WAIT_MS=0 ASAN_OPTIONS=detect_leaks=0 \
  "$build/test/remote/remote_app" nodevice 2>&1)" || fail "before the new agent: $out"
[[ $out == *"nodevice: cudaErrorDevicesUnavailable"* ]] ||
  fail "before the new agent: want cudaErrorDevicesUnavailable: $out"
# The new agent pod, at a new pod IP: the server started again, recorded.
old_ep="$(ep)"
gpu_node 127.0.0.2
wait_for 20 "the new agent did not start the server again" newpid
spid="$(cut -d' ' -f1 "$work/root/remote/$uid/server.pid")"
new_ep() { [[ $(ep) == 127.0.0.2:171[01][0-9] ]]; }
wait_for 20 "the new agent recorded no endpoint at its address (still $(ep))" new_ep
wait_for 20 "the container's endpoint file does not follow the annotation" same_ep
out="$(timeout 60 env -i PATH="$PATH" "${envs[@]}" ASAN_OPTIONS=detect_leaks=0 \
  "$build/test/remote/remote_app" basic 2>&1)" || fail "basic after the rollout: $out"
pass "the arbiter's page lists the remote slice while its program runs: $(tr -s ' ' <<<"$page_row")"
pass "a rollout of gpu-r's agent: the running program got $(sed -n 's/^loop: //p' "$work/loop.out"), one started before the new agent too; the new agent started the server again (pid $spid) at $(ep) (was $old_ep), the program runs through it"

kubectl delete pod rpod --wait=false >/dev/null
gone() { ! kill -0 "$spid" 2>/dev/null && [ ! -e "$work/root/remote/$uid" ]; }
wait_for 20 "the server outlived its pod" gone
[ ! -e "$work/root/slices/$key" ] && [ ! -e "$work/root/ledger/$key" ] ||
  fail "the server's slice outlived its pod: $(ls "$work/root/slices" "$work/root/ledger")"
off_page() { ! smi | grep -q "^  $uid "; }
wait_for 10 "the arbiter's page still lists the ended remote slice: $(smi)" off_page
cgone() { [ ! -e "$tokf" ] && [ ! -e "$addrf" ]; }
wait_for 20 "cpu-r kept the slice's token" cgone
pass "the pod deleted: server $spid stopped, its files and its slice gone (off the arbiter's page), on both nodes"

# A container whose endpoint never comes: a CUDA error after the bound,
# never a hang.
out="$(timeout 30 env -i PATH="$PATH" "${envs[@]}" FLEXPU_REMOTE_WAIT_MS=1000 ASAN_OPTIONS=detect_leaks=0 \
  "$build/test/remote/remote_app" nodevice 2>&1)" || fail "no endpoint: $out"
[[ $out == *"nodevice: cudaErrorDevicesUnavailable"* && $out == *"no endpoint in"* ]] ||
  fail "no endpoint: want cudaErrorDevicesUnavailable after the wait: $out"
pass "no endpoint within FLEXPU_REMOTE_WAIT_MS: cudaErrorDevicesUnavailable, not a hang"

# A remote pod of 2 GPUs (docs/REMOTE.md, "Remote pods of several GPUs"):
# gpu-r's agent, restarted with 2 GPUs, publishes them; a pod asking 2 (30
# cores and 64 MiB each) and 4 CPUs runs on cpu-r with both its slices on
# gpu-r, holding cpu-r's 2 remote slots (the kubelet's calls name both);
# one flexpu-remoted serves both GPUs, the unmodified program sees 2
# devices, its kernels run on the device it chose, and each device's quota
# is its own; the pod deleted, the server and its files go.
kill "$node_pid"
wait "$node_pid" 2>/dev/null || true
export FAKECUDA_DEVICES=2
gpu_node 127.0.0.2
two_gpus() { [ "$(kubectl get node gpu-r -o jsonpath='{.metadata.annotations.flexpu\.io/gpus}' | jq length)" = 2 ]; }
wait_for 20 "gpu-r's agent did not publish 2 GPUs" two_gpus
kubectl create -f - >/dev/null <<EOF2
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"r2pod","namespace":"default",
  "annotations":{"flexpu.io/remote":"allowed"}},
 "spec":{"schedulerName":"flexpu-scheduler","containers":[{"name":"c","image":"x",
   "resources":{"limits":{"cpu":"4","memory":"1Gi","flexpu.io/gpu":"2",
     "flexpu.io/gpu-cores":"30","flexpu.io/gpu-memory":"64Mi"}}}]}}
EOF2
bound2() { [ "$(kubectl get pod r2pod -o jsonpath='{.spec.nodeName}')" = cpu-r ]; }
wait_for 30 "the remote pod of 2 GPUs was not bound to cpu-r" bound2
alloc2="$(kubectl get pod r2pod -o jsonpath='{.metadata.annotations.flexpu\.io/allocation}')"
jq -e '.remote.node == "gpu-r" and (.gpus | length) == 2 and .gpus[0].uuid != .gpus[1].uuid and
  all(.gpus[]; .cores == 30 and .memory == 67108864)' <<<"$alloc2" >/dev/null ||
  fail "the allocation of the pod of 2 GPUs: $alloc2"
wait_event r2pod "runs on node cpu-r (no GPUs) with remote slices of GPUs 0,1 of node gpu-r"
uid2="$(kubectl get pod r2pod -o jsonpath='{.metadata.uid}')"
pass "a remote pod of 2 GPUs runs on cpu-r, both slices on gpu-r: $alloc2"
"$build/test/remote_kubelet" "$work/cdp" "$work/cpodres.sock" default r2pod remote-0,remote-1 \
  >"$work/ctr2.txt" 2>"$work/kubelet2.err" || fail "the kubelet's calls for 2 devices: $(cat "$work/kubelet2.err")"
grep -q '^prestart ok$' "$work/ctr2.txt" || fail "no PreStartContainer: $(cat "$work/ctr2.txt")"
map=()
while read -r _ ctr host mode; do map+=("$ctr" "$host"); done < <(grep '^mount ' "$work/ctr2.txt")
envs2=()
while read -r kv; do envs2+=("$(host_path "$kv")"); done < <(sed -n 's/^env //p' "$work/ctr2.txt")
ep2() { kubectl get pod r2pod -o jsonpath='{.metadata.annotations.flexpu\.io/remote-endpoint}'; }
has_ep2() { [ -n "$(ep2)" ]; }
wait_for 30 "gpu-r recorded no endpoint for the pod of 2 GPUs" has_ep2
out="$(timeout 60 env -i PATH="$PATH" "${envs2[@]}" FLEXPU_REMOTE_WAIT_MS=30000 ASAN_OPTIONS=detect_leaks=0 \
  "$build/test/remote/remote_app" multi 2>&1)" || fail "multi: $out"
[[ $out == *"device 1 refused after 48 MiB, device 0 after 48 MiB"* ]] ||
  fail "the pod of 2 GPUs: each device's quota is not its own: $out"
pid2="$(cut -d' ' -f1 "$work/root/remote/$uid2/server.pid")"
gpus2="$(jq -r '.gpus[0].uuid + " " + (.gpus[0].memory | tostring) + " " + .gpus[1].uuid' <<<"$alloc2")"
grep -q " $gpus2\$" "$work/root/remote/$uid2/server.pid" ||
  fail "server.pid does not name both GPUs ($gpus2): $(cat "$work/root/remote/$uid2/server.pid")"
[ "$(pgrep -fc -- "--slice $uid2")" = 1 ] || fail "not one server for the pod of 2 GPUs: $(pgrep -fa flexpu-remoted)"
grep -qx "memory_limit = 67108864" "$work/root/slices/remote-$uid2/slice.conf" ||
  fail "the slice of 2 GPUs: $(cat "$work/root/slices/remote-$uid2/slice.conf" 2>&1)"
pass "one server (pid $pid2) for both GPUs at $(ep2): $out"
kubectl delete pod r2pod --wait=false >/dev/null
gone2() { ! kill -0 "$pid2" 2>/dev/null && [ ! -e "$work/root/remote/$uid2" ] &&
  [ ! -e "$work/root/slices/remote-$uid2" ] && [ ! -e "$work/root/ledger/remote-$uid2" ]; }
wait_for 20 "the server of 2 GPUs or its files outlived its pod" gone2
pass "the pod of 2 GPUs deleted: its server stopped, its files and its slice gone"
