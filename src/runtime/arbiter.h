/* SPDX-License-Identifier: Apache-2.0 */
/* Compute sharing between the tenants of one GPU: GPU-time slices handed
 * from tenant to tenant through the shared state (docs/RUNTIME.md).
 *
 * Only the tenant holding the slice may launch. At the end of its slice its
 * launches wait, its in-flight work (bounded, see hooks_launch.c) drains,
 * and only then does the slice pass on, so the GPU time between two
 * hand-overs is the holder's alone: accuracy comes from construction, not
 * from sampling utilization. */
#ifndef FX_RUNTIME_ARBITER_H
#define FX_RUNTIME_ARBITER_H

#include <stdint.h>

#include "runtime/state.h"
#include "util/clock.h"

/* Tunables, in nanoseconds. */
#define FX_ARB_SLICE_NS (10 * 1000 * 1000ull)   /* one slice */
#define FX_ARB_IDLE_NS (2 * 1000 * 1000ull)     /* no launch for this long = idle */
#define FX_ARB_DRAIN_MAX_NS (200 * 1000 * 1000ull) /* a holder that cannot drain */
/* Under the node agent a tenant's work in flight is its own word, which the
 * agent cannot check: a holder's drain at the end of its slice, and a
 * settle at the start of contention, wait at most this long for it (charged
 * to the tenants whose claims hold it), so a tenant claiming endless work
 * holds the GPU at most two slices a turn and its neighbours wait for it
 * about what they wait for an honest holder (a slice and its drain: 4
 * marked launches per process). What is still claimed after that is
 * charged to its tenant while it is (shared with the holder's work beside
 * it, which is charged only its part then; FX_ARB_DRAIN_MAX_NS at most:
 * arbagent.c), so an honest queue that
 * needs longer (several processes, long kernels, a fast-path backlog),
 * running on beside the next holder, is paid for by its own tenant. */
#define FX_ARB_AGENT_DRAIN_MAX_NS FX_ARB_SLICE_NS
#define FX_ARB_BURST_NS (20 * 1000 * 1000ull)   /* most a capped tenant can save up */
/* A wait for the GPU during which a signal handler ran on the waiting thread
 * lasts at most this much longer: the application may need that thread back
 * to act on the signal (Python runs its signal handlers on the main thread,
 * between two calls). Longer than a slice, so that the timer signals of
 * profilers barely change who gets the GPU. */
#define FX_ARB_SIGNAL_GRACE_NS (50 * 1000 * 1000ull)
/* The most the main thread waits for the GPU per launch. A handler that only
 * sets a flag for the main thread to act on (Python's, for SIGINT and any
 * handler set from Python) may run while that thread is between two waits,
 * and then no wait is interrupted: this bound is what guarantees that the
 * main thread gets back to the flag. It only matters to a tenant starved
 * for longer: a lower priority beside one that keeps the GPU busy (a 1% cap
 * waits at most one second for its next slice), which then runs one launch
 * every 2 s outside its slice. */
#define FX_ARB_MAIN_WAIT_MAX_NS (2000 * 1000 * 1000ull)
/* Priorities preempt. A tenant of higher priority than the holder gets the
 * GPU as soon as it has work, without waiting for the holder's queued work
 * to drain; so that what it finds queued is short, a tenant with a higher
 * priority active within FX_ARB_LEASH_RECENT_NS is leashed: its queued GPU
 * work is kept to about FX_ARB_LEASH_NS (hooks_launch.c; at least one
 * kernel). A holder of higher priority than a tenant that waits gives the
 * GPU back after FX_ARB_PREEMPT_IDLE_NS without work instead of
 * FX_ARB_IDLE_NS. docs/RUNTIME.md has the trade-off, measured. */
#define FX_ARB_LEASH_RECENT_NS (2000 * 1000 * 1000ull)
#define FX_ARB_LEASH_NS (250 * 1000ull)
#define FX_ARB_PREEMPT_IDLE_NS (200 * 1000ull)
/* A capped tenant waits until it has saved a whole slice: short slices
 * would each pay the hand-over's fixed cost, which the cap would then
 * count as GPU time. */
#define FX_ARB_CAP_QUANTUM_NS FX_ARB_SLICE_NS

/* 1 when this tenant may launch without arbitration: it is not capped, no
 * other tenant has launched recently, and it is not leashed. Lock-free;
 * called per launch. */
int fx_arb_fast_path(struct fx_gpu *g, int capped);

/* 1 when another tenant has work and every one that has is of lower
 * priority than this one. Lock-free. */
