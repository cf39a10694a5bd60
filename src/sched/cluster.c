/* SPDX-License-Identifier: Apache-2.0 */
/* The cluster model: nodes, their classes of identical state, allocations,
 * and the incremental totals. Everything that changes the engine's state
 * lives here; deciding (place.c) only reads it. */
#include "sched/engine.h"
#include "sched/policy.h"
#include "sched/ties.h"

#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "util/alloc.h"
#include "util/fnv.h"

struct flexpu_engine *flexpu_engine_new(void)
{
    struct flexpu_engine *e = fx_calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->policy = fx_policy_find("flexpu");
    e->nbuckets = 64;
    e->buckets = fx_calloc((size_t)e->nbuckets, sizeof(*e->buckets));
    if (!e->buckets) {
        fx_free(e);
        return NULL;
    }
    e->next_alloc_id = 1;
    e->wl_epoch = 1;
    e->memo_epoch = 1;
    return e;
}

void flexpu_engine_free(struct flexpu_engine *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->nlive; i++)
        fx_free(e->live[i]);
    while (e->spare) {
        struct fx_class *next = e->spare->chain;
        fx_free(e->spare);
        e->spare = next;
    }
    fx_attrs_free_all(e);
    fx_free(e->live);
    fx_free(e->type_rep);
    fx_free(e->buckets);
    fx_free(e->nodes);
    fx_free(e->allocs);
    fx_free(e->topo_keys);
    fx_workload_clear(&e->wl);
    fx_free(e);
}

const char *fx_model_name(const struct flexpu_engine *e, int id)
{
    return id >= 0 && id < e->nmodels ? e->models[id] : "?";
}

static int model_intern(struct flexpu_engine *e, const char *name, size_t len,
                        struct flexpu_error *err)
{
    for (int i = 0; i < e->nmodels; i++)
        if (strlen(e->models[i]) == len && memcmp(e->models[i], name, len) == 0)
            return i;
    if (len == 0 || len >= FLEXPU_NAME_MAX)
        return flexpu_error_field(err, FLEXPU_EINVAL, "gpu model", name, len,
                                  len ? "longer than 63 bytes" : "empty model name");
    if (e->nmodels == FLEXPU_MAX_MODELS)
        return flexpu_error_field(err, FLEXPU_ERANGE, "gpu model", name, len,
                                  "more than 64 distinct GPU models");
    memcpy(e->models[e->nmodels], name, len);
    e->models[e->nmodels][len] = '\0';
    return e->nmodels++;
}

int flexpu_engine_models(struct flexpu_engine *e, const char *spec, uint64_t *mask,
                         struct flexpu_error *err)
{
    uint64_t m = 0;
    const char *p = spec ? spec : "";
    while (*p) {
        size_t n = strcspn(p, "|, ");
        if (n > 0) {
            int id = model_intern(e, p, n, err);
            if (id < 0)
                return id;
            m |= 1ULL << id;
        }
        p += n;
        if (*p)
            p++;
    }
    *mask = m;
    return 0;
}

/* ---- classes ---------------------------------------------------------- */

