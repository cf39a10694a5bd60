#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The MIG hard mode on a real GPU (flexpu-node --sharing-mode mig; docs/SECURITY.md,
# "Hard mode: MIG"), through test/gpu/mig_probe (the agent's own src/node/mig.c):
#  1. cut the GPU to a layout of its own profiles (one 3-slice, one 2-slice, two
#     1-slice instances; MIG enabled first if it was off);
#  2. the MIG devices the agent would publish are the ones nvidia-smi -L lists under the
#     GPU, with their memory, each healthy;
#  3. a second run adopts them: the same UUIDs, nothing destroyed;
#  4. a layout of one 7-slice (whole) instance replaces them (no process runs on them);
#  5. with a CUDA process on a MIG device (test/gpu/quota_paths holding a context, when
#     built), a layout without that device is refused, naming the instance, and nothing
#     changes.
# It needs root and an idle MIG-capable GPU. Otherwise it prints SKIP and why and exits 0;
# it also skips when the GPU already holds MIG instances (it would change them). At the end
# (and on any failure) it leaves the GPU as it found it: its instances destroyed and MIG
# disabled again if it was off.
#
#   test/gpu/mig_check.sh BUILD_DIR [GPU_INDEX]      (output: one line per check)
set -u
build="${1:?usage: mig_check.sh BUILD_DIR [GPU_INDEX]}"
gpu="${2:-0}"
probe="$build/test/mig_probe"
work="$(mktemp -d /tmp/flexpu-mig-check-XXXXXX)"
failed=0
restore_mode=""

say() { printf '%s\n' "$*"; }
skip() { say "SKIP mig_check: $*"; rm -rf "$work"; exit 0; }
pass() { say "PASS $*"; }
fail() { say "FAIL $*"; failed=1; }

# The GPU as it was: instances gone, MIG mode back.
restore() {
  [ -n "$restore_mode" ] || return 0
  nvidia-smi mig -i "$gpu" -dci >/dev/null 2>&1
  nvidia-smi mig -i "$gpu" -dgi >/dev/null 2>&1
  if [ "$restore_mode" = Disabled ]; then
    nvidia-smi -i "$gpu" -mig 0 >/dev/null 2>&1
  fi
  local now
  now="$(mig_mode)"
  if [ "$now" = "$restore_mode" ] && [ -z "$(instances)" ]; then
    say "restored: GPU $gpu MIG $now, no instances"
  else
    say "FAIL restore: GPU $gpu MIG is '$now' (was '$restore_mode'), instances: $(instances)"
    failed=1
  fi
  restore_mode=""
}
trap 'restore; rm -rf "$work"' EXIT

mig_mode() { nvidia-smi -i "$gpu" --query-gpu=mig.mode.current --format=csv,noheader 2>/dev/null | tr -d ' '; }
# GPU instance lines of nvidia-smi mig -lgi (empty when none).
instances() { nvidia-smi mig -i "$gpu" -lgi 2>/dev/null | grep -E '^\|\s+[0-9]+\s+MIG' || true; }
# The MIG UUIDs nvidia-smi -L lists under the GPU.
smi_uuids() {
  nvidia-smi -L 2>/dev/null | awk -v g="GPU $gpu:" '
    index($0, g) == 1 { on = 1; next }
    /^GPU / { on = 0 }
    on && match($0, /MIG-[0-9a-f-]+/) { print substr($0, RSTART, RLENGTH) }' | sort
}
probe_uuids() { awk '$1 == "gpu" && $3 ~ /^MIG-/ { print $3 }' "$1" | sort; }

[ "$(id -u)" = 0 ] || skip "needs root (MIG configuration)"
command -v nvidia-smi >/dev/null || skip "no nvidia-smi"
[ -x "$probe" ] || skip "no $probe (build the tree first)"
name="$(nvidia-smi -i "$gpu" --query-gpu=name --format=csv,noheader 2>/dev/null)" ||
  skip "no GPU $gpu"
mode="$(mig_mode)"
case "$mode" in
  Enabled|Disabled) ;;
  *) skip "GPU $gpu ($name) has no MIG (mig.mode.current: '$mode')" ;;
esac
apps="$(nvidia-smi -i "$gpu" --query-compute-apps=pid --format=csv,noheader 2>/dev/null)"
[ -z "$apps" ] || skip "GPU $gpu is busy (processes: $(echo $apps))"
if [ "$mode" = Enabled ] && [ -n "$(instances)" ]; then
  skip "GPU $gpu already holds MIG instances; this check would change them"
