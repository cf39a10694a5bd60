/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent's arbiter (runtime/arbagent.h) driven round by round at
 * chosen times, with tenants joined through the library's own code
 * (fx_gpu_attach with arbiter_dir) and their request records written
 * directly: the pages, the policy from slice.conf, who is given the GPU,
 * what is charged, and what a request record cannot do. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/arbagent.h"
#include "runtime/arbiter.h"
#include "runtime/state.h"
#include "util/clock.h"

#define UUID "GPU-11111111-2222-3333-4444-555555555555"
#define MS (1000 * 1000ull)

static char root[64];
static struct fx_arb_agent *agent;
static const char *conf_extra; /* more lines for the next join's slice.conf */

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/fxarbagent-XXXXXX");
    assert_non_null(mkdtemp(root));
    struct flexpu_error err = {0};
    assert_int_equal(fx_arb_agent_new(&agent, root, &err), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fx_arb_agent_free(agent);
    agent = NULL;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* Slice `name` with `share` as the agent wrote it, and a process of it
 * joined on GPU UUID. */
static void join(struct fx_gpu *g, const char *name, int share, const char *prio)
{
    char path[300];
    snprintf(path, sizeof(path), "mkdir -p %s/slices/%s %s/ledger/%s", root, name, root, name);
    assert_int_equal(system(path), 0);
    snprintf(path, sizeof(path), "%s/slices/%s/slice.conf", root, name);
    FILE *f = prio ? fopen(path, "w") : NULL; /* no prio: a slice the agent does not know */
    if (f) {
        fprintf(f, "tenant = %s\ncompute_share = %d\npriority = %s\n%s", name, share, prio,
                conf_extra ? conf_extra : "");
        fclose(f);
    }
    struct fx_slice_config cfg;
    fx_config_defaults(&cfg);
    snprintf(cfg.tenant, sizeof(cfg.tenant), "%s", name);
    cfg.compute_share = 100; /* what the process says: not what the agent uses */
    snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%s/state", root);
    snprintf(cfg.ledger_dir, sizeof(cfg.ledger_dir), "%s/ledger/%s", root, name);
    snprintf(cfg.arbiter_dir, sizeof(cfg.arbiter_dir), "%s/arb", root);
    struct flexpu_error err = {0};
    assert_int_equal(fx_gpu_attach(g, &cfg, UUID, 1ull << 34, &err), 0);
    assert_true(g->agent);
}

/* The setup most tests share: the GPU on the agent, and slices a and b of
 * 50% each (b at priority prio_b) with a process of each joined. The agent
 * has not scanned yet. */
static void two_slices(struct fx_gpu *a, struct fx_gpu *b, const char *prio_b)
{
    struct flexpu_error err = {0};
    assert_int_equal(fx_arb_agent_add_gpu(agent, UUID, &err), 0);
    join(a, "a", 50, "normal");
    join(b, "b", 50, prio_b);
}

/* two_slices, then the agent's first scan, which makes both its tenants;
 * the time of that scan. */
static uint64_t two_tenants(struct fx_gpu *a, struct fx_gpu *b, const char *prio_b)
{
    two_slices(a, b, prio_b);
    uint64_t t = fx_mono_ns();
    fx_arb_agent_step(agent, t);
    assert_true(fx_gpu_agent_tenant(a) >= 0 && fx_gpu_agent_tenant(b) >= 0);
    return t;
}

/* A process that waits for the GPU, as fx_arb_acquire publishes it. */
static void wants(struct fx_gpu *g, uint64_t now)
{
    struct fx_proc_rec *p = &g->procs[g->slot];
    p->waiting = 1;
    p->poll_ns = now;
    p->beat_ns = now;
}

static void test_pages_policy_and_turns(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    assert_int_equal(fx_arb_agent_add_gpu(agent, UUID, &err), 0);
    assert_int_not_equal(fx_arb_agent_add_gpu(agent, "GPU-../../etc", &err), 0);
    char page[200];
    snprintf(page, sizeof(page), "%s/arb/%s.state", root, UUID);
    struct stat sb;
    assert_int_equal(stat(page, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);

    struct fx_gpu a, b;
    join(&a, "a", 30, "normal");
    join(&b, "b", 70, "normal");
    /* Under the agent the shared state's directory is neither used nor
     * made (flexpu-node does not mount it). */
    char shared[200];
    snprintf(shared, sizeof(shared), "%s/state", root);
    assert_int_not_equal(access(shared, F_OK), 0);
    uint64_t t = fx_mono_ns();
    fx_arb_agent_step(agent, t); /* the scan finds both slices */
    assert_true(fx_gpu_agent_tenant(&a) >= 0 && fx_gpu_agent_tenant(&b) >= 0);
    assert_int_not_equal(a.tenant, b.tenant);
    const struct fx_gpu_state *st = a.st;
    assert_int_equal(st->tenants[a.tenant].compute_share, 30);
    assert_int_equal(st->tenants[b.tenant].compute_share, 70);

    /* Both wait: one is given the GPU, its slice starts at the grant, and
     * it is charged until the agent takes the GPU back. */
    wants(&a, t);
    wants(&b, t);
    fx_arb_agent_step(agent, t + 1 * MS);
    uint32_t h = st->arb.holder;
    assert_true(h == (uint32_t)a.tenant + 1 || h == (uint32_t)b.tenant + 1);
    struct fx_gpu *hg = h == (uint32_t)a.tenant + 1 ? &a : &b;
    struct fx_proc_rec *hp = &hg->procs[hg->slot];
    hp->waiting = 0;
    hp->inflight = 1;
    hp->launches++;
    hp->beat_ns = t + 2 * MS;
    fx_arb_agent_step(agent, t + 2 * MS);
    assert_true(st->arb.slice_started);
    uint64_t before = st->tenants[hg->tenant].gpu_time_ns;
    fx_arb_agent_step(agent, t + 5 * MS);
    fx_arb_agent_step(agent, t + 10 * MS);
    /* Then it says it drained long ago, and stops. */
    hp->inflight = 0;
    hp->drained_ns = t;
    hp->last_launch_ns = t;
    struct fx_gpu *other = hg == &a ? &b : &a;
    wants(other, t + 14 * MS);
    fx_arb_agent_step(agent, t + 14 * MS);
    /* The other has the GPU: alone with work, on the fast path (no slices). */
    assert_int_equal(st->arb.holder, 0);
    assert_int_equal(st->arb.demand, 1u << other->tenant);
    /* Charged from the grant (1 ms) to the round that took the GPU back
     * (14 ms), whatever it says of its launches and its drain. */
    uint64_t charged = st->tenants[hg->tenant].gpu_time_ns - before;
    assert_int_equal(charged, 13 * MS);
    /* A request file naming a GPU the agent was not given: no page. */
    char fake[200];
    snprintf(fake, sizeof(fake), "%s/ledger/a/GPU-made-up.req", root);
    FILE *f = fopen(fake, "w");
    assert_non_null(f);
    fclose(f);
    fx_arb_agent_step(agent, t + 40 * MS);
    snprintf(fake, sizeof(fake), "%s/arb/GPU-made-up.state", root);
    assert_int_not_equal(access(fake, F_OK), 0);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

/* What a request record says of other tenants, and what it cannot do. */
static void test_a_request_record_reaches_only_its_tenant(void **state)
{
    (void)state;
    struct fx_gpu a, b;
    uint64_t t = two_tenants(&a, &b, "normal");
    const struct fx_gpu_state *st = a.st;
    /* b names a's index, claims endless work, high priority is not a field */
    struct fx_proc_rec *p = &b.procs[b.slot];
    p->tenant = a.tenant;
    p->inflight = p->launching = p->waiting = 0xffffffffu;
    p->poll_ns = p->beat_ns = p->last_launch_ns = UINT64_MAX;
    fx_arb_agent_step(agent, t + 1 * MS);
    /* it alone claims work: no slices (nobody to share with), a is not busy */
    assert_int_equal(st->arb.demand & (1u << a.tenant), 0);
    assert_int_not_equal(st->arb.demand & (1u << b.tenant), 0);
    assert_int_equal(st->tenants[a.tenant].compute_share, 50);
    /* the page is the agent's to write */
    char page[200];
    snprintf(page, sizeof(page), "%s/arb/%s.state", root, UUID);
    struct stat sb;
    assert_int_equal(stat(page, &sb), 0);
    assert_int_equal(sb.st_mode & 0222, 0200); /* the owner's (the agent's) alone */
    /* a broken request file: its processes count as idle, nothing fails */
    char req[200];
    snprintf(req, sizeof(req), "%s/ledger/b/%s.req", root, UUID);
    assert_int_equal(truncate(req, 10), 0);
    fx_arb_agent_step(agent, t + 30 * MS);
    assert_int_equal(st->arb.demand & (1u << b.tenant), 0);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

static uint64_t ghost_waited;

static void *acquire_main(void *g)
{
    ghost_waited = fx_arb_acquire(g);
    return NULL;
}

/* A process of a slice the agent has no record for (no slice.conf here; a
 * full page) is not kept waiting for good while others hold the GPU: after
 * a grace of a few scans it goes ahead unarbitrated. */
static void test_an_unknown_slice_is_not_starved(void **state)
{
    (void)state;
    struct fx_gpu a, b, ghost;
    two_slices(&a, &b, "normal");
    join(&ghost, "ghost", 50, NULL); /* before the first scan, as a and b */
    uint64_t t = fx_mono_ns();
    fx_arb_agent_step(agent, t);
    wants(&a, t);
    wants(&b, t);
    fx_arb_agent_step(agent, t);
    assert_int_not_equal(a.st->arb.holder, 0);
    assert_int_equal(fx_gpu_agent_tenant(&ghost), -1);
    /* Not the main thread, whose waits end after 2 s anyway: a hang (the
     * alarm) fails the test. */
    alarm(10);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, acquire_main, &ghost), 0);
    pthread_join(th, NULL);
    alarm(0);
    fx_arb_launch_done(&ghost);
    assert_true(ghost_waited < 1000 * MS);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
    fx_gpu_detach(&ghost);
}

static uint64_t a_waited;
static int a_done;

static void *acquire_a(void *g)
{
    a_waited = fx_arb_acquire(g);
    __atomic_store_n(&a_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* a acquires the GPU on a thread of its own (its wait in a_waited) while
 * the agent runs rounds here and x claims the GPU until 20 ms after a's
 * wait is seen, then goes quiet; returns once a holds it. The 20 ms count
 * from a's wait, not from pthread_create: a thread that started 15 ms late
 * (a loaded machine) found x's claim nearly over and waited under 10 ms. */
static void acquire_beside_claim(struct fx_gpu *a, struct fx_gpu *x)
{
    a_done = 0;
    a_waited = 0;
    alarm(10);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, acquire_a, a), 0);
    uint64_t t0 = 0; /* when a's wait was first seen */
    while (!__atomic_load_n(&a_done, __ATOMIC_SEQ_CST)) {
        uint64_t now = fx_mono_ns();
        if (!t0 && __atomic_load_n(&a->procs[a->slot].waiting, __ATOMIC_SEQ_CST))
            t0 = now;
        if (!t0 || now - t0 < 20 * MS)
            wants(x, now);
        else
            x->procs[x->slot].waiting = 0;
        fx_arb_agent_step(agent, now);
        usleep(500);
    }
    pthread_join(th, NULL);
    alarm(0);
}

/* Time a launch waited for the GPU is the tenant's throttled time, on the
 * agent's page as on the shared state (metrics and flexpu-smi read it
 * there): a waits through the library's own wait while b has work, and
 * once it is given the GPU its wait shows on its record. */
static void test_throttled_time_is_counted(void **state)
{
    (void)state;
    struct fx_gpu a, b;
    two_tenants(&a, &b, "high"); /* so that b, not a, is given the GPU first */
    const struct fx_gpu_state *st = a.st;
    wants(&b, fx_mono_ns());
    fx_arb_agent_step(agent, fx_mono_ns());
    assert_int_equal(st->arb.demand, 1u << b.tenant);
    /* b keeps its claim for 20 ms of rounds, then goes quiet. */
    acquire_beside_claim(&a, &b);
    fx_arb_launch_done(&a);
    fx_arb_agent_step(agent, fx_mono_ns());
    assert_true(a_waited >= 10 * MS);
    /* Kept in microseconds by the process: exact to the microsecond. */
    assert_int_equal(st->tenants[a.tenant].throttled_ns, a_waited / 1000 * 1000);
    assert_int_equal(st->tenants[b.tenant].throttled_ns, 0);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

/* A tenant claiming endless work (in flight, being launched, waiting, in
 * every round) holds the GPU at most a slice and FX_ARB_AGENT_DRAIN_MAX_NS
 * of claimed drain a turn, the settle at the start of contention included:
 * its neighbour of the same share, which always has work, never waits
 * longer than that between two of its own slices. The claimant still gets
 * turns, and is charged for what it claims after its drain too (shared
 * with the neighbour's work beside it, which the neighbour's slice then
 * is not charged), so the neighbour holds the GPU more than half of the
 * time. Rounds
 * every 200 us of simulated time, for 2 s. Before, each of the claimant's
 * turns (and the first settle) lasted 200 ms more: the neighbour waited
 * 210 ms. */
static void test_claimed_work_delays_a_neighbour_one_drain_at_most(void **state)
{
    (void)state;
    struct fx_gpu a, b;
    uint64_t t = two_tenants(&a, &b, "normal");
    const struct fx_gpu_state *st = a.st;
    struct fx_proc_rec *pa = &a.procs[a.slot], *pb = &b.procs[b.slot];
    uint64_t waiting_since = t, longest = 0, a_held = 0;
    int a_turns = 0, b_turns = 0;
    uint32_t last = 0;
    for (uint64_t now = t + 200 * 1000; now < t + 2000 * MS; now += 200 * 1000) {
        pb->inflight = pb->launching = pb->waiting = 0xffffffffu;
        pb->poll_ns = pb->beat_ns = pb->last_launch_ns = now;
        pb->launches++;
        /* a, honest: launches while its slice runs (one kernel in flight),
         * drains at its end, and waits otherwise. */
        int mine = st->arb.holder == (uint32_t)a.tenant + 1;
        int runs = mine && now < st->arb.slice_end_ns;
        pa->inflight = runs ? 1 : 0;
        pa->waiting = runs ? 0 : 1;
        pa->poll_ns = pa->beat_ns = now;
        if (runs) {
            pa->launches++;
            pa->last_launch_ns = now;
        }
        fx_arb_agent_step(agent, now);
        uint32_t h = st->arb.holder;
        a_held += h == (uint32_t)a.tenant + 1 ? 200 * 1000 : 0;
        if (h == (uint32_t)a.tenant + 1 && waiting_since) {
            longest = now - waiting_since > longest ? now - waiting_since : longest;
            waiting_since = 0;
        } else if (h != (uint32_t)a.tenant + 1 && !waiting_since) {
            waiting_since = now;
        }
        if (h != last && h) {
            a_turns += h == (uint32_t)a.tenant + 1;
            b_turns += h == (uint32_t)b.tenant + 1;
        }
        last = h;
    }
    uint64_t ga = st->tenants[a.tenant].gpu_time_ns, gb = st->tenants[b.tenant].gpu_time_ns;
    print_message("beside endless claims: a waited %.1f ms at most; turns a %d, b %d; a held "
                  "the GPU %.0f ms; GPU time a %.0f ms, b %.0f ms\n",
                  longest / 1e6, a_turns, b_turns, a_held / 1e6, ga / 1e6, gb / 1e6);
    assert_true(longest <= FX_ARB_SLICE_NS + FX_ARB_AGENT_DRAIN_MAX_NS + 2 * MS);
    assert_true(a_turns >= 3 && b_turns >= 3);
    /* More than half of the time is a's (its charge is not the measure:
     * b's claims beside its slices pay part of them). */
    assert_true(a_held > 1000 * MS);
    /* Charged, the two together, no more than the time that passed. */
    assert_true(ga + gb <= 2000 * MS);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

/* An honest holder's queue outlasts the agent's cut of its drain (long
 * kernels: 25 ms of work still queued when its slice ends) and runs on
 * beside the next holder's slice. The GPU time charged to the two tenants
 * from the hand-over to the end of the next holder's slice adds up to the
 * time that passed: the overrun pays its part (half, while both run), and
 * the next holder the rest, less than its slice. Before, the next holder
 * paid its whole slice beside the overrun's half: 15.2 ms charged over
 * 10.2 ms. Rounds every 200 us of simulated time. */
static void test_an_overrun_and_the_next_holder_share_the_time(void **state)
{
    (void)state;
    struct fx_gpu a, b;
    uint64_t t = two_tenants(&a, &b, "normal");
    const struct fx_gpu_state *st = a.st;
    wants(&a, t);
    wants(&b, t);
    fx_arb_agent_step(agent, t + 200 * 1000);
    uint32_t first = st->arb.holder;
    assert_true(first == (uint32_t)a.tenant + 1 || first == (uint32_t)b.tenant + 1);
    struct fx_gpu *x = first == (uint32_t)a.tenant + 1 ? &a : &b, *y = x == &a ? &b : &a;
    struct fx_proc_rec *px = &x->procs[x->slot], *py = &y->procs[y->slot];
    uint32_t hx = (uint32_t)x->tenant + 1, hy = (uint32_t)y->tenant + 1;
    uint64_t x_end = 0, handed = 0, g0 = 0, gy0 = 0, ended = 0, g1 = 0, gy1 = 0;
    for (uint64_t now = t + 400 * 1000; now < t + 200 * MS && !ended; now += 200 * 1000) {
        uint32_t h = st->arb.holder;
        int running = now < st->arb.slice_end_ns;
        /* x launches through its slice, then its queue runs 25 ms more. */
        if (h == hx && running) {
            px->waiting = 0;
            px->inflight = 4;
            px->launches++;
            px->last_launch_ns = now;
        } else if (h == hx && !x_end) {
            x_end = st->arb.slice_end_ns;
        }
        if (x_end && now >= x_end + 25 * MS && px->inflight) {
            px->inflight = 0;
            px->drained_ns = now;
        }
        px->poll_ns = px->beat_ns = now;
        /* y waits, launches through its slice, drains at its end, waits. */
        int y_runs = h == hy && running;
        py->inflight = y_runs ? 1 : 0;
        py->waiting = y_runs ? 0 : 1;
        py->poll_ns = py->beat_ns = now;
        if (y_runs) {
            py->launches++;
            py->last_launch_ns = now;
        }
        fx_arb_agent_step(agent, now);
        uint64_t g = st->tenants[a.tenant].gpu_time_ns + st->tenants[b.tenant].gpu_time_ns;
        if (!handed && h == hx && st->arb.holder == hy) {
            handed = now;
            g0 = g;
            gy0 = st->tenants[y->tenant].gpu_time_ns;
        } else if (handed && !ended && st->tenants[y->tenant].gpu_time_ns != gy0) {
            ended = now;
            g1 = g;
            gy1 = st->tenants[y->tenant].gpu_time_ns;
        }
    }
    assert_true(handed && ended);
    print_message("from the hand-over to the end of the next slice: %.1f ms passed, %.1f ms "
                  "charged (the next holder %.1f ms); the overrun ran until %.1f ms after it\n",
                  (ended - handed) / 1e6, (g1 - g0) / 1e6, (gy1 - gy0) / 1e6,
                  (x_end + 25 * MS - handed) / 1e6);
    /* The overrun ran beside the whole of y's slice (charged when it
     * ended: y's only charge). */
    assert_true(x_end + 25 * MS > ended);
    /* Exact but for the rounding of a division per round. */
    assert_true(g1 - g0 <= ended - handed + 100 * 1000 && g1 - g0 + 100 * 1000 >= ended - handed);
    assert_true(gy1 - gy0 < FX_ARB_SLICE_NS);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

/* Claims work in flight, as a process with queued launches publishes it. */
static void claims(struct fx_gpu *g, uint64_t now)
{
    struct fx_proc_rec *p = &g->procs[g->slot];
    p->inflight = 1;
    p->poll_ns = p->beat_ns = p->last_launch_ns = now;
    p->launches++;
}

/* A slice whose record the agent makes while a settle runs (a and b's
 * queues draining at the start of contention) is not charged for the
 * settle's time before it existed: the settle charges the time since the
 * previous round to the queues draining now, and the new record's part of
 * it was charged before (fuzz_arb: a slice that came back during a settle
 * got the whole 17.9 ms round; here 2 ms of the 6 since the settle began). */
static void test_a_record_made_during_a_settle_is_not_charged_before(void **state)
{
    (void)state;
    struct fx_gpu a, b, c;
    uint64_t t = two_tenants(&a, &b, "normal");
    const struct fx_gpu_state *st = a.st;
    claims(&a, t + 15 * MS);
    claims(&b, t + 15 * MS);
    fx_arb_agent_step(agent, t + 15 * MS); /* no scan yet: the settle begins */
    assert_int_equal(st->arb.holder, 0);
    join(&c, "c", 50, "normal");
    claims(&a, t + 21 * MS);
    claims(&b, t + 21 * MS);
    claims(&c, t + 21 * MS);
    fx_arb_agent_step(agent, t + 21 * MS); /* the scan makes c; the settle goes on */
    int tc = fx_gpu_agent_tenant(&c);
    assert_true(tc >= 0);
    assert_int_equal(st->arb.holder, 0);
    uint64_t ga = st->tenants[a.tenant].gpu_time_ns, gb = st->tenants[b.tenant].gpu_time_ns,
             gc = st->tenants[tc].gpu_time_ns;
    print_message("settle of 6 ms: a %.2f ms, b %.2f ms, c (new) %.2f ms\n", ga / 1e6, gb / 1e6,
                  gc / 1e6);
    assert_int_equal(gc, 0);
    assert_true(ga > 0 && gb > 0 && ga + gb <= 6 * MS);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
    fx_gpu_detach(&c);
}

/* How b, beside an honest a of the same share, behaves in
 * hostile_beside_honest. */
enum hostile {
    /* Claims only to wait for LATE_NS of each of its turns (the GPU is its;
     * before, its clock waited for its first launch), then endless work. */
    CLAIMS_LATE,
    /* Waits for the GPU; holding it, says it still waits for LATE_NS (its
     * thread waking up), then that it launched once, and nothing after:
     * its work runs unseen. */
    LAUNCHES_UNSEEN,
    /* Waits for the GPU; holding it, says nothing at all. */
    NEVER_LAUNCHES,
};
#define LATE_NS (1600 * 1000ull) /* just below the 2 ms grace there was */

struct turns {
    int b_turns;
    uint64_t most_free;          /* the most b held the GPU a turn uncharged */
    uint64_t most_held;          /* the longest turn of b */
    uint64_t longest;            /* the longest a waited between two slices */
};

/* Rounds every 200 us of simulated time for 2 s, b behaving as `how`; per
 * turn of b (from the round that gave it the GPU to the round that took it
 * back or gave it another slice), what it held and was charged. */
static void hostile_beside_honest(enum hostile how, struct turns *out)
{
    struct fx_gpu a, b;
    uint64_t t = two_tenants(&a, &b, "normal");
    const struct fx_gpu_state *st = a.st;
    struct fx_proc_rec *pa = &a.procs[a.slot], *pb = &b.procs[b.slot];
    uint32_t ha = (uint32_t)a.tenant + 1, hb = (uint32_t)b.tenant + 1;
    uint64_t waiting_since = t, granted = 0, gb0 = 0;
    int said_launch = 0;
    memset(out, 0, sizeof(*out));
    for (uint64_t now = t + 200 * 1000; now < t + 2000 * MS; now += 200 * 1000) {
        uint32_t h = st->arb.holder;
        uint32_t seq = st->arb.seq;
        int holds = h == hb && granted, early = holds && now - granted < LATE_NS;
        pb->poll_ns = pb->beat_ns = now;
        if (how == CLAIMS_LATE) {
            pb->inflight = pb->launching = early ? 0 : 0xffffffffu;
            pb->waiting = 1;
            if (!early) {
                pb->last_launch_ns = now;
                pb->launches++;
            }
        } else {
            pb->waiting = !holds || (how == LAUNCHES_UNSEEN && early);
            if (how == LAUNCHES_UNSEEN && holds && !early && !said_launch) {
                pb->last_launch_ns = now;
                pb->launches++;
                said_launch = 1;
            }
        }
        /* a, honest: launches while its slice runs (one kernel in flight),
         * drains at its end, and waits otherwise. */
        int runs = h == ha && now < st->arb.slice_end_ns;
        pa->inflight = runs ? 1 : 0;
        pa->waiting = runs ? 0 : 1;
        pa->poll_ns = pa->beat_ns = now;
        if (runs) {
            pa->launches++;
            pa->last_launch_ns = now;
        }
        fx_arb_agent_step(agent, now);
        uint32_t nh = st->arb.holder;
        if (nh == ha && waiting_since) {
            out->longest = now - waiting_since > out->longest ? now - waiting_since : out->longest;
            waiting_since = 0;
        } else if (nh != ha && !waiting_since) {
            waiting_since = now;
        }
        uint64_t gb = st->tenants[b.tenant].gpu_time_ns;
        /* Another slice for b: a decision made (seq), the holder kept. */
        int again = h == hb && nh == hb && st->arb.seq != seq;
        if (granted && (nh != hb || again)) {
            uint64_t held = now - granted, charged = gb - gb0;
            uint64_t free_ns = held > charged ? held - charged : 0;
            out->most_free = free_ns > out->most_free ? free_ns : out->most_free;
            out->most_held = held > out->most_held ? held : out->most_held;
            out->b_turns++;
            granted = 0;
        }
        if (nh == hb && !granted) {
            granted = now;
            gb0 = gb;
            said_launch = 0;
        }
    }
    print_message("b %s: %d turns, held the GPU %.1f ms a turn at most, %.1f ms of it "
                  "uncharged at most; a waited %.1f ms at most\n",
                  how == CLAIMS_LATE       ? "claiming work late"
                  : how == LAUNCHES_UNSEEN ? "launching unseen"
                                           : "never launching",
                  out->b_turns, out->most_held / 1e6, out->most_free / 1e6, out->longest / 1e6);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

/* A holder's slice is charged from the grant, not from a first launch it
 * reports: b waits through the start of each of its turns, then claims
 * endless work. It is charged all it held, and a waits between two of its
 * slices no more than a slice and b's capped drain. Before, the clock
 * started at b's first launch (2 ms after the grant at the latest): b held
 * the GPU 1.6 ms a turn uncharged, and a waited 21.6 ms. */
static void test_a_claimant_is_charged_from_the_grant(void **state)
{
    (void)state;
    struct turns r;
    hostile_beside_honest(CLAIMS_LATE, &r);
    assert_true(r.b_turns >= 3);
    assert_int_equal(r.most_free, 0);
    assert_true(r.longest <= FX_ARB_SLICE_NS + FX_ARB_AGENT_DRAIN_MAX_NS + 2 * MS);
}

/* A holder that launches without saying so is charged all the time it
 * held the GPU: b says it waits for 1.6 ms of each turn, then that it
 * launched once, and goes on unseen, keeping the GPU for the 2 ms a holder
 * that stopped launching keeps it. Before, its clock started at the launch
 * it reported and its charge ended at the last round that showed it busy:
 * 3.4 ms a turn uncharged of 3.6 ms held. */
static void test_a_holder_launching_unseen_is_charged_its_turn(void **state)
{
    (void)state;
    struct turns r;
    hostile_beside_honest(LAUNCHES_UNSEEN, &r);
    assert_true(r.b_turns >= 3);
    assert_true(r.most_held >= LATE_NS + FX_ARB_IDLE_NS);
    assert_int_equal(r.most_free, 0);
}

/* A holder that never launches gives the GPU back at the first round that
 * sees it quiet, charged for that round. Before, that round was not
 * charged, b's virtual time never moved, and it was given the GPU every
 * other round (4,999 turns in 2 s). */
static void test_a_holder_that_never_launches_gives_the_gpu_back(void **state)
{
    (void)state;
    struct turns r;
    hostile_beside_honest(NEVER_LAUNCHES, &r);
    assert_true(r.b_turns >= 3);
    assert_true(r.most_held <= 200 * 1000);
    assert_int_equal(r.most_free, 0);
}

/* A page an agent of another version left (another layout) is the agent's
 * own file: made again, not a GPU left unarbitrated. The generations it
 * gives records go on from the page's counter, never repeating one. */
static void test_a_page_of_another_version_is_replaced(void **state)
{
    (void)state;
    char dir[100], page[200];
    snprintf(dir, sizeof(dir), "%s/arb", root);
    snprintf(page, sizeof(page), "%s/%s.state", dir, UUID);
    mkdir(dir, 0755);
    struct fx_gpu_state *old = calloc(1, sizeof(*old));
    assert_non_null(old);
    old->h.magic = FX_STATE_MAGIC;
    old->h.version = FX_STATE_VERSION - 1;
    old->h.size = (uint32_t)offsetof(struct fx_gpu_state, tenant_gens);
    FILE *f = fopen(page, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(old, old->h.size, 1, f), 1);
    fclose(f);
    free(old);
    struct flexpu_error err = {0};
    assert_int_equal(fx_arb_agent_add_gpu(agent, UUID, &err), 0);
    struct fx_gpu a;
    join(&a, "a", 50, "normal");
    fx_arb_agent_step(agent, fx_mono_ns());
    assert_int_equal(a.st->h.version, FX_STATE_VERSION);
    int t = fx_gpu_agent_tenant(&a);
    assert_true(t >= 0);
    uint32_t gen = a.st->tenants[t].gen;
    assert_int_not_equal(gen, 0);
    assert_int_equal(a.st->tenant_gens, gen);
    /* Another agent takes the page over: a record it adds gets a new gen. */
    fx_gpu_detach(&a);
    fx_arb_agent_free(agent);
    assert_int_equal(fx_arb_agent_new(&agent, root, &err), 0);
    assert_int_equal(fx_arb_agent_add_gpu(agent, UUID, &err), 0);
    join(&a, "b", 50, "normal");
    fx_arb_agent_step(agent, fx_mono_ns());
    t = fx_gpu_agent_tenant(&a);
    assert_true(t >= 0);
    assert_true(a.st->tenants[t].gen > gen);
    fx_gpu_detach(&a);
}

/* The index of the page's record named `name`, -1 when none. */
static int record_of(const struct fx_gpu_state *st, const char *name)
{
    for (int t = 0; t < FX_MAX_TENANTS; t++)
        if (st->tenants[t].in_use && strcmp(st->tenants[t].name, name) == 0)
            return t;
    return -1;
}

/* Waits until the agent's next scan is due (real time: the library's waits
 * read the clock). */
static void next_scan(void)
{
    usleep((FX_ARB_AGENT_SCAN_NS + 5 * MS) / 1000);
}

/* A tenant's record freed and added again at another index (its slice gone
 * from a scan, another slice taking the freed index): a process of it that
 * cached the old index must not act on the other tenant's record. Here a's
 * process keeps running while its slice.conf is away for a scan; c then
 * takes a's old index and holds the GPU (capped, so it is given slices
 * alone); a's next launch must wait for c's slice, not launch in it. */
static void test_a_stale_tenant_index_is_not_used(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    assert_int_equal(fx_arb_agent_add_gpu(agent, UUID, &err), 0);
    struct fx_gpu a, c;
    join(&a, "a", 50, "normal");
    fx_arb_agent_step(agent, fx_mono_ns());
    const struct fx_gpu_state *st = a.st;
    int old = record_of(st, "a");
    assert_true(old >= 0);
    (void)fx_arb_fast_path(&a, 0); /* a launch: its process finds its record */
    assert_int_equal(fx_gpu_tenant(&a), old);
    /* a's slice.conf away for a scan: its record is freed */
    char conf[200], away[200];
    snprintf(conf, sizeof(conf), "%s/slices/a/slice.conf", root);
    snprintf(away, sizeof(away), "%s/slices/a/slice.conf.away", root);
    assert_int_equal(rename(conf, away), 0);
    next_scan();
    fx_arb_agent_step(agent, fx_mono_ns());
    assert_int_equal(record_of(st, "a"), -1);
    /* c takes the freed index; a is added again, at another one */
    conf_extra = "compute_cap = 50\n";
    join(&c, "c", 50, "normal");
    conf_extra = NULL;
    assert_int_equal(rename(away, conf), 0);
    next_scan();
    fx_arb_agent_step(agent, fx_mono_ns());
    assert_int_equal(record_of(st, "c"), old);
    int now_a = record_of(st, "a");
    assert_true(now_a >= 0 && now_a != old);
    /* c waits and is given the GPU */
    wants(&c, fx_mono_ns());
    fx_arb_agent_step(agent, fx_mono_ns());
    assert_int_equal(st->arb.holder, (uint32_t)old + 1);
    /* Before a's process launches again, what it reads of its index is
     * not c's record. */
    assert_int_not_equal(fx_gpu_tenant(&a), old);
    /* a's next launch waits for c's slice instead of taking it as its own
     * (c keeps its claim for 20 ms of rounds, then goes quiet)... */
    acquire_beside_claim(&a, &c);
    fx_arb_launch_done(&a);
    assert_true(a_waited > 0);
    /* ...and finds its own record again. */
    assert_int_equal(fx_gpu_tenant(&a), now_a);
    fx_gpu_detach(&a);
    fx_gpu_detach(&c);
}

static int clock_calls;

/* The SM clock as the node agent reads it (NVML in flexpu-node). */
static int clock_1980(void *ctx, const char *uuid, uint32_t *mhz)
{
    (void)ctx;
    assert_string_equal(uuid, UUID);
    clock_calls++;
    *mhz = 1980;
    return 0;
}

/* A cap that refers to a clock (cap_clock_mhz in the slice.conf the agent
 * wrote) is charged at the SM clock the agent reads during the slice, as
 * the shared state charges it: the bucket pays GPU time x 1980 / 1600. */
static void test_cap_charged_at_the_clock_the_agent_reads(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    assert_int_equal(fx_arb_agent_add_gpu(agent, UUID, &err), 0);
    fx_arb_agent_set_clock(agent, clock_1980, NULL);
    struct fx_gpu a;
    conf_extra = "compute_cap = 30\ncap_clock_mhz = 1600\n";
    join(&a, "a", 30, "normal");
    conf_extra = NULL;
    uint64_t t = fx_mono_ns();
    fx_arb_agent_step(agent, t);
    assert_true(fx_gpu_agent_tenant(&a) >= 0);
    const struct fx_gpu_state *st = a.st;
    const struct fx_tenant_rec *tr = &st->tenants[a.tenant];
    assert_int_equal(tr->compute_cap, 30);
    assert_int_equal(tr->cap_clock_mhz, 1600);
    /* Capped: given slices even alone; its slice starts at the grant. */
    wants(&a, t);
    fx_arb_agent_step(agent, t + 1 * MS);
    assert_int_equal(st->arb.holder, (uint32_t)a.tenant + 1);
    assert_true(st->arb.slice_started);
    assert_int_equal(clock_calls, 0); /* no clock before the slice runs */
    struct fx_proc_rec *p = &a.procs[a.slot];
    p->waiting = 0;
    p->inflight = 1;
    p->launches++;
    p->beat_ns = p->last_launch_ns = t + 2 * MS;
    fx_arb_agent_step(agent, t + 2 * MS);
    fx_arb_agent_step(agent, t + 3 * MS);
    fx_arb_agent_step(agent, t + 5 * MS);
    fx_arb_agent_step(agent, t + 8 * MS);
    assert_int_equal(clock_calls, 3);
    assert_int_equal(tr->clock_mhz, 1980);
    int64_t b0 = tr->budget_ns;
    uint64_t ts0 = tr->budget_ts, g0 = tr->gpu_time_ns;
    /* Its work is done: the slice is charged, in GPU time from the grant
     * (1 ms) to the round that takes the GPU back (13 ms), in the bucket at
     * the clock's pace. */
    p->inflight = 0;
    p->drained_ns = t + 8 * MS;
    uint64_t end = t + 13 * MS;
    fx_arb_agent_step(agent, end);
    uint64_t g = tr->gpu_time_ns - g0;
    assert_int_equal(g, 12 * MS);
    int64_t want = b0 + (int64_t)((end - ts0) * 30 / 100) - (int64_t)(g * 1980 / 1600);
    assert_int_equal(tr->budget_ns, want);
    assert_int_equal(tr->slice_clock, 0); /* taken by the charge */
    fx_gpu_detach(&a);
}

static int agent_stop;

static void *agent_main(void *arg)
{
    (void)arg;
    fx_arb_agent_run(agent, &agent_stop);
    return NULL;
}

struct launcher {
    struct fx_gpu *g;
    uint64_t until;
    uint64_t launches;
};

/* A tenant's launching thread as hooks_launch.c drives the arbiter: the
 * fast path, else a wait for the GPU, then work in flight for a while. */
static void *launch_loop(void *arg)
{
    struct launcher *l = arg;
    uint64_t now;
    while ((now = fx_mono_ns()) < l->until) {
        fx_arb_heartbeat(l->g, now);
        (void)fx_arb_leashed(l->g, now);
        (void)fx_arb_outranks_others(l->g);
        (void)fx_arb_contended(l->g);
        if (!fx_arb_fast_path(l->g, 0)) {
            (void)fx_arb_acquire(l->g);
            fx_arb_launched(l->g, fx_mono_ns());
            (void)fx_arb_set_inflight(l->g, 1);
            fx_arb_launch_done(l->g);
            usleep(200);
            (void)fx_arb_set_inflight(l->g, 0);
        } else {
            usleep(200);
        }
        l->launches++;
    }
    return NULL;
}

/* The agent on its own thread, as in flexpu-node, and two tenants of two
 * launching threads each beside it in this process: both are served, and
 * what the threads share with each other and with the agent is accessed
 * atomically (run under ThreadSanitizer: docs/SECURITY.md; it sees the
 * handle's fields, not the page, which the agent maps at another address). */
static void test_agent_and_tenants_side_by_side(void **state)
{
    (void)state;
    struct fx_gpu a, b;
    two_slices(&a, &b, "normal"); /* the agent's thread scans */
    agent_stop = 0;
    pthread_t at, th[4];
    assert_int_equal(pthread_create(&at, NULL, agent_main, NULL), 0);
    uint64_t until = fx_mono_ns() + 400 * MS;
    struct launcher l[4] = {{&a, until, 0}, {&a, until, 0}, {&b, until, 0}, {&b, until, 0}};
    alarm(20);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, launch_loop, &l[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    __atomic_store_n(&agent_stop, 1, __ATOMIC_RELEASE);
    pthread_join(at, NULL);
    alarm(0);
    for (int i = 0; i < 4; i++)
        assert_true(l[i].launches > 0);
    int ia = fx_gpu_agent_tenant(&a), ib = fx_gpu_agent_tenant(&b);
    assert_true(ia >= 0 && ib >= 0);
    /* Both were given slices (the scan finds them within 20 ms). */
    const struct fx_gpu_state *st = a.st;
    assert_true(__atomic_load_n(&st->tenants[ia].gpu_time_ns, __ATOMIC_RELAXED) > 0);
    assert_true(__atomic_load_n(&st->tenants[ib].gpu_time_ns, __ATOMIC_RELAXED) > 0);
    fx_gpu_detach(&a);
    fx_gpu_detach(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pages_policy_and_turns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_request_record_reaches_only_its_tenant, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_an_unknown_slice_is_not_starved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttled_time_is_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claimed_work_delays_a_neighbour_one_drain_at_most,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_overrun_and_the_next_holder_share_the_time,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_record_made_during_a_settle_is_not_charged_before,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_claimant_is_charged_from_the_grant, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_holder_launching_unseen_is_charged_its_turn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_holder_that_never_launches_gives_the_gpu_back,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_charged_at_the_clock_the_agent_reads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_stale_tenant_index_is_not_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_page_of_another_version_is_replaced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_agent_and_tenants_side_by_side, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
