/* SPDX-License-Identifier: Apache-2.0 */
/* An upper bound on the GPU demand that ANY placement could carry.
 *
 * Given the requests that have arrived and a cluster's GPUs by model, no
 * policy, online or offline, can place more GPU demand than the optimum of
 * the configuration LP of bin packing (Gilmore and Gomory, 1961), taken per
 * GPU model: a configuration is a multiset of requests that one GPU can hold
 * (shares summing to at most 1000 milli, or one whole GPU), x_{m,c} how many
 * GPUs of model m use configuration c (of requests that accept m), f_{k,m}
 * how many requests of class k (a size and the models it accepts) go to
 * model m, and
 *
 *   maximise  sum volume(c) x_{m,c}
 *   subject to  sum_c x_{m,c} <= gpus_m for every model m,
 *               sum_c count_s(c) x_{m,c} <= sum_{k of size s} f_{k,m} for
 *               every model m and request size s,
 *               sum_m f_{k,m} <= arrived_k for every class k,  x, f >= 0.
 *
 * It is a relaxation, so a true bound: any placement gives each GPU the
 * configuration of the requests it holds, all of which accept its model, and
 * sends each request to its GPU's model; that is a feasible x and f of the
 * same worth. It ignores CPU, memory, node boundaries (an 8-GPU request
 * counts as eight whole GPUs of its model anywhere), arrival order, and
 * integrality. Its value tells how far a policy is from what is possible at
 * all. Solved with lp_solve. */
#ifndef FX_SIM_BOUND_H
#define FX_SIM_BOUND_H

#include <stdint.h>

#include "flexpu/error.h"

struct fx_bound_item {
    int milli;       /* per-GPU share, 1..1000 (1000: a whole GPU) */
    int64_t count;   /* GPUs' worth of items of this size (an 8-GPU pod adds 8 of 1000) */
    uint64_t models; /* models it accepts: bit i is gpus[i]; 0: any model */
};

/* The most GPU milli that n items can fill on gpus[i] GPUs of each model i
 * < nmodels (at most 64). Items may repeat sizes and models (they are
 * merged); an item accepting only models without GPUs is left out. Models
 * that every item accepts alike are one pool of GPUs, which changes nothing
 * (a solution for the pool splits across its models in proportion to their
 * GPUs); with no item naming models, this is the classic configuration LP
 * on all GPUs. When the configurations of all pools together would exceed
 * max_configs (0: 200,000), sizes are rounded down to a coarser grid for
 * the capacity check while each keeps its largest volume in the objective,
 * which only loosens the bound. *grid receives the grid used (1: exact).
 * FLEXPU_EINVAL for a size outside 1..1000, a negative count, a negative
 * GPU count, or an item naming a model at or past nmodels. */
int fx_bound_packable(const struct fx_bound_item *items, int n, const int64_t *gpus, int nmodels,
                      int max_configs, double *milli, int *grid, struct flexpu_error *err);

/* The same LP solved again and again for fewer items, from the last
 * optimal basis (a replay takes the pods of each percent back out, 130
 * times): built for the most items that will be asked, as
 * fx_bound_packable takes them; each solve gives the items' counts, at most
 * those it was built for, in the same order. A configuration holding more
 * of a size than a pool may now take is switched off, so each solve is
 * fx_bound_packable's LP on its counts, on the grid chosen for the most. */
struct fx_bound_lp;
int fx_bound_lp_new(const struct fx_bound_item *items, int n, const int64_t *gpus, int nmodels,
                    int max_configs, struct fx_bound_lp **out, int *grid,
                    struct flexpu_error *err);
/* FLEXPU_EINVAL when n or a count is not what the LP was built for. */
int fx_bound_lp_solve(struct fx_bound_lp *b, const struct fx_bound_item *items, int n,
                      double *milli, struct flexpu_error *err);
void fx_bound_lp_free(struct fx_bound_lp *b);

#endif
