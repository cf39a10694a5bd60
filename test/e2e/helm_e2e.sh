#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end test of the Helm chart deploy/helm/flexpu, with helm built from
# its upstream Go module (test/cluster/tools/helm), on a real API server
# (test/cluster):
#  - helm lint --strict, with the default values and with overrides;
#  - helm template with the default values (and the chart's crds/: the Queue
#    CRD) renders what `kubectl apply -k deploy/` applies, object for object
#    and field for field (Helm's own labels, the config checksum and the
#    image's docker.io/ aside), so the
#    chart and the plain manifests cannot drift apart;
#  - helm template with overrides (registry, tag, pull secrets,
#    runtimeClassName, tolerations, nodeSelector, affinity, resources,
#    unprivileged size limits off, metrics off, a ServiceMonitor, another
#    release name) renders each value where it belongs; every flag the chart
#    passes is one the binaries' --help lists;
#  - bad values fail with the field and the value named (values.schema.json,
#    and the combinations the templates check), and install nothing;
#  - helm install (release gpu in namespace gpu-system, registry, tolerations,
#    nodeSelector, runtimeClassName, scheduler name): the objects exist with
#    those values, the Queue CRD too, and the scheduler's RBAC for queues and
#    preemption is what deploy/rbac.yaml says; flexpu-scheduler, run with the Deployment's own arguments
#    and its service account's token, takes the release's Lease and binds a
#    pod with its allocation, which the release's admission policy refuses
#    from a tenant;
#  - helm upgrade changing values rolls the pods' config checksum; a bad
#    upgrade changes nothing; helm uninstall removes every object.
# Given an OCI image (make image's LAYOUT:TAG), flexpu-scheduler runs from
# it instead of BUILD_DIR: unpacked, chrooted, as user 65532, as the
# Deployment would run it (root needed for chroot).
#
#   helm_e2e.sh BUILD_DIR [IMAGE]        (IMAGE: out/image/oci:dev)
E2E_NAME=helm-e2e
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
image="${2:-}"
if [ -n "$image" ] && [ "$(id -u)" != 0 ]; then
  echo "helm-e2e: running flexpu-scheduler from $build, not from $image: chroot needs root"
  image=""
fi
chart="$root/deploy/helm/flexpu"
start=$SECONDS
e2e_up
# helm's caches and settings stay in the test's directory.
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" \
       HELM_DATA_HOME="$work/helm/data"

e2e_on_fail() { helm list -A || true; }

# --- lint ---
helm lint --strict "$chart" >"$work/lint.log" 2>&1 || { cat "$work/lint.log" >&2; fail "helm lint"; }
helm lint --strict "$chart" --set image.registry=registry.example.com:5000 --set node.runtimeClassName=nvidia \
  --set node.sizeLimits=off --set node.privileged=false --set metrics.serviceMonitor.enabled=true \
  >"$work/lint.log" 2>&1 || { cat "$work/lint.log" >&2; fail "helm lint with overrides"; }
pass "helm lint --strict, with the default values and with overrides"

# YAML to JSON, one array of objects, through kubectl's client-side dry run
# (it knows every built-in kind from the API server's discovery).
tojson() { kubectl create --dry-run=client -o json -f - | jq -s .; }
render() { helm template "$@" "$chart" | tojson; }
# obj JSON KIND NAME: one object.
obj() { jq --arg k "$2" --arg n "$3" '.[] | select(.kind == $k and .metadata.name == $n)' <<<"$1"; }

