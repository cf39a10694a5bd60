/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/arbiter.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "runtime/arbagent.h"

#define COMP "flexpu-cuda"
#define POLL_NS (200 * 1000ull) /* a waiter re-checks at least this often */
/* A waiting thread that has not checked in for this long belongs to a
 * stopped process (SIGSTOP, a debugger, a frozen container): its wait does
 * not count as work. */
#define STALE_NS (50 * 1000 * 1000ull)

/* Everything the launchers read without the lock is sequentially
 * consistent: a launcher announces itself (launching++) and then reads the
 * holder and the slice end; the arbiter closes the slice and then reads the
 * announcements. One of the two always sees the other. */
#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define SUB(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_SEQ_CST)

/* The futex is in a MAP_SHARED file mapping, so it must not be a private
 * futex: waiters are in other processes. Returns 1 when the wait was cut
 * short by a signal handler running on this thread. */
static int futex_wait(uint32_t *addr, uint32_t seen, uint64_t timeout_ns)
{
    struct timespec ts = {(time_t)(timeout_ns / 1000000000ull), (long)(timeout_ns % 1000000000ull)};
    return syscall(SYS_futex, addr, FUTEX_WAIT, seen, &ts, NULL, 0) != 0 && errno == EINTR;
}

static void futex_wake_all(uint32_t *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* A tenant's priority as an index of prio_seen_ns (a record is never trusted
 * to hold a valid one). */
static int prio_of(const struct fx_tenant_rec *tr)
{
    uint32_t p = __atomic_load_n(&tr->priority, __ATOMIC_RELAXED);
    return p > 2 ? 2 : (int)p;
}

static int capped(const struct fx_tenant_rec *tr);

/* Under the node agent: the agent's page is read-only here, and the agent
 * learns of this tenant's work from its request record. Until the agent has
 * added the tenant it is treated as one alone, as a newcomer is. */
