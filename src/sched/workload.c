/* SPDX-License-Identifier: Apache-2.0 */
/* The workload that the fragmentation-aware policies defend: typical request
 * shapes with normalised popularity, grouped by their GPU part. */
#include "sched/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

void fx_workload_clear(struct fx_workload *w)
{
    fx_free(w->shapes);
    fx_free(w->groups);
    fx_free(w->ratio);
    fx_free(w->ratio_w);
    fx_free(w->ratio_w_inv);
    fx_free(w->model_share);
    fx_free(w->sets);
    memset(w, 0, sizeof(*w));
}

static int same_group(const struct flexpu_pod_req *a, const struct flexpu_pod_req *b)
{
    return a->num_gpu == b->num_gpu && a->gpu_milli == b->gpu_milli &&
           a->gpu_mem_mib == b->gpu_mem_mib && a->model_mask == b->model_mask;
}

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

static int cmp_shape(const void *pa, const void *pb)
{
    const struct flexpu_pod_req *a = &((const struct fx_shape *)pa)->req;
    const struct flexpu_pod_req *b = &((const struct fx_shape *)pb)->req;
    int c;
    if ((c = cmp_i64(a->num_gpu, b->num_gpu)) || (c = cmp_i64(a->gpu_milli, b->gpu_milli)) ||
        (c = cmp_i64(a->gpu_mem_mib, b->gpu_mem_mib)) ||
        (c = cmp_i64((int64_t)(a->model_mask >> 1), (int64_t)(b->model_mask >> 1))) ||
        (c = cmp_i64((int64_t)(a->model_mask & 1), (int64_t)(b->model_mask & 1))) ||
        (c = cmp_i64(a->cpu_milli, b->cpu_milli)))
        return c;
    return cmp_i64(a->mem_mib, b->mem_mib);
}

/* What a shape weighs when popularity is counted in GPU demand rather than in
 * pods: its GPUs plus half a GPU. The half keeps CPU-only shapes in play (a
 * node whose CPU is gone strands its idle GPUs) and was the best of 0.25,
 * 0.5 and 1 on the default and gpushare40 traces (docs/SCHEDULING.md). */
static double shape_demand(const struct flexpu_pod_req *r)
{
    return (double)r->num_gpu * r->gpu_milli / FLEXPU_GPU_MILLI + 0.5;
}

/* How much harder a shape presses on the GPUs it can use than a shape that
 * can use every GPU: the cluster's GPUs over the GPUs of the models it
 * accepts (1 without a model constraint, or when the cluster has none of
 * its models). gpus[m] holds the live GPUs of model m, all their sum. */
static double model_pressure(uint64_t mask, const double *gpus, double all)
{
    double mine = 0;
    for (int m = 0; m < FLEXPU_MAX_MODELS; m++)
        if ((mask >> m) & 1)
            mine += gpus[m];
    return mask && mine > 0 ? all / mine : 1.0;
}

static int same_set(const struct fx_shape *a, const struct fx_shape *b)
{
    return a->req.model_mask == b->req.model_mask && b->req.num_gpu > 0;
}

/* flexpu's change 5 (docs/SCHEDULING.md): the demand of a shape that names
 * GPU models counts per GPU it can run on, its demand weight times its
 * models' pressure: 100 pods that only T4s can hold (842 of the trace's
 * 6,212 GPUs) weigh like 738 pods that any GPU can hold. That weight is
 * what prices the GPUs a shape cannot use (its fragment there is all their
 * idle compute), so the harder a shape presses on its own models, the more
 * an unconstrained pod gains by going elsewhere. The shapes that accept the
 * same models weigh together at most the whole workload's demand (`plain`,
 * the sum of the demand weights before pressure): at that weight their
 * models are asked as much per GPU as the cluster is, and a set that asks
 * more cannot be given more than all its GPUs, while an unbounded weight
 * (two A10s and 140 pods that want only them: x3,106) would crowd every
 * other shape out of the normalised weights. Unconstrained shapes are left
 * exactly as they were. */
