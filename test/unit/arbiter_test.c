/* SPDX-License-Identifier: Apache-2.0 */
/* The arbiter's decisions on hand-made states: two or three tenants joined to
 * one GPU state file from this process (each join is its own open file, so
 * each slot is live), with their published counters set by the test and the
 * clock given explicitly. Cases a real-time test cannot stage reliably:
 * stopped processes, unused slices, reused tenant records, clocks read out
 * of order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/arbiter.h"

#define MS (1000 * 1000ull)

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/fxarb-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char c[128];
    snprintf(c, sizeof(c), "rm -rf %s", dir);
    return system(c) == 0 ? 0 : -1;
}

static void join(struct fx_gpu *g, const char *tenant, int share, int cap)
{
    struct fx_slice_config c;
    fx_config_defaults(&c);
    snprintf(c.tenant, sizeof(c.tenant), "%s", tenant);
    c.compute_share = share;
    c.compute_cap = cap;
    snprintf(c.state_dir, sizeof(c.state_dir), "%s", dir);
    struct flexpu_error err = {0};
    assert_int_equal(fx_gpu_attach(g, &c, "GPU-test", 16ull << 30, &err), 0);
    assert_int_equal(g->private_state, 0);
}

static struct fx_proc_rec *proc(struct fx_gpu *g)
{
    return &g->st->procs[g->slot];
}

/* A process that waits and checks in, as fx_arb_acquire does. */
static void waits(struct fx_gpu *g, uint64_t now)
{
    proc(g)->waiting = 1;
    proc(g)->poll_ns = now;
    g->st->arb.demand |= 1u << g->tenant;
}

static void step(struct fx_gpu *g, uint64_t now)
{
    fx_gpu_lock(g);
    fx_arb_step_locked(g, now);
    fx_gpu_unlock(g);
}

static int holder(const struct fx_gpu *g)
{
    return (int)g->st->arb.holder - 1;
}

