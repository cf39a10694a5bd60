/* SPDX-License-Identifier: Apache-2.0 */
/* Victims for a whole gang (include/flexpu/gang.h,
 * flexpu_engine_find_gang_victims), on the single request's search
 * (victim.c): pure, on views of the nodes' free resources. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/gang.h"
#include "sched/engine.h"
#include "sched/gpupick.h"
#include "sched/victim.h"
#include "util/alloc.h"

/* Room summed over nodes: GPU compute, GPUs entirely free, members of the
 * biggest whole-GPU size the nodes can take, CPU, memory. */
struct room {
    int64_t gpu_milli, whole, big, cpu, mem;
};

/* A gang's search over one node or domain at a time: the members, biggest
 * first, each where it fits as things stand in the domain (best fit), else
 * on the node where the single request's rules (fewest new victims, least
 * cost, reprieve) make room; victims stay evicted for the members after,
 * and a group evicted for one member frees its members' room on the
 * domain's other nodes too. */
struct gsearch {
    struct fx_vsearch s;
    struct flexpu_gang_member *m;
    int n;
    struct flexpu_pod_req *req; /* effective, per member */
    int *order;                 /* biggest first */
    int *pfrom, *pto;           /* per node: its pairs; pfrom -1 when none */
    struct fx_view *views;      /* per node, for the domain's nodes */
    uint8_t *in;                /* per node: in the domain */
    int *dom, ndom;             /* the domain's nodes, by id */
    struct fx_vrslot *rs;
    int *tmp;
    int *ufirst, *upair;        /* per unit: its pairs, upair[ufirst[u] .. ufirst[u + 1]) */
    int *touched, ntouched;     /* the units evicted in the domain being evaluated */
    struct room *pot;           /* per node: free with every candidate gone */
    struct room need;           /* the gang's total */
    int kmax;                   /* GPUs of its biggest whole-GPU member, 0: none */
    struct flexpu_placement *pl, *best_pl; /* per member */
    int *shape;                 /* per member: the first member of its shape and filter */
    struct nmemo *memo;         /* per node */
    int *best_list, nbest;                 /* the best domain's victim units */
    int have, best_count;
    double best_cost;
};

/* A node's last eviction answer, true while its view has not changed
 * (members of one shape ask the same question of the same nodes). */
struct nmemo {
    uint32_t stamp;  /* bumped whenever the node's view changes */
    uint32_t at;     /* the stamp the answer was computed at; 0: none */
    int shape, ok, count;
    double cost;
};

/* Takes unit u's usage off the domain's views (every node of it, not only
 * the one that needed the room). */
static void evict_unit(struct gsearch *g, int u)
{
    g->touched[g->ntouched++] = u;
    for (int k = g->ufirst[u]; k < g->ufirst[u + 1]; k++) {
        const struct fx_vpair *p = &g->s.pairs[g->upair[k]];
        if (g->in[p->node]) {
            fx_victim_view_change(&g->views[p->node], p->a, -1);
            g->memo[p->node].stamp++;
        }
    }
}

/* Whether the domain could hold the gang's total with every candidate in
 * it gone (summed, and the biggest whole-GPU members counted per node, as
 * gang placement's aggregate check): a cheap test before evaluating. */
static int domain_may_hold(const struct gsearch *g)
{
    struct room have = {0};
    for (int k = 0; k < g->ndom; k++) {
        const struct room *p = &g->pot[g->dom[k]];
        have.gpu_milli += p->gpu_milli;
        have.whole += p->whole;
        have.big += g->kmax > 0 ? p->whole / g->kmax : 0;
        have.cpu += p->cpu;
        have.mem += p->mem;
    }
    return have.gpu_milli >= g->need.gpu_milli && have.whole >= g->need.whole &&
           have.big >= g->need.big && have.cpu >= g->need.cpu && have.mem >= g->need.mem;
}

