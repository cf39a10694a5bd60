#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds etcd, kube-apiserver, kube-scheduler, kubectl, the kubelet, kwok and helm
# from their upstream Go modules (through the Go module proxy), and our test
# peers dppeer, fakecri and podresources, into a cache outside the repository,
# once. Prints the bin directory on stdout.
#
# With --peers it also builds the peer schedulers that bench/kube compares
# flexpu with (optional, never built by CI or the e2e tests): the scheduler of
# sigs.k8s.io/scheduler-plugins (Coscheduling, CapacityScheduling) as
# scheduler-plugins, and its CRDs (PodGroup, ElasticQuota) from the same
# module version into scheduler-plugins-crds/.
#
# Versions are pinned by the go.mod/go.sum files under tools/. Each binary
# remembers the hash of the module that built it, so changing a version
# rebuilds that binary only and nothing stale is ever used.
set -euo pipefail
peers=
case "${1:-}" in
  --peers) peers=1 ;;
  "") ;;
  *) echo "build-binaries: unknown argument '$1' (only --peers)" >&2; exit 2 ;;
esac
here="$(cd "$(dirname "$0")" && pwd)"
tools="$here/tools"
cache="${FLEXPU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flexpu}"
bin="$cache/cluster/bin"
mkdir -p "$bin"

# One build at a time: two `make` runs (demo and e2e, say) share the cache,
# and the second waits for the first instead of racing it for the same
# files; it then finds everything built.
exec 9>"$bin/.lock"
if ! flock -n 9; then
  echo "build-binaries: another build of the control plane is running; waiting for it" >&2
  flock 9
fi

GO="$("$here/go-toolchain.sh" "$cache")"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
first_build=1
start=$SECONDS

# Prints how long the current binary has been building, every 30 s, so a
# first build (many minutes, mostly silent compilation) visibly progresses.
progress() { # binary
  local t0=$SECONDS s
  exec >&2
  # Stopped with TERM: the sleep goes too, so no orphan keeps a caller's
  # pipe open.
  trap 'kill "$s" 2>/dev/null; exit 0' TERM
  while :; do
    sleep "${FLEXPU_PROGRESS_SECONDS:-30}" & s=$!
    wait "$s"
    echo "build-binaries: still building $1 ($((SECONDS - t0)) s for it, $((SECONDS - start)) s in all)"
  done
}

build() { # module-dir binary package (an upstream path, or ./dir inside module-dir) [ldflags]
  local key src=()
  # A package of our own rebuilds when its sources change, too.
  case "$3" in ./*) src=("$tools/$1/$3"/*.go) ;; esac
  key="$(cat "$tools/$1/go.mod" "$tools/$1/go.sum" "${src[@]}" | sha256sum | cut -c1-16)"
  if [ -x "$bin/$2" ] && [ "$(cat "$bin/.$2.key" 2>/dev/null)" = "$key" ]; then
    return
  fi
  if [ -n "$first_build" ]; then
    first_build=
    echo "build-binaries: building the control plane from upstream Go modules into $bin, once" \
         "(about 10 minutes and 5 GB of Go caches in $("$GO" env GOMODCACHE) and" \
         "$("$GO" env GOCACHE) on 2 cores; later runs reuse it)" >&2
  fi
  echo "build-binaries: building $2 ($((SECONDS - start)) s so far)" >&2
  progress "$2" &
  local ticker=$! tmp="$bin/.$2.tmp.$$" rc=0
  # -trimpath and no debug info: smaller binaries, faster links. The
  # temporary name is this run's own, so nothing else can move it away.
  (cd "$tools/$1" && "$GO" build -trimpath -ldflags="-s -w${4:+ $4}" -o "$tmp" "$3") >&2 || rc=$?
  kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    rm -f "$tmp"
    echo "build-binaries: building $2 failed (go build exit status $rc)" >&2
    exit "$rc"
  fi
  mv "$tmp" "$bin/$2"
  echo "$key" > "$bin/.$2.key"
}
build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok
build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kube kubectl k8s.io/kubernetes/cmd/kubectl
# helm, for the chart's test (test/e2e/helm_e2e.sh).
build helm helm helm.sh/helm/v4/cmd/helm
# Our fake kubelet for the device-plugin tests (tools/kube/dppeer).
build kube dppeer ./dppeer
# The real kubelet (test/e2e/kubelet_e2e.sh), with its own version in the
# Node's nodeInfo rather than v0.0.0-master; our CRI runtime for it that runs
# nothing and records what the kubelet asks (tools/kube/fakecri); and a
# PodResources client (tools/kube/podresources).
kver="$(cd "$tools/kube" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)"
build kube kubelet k8s.io/kubernetes/cmd/kubelet "-X k8s.io/component-base/version.gitVersion=$kver"
build kube fakecri ./fakecri
build kube podresources ./podresources
# kwok's own stage definitions (node ready, pod ready/complete/delete), from
# the same module version, read by kwok at start.
if [ ! -f "$bin/kwok-stages/.done" ]; then
  src="$(cd "$tools/kwok" && "$GO" list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
  mkdir -p "$bin/kwok-stages"
  cp "$src"/node/fast/node-initialize.yaml "$src"/pod/fast/pod-ready.yaml \
     "$src"/pod/fast/pod-complete.yaml "$src"/pod/fast/pod-delete.yaml "$bin/kwok-stages/"
  chmod u+w "$bin/kwok-stages/"*
  touch "$bin/kwok-stages/.done"
fi
if [ -n "$peers" ]; then
  build scheduler-plugins scheduler-plugins sigs.k8s.io/scheduler-plugins/cmd/scheduler
  # The CRDs its plugins read, from the module version that built it.
  crds="$bin/scheduler-plugins-crds"
  crdkey="$(cat "$tools/scheduler-plugins/go.mod" "$tools/scheduler-plugins/go.sum" | sha256sum | cut -c1-16)"
  if [ "$(cat "$crds/.key" 2>/dev/null)" != "$crdkey" ]; then
    src="$(cd "$tools/scheduler-plugins" && "$GO" list -m -f '{{.Dir}}' sigs.k8s.io/scheduler-plugins)/config/crd/bases"
    rm -rf "$crds" && mkdir -p "$crds"
    cp "$src"/scheduling.x-k8s.io_podgroups.yaml "$src"/scheduling.x-k8s.io_elasticquotas.yaml "$crds/"
    chmod u+w "$crds/"*
    echo "$crdkey" > "$crds/.key"
  fi
fi
[ -n "$first_build" ] || echo "build-binaries: done in $((SECONDS - start)) s" >&2
echo "$bin"