static void apply_pressure(struct fx_shape *sh, int n, const double *gpus, double all,
                           double plain)
{
    for (int i = 0; i < n; i++) {
        if (!sh[i].req.model_mask || sh[i].req.num_gpu == 0)
            continue;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = same_set(&sh[i], &sh[j]);
        if (seen)
            continue; /* its set was weighed with the first shape of the set */
        double p = model_pressure(sh[i].req.model_mask, gpus, all), set = 0;
        for (int j = i; j < n; j++)
            if (same_set(&sh[i], &sh[j]))
                set += sh[j].demand_weight * p;
        double f = set > plain ? p * plain / set : p;
        for (int j = i; j < n; j++)
            if (same_set(&sh[i], &sh[j]))
                sh[j].demand_weight *= f;
    }
}

/* The GPUs of node n whose memory fits r's share when n could hold r
 * alone (its GPU count and, with cpu_mem, its CPU and memory), else 0. */
static int gpus_holding(const struct fx_node *n, const struct flexpu_pod_req *r, int cpu_mem)
{
    if (cpu_mem && (n->cpu_cap < r->cpu_milli || n->mem_cap < r->mem_mib))
        return 0;
    int k = 0;
    for (int g = 0; g < n->ngpu; g++)
        k += n->gmem_cap[g] >= r->gpu_mem_mib;
    return k >= r->num_gpu ? k : 0;
}

/* The GPUs of the live nodes that could hold request r alone (by node
 * type: alive[t] live nodes of type t). */
static double holding_gpus(const struct flexpu_engine *e, const int *alive,
                           const struct flexpu_pod_req *r, int cpu_mem)
{
    double gpus = 0;
    for (int t = 0; t < e->ntypes; t++)
        if (alive[t])
            gpus += (double)gpus_holding(&e->nodes[e->type_rep[t]], r, cpu_mem) * alive[t];
    return gpus;
}

/* Whether GPU shapes a and b can be held by the same node types (CPU and
 * memory considered). */
static int same_holders(const struct flexpu_engine *e, const int *alive,
                        const struct flexpu_pod_req *a, const struct flexpu_pod_req *b)
{
    for (int t = 0; t < e->ntypes; t++) {
        const struct fx_node *n = &e->nodes[e->type_rep[t]];
        if (alive[t] && (gpus_holding(n, a, 1) > 0) != (gpus_holding(n, b, 1) > 0))
            return 0;
    }
    return 1;
}

/* flexpu's change 11 (docs/SCHEDULING.md, "Where multi-GPU pods are many:
 * the nodes only some pods fit"): change 5 counts a shape's demand per GPU
 * of the models it accepts; a node's CPU and memory narrow the GPUs a shape
 * can use as a model does. Of the trace's 4,936 GPUs on nodes of eight, an
 * 8-GPU pod of 120 cores fits only on the 39 G3 nodes (128 cores; 312
 * GPUs): weighed by its demand alone (0.03 of the workload on mgd45) a
 * G3 node was cheap to open for a 1-GPU pod of 24 cores or a 4-GPU pod of
 * 60, which strand less compute there (16 cores per GPU) than on a G2 node
 * (12) under change 7's weight, and of the 120-core
 * pods that arrived by 100%, 12 of 36 failed (fgd: 3). So an
 * unconstrained GPU shape's demand weight is multiplied by the GPUs of the
 * nodes with enough GPUs for it over those of them that also hold its CPU
 * and memory (1 for nearly every shape: a 1-GPU pod of 12 cores misses only
 * the 8-core nodes, x1.004); the shapes held by the same node types weigh
 * together at most the whole workload's demand (`plain`), as change 5's
 * sets do. The GPU count is left out: the multi-GPU shapes' need for nodes
 * with many free GPUs is what FGD's fragment and change 7 already price,
 * and counting it here too (x1.26 for every 8-GPU shape) cost up to 0.09
 * points where CPU is short. Shapes that name models are left to changes 5
 * and 10 (which count what their nodes' CPU and memory can give them):
 * weighing them here too cost 0.11 points where a quarter of the pods
 * want T4s. */
