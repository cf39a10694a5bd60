/* SPDX-License-Identifier: Apache-2.0 */
/* The reuse replay's upper bound on busy share (sim/reuse_bound.h;
 * docs/REUSE.md, "An upper bound"): the per-node knapsack and the cheapest
 * fitting shape by hand; then on a one-node cluster whose answer is worked
 * out below, where the nodes' CPU binds, where their host memory binds and
 * where GPU memory binds; and on a small cluster, the bound (of the jobs
 * present, the tighter) is at least what every policy reached, at every
 * event. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/reuse.h"
#include "sim/reuse_bound.h"
#include "small_trace.h"

#define STEP 60 /* seconds between the synthetic series' samples */

/* The least CPU and, separately, the least memory of the shapes whose GPU
 * memory fits. */
static void cheapest_fitting_shape(void **state)
{
    (void)state;
    const struct fx_rbound_shape sh[] = {
        {4000, 8192, 500},
        {1000, 30000, 800},
        {2000, 2048, 200},
    };
    struct fx_rbound_table t;
    assert_int_equal(fx_rbound_table_init(&t, sh, 3), 0);
    double cpu = 0, mem = 0;
    assert_false(fx_rbound_cheapest(&t, 100, &cpu, &mem)); /* nothing needs so little */
    assert_true(fx_rbound_cheapest(&t, 200, &cpu, &mem)); /* exactly fits */
    assert_true(cpu == 2000 && mem == 2048);
    assert_true(fx_rbound_cheapest(&t, 600, &cpu, &mem));
    assert_true(cpu == 2000 && mem == 2048);
    assert_true(fx_rbound_cheapest(&t, INFINITY, &cpu, &mem)); /* CPU of one, memory of another */
    assert_true(cpu == 1000 && mem == 2048);
    fx_rbound_table_free(&t);
}

/* The best set of a node's GPUs within its free CPU and memory. */
static void node_knapsack(void **state)
{
    (void)state;
    struct fx_rbound_gpu g[] = {
        {1000, 2000, 2000},
        {900, 2000, 1000},
        {600, 2000, 1000},
        {0, 1, 1}, /* carries nothing: never counted */
    };
    /* Room for everything. */
    assert_true(fabs(fx_rbound_node(g, 4, 1e9, 1e9) - 2500) < 1e-9);
    /* CPU binds: two jobs' worth, the two best GPUs. */
    assert_true(fabs(fx_rbound_node(g, 4, 5000, 1e9) - 1900) < 1e-9);
    /* Memory binds: 2000 MiB takes the first GPU alone (1000) or the other
     * two (1500), the better; a greedy by value would take the first. */
    assert_true(fabs(fx_rbound_node(g, 4, 1e9, 2000) - 1500) < 1e-9);
    /* Both: 3999 mCPU is one job; the best one that fits 1000 MiB. */
    assert_true(fabs(fx_rbound_node(g, 4, 3999, 1000) - 900) < 1e-9);
    assert_true(fx_rbound_node(g, 4, 1999, 1e9) == 0);
    /* More GPUs than the exact search takes: the fractional relaxation,
     * still at least the exact answer (20 GPUs of 100 at 1000 mCPU, room
     * for 7.5: 750). */
    struct fx_rbound_gpu many[20];
    for (int i = 0; i < 20; i++)
        many[i] = (struct fx_rbound_gpu){100, 1000, 1};
    assert_true(fabs(fx_rbound_node(many, 20, 7500, 1e9) - 750) < 1e-9);
}

#define POD_HEADER                                                                             \
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time,deletion_time,"    \
    "scheduled_time\n"

/* One GenAI pod for n samples: duty percent and memory of the reference
 * 1000 bytes, constant. */
static void series(struct fx_genai *u, int duty, int mem, int n)
{
    char d[8192], m[8192];
    int ld = snprintf(d, sizeof(d), "value,timestamp_anon,container_ip\n");
    int lm = snprintf(m, sizeof(m), "timestamp_anon,value,container_ip\n");
    for (int k = 0; k < n; k++) {
        ld += snprintf(d + ld, sizeof(d) - (size_t)ld, "%d,%d,p\n", duty, STEP * k);
        lm += snprintf(m + lm, sizeof(m) - (size_t)lm, "%d,%d,p\n", STEP * k, mem);
    }
    struct flexpu_error err = {0};
    FILE *fd = fmemopen(d, (size_t)ld, "r"), *fm = fmemopen(m, (size_t)lm, "r");
    if (fx_genai_read(u, "duty.csv", fd, "mem.csv", fm, 1000, &err))
        fail_msg("%s", err.msg);
}

