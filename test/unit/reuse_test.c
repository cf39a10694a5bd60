/* SPDX-License-Identifier: Apache-2.0 */
/* The reuse replay (sim/reuse.h) on one-node traces and synthetic GenAI
 * series whose answer is known: a borrower is evicted before an owner's or
 * an ordinary allocation's memory would not fit, and no owner is refused;
 * a borrower is reclaimed when its owner's use rises and stays up, not for
 * a one-sample spike; with idle owners and a backlog, reuse keeps the GPUs
 * busier than flexpu without it; borrowing memory owners reserved but do
 * not use (borrow_mem idle) delays an owner's allocation, never refuses it;
 * every policy sees the same owners (common random numbers); batch jobs get
 * the GPU time the runtime's arbiter gives them (batch_gpu). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/reuse.h"
#include "small_trace.h"

#define STEP 60 /* seconds between the synthetic series' samples */

static const char *const one_gpu = "sn,cpu_milli,memory_mib,gpu,model\n"
                                   "n0,64000,262144,1,T4\n";
static const char *const two_gpus = "sn,cpu_milli,memory_mib,gpu,model\n"
                                    "n0,64000,262144,2,T4\n";

#define POD_HEADER                                                                             \
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time,deletion_time,"    \
    "scheduled_time\n"

/* One GenAI pod, n samples every STEP s: duty[k] percent, memory mem[k]
 * of the reference 1000 bytes (mem NULL: 200, 0.2 of the GPU, throughout). */
static void load_series_mem(struct fx_genai *u, const int *duty, const int *mem, int n)
{
    size_t cap = (size_t)n * 40 + 64;
    char *d = malloc(cap), *m = malloc(cap);
    assert_non_null(d);
    assert_non_null(m);
    int ld = snprintf(d, cap, "value,timestamp_anon,container_ip\n");
    int lm = snprintf(m, cap, "timestamp_anon,value,container_ip\n");
    for (int k = 0; k < n; k++) {
        ld += snprintf(d + ld, cap - (size_t)ld, "%d,%d,p\n", duty[k], STEP * k);
        lm += snprintf(m + lm, cap - (size_t)lm, "%d,%d,p\n", STEP * k, mem ? mem[k] : 200);
    }
    struct flexpu_error err = {0};
    FILE *fd = fmemopen(d, (size_t)ld, "r"), *fm = fmemopen(m, (size_t)lm, "r");
    if (fx_genai_read(u, "duty.csv", fd, "mem.csv", fm, 1000, &err))
        fail_msg("%s", err.msg);
    free(d);
    free(m);
}

static void load_series(struct fx_genai *u, const int *duty, int n)
{
    load_series_mem(u, duty, NULL, n);
}

static void config(struct fx_reuse_config *c, double share, double window_s)
{
    fx_reuse_defaults(c);
    c->owner_share = share;
    c->backlog = 2;
    c->warmup_s = 0;
    c->window_s = window_s;
    c->trace_part = -1;
    c->owner_mem = FX_OWNER_MEM_PEAK;
    c->predict_samples = 1;
}

static void run(struct fx_reuse_result *r, const char *nodes, const char *pods,
                const struct fx_genai *u, enum fx_reuse_mode mode, const struct fx_reuse_config *c)
{
    struct fx_trace t = {0};
    load_trace(&t, nodes, pods);
    struct flexpu_error err = {0};
    if (fx_reuse_run(&t, u, mode, c, r, &err))
        fail_msg("%s", err.msg);
    fx_trace_free(&t);
}

/* The owner oA holds the whole GPU but reserves only its peak memory (0.2),
 * so a batch job of 0.5 borrows it. At 300 s oA leaves and oB (0.5 of the
 * GPU, 0.2 of its memory) takes its place; the second batch job then fits
 * in the half oB leaves, in its own allocation, and reserves memory the
 * borrower holds: 0.2 + 0.5 + 0.5 of the GPU would not fit, so the
 * borrower goes first. The evicted borrower goes back to the backlog's
 * front while the job that evicted it leaves the backlog: the run's end
 * check (backlog holds only waiting jobs) fails if the wrong one leaves. */
static const char *const memory_pods = POD_HEADER "oA,4000,8192,1,1000,,LS,0,300,0\n"
                                                  "oB,4000,8192,1,500,,LS,10,100000,10\n"
                                                  "b0,1000,1024,1,500,,BE,0,100000,0\n";

