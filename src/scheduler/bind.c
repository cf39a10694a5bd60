/* SPDX-License-Identifier: Apache-2.0 */
#include "scheduler/bind.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "flexpu/log.h"
#include "kube/contract.h"
#include "util/alloc.h"
#include "util/clock.h"

#define COMP "scheduler"

/* Binds waiting for a sender, per sender: enough that a sender finishing a
 * bind finds the next one ready, few enough that a bind decided now goes
 * out within a few round trips (the lease is checked again when it does). */
#define JOBS_PER_WORKER 4
/* A bind, or a pod's PodScheduled=False (cond_reason set): the senders
 * write both, a condition only when no bind waits. */
struct job {
    struct fx_attempt a;
    const char *cond_reason; /* condition_reason(a); NULL: a bind */
    int64_t send_by_ns; /* not sent after this (the lease) */
    int rc;
    bool sent;
    char errmsg[sizeof(((struct flexpu_error *)0)->msg)];
    struct job *next;
};

struct list {
    struct job *head, *tail;
};

struct fx_bind_pool {
    pthread_mutex_t mu;
    pthread_cond_t work, room, idle;
    struct list todo, done;
    int ntodo, cap, busy;
    /* Conditions to write, at most one per pod (the latest), and the UID
     * each sender is writing one for ("": none), so that a bind of that
     * pod waits for it: a condition landing after the Binding would undo
     * the PodScheduled=True the API server set. */
    struct list conds;
    int nconds;
    char (*writing)[64];
    /* A condition is written only while the lease that decided it holds
     * (kube_lease_send_by, renewed each fx_bind_round): once this instant
     * passes, every queued condition is dropped, so a follower never writes
     * and a condition never lands after another leader's Binding. */
    int64_t cond_send_by_ns;
    bool stopping;
    int nworkers;
    pthread_t *tids;
    struct kube_client **clients;
    struct kube_recorder *events; /* kube.h: its own thread and client */
};

