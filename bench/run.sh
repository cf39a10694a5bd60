#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates every number of docs/RESULTS.md into bench/results/:
#   default.txt        all policies on the default trace, seeds 42-51, and the
#                      packing LP's bound on what any placement could reach
#   gpushareN.txt      fgd / flexpu / bestfit and the bound on each gpushare variant
#   variants.txt       flexpu / fgd / bestfit on trace variants generated from the
#                      default trace by flexpu-variants (bench/variants.c), each
#                      marked "tune" or "held-out" (docs/SCHEDULING.md), on the
#                      FGD artifact's variants with ARTIFACT=DIR (a local copy
#                      of its data/csv/), and a summary of every trace, public,
#                      generated and artifact, with the published FGD means
#   timed.txt          the timed replay: real run times, arrivals at 1x and 10,000x
#   reuse.txt          the reuse replay of issue 16, default run (bench/reuse.sh: the rest)
#   speed.txt          one fgd replay, and a synthetic 10,000-node / 100,000-pod run
# plus the CSV files and the SVG plot of each run under bench/results/<name>/.
# Bounded: about 15 minutes on 2 cores. ONLY=variants regenerates
# variants.txt alone (from the default and gpushare tables already there).
set -euo pipefail
cd "$(dirname "$0")/.."
SIM=${SIM:-./build/flexpu-sim}
TRACE=${TRACE:-../shared/data/alibaba-gpu-v2023}
OUT=bench/results
mkdir -p "$OUT"
GEN=${GEN:-./build/flexpu-variants}
[ -x "$SIM" ] || { echo "build first: make build" >&2; exit 1; }
[ -x "$GEN" ] || { echo "build first: make build" >&2; exit 1; }

ONLY=${ONLY:-}
if [ "$ONLY" != variants ]; then
echo "== default trace, all policies, seeds 42-51"
"$SIM" --quiet --policy whole,random,bestfit,dotprod,packing,fgd,flexpu,bound \
  --pods "$TRACE/openb_pod_list_default.csv" --out "$OUT/default" | tee "$OUT/default.txt"

for n in 20 40 60 80 100; do
  echo "== gpushare$n"
  "$SIM" --quiet --policy fgd,flexpu,bestfit,bound --pods "$TRACE/openb_pod_list_gpushare$n.csv" \
    --out "$OUT/gpushare$n" | tee "$OUT/gpushare$n.txt"
done

fi

# Trace variants: name, set, flexpu-variants options. "tune" variants may
# be looked at while changing a policy; "held-out" ones only to report.
VARIANTS=(
  "gpuspec15  tune      --gpuspec 0.15 --seed 101"
  "cpu150     tune      --cpu 1.5 --seed 102"
  "multigpu05 tune      --multigpu 0.05 --seed 103"
  "share70    tune      --share 0.7 --seed 104"
  "cpupods19  tune      --cpu-pods 1.9 --seed 401"
  "cpupods23  tune      --cpu-pods 2.3 --seed 402"
  "cpupods26  tune      --cpu-pods 2.6 --seed 403"
  "mgd25      tune      --multigpu-demand 0.25 --seed 501"
  "mgd35      tune      --multigpu-demand 0.35 --seed 502"
  "mgd45      tune      --multigpu-demand 0.45 --seed 503"
  "gpuspec35  held-out  --gpuspec 0.35 --seed 201"
  "cpu200     held-out  --cpu 2.0 --seed 202"
  "multigpu10 held-out  --multigpu 0.10 --seed 203"
  "share90    held-out  --share 0.9 --seed 204"
  "mixed      held-out  --share 0.6 --multigpu 0.05 --cpu 1.5 --gpuspec 0.25 --seed 205"
  "cpupods15  held-out  --cpu-pods 1.5 --seed 413"
  "cpupods21  held-out  --cpu-pods 2.1 --seed 411"
  "cpupods28  held-out  --cpu-pods 2.8 --seed 412"
  "mgd30      held-out  --multigpu-demand 0.30 --seed 511"
  "mgd40      held-out  --multigpu-demand 0.40 --seed 512"
  "mgd50      held-out  --multigpu-demand 0.50 --seed 513"
)
VDIR=out/variants
mkdir -p "$VDIR"
{
  for v in "${VARIANTS[@]}"; do
    read -r name set opts <<<"$v"
    # shellcheck disable=SC2086
    "$GEN" --pods "$TRACE/openb_pod_list_default.csv" --nodes "$TRACE/openb_node_list_gpu_node.csv" \
      $opts --out "$VDIR/$name.csv"
    echo "== variant $name ($set): flexpu-variants $opts"
    "$SIM" --quiet --policy flexpu,fgd,bestfit --pods "$VDIR/$name.csv" --out ""
  done
  # The FGD artifact's own variants, from a local copy of its data/csv/
  # (ARTIFACT=DIR; not in this repository): held out, never tuned on.
  ARTS=()
  [ -n "${ARTIFACT:-}" ] && ARTS=("$ARTIFACT"/openb_pod_list_{cpu,gpuspec,multigpu}*.csv)
  for f in "${ARTS[@]}"; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .csv)
    echo "== artifact ${name#openb_pod_list_}"
    "$SIM" --quiet --policy flexpu,fgd,bestfit --pods "$f" --out ""
  done
} | tee "$OUT/variants.txt"