static int cmp_gpu(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

static void make_key(const struct fx_node *n, struct fx_key *k)
{
    memset(k, 0, sizeof(*k));
    k->type = n->type;
    k->ngpu = n->ngpu;
    k->cpu_used = n->cpu_used;
    k->mem_used = n->mem_used;
    if (n->symmetric) {
        /* Interchangeable GPUs: the multiset of usages is the state. */
        int64_t pairs[FLEXPU_MAX_GPUS][2];
        for (int g = 0; g < n->ngpu; g++) {
            pairs[g][0] = n->gused[g];
            pairs[g][1] = n->gmem_used[g];
        }
        qsort(pairs, (size_t)n->ngpu, sizeof(pairs[0]), cmp_gpu);
        for (int g = 0; g < n->ngpu; g++) {
            k->gused[g] = (int32_t)pairs[g][0];
            k->gmem_used[g] = pairs[g][1];
        }
    } else {
        for (int g = 0; g < n->ngpu; g++) {
            k->gused[g] = n->gused[g];
            k->gmem_used[g] = n->gmem_used[g];
        }
    }
}

static uint64_t hash_key(const struct fx_key *k)
{
    return fx_fnv1a(FX_FNV1A_OFFSET, k, sizeof(*k));
}

static int grow_buckets(struct flexpu_engine *e)
{
    int nb = e->nbuckets * 2;
    struct fx_class **b = fx_calloc((size_t)nb, sizeof(*b));
    if (!b)
        return FLEXPU_ENOMEM;
    for (int i = 0; i < e->nbuckets; i++) {
        struct fx_class *c = e->buckets[i];
        while (c) {
            struct fx_class *next = c->chain;
            size_t slot = c->hash & (uint64_t)(nb - 1);
            c->chain = b[slot];
            b[slot] = c;
            c = next;
        }
    }
    fx_free(e->buckets);
    e->buckets = b;
    e->nbuckets = nb;
    return 0;
}

/* Finds the class for key, creating it (and reserving room) if needed. */
static struct fx_class *class_get(struct flexpu_engine *e, const struct fx_key *k)
{
    uint64_t h = hash_key(k);
    for (struct fx_class *c = e->buckets[h & (uint64_t)(e->nbuckets - 1)]; c; c = c->chain)
        if (c->hash == h && memcmp(&c->key, k, sizeof(*k)) == 0)
            return c;
    if (e->nlive >= e->nbuckets && grow_buckets(e) != 0)
        return NULL;
    if (e->nlive == e->cap_live) {
        int cap = e->cap_live ? e->cap_live * 2 : 64;
        struct fx_class **l = fx_realloc(e->live, (size_t)cap * sizeof(*l));
        if (!l)
            return NULL;
        e->live = l;
        e->cap_live = cap;
    }
    struct fx_class *c = e->spare;
    if (c) {
        e->spare = c->chain;
        memset(c, 0, sizeof(*c));
    } else if (!(c = fx_calloc(1, sizeof(*c)))) {
        return NULL;
    }
    c->key = *k;
    c->hash = h;
    c->head = -1;
    size_t slot = h & (uint64_t)(e->nbuckets - 1);
    c->chain = e->buckets[slot];
    e->buckets[slot] = c;
    c->live_idx = e->nlive;
    e->live[e->nlive++] = c;
    return c;
}

static void class_drop(struct flexpu_engine *e, struct fx_class *c)
{
    struct fx_class **pp = &e->buckets[c->hash & (uint64_t)(e->nbuckets - 1)];
    while (*pp != c)
        pp = &(*pp)->chain;
    *pp = c->chain;
    struct fx_class *last = e->live[--e->nlive];
    e->live[c->live_idx] = last;
    last->live_idx = c->live_idx;
    c->chain = e->spare; /* never more than the most classes ever live at once */
    e->spare = c;
}

/* A class's fragmentation is computed once, when its first member joins
 * (every member has the same state), and again only when the workload
 * changes (fx_refrag). */
static void class_set_frag(struct flexpu_engine *e, struct fx_class *c, const struct fx_node *n)
{
    struct fx_view v;
    fx_view_of(n, &v);
    c->frag = fx_frag(&e->wl, &v);
    for (int k = 0; k < FX_ROOM_SETS; k++) /* 0 past the workload's sets */
        c->room[k] = fx_workload_set_room(&e->wl, k, &v);
    c->frag_epoch = e->wl_epoch;
}

/* A node's priority: splitmix64's finaliser over (seed, id), so that every
 * seed gives an unrelated random order of the nodes and a node added later
 * gets its place without renumbering the others. */
static uint64_t node_prio(uint64_t seed, int id)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ULL + (uint64_t)id + 0x632be59bd9b4e019ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int prio_less(const struct flexpu_engine *e, int a, int b)
{
    uint64_t pa = e->nodes[a].prio, pb = e->nodes[b].prio;
    return pa < pb || (pa == pb && a < b);
}

static void node_unlink(struct flexpu_engine *e, struct fx_node *n)
{
    struct fx_class *c = n->cls;
    e->frag_total -= c->frag;
    for (int k = 0; k < e->wl.nsets; k++)
        e->room_total[k] -= c->room[k];
    if (n->prev >= 0)
        e->nodes[n->prev].next = n->next;
    else
        c->head = n->next;
    if (n->next >= 0)
        e->nodes[n->next].prev = n->prev;
    n->cls = NULL;
    if (c->prio_min == (int)(n - e->nodes))
        c->prio_min = -1; /* found again by a scan when next asked */
    if (--c->count == 0)
        class_drop(e, c);
}

static void node_join(struct flexpu_engine *e, int id, struct fx_class *c)
{
    struct fx_node *n = &e->nodes[id];
    if (c->count == 0) {
        class_set_frag(e, c, n);
        c->prio_min = id;
    } else if (c->prio_min >= 0 && prio_less(e, id, c->prio_min)) {
        c->prio_min = id;
    }
    n->cls = c;
    n->prev = -1;
    n->next = c->head;
    if (c->head >= 0)
        e->nodes[c->head].prev = id;
    c->head = id;
    c->count++;
    e->frag_total += c->frag;
    for (int k = 0; k < e->wl.nsets; k++)
        e->room_total[k] += c->room[k];
}

static struct fx_class *class_of_state(struct flexpu_engine *e, const struct fx_node *n)
{
    struct fx_key k;
    make_key(n, &k);
    return class_get(e, &k);
}

/* ---- tie priorities --------------------------------------------------- */

int fx_class_prio_node(struct flexpu_engine *e, struct fx_class *c)
{
    if (c->prio_min < 0) {
        int best = c->head;
        for (int id = e->nodes[best].next; id >= 0; id = e->nodes[id].next)
            if (prio_less(e, id, best))
                best = id;
        c->prio_min = best;
    }
    return c->prio_min;
}

void fx_engine_set_ties(struct flexpu_engine *e, enum fx_ties ties, uint64_t seed)
{
    e->ties = (int)ties;
    e->tie_seed = seed;
    for (int i = 0; i < e->nnodes; i++)
        e->nodes[i].prio = node_prio(seed, i);
    for (int i = 0; i < e->nlive; i++)
        e->live[i]->prio_min = -1;
}

enum fx_ties fx_engine_ties(const struct flexpu_engine *e)
{
    return e->ties != FX_TIES_POLICY ? (enum fx_ties)e->ties : (enum fx_ties)e->policy->ties;
}

uint64_t fx_engine_node_priority(const struct flexpu_engine *e, int id)
{
    return id >= 0 && id < e->nnodes ? e->nodes[id].prio : UINT64_MAX;
}

const char *fx_ties_name(enum fx_ties t)
{
    switch (t) {
    case FX_TIES_RANDOM:
        return "random";
    case FX_TIES_NODE_PRIORITY:
        return "priority";
    default:
        return "policy";
    }
}

int fx_ties_parse(const char *s, enum fx_ties *out)
{
    static const enum fx_ties all[] = {FX_TIES_POLICY, FX_TIES_RANDOM, FX_TIES_NODE_PRIORITY};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (s && strcmp(s, fx_ties_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    return -1;
}

/* Re-derives every class's fragmentation after the workload changed. */
void fx_refrag(struct flexpu_engine *e)
{
    e->wl_epoch++;
    e->memo_epoch++;
    e->frag_total = 0;
    memset(e->room_total, 0, sizeof(e->room_total));
    for (int i = 0; i < e->nlive; i++) {
        struct fx_class *c = e->live[i];
        class_set_frag(e, c, &e->nodes[c->head]);
        e->frag_total += c->frag * c->count;
        for (int k = 0; k < e->wl.nsets; k++)
            e->room_total[k] += c->room[k] * c->count;
    }
}

/* ---- nodes ------------------------------------------------------------ */

static int same_spec(const struct fx_node *a, const struct fx_node *b)
{
    if (a->cpu_cap != b->cpu_cap || a->mem_cap != b->mem_cap || a->ngpu != b->ngpu ||
        a->attrs != b->attrs)
        return 0;
    for (int g = 0; g < a->ngpu; g++)
        if (a->model[g] != b->model[g] || a->gmem_cap[g] != b->gmem_cap[g] ||
            a->topo[g] != b->topo[g] || a->numa[g] != b->numa[g])
            return 0;
    return 1;
}

/* Types are few (a cluster has a handful of node kinds): a scan of one
 * representative per type is cheap and keeps adding 10,000 nodes linear. */
static int assign_type(struct flexpu_engine *e, struct fx_node *n)
{
    for (int t = 0; t < e->ntypes; t++) {
        if (same_spec(&e->nodes[e->type_rep[t]], n)) {
            n->type = t;
            return 0;
        }
    }
    if (e->ntypes == e->cap_types) {
        int cap = e->cap_types ? e->cap_types * 2 : 16;
        int *r = fx_realloc(e->type_rep, (size_t)cap * sizeof(*r));
        if (!r)
            return FLEXPU_ENOMEM;
        e->type_rep = r;
        e->cap_types = cap;
    }
    e->type_rep[e->ntypes] = e->nnodes; /* the node about to be added */
    n->type = e->ntypes++;
    /* The type keeps its label set: its representative may be removed, and
     * the set's id must not go to another set while the type can match. */
    fx_attrs_ref(e, n->attrs);
    return 0;
}

static int validate_node(const struct flexpu_node_info *in, struct flexpu_error *err)
{
    char buf[32];
    if (!in->name || !*in->name || strlen(in->name) >= FLEXPU_NAME_MAX)
        return flexpu_error_field(err, FLEXPU_EINVAL, "node.name", in->name ? in->name : "",
                                  in->name ? strlen(in->name) : 0,
                                  "must be 1 to 63 bytes");
    if (in->cpu_milli < 0 || in->mem_mib < 0) {
        snprintf(buf, sizeof(buf), "%lld", (long long)(in->cpu_milli < 0 ? in->cpu_milli
                                                                         : in->mem_mib));
        return flexpu_error_field(err, FLEXPU_EINVAL,
                                  in->cpu_milli < 0 ? "node.cpu_milli" : "node.mem_mib", buf,
                                  strlen(buf), "must not be negative");
    }
    if (in->ngpu < 0 || in->ngpu > FLEXPU_MAX_GPUS) {
        snprintf(buf, sizeof(buf), "%d", in->ngpu);
        return flexpu_error_field(err, FLEXPU_EINVAL, "node.gpus", buf, strlen(buf),
                                  "must be between 0 and 16");
    }
    for (int g = 0; g < in->ngpu; g++) {
        const struct flexpu_gpu_info *gi = &in->gpus[g];
        if (!gi->model || !*gi->model)
            return flexpu_error_set(err, FLEXPU_EINVAL,
                                    "node %s: field 'gpu[%d].model': empty model name", in->name,
                                    g);
        if (gi->mem_mib < 0) {
            snprintf(buf, sizeof(buf), "%lld", (long long)gi->mem_mib);
            return flexpu_error_field(err, FLEXPU_EINVAL, "gpu.mem_mib", buf, strlen(buf),
                                      "must not be negative");
        }
    }
    return 0;
}

static int ensure_node_room(struct flexpu_engine *e)
{
    if (e->nnodes < e->cap_nodes)
        return 0;
    int cap = e->cap_nodes ? e->cap_nodes * 2 : 64;
    struct fx_node *nn = fx_realloc(e->nodes, (size_t)cap * sizeof(*nn));
    if (!nn)
        return FLEXPU_ENOMEM;
    e->nodes = nn;
    e->cap_nodes = cap;
    return 0;
}

int flexpu_engine_add_node(struct flexpu_engine *e, const struct flexpu_node_info *in, int *id,
                           struct flexpu_error *err)
{
    int rc = validate_node(in, err);
    if (rc)
        return rc;
    if (flexpu_engine_node_find(e, in->name) >= 0)
        return flexpu_error_field(err, FLEXPU_EEXIST, "node.name", in->name, strlen(in->name),
                                  "a node with this name exists");
    uint8_t models[FLEXPU_MAX_GPUS];
    for (int g = 0; g < in->ngpu; g++) {
        rc = model_intern(e, in->gpus[g].model, strlen(in->gpus[g].model), err);
        if (rc < 0)
            return rc;
        models[g] = (uint8_t)rc;
    }
    if (ensure_node_room(e))
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory adding node %s", in->name);
    struct fx_node n;
    memset(&n, 0, sizeof(n));
    memcpy(n.name, in->name, strlen(in->name) + 1);
    rc = fx_attrs_intern(e, in, &n.attrs, err);
    if (rc)
        return rc;
    n.alive = 1;
    n.type = -1;
    n.cpu_cap = in->cpu_milli;
    n.mem_cap = in->mem_mib;
    n.ngpu = in->ngpu;
    n.symmetric = 1;
    for (int g = 0; g < in->ngpu; g++) {
        n.model[g] = models[g];
        n.model_mask |= 1ULL << models[g];
        n.gmem_cap[g] = in->gpus[g].mem_mib;
        n.numa[g] = (int8_t)(in->gpus[g].numa < -1 || in->gpus[g].numa > 127 ? -1
                                                                               : in->gpus[g].numa);
        n.topo[g] = (int16_t)in->gpus[g].topo_group;
        if (g > 0 && (n.model[g] != n.model[0] || n.gmem_cap[g] != n.gmem_cap[0] ||
                      n.topo[g] != n.topo[0] || n.numa[g] != n.numa[0]))
            n.symmetric = 0;
    }
    if (assign_type(e, &n)) {
        fx_attrs_unref(e, n.attrs);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory adding node %s", in->name);
    }
    int nid = e->nnodes;
    n.prio = node_prio(e->tie_seed, nid);
    e->nodes[nid] = n;
    struct fx_class *c = class_of_state(e, &e->nodes[nid]);
    if (!c) {
        if (n.type == e->ntypes - 1 && e->type_rep[n.type] == nid) {
            e->ntypes--; /* the type was made for this node */
            fx_attrs_unref(e, n.attrs);
        }
        fx_attrs_unref(e, n.attrs);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory adding node %s", in->name);
    }
    e->nnodes++;
    node_join(e, nid, c);
    if (n.attrs >= 0 && e->attrs[n.attrs]->prefer_taints)
        e->prefer_nodes++;
    struct flexpu_stats *s = &e->stats;
    s->nodes++;
    s->gpus += n.ngpu;
    s->gpus_idle += n.ngpu;
    s->gpu_milli_total += (int64_t)n.ngpu * FLEXPU_GPU_MILLI;
    s->cpu_milli_total += n.cpu_cap;
    s->mem_mib_total += n.mem_cap;
    if (n.cpu_cap > e->max_node_cpu)
        e->max_node_cpu = n.cpu_cap;
    if (n.ngpu > e->max_node_gpus)
        e->max_node_gpus = n.ngpu;
    if (id)
        *id = nid;
    return 0;
}

int flexpu_engine_node_count(const struct flexpu_engine *e)
{
    return e->stats.nodes;
}

int flexpu_engine_node_find(const struct flexpu_engine *e, const char *name)
{
    for (int i = 0; i < e->nnodes; i++)
        if (e->nodes[i].alive && strcmp(e->nodes[i].name, name) == 0)
            return i;
    return -1;
}

const char *flexpu_engine_node_name(const struct flexpu_engine *e, int id)
{
    return id >= 0 && id < e->nnodes ? e->nodes[id].name : NULL;
}

static struct fx_node *live_node(const struct flexpu_engine *e, int id)
{
    return id >= 0 && id < e->nnodes && e->nodes[id].alive ? &e->nodes[id] : NULL;
}

int flexpu_engine_gpu_free_milli(const struct flexpu_engine *e, int node, int gpu)
{
    struct fx_node *n = live_node(e, node);
    return n && gpu >= 0 && gpu < n->ngpu ? FLEXPU_GPU_MILLI - n->gused[gpu] : -1;
}

int64_t flexpu_engine_gpu_free_mem(const struct flexpu_engine *e, int node, int gpu)
{
    struct fx_node *n = live_node(e, node);
    return n && gpu >= 0 && gpu < n->ngpu ? n->gmem_cap[gpu] - n->gmem_used[gpu] : -1;
}

int64_t flexpu_engine_node_free_cpu(const struct flexpu_engine *e, int node)
{
    struct fx_node *n = live_node(e, node);
    return n ? n->cpu_cap - n->cpu_used : -1;
}

int64_t flexpu_engine_node_free_mem(const struct flexpu_engine *e, int node)
{
    struct fx_node *n = live_node(e, node);
    return n ? n->mem_cap - n->mem_used : -1;
}

/* ---- views ------------------------------------------------------------ */

void fx_view_of(const struct fx_node *n, struct fx_view *v)
{
    v->cpu_free = n->cpu_cap - n->cpu_used;
    v->mem_free = n->mem_cap - n->mem_used;
    v->ngpu = n->ngpu;
    for (int g = 0; g < n->ngpu; g++) {
        v->free[g] = FLEXPU_GPU_MILLI - n->gused[g];
        v->gmem_free[g] = n->gmem_cap[g] ? n->gmem_cap[g] - n->gmem_used[g] : INT64_MAX;
        v->model[g] = n->model[g];
        v->topo[g] = n->topo[g];
    }
}

int fx_gpu_fits(const struct fx_view *v, int g, const struct flexpu_pod_req *r)
{
    if (r->model_mask && !(r->model_mask & (1ULL << v->model[g])))
        return 0;
    return v->free[g] >= r->gpu_milli && v->gmem_free[g] >= r->gpu_mem_mib;
}

int64_t fx_view_idle(const struct fx_view *v)
{
    int64_t total = 0;
    for (int g = 0; g < v->ngpu; g++)
        total += v->free[g];
    return total;
}

void fx_view_apply(struct fx_view *v, const struct flexpu_pod_req *r,
                   const struct flexpu_placement *p)
{
    v->cpu_free -= r->cpu_milli;
    v->mem_free -= r->mem_mib;
    for (int i = 0; i < p->ngpu; i++) {
        v->free[p->gpu[i]] -= p->milli[i];
        if (v->gmem_free[p->gpu[i]] != INT64_MAX)
            v->gmem_free[p->gpu[i]] -= p->gpu_mem_mib[i];
    }
}

/* ---- allocations ------------------------------------------------------ */

static struct fx_alloc *alloc_slot(const struct flexpu_engine *e, int64_t id)
{
    if (!e->cap_allocs)
        return NULL;
    for (int64_t i = id & (e->cap_allocs - 1);; i = (i + 1) & (e->cap_allocs - 1)) {
        if (e->allocs[i].id == id || e->allocs[i].id == 0)
            return &e->allocs[i];
    }
}

static int alloc_grow(struct flexpu_engine *e)
{
    if ((e->nallocs + 1) * 2 <= e->cap_allocs)
        return 0;
    int64_t cap = e->cap_allocs ? e->cap_allocs * 2 : 256;
    struct fx_alloc *old = e->allocs;
    int64_t oldcap = e->cap_allocs;
    struct fx_alloc *a = fx_calloc((size_t)cap, sizeof(*a));
    if (!a)
        return FLEXPU_ENOMEM;
    e->allocs = a;
    e->cap_allocs = cap;
    for (int64_t i = 0; i < oldcap; i++)
        if (old[i].id)
            *alloc_slot(e, old[i].id) = old[i];
    fx_free(old);
    return 0;
}

/* Removes the entry at slot by backward-shift deletion (no tombstones, so
 * lookups stay short however many allocations come and go). */
static void alloc_erase(struct flexpu_engine *e, struct fx_alloc *slot)
{
    int64_t mask = e->cap_allocs - 1;
    int64_t i = slot - e->allocs;
    for (int64_t j = (i + 1) & mask; e->allocs[j].id; j = (j + 1) & mask) {
        int64_t home = e->allocs[j].id & mask;
        /* Move j back to i if i lies cyclically in [home, j). */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            e->allocs[i] = e->allocs[j];
            i = j;
        }
    }
    e->allocs[i].id = 0;
    e->nallocs--;
}

static int check_fit(const struct flexpu_engine *e, const struct flexpu_pod_req *r,
                     const struct flexpu_placement *p, struct flexpu_error *err)
{
    const struct fx_node *n = live_node(e, p->node);
    if (!n)
        return flexpu_error_set(err, FLEXPU_ENOENT, "placement: no node with id %d", p->node);
    if (p->ngpu != r->num_gpu)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "placement on %s: %d GPUs given for a request of %d", n->name,
                                p->ngpu, r->num_gpu);
    if (n->cpu_used + r->cpu_milli > n->cpu_cap)
        return flexpu_error_set(err, FLEXPU_ENOFIT,
                                "node %s: insufficient cpu (%lldm free, %lldm asked)", n->name,
                                (long long)(n->cpu_cap - n->cpu_used), (long long)r->cpu_milli);
    if (n->mem_used + r->mem_mib > n->mem_cap)
        return flexpu_error_set(err, FLEXPU_ENOFIT,
                                "node %s: insufficient memory (%lldMi free, %lldMi asked)",
                                n->name, (long long)(n->mem_cap - n->mem_used),
                                (long long)r->mem_mib);
    struct fx_view v;
    fx_view_of(n, &v);
    uint32_t seen = 0;
    for (int i = 0; i < p->ngpu; i++) {
        int g = p->gpu[i];
        if (g < 0 || g >= n->ngpu || (seen & (1u << g)))
            return flexpu_error_set(err, FLEXPU_EINVAL,
                                    "placement on %s: GPU index %d invalid or repeated", n->name,
                                    g);
        seen |= 1u << g;
        if (p->milli[i] < r->gpu_milli || p->milli[i] > FLEXPU_GPU_MILLI ||
            p->gpu_mem_mib[i] < r->gpu_mem_mib)
            return flexpu_error_set(err, FLEXPU_EINVAL,
                                    "placement on %s: GPU %d granted less than asked", n->name,
                                    g);
        struct flexpu_pod_req one = *r;
        one.gpu_milli = p->milli[i];
        one.gpu_mem_mib = p->gpu_mem_mib[i];
        if (!fx_gpu_fits(&v, g, &one))
            return flexpu_error_set(err, FLEXPU_ENOFIT,
                                    "node %s GPU %d: %d milli and %lld MiB free, cannot hold %d "
                                    "milli and %lld MiB (or model not allowed)",
                                    n->name, g, v.free[g],
                                    (long long)(v.gmem_free[g] == INT64_MAX ? -1
                                                                            : v.gmem_free[g]),
                                    one.gpu_milli, (long long)one.gpu_mem_mib);
    }
    return 0;
}

/* Adds sign * (r, p) to node usage and to the totals. */
static void apply_usage(struct flexpu_engine *e, const struct flexpu_pod_req *r,
                        const struct flexpu_placement *p, int sign)
{
    struct fx_node *n = &e->nodes[p->node];
    struct flexpu_stats *s = &e->stats;
    n->cpu_used += sign * r->cpu_milli;
    n->mem_used += sign * r->mem_mib;
    s->cpu_milli_used += sign * r->cpu_milli;
    s->mem_mib_used += sign * r->mem_mib;
    for (int i = 0; i < p->ngpu; i++) {
        int g = p->gpu[i];
        int before = n->gused[g];
        n->gused[g] += sign * p->milli[i];
        n->gmem_used[g] += sign * p->gpu_mem_mib[i];
        s->gpu_milli_used += sign * p->milli[i];
        int after = n->gused[g];
        s->gpus_idle += (after == 0) - (before == 0);
        s->gpus_shared += (after > 0 && after < FLEXPU_GPU_MILLI) -
                          (before > 0 && before < FLEXPU_GPU_MILLI);
    }
    n->nallocs += sign;
    s->allocations += sign;
}

/* Applies a usage change and moves the node to the class of its new state.
 * The target class is found (or made) before anything moves, so running out
 * of memory leaves the engine exactly as it was. */
static int change_usage(struct flexpu_engine *e, const struct flexpu_pod_req *r,
                        const struct flexpu_placement *p, int sign)
{
    struct fx_node *n = &e->nodes[p->node];
    apply_usage(e, r, p, sign);
    struct fx_class *to = class_of_state(e, n);
    if (!to) {
        apply_usage(e, r, p, -sign);
        return FLEXPU_ENOMEM;
    }
    if (to != n->cls) {
        node_unlink(e, n);
        node_join(e, p->node, to);
    }
    return 0;
}

int flexpu_engine_assign(struct flexpu_engine *e, const struct flexpu_pod_req *r,
                         const struct flexpu_placement *p, int64_t *alloc_id,
                         struct flexpu_error *err)
{
    int rc = flexpu_req_validate(r, err);
    if (rc)
        return rc;
    rc = check_fit(e, r, p, err);
    if (rc)
        return rc;
    if (alloc_grow(e))
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory recording an allocation");
    if (change_usage(e, r, p, +1))
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory moving node %s",
                                e->nodes[p->node].name);
    int64_t id = e->next_alloc_id++;
    struct fx_alloc *a = alloc_slot(e, id);
    a->id = id;
    a->req = *r;
    a->p = *p;
    e->nallocs++;
    if (alloc_id)
        *alloc_id = id;
    return 0;
}