int fx_arb_outranks_others(struct fx_gpu *g);

/* 1 when a tenant of higher priority than this one had work within
 * FX_ARB_LEASH_RECENT_NS of `now`. Lock-free. */
int fx_arb_leashed(struct fx_gpu *g, uint64_t now);

/* Blocks until this process's tenant holds the GPU (or `now` shows its
 * slice is still running). Returns the nanoseconds it waited. The launch
 * counts as in flight until fx_arb_launch_done. The wait ends without the
 * GPU once the process is exiting (fx_process_exiting), within
 * FX_ARB_SIGNAL_GRACE_NS of a signal handled on the waiting thread, and
 * after FX_ARB_MAIN_WAIT_MAX_NS on the main thread: the launch then goes
 * ahead outside any slice. */
uint64_t fx_arb_acquire(struct fx_gpu *g);

/* Records a launch (for idleness). */
void fx_arb_launched(struct fx_gpu *g, uint64_t now);
/* Ends what fx_arb_acquire began: the launch is marked (or failed). */
void fx_arb_launch_done(struct fx_gpu *g);

/* Publishes how much of this process's work is in flight. Returns 1 when
 * it reached zero and the tenant's slice is over: the hand-over is due now
 * rather than at the next waiter's poll, and the caller makes it with
 * fx_arb_hand_over once it holds no lock of its own (the hand-over takes the
 * GPU state's lock, which a peer may hold). */
int fx_arb_set_inflight(struct fx_gpu *g, uint32_t inflight);
void fx_arb_hand_over(struct fx_gpu *g);

/* The process's in-flight count is being looked after (the monitor calls
 * it on every poll): without it, counts older than the staleness limit are
 * taken for a stopped process's and ignored. */
void fx_arb_heartbeat(struct fx_gpu *g, uint64_t now);

/* 1 when another tenant has claimed the GPU or somebody holds it. */
int fx_arb_contended(struct fx_gpu *g);

/* Under the GPU lock: decides whether the slice should pass on now, and to
 * whom; does it. Exposed for tests and for the waiting loops. It is
 * fx_arb_account over the live processes of the shared state, then
 * fx_arb_decide. */
void fx_arb_step_locked(struct fx_gpu *g, uint64_t now);

/* What the arbiter knows of one tenant's processes when it decides. */
struct fx_arb_activity {
    uint32_t inflight;           /* work in flight or being launched (stale counts dropped) */
    uint32_t launching;          /* of which being launched */
    uint32_t waiting;            /* 1: a live thread waits for the GPU */
    uint32_t reserved;
    uint64_t last_ns;            /* its last launch as the arbiter can tell (<= now) */
    uint64_t used_ns;            /* until when it used the GPU (now while it has work) */
    /* Under the agent, of the holder's running slice: the part of the time
     * other tenants' overruns ran beside it that is theirs (arbagent.c
     * charges it to them), left out of its charge: 0 otherwise. */
    uint64_t shared_ns;
    /* Under the agent: the earliest time this tenant's record may be
     * charged for, its creation (a record made in this round: now); 0 on
     * the shared state. A settle charges the time since the previous round,
     * and a record made meanwhile did not exist for it. */
    uint64_t since_ns;
};

/* Adds live process record `p` to its tenant's activity. p's seen_* fields
 * are the arbiter's own view of it, which this updates; everything else is
 * read as published, bounded. */
void fx_arb_account(struct fx_arb_activity *act, struct fx_proc_rec *p, uint64_t now);

/* The decision itself, on state `st` (the shared file under its lock, or
 * the node agent's page), given each tenant's activity (act[FX_MAX_TENANTS],
 * by tenant index): who holds the GPU, the slice, the charge of the slice
 * that ends (act[holder].used_ns - its start), the virtual times and cap
 * buckets; wakes the waiters when the holder changes. agent: the holder's
 * slice clock starts at the grant, and act[holder].used_ns is when the
 * agent takes the GPU back (the GPU is held for it from the grant to then,
 * whatever it launches: a tenant cannot write the agent's page, and what
 * it says of its launches is its word). */
void fx_arb_decide(struct fx_gpu_state *st, const struct fx_arb_activity *act, uint64_t now,
                   int agent);

/* Charges tenant t of `st` `ns` of GPU time, as a slice is charged (its GPU
 * time, virtual time and cap bucket); for the node agent's charge of claimed
 * work that outlasted its holder's drain (arbagent.c). */
void fx_arb_charge(struct fx_gpu_state *st, int t, uint64_t ns);

#endif
