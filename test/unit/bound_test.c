/* SPDX-License-Identifier: Apache-2.0 */
/* The packing LP bound: hand-solved instances, with GPU models too, the
 * relaxation's grid fallback, one LP solved again for fewer items, bad
 * input, and the bound row of a replay never below any policy on the same
 * arrivals. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sim/bound.h"
#include "sim/replay.h"
#include "small_trace.h"

static double packable(const struct fx_bound_item *items, int n, int64_t gpus, int max_configs,
                       int *grid)
{
    struct flexpu_error err;
    double milli = -1;
    if (fx_bound_packable(items, n, &gpus, 1, max_configs, &milli, grid, &err))
        fail_msg("%s", err.msg);
    return milli;
}

/* LP optima are floating point: equal within a thousandth of a milli. */
static int near(double a, double b)
{
    return a > b - 1e-3 && a < b + 1e-3;
}

/* Each answer below is worked out by hand: it is the best integral packing
 * and the LP cannot do better. */
static void test_known_answers(void **state)
{
    (void)state;
    int grid = 0;
    /* Two shares above half a GPU never share one: three 600s on two GPUs
     * place two. */
    struct fx_bound_item big[] = {{600, 3, 0}};
    assert_true(near(packable(big, 1, 2, 0, &grid), 1200));
    assert_int_equal(grid, 1);
    /* 810 pairs only with shares up to 190: {810,160} + {810}, the third
     * 810 and nothing else fits. */
    struct fx_bound_item odd[] = {{810, 3, 0}, {160, 1, 0}};
    assert_true(near(packable(odd, 2, 2, 0, NULL), 1780));
    /* Complementary sizes fill both GPUs exactly; repeated sizes merge. */
    struct fx_bound_item exact[] = {{700, 1, 0}, {300, 1, 0}, {400, 1, 0}, {300, 1, 0},
                                    {300, 1, 0}};
    assert_true(near(packable(exact, 5, 2, 0, NULL), 2000));
    /* Whole GPUs (an 8-GPU pod is eight of them) are capped by the GPUs. */
    struct fx_bound_item whole[] = {{1000, 8, 0}, {500, 3, 0}};
    assert_true(near(packable(whole, 2, 9, 0, NULL), 9000));
    assert_true(near(packable(whole, 2, 12, 0, NULL), 9500));
    /* Nothing arrived, or no GPU: nothing packs. */
    assert_true(near(packable(big, 0, 4, 0, NULL), 0));
    assert_true(near(packable(big, 1, 0, 0, NULL), 0));
}

/* With a tiny configuration budget the sizes go onto a coarser grid: the
 * bound may only grow (it stays a bound) and says which grid it used. */
static void test_grid_fallback_only_loosens(void **state)
{
    (void)state;
    /* Thirty distinct sizes just above 300: thousands of configurations
     * exactly, a handful once rounded down to a 10-milli grid. */
    struct fx_bound_item items[31];
    double demand = 0;
    for (int i = 0; i < 30; i++) {
        items[i] = (struct fx_bound_item){301 + i, 3, 0};
        demand += 3.0 * (301 + i);
    }
    items[30] = (struct fx_bound_item){1000, 5, 0};
    demand += 5000;
    int exact_grid = 0, coarse_grid = 0;
    double exact = packable(items, 31, 30, 0, &exact_grid);
    double coarse = packable(items, 31, 30, 100, &coarse_grid);
    assert_int_equal(exact_grid, 1);
    assert_true(coarse_grid > 1);
    assert_true(coarse >= exact - 1e-6);
    /* Three of these never share a GPU (3 x 301 > 900 leaves no fourth,
     * but 3 x 330 = 990 fits): the exact bound packs all 90 on 30 GPUs. */
    assert_true(exact <= demand + 1e-6 && exact <= 30 * 1000 + 1e-6);
}

/* Pods that accept only some GPU models can use only those GPUs. Model A
 * has 1 GPU, B 2; three 600s accept only A, two 400s any model, one whole
 * GPU only B. A holds one 600 at most (two never share a GPU) and B no 600,
 * so at most 600 + 2 x 400 + 1000 = 2400 packs, which A {600, 400} and B
 * {1000}, {400} reach. Ignoring models, {600, 400} twice and {1000} fill
 * all three GPUs: 3000, the bound before it knew models. */