static void test_stopped_waiter_is_not_work(void **state)
{
    (void)state;
    struct fx_gpu a, b;
    join(&a, "a", 50, 100);
    join(&b, "b", 50, 100);
    uint64_t now = fx_mono_ns() + 1000 * MS;
    waits(&a, now - 100 * MS); /* stopped: has not checked in for 100 ms */
    waits(&b, now);
    step(&b, now);
    assert_int_equal(a.st->arb.demand & (1u << a.tenant), 0);
    /* b alone and uncapped: nobody holds the GPU, b takes the fast path. */
    assert_int_equal(holder(&b), -1);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

/* Stopped with work in flight (its monitor stopped too): the count it
 * cannot lower is not believed once stale, even for a high tenant. */
static void test_stopped_process_with_work_in_flight_is_not_work(void **state)
{
    (void)state;
    struct fx_gpu hi, n;
    join(&hi, "hi", 50, 100);
    join(&n, "n", 50, 100);
    hi.st->tenants[hi.tenant].priority = FX_PRIO_HIGH;
    uint64_t now = fx_mono_ns() + 1000 * MS;
    proc(&hi)->inflight = 2;
    proc(&hi)->launching = 1;
    proc(&hi)->beat_ns = now - 100 * MS;
    proc(&hi)->last_launch_ns = now - 100 * MS;
    hi.st->arb.demand |= 1u << hi.tenant;
    waits(&n, now);
    waits(&n, now);
    step(&n, now);
    assert_int_equal(n.st->arb.demand & (1u << hi.tenant), 0);
    assert_true(holder(&n) == -1 || holder(&n) == n.tenant);
    /* The same counts, published recently, are work: high goes first. */
    proc(&hi)->beat_ns = now;
    hi.st->arb.demand |= 1u << hi.tenant;
    proc(&hi)->waiting = 1;
    proc(&hi)->poll_ns = now;
    step(&n, now + MS);
    assert_true(n.st->arb.demand & (1u << hi.tenant));
    fx_gpu_detach(&hi);
    fx_gpu_detach(&n);
}

static void test_unused_slice_is_charged_and_passes_on(void **state)
{
    (void)state;
    struct fx_gpu a, b;
    join(&a, "a", 50, 100);
    join(&b, "b", 50, 100);
    uint64_t now = fx_mono_ns() + 1000 * MS;
    waits(&a, now);
    waits(&b, now);
    step(&a, now);
    int first = holder(&a);
    assert_true(first == a.tenant || first == b.tenant);
    assert_int_equal(a.st->arb.slice_started, 0);
    /* The holder's process never launches (it is frozen but keeps checking
     * in); once the grace and the slice are over, the slice is charged to
     * it and the other tenant gets the GPU. */
    uint64_t later = now + FX_ARB_SLICE_NS * 2 + MS;
    waits(&a, later);
    waits(&b, later);
    step(&a, later);
    assert_int_equal(a.st->tenants[first].gpu_time_ns, FX_ARB_SLICE_NS);
    assert_int_equal(holder(&a), first == a.tenant ? b.tenant : a.tenant);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

/* A higher-priority tenant that has work but no cap budget cuts the
 * holder's slice at every round and is not picked, so the holder is given
 * the GPU again at once. A slice it was granted and not yet used is charged
 * for the time it was held, never a whole slice per round (found by
 * fuzz_arb: a holder charged 80 ms in 1.1 ms, 10 ms a round). */
static void test_cut_unused_slice_charges_only_its_time(void **state)
{
    (void)state;
    struct fx_gpu a, hi;
    join(&a, "a", 50, 100);
    join(&hi, "hi", 50, 30);
    hi.st->tenants[hi.tenant].priority = FX_PRIO_HIGH;
    uint64_t now = fx_mono_ns() + 1000 * MS;
    struct fx_tenant_rec *htr = &hi.st->tenants[hi.tenant];
    htr->budget_ns = -5 * (int64_t)MS; /* spent: not picked for a while */
    htr->budget_ts = now;
    uint64_t t = now;
    for (; t <= now + 10 * MS; t += 200 * 1000) {
        waits(&a, t); /* its process is frozen: it checks in, never launches */
        waits(&hi, t);
        step(&a, t);
        assert_int_equal(holder(&a), a.tenant);
    }
    assert_true(a.st->tenants[a.tenant].gpu_time_ns <= t - now);
    fx_gpu_detach(&a);
    fx_gpu_detach(&hi);
}

static void test_launch_in_progress_delays_hand_over(void **state)
{
    (void)state;
    struct fx_gpu a, b;
    join(&a, "a", 50, 100);
    join(&b, "b", 50, 100);
    uint64_t now = fx_mono_ns() + 1000 * MS;
    waits(&a, now);
    waits(&b, now);
    step(&a, now);
    struct fx_gpu *h = holder(&a) == a.tenant ? &a : &b;
    struct fx_gpu *o = h == &a ? &b : &a;
    /* The holder starts its slice and has a launch past the arbiter. */
    h->st->arb.slice_started = 1;
    h->st->arb.slice_start_ns = now;
    h->st->arb.slice_end_ns = now + FX_ARB_SLICE_NS;
    proc(h)->waiting = 0;
    proc(h)->launching = 1;
    proc(h)->last_launch_ns = now;
    uint64_t t = now + FX_ARB_SLICE_NS + MS; /* expired */
    waits(o, t);
    step(o, t);
    assert_int_equal(holder(o), h->tenant); /* still draining */
    /* The launch is marked and done; the holder's next launch waits. */
    proc(h)->launching = 0;
    proc(h)->drained_ns = t;
    waits(h, t + 1000);
    step(o, t + 1000);
    assert_int_equal(holder(o), o->tenant);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

static void test_reused_tenant_record_inherits_nothing(void **state)
{
    (void)state;
    struct fx_gpu a, b, c;
    join(&a, "a", 50, 100);
    join(&b, "b", 50, 100);
    int ta = a.tenant;
    /* a holds the GPU with a slice that started long ago, then exits. */
    a.st->arb.holder = (uint32_t)ta + 1;
    a.st->arb.slice_started = 1;
    a.st->arb.slice_start_ns = fx_mono_ns() - 5000 * MS;
    a.st->arb.demand |= 1u << ta;
    fx_gpu_detach(&a);
    /* A new tenant joins, takes a's freed record, and must not be taken for
     * the holder of that old slice. */
    join(&c, "c", 50, 100);
    assert_int_equal(c.tenant, ta);
    assert_int_equal(holder(&c), -1);
    assert_int_equal(c.st->arb.demand & (1u << ta), 0);
    assert_int_equal(c.st->tenants[ta].gpu_time_ns, 0);
    fx_gpu_detach(&b);
    fx_gpu_detach(&c);
}

static void test_cap_budget_never_goes_back(void **state)
{
    (void)state;
    struct fx_gpu a, b;
    join(&a, "a", 30, 30);
    join(&b, "b", 30, 30);
    uint64_t now = fx_mono_ns() + 1000 * MS;
    waits(&a, now);
    step(&a, now);
    struct fx_tenant_rec *tr = &a.st->tenants[a.tenant];
    tr->budget_ns = -5 * (int64_t)MS;
    tr->budget_ts = now;
    /* Another process read the clock a moment earlier: no refill, and no
     * reset of the bucket either. */
    step(&b, now - MS);
    assert_int_equal(tr->budget_ns, -5 * (int64_t)MS);
    step(&b, now + 10 * MS); /* 10 ms at 30% refills 3 ms */
    assert_int_equal(tr->budget_ns, -2 * (int64_t)MS);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

static void test_returning_tenants_start_at_the_virtual_clock(void **state)
{
    (void)state;
    struct fx_gpu a, b;
    join(&a, "a", 50, 100);
    join(&b, "b", 50, 100);
    uint64_t now = fx_mono_ns() + 1000 * MS;
    /* The GPU has served a lot; a comes back with an old, low virtual time
     * and b is new. Neither may claim the past. */
    a.st->arb.vclock = 1000000 * MS;
    a.st->tenants[a.tenant].vtime = 10 * MS;
    waits(&a, now);
    waits(&b, now);
    step(&a, now);
    assert_true(a.st->tenants[a.tenant].vtime >= 1000000 * MS);
    assert_true(a.st->tenants[b.tenant].vtime >= 1000000 * MS);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

static void test_priorities_and_shares(void **state)
{
    (void)state;
    struct fx_gpu lo, hi, n1;
    join(&lo, "low", 90, 100);
    join(&hi, "high", 10, 100);
    join(&n1, "normal", 50, 100);
    lo.st->tenants[lo.tenant].priority = FX_PRIO_LOW;
    hi.st->tenants[hi.tenant].priority = FX_PRIO_HIGH;
    uint64_t now = fx_mono_ns() + 1000 * MS;
    waits(&lo, now);
    waits(&n1, now);
    step(&lo, now);
    assert_int_equal(holder(&lo), n1.tenant); /* normal before low */
    /* high arrives: the normal holder's slice is cut at once. */
    lo.st->arb.slice_started = 1;
    lo.st->arb.slice_start_ns = now;
    lo.st->arb.slice_end_ns = now + FX_ARB_SLICE_NS;
    proc(&n1)->waiting = 0;
    proc(&n1)->last_launch_ns = now;
    proc(&n1)->drained_ns = now + MS;
    waits(&hi, now + MS);
    waits(&lo, now + MS);
    step(&hi, now + MS);
    assert_int_equal(holder(&hi), hi.tenant);
    assert_int_equal(hi.st->tenants[n1.tenant].gpu_time_ns, MS);
    fx_gpu_detach(&lo);
    fx_gpu_detach(&hi);
    fx_gpu_detach(&n1);
}

/* A high tenant takes the GPU from a low holder at once, without waiting
 * for the low one's queued work; afterwards the low one is leashed, and the
 * high one, idle beside a low one that waits, gives the GPU back after
 * FX_ARB_PREEMPT_IDLE_NS rather than FX_ARB_IDLE_NS. */
static void test_high_preempts_without_waiting_for_low_work(void **state)
{
    (void)state;
    struct fx_gpu lo, hi, n1;
    join(&lo, "low", 50, 100);
    join(&hi, "high", 50, 100);
    join(&n1, "normal", 50, 100);
    lo.st->tenants[lo.tenant].priority = FX_PRIO_LOW;
    hi.st->tenants[hi.tenant].priority = FX_PRIO_HIGH;
    uint64_t now = fx_mono_ns() + 1000 * MS;
    /* Before any high tenant had work, nobody is leashed. */
    assert_false(fx_arb_leashed(&lo, now));
    /* low holds a running slice with work in flight. */
    waits(&lo, now);
    waits(&n1, now);
    step(&lo, now);
    proc(&n1)->waiting = 0;
    n1.st->arb.demand &= ~(1u << n1.tenant);
    n1.st->arb.holder = (uint32_t)lo.tenant + 1;
    lo.st->arb.slice_started = 1;
    lo.st->arb.slice_start_ns = now;
    lo.st->arb.slice_end_ns = now + FX_ARB_SLICE_NS;
    proc(&lo)->waiting = 0;
    proc(&lo)->inflight = 3;
    proc(&lo)->beat_ns = now + MS;
    proc(&lo)->last_launch_ns = now + MS;
    /* high arrives 1 ms in: the GPU is its at once, low's queue or not. */
    waits(&hi, now + MS);
    step(&hi, now + MS);
    assert_int_equal(holder(&hi), hi.tenant);
    assert_int_equal(hi.st->tenants[lo.tenant].gpu_time_ns, MS);
    /* low is now leashed, normal too (high is above both); high is not. */
    assert_true(fx_arb_leashed(&lo, now + MS));
    assert_true(fx_arb_leashed(&n1, now + MS));
    assert_false(fx_arb_leashed(&hi, now + MS));
    assert_false(fx_arb_leashed(&lo, now + MS + FX_ARB_LEASH_RECENT_NS + 1));
    /* high's slice starts, its work ends; low waits for the GPU. */
    hi.st->arb.slice_started = 1;
    hi.st->arb.slice_start_ns = now + MS;
    hi.st->arb.slice_end_ns = now + MS + FX_ARB_SLICE_NS;
    proc(&hi)->waiting = 0;
    proc(&hi)->last_launch_ns = now + 2 * MS;
    proc(&hi)->drained_ns = now + 2 * MS;
    proc(&lo)->inflight = 0;
    uint64_t t = now + 2 * MS + FX_ARB_PREEMPT_IDLE_NS / 2;
    waits(&lo, t);
    step(&lo, t);
    assert_int_equal(holder(&lo), hi.tenant); /* not idle long enough yet */
    t = now + 2 * MS + FX_ARB_PREEMPT_IDLE_NS + 1000;
    proc(&lo)->poll_ns = t;
    step(&lo, t);
    assert_true(holder(&lo) != hi.tenant); /* well before FX_ARB_IDLE_NS */
    assert_true(FX_ARB_PREEMPT_IDLE_NS < FX_ARB_IDLE_NS);
    fx_gpu_detach(&lo);
    fx_gpu_detach(&hi);
    fx_gpu_detach(&n1);
}

/* A cap that refers to a clock (cap_clock_mhz) charges its bucket at the
 * pace of the clock its slice ran at (the mean of the slice's samples, else
 * the last seen), never below the GPU time. The slices here are granted and
 * never started, so each is charged its full 10 ms. */
static void test_cap_charged_at_its_clock(void **state)
{
    (void)state;
    struct fx_gpu a;
    join(&a, "a", 30, 30);
    struct fx_tenant_rec *tr = &a.st->tenants[a.tenant];
    tr->cap_clock_mhz = 1600;
    uint64_t now = fx_mono_ns() + 1000 * MS;
    waits(&a, now);
    step(&a, now);
    assert_int_equal(holder(&a), a.tenant);
    assert_int_equal(tr->budget_ns, 10 * (int64_t)MS);
    /* Two samples at 1980 MHz during the slice: 10 ms cost 12.375 ms, after
     * a refill of 21 ms at 30%. */
    tr->slice_clock = (2ull << 32) | (1980 + 1980);
    uint64_t t = now + 2 * FX_ARB_SLICE_NS + MS;
    waits(&a, t);
    step(&a, t);
    assert_int_equal(tr->gpu_time_ns, FX_ARB_SLICE_NS);
    assert_int_equal(tr->budget_ns, 10 * (int64_t)MS + 6300000 - 12375000);
    assert_int_equal(tr->slice_clock, 0);
    /* Refilled past a slice (30 ms more), a slice with no sample: the last
     * clock seen, below the reference, costs the time itself, not less. */
    tr->clock_mhz = 1400;
    t += 30 * MS;
    waits(&a, t);
    step(&a, t);
    assert_int_equal(holder(&a), a.tenant);
    int64_t before = tr->budget_ns;
    t += 2 * FX_ARB_SLICE_NS + MS;
    waits(&a, t);
    step(&a, t);
    assert_int_equal(tr->budget_ns, before + 6300000 - 10 * (int64_t)MS);
    /* Without a reference clock, the same samples change nothing. */
    tr->cap_clock_mhz = 0;
    tr->clock_mhz = 1980;
    t += 40 * MS;
    waits(&a, t);
    step(&a, t);
    assert_int_equal(holder(&a), a.tenant);
    before = tr->budget_ns;
    tr->slice_clock = (1ull << 32) | 1980;
    t += 2 * FX_ARB_SLICE_NS + MS;
    waits(&a, t);
    step(&a, t);
    /* (refilled up to the 20 ms a bucket holds) */
    int64_t full = before + 6300000 < (int64_t)FX_ARB_BURST_NS ? before + 6300000
                                                                : (int64_t)FX_ARB_BURST_NS;
    assert_int_equal(tr->budget_ns, full - 10 * (int64_t)MS);
    fx_gpu_detach(&a);
}

/* Tenant records are in a file tenants can write: a record with a cap of 0
 * (which divided by zero in the wait for budget, SIGFPE) or a share beyond
 * 100 is taken as the nearest valid value, and the GPU still passes on. */
static void test_tenant_written_values_are_bounded(void **state)
{
    (void)state;
    struct fx_gpu a;
    join(&a, "a", 30, 30);
    struct fx_tenant_rec *tr = &a.st->tenants[a.tenant];
    tr->compute_cap = 0;
    tr->compute_share = 4000000000u;
    tr->budget_ts = fx_mono_ns();
    tr->budget_ns = (int64_t)FX_ARB_CAP_QUANTUM_NS - 1000; /* just short of a slice */
    fx_arb_acquire(&a); /* waits the ~100 us a 1% cap takes to save 1 us */
    assert_int_equal(holder(&a), a.tenant);
    fx_arb_launch_done(&a);
    fx_gpu_detach(&a);
}

/* An allocation directory reused by a new pod before the node agent removed
 * it: its ledger is taken over once no process of the old tenant is left,
 * and refused while one is. */
static void test_ledger_of_an_ended_tenant_is_taken_over(void **state)
{
    (void)state;
    struct fx_slice_config c;
    fx_config_defaults(&c);
    snprintf(c.state_dir, sizeof(c.state_dir), "%s", dir);
    snprintf(c.ledger_dir, sizeof(c.ledger_dir), "%s/slice-key", dir);
    c.memory_limit = 1ll << 30;
    struct fx_gpu old, fresh, third;
    struct flexpu_error err = {0};
    snprintf(c.tenant, sizeof(c.tenant), "pod-old");
    assert_int_equal(fx_gpu_attach(&old, &c, "GPU-test", 16ull << 30, &err), 0);
    assert_int_equal(fx_ledger_charge(&old.mem, 512ull << 20, 0), 0);
    snprintf(c.tenant, sizeof(c.tenant), "pod-new");
    assert_int_not_equal(fx_gpu_attach(&fresh, &c, "GPU-test", 16ull << 30, &err), 0);
    assert_non_null(strstr(err.msg, "pod-old"));
    fx_gpu_detach(&old);
    assert_int_equal(fx_gpu_attach(&fresh, &c, "GPU-test", 16ull << 30, &err), 0);
    assert_string_equal(fresh.mem.led->tenant, "pod-new");
    /* the old pod's memory went with its process */
    assert_int_equal(fx_ledger_used(&fresh.mem, NULL), 0);
    assert_int_equal(fx_ledger_charge(&fresh.mem, 1ull << 30, 0), 0);
    /* a second process of the new tenant shares its usage */
    assert_int_equal(fx_gpu_attach(&third, &c, "GPU-test", 16ull << 30, &err), 0);
    assert_int_equal(fx_ledger_charge(&third.mem, 1, 0), FLEXPU_ENOFIT);
    fx_gpu_detach(&third);
    fx_gpu_detach(&fresh);
}

/* A waiter whose claim another process's decision dropped (it had not
 * checked in for STALE_NS: descheduled on a loaded machine, not stopped)
 * claims again at its next check-in, and gets the GPU while another tenant
 * keeps it busy. It used to wait for as long as the other had work: a
 * 20% tenant got 0.000 of a three-way split in CI under ASan. */
struct acq {
    struct fx_gpu *g;
    int done;
};

static void *acquire_main(void *arg)
{
    struct acq *q = arg;
    fx_arb_acquire(q->g);
    __atomic_store_n(&q->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_dropped_claim_is_made_again(void **state)
{
    (void)state;
    struct fx_gpu a, b;
    join(&a, "a", 50, 100);
    join(&b, "b", 50, 100);
    /* b holds the GPU in a running slice, so a must wait, until this thread
     * ends the slice: b's claim and its slice's end are stamped a minute
     * ahead. Stamped now, a thread descheduled for 50 ms (a loaded 2-core
     * machine under ASan) found b's claim stale and its 20 ms slice over,
     * and a already given the GPU. */
    uint64_t t0 = fx_mono_ns(), later = t0 + 60000 * MS;
    waits(&b, later);
    struct fx_arbiter *ar = &b.st->arb;
    ar->holder = (uint32_t)b.tenant + 1;
    ar->slice_len_ns = 20 * MS;
    ar->slice_start_ns = t0;
    ar->slice_end_ns = later;
    ar->slice_started = 1;
    struct acq q = {&a, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, acquire_main, &q), 0);
    while (!__atomic_load_n(&proc(&a)->waiting, __ATOMIC_SEQ_CST) &&
           !__atomic_load_n(&q.done, __ATOMIC_SEQ_CST))
        ;
    assert_false(__atomic_load_n(&q.done, __ATOMIC_SEQ_CST));
    /* The drop: what a decision does to a waiter that looked stopped. */
    __atomic_fetch_and(&a.st->arb.demand, ~(1u << a.tenant), __ATOMIC_SEQ_CST);
    __atomic_store_n(&ar->slice_end_ns, fx_mono_ns() + 20 * MS, __ATOMIC_SEQ_CST);
    int granted = 0;
    uint64_t end = fx_mono_ns() + 2000 * MS;
    while (!granted && fx_mono_ns() < end) {
        uint64_t now = fx_mono_ns();
        waits(&b, now); /* b always has work, and starts its slices at once */
        step(&b, now);
        if (holder(&b) == b.tenant && !ar->slice_started) {
            ar->slice_start_ns = now;
            ar->slice_end_ns = now + ar->slice_len_ns;
            ar->slice_started = 1;
        }
        granted = __atomic_load_n(&q.done, __ATOMIC_SEQ_CST);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    /* b ends its work, so the waiter returns either way. */
    proc(&b)->waiting = 0;
    __atomic_fetch_and(&b.st->arb.demand, ~(1u << b.tenant), __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    assert_true(granted);
    fx_arb_launch_done(&a);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stopped_waiter_is_not_work, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_of_an_ended_tenant_is_taken_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unused_slice_is_charged_and_passes_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_unused_slice_charges_only_its_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_process_with_work_in_flight_is_not_work, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_launch_in_progress_delays_hand_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reused_tenant_record_inherits_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_budget_never_goes_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_returning_tenants_start_at_the_virtual_clock, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_priorities_and_shares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_high_preempts_without_waiting_for_low_work, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tenant_written_values_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_charged_at_its_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dropped_claim_is_made_again, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