/* The domain's node where r fits as things stand, best fit; -1 if none. */
static int fit_free(struct gsearch *g, const struct flexpu_pod_req *r,
                    const struct flexpu_filter *f)
{
    struct flexpu_engine *e = g->s.e;
    int best = -1;
    int64_t best_left = 0;
    for (int k = 0; k < g->ndom; k++) {
        int id = g->dom[k];
        if (fx_reject_reason(&e->nodes[id], &g->views[id], r) >= 0 ||
            flexpu_engine_node_filter(e, id, f, NULL, NULL) != -1)
            continue;
        int64_t left = fx_view_idle(&g->views[id]) - (int64_t)r->num_gpu * r->gpu_milli;
        if (best < 0 || left < best_left) {
            best = id;
            best_left = left;
        }
    }
    return best;
}

/* The domain's node where evicting makes room for r, by the single
 * request's order; its new victims are marked and taken off the views.
 * -1 if none. */
static int fit_evict(struct gsearch *g, int j, int *count, double *cost)
{
    struct flexpu_engine *e = g->s.e;
    const struct flexpu_pod_req *r = &g->req[j];
    const struct flexpu_filter *f = g->m[j].filter;
    int best = -1, bc = 0;
    double bco = 0;
    struct fx_view v;
    for (int k = 0; k < g->ndom; k++) {
        int id = g->dom[k];
        struct nmemo *m = &g->memo[id];
        if (g->pfrom[id] < 0)
            continue;
        if (m->at != m->stamp || m->shape != g->shape[j]) {
            m->ok = fx_victim_eval_node(&g->s, g->pfrom[id], g->pto[id], &g->views[id], r, f,
                                        g->rs, 0, &m->count, &m->cost, &v);
            m->at = m->stamp;
            m->shape = g->shape[j];
        }
        if (m->ok && fx_victim_better(e, m->count, m->cost, id, bc, bco, best)) {
            best = id;
            bc = m->count;
            bco = m->cost;
        }
    }
    if (best < 0)
        return -1;
    int nt = 0;
    for (int i = g->pfrom[best]; i < g->pto[best]; i++)
        if (!g->s.units[g->s.pairs[i].unit].victim)
            g->tmp[nt++] = g->s.pairs[i].unit;
    fx_victim_eval_node(&g->s, g->pfrom[best], g->pto[best], &g->views[best], r, f, g->rs, 1,
                        count, cost, &v);
    for (int t = 0; t < nt; t++)
        if ((t == 0 || g->tmp[t] != g->tmp[t - 1]) && g->s.units[g->tmp[t]].victim)
            evict_unit(g, g->tmp[t]);
    return best;
}

/* Places every member in the domain g->dom, evicting as needed. 1 and the
 * victims' count and cost, or 0. */
static int eval_domain(struct gsearch *g, int *count, double *cost)
{
    struct flexpu_engine *e = g->s.e;
    for (int t = 0; t < g->ntouched; t++)
        g->s.units[g->touched[t]].victim = 0;
    g->ntouched = 0;
    for (int k = 0; k < g->ndom; k++) {
        fx_view_of(&e->nodes[g->dom[k]], &g->views[g->dom[k]]);
        g->memo[g->dom[k]] = (struct nmemo){.stamp = 1};
    }
    *count = 0;
    *cost = 0;
    for (int k = 0; k < g->n; k++) {
        int j = g->order[k];
        const struct flexpu_pod_req *r = &g->req[j];
        int id = fit_free(g, r, g->m[j].filter);
        if (id < 0) {
            int c;
            double co;
            id = fit_evict(g, j, &c, &co);
            if (id < 0)
                return 0;
            *count += c;
            *cost += co;
        }
        struct flexpu_placement *p = &g->pl[j];
        memset(p, 0, sizeof(*p));
        if (!fx_pick_topology(&g->views[id], r, p))
            return 0;
        p->node = id;
        fx_view_apply(&g->views[id], r, p);
        g->memo[id].stamp++;
    }
    return 1;
}

/* Evaluates the domain g->dom[0..ndom) and keeps it when it beats the best
 * of its level: fewer victims, then less cost, then the first seen. */
