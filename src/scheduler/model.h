/* SPDX-License-Identifier: Apache-2.0 */
/* The scheduler's picture of the cluster, built from watch events: every
 * node with its GPU inventory, every pod bound anywhere (for CPU and memory,
 * whoever scheduled it), and the queue of pods waiting for this scheduler.
 * No I/O: the daemon feeds events in and carries decisions out, and the
 * tests drive it the same way.
 *
 * A decision is "assumed" at once (accounted in the engine) so the next
 * decision sees it; the bind result confirms it or gives it back, and a bind
 * whose outcome is unknown (a timeout, a 5xx) keeps it until the server
 * says what happened: giving it back then would let two pods take one GPU
 * share when the server had applied the bind after all. After a
 * restart, pods carrying the allocation annotation are accounted exactly as
 * recorded, so nothing is ever allocated twice. */
#ifndef FX_SCHED_MODEL_H
#define FX_SCHED_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "flexpu/error.h"
#include "flexpu/queue.h"
#include "kube/kube.h"
#include "scheduler/borrow.h"
#include "scheduler/remote_topology.h"

struct fx_model;

struct fx_model *fx_model_new(const char *scheduler_name, const char *policy, uint64_t seed,
                              struct flexpu_error *err);
void fx_model_free(struct fx_model *m);

void fx_model_node_event(struct fx_model *m, enum kube_event ev, json_t *node);
void fx_model_pod_event(struct fx_model *m, enum kube_event ev, json_t *pod);

enum fx_outcome {
    FX_BIND,    /* bind the pod to `node` with `allocation` (already assumed) */
    FX_WAIT,    /* cannot be placed now (`wait` says why): tell the user `message`; retried
                 * when capacity frees or what holds it back changes */
    FX_INVALID, /* the pod asks for something malformed: tell the user `message` */
    FX_GATED,   /* the pod has spec.schedulingGates: tell the user `message` (once); it is
                 * decided when its last gate is removed */
    /* Preemption (docs/QUEUES.md, "Preemption and reclaim"): the pod is to
     * go to `node` once the pods named by the FX_EVICT attempts that follow
     * are gone; set its status.nominatedNodeName, and tell the user
     * `message` (who is evicted, and why). Its place is held meanwhile. */
    FX_NOMINATE,
    /* Evict this pod (the Eviction API: PodDisruptionBudgets decide), then
     * report with fx_model_evict_done; `message` names the preemptor and
     * the reason, for the victim's event. */
    FX_EVICT,
    /* Evict this borrower (docs/KUBERNETES.md, "Borrowing idle GPUs"): its
     * GPU's owners need it back; `message` names the node, the GPU and the
     * measured use, for its Reclaimed event. Report with
     * fx_model_evict_done. */
    FX_RECLAIM,
    /* Delete this borrower (DELETE of the pod, its grace period, its uid
     * as precondition): a PodDisruptionBudget refused the eviction of its
     * FX_RECLAIM, or its FX_EVICT for lent capacity (fx_model_evict_done's
     * FLEXPU_EBUSY), and a pod that borrows agreed to go when what it
     * borrows is needed when it opted in. `message` says so, for its
     * Reclaimed event. Report with fx_model_evict_done. */
    FX_DELETE,
    /* Clear this pod's status.nominatedNodeName: the place it was
     * nominated for was given back before its victims were gone (it was
     * edited, an eviction was refused, its pod group fell short of
     * min-members) and it is decided again; `message` says so, for the
     * log. Comes before any decision, so before a new nomination. */
    FX_UNNOMINATE,
};

/* Why an FX_WAIT pod waits, as its PodScheduled condition's reason tells
 * autoscalers (docs/KUBERNETES.md, "The pod's PodScheduled condition"):
 * FX_WAIT_ROOM is the one wait more nodes could end, the only one they
 * scale up for. Decided where the wait's cause is known. */
