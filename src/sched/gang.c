/* SPDX-License-Identifier: Apache-2.0 */
/* Gangs: n requests placed all or none, preferring one node, then one
 * domain of each topology key in turn, then anywhere (include/flexpu/gang.h).
 *
 * An attempt assigns the members one by one, biggest first, each by the
 * engine's own decision limited to the node or domain (fx_decide_scoped),
 * and releases them all when one does not fit. Releasing restores usage
 * exactly; what assign/release leave different (the next allocation id,
 * the float sum of fragmentation, the order in which decisions visit the
 * classes and their members) is saved before and put back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/gang.h"
#include "sched/engine.h"
#include "sched/ties.h"
#include "util/alloc.h"

#define KEY_MAX 317 /* a qualified label key, as filter.c */

static const char *const default_keys[] = {"nvidia.com/gpu.clique",
                                           "topology.kubernetes.io/rack",
                                           "topology.kubernetes.io/zone"};

/* ---- topology keys ---------------------------------------------------- */

int flexpu_engine_set_topology_keys(struct flexpu_engine *e, const char *const *keys, int n,
                                    struct flexpu_error *err)
{
    if (!keys) {
        fx_free(e->topo_keys);
        e->topo_keys = NULL;
        e->ntopo_keys = 0;
        return 0;
    }
    if (n < 0 || n > FLEXPU_TOPOLOGY_KEYS_MAX) {
        char buf[16];
        snprintf(buf, sizeof(buf), "%d", n);
        return flexpu_error_field(err, FLEXPU_EINVAL, "topology_keys", buf, strlen(buf),
                                  "between 0 and 8 keys");
    }
    size_t bytes = 1;
    for (int i = 0; i < n; i++) {
        const char *k = keys[i] ? keys[i] : "";
        const char *why = NULL;
        if (!*k || strlen(k) > KEY_MAX)
            why = "a label key must be 1 to 317 bytes";
        else if (strcmp(k, FX_LABEL_HOSTNAME) == 0)
            why = "one node is already the first level";
        for (int j = 0; j < i && !why; j++)
            if (strcmp(keys[j], k) == 0)
                why = "the key appears twice";
        if (why)
            return flexpu_error_field(err, FLEXPU_EINVAL, "topology_keys", k, strlen(k), why);
        bytes += strlen(k) + 1;
    }
    char *buf = fx_malloc(bytes);
    if (!buf)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory setting topology keys");
    char *p = buf;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(keys[i]) + 1;
        memcpy(p, keys[i], len);
        p += len;
    }
    fx_free(e->topo_keys);
    e->topo_keys = buf;
    e->ntopo_keys = n;
    return 0;
}

int flexpu_engine_topology_keys(const struct flexpu_engine *e, const char **keys, int max)
{
    if (!e->topo_keys) {
        int n = (int)(sizeof(default_keys) / sizeof(default_keys[0]));
        for (int i = 0; i < n && i < max; i++)
            keys[i] = default_keys[i];
        return n;
    }
    const char *p = e->topo_keys;
    for (int i = 0; i < e->ntopo_keys; i++, p += strlen(p) + 1)
        if (i < max)
            keys[i] = p;
    return e->ntopo_keys;
}

const char *flexpu_gang_level_name(enum flexpu_gang_level level)
{
    switch (level) {
    case FLEXPU_GANG_NODE:
        return "node";
    case FLEXPU_GANG_DOMAIN:
        return "domain";
    case FLEXPU_GANG_ANYWHERE:
        return "anywhere";
    }
    return "?";
}

/* ---- capacity sums ---------------------------------------------------- */

/* What a gang asks, or what a node or domain has free, summed. Sums alone
 * would let a domain of scattered free GPUs pass for a gang of 8-GPU
 * members, so the biggest whole-GPU members are also counted against the
 * nodes that could each take some of them (`big`). */
struct room {
    int64_t gpu_milli; /* GPU compute */
    int64_t whole;     /* GPUs asked whole / GPUs entirely free */
    int64_t big;       /* members asking `kmax` whole GPUs / such members the nodes can take */
    int64_t cpu, mem;
};

/* Adds times the free room of node n; kmax is the gang's biggest whole-GPU
 * member's GPU count (0: none). */
