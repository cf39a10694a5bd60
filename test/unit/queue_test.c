/* SPDX-License-Identifier: Apache-2.0 */
/* Queues (include/flexpu/queue.h, docs/QUEUES.md): fair shares (guarantees,
 * over-subscribed guarantees, weights, limits, demand, hierarchy), the tree
 * (orphans, cycles, removal), limits, serving order and reclaim, and a
 * randomized check of the fair-share invariants on many trees. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "flexpu/queue.h"
#include "flexpu/rng.h"
#include "util/alloc.h"

#define GPU FLEXPU_RES_GPU
#define R FLEXPU_RES_COUNT_

static struct flexpu_queue_info info(const char *name, const char *parent, int64_t guar_gpu,
                                     int64_t limit_gpu, double weight)
{
    struct flexpu_queue_info in;
    memset(&in, 0, sizeof(in));
    in.name = name;
    in.parent = parent;
    for (int r = 0; r < R; r++)
        in.limit[r] = FLEXPU_QUEUE_UNLIMITED;
    in.guaranteed[GPU] = guar_gpu;
    in.limit[GPU] = limit_gpu;
    in.weight = weight;
    return in;
}

static int add(struct flexpu_queues *q, const char *name, const char *parent, int64_t guar,
               int64_t limit, double weight)
{
    struct flexpu_queue_info in = info(name, parent, guar, limit, weight);
    struct flexpu_error err = {0};
    int id = -1;
    int rc = flexpu_queues_set(q, &in, &id, &err);
    if (rc)
        fail_msg("set %s: %s", name, err.msg);
    return id;
}

/* An amount of n GPUs and nothing else. */
#define gpus(n) ((const int64_t[R]){[GPU] = (n)})

/* Adds n GPUs to what a queue holds, or takes -n away. */
static void alloc(struct flexpu_queues *q, int id, int64_t n)
{
    flexpu_queues_allocated(q, id, gpus(n >= 0 ? n : -n), n >= 0 ? 1 : -1);
}

static void pend(struct flexpu_queues *q, int id, int64_t n)
{
    flexpu_queues_pending(q, id, gpus(n), 1);
}

static void compute(struct flexpu_queues *q, int64_t ngpu)
{
    int64_t cap[R] = {0};
    cap[GPU] = ngpu;
    flexpu_queues_compute(q, cap);
}

static int64_t fair(const struct flexpu_queues *q, int id)
{
    struct flexpu_queue_status st;
    assert_true(flexpu_queues_get(q, id, &st));
    return st.fair_share[GPU];
}

/* A set with the default queue idle, so only the test's queues want GPUs. */
static struct flexpu_queues *fresh(void)
{
    struct flexpu_queues *q = flexpu_queues_new();
    assert_non_null(q);
    return q;
}

static void guarantees_honoured(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    int a = add(q, "a", NULL, 3, -1, 1), b = add(q, "b", NULL, 1, -1, 1);
    pend(q, a, 100);
    pend(q, b, 100);
    compute(q, 10);
    /* 3 and 1 first, the 6 left split 1:1. */
    assert_int_equal(fair(q, a), 6);
    assert_int_equal(fair(q, b), 4);
    /* A guarantee holds against a heavier weight. */
    add(q, "b", NULL, 1, -1, 100);
    add(q, "a", NULL, 7, -1, 1);
    compute(q, 10);
    assert_true(fair(q, a) >= 7);
    assert_int_equal(fair(q, a) + fair(q, b), 10);
    flexpu_queues_free(q);
}

static void oversubscribed_guarantees_scaled(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    int a = add(q, "a", NULL, 10, -1, 1), b = add(q, "b", NULL, 5, -1, 1);
    pend(q, a, 100);
    pend(q, b, 100);
    compute(q, 10);
    /* 10:5 of 10 is 6.67:3.33; the unit left goes to the larger remainder. */
    assert_int_equal(fair(q, a), 7);
    assert_int_equal(fair(q, b), 3);
    /* Only the guarantee a queue can use counts: b wanting 1 takes 1. */
    flexpu_queues_pending(q, b, gpus(99), -1);
    compute(q, 10);
    assert_int_equal(fair(q, b), 1);
    assert_int_equal(fair(q, a), 9);
    flexpu_queues_free(q);
}