fi
say "GPU $gpu: $name, MIG $mode"
restore_mode="$mode"

# 1. from scratch
if ! "$probe" --gpu "$gpu" auto >"$work/run1" 2>"$work/err1"; then
  if grep -q "needs a reset\|not active" "$work/err1"; then
    say "SKIP mig_check: MIG needs a GPU reset here: $(cat "$work/err1")"
    exit 0
  fi
  fail "1 partition: $(cat "$work/err1")"
  exit 1
fi
layout="$(awk '$1 == "layout" { print $2 }' "$work/run1")"
n="$(probe_uuids "$work/run1" | wc -l)"
[ "$n" = 4 ] && pass "1 partition: layout $layout, $n MIG devices" ||
  fail "1 partition: $n MIG devices for $layout: $(cat "$work/run1")"

# 2. the agent's devices are nvidia-smi's, healthy, with memory
if [ "$(probe_uuids "$work/run1")" = "$(smi_uuids)" ]; then
  pass "2 the MIG UUIDs are the ones nvidia-smi -L lists"
else
  fail "2 UUIDs: probe [$(probe_uuids "$work/run1" | tr '\n' ' ')] nvidia-smi [$(smi_uuids | tr '\n' ' ')]"
fi
if awk '$1 == "gpu" && ($5 <= 0 || $10 != "healthy=1") { bad = 1 } END { exit bad }' "$work/run1"; then
  pass "2 every MIG device has memory and is healthy"
else
  fail "2 memory or health: $(cat "$work/run1")"
fi

# 3. adoption
"$probe" --gpu "$gpu" "$layout" >"$work/run2" 2>"$work/err2" || fail "3 adopt: $(cat "$work/err2")"
if [ "$(probe_uuids "$work/run1")" = "$(probe_uuids "$work/run2")" ]; then
  pass "3 a second run adopts the same devices"
else
  fail "3 adopt: the devices changed"
fi

# 4. a new layout replaces idle instances
# the profile with the most slices: the whole GPU as one instance
whole="$("$probe" --gpu "$gpu" list 2>/dev/null | sort -k3,3n | awk '$1 == "profile" { p = $2 } END { print p }')"
if [ -n "$whole" ] && "$probe" --gpu "$gpu" "$whole" >"$work/run3" 2>"$work/err3"; then
  [ "$(probe_uuids "$work/run3" | wc -l)" = 1 ] && [ "$(probe_uuids "$work/run3")" = "$(smi_uuids)" ] &&
    pass "4 layout $whole replaces the four" || fail "4 replace: $(cat "$work/run3")"
else
  fail "4 replace with '${whole:-?}': $(cat "$work/err3" 2>/dev/null)"
fi

# 5. a busy instance refuses a layout without it
qp="$build/test/runtime/quota_paths"
uuid="$(probe_uuids "$work/run3" | head -1)"
if [ -x "$qp" ] && [ -n "$uuid" ]; then
  # quota_paths holds a context while it fills memory in steps; 8 GiB of quota keeps it
  # busy long enough to be seen.
  CUDA_VISIBLE_DEVICES="$uuid" "$qp" 8589934592 >"$work/qp.log" 2>&1 &
  qpid=$!
  for _ in $(seq 50); do
    [ -n "$(nvidia-smi -i "$gpu" --query-compute-apps=pid --format=csv,noheader 2>/dev/null)" ] && break
    sleep 0.1
  done
  if [ -z "$(nvidia-smi -i "$gpu" --query-compute-apps=pid --format=csv,noheader 2>/dev/null)" ]; then
    say "SKIP 5 busy: no process showed up on $uuid"
  elif "$probe" --gpu "$gpu" "$layout" >"$work/run4" 2>"$work/err4"; then
    fail "5 busy: a layout without the busy instance went through"
  elif grep -q "MIG instance .* runs process" "$work/err4" &&
       [ "$(probe_uuids "$work/run3")" = "$(smi_uuids)" ]; then
    pass "5 busy: refused, nothing changed: $(cat "$work/err4")"
  else
    fail "5 busy: $(cat "$work/err4")"
  fi
  kill "$qpid" 2>/dev/null
  wait "$qpid" 2>/dev/null
else
  say "SKIP 5 busy: no $qp to hold a context"
fi

restore
exit "$failed"