static int apply_capacity(const struct flexpu_engine *e, struct fx_shape *sh, int n, double plain)
{
    int *alive = fx_calloc((size_t)e->ntypes + 1, sizeof(*alive));
    double *factor = fx_calloc((size_t)n + 1, sizeof(*factor));
    if (!alive || !factor) {
        fx_free(alive);
        fx_free(factor);
        return -1;
    }
    for (int i = 0; i < e->nnodes; i++)
        alive[e->nodes[i].type] += e->nodes[i].alive && e->nodes[i].ngpu > 0;
    for (int i = 0; i < n; i++) {
        factor[i] = 1;
        if (sh[i].req.num_gpu == 0 || sh[i].req.model_mask)
            continue;
        double held = holding_gpus(e, alive, &sh[i].req, 1);
        if (held > 0) /* a shape no node holds is every node's fragment already */
            factor[i] = holding_gpus(e, alive, &sh[i].req, 0) / held;
    }
    for (int i = 0; i < n; i++) {
        if (!(factor[i] > 1))
            continue;
        double set = 0;
        for (int j = i; j < n; j++)
            if (factor[j] > 1 && same_holders(e, alive, &sh[i].req, &sh[j].req))
                set += sh[j].demand_weight * factor[j];
        double cut = set > plain ? plain / set : 1;
        for (int j = n - 1; j >= i; j--)
            if (factor[j] > 1 && same_holders(e, alive, &sh[i].req, &sh[j].req)) {
                sh[j].demand_weight *= factor[j] * cut;
                factor[j] = 1; /* weighed */
            }
    }
    fx_free(alive);
    fx_free(factor);
    return 0;
}

/* flexpu's change 7 (docs/SCHEDULING.md, "Where multi-GPU pods are many"):
 * how much a milli of idle compute that the node's CPU can no longer feed
 * (policy.c, stranded) weighs against a milli of fragment. Fragments are
 * weighted by the shapes' demand (normalised to 1), and a GPU pod that opens
 * an empty node of G GPUs books all its idle compute, about G x 1000 milli,
 * as fragment for every multi-GPU shape, which can no longer have that
 * node: M x G x 1000 with M their demand weight (the pod's own GPUs aside,
 * 2,400 milli for a 1-GPU pod with M = 0.34). Stranding counted at weight
 * 1 (change 3) is bounded by the open node's idle compute, so where
 * multi-GPU pods bring much of the demand (M = 0.34 with 45% of it) flexpu
 * kept filling a partly used 8-GPU node past its CPU, stranding up to 2.4
 * GPUs there rather than open another node. Yet the opened node is a
 * transient cost (small pods fill it a few arrivals later), and the
 * stranded compute is lost to every later pod. So a GPU's worth of
 * stranded compute costs at least what opening a node costs the
 * multi-GPU shapes: the weight is M x G where that is above 1 and the
 * cluster has CPU to spare (feeds_to_spare), change 3's 1 elsewhere (M <=
 * 1/8 with 8-GPU nodes: the default trace's M is 0.05, and its decisions
 * are the same bit for bit). Like the model pressure, G and the nodes' CPU
 * are taken from the live nodes when the workload is set. Where the weight
 * is above 1, the stranded compute counts what the node's memory cannot
 * feed too (change 9, w->mem_per_gpu_milli). */
static double strand_weight(const struct fx_shape *sh, int n, int largest, int spare)
{
    double multi = 0;
    for (int i = 0; i < n; i++)
        multi += sh[i].req.num_gpu > 1 ? sh[i].demand_weight : 0;
    return spare && multi * largest > 1.0 ? multi * largest : 1.0;
}

/* Whether the cluster has CPU and memory to spare for the workload: the CPU
 * and the memory its shapes ask (CPU-only ones too, at their popularity)
 * per GPU milli they ask are below the live nodes' per GPU milli. Where
 * they are not, the GPUs cannot all be fed whatever the placement, and a
 * node opened to keep one GPU fed strands another later: change 7 then only
 * moves stranding (seen with CPU-only pods asking 2.3 times their CPU, and
 * on a held-out trace whose GPU pods ask 1.5 times theirs), and the weight
 * stays 1. (Memory, which change 9 counts too, is never short on the
 * traces: they ask at most 64 GiB per GPU of nodes that hold 81.) */
