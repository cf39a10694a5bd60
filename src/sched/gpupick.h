/* SPDX-License-Identifier: Apache-2.0 */
/* Choosing GPUs within one node, shared by the policies. */
#ifndef FX_SCHED_GPUPICK_H
#define FX_SCHED_GPUPICK_H

#include "sched/engine.h"

/* Each returns 1 and fills p->ngpu/gpu/milli/gpu_mem_mib, or 0 if the
 * request does not fit on v. */

/* The num_gpu GPUs with the least free compute that still fit (lowest index
 * first among equals): best fit. */
int fx_pick_tightest(const struct fx_view *v, const struct flexpu_pod_req *r,
                     struct flexpu_placement *p);

/* For whole-GPU requests: fully free GPUs, from one topology group when one
 * group can hold them all (the group with the fewest free GPUs that can, so
 * big islands stay whole), else from the groups with most free GPUs first.
 * Shares fall back to fx_pick_tightest. */
int fx_pick_topology(const struct fx_view *v, const struct flexpu_pod_req *r,
                     struct flexpu_placement *p);

/* num_gpu fitting GPUs drawn at random. */
int fx_pick_random(const struct fx_view *v, const struct flexpu_pod_req *r,
                   struct flexpu_rng *rng, struct flexpu_placement *p);

/* Fills the share fields of p for GPU list gpus[0..k). */
void fx_pick_fill(const struct flexpu_pod_req *r, const int *gpus, int k,
                  struct flexpu_placement *p);

#endif
