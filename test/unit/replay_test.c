/* SPDX-License-Identifier: Apache-2.0 */
/* The replays: arrival replay invariants and determinism, a timed replay
 * with a hand-computed answer, and fidelity on the real trace. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sim/replay.h"
#include "small_trace.h"

static void test_arrivals_invariants_and_determinism(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    load_trace(&t, small_nodes, small_pods);
    assert_int_equal(t.gpus, 14);
    static const char *const pols[] = {"whole", "random", "bestfit", "dotprod",
                                       "packing", "fgd", "flexpu"};
    for (size_t k = 0; k < sizeof(pols) / sizeof(pols[0]); k++) {
        struct fx_replay_opts o = {.scale = 1.3, .coverage = 1.0, .seed = 42};
        struct fx_replay_result a, b;
        struct flexpu_error err;
        assert_int_equal(fx_replay_arrivals(&t, pols[k], &o, &a, &err), 0);
        assert_int_equal(fx_replay_arrivals(&t, pols[k], &o, &b, &err), 0);
        assert_int_equal(a.pods_placed, b.pods_placed);
        assert_memory_equal(a.alloc, b.alloc, sizeof(a.alloc));
        assert_true(a.pods_placed <= a.pods_arrived);
        assert_true(a.demand_arrived_milli <= 13 * 14 * 100);
        assert_true(a.demand_placed_milli <= a.demand_arrived_milli);
        assert_true(a.alloc_milli <= a.total_milli);
        /* nothing departs: allocation never falls as demand arrives */
        for (int x = 1; x < FX_CURVE_POINTS; x++)
            assert_true(a.alloc[x] >= a.alloc[x - 1]);
        if (strcmp(pols[k], "whole") != 0)
            assert_int_equal(a.alloc_milli, a.demand_placed_milli);
    }
    fx_trace_free(&t);
}

/* Two 1-GPU nodes. a and b hold both GPUs from t=0 to 10; c arrives at 5,
 * waits until 10, then runs its 3 seconds; d (CPU-only) never waits. */
static void test_timed_known_answer(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    load_trace(&t,
         "sn,cpu_milli,memory_mib,gpu,model\n"
         "n0,8000,16384,1,T4\n"
         "n1,8000,16384,1,T4\n",
         "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
         "deletion_time,scheduled_time\n"
         "a,1000,1024,1,1000,,LS,Running,0,10,0\n"
         "b,1000,1024,1,1000,,LS,Running,0,10,0\n"
         "c,1000,1024,1,1000,,LS,Running,5,8,5\n"
         "d,1000,1024,0,0,,BE,Running,6,7,\n"
         "e,1000,1024,2,1000,,LS,Running,7,9,7\n");
    struct fx_timed_result r;
    struct flexpu_error err;
    assert_int_equal(fx_replay_timed(&t, "flexpu", 1.0, 1.0, &r, &err), 0);
    assert_int_equal(r.pods, 5);
    assert_int_equal(r.placed_on_arrival, 3);
    assert_int_equal(r.placed_later, 1);  /* c, at t=10 */
    assert_int_equal(r.never_placed, 1);  /* e: 2 GPUs on one node never exist */
    assert_true(r.pending_max == 5.0);    /* c waited 10 - 5 */
    fx_trace_free(&t);
}

static void test_timed_needs_times(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    load_trace(&t, small_nodes, small_pods);
    struct fx_timed_result r;
    struct flexpu_error err;
    assert_int_equal(fx_replay_timed(&t, "fgd", 1.0, 1.0, &r, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "creation_time"));
    struct fx_replay_opts o = {.scale = 1.3, .coverage = 1.0, .seed = 1};
    struct fx_replay_result a;
    assert_int_equal(fx_replay_arrivals(&t, "nope", &o, &a, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "nope"));
    fx_trace_free(&t);
}