static void test_models_bind(void **state)
{
    (void)state;
    struct flexpu_error err;
    double milli = -1;
    int64_t gpus[] = {1, 2};
    struct fx_bound_item items[] = {{600, 3, 1}, {400, 2, 0}, {1000, 1, 2}};
    assert_int_equal(fx_bound_packable(items, 3, gpus, 2, 0, &milli, NULL, &err), 0);
    assert_true(near(milli, 2400));
    struct fx_bound_item blind[] = {{600, 3, 0}, {400, 2, 0}, {1000, 1, 0}};
    assert_true(near(packable(blind, 3, 3, 0, NULL), 3000));
    /* Each pool's configurations are enumerated over the sizes it may
     * take: thirty sizes just above 300, half of them only for A, force a
     * coarse grid on a small budget, and the bound only grows there. */
    struct fx_bound_item many[30];
    for (int i = 0; i < 30; i++)
        many[i] = (struct fx_bound_item){301 + i, 3, i % 2 ? 0 : 1};
    int64_t gpus_many[] = {10, 20};
    int exact_grid = 0, coarse_grid = 0;
    double exact = -1, coarse = -1;
    assert_int_equal(fx_bound_packable(many, 30, gpus_many, 2, 0, &exact, &exact_grid, &err), 0);
    assert_int_equal(fx_bound_packable(many, 30, gpus_many, 2, 100, &coarse, &coarse_grid, &err),
                     0);
    assert_int_equal(exact_grid, 1);
    assert_true(coarse_grid > 1 && coarse >= exact - 1e-6);
    /* A pod asking only for a model no GPU has packs nowhere. */
    int64_t none[] = {4, 0};
    struct fx_bound_item lost[] = {{500, 3, 2}, {500, 1, 3}};
    assert_int_equal(fx_bound_packable(lost, 2, none, 2, 0, &milli, NULL, &err), 0);
    assert_true(near(milli, 500));
    assert_int_equal(fx_bound_packable(lost, 1, none, 2, 0, &milli, NULL, &err), 0);
    assert_true(near(milli, 0));
}

/* Models that every item accepts alike are one pool: the LP is the one
 * of a single model with their GPUs, to the last bit. */
static void test_models_no_item_tells_apart(void **state)
{
    (void)state;
    struct flexpu_error err;
    int64_t split[] = {3, 0, 4}, whole = 7;
    /* 810 fills a GPU only beside 190 or less; 160s, 340s and whole GPUs
     * compete for the rest. */
    struct fx_bound_item any[] = {{810, 6, 0}, {160, 4, 0}, {340, 5, 0}, {1000, 2, 0}};
    struct fx_bound_item named[] = {{810, 6, 5}, {160, 4, 0}, {340, 5, 7}, {1000, 2, 5}};
    double one = packable(any, 4, whole, 0, NULL), a = -1, b = -1;
    assert_int_equal(fx_bound_packable(any, 4, split, 3, 0, &a, NULL, &err), 0);
    assert_int_equal(fx_bound_packable(named, 4, split, 3, 0, &b, NULL, &err), 0);
    assert_true(a == one && b == one);
}

/* One LP solved for fewer and fewer items gives what a fresh LP gives on
 * each count. Built for two 500s, a configuration of both stays in the LP:
 * left on for one 500 and a 600 on one GPU, it would carry the 500 on half
 * a GPU beside half a 600 (800, where 600 is the most). */
static void test_lp_reuse_matches_fresh(void **state)
{
    (void)state;
    struct flexpu_error err;
    int64_t one = 1;
    struct fx_bound_item items[] = {{500, 2, 0}, {600, 1, 0}};
    struct fx_bound_lp *lp;
    double milli = -1;
    assert_int_equal(fx_bound_lp_new(items, 2, &one, 1, 0, &lp, NULL, &err), 0);
    assert_int_equal(fx_bound_lp_solve(lp, items, 2, &milli, &err), 0);
    assert_true(near(milli, 1000));
    items[0].count = 1;
    assert_int_equal(fx_bound_lp_solve(lp, items, 2, &milli, &err), 0);
    assert_true(near(milli, 600));
    /* More than it was built for, or other items: refused by name. */
    items[1].count = 2;
    assert_int_equal(fx_bound_lp_solve(lp, items, 2, &milli, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "count"));
    assert_int_equal(fx_bound_lp_solve(lp, items, 1, &milli, &err), FLEXPU_EINVAL);
    fx_bound_lp_free(lp);
    /* Models, sizes and counts that shrink step by step (a replay's
     * prefixes, taken back out): every step as a fresh LP gives it. */
    int64_t gpus[] = {2, 3, 1};
    struct fx_bound_item mix[] = {{810, 4, 1}, {190, 3, 0}, {500, 5, 6}, {250, 6, 2},
                                  {1000, 3, 5}, {340, 4, 0}, {660, 2, 4}};
    int n = (int)(sizeof(mix) / sizeof(mix[0]));
    assert_int_equal(fx_bound_lp_new(mix, n, gpus, 3, 0, &lp, NULL, &err), 0);
    for (int step = 0; step < 20; step++) {
        double again = -1, fresh = -2;
        assert_int_equal(fx_bound_lp_solve(lp, mix, n, &again, &err), 0);
        assert_int_equal(fx_bound_packable(mix, n, gpus, 3, 0, &fresh, NULL, &err), 0);
        if (!near(again, fresh))
            fail_msg("step %d: %.3f solved again, %.3f fresh", step, again, fresh);
        struct fx_bound_item *it = &mix[(step * 3) % n];
        if (it->count > 0)
            it->count--;
    }
    fx_bound_lp_free(lp);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct flexpu_error err;
    double milli;
    int64_t two[] = {2, 0};
    struct fx_bound_item zero[] = {{0, 1, 0}};
    assert_int_equal(fx_bound_packable(zero, 1, two, 1, 0, &milli, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "gpu_milli"));
    assert_non_null(strstr(err.msg, "'0'"));
    struct fx_bound_item over[] = {{1001, 1, 0}};
    assert_int_equal(fx_bound_packable(over, 1, two, 1, 0, &milli, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "1001"));
    struct fx_bound_item negative[] = {{500, -2, 0}};
    assert_int_equal(fx_bound_packable(negative, 1, two, 1, 0, &milli, NULL, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "count"));
    int64_t minus[] = {-1};
    assert_int_equal(fx_bound_packable(over, 0, minus, 1, 0, &milli, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "gpus"));
    /* Model 1 named where only model 0 is given. */
    struct fx_bound_item past[] = {{500, 1, 2}};
    assert_int_equal(fx_bound_packable(past, 1, two, 1, 0, &milli, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "models"));
    assert_non_null(strstr(err.msg, "0x2"));
    assert_int_equal(fx_bound_packable(past, 1, two, 65, 0, &milli, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "nmodels"));
}

