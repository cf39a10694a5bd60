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

/* Runs pods on one_node with the queues of spec (NULL: none), the reclaim
 * mode and the gangs given. */
static void run_pods(struct fx_qsim_result *r, const char *pods, const char *spec,
                     enum fx_qsim_reclaim reclaim, int gangs)
{
    struct fx_trace t = {0};
    load_trace(&t, one_node, pods);
    struct fx_qsim_config c;
    struct flexpu_error err = {0};
    if (spec) {
        assert_int_equal(fx_qsim_parse(spec, &c, &err), 0);
        c.reclaim = reclaim;
    } else {
        memset(&c, 0, sizeof(c));
    }
    c.gangs = gangs;
    if (fx_qsim_run(&t, "flexpu", 0, 1.0, &c, r, &err))
        fail_msg("%s", err.msg);
    fx_trace_free(&t);
}

/* The known case without gangs (b0..b3 would be one: same second, shape
 * and class). */
static void run_known(struct fx_qsim_result *r, const char *spec, bool reclaim)
{
    run_pods(r, borrow_then_reclaim, spec,
             reclaim ? FX_QSIM_RECLAIM_ANY : FX_QSIM_RECLAIM_NEVER, FX_QSIM_GANGS_NONE);
    assert_int_equal(r->gangs, 0);
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
    /* Counted as reclaim, not priority preemption. */
    assert_int_equal(r.reclaims, 2);
    assert_int_equal(b->reclaimed, 2);
    assert_int_equal(r.preemptions, 0);
    /* Serving's pods are of a higher priority than batch's: not-higher-
     * priority allows the same victims. */
    run_pods(&r, borrow_then_reclaim, "serving=50:1,batch=50:1", FX_QSIM_RECLAIM_NOT_HIGHER,
             FX_QSIM_GANGS_NONE);
    assert_int_equal(r.reclaims, 2);
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
    assert_false(c.by_copy);
    assert_int_equal(fx_qsim_parse("teams", &c, &err), 0);
    assert_int_equal(c.nqueues, 4);
    assert_true(c.by_copy);
    assert_string_equal(c.q[3].name, "team3");
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

/* ---- gangs -------------------------------------------------------------- */

/* x holds one of the four GPUs until t = 100; a gang of four (one second,
 * one shape, one class) arrives at t = 10: it starts whole at t = 100,
 * never three members at t = 10. */
static const char *const gang_waits =
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time,deletion_time,"
    "scheduled_time\n"
    "x,2000,1024,1,1000,,LS,0,100,0\n"
    "g0,1000,1024,1,1000,,LS,10,50,10\n"
    "g1,1000,1024,1,1000,,LS,10,60,10\n"
    "g2,1000,1024,1,1000,,LS,10,70,10\n"
    "g3,1000,1024,1,1000,,LS,10,80,10\n";

static void gang_starts_whole_or_waits(void **state)
{
    (void)state;
    struct fx_qsim_result r;
    run_pods(&r, gang_waits, "all=100", FX_QSIM_RECLAIM_ANY, FX_QSIM_GANGS_AUTO);
    assert_int_equal(r.gangs, 1);
    assert_int_equal(r.gang_pods, 4);
    assert_int_equal(r.gangs_started, 1);
    assert_true(r.gang_wait_p50 == 90 && r.gang_wait_p99 == 90);
    assert_int_equal(r.gangs_partial, 0);
    assert_int_equal(r.q[0].started, 5);
    assert_int_equal(r.evictions, 0); /* x has the gang's priority: it stays */
    /* Every member waited the same 90 s: none started alone. */
    assert_true(r.q[0].wait_p50 == 90);
    /* Without gangs three start at once and the fourth waits for g0's end
     * (its own run time: a gang runs as long as its longest member). */
    run_pods(&r, gang_waits, "all=100", FX_QSIM_RECLAIM_ANY, FX_QSIM_GANGS_NONE);
    assert_int_equal(r.gangs, 0);
    assert_true(r.q[0].wait_p50 == 0); /* with the gang: 90 */
    assert_int_equal(r.q[0].started, 5);
    /* --gangs 2 makes two gangs of two (a run of one shape and class). */
    run_pods(&r, gang_waits, "all=100", FX_QSIM_RECLAIM_ANY, 2);
    assert_int_equal(r.gangs, 2);
    assert_int_equal(r.gangs_started, 2);
    assert_int_equal(r.gangs_partial, 0);
    /* One fits beside x at once; the other waits for it to end (its
     * longest member ran 50 s): 50 s, both members. */
    assert_true(r.gang_wait_p50 == 0);
    assert_true(r.q[0].wait_p50 == 0 && r.q[0].wait_p99 == 50);
}

/* Two gangs of three on four GPUs: each fits alone, not both. Had each
 * taken two GPUs, neither could ever start; whole, one runs, then the
 * other. */
static const char *const two_gangs =
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time,deletion_time,"
    "scheduled_time\n"
    "a0,1000,1024,1,1000,,LS,0,100,0\n"
    "b0,2000,1024,1,1000,,LS,0,100,0\n"
    "a1,1000,1024,1,1000,,LS,0,100,0\n"
    "b1,2000,1024,1,1000,,LS,0,100,0\n"
    "a2,1000,1024,1,1000,,LS,0,100,0\n"
    "b2,2000,1024,1,1000,,LS,0,100,0\n";

static void two_gangs_both_run(void **state)
{
    (void)state;
    struct fx_qsim_result r;
    run_pods(&r, two_gangs, "all=100", FX_QSIM_RECLAIM_ANY, FX_QSIM_GANGS_AUTO);
    assert_int_equal(r.gangs, 2);
    assert_int_equal(r.gangs_started, 2);
    assert_int_equal(r.gangs_partial, 0);
    assert_int_equal(r.q[0].started, 6);
    /* One gang at once, the other when it ends: waits 0, 0, 0, 100, 100,
     * 100 (the p99 of two gang waits is the lower one). */
    assert_true(r.gang_wait_p50 == 0);
    assert_true(r.q[0].wait_p50 == 0 && r.q[0].wait_p99 == 100);
    /* Without queues the same. */
    run_pods(&r, two_gangs, NULL, FX_QSIM_RECLAIM_ANY, FX_QSIM_GANGS_AUTO);
    assert_int_equal(r.gangs_started, 2);
    assert_int_equal(r.gangs_partial, 0);
    assert_true(r.q[0].wait_p99 == 100);
}

/* Batch's gang of four holds the node; serving's two pods may reclaim only
 * what leaves batch at its fair share, half: the gang goes whole or not at
 * all, so it stays and serving waits for it to end. */
static void gang_is_one_victim(void **state)
{
    (void)state;
    struct fx_qsim_result r;
    run_pods(&r, borrow_then_reclaim, "serving=50:1,batch=50:1", FX_QSIM_RECLAIM_ANY,
             FX_QSIM_GANGS_AUTO);
    assert_int_equal(r.gangs, 2); /* b0..b3, s0..s1 */
    assert_int_equal(r.evictions, 0);
    assert_int_equal(r.gangs_partial, 0);
    assert_true(queue(&r, "serving")->wait_p99 == 900);
    /* Serving's priority is above batch's, but priority preempts only
     * inside a queue; one queue for all: serving's gang evicts batch's,
     * one victim of four pods. */
    run_pods(&r, borrow_then_reclaim, "all=100", FX_QSIM_RECLAIM_ANY, FX_QSIM_GANGS_AUTO);
    assert_int_equal(r.preemptions, 1);
    assert_int_equal(r.evictions, 4);
    assert_int_equal(r.gangs_partial, 0);
    assert_true(r.gang_wait_p50 == 0);
}

/* ---- priorities ----------------------------------------------------------- */

/* Queues serving (LS, priority 2) and default (BE 0 and Burstable 1) each
 * hold half of the node, their fair share; a Burstable pod comes at
 * t = 100 and a BE pod at t = 200. */
static const char *const prio_mix =
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time,deletion_time,"
    "scheduled_time\n"
    "s0,1000,1024,1,1000,,LS,0,1000,0\n"
    "s1,1000,1024,1,1000,,LS,1,1000,1\n"
    "b0,1000,1024,1,1000,,BE,0,1000,0\n"
    "b1,1000,1024,1,1000,,BE,1,1000,1\n"
    "u0,1000,1024,1,1000,,Burstable,100,1000,100\n"
    "b2,1000,1024,1,1000,,BE,200,1000,200\n";

static void priority_preempts_inside_its_queue(void **state)
{
    (void)state;
    struct fx_qsim_result r;
    run_pods(&r, prio_mix, "serving=50:1,default=50:1", FX_QSIM_RECLAIM_ANY,
             FX_QSIM_GANGS_NONE);
    const struct fx_qsim_queue *s = queue(&r, "serving"), *d = queue(&r, "default");
    /* u0 evicts one BE pod of its own queue, not serving's higher pods. */
    assert_int_equal(r.preemptions, 1);
    assert_int_equal(d->preempted, 1);
    assert_int_equal(s->evicted, 0);
    assert_int_equal(r.reclaims, 0);
    /* b2 finds nothing lower than itself: it waits, evicting nothing. */
    assert_int_equal(r.evictions, 1);
    assert_int_equal(d->pods, 4);
    /* The baseline has no priorities: nothing is preempted. */
    run_pods(&r, prio_mix, NULL, FX_QSIM_RECLAIM_ANY, FX_QSIM_GANGS_NONE);
    assert_int_equal(r.evictions, 0);
}

/* Serving's LS pods borrow the whole node; batch's BE pods come at
 * t = 100 under batch's fair share. */
static const char *const serving_borrows =
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time,deletion_time,"
    "scheduled_time\n"
    "s0,1000,1024,1,1000,,LS,0,1000,0\n"
    "s1,1000,1024,1,1000,,LS,1,1000,1\n"
    "s2,1000,1024,1,1000,,LS,2,1000,2\n"
    "s3,1000,1024,1,1000,,LS,3,1000,3\n"
    "b0,1000,1024,1,1000,,BE,100,200,100\n"
    "b1,1000,1024,1,1000,,BE,101,200,101\n";

static void reclaim_modes(void **state)
{
    (void)state;
    struct fx_qsim_result r;
    /* any: batch takes its half back from serving's higher-priority pods. */
    run_pods(&r, serving_borrows, "serving=50:1,batch=50:1", FX_QSIM_RECLAIM_ANY,
             FX_QSIM_GANGS_NONE);
    assert_int_equal(r.reclaims, 2);
    assert_int_equal(queue(&r, "serving")->reclaimed, 2);
    assert_true(queue(&r, "batch")->wait_p99 == 0);
    /* not-higher-priority: never a pod above the preemptor's priority. */
    run_pods(&r, serving_borrows, "serving=50:1,batch=50:1", FX_QSIM_RECLAIM_NOT_HIGHER,
             FX_QSIM_GANGS_NONE);
    assert_int_equal(r.evictions, 0);
    assert_int_equal(queue(&r, "serving")->evicted, 0);
    assert_true(queue(&r, "batch")->wait_p50 > 0);
    run_pods(&r, serving_borrows, "serving=50:1,batch=50:1", FX_QSIM_RECLAIM_NEVER,
             FX_QSIM_GANGS_NONE);
    assert_int_equal(r.evictions, 0);
}

/* teams: copy k of the trace, every class of it, in team k. */
static void teams_take_copies(void **state)
{
    (void)state;
    struct fx_trace t = {0};
    load_trace(&t, one_node, prio_mix);
    struct fx_qsim_config c;
    struct flexpu_error err = {0};
    assert_int_equal(fx_qsim_parse("teams", &c, &err), 0);
    c.copies = 2;
    c.gangs = FX_QSIM_GANGS_NONE;
    struct fx_qsim_result r;
    if (fx_qsim_run(&t, "flexpu", 0, 1.0, &c, &r, &err))
        fail_msg("%s", err.msg);
    fx_trace_free(&t);
    assert_int_equal(r.q[0].pods, 6);
    assert_int_equal(r.q[1].pods, 6);
    assert_int_equal(r.q[2].pods, 0);
    /* Twelve pods on four GPUs: each team's LS pods preempt its own BE
     * pods, never another team's (the teams are at their fair share). */
    assert_int_equal(r.reclaims, 0);
    assert_true(r.preemptions > 0);
}

static void option_errors_name_the_value(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    enum fx_qsim_reclaim m;
    int g;
    assert_int_equal(fx_qsim_reclaim_parse("not-higher-priority", &m, &err), 0);
    assert_int_equal(m, FX_QSIM_RECLAIM_NOT_HIGHER);
    assert_int_equal(fx_qsim_reclaim_parse("sometimes", &m, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "'sometimes'"));
    assert_int_equal(fx_qsim_gangs_parse("auto", &g, &err), 0);
    assert_int_equal(g, FX_QSIM_GANGS_AUTO);
    assert_int_equal(fx_qsim_gangs_parse("none", &g, &err), 0);
    assert_int_equal(g, FX_QSIM_GANGS_NONE);
    assert_int_equal(fx_qsim_gangs_parse("8", &g, &err), 0);
    assert_int_equal(g, 8);
    const char *bad[] = {"1", "65", "x", "8x", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(fx_qsim_gangs_parse(bad[i], &g, &err), FLEXPU_EINVAL);
        assert_non_null(strstr(err.msg, "--gangs"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(borrowing_then_reclaim),
        cmocka_unit_test(no_reclaim_waits),
        cmocka_unit_test(without_queues),
        cmocka_unit_test(limit_caps),
        cmocka_unit_test(parse_errors_name_the_value),
        cmocka_unit_test(gang_starts_whole_or_waits),
        cmocka_unit_test(two_gangs_both_run),
        cmocka_unit_test(gang_is_one_victim),
        cmocka_unit_test(priority_preempts_inside_its_queue),
        cmocka_unit_test(reclaim_modes),
        cmocka_unit_test(teams_take_copies),
        cmocka_unit_test(option_errors_name_the_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