# --- the defaults render what deploy/ applies ---
# What Helm adds and kustomize does not: the release's labels (and
# part-of on objects deploy/ leaves unlabelled), the config checksum, the
# image's explicit registry and pull policy; and whitespace in CEL.
normalize() {
  jq -S '
    def unhelm: if type == "object" then
      del(.["app.kubernetes.io/instance"], .["app.kubernetes.io/managed-by"],
          .["app.kubernetes.io/version"], .["helm.sh/chart"]) else . end;
    map(select(.kind != "Namespace")
      | .metadata.labels |= ((. // {}) | unhelm | del(.["app.kubernetes.io/part-of"]))
      | if .metadata.labels == {} then del(.metadata.labels) else . end
      | if .spec.selector.matchLabels then .spec.selector.matchLabels |= unhelm else . end
      | if .spec.template then
          .spec.template.metadata.labels |= unhelm
          | .spec.template.metadata.annotations |= ((. // {}) | del(.["checksum/config"]))
          | if .spec.template.metadata.annotations == {} then del(.spec.template.metadata.annotations) else . end
          | .spec.template.spec.containers |= map(.image |= sub("^docker\\.io/"; "")
              | if .imagePullPolicy == "IfNotPresent" then del(.imagePullPolicy) else . end)
        else . end
      # CEL ignores whitespace; kustomize re-folds the YAML of deploy/ and
      # doubles the line break before a more-indented line.
      | if .kind == "ValidatingAdmissionPolicy" then
          .spec |= walk(if type == "string" then gsub("\\s+"; " ") else . end) else . end)
    | sort_by(.kind, .metadata.name)'
}
kubectl kustomize "$root/deploy" | tojson | normalize >"$work/kustomize.json"
# --include-crds: the Queue CRD in the chart's crds/ is part of what deploy/ applies.
render --include-crds flexpu -n flexpu-system | normalize >"$work/helm.json"
[ "$(jq length "$work/kustomize.json")" -ge 12 ] || fail "deploy/ rendered $(jq length "$work/kustomize.json") objects"
if ! diff -u "$work/kustomize.json" "$work/helm.json" >"$work/drift.diff"; then
  head -n 80 "$work/drift.diff" >&2
  fail "helm template with the default values differs from deploy/ (above: - deploy/, + chart)"
fi
pass "helm template (defaults) = kubectl kustomize deploy/: $(jq -r 'map(.kind) | group_by(.) | map("\(length) \(.[0])") | join(", ")' "$work/helm.json")"

# --- remote slices (node.remote) ---
r="$(render flexpu -n flexpu-system --set node.remote.enabled=true --set node.remote.slots=3 \
  --set node.remote.ports=7200-7210)"
key="$(obj "$r" Secret flexpu-remote-key)"
[ "$(jq -r '.data.key | @base64d | length' <<<"$key")" = 64 ] || fail "the remote key Secret: $key"
jq -e '.metadata.annotations["helm.sh/resource-policy"] == "keep"' <<<"$key" >/dev/null ||
  fail "the remote key is not kept: $key"
ds="$(obj "$r" DaemonSet flexpu-node-remote)"
jq -e '.spec.template.spec.containers[0].args | index("--remote-slots=3") and
    index("--remote-key=/etc/flexpu-remote/key")' <<<"$ds" >/dev/null || fail "node-remote: $ds"
jq -e '.spec.template.spec.nodeSelector["flexpu.io/remote-node"] == "true" and
    (.spec.template.spec.volumes[] | select(.name == "remote-key") | .secret.defaultMode == 256)' \
  <<<"$ds" >/dev/null || fail "node-remote's selector or key volume: $ds"
gds="$(obj "$r" DaemonSet flexpu-node)"
jq -e '.spec.template.spec.containers[0].args | index("--remote-ports=7200-7210")' <<<"$gds" \
  >/dev/null || fail "the GPU nodes' agent does not serve remote slices: $gds"
# The servers run in the GPU agent's container: its memory limit is
# node.resources' plus node.remote.serverMemory (1Gi) per port, 11 here
# (docs/REMOTE.md, "The servers' host memory"); the CPU nodes' agent,
# which runs none, keeps node.resources'. Without node.remote the default
# render above equals deploy/ (128Mi).
jq -e '.spec.template.spec.containers[0].resources.limits.memory == "11392Mi" and
    .spec.template.spec.containers[0].resources.requests.memory == "32Mi"' <<<"$gds" >/dev/null ||
  fail "the GPU agent's memory limit is not 128Mi + 11 x 1Gi: $(jq -c '.spec.template.spec.containers[0].resources' <<<"$gds")"
jq -e '.spec.template.spec.containers[0].resources.limits.memory == "128Mi"' <<<"$ds" >/dev/null ||
  fail "the CPU nodes' agent's memory limit changed: $(jq -c '.spec.template.spec.containers[0].resources' <<<"$ds")"
m="$(obj "$(render flexpu -n flexpu-system --set node.remote.enabled=true --set node.remote.ports=7100-7103 \
  --set node.resources.limits.memory=0.5Gi --set node.remote.serverMemory=768Mi)" DaemonSet flexpu-node)"
jq -e '.spec.template.spec.containers[0].resources.limits.memory == "3584Mi"' <<<"$m" >/dev/null ||
  fail "0.5Gi + 4 x 768Mi is not 3584Mi: $(jq -c '.spec.template.spec.containers[0].resources' <<<"$m")"
m="$(obj "$(render flexpu -n flexpu-system --set node.remote.enabled=true --set node.resources.limits=null)" \
  DaemonSet flexpu-node)"
jq -e '.spec.template.spec.containers[0].resources | has("limits") | not' <<<"$m" >/dev/null ||
  fail "no node limit became one: $(jq -c '.spec.template.spec.containers[0].resources' <<<"$m")"
for bad in 1G 0Gi lots 1.5Gi; do
  out="$(helm template flexpu "$chart" --set node.remote.enabled=true \
    --set-string node.remote.serverMemory="$bad" 2>&1)" && fail "node.remote.serverMemory $bad accepted"
  grep -q "node/remote/serverMemory" <<<"$out" || fail "serverMemory $bad: $out"
done
out="$(helm template flexpu "$chart" --set node.remote.enabled=true --set node.remote.ports=7199-7100 2>&1)" &&
  fail "node.remote.ports 7199-7100 accepted"
grep -q "node.remote.ports=7199-7100" <<<"$out" || fail "ports 7199-7100: $out"
out="$(helm template flexpu "$chart" --set node.remote.enabled=true \
  --set node.resources.limits.memory=100m 2>&1)" && fail "a limit of 100m (milli) accepted"
grep -q "node.resources.limits.memory=100m" <<<"$out" || fail "limit 100m: $out"
# A number no quantity has (two points, a point alone) is refused too: read
# as 0, it would drop node.resources' limit from the sum.
for bad in 128.0.0Mi 1.5.Gi . .Mi 1..5; do
  out="$(helm template flexpu "$chart" --set node.remote.enabled=true \
    --set-string node.resources.limits.memory="$bad" 2>&1)" && fail "a limit of $bad accepted"
  grep -qF "node.resources.limits.memory=$bad: not an amount" <<<"$out" || fail "limit $bad: $out"
done
jq -e 'any(.rules[]; .resources == ["pods"] and .verbs == ["patch"])' \
  <<<"$(obj "$r" ClusterRole flexpu-node)" >/dev/null || fail "the agents may not patch pods"
# The scheduler labels remote pods with their GPU node (flexpu.io/remote-gpu-node).
jq -e 'any(.rules[]; .resources == ["pods"] and .verbs == ["patch"])' \
  <<<"$(obj "$r" ClusterRole flexpu-scheduler)" >/dev/null || fail "the scheduler may not patch pods"
out="$(helm template flexpu "$chart" --set node.remote.slots=0 2>&1)" && fail "slots 0 accepted"
grep -q "node/remote/slots" <<<"$out" || fail "slots 0: $out"
pass "node.remote: a kept 64-character key Secret, <prefix>-node-remote with --remote-slots on cpuNodeSelector, the GPU agents serving with a memory limit of node.resources' plus serverMemory per port (11392Mi for 11 ports; 3584Mi; none without a limit; the CPU agents' unchanged), pods patchable (by the agents and the scheduler); slots 0, a bad serverMemory, unordered ports, a milli limit and a malformed one (128.0.0Mi) refused"

# The servers' user (never root) and the agent's capabilities to start
# them as it and stop them; the NetworkPolicy on their ports. holds FILTER
# JSON: JSON is an object (jq -e alone passes on no input) and FILTER holds.
holds() { [ -n "$2" ] && jq -e "$1" <<<"$2" >/dev/null; }
holds '.spec.template.spec.containers[0].args | index("--remote-uid=65534") and
    index("--remote-gid=65534")' "$gds" || fail "the servers' user: $gds"
u="$(obj "$(render flexpu -n flexpu-system --set node.remote.enabled=true --set node.privileged=false \
  --set node.sizeLimits=off --set node.remote.uid=1234 --set node.remote.gid=44)" DaemonSet flexpu-node)"
holds '.spec.template.spec.containers[0] | (.args | index("--remote-uid=1234") and
    index("--remote-gid=44")) and .securityContext.capabilities.add ==
    ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SYS_NICE", "SETUID", "SETGID", "KILL"]' "$u" ||
  fail "node.remote.uid/gid or the capabilities to change user: $u"
u="$(obj "$(render flexpu -n flexpu-system --set node.privileged=false --set node.sizeLimits=off)" \
  DaemonSet flexpu-node)"
holds '.spec.template.spec.containers[0].securityContext.capabilities.add ==
    ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SYS_NICE"]' "$u" || fail "without node.remote the agent gained capabilities: $u"
out="$(helm template flexpu "$chart" --set node.remote.enabled=true --set node.remote.uid=0 2>&1)" &&
  fail "node.remote.uid 0 accepted"
grep -q "node/remote/uid" <<<"$out" || fail "uid 0: $out"
# A user per slice: the range replaces the shared uid; a malformed one is refused.
u="$(obj "$(render flexpu -n flexpu-system --set node.remote.enabled=true \
  --set node.remote.uidRange=70000-70099)" DaemonSet flexpu-node)"
holds '.spec.template.spec.containers[0].args | index("--remote-uid-range=70000-70099") and
    (map(select(startswith("--remote-uid="))) | length == 0) and index("--remote-gid=65534")' \
  "$u" || fail "node.remote.uidRange: $u"
for bad in 0-99 70000 a-b 70000-; do
  out="$(helm template flexpu "$chart" --set node.remote.enabled=true \
    --set node.remote.uidRange="$bad" 2>&1)" && fail "node.remote.uidRange $bad accepted"
  grep -q "node/remote/uidRange" <<<"$out" || fail "uidRange $bad: $out"
done
# Well-formed but unordered or past 2^31-1: the agent would refuse it at start.
for bad in 70099-70000 1-2147483648; do
  out="$(helm template flexpu "$chart" --set node.remote.enabled=true \
    --set node.remote.uidRange="$bad" 2>&1)" && fail "node.remote.uidRange $bad accepted"
  grep -q "node.remote.uidRange=$bad" <<<"$out" || fail "uidRange $bad: $out"
done
# What each server may hold (docs/REMOTE.md, "The servers' host memory"):
# the servers' defaults unless set, on the GPU agents only; out of the
# servers' ranges refused naming the value.
holds '.spec.template.spec.containers[0].args | index("--remote-max-clients=16") and
    index("--remote-max-module-mib=1024")' "$gds" || fail "the servers' default limits: $gds"
holds '.spec.template.spec.containers[0].args | map(select(startswith("--remote-max-"))) |
    length == 0' "$ds" || fail "the CPU nodes' agent got the servers' limits: $ds"
u="$(obj "$(render flexpu -n flexpu-system --set node.remote.enabled=true \
  --set node.remote.maxClients=4 --set node.remote.maxModuleMib=256)" DaemonSet flexpu-node)"
holds '.spec.template.spec.containers[0].args | index("--remote-max-clients=4") and
    index("--remote-max-module-mib=256")' "$u" || fail "node.remote.maxClients/maxModuleMib: $u"
for bad in maxClients=0 maxClients=4097 maxModuleMib=0 maxModuleMib=65537; do
  out="$(helm template flexpu "$chart" --set node.remote.enabled=true \
    --set node.remote."$bad" 2>&1)" && fail "node.remote.$bad accepted"
  grep -q "node/remote/${bad%=*}" <<<"$out" || fail "$bad: $out"
done
# Where remote pods run near their GPU (--remote-topology-keys): the keys
# given, none ([]: no preference), a malformed key or the hostname refused.
d="$(obj "$(render flexpu -n flexpu-system \
  --set 'scheduler.remoteTopologyKeys={example.com/row,topology.kubernetes.io/zone}')" \
  Deployment flexpu-scheduler)"
holds '.spec.template.spec.containers[0].args |
    index("--remote-topology-keys=example.com/row,topology.kubernetes.io/zone")' "$d" ||
  fail "scheduler.remoteTopologyKeys: $d"
d="$(obj "$(render flexpu -n flexpu-system -f <(echo 'scheduler: {remoteTopologyKeys: []}'))" \
  Deployment flexpu-scheduler)"
holds '.spec.template.spec.containers[0].args | index("--remote-topology-keys=")' "$d" ||
  fail "scheduler.remoteTopologyKeys []: $d"
# A key at Kubernetes' limits (a 253-byte prefix, a 63-byte name) is
# rendered; a 254-byte prefix, which flexpu-scheduler refuses at start, is
# refused here too (else the chart installs a scheduler that never starts).
p63="$(printf 'a%.0s' {1..63})"
long="$p63.$p63.$p63.${p63:2}/$(printf 'Z%.0s' {1..63})"
d="$(obj "$(render flexpu -n flexpu-system --set "scheduler.remoteTopologyKeys={$long}")" \
  Deployment flexpu-scheduler)"
holds '.spec.template.spec.containers[0].args | index("--remote-topology-keys='"$long"'")' "$d" ||
  fail "scheduler.remoteTopologyKeys at the limits: $d"
for bad in Example.com/zone zone/ -zone kubernetes.io/hostname "a$p63.$p63.$p63.${p63:2}/zone"; do
  out="$(helm template flexpu "$chart" --set "scheduler.remoteTopologyKeys={$bad}" 2>&1)" &&
    fail "scheduler.remoteTopologyKeys $bad accepted"
  grep -q "remoteTopologyKeys" <<<"$out" && grep -qF -- "$bad" <<<"$out" ||
    fail "remoteTopologyKeys $bad: $out"
done
pass "scheduler.remoteTopologyKeys: rendered as --remote-topology-keys (given, empty, at the 253/63 limits); malformed keys, a 254-byte prefix and the hostname refused, naming the key"
np="$(obj "$r" NetworkPolicy flexpu-node-remote-servers)"
holds '.spec.podSelector.matchLabels["app.kubernetes.io/name"] == "flexpu-node" and
    .spec.policyTypes == ["Ingress"] and
    .spec.ingress[0].ports == [{"protocol": "TCP", "port": 7200, "endPort": 7210}] and
    .spec.ingress[0].from == [{"namespaceSelector": {}, "podSelector": {"matchExpressions":
      [{"key": "flexpu.io/remote-gpu-node", "operator": "Exists"}]}}] and
    .spec.ingress[1].ports == [{"protocol": "TCP", "port": 9400}] and (.spec.ingress | length) == 2' \
  "$np" || fail "the servers' NetworkPolicy: $np"
np="$(obj "$(render flexpu -n flexpu-system --set node.remote.enabled=true \
  --set node.remote.networkPolicy.remotePodsOnly=false)" NetworkPolicy flexpu-node-remote-servers)"
holds '.spec.ingress[0].from == [{"namespaceSelector": {}}]' "$np" ||
  fail "the NetworkPolicy with remotePodsOnly false: $np"
np="$(obj "$(render flexpu -n flexpu-system --set node.remote.enabled=true --set metrics.enabled=false \
  --set node.remote.networkPolicy.podCIDR=10.244.0.0/16)" NetworkPolicy flexpu-node-remote-servers)"
holds '.spec.ingress == [{"ports": [{"protocol": "TCP", "port": 7100, "endPort": 7199}],
    "from": [{"ipBlock": {"cidr": "10.244.0.0/16"}}]}]' "$np" ||
  fail "the NetworkPolicy with podCIDR, metrics off: $np"
np="$(obj "$(render flexpu -n flexpu-system --set node.remote.enabled=true \
  --set node.remote.networkPolicy.podCIDR=10.244.0.0/16 \
  --set-json 'node.remote.networkPolicy.from=[{"namespaceSelector":{"matchLabels":{"team":"ml"}}}]')" \
  NetworkPolicy flexpu-node-remote-servers)"
holds '.spec.ingress[0].from == [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}]' "$np" ||
  fail "the NetworkPolicy with from: $np"
[ "$(render flexpu -n flexpu-system --set node.remote.enabled=true \
     --set node.remote.networkPolicy.enabled=false | jq '[.[] | select(.kind == "NetworkPolicy")] | length')" = 0 ] ||
  fail "networkPolicy.enabled=false still renders one"
[ "$(render flexpu -n flexpu-system | jq '[.[] | select(.kind == "NetworkPolicy")] | length')" = 0 ] ||
  fail "a NetworkPolicy without node.remote"
out="$(helm template flexpu "$chart" --set node.remote.enabled=true \
  --set node.remote.networkPolicy.podCIDR=10.0.0.0 2>&1)" && fail "a podCIDR without a prefix accepted"
grep -q "node/remote/networkPolicy/podCIDR" <<<"$out" || fail "bad podCIDR: $out"
# remotePodsOnly trusts a label only the admission policy keeps tenants from
# setting: refused without it, unless from, podCIDR or remotePodsOnly=false
# says who may connect instead.
out="$(helm template flexpu "$chart" --set node.remote.enabled=true --set admission.enabled=false 2>&1)" &&
  fail "node.remote.networkPolicy.remotePodsOnly=true accepted with admission.enabled=false"
grep -q "node.remote.networkPolicy.remotePodsOnly=true needs admission.enabled=true" <<<"$out" ||
  fail "remotePodsOnly without admission: $out"
for ok in node.remote.networkPolicy.remotePodsOnly=false node.remote.networkPolicy.podCIDR=10.244.0.0/16 \
  node.remote.networkPolicy.enabled=false node.remote.enabled=false; do
  n="$(render flexpu -n flexpu-system --set node.remote.enabled=true --set admission.enabled=false \
    --set "$ok" | jq '[.[] | select(.kind == "ValidatingAdmissionPolicy")] | length')" &&
    [ "$n" = 0 ] || fail "admission.enabled=false with $ok: $n admission policies"
done
pass "node.remote: the servers run as uid/gid 65534 (values; 0 refused) or each slice as one of uidRange (malformed refused), with maxClients and maxModuleMib (16 and 1024; set; out of range refused), the agent may change user and stop them (SETUID, SETGID, KILL, only with node.remote); a NetworkPolicy opens their ports to the pods holding a remote slice (by their label; refused without the admission policy), the cluster's pods, podCIDR or from, the metrics port as before"

# --- overrides ---
cat >"$work/over.yaml" <<'EOF'
image:
  registry: registry.example.com:5000/gpu
  tag: v1.2.3
  pullPolicy: Always
  pullSecrets: [regcred, {name: other}]
logLevel: debug
scheduler:
  name: gpu-sched
  policy: fgd
  replicas: 3
  nodeSelector: {node-role.kubernetes.io/control-plane: ""}
  tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
  resources: {requests: {cpu: 200m, memory: 100Mi}, limits: {memory: 300Mi}}
  extraArgs: [--seed=7]
node:
  runtimeClassName: nvidia
  # Helm merges maps: null drops the default label.
  nodeSelector: {flexpu.io/gpu-node: null, nvidia.com/gpu.present: "true"}
  tolerations:
    - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
    - {key: dedicated, operator: Equal, value: gpu, effect: NoExecute}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]
  sizeLimits: "off"
  privileged: false
  hostRoot: /opt/flexpu
  kubeletRoot: /var/lib/k0s/kubelet
  resources: {requests: {cpu: 10m, memory: 20Mi}, limits: {memory: 64Mi}}
