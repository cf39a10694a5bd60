/* SPDX-License-Identifier: Apache-2.0 */
/* Queues and their fair shares (include/flexpu/queue.h, docs/QUEUES.md).
 *
 * Queues live in an array indexed by id; the tree is rebuilt (parents
 * resolved by name, children in name order, a breadth-first order) whenever
 * a queue is set or removed, so the fair-share pass and the limit checks only
 * follow indexes. Amounts a queue's own pods hold or wait for are kept with
 * the queue, and their totals over each subtree are kept up to date by adding
 * every change along the ancestors: a limit check never waits for a compute. */
#include "flexpu/queue.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/strmap.h"

#define R FLEXPU_RES_COUNT_
#define NAME_MAX_LEN 253 /* a Kubernetes object name */
#define WEIGHT_MAX 1e6
#define QMAX 10000000000000LL /* 10^13: any quota, capacity or amount; sums of
                              * 10^5 of them still fit in 63 bits */
#define SELF (-2) /* a queue's own pods, as a side next to its children */

struct fxq {
    char *name, *parent_name; /* parent_name NULL: top level */
    int parent;               /* resolved; -1: top level (or orphan) */
    int depth;
    bool used, removed, orphan;
    int64_t guar[R], limit[R];
    double weight;
    int64_t wmilli; /* the weight in thousandths, what the division uses */
    int64_t own_alloc[R], own_pend[R];
    int64_t alloc[R], pend[R]; /* own plus descendants */
    int64_t fair[R], self_fair[R];
    int64_t cap[R]; /* scratch of compute: the most its subtree can use */
    int first_child, next_sibling;
};

struct flexpu_queues {
    struct fxq *q;
    int n, cap;
    struct fx_strmap names; /* live (not removed) queues: id + 1 */
    int root_first;         /* first top-level queue */
    int *bfs;               /* used ids, parents before children */
    int nbfs;
    int64_t capacity[R];
    /* Scratch of one level's division, sized for every queue plus a self. */
    int64_t *s_guar, *s_cap, *s_w, *s_out, *s_rem;
    int *s_id;
    bool *s_act, *s_taken;
};

static const char *const res_names[R] = {
    "flexpu.io/gpu", "flexpu.io/gpu-cores", "flexpu.io/gpu-memory", "cpu", "memory",
};

const char *flexpu_res_name(enum flexpu_res r)
{
    return (unsigned)r < R ? res_names[r] : "unknown";
}