static void room_of_node(const struct fx_node *n, int64_t times, int kmax, struct room *r)
{
    int whole = 0;
    r->cpu += times * (n->cpu_cap - n->cpu_used);
    r->mem += times * (n->mem_cap - n->mem_used);
    for (int g = 0; g < n->ngpu; g++) {
        r->gpu_milli += times * (FLEXPU_GPU_MILLI - n->gused[g]);
        whole += n->gused[g] == 0;
    }
    r->whole += times * whole;
    r->big += kmax > 0 ? times * (whole / kmax) : 0;
}

static int room_holds(const struct room *have, const struct room *need)
{
    return have->gpu_milli >= need->gpu_milli && have->whole >= need->whole &&
           have->big >= need->big && have->cpu >= need->cpu && have->mem >= need->mem;
}

/* Best fit: least GPU compute left, then CPU, then memory. */
static int room_cmp(const struct room *a, const struct room *b)
{
    if (a->gpu_milli != b->gpu_milli)
        return a->gpu_milli < b->gpu_milli ? -1 : 1;
    if (a->cpu != b->cpu)
        return a->cpu < b->cpu ? -1 : 1;
    if (a->mem != b->mem)
        return a->mem < b->mem ? -1 : 1;
    return 0;
}

/* ---- a gang in progress ----------------------------------------------- */

struct gang {
    struct flexpu_engine *e;
    struct flexpu_gang_member *m;
    int n;
    struct flexpu_pod_req *req; /* effective requests */
    int *order;                 /* members, biggest first */
    int placed;                 /* members of order[] assigned in this attempt */
    struct room need;
    int kmax;                   /* GPUs of the biggest whole-GPU member, 0: none */
    int name_dep;               /* some member's filter reads the node's name */
    struct flexpu_rng *rng;
    int64_t next_alloc_id;      /* saved, put back by rollback */
    double frag_total;
    double room_total[FX_ROOM_SETS];
    struct fx_order visit;      /* the engine's visit order, saved, put back by rollback */
    struct flexpu_noplace why;  /* the last attempt's first failure */
    int failed;                 /* that member's index, -1 */
};

static int64_t req_gpu(const struct flexpu_pod_req *r)
{
    return (int64_t)r->num_gpu * r->gpu_milli;
}

/* A member's size, to sort by: bigger first on GPU compute, GPU count, GPU
 * memory, CPU, memory; then the member's index, so the order is total
 * and repeatable. */
struct size_key {
    int64_t k[5];
    int idx;
};

static int cmp_size(const void *a, const void *b)
{
    const struct size_key *x = a, *y = b;
    for (int i = 0; i < 5; i++)
        if (x->k[i] != y->k[i])
            return x->k[i] > y->k[i] ? -1 : 1;
    return x->idx - y->idx;
}

int fx_gang_order(const struct flexpu_pod_req *req, int n, int *order)
{
    struct size_key *keys = fx_malloc((size_t)(n > 0 ? n : 1) * sizeof(*keys));
    if (!keys)
        return FLEXPU_ENOMEM;
    for (int i = 0; i < n; i++) {
        const struct flexpu_pod_req *r = &req[i];
        keys[i] = (struct size_key){{req_gpu(r), r->num_gpu, r->gpu_mem_mib * r->num_gpu,
                                     r->cpu_milli, r->mem_mib},
                                    i};
    }
    qsort(keys, (size_t)n, sizeof(*keys), cmp_size);
    for (int i = 0; i < n; i++)
        order[i] = keys[i].idx;
    fx_free(keys);
    return 0;
}

/* Releases the attempt's members and puts back what releasing alone
 * would leave different, so the engine decides as if nothing happened. */
static void rollback(struct gang *g)
{
    struct flexpu_error err;
    if (g->placed == 0)
        return;
    for (int i = g->placed - 1; i >= 0; i--) {
        struct flexpu_gang_member *m = &g->m[g->order[i]];
        flexpu_engine_release(g->e, m->alloc_id, &err);
        m->alloc_id = 0;
    }
    g->placed = 0;
    g->e->next_alloc_id = g->next_alloc_id;
    g->e->frag_total = g->frag_total;
    memcpy(g->e->room_total, g->room_total, sizeof(g->room_total));
    fx_order_restore(g->e, &g->visit);
}

static int same_shape(const struct flexpu_pod_req *a, const struct flexpu_pod_req *b)
{
    return a->cpu_milli == b->cpu_milli && a->mem_mib == b->mem_mib &&
           a->num_gpu == b->num_gpu && a->gpu_milli == b->gpu_milli &&
           a->gpu_mem_mib == b->gpu_mem_mib && a->model_mask == b->model_mask;
}