static void borrower_evicted_before_memory_runs_out(void **state)
{
    (void)state;
    int duty[30] = {0};
    struct fx_genai u;
    load_series(&u, duty, 30);
    struct fx_reuse_config c;
    config(&c, 0.5, 1200);
    struct fx_reuse_result r;
    run(&r, one_gpu, memory_pods, &u, FX_REUSE_BORROW, &c);
    assert_true(r.borrows >= 1);
    assert_true(r.evict_memory >= 1);
    assert_int_equal(r.refused, 0);
    assert_int_equal(r.owners_started, 2);
    /* Without reuse nothing borrows, so nothing is evicted for memory. */
    run(&r, one_gpu, memory_pods, &u, FX_REUSE_FLEXPU, &c);
    assert_int_equal(r.borrows, 0);
    assert_int_equal(r.evict_memory, 0);
    assert_int_equal(r.refused, 0);
    fx_genai_free(&u);
}

/* One owner on the whole GPU for good, a batch job of 0.5 waiting. */
static const char *const reclaim_pods = POD_HEADER "o0,4000,8192,1,1000,,LS,0,1000000,0\n"
                                                   "b0,1000,1024,1,500,,BE,0,100000,0\n";

static void reclaimed_when_owner_stays_busy(void **state)
{
    (void)state;
    /* Idle for 20 samples, busy for 20, whatever offset the owner draws:
     * 70 samples see a borrower placed, then the owner busy for longer
     * than reclaim_samples. */
    int duty[40];
    for (int k = 0; k < 40; k++)
        duty[k] = k < 20 ? 0 : 100;
    struct fx_genai u;
    load_series(&u, duty, 40);
    struct fx_reuse_config c;
    config(&c, 1.0, 70 * STEP);
    struct fx_reuse_result r;
    run(&r, one_gpu, reclaim_pods, &u, FX_REUSE_BORROW, &c);
    assert_true(r.borrows >= 1);
    assert_true(r.evict_reclaim >= 1);
    assert_int_equal(r.refused, 0);
    fx_genai_free(&u);
}

static void not_reclaimed_for_a_spike(void **state)
{
    (void)state;
    int duty[40] = {0};
    duty[10] = 100; /* one busy sample in 40: seen once or twice in the run */
    struct fx_genai u;
    load_series(&u, duty, 40);
    struct fx_reuse_config c;
    config(&c, 1.0, 70 * STEP);
    struct fx_reuse_result r;
    run(&r, one_gpu, reclaim_pods, &u, FX_REUSE_BORROW, &c);
    assert_true(r.borrows >= 1);
    assert_int_equal(r.evict_reclaim, 0);
    /* The same spike lasting reclaim_samples is reclaimed. */
    for (int k = 10; k < 10 + c.reclaim_samples; k++)
        duty[k] = 100;
    fx_genai_free(&u);
    load_series(&u, duty, 40);
    run(&r, one_gpu, reclaim_pods, &u, FX_REUSE_BORROW, &c);
    assert_true(r.evict_reclaim >= 1);
    fx_genai_free(&u);
}

/* Owners reserve both GPUs and never use them; batch jobs of 0.5 wait. */
static const char *const idle_pods = POD_HEADER "o0,4000,8192,1,1000,,LS,0,1000000,0\n"
                                                "o1,4000,8192,1,1000,,LS,1,1000000,1\n"
                                                "b0,1000,1024,1,500,,BE,0,100000,0\n";

static void reuse_busier_with_idle_owners(void **state)
{
    (void)state;
    int duty[30] = {0};
    struct fx_genai u;
    load_series(&u, duty, 30);
    struct fx_reuse_config c;
    config(&c, 1.0, 1800);
    struct fx_reuse_result no, re, whole;
    run(&whole, two_gpus, idle_pods, &u, FX_REUSE_WHOLE, &c);
    run(&no, two_gpus, idle_pods, &u, FX_REUSE_FLEXPU, &c);
    run(&re, two_gpus, idle_pods, &u, FX_REUSE_BORROW, &c);
    assert_true(no.reserved_share > 0.99);
    assert_true(no.busy_share < 0.01); /* nothing fits beside the owners */
    assert_true(whole.busy_share < 0.01);
    /* One borrower of 0.5 per GPU (the headroom keeps a second off) from
     * the second sample on. */
    assert_true(re.borrowed_share > 0.4);
    assert_true(re.busy_share > no.busy_share + 0.4);
    assert_true(re.backlog_min > 0);
    assert_int_equal(re.refused, 0);
    assert_true(re.owner_p99 == 1.0); /* idle owners send no requests */
    fx_genai_free(&u);
}