metrics:
  enabled: false
commonLabels: {team: ml}
EOF
o="$(render team -n gpu-system -f "$work/over.yaml")"
ds="$(obj "$o" DaemonSet team-flexpu-node)"
dep="$(obj "$o" Deployment team-flexpu-scheduler)"
[ -n "$ds" ] && [ -n "$dep" ] || fail "release team: no team-flexpu-node/team-flexpu-scheduler: $(jq -c 'map(.kind + "/" + .metadata.name)' <<<"$o")"
check() { # description jq-filter want json
  local got
  got="$(jq -c "$2" <<<"$4")"
  [ "$got" = "$3" ] || fail "$1: $2 is $got, want $3"
}
check image '[.spec.template.spec.containers[0] | .image, .imagePullPolicy]' \
  '["registry.example.com:5000/gpu/flexpu/flexpu:v1.2.3","Always"]' "$ds"
check image '.spec.template.spec.containers[0].image' '"registry.example.com:5000/gpu/flexpu/flexpu:v1.2.3"' "$dep"
check "pull secrets" '.spec.template.spec.imagePullSecrets' '[{"name":"regcred"},{"name":"other"}]' "$ds"
check "pull secrets" '.spec.template.spec.imagePullSecrets' '[{"name":"regcred"},{"name":"other"}]' "$dep"
check runtimeClassName '.spec.template.spec.runtimeClassName' '"nvidia"' "$ds"
check "scheduler has no runtimeClassName" '.spec.template.spec.runtimeClassName' 'null' "$dep"
check "node nodeSelector" '.spec.template.spec.nodeSelector' '{"nvidia.com/gpu.present":"true"}' "$ds"
check "node tolerations" '.spec.template.spec.tolerations' \
  '[{"effect":"NoSchedule","key":"nvidia.com/gpu","operator":"Exists"},{"effect":"NoExecute","key":"dedicated","operator":"Equal","value":"gpu"}]' "$ds"
