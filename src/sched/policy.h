/* SPDX-License-Identifier: Apache-2.0 */
/* Placement policies. Each one scores placing a request on one node (given
 * as a view of its free resources) and picks the GPUs there; place.c keeps
 * the lowest cost over all nodes and breaks ties by the policy's tie rule. */
#ifndef FX_SCHED_POLICY_H
#define FX_SCHED_POLICY_H

#include "sched/engine.h"

struct fx_choice {
    struct flexpu_placement p; /* node is filled in by the caller */
    double cost;               /* lower is better */
    /* For a policy with a rescore hook: the part of the cost that depends
     * only on the node's state and the request (what the per-class cache
     * keeps), and the GPUs the choice takes (bit g: GPU g of the node). */
    double raw;
    uint32_t gpus;
};

struct fx_eval_ctx {
    const struct flexpu_engine *e;
    const struct fx_class *cls; /* the node's class: cached fragmentation */
    struct flexpu_rng *rng;     /* may be NULL: deterministic choices */
};

struct fx_policy {
    const char *name;
    const char *help;
    int round_whole; /* shares are rounded up to whole GPUs */
    /* eval is costly and depends only on the node's state and the request
     * (no random draw): its cost may be cached per class. */
    int memo;
    /* A policy whose cost reads the model sets' prices (change 10): they are
     * refreshed before each decision, the cache keeps eval's raw part, and
     * rescore makes the cost from it at the prices of the moment. NULL:
     * the cache keeps eval's cost. */
    double (*rescore)(const struct fx_eval_ctx *ctx, const struct fx_view *v,
                      const struct flexpu_pod_req *r, double raw, uint32_t gpus);
    /* Rules beyond the cost (sched/ties.h): how ties between nodes are
     * broken (enum fx_ties, never FX_TIES_POLICY), and the typical pods'
     * coverage and order among shapes of equal count. */
    int ties;
    double coverage;
    int typical;
    /* Fills out for req on the node seen as v, which already passed the
     * feasibility checks (enough GPUs fit). Returns 0 if the policy finds
     * no GPU choice, 1 otherwise. */
    int (*eval)(const struct fx_eval_ctx *ctx, const struct fx_view *v,
                const struct flexpu_pod_req *r, struct fx_choice *out);
};

const struct fx_policy *fx_policy_find(const char *name);

#endif