int flexpu_res_from_name(const char *name)
{
    for (int r = 0; name && r < R; r++)
        if (strcmp(name, res_names[r]) == 0)
            return r;
    return -1;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t weight_milli(double w)
{
    int64_t m = (int64_t)llround(w * 1000.0);
    return w > 0 && m == 0 ? 1 : m; /* a positive weight never rounds to none */
}

static void set_defaults(struct fxq *x)
{
    for (int r = 0; r < R; r++) {
        x->guar[r] = 0;
        x->limit[r] = FLEXPU_QUEUE_UNLIMITED;
    }
    x->weight = 1.0;
    x->wmilli = 1000;
}

/* ---- the tree ----------------------------------------------------------- */

static int find_live(const struct flexpu_queues *q, const char *name)
{
    void *v = name ? fx_strmap_get(&q->names, name) : NULL;
    return v ? (int)((intptr_t)v - 1) : -1;
}

static int cmp_name_ctx(const void *pa, const void *pb, void *ctx)
{
    const struct flexpu_queues *q = ctx;
    int a = *(const int *)pa, b = *(const int *)pb;
    int c = strcmp(q->q[a].name, q->q[b].name);
    return c ? c : a - b;
}

/* Resolves parents, builds the children lists in name order and the
 * breadth-first order, and recomputes every subtree total. */
static void relink(struct flexpu_queues *q)
{
    int k = 0;
    for (int i = 0; i < q->n; i++)
        if (q->q[i].used)
            q->bfs[k++] = i;
    qsort_r(q->bfs, (size_t)k, sizeof(int), cmp_name_ctx, q);
    q->root_first = -1;
    for (int i = 0; i < q->n; i++)
        q->q[i].first_child = -1;
    /* Prepending in reverse name order leaves each list in name order. */
    for (int j = k - 1; j >= 0; j--) {
        struct fxq *x = &q->q[q->bfs[j]];
        x->parent = find_live(q, x->parent_name);
        x->orphan = x->parent_name && x->parent < 0;
        int *head = x->parent >= 0 ? &q->q[x->parent].first_child : &q->root_first;
        x->next_sibling = *head;
        *head = q->bfs[j];
    }
    /* Breadth first from the top level: set never lets a cycle in, so
     * every used queue is reached once. */
    int n = 0;
    for (int c = q->root_first; c >= 0; c = q->q[c].next_sibling) {
        q->q[c].depth = 0;
        q->bfs[n++] = c;
    }
    for (int h = 0; h < n; h++)
        for (int c = q->q[q->bfs[h]].first_child; c >= 0; c = q->q[c].next_sibling) {
            q->q[c].depth = q->q[q->bfs[h]].depth + 1;
            q->bfs[n++] = c;
        }
    q->nbfs = n;
    for (int h = 0; h < n; h++) {
        struct fxq *x = &q->q[q->bfs[h]];
        memcpy(x->alloc, x->own_alloc, sizeof(x->alloc));
        memcpy(x->pend, x->own_pend, sizeof(x->pend));
    }
    for (int h = n - 1; h >= 0; h--) {
        struct fxq *x = &q->q[q->bfs[h]];
        if (x->parent < 0)
            continue;
        for (int r = 0; r < R; r++) {
            q->q[x->parent].alloc[r] += x->alloc[r];
            q->q[x->parent].pend[r] += x->pend[r];
        }
    }
}

static void free_slot(struct flexpu_queues *q, int id)
{
    struct fxq *x = &q->q[id];
    fx_free(x->name);
    fx_free(x->parent_name);
    memset(x, 0, sizeof(*x));
    x->parent = x->first_child = x->next_sibling = -1;
}

/* Room for one more queue: the array and every scratch array. */
static int grow(struct flexpu_queues *q)
{
    if (q->n < q->cap)
        return 0;
    int cap = q->cap ? q->cap * 2 : 8;
    struct fxq *a = fx_realloc(q->q, (size_t)cap * sizeof(*a));
    if (!a)
        return FLEXPU_ENOMEM;
    q->q = a;
    int **ints[] = {&q->bfs, &q->s_id};
    int64_t **i64s[] = {&q->s_guar, &q->s_cap, &q->s_w, &q->s_out, &q->s_rem};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        int *p = fx_realloc(*ints[i], (size_t)(cap + 1) * sizeof(int));
        if (!p)
            return FLEXPU_ENOMEM;
        *ints[i] = p;
    }
    for (size_t i = 0; i < sizeof(i64s) / sizeof(i64s[0]); i++) {
        int64_t *p = fx_realloc(*i64s[i], (size_t)(cap + 1) * sizeof(int64_t));
        if (!p)
            return FLEXPU_ENOMEM;
        *i64s[i] = p;
    }
    bool **bools[] = {&q->s_act, &q->s_taken};
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        bool *p = fx_realloc(*bools[i], (size_t)(cap + 1) * sizeof(bool));
        if (!p)
            return FLEXPU_ENOMEM;
        *bools[i] = p;
    }
    q->cap = cap;
    return 0;
}

struct flexpu_queues *flexpu_queues_new(void)
{
    struct flexpu_queues *q = fx_calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    fx_strmap_init(&q->names);
    struct flexpu_queue_info def = {.name = FLEXPU_QUEUE_DEFAULT, .weight = 1.0};
    for (int r = 0; r < R; r++)
        def.limit[r] = FLEXPU_QUEUE_UNLIMITED;
    if (flexpu_queues_set(q, &def, NULL, NULL)) {
        flexpu_queues_free(q);
        return NULL;
    }
    return q;
}