check "node affinity" '.spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values' '["amd64"]' "$ds"
check "scheduler nodeSelector" '.spec.template.spec.nodeSelector' '{"node-role.kubernetes.io/control-plane":""}' "$dep"
check "scheduler tolerations" '.spec.template.spec.tolerations[0].key' '"node-role.kubernetes.io/control-plane"' "$dep"
check "scheduler resources" '.spec.template.spec.containers[0].resources' \
  '{"limits":{"memory":"300Mi"},"requests":{"cpu":"200m","memory":"100Mi"}}' "$dep"
check "node resources" '.spec.template.spec.containers[0].resources.limits' '{"memory":"64Mi"}' "$ds"
check replicas '.spec.replicas' 3 "$dep"
check "node args" '.spec.template.spec.containers[0].args' \
  '["--root=/opt/flexpu","--runtime-library=/usr/lib/flexpu/libflexpu-cuda.so","--device-plugin-dir=/var/lib/k0s/kubelet/device-plugins","--pod-resources-socket=/var/lib/k0s/kubelet/pod-resources/kubelet.sock","--size-limits=off","--cgroup-root=/host/sys/fs/cgroup","--metrics-port=0","--log-level=$(FLEXPU_LOG_LEVEL)"]' "$ds"
check "unprivileged node" '.spec.template.spec.containers[0].securityContext' \
  '{"allowPrivilegeEscalation":false,"capabilities":{"add":["CHOWN","DAC_OVERRIDE","FOWNER","SYS_NICE"],"drop":["ALL"]},"privileged":false,"readOnlyRootFilesystem":true,"runAsUser":0}' "$ds"
