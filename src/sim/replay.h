/* SPDX-License-Identifier: Apache-2.0 */
/* Trace replays.
 *
 * Arrival replay (the FGD paper's method): the trace's pods, shuffled with a
 * seed, followed by pods drawn from the trace with replacement, arrive one at
 * a time until their GPU request would pass `scale` times the cluster's GPU
 * capacity; nothing departs; a pod that fits nowhere stays unscheduled. The
 * seed also seeds the node priorities of the tie rule that uses them.
 *
 * Timed replay: pods arrive at their creation time divided by `rate` (1: real
 * time; the trace averages 14 busy GPUs over its 149 days, so a useful load
 * needs a rate of a few hundred) and leave after the time they ran in the
 * trace; a pod that does not fit waits in a FIFO queue that
 * is retried whenever capacity frees. */
#ifndef FX_SIM_REPLAY_H
#define FX_SIM_REPLAY_H

#include <stdint.h>

#include "sim/trace.h"

#define FX_CURVE_POINTS 131 /* arrived demand 0..130 % */
#define FX_TIME_POINTS  200

struct fx_replay_opts {
    double scale;    /* arrived GPU demand to stop at, 1.3 */
    double coverage; /* typical-pod popularity coverage; 0: the policy's own */
    uint64_t seed;
    int max_pods;    /* stop after this many arrivals; 0: no limit */
    int ties;        /* enum fx_ties (sched/ties.h); 0: the policy's own rule */
};

struct fx_replay_result {
    const char *policy;
    uint64_t seed;
    int pods_arrived, pods_placed;
    int64_t total_milli;
    int64_t demand_arrived_milli; /* requested GPU milli of arrived pods */
    int64_t demand_placed_milli;  /* requested GPU milli of placed pods */
    int64_t alloc_milli;          /* GPU milli held at the end ("whole" holds whole GPUs) */
    double alloc[FX_CURVE_POINTS]; /* allocated / capacity at arrived demand x % */
    double frag[FX_CURVE_POINTS];  /* fragmentation / capacity at x % */
    int failed[FLEXPU_REJECT_COUNT_]; /* failed pods by the most common node reason */
    int failed_multi_gpu;
    double seconds;
    int classes_max;
};

/* The pseudo-policy whose "allocation" is the packing LP's bound
 * (sim/bound.h) on the pods arrived so far: what no policy can beat. Its
 * result has pods_placed -1 and no fragmentation. */
#define FX_BOUND_POLICY "bound"

int fx_replay_arrivals(const struct fx_trace *t, const char *policy,
                       const struct fx_replay_opts *o, struct fx_replay_result *out,
                       struct flexpu_error *err);

struct fx_timed_result {
    const char *policy;
    int pods, placed_on_arrival, placed_later, never_placed;
    double pending_mean, pending_p50, pending_p99, pending_max; /* seconds, of placed pods */
    double alloc_mean;                  /* time-weighted allocation ratio */
    double alloc_peak;                  /* highest allocation ratio reached */
    double t[FX_TIME_POINTS], alloc[FX_TIME_POINTS];
    int npoints;
    double seconds;
};

/* The timed replay's node priorities (when its tie rule uses them) come
 * from seed 42, like its random draws. */
int fx_replay_timed(const struct fx_trace *t, const char *policy, double coverage, double rate,
                    struct fx_timed_result *out, struct flexpu_error *err);

#endif