/* ---- visit order -------------------------------------------------------- */

int fx_order_save(const struct flexpu_engine *e, struct fx_order *o)
{
    o->nclasses = e->nlive;
    o->nodes = fx_malloc(((size_t)e->stats.nodes + 1) * sizeof(*o->nodes));
    o->start = fx_malloc(((size_t)e->nlive + 1) * sizeof(*o->start));
    if (!o->nodes || !o->start) {
        fx_order_free(o);
        return FLEXPU_ENOMEM;
    }
    int k = 0;
    for (int i = 0; i < e->nlive; i++) {
        o->start[i] = k;
        for (int id = e->live[i]->head; id >= 0; id = e->nodes[id].next)
            o->nodes[k++] = id;
    }
    o->start[e->nlive] = k;
    return 0;
}

void fx_order_restore(struct flexpu_engine *e, const struct fx_order *o)
{
    if (!o->nodes || o->nclasses != e->nlive)
        return; /* not the same classes: nothing to put back */
    for (int i = 0; i < o->nclasses; i++) {
        struct fx_class *c = e->nodes[o->nodes[o->start[i]]].cls;
        e->live[i] = c;
        c->live_idx = i;
        int prev = -1;
        for (int k = o->start[i]; k < o->start[i + 1]; k++) {
            int id = o->nodes[k];
            e->nodes[id].prev = prev;
            e->nodes[id].next = -1;
            if (prev >= 0)
                e->nodes[prev].next = id;
            else
                c->head = id;
            prev = id;
        }
    }
}

