/* SPDX-License-Identifier: Apache-2.0 */
/* Borrowing idle GPUs (issue 16; docs/KUBERNETES.md, "Borrowing idle
 * GPUs"): the rules that say whether a GPU's owners leave room for a
 * borrower, and when their use has risen for long enough that a borrower
 * must go. Per GPU, from the usage feed (flexpu.io/gpu-usage) as the
 * scheduler reads it; pure (time is an argument), so the model and the
 * tests drive it alike.
 *
 * Units: thousandths of the GPU's time (1000 = the whole GPU), as the feed
 * publishes them. "Owners" are the slices on the GPU that are not
 * borrowers: what the owners use is the part of the GPU's measure that
 * the borrowers' own slices do not account for. */
#ifndef FX_SCHED_BORROW_H
#define FX_SCHED_BORROW_H

#include <stdbool.h>
#include <stdint.h>

#include "kube/borrow_rule.h" /* fx_borrow_light, fx_borrow_mem_room */

/* A borrower is admitted while the owners' predicted use, the borrowers
 * already there and its own share stay at or below 1000 minus this. */
#define FX_BORROW_HEADROOM 200
/* Reclaim: the owners' use plus the borrowers' shares above 1000 on two
 * readings of the feed at least this far apart (the agent writes at most
 * every 10 s, so two writes in a row), and nothing in between below. */
#define FX_RECLAIM_CONFIRM_S 10
/* At most one borrower reclaimed per GPU per this many seconds (one feed
 * interval: the next reading shows what the last reclaim changed)... */
#define FX_RECLAIM_GPU_GAP_S 10
/* ...and at most this many in the whole cluster per second. */
#define FX_RECLAIM_PER_S 5
/* A reclaim the API server refused (a PodDisruptionBudget refused the
 * eviction and the delete failed too, or the server is failing) is tried
 * again no sooner than FX_RECLAIM_GPU_GAP_S later for that pod, then twice
 * that, up to this; a pod backing off spends none of the cluster's
 * reclaims. */
#define FX_RECLAIM_BACKOFF_MAX_S 320
/* No borrower is admitted on a GPU for this long after one was reclaimed
 * there: its owners were busy a moment ago. */
#define FX_BORROW_COOLDOWN_S 300
/* Waiting opportunistic pods are tried again at most this often when new
 * readings come (readings come from every node all the time). */
#define FX_BORROW_RETRY_S 10

/* What the scheduler keeps per GPU for borrowing: 200 bytes. */
struct fx_gpu_watch {
    int16_t owner_busy; /* the last reading's owners' busy; -1: none */
    int16_t owner_mean; /* and their mean */
    int64_t last_ts;    /* the agent's timestamp of that reading; 0: none */
    int64_t over_ts;    /* the first reading of the current run above capacity; 0: none */
    int64_t reclaim_s;  /* the scheduler's clock at the last reclaim here; 0: none */
    /* The daily pattern: per hour of the day (UTC), the highest owners'
     * mean read in it on day hour_day[h] (days since the epoch), and the
     * highest of the day before (prev_max, -1: not read that day). */
    int16_t hour_max[24];
    int16_t prev_max[24];
    int32_t hour_day[24];
};

void fx_watch_init(struct fx_gpu_watch *w);

/* A new reading of the feed at the agent's ts: the owners' busy and mean
 * (-1: unknown) and the shares (thousandths) of the borrowers there that
 * are not leaving already. A reading with the timestamp of the last one is
 * not new and changes nothing; one older than the last starts the run
 * above capacity again. Updates the run above capacity and the daily
 * pattern. (Readings from the future are the caller's to drop.) */
void fx_watch_reading(struct fx_gpu_watch *w, int64_t ts, int owner_busy, int owner_mean,
                      int borrowed_milli);

/* The owners' predicted use at now_s (unix seconds): the higher of their
 * busy now (quick to rise, slow to fall) and the highest mean they had
 * yesterday in this hour and the next. -1 when unknown. */
int fx_watch_predict(const struct fx_gpu_watch *w, int64_t now_s);

/* Whether a borrower of want_milli may join the borrowers' borrowed_milli
 * at now_s: a known prediction, no reclaim in the last
 * FX_BORROW_COOLDOWN_S, and room below the headroom. (Freshness of the
 * reading is the caller's: fx_model_gpu_use.) */
bool fx_watch_admits(const struct fx_gpu_watch *w, int64_t now_s, int borrowed_milli,
                     int want_milli);

/* Whether the owners' rise is confirmed (FX_RECLAIM_CONFIRM_S) and this
 * GPU's reclaim gap has passed at now_s: a borrower there should go. */
bool fx_watch_reclaim_due(const struct fx_gpu_watch *w, int64_t now_s);

/* ---- Borrowing memory owners reserved but do not use (--borrow-mem idle;
 * docs/KUBERNETES.md, "Borrowing reserved memory") ----
 *
 * By default (unreserved) a borrower takes only memory no slice reserved.
 * With idle, a *light* borrower may also take memory the owners reserved
 * but do not use now (the feed's measured memory, with headroom): if an
 * owner's allocation then needs it, the runtime waits while the node agent
 * kills the borrower (runtime/oom_wait.h, node/reclaim_mem.h), and the
 * scheduler evicts it once the owners' measured use leaves it no room.
 * "Light" is the simulation's (docs/REUSE.md: the only jobs for which
 * borrowing reserved memory paid): its memory quota is at most a quarter
 * of its share's default memory, and it borrows where half its share is
 * predicted idle. */
enum fx_borrow_mem {
    FX_BORROW_MEM_UNRESERVED = 0,
    FX_BORROW_MEM_IDLE,
};
/* "unreserved", "idle" -> 0 and *out, or -1. */
int fx_borrow_mem_parse(const char *s, enum fx_borrow_mem *out);
const char *fx_borrow_mem_name(enum fx_borrow_mem m);

/* The thousandths of the GPU a borrower of `cores` needs predicted idle:
 * its share, or half of it when light. */
int fx_borrow_fit_milli(bool light, int cores);

#endif