void flexpu_queues_free(struct flexpu_queues *q)
{
    if (!q)
        return;
    for (int i = 0; i < q->n; i++)
        free_slot(q, i);
    fx_strmap_free(&q->names);
    fx_free(q->q);
    fx_free(q->bfs);
    fx_free(q->s_id);
    fx_free(q->s_guar);
    fx_free(q->s_cap);
    fx_free(q->s_w);
    fx_free(q->s_out);
    fx_free(q->s_rem);
    fx_free(q->s_act);
    fx_free(q->s_taken);
    fx_free(q);
}

/* ---- configuration ------------------------------------------------------ */

static int field_i64(struct flexpu_error *err, const char *what, int r, int64_t v, const char *why)
{
    char field[64], val[32];
    snprintf(field, sizeof(field), "%s[%s]", what, res_names[r]);
    int n = snprintf(val, sizeof(val), "%lld", (long long)v);
    return flexpu_error_field(err, FLEXPU_EINVAL, field, val, (size_t)n, why);
}

static int validate(const struct flexpu_queues *q, const struct flexpu_queue_info *in,
                    struct flexpu_error *err)
{
    if (!in->name || !in->name[0])
        return flexpu_error_field(err, FLEXPU_EINVAL, "name", "", 0, "must not be empty");
    size_t len = strlen(in->name);
    if (len > NAME_MAX_LEN)
        return flexpu_error_field(err, FLEXPU_EINVAL, "name", in->name, len,
                                  "longer than 253 characters");
    if (in->parent && strlen(in->parent) > NAME_MAX_LEN)
        return flexpu_error_field(err, FLEXPU_EINVAL, "parent", in->parent, strlen(in->parent),
                                  "longer than 253 characters");
    for (int r = 0; r < R; r++) {
        if (in->guaranteed[r] < 0 || in->guaranteed[r] > QMAX)
            return field_i64(err, "guaranteed", r, in->guaranteed[r],
                             "must be from 0 to 10000000000000");
        if (in->limit[r] < FLEXPU_QUEUE_UNLIMITED || in->limit[r] > QMAX)
            return field_i64(err, "limit", r, in->limit[r],
                             "must be from 0 to 10000000000000, or -1 for no limit");
        if (in->limit[r] != FLEXPU_QUEUE_UNLIMITED && in->limit[r] < in->guaranteed[r]) {
            char why[96];
            snprintf(why, sizeof(why), "below the guarantee %lld", (long long)in->guaranteed[r]);
            return field_i64(err, "limit", r, in->limit[r], why);
        }
    }
    if (!isfinite(in->weight) || in->weight < 0 || in->weight > WEIGHT_MAX) {
        char val[32];
        int n = snprintf(val, sizeof(val), "%g", in->weight);
        return flexpu_error_field(err, FLEXPU_EINVAL, "weight", val, (size_t)n,
                                  "must be a number from 0 to 1000000");
    }
    /* Walking up from the new parent through the live queues must not come
     * back to this name. The walk is bounded: the tree has no cycle yet. */
    const char *p = in->parent && in->parent[0] ? in->parent : NULL;
    for (int steps = 0; p && steps <= q->n; steps++) {
        if (strcmp(p, in->name) == 0)
            return flexpu_error_field(err, FLEXPU_EINVAL, "parent", in->parent,
                                      strlen(in->parent),
                                      "makes a cycle: the queue would be its own ancestor");
        int id = find_live(q, p);
        p = id >= 0 ? q->q[id].parent_name : NULL;
    }
    return 0;
}