check "no Bidirectional mount without size limits" '[.spec.template.spec.containers[0].volumeMounts[] | select(.mountPropagation)]' '[]' "$ds"
check "hostPaths" '[.spec.template.spec.volumes[].hostPath.path]' \
  '["/var/lib/k0s/kubelet/device-plugins","/var/lib/k0s/kubelet/pod-resources","/opt/flexpu","/sys/fs/cgroup"]' "$ds"
check "metrics off: no port, no probe, no scrape annotation" \
  '[.spec.template.spec.containers[0].ports, .spec.template.spec.containers[0].livenessProbe, .spec.template.metadata.annotations["prometheus.io/scrape"]]' \
  '[null,null,null]' "$ds"
check "scheduler args" '.spec.template.spec.containers[0].args' \
  '["--scheduler-name=gpu-sched","--policy=$(FLEXPU_POLICY)","--leader-elect=true","--lease-namespace=gpu-system","--lease-name=team-flexpu-scheduler","--identity=$(POD_NAME)","--metrics-port=0","--remote-topology-keys=topology.kubernetes.io/rack,topology.kubernetes.io/zone,topology.kubernetes.io/region","--log-level=$(FLEXPU_LOG_LEVEL)","--seed=7"]' "$dep"
check "metrics off: the scheduler has no port, no probe, no scrape annotation" \
  '[.spec.template.spec.containers[0].ports, .spec.template.spec.containers[0].livenessProbe, .spec.template.metadata.annotations["prometheus.io/scrape"]]' \
  '[null,null,null]' "$dep"
check config '.data' '{"log-level":"debug","policy":"fgd"}' "$(obj "$o" ConfigMap team-flexpu-config)"
check "common labels" '[.[] | .metadata.labels.team] | unique' '["ml"]' "$o"
check "lease Role" '.rules[1].resourceNames' '["team-flexpu-scheduler"]' "$(obj "$o" Role team-flexpu-scheduler-leader)"
check "admission policy names the release's scheduler" '.spec.variables[0].expression' \
  "\"request.userInfo.username == 'system:serviceaccount:gpu-system:team-flexpu-scheduler'\"" \
  "$(obj "$o" ValidatingAdmissionPolicy team-flexpu-pods)"
check "policy binding" '.spec.policyName' '"team-flexpu-pods"' "$(obj "$o" ValidatingAdmissionPolicyBinding team-flexpu-pods)"
check "remote endpoint policy names the release's node agents" '.spec.variables[0].expression' \
  "\"request.userInfo.username == 'system:serviceaccount:gpu-system:team-flexpu-node'\"" \
  "$(obj "$o" ValidatingAdmissionPolicy team-flexpu-remote-endpoint)"
check "remote endpoint policy binding" '.spec.policyName' '"team-flexpu-remote-endpoint"' \
  "$(obj "$o" ValidatingAdmissionPolicyBinding team-flexpu-remote-endpoint)"
digest="sha256:$(printf '%064x' 48879)"
[ "$(render flexpu -n flexpu-system --set image.digest="$digest" |
     jq -r '[.[] | .spec.template.spec.containers[0].image // empty] | unique | join(" ")')" = \
  "docker.io/flexpu/flexpu@$digest" ] || fail "image.digest does not pin both images by digest"
pass "helm template with overrides: registry, tag, digest, pull secrets, runtimeClassName, tolerations, nodeSelector, affinity, resources, size limits off unprivileged, metrics off, release names"

# Every flag the chart passes, with the defaults and the overrides, is one
# the binary lists in --help.
# The help is read whole first: grep -q leaving a pipe early would kill a
# help longer than the pipe's first write (SIGPIPE, a failure under
# pipefail).
flags_known() { # binary json-of-args
  local f help
  help="$("$build/$1" --help 2>&1)"
  for f in $(jq -r '.[] | select(startswith("--")) | sub("=.*"; "")' <<<"$2"); do
    grep -q -- "^ *$f " <<<"$help" || fail "$1 has no flag $f (its --help)"
  done
}
d="$(render flexpu -n flexpu-system)"
for args in "$(obj "$d" Deployment flexpu-scheduler | jq -c '.spec.template.spec.containers[0].args')" \
            "$(jq -c '.spec.template.spec.containers[0].args' <<<"$dep")"; do
  flags_known flexpu-scheduler "$args"
done
for args in "$(obj "$d" DaemonSet flexpu-node | jq -c '.spec.template.spec.containers[0].args')" \
            "$(jq -c '.spec.template.spec.containers[0].args' <<<"$ds")"; do
  flags_known flexpu-node "$args"
done
pass "every flag the chart passes is in flexpu-scheduler's and flexpu-node's --help"

# Metrics: a headless Service and, on request, a ServiceMonitor.
helm template flexpu "$chart" -n flexpu-system --set metrics.serviceMonitor.enabled=true \
  --set metrics.port=9500 --show-only templates/metrics.yaml >"$work/sm.yaml" ||
  fail "helm template with a ServiceMonitor"
grep -q '^kind: ServiceMonitor$' "$work/sm.yaml" || fail "no ServiceMonitor: $(cat "$work/sm.yaml")"
grep -q '^kind: Service$' "$work/sm.yaml" || fail "no metrics Service: $(cat "$work/sm.yaml")"
grep -q 'port: 9500' "$work/sm.yaml" || fail "the metrics Service is not on port 9500"
[ "$(render flexpu -n flexpu-system --set metrics.port=9500 | jq -r '.[] | select(.kind == "DaemonSet") | .spec.template.spec.containers[0].args[] | select(startswith("--metrics-port"))')" = --metrics-port=9500 ] ||
  fail "metrics.port=9500 did not reach --metrics-port"
[ "$(render flexpu -n flexpu-system | jq '[.[] | select(.kind == "Service")] | length')" = 0 ] ||
  fail "the defaults render a Service"
pass "metrics.port reaches the agent; a ServiceMonitor and its Service only on request"

# The hard mode: node.sharingMode mig passes the mode and the layout; soft (the default)
# passes neither (the defaults render as deploy/ does, above).
m="$(render flexpu -n flexpu-system --set node.sharingMode=mig --set 'node.migLayout=3g.40gb\,4g.40gb' |
  jq -c '.[] | select(.kind == "DaemonSet") | .spec.template.spec.containers[0].args |
    map(select(startswith("--sharing-mode") or startswith("--mig-layout")))')"