static void weights_split_the_rest(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    int a = add(q, "a", NULL, 0, -1, 1), b = add(q, "b", NULL, 0, -1, 2);
    pend(q, a, 100);
    pend(q, b, 100);
    compute(q, 9);
    assert_int_equal(fair(q, a), 3);
    assert_int_equal(fair(q, b), 6);
    /* Weight 0 gets nothing while others want it, and what they leave. */
    int z = add(q, "z", NULL, 0, -1, 0);
    pend(q, z, 100);
    compute(q, 9);
    assert_int_equal(fair(q, z), 0);
    flexpu_queues_pending(q, a, gpus(97), -1); /* a wants 3 */
    flexpu_queues_pending(q, b, gpus(98), -1); /* b wants 2 */
    compute(q, 9);
    assert_int_equal(fair(q, a), 3);
    assert_int_equal(fair(q, b), 2);
    assert_int_equal(fair(q, z), 4);
    flexpu_queues_free(q);
}

static void limits_cap(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    int a = add(q, "a", NULL, 0, 2, 5), b = add(q, "b", NULL, 0, -1, 1);
    pend(q, a, 100);
    pend(q, b, 100);
    compute(q, 10);
    assert_int_equal(fair(q, a), 2);
    assert_int_equal(fair(q, b), 8);
    flexpu_queues_free(q);
}

static void idle_queue_lends_everything(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    int a = add(q, "a", NULL, 5, -1, 1), b = add(q, "b", NULL, 5, -1, 1);
    pend(q, b, 10);
    compute(q, 10);
    assert_int_equal(fair(q, a), 0);
    assert_int_equal(fair(q, b), 10);
    /* Demand also caps: b wanting 4 of 10 leaves 6 to nobody. */
    flexpu_queues_pending(q, b, gpus(6), -1);
    compute(q, 10);
    assert_int_equal(fair(q, b), 4);
    flexpu_queues_free(q);
}

static void hierarchy(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    int p = add(q, "p", NULL, 6, -1, 1), o = add(q, "q", NULL, 4, -1, 1);
    int c1 = add(q, "c1", "p", 0, -1, 1), c2 = add(q, "c2", "p", 0, -1, 3);
    pend(q, c1, 100);
    pend(q, c2, 100);
    pend(q, o, 100);
    compute(q, 10);
    assert_int_equal(fair(q, p), 6);
    assert_int_equal(fair(q, o), 4);
    /* 6 by 1:3 is 1.5:4.5; the tie in remainders goes by name (c1). */
    assert_int_equal(fair(q, c1), 2);
    assert_int_equal(fair(q, c2), 4);
    struct flexpu_queue_status st;
    assert_true(flexpu_queues_get(q, c2, &st));
    assert_int_equal(st.depth, 1);
    assert_string_equal(st.parent, "p");
    /* The parent's totals include its children. */
    assert_true(flexpu_queues_get(q, p, &st));
    assert_int_equal(st.pending[GPU], 200);
    /* A parent's limit caps its children together. */
    add(q, "p", NULL, 3, 3, 1);
    compute(q, 10);
    assert_int_equal(fair(q, p), 3);
    assert_int_equal(fair(q, c1) + fair(q, c2), 3);
    assert_int_equal(fair(q, o), 7);
    /* Children's limits cap their parent: p's children can use 2 + 1, so
     * p's share is 3 and the rest goes to q, not stranded in p. */
    add(q, "p", NULL, 0, -1, 1);
    add(q, "c1", "p", 0, 2, 1);
    add(q, "c2", "p", 0, 1, 3);
    compute(q, 10);
    assert_int_equal(fair(q, p), 3);
    assert_int_equal(fair(q, c1), 2);
    assert_int_equal(fair(q, c2), 1);
    assert_int_equal(fair(q, o), 7);
    flexpu_queues_free(q);
}