enum fx_wait {
    FX_WAIT_ROOM = 0,    /* no node fits it, or its group's members, now; or it waits for
                          * the victims of its preemption: Unschedulable */
    FX_WAIT_QUEUE_LIMIT, /* its queue, or an ancestor, would pass a limit: QueueLimitExceeded */
    FX_WAIT_NO_QUEUE,    /* the Queue its label names does not exist: QueueNotFound */
    FX_WAIT_POD_GROUP,   /* fewer members of its pod group exist than its minimum:
                          * PodGroupIncomplete */
    FX_WAIT_ERROR,       /* the scheduler failed (out of memory): SchedulerError */
};

struct fx_attempt {
    enum fx_outcome outcome;
    enum fx_wait wait; /* FX_WAIT: why */
    /* FX_WAIT, FX_INVALID: the lastTransitionTime of the pod's PodScheduled
     * condition as the watch last showed it False (unix seconds), kept as
     * kube-scheduler keeps it while the status stays False; 0: it was not
     * False (or unreadable), the write's own time is its transition. */
    int64_t unscheduled_since_s;
    char ns[256], name[256], uid[64];
    char node[256];
    char allocation[2048]; /* the annotation value, empty for CPU-only pods */
    char message[400];     /* FX_BIND: for the user (a capped priority, a borrow, a remote
                            * slice), or empty */
    bool borrowed;         /* FX_BIND of a borrower: message says what it borrows */
    bool remote;           /* FX_BIND of a remote slice: message says where (docs/REMOTE.md) */
    bool preempts;         /* FX_DELETE of a borrower a preemptor waits for (its node's CPU
                            * and memory), not a reclaim: its event is Preempted, as its
                            * eviction's would have been */
};

/* The next pod to act on, in order: priority, then creation time. Returns
 * false when nothing is waiting. An FX_WAIT/FX_INVALID/FX_GATED pod is
 * reported once per change of its message; it comes back when the cluster
 * frees capacity or the pod changes (a gated one only when its last gate is
 * removed). */
bool fx_model_next(struct fx_model *m, struct fx_attempt *a);

/* How long a pod whose bind's outcome is unknown keeps its allocation
 * before the server is asked (fx_model_next_unsure): the API server's
 * default request timeout (kube-apiserver --request-timeout, 1m), after
 * which it no longer works on the request, so an unbound pod then stays
 * unbound. The watch usually settles it long before. */
#define FX_BIND_SETTLE_MS 60000
/* And how soon it is offered again when the read-back failed. */
#define FX_BIND_RETRY_MS 5000

/* The bind of an FX_BIND attempt finished at now_ms (monotonic):
 *  - 0 keeps the allocation (the watch confirms it);
 *  - FLEXPU_ENOENT (the pod is gone) forgets the pod;
 *  - FLEXPU_EINVAL (refused: a 4xx other than 404/409) gives the
 *    allocation back and queues the pod again;
 *  - anything else (timeout, 5xx, 409) may have been applied, or the pod was
 *    bound by someone else: the pod stays assumed with its allocation until
 *    the watch shows it bound (confirmed, or accounted as recorded) or
 *    deleted, or a read-back after FX_BIND_SETTLE_MS finds it unbound. */
void fx_model_bind_done(struct fx_model *m, const char *uid, int rc, int64_t now_ms);

/* A pod whose bind's outcome has been unknown for FX_BIND_SETTLE_MS (ns,
 * name, uid, node and allocation filled): the daemon reads it back and
 * passes the answer to fx_model_bind_settle. Each such pod is offered again
 * FX_BIND_RETRY_MS later while unsettled. */
bool fx_model_next_unsure(struct fx_model *m, int64_t now_ms, struct fx_attempt *a);

/* The pod `uid` as the API server has it now (NULL: not found): bound or
 * ended, it is taken as the watch would; gone or re-created (another UID),
 * forgotten; still unbound, the bind never happened: the allocation is given
 * back and the pod queued again. */
void fx_model_bind_settle(struct fx_model *m, const char *uid, json_t *pod);

/* The workload the fragmentation-aware policies defend, taken from the pods
 * seen so far: refreshed by fx_model_next when a new request shape appears
 * or the counts grew by a quarter. */
void fx_model_refresh_workload(struct fx_model *m);