/* On the same arrivals as the bound row b, no policy allocates more than
 * it, at any point of the curve. */
static void assert_policies_under(const struct fx_trace *t, const struct fx_replay_opts *o,
                                  const struct fx_replay_result *b)
{
    static const char *const pols[] = {"random", "bestfit", "fgd", "flexpu"};
    for (size_t k = 0; k < sizeof(pols) / sizeof(pols[0]); k++) {
        struct fx_replay_result r;
        struct flexpu_error err;
        assert_int_equal(fx_replay_arrivals(t, pols[k], o, &r, &err), 0);
        assert_int_equal(r.pods_arrived, b->pods_arrived);
        for (int x = 0; x < FX_CURVE_POINTS; x++)
            if (r.alloc[x] > b->alloc[x] + 1e-9)
                fail_msg("%s seed %llu: %.4f above the bound %.4f at %d%%", pols[k],
                         (unsigned long long)o->seed, r.alloc[x], b->alloc[x], x);
        assert_true(r.alloc_milli <= b->alloc_milli + 1);
    }
}

static void test_bound_row_dominates_policies(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    load_trace(&t, small_nodes, small_pods);
    for (uint64_t seed = 1; seed <= 5; seed++) {
        struct fx_replay_opts o = {.scale = 1.3, .coverage = 1.0, .seed = seed};
        struct fx_replay_result b;
        struct flexpu_error err;
        assert_int_equal(fx_replay_arrivals(&t, FX_BOUND_POLICY, &o, &b, &err), 0);
        assert_int_equal(b.pods_placed, -1);
        assert_policies_under(&t, &o, &b);
    }
    fx_trace_free(&t);
}

/* A trace whose pods all ask for T4 (6 of the 14 GPUs): no placement
 * allocates more than the T4s, and the bound says so (before it counted
 * models it gave all 14 GPUs at 130%). */
static void test_bound_row_counts_models(void **state)
{
    (void)state;
    static const char *const t4_pods =
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos\n"
        "a0,1000,1024,1,1000,T4,LS\n"
        "a1,1000,1024,2,1000,T4,LS\n"
        "a2,1000,1024,1,500,T4,BE\n";
    struct fx_trace t = {0};
    load_trace(&t, small_nodes, t4_pods);
    for (uint64_t seed = 1; seed <= 3; seed++) {
        struct fx_replay_opts o = {.scale = 1.3, .coverage = 1.0, .seed = seed};
        struct fx_replay_result b;
        struct flexpu_error err;
        assert_int_equal(fx_replay_arrivals(&t, FX_BOUND_POLICY, &o, &b, &err), 0);
        if (!near(b.alloc[130] * 14, 6))
            fail_msg("seed %llu: bound %.4f GPUs at 130%%, want the 6 T4s",
                     (unsigned long long)seed, b.alloc[130] * 14);
        assert_policies_under(&t, &o, &b);
    }
    fx_trace_free(&t);
}

/* The default trace names no models: its bound is the classic LP's, as
 * read before the bound counted models (flexpu-sim --policy bound --seeds
 * 42, curves.csv). */
static void test_default_trace_bound_unchanged(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    if (!load_default_trace(&t))
        skip();
    struct flexpu_error err;
    struct fx_replay_opts o = {.scale = 1.3, .seed = 42};
    struct fx_replay_result b;
    assert_int_equal(fx_replay_arrivals(&t, FX_BOUND_POLICY, &o, &b, &err), 0);
    assert_true(fabs(b.alloc[100] - 0.969815) < 1e-6);
    assert_true(fabs(b.alloc[130] - 0.998976) < 1e-6);
    fx_trace_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_grid_fallback_only_loosens),
        cmocka_unit_test(test_models_bind),
        cmocka_unit_test(test_models_no_item_tells_apart),
        cmocka_unit_test(test_lp_reuse_matches_fresh),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_bound_row_dominates_policies),
        cmocka_unit_test(test_bound_row_counts_models),
        cmocka_unit_test(test_default_trace_bound_unchanged),
    };
    return cmocka_run_group_tests_name("bound", tests, NULL, NULL);
}