static void orphans(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    int c = add(q, "c", "later", 0, -1, 1);
    struct flexpu_queue_status st;
    assert_true(flexpu_queues_get(q, c, &st));
    assert_true(st.orphan);
    assert_int_equal(st.depth, 0);
    pend(q, c, 4);
    compute(q, 10);
    assert_int_equal(fair(q, c), 4); /* served as a top-level queue */
    int l = add(q, "later", NULL, 0, -1, 1);
    assert_true(flexpu_queues_get(q, c, &st));
    assert_false(st.orphan);
    assert_int_equal(st.depth, 1);
    assert_true(flexpu_queues_get(q, l, &st));
    assert_int_equal(st.pending[GPU], 4);
    flexpu_queues_free(q);
}

static void cycles_refused(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    add(q, "a", "b", 0, -1, 1);
    add(q, "b", "c", 0, -1, 1);
    struct flexpu_queue_info in = info("c", "a", 0, -1, 1);
    struct flexpu_error err = {0};
    assert_int_equal(flexpu_queues_set(q, &in, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "parent"));
    assert_non_null(strstr(err.msg, "'a'"));
    assert_non_null(strstr(err.msg, "cycle"));
    assert_int_equal(flexpu_queues_find(q, "c"), -1); /* unchanged */
    in = info("a", "a", 0, -1, 1);
    assert_int_equal(flexpu_queues_set(q, &in, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "cycle"));
    flexpu_queues_free(q);
}

static void validation_names_field_and_value(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    struct flexpu_error err = {0};
    struct flexpu_queue_info in = info("a", NULL, -1, -1, 1);
    assert_int_equal(flexpu_queues_set(q, &in, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "guaranteed[flexpu.io/gpu]"));
    assert_non_null(strstr(err.msg, "'-1'"));
    in = info("a", NULL, 4, 3, 1);
    assert_int_equal(flexpu_queues_set(q, &in, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "limit[flexpu.io/gpu]"));
    assert_non_null(strstr(err.msg, "'3'"));
    assert_non_null(strstr(err.msg, "guarantee 4"));
    in = info("a", NULL, 0, -1, NAN);
    assert_int_equal(flexpu_queues_set(q, &in, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "weight"));
    in = info("a", NULL, 0, -1, -2);
    assert_int_equal(flexpu_queues_set(q, &in, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "'-2'"));
    in = info("", NULL, 0, -1, 1);
    assert_int_equal(flexpu_queues_set(q, &in, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "name"));
    in = info("a", NULL, 0, -1, 1);
    in.limit[FLEXPU_RES_MEM] = -5;
    assert_int_equal(flexpu_queues_set(q, &in, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "limit[memory]"));
    assert_int_equal(flexpu_queues_find(q, "a"), -1);
    /* An update that fails leaves the queue as it was. */
    int a = add(q, "a", NULL, 2, -1, 1);
    in = info("a", NULL, 5, 4, 1);
    assert_int_equal(flexpu_queues_set(q, &in, NULL, &err), FLEXPU_EINVAL);
    struct flexpu_queue_status st;
    assert_true(flexpu_queues_get(q, a, &st));
    assert_int_equal(st.guaranteed[GPU], 2);
    assert_int_equal(flexpu_res_from_name("flexpu.io/gpu-memory"), FLEXPU_RES_GPU_MEM);
    assert_int_equal(flexpu_res_from_name("gpu"), -1);
    assert_string_equal(flexpu_res_name(FLEXPU_RES_CPU), "cpu");
    flexpu_queues_free(q);
}