[ "$m" = '["--sharing-mode=mig","--mig-layout=3g.40gb,4g.40gb"]' ] || fail "node.sharingMode=mig: args $m"
flags_known flexpu-node "$m"
pass "node.sharingMode=mig with node.migLayout reaches flexpu-node as --sharing-mode and --mig-layout"

# A cap's reference clock: node.capClockMhz reaches flexpu-node as --cap-clock-mhz (a
# number, as --set gives it, or a string); "off" (the default) passes nothing.
for v in 1750 '"1750"'; do
  m="$(render flexpu -n flexpu-system --set-json "node.capClockMhz=$v" |
    jq -c '.[] | select(.kind == "DaemonSet") | .spec.template.spec.containers[0].args |
      map(select(startswith("--cap-clock-mhz")))')"
  [ "$m" = '["--cap-clock-mhz=1750"]' ] || fail "node.capClockMhz=$v: args $m"
  flags_known flexpu-node "$m"
done
m="$(render flexpu -n flexpu-system | jq -c '.[] | select(.kind == "DaemonSet") |
  .spec.template.spec.containers[0].args | map(select(startswith("--cap-clock-mhz")))')"
[ "$m" = '[]' ] || fail "the default node.capClockMhz (off) passes $m"
pass "node.capClockMhz reaches flexpu-node as --cap-clock-mhz; off passes nothing"

# --- bad values fail, naming the field and the value ---
bad() { # want-substring helm-args...
  local want="$1"
  shift
  if helm template flexpu "$chart" -n flexpu-system "$@" >"$work/bad.out" 2>&1; then
    fail "helm template $* succeeded"
  fi
  grep -qF -- "$want" "$work/bad.out" || fail "helm template $*: the error does not say '$want': $(cat "$work/bad.out")"
}
bad "'/node/sizeLimits': 'bogus' does not match pattern '^(shared|local|off)\$'" --set node.sizeLimits=bogus
bad "'/logLevel': 'loud'" --set logLevel=loud
bad "'/scheduler/policy': 'fastest'" --set scheduler.policy=fastest
bad "'/image/pullPolicy': 'Sometimes'" --set image.pullPolicy=Sometimes
bad "'/node': additional properties 'sizeLimit' not allowed" --set node.sizeLimit=off
bad "'/node/runtimeClassName': 'NVIDIA RT'" --set "node.runtimeClassName=NVIDIA RT"
bad "'/metrics/port'" --set metrics.port=70000
bad "node.sizeLimits=shared needs node.privileged=true" --set node.privileged=false
bad "node.sizeLimits=local needs node.privileged=true" --set node.privileged=false --set node.sizeLimits=local
bad "'/node/sharingMode': 'hard'" --set node.sharingMode=hard
bad "/node/capClockMhz" --set node.capClockMhz=auto
bad "/node/capClockMhz" --set node.capClockMhz=20000
bad "node.migLayout is required with node.sharingMode: mig" --set node.sharingMode=mig
bad "'/node/migLayout': '1g'" --set node.sharingMode=mig --set node.migLayout=1g
bad "node.sharingMode mig partitions the GPUs: it needs node.privileged: true" --set node.sharingMode=mig \
  --set node.migLayout=1g.10gb --set node.privileged=false --set node.sizeLimits=off
bad "metrics.serviceMonitor.enabled=true needs metrics.enabled=true" --set metrics.enabled=false \
  --set metrics.serviceMonitor.enabled=true
if helm install bad "$chart" -n bad-ns --create-namespace --set node.sizeLimits=bogus >"$work/bad.out" 2>&1; then
  fail "helm install with node.sizeLimits=bogus succeeded"
fi
grep -qF "'bogus'" "$work/bad.out" || fail "helm install's error does not name 'bogus': $(cat "$work/bad.out")"
[ -z "$(helm list -A -q)" ] || fail "a failed install left a release: $(helm list -A)"
kubectl get clusterrole bad-flexpu-scheduler >/dev/null 2>&1 && fail "a failed install created objects"
pass "bad values fail with the field and the value named, and install nothing"

# --- install ---
kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Node","metadata":{"name":"gpu-1","labels":{"type":"kwok","nvidia.com/gpu.present":"true"},
 "annotations":{"kwok.x-k8s.io/node":"fake",
  "flexpu.io/gpus":"[{\"uuid\":\"GPU-a\",\"model\":\"A100\",\"memory\":85899345920,\"numa\":0,\"group\":0}]"}},
 "spec":{"taints":[{"key":"nvidia.com/gpu","value":"present","effect":"NoSchedule"}]},
 "status":{"allocatable":{"cpu":"64","memory":"512Gi","pods":"110","flexpu.io/gpu":"16",
   "flexpu.io/gpu-cores":"100","flexpu.io/gpu-memory":"80Gi"},
  "capacity":{"cpu":"64","memory":"512Gi","pods":"110","flexpu.io/gpu":"16",
   "flexpu.io/gpu-cores":"100","flexpu.io/gpu-memory":"80Gi"}}}
EOF
ns=gpu-system
helm install gpu "$chart" -n "$ns" --create-namespace \
  --set image.registry=registry.example.com --set image.tag=e2e \
  --set node.runtimeClassName=nvidia --set scheduler.name=gpu-sched \
  --set 'node.nodeSelector.flexpu\.io/gpu-node=null' --set-string 'node.nodeSelector.nvidia\.com/gpu\.present=true' \
  --set 'node.tolerations[0].key=nvidia.com/gpu' --set 'node.tolerations[0].operator=Exists' \
  --set 'node.tolerations[0].effect=NoSchedule' >"$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; fail "helm install"; }
[ "$(helm status gpu -n "$ns" -o json | jq -r '.info.status')" = deployed ] || fail "release gpu is not deployed"
jp() { kubectl get -n "$ns" "$1" -o jsonpath="$2"; }
for o in configmap/gpu-flexpu-config deployment/gpu-flexpu-scheduler daemonset/gpu-flexpu-node \
         serviceaccount/gpu-flexpu-scheduler serviceaccount/gpu-flexpu-node \
         role/gpu-flexpu-scheduler-leader rolebinding/gpu-flexpu-scheduler-leader \
         clusterrole/gpu-flexpu-scheduler clusterrole/gpu-flexpu-node \
         clusterrolebinding/gpu-flexpu-scheduler clusterrolebinding/gpu-flexpu-node \
         validatingadmissionpolicy/gpu-flexpu-pods validatingadmissionpolicybinding/gpu-flexpu-pods \
         validatingadmissionpolicy/gpu-flexpu-scheduler-deletes \
         validatingadmissionpolicybinding/gpu-flexpu-scheduler-deletes \
         validatingadmissionpolicy/gpu-flexpu-remote-endpoint \
         validatingadmissionpolicybinding/gpu-flexpu-remote-endpoint; do
  kubectl get -n "$ns" "$o" >/dev/null 2>&1 || fail "helm install did not create $o"