int flexpu_queues_set(struct flexpu_queues *q, const struct flexpu_queue_info *info, int *id,
                      struct flexpu_error *err)
{
    if (!q || !info)
        return flexpu_error_set(err, FLEXPU_EINVAL, "no queue set or queue given");
    int rc = validate(q, info, err);
    if (rc)
        return rc;
    int at = find_live(q, info->name);
    char *name = at < 0 ? fx_strdup(info->name) : NULL;
    char *parent = info->parent && info->parent[0] ? fx_strdup(info->parent) : NULL;
    if ((at < 0 && (!name || grow(q) || fx_strmap_put(&q->names, name, (void *)(intptr_t)(q->n + 1)))) ||
        (info->parent && info->parent[0] && !parent)) {
        if (at < 0 && name)
            fx_strmap_del(&q->names, name); /* absent when the put itself failed */
        fx_free(name);
        fx_free(parent);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "queue '%s': out of memory", info->name);
    }
    if (at < 0) {
        at = q->n++;
        memset(&q->q[at], 0, sizeof(q->q[at]));
        q->q[at].name = name;
        q->q[at].used = true;
    }
    struct fxq *x = &q->q[at];
    fx_free(x->parent_name);
    x->parent_name = parent;
    memcpy(x->guar, info->guaranteed, sizeof(x->guar));
    memcpy(x->limit, info->limit, sizeof(x->limit));
    x->weight = info->weight;
    x->wmilli = weight_milli(info->weight);
    relink(q);
    if (id)
        *id = at;
    return 0;
}

static bool holds_nothing(const struct fxq *x)
{
    for (int r = 0; r < R; r++)
        if (x->own_alloc[r] || x->own_pend[r])
            return false;
    return true;
}

int flexpu_queues_remove(struct flexpu_queues *q, const char *name, struct flexpu_error *err)
{
    int id = q ? find_live(q, name) : -1;
    if (id < 0)
        return flexpu_error_field(err, FLEXPU_ENOENT, "queue", name ? name : "",
                                  name ? strlen(name) : 0, "no such queue");
    struct fxq *x = &q->q[id];
    if (strcmp(name, FLEXPU_QUEUE_DEFAULT) == 0) {
        set_defaults(x);
        fx_free(x->parent_name);
        x->parent_name = NULL;
    } else {
        fx_strmap_del(&q->names, x->name);
        if (holds_nothing(x)) {
            free_slot(q, id);
        } else {
            /* Its pods stay charged to it, and are the first to give way. */
            x->removed = true;
            set_defaults(x);
            x->weight = 0;
            x->wmilli = 0;
        }
    }
    relink(q);
    return 0;
}

int flexpu_queues_find(const struct flexpu_queues *q, const char *name)
{
    return q ? find_live(q, name) : -1;
}

int flexpu_queues_count(const struct flexpu_queues *q)
{
    return q ? q->n : 0;
}

static bool valid_id(const struct flexpu_queues *q, int id)
{
    return q && id >= 0 && id < q->n && q->q[id].used;
}

bool flexpu_queues_get(const struct flexpu_queues *q, int id, struct flexpu_queue_status *out)
{
    if (!valid_id(q, id))
        return false;
    const struct fxq *x = &q->q[id];
    out->name = x->name;
    out->parent = x->parent_name;
    out->depth = x->depth;
    memcpy(out->guaranteed, x->guar, sizeof(x->guar));
    memcpy(out->limit, x->limit, sizeof(x->limit));
    out->weight = x->weight;
    memcpy(out->allocated, x->alloc, sizeof(x->alloc));
    memcpy(out->pending, x->pend, sizeof(x->pend));
    memcpy(out->fair_share, x->fair, sizeof(x->fair));
    out->orphan = x->orphan;
    out->removed = x->removed;
    return true;
}

/* ---- accounting --------------------------------------------------------- */

static void account(struct flexpu_queues *q, int id, const int64_t amount[R], int sign, bool alloc)
{
    if (!valid_id(q, id) || !amount || (sign != 1 && sign != -1))
        return;
    int64_t delta[R];
    struct fxq *x = &q->q[id];
    int64_t *own = alloc ? x->own_alloc : x->own_pend;
    for (int r = 0; r < R; r++) {
        int64_t a = amount[r] > 0 ? min64(amount[r], QMAX) : 0;
        delta[r] = sign > 0 ? a : -min64(a, own[r]); /* never below zero */
        own[r] += delta[r];
    }
    for (int i = id; i >= 0; i = q->q[i].parent)
        for (int r = 0; r < R; r++)
            (alloc ? q->q[i].alloc : q->q[i].pend)[r] += delta[r];
    if (x->removed && holds_nothing(x)) {
        free_slot(q, id);
        relink(q);
    }
}