struct fx_model_stats {
    int nodes, gpus, pods_bound, pods_queued, pods_waiting, pods_invalid;
    int pods_unsure; /* assumed, their bind's outcome unknown (within pods_bound) */
    int pods_gated;  /* pending with spec.schedulingGates: left alone until ungated */
    int64_t gpu_milli_total, gpu_milli_used;
    int64_t conflicts; /* recorded allocations that could not be accounted */
    uint64_t workload_refreshes; /* the shapes' weights recomputed (new shapes, GPUs come or go) */
    uint64_t wakes;       /* waiting pods queued again because a node they may fit changed */
    uint64_t wake_checks; /* waiting pods tested against a changed node */
    uint64_t hold_books;  /* victims' holds booked in the engine (docs/KUBERNETES.md,
                           * "Preemption and reclaim"): once each, and again when
                           * capacity frees on the node of a short one */
    int pods_nominated;   /* holding a place until their victims are gone */
    uint64_t preemptions; /* pods nominated by evicting others */
    uint64_t evictions;   /* victims chosen */
    uint64_t evictions_refused; /* evictions refused (a PodDisruptionBudget...): undone */
    uint64_t evictions_deleted; /* borrowers taken for lent capacity whose eviction a
                                 * PodDisruptionBudget refused: deleted instead */
    uint64_t gangs_placed;
    int borrowers;        /* borrowers bound or being bound, not leaving */
    uint64_t borrows;     /* pods placed as borrowers */
    uint64_t reclaims;    /* borrowers chosen to evict */
    uint64_t reclaims_refused; /* refused (the API server): the borrower stays for now */
    uint64_t reclaims_deleted; /* evictions a PodDisruptionBudget refused: deleted instead */
    int remote;           /* pods with a remote slice (docs/REMOTE.md, "Kubernetes") */
    uint64_t remote_placed; /* pods placed with a remote slice */
};
void fx_model_stats(const struct fx_model *m, struct fx_model_stats *out);

/* Which pods reclaim (a queue under its fair share taking back what
 * another holds above its own) may evict: any (the default, as KAI-Scheduler
 * and Volcano do: fairness between queues comes before pod priority), only
 * pods whose PriorityClass is not above the pod making room
 * (FX_RECLAIM_NOT_HIGHER: a serving queue's high-priority pods stay), or
 * none (FX_RECLAIM_NEVER: queues only order who starts next). Priority
 * preemption is not affected. */
enum fx_reclaim {
    FX_RECLAIM_ANY = 0,
    FX_RECLAIM_NOT_HIGHER,
    FX_RECLAIM_NEVER,
};
void fx_model_set_reclaim(struct fx_model *m, enum fx_reclaim mode);
/* "any", "not-higher-priority", "never" -> 0 and *mode, or -1. */
int fx_reclaim_parse(const char *s, enum fx_reclaim *mode);

/* Which memory borrowers may take (scheduler/borrow.h, --borrow-mem):
 * FX_BORROW_MEM_UNRESERVED (the default) or FX_BORROW_MEM_IDLE. */
void fx_model_set_borrow_mem(struct fx_model *m, enum fx_borrow_mem mode);

/* The topology keys (scheduler/remote_topology.h, --remote-topology-keys)
 * by which a remote pod's node without GPUs is chosen near its GPU node:
 * one sharing the GPU node's value of the first key beats one sharing only
 * the second's, which beats one sharing none; then the most CPU free. A
 * preference, never a rule: with no near node the pod runs on another.
 * Copied; a new model has FX_REMOTE_TOPOLOGY_KEYS_DEFAULT, n 0 none. */
void fx_model_set_remote_topology(struct fx_model *m, const struct fx_remote_topology *keys);

