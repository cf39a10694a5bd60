#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end test of the node agent with a real kubelet (the version pinned by
# test/cluster/tools/kube/go.mod, built by test/cluster/build-binaries.sh) on the test control plane
# (test/cluster), instead of the dppeer stand-in of node_e2e.sh:
#  - the kubelet registers its Node with the API server; flexpu-node (the
#    fake NVML with 8 GPUs) registers its device plugin with that kubelet,
#    which then advertises 128 flexpu.io/gpu, next to the agent's
#    gpu-cores/gpu-memory, and 16 fewer while a GPU is lost;
#  - flexpu-scheduler binds 6 GPU pods (whole GPUs and slices) at once; the
#    kubelet admits them all, calling GetPreferredAllocation, Allocate and
#    PreStartContainer in its own order, and creates their containers;
#  - what the kubelet handed each container in CreateContainer, as the CRI
#    runtime received it: the device nodes of the pod's GPUs and the control
#    devices, the slice directory, /etc/ld.so.preload, the runtime library,
#    the slice's own ledger (no shared state), FLEXPU_ALLOCATION and
#    NVIDIA_VISIBLE_DEVICES, and a slice.conf already naming the pod when
#    the container was created (PreStartContainer ran first);
#  - the kubelet's PodResources API lists each pod's devices on its GPUs;
#  - the kubelet restarted: the plugin registers again, running pods keep
#    their devices and containers, and new pods are admitted;
#  - flexpu-node killed and started again: the kubelet takes the new
#    registration and its health updates, running slices stay as they were,
#    a new pod is admitted;
#  - pods deleted through the kubelet's own termination: containers
#    stopped, slices and ledgers removed.
#
# The container runtime is fakecri (test/cluster/tools/kube/fakecri): the
# CRI of k8s.io/cri-client's official fakes, which runs nothing and records
# every request. docs/KUBERNETES.md says why no real containers run here.
#
# The kubelet's device-plugin directory is fixed in its code at
# /var/lib/kubelet/device-plugins; the kubelet runs in a mount namespace of
# its own (unshare -m) where the test's directory is bind-mounted there (and
# over /var/log, for its fixed /var/log/containers), so nothing of the
# host's changes but that empty mount point. Needs root.
#
#   kubelet_e2e.sh BUILD_DIR
E2E_NAME=kubelet-e2e
E2E_LOGS="node.log scheduler.log kubelet.log fakecri.log"
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
kdir="$work/kubelet"           # the kubelet's --root-dir
dp="$kdir/device-plugins"      # seen by the kubelet as /var/lib/kubelet/device-plugins
podres="$kdir/pod-resources/kubelet.sock"
fx="$work/root"                # flexpu-node's --root
kubelet_pid=""
start=$SECONDS
# The kubelet is not in $pids: a restart replaces it.
e2e_on_exit() { [ -z "$kubelet_pid" ] || kill "$kubelet_pid" 2>/dev/null || true; }
say() { echo "kubelet-e2e: $*"; }

# The kubelet needs root, and a mount namespace for its device-plugin
# directory: without them there is nothing to test here.
if [ "$(id -u)" != 0 ] ||
   ! unshare -m --propagation private sh -c "mkdir -p '$work/probe-a' '$work/probe-b' &&
       mount --bind '$work/probe-a' '$work/probe-b'" 2>/dev/null; then
  say "skip: the kubelet needs root and a private mount namespace (unshare -m), which this machine refuses"
  exit 0
fi

e2e_up

# --- deploy/ and the components' service-account credentials ---
kubectl apply -k "$root/deploy" >"$work/apply.log" 2>&1 || { cat "$work/apply.log" >&2; fail "kubectl apply -k deploy"; }
sa_kubeconfig() { # sa out
  local token
  token="$(kubectl create token "$1" -n flexpu-system --duration=1h)"
  kubectl config view --raw --minify -o json |
    jq --arg t "$token" '.users[0].user = {token: $t}' >"$2"
}
sa_kubeconfig flexpu-node "$work/node.kubeconfig"
sa_kubeconfig flexpu-scheduler "$work/scheduler.kubeconfig"

# --- the container runtime and the kubelet ---
"$bin/fakecri" --socket "$work/cri.sock" --record "$work/cri.jsonl" \
  --read-file-mounted-at /etc/flexpu --read-file-name slice.conf >"$work/fakecri.log" 2>&1 &
pids+=($!)
wait_for 10 "fakecri did not listen" test -S "$work/cri.sock"