done
[ "$(jp daemonset/gpu-flexpu-node '{.spec.template.spec.runtimeClassName}')" = nvidia ] ||
  fail "DaemonSet runtimeClassName is '$(jp daemonset/gpu-flexpu-node '{.spec.template.spec.runtimeClassName}')'"
[ "$(jp daemonset/gpu-flexpu-node '{.spec.template.spec.containers[0].image}')" = registry.example.com/flexpu/flexpu:e2e ] ||
  fail "DaemonSet image is $(jp daemonset/gpu-flexpu-node '{.spec.template.spec.containers[0].image}')"
[ "$(jp daemonset/gpu-flexpu-node '{.spec.template.spec.nodeSelector}')" = '{"nvidia.com/gpu.present":"true"}' ] ||
  fail "DaemonSet nodeSelector is $(jp daemonset/gpu-flexpu-node '{.spec.template.spec.nodeSelector}')"
[ "$(jp daemonset/gpu-flexpu-node '{.spec.template.spec.tolerations[*].key}')" = nvidia.com/gpu ] ||
  fail "DaemonSet tolerations are $(jp daemonset/gpu-flexpu-node '{.spec.template.spec.tolerations}')"
[ "$(jp daemonset/gpu-flexpu-node '{.spec.template.spec.containers[0].volumeMounts[?(@.name=="flexpu-root")].mountPropagation}')" = Bidirectional ] ||
  fail "the agent's root is not mounted Bidirectional"
[ "$(jp daemonset/gpu-flexpu-node '{.spec.template.spec.containers[0].securityContext.privileged}')" = true ] ||
  fail "the agent is not privileged"
[ "$(jp configmap/gpu-flexpu-config '{.data.policy}/{.data.log-level}')" = flexpu/info ] ||
  fail "config is $(jp configmap/gpu-flexpu-config '{.data}')"
can() { kubectl auth can-i --as="system:serviceaccount:$ns:$1" "${@:2}" 2>/dev/null; }
[ "$(can gpu-flexpu-scheduler create pods --subresource=binding -n default)" = yes ] || fail "scheduler cannot bind"
# Deletes: RBAC allows them; the release's policy limits them to borrowers
# (admission_e2e.sh checks that on deploy/'s copy).
[ "$(can gpu-flexpu-scheduler delete pods -n default)" = yes ] || fail "scheduler cannot delete a borrower"
[ "$(can gpu-flexpu-scheduler deletecollection pods -n default)" = no ] || fail "scheduler may delete collections of pods"
[ "$(can gpu-flexpu-scheduler update leases/gpu-flexpu-scheduler -n "$ns")" = yes ] || fail "scheduler cannot update its lease"
[ "$(can gpu-flexpu-scheduler update leases/other -n "$ns")" = no ] || fail "scheduler may update any lease"
[ "$(can gpu-flexpu-node patch nodes --subresource=status)" = yes ] || fail "node agent cannot patch node status"
[ "$(can gpu-flexpu-node list secrets -A)" = no ] || fail "node agent may list secrets"
# Queues: the CRD from the chart's crds/, read and status-patched by the scheduler only.
kubectl wait --for=condition=Established crd/queues.flexpu.io --timeout=30s >/dev/null ||
  fail "helm install did not create the Queue CRD"
[ "$(can gpu-flexpu-scheduler watch queues.flexpu.io)" = yes ] || fail "scheduler cannot watch queues"
[ "$(can gpu-flexpu-scheduler patch queues.flexpu.io --subresource=status)" = yes ] || fail "scheduler cannot patch queue status"
[ "$(can gpu-flexpu-scheduler patch queues.flexpu.io)" = no ] || fail "scheduler may patch a queue's spec"
[ "$(can gpu-flexpu-scheduler create pods --subresource=eviction -n default)" = yes ] || fail "scheduler cannot evict"
[ "$(can gpu-flexpu-scheduler patch pods --subresource=status -n default)" = yes ] || fail "scheduler cannot nominate or set PodScheduled"
[ "$(can gpu-flexpu-scheduler list poddisruptionbudgets.policy -A)" = yes ] || fail "scheduler cannot list PDBs"
pass "helm install: every object, the Queue CRD, with the registry, runtimeClassName, nodeSelector and tolerations given; RBAC as deploy/"

# flexpu-scheduler with the Deployment's own arguments (the ConfigMap's and
# the pod's values substituted as the kubelet would) and its service
# account's token.
policy="$(jp configmap/gpu-flexpu-config '{.data.policy}')"
level="$(jp configmap/gpu-flexpu-config '{.data.log-level}')"
mapfile -t args < <(kubectl get -n "$ns" deployment/gpu-flexpu-scheduler -o json |
  jq -r '.spec.template.spec.containers[0].args[]' |
  sed -e "s/\$(FLEXPU_POLICY)/$policy/" -e "s/\$(FLEXPU_LOG_LEVEL)/$level/" -e 's/\$(POD_NAME)/gpu-e2e-0/')
# Its metrics port, as the chart set it, moved to a free loopback port (a
# test serves on loopback only); the liveness probe's /healthz is checked.
[[ " ${args[*]} " == *" --metrics-port=9401 "* ]] || fail "the scheduler's args lack --metrics-port=9401: ${args[*]}"
mport="$(free_port)"
args=("${args[@]/#--metrics-port=*/--metrics-port=$mport}" --metrics-address=127.0.0.1)
token="$(kubectl create token gpu-flexpu-scheduler -n "$ns" --duration=1h)"
# --flatten: the CA inline, so the kubeconfig works inside the image too.
kubectl config view --raw --minify --flatten -o json | jq --arg t "$token" '.users[0].user = {token: $t}' \
  >"$work/scheduler.kubeconfig"
sched=("$build/flexpu-scheduler" --kubeconfig "$work/scheduler.kubeconfig")
from="$build"
if [ -n "$image" ]; then
  umoci unpack --rootless --image "$image" "$work/image" >/dev/null 2>"$work/unpack.log" ||
    fail "umoci unpack $image: $(cat "$work/unpack.log")"
  install -m 0644 "$work/scheduler.kubeconfig" "$work/image/rootfs/tmp/kubeconfig"
  sched=(chroot --userspec=65532:65532 "$work/image/rootfs" /usr/bin/flexpu-scheduler --kubeconfig /tmp/kubeconfig)
  from="the image $image, as 65532"