static int feeds_to_spare(const struct flexpu_pod_req *shapes, const double *weights, int n,
                          double node_cpu, double node_mem, double node_gpus)
{
    double cpu = 0, mem = 0, gpu = 0;
    for (int i = 0; i < n; i++) {
        cpu += weights[i] * (double)shapes[i].cpu_milli;
        mem += weights[i] * (double)shapes[i].mem_mib;
        gpu += weights[i] * (double)shapes[i].num_gpu * shapes[i].gpu_milli;
    }
    double node_milli = node_gpus * FLEXPU_GPU_MILLI;
    return gpu > 0 && node_gpus > 0 && cpu / gpu < node_cpu / node_milli &&
           mem / gpu < node_mem / node_milli;
}

/* flexpu's change 8 (docs/SCHEDULING.md, "Pods that name GPU models"): to
 * whom the compute that a node's CPU strands (policy.c, stranded) is
 * lost. That term is the GPU shapes' (their CPU per GPU milli, averaged
 * over pods x GPU milli, says what the CPU can feed), but a GPU shape that
 * accepts none of the node's models could never have used the compute, and
 * already books every idle milli of the node as fragment (frag.c), stranded
 * or not. So the stranded compute counts only for the shapes that can use
 * the node's GPUs: their share of the GPU demand, by the same pods x GPU
 * milli. (The demand weights, which carry the model pressure, would not
 * do: a set of constrained shapes may weigh as much as the rest of the
 * workload there, and stranding was then halved on most nodes for 2% of
 * the pods.) */
static double usable_share(const struct fx_shape *sh, int n, uint64_t models)
{
    double locked = 0, all = 0;
    for (int i = 0; i < n; i++) {
        double g = sh[i].weight * sh[i].req.num_gpu * sh[i].req.gpu_milli;
        all += g;
        if (sh[i].req.model_mask && !(sh[i].req.model_mask & models))
            locked += g;
    }
    /* where every shape can use the node this is exactly 1: a workload
     * without model constraints decides as before, bit for bit */
    return all > 0 && locked > 0 ? (all - locked) / all : 1.0;
}

double fx_workload_strand_share(const struct fx_workload *w, uint64_t models)
{
    for (int i = 0; i < w->nmodel_share; i++)
        if (w->model_share[i].models == models)
            return w->model_share[i].share;
    return usable_share(w->shapes, w->nshapes, models);
}

/* The shares of the live nodes' model sets (a few: most nodes hold one
 * model), so that scoring a node costs a lookup, not a pass over the
 * shapes. */
static int set_model_shares(struct fx_workload *w, const struct flexpu_engine *e)
{
    w->model_share = fx_calloc((size_t)e->nnodes + 1, sizeof(*w->model_share));
    if (!w->model_share)
        return -1;
    for (int i = 0; i < e->nnodes; i++) {
        if (!e->nodes[i].alive || e->nodes[i].ngpu == 0)
            continue;
        uint64_t m = e->nodes[i].model_mask;
        int k = 0;
        while (k < w->nmodel_share && w->model_share[k].models != m)
            k++;
        if (k < w->nmodel_share)
            continue;
        w->model_share[k].models = m;
        w->model_share[k].share = usable_share(w->shapes, w->nshapes, m);
        w->nmodel_share++;
    }
    return 0;
}

/* A GPU shape's CPU per GPU milli and its share of the workload's GPU
 * demand (set_ratios). */
struct shape_ratio {
    double r, w;
};

static int cmp_ratio(const void *pa, const void *pb)
{
    double a = ((const struct shape_ratio *)pa)->r, b = ((const struct shape_ratio *)pb)->r;
    return a < b ? -1 : a > b;
}

/* The per-shape CPU ratios that price a CPU-only pod (policy.c,
 * cpu_stranded_by_shape): ascending, with suffix sums so that the shapes
 * above any ratio are summed in O(1). A shape's share is its popularity
 * times its GPU milli over the workload's (`gpu`), so that the shares'
 * mean ratio is w->cpu_per_gpu_milli. */
