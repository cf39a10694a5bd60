#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# agent_host (test/gpu/agent_host.c), which the GPU check's agent step runs
# (test/gpu/frameworks/agent_cases.py), checked on the fake driver with the
# same wiring: a process with the slice's environment is served by the agent
# (its slice.conf's share and priority on the agent's page, GPU time charged
# there, which only happens when the agent arbitrates it), and the agent
# stops on SIGTERM.
#
#   agent_host_fake.sh AGENT_HOST LIBFLEXPU CUDA_CLIENT FAKECUDA_LIB_DIR FLEXPU_SMI
set -euo pipefail
host=$1 lib=$2 client=$3 fakedir=$4 smi=$5
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
fail() { echo "agent_host_fake: FAIL: $*" >&2; exit 1; }
root=$work/root
mkdir -p "$root/ledger" "$root/slices" "$work/fake"
# The fake's device 0 (test/fakecuda/fake_common.h: "fakegpu", ordinal 0).
uuid=GPU-66616b65-6770-7500-1122-334455667788
"$host" "$root" "$uuid" >"$work/host.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q '^ready' "$work/host.log" && break
  kill -0 "$pid" 2>/dev/null || fail "agent_host exited: $(cat "$work/host.log")"
  sleep 0.05
done
grep -q '^ready' "$work/host.log" || fail "agent_host not ready: $(cat "$work/host.log")"
[ -f "$root/arb/$uuid.state" ] || fail "no page $root/arb/$uuid.state"
# Two slices that contend: the agent arbitrates them and charges each its
# GPU time (a process outside the agent, or one the agent does not serve,
# leaves the page's GPU time at 0).
run_slice() { # KEY SHARE PRIORITY
  mkdir -p "$root/ledger/$1" "$root/slices/$1"
  printf 'tenant = %s\ncompute_share = %s\ncompute_cap = 100\npriority = %s\n' "$1" "$2" "$3" \
    >"$root/slices/$1/slice.conf"
  printf 'init\nctx 0\nburn 500 600 100\nexit\n' |
    env LD_PRELOAD="$lib" LD_LIBRARY_PATH="$fakedir" FAKECUDA_DIR="$work/fake" \
      FLEXPU_CONTEXT_OVERHEAD=0 FLEXPU_TENANT="$1" FLEXPU_MEMORY_LIMIT=1Gi \
      FLEXPU_ARBITER_DIR="$root/arb" FLEXPU_LEDGER_DIR="$root/ledger/$1" \
      FLEXPU_STATE_DIR="$root/state" "$client" >"$work/$1.log" 2>&1
}
run_slice a 30 high & ca=$!
run_slice b 70 high & cb=$!
wait "$ca" || fail "client a: $(cat "$work/a.log")"
wait "$cb" || fail "client b: $(cat "$work/b.log")"
for k in a b; do
  grep -q '^ok [1-9]' "$work/$k.log" || fail "client $k burned nothing: $(cat "$work/$k.log")"
  [ -f "$root/ledger/$k/$uuid.req" ] || fail "client $k made no request file in its ledger"
done
"$smi" --state-dir "$root/arb" --ledger-root "$root/ledger" >"$work/smi.txt" 2>&1 ||
  fail "flexpu-smi: $(cat "$work/smi.txt")"
# Each tenant's row: its slice.conf's share and priority, and GPU time.
for k in "a 30% high" "b 70% high"; do
  set -- $k
  row=$(awk -v t="$1" '$1 == t' "$work/smi.txt")
  [ -n "$row" ] || fail "tenant $1 not on the agent's page: $(cat "$work/smi.txt")"
  grep -q " $2 .* $3 " <<<"$row" || fail "tenant $1: share $2, priority $3 not on the page: $row"
  awk '{for (i = 1; i <= NF; i++) if ($i ~ /s$/ && $i + 0 > 0) found = 1} END {exit !found}' \
    <<<"$row" || fail "tenant $1: no GPU time charged by the agent: $row"
done
kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "agent_host ignores SIGTERM"
wait "$pid" || fail "agent_host exited non-zero: $(cat "$work/host.log")"
pid=
grep -q '^stopped after' "$work/host.log" || fail "host log: $(cat "$work/host.log")"
cat "$work/smi.txt"
echo "agent_host_fake: ok"
