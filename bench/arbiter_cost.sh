#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# What compute arbitration costs with the tenants deciding (the shared
# state, outside Kubernetes) and with the node agent deciding
# (runtime/arbagent.h): the check every launch makes, and the hand-over
# latency between two tenants taking turns (bench/arbiter_cost.c, no driver:
# the arbiter alone). Runs alternated, 3 of each, 3 s each. Writes
# bench/results/arbiter-cost.txt. Bounded: about 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}
[ -f "$B/libflexpu_rtcore.a" ] || { echo "build first: make build" >&2; exit 1; }
OUT=bench/results/arbiter-cost.txt
mkdir -p bench/results
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
cc -O2 -D_GNU_SOURCE -std=c17 -Wall -Wextra -Werror -Iinclude -Isrc bench/arbiter_cost.c \
  "$B/libflexpu_rtcore.a" "$B/libflexpu_util.a" -lpthread -o "$bin"
{
  echo "# arbitration cost, tenants vs the node agent ($(date -u +%F), $(nproc) cores, $(git rev-parse --short HEAD))"
  for i in 1 2 3; do
    "$bin" shared 3
    "$bin" agent 3
  done
} | tee "$OUT"
