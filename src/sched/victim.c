/* SPDX-License-Identifier: Apache-2.0 */
/* Victims: whom to evict so that a request fits (include/flexpu/gang.h).
 *
 * Like kube-scheduler's preemption (its DefaultPreemption plugin): per
 * node, take away every candidate there, check the request fits, then give
 * candidates back one by one, the highest priority first, keeping each
 * that the request can live with (the "reprieve"); then pick the node with
 * the fewest victims and, among those, the least work lost. Candidates of
 * one group (a gang) come and go together and count as one victim.
 *
 * The search never changes the engine: it works on views (copies of a
 * node's free resources) with the candidates' usage added back. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/gang.h"
#include "sched/engine.h"
#include "sched/gpupick.h"
#include "sched/policy.h"
#include "sched/victim.h"
#include "util/alloc.h"

static int cmp_pair(const void *a, const void *b)
{
    const struct fx_vpair *x = a, *y = b;
    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    if (x->unit != y->unit)
        return x->unit < y->unit ? -1 : 1;
    return x->cand - y->cand;
}

/* A candidate's group and allocation, to sort by either. */
struct gi {
    int64_t group, alloc;
    int cand;
};

static int cmp_group(const void *a, const void *b)
{
    const struct gi *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    return x->cand - y->cand;
}

static int cmp_alloc(const void *a, const void *b)
{
    const struct gi *x = a, *y = b;
    if (x->alloc != y->alloc)
        return x->alloc < y->alloc ? -1 : 1;
    return x->cand - y->cand;
}

static int bad_cand(struct flexpu_noplace *why, int i, const char *field, const char *what,
                    long long val)
{
    snprintf(why->text, sizeof(why->text), "candidate[%d].%s: %s (%lld)", i, field, what, val);
    return FLEXPU_EINVAL;
}

/* Checks the candidates and forms the units. */
static int make_units(struct fx_vsearch *s, struct flexpu_noplace *why)
{
    struct gi *g = fx_malloc((size_t)s->nc * sizeof(*g));
    if (!g)
        return FLEXPU_ENOMEM;
    int rc = 0;
    for (int i = 0; i < s->nc && !rc; i++) {
        const struct flexpu_victim_cand *c = &s->c[i];
        if (!fx_alloc_find(s->e, c->alloc_id))
            rc = bad_cand(why, i, "alloc_id", "no such allocation", (long long)c->alloc_id);
        else if (!(c->cost >= 0) || isinf(c->cost)) {
            /* %g: a NaN or infinity converted to long long is undefined. */
            snprintf(why->text, sizeof(why->text),
                     "candidate[%d].cost: must be a finite number >= 0 (%g)", i, c->cost);
            rc = FLEXPU_EINVAL;
        }
        g[i] = (struct gi){c->group, c->alloc_id, i};
    }
    if (!rc) {
        qsort(g, (size_t)s->nc, sizeof(*g), cmp_alloc);
        for (int i = 1; i < s->nc && !rc; i++)
            if (g[i].alloc == g[i - 1].alloc)
                rc = bad_cand(why, g[i].cand, "alloc_id", "listed twice", (long long)g[i].alloc);
    }
    if (!rc) {
        qsort(g, (size_t)s->nc, sizeof(*g), cmp_group);
        for (int i = 0; i < s->nc; i++) {
            const struct flexpu_victim_cand *c = &s->c[g[i].cand];
            int joins = i > 0 && g[i].group != 0 && g[i].group == g[i - 1].group;
            if (!joins)
                s->units[s->nunits++] = (struct fx_vunit){0, c->priority, g[i].cand, 0};
            struct fx_vunit *u = &s->units[s->nunits - 1];
            u->cost += c->cost;
            u->prio = c->priority > u->prio ? c->priority : u->prio;
            u->first = g[i].cand < u->first ? g[i].cand : u->first;
            s->unit_of[g[i].cand] = s->nunits - 1;
        }
    }
    fx_free(g);
    return rc;
}

/* Gives an allocation's usage back to (sign -1) or takes it from (+1) v. */
void fx_victim_view_change(struct fx_view *v, const struct fx_alloc *a, int sign)
{
    v->cpu_free -= sign * a->req.cpu_milli;
    v->mem_free -= sign * a->req.mem_mib;
    for (int i = 0; i < a->p.ngpu; i++) {
        int g = a->p.gpu[i];
        v->free[g] -= sign * a->p.milli[i];
        if (v->gmem_free[g] != INT64_MAX)
            v->gmem_free[g] -= sign * a->p.gpu_mem_mib[i];
    }
}