void flexpu_queues_allocated(struct flexpu_queues *q, int id, const int64_t amount[R], int sign)
{
    account(q, id, amount, sign, true);
}

void flexpu_queues_pending(struct flexpu_queues *q, int id, const int64_t amount[R], int sign)
{
    account(q, id, amount, sign, false);
}

/* ---- fair share --------------------------------------------------------- */

/* Hands out `left` units, one each, to the participants with the largest
 * remainders (ties: the earlier participant, i.e. name order). Each chosen
 * participant has room for one more unit. left < n. O(n * left). */
static void by_remainder(int n, int64_t left, const int64_t *rem, const bool *eligible,
                         int64_t *out, bool *taken)
{
    for (int i = 0; i < n; i++)
        taken[i] = false;
    for (; left > 0; left--) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (eligible[i] && !taken[i] && (best < 0 || rem[i] > rem[best]))
                best = i;
        if (best < 0)
            return;
        taken[best] = true;
        out[best]++;
    }
}

/* floor(a * b / c) and its remainder, exactly (a, b, c >= 0, c > 0). */
static int64_t muldiv(int64_t a, int64_t b, int64_t c, int64_t *rem)
{
    __int128 p = (__int128)a * b;
    *rem = (int64_t)(p % c);
    return (int64_t)(p / c);
}

/* Water-fills `left` over the participants with room and a weight (all
 * weights 1 when zero_phase): each gets its weight's part of what is left,
 * capped by its room; what a capped one could not take goes round again.
 * Every round but the last caps at least one participant, so there are at
 * most n + 1 rounds. Returns what is still left (only when nobody has room). */
static int64_t water_fill(int n, int64_t left, const int64_t *cap, const int64_t *w, bool zero_phase,
                          int64_t *out, int64_t *rem, bool *active, bool *taken)
{
    for (;;) {
        __int128 W = 0;
        int nactive = 0;
        for (int i = 0; i < n; i++) {
            active[i] = out[i] < cap[i] && (zero_phase ? w[i] == 0 : w[i] > 0);
            if (active[i]) {
                W += zero_phase ? 1 : w[i];
                nactive++;
            }
        }
        if (left <= 0 || nactive == 0)
            return left;
        int64_t Wd = (int64_t)W; /* at most queues x 1e9: fits */
        bool capped = false;
        int64_t given = 0;
        for (int i = 0; i < n; i++) {
            if (!active[i])
                continue;
            int64_t g = muldiv(left, zero_phase ? 1 : w[i], Wd, &rem[i]);
            if (g >= cap[i] - out[i]) {
                g = cap[i] - out[i];
                capped = true;
            }
            out[i] += g;
            given += g;
        }
        left -= given;
        if (!capped) {
            /* Nobody capped: left < nactive, each remainder winner has room. */
            by_remainder(n, left, rem, active, out, taken);
            return 0;
        }
    }
}

/* Divides `share` among n participants: first each one's guarantee capped
 * by what it can use (scaled down in proportion, largest remainders first,
 * when they over-subscribe the share), then the rest by weight, then what
 * even that leaves to the weight-0 participants equally. */
static void divide(struct flexpu_queues *q, int n, int64_t share)
{
    int64_t *g = q->s_guar, *cap = q->s_cap, *w = q->s_w, *out = q->s_out, *rem = q->s_rem;
    bool *active = q->s_act, *taken = q->s_taken;
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
        g[i] = min64(g[i], cap[i]);
        sum += g[i];
    }
    if (sum <= share) {
        for (int i = 0; i < n; i++)
            out[i] = g[i];
        int64_t left = water_fill(n, share - sum, cap, w, false, out, rem, active, taken);
        water_fill(n, left, cap, w, true, out, rem, active, taken);
        return;
    }
    int64_t handed = 0;
    for (int i = 0; i < n; i++) {
        out[i] = muldiv(g[i], share, sum, &rem[i]);
        handed += out[i];
        active[i] = true;
    }
    by_remainder(n, share - handed, rem, active, out, taken);
}

/* What each subtree can use of each resource: its own demand and what its
 * children can use, under its limit. Bottom up (children come after their
 * parent in the breadth-first order). A parent's share is then never more
 * than its children and its own pods can take: no share is stranded in a
 * parent whose children's limits stop them. */
