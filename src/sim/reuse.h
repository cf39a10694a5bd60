/* SPDX-License-Identifier: Apache-2.0 */
/* The reuse replay (docs/REUSE.md): owners that reserve GPUs but use little
 * of them, a standing backlog of batch jobs, and three ways to run them:
 *
 *   whole   whole-GPU scheduling (engine policy "whole"), no reuse;
 *   flexpu  GPU shares (engine policy "flexpu"), no reuse;
 *   reuse   flexpu, and single-GPU batch jobs that fit nowhere run as `low`
 *           borrowers on compute that is allocated but measured idle.
 *
 * Owners are the trace's LS pods with GPUs, taken in creation order
 * (cycled): whenever the GPU compute the owners reserve (with the owners
 * still waiting for room) is below owner_share of the cluster, the next one
 * arrives; it holds its allocation for its trace run time and follows a
 * duty-cycle and memory series drawn (seeded) from the GenAI data
 * (sim/genai.h), from a random offset, one sample per step; an owner's draws
 * come from a generator keyed by the seed and its ordinal, so every policy
 * sees the same owners whatever it places (common random numbers). Owners are
 * `high` tenants, ordinary batch `normal`, borrowers `low` (the runtime's
 * priorities, docs/RUNTIME.md). Batch jobs are the trace's BE pods with
 * GPUs, cycled in creation order: the backlog is refilled to `backlog` jobs
 * whenever one leaves it. A batch job must do its trace run time times its
 * GPU share of work, at the GPU time the runtime's arbiter gives it
 * (batch_gpu): by default, as flexpu runs a pod that names no
 * flexpu.io/gpu-cores-limit, all the time its GPU's owners leave, divided
 * among the ordinary jobs there in proportion to their shares, then among
 * the borrowers (batch jobs are taken to be GPU-bound); or at most its
 * share (FX_BATCH_GPU_SHARE: a cap equal to its share).
 *
 * GPU memory: an ordinary allocation reserves its share of the GPU's memory
 * (flexpu's default for a slice that names none, docs/KUBERNETES.md); an
 * owner that names its memory (owner_mem FX_OWNER_MEM_PEAK) reserves the
 * peak of its series instead, never more than its share. A borrower needs
 * batch_mem of its share's memory and takes it only from memory no
 * allocation reserved (borrow_mem unreserved, the product), so it is evicted
 * before any allocation could be refused; or (borrow_mem idle, a design not
 * built) also from memory owners reserved but have not used in their last
 * predict_samples samples, evicted when an owner's use rises into it, the
 * owner's allocation delayed by evict_latency_s and never refused.
 *
 * The engine holds owners, ordinary batch jobs, and the CPU and memory of
 * borrowers (CPU-only allocations on their node); the borrowers' GPU compute
 * and memory are this file's model. An owner that fits nowhere evicts batch
 * jobs (ordinary or borrowers) through the engine's victim search. */
#ifndef FX_SIM_REUSE_H
#define FX_SIM_REUSE_H

#include <stdint.h>
#include <stdio.h>

#include "sim/trace.h"
#include "scheduler/borrow.h"
#include "sim/genai.h"

enum fx_reuse_mode { FX_REUSE_WHOLE, FX_REUSE_FLEXPU, FX_REUSE_BORROW, FX_REUSE_MODES_ };

#define FX_REUSE_POINTS 200
/* Owners whose draws a result keeps (the first admitted), so that runs can
 * be checked to have seen the same owners. */
#define FX_REUSE_OWNERS_KEPT 32

/* One owner as admitted: its trace pod, and the GenAI series and offset it
 * drew. */
struct fx_reuse_owner {
    int trace, series, offset;
};

/* What an owner's slice reserves of its GPU's memory. */
enum fx_owner_mem {
    FX_OWNER_MEM_PEAK,  /* the peak of its series (a serving pod that names its memory) */
    FX_OWNER_MEM_SHARE, /* its compute share of the memory (flexpu's default) */
};

/* What memory a borrower may take: enum fx_borrow_mem of the scheduler
 * (scheduler/borrow.h, --borrow-mem; docs/REUSE.md, "Borrowing memory
 * owners reserved"): unreserved, or idle, where a light job also takes
 * memory owners reserved but do not use and is evicted before an owner's
 * allocation could fail, which waits evict_latency_s for it. */

/* The GPU time a batch job gets (docs/REUSE.md, "The model"). */
enum fx_batch_gpu {
    FX_BATCH_GPU_IDLE,  /* uncapped (flexpu's default, gpu-cores-limit 100): the time the
                         * higher priorities leave, shared among equals by share weight,
                         * as the runtime's arbiter does (runtime/arbiter.c) */
    FX_BATCH_GPU_SHARE, /* at most its share: a pod whose gpu-cores-limit is its gpu-cores */
};