static int cmp_reprieve(const void *a, const void *b)
{
    const struct fx_vrslot *x = a, *y = b;
    if (x->prio != y->prio)
        return x->prio > y->prio ? -1 : 1;
    if (x->cost != y->cost)
        return x->cost > y->cost ? -1 : 1;
    return x->first - y->first;
}

/* The answer on one node for request r with filter f: pairs [from, to)
 * are its candidates, base its free resources with the units already
 * evicted (victim set) given back. Returns 1 and the new victims' count
 * and cost (marking them when mark), with *v the node's free resources
 * once they are gone; 0 if r cannot fit even with every candidate gone,
 * or there is none left to evict. */
int fx_victim_eval_node(struct fx_vsearch *s, int from, int to, const struct fx_view *base,
                        const struct flexpu_pod_req *r, const struct flexpu_filter *f,
                        struct fx_vrslot *rs, int mark, int *count, double *cost,
                        struct fx_view *v)
{
    struct flexpu_engine *e = s->e;
    int id = s->pairs[from].node;
    const struct fx_node *n = &e->nodes[id];
    if (flexpu_engine_node_filter(e, id, f, NULL, NULL) != -1)
        return 0;
    *v = *base;
    int nr = 0;
    for (int i = from; i < to; i++) {
        int u = s->pairs[i].unit;
        if (s->units[u].victim)
            continue;
        fx_victim_view_change(v, s->pairs[i].a, -1);
        if (nr == 0 || rs[nr - 1].s.unit != u)
            rs[nr++] = (struct fx_vrslot){{u, i, i}, s->units[u].prio, s->units[u].cost,
                                      s->units[u].first};
        rs[nr - 1].s.to = i + 1;
    }
    if (nr == 0 || fx_reject_reason(n, v, r) >= 0)
        return 0;
    qsort(rs, (size_t)nr, sizeof(*rs), cmp_reprieve);
    *count = 0;
    *cost = 0;
    for (int k = 0; k < nr; k++) {
        struct fx_view back = *v;
        for (int i = rs[k].s.from; i < rs[k].s.to; i++)
            fx_victim_view_change(&back, s->pairs[i].a, +1);
        if (fx_reject_reason(n, &back, r) < 0) {
            *v = back; /* reprieved */
            continue;
        }
        (*count)++;
        *cost += rs[k].cost;
        if (mark)
            s->units[rs[k].s.unit].victim = 1;
    }
    return 1;
}

/* The preemptor's GPUs on the chosen node's view, by the policy. */
static void final_place(struct fx_vsearch *s, int id, const struct fx_view *v,
                        struct flexpu_placement *p)
{
    struct fx_class tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.frag = fx_frag(&s->e->wl, v);
    tmp.head = id;
    struct fx_eval_ctx ctx = {s->e, &tmp, NULL};
    struct fx_choice ch;
    memset(&ch, 0, sizeof(ch));
    if (!s->e->policy->eval(&ctx, v, &s->r, &ch))
        fx_pick_tightest(v, &s->r, &ch.p);
    *p = ch.p;
    p->node = id;
}

int fx_victim_better(const struct flexpu_engine *e, int count, double cost, int id, int bcount,
                     double bcost, int bid)
{
    if (bid < 0 || count != bcount)
        return bid < 0 || count < bcount;
    double tol = 1e-9 * (fabs(cost) + fabs(bcost) + 1.0);
    if (fabs(cost - bcost) > tol)
        return cost < bcost;
    uint64_t p = e->nodes[id].prio, q = e->nodes[bid].prio;
    return p < q || (p == q && id < bid);
}