/* Assigns every member within scope, biggest first. keep_going: after a
 * member fails, go on with the others (to count how many fit); the attempt
 * fails all the same. Returns the members placed, or a negative error. */
static int attempt(struct gang *g, const struct fx_scope *scope, int keep_going)
{
    int ok = 0;
    g->failed = -1;
    for (int i = 0; i < g->n; i++) {
        int idx = g->order[i];
        struct flexpu_gang_member *m = &g->m[idx];
        /* A member asking what one that already failed asked (same shape,
         * same filter: sorted next to it) fails too: the cluster only got
         * fuller since. Its place is left as an earlier attempt set it, as
         * are those of the members after a failure when not keep_going:
         * never read, since this attempt fails whatever follows (it is
         * rolled back; on success every member was decided in the one
         * attempt that succeeded), and a place is out only on success
         * (gang.h): every caller reads places only then, or restores its
         * own copy (the scheduler's gang_around). */
        if (g->failed >= 0 && m->filter == g->m[g->failed].filter &&
            same_shape(&g->req[idx], &g->req[g->failed]))
            continue;
        struct flexpu_noplace why;
        int rc = fx_decide_scoped(g->e, &g->req[idx], m->filter, scope, g->rng, &m->place, &why);
        struct flexpu_error err;
        if (rc == 0) {
            rc = flexpu_engine_assign(g->e, &g->req[idx], &m->place, &m->alloc_id, &err);
            if (rc == FLEXPU_ENOMEM)
                return rc;
            if (rc)
                memcpy(why.text, err.msg, sizeof(why.text));
        }
        if (rc == 0) {
            /* Keep order[0..placed) the members holding an allocation. */
            int t = g->order[g->placed];
            g->order[g->placed] = idx;
            g->order[i] = t;
            g->placed++;
            ok++;
            continue;
        }
        if (g->failed < 0) {
            g->failed = idx;
            g->why = why;
        }
        if (!keep_going)
            break;
    }
    return ok;
}

/* One attempt that keeps the gang on success and undoes it otherwise.
 * 1: placed; 0: not; negative: error (undone). */
static int try_scope(struct gang *g, const struct fx_scope *scope)
{
    int rc = attempt(g, scope, 0);
    if (rc >= 0 && g->placed == g->n)
        return 1;
    rollback(g);
    return rc < 0 ? rc : 0;
}

/* ---- levels ----------------------------------------------------------- */

/* A node or domain that passed the aggregate check, with what it would
 * have left. */
struct cand {
    struct room left;
    uint64_t rank;     /* node level: the tie order among equal fits */
    int node;          /* node level */
    const char *value; /* domain level */
};

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    int c = room_cmp(&x->left, &y->left);
    if (c)
        return c;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    return x->value && y->value ? strcmp(x->value, y->value) : 0;
}

static struct room left_of(const struct room *have, const struct room *need)
{
    return (struct room){have->gpu_milli - need->gpu_milli, have->whole - need->whole,
                         have->big - need->big, have->cpu - need->cpu, have->mem - need->mem};
}

/* One node: every class that can hold the total, best fit first; each
 * class stands for all its members (same state, same labels) unless a
 * filter reads node names. Among equal fits, the engine's tie rule: node
 * priority when it is in force (the class's winner stands for it), else
 * node id. */
static int level_node(struct gang *g, struct cand *c, struct flexpu_gang_result *res)
{
    struct flexpu_engine *e = g->e;
    int by_prio = fx_engine_ties(e) == FX_TIES_NODE_PRIORITY;
    int nc = 0;
    for (int i = 0; i < e->nlive; i++) {
        struct fx_class *cls = e->live[i];
        struct room have = {0};
        room_of_node(&e->nodes[cls->head], 1, g->kmax, &have);
        if (!room_holds(&have, &g->need)) {
            res->skipped++;
            continue;
        }
        int first = by_prio && !g->name_dep ? fx_class_prio_node(e, cls) : cls->head;
        for (int id = first; id >= 0; id = g->name_dep ? e->nodes[id].next : -1)
            c[nc++] = (struct cand){left_of(&have, &g->need),
                                    by_prio ? e->nodes[id].prio : (uint64_t)id, id, NULL};
    }
    qsort(c, (size_t)nc, sizeof(*c), cmp_cand);
    for (int i = 0; i < nc; i++) {
        res->tried++;
        struct fx_scope s = {c[i].node, NULL, NULL};
        int rc = try_scope(g, &s);
        if (rc)
            return rc;
    }
    return 0;
}