static void list_push(struct list *l, struct job *j)
{
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static struct job *list_take(struct list *l)
{
    struct job *j = l->head;
    l->head = l->tail = NULL;
    return j;
}

/* A condition-variable deadline `ms` from now (their default clock). */
static void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

bool fx_binder_leading(const struct fx_binder *b)
{
    if (!b->lease)
        return true;
    int64_t bind_ns = (int64_t)kube_client_object_timeout_ms(b->c) * 1000000LL;
    return kube_lease_valid_for(b->lease, (int64_t)fx_mono_ns(), bind_ns);
}

/* A pod with a remote slice is labelled with its GPU node before it is
 * bound (a Binding copies annotations only): that node's agent watches the
 * pods with its label (docs/REMOTE.md, "The GPU node's watch"). The label
 * is set again for every remote bind, so one left by an earlier attempt
 * on another GPU node never stands. Its failure sends no Binding: the pod
 * is unbound for sure, gone (FLEXPU_ENOENT) or to be decided again
 * (FLEXPU_EINVAL, whatever the cause: a label written by a request that
 * ran out is only a filter). */
static int label_remote(struct kube_client *c, const struct fx_attempt *a,
                        struct flexpu_error *err)
{
    struct fx_allocation al;
    struct flexpu_error perr = {0};
    if (!a->allocation[0] || fx_allocation_parse(a->allocation, &al, &perr) != 0 ||
        !al.remote_node[0])
        return 0;
    int rc = kube_label_pod(c, a->ns, a->name, a->uid, FX_LABEL_REMOTE_GPU_NODE, al.remote_node,
                            err);
    return rc == 0 || rc == FLEXPU_ENOENT ? rc : FLEXPU_EINVAL;
}

int fx_bind_pod(struct kube_client *c, const struct fx_attempt *a, struct flexpu_error *err)
{
    int rc = label_remote(c, a, err);
    if (rc)
        return rc;
    char path[800];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s/binding", a->ns, a->name);
    json_t *meta = json_pack("{s:s, s:s, s:s}", "name", a->name, "namespace", a->ns, "uid",
                             a->uid);
    if (a->allocation[0])
        json_object_set_new(meta, "annotations",
                            json_pack("{s:s}", FX_ANN_ALLOCATION, a->allocation));
    json_t *b = json_pack("{s:s, s:s, s:o, s:{s:s, s:s, s:s}}", "apiVersion", "v1", "kind",
                          "Binding", "metadata", meta, "target", "apiVersion", "v1", "kind",
                          "Node", "name", a->node);
    long status;
    rc = kube_request(c, "POST", path, b, NULL, &status, NULL, err);
    json_decref(b);
    /* A Binding whose uid precondition fails, or for a pod already bound,
     * answers 409; a deleted pod 404; a timeout or a 5xx leaves it unknown. */
    return rc;
}

static void drop_list(struct list *l)
{
    for (struct job *j = list_take(l); j;) {
        struct job *next = j->next;
        fx_free(j);
        j = next;
    }
}

static struct job *list_pop(struct list *l)
{
    struct job *j = l->head;
    l->head = j->next;
    if (!l->head)
        l->tail = NULL;
    return j;
}

/* Drops every queued condition (the lease lapsed). */
static void drop_conditions(struct fx_bind_pool *p)
{
    drop_list(&p->conds);
    p->nconds = 0;
}

static bool condition_on_wire(const struct fx_bind_pool *p, const char *uid)
{
    for (int i = 0; i < p->nworkers; i++)
        if (!strcmp(p->writing[i], uid))
            return true;
    return false;
}

/* The first queued condition whose pod no sender is writing, taken off the
 * queue, or NULL: two writes of one pod on two connections could land in
 * either order, the older message last; so a newer one waits its turn. */
static struct job *take_condition(struct fx_bind_pool *p)
{
    struct job **pp = &p->conds.head, *prev = NULL;
    for (struct job *j = *pp; j; prev = j, pp = &j->next, j = j->next) {
        if (condition_on_wire(p, j->a.uid))
            continue;
        *pp = j->next;
        if (p->conds.tail == j)
            p->conds.tail = prev;
        p->nconds--;
        return j;
    }
    return NULL;
}

/* One pod's PodScheduled=False, on a sender. A pod gone or replaced (404,
 * or its UID no longer the name's) or a conflict (409) is routine: the
 * watch tells the model; anything else is said once, and dropped (the
 * next change of the pod's reason writes it again). */
static void write_condition(struct kube_client *c, const struct job *j)
{
    struct flexpu_error err = {0};
    int rc = kube_pod_unscheduled(c, j->a.ns, j->a.name, j->a.uid, j->cond_reason,
                                  j->a.message, j->a.unscheduled_since_s, &err);
    if (rc == FLEXPU_ENOENT || rc == FLEXPU_EEXIST)
        FX_DEBUG(COMP, "pod condition not written", "pod=%s/%s error=\"%s\"", j->a.ns,
                 j->a.name, err.msg);
    else if (rc)
        FX_WARN(COMP, "cannot set the pod's PodScheduled condition", "pod=%s/%s error=\"%s\"",
                j->a.ns, j->a.name, err.msg);
}

static void *sender_main(void *arg)
{
    struct fx_bind_pool *p = ((void **)arg)[0];
    struct kube_client *c = ((void **)arg)[1];
    int me = (int)(intptr_t)((void **)arg)[2];
    fx_free(arg);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct job *cj = NULL;
        while (!p->todo.head && !p->stopping && !(cj = take_condition(p)))
            pthread_cond_wait(&p->work, &p->mu);
        if (p->stopping) {
            fx_free(cj);
            break; /* what is queued is dropped by fx_binder_stop */
        }
        if (cj && (int64_t)fx_mono_ns() >= p->cond_send_by_ns) {
            fx_free(cj);
            drop_conditions(p); /* the lease lapsed: another may lead */
            pthread_cond_broadcast(&p->idle);
            continue;
        }
        p->busy++;
        if (cj) { /* no bind waits: a condition */
            struct job *j = cj;
            snprintf(p->writing[me], sizeof(p->writing[me]), "%s", j->a.uid);
            pthread_mutex_unlock(&p->mu);
            write_condition(c, j);
            fx_free(j);
            pthread_mutex_lock(&p->mu);
            p->writing[me][0] = '\0';
            p->busy--;
            pthread_cond_broadcast(&p->idle);
            if (p->conds.head) /* one of this pod's may have waited for this one */
                pthread_cond_signal(&p->work);
            continue;
        }
        struct job *j = list_pop(&p->todo);
        p->ntodo--;
        pthread_cond_signal(&p->room);
        while (condition_on_wire(p, j->a.uid)) /* bounded by its request's timeout */
            pthread_cond_wait(&p->idle, &p->mu);
        pthread_mutex_unlock(&p->mu);

        /* A bind that would outlive the lease is not sent: by the time it
         * lands another instance may lead and have placed other pods on
         * the same GPUs. Nothing is written; the pod is decided again. */
        if ((int64_t)fx_mono_ns() >= j->send_by_ns) {
            j->sent = false;
            j->rc = FLEXPU_EINVAL;
        } else {
            struct flexpu_error err = {0};
            j->sent = true;
            j->rc = fx_bind_pod(c, &j->a, &err);
            snprintf(j->errmsg, sizeof(j->errmsg), "%s", err.msg);
        }

        pthread_mutex_lock(&p->mu);
        list_push(&p->done, j);
        p->busy--;
        pthread_cond_broadcast(&p->idle);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Queues an event for the event thread; never waits. */
static void emit_event(struct fx_binder *b, const struct fx_attempt *a, const char *type,
                       const char *reason)
{
    struct kube_pod_event e = {.series = false};
    snprintf(e.ns, sizeof(e.ns), "%s", a->ns);
    snprintf(e.name, sizeof(e.name), "%s", a->name);
    snprintf(e.uid, sizeof(e.uid), "%s", a->uid);
    snprintf(e.type, sizeof(e.type), "%s", type);
    snprintf(e.reason, sizeof(e.reason), "%s", reason);
    snprintf(e.message, sizeof(e.message), "%s", a->message);
    /* Rare (thousands of unplaceable pods at once): said in the log,
     * where the same reason is written for each pod anyway. */
    if (!kube_recorder_emit(b->pool->events, &e) && b->events_dropped++ % 1000 == 0)
        FX_WARN(COMP, "event queue full: events dropped", "pod=%s/%s reason=%s dropped=%ld",
                a->ns, a->name, reason, b->events_dropped);
}

/* The PodScheduled=False reason of an FX_WAIT or FX_INVALID attempt
 * (docs/KUBERNETES.md, "The pod's PodScheduled condition"). Cluster
 * Autoscaler and Karpenter add nodes for pods whose reason is
 * Unschedulable, so only a wait more nodes could end has it; the others
 * name what holds the pod back. A malformed request is SchedulerError,
 * kube-scheduler's reason for a pod it fails on for something no node
 * fixes. */
static const char *condition_reason(const struct fx_attempt *a)
{
    if (a->outcome != FX_WAIT)
        return "SchedulerError";
    switch (a->wait) {
    case FX_WAIT_QUEUE_LIMIT:
        return "QueueLimitExceeded";
    case FX_WAIT_NO_QUEUE:
        return "QueueNotFound";
    case FX_WAIT_POD_GROUP:
        return "PodGroupIncomplete";
    case FX_WAIT_ERROR:
        return "SchedulerError";
    case FX_WAIT_ROOM:
        break;
    }
    return "Unschedulable";
}

/* Queues pod a's PodScheduled=False with `reason` and a's message for the
 * senders; never waits. A condition still queued for the pod is replaced
 * (only the latest matters); past FX_CONDITIONS_MAX pods queued it is
 * dropped and counted, as an event is. */
static void queue_condition(struct fx_binder *b, const struct fx_attempt *a, const char *reason)
{
    struct fx_bind_pool *p = b->pool;
    pthread_mutex_lock(&p->mu);
    for (struct job *j = p->conds.head; j; j = j->next)
        if (!strcmp(j->a.uid, a->uid)) {
            j->a = *a;
            j->cond_reason = reason;
            pthread_mutex_unlock(&p->mu);
            return;
        }
    bool room = p->nconds < FX_CONDITIONS_MAX && !p->stopping;
    pthread_mutex_unlock(&p->mu);
    struct job *j = room ? fx_malloc(sizeof(*j)) : NULL;
    if (!j) {
        if (b->conditions_dropped++ % 1000 == 0)
            FX_WARN(COMP, "pod condition queue full: conditions dropped",
                    "pod=%s/%s reason=%s dropped=%ld", a->ns, a->name, reason,
                    b->conditions_dropped);
        return;
    }
    j->a = *a;
    j->cond_reason = reason;
    pthread_mutex_lock(&p->mu);
    list_push(&p->conds, j);
    p->nconds++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
}

/* A pod about to be bound: its queued condition is stale (the API server
 * sets PodScheduled=True at the Binding), so it is not written. */
static void unqueue_condition(struct fx_bind_pool *p, const char *uid)
{
    struct job **pp = &p->conds.head, *prev = NULL;
    for (struct job *j = *pp; j; prev = j, pp = &j->next, j = j->next) {
        if (strcmp(j->a.uid, uid))
            continue;
        *pp = j->next;
        if (p->conds.tail == j)
            p->conds.tail = prev;
        p->nconds--;
        fx_free(j);
        return;
    }
}

static void pool_free(struct fx_bind_pool *p)
{
    drop_list(&p->conds);
    fx_free(p->writing);
    for (int i = 0; p->clients && i < p->nworkers; i++)
        kube_client_free(p->clients[i]);
    kube_recorder_stop(p->events);
    fx_free(p->clients);
    fx_free(p->tids);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->room);
    pthread_cond_destroy(&p->idle);
    fx_free(p);
}

int fx_binder_start(struct fx_binder *b, const struct kube_config *cfg, int workers,
                    struct flexpu_error *err)
{
    if (workers < 1 || workers > FX_BIND_WORKERS_MAX) {
        char v[16];
        snprintf(v, sizeof(v), "%d", workers);
        return flexpu_error_field(err, FLEXPU_EINVAL, "bind-workers", v, strlen(v),
                                  "must be 1 to 64");
    }
    struct fx_bind_pool *p = fx_calloc(1, sizeof(*p));
    if (!p)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the bind pool");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->room, NULL);
    pthread_cond_init(&p->idle, NULL);
    p->cap = workers * JOBS_PER_WORKER;
    p->cond_send_by_ns = INT64_MAX;
    p->clients = fx_calloc((size_t)workers, sizeof(*p->clients));
    p->tids = fx_calloc((size_t)workers, sizeof(*p->tids));
    p->writing = fx_calloc((size_t)workers, sizeof(*p->writing));
    if (!p->clients || !p->tids || !p->writing) {
        pool_free(p);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the bind pool");
    }
    int object_ms = kube_client_object_timeout_ms(b->c);
    p->nworkers = workers;
    for (int i = 0; i < workers; i++) {
        struct kube_client *c = kube_client_new(cfg, "flexpu-scheduler", err);
        if (!c) {
            pool_free(p);
            return err->code ? err->code : FLEXPU_EIO;
        }
        kube_client_set_timeouts(c, object_ms, 0);
        p->clients[i] = c;
    }
    p->events = kube_recorder_start(cfg, "flexpu-scheduler",
                                    b->identity ? b->identity : "flexpu-scheduler", object_ms,
                                    err);
    if (!p->events) {
        pool_free(p);
        return err->code ? err->code : FLEXPU_EIO;
    }
    int started = 0;
    for (; started < workers; started++) {
        void **arg = fx_malloc(3 * sizeof(void *));
        if (!arg)
            break;
        arg[0] = p;
        arg[1] = p->clients[started];
        arg[2] = (void *)(intptr_t)started;
        if (pthread_create(&p->tids[started], NULL, sender_main, arg)) {
            fx_free(arg);
            break;
        }
    }
    if (started < workers) {
        pthread_mutex_lock(&p->mu);
        p->stopping = true;
        pthread_cond_broadcast(&p->work);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < started; i++)
            pthread_join(p->tids[i], NULL);
        pool_free(p);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "cannot start the bind threads");
    }
    b->pool = p;
    return 0;
}

