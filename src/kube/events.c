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
                    const char *instance, char *name, size_t name_len,
                    struct flexpu_error *err)
{
    if (name && name_len)
        name[0] = '\0';
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
    json_t *made = NULL;
    int rc = kube_request(c, "POST", path, ev, NULL, &status, name ? &made : NULL, err);
    json_decref(ev);
    const char *given = made ? kube_str(made, "metadata.name") : NULL;
    if (rc == 0 && given && name && strlen(given) < name_len)
        snprintf(name, name_len, "%s", given);
    json_decref(made);
    return rc;
}

int kube_event_patch(struct kube_client *c, const struct kube_pod_event *e, const char *name,
                     int count, struct flexpu_error *err)
{
    char path[600], now[40];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events/%s", e->ns, name);
    kube_time_now(now, sizeof(now), false);
    json_t *patch = json_pack("{s:i, s:s, s:s}", "count", count, "lastTimestamp", now, "message",
                              e->message);
    if (!patch)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for an event");
    long status;
    int rc = kube_request(c, "PATCH", path, patch, KUBE_MERGE_PATCH, &status, NULL, err);
    json_decref(patch);
    return rc;
}

/* The last Event of one pod's series (kube_pod_event.series): its key, the
 * name the server gave it and how many times it happened. */
struct series {
    char ns[256], pod[256], uid[64], type[16], reason[32];
    char event[256];
    int count;
    unsigned long used; /* when last used, by the recorder's clock; 0: free */
};

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
    /* Only the recorder's thread reads or writes these. */
    struct series *series; /* KUBE_EVENT_SERIES_MAX */
    unsigned long clock;
};

static bool same_series(const struct series *s, const struct kube_pod_event *e)
{
    return s->used && !strcmp(s->ns, e->ns) && !strcmp(s->pod, e->name) &&
           !strcmp(s->uid, e->uid) && !strcmp(s->type, e->type) && !strcmp(s->reason, e->reason);
}

static struct series *series_find(struct kube_recorder *r, const struct kube_pod_event *e)
{
    for (int i = 0; i < KUBE_EVENT_SERIES_MAX; i++)
        if (same_series(&r->series[i], e))
            return &r->series[i];
    return NULL;
}

/* A new series for e, whose first Event the server named `event`: in a free
 * place, else in the one longest unused (that pod's next event starts
 * anew). */
static void series_start(struct kube_recorder *r, const struct kube_pod_event *e,
                         const char *event)
{
    struct series *s = &r->series[0];
    for (int i = 0; i < KUBE_EVENT_SERIES_MAX && s->used; i++)
        if (r->series[i].used < s->used)
            s = &r->series[i];
    snprintf(s->ns, sizeof(s->ns), "%s", e->ns);
    snprintf(s->pod, sizeof(s->pod), "%s", e->name);
    snprintf(s->uid, sizeof(s->uid), "%s", e->uid);
    snprintf(s->type, sizeof(s->type), "%s", e->type);
    snprintf(s->reason, sizeof(s->reason), "%s", e->reason);
    snprintf(s->event, sizeof(s->event), "%s", event);
    s->count = 1;
    s->used = ++r->clock;
}

/* Records e: the next of its series when it has one the server still
 * keeps, else a new Event (which starts the series). A PATCH that got no
 * answer may have landed: the series goes on, and the next repeat counts
 * from what this recorder knows (at worst one short). */
static int record(struct kube_recorder *r, const struct kube_pod_event *e,
                  struct flexpu_error *err)
{
    struct series *s = e->series ? series_find(r, e) : NULL;
    if (s) {
        int rc = kube_event_patch(r->c, e, s->event, s->count + 1, err);
        if (rc == 0 || rc == FLEXPU_EIO) {
            s->count += rc == 0;
            s->used = ++r->clock;
            return rc;
        }
        /* Expired (404), or patch not allowed: a new Event, a new series. */
        FX_DEBUG(COMP, "event series starts anew", "pod=%s/%s reason=%s event=%s error=\"%s\"",
                 e->ns, e->name, e->reason, s->event, err->msg);
        memset(s, 0, sizeof(*s));
        *err = (struct flexpu_error){0};
    }
    char name[256];
    int rc = kube_event_post(r->c, e, r->component, r->instance, name, sizeof(name), err);
    if (rc == 0 && e->series && name[0])
        series_start(r, e, name);
    return rc;
}

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
        int rc = record(r, &q->e, &err);
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
    fx_free(r->series);
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
    if (!(r->series = fx_calloc(KUBE_EVENT_SERIES_MAX, sizeof(*r->series)))) {
        recorder_free(r);
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for the event recorder");
        return NULL;
    }
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