struct fx_reuse_config {
    double owner_share;  /* owners' reserved GPU compute, a share of the cluster's */
    int backlog;         /* batch jobs kept waiting */
    double warmup_s;     /* simulated before the window */
    double window_s;     /* the measured window, after the warm-up */
    int trace_part;      /* LS and BE pods used: 0 the first half by creation, 1 the
                          * second, -1 all */
    uint64_t seed;       /* the engine's ties; and each owner's series and offset,
                          * from a generator of its own seeded from this and the
                          * owner's ordinal, so every policy sees the same owners */
    enum fx_owner_mem owner_mem;
    double request_ms;   /* an owner's request (its GPU burst) whose slowdown is modelled */
    double handover_ms;  /* what a `high` tenant waits, once per burst, beside lower ones */
    double batch_mem;    /* a batch job's GPU memory, a fraction of its share's (1: its
                          * share of the GPU's memory, flexpu's default) */
    double borrow_fit;   /* a borrower goes where the predicted idle compute (less the
                          * headroom) is at least this much of its share (1: all of it,
                          * as the scheduler asks); it runs on what it gets */
    int predict_samples; /* predictor: the max of the owner's last N samples */
    int reclaim_samples; /* reclaim after N samples in a row of borrowers starved */
    int reclaim_gap;     /* at most one reclaim per GPU every N samples */
    int reclaim_per_step; /* and at most N in the cluster per sample */
    enum fx_borrow_mem borrow_mem;
    enum fx_batch_gpu batch_gpu;
    double evict_latency_s; /* idle: what an owner's allocation waits while the borrowers
                             * in its way are killed and their memory freed (an
                             * assumption, to be measured on a GPU) */
};

/* The defaults of docs/REUSE.md. */
void fx_reuse_defaults(struct fx_reuse_config *c);

/* The upper bound on busy share (sim/reuse_bound.h; docs/REUSE.md, "An
 * upper bound"), with all the constraints and with one of them dropped, to
 * show which binds. */
enum fx_reuse_bound {
    FX_BOUND_ALL,       /* every constraint */
    FX_BOUND_NO_CPU,    /* the nodes' CPU unlimited */
    FX_BOUND_NO_HOSTMEM, /* the nodes' host memory unlimited */
    FX_BOUND_NO_GPUMEM, /* GPU memory unlimited (every job fits every GPU) */
    FX_REUSE_BOUNDS,
};

struct fx_reuse_result {
    enum fx_reuse_mode mode;
    double window_s, seconds;
    double busy_share;     /* useful GPU time / capacity over the window */
    double owner_share;    /* of which owners' use */
    double batch_share;    /* of which batch work kept (ordinary and borrowed) */
    double borrowed_share; /* of which batch work done as borrowers */
    double lost_share;     /* batch work thrown away by evictions, not in busy_share */
    double reserved_share; /* owners' allocated GPU compute / capacity (time mean) */
    double alloc_share;    /* all allocated GPU compute / capacity (time mean) */
    int owners_started, batch_done, borrows; /* borrows and evictions: in the window */
    int evict_memory;  /* borrowers evicted before an owner's allocation could fail */
    int evict_reclaim; /* borrowers reclaimed: owner's use up and staying up */
    int evict_owner;   /* batch jobs (ordinary or borrowers) evicted for an owner's placement */
    double evictions_per_hour;
    double jct_p50, jct_p99; /* batch: entering the backlog to done, seconds */
    double run_p50, run_p99; /* batch: first start to done (restarts and slow progress in) */
    double owner_p99;        /* owners' modelled p99 slowdown per request */
    double owner_delayed;    /* share of owners' requests that met another tenant */
    int64_t refused;         /* owner allocations refused because of borrowers (must be 0) */
    int owner_delays;        /* idle: owner allocations (a start, or memory rising) that
                              * waited for borrowers to be evicted, in the window */
    double owner_delay_p99;  /* their delay, seconds */
    double owner_stalled;    /* share of owners' requests that waited for an eviction */
    int backlog_min;         /* fewest batch jobs waiting over the window */
    int owners_kept;         /* the first owners admitted (warm-up included), at most
                              * FX_REUSE_OWNERS_KEPT, in order */
    struct fx_reuse_owner owner[FX_REUSE_OWNERS_KEPT];
    /* The most busy share any placement of batch jobs could reach beside
     * this run's owners (time mean over the window, as busy_share), under
     * each fx_reuse_bound: bound_share of any jobs of the BE pods' shapes,
     * as many as wanted; hand_share of the jobs present at each moment
     * (waiting or running) in this run. bound_breaches: the events after
     * which this run's own GPU use exceeded the bound of the jobs present,
     * and the steps where the witness below did (a bug if ever more than
     * 0). */
    double bound_share[FX_REUSE_BOUNDS], hand_share[FX_REUSE_BOUNDS];
    int bound_breaches;
    /* From below: the busy share of one assignment of the jobs present
     * that fits the bound's constraints, found greedily at each step (mean
     * over the window's steps). */
    double witness_share;
    int npoints;
    double t[FX_REUSE_POINTS], used[FX_REUSE_POINTS]; /* GPU time used / capacity */
};

const char *fx_reuse_mode_name(enum fx_reuse_mode m);

/* Runs one mode. t must have LS and BE pods with GPUs and creation times;
 * u at least one series. FLEXPU_EINVAL names the field; the engine's errors
 * pass through. */
int fx_reuse_run(const struct fx_trace *t, const struct fx_genai *u, enum fx_reuse_mode mode,
                 const struct fx_reuse_config *c, struct fx_reuse_result *out,
                 struct flexpu_error *err);

/* The table (markdown), one row per result, and the targets of issue 16
 * checked against the whole and flexpu rows when present. */
void fx_reuse_report(FILE *f, const struct fx_reuse_result *r, int n,
                     const struct fx_reuse_config *c);
/* GPU time used over time, one line per result. */
int fx_reuse_plot(const char *path, const struct fx_reuse_result *r, int n,
                  struct flexpu_error *err);



/* flexpu-sim --mode reuse: its own options (--help lists them), the three
 * modes in one run, the table on stdout, reuse.svg and reuse.md in --out.
 * trace_dir holds the Alibaba trace; the GenAI data is its sibling
 * alibaba-genai-v2026 unless --genai says. Returns the exit status. */
int fx_reuse_main(int argc, char **argv, const char *trace_dir);
#endif