# No cgroups are managed (the fake runtime runs nothing, and this machine may
# have cgroup v1, which v1.37 refuses by default: failCgroupV1), no swap
# check, no eviction thresholds that a busy CI disk could cross, servers on
# loopback and free ports, logs and state under $work.
mkdir -p "$kdir" "$dp"
cat >"$work/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $(free_port)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(free_port)
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$work/cri.sock
imageServiceEndpoint: unix://$work/cri.sock
podLogsDir: $kdir/pod-logs
volumePluginDir: $kdir/volume-plugins
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
localStorageCapacityIsolation: false
resolvConf: ""
syncFrequency: 5s
nodeStatusUpdateFrequency: 5s
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
EOF
# The kubelet also makes /var/log/containers (links to container logs),
# which no setting moves: in its namespace /var/log is the test's directory.
mkdir -p "$work/var-log"
start_kubelet() { # log
  unshare -m --propagation private sh -c '
    mkdir -p /var/lib/kubelet/device-plugins &&
    mount --bind "$1" /var/lib/kubelet/device-plugins && mount --bind "$2" /var/log &&
    shift 2 && exec "$@"' sh "$dp" "$work/var-log" \
    "$bin/kubelet" --config "$work/kubelet.yaml" --kubeconfig "$KUBECONFIG" \
    --root-dir "$kdir" --cert-dir "$kdir/pki" --hostname-override gpu-1 \
    --node-labels flexpu.io/gpu-node=true --v=2 >"$1" 2>&1 &
  kubelet_pid=$!
  ln -sf "$1" "$work/kubelet.log"
}
start_kubelet "$work/kubelet-1.log"
node_ready() {
  [ "$(kubectl get node gpu-1 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for 60 "the kubelet did not register a Ready node gpu-1" node_ready
kver="$(kubectl get node gpu-1 -o jsonpath='{.status.nodeInfo.kubeletVersion}')"
want="$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$root/test/cluster/tools/kube/go.mod")"
[ "$kver" = "$want" ] || fail "node gpu-1 runs kubelet '$kver', want $want (test/cluster/tools/kube/go.mod)"
pass "the kubelet $kver registers node gpu-1 Ready on the fake runtime ($((SECONDS - start)) s)"

# --- flexpu-node on it ---
lost="$work/lost-gpus"
: >"$lost"
start_node() { # its log goes on in node.log
  FAKECUDA_DEVICES=8 FAKECUDA_TOTAL_MEM=$((80 * 1073741824)) FAKENVML_NAME="NVIDIA A100-SXM4-80GB" \
  FAKENVML_NUMA=0,0,0,0,1,1,1,1 FAKENVML_NVLINK=0-3,4-7 FAKENVML_LOST_FILE="$lost" \
    "$build/flexpu-node" --kubeconfig "$work/node.kubeconfig" --node-name gpu-1 \
    --nvml-library "$build/test/fakecuda/libnvidia-ml.so.1" \
    --device-plugin-dir "$dp" --pod-resources-socket "$podres" \
    --root "$fx" --runtime-library "$build/libflexpu-cuda.so" --size-limits off \
    --metrics-port 0 --log-level debug >>"$work/node.log" 2>&1 &
  node_pid=$!
  pids+=("$node_pid")
}
start_node
alloc() { kubectl get node gpu-1 -o jsonpath="{.status.allocatable.flexpu\.io/$1}"; }
advertised() { [ "$(alloc gpu)" = 128 ] && [ "$(alloc gpu-cores)" = 800 ]; }
wait_for 30 "the kubelet does not advertise 128 flexpu.io/gpu and the agent 800 gpu-cores" advertised
registrations() { grep -c 'msg="registered with the kubelet"' "$work/node.log" || true; }
[ "$(registrations)" = 1 ] || fail "flexpu-node registered $(registrations) times, want 1"
grep -q '"Device plugin connected" resourceName="flexpu.io/gpu"' "$work/kubelet-1.log" ||
  fail "the kubelet's log does not show the plugin connected"
pass "flexpu-node registers with the kubelet: 128 flexpu.io/gpu (8 GPUs x 16) allocatable, 800 gpu-cores"

# --- a GPU lost and back: the kubelet follows ListAndWatch ---
gpus_are() { # capacity allocatable
  [ "$(kubectl get node gpu-1 -o jsonpath='{.status.capacity.flexpu\.io/gpu}')" = "$1" ] &&
    [ "$(alloc gpu)" = "$2" ]
}
echo 7 >"$lost"
wait_for 30 "the kubelet does not count GPU 7's 16 devices out when it is lost" gpus_are 128 112
: >"$lost"
wait_for 30 "the kubelet does not count GPU 7 back in" gpus_are 128 128
pass "a GPU lost and back: the kubelet's allocatable flexpu.io/gpu follows (128, 112, 128)"

# --- the scheduler places pods, the kubelet admits them ---
"$build/flexpu-scheduler" --kubeconfig "$work/scheduler.kubeconfig" --leader-elect=true \
  --lease-namespace flexpu-system --log-level debug >"$work/scheduler.log" 2>&1 &
pids+=($!)
pod() { # name gpus [cores] [memory]
  local lim="\"cpu\":\"100m\",\"memory\":\"64Mi\",\"flexpu.io/gpu\":\"$2\""
  [ -n "${3:-}" ] && lim="$lim,\"flexpu.io/gpu-cores\":\"$3\""
  [ -n "${4:-}" ] && lim="$lim,\"flexpu.io/gpu-memory\":\"$4\""
  kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default"},
 "spec":{"schedulerName":"flexpu-scheduler","dnsPolicy":"Default","containers":[{"name":"main",
   "image":"registry.invalid/flexpu-test:1","resources":{"limits":{$lim}}}]}}
EOF
}
running() { # count
  [ "$(kubectl get pods -o json | jq '[.items[] | select(.status.phase == "Running" and
      (.status.containerStatuses[0].state.running != null))] | length')" = "$1" ]
}
first=(whole-2 whole-1 slice-30a slice-30b slice-40 slice-50)
pod whole-2 2
pod whole-1 1
pod slice-30a 1 30 8Gi
pod slice-30b 1 30 8Gi
pod slice-40 1 40
pod slice-50 1 50 16Gi
wait_for 90 "the kubelet did not run the 6 pods" running 6
pass "6 pods created at once: bound by flexpu-scheduler, admitted and started by the kubelet ($((SECONDS - start)) s)"

