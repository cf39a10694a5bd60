/* SPDX-License-Identifier: Apache-2.0 */
/* Fragmentation as defined by FGD (Weng et al., USENIX ATC'23, section 4).
 *
 * For a typical request shape m that fits on the node, its fragment is the
 * idle compute of the GPUs that cannot hold m (free share below m's share,
 * GPU memory too small, or model not allowed). If m cannot fit on the node
 * at all (CPU, memory, model, or not enough GPUs with room), every idle
 * GPU milli of the node is fragment. The node's fragmentation is the sum of
 * the fragments weighted by each shape's popularity. */
#include "sched/engine.h"

double fx_frag_weighted(const struct fx_workload *w, const struct fx_view *v, int demand_weighted)
{
    int64_t total = fx_view_idle(v);
    if (total == 0 || w->nshapes == 0)
        return 0.0;
    double f = 0.0;
    uint64_t models = 0; /* the node's GPU models */
    for (int g = 0; g < v->ngpu; g++)
        models |= 1ULL << v->model[g];
    for (int gi = 0; gi < w->ngroups; gi++) {
        const struct fx_shape_group *grp = &w->groups[gi];
        int64_t unusable = 0;
        int fitting = 0;
        int gpu_ok = 1;
        if (grp->num_gpu > 0 && grp->model_mask && !(grp->model_mask & models)) {
            /* None of the node's GPUs is of an accepted model: the
             * group fits nowhere here, every idle milli is fragment. */
            gpu_ok = 0;
        } else if (grp->num_gpu > 0) {
            for (int g = 0; g < v->ngpu; g++) {
                int allowed = !grp->model_mask || (grp->model_mask & (1ULL << v->model[g]));
                if (allowed && v->free[g] >= grp->gpu_milli && v->gmem_free[g] >= grp->gpu_mem_mib)
                    fitting++;
                else
                    unusable += v->free[g];
            }
            gpu_ok = fitting >= grp->num_gpu;
        }
        for (int s = grp->first; s < grp->first + grp->n; s++) {
            const struct fx_shape *sh = &w->shapes[s];
            int fits = gpu_ok && v->cpu_free >= sh->req.cpu_milli && v->mem_free >= sh->req.mem_mib;
            double weight = demand_weighted ? sh->demand_weight : sh->weight;
            f += weight * (double)(fits ? unusable : total);
        }
    }
    return f;
}

double fx_frag(const struct fx_workload *w, const struct fx_view *v)
{
    return fx_frag_weighted(w, v, 0);
}

double fx_frag_cpu_idle(const struct fx_workload *w, const struct fx_view *v)
{
    int64_t total = fx_view_idle(v);
    double f = 0.0;
    for (int gi = 0; gi < w->ngroups && w->groups[gi].num_gpu == 0; gi++) {
        const struct fx_shape_group *grp = &w->groups[gi];
        for (int s = grp->first; s < grp->first + grp->n; s++) {
            const struct fx_shape *sh = &w->shapes[s];
            if (v->cpu_free >= sh->req.cpu_milli && v->mem_free >= sh->req.mem_mib)
                f += sh->weight * (double)total;
        }
    }
    return f;
}