/* Applies one finished bind to the model and says what happened. */
static void apply(struct fx_model *m, struct fx_binder *b, struct job *j)
{
    const struct fx_attempt *a = &j->a;
    if (!j->sent) {
        fx_model_bind_done(m, a->uid, FLEXPU_EINVAL, fx_mono_ms()); /* nothing written */
        b->binds_unsent++;
        FX_INFO(COMP, "bind not sent: the lease would not outlast it; the pod is decided again",
                "pod=%s/%s node=%s", a->ns, a->name, a->node);
        return;
    }
    fx_model_bind_done(m, a->uid, j->rc, fx_mono_ms());
    if (j->rc) {
        b->bind_errors++;
        FX_WARN(COMP, "bind failed", "pod=%s/%s node=%s error=\"%s\"", a->ns, a->name, a->node,
                j->errmsg);
        return;
    }
    b->binds++;
    FX_DEBUG(COMP, "bound", "pod=%s/%s node=%s allocation=%s", a->ns, a->name, a->node,
             a->allocation);
    if (a->borrowed) { /* a borrower: what it borrows, and that it may be reclaimed */
        FX_INFO(COMP, "borrowing", "pod=%s/%s what=\"%s\"", a->ns, a->name, a->message);
        emit_event(b, a, "Normal", "Borrowing");
    } else if (a->remote) { /* where a remote slice's pod runs, and how near its GPU */
        FX_INFO(COMP, "remote slice", "pod=%s/%s where=\"%s\"", a->ns, a->name, a->message);
        emit_event(b, a, "Normal", "RemoteSlice");
    } else if (a->message[0]) { /* a bound pod's message: its priority annotation was capped */
        FX_WARN(COMP, "priority annotation ignored", "pod=%s/%s reason=\"%s\"", a->ns, a->name,
                a->message);
        emit_event(b, a, "Warning", "PriorityCapped");
    }
}