# The FGD results published with the artifact (its
# experiments/analysis/expected_results/analysis_allo_discrete.csv, mean of
# seeds 42-51): allocation at 100% demand.
declare -A PUB=([default]=95.23 [gpushare40]=93.96 [gpushare60]=91.25 [gpushare80]=89.08
  [gpushare100]=86.64 [cpu050]=95.00 [cpu100]=95.21 [cpu200]=94.82 [cpu250]=93.20
  [gpuspec10]=94.66 [gpuspec20]=94.66 [gpuspec25]=93.91 [gpuspec33]=87.84
  [multigpu20]=95.53 [multigpu30]=96.36 [multigpu40]=96.91 [multigpu50]=97.09)

# One line per trace: allocation at 100% and GPUs unallocated at 130% for
# flexpu, fgd and bestfit, flexpu's margin over fgd, and over the published
# FGD (the third argument) where there is one.
summary() {
  awk -v name="$1" -v set="$2" -v pub="${3:-}" '
    $1 == "flexpu" || $1 == "fgd" || $1 == "bestfit" { a[$1] = $2; u[$1] = $8 }
    END { printf "%-12s %-9s %7.2f %7.2f %7.2f %+7.2f %7.1f %7.1f %7.1f %8s\n", name, set,
          a["flexpu"], a["fgd"], a["bestfit"], a["flexpu"] - a["fgd"],
          u["flexpu"], u["fgd"], u["bestfit"],
          pub == "" ? "-" : sprintf("%+.2f", a["flexpu"] - pub) }'
}
{
  echo "== every trace: alloc @100% (flexpu, fgd, bestfit, flexpu - fgd), unallocated GPUs @130%," \
    "flexpu - published FGD @100%"
  printf "%-12s %-9s %7s %7s %7s %7s %7s %7s %7s %8s\n" trace set flexpu fgd bestfit margin \
    flexpu fgd bestfit "- pub."
  for n in default gpushare20 gpushare40 gpushare60 gpushare80 gpushare100; do
    summary "$n" public "${PUB[$n]:-}" <"$OUT/$n.txt"
  done
  for v in "${VARIANTS[@]}"; do
    read -r name set _ <<<"$v"
    awk -v n="$name" '/^== / { on = ($2 == "variant" && $3 == n) } on' "$OUT/variants.txt" |
      summary "$name" "$set"
  done
  for name in $(awk '/^== artifact/ { print $3 }' "$OUT/variants.txt"); do
    awk -v n="$name" '/^== / { on = ($2 == "artifact" && $3 == n) } on' \
      "$OUT/variants.txt" | summary "$name" artifact "${PUB[$name]:-}"
  done
} | tee -a "$OUT/variants.txt"

[ "$ONLY" = variants ] && exit 0

echo "== timed replay (real run times; arrivals at the trace's rate, then 10,000x faster)"
{
  "$SIM" --quiet --mode timed --rate 1 --policy whole,bestfit,fgd,flexpu --out "$OUT/timed"
  "$SIM" --quiet --mode timed --rate 10000 --policy whole,bestfit,fgd,flexpu --out "$OUT/timed-x10000"
} | tee "$OUT/timed.txt"

echo "== reuse of idle capacity (issue 16, docs/REUSE.md): whole-GPU, flexpu, flexpu + reuse;"
echo "   the default run on held-out seed 42 (make bench-reuse: seeds 42-44, the tune halves, the sweep)"
"$SIM" --mode reuse --nodes "$TRACE/openb_node_list_gpu_node.csv" \
  --pods "$TRACE/openb_pod_list_default.csv" --genai "$TRACE/../alibaba-genai-v2026" \
  --seed 42 --out "$OUT/reuse/default-seed42" | tee "$OUT/reuse.txt"

echo "== speed"
{
  for p in fgd flexpu; do
    /usr/bin/env time -f "$p one replay (seed 42): %e s wall, %M KiB peak RSS" \
      "$SIM" --quiet --policy $p --seeds 42 --out "" >/dev/null
  done
  "$SIM" --quiet --policy fgd,flexpu --seeds 42 --synthetic 10000,100000 --out ""
} 2>&1 | tee "$OUT/speed.txt"