/* The owner holds the whole GPU and never uses it; two batch jobs of 0.35,
 * each 1000 s of its share's work, may both borrow it (0.2 + 0.35 + 0.35
 * of memory; 0.35 + 0.35 of compute under the headroom). The runtime's
 * arbiter gives uncapped `low` tenants all the time the owner leaves,
 * divided by their share weights: 0.5 each, so each job runs 700 s, not
 * the 1000 s its share alone would take, and the GPU is nearly all busy.
 * Held to their shares (batch_gpu share) they use 0.7 of it. */
static const char *const two_borrowers_pods = POD_HEADER "o0,4000,8192,1,1000,,LS,0,1000000,0\n"
                                                         "b0,1000,1024,1,350,,BE,0,1000,0\n";

static void borrowers_share_what_the_owner_leaves(void **state)
{
    (void)state;
    int duty[80] = {0};
    struct fx_genai u;
    load_series(&u, duty, 80);
    struct fx_reuse_config c;
    config(&c, 1.0, 3600);
    struct fx_reuse_result r;
    assert_int_equal(c.batch_gpu, FX_BATCH_GPU_IDLE); /* the runtime's default */
    run(&r, one_gpu, two_borrowers_pods, &u, FX_REUSE_BORROW, &c);
    assert_true(r.borrowed_share > 0.9); /* above the shares' 0.7 */
    /* Two equals split it: every job ran 700 s (the first pair starts a
     * sample late, which does not change its run time). */
    assert_true(r.batch_done >= 8);
    assert_true(r.run_p50 > 690 && r.run_p50 < 710);
    assert_true(r.run_p99 > 690 && r.run_p99 < 710);
    assert_int_equal(r.refused, 0);
    c.batch_gpu = FX_BATCH_GPU_SHARE;
    run(&r, one_gpu, two_borrowers_pods, &u, FX_REUSE_BORROW, &c);
    assert_true(r.borrowed_share < 0.71);
    assert_true(r.run_p50 > 990 && r.run_p50 < 1010);
    fx_genai_free(&u);
}

/* An ordinary (normal) job of 0.5 beside an owner of 0.5 that uses a
 * fifth of its share: uncapped, the job gets the 0.9 the owner leaves
 * (its 1000 s of work at 0.5 done in about 556 s); capped at its share,
 * 0.5 (1000 s). A borrower would get nothing beside it, and is not placed
 * there. */
static const char *const normal_pods = POD_HEADER "o0,4000,8192,1,500,,LS,0,1000000,0\n"
                                                  "b0,1000,1024,1,500,,BE,0,1000,0\n";

static void ordinary_job_takes_the_owners_idle_time(void **state)
{
    (void)state;
    int duty[80];
    for (int k = 0; k < 80; k++)
        duty[k] = 20;
    struct fx_genai u;
    load_series(&u, duty, 80);
    struct fx_reuse_config c;
    config(&c, 0.5, 3600);
    struct fx_reuse_result r;
    run(&r, one_gpu, normal_pods, &u, FX_REUSE_FLEXPU, &c);
    assert_true(r.owner_share > 0.09 && r.owner_share < 0.11);
    assert_true(r.batch_share > 0.85);
    assert_true(r.run_p50 > 545 && r.run_p50 < 566);
    assert_true(r.owner_p99 > 1.0); /* every burst meets the job */
    run(&r, one_gpu, normal_pods, &u, FX_REUSE_BORROW, &c);
    assert_int_equal(r.borrows, 0);
    assert_true(r.batch_share > 0.85);
    c.batch_gpu = FX_BATCH_GPU_SHARE;
    run(&r, one_gpu, normal_pods, &u, FX_REUSE_FLEXPU, &c);
    assert_true(r.batch_share > 0.49 && r.batch_share < 0.51);
    assert_true(r.run_p50 > 990 && r.run_p50 < 1010);
    fx_genai_free(&u);
}

/* borrow_mem idle: the owner (the whole GPU, 5% busy) reserves its peak
 * memory, 0.9 of the GPU, but uses 0.2 for 20 samples, then 0.9 for 20.
 * A batch job of 0.5 (its share of memory, 0.5) fits beside 0.2 in use,
 * never beside 0.9 reserved. Whatever offset the owner draws, 70 samples
 * see it placed while the owner is low and the owner's memory then rise:
 * the borrower is evicted, the owner's allocation waits for it (counted,
 * its requests of that second stalled), and is never refused. */