static void consider(struct gsearch *g, struct flexpu_gang_result *res,
                     enum flexpu_gang_level level, int key, const char *name)
{
    if (!domain_may_hold(g))
        return;
    for (int k = 0; k < g->ndom; k++)
        g->in[g->dom[k]] = 1;
    int c = 0;
    double co = 0;
    int ok = eval_domain(g, &c, &co);
    for (int k = 0; k < g->ndom; k++)
        g->in[g->dom[k]] = 0;
    if (!ok)
        return;
    double tol = 1e-9 * (fabs(co) + fabs(g->best_cost) + 1.0);
    if (g->have && (c > g->best_count || (c == g->best_count && co >= g->best_cost - tol)))
        return;
    g->have = 1;
    g->best_count = c;
    g->best_cost = co;
    memcpy(g->best_pl, g->pl, (size_t)g->n * sizeof(*g->pl));
    memcpy(g->best_list, g->touched, (size_t)g->ntouched * sizeof(*g->touched));
    g->nbest = g->ntouched;
    res->level = level;
    res->key = key;
    res->node = level == FLEXPU_GANG_NODE ? g->dom[0] : -1;
    snprintf(res->domain, sizeof(res->domain), "%s", name);
}

struct gv_label {
    const char *value;
    int node;
};

static int cmp_gv_label(const void *a, const void *b)
{
    const struct gv_label *x = a, *y = b;
    int c = strcmp(x->value, y->value);
    return c ? c : x->node - y->node;
}

/* The domains of one key holding candidates, each considered. */
static void level_key_victims(struct gsearch *g, struct flexpu_gang_result *res, int key,
                              const char *name, struct gv_label *lab)
{
    struct flexpu_engine *e = g->s.e;
    int nl = 0;
    for (int id = 0; id < e->nnodes; id++) {
        const char *v = e->nodes[id].alive ? fx_node_label(e, id, name) : NULL;
        if (v)
            lab[nl++] = (struct gv_label){v, id};
    }
    qsort(lab, (size_t)nl, sizeof(*lab), cmp_gv_label);
    for (int i = 0; i < nl;) {
        int j = i, cands = 0;
        g->ndom = 0;
        for (; j < nl && strcmp(lab[j].value, lab[i].value) == 0; j++) {
            g->dom[g->ndom++] = lab[j].node;
            cands |= g->pfrom[lab[j].node] >= 0;
        }
        if (cands)
            consider(g, res, FLEXPU_GANG_DOMAIN, key, lab[i].value);
        i = j;
    }
}

/* The levels in gang placement's order; the first with an answer wins. */
static int gang_levels(struct gsearch *g, struct flexpu_gang_result *res, struct gv_label *lab)
{
    struct flexpu_engine *e = g->s.e;
    for (int id = 0; id < e->nnodes; id++) {
        if (g->pfrom[id] < 0)
            continue;
        g->dom[0] = id;
        g->ndom = 1;
        consider(g, res, FLEXPU_GANG_NODE, -1, e->nodes[id].name);
    }
    const char *keys[FLEXPU_TOPOLOGY_KEYS_MAX];
    int nkeys = flexpu_engine_topology_keys(e, keys, FLEXPU_TOPOLOGY_KEYS_MAX);
    for (int k = 0; k < nkeys && !g->have; k++)
        level_key_victims(g, res, k, keys[k], lab);
    if (!g->have) {
        g->ndom = 0;
        for (int id = 0; id < e->nnodes; id++)
            if (e->nodes[id].alive)
                g->dom[g->ndom++] = id;
        consider(g, res, FLEXPU_GANG_ANYWHERE, -1, "");
    }
    return g->have ? 0 : FLEXPU_ENOFIT;
}

