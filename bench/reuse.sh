#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make bench-reuse: the reuse replay of issue 16 (docs/REUSE.md) into
# bench/results/reuse/:
#   default-seedN/     the default run (owners at 80% of GPU compute, the
#                      trace's second half and the GenAI data's "report"
#                      half) on the held-out seeds 42, 43, 44
#   tune/              the same on the halves the knobs were chosen on
#                      (the trace's first half, the GenAI "tune" half, seed 1)
#   share-S/           the sweep: owners' share S with the default rules,
#                      2-hour windows, seed 42, report halves
#   share-S-light/     the same with batch jobs that need a quarter of their
#                      share's memory (--batch-mem 0.25) and may borrow where
#                      half their share is predicted idle (--borrow-fit 0.5):
#                      where reuse can pay
#   share-0.8-mem0/    as light, with batch jobs that need no GPU memory:
#                      what lending compute alone could reach
#   share-0.8-cap/, share-0.8-light-cap/
#                      share-0.8 and share-0.8-light with every batch job
#                      held to its share (--batch-gpu share: a
#                      gpu-cores-limit equal to its gpu-cores), the model
#                      before 2026-12-07; the others give batch jobs all
#                      the GPU time the runtime's arbiter gives an uncapped
#                      tenant (--batch-gpu idle, the default)
#   owner-mem-share/   owners that reserve their share of memory (flexpu's
#                      default for a slice), not their peak
#   summary.md         the tables of docs/RESULTS.md and docs/REUSE.md
#   reuse.svg          GPU time used over the default run (seed 42)
#   reuse-light.svg    the same for share-0.8-light
# Each directory holds reuse.md (the full table), reuse.csv and reuse.svg.
# About 25 minutes on 2 cores (each default run about 3, each sweep run 1.5).
# SUMMARY_ONLY=1 rewrites summary.md from the runs already there.
set -euo pipefail
cd "$(dirname "$0")/.."
SIM=${SIM:-./${BUILD:-build}/flexpu-sim}
TRACE=${TRACE:-../shared/data/alibaba-gpu-v2023}
GENAI=${GENAI:-$TRACE/../alibaba-genai-v2026}
OUT=bench/results/reuse
[ -x "$SIM" ] || { echo "build first: make build" >&2; exit 1; }
mkdir -p "$OUT"

run() { # name, then flexpu-sim options
    local name=$1
    shift
    echo "== $name: $*"
    "$SIM" --mode reuse --nodes "$TRACE/openb_node_list_gpu_node.csv" \
        --pods "$TRACE/openb_pod_list_default.csv" --genai "$GENAI" --out "$OUT/$name" "$@" |
        grep -E '^\| flexpu \+ reuse|^targets'
}

if [ -z "${SUMMARY_ONLY:-}" ]; then
    for seed in 42 43 44; do
        run "default-seed$seed" --seed "$seed"
    done
    run tune --trace-part tune --genai-part tune --seed 1
    for share in 0.5 0.7 0.8 0.9; do
        run "share-$share" --owner-share "$share" --hours 2
        run "share-$share-light" --owner-share "$share" --batch-mem 0.25 --borrow-fit 0.5 \
            --hours 2
    done
    run share-0.8-mem0 --batch-mem 0 --borrow-fit 0.5 --hours 2
    run share-0.8-cap --owner-share 0.8 --hours 2 --batch-gpu share
    run share-0.8-light-cap --owner-share 0.8 --batch-mem 0.25 --borrow-fit 0.5 --hours 2 \
        --batch-gpu share
    run owner-mem-share --owner-mem share --hours 2
    cp "$OUT/default-seed42/reuse.svg" "$OUT/reuse.svg"
    cp "$OUT/share-0.8-light/reuse.svg" "$OUT/reuse-light.svg"
fi

# The tables, from the runs' CSV files.
pct() { awk -v x="$1" 'BEGIN { printf "%.1f%%", 100 * x }'; }
row() { # csv file, mode -> the line
    awk -F, -v m="$2" '$1 == m' "$1"
}
{
    echo "# The reuse replay (issue 16): bench/reuse.sh, $(date -u +%Y-%m-%d)"
    echo
    echo "## Default run on held-out seeds (trace's second half, GenAI report half, 4 h after 1 h warm-up)"
    echo
    echo "| seed | policy | GPU busy | owners | batch (borrowed) | owners reserve | batch done | JCT p50 | evictions/h (counts in the window: memory, reclaim, owner) | owners' p99 slowdown | refused |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for d in default-seed42 default-seed43 default-seed44 tune; do
        for m in whole flexpu reuse; do
            IFS=, read -r _ _ seed busy own batch bor _ res _ done p50 _ em er eo eh p99 _ ref _ _ \
                <<<"$(row "$OUT/$d/reuse.csv" $m)"
            label=$seed
            [ "$d" = tune ] && label="$seed (tune halves)"
            echo "| $label | $m | $(pct "$busy") | $(pct "$own") | $(pct "$batch") ($(pct "$bor")) | $(pct "$res") | $done | $p50 s | $eh ($em, $er, $eo) | ${p99}x | $ref |"
        done
    done
    echo
    echo "## Sweep: owners' share of GPU compute, and the batch jobs' needs (2 h windows, seed 42)"
    echo
    echo "| owners' share (reached) | batch jobs | whole-GPU | flexpu, no reuse | flexpu + reuse (borrowed) | reuse / no reuse | lost | evictions/h | owners' p99 slowdown | refused |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for d in share-0.5 share-0.5-light share-0.7 share-0.7-light share-0.8 share-0.8-light \
        share-0.8-mem0 share-0.9 share-0.9-light owner-mem-share share-0.8-cap \
        share-0.8-light-cap; do
        IFS=, read -r _ share _ wbusy _ <<<"$(row "$OUT/$d/reuse.csv" whole)"
        IFS=, read -r _ _ _ fbusy _ <<<"$(row "$OUT/$d/reuse.csv" flexpu)"
        IFS=, read -r _ _ _ rbusy _ _ rbor rlost rres _ _ _ _ _ _ _ reh rp99 _ rref _ _ \
            <<<"$(row "$OUT/$d/reuse.csv" reuse)"
        case $d in
        *-light-cap) mem="memory 0.25, fit 0.5; held to their share (--batch-gpu share)" ;;
        *-cap) mem="default; held to their share (--batch-gpu share)" ;;
        *-light) mem="memory 0.25, fit 0.5" ;;
        *-mem0) mem="no GPU memory, fit 0.5" ;;
        owner-mem-share) mem="default; owners reserve their share of memory" ;;
        *) mem=default ;;
        esac
        ratio=$(awk -v a="$rbusy" -v b="$fbusy" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')
        echo "| $share ($(pct "$rres")) | $mem | $(pct "$wbusy") | $(pct "$fbusy") | $(pct "$rbusy") ($(pct "$rbor")) | $ratio | $(pct "$rlost") | $reh | ${rp99}x | $rref |"
    done
} >"$OUT/summary.md"
echo "wrote $OUT/summary.md"
