/* SPDX-License-Identifier: Apache-2.0 */
/* Compute sharing between the tenants of one GPU: GPU-time slices handed
 * from tenant to tenant through the shared state (docs/RUNTIME.md).
 *
 * Only the tenant holding the slice may launch. At the end of its slice its
 * launches wait, its in-flight work (bounded, see hooks_launch.c) drains,
 * and only then does the slice pass on, so the GPU time between two
 * hand-overs is the holder's alone: accuracy comes from construction, not
 * from sampling utilization. */
#ifndef FX_RUNTIME_ARBITER_H
#define FX_RUNTIME_ARBITER_H

#include <stdint.h>

#include "runtime/state.h"
#include "util/clock.h"

/* Tunables, in nanoseconds. */
#define FX_ARB_SLICE_NS (10 * 1000 * 1000ull)   /* one slice */
#define FX_ARB_IDLE_NS (2 * 1000 * 1000ull)     /* no launch for this long = idle */
#define FX_ARB_DRAIN_MAX_NS (200 * 1000 * 1000ull) /* a holder that cannot drain */
#define FX_ARB_BURST_NS (20 * 1000 * 1000ull)   /* most a capped tenant can save up */
/* A capped tenant waits until it has saved a whole slice: short slices
 * would each pay the hand-over's fixed cost, which the cap would then
 * count as GPU time. */
#define FX_ARB_CAP_QUANTUM_NS FX_ARB_SLICE_NS

/* 1 when this tenant may launch without arbitration: it is not capped and
 * no other tenant has launched recently. Lock-free; called per launch. */
int fx_arb_fast_path(struct fx_gpu *g, int capped);

/* Blocks until this process's tenant holds the GPU (or `now` shows its
 * slice is still running). Returns the nanoseconds it waited. The launch
 * counts as in flight until fx_arb_launch_done. */
uint64_t fx_arb_acquire(struct fx_gpu *g);

/* Records a launch (for idleness). */
void fx_arb_launched(struct fx_gpu *g, uint64_t now);
/* Ends what fx_arb_acquire began: the launch is marked (or failed). */
void fx_arb_launch_done(struct fx_gpu *g);

/* Publishes how much of this process's work is in flight; when it reaches
 * zero and the tenant's slice is over, passes the slice on. */
void fx_arb_set_inflight(struct fx_gpu *g, uint32_t inflight);

/* The process's in-flight count is being looked after (the monitor calls
 * it on every poll): without it, counts older than the staleness limit are
 * taken for a stopped process's and ignored. */
void fx_arb_heartbeat(struct fx_gpu *g, uint64_t now);

/* 1 when another tenant has claimed the GPU or somebody holds it. */
int fx_arb_contended(struct fx_gpu *g);

/* Under the GPU lock: decides whether the slice should pass on now, and to
 * whom; does it. Exposed for tests and for the waiting loops. */
void fx_arb_step_locked(struct fx_gpu *g, uint64_t now);

#endif