void fx_order_free(struct fx_order *o)
{
    fx_free(o->nodes);
    fx_free(o->start);
    o->nodes = o->start = NULL;
}

const struct fx_alloc *fx_alloc_find(const struct flexpu_engine *e, int64_t id)
{
    const struct fx_alloc *a = id > 0 ? alloc_slot(e, id) : NULL;
    return a && a->id == id ? a : NULL;
}

int flexpu_engine_alloc_get(const struct flexpu_engine *e, int64_t alloc_id,
                            struct flexpu_pod_req *req, struct flexpu_placement *p,
                            struct flexpu_error *err)
{
    const struct fx_alloc *a = fx_alloc_find(e, alloc_id);
    if (!a)
        return flexpu_error_set(err, FLEXPU_ENOENT, "no allocation with id %lld",
                                (long long)alloc_id);
    *req = a->req;
    *p = a->p;
    return 0;
}

int flexpu_engine_release(struct flexpu_engine *e, int64_t alloc_id, struct flexpu_error *err)
{
    struct fx_alloc *a = alloc_id > 0 ? alloc_slot(e, alloc_id) : NULL;
    if (!a || a->id != alloc_id)
        return flexpu_error_set(err, FLEXPU_ENOENT, "no allocation with id %lld",
                                (long long)alloc_id);
    if (change_usage(e, &a->req, &a->p, -1))
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory releasing allocation %lld",
                                (long long)alloc_id);
    alloc_erase(e, a);
    return 0;
}