static void remove_queues(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    struct flexpu_error err = {0};
    int idle = add(q, "idle", NULL, 1, -1, 1);
    assert_int_equal(flexpu_queues_remove(q, "idle", &err), 0);
    struct flexpu_queue_status st;
    assert_false(flexpu_queues_get(q, idle, &st)); /* gone at once */
    assert_int_equal(flexpu_queues_remove(q, "idle", &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "'idle'"));

    int p = add(q, "p", NULL, 5, -1, 1), c = add(q, "c", "p", 0, -1, 1);
    int o = add(q, "o", NULL, 0, -1, 1);
    alloc(q, p, 3);
    pend(q, o, 100);
    assert_int_equal(flexpu_queues_remove(q, "p", &err), 0);
    assert_int_equal(flexpu_queues_find(q, "p"), -1);
    assert_true(flexpu_queues_get(q, p, &st)); /* still holds 3 */
    assert_true(st.removed);
    assert_int_equal(st.guaranteed[GPU], 0);
    assert_int_equal(st.allocated[GPU], 3);
    assert_true(flexpu_queues_get(q, c, &st));
    assert_true(st.orphan);
    /* Weight 0: what it holds is first to be reclaimed. */
    compute(q, 10);
    assert_int_equal(fair(q, o), 10);
    assert_int_equal(fair(q, p), 0);
    assert_true(flexpu_queues_may_reclaim(q, o, gpus(1), p, gpus(1)));
    /* The name can be used again at once. */
    int p2 = add(q, "p", NULL, 0, -1, 1);
    assert_int_not_equal(p2, p);
    alloc(q, p, -3);
    assert_false(flexpu_queues_get(q, p, &st));
    assert_int_equal(flexpu_queues_find(q, "p"), p2);
    /* The default queue is reset, never removed. */
    int d = flexpu_queues_find(q, FLEXPU_QUEUE_DEFAULT);
    add(q, FLEXPU_QUEUE_DEFAULT, NULL, 4, 8, 3);
    assert_int_equal(flexpu_queues_remove(q, FLEXPU_QUEUE_DEFAULT, &err), 0);
    assert_int_equal(flexpu_queues_find(q, FLEXPU_QUEUE_DEFAULT), d);
    assert_true(flexpu_queues_get(q, d, &st));
    assert_int_equal(st.guaranteed[GPU], 0);
    assert_int_equal(st.limit[GPU], FLEXPU_QUEUE_UNLIMITED);
    assert_true(st.weight == 1.0);
    flexpu_queues_free(q);
}

static void may_reclaim_cases(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    int a = add(q, "a", NULL, 5, -1, 1), b = add(q, "b", NULL, 5, -1, 1);
    alloc(q, b, 10); /* b borrowed everything while a was idle */
    pend(q, a, 2);
    compute(q, 10);
    assert_int_equal(fair(q, a), 2);
    assert_int_equal(fair(q, b), 8);
    assert_true(flexpu_queues_may_reclaim(q, a, gpus(2), b, gpus(2)));
    /* b would drop under its share. */
    assert_false(flexpu_queues_may_reclaim(q, a, gpus(2), b, gpus(3)));
    /* a would go over its share. */
    assert_false(flexpu_queues_may_reclaim(q, a, gpus(3), b, gpus(1)));
    /* Never the other way, never within one queue, never for nothing. */
    assert_false(flexpu_queues_may_reclaim(q, b, gpus(1), a, gpus(1)));
    assert_false(flexpu_queues_may_reclaim(q, b, gpus(1), b, gpus(1)));
    assert_false(flexpu_queues_may_reclaim(q, a, gpus(1), b, gpus(0)));
    flexpu_queues_free(q);
}

/* Queues under different parents compare at their common ancestor: a1 is
 * under its own share but its parent p is over p's. */
static void reclaim_at_common_ancestor(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    int p = add(q, "p", NULL, 5, -1, 1), o = add(q, "q", NULL, 5, -1, 1);
    int a1 = add(q, "a1", "p", 0, -1, 1), a2 = add(q, "a2", "p", 0, -1, 1);
    int b = add(q, "b", "q", 0, -1, 1);
    pend(q, a1, 2);
    alloc(q, a2, 6);
    alloc(q, b, 4);
    pend(q, b, 1);
    compute(q, 10);
    assert_int_equal(fair(q, p), 5);
    assert_int_equal(fair(q, o), 5);
    assert_int_equal(fair(q, a1), 2);
    assert_int_equal(fair(q, a2), 3);
    assert_false(flexpu_queues_may_reclaim(q, a1, gpus(1), b, gpus(1)));
    assert_true(flexpu_queues_may_reclaim(q, a1, gpus(1), a2, gpus(1)));
    /* b (under q's share of 5, holding 4) may take from a2 (p over 5). */
    assert_true(flexpu_queues_may_reclaim(q, b, gpus(1), a2, gpus(1)));
    /* Serving order follows the same rule: q's side (4/5) before p's (6/5),
     * though a1 alone holds nothing. */
    assert_true(flexpu_queues_compare(q, b, a1) < 0);
    assert_true(flexpu_queues_compare(q, a1, b) > 0);
    assert_true(flexpu_queues_compare(q, a1, a2) < 0);
    assert_int_equal(flexpu_queues_compare(q, a1, a1), 0);
    /* A queue's own pods compare with its children as a side of their own. */
    int pp = p;
    alloc(q, pp, 1);
    compute(q, 10);
    assert_true(flexpu_queues_compare(q, pp, a1) != 0);
    flexpu_queues_free(q);
}

