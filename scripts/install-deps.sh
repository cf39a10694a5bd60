#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages the build and the tests need, if any is
# missing. As root it runs apt-get; otherwise it prints the exact command and
# fails, so nothing is ever assumed to be on the machine.
set -euo pipefail

# One list: what the build, the unit tests, the sanitizer build and the
# fuzzers need (pip fetches NVIDIA's libraries for the conformance test);
# umoci writes the OCI image (scripts/build-image.sh) without a Docker daemon.
PACKAGES=(
  gcc make cmake ninja-build pkg-config time
  libcmocka-dev
  libcurl4-openssl-dev libjansson-dev libyaml-dev libssl-dev
  libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler libmicrohttpd-dev
  liblpsolve55-dev
  openssl curl unzip ca-certificates jq
  python3 python3-pip
  clang libclang-rt-14-dev
  umoci
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "flexpu: missing packages: ${missing[*]}" >&2
  echo "flexpu: run as root:  apt-get update && $cmd" >&2
  exit 1
fi
echo "flexpu: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
$cmd >/dev/null
