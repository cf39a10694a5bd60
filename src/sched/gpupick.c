/* SPDX-License-Identifier: Apache-2.0 */
#include "sched/gpupick.h"

void fx_pick_fill(const struct flexpu_pod_req *r, const int *gpus, int k,
                  struct flexpu_placement *p)
{
    p->ngpu = k;
    for (int i = 0; i < k; i++) {
        p->gpu[i] = gpus[i];
        p->milli[i] = r->gpu_milli;
        p->gpu_mem_mib[i] = r->gpu_mem_mib;
    }
}

int fx_pick_tightest(const struct fx_view *v, const struct flexpu_pod_req *r,
                     struct flexpu_placement *p)
{
    int chosen[FLEXPU_MAX_GPUS];
    uint32_t used = 0;
    for (int k = 0; k < r->num_gpu; k++) {
        int best = -1;
        for (int g = 0; g < v->ngpu; g++) {
            if ((used & (1u << g)) || !fx_gpu_fits(v, g, r))
                continue;
            if (best < 0 || v->free[g] < v->free[best])
                best = g;
        }
        if (best < 0)
            return 0;
        used |= 1u << best;
        chosen[k] = best;
    }
    fx_pick_fill(r, chosen, r->num_gpu, p);
    return 1;
}

int fx_pick_topology(const struct fx_view *v, const struct flexpu_pod_req *r,
                     struct flexpu_placement *p)
{
    if (r->gpu_milli < FLEXPU_GPU_MILLI || r->num_gpu <= 1)
        return fx_pick_tightest(v, r, p);
    /* Count fitting GPUs per topology group (groups are small ints; map them
     * to slots on the fly, a node has at most 16 GPUs). */
    int group_of[FLEXPU_MAX_GPUS], ngroups = 0, nfree[FLEXPU_MAX_GPUS] = {0};
    int16_t ids[FLEXPU_MAX_GPUS];
    int total = 0;
    for (int g = 0; g < v->ngpu; g++) {
        group_of[g] = -1;
        if (!fx_gpu_fits(v, g, r))
            continue;
        int s = 0;
        while (s < ngroups && ids[s] != v->topo[g])
            s++;
        if (s == ngroups)
            ids[ngroups++] = v->topo[g];
        group_of[g] = s;
        nfree[s]++;
        total++;
    }
    if (total < r->num_gpu)
        return 0;
    int chosen[FLEXPU_MAX_GPUS], k = 0;
    int best = -1;
    for (int s = 0; s < ngroups; s++)
        if (nfree[s] >= r->num_gpu && (best < 0 || nfree[s] < nfree[best]))
            best = s;
    uint32_t taken_groups = 0;
    while (k < r->num_gpu) {
        int s = best;
        if (s < 0) { /* no single island: largest remaining islands first */
            for (int t = 0; t < ngroups; t++)
                if (!(taken_groups & (1u << t)) && (s < 0 || nfree[t] > nfree[s]))
                    s = t;
        }
        taken_groups |= 1u << s;
        for (int g = 0; g < v->ngpu && k < r->num_gpu; g++)
            if (group_of[g] == s)
                chosen[k++] = g;
        best = -1;
    }
    fx_pick_fill(r, chosen, k, p);
    return 1;
}

int fx_pick_random(const struct fx_view *v, const struct flexpu_pod_req *r,
                   struct flexpu_rng *rng, struct flexpu_placement *p)
{
    int fit[FLEXPU_MAX_GPUS], n = 0;
    for (int g = 0; g < v->ngpu; g++)
        if (fx_gpu_fits(v, g, r))
            fit[n++] = g;
    if (n < r->num_gpu)
        return 0;
    for (int i = 0; i < r->num_gpu; i++) { /* partial Fisher-Yates */
        int j = i + (rng ? (int)flexpu_rng_below(rng, (uint64_t)(n - i)) : 0);
        int t = fit[i];
        fit[i] = fit[j];
        fit[j] = t;
    }
    fx_pick_fill(r, fit, r->num_gpu, p);
    return 1;
}