static int search_nodes(struct fx_vsearch *s, struct flexpu_preemption *out, int *evicted)
{
    struct fx_vrslot *rs = fx_malloc((size_t)(s->nc > 0 ? s->nc : 1) * sizeof(*rs));
    if (!rs)
        return FLEXPU_ENOMEM;
    int best = -1, bcount = 0, bfrom = 0, bto = 0;
    double bcost = 0;
    for (int from = 0; from < s->nc;) {
        int to = from;
        while (to < s->nc && s->pairs[to].node == s->pairs[from].node)
            to++;
        int count;
        double cost;
        struct fx_view base, v;
        fx_view_of(&s->e->nodes[s->pairs[from].node], &base);
        if (fx_victim_eval_node(s, from, to, &base, &s->r, s->f, rs, 0, &count, &cost, &v) &&
            fx_victim_better(s->e, count, cost, s->pairs[from].node, bcount, bcost, best)) {
            best = s->pairs[from].node;
            bcount = count;
            bcost = cost;
            bfrom = from;
            bto = to;
        }
        from = to;
    }
    if (best < 0) {
        fx_free(rs);
        return FLEXPU_ENOFIT;
    }
    struct fx_view base, v;
    fx_view_of(&s->e->nodes[best], &base);
    fx_victim_eval_node(s, bfrom, bto, &base, &s->r, s->f, rs, 1, &out->victims, &out->cost, &v);
    fx_free(rs);
    final_place(s, best, &v, &out->place);
    out->nevicted = 0;
    for (int i = 0; i < s->nc; i++)
        if (s->units[s->unit_of[i]].victim)
            evicted[out->nevicted++] = i;
    return 0;
}

/* Checks the candidates and forms units and pairs; s->e, c, nc are set. */
int fx_victim_search_init(struct fx_vsearch *s, struct flexpu_noplace *why)
{
    if (s->nc < 0 || (s->nc > 0 && !s->c)) {
        snprintf(why->text, sizeof(why->text), "candidates: %d given without an array", s->nc);
        return FLEXPU_EINVAL;
    }
    size_t n = (size_t)(s->nc > 0 ? s->nc : 1);
    s->units = fx_malloc(n * sizeof(*s->units));
    s->unit_of = fx_malloc(n * sizeof(*s->unit_of));
    s->pairs = fx_malloc(n * sizeof(*s->pairs));
    int rc = s->units && s->unit_of && s->pairs ? make_units(s, why) : FLEXPU_ENOMEM;
    if (rc)
        return rc;
    for (int i = 0; i < s->nc; i++) {
        const struct fx_alloc *a = fx_alloc_find(s->e, s->c[i].alloc_id);
        s->pairs[i] = (struct fx_vpair){a->p.node, s->unit_of[i], i, a};
    }
    qsort(s->pairs, (size_t)s->nc, sizeof(*s->pairs), cmp_pair);
    return 0;
}

void fx_victim_search_free(struct fx_vsearch *s)
{
    fx_free(s->units);
    fx_free(s->unit_of);
    fx_free(s->pairs);
}

/* The message of a search that failed (fit: why nothing fits as it is). */
void fx_victim_search_failed(int rc, int ncand, const char *what, const struct flexpu_noplace *fit,
                             struct flexpu_noplace *why)
{
    if (rc == FLEXPU_ENOFIT) {
        *why = *fit;
        /* One snprintf: gcc -O2's -Wstringop-truncation rejects strncat here. */
        snprintf(why->text, sizeof(why->text),
                 "no %s fits even with all %d candidates evicted: %.240s", what, ncand,
                 fit->text);
    } else if (rc == FLEXPU_ENOMEM) {
        snprintf(why->text, sizeof(why->text), "out of memory searching %d candidates", ncand);
    }
}

int flexpu_engine_find_victims(struct flexpu_engine *e, const struct flexpu_pod_req *req,
                               const struct flexpu_filter *f,
                               const struct flexpu_victim_cand *cands, int ncand,
                               struct flexpu_preemption *out, int *evicted,
                               struct flexpu_noplace *why)
{
    struct flexpu_noplace local;
    why = why ? why : &local;
    if (!out) {
        snprintf(why->text, sizeof(why->text), "out: NULL");
        return FLEXPU_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    out->place.node = -1;
    /* Room as it is: nothing to evict (this also validates req). */
    int rc = flexpu_engine_decide_filtered(e, req, f, NULL, &out->place, why);
    if (rc != FLEXPU_ENOFIT)
        return rc;
    if (ncand > 0 && !evicted) {
        snprintf(why->text, sizeof(why->text), "evicted: NULL for %d candidates", ncand);
        return FLEXPU_EINVAL;
    }
    struct fx_vsearch s = {.e = e, .c = cands, .nc = ncand, .f = f};
    flexpu_engine_effective_req(e, req, &s.r);
    struct flexpu_noplace fit = *why;
    rc = fx_victim_search_init(&s, why);
    if (rc == 0)
        rc = search_nodes(&s, out, evicted);
    fx_victim_search_failed(rc, ncand, "node", &fit, why);
    if (rc) {
        memset(out, 0, sizeof(*out));
        out->place.node = -1;
    }
    fx_victim_search_free(&s);
    return rc;
}