static void usable(struct flexpu_queues *q)
{
    for (int h = 0; h < q->nbfs; h++) {
        struct fxq *x = &q->q[q->bfs[h]];
        for (int r = 0; r < R; r++)
            x->cap[r] = x->own_alloc[r] + x->own_pend[r];
    }
    for (int h = q->nbfs - 1; h >= 0; h--) {
        struct fxq *x = &q->q[q->bfs[h]];
        for (int r = 0; r < R; r++) {
            if (x->limit[r] != FLEXPU_QUEUE_UNLIMITED)
                x->cap[r] = min64(x->cap[r], x->limit[r]);
            if (x->parent >= 0)
                q->q[x->parent].cap[r] += x->cap[r];
        }
    }
}

/* Divides `share` of r between the children of `parent` (-1: the top-level
 * queues) and, for a queue, its own pods: a participant of weight 1 whose
 * guarantee is what the queue's guarantee does not promise its children. */
static void divide_level(struct flexpu_queues *q, int parent, int r, int64_t share)
{
    int n = 0;
    int64_t child_guar = 0;
    int first = parent >= 0 ? q->q[parent].first_child : q->root_first;
    for (int c = first; c >= 0; c = q->q[c].next_sibling) {
        const struct fxq *x = &q->q[c];
        q->s_id[n] = c;
        q->s_guar[n] = x->guar[r];
        q->s_cap[n] = x->cap[r];
        q->s_w[n] = x->wmilli;
        child_guar += x->guar[r];
        n++;
    }
    if (parent >= 0) {
        const struct fxq *p = &q->q[parent];
        q->s_id[n] = SELF;
        q->s_guar[n] = p->guar[r] > child_guar ? p->guar[r] - child_guar : 0;
        q->s_cap[n] = p->own_alloc[r] + p->own_pend[r];
        q->s_w[n] = 1000;
        n++;
    }
    divide(q, n, share);
    for (int i = 0; i < n; i++) {
        if (q->s_id[i] == SELF)
            q->q[parent].self_fair[r] = q->s_out[i];
        else
            q->q[q->s_id[i]].fair[r] = q->s_out[i];
    }
}

void flexpu_queues_compute(struct flexpu_queues *q, const int64_t capacity[R])
{
    if (!q || !capacity)
        return;
    usable(q);
    for (int r = 0; r < R; r++) {
        q->capacity[r] = capacity[r] < 0 ? 0 : min64(capacity[r], QMAX);
        /* Breadth first: a queue's fair share is known before its children's. */
        divide_level(q, -1, r, q->capacity[r]);
        for (int h = 0; h < q->nbfs; h++)
            divide_level(q, q->bfs[h], r, q->q[q->bfs[h]].fair[r]);
    }
}

/* ---- limits, order and reclaim ------------------------------------------ */

bool flexpu_queues_within_limit(const struct flexpu_queues *q, int id, const int64_t amount[R],
                                char *why, int len)
{
    if (why && len > 0)
        why[0] = '\0';
    if (!valid_id(q, id) || !amount)
        return false;
    for (int i = id; i >= 0; i = q->q[i].parent) {
        const struct fxq *x = &q->q[i];
        for (int r = 0; r < R; r++) {
            int64_t a = amount[r] > 0 ? min64(amount[r], QMAX) : 0;
            if (x->limit[r] == FLEXPU_QUEUE_UNLIMITED || x->alloc[r] + a <= x->limit[r])
                continue;
            if (why && len > 0)
                snprintf(why, (size_t)len, "queue '%s': %s limit %lld, would hold %lld (holds %lld)",
                         x->name, res_names[r], (long long)x->limit[r],
                         (long long)(x->alloc[r] + a), (long long)x->alloc[r]);
            return false;
        }
    }
    return true;
}

/* The largest allocated / fair share over resources; a resource held with
 * no fair share at all counts as infinitely over. */
