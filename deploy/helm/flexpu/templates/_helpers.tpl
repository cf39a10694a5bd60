{{/* SPDX-License-Identifier: Apache-2.0 */}}

{{/* The chart's name, 63 characters at most. */}}
{{- define "flexpu.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object's name: "flexpu" for a release named flexpu,
so that the default install names its objects as deploy/ does. At most 53
characters, so that "-scheduler" still fits in 63. */}}
{{- define "flexpu.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 53 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 53 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 53 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "flexpu.scheduler.fullname" -}}{{ include "flexpu.fullname" . }}-scheduler{{- end -}}
{{- define "flexpu.node.fullname" -}}{{ include "flexpu.fullname" . }}-node{{- end -}}
{{- define "flexpu.config.fullname" -}}{{ include "flexpu.fullname" . }}-config{{- end -}}

{{/* Labels every object carries. */}}
{{- define "flexpu.labels" -}}
app.kubernetes.io/part-of: flexpu
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* A component's selector: its name (as in deploy/) and the release. */}}
{{- define "flexpu.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@DIGEST; an empty
registry leaves the repository as it is. */}}
{{- define "flexpu.image" -}}
{{- $i := .Values.image -}}
{{- $repo := $i.repository -}}
{{- if $i.registry -}}{{- $repo = printf "%s/%s" (trimSuffix "/" $i.registry) $repo -}}{{- end -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $repo $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion $i.tag) -}}
{{- end -}}
{{- end -}}

{{/* imagePullSecrets, from names or {name: ...} entries. */}}
{{- define "flexpu.pullSecrets" -}}
imagePullSecrets:
{{- range .Values.image.pullSecrets }}
  - name: {{ if kindIs "string" . }}{{ . }}{{ else }}{{ .name }}{{ end }}
{{- end }}
{{- end -}}

{{/* The ServiceAccount flexpu-scheduler runs as, in full, as the API server
names it in request.userInfo.username. */}}
{{- define "flexpu.scheduler.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "flexpu.scheduler.fullname" . }}
{{- end -}}

{{/* Checks the combinations values.schema.json cannot express. */}}
{{- define "flexpu.validate" -}}
{{- if and .Values.node.enabled (ne .Values.node.sizeLimits "off") (not .Values.node.privileged) -}}
{{- fail (printf "node.sizeLimits=%s needs node.privileged=true (the agent mounts a size-limited tmpfs on each directory tenants write); set node.sizeLimits=off to run it unprivileged" .Values.node.sizeLimits) -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled=true needs metrics.enabled=true (the agents serve no metrics otherwise)" -}}
{{- end -}}
{{- /* The schema's pattern cannot order the ids or bound them: flexpu-node
refuses such a range at start, on every GPU node. */ -}}
{{- with .Values.node.remote.uidRange -}}
{{- $ids := splitList "-" . -}}
{{- if or (gt (index $ids 0 | int64) (index $ids 1 | int64)) (gt (index $ids 1 | int64) 2147483647) -}}
{{- fail (printf "node.remote.uidRange=%s: FIRST-LAST needs FIRST <= LAST <= 2147483647 (flexpu-node's --remote-uid-range)" .) -}}
{{- end -}}
{{- end -}}
{{- /* The schema checks each key's form; flexpu-scheduler also refuses the
hostname, which no two nodes share. */ -}}
{{- if has "kubernetes.io/hostname" (.Values.scheduler.remoteTopologyKeys | default list) -}}
{{- fail "scheduler.remoteTopologyKeys: kubernetes.io/hostname: no two nodes share a hostname (a rack, zone or region label is what brings a remote pod near its GPU)" -}}
{{- end -}}
{{- /* The remotePodsOnly peer trusts the label flexpu.io/remote-gpu-node,
which only the admission policy keeps tenants from setting on their own pods:
without it any pod could label itself into the servers' ports. */ -}}
{{- $r := .Values.node.remote -}}
{{- $np := $r.networkPolicy -}}
{{- if and .Values.node.enabled $r.enabled $np.enabled $np.remotePodsOnly (not $np.from) (not $np.podCIDR) (not .Values.admission.enabled) -}}
{{- fail "node.remote.networkPolicy.remotePodsOnly=true needs admission.enabled=true (with admission.enabled=false any pod may set the label flexpu.io/remote-gpu-node it trusts and reach the remote servers' ports); set admission.enabled=true, or node.remote.networkPolicy.from or podCIDR, or node.remote.networkPolicy.remotePodsOnly=false (any pod of the cluster)" -}}
{{- end -}}
{{- end -}}

{{/* A memory quantity (dict "value" Q "field" NAME) in MiB, rounded up:
"128Mi", "1Gi", "0.5Gi", "134217728", "128M", "1e9" or a number. A form
Kubernetes takes but that is no amount of memory (milli) fails, naming the
field, and so does a number of no quantity ("128.0.0Mi", "."), which
float64 would read as 0, dropping it from a sum. */}}
{{- define "flexpu.mib" -}}
{{- $q := .value -}}
{{- $bytes := 0.0 -}}
{{- if not (kindIs "string" $q) -}}
{{- $bytes = float64 $q -}}
{{- else if regexMatch "^([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$" $q -}}
{{- $bytes = float64 $q -}}
{{- else if regexMatch "^([0-9]+[.]?[0-9]*|[.][0-9]+)([kMGTPE]|[KMGTPE]i)$" $q -}}
{{- $num := regexFind "^[0-9.]+" $q -}}
{{- $unit := trimPrefix $num $q -}}
{{- $per := dict "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- $bytes = mulf (float64 $num) (get $per $unit) -}}
{{- else -}}
{{- fail (printf "%s=%v: not an amount of memory (a number of bytes, or with k, M, G, T, Ki, Mi, Gi, Ti...)" .field $q) -}}
{{- end -}}
{{- ceil (divf $bytes 1048576.0) | int64 -}}
{{- end -}}

{{/* The GPU nodes' agent's resources: node.resources, and with remote
slices its memory limit raised by node.remote.serverMemory for each port of
node.remote.ports, the most servers a node runs (each a slice's server and
its workers in the agent's container: docs/REMOTE.md, "The servers' host
memory"). No memory limit given: none set. */}}
{{- define "flexpu.node.resources" -}}
{{- $v := .Values.node -}}
{{- $res := deepCopy ($v.resources | default dict) -}}
{{- $lim := get $res "limits" | default dict -}}
{{- if and $v.remote.enabled (hasKey $lim "memory") -}}
{{- $ports := splitList "-" $v.remote.ports -}}
{{- $n := add1 (sub (index $ports 1 | int64) (index $ports 0 | int64)) -}}
{{- if or (lt $n 1) (gt (index $ports 1 | int64) 65535) -}}
{{- fail (printf "node.remote.ports=%s: LOW-HIGH needs LOW <= HIGH <= 65535 (flexpu-node's --remote-ports)" $v.remote.ports) -}}
{{- end -}}
{{- $base := include "flexpu.mib" (dict "value" $lim.memory "field" "node.resources.limits.memory") | int64 -}}
{{- $per := include "flexpu.mib" (dict "value" $v.remote.serverMemory "field" "node.remote.serverMemory") | int64 -}}
{{- $_ := set $lim "memory" (printf "%dMi" (add $base (mul $per $n))) -}}
{{- $_ := set $res "limits" $lim -}}
{{- end -}}
{{- if $res -}}{{- toYaml $res -}}{{- end -}}
{{- end -}}