struct labelled {
    const char *value;
    const struct fx_class *cls;
};

static int cmp_labelled(const void *a, const void *b)
{
    return strcmp(((const struct labelled *)a)->value, ((const struct labelled *)b)->value);
}

/* The domains of one key: classes by label value, summed, those that can
 * hold the total tried best fit first. */
static int level_key(struct gang *g, const char *key, struct labelled *lab, struct cand *c,
                     struct flexpu_gang_result *res)
{
    struct flexpu_engine *e = g->e;
    int nl = 0, nc = 0;
    for (int i = 0; i < e->nlive; i++) {
        const char *v = fx_node_label(e, e->live[i]->head, key);
        if (v)
            lab[nl++] = (struct labelled){v, e->live[i]};
    }
    qsort(lab, (size_t)nl, sizeof(*lab), cmp_labelled);
    for (int i = 0; i < nl;) {
        struct room have = {0};
        int j = i;
        for (; j < nl && strcmp(lab[j].value, lab[i].value) == 0; j++)
            room_of_node(&e->nodes[lab[j].cls->head], lab[j].cls->count, g->kmax, &have);
        if (room_holds(&have, &g->need))
            c[nc++] = (struct cand){left_of(&have, &g->need), 0, -1, lab[i].value};
        else
            res->skipped++;
        i = j;
    }
    qsort(c, (size_t)nc, sizeof(*c), cmp_cand);
    for (int i = 0; i < nc; i++) {
        res->tried++;
        struct fx_scope s = {-1, key, c[i].value};
        int rc = try_scope(g, &s);
        if (rc) {
            if (rc > 0)
                snprintf(res->domain, sizeof(res->domain), "%s", c[i].value);
            return rc;
        }
    }
    return 0;
}

/* Anywhere, counting how many members fit for the message when not all do. */
static int level_anywhere(struct gang *g, struct flexpu_noplace *why)
{
    int rc = attempt(g, NULL, 1);
    if (rc < 0) {
        rollback(g);
        return rc;
    }
    if (g->placed == g->n)
        return 1;
    int fit = g->placed;
    rollback(g);
    *why = g->why;
    char first[sizeof(why->text)];
    memcpy(first, g->why.text, sizeof(first));
    snprintf(why->text, sizeof(why->text),
             "gang of %d: %d/%d members fit (all or none, biggest first); member %d did not: ",
             g->n, fit, g->n, g->failed);
    strncat(why->text, first, sizeof(why->text) - strlen(why->text) - 1);
    why->nodes = g->e->stats.nodes;
    return 0;
}

/* ---- the call --------------------------------------------------------- */

static int gang_init(struct gang *g, struct flexpu_engine *e, struct flexpu_gang_member *m,
                     int n, struct flexpu_rng *rng, struct flexpu_noplace *why)
{
    memset(g, 0, sizeof(*g));
    g->e = e;
    g->m = m;
    g->n = n;
    g->rng = rng;
    if (n < 1 || !m) {
        snprintf(why->text, sizeof(why->text), "a gang needs at least one member (n = %d)", n);
        return FLEXPU_EINVAL;
    }
    for (int i = 0; i < n; i++) {
        struct flexpu_error err;
        if (flexpu_req_validate(&m[i].req, &err)) {
            /* One snprintf: gcc -O2's -Wstringop-truncation rejects strncat here. */
            snprintf(why->text, sizeof(why->text), "gang member %d: %.280s", i, err.msg);
            return FLEXPU_EINVAL;
        }
        m[i].alloc_id = 0;
    }
    g->req = fx_malloc((size_t)n * sizeof(*g->req));
    g->order = fx_malloc((size_t)n * sizeof(*g->order));
    if (!g->req || !g->order || fx_order_save(e, &g->visit)) {
        snprintf(why->text, sizeof(why->text), "out of memory placing a gang of %d", n);
        return FLEXPU_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        flexpu_engine_effective_req(e, &m[i].req, &g->req[i]);
        const struct flexpu_pod_req *r = &g->req[i];
        g->need.gpu_milli += req_gpu(r);
        g->need.whole += r->gpu_milli == FLEXPU_GPU_MILLI ? r->num_gpu : 0;
        g->need.cpu += r->cpu_milli;
        g->need.mem += r->mem_mib;
        g->name_dep |= fx_filter_name_dep(m[i].filter);
        if (r->gpu_milli == FLEXPU_GPU_MILLI && r->num_gpu > g->kmax)
            g->kmax = r->num_gpu;
    }
    for (int i = 0; i < n; i++)
        g->need.big += g->req[i].gpu_milli == FLEXPU_GPU_MILLI && g->req[i].num_gpu == g->kmax;
    if (fx_gang_order(g->req, n, g->order)) {
        snprintf(why->text, sizeof(why->text), "out of memory placing a gang of %d", n);
        return FLEXPU_ENOMEM;
    }
    g->next_alloc_id = e->next_alloc_id;
    g->frag_total = e->frag_total;
    memcpy(g->room_total, e->room_total, sizeof(g->room_total));
    g->failed = -1;
    return 0;
}

