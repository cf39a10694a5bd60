/* SPDX-License-Identifier: Apache-2.0 */
/* The timed replay with queues (docs/QUEUES.md, "Simulator").
 *
 * Pods arrive at their trace creation time divided by `rate`, run for the
 * time they ran in the trace (deletion_time - scheduled_time, else
 * deletion_time - creation_time; a pod with neither runs the median of the
 * others) and depart. Each pod joins a queue by its QoS class; whenever
 * something arrives or departs, the queues' fair shares are recomputed
 * (flexpu_queues_compute over the cluster's GPUs, GPU compute, CPU and
 * memory) and the queues are served lowest usage first
 * (flexpu_queues_compare), each in its own order (priority, then arrival),
 * within its limits. Gangs (FX_QSIM_GANGS_*) start whole through
 * flexpu_engine_place_gang or wait. A queue whose next pod or gang fits
 * nowhere may preempt: lower-priority pods of its own queue, and (reclaim,
 * as the mode allows) running pods of queues that flexpu_queues_may_reclaim
 * allows; the engine's victim search picks them (fewest victims, a gang
 * counting once, then the least GPU work lost), and they go back to
 * pending with their work lost (they run their whole time again).
 *
 * Without queues (the baseline) every pod joins one queue in arrival
 * order and nothing is preempted: the same FIFO-with-skips replay as
 * fx_replay_timed, with the same gangs. */
#ifndef FX_SIM_TIMED_H
#define FX_SIM_TIMED_H

#include <stdio.h>

#include "flexpu/queue.h"
#include "sim/trace.h"

#define FX_QSIM_MAX_QUEUES 8
#define FX_QSIM_POINTS     200

/* Which running pods of another queue reclaim may evict, as
 * flexpu-scheduler's --reclaim (src/scheduler/model.h, enum fx_reclaim):
 * any, only those whose priority is not above the pod making room, or
 * none. Priority preemption inside a queue is not affected. */
enum fx_qsim_reclaim {
    FX_QSIM_RECLAIM_ANY = 0,
    FX_QSIM_RECLAIM_NOT_HIGHER,
    FX_QSIM_RECLAIM_NEVER,
};
/* "any", "not-higher-priority", "never"; FLEXPU_EINVAL names the value. */
int fx_qsim_reclaim_parse(const char *s, enum fx_qsim_reclaim *mode, struct flexpu_error *err);
const char *fx_qsim_reclaim_name(enum fx_qsim_reclaim mode);

/* Gangs of the trace (docs/QUEUES.md, "Simulator"): the trace has no gang
 * field. auto: GPU pods created in the same second with the same shape and
 * QoS class form one gang of them all; none: no gangs; N >= 2: each run of
 * N pods of one shape and QoS class, in arrival order, is a gang. */
#define FX_QSIM_GANGS_AUTO 0
#define FX_QSIM_GANGS_NONE (-1)
#define FX_QSIM_GANG_MAX   64
/* "auto", "none" or a size 2..64 into *gangs; FLEXPU_EINVAL names the value. */
int fx_qsim_gangs_parse(const char *s, int *gangs, struct flexpu_error *err);

/* The queues of a run: by QoS class, each queue's index in the set. */
struct fx_qsim_config {
    int nqueues; /* 0: no queues (one queue, no reclaim: the baseline) */
    struct {
        char name[FLEXPU_NAME_MAX];
        double guarantee; /* share of every resource's capacity, 0..1 */
        double limit;     /* share of capacity, 0..1; < 0: no limit */
        double weight;
    } q[FX_QSIM_MAX_QUEUES];
    int by_qos[5]; /* enum flexpu_qos -> index into q */
    bool by_copy;  /* "teams": copy k of the trace to queue k mod nqueues, whatever its class */
    enum fx_qsim_reclaim reclaim; /* 0: any */
    int gangs;                    /* FX_QSIM_GANGS_AUTO (0), _NONE or a size */
    int copies; /* each trace pod arrives this many times (0 or 1: once): the whole trace
                 * asks 98% of its cluster's GPUs, so no speed-up alone contends it */
};

/* "serving=50:1,batch=30:1,default=20:1" (NAME=GUARANTEE%[:WEIGHT[:LIMIT%]]),
 * or "qos" for that default, or "teams" (four queues of 25%, copy k of the
 * trace, every class of it, in team k mod 4: priorities then differ inside
 * each queue), into c (QoS mapping as docs/QUEUES.md says:
 * LS and Guaranteed to serving, BE to batch, Burstable and none to
 * default; a mapping whose queue is not listed goes to the last queue).
 * FLEXPU_EINVAL names the part and the value. */
int fx_qsim_parse(const char *spec, struct fx_qsim_config *c, struct flexpu_error *err);

struct fx_qsim_queue {
    char name[FLEXPU_NAME_MAX];
    int pods, started, never_started, evicted;
    int preempted, reclaimed; /* victims (a gang once) by priority, by reclaim */
    double wait_p50, wait_p99; /* seconds from arrival to first start */
    double share_mean, fair_mean; /* time-weighted GPU compute share of the cluster over the
                                   * arrival window */
    double dev_mean;              /* time-weighted |share - fair share|, contended time only */
    double t[FX_QSIM_POINTS], share[FX_QSIM_POINTS], fair[FX_QSIM_POINTS];
};

struct fx_qsim_result {
    const char *policy;
    double rate;
    int nqueues, pods, evictions, npoints;
    double window_s;    /* 10th to 90th percentile arrival (sped up) */
    double contended_s; /* time in the window with GPU pods waiting */
    double alloc_mean;  /* time-weighted GPU compute allocation ratio over the window */
    double wait_p50, wait_p99;
    double evictions_per_hour; /* per hour of the sped-up window */
    /* Victims (a gang counts once): of a higher-priority pod of their own
     * queue (priority), of a pod of a queue under its fair share (reclaim);
     * per hour of the sped-up window and per hour of trace time (the
     * window times the rate). */
    int preemptions, reclaims;
    double preemptions_per_hour, reclaims_per_hour;
    double preemptions_per_trace_hour, reclaims_per_trace_hour;
    /* Gangs: how many, their pods, how many started (at least once), from
     * the arrival of the last member to the start of all of them (p50,
     * p99, seconds), and the serving steps that ended with a gang running
     * in part (must be 0). */
    int gangs, gang_pods, gangs_started, gangs_partial;
    double gang_wait_p50, gang_wait_p99;
    double seconds;            /* wall time of the run */
    struct fx_qsim_queue q[FX_QSIM_MAX_QUEUES];
};

int fx_qsim_run(const struct fx_trace *t, const char *policy, double coverage, double rate,
                const struct fx_qsim_config *c, struct fx_qsim_result *out,
                struct flexpu_error *err);

/* The table: per queue, and the run against the baseline without queues. */
void fx_qsim_report(FILE *f, const struct fx_qsim_result *with, const struct fx_qsim_result *base,
                    const char *trace);
/* queues.csv: policy, queue, time, GPU share and fair share of the cluster. */
int fx_qsim_csv(const char *path, const struct fx_qsim_result *r, struct flexpu_error *err);

#endif
