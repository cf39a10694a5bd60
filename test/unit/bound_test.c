/* SPDX-License-Identifier: Apache-2.0 */
/* The packing LP bound: hand-solved instances, the relaxation's grid
 * fallback, bad input, and the bound row of a replay never below any
 * policy on the same arrivals. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

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
    if (fx_bound_packable(items, n, gpus, max_configs, &milli, grid, &err))
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
    struct fx_bound_item big[] = {{600, 3}};
    assert_true(near(packable(big, 1, 2, 0, &grid), 1200));
    assert_int_equal(grid, 1);
    /* 810 pairs only with shares up to 190: {810,160} + {810}, the third
     * 810 and nothing else fits. */
    struct fx_bound_item odd[] = {{810, 3}, {160, 1}};
    assert_true(near(packable(odd, 2, 2, 0, NULL), 1780));
    /* Complementary sizes fill both GPUs exactly; repeated sizes merge. */
    struct fx_bound_item exact[] = {{700, 1}, {300, 1}, {400, 1}, {300, 1}, {300, 1}};
    assert_true(near(packable(exact, 5, 2, 0, NULL), 2000));
    /* Whole GPUs (an 8-GPU pod is eight of them) are capped by the GPUs. */
    struct fx_bound_item whole[] = {{1000, 8}, {500, 3}};
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
        items[i] = (struct fx_bound_item){301 + i, 3};
        demand += 3.0 * (301 + i);
    }
    items[30] = (struct fx_bound_item){1000, 5};
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

static void test_bad_input(void **state)
{
    (void)state;
    struct flexpu_error err;
    double milli;
    struct fx_bound_item zero[] = {{0, 1}};
    assert_int_equal(fx_bound_packable(zero, 1, 2, 0, &milli, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "gpu_milli"));
    assert_non_null(strstr(err.msg, "'0'"));
    struct fx_bound_item over[] = {{1001, 1}};
    assert_int_equal(fx_bound_packable(over, 1, 2, 0, &milli, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "1001"));
    struct fx_bound_item negative[] = {{500, -2}};
    assert_int_equal(fx_bound_packable(negative, 1, 2, 0, &milli, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "count"));
    assert_int_equal(fx_bound_packable(over, 0, -1, 0, &milli, NULL, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "gpus"));
}

/* On the same arrivals, no policy ever allocates more than the bound, at
 * any point of the curve. */
static void test_bound_row_dominates_policies(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    load_trace(&t, small_nodes, small_pods);
    static const char *const pols[] = {"random", "bestfit", "fgd", "flexpu"};
    for (uint64_t seed = 1; seed <= 5; seed++) {
        struct fx_replay_opts o = {.scale = 1.3, .coverage = 1.0, .seed = seed};
        struct fx_replay_result b;
        struct flexpu_error err;
        assert_int_equal(fx_replay_arrivals(&t, FX_BOUND_POLICY, &o, &b, &err), 0);
        assert_int_equal(b.pods_placed, -1);
        for (size_t k = 0; k < sizeof(pols) / sizeof(pols[0]); k++) {
            struct fx_replay_result r;
            assert_int_equal(fx_replay_arrivals(&t, pols[k], &o, &r, &err), 0);
            assert_int_equal(r.pods_arrived, b.pods_arrived);
            for (int x = 0; x < FX_CURVE_POINTS; x++)
                if (r.alloc[x] > b.alloc[x] + 1e-9)
                    fail_msg("%s seed %llu: %.4f above the bound %.4f at %d%%", pols[k],
                             (unsigned long long)seed, r.alloc[x], b.alloc[x], x);
            assert_true(r.alloc_milli <= b.alloc_milli + 1);
        }
    }
    fx_trace_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_grid_fallback_only_loosens),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_bound_row_dominates_policies),
    };
    return cmocka_run_group_tests_name("bound", tests, NULL, NULL);
}
