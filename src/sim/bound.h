/* SPDX-License-Identifier: Apache-2.0 */
/* An upper bound on the GPU demand that ANY placement could carry.
 *
 * Given the requests that have arrived and a cluster of `gpus` GPUs, no
 * policy, online or offline, can place more GPU demand than the optimum of
 * the configuration LP of bin packing (Gilmore and Gomory, 1961): a
 * configuration is a multiset of requests that one GPU can hold (shares
 * summing to at most 1000 milli, or one whole GPU), x_c how many GPUs use
 * configuration c, and
 *
 *   maximise  sum_c volume(c) x_c
 *   subject to  sum_c x_c <= gpus,  sum_c count_s(c) x_c <= arrived_s for
 *   every request size s,  x_c >= 0.
 *
 * It is a relaxation, so a true bound: it ignores CPU, memory, GPU models,
 * node boundaries (an 8-GPU request counts as eight whole GPUs anywhere),
 * arrival order, and integrality. Its value tells how far a policy is from
 * what is possible at all. Solved with lp_solve. */
#ifndef FX_SIM_BOUND_H
#define FX_SIM_BOUND_H

#include <stdint.h>

#include "flexpu/error.h"

struct fx_bound_item {
    int milli;     /* per-GPU share, 1..1000 (1000: a whole GPU) */
    int64_t count; /* GPUs' worth of items of this size (an 8-GPU pod adds 8 of 1000) */
};

/* The most GPU milli that n item sizes can fill on `gpus` GPUs (items may
 * repeat sizes; they are merged). When the configurations of one GPU would
 * exceed max_configs (0: 200,000), sizes are rounded down to a coarser grid
 * for the capacity check while each keeps its largest volume in the
 * objective, which only loosens the bound. *grid receives the grid used (1:
 * exact). FLEXPU_EINVAL for a size outside 1..1000 or a negative count. */
int fx_bound_packable(const struct fx_bound_item *items, int n, int64_t gpus, int max_configs,
                      double *milli, int *grid, struct flexpu_error *err);

#endif