static int gsearch_alloc(struct gsearch *g, struct gv_label **lab)
{
    size_t nn = (size_t)g->s.e->nnodes + 1, nc = (size_t)(g->s.nc > 0 ? g->s.nc : 1);
    size_t n = (size_t)g->n;
    g->req = fx_malloc(n * sizeof(*g->req));
    g->order = fx_malloc(n * sizeof(*g->order));
    g->pl = fx_malloc(n * sizeof(*g->pl));
    g->best_pl = fx_malloc(n * sizeof(*g->best_pl));
    g->pfrom = fx_malloc(nn * sizeof(*g->pfrom));
    g->pto = fx_malloc(nn * sizeof(*g->pto));
    g->views = fx_malloc(nn * sizeof(*g->views));
    g->in = fx_calloc(nn, sizeof(*g->in));
    g->dom = fx_malloc(nn * sizeof(*g->dom));
    g->rs = fx_malloc(nc * sizeof(*g->rs));
    g->tmp = fx_malloc(nc * sizeof(*g->tmp));
    g->ufirst = fx_calloc(nc + 1, sizeof(*g->ufirst));
    g->upair = fx_malloc(nc * sizeof(*g->upair));
    g->touched = fx_malloc(nc * sizeof(*g->touched));
    g->best_list = fx_malloc(nc * sizeof(*g->best_list));
    g->pot = fx_malloc(nn * sizeof(*g->pot));
    g->memo = fx_malloc(nn * sizeof(*g->memo));
    g->shape = fx_malloc(n * sizeof(*g->shape));
    *lab = fx_malloc(nn * sizeof(**lab));
    return g->req && g->order && g->pl && g->best_pl && g->pfrom && g->pto && g->views &&
                   g->in && g->dom && g->rs && g->tmp && g->ufirst && g->upair && g->touched &&
                   g->best_list && g->pot && g->memo && g->shape && *lab
               ? 0
               : FLEXPU_ENOMEM;
}

static void gsearch_free(struct gsearch *g, struct gv_label *lab)
{
    void *p[] = {g->req,   g->order,  g->pl,     g->best_pl,   g->pfrom, g->pto,
                 g->views, g->in,     g->dom,    g->rs,        g->tmp,   g->ufirst,
                 g->upair, g->touched, g->best_list, g->pot,   g->memo, g->shape,
                 lab};
    for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
        fx_free(p[i]);
    fx_victim_search_free(&g->s);
}

static int same_request(const struct flexpu_pod_req *a, const struct flexpu_pod_req *b)
{
    return a->cpu_milli == b->cpu_milli && a->mem_mib == b->mem_mib &&
           a->num_gpu == b->num_gpu && a->gpu_milli == b->gpu_milli &&
           a->gpu_mem_mib == b->gpu_mem_mib && a->model_mask == b->model_mask;
}

/* The search's indexes: each node's pairs, each unit's pairs, each node's
 * room with every candidate gone, and the gang's total. */
static void gsearch_index(struct gsearch *g)
{
    struct flexpu_engine *e = g->s.e;
    for (int id = 0; id < e->nnodes; id++)
        g->pfrom[id] = g->pto[id] = -1;
    for (int i = 0; i < g->s.nc; i++) {
        int id = g->s.pairs[i].node;
        if (g->pfrom[id] < 0)
            g->pfrom[id] = i;
        g->pto[id] = i + 1;
        g->ufirst[g->s.pairs[i].unit + 1]++;
    }
    for (int u = 0; u < g->s.nunits; u++)
        g->ufirst[u + 1] += g->ufirst[u];
    int *next = g->touched; /* each unit's next slot, before any unit is touched */
    for (int u = 0; u < g->s.nunits; u++)
        next[u] = g->ufirst[u];
    for (int i = 0; i < g->s.nc; i++)
        g->upair[next[g->s.pairs[i].unit]++] = i;
    for (int id = 0; id < e->nnodes; id++) {
        struct fx_view v;
        struct room *p = &g->pot[id];
        memset(p, 0, sizeof(*p));
        if (!e->nodes[id].alive)
            continue;
        fx_view_of(&e->nodes[id], &v);
        for (int i = g->pfrom[id]; i >= 0 && i < g->pto[id]; i++)
            fx_victim_view_change(&v, g->s.pairs[i].a, -1);
        p->cpu = v.cpu_free;
        p->mem = v.mem_free;
        for (int k = 0; k < v.ngpu; k++) {
            p->gpu_milli += v.free[k];
            p->whole += v.free[k] == FLEXPU_GPU_MILLI;
        }
    }
    for (int j = 0; j < g->n; j++) {
        const struct flexpu_pod_req *r = &g->req[j];
        g->need.gpu_milli += (int64_t)r->num_gpu * r->gpu_milli;
        g->need.whole += r->gpu_milli == FLEXPU_GPU_MILLI ? r->num_gpu : 0;
        g->need.cpu += r->cpu_milli;
        g->need.mem += r->mem_mib;
        if (r->gpu_milli == FLEXPU_GPU_MILLI && r->num_gpu > g->kmax)
            g->kmax = r->num_gpu;
    }
    for (int j = 0; j < g->n; j++)
        g->need.big += g->req[j].gpu_milli == FLEXPU_GPU_MILLI && g->req[j].num_gpu == g->kmax;
    for (int k = 0; k < g->n; k++) {
        int j = g->order[k], prev = k > 0 ? g->order[k - 1] : -1;
        g->shape[j] = prev >= 0 && g->m[j].filter == g->m[prev].filter &&
                              same_request(&g->req[j], &g->req[prev])
                          ? g->shape[prev]
                          : j;
    }
}