/* A resource the victim's queue is given all it asks for (CPU beside
 * contended GPUs) is not scarce: it does not block a reclaim. A scarce one
 * still does. */
static void reclaim_fully_served_resources(void **state)
{
    (void)state;
    for (int scarce = 0; scarce < 2; scarce++) {
        struct flexpu_queues *q = fresh();
        int a = add(q, "a", NULL, 5, -1, 1), b = add(q, "b", NULL, 5, -1, 1);
        int64_t held[R] = {[GPU] = 10, [FLEXPU_RES_CPU] = 20};
        int64_t want[R] = {[GPU] = 2, [FLEXPU_RES_CPU] = 4};
        flexpu_queues_allocated(q, b, held, 1);
        flexpu_queues_pending(q, a, want, 1);
        int64_t cap[R] = {[GPU] = 10, [FLEXPU_RES_CPU] = scarce ? 20 : 100};
        flexpu_queues_compute(q, cap);
        struct flexpu_queue_status st;
        assert_true(flexpu_queues_get(q, b, &st));
        /* Served: b's CPU fair share is all it holds (20); scarce: 16 of its 20. */
        assert_int_equal(st.fair_share[FLEXPU_RES_CPU], scarce ? 16 : 20);
        int64_t pod[R] = {[GPU] = 2, [FLEXPU_RES_CPU] = 4};
        assert_true(flexpu_queues_may_reclaim(q, a, want, b, pod));
        pod[FLEXPU_RES_CPU] = 5; /* b would drop to 15 CPU: under 16 only when scarce */
        assert_int_equal(flexpu_queues_may_reclaim(q, a, want, b, pod), !scarce);
        /* GPUs still decide: b would drop under its 8. */
        pod[GPU] = 3;
        pod[FLEXPU_RES_CPU] = 4;
        assert_false(flexpu_queues_may_reclaim(q, a, want, b, pod));
        flexpu_queues_free(q);
    }
}

static void within_limit_messages(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    int p = add(q, "team", NULL, 0, 4, 1), c = add(q, "team-dev", "team", 0, 3, 1);
    alloc(q, c, 2);
    char why[160];
    assert_true(flexpu_queues_within_limit(q, c, gpus(1), why, sizeof(why)));
    assert_string_equal(why, "");
    assert_false(flexpu_queues_within_limit(q, c, gpus(2), why, sizeof(why)));
    assert_string_equal(why, "queue 'team-dev': flexpu.io/gpu limit 3, would hold 4 (holds 2)");
    alloc(q, p, 2); /* the parent's own pods count against its limit too */
    assert_false(flexpu_queues_within_limit(q, c, gpus(1), why, sizeof(why)));
    assert_string_equal(why, "queue 'team': flexpu.io/gpu limit 4, would hold 5 (holds 4)");
    /* A short buffer is cut, not overrun. */
    char small[8];
    assert_false(flexpu_queues_within_limit(q, c, gpus(1), small, sizeof(small)));
    assert_int_equal(strlen(small), 7);
    assert_false(flexpu_queues_within_limit(q, 99, gpus(1), NULL, 0));
    flexpu_queues_free(q);
}