static int set_ratios(struct fx_workload *w, const struct flexpu_pod_req *shapes,
                      const double *weights, int n, double gpu)
{
    struct shape_ratio *sr = fx_calloc((size_t)n + 1, sizeof(*sr));
    w->ratio = fx_calloc((size_t)n + 1, sizeof(double));
    w->ratio_w = fx_calloc((size_t)n + 1, sizeof(double));
    w->ratio_w_inv = fx_calloc((size_t)n + 1, sizeof(double));
    if (!sr || !w->ratio || !w->ratio_w || !w->ratio_w_inv) {
        fx_free(sr);
        return -1;
    }
    int k = 0;
    for (int i = 0; i < n; i++)
        if (shapes[i].num_gpu > 0) {
            double g = (double)shapes[i].num_gpu * shapes[i].gpu_milli;
            sr[k].r = (double)shapes[i].cpu_milli / g;
            sr[k].w = weights[i] * g / gpu;
            k++;
        }
    qsort(sr, (size_t)k, sizeof(*sr), cmp_ratio);
    w->nratio = k;
    for (int i = k - 1; i >= 0; i--) {
        w->ratio[i] = sr[i].r;
        w->ratio_w[i] = w->ratio_w[i + 1] + sr[i].w;
        /* a shape that asks no CPU (r = 0) is never above a node's
         * ratio, so its 1/r is never used */
        w->ratio_w_inv[i] = w->ratio_w_inv[i + 1] + (sr[i].r > 0 ? sr[i].w / sr[i].r : 0);
    }
    fx_free(sr);
    return 0;
}

/* ---- change 10: the room model sets keep (docs/SCHEDULING.md) ---------- */

/* The share of a model set's GPU demand its CPU- and memory-heaviest shapes
 * must carry to set its ratios (struct fx_model_set): a tenth, chosen on
 * the tune traces (the mean ratio let a set's heavy tail strand P100 nodes'
 * GPUs; a quarter kept GPUs from lighter pods that could feed them). */
#define HEAVY_SHARE 0.1

struct ratio_share {
    double r, g;
};

static int cmp_ratio_desc(const void *pa, const void *pb)
{
    double a = ((const struct ratio_share *)pa)->r, b = ((const struct ratio_share *)pb)->r;
    return a > b ? -1 : a < b;
}

/* The largest ratio at or above which HEAVY_SHARE of the k pairs' weight
 * lies (pairs sorted here, descending). */
static double heavy_ratio(struct ratio_share *rs, int k)
{
    double total = 0, seen = 0;
    for (int i = 0; i < k; i++)
        total += rs[i].g;
    qsort(rs, (size_t)k, sizeof(*rs), cmp_ratio_desc);
    for (int i = 0; i < k; i++) {
        seen += rs[i].g;
        if (seen >= HEAVY_SHARE * total)
            return rs[i].r;
    }
    return k ? rs[k - 1].r : 0;
}

static int cmp_set_demand(const void *pa, const void *pb)
{
    double a = ((const struct fx_model_set *)pa)->demand;
    double b = ((const struct fx_model_set *)pb)->demand;
    return a > b ? -1 : a < b;
}

/* One entry per set of models that GPU shapes name (the FX_ROOM_SETS that
 * bring the most GPU demand; the rest, rarer, go unpriced): its share of the GPU
 * demand (`gpu`: the workload's, popularity x GPU milli) and its heavy
 * ratios. */
static int set_model_sets(struct fx_workload *w, const struct flexpu_pod_req *shapes,
                          const double *weights, int n, double gpu)
{
    struct ratio_share *cpu = fx_calloc((size_t)n + 1, sizeof(*cpu));
    struct ratio_share *mem = fx_calloc((size_t)n + 1, sizeof(*mem));
    w->sets = fx_calloc((size_t)n + 1, sizeof(*w->sets));
    if (!cpu || !mem || !w->sets) {
        fx_free(cpu);
        fx_free(mem);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        uint64_t models = shapes[i].model_mask;
        if (!models || shapes[i].num_gpu == 0)
            continue;
        int seen = 0;
        for (int j = 0; j < w->nsets && !seen; j++)
            seen = w->sets[j].models == models;
        if (seen)
            continue;
        struct fx_model_set *set = &w->sets[w->nsets++];
        set->models = models;
        int k = 0;
        for (int j = i; j < n; j++) {
            if (shapes[j].model_mask != models || shapes[j].num_gpu == 0)
                continue;
            double g = (double)shapes[j].num_gpu * shapes[j].gpu_milli;
            set->demand += weights[j] * g / gpu;
            cpu[k] = (struct ratio_share){(double)shapes[j].cpu_milli / g, weights[j] * g};
            mem[k] = (struct ratio_share){(double)shapes[j].mem_mib / g, weights[j] * g};
            k++;
        }
        set->cpu = heavy_ratio(cpu, k);
        set->mem = heavy_ratio(mem, k);
    }
    fx_free(cpu);
    fx_free(mem);
    qsort(w->sets, (size_t)w->nsets, sizeof(*w->sets), cmp_set_demand);
    if (w->nsets > FX_ROOM_SETS)
        w->nsets = FX_ROOM_SETS;
    return 0;
}

