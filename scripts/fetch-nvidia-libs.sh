#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fetches NVIDIA's real user-space libraries (libcudart, cuBLAS, NCCL) from their
# PyPI wheels into a cache outside the repository, for the conformance test
# (test/conformance). Pinned by version and sha256 in
# test/conformance/nvidia-libs.txt; each wheel is fetched once, its shared
# objects kept under CACHE/nvidia/PACKAGE-VERSION/lib, the wheel deleted.
#
#   scripts/fetch-nvidia-libs.sh cudart|cublas|nccl|all
#
# Prints the cache's nvidia directory on stdout. Needs python3 with pip and
# unzip (scripts/install-deps.sh installs them).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
want="${1:-all}"
cache="${FLEXPU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flexpu}/nvidia"
mkdir -p "$cache"

fetch() { # package version sha256
  local dest="$cache/$1-$2"
  [ -f "$dest/.done" ] && return
  local tmp
  tmp="$(mktemp -d "$cache/.fetch-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  echo "fetch-nvidia-libs: $1 $2 from PyPI" >&2
  echo "$1==$2 --hash=sha256:$3" > "$tmp/req.txt"
  # Any Python and platform: the wheels hold only native Linux x86-64 code.
  python3 -m pip download --quiet --no-deps --no-cache-dir --require-hashes \
    --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 \
    -r "$tmp/req.txt" -d "$tmp" >&2
  mkdir -p "$tmp/x" "$dest.new/lib"
  unzip -q -o "$tmp"/*.whl 'nvidia/*/lib/*.so*' -d "$tmp/x"
  find "$tmp/x" -name '*.so*' -exec mv {} "$dest.new/lib/" \;
  rm -rf "$dest"
  mv "$dest.new" "$dest"
  touch "$dest/.done"
}

while read -r set pkg ver sha; do
  case "$set" in ''|'#'*) continue ;; esac
  if [ "$want" = all ] || [ "$want" = "$set" ]; then
    fetch "$pkg" "$ver" "$sha"
  fi
done < "$here/test/conformance/nvidia-libs.txt"
echo "$cache"