int flexpu_engine_remove_node(struct flexpu_engine *e, int id, int *released,
                              struct flexpu_error *err)
{
    struct fx_node *n = live_node(e, id);
    if (!n)
        return flexpu_error_set(err, FLEXPU_ENOENT, "no node with id %d", id);
    int count = 0;
    for (int64_t i = 0; i < e->cap_allocs && n->nallocs > 0;) {
        if (e->allocs[i].id && e->allocs[i].p.node == id) {
            int rc = flexpu_engine_release(e, e->allocs[i].id, err);
            if (rc)
                return rc;
            count++;
            continue; /* backward shift may have moved another entry here */
        }
        i++;
    }
    node_unlink(e, n);
    n->alive = 0;
    if (n->attrs >= 0 && e->attrs[n->attrs]->prefer_taints)
        e->prefer_nodes--;
    fx_attrs_unref(e, n->attrs); /* the node's; its type may keep the set */
    struct flexpu_stats *s = &e->stats;
    s->nodes--;
    s->gpus -= n->ngpu;
    s->gpus_idle -= n->ngpu;
    s->gpu_milli_total -= (int64_t)n->ngpu * FLEXPU_GPU_MILLI;
    s->cpu_milli_total -= n->cpu_cap;
    s->mem_mib_total -= n->mem_cap;
    if (released)
        *released = count;
    return 0;
}