static void gang_free(struct gang *g)
{
    fx_free(g->req);
    fx_free(g->order);
    fx_order_free(&g->visit);
}

/* The levels in order; 1 placed, 0 not anywhere, negative an error. */
static int run_levels(struct gang *g, struct flexpu_gang_result *res, struct flexpu_noplace *why)
{
    struct flexpu_engine *e = g->e;
    size_t nn = (size_t)e->nnodes + 1, nl = (size_t)e->nlive + 1;
    struct cand *c = fx_malloc((nn > nl ? nn : nl) * sizeof(*c));
    struct labelled *lab = fx_malloc(nl * sizeof(*lab));
    int rc = c && lab ? 0 : FLEXPU_ENOMEM;
    if (rc == 0) {
        res->level = FLEXPU_GANG_NODE;
        rc = level_node(g, c, res);
        if (rc > 0) {
            res->node = g->m[g->order[0]].place.node;
            snprintf(res->domain, sizeof(res->domain), "%s", e->nodes[res->node].name);
        }
    }
    const char *keys[FLEXPU_TOPOLOGY_KEYS_MAX];
    int nkeys = flexpu_engine_topology_keys(e, keys, FLEXPU_TOPOLOGY_KEYS_MAX);
    for (int k = 0; rc == 0 && k < nkeys; k++) {
        res->level = FLEXPU_GANG_DOMAIN;
        res->key = k;
        rc = level_key(g, keys[k], lab, c, res);
    }
    if (rc == 0) {
        res->level = FLEXPU_GANG_ANYWHERE;
        res->key = -1;
        rc = level_anywhere(g, why);
    }
    fx_free(c);
    fx_free(lab);
    if (rc == FLEXPU_ENOMEM)
        snprintf(why->text, sizeof(why->text), "out of memory placing a gang of %d", g->n);
    return rc;
}

static int gang(struct flexpu_engine *e, struct flexpu_gang_member *m, int n,
                struct flexpu_rng *rng, int commit, struct flexpu_gang_result *res,
                struct flexpu_noplace *why)
{
    struct flexpu_noplace local_why;
    struct flexpu_gang_result local_res;
    why = why ? why : &local_why;
    res = res ? res : &local_res;
    memset(why, 0, sizeof(*why));
    memset(res, 0, sizeof(*res));
    res->key = -1;
    res->node = -1;
    why->nodes = e->stats.nodes;
    struct gang g;
    int rc = gang_init(&g, e, m, n, rng, why);
    if (rc == 0) {
        rc = run_levels(&g, res, why);
        if (rc > 0 && !commit)
            rollback(&g);
        rc = rc > 0 ? 0 : rc == 0 ? FLEXPU_ENOFIT : rc;
    }
    gang_free(&g);
    return rc;
}

int flexpu_engine_place_gang(struct flexpu_engine *e, struct flexpu_gang_member *m, int n,
                             struct flexpu_rng *rng, struct flexpu_gang_result *res,
                             struct flexpu_noplace *why)
{
    return gang(e, m, n, rng, 1, res, why);
}

int flexpu_engine_decide_gang(struct flexpu_engine *e, struct flexpu_gang_member *m, int n,
                              struct flexpu_rng *rng, struct flexpu_gang_result *res,
                              struct flexpu_noplace *why)
{
    return gang(e, m, n, rng, 0, res, why);
}