/* The room node v keeps for the set: the free compute of its GPUs of the
 * set's models, at most what the node's free CPU and memory feed at the
 * set's heavy ratios; `take` of that compute, `cpu` and `mem` taken first. */
static double set_room(const struct fx_model_set *set, const struct fx_view *v, double take,
                       double cpu, double mem)
{
    double room = -take;
    for (int g = 0; g < v->ngpu; g++)
        if ((set->models >> v->model[g]) & 1)
            room += v->free[g];
    double cpu_free = (double)v->cpu_free - cpu, mem_free = (double)v->mem_free - mem;
    if (room > 0 && set->cpu > 0 && cpu_free / set->cpu < room)
        room = cpu_free / set->cpu;
    if (room > 0 && set->mem > 0 && mem_free / set->mem < room)
        room = mem_free / set->mem;
    return room > 0 ? room : 0;
}

double fx_workload_room_cost(const struct fx_workload *w, const struct fx_view *v,
                             const struct flexpu_pod_req *r, uint32_t gpus)
{
    /* A node may hold several models, and a placement there takes GPUs of
     * more than one: each counts for the sets of its own model. */
    uint64_t models = 0;
    int n = 0;
    for (int g = 0; g < v->ngpu; g++)
        if ((gpus >> g) & 1) {
            models |= 1ULL << v->model[g];
            n++;
        }
    double cost = 0;
    for (int k = 0; k < w->nsets; k++) {
        const struct fx_model_set *set = &w->sets[k];
        if (set->price <= 0)
            continue;
        double take = 0;
        if ((set->models & models) == models) /* every GPU taken (or none) */
            take = (double)n * r->gpu_milli;
        else if (set->models & models)
            for (int g = 0; g < v->ngpu; g++)
                if (((gpus >> g) & 1) && ((set->models >> v->model[g]) & 1))
                    take += r->gpu_milli;
        cost += set->price * (set_room(set, v, 0, 0, 0) -
                              set_room(set, v, take, (double)r->cpu_milli, (double)r->mem_mib));
    }
    return cost;
}

/* A set's demand still to come, if pods keep arriving until the cluster is
 * full, is its share of the cluster's free compute; over the room its
 * models' nodes keep for it, that is how much of the room its own pods will
 * want: 1 or more, every milli of room another pod takes is a milli of the
 * set's demand that fails later. The price is that ratio, at most 1, in
 * steps of 1/16. The rooms are kept up to date as nodes change class
 * (cluster.c, node_join and node_unlink), so this costs a pass over the
 * sets. */
void fx_workload_refresh_prices(struct flexpu_engine *e)
{
    struct fx_workload *w = &e->wl;
    if (w->nsets == 0)
        return;
    double all = (double)(e->stats.gpu_milli_total - e->stats.gpu_milli_used);
    for (int k = 0; k < w->nsets; k++) {
        struct fx_model_set *set = &w->sets[k];
        double room = e->room_total[k];
        double want = room > 0.5 ? set->demand * all / room : 0;
        double price = floor((want < 1 ? want : 1) * 16) / 16;
        set->price = price;
    }
}

double fx_workload_set_room(const struct fx_workload *w, int k, const struct fx_view *v)
{
    return k < w->nsets ? set_room(&w->sets[k], v, 0, 0, 0) : 0;
}

