#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# flexpu-variants' model constraints (--gpuspec, --gpuspec-mix) on a tiny
# trace: the share asked for, the models each mix may draw, the same file for
# the same seed, and the messages for a bad mix; --cpu-pods and
# --multigpu-demand: the counts, unique names, untouched other pods, seeds.
# Usage: variants_cli_test.sh FLEXPU-VARIANTS
set -uo pipefail
gen="$1"
fails=0
fail() { echo "variants_cli_test: FAIL: $*" >&2; fails=$((fails + 1)); }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Models A (8 GPUs on two nodes of 4), B (2 GPUs on one node), C (1 GPU).
cat >"$work/nodes.csv" <<'CSV'
sn,cpu_milli,memory_mib,gpu,model
n1,32000,65536,4,A
n2,32000,65536,4,A
n3,32000,65536,2,B
n4,32000,65536,1,C
CSV
{
  echo "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time"
  for i in $(seq 1 200); do echo "p$i,1000,1024,1,500,,LS,Running,$i,$((i + 10)),$i"; done
  for i in $(seq 201 220); do echo "p$i,2000,1024,0,0,,BE,Running,$i,$((i + 10)),$i"; done
} >"$work/pods.csv"
run() { "$gen" --pods "$work/pods.csv" --nodes "$work/nodes.csv" "$@"; }
specs() { awk -F, 'NR > 1 && $6 != "" { print $6 }' "$1"; }

# The share of GPU pods that name models, and the same file for the same seed;
# --gpuspec-mix uniform is the default.
run --gpuspec 0.3 --seed 7 --out "$work/u1.csv" || fail "uniform: exit $?"
run --gpuspec 0.3 --seed 7 --gpuspec-mix uniform --out "$work/u2.csv" || fail "uniform (named): exit $?"
cmp -s "$work/u1.csv" "$work/u2.csv" || fail "--gpuspec-mix uniform is not the default"
n=$(specs "$work/u1.csv" | wc -l)
[ "$n" -eq 60 ] || fail "uniform: $n of 200 GPU pods name models, want 60"
awk -F, 'NR > 1 && $4 == 0 && $6 != ""' "$work/u1.csv" | grep -q . && fail "a CPU-only pod names a model"

# capacity: models drawn by their GPUs, so A (8 of 11 GPUs) is the most named.
run --gpuspec 0.5 --seed 3 --gpuspec-mix capacity --out "$work/c.csv" || fail "capacity: exit $?"
n=$(specs "$work/c.csv" | wc -l)
[ "$n" -eq 100 ] || fail "capacity: $n pods name models, want 100"
specs "$work/c.csv" | tr '|' '\n' | grep -qv '^[ABC]$' && fail "capacity drew a model not in the node list"
a=$(specs "$work/c.csv" | grep -c 'A') b=$(specs "$work/c.csv" | grep -c 'B')
[ "$a" -gt "$b" ] || fail "capacity: A named by $a pods, B by $b: not by the models' GPUs"

# A list: only its gpu_spec values, in about its weights.
run --gpuspec 0.5 --seed 3 --gpuspec-mix 'B=3,A|C=1' --out "$work/l.csv" || fail "list: exit $?"
specs "$work/l.csv" | grep -qv '^\(B\|A|C\)$' && fail "the list drew a value not in it"
b=$(specs "$work/l.csv" | grep -c '^B$') ac=$(specs "$work/l.csv" | grep -c '^A|C$')
[ "$b" -gt "$ac" ] && [ "$ac" -gt 0 ] || fail "list: B $b, A|C $ac for weights 3 and 1"
run --gpuspec 0.5 --seed 4 --gpuspec-mix 'B=3,A|C=1' --out "$work/l4.csv"
cmp -s "$work/l.csv" "$work/l4.csv" && fail "another seed gave the same file"

# Bad mixes are named and refused.
run --gpuspec 0.1 --gpuspec-mix 'X=1' 2>"$work/err" >/dev/null && fail "an unknown model was accepted"
grep -q "model 'X' is not in the node list" "$work/err" || fail "unknown model: $(cat "$work/err")"
run --gpuspec 0.1 --gpuspec-mix 'B=' 2>"$work/err" >/dev/null && fail "an empty weight was accepted"
grep -q "invalid weight" "$work/err" || fail "empty weight: $(cat "$work/err")"
run --gpuspec 0.1 --gpuspec-mix 'B' 2>"$work/err" >/dev/null && fail "an entry without weight was accepted"
grep -q "expected SPEC=WEIGHT" "$work/err" || fail "no weight: $(cat "$work/err")"
run --gpuspec 0.1 --gpuspec-mix 'B=-1' 2>"$work/err" >/dev/null && fail "a negative weight was accepted"