# --- what each container got ---
creates() { # uid: the CreateContainer records of the pod
  jq -c --arg u "$1" 'select(.call == "CreateContainer" and .pod.uid == $u)' "$work/cri.jsonl"
}
line_of() { # fixed-string: the first line of the agent's log holding it, or 0
  grep -nF -m1 -- "$1" "$work/node.log" | cut -d: -f1 || true
}
declare -A key_of uid_of cid_of
check_pod() { # name
  local name="$1" p uid a ngpu rec key want got conf lp la lw m cp hp ro
  p="$(kubectl get pod "$name" -o json)"
  uid="$(jq -r .metadata.uid <<<"$p")"
  a="$(jq -r '.metadata.annotations["flexpu.io/allocation"]' <<<"$p")"
  ngpu="$(jq '.gpus | length' <<<"$a")"
  [ "$(creates "$uid" | wc -l)" = 1 ] || fail "$name: $(creates "$uid" | wc -l) CreateContainer calls, want 1"
  rec="$(creates "$uid")"
  jq -e '.error == null' <<<"$rec" >/dev/null || fail "$name: CreateContainer failed: $rec"
  # Devices: the control devices and exactly the pod's GPUs, host = container path.
  want="$(jq -c '["/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidiactl"] +
                 [.gpus[] | "/dev/nvidia\(.index)"] | sort' <<<"$a")"
  got="$(jq -c '[.create.devices[] | .container_path] | sort' <<<"$rec")"
  [ "$got" = "$want" ] || fail "$name: devices $got, want $want"
  jq -e '.create.devices | all(.host_path == .container_path and .permissions == "rw")' <<<"$rec" \
    >/dev/null || fail "$name: device host paths or permissions: $(jq -c .create.devices <<<"$rec")"
  # Environment.
  key="$(jq -r '.create.envs.FLEXPU_ALLOCATION // ""' <<<"$rec")"
  [[ "$key" =~ ^[0-9a-f]{24}$ ]] || fail "$name: FLEXPU_ALLOCATION '$key' is not a slice key"
  want="$(jq -r '[.gpus[].uuid] | sort | join(",")' <<<"$a")"
  got="$(jq -r '.create.envs.NVIDIA_VISIBLE_DEVICES // "" | split(",") | sort | join(",")' <<<"$rec")"
  [ "$got" = "$want" ] || fail "$name: NVIDIA_VISIBLE_DEVICES '$got', want '$want'"
  # Mounts: container path, host path, read-only.
  for m in "/etc/flexpu $fx/slices/$key true" "/etc/ld.so.preload $fx/ld.so.preload true" \
           "/usr/lib/flexpu/libflexpu-cuda.so $fx/lib/libflexpu-cuda.so true" \
           "/run/flexpu/ledger $fx/ledger/$key false" "/run/flexpu/arb $fx/arb true"; do
    read -r cp hp ro <<<"$m"
    jq -e --arg c "$cp" --arg h "$hp" --argjson r "$ro" \
      '[.create.mounts[] | select(.container_path == $c and .host_path == $h and .readonly == $r)] | length == 1' \
      <<<"$rec" >/dev/null || fail "$name: no mount $cp from $hp (read-only $ro): $(jq -c .create.mounts <<<"$rec")"
  done
  # The agent arbitrates: no shared state directory (docs/SECURITY.md).
  jq -e '[.create.mounts[] | select(.container_path == "/run/flexpu/state")] | length == 0' \
    <<<"$rec" >/dev/null || fail "$name: the shared state directory is mounted: $(jq -c .create.mounts <<<"$rec")"
  [ -d "$fx/ledger/$key" ] || fail "$name: ledger directory $fx/ledger/$key missing"
  # slice.conf as the container would have read it when it was created:
  # PreStartContainer had already written it for this pod.
  conf="$(jq -r '.create.file // ""' <<<"$rec")"
  grep -qx "tenant = $uid" <<<"$conf" ||
    fail "$name: slice.conf at CreateContainer does not name the pod ($uid): '$conf' $(jq -r '.create.file_error // ""' <<<"$rec")"
  want="$(jq -r '.gpus[0].cores' <<<"$a")"
  grep -qx "compute_share = $want" <<<"$conf" || fail "$name: slice.conf at CreateContainer: compute_share is not $want: '$conf'"
  # The kubelet's calls, in the agent's log: a preferred allocation for the
  # pod, then Allocate of the slice's devices, then PreStartContainer writing
  # the slice for the pod.
  lp="$(line_of "msg=\"preferred allocation\" pod=default/$name ")"
  la="$(line_of "msg=\"allocated\" key=$key ")"
  lw="$(line_of "msg=\"slice written\" pod=default/$name key=$key ")"
  [ -n "$lp" ] && [ -n "$la" ] && [ -n "$lw" ] && [ "$lp" -lt "$la" ] && [ "$la" -lt "$lw" ] ||
    fail "$name: want GetPreferredAllocation, Allocate, PreStartContainer in that order in the agent's log (lines '$lp' '$la' '$lw')"
  # The kubelet's PodResources: the pod's container holds one device of each
  # of its GPUs.
  want="$(jq -c '[.gpus[].uuid] | sort' <<<"$a")"
  got="$("$bin/podresources" --socket "$podres" |
         jq -c --arg n "$name" '[.[] | select(.namespace == "default" and .name == $n) |
           .containers[] | select(.name == "main") | .devices["flexpu.io/gpu"][]? | sub("::[0-9]+$"; "")] | sort')"
  [ "$got" = "$want" ] || fail "$name: PodResources lists devices on GPUs $got, want one on each of $want"
  key_of[$name]="$key"
  uid_of[$name]="$uid"
  cid_of[$name]="$(jq -r .id <<<"$rec")"
  say "     $name: $ngpu GPU(s) $(jq -r '[.gpus[] | "\(.index):\(.cores)%"] | join(",")' <<<"$a"), slice $key"
}
for n in "${first[@]}"; do check_pod "$n"; done
keys="$(for n in "${first[@]}"; do echo "${key_of[$n]}"; done | sort -u | wc -l)"
[ "$keys" = 6 ] || fail "6 pods share slice directories: $keys distinct keys"
pass "each container got its GPUs' device nodes, the slice, ld.so.preload, the library, its ledger (no shared state) and environment; slice.conf named the pod before the container was created; PodResources lists the devices"