int flexpu_engine_set_workload(struct flexpu_engine *e, const struct flexpu_pod_req *shapes,
                               const double *weights, int n, struct flexpu_error *err)
{
    if (n < 0 || (n > 0 && (!shapes || !weights)))
        return flexpu_error_set(err, FLEXPU_EINVAL, "workload: %d shapes without data", n);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        int rc = flexpu_req_validate(&shapes[i], err);
        if (rc) {
            flexpu_error_prefix(err, "workload shape %d", i);
            return rc;
        }
        if (!(weights[i] > 0) || !isfinite(weights[i])) {
            char buf[32];
            snprintf(buf, sizeof(buf), "%g", weights[i]);
            return flexpu_error_field(err, FLEXPU_EINVAL, "workload.weight", buf, strlen(buf),
                                      "must be a positive finite number");
        }
        sum += weights[i];
    }
    struct fx_workload w = {0};
    if (n > 0) {
        w.shapes = fx_calloc((size_t)n, sizeof(*w.shapes));
        w.groups = fx_calloc((size_t)n, sizeof(*w.groups));
        if (!w.shapes || !w.groups) {
            fx_workload_clear(&w);
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for %d shapes", n);
        }
    }
    double gpus[FLEXPU_MAX_MODELS] = {0}, all = 0;
    int largest = 0;    /* GPUs of the largest live node */
    double node_cpu = 0, node_mem = 0; /* CPU and memory of the live nodes */
    for (int i = 0; i < e->nnodes; i++) {
        for (int g = 0; e->nodes[i].alive && g < e->nodes[i].ngpu; g++) {
            gpus[e->nodes[i].model[g]] += 1;
            all += 1;
        }
        if (e->nodes[i].alive && e->nodes[i].ngpu > largest)
            largest = e->nodes[i].ngpu;
        node_cpu += e->nodes[i].alive ? (double)e->nodes[i].cpu_cap : 0;
        node_mem += e->nodes[i].alive ? (double)e->nodes[i].mem_cap : 0;
    }
    double plain = 0;
    for (int i = 0; i < n; i++) {
        w.shapes[i].req = shapes[i];
        w.shapes[i].weight = weights[i] / sum;
        w.shapes[i].demand_weight = weights[i] * shape_demand(&shapes[i]);
        plain += w.shapes[i].demand_weight;
    }
    if (apply_capacity(e, w.shapes, n, plain)) {
        fx_workload_clear(&w);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for %d shapes", n);
    }
    apply_pressure(w.shapes, n, gpus, all, plain);
    double dsum = 0;
    for (int i = 0; i < n; i++)
        dsum += w.shapes[i].demand_weight;
    for (int i = 0; i < n; i++)
        w.shapes[i].demand_weight /= dsum;
    w.strand_weight = strand_weight(w.shapes, n, largest,
                                    feeds_to_spare(shapes, weights, n, node_cpu, node_mem, all));
    double cpu = 0, mem = 0, gpu = 0;
    for (int i = 0; i < n; i++)
        if (shapes[i].num_gpu > 0) {
            cpu += weights[i] * (double)shapes[i].cpu_milli;
            mem += weights[i] * (double)shapes[i].mem_mib;
            gpu += weights[i] * (double)shapes[i].num_gpu * shapes[i].gpu_milli;
        }
    w.cpu_per_gpu_milli = gpu > 0 ? cpu / gpu : 0;
    w.mem_per_gpu_milli = gpu > 0 && w.strand_weight > 1.0 ? mem / gpu : 0;
    if (gpu > 0 && (set_ratios(&w, shapes, weights, n, gpu) ||
                    set_model_sets(&w, shapes, weights, n, gpu))) {
        fx_workload_clear(&w);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for %d shapes", n);
    }
    w.nshapes = n;
    if (set_model_shares(&w, e)) {
        fx_workload_clear(&w);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for %d shapes", n);
    }
    qsort(w.shapes, (size_t)n, sizeof(*w.shapes), cmp_shape);
    for (int i = 0; i < n; i++) {
        struct fx_shape_group *g = w.ngroups ? &w.groups[w.ngroups - 1] : NULL;
        if (!g || !same_group(&w.shapes[g->first].req, &w.shapes[i].req)) {
            g = &w.groups[w.ngroups++];
            g->num_gpu = w.shapes[i].req.num_gpu;
            g->gpu_milli = w.shapes[i].req.gpu_milli;
            g->gpu_mem_mib = w.shapes[i].req.gpu_mem_mib;
            g->model_mask = w.shapes[i].req.model_mask;
            g->first = i;
        }
        g->n++;
        g->weight += w.shapes[i].weight;
    }
    fx_workload_clear(&e->wl);
    e->wl = w;
    fx_refrag(e);
    return 0;
}
