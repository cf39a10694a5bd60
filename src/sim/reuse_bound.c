/* SPDX-License-Identifier: Apache-2.0 */
/* The reuse replay's upper bound on GPU busy share (sim/reuse_bound.h). */
#include "sim/reuse_bound.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

#define EPS 1e-6 /* the replay's own slack on GPU memory (reuse.c: GPU_MEM + 1e-6) */

static int by_gmem(const void *pa, const void *pb)
{
    const struct fx_rbound_shape *a = pa, *b = pb;
    return a->gmem < b->gmem ? -1 : a->gmem > b->gmem;
}

int fx_rbound_table_init(struct fx_rbound_table *t, const struct fx_rbound_shape *shapes, int n)
{
    t->n = 0;
    t->s = fx_malloc(((size_t)n + 1) * sizeof(*t->s));
    if (!t->s)
        return -1;
    if (n > 0)
        memcpy(t->s, shapes, (size_t)n * sizeof(*t->s));
    qsort(t->s, (size_t)n, sizeof(*t->s), by_gmem);
    for (int k = 1; k < n; k++) {
        t->s[k].cpu = fmin(t->s[k].cpu, t->s[k - 1].cpu);
        t->s[k].mem = fmin(t->s[k].mem, t->s[k - 1].mem);
    }
    t->n = n;
    return 0;
}

void fx_rbound_table_free(struct fx_rbound_table *t)
{
    fx_free(t->s);
    t->s = NULL;
    t->n = 0;
}

bool fx_rbound_cheapest(const struct fx_rbound_table *t, double room, double *cpu, double *mem)
{
    /* The last entry whose gmem fits: binary search on the sorted needs. */
    int lo = 0, hi = t->n; /* entries [0, lo) fit, [hi, n) do not */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (t->s[mid].gmem <= room + EPS)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return false;
    *cpu = t->s[lo - 1].cpu;
    *mem = t->s[lo - 1].mem;
    return true;
}

/* The fractional knapsack on one weight (w[i] of g[i]) and capacity cap:
 * the items by value per weight, the last one cut. An upper bound on the
 * integral answer with that constraint alone, so on the two-constraint
 * one. */
static double fractional(const struct fx_rbound_gpu *g, const int *idx, int n, bool by_cpu,
                         double cap)
{
    int order[256];
    for (int i = 0; i < n; i++) { /* insertion sort by value per weight, best first */
        int k = i;
        double wi = by_cpu ? g[idx[i]].cpu : g[idx[i]].mem;
        double ri = wi > 0 ? g[idx[i]].value / wi : INFINITY;
        while (k > 0) {
            const struct fx_rbound_gpu *p = &g[order[k - 1]];
            double wp = by_cpu ? p->cpu : p->mem, rp = wp > 0 ? p->value / wp : INFINITY;
            if (rp >= ri)
                break;
            order[k] = order[k - 1];
            k--;
        }
        order[k] = idx[i];
    }
    double v = 0, left = cap;
    for (int i = 0; i < n; i++) {
        const struct fx_rbound_gpu *p = &g[order[i]];
        double w = by_cpu ? p->cpu : p->mem;
        if (w <= left + EPS) {
            v += p->value;
            left -= w;
        } else {
            v += p->value * (left > 0 ? left / w : 0);
            break;
        }
    }
    return v;
}

double fx_rbound_node(const struct fx_rbound_gpu *g, int n, double free_cpu, double free_mem)
{
    /* Only GPUs that carry something and whose job fits the node alone. */
    int idx[256], m = 0;
    double all = 0, cpu = 0, mem = 0;
    for (int i = 0; i < n; i++) {
        if (!(g[i].value > 0) || g[i].cpu > free_cpu + EPS || g[i].mem > free_mem + EPS)
            continue;
        all += g[i].value;
        cpu += g[i].cpu;
        mem += g[i].mem;
        if (m < 256)
            idx[m++] = i;
    }
    if (m < n && m == 256) /* more GPUs than we sort: the sum is still an upper bound */
        return all;
    if (cpu <= free_cpu + EPS && mem <= free_mem + EPS)
        return all;
    if (m > 16)
        return fmin(fractional(g, idx, m, true, free_cpu), fractional(g, idx, m, false, free_mem));
    /* Every subset, in Gray-code order: one GPU in or out per step. */
    double best = 0, v = 0;
    cpu = mem = 0;
    unsigned in = 0;
    for (unsigned k = 1; k < 1u << m; k++) {
        int b = __builtin_ctz(k);
        double sign = in & 1u << b ? -1 : 1;
        in ^= 1u << b;
        const struct fx_rbound_gpu *p = &g[idx[b]];
        v += sign * p->value;
        cpu += sign * p->cpu;
        mem += sign * p->mem;
        if (v > best && cpu <= free_cpu + EPS && mem <= free_mem + EPS)
            best = v;
    }
    return best;
}