static void usage_ordering(void **state)
{
    (void)state;
    struct flexpu_queues *q = fresh();
    int a = add(q, "a", NULL, 4, -1, 1), b = add(q, "b", NULL, 4, -1, 1);
    int c = add(q, "c", NULL, 0, -1, 1);
    alloc(q, a, 2);
    pend(q, a, 2);
    alloc(q, b, 3);
    pend(q, b, 1);
    compute(q, 8);
    assert_true(fabs(flexpu_queues_usage(q, a) - 0.5) < 1e-9);
    assert_true(fabs(flexpu_queues_usage(q, b) - 0.75) < 1e-9);
    assert_true(flexpu_queues_compare(q, a, b) < 0);
    assert_true(flexpu_queues_compare(q, b, a) > 0);
    /* Ties go by name. */
    alloc(q, b, -1);
    assert_true(flexpu_queues_compare(q, b, a) > 0);
    alloc(q, b, 1);
    /* Holding what it has no share of is infinitely over. */
    alloc(q, c, 1);
    compute(q, 8);
    assert_true(isinf(flexpu_queues_usage(q, c)));
    assert_true(flexpu_queues_compare(q, a, c) < 0);
    /* Amounts never go below zero. */
    flexpu_queues_allocated(q, c, gpus(5), -1);
    assert_true(flexpu_queues_usage(q, c) == 0);
    flexpu_queues_free(q);
}

/* ---- randomized invariants ---------------------------------------------- */

#define NQ 24

struct model {
    int id[NQ];
    int parent[NQ]; /* index into id, or -1 */
    int64_t limit[NQ][R];
};

static int64_t rnd(struct flexpu_rng *g, int64_t n)
{
    return (int64_t)flexpu_rng_below(g, (uint64_t)n);
}

/* What queue i's subtree can use of r: its own demand (pods sit only in
 * leaves here) and what its children can use, under its limit. */
static int64_t usable_of(const struct flexpu_queues *q, const struct model *m, int n, int i, int r)
{
    struct flexpu_queue_status st;
    assert_true(flexpu_queues_get(q, m->id[i], &st));
    bool leaf = true;
    int64_t u = 0;
    for (int j = 0; j < n; j++)
        if (m->parent[j] == i) {
            leaf = false;
            u += usable_of(q, m, n, j, r);
        }
    if (leaf)
        u = st.allocated[r] + st.pending[r];
    return st.limit[r] < 0 || u < st.limit[r] ? u : st.limit[r];
}

/* One level of the tree below `parent` (-1: the top level), whose share is
 * `share`: no child above what it can use, the children together given
 * exactly the share or all they can use, whichever is less (nothing lost to
 * rounding, nothing stranded), and every child's guarantee (capped by what
 * it can use) honoured when the guarantees fit. */
static void check_level(const struct flexpu_queues *q, const struct model *m, int n, int parent,
                        const int64_t share[R])
{
    int64_t sum[R] = {0}, usable[R] = {0}, guar[R] = {0};
    for (int i = 0; i < n; i++) {
        struct flexpu_queue_status st;
        if (m->parent[i] != parent || !flexpu_queues_get(q, m->id[i], &st))
            continue;
        for (int r = 0; r < R; r++) {
            int64_t cap = usable_of(q, m, n, i, r);
            int64_t demand = st.allocated[r] + st.pending[r];
            assert_true(st.fair_share[r] >= 0);
            assert_true(st.fair_share[r] <= cap);
            assert_true(st.fair_share[r] <= demand);
            assert_true(st.limit[r] < 0 || st.fair_share[r] <= st.limit[r]);
            sum[r] += st.fair_share[r];
            usable[r] += cap;
            guar[r] += st.guaranteed[r] < cap ? st.guaranteed[r] : cap;
        }
        check_level(q, m, n, i, st.fair_share);
    }
    for (int r = 0; r < R; r++) {
        assert_true(sum[r] <= share[r]);
        assert_int_equal(sum[r], usable[r] < share[r] ? usable[r] : share[r]);
    }
    for (int i = 0; i < n; i++) {
        struct flexpu_queue_status st;
        if (m->parent[i] != parent || !flexpu_queues_get(q, m->id[i], &st))
            continue;
        for (int r = 0; r < R; r++) {
            int64_t cap = usable_of(q, m, n, i, r);
            int64_t g = st.guaranteed[r] < cap ? st.guaranteed[r] : cap;
            if (guar[r] <= share[r])
                assert_true(st.fair_share[r] >= g);
        }
    }
}