fi
env -i PATH="$PATH" "${sched[@]}" "${args[@]}" >"$work/scheduler.log" 2>&1 &
pids+=($!)
holder() { [ "$(kubectl get lease gpu-flexpu-scheduler -n "$ns" -o jsonpath='{.spec.holderIdentity}')" = gpu-e2e-0 ]; }
wait_for 30 "flexpu-scheduler (args ${args[*]}) did not take the Lease $ns/gpu-flexpu-scheduler" holder
kubectl create -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"slice","namespace":"default"},
 "spec":{"schedulerName":"gpu-sched","tolerations":[{"key":"nvidia.com/gpu","operator":"Exists"}],
  "containers":[{"name":"c","image":"x",
   "resources":{"limits":{"cpu":"1","memory":"1Gi","flexpu.io/gpu":"1","flexpu.io/gpu-cores":"30"}}}]}}
EOF
bound() { [ "$(kubectl get pod slice -o jsonpath='{.spec.nodeName}')" = gpu-1 ]; }
wait_for 30 "flexpu-scheduler did not bind the pod asking spec.schedulerName gpu-sched" bound
alloc="$(kubectl get pod slice -o jsonpath='{.metadata.annotations.flexpu\.io/allocation}')"
[ "$(jq -c '.gpus[0].cores' <<<"$alloc")" = 30 ] || fail "the pod's allocation is '$alloc', want 30 cores"
kubectl create serviceaccount tenant -n default >/dev/null
kubectl create role tenant -n default --verb=create,get,patch --resource=pods >/dev/null
kubectl create rolebinding tenant -n default --role=tenant --serviceaccount=default:tenant >/dev/null
forged() {
  kubectl --as=system:serviceaccount:default:tenant annotate pod slice --overwrite \
    'flexpu.io/allocation={"gpus":[{"uuid":"GPU-a","index":0,"cores":100,"memory":0}]}' >"$work/forged" 2>&1 &&
    fail "the release's admission policy let a tenant rewrite the allocation"
  grep -q "only gpu-flexpu-scheduler may set or change it" "$work/forged"
}
wait_for 30 "a tenant's rewrite of the allocation was not refused by the release's policy: $(cat "$work/forged" 2>/dev/null)" forged
[ "$(curl -s "http://127.0.0.1:$mport/healthz")" = ok ] || fail "the scheduler's /healthz (the chart's liveness probe) is not ok"
# The scheduler's loop copies the bind count into its metrics on its next
# turn, which may come after the pod shows bound.
counted() { curl -s "http://127.0.0.1:$mport/metrics" | grep -qx 'flexpu_scheduler_binds_total{result="bound"} 1'; }
wait_for 10 "the scheduler's metrics do not count its bind" counted
pass "flexpu-scheduler (from $from) with the chart's arguments and account: holds the release's Lease, binds a gpu-sched pod with its allocation; the release's policy refuses a tenant's rewrite; its /healthz and metrics answer"

# --- upgrade ---
sum() { jp "$1" '{.spec.template.metadata.annotations.checksum/config}'; }
sum_d="$(sum deployment/gpu-flexpu-scheduler)"
sum_n="$(sum daemonset/gpu-flexpu-node)"
helm upgrade gpu "$chart" -n "$ns" --reuse-values --set scheduler.policy=bestfit --set logLevel=debug \
  --set node.sizeLimits=off --set node.privileged=false --set metrics.enabled=false \
  >"$work/upgrade.log" 2>&1 || { cat "$work/upgrade.log" >&2; fail "helm upgrade"; }
[ "$(helm status gpu -n "$ns" -o json | jq -r '.version')" = 2 ] || fail "release gpu is not at revision 2"
[ "$(jp configmap/gpu-flexpu-config '{.data.policy}/{.data.log-level}')" = bestfit/debug ] ||
  fail "after the upgrade, config is $(jp configmap/gpu-flexpu-config '{.data}')"
[ "$(sum deployment/gpu-flexpu-scheduler)" != "$sum_d" ] && [ "$(sum daemonset/gpu-flexpu-node)" != "$sum_n" ] ||
  fail "the config changed but the pods' checksum/config did not (they would not restart)"
jp daemonset/gpu-flexpu-node '{.spec.template.spec.containers[0].args}' | grep -q -- '--size-limits=off' ||
  fail "after the upgrade, the agent's args are $(jp daemonset/gpu-flexpu-node '{.spec.template.spec.containers[0].args}')"
[ "$(jp daemonset/gpu-flexpu-node '{.spec.template.spec.containers[0].securityContext.privileged}')" = false ] ||
  fail "after the upgrade, the agent is still privileged"
[ -z "$(jp daemonset/gpu-flexpu-node '{.spec.template.spec.containers[0].volumeMounts[*].mountPropagation}')" ] ||
  fail "after the upgrade, a mount still propagates"
[ "$(jp daemonset/gpu-flexpu-node '{.spec.template.spec.runtimeClassName}')" = nvidia ] ||
  fail "the upgrade (--reuse-values) lost runtimeClassName"
if helm upgrade gpu "$chart" -n "$ns" --reuse-values --set node.sizeLimits=bogus >"$work/bad.out" 2>&1; then
  fail "helm upgrade with node.sizeLimits=bogus succeeded"
fi
grep -qF "'/node/sizeLimits': 'bogus'" "$work/bad.out" || fail "the bad upgrade's error: $(cat "$work/bad.out")"
[ "$(helm status gpu -n "$ns" -o json | jq -r '.version')" = 2 ] || fail "a failed upgrade made a revision"
jp daemonset/gpu-flexpu-node '{.spec.template.spec.containers[0].args}' | grep -q -- '--size-limits=off' ||
  fail "a failed upgrade changed the DaemonSet"
pass "helm upgrade: policy, log level, size limits off unprivileged, metrics off applied and the pods' config checksum changed; a bad upgrade changes nothing"

# --- uninstall ---
helm uninstall gpu -n "$ns" --wait >"$work/uninstall.log" 2>&1 || { cat "$work/uninstall.log" >&2; fail "helm uninstall"; }
gone() {
  local left
  left="$(kubectl get -n "$ns" configmap,deployment,daemonset,serviceaccount,role,rolebinding -o name 2>/dev/null |
          grep -v '^serviceaccount/default$' || true)"
  left="$left$(kubectl get clusterrole,clusterrolebinding,validatingadmissionpolicy,validatingadmissionpolicybinding \
          -o name 2>/dev/null | grep 'gpu-flexpu' || true)"
  [ -z "$left" ] || { echo "$left" >"$work/left"; return 1; }
}
wait_for 30 "helm uninstall left $(cat "$work/left" 2>/dev/null)" gone
[ -z "$(helm list -A -q)" ] || fail "a release is left: $(helm list -A)"
pass "helm uninstall removes every object, cluster-scoped ones too ($((SECONDS - start)) s in all)"
