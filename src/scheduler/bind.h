/* SPDX-License-Identifier: Apache-2.0 */
/* The scheduler's writes to the API server: deciding and binding while it
 * leads, the events users read, a waiting pod's PodScheduled=False
 * condition (what autoscalers read), and reading back pods whose bind's
 * outcome is unknown. Apart from main.c so tests drive it against a local
 * HTTP server.
 *
 * A bind is one API round trip (about 5 ms on loopback), so one bind at a
 * time caps a scheduler near 200 pods/s. The main thread decides (the model
 * is its alone) and hands each Binding to a small pool of sender threads,
 * each with its own connection; their outcomes come back to the main thread
 * (fx_binder_collect), which applies them to the model. Events go through a
 * thread of their own, so a slow or failing event write never delays a
 * bind. The senders also write the conditions, when no bind waits (at most
 * one queued per pod, never after that pod's Binding: docs/KUBERNETES.md,
 * "The pod's PodScheduled condition"). The queues are bounded: the main
 * thread waits for room before it decides (a decision assumes the pod's
 * GPUs, so it is made only once its bind can go out), and an event that
 * finds its queue full is dropped and counted (events are for people; they
 * carry no state), as is a condition past FX_CONDITIONS_MAX pods. */
#ifndef FX_SCHED_BIND_H
#define FX_SCHED_BIND_H

#include <stdbool.h>
#include <stdint.h>

#include "kube/kube.h"
#include "scheduler/model.h"

#define FX_BIND_WORKERS_DEFAULT 8
#define FX_BIND_WORKERS_MAX     64
/* Pods whose PodScheduled=False may wait for a sender at once. */
#define FX_CONDITIONS_MAX 4096

struct fx_bind_pool;

struct fx_binder {
    struct kube_client *c;    /* the main thread's: reads back unsure pods */
    struct kube_lease *lease; /* NULL: no leader election, always leading */
    const char *identity;     /* the events' reportingInstance */
    /* Outcomes applied so far (fx_binder_collect), and events lost to a
     * full queue. Main thread only. */
    long binds, bind_errors, binds_unsent;
    long events_dropped;
    long conditions_dropped; /* PodScheduled writes lost to a full queue */
    struct fx_bind_pool *pool; /* fx_binder_start */
};

/* Starts `workers` sender threads (1..FX_BIND_WORKERS_MAX) and the event
 * thread, each with its own client on `cfg`, bounded like b->c's requests
 * (kube_client_object_timeout_ms). */
int fx_binder_start(struct fx_binder *b, const struct kube_config *cfg, int workers,
                    struct flexpu_error *err);

/* Stops the threads: binds already on the wire finish (their outcomes are
 * collected into m when m is not NULL); binds and events not yet sent are
 * dropped, which writes nothing (a pod whose bind was not sent stays
 * pending in the API, for the next leader). */
void fx_binder_stop(struct fx_binder *b, struct fx_model *m);

/* Whether this instance may bind now: it leads, and its lease stays valid
 * (kube_lease_valid_for) for the whole timeout of the bind it would send,
 * so a bind never lands after another instance could have taken over. A
 * sender checks again when the bind goes out (kube_lease_send_by). */
bool fx_binder_leading(const struct fx_binder *b);

/* Decides and hands over up to `max` binds (or reports), checking the lease
 * before each decision and stopping when it no longer holds. Returns the
 * attempts made. */
int fx_bind_round(struct fx_model *m, struct fx_binder *b, int max, atomic_int *stop);

/* Applies the outcomes of the binds that finished since the last call to
 * the model (fx_model_bind_done). Returns how many. Main thread only. */
int fx_binder_collect(struct fx_model *m, struct fx_binder *b);

/* Waits until no bind and no event is queued or on the wire, then
 * collects (tests; a scheduler shutting down uses fx_binder_stop). */
void fx_binder_flush(struct fx_model *m, struct fx_binder *b);

/* One bind as a sender makes it: for a remote slice, the pod labelled
 * FX_LABEL_REMOTE_GPU_NODE with its GPU node first (the pod's UID as
 * precondition; its failure sends no Binding), then the Binding with the
 * allocation annotation and the pod's UID. Returns as
 * fx_model_bind_done expects it. */
int fx_bind_pod(struct kube_client *c, const struct fx_attempt *a, struct flexpu_error *err);

/* Reads back (GET) each pod whose bind's outcome has stayed unknown for
 * FX_BIND_SETTLE_MS by now_ms (monotonic) and settles it in the model
 * (fx_model_bind_settle). A read is not a write, so followers settle too;
 * the round stops at the first failed read (the server is away). */
void fx_settle_round(struct fx_model *m, struct fx_binder *b, int64_t now_ms);

#endif