static void idle_memory_borrowed_and_given_back(void **state)
{
    (void)state;
    int duty[40], mem[40];
    for (int k = 0; k < 40; k++) {
        duty[k] = 5;
        mem[k] = k < 20 ? 200 : 900;
    }
    struct fx_genai u;
    load_series_mem(&u, duty, mem, 40);
    struct fx_reuse_config c;
    config(&c, 1.0, 70 * STEP);
    c.borrow_mem = FX_BORROW_MEM_IDLE;
    c.evict_latency_s = 1;
    /* Not a light job (its memory its share's, 0.5): idle lends it only
     * what no allocation reserved, as the scheduler does: nothing here. */
    struct fx_reuse_result r;
    run(&r, one_gpu, reclaim_pods, &u, FX_REUSE_BORROW, &c);
    assert_int_equal(r.borrows, 0);
    assert_int_equal(r.owner_delays, 0);
    /* A light one (a quarter of that, 0.125): placed beside the owner's
     * 0.2 in use (+ 0.1 of headroom), killed when the owner's use rises to
     * 0.9 (its allocation waits for it), never refused. */
    c.batch_mem = 0.25;
    run(&r, one_gpu, reclaim_pods, &u, FX_REUSE_BORROW, &c);
    assert_true(r.borrows >= 1);
    assert_true(r.evict_memory >= 1);
    assert_true(r.owner_delays >= 1);
    assert_true(r.owner_delay_p99 == 1.0);
    assert_true(r.owner_stalled > 0);
    assert_int_equal(r.evict_reclaim, 0); /* the owner's compute stayed idle */
    assert_int_equal(r.refused, 0);
    /* Unreserved: 0.9 reserved leaves 0.1, below its 0.125: the borrower
     * is never placed, nothing waits. */
    c.borrow_mem = FX_BORROW_MEM_UNRESERVED;
    run(&r, one_gpu, reclaim_pods, &u, FX_REUSE_BORROW, &c);
    assert_int_equal(r.borrows, 0);
    assert_int_equal(r.evict_memory, 0);
    assert_int_equal(r.owner_delays, 0);
    assert_true(r.owner_stalled == 0);
    fx_genai_free(&u);
}