int fx_binder_collect(struct fx_model *m, struct fx_binder *b)
{
    struct fx_bind_pool *p = b->pool;
    if (!p)
        return 0;
    pthread_mutex_lock(&p->mu);
    struct job *j = list_take(&p->done);
    pthread_mutex_unlock(&p->mu);
    int n = 0;
    while (j) {
        struct job *next = j->next;
        apply(m, b, j);
        fx_free(j);
        j = next;
        n++;
    }
    return n;
}

void fx_binder_flush(struct fx_model *m, struct fx_binder *b)
{
    struct fx_bind_pool *p = b->pool;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    while (p->todo.head || p->conds.head || p->busy)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
    kube_recorder_flush(p->events);
    fx_binder_collect(m, b);
}

void fx_binder_stop(struct fx_binder *b, struct fx_model *m)
{
    struct fx_bind_pool *p = b->pool;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++)
        pthread_join(p->tids[i], NULL);
    /* Unsent binds: nothing was written, so the model gives their GPUs back
     * (it is going away anyway when the scheduler stops). */
    for (struct job *j = list_take(&p->todo); j;) {
        struct job *next = j->next;
        j->sent = false;
        if (m)
            apply(m, b, j);
        fx_free(j);
        j = next;
    }
    p->ntodo = 0;
    if (m)
        fx_binder_collect(m, b);
    drop_list(&p->done);
    b->pool = NULL;
    pool_free(p);
}