static void one_run_after(const char *nodes, const char *pods, int duty, int mem,
                          enum fx_reuse_mode mode, double warmup_s, int backlog,
                          struct fx_reuse_result *r)
{
    struct fx_genai u;
    series(&u, duty, mem, 30);
    struct fx_trace t = {0};
    load_trace(&t, nodes, pods);
    struct fx_reuse_config c;
    fx_reuse_defaults(&c);
    c.owner_share = 0.5;
    c.backlog = backlog;
    c.warmup_s = warmup_s;
    c.window_s = 1200;
    c.trace_part = -1;
    struct flexpu_error err = {0};
    if (fx_reuse_run(&t, &u, mode, &c, r, &err))
        fail_msg("%s", err.msg);
    fx_trace_free(&t);
    fx_genai_free(&u);
}

static void one_run(const char *nodes, const char *pods, int duty, int mem, enum fx_reuse_mode mode,
                    struct fx_reuse_result *r)
{
    one_run_after(nodes, pods, duty, mem, mode, 0, 4, r);
}

static void near(double got, double want)
{
    if (fabs(got - want) > 1e-6)
        fail_msg("bound %.6f, expected %.6f", got, want);
}

/* One node of two GPUs. The owner o0 asks a whole GPU (half the cluster's
 * compute: owner_share 0.5), 4 cores and 8 GiB, for the whole run; its
 * duty is 50% (it uses 500 of its GPU), its memory 0.2 of the GPU (its
 * peak, what it reserves) unless said. Batch jobs ask 4 cores, 6000 MiB and
 * half a GPU (500 of its memory, batch_mem 1).
 *
 * 12 cores, 64 GiB: 8 cores are left, two jobs, both GPUs carry batch:
 * owners' 500 + the owner's GPU's idle 500 + the free GPU's 1000 = 2000 of
 * 2000, 100%. With 10 cores (6 left: one job) the better GPU, the free one:
 * 500 + 1000 = 1500, 75%; without the CPU limit, 100% again. With 16 GiB
 * (8 left: one job of 6000 MiB) the same 75%, the host memory binding.
 * With the owner's memory 0.9 of the GPU, 100 is left there, less than a
 * job's 500: only the free GPU, 75% whatever the CPU, 100% without the GPU
 * memory limit. */
static const char *const bound_pods = POD_HEADER "o0,4000,8192,1,1000,,LS,0,1000000,0\n"
                                                 "b0,4000,6000,1,500,,BE,0,100000,0\n";

static void check(const struct fx_reuse_result *r, double all, double no_cpu, double no_host,
                  double no_gpu)
{
    near(r->bound_share[FX_BOUND_ALL], all);
    near(r->bound_share[FX_BOUND_NO_CPU], no_cpu);
    near(r->bound_share[FX_BOUND_NO_HOSTMEM], no_host);
    near(r->bound_share[FX_BOUND_NO_GPUMEM], no_gpu);
    /* One shape: no cheaper jobs to count apart, the jobs present give the
     * same bound. */
    for (int b = 0; b < FX_REUSE_BOUNDS; b++)
        near(r->hand_share[b], r->bound_share[b]);
    /* The jobs present (a backlog of four) reach it: the bound is tight. */
    near(r->witness_share, all);
    assert_int_equal(r->bound_breaches, 0);
    assert_true(r->busy_share <= r->bound_share[FX_BOUND_ALL] + 1e-9);
}

static void bound_by_hand(void **state)
{
    (void)state;
    struct fx_reuse_result r;
    for (int m = 0; m < FX_REUSE_MODES_; m++) {
        one_run("sn,cpu_milli,memory_mib,gpu,model\nn0,12000,65536,2,T4\n", bound_pods, 50, 200,
                (enum fx_reuse_mode)m, &r);
        check(&r, 1.0, 1.0, 1.0, 1.0);
        /* The CPU binds. */
        one_run("sn,cpu_milli,memory_mib,gpu,model\nn0,10000,65536,2,T4\n", bound_pods, 50, 200,
                (enum fx_reuse_mode)m, &r);
        check(&r, 0.75, 1.0, 0.75, 0.75);
        /* The host memory binds. */
        one_run("sn,cpu_milli,memory_mib,gpu,model\nn0,12000,16384,2,T4\n", bound_pods, 50, 200,
                (enum fx_reuse_mode)m, &r);
        check(&r, 0.75, 0.75, 1.0, 0.75);
        /* GPU memory binds. */
        one_run("sn,cpu_milli,memory_mib,gpu,model\nn0,12000,65536,2,T4\n", bound_pods, 50, 900,
                (enum fx_reuse_mode)m, &r);
        check(&r, 0.75, 0.75, 0.75, 1.0);
    }
}

