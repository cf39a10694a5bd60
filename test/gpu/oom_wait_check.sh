#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Borrowed memory given back (docs/KUBERNETES.md, "Borrowing reserved
# memory") on a real GPU: how long an owner's allocation waits once the
# borrower holding the memory is killed, which is the driver tearing the
# killed process's context down. This script plays the node agent: it marks
# the GPU, kills the borrower when the owner's want appears, and clears the
# mark once the borrower is reaped.
#  - the owner (no quota) makes its context and 1 MiB first;
#  - the borrower takes all but 512 MiB of what is free;
#  - the owner asks 2 GiB: the driver refuses, the library waits (the mark
#    is there), the borrower is killed, the allocation succeeds.
# Prints the kill-to-allocation time and the library's own waited_ms; exits
# non-zero if the owner got the error. Runs against the fake driver too
# (CTest oom_wait_check_fake: FAKECUDA_NODE_MEM=1).
#
#   oom_wait_check.sh LIBFLEXPU CUDA_CLIENT
set -euo pipefail
lib="$(realpath "${1:?usage: $0 LIBFLEXPU CUDA_CLIENT}")"
client="$(realpath "${2:?usage: $0 LIBFLEXPU CUDA_CLIENT}")"
dir="$(mktemp -d /tmp/flexpu-oomwait.XXXXXX)"
bpid="" opid=""
cleanup() {
  exec 3>&- 4>&- 2>/dev/null || true
  [ -z "$bpid" ] || kill -9 "$bpid" 2>/dev/null || true
  [ -z "$opid" ] || kill -9 "$opid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "oom_wait: FAIL: $*" >&2; sed 's/^/  owner: /' "$dir/o.out" >&2; sed 's/^/  borrower: /' "$dir/b.out" >&2; exit 1; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# reply FILE N: the Nth reply line (log lines start with time=), within 30 s
reply() {
  local i
  for i in $(seq 1 3000); do
    local l
    l="$(grep -v '^time=' "$1" | sed -n "$2p")"
    [ -n "$l" ] && { echo "$l"; return 0; }
    sleep 0.01
  done
  fail "no reply $2 in $1"
}
marks="$dir/borrowed"
mkdir -p "$marks" "$dir/state"
mkfifo "$dir/o.in" "$dir/b.in"
env LD_PRELOAD="$lib" FLEXPU_STATE_DIR="$dir/state" FLEXPU_TENANT=owner \
  FLEXPU_BORROWED_DIR="$marks" FLEXPU_OOM_WAIT_MS=30000 FLEXPU_LOG_LEVEL=info \
  "$client" <"$dir/o.in" >"$dir/o.out" 2>&1 &
opid=$!
exec 4>"$dir/o.in"
printf 'init\nctx 0\nalloc 1048576\n' >&4
[ "$(reply "$dir/o.out" 3 | cut -c1-2)" = ok ] || fail "the owner's first MiB"
uuid="$(basename "$(ls "$dir/state/ledger/owner/"*.ledger)" .ledger)"
env LD_PRELOAD="$lib" FLEXPU_STATE_DIR="$dir/state" FLEXPU_TENANT=borrower \
  "$client" <"$dir/b.in" >"$dir/b.out" 2>&1 &
bpid=$!
exec 3>"$dir/b.in"
printf 'init\nctx 0\nmeminfo\n' >&3
free="$(reply "$dir/b.out" 3 | awk '$1 == "ok" {print $2}')"
[ -n "$free" ] || fail "the borrower's meminfo"
take=$(( free - 512 * 1048576 ))
echo "alloc $take" >&3
[ "$(reply "$dir/b.out" 4 | cut -c1-2)" = ok ] || fail "the borrower's $take bytes"
: >"$marks/$uuid"
echo "alloc 2147483648" >&4
for _ in $(seq 1 3000); do
  ls "$dir/state/ledger/owner/"*.want >/dev/null 2>&1 && break
  sleep 0.001
done
ls "$dir/state/ledger/owner/"*.want >/dev/null 2>&1 || fail "the owner did not wait (no want)"
t0=$(ms)
kill -9 "$bpid"
wait "$bpid" 2>/dev/null || true
t_reaped=$(ms)
bpid=""
rm -f "$marks/$uuid"
ans="$(reply "$dir/o.out" 4)"
t1=$(ms)
[ "$(cut -c1-2 <<<"$ans")" = ok ] || fail "the owner's 2 GiB after the kill: $ans"
waited="$(grep -o 'waited_ms=[0-9]* tries=[0-9]*' "$dir/o.out" | tail -n 1)"
echo "oom_wait: borrower held $take of $free free bytes; owner's 2 GiB succeeded" \
  "$((t1 - t0)) ms after the kill (the borrower reaped after $((t_reaped - t0)) ms;" \
  "library: $waited)"
