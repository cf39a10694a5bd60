/* SPDX-License-Identifier: Apache-2.0 */
#include "scheduler/queues.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "flexpu/log.h"
#include "kube/queue_spec.h"
#include "util/alloc.h"
#include "util/strmap.h"

#define COMP "queues"

struct qrec {
    json_t *obj;   /* the object as last seen: its conditions keep their times */
    json_t *sent;  /* the status patch last written, NULL: none yet */
    char *refused; /* why its spec was refused (NULL: accepted) */
    uint64_t gen;  /* the list generation it was last seen in */
};

struct fx_queue_sync {
    struct fx_strmap recs; /* by queue name */
    uint64_t gen;
};

struct fx_queue_sync *fx_queue_sync_new(void)
{
    struct fx_queue_sync *s = fx_calloc(1, sizeof(*s));
    if (s)
        fx_strmap_init(&s->recs);
    return s;
}

static void rec_free(struct qrec *r)
{
    if (!r)
        return;
    json_decref(r->obj);
    json_decref(r->sent);
    fx_free(r->refused);
    fx_free(r);
}

void fx_queue_sync_free(struct fx_queue_sync *s)
{
    if (!s)
        return;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&s->recs, &i, &k, &v);)
        rec_free(v);
    fx_strmap_free(&s->recs);
    fx_free(s);
}

static void forget(struct fx_queue_sync *s, struct fx_model *m, const char *name)
{
    struct flexpu_error err = {0};
    if (fx_model_queue_remove(m, name, &err))
        FX_WARN(COMP, "cannot remove a queue", "queue=%s error=\"%s\"", name, err.msg);
    else
        FX_INFO(COMP, "queue removed", "queue=%s", name);
    rec_free(fx_strmap_del(&s->recs, name));
}

static void take(struct fx_queue_sync *s, struct fx_model *m, json_t *obj)
{
    const char *name = kube_str(obj, "metadata.name");
    if (!name || !*name)
        return;
    struct qrec *r = fx_strmap_get(&s->recs, name);
    if (!r) {
        r = fx_calloc(1, sizeof(*r));
        if (!r || fx_strmap_put(&s->recs, name, r)) {
            fx_free(r);
            FX_ERROR(COMP, "out of memory tracking a queue", "queue=%s", name);
            return;
        }
    }
    r->gen = s->gen;
    json_decref(r->obj);
    r->obj = json_incref(obj);
    struct flexpu_queue_info info;
    struct flexpu_error err = {0};
    int rc = fx_queue_parse(obj, &info, &err);
    if (!rc)
        rc = fx_model_queue_set(m, &info, &err);
    if (rc) {
        /* The last spec accepted stays in force; the status says why this
         * one was not. Logged once per distinct reason. */
        if (!r->refused || strcmp(r->refused, err.msg) != 0)
            FX_WARN(COMP, "queue spec refused; the last accepted one stays", "queue=%s error=\"%s\"",
                    name, err.msg);
        fx_free(r->refused);
        r->refused = fx_strdup(err.msg);
        return;
    }
    if (r->refused)
        FX_INFO(COMP, "queue spec accepted", "queue=%s", name);
    fx_free(r->refused);
    r->refused = NULL;
}

void fx_queue_sync_event(struct fx_queue_sync *s, struct fx_model *m, enum kube_event ev,
                         json_t *obj)
{
    if (ev == KUBE_SYNC_BEGIN) {
        s->gen++;
        return;
    }
    if (ev == KUBE_SYNC_END) {
        /* Deleted while no watch was open. */
        const char *k;
        void *v;
        for (size_t i = 0; fx_strmap_next(&s->recs, &i, &k, &v);) {
            if (((struct qrec *)v)->gen != s->gen) {
                char name[256];
                snprintf(name, sizeof(name), "%s", k);
                forget(s, m, name);
                i = 0; /* deletion shifts entries: restart (rare, after a relist) */
            }
        }
        return;
    }
    if (ev == KUBE_DELETED) {
        const char *name = kube_str(obj, "metadata.name");
        if (name && fx_strmap_get(&s->recs, name))
            forget(s, m, name);
        return;
    }
    take(s, m, obj);
}

int fx_queue_sync_publish(struct fx_queue_sync *s, struct fx_model *m, const char *now,
                          fx_queue_send_fn send, void *ctx)
{
    int sent = 0;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&s->recs, &i, &k, &v);) {
        struct qrec *r = v;
        json_t *patch = NULL;
        struct flexpu_queue_status st;
        int id = fx_model_queue_find(m, k);
        if (r->refused)
            patch = fx_queue_refused_patch(r->refused, now, r->obj);
        else if (id >= 0 && fx_model_queue_get(m, id, &st))
            patch = fx_queue_status_patch(&st, now, r->obj);
        if (!patch)
            continue;
        if (r->sent && json_equal(r->sent, patch)) {
            json_decref(patch);
            continue;
        }
        if (send(k, patch, ctx) == 0) {
            json_decref(r->sent);
            r->sent = patch;
            sent++;
        } else {
            json_decref(patch);
        }
    }
    return sent;
}

int fx_queue_sync_count(const struct fx_queue_sync *s)
{
    int n = 0;
    const char *k;
    void *v;
    for (size_t i = 0; fx_strmap_next(&s->recs, &i, &k, &v);)
        n++;
    return n;
}