# --- the kubelet restarts ---
creates_before="$(grep -c '"call":"CreateContainer"' "$work/cri.jsonl")"
allocs() { grep -c 'msg="allocated"' "$work/node.log" || true; }
allocs_before="$(allocs)"
kill -TERM "$kubelet_pid"
for _ in $(seq 1 100); do kill -0 "$kubelet_pid" 2>/dev/null || break; sleep 0.2; done
kill -0 "$kubelet_pid" 2>/dev/null && fail "the kubelet did not stop on SIGTERM"
wait "$kubelet_pid" 2>/dev/null || true
start_kubelet "$work/kubelet-2.log"
registered_times() { [ "$(registrations)" -ge "$1" ]; }
wait_for 60 "flexpu-node did not register again after the kubelet restarted" registered_times 2
connected_again() { grep -q '"Device plugin connected" resourceName="flexpu.io/gpu"' "$work/kubelet-2.log"; }
wait_for 30 "the restarted kubelet does not show the plugin connected" connected_again
wait_for 30 "node gpu-1 is not Ready after the kubelet restart" node_ready
# The running pods keep their containers (none stopped or created again) and
# their devices.
sleep 5 # a few of the restarted kubelet's pod syncs
for n in "${first[@]}"; do
  [ "$(creates "${uid_of[$n]}" | wc -l)" = 1 ] || fail "$n: its container was created again after the kubelet restart"
  ! grep -F "\"id\":\"${cid_of[$n]}\"" "$work/cri.jsonl" | grep -q '"call":"StopContainer"' ||
    fail "$n: its container was stopped by the kubelet restart"