/* Runs the search once the gang is known not to fit as it is. */
static int gang_search(struct gsearch *g, struct flexpu_gang_result *res,
                       struct flexpu_preemption *out, int *evicted, struct flexpu_noplace *why)
{
    struct gv_label *lab = NULL;
    int rc = fx_victim_search_init(&g->s, why);
    if (rc == 0)
        rc = gsearch_alloc(g, &lab);
    if (rc == 0) {
        struct flexpu_engine *e = g->s.e;
        for (int i = 0; i < g->n; i++)
            flexpu_engine_effective_req(e, &g->m[i].req, &g->req[i]);
        rc = fx_gang_order(g->req, g->n, g->order);
    }
    if (rc == 0) {
        gsearch_index(g);
        rc = gang_levels(g, res, lab);
    }
    if (rc == 0) {
        out->victims = g->best_count;
        out->cost = g->best_cost;
        for (int t = 0; t < g->nbest; t++)
            g->s.units[g->best_list[t]].victim = 2; /* the answer's */
        for (int i = 0; i < g->s.nc; i++)
            if (g->s.units[g->s.unit_of[i]].victim == 2)
                evicted[out->nevicted++] = i;
        for (int j = 0; j < g->n; j++)
            g->m[j].place = g->best_pl[j];
    }
    gsearch_free(g, lab);
    return rc;
}

int flexpu_engine_find_gang_victims(struct flexpu_engine *e, struct flexpu_gang_member *m,
                                    int n, const struct flexpu_victim_cand *cands, int ncand,
                                    struct flexpu_gang_result *res,
                                    struct flexpu_preemption *out, int *evicted,
                                    struct flexpu_noplace *why)
{
    struct flexpu_noplace local_why;
    struct flexpu_gang_result local_res;
    why = why ? why : &local_why;
    res = res ? res : &local_res;
    if (!out) {
        snprintf(why->text, sizeof(why->text), "out: NULL");
        return FLEXPU_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    out->place.node = -1;
    /* Room as it is: nothing to evict (this also checks the members). */
    int rc = flexpu_engine_decide_gang(e, m, n, NULL, res, why);
    if (rc != FLEXPU_ENOFIT)
        return rc;
    if (ncand > 0 && !evicted) {
        snprintf(why->text, sizeof(why->text), "evicted: NULL for %d candidates", ncand);
        return FLEXPU_EINVAL;
    }
    struct flexpu_noplace fit = *why;
    memset(res, 0, sizeof(*res));
    res->key = res->node = -1;
    struct gsearch g = {.s = {.e = e, .c = cands, .nc = ncand}, .m = m, .n = n};
    rc = gang_search(&g, res, out, evicted, why);
    fx_victim_search_failed(rc, ncand, "domain", &fit, why);
    if (rc) {
        memset(out, 0, sizeof(*out));
        out->place.node = -1;
    }
    return rc;
}
