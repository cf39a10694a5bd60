#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates every number of docs/RESULTS.md into bench/results/:
#   default.txt        all policies on the default trace, seeds 42-51, and the
#                      packing LP's bound on what any placement could reach
#   gpushareN.txt      fgd / flexpu / bestfit and the bound on each gpushare variant
#   timed.txt          the timed replay: real run times, arrivals at 1x and 10,000x
#   speed.txt          one fgd replay, and a synthetic 10,000-node / 100,000-pod run
# plus the CSV files and the SVG plot of each run under bench/results/<name>/.
# Bounded: about 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
SIM=${SIM:-./build/flexpu-sim}
TRACE=${TRACE:-../shared/data/alibaba-gpu-v2023}
OUT=bench/results
mkdir -p "$OUT"
[ -x "$SIM" ] || { echo "build first: make build" >&2; exit 1; }

echo "== default trace, all policies, seeds 42-51"
"$SIM" --quiet --policy whole,random,bestfit,dotprod,packing,fgd,flexpu,bound \
  --pods "$TRACE/openb_pod_list_default.csv" --out "$OUT/default" | tee "$OUT/default.txt"

for n in 20 40 60 80 100; do
  echo "== gpushare$n"
  "$SIM" --quiet --policy fgd,flexpu,bestfit,bound --pods "$TRACE/openb_pod_list_gpushare$n.csv" \
    --out "$OUT/gpushare$n" | tee "$OUT/gpushare$n.txt"
done

echo "== timed replay (real run times; arrivals at the trace's rate, then 10,000x faster)"
{
  "$SIM" --quiet --mode timed --rate 1 --policy whole,bestfit,fgd,flexpu --out "$OUT/timed"
  "$SIM" --quiet --mode timed --rate 10000 --policy whole,bestfit,fgd,flexpu --out "$OUT/timed-x10000"
} | tee "$OUT/timed.txt"

echo "== speed"
{
  for p in fgd flexpu; do
    /usr/bin/env time -f "$p one replay (seed 42): %e s wall, %M KiB peak RSS" \
      "$SIM" --quiet --policy $p --seeds 42 --out "" >/dev/null
  done
  "$SIM" --quiet --policy fgd,flexpu --seeds 42 --synthetic 10000,100000 --out ""
} 2>&1 | tee "$OUT/speed.txt"