# --cpu-pods: the 20 CPU-only pods become 50 (copies with unique names) or 5;
# the GPU pods stay as they were; the same seed gives the same file.
cpu_only() { awk -F, 'NR > 1 && $4 == 0' "$1" | wc -l; }
gpu_rows() { awk -F, 'NR > 1 && $4 > 0' "$1"; }
run --cpu-pods 2.5 --seed 9 --out "$work/cp.csv" || fail "cpu-pods: exit $?"
[ "$(cpu_only "$work/cp.csv")" -eq 50 ] || fail "cpu-pods 2.5: $(cpu_only "$work/cp.csv") CPU-only pods, want 50"
[ "$(cut -d, -f1 "$work/cp.csv" | sort | uniq -d | wc -l)" -eq 0 ] || fail "cpu-pods: duplicate pod names"
cmp -s <(gpu_rows "$work/cp.csv") <(gpu_rows "$work/pods.csv") || fail "cpu-pods changed GPU pods"
awk -F, 'NR > 1 && $4 == 0 && $2 != 2000' "$work/cp.csv" | grep -q . && fail "cpu-pods: a copy's CPU differs from its donor's"
run --cpu-pods 2.5 --seed 9 --out "$work/cp2.csv"
cmp -s "$work/cp.csv" "$work/cp2.csv" || fail "cpu-pods: same seed, different file"
run --cpu-pods 0.25 --seed 9 --out "$work/cpl.csv" || fail "cpu-pods 0.25: exit $?"
[ "$(cpu_only "$work/cpl.csv")" -eq 5 ] || fail "cpu-pods 0.25: $(cpu_only "$work/cpl.csv") CPU-only pods, want 5"
run --cpu-pods 11 2>"$work/err" >/dev/null && fail "cpu-pods 11 was accepted"

# --multigpu-demand: copies of multi-GPU pods are added until they bring the
# share of GPU demand asked for; every other pod stays. 100 pods of 1 GPU and
# 5 of 4 GPUs (20 of 120 GPUs): half the demand needs 25 pods of 4 GPUs.
{
  echo "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time"
  for i in $(seq 1 100); do echo "s$i,4000,1024,1,1000,,LS,Running,$i,$((i + 10)),$i"; done
  for i in $(seq 1 5); do echo "m$i,32000,4096,4,1000,,LS,Running,$i,$((i + 10)),$i"; done
  for i in $(seq 1 10); do echo "c$i,2000,1024,0,0,,BE,Running,$i,$((i + 10)),$i"; done
} >"$work/multi.csv"
runm() { "$gen" --pods "$work/multi.csv" --nodes "$work/nodes.csv" "$@"; }
multi_rows() { awk -F, 'NR > 1 && $4 > 1' "$1" | wc -l; }
other_rows() { awk -F, 'NR > 1 && $4 <= 1' "$1"; }
runm --multigpu-demand 0.5 --seed 5 --out "$work/md.csv" || fail "multigpu-demand: exit $?"
[ "$(multi_rows "$work/md.csv")" -eq 25 ] || fail "multigpu-demand 0.5: $(multi_rows "$work/md.csv") multi-GPU pods, want 25"
cmp -s <(other_rows "$work/md.csv") <(other_rows "$work/multi.csv") || fail "multigpu-demand changed other pods"
[ "$(cut -d, -f1 "$work/md.csv" | sort | uniq -d | wc -l)" -eq 0 ] || fail "multigpu-demand: duplicate pod names"
runm --multigpu-demand 0.5 --seed 5 --out "$work/md2.csv"
cmp -s "$work/md.csv" "$work/md2.csv" || fail "multigpu-demand: same seed, different file"
runm --multigpu-demand 0.1 2>"$work/err" >/dev/null && fail "a share below the trace's was accepted"
grep -q "field '--multigpu-demand'" "$work/err" || fail "multigpu-demand below: $(cat "$work/err")"
run --multigpu-demand 0.5 2>"$work/err" >/dev/null && fail "multigpu-demand without multi-GPU pods was accepted"

[ "$fails" -eq 0 ] && echo "variants_cli_test: all checks passed"
exit "$((fails > 0))"