/* The jobs present, counted. The same node (12 cores), the owner's memory
 * 0.9 of its GPU: 100 left there. Batch jobs alternate between bb (5
 * cores, half a GPU: 500 of memory) and bt (2 cores, 0.1 of a GPU, 1 s of
 * work). With a backlog of one, bb0 starts on the free GPU, bt0 beside it
 * and is done in under a second, bb1 is drawn and waits for good (3 cores
 * left): from 121 s on, no bt is present. Of any jobs, a bt on the owner's
 * GPU (its idle 500) and one on the free GPU fit the 8 cores the owner
 * leaves: 100%. Of the jobs present: at the level that leaves out bt's
 * shape (below bb's CPU or its GPU memory), only the free GPU can carry a
 * job, 500 + 1000 of 2000, and no bt adds a GPU: 75%, what the run
 * reaches (bb0 alone on the free GPU, the owner's use). */
static const char *const rare_pods = POD_HEADER "o0,4000,8192,1,1000,,LS,0,1000000,0\n"
                                                "bb,5000,8192,1,500,,BE,0,100000,0\n"
                                                "bt,2000,4096,1,100,,BE,1,2,1\n";

static void rare_jobs_counted(void **state)
{
    (void)state;
    for (int m = FX_REUSE_FLEXPU; m <= FX_REUSE_BORROW; m++) {
        struct fx_reuse_result r;
        one_run_after("sn,cpu_milli,memory_mib,gpu,model\nn0,12000,65536,2,T4\n", rare_pods, 50,
                      900, (enum fx_reuse_mode)m, 180, 1, &r);
        near(r.bound_share[FX_BOUND_ALL], 1.0);
        near(r.hand_share[FX_BOUND_ALL], 0.75);
        near(r.busy_share, 0.75);
        near(r.witness_share, 0.75);
        assert_int_equal(r.bound_breaches, 0);
    }
}

/* On the three-node trace of the replay tests, owners and batch jobs of
 * several shapes: whatever each policy placed, it never used more GPU time
 * than the bound at any event, so its busy share is at most the bound's. */
static const char *const mixed_pods =
    POD_HEADER "o0,4000,8192,1,1000,,LS,0,700,0\n"
               "o1,8000,16384,2,1000,,LS,10,900,10\n"
               "o2,2000,4096,1,500,,LS,20,400,20\n"
               "o3,16000,32768,4,1000,,LS,30,1100,30\n"
               "b0,2000,4096,1,500,,BE,0,300,0\n"
               "b1,1000,2048,1,250,,BE,5,200,5\n"
               "b2,8000,16384,1,1000,,BE,7,500,7\n"
               "b3,2000,4096,1,470,,BE,9,250,9\n";

static void bound_holds_for_every_policy(void **state)
{
    (void)state;
    int duties[] = {0, 30, 100};
    for (int d = 0; d < 3; d++)
        for (int m = 0; m < FX_REUSE_MODES_; m++) {
            struct fx_reuse_result r;
            one_run(small_nodes, mixed_pods, duties[d], 300, (enum fx_reuse_mode)m, &r);
            assert_int_equal(r.bound_breaches, 0);
            assert_true(r.busy_share > 0);
            assert_true(r.busy_share <= r.hand_share[FX_BOUND_ALL] + 1e-9);
            for (int b = 0; b < FX_REUSE_BOUNDS; b++) /* counting the jobs only tightens */
                assert_true(r.hand_share[b] <= r.bound_share[b] + 1e-9);
            for (int b = 1; b < FX_REUSE_BOUNDS; b++) { /* dropping a constraint only loosens */
                assert_true(r.bound_share[b] >= r.bound_share[FX_BOUND_ALL] - 1e-9);
                assert_true(r.hand_share[b] >= r.hand_share[FX_BOUND_ALL] - 1e-9);
            }
            assert_true(r.bound_share[FX_BOUND_ALL] <= 1 + 1e-9);
            assert_true(r.witness_share > 0 && r.witness_share <= 1 + 1e-9);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cheapest_fitting_shape),
        cmocka_unit_test(node_knapsack),
        cmocka_unit_test(bound_by_hand),
        cmocka_unit_test(rare_jobs_counted),
        cmocka_unit_test(bound_holds_for_every_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