static int fast_path_agent(struct fx_gpu *g, int capped_cfg)
{
    struct fx_arbiter *a = &g->st->arb;
    struct fx_proc_rec *p = &g->procs[g->slot];
    __atomic_store_n(&p->launches, __atomic_load_n(&p->launches, __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
    /* Checked at each launch: the agent may have given the index this
     * process found to another tenant. */
    int t = fx_gpu_agent_index(g);
    uint32_t others = t >= 0 ? LOAD(&a->demand) & ~(1u << t) : LOAD(&a->demand);
    /* The cap the agent enforces is the one it holds for the slice. */
    if (capped_cfg || (t >= 0 && capped(&g->st->tenants[t])) || others || LOAD(&a->holder))
        return 0;
    if (t < 0)
        return 1;
    /* As below: no clock read unless a higher priority was ever seen. */
    for (int q = prio_of(&g->st->tenants[t]) + 1; q < 3; q++)
        if (__atomic_load_n(&a->prio_seen_ns[q], __ATOMIC_RELAXED))
            return !fx_arb_leashed(g, fx_mono_ns());
    return 1;
}

int fx_arb_fast_path(struct fx_gpu *g, int capped)
{
    if (g->agent)
        return fast_path_agent(g, capped);
    struct fx_arbiter *a = &g->st->arb;
    struct fx_proc_rec *p = &g->procs[g->slot];
    int t = fx_gpu_tenant(g);
    uint32_t me = 1u << t;
    if (!(LOAD(&a->demand) & me))
        __atomic_fetch_or(&a->demand, me, __ATOMIC_SEQ_CST);
    /* Activity is a counter the arbiter samples, not a clock read per
     * launch (a clock read is a noticeable share of a launch). Threads
     * racing on it may lose a count; only its moving matters. */
    __atomic_store_n(&p->launches, __atomic_load_n(&p->launches, __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
    /* No announcement here (two locked instructions per launch would be a
     * measurable share of a launch): a fast-path launch racing with the
     * start of contention is at most one launch per thread, and the settle
     * phase waits for the marked fast-path work anyway. */
    if (capped || (LOAD(&a->demand) & ~me) != 0 || LOAD(&a->holder) != 0)
        return 0;
    /* Without priorities above this tenant's ever seen on the GPU, no clock
     * read is needed to know it is not leashed. */
    int prio = prio_of(&g->st->tenants[t]);
    for (int q = prio + 1; q < 3; q++)
        if (__atomic_load_n(&a->prio_seen_ns[q], __ATOMIC_RELAXED))
            return !fx_arb_leashed(g, fx_mono_ns());
    return 1;
}

int fx_arb_outranks_others(struct fx_gpu *g)
{
    struct fx_gpu_state *st = g->st;
    int me = fx_gpu_tenant(g);
    if (me < 0)
        return 0;
    uint32_t others = LOAD(&st->arb.demand) & ~(1u << me);
    int mine = prio_of(&st->tenants[me]);
    for (int t = 0; t < FX_MAX_TENANTS && others; t++)
        if (((others >> t) & 1) && prio_of(&st->tenants[t]) >= mine)
            return 0;
    return others != 0;
}

int fx_arb_leashed(struct fx_gpu *g, uint64_t now)
{
    struct fx_arbiter *a = &g->st->arb;
    int me = fx_gpu_tenant(g);
    if (me < 0)
        return 0;
    int prio = prio_of(&g->st->tenants[me]);
    for (int q = prio + 1; q < 3; q++) {
        uint64_t seen = __atomic_load_n(&a->prio_seen_ns[q], __ATOMIC_RELAXED);
        if (seen && (now < seen || now - seen < FX_ARB_LEASH_RECENT_NS))
            return 1;
    }
    return 0;
}

void fx_arb_launched(struct fx_gpu *g, uint64_t now)
{
    STORE(&g->procs[g->slot].last_launch_ns, now);
}

void fx_arb_launch_done(struct fx_gpu *g)
{
    SUB(&g->procs[g->slot].launching, 1);
}

static int waiting_now(struct fx_proc_rec *p, uint64_t now)
{
    uint64_t polled = LOAD(&p->poll_ns);
    return LOAD(&p->waiting) && (now < polled || now - polled < STALE_NS);
}

/* When the process last launched, as far as the arbiter can tell: its
 * arbitrated launches stamp the time; fast-path launches only move a
 * counter, and the time the arbiter sees it move stands for them. `p` holds
 * the arbiter's view (seen_*), which this updates. Never later than `now`:
 * a stamp from the future is not one the library wrote. */
static uint64_t last_launch(struct fx_proc_rec *p, uint64_t now)
{
    uint64_t n = __atomic_load_n(&p->launches, __ATOMIC_RELAXED);
    if (n != p->seen_launches) {
        p->seen_launches = n;
        p->seen_ns = now;
    }
    uint64_t last = LOAD(&p->last_launch_ns);
    last = last > p->seen_ns ? last : p->seen_ns;
    return last < now ? last : now;
}

/* Work in flight or being launched, as the process last published it; a
 * process that has published nothing for STALE_NS is stopped (its monitor
 * thread too), and its counts are not believed: a stopped process must not
 * hold the GPU through a count it cannot lower. */
static uint32_t inflight_now(struct fx_proc_rec *p, uint64_t now)
{
    uint64_t beat = LOAD(&p->beat_ns), last = last_launch(p, now);
    if (last > beat)
        beat = last;
    if (now >= beat && now - beat >= STALE_NS)
        return 0;
    /* Counts are bounded (hooks_launch.c keeps far fewer in flight): a
     * record's sum must not wrap. */
    uint32_t in = LOAD(&p->inflight), l = LOAD(&p->launching);
    return (in > 65536 ? 65536 : in) + (l > 65536 ? 65536 : l);
}

void fx_arb_account(struct fx_arb_activity *act, struct fx_proc_rec *p, uint64_t now)
{
    uint32_t n = inflight_now(p, now);
    uint64_t last = last_launch(p, now);
    int waiting = waiting_now(p, now);
    if (act->inflight < (1u << 30))
        act->inflight += n;
    if (n && act->launching < (1u << 30)) {
        uint32_t l = LOAD(&p->launching);
        act->launching += l > 65536 ? 65536 : l;
    }
    if (waiting)
        act->waiting = 1;
    if (last > act->last_ns)
        act->last_ns = last;
    /* Until when it used the GPU: now while it has work, else when its last
     * process went quiet. Time a holder sat idle is not charged. */
    uint64_t used = now;
    if (!n && !waiting) {
        uint64_t l = LOAD(&p->last_launch_ns), d = LOAD(&p->drained_ns);
        used = l > d ? l : d;
        used = used < now ? used : now;
    }
    if (used > act->used_ns)
        act->used_ns = used;
}

int fx_arb_contended(struct fx_gpu *g)
{
    struct fx_arbiter *a = &g->st->arb;
    int me = fx_gpu_tenant(g);
    uint32_t mine = me >= 0 ? 1u << me : 0;
    return LOAD(&a->holder) != 0 || (LOAD(&a->demand) & ~mine) != 0;
}

void fx_arb_heartbeat(struct fx_gpu *g, uint64_t now)
{
    __atomic_store_n(&g->procs[g->slot].beat_ns, now, __ATOMIC_RELAXED);
}

/* A tenant has work when one of its live processes waits for the GPU, has
 * work in flight or being launched, or launched within `idle_ns`. */
static int tenant_busy(const struct fx_arb_activity *act, uint64_t now, uint64_t idle_ns)
{
    return act->waiting || act->inflight ||
           (act->last_ns && now >= act->last_ns && now - act->last_ns < idle_ns);
}

/* A tenant's cap and share as the arbiter uses them. Tenant records live in
 * a file tenants can write (docs/SECURITY.md), so no value read from one is
 * trusted: a cap of 0 would divide by zero, above 100 is no cap. */
static uint32_t cap_of(const struct fx_tenant_rec *tr)
{
    uint32_t c = __atomic_load_n(&tr->compute_cap, __ATOMIC_RELAXED);
    return c < 1 ? 1 : c > 100 ? 100 : c;
}

static int capped(const struct fx_tenant_rec *tr)
{
    return cap_of(tr) < 100;
}

/* A bucket below this is not one the arbiter left (a tenant overdraws by
 * one slice and a drain at most): it was written by someone else. */
#define BUDGET_FLOOR_NS (-(int64_t)(2000 * 1000 * 1000ll))

/* The bucket is written by whoever decides (the lock holder, or the node
 * agent) and read by waiting tenants (wait_for): atomically, as a whole. */
static void refill(struct fx_tenant_rec *tr, uint64_t now)
{
    if (!capped(tr))
        return;
    int64_t b = LOAD(&tr->budget_ns);
    uint64_t ts = LOAD(&tr->budget_ts);
    if (b < BUDGET_FLOOR_NS || b > (int64_t)FX_ARB_BURST_NS)
        b = b < 0 ? BUDGET_FLOOR_NS : (int64_t)FX_ARB_BURST_NS;
    if (ts == 0) {
        STORE(&tr->budget_ts, now);
        STORE(&tr->budget_ns, (int64_t)FX_ARB_CAP_QUANTUM_NS);
        return;
    }
    /* Processes read the clock at different moments: never go back. */
    if (now <= ts) {
        STORE(&tr->budget_ns, b);
        return;
    }
    int64_t add = (int64_t)((now - ts) * cap_of(tr) / 100);
    STORE(&tr->budget_ns, b + add > (int64_t)FX_ARB_BURST_NS ? (int64_t)FX_ARB_BURST_NS : b + add);
    STORE(&tr->budget_ts, now);
}

static uint64_t weight(const struct fx_tenant_rec *tr)
{
    uint32_t s = __atomic_load_n(&tr->compute_share, __ATOMIC_RELAXED);
    return s < 1 ? 1 : s > 100 ? 100 : s; /* share 0: best effort, 1% weight */
}

/* A slice's GPU time in the terms of a cap that refers to a clock
 * (cap_clock_mhz, the clock of the fully loaded GPU): a capped tenant alone
 * is duty-cycled, not power-capped, and runs at a higher clock, doing more
 * work per ms than the cap's percent means (an H200: 1980 against 1599 MHz).
 * Its time is scaled by the SM clock during the slice (the mean of the
 * samples its processes took, else the last one seen) over the reference.
 * Never below the time itself: a slower clock must not buy more than the
 * cap in time. Takes the slice's samples. */
static uint64_t cap_cost(struct fx_tenant_rec *tr, uint64_t ns)
{
    uint64_t samples = __atomic_exchange_n(&tr->slice_clock, 0, __ATOMIC_SEQ_CST);
    uint64_t ref = LOAD(&tr->cap_clock_mhz);
    if (ref < 100 || ref > 10000 || ns > FX_ARB_DRAIN_MAX_NS * 10)
        return ns; /* off, or not a value the library wrote */
    uint64_t n = samples >> 32;
    uint64_t mhz = n ? (samples & 0xffffffffu) / n : LOAD(&tr->clock_mhz);
    if (mhz > 10000)
        mhz = 10000;
    return mhz > ref ? ns * mhz / ref : ns;
}

static void charge(struct fx_tenant_rec *tr, uint64_t ns)
{
    /* A slice's length is read from the shared file: bound it. */
    if (ns > FX_ARB_DRAIN_MAX_NS * 10)
        ns = FX_ARB_DRAIN_MAX_NS * 10;
    ADD(&tr->gpu_time_ns, ns);
    tr->vtime += ns * 100 / weight(tr);
    /* Only the cap's bucket pays for the clock: GPU time and shares stay
     * in time. */
    if (capped(tr))
        STORE(&tr->budget_ns, LOAD(&tr->budget_ns) - (int64_t)cap_cost(tr, ns));
}

void fx_arb_charge(struct fx_gpu_state *st, int t, uint64_t ns)
{
    if (t >= 0 && t < FX_MAX_TENANTS && ns)
        charge(&st->tenants[t], ns);
}

/* The next holder: among tenants with work and budget, the highest
 * priority, then the least GPU time per unit of share. -1: nobody. */
static int pick(struct fx_gpu_state *st, uint32_t demand)
{
    int best = -1;
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        struct fx_tenant_rec *tr = &st->tenants[t];
        if (!(demand & (1u << t)) || !tr->in_use ||
            (capped(tr) && LOAD(&tr->budget_ns) < (int64_t)FX_ARB_CAP_QUANTUM_NS))
            continue;
        if (best < 0 || tr->priority > st->tenants[best].priority ||
            (tr->priority == st->tenants[best].priority && tr->vtime < st->tenants[best].vtime))
            best = t;
    }
    return best;
}

/* Tenants that come back from idle (or are new) start at the virtual clock,
 * so time they did not use is not saved up against the others; the clock
 * follows the least-served tenant that has work. */
static void level(struct fx_gpu_state *st, uint32_t demand)
{
    struct fx_arbiter *a = &st->arb;
    uint32_t fresh = demand & ~a->seen_demand;
    uint64_t minv = UINT64_MAX;
    for (int t = 0; t < FX_MAX_TENANTS; t++)
        if ((demand & ~fresh & (1u << t)) && st->tenants[t].vtime < minv)
            minv = st->tenants[t].vtime;
    if (minv != UINT64_MAX && minv > a->vclock)
        a->vclock = minv;
    for (int t = 0; t < FX_MAX_TENANTS; t++)
        if ((fresh & (1u << t)) && st->tenants[t].vtime < a->vclock)
            st->tenants[t].vtime = a->vclock;
    a->seen_demand = demand;
}

void fx_arb_decide(struct fx_gpu_state *st, const struct fx_arb_activity *act, uint64_t now,
                   int agent)
{
    struct fx_arbiter *a = &st->arb;

    /* Who has work now; a tenant that went idle gives up its claim. One of
     * higher priority than another that claims the GPU gives it up sooner:
     * it gets the GPU back at once when its work returns. */
    uint32_t demand = LOAD(&a->demand), inflight_of_holder = 0;
    uint64_t drain_max = agent ? FX_ARB_AGENT_DRAIN_MAX_NS : FX_ARB_DRAIN_MAX_NS;
    uint32_t infl[FX_MAX_TENANTS] = {0};
    uint32_t hv = LOAD(&a->holder);
    if (hv > FX_MAX_TENANTS) {
        STORE(&a->holder, 0u); /* not a tenant: written by someone else */
        hv = 0;
    }
    int h = (int)hv - 1;
    int lowest = 3;
    for (int t = 0; t < FX_MAX_TENANTS; t++)
        if (((demand >> t) & 1) && st->tenants[t].in_use && prio_of(&st->tenants[t]) < lowest)
            lowest = prio_of(&st->tenants[t]);
    for (int t = 0; t < FX_MAX_TENANTS; t++) {
        uint32_t bit = 1u << t;
        uint32_t in = act[t].inflight;
        uint64_t idle_ns =
            prio_of(&st->tenants[t]) > lowest ? FX_ARB_PREEMPT_IDLE_NS : FX_ARB_IDLE_NS;
        int busy = st->tenants[t].in_use && tenant_busy(&act[t], now, idle_ns);
        if (busy)
            STORE(&a->prio_seen_ns[prio_of(&st->tenants[t])], now);
        infl[t] = in;
        if (t == h)
            inflight_of_holder = in;
        if (!busy && (demand & bit)) {
            __atomic_fetch_and(&a->demand, ~bit, __ATOMIC_SEQ_CST);
            demand &= ~bit;
        }
        refill(&st->tenants[t], now);
    }
    level(st, demand);

    /* Contention begins while work launched on the fast path (by a tenant
     * that was alone, or by several that started at once) is still queued:
     * that work runs first, and nobody gets a slice until it has drained,
     * so no tenant's slice is charged for another's backlog. Fast-path work
     * is not charged, here as before. Bounded like any drain. */
    /* The highest priority with work: it waits for no lower one's work. */
    int top = -1;
    for (int t = 0; t < FX_MAX_TENANTS; t++)
        if (((demand >> t) & 1) && prio_of(&st->tenants[t]) > top)
            top = prio_of(&st->tenants[t]);
    if (h < 0 && (demand & (demand - 1))) {
        int queued = 0;
        /* Under the agent the counts that hold the settle are a tenant's
         * word: a tenant that claimed work in flight at every start of
         * contention would stall the others, uncharged, each time. So there
         * the tenants whose work is still queued share the settle's time
         * (since the previous round, kept in slice_start_ns, unused while
         * nobody holds the GPU) as GPU time, their queues running side by
         * side. */
        uint64_t prev = a->settle_since_ns ? LOAD(&a->slice_start_ns) : now;
        uint32_t draining = 0;
        for (int t = 0; t < FX_MAX_TENANTS; t++)
            if ((demand >> t) & 1 && infl[t] && prio_of(&st->tenants[t]) >= top) {
                queued++;
                draining |= 1u << t;
            }
        for (int t = 0; t < FX_MAX_TENANTS && agent && now > prev; t++) {
            uint64_t from = prev > act[t].since_ns ? prev : act[t].since_ns;
            if (((draining >> t) & 1) && now > from)
                charge(&st->tenants[t], (now - from) / (uint64_t)queued);
        }
        if (queued) {
            if (!a->settle_since_ns)
                a->settle_since_ns = now;
            if (agent)
                STORE(&a->slice_start_ns, now);
            if (now - a->settle_since_ns < drain_max)
                return;
        }
        a->settle_since_ns = 0;
    } else {
        a->settle_since_ns = 0; /* a settle cut short must not age the next */
    }

    if (h >= 0) {
        struct fx_tenant_rec *ht = &st->tenants[h];
        int holder_busy = (demand >> h) & 1;
        uint64_t end_ns = LOAD(&a->slice_end_ns);
        /* A tenant of higher priority with work cuts the slice short. */
        for (int t = 0; t < FX_MAX_TENANTS && holder_busy; t++)
            if (t != h && ((demand >> t) & 1) && st->tenants[t].priority > ht->priority &&
                end_ns > now)
                end_ns = now;
        if (holder_busy && now < end_ns)
            return; /* its slice runs */
        /* Close the slice before looking at who is still launching, so a
         * launcher that has not seen the close is seen here. */
        STORE(&a->slice_end_ns, end_ns < now ? end_ns : now);
        /* Its work drains first (the GPU is still its), unless a tenant of
         * higher priority takes over: that one does not wait for it, and
         * what is left of it (leashed short) is not charged. */
        if (LOAD(&a->slice_started) && now - LOAD(&a->slice_end_ns) < drain_max &&
            top <= prio_of(ht) && (inflight_of_holder || act[h].launching))
            return;
        if (LOAD(&a->slice_started)) {
            uint64_t used_until = act[h].used_ns < now ? act[h].used_ns : now;
            uint64_t start = LOAD(&a->slice_start_ns);
            /* No slice lasts longer than its length and a full drain; more
             * would be a stale record, not GPU time. */
            uint64_t most = LOAD(&a->slice_len_ns) + FX_ARB_SLICE_NS + FX_ARB_DRAIN_MAX_NS;
            if (used_until > start) {
                uint64_t ns = used_until - start < most ? used_until - start : most;
                charge(ht, ns - (act[h].shared_ns < ns ? act[h].shared_ns : ns));
            }
        } else if (holder_busy) {
            /* On the shared state (under the agent the clock starts at the
             * grant), granted and never used while it still claimed work (a
             * stopped process): the slice was its, and is charged, so it
             * cannot be picked again and again; but only for as long as it
             * held it. A slice cut short by a tenant of higher priority
             * that is then not picked (its cap spent) is granted again at
             * once, every round: a whole slice each time charged a holder
             * 10 ms per 200 us round (fuzz_arb). */
            uint64_t start = LOAD(&a->slice_start_ns), len = LOAD(&a->slice_len_ns);
            charge(ht, now < start ? len : now - start < len ? now - start : len);
        }
    }

    int n = pick(st, demand);
    int alone = n >= 0 && demand == (1u << n) && !capped(&st->tenants[n]);
    if (n < 0 || alone) {
        /* Nobody, or one uncapped tenant alone: no slices; it launches on
         * the fast path until someone else shows up. */
        STORE(&a->holder, 0u);
    } else {
        uint64_t len = FX_ARB_SLICE_NS;
        struct fx_tenant_rec *nt = &st->tenants[n];
        if (capped(nt) && (uint64_t)LOAD(&nt->budget_ns) < len)
            len = (uint64_t)LOAD(&nt->budget_ns);
        /* On the shared state the slice's clock starts when the holder
         * first launches (fx_arb_acquire): the time its threads take to
         * wake up is not its GPU time, and it gets one slice of grace to do
         * so. Under the agent a launch is the tenant's word, and a clock
         * started by it let a holder that launched without saying so use
         * the GPU uncharged until the clock started on its own: the clock
         * starts at the grant, the GPU being held for the holder from then
         * on, and every holder pays its own wake-up. */
        STORE(&a->slice_len_ns, len);
        STORE(&a->slice_started, agent ? 1u : 0u);
        STORE(&a->slice_start_ns, now);
        STORE(&a->slice_end_ns, now + len + (agent ? 0 : FX_ARB_SLICE_NS));
        STORE(&a->holder, (uint32_t)n + 1);
    }
    if ((int)LOAD(&a->holder) - 1 != h || n >= 0) {
        ADD(&a->seq, 1);
        futex_wake_all(&a->seq);
    }
}

void fx_arb_step_locked(struct fx_gpu *g, uint64_t now)
{
    struct fx_gpu_state *st = g->st;
    struct fx_arb_activity act[FX_MAX_TENANTS];
    memset(act, 0, sizeof(act));
    for (int i = 0; i < FX_MAX_PROCS; i++) {
        struct fx_proc_rec *p = &st->procs[i];
        int t = p->tenant;
        if (p->in_use && t >= 0 && t < FX_MAX_TENANTS && fx_gpu_slot_alive(g, i))
            fx_arb_account(&act[t], p, now);
    }
    fx_arb_decide(st, act, now, 0);
}

/* How long a waiter of tenant t may sleep before something could change
 * for it: a capped tenant out of budget waits for the refill. */
static uint64_t wait_for(const struct fx_gpu_state *st, int t)
{
    const struct fx_tenant_rec *tr = &st->tenants[t];
    uint64_t w = POLL_NS;
    int64_t b = LOAD(&tr->budget_ns);
    if (capped(tr) && b < (int64_t)FX_ARB_CAP_QUANTUM_NS) {
        uint64_t refill_ns = (uint64_t)((int64_t)FX_ARB_CAP_QUANTUM_NS - b) * 100 / cap_of(tr) + 1000;
        /* Stay below the staleness limit: a waiter that sleeps longer
         * would look like a stopped process. */
        if (refill_ns > w)
            w = refill_ns < STALE_NS / 2 ? refill_ns : STALE_NS / 2;
    }
    return w;
}

/* When a wait for the GPU begun at t0 ends, granted or not: on the main
 * thread FX_ARB_MAIN_WAIT_MAX_NS later, elsewhere never. */
static uint64_t wait_deadline(uint64_t t0)
{
    return syscall(SYS_gettid) == getpid() ? t0 + FX_ARB_MAIN_WAIT_MAX_NS : UINT64_MAX;
}

/* Whether a wait for the GPU should end without it: the process is
 * exiting, the wait reached its deadline, or a signal interrupted it
 * (`signalled`, 0 if none did) long enough ago. */
static int stop_waiting(uint64_t deadline, uint64_t signalled)
{
    if (fx_process_exiting())
        return 1;
    uint64_t now = fx_mono_ns();
    return now >= deadline || (signalled && now - signalled >= FX_ARB_SIGNAL_GRACE_NS);
}

/* Ends a wait without the GPU: the launch goes ahead outside any slice,
 * announced like a granted one (fx_arb_launch_done ends it). */
static uint64_t give_up(struct fx_proc_rec *p, uint64_t t0)
{
    ADD(&p->launching, 1);
    SUB(&p->waiting, 1);
    return fx_mono_ns() - t0;
}

/* Under the node agent: the same wait, but the decisions are the agent's.
 * This process publishes that it waits (its request record), and sleeps on
 * the page's futex word, which the agent bumps at every hand-over (a futex
 * wait works on a read-only shared mapping); it re-reads at least every
 * POLL_NS. */
/* A tenant the agent has not added this long after joining (its slice is
 * not one the agent knows, or the page is full) is not arbitrated: it must
 * not wait for good for a record that does not come. */
#define UNKNOWN_GRACE_NS (4 * FX_ARB_AGENT_SCAN_NS)

static uint64_t acquire_agent(struct fx_gpu *g)
{
    struct fx_gpu_state *st = g->st;
    struct fx_arbiter *a = &st->arb;
    struct fx_proc_rec *p = &g->procs[g->slot];
    int t = fx_gpu_agent_index(g);
    ADD(&p->launching, 1);
    uint64_t t0 = fx_mono_ns();
    if (t >= 0 && LOAD(&a->holder) == (uint32_t)t + 1 && t0 < LOAD(&a->slice_end_ns))
        return 0;
    SUB(&p->launching, 1);
    STORE(&p->poll_ns, t0);
    ADD(&p->waiting, 1);
    uint64_t deadline = wait_deadline(t0), signalled = 0;
    for (;;) {
        if (stop_waiting(deadline, signalled))
            return give_up(p, t0);
        uint32_t seen = LOAD(&a->seq);
        uint64_t now = fx_mono_ns();
        STORE(&p->poll_ns, now);
        /* Again at each look: the record may change while this waits. */
        t = fx_gpu_agent_index(g);
        uint32_t mine = t >= 0 ? (uint32_t)t + 1 : 0, holder = LOAD(&a->holder);
        ADD(&p->launching, 1);
        int granted = (mine && holder == mine && now < LOAD(&a->slice_end_ns)) ||
                      (holder == 0 && (LOAD(&a->demand) & ~(mine ? 1u << t : 0u)) == 0 &&
                       (t < 0 || !capped(&st->tenants[t]))) ||
                      (t < 0 && now - g->joined_ns > UNKNOWN_GRACE_NS);
        if (granted) {
            SUB(&p->waiting, 1);
            /* Throttled time, as the shared state counts it; here the agent
             * adds it to the page. */
            ADD(&p->waited_us, (uint32_t)((now - t0) / 1000));
            return now - t0;
        }
        SUB(&p->launching, 1);
        uint64_t sleep_ns = t >= 0 ? wait_for(st, t) : POLL_NS;
        if (futex_wait(&a->seq, seen, sleep_ns) && !signalled)
            signalled = fx_mono_ns();
    }
}

uint64_t fx_arb_acquire(struct fx_gpu *g)
{
    if (g->agent)
        return acquire_agent(g);
    struct fx_gpu_state *st = g->st;
    struct fx_arbiter *a = &st->arb;
    struct fx_proc_rec *p = &g->procs[g->slot];
    int me = fx_gpu_tenant(g);
    uint32_t mine = (uint32_t)me + 1;
    /* Announced as launching before the check: a hand-over decided between
     * the check and the launch then waits for this launch. */
    ADD(&p->launching, 1);
    uint64_t t0 = fx_mono_ns();
    if (LOAD(&a->holder) == mine && LOAD(&a->slice_started) && t0 < LOAD(&a->slice_end_ns))
        return 0;
    SUB(&p->launching, 1);
    STORE(&p->poll_ns, t0);
    ADD(&p->waiting, 1);
    __atomic_fetch_or(&a->demand, 1u << me, __ATOMIC_SEQ_CST);
    uint64_t deadline = wait_deadline(t0), signalled = 0;
    for (;;) {
        if (stop_waiting(deadline, signalled) || fx_gpu_lock(g) != 0)
            return give_up(p, t0);
        /* The clock is read under the lock, so decisions never go back in
         * time against one another. */
        uint64_t now = fx_mono_ns();
        STORE(&p->poll_ns, now);
        /* Claimed again at every check-in: a decision by another process
         * drops the claim of a waiter that has not checked in for STALE_NS,
         * which a descheduled (not stopped) process on a loaded machine also
         * looks like; a claim made only once was then never made again, and
         * the tenant waited for as long as the others had work. */
        __atomic_fetch_or(&a->demand, 1u << me, __ATOMIC_SEQ_CST);
        fx_arb_step_locked(g, now);
        if (LOAD(&a->holder) == mine && !LOAD(&a->slice_started)) {
            STORE(&a->slice_start_ns, now);
            STORE(&a->slice_end_ns, now + LOAD(&a->slice_len_ns));
            STORE(&a->slice_started, 1u);
        }
        uint32_t holder = LOAD(&a->holder);
        uint32_t seen = LOAD(&a->seq);
        /* Granted: this tenant holds a running slice, or nobody holds the
         * GPU and this tenant is alone and uncapped (the fast path). */
        ADD(&p->launching, 1);
        int granted = (holder == mine && now < LOAD(&a->slice_end_ns)) ||
                      (holder == 0 && (LOAD(&a->demand) & ~(1u << me)) == 0 &&
                       !capped(&st->tenants[me]));
        if (granted) {
            SUB(&p->waiting, 1);
            uint64_t waited = now - t0;
            ADD(&st->tenants[me].throttled_ns, waited);
            fx_gpu_unlock(g);
            return waited;
        }
        SUB(&p->launching, 1);
        uint64_t sleep_ns = wait_for(st, me);
        fx_gpu_unlock(g);
        if (futex_wait(&a->seq, seen, sleep_ns) && !signalled)
            signalled = fx_mono_ns();
    }
}

int fx_arb_set_inflight(struct fx_gpu *g, uint32_t inflight)
{
    struct fx_gpu_state *st = g->st;
    struct fx_proc_rec *p = &g->procs[g->slot];
    uint32_t before = LOAD(&p->inflight);
    if (inflight == before)
        return 0;
    if (inflight == 0)
        STORE(&p->drained_ns, fx_mono_ns());
    STORE(&p->inflight, inflight);
    /* This process drained: if its tenant's slice is over, the hand-over
     * may be due now rather than at the next waiter's poll (under the node
     * agent, at the agent's next look). */
    return !g->agent && inflight == 0 &&
           LOAD(&st->arb.holder) == (uint32_t)fx_gpu_tenant(g) + 1 &&
           fx_mono_ns() >= LOAD(&st->arb.slice_end_ns);
}

void fx_arb_hand_over(struct fx_gpu *g)
{
    if (g->agent || fx_gpu_lock(g) != 0)
        return;
    fx_arb_step_locked(g, fx_mono_ns());
    fx_gpu_unlock(g);
}