/* Waits until the senders' queue has room, collecting finished binds
 * meanwhile. False when stopping. */
static bool wait_room(struct fx_model *m, struct fx_binder *b, atomic_int *stop)
{
    struct fx_bind_pool *p = b->pool;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        if (p->ntodo < p->cap) {
            pthread_mutex_unlock(&p->mu);
            return true;
        }
        if (!p->done.head) {
            struct timespec ts;
            deadline_in(&ts, 100);
            pthread_cond_timedwait(&p->room, &p->mu, &ts);
        }
        pthread_mutex_unlock(&p->mu);
        fx_binder_collect(m, b);
        if (stop && atomic_load(stop))
            return false;
    }
}

/* A preemption's writes, on the main thread (they are rare, and the model
 * must know an eviction's outcome before its next decision): the
 * preemptor's nominatedNodeName (set, or cleared when the place is given
 * back), each victim's eviction (a borrower whose
 * eviction a budget refused: its delete), an event on each. */
static void preemption_step(struct fx_model *m, struct fx_binder *b, struct fx_attempt *a)
{
    struct flexpu_error err = {0};
    if (a->outcome == FX_NOMINATE) {
        FX_INFO(COMP, "preempting", "pod=%s/%s node=%s what=\"%s\"", a->ns, a->name, a->node,
                a->message);
        if (kube_nominate(b->c, a->ns, a->name, a->uid, a->node, &err))
            FX_WARN(COMP, "cannot set nominatedNodeName (its place is held all the same)",
                    "pod=%s/%s error=\"%s\"", a->ns, a->name, err.msg);
        emit_event(b, a, "Normal", "Preempting");
        return;
    }
    if (a->outcome == FX_UNNOMINATE) {
        FX_INFO(COMP, "nomination ended", "pod=%s/%s why=\"%s\"", a->ns, a->name, a->message);
        int rc = kube_nominate(b->c, a->ns, a->name, a->uid, NULL, &err);
        /* A pod gone or replaced has nothing to clear. One bound meanwhile
         * (another instance's bind, a user's Binding) answers 200: the API
         * server refuses only a new node name on a bound pod, not a clear
         * (kube_nominate), so any other failure is worth saying. */
        if (rc && rc != FLEXPU_ENOENT)
            FX_WARN(COMP, "cannot clear nominatedNodeName", "pod=%s/%s error=\"%s\"", a->ns,
                    a->name, err.msg);
        return;
    }
    if (a->outcome == FX_DELETE) {
        /* Named for why it goes, not how: a victim of a preemption is
         * Preempted (as kube-scheduler's victims, which it deletes, and as
         * this pod's eviction would have been), a reclaim's Reclaimed. */
        const char *reason = a->preempts ? "Preempted" : "Reclaimed";
        const char *cond = a->preempts ? "flexpu-scheduler: the node's CPU and memory it "
                                         "borrowed are needed by a pod that does not borrow"
                                       : "flexpu-scheduler: reclaimed from the GPU it borrowed";
        int rc = kube_delete_pod(b->c, a->ns, a->name, a->uid, cond, &err);
        fx_model_evict_done(m, a->uid, rc);
        if (rc == 0 || rc == FLEXPU_ENOENT) {
            FX_INFO(COMP, "a borrower deleted", "pod=%s/%s reason=%s why=\"%s\"", a->ns,
                    a->name, reason, a->message);
            emit_event(b, a, "Normal", reason);
            return;
        }
        FX_WARN(COMP, "a borrower's delete refused; it stays for now",
                "pod=%s/%s error=\"%s\"", a->ns, a->name, err.msg);
        char why[sizeof(a->message)];
        snprintf(why, sizeof(why),
                 "not deleted after a PodDisruptionBudget refused its eviction: %s", err.msg);
        snprintf(a->message, sizeof(a->message), "%s", why);
        emit_event(b, a, "Warning", "EvictionRefused");
        return;
    }
    int rc = kube_evict(b->c, a->ns, a->name, a->uid, &err);
    if (fx_model_evict_done(m, a->uid, rc)) { /* deleted next: its event says why */
        FX_INFO(COMP, "a borrower's eviction refused by a budget; it is deleted",
                "pod=%s/%s error=\"%s\"", a->ns, a->name, err.msg);
        return;
    }
    if (a->outcome == FX_RECLAIM) {
        if (rc == 0 || rc == FLEXPU_ENOENT) {
            FX_INFO(COMP, "reclaimed", "pod=%s/%s why=\"%s\"", a->ns, a->name, a->message);
            emit_event(b, a, "Normal", "Reclaimed");
            return;
        }
        FX_WARN(COMP, "reclaim refused; the borrower stays for now", "pod=%s/%s error=\"%s\"",
                a->ns, a->name, err.msg);
        char why[sizeof(a->message)];
        snprintf(why, sizeof(why), "not evicted for its GPU's owners: %s", err.msg);
        snprintf(a->message, sizeof(a->message), "%s", why);
        emit_event(b, a, "Warning", "EvictionRefused");
        return;
    }
    if (rc == 0 || rc == FLEXPU_ENOENT) {
        FX_INFO(COMP, "evicted", "pod=%s/%s why=\"%s\"", a->ns, a->name, a->message);
        emit_event(b, a, "Normal", "Preempted");
        return;
    }
    FX_WARN(COMP, "eviction refused; the preemption is undone", "pod=%s/%s error=\"%s\"", a->ns,
            a->name, err.msg);
    char why[sizeof(a->message)];
    snprintf(why, sizeof(why), "not evicted for preemption: %s", err.msg);
    snprintf(a->message, sizeof(a->message), "%s", why);
    emit_event(b, a, "Warning", "EvictionRefused");
}