/* The curve's point x is what the FGD authors' analysis publishes: the mean
 * allocation over the states after every arrival whose arrived demand,
 * in percent of capacity, rounds to x; a point no arrival rounds to takes
 * the states within one point of it. Ten GPUs; every pod asks 40 milli, so
 * after the k-th arrival 0.4k % has arrived and 0.4k % is allocated. Point
 * 2 averages k = 4, 5, 6 (1.6, 2.0, 2.4 %): 2.0 %, where the state once
 * demand passed 2 % (k = 7, 2.8 %) gave 2.8 %. That was 0.6-0.7 points too
 * high on the artifact's gpuspec25/33 at 100 %, where the curve still climbs
 * steeply (docs/SCHEDULING.md, "Fidelity"). */
static void test_curve_point_is_the_published_mean(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    load_trace(&t,
               "sn,cpu_milli,memory_mib,gpu,model\n"
               "n0,64000,131072,10,T4\n",
               "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos\n"
               "a,100,100,1,40,,BE\n"
               "b,100,100,1,40,,BE\n");
    struct fx_replay_opts o = {.scale = 0.1, .coverage = 1.0, .seed = 42};
    struct fx_replay_result r;
    struct flexpu_error err;
    assert_int_equal(fx_replay_arrivals(&t, "bestfit", &o, &r, &err), 0);
    assert_int_equal(r.pods_arrived, 25);
    assert_int_equal(r.pods_placed, 25);
    /* arrivals k per point: 1 | 2-3 | 4-6 | 7-8 | 9-11 | 12-13 | 14-16 |
     * 17-18 | 19-21 | 22-23 | 24-25 */
    const double want[11] = {0.4, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 9.8};
    for (int x = 0; x <= 10; x++)
        if (fabs(100 * r.alloc[x] - want[x]) > 1e-9)
            fail_msg("point %d: %.4f %%, want %.4f %%", x, 100 * r.alloc[x], want[x]);
    /* a point past the last arrival: the window's states (point 11: those
     * of point 10), and beyond it the state after the last arrival */
    assert_true(fabs(r.alloc[11] - 0.098) < 1e-12);
    assert_true(fabs(r.alloc[12] - 0.1) < 1e-12 && fabs(r.alloc[130] - 0.1) < 1e-12);
    fx_trace_free(&t);
}

/* The published FGD paper numbers at 100% demand on the default trace:
 * BestFit 92.9%, FGD 95.2% (one seed here; the bench runs ten). */
static void test_fidelity_on_real_trace(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    if (!load_default_trace(&t))
        skip();
    struct flexpu_error err;
    /* coverage 0: each policy's own typical pods (fgd: the reference's). */
    struct fx_replay_opts o = {.scale = 1.3, .coverage = 0, .seed = 42};
    struct fx_replay_result bf, fgd, fx;
    assert_int_equal(fx_replay_arrivals(&t, "bestfit", &o, &bf, &err), 0);
    assert_int_equal(fx_replay_arrivals(&t, "fgd", &o, &fgd, &err), 0);
    assert_int_equal(fx_replay_arrivals(&t, "flexpu", &o, &fx, &err), 0);
    assert_true(bf.alloc[100] > 0.919 && bf.alloc[100] < 0.939);
    /* Published FGD, mean of seeds 42-51: 95.23%; the reference simulator
     * gives 95.14% on seed 42 alone. The fgd of before issue 13 (random
     * ties, every shape) gave 94.76% here. */
    assert_true(fgd.alloc[100] > 0.9473 && fgd.alloc[100] < 0.9573);
    assert_true(fx.alloc[100] > 0.942);
    fx_trace_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arrivals_invariants_and_determinism),
        cmocka_unit_test(test_curve_point_is_the_published_mean),
        cmocka_unit_test(test_timed_known_answer),
        cmocka_unit_test(test_timed_needs_times),
        cmocka_unit_test(test_fidelity_on_real_trace),
    };
    return cmocka_run_group_tests_name("replay", tests, NULL, NULL);
}