/* The eviction of FX_EVICT pod `uid` finished: 0 (or FLEXPU_ENOENT: gone)
 * leaves it to the watch to show the pod gone, which lets its preemptor
 * bind once all its victims are; anything else (FLEXPU_EBUSY: a
 * PodDisruptionBudget refused it) undoes the preemption: the victims that
 * were not evicted keep their places, the preemptor is decided again, and
 * the pod is not a victim again until some pod ends. Except that for an
 * FX_RECLAIM, and for an FX_EVICT of a borrower taken for lent capacity
 * (its preemptor does not borrow, and still waits for it: a delete queued
 * is dropped, the borrower staying, once it no longer does), FLEXPU_EBUSY
 * makes an FX_DELETE of the borrower follow, and the call returns true
 * (false otherwise); another failure of the eviction or of that delete leaves the borrower in place
 * (a reclaimed one not reclaimed again before its back-off,
 * FX_RECLAIM_BACKOFF_MAX_S) and undoes a preemption that waited for it. */
bool fx_model_evict_done(struct fx_model *m, const char *uid, int rc);

/* ---- queues (docs/QUEUES.md) ----
 *
 * Pending pods are served queue by queue, the queue furthest below its
 * fair share first, and by class priority, priority and age within a
 * queue. A pod joins the queue its flexpu.io/queue label names, or the
 * default one; a pod naming a queue that does not exist waits, told so,
 * until it does; a pod its queue's limit (or an ancestor's) cannot take
 * waits until the queue's allocation goes down or the limit changes.
 *
 * Adds or updates a queue (FLEXPU_EINVAL naming the field for a bad one:
 * the queues are then as they were). */
int fx_model_queue_set(struct fx_model *m, const struct flexpu_queue_info *info,
                       struct flexpu_error *err);
/* Removes a queue: its waiting pods wait for a queue again; what its bound
 * pods hold stays charged to it until they end. */
int fx_model_queue_remove(struct fx_model *m, const char *name, struct flexpu_error *err);
/* Queue ids are 0..count-1 (some unused); get is false for those. Shares
 * are recomputed first when demand or capacity changed. */
int fx_model_queue_count(const struct fx_model *m);
int fx_model_queue_find(const struct fx_model *m, const char *name); /* -1: none */
bool fx_model_queue_get(struct fx_model *m, int id, struct flexpu_queue_status *out);

/* ---- measured use (docs/KUBERNETES.md, "Usage feed") ----
 *
 * What each node's agent measured on its GPUs (flexpu.io/gpu-usage), kept
 * per GPU with the agent's timestamp, for opportunistic placement; it
 * changes nothing in the engine. The agent writes on change and at least
 * every 60 s (node/usage.h FX_USAGE_REFRESH_S), so a measure older than
 * FX_USAGE_STALE_S (three refreshes) means the agent stopped: unknown. A
 * timestamp more than FX_USAGE_SKEW_S ahead of the scheduler's clock is
 * not believed either (a node's clock far off). */
#define FX_USAGE_STALE_S 180
#define FX_USAGE_SKEW_S 30
struct fx_gpu_use {
    int busy;    /* thousandths of the GPU's time: quick to rise, slow to fall */
    int mean;    /* the same, evenly weighted over about a minute */
    int64_t mem; /* bytes in use, smoothed */
    int64_t ts;  /* unix seconds, the agent's clock */
};
/* GPU `gpu` (its index in the node's inventory) of node `node` at now_s
 * (unix seconds): true and *out when measured and fresh. */
bool fx_model_gpu_use(const struct fx_model *m, const char *node, int gpu, int64_t now_s,
                      struct fx_gpu_use *out);

/* ---- borrowing idle GPUs (docs/KUBERNETES.md, "Borrowing idle GPUs") ----
 *
 * A pod annotated flexpu.io/opportunistic: "true" that fits nowhere and
 * asks one GPU as a slice is placed as a borrower on a GPU that is
 * allocated but measured idle (scheduler/borrow.h says when), its
 * allocation marked "borrowed"; borrowers whose GPU's owners rise and stay
 * up come back from fx_model_next as FX_RECLAIM. Both need the wall clock:
 * the daemon sets it before each round (unix seconds; 0, the default,
 * turns borrowing off). */
void fx_model_set_clock(struct fx_model *m, int64_t now_s);

/* Engine invariants (tests). */
int fx_model_check(const struct fx_model *m, struct flexpu_error *err);

#endif