static void random_trees(void **state)
{
    (void)state;
    struct flexpu_rng g;
    flexpu_rng_seed(&g, 15);
    for (int round = 0; round < 400; round++) {
        struct flexpu_queues *q = fresh();
        struct model m;
        int n = 1 + (int)rnd(&g, NQ);
        char names[NQ][8];
        for (int i = 0; i < n; i++) {
            snprintf(names[i], sizeof(names[i]), "q%02d", i);
            m.parent[i] = i > 0 && rnd(&g, 3) ? (int)rnd(&g, i) : -1;
            struct flexpu_queue_info in;
            memset(&in, 0, sizeof(in));
            in.name = names[i];
            in.parent = m.parent[i] >= 0 ? names[m.parent[i]] : NULL;
            for (int r = 0; r < R; r++) {
                in.guaranteed[r] = rnd(&g, 4) ? rnd(&g, 40) : 0;
                in.limit[r] = rnd(&g, 3) ? FLEXPU_QUEUE_UNLIMITED : in.guaranteed[r] + rnd(&g, 60);
            }
            in.weight = rnd(&g, 5) ? (double)(1 + rnd(&g, 8)) / 2.0 : 0;
            struct flexpu_error err = {0};
            assert_int_equal(flexpu_queues_set(q, &in, &m.id[i], &err), 0);
        }
        /* Pods only in leaves here, so every level's own demand is zero. */
        for (int i = 0; i < n; i++) {
            bool leaf = true;
            for (int j = 0; j < n; j++)
                leaf = leaf && m.parent[j] != i;
            if (!leaf)
                continue;
            int64_t a[R], p[R];
            for (int r = 0; r < R; r++) {
                a[r] = rnd(&g, 30);
                p[r] = rnd(&g, 2) ? rnd(&g, 50) : 0;
            }
            flexpu_queues_allocated(q, m.id[i], a, 1);
            flexpu_queues_pending(q, m.id[i], p, 1);
        }
        int64_t cap[R];
        for (int r = 0; r < R; r++)
            cap[r] = rnd(&g, 400);
        flexpu_queues_compute(q, cap);
        check_level(q, &m, n, -1, cap);
        /* Deterministic: computing again changes nothing. */
        int64_t before[NQ][R];
        for (int i = 0; i < n; i++) {
            struct flexpu_queue_status st;
            assert_true(flexpu_queues_get(q, m.id[i], &st));
            memcpy(before[i], st.fair_share, sizeof(before[i]));
        }
        flexpu_queues_compute(q, cap);
        for (int i = 0; i < n; i++) {
            struct flexpu_queue_status st;
            assert_true(flexpu_queues_get(q, m.id[i], &st));
            assert_memory_equal(before[i], st.fair_share, sizeof(before[i]));
        }
        flexpu_queues_free(q);
    }
}

static void out_of_memory_fails_cleanly(void **state)
{
    (void)state;
    for (long n = 0; n < 40; n++) {
        fx_alloc_fail_after(n);
        struct flexpu_queues *q = flexpu_queues_new();
        if (!q)
            continue;
        struct flexpu_error err = {0};
        for (int i = 0; i < 12; i++) {
            char name[8];
            snprintf(name, sizeof(name), "q%d", i);
            struct flexpu_queue_info in = info(name, i ? "q0" : NULL, 1, -1, 1);
            int rc = flexpu_queues_set(q, &in, NULL, &err);
            assert_true(rc == 0 || rc == FLEXPU_ENOMEM);
        }
        compute(q, 10);
        flexpu_queues_free(q);
    }
    fx_alloc_fail_after(-1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(guarantees_honoured),
        cmocka_unit_test(oversubscribed_guarantees_scaled),
        cmocka_unit_test(weights_split_the_rest),
        cmocka_unit_test(limits_cap),
        cmocka_unit_test(idle_queue_lends_everything),
        cmocka_unit_test(hierarchy),
        cmocka_unit_test(orphans),
        cmocka_unit_test(cycles_refused),
        cmocka_unit_test(validation_names_field_and_value),
        cmocka_unit_test(remove_queues),
        cmocka_unit_test(may_reclaim_cases),
        cmocka_unit_test(reclaim_at_common_ancestor),
        cmocka_unit_test(reclaim_fully_served_resources),
        cmocka_unit_test(within_limit_messages),
        cmocka_unit_test(usage_ordering),
        cmocka_unit_test(random_trees),
        cmocka_unit_test(out_of_memory_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
