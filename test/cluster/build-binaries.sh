#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds etcd, kube-apiserver, kube-scheduler, kubectl and kwok from their
# upstream Go modules (through the Go module proxy), and our test peer dppeer,
# into a cache outside the repository, once. Prints the bin directory on stdout.
#
# Versions are pinned by the go.mod/go.sum files under tools/. Each binary
# remembers the hash of the module that built it, so changing a version
# rebuilds that binary only and nothing stale is ever used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tools="$here/tools"
cache="${FLEXPU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flexpu}"
bin="$cache/cluster/bin"
mkdir -p "$bin"

GO="$("$here/go-toolchain.sh" "$cache")"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

build() { # module-dir binary package (an upstream path, or ./dir inside module-dir)
  local key src=()
  # A package of our own rebuilds when its sources change, too.
  case "$3" in ./*) src=("$tools/$1/$3"/*.go) ;; esac
  key="$(cat "$tools/$1/go.mod" "$tools/$1/go.sum" "${src[@]}" | sha256sum | cut -c1-16)"
  if [ -x "$bin/$2" ] && [ "$(cat "$bin/.$2.key" 2>/dev/null)" = "$key" ]; then
    return
  fi
  echo "build-binaries: building $2 (a few minutes, once)" >&2
  # -trimpath and no debug info: smaller binaries, faster links.
  (cd "$tools/$1" && "$GO" build -trimpath -ldflags='-s -w' -o "$bin/$2.tmp" "$3") >&2
  mv "$bin/$2.tmp" "$bin/$2"
  echo "$key" > "$bin/.$2.key"
}
build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok
build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kube kubectl k8s.io/kubernetes/cmd/kubectl
# Our fake kubelet for the device-plugin tests (tools/kube/dppeer).
build kube dppeer ./dppeer
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
echo "$bin"
