/* SPDX-License-Identifier: Apache-2.0 */
/* Queues: how the cluster is shared between teams. Pure (no I/O, no clock),
 * like the placement engine, and used by the simulator and the scheduler.
 *
 * A queue has a parent (or none: a top-level queue), and per resource a
 * guaranteed quota (what it deserves whenever it has demand for it), a
 * limit (what it and its descendants may never exceed together) and an
 * over-quota weight (how what is left after every guarantee is divided).
 * The queues track what their pods hold (allocated) and ask for (pending);
 * from these and the cluster's capacity they compute each queue's fair
 * share, which orders whom to serve next and which pods may be reclaimed.
 * docs/QUEUES.md gives the algorithm and its references.
 *
 * Units are the engine's: GPU devices (a share counts as one), GPU compute
 * in milli-GPUs (1000 = one whole GPU; flexpu.io/gpu-cores 100 = 1000),
 * GPU memory in MiB, CPU in milli-cores, memory in MiB. */
#ifndef FLEXPU_QUEUE_H
#define FLEXPU_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "flexpu/error.h"

enum flexpu_res {
    FLEXPU_RES_GPU = 0,   /* flexpu.io/gpu: devices */
    FLEXPU_RES_GPU_MILLI, /* flexpu.io/gpu-cores × 10 */
    FLEXPU_RES_GPU_MEM,   /* flexpu.io/gpu-memory, MiB */
    FLEXPU_RES_CPU,       /* cpu, milli-cores */
    FLEXPU_RES_MEM,       /* memory, MiB */
    FLEXPU_RES_COUNT_
};

/* No limit on a resource. */
#define FLEXPU_QUEUE_UNLIMITED (-1)

/* The queue pods without a queue label join; it always exists (guarantee 0,
 * no limit, weight 1) and may be configured like any other. */
#define FLEXPU_QUEUE_DEFAULT "default"

struct flexpu_queue_info {
    const char *name;   /* required; copied */
    const char *parent; /* NULL or "": top level; copied */
    int64_t guaranteed[FLEXPU_RES_COUNT_]; /* >= 0 */
    int64_t limit[FLEXPU_RES_COUNT_];      /* >= guaranteed, or FLEXPU_QUEUE_UNLIMITED */
    double weight;                         /* over-quota weight, >= 0 (0: never more than
                                            * the guarantee while others want it) */
};

/* A queue as it stands after the last flexpu_queues_compute. Totals include
 * the queue's descendants. */
struct flexpu_queue_status {
    const char *name, *parent;
    int depth; /* 0 for top-level queues */
    int64_t guaranteed[FLEXPU_RES_COUNT_];
    int64_t limit[FLEXPU_RES_COUNT_];
    double weight;
    int64_t allocated[FLEXPU_RES_COUNT_];
    int64_t pending[FLEXPU_RES_COUNT_];
    int64_t fair_share[FLEXPU_RES_COUNT_];
    bool orphan; /* names a parent that does not exist: treated as top level */
    bool removed; /* removed while its pods still held or waited for something: it
                   * keeps its place in the tree with guarantee 0, weight 0 and no
                   * limit until they are released, and no name lookup finds it */
};

struct flexpu_queues;

/* A set with only the default queue. NULL when out of memory. */
struct flexpu_queues *flexpu_queues_new(void);
void flexpu_queues_free(struct flexpu_queues *q);

/* Adds or updates (by name) a queue; *id (may be NULL) receives its id,
 * stable while the queue exists. FLEXPU_EINVAL naming the field and value
 * for a negative quota, a limit below the guarantee, a negative or non-finite
 * weight, an empty name or a parent that would make a cycle; the set is then
 * unchanged. A parent not defined yet is allowed (the queue is an orphan
 * until it is). */
int flexpu_queues_set(struct flexpu_queues *q, const struct flexpu_queue_info *info, int *id,
                      struct flexpu_error *err);

/* Removes a queue. Its children become orphans; what its pods hold stays
 * charged to it until released (it is then gone for good). The default
 * queue cannot be removed (it is reset to its defaults instead). */
int flexpu_queues_remove(struct flexpu_queues *q, const char *name, struct flexpu_error *err);

/* The id of a queue, or -1. */
int flexpu_queues_find(const struct flexpu_queues *q, const char *name);
int flexpu_queues_count(const struct flexpu_queues *q); /* ids are 0..count-1, some unused */
bool flexpu_queues_get(const struct flexpu_queues *q, int id, struct flexpu_queue_status *out);

/* Accounting: what a queue's pods hold (allocated) and wait for (pending).
 * sign is +1 to add, -1 to take away; amounts never go below zero. */
void flexpu_queues_allocated(struct flexpu_queues *q, int id, const int64_t amount[FLEXPU_RES_COUNT_],
                             int sign);
void flexpu_queues_pending(struct flexpu_queues *q, int id, const int64_t amount[FLEXPU_RES_COUNT_],
                           int sign);

/* Recomputes every fair share for a cluster of this capacity. */
void flexpu_queues_compute(struct flexpu_queues *q, const int64_t capacity[FLEXPU_RES_COUNT_]);

/* Whether `amount` more fits under the limits of queue id and of each of its
 * ancestors; when not, why (if not NULL, up to len bytes) names the queue,
 * the resource, its limit and what it would hold. */
bool flexpu_queues_within_limit(const struct flexpu_queues *q, int id,
                                const int64_t amount[FLEXPU_RES_COUNT_], char *why, int len);

/* How far above its fair share a queue is: the largest, over resources, of
 * allocated / fair share, where holding a resource it has no fair share of
 * at all counts as infinitely over (hierarchically: the ordering between
 * siblings). Lower is served first. */
double flexpu_queues_usage(const struct flexpu_queues *q, int id);

/* The serving order between two queues: at their nearest common ancestor,
 * the side with the lower usage first (a queue's own pods, next to its
 * children, count against the part of its fair share they were given);
 * ties by name, then id. <0: a is served first, >0: b, 0: a == b. */
int flexpu_queues_compare(const struct flexpu_queues *q, int a, int b);

/* Whether a pod of queue `taker` asking `amount` may take back capacity
 * held by a pod of queue `victim` holding `victim_amount`: below the two
 * queues' nearest common ancestor, the taker's side stays at or under its
 * fair share with the amount added (in every resource it asks for), and the
 * victim's side stays at or above its fair share with the victim's taken
 * away (in every resource the victim holds that the taker asks for: a
 * victim that frees nothing the taker asks for is refused). Never within
 * one queue (priority decides there). */
bool flexpu_queues_may_reclaim(const struct flexpu_queues *q, int taker,
                               const int64_t amount[FLEXPU_RES_COUNT_], int victim,
                               const int64_t victim_amount[FLEXPU_RES_COUNT_]);

/* Resource names as users write them ("flexpu.io/gpu", "cpu", ...), and
 * the reverse (-1 for unknown). */
const char *flexpu_res_name(enum flexpu_res r);
int flexpu_res_from_name(const char *name);

#endif
