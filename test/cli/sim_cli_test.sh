#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# flexpu-sim as a new user meets it: where the default trace is looked for,
# what it says when the trace is missing, and what its table says it counts.
# Usage: sim_cli_test.sh FLEXPU-SIM
set -uo pipefail
sim="$1"
fails=0
fail() { echo "sim_cli_test: FAIL: $*" >&2; fails=$((fails + 1)); }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A missing default trace names the file, where the public trace is
# published and how to point at another directory; the exit status is not 0.
if FLEXPU_TRACE_DIR="$work/none" "$sim" --quiet >"$work/out" 2>"$work/err"; then
  fail "a missing trace exited 0"
fi
grep -q "$work/none/openb_node_list_gpu_node.csv: cannot open" "$work/err" ||
  fail "the error does not name the missing file: $(cat "$work/err")"
grep -q 'github.com/alibaba/clusterdata' "$work/err" ||
  fail "the error does not say where the public trace is published: $(cat "$work/err")"
grep -q 'FLEXPU_TRACE_DIR' "$work/err" || fail "the error does not say how to point elsewhere"

# A file the user named that is missing gets no hint about the default trace.
FLEXPU_TRACE_DIR="$work/none" "$sim" --nodes "$work/mine.csv" --pods "$work/mine.csv" \
  --quiet >/dev/null 2>"$work/err2"
grep -q "$work/mine.csv: cannot open" "$work/err2" || fail "a named missing file is not named"
! grep -q 'clusterdata' "$work/err2" || fail "a named file got the default trace's hint"

# --help shows the directory really used, not a word like "embedded".
FLEXPU_TRACE_DIR="$work/elsewhere" "$sim" --help >"$work/help"
grep -q "trace directory: $work/elsewhere" "$work/help" || fail "--help does not show the trace directory"
! grep -qi 'embedded' "$work/help" || fail "--help still calls a file on disk embedded"

# The table on a tiny trace: it says its figures are means and what 'whole' counts.
cat >"$work/nodes.csv" <<'CSV'
sn,cpu_milli,memory_mib,gpu,model
n1,8000,65536,2,V100M16
n2,8000,65536,2,V100M16
CSV
cat >"$work/pods.csv" <<'CSV'
name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
p1,1000,1024,1,500,,LS,Running,0,100,1
p2,1000,1024,1,1000,,LS,Running,1,100,2
p3,1000,1024,1,300,,LS,Running,2,100,3
CSV
if "$sim" --nodes "$work/nodes.csv" --pods "$work/pods.csv" --policy whole,flexpu --seeds 42-43 \
     --quiet --out "$work/o" >"$work/table" 2>"$work/err3"; then
  grep -q 'mean (± standard deviation) over the seeds' "$work/table" || fail "the table does not say it shows means"
  grep -q '^whole: every share rounded up to a whole GPU' "$work/table" || fail "the table does not say what whole counts"
else
  fail "the tiny trace did not replay: $(cat "$work/err3")"
fi
[ "$fails" = 0 ] && echo "sim_cli_test: ok"
exit "$fails"