/* npods GenAI pods of n idle samples each (duty 0, memory 0.2 of the GPU). */
static void load_idle_pods(struct fx_genai *u, int npods, int n)
{
    size_t cap = (size_t)npods * (size_t)n * 40 + 64;
    char *d = malloc(cap), *m = malloc(cap);
    assert_non_null(d);
    assert_non_null(m);
    int ld = snprintf(d, cap, "value,timestamp_anon,container_ip\n");
    int lm = snprintf(m, cap, "timestamp_anon,value,container_ip\n");
    for (int p = 0; p < npods; p++)
        for (int k = 0; k < n; k++) {
            ld += snprintf(d + ld, cap - (size_t)ld, "0,%d,p%d\n", STEP * k, p);
            lm += snprintf(m + lm, cap - (size_t)lm, "%d,200,p%d\n", STEP * k, p);
        }
    struct flexpu_error err = {0};
    FILE *fd = fmemopen(d, (size_t)ld, "r"), *fm = fmemopen(m, (size_t)lm, "r");
    if (fx_genai_read(u, "duty.csv", fd, "mem.csv", fm, 1000, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(u->npods, npods);
    free(d);
    free(m);
}

/* Owners of a quarter to half a GPU that leave after a few minutes (so
 * dozens arrive in the run), batch jobs of a quarter to three quarters of
 * a GPU, on four one-GPU nodes that differ only in CPU and host memory
 * (so flexpu's fragmentation cost ties between them and the engine draws;
 * whole-GPU's best fit does not): the policies draw differently often. */
static const char *const four_gpus = "sn,cpu_milli,memory_mib,gpu,model\n"
                                     "n0,64000,262144,1,T4\n"
                                     "n1,32000,131072,1,T4\n"
                                     "n2,48000,196608,1,T4\n"
                                     "n3,16000,65536,1,T4\n";
static const char *const crn_pods = POD_HEADER "o0,1000,1024,1,500,,LS,0,120,0\n"
                                               "o1,1000,1024,1,250,,LS,1,150,1\n"
                                               "o2,1000,1024,1,500,,LS,2,90,2\n"
                                               "b0,1000,1024,1,500,,BE,0,400,0\n"
                                               "b1,1000,1024,1,250,,BE,1,300,1\n"
                                               "b2,1000,1024,1,750,,BE,2,200,2\n";

static void same_owners(const struct fx_reuse_result *a, const struct fx_reuse_result *b)
{
    int n = a->owners_kept < b->owners_kept ? a->owners_kept : b->owners_kept;
    for (int k = 0; k < n; k++)
        if (a->owner[k].trace != b->owner[k].trace || a->owner[k].series != b->owner[k].series ||
            a->owner[k].offset != b->owner[k].offset)
            fail_msg("owner %d differs between %s (pod %d, series %d, offset %d) and %s (pod "
                     "%d, series %d, offset %d)",
                     k, fx_reuse_mode_name(a->mode), a->owner[k].trace, a->owner[k].series,
                     a->owner[k].offset, fx_reuse_mode_name(b->mode), b->owner[k].trace,
                     b->owner[k].series, b->owner[k].offset);
}

/* Common random numbers: the k-th owner draws the same series and offset
 * under every policy, whatever each placed (and whichever ties it broke)
 * before it arrived; another seed gives other owners. */
static void policies_see_the_same_owners(void **state)
{
    (void)state;
    struct fx_genai u;
    load_idle_pods(&u, 16, 50);
    struct fx_reuse_config c;
    config(&c, 0.5, 1800);
    c.backlog = 6;
    struct fx_reuse_result r[FX_REUSE_MODES_];
    for (int m = 0; m < FX_REUSE_MODES_; m++) {
        run(&r[m], four_gpus, crn_pods, &u, (enum fx_reuse_mode)m, &c);
        assert_int_equal(r[m].owners_kept, FX_REUSE_OWNERS_KEPT);
    }
    assert_true(r[FX_REUSE_BORROW].borrows >= 1);
    same_owners(&r[FX_REUSE_FLEXPU], &r[FX_REUSE_BORROW]);
    same_owners(&r[FX_REUSE_WHOLE], &r[FX_REUSE_FLEXPU]);
    /* The draws are the seed's, not constants. */
    struct fx_reuse_result other;
    c.seed = 43;
    run(&other, four_gpus, crn_pods, &u, FX_REUSE_FLEXPU, &c);
    int differ = 0;
    for (int k = 0; k < FX_REUSE_OWNERS_KEPT; k++)
        differ += other.owner[k].series != r[FX_REUSE_FLEXPU].owner[k].series ||
                  other.owner[k].offset != r[FX_REUSE_FLEXPU].owner[k].offset;
    assert_true(differ > FX_REUSE_OWNERS_KEPT / 2);
    fx_genai_free(&u);
}

/* A config out of range is refused naming the field. */
static void bad_config_named(void **state)
{
    (void)state;
    int duty[4] = {0};
    struct fx_genai u;
    load_series(&u, duty, 4);
    struct fx_reuse_config c;
    config(&c, 1.5, 600);
    struct fx_trace t = {0};
    load_trace(&t, one_gpu, reclaim_pods);
    struct fx_reuse_result r;
    struct flexpu_error err = {0};
    assert_int_equal(fx_reuse_run(&t, &u, FX_REUSE_BORROW, &c, &r, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "owner_share"));
    config(&c, 1.0, 600);
    c.borrow_mem = (enum fx_borrow_mem)7;
    assert_int_equal(fx_reuse_run(&t, &u, FX_REUSE_BORROW, &c, &r, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "borrow_mem"));
    config(&c, 1.0, 600);
    c.batch_gpu = (enum fx_batch_gpu)2;
    assert_int_equal(fx_reuse_run(&t, &u, FX_REUSE_BORROW, &c, &r, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "batch_gpu"));
    fx_trace_free(&t);
    fx_genai_free(&u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(borrower_evicted_before_memory_runs_out),
        cmocka_unit_test(reclaimed_when_owner_stays_busy),
        cmocka_unit_test(not_reclaimed_for_a_spike),
        cmocka_unit_test(reuse_busier_with_idle_owners),
        cmocka_unit_test(idle_memory_borrowed_and_given_back),
        cmocka_unit_test(policies_see_the_same_owners),
        cmocka_unit_test(borrowers_share_what_the_owner_leaves),
        cmocka_unit_test(ordinary_job_takes_the_owners_idle_time),
        cmocka_unit_test(bad_config_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