int fx_bind_round(struct fx_model *m, struct fx_binder *b, int max, atomic_int *stop)
{
    struct fx_bind_pool *p = b->pool;
    struct fx_attempt a;
    int n = 0;
    fx_binder_collect(m, b);
    if (b->lease) {
        /* Conditions queued under a lease that has lapsed since (however
         * briefly: another instance may have led and bound meanwhile) are
         * dropped; the rest may be written until the lease's send-by. */
        int64_t bind_ns = (int64_t)kube_client_object_timeout_ms(b->c) * 1000000LL;
        int64_t by = kube_lease_send_by(b->lease, bind_ns);
        pthread_mutex_lock(&p->mu);
        if ((int64_t)fx_mono_ns() >= p->cond_send_by_ns)
            drop_conditions(p);
        p->cond_send_by_ns = by;
        pthread_mutex_unlock(&p->mu);
    }
    /* The lease is checked before each decision, not once per round: a
     * round of binds can outlast what is left of it. */
    for (; n < max && !(stop && atomic_load(stop)) && wait_room(m, b, stop) &&
           fx_binder_leading(b) && fx_model_next(m, &a);
         n++) {
        if (a.outcome == FX_NOMINATE || a.outcome == FX_EVICT || a.outcome == FX_RECLAIM ||
            a.outcome == FX_DELETE || a.outcome == FX_UNNOMINATE) {
            preemption_step(m, b, &a);
            continue;
        }
        if (a.outcome == FX_GATED) {
            /* An event, sent once per pod and list of gates. No condition:
             * the API server itself sets PodScheduled=False, reason
             * SchedulingGated, on a pod created with gates (and gates can
             * only be removed), as it does under kube-scheduler. */
            FX_INFO(COMP, "gated", "pod=%s/%s reason=\"%s\"", a.ns, a.name, a.message);
            emit_event(b, &a, "Normal", "SchedulingGated");
            continue;
        }
        if (a.outcome != FX_BIND) {
            const char *reason = a.outcome == FX_WAIT ? "FailedScheduling" : "InvalidRequest";
            FX_INFO(COMP, a.outcome == FX_WAIT ? "cannot place yet" : "invalid request",
                    "pod=%s/%s reason=\"%s\"", a.ns, a.name, a.message);
            emit_event(b, &a, "Warning", reason);
            /* Told once per change of the message (fx_model_next), so
             * written once per change too. The event's reason stays
             * FailedScheduling for every wait, as kube-scheduler's does
             * (tools select events on it); the condition's tells why. */
            queue_condition(b, &a, condition_reason(&a));
            continue;
        }
        struct job *j = fx_malloc(sizeof(*j));
        if (!j) {
            /* The pod is assumed: give it back as a bind refused unsent. */
            fx_model_bind_done(m, a.uid, FLEXPU_EINVAL, fx_mono_ms());
            FX_ERROR(COMP, "out of memory queueing a bind; the pod is decided again",
                     "pod=%s/%s", a.ns, a.name);
            break;
        }
        j->a = a;
        j->cond_reason = NULL;
        j->rc = 0;
        j->sent = false;
        j->errmsg[0] = 0;
        int64_t bind_ns = (int64_t)kube_client_object_timeout_ms(b->c) * 1000000LL;
        j->send_by_ns = b->lease ? kube_lease_send_by(b->lease, bind_ns) : INT64_MAX;
        pthread_mutex_lock(&p->mu);
        unqueue_condition(p, a.uid);
        list_push(&p->todo, j);
        p->ntodo++;
        pthread_cond_signal(&p->work);
        pthread_mutex_unlock(&p->mu);
    }
    return n;
}

void fx_settle_round(struct fx_model *m, struct fx_binder *b, int64_t now_ms)
{
    struct fx_attempt a;
    while (fx_model_next_unsure(m, now_ms, &a)) {
        char path[800];
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", a.ns, a.name);
        long status;
        json_t *pod = NULL;
        struct flexpu_error err = {0};
        int rc = kube_request(b->c, "GET", path, NULL, NULL, &status, &pod, &err);
        if (rc && rc != FLEXPU_ENOENT) {
            FX_WARN(COMP, "cannot read back a pod whose bind is unknown; its GPUs stay held",
                    "pod=%s/%s error=\"%s\"", a.ns, a.name, err.msg);
            break; /* the server is likely away: each pod is offered again later */
        }
        const char *node = pod ? kube_str(pod, "spec.nodeName") : NULL;
        FX_INFO(COMP, "bind outcome read back", "pod=%s/%s assumed_node=%s bound_node=%s", a.ns,
                a.name, a.node, rc ? "(pod gone)" : node && *node ? node : "(none)");
        fx_model_bind_settle(m, a.uid, rc ? NULL : pod);
        json_decref(pod);
    }
}