void flexpu_engine_stats(const struct flexpu_engine *e, struct flexpu_stats *out)
{
    *out = e->stats;
    out->frag_milli = e->frag_total;
    out->classes = e->nlive;
}

/* ---- invariants ------------------------------------------------------- */

int flexpu_engine_check(const struct flexpu_engine *e, struct flexpu_error *err)
{
    struct flexpu_stats sum = {0};
    int members = 0;
    for (int i = 0; i < e->nnodes; i++) {
        const struct fx_node *n = &e->nodes[i];
        if (!n->alive)
            continue;
        sum.cpu_milli_used += n->cpu_used;
        if (n->cpu_used < 0 || n->cpu_used > n->cpu_cap || n->mem_used < 0 ||
            n->mem_used > n->mem_cap)
            return flexpu_error_set(err, FLEXPU_EINVAL, "node %s: cpu/memory over-committed",
                                    n->name);
        for (int g = 0; g < n->ngpu; g++) {
            if (n->gused[g] < 0 || n->gused[g] > FLEXPU_GPU_MILLI || n->gmem_used[g] < 0 ||
                (n->gmem_cap[g] && n->gmem_used[g] > n->gmem_cap[g]))
                return flexpu_error_set(err, FLEXPU_EINVAL, "node %s GPU %d over-committed",
                                        n->name, g);
            sum.gpu_milli_used += n->gused[g];
        }
        struct fx_key k;
        make_key(n, &k);
        if (!n->cls || memcmp(&n->cls->key, &k, sizeof(k)) != 0)
            return flexpu_error_set(err, FLEXPU_EINVAL, "node %s in the wrong class", n->name);
    }
    for (int i = 0; i < e->nlive; i++) {
        int c = 0, pm = e->live[i]->prio_min, pm_member = 0;
        for (int id = e->live[i]->head; id >= 0; id = e->nodes[id].next) {
            c++;
            pm_member |= id == pm;
            if (pm >= 0 && prio_less(e, id, pm))
                return flexpu_error_set(err, FLEXPU_EINVAL,
                                        "class %d: node %d wins ties over its cached winner", i,
                                        id);
        }
        if (c != e->live[i]->count || c == 0)
            return flexpu_error_set(err, FLEXPU_EINVAL, "class %d member count wrong", i);
        if (pm >= 0 && !pm_member)
            return flexpu_error_set(err, FLEXPU_EINVAL, "class %d: tie winner %d not a member",
                                    i, pm);
        members += c;
    }
    if (members != e->stats.nodes)
        return flexpu_error_set(err, FLEXPU_EINVAL, "%d nodes in classes, %d live", members,
                                e->stats.nodes);
    /* The fragmentation and change 10's rooms, kept as nodes change class,
     * against fresh sums (a class's cached values are those of its head). */
    double frag = 0;
    for (int i = 0; i < e->nlive; i++)
        frag += e->live[i]->frag * e->live[i]->count;
    if (fabs(frag - e->frag_total) > 1e-6 * (1.0 + fabs(frag)))
        return flexpu_error_set(err, FLEXPU_EINVAL, "fragmentation %.3f kept, %.3f summed",
                                e->frag_total, frag);
    double room[FX_ROOM_SETS] = {0};
    for (int i = 0; i < e->nnodes; i++) {
        struct fx_view v;
        if (!e->nodes[i].alive)
            continue;
        fx_view_of(&e->nodes[i], &v);
        for (int k = 0; k < e->wl.nsets; k++)
            room[k] += fx_workload_set_room(&e->wl, k, &v);
    }
    for (int k = 0; k < e->wl.nsets; k++) {
        if (fabs(room[k] - e->room_total[k]) > 1e-6 * (1.0 + room[k]))
            return flexpu_error_set(err, FLEXPU_EINVAL, "model set %d: room %.3f kept, %.3f summed",
                                    k, e->room_total[k], room[k]);
    }
    /* Label and taint sets: held by each live node and by each type. */
    int prefer = 0;
    int *refs = e->nattrs ? fx_calloc((size_t)e->nattrs, sizeof(*refs)) : NULL;
    for (int i = 0; i < e->nnodes; i++) {
        const struct fx_node *n = &e->nodes[i];
        if (!n->alive || n->attrs < 0)
            continue;
        if (n->attrs >= e->nattrs || !e->attrs[n->attrs]) {
            fx_free(refs);
            return flexpu_error_set(err, FLEXPU_EINVAL, "node %s: label set %d freed", n->name,
                                    n->attrs);
        }
        prefer += e->attrs[n->attrs]->prefer_taints > 0;
        if (refs)
            refs[n->attrs]++;
    }
    for (int t = 0; refs && t < e->ntypes; t++)
        if (e->nodes[e->type_rep[t]].attrs >= 0)
            refs[e->nodes[e->type_rep[t]].attrs]++;
    for (int a = 0; refs && a < e->nattrs; a++) {
        int held = e->attrs[a] ? e->attrs[a]->refs : 0;
        if (refs[a] != held) {
            int counted = refs[a];
            fx_free(refs);
            return flexpu_error_set(err, FLEXPU_EINVAL, "label set %d: %d references, %d counted",
                                    a, held, counted);
        }
    }
    fx_free(refs);
    if (prefer != e->prefer_nodes)
        return flexpu_error_set(err, FLEXPU_EINVAL, "%d nodes with PreferNoSchedule, %d counted",
                                prefer, e->prefer_nodes);
    struct flexpu_stats alloc_sum = {0};
    int64_t nalloc = 0;
    for (int64_t i = 0; i < e->cap_allocs; i++) {
        const struct fx_alloc *a = &e->allocs[i];
        if (!a->id)
            continue;
        nalloc++;
        alloc_sum.cpu_milli_used += a->req.cpu_milli;
        for (int g = 0; g < a->p.ngpu; g++)
            alloc_sum.gpu_milli_used += a->p.milli[g];
    }
    if (nalloc != e->nallocs || nalloc != e->stats.allocations)
        return flexpu_error_set(err, FLEXPU_EINVAL, "allocation count %lld != %lld",
                                (long long)nalloc, (long long)e->nallocs);
    if (sum.gpu_milli_used != e->stats.gpu_milli_used ||
        alloc_sum.gpu_milli_used != e->stats.gpu_milli_used ||
        sum.cpu_milli_used != e->stats.cpu_milli_used ||
        alloc_sum.cpu_milli_used != e->stats.cpu_milli_used)
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "totals drifted: gpu %lld/%lld/%lld cpu %lld/%lld/%lld",
                                (long long)sum.gpu_milli_used, (long long)alloc_sum.gpu_milli_used,
                                (long long)e->stats.gpu_milli_used, (long long)sum.cpu_milli_used,
                                (long long)alloc_sum.cpu_milli_used,
                                (long long)e->stats.cpu_milli_used);
    return 0;
}