static double ratio(const int64_t *alloc, const int64_t *fair)
{
    double u = 0;
    for (int r = 0; r < R; r++) {
        if (fair[r] > 0) {
            double v = (double)alloc[r] / (double)fair[r];
            u = v > u ? v : u;
        } else if (alloc[r] > 0) {
            return HUGE_VAL;
        }
    }
    return u;
}

double flexpu_queues_usage(const struct flexpu_queues *q, int id)
{
    return valid_id(q, id) ? ratio(q->q[id].alloc, q->q[id].fair) : HUGE_VAL;
}

/* The nearest common ancestor of a and b (either one itself when it is the
 * other's ancestor), or -1 when they are under different top-level queues. */
static int common_ancestor(const struct flexpu_queues *q, int a, int b)
{
    while (a >= 0 && b >= 0 && a != b) {
        if (q->q[a].depth >= q->q[b].depth)
            a = q->q[a].parent;
        else
            b = q->q[b].parent;
    }
    return a == b ? a : -1;
}

/* Who stands for x at the ancestor anc: its ancestor that is a child of anc
 * (a top-level queue when anc is -1), or SELF when x is anc. */
static int side_of(const struct flexpu_queues *q, int x, int anc)
{
    if (x == anc)
        return SELF;
    while (q->q[x].parent != anc)
        x = q->q[x].parent;
    return x;
}

/* A side's allocation and fair share. */
static void side_amounts(const struct flexpu_queues *q, int side, int anc, const int64_t **alloc,
                         const int64_t **fair)
{
    const struct fxq *x = &q->q[side == SELF ? anc : side];
    *alloc = side == SELF ? x->own_alloc : x->alloc;
    *fair = side == SELF ? x->self_fair : x->fair;
}

int flexpu_queues_compare(const struct flexpu_queues *q, int a, int b)
{
    if (!valid_id(q, a) || !valid_id(q, b))
        return valid_id(q, a) ? -1 : valid_id(q, b) ? 1 : 0;
    if (a == b)
        return 0;
    int anc = common_ancestor(q, a, b);
    int sa = side_of(q, a, anc), sb = side_of(q, b, anc);
    const int64_t *aa, *fa, *ab, *fb;
    side_amounts(q, sa, anc, &aa, &fa);
    side_amounts(q, sb, anc, &ab, &fb);
    double ua = ratio(aa, fa), ub = ratio(ab, fb);
    if (ua != ub)
        return ua < ub ? -1 : 1;
    int c = strcmp(q->q[sa == SELF ? anc : sa].name, q->q[sb == SELF ? anc : sb].name);
    if (c)
        return c < 0 ? -1 : 1;
    return a < b ? -1 : 1;
}

bool flexpu_queues_may_reclaim(const struct flexpu_queues *q, int taker, const int64_t amount[R],
                               int victim, const int64_t victim_amount[R])
{
    if (!valid_id(q, taker) || !valid_id(q, victim) || taker == victim || !amount ||
        !victim_amount)
        return false;
    int anc = common_ancestor(q, taker, victim);
    int st = side_of(q, taker, anc), sv = side_of(q, victim, anc);
    const int64_t *ta, *tf, *va, *vf;
    side_amounts(q, st, anc, &ta, &tf);
    side_amounts(q, sv, anc, &va, &vf);
    const struct fxq *vx = &q->q[sv == SELF ? anc : sv];
    const int64_t *vp = sv == SELF ? vx->own_pend : vx->pend;
    bool contested = false;
    for (int r = 0; r < R; r++) {
        int64_t want = amount[r] > 0 ? min64(amount[r], QMAX) : 0;
        int64_t held = victim_amount[r] > 0 ? min64(victim_amount[r], QMAX) : 0;
        if (want > 0 && ta[r] + want > tf[r])
            return false; /* the taker would go over its share */
        if (want > 0 && held > 0) {
            /* A resource the victim's side is given all it asks for is
             * not scarce (CPU beside contended GPUs): taking a pod's part
             * of it is no unfairness, and is not what decides. */
            if (vf[r] >= va[r] + vp[r])
                continue;
            if (va[r] - held < vf[r])
                return false; /* the victim would drop under its share */
            contested = true;
        }
    }
    return contested;
}
