/* SPDX-License-Identifier: Apache-2.0 */
/* The timed replay with queues (sim/timed.h) on traces whose answer is
 * known: two queues with 50/50 guarantees, one idle then busy, so the busy
 * one borrows everything and then gives half of it back by eviction. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "sim/timed.h"
#include "small_trace.h"

static const char *const one_node = "sn,cpu_milli,memory_mib,gpu,model\n"
                                    "n0,64000,262144,4,T4\n";

/* batch (BE) asks the whole node at t=0 for 1000 s; serving (LS) asks
 * half of it at t=100 for 100 s. */
static const char *const borrow_then_reclaim =
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time,deletion_time,"
    "scheduled_time\n"
    "b0,1000,1024,1,1000,,BE,0,1000,0\n"
    "b1,1000,1024,1,1000,,BE,0,1000,0\n"
    "b2,1000,1024,1,1000,,BE,0,1000,0\n"
    "b3,1000,1024,1,1000,,BE,0,1000,0\n"
    "s0,1000,1024,1,1000,,LS,100,200,100\n"
    "s1,1000,1024,1,1000,,LS,100,200,100\n"
    "z0,1000,1024,0,0,,LS,300,301,300\n"; /* no GPU: ends the window at t = 300 */

static void run_known(struct fx_qsim_result *r, const char *spec, bool reclaim)
{
    struct fx_trace t = {0};
    load_trace(&t, one_node, borrow_then_reclaim);
    struct fx_qsim_config c;
    struct flexpu_error err = {0};
    if (spec) {
        assert_int_equal(fx_qsim_parse(spec, &c, &err), 0);
        c.reclaim = reclaim;
    } else {
        memset(&c, 0, sizeof(c));
    }
    if (fx_qsim_run(&t, "flexpu", 0, 1.0, &c, r, &err))
        fail_msg("%s", err.msg);
    fx_trace_free(&t);
}

static const struct fx_qsim_queue *queue(const struct fx_qsim_result *r, const char *name)
{
    for (int q = 0; q < r->nqueues; q++)
        if (strcmp(r->q[q].name, name) == 0)
            return &r->q[q];
    fail_msg("no queue %s", name);
    return NULL;
}

static void borrowing_then_reclaim(void **state)
{
    (void)state;
    struct fx_qsim_result r;
    run_known(&r, "serving=50:1,batch=50:1", true);
    const struct fx_qsim_queue *b = queue(&r, "batch"), *s = queue(&r, "serving");
    /* batch borrowed serving's idle half at once... */
    assert_int_equal(b->pods, 4);
    assert_int_equal(b->started, 4);
    assert_true(b->wait_p99 == 0);
    /* ...and gave it back when serving came: two batch pods evicted, both
     * serving pods started on arrival. */
    assert_int_equal(r.evictions, 2);
    assert_int_equal(b->evicted, 2);
    assert_int_equal(s->evicted, 0);
    assert_int_equal(s->started, 3);
    assert_true(s->wait_p99 == 0);
    /* Between the reclaim (t = 100) and serving's end (t = 200) each holds
     * its fair share, half the GPUs; before, batch held everything it
     * asked, which was its fair share as serving wanted nothing. */
    int mid = 0;
    for (int k = 0; k < r.npoints; k++) {
        if (b->t[k] > 100 && b->t[k] < 200) {
            assert_true(b->share[k] == 0.5 && b->fair[k] == 0.5);
            assert_true(s->share[k] == 0.5 && s->fair[k] == 0.5);
            mid++;
        } else if (b->t[k] < 100) {
            assert_true(b->share[k] == 1.0 && b->fair[k] == 1.0);
        }
    }
    assert_true(mid > 10);
    assert_int_equal(r.pods, 7);
}

/* Without reclaim serving waits for batch's pods to end (t = 1000). */
static void no_reclaim_waits(void **state)
{
    (void)state;
    struct fx_qsim_result r;
    run_known(&r, "serving=50:1,batch=50:1", false);
    const struct fx_qsim_queue *s = queue(&r, "serving");
    assert_int_equal(r.evictions, 0);
    assert_int_equal(s->started, 3);
    assert_true(s->wait_p99 == 900);
}

/* The baseline: one queue, first come first served, no eviction. */
static void without_queues(void **state)
{
    (void)state;
    struct fx_qsim_result r;
    run_known(&r, NULL, true);
    assert_int_equal(r.nqueues, 1);
    assert_int_equal(r.evictions, 0);
    assert_int_equal(r.q[0].pods, 7);
    assert_int_equal(r.q[0].started, 7);
    assert_true(r.wait_p99 == 900);
}

/* A limit caps a queue even when the cluster is idle. */
static void limit_caps(void **state)
{
    (void)state;
    struct fx_qsim_result r;
    run_known(&r, "serving=50:1,batch=0:1:50", true);
    const struct fx_qsim_queue *b = queue(&r, "batch");
    /* Two batch pods at t=0, two when the first end at t=1000. */
    assert_int_equal(b->started, 4);
    assert_true(b->wait_p99 == 1000);
    assert_int_equal(r.evictions, 0);
}

static void parse_errors_name_the_value(void **state)
{
    (void)state;
    struct fx_qsim_config c;
    struct flexpu_error err = {0};
    assert_int_equal(fx_qsim_parse("qos", &c, &err), 0);
    assert_int_equal(c.nqueues, 3);
    assert_string_equal(c.q[c.by_qos[FLEXPU_QOS_LS]].name, "serving");
    assert_string_equal(c.q[c.by_qos[FLEXPU_QOS_GUARANTEED]].name, "serving");
    assert_string_equal(c.q[c.by_qos[FLEXPU_QOS_BE]].name, "batch");
    assert_string_equal(c.q[c.by_qos[FLEXPU_QOS_BURSTABLE]].name, "default");
    /* A QoS class whose queue is not listed goes to the last one. */
    assert_int_equal(fx_qsim_parse("a=10,b=20:2", &c, &err), 0);
    assert_int_equal(c.by_qos[FLEXPU_QOS_LS], 1);
    assert_true(c.q[1].weight == 2);
    const char *bad[] = {"serving", "=5", "a=120", "a=10:1:5", "a=x", "a=10:-1", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(fx_qsim_parse(bad[i], &c, &err), FLEXPU_EINVAL);
        assert_non_null(strstr(err.msg, "--queues"));
    }
    assert_int_equal(fx_qsim_parse("a=1,b=120", &c, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "'b=120'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(borrowing_then_reclaim),
        cmocka_unit_test(no_reclaim_waits),
        cmocka_unit_test(without_queues),
        cmocka_unit_test(limit_caps),
        cmocka_unit_test(parse_errors_name_the_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