done
running 6 || fail "not all 6 pods are running after the kubelet restart"
[ "$(allocs)" = "$allocs_before" ] ||
  fail "the restarted kubelet called Allocate again ($allocs_before before, $(allocs) after): the running pods' devices come from its checkpoint"
for n in "${first[@]}"; do
  got="$("$bin/podresources" --socket "$podres" |
         jq -r --arg n "$n" '[.[] | select(.name == $n) | .containers[].devices["flexpu.io/gpu"][]?] | length')"
  want="$(kubectl get pod "$n" -o json | jq '.metadata.annotations["flexpu.io/allocation"] | fromjson | .gpus | length')"
  [ "$got" = "$want" ] || fail "$n: PodResources lists $got devices after the restart, want $want"
done
pass "kubelet restarted: the plugin registered again; the 6 pods kept their containers and devices"
second=(slice-20 whole-1b)
pod slice-20 1 20 4Gi
pod whole-1b 1
wait_for 90 "the restarted kubelet did not run 2 new pods" running 8
for n in "${second[@]}"; do check_pod "$n"; done
[ "$(grep -c '"call":"CreateContainer"' "$work/cri.jsonl")" = $((creates_before + 2)) ] ||
  fail "want 2 containers created after the restart, the new pods' alone"
pass "the restarted kubelet admits new pods with their devices and slices"

# --- flexpu-node restarts (a crash, or a DaemonSet update) under the kubelet ---
slices_before="$(cat "$fx"/slices/*/slice.conf | sha256sum)"
kill -KILL "$node_pid"
wait "$node_pid" 2>/dev/null || true
start_node
wait_for 30 "flexpu-node did not register again after its restart" registered_times 3
! grep -q 'already connected' "$work/node.log" || fail "the kubelet refused the restarted plugin: $(grep -m1 'already connected' "$work/node.log")"
# The kubelet reads the new process's ListAndWatch.
echo 6 >"$lost"
wait_for 30 "the kubelet does not see GPU 6 lost through the restarted plugin" gpus_are 128 112
: >"$lost"
wait_for 30 "the kubelet does not see GPU 6 back through the restarted plugin" gpus_are 128 128
[ "$(cat "$fx"/slices/*/slice.conf | sha256sum)" = "$slices_before" ] ||
  fail "the running pods' slice files changed when flexpu-node restarted"
third=(slice-10)
pod slice-10 1 10 2Gi
wait_for 90 "no new pod runs after flexpu-node restarted" running 9
check_pod slice-10
pass "flexpu-node restarted: the kubelet took its registration and its health updates; running slices unchanged; a new pod admitted"

# --- pods deleted: the kubelet stops them, the agent removes their slices ---
all=("${first[@]}" "${second[@]}" "${third[@]}")
[ "$(find "$fx/slices" -name slice.conf | wc -l)" = 9 ] || fail "want 9 slice files before deletion"
kubectl delete pods --all --wait=true --timeout=90s >/dev/null || fail "pods were not deleted within 90 s"
for n in "${all[@]}"; do
  grep -F "\"id\":\"${cid_of[$n]}\"" "$work/cri.jsonl" | grep -q '"call":"StopContainer"' ||
    fail "$n: the kubelet never stopped its container"
done
no_slices() { [ "$(find "$fx/slices" -mindepth 1 -maxdepth 1 | wc -l)" = 0 ] &&
              [ "$(find "$fx/ledger" -mindepth 1 -maxdepth 1 | wc -l)" = 0 ]; }
wait_for 30 "slice or ledger directories remain after their pods were deleted" no_slices
no_devices() { [ "$("$bin/podresources" --socket "$podres" |
                    jq '[.[].containers[].devices["flexpu.io/gpu"][]?] | length')" = 0 ]; }
wait_for 30 "PodResources still lists flexpu devices after the pods were deleted" no_devices
pass "9 pods deleted through the kubelet: containers stopped, slices and ledgers removed, no devices listed"

kill -TERM "$node_pid"
wait_for 10 "flexpu-node did not remove its socket on SIGTERM" test ! -e "$dp/flexpu-gpu.sock"
pass "flexpu-node stops cleanly ($((SECONDS - start)) s in all)"
