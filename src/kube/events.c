/* SPDX-License-Identifier: Apache-2.0 */
/* Events users read, posted off the caller's thread (kube.h). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "flexpu/log.h"
#include "kube/kube.h"
#include "util/alloc.h"

#define COMP "events"

int kube_event_post(struct kube_client *c, const struct kube_pod_event *e, const char *component,
                    const char *instance, struct flexpu_error *err)
{
    char path[512], now[40], gen[300];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events", e->ns);
    snprintf(gen, sizeof(gen), "%.250s.", e->name); /* the server appends a suffix */
    kube_time_now(now, sizeof(now), false);
    json_t *ev = json_pack(
        "{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s, s:s, s:s}, s:s, s:s, s:s, s:{s:s}, s:s, "
        "s:s, s:i, s:s, s:s}",
        "apiVersion", "v1", "kind", "Event", "metadata", "generateName", gen, "namespace",
        e->ns, "involvedObject", "apiVersion", "v1", "kind", "Pod", "namespace", e->ns, "name",
        e->name, "uid", e->uid, "type", e->type, "reason", e->reason, "message", e->message,
        "source", "component", component, "firstTimestamp", now, "lastTimestamp", now,
        "count", 1, "reportingComponent", component, "reportingInstance", instance);
    if (!ev)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for an event");
    long status;
    int rc = kube_request(c, "POST", path, ev, NULL, &status, NULL, err);
    json_decref(ev);
    return rc;
}

struct queued {
    struct kube_pod_event e;
    struct queued *next;
};

struct kube_recorder {
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    struct queued *head, *tail;
    int n;
    bool busy, stopping;
    long sent, failed;
    pthread_t tid;
    struct kube_client *c;
    char component[64], instance[256];
};

static void *recorder_main(void *arg)
{
    struct kube_recorder *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->head && !r->stopping)
            pthread_cond_wait(&r->work, &r->mu);
        if (r->stopping)
            break;
        struct queued *q = r->head;
        r->head = q->next;
        if (!r->head)
            r->tail = NULL;
        r->n--;
        r->busy = true;
        pthread_mutex_unlock(&r->mu);
        struct flexpu_error err = {0};
        int rc = kube_event_post(r->c, &q->e, r->component, r->instance, &err);
        if (rc)
            FX_WARN(COMP, "cannot record an event", "pod=%s/%s reason=%s error=\"%s\"",
                    q->e.ns, q->e.name, q->e.reason, err.msg);
        fx_free(q);
        pthread_mutex_lock(&r->mu);
        if (rc)
            r->failed++;
        else
            r->sent++;
        r->busy = false;
        pthread_cond_broadcast(&r->idle);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void drop_queued(struct kube_recorder *r)
{
    while (r->head) {
        struct queued *q = r->head;
        r->head = q->next;
        fx_free(q);
    }
    r->tail = NULL;
    r->n = 0;
}

static void recorder_free(struct kube_recorder *r)
{
    drop_queued(r);
    kube_client_free(r->c);
    pthread_cond_destroy(&r->work);
    pthread_cond_destroy(&r->idle);
    pthread_mutex_destroy(&r->mu);
    fx_free(r);
}

struct kube_recorder *kube_recorder_start(const struct kube_config *cfg, const char *component,
                                          const char *instance, int object_ms,
                                          struct flexpu_error *err)
{
    struct kube_recorder *r = fx_calloc(1, sizeof(*r));
    if (!r) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the event recorder");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->work, NULL);
    pthread_cond_init(&r->idle, NULL);
    snprintf(r->component, sizeof(r->component), "%s", component);
    snprintf(r->instance, sizeof(r->instance), "%s", instance);
    if (!(r->c = kube_client_new(cfg, component, err))) {
        recorder_free(r);
        return NULL;
    }
    kube_client_set_timeouts(r->c, object_ms, 0);
    if (pthread_create(&r->tid, NULL, recorder_main, r)) {
        recorder_free(r);
        flexpu_error_set(err, FLEXPU_ENOMEM, "cannot start the event thread");
        return NULL;
    }
    return r;
}

bool kube_recorder_emit(struct kube_recorder *r, const struct kube_pod_event *e)
{
    pthread_mutex_lock(&r->mu);
    bool room = r->n < KUBE_EVENTS_MAX && !r->stopping;
    pthread_mutex_unlock(&r->mu);
    struct queued *q = room ? fx_malloc(sizeof(*q)) : NULL;
    if (!q)
        return false;
    q->e = *e;
    q->next = NULL;
    pthread_mutex_lock(&r->mu);
    if (r->tail)
        r->tail->next = q;
    else
        r->head = q;
    r->tail = q;
    r->n++;
    pthread_cond_signal(&r->work);
    pthread_mutex_unlock(&r->mu);
    return true;
}

void kube_recorder_flush(struct kube_recorder *r)
{
    pthread_mutex_lock(&r->mu);
    while ((r->head || r->busy) && !r->stopping)
        pthread_cond_wait(&r->idle, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

void kube_recorder_stop(struct kube_recorder *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->work);
    pthread_cond_broadcast(&r->idle);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->tid, NULL);
    recorder_free(r);
}

void kube_recorder_counts(struct kube_recorder *r, long *sent, long *failed)
{
    pthread_mutex_lock(&r->mu);
    *sent = r->sent;
    *failed = r->failed;
    pthread_mutex_unlock(&r->mu);
}
