#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prints the path of a Go toolchain new enough for the pinned Kubernetes
# modules. Uses `go` from PATH when it is recent enough; otherwise fetches the
# official toolchain module (golang.org/toolchain, the same archive
# GOTOOLCHAIN=auto downloads) from the Go module proxy into CACHE, so nothing
# comes from anywhere but a package registry. Debian's golang-go is too old.
set -euo pipefail
cache="$1"
want_minor=26
version=1.26.8

if command -v go >/dev/null; then
  v="$(go env GOVERSION 2>/dev/null || true)" # go1.26.8
  minor="$(echo "$v" | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
  if [ -n "$minor" ] && [ "$minor" -ge "$want_minor" ]; then
    command -v go
    exit 0
  fi
fi
dir="$cache/go$version"
if [ ! -x "$dir/bin/go" ]; then
  proxy="${GOPROXY:-https://proxy.golang.org}"
  proxy="${proxy%%,*}"
  arch="$(dpkg --print-architecture)"
  zip="$cache/go$version.zip"
  mkdir -p "$cache"
  echo "go-toolchain: fetching go$version from $proxy" >&2
  curl -fsSL -o "$zip" "$proxy/golang.org/toolchain/@v/v0.0.1-go$version.linux-$arch.zip"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  (cd "$dir.tmp" && unzip -q "$zip")
  mv "$dir.tmp/golang.org/toolchain@v0.0.1-go$version.linux-$arch" "$dir"
  rm -rf "$dir.tmp" "$zip"
  chmod +x "$dir/bin/"* "$dir/pkg/tool/"*/* 2>/dev/null || true
fi
echo "$dir/bin/go"
