/* SPDX-License-Identifier: Apache-2.0 */
#include "scheduler/relabel.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "flexpu/log.h"
#include "kube/contract.h"
#include "util/alloc.h"

#define COMP "scheduler"

struct entry {
    char uid[64], ns[256], name[256];
    char node[FX_NODE_NAME_MAX]; /* the label's value; empty: remove it */
    int64_t next_ms;
    struct entry *next;
};

struct fx_relabel {
    struct entry *head;
    int n;
};

struct fx_relabel *fx_relabel_new(void)
{
    return fx_calloc(1, sizeof(struct fx_relabel));
}

void fx_relabel_free(struct fx_relabel *r)
{
    if (!r)
        return;
    for (struct entry *e = r->head, *next; e; e = next) {
        next = e->next;
        fx_free(e);
    }
    fx_free(r);
}

int fx_relabel_pending(const struct fx_relabel *r)
{
    return r ? r->n : 0;
}

static void forget(struct fx_relabel *r, const char *uid)
{
    for (struct entry **pp = &r->head, *e; (e = *pp); pp = &e->next)
        if (strcmp(e->uid, uid) == 0) {
            *pp = e->next;
            fx_free(e);
            r->n--;
            return;
        }
}

/* What pod obj's label should become, or NULL when it is right (or the pod
 * is not bound, ended or being deleted, or its allocation unreadable): a
 * remote allocation's node, or "" (remove it) on a pod without a remote
 * slice that carries it (left by a remote attempt whose Binding failed,
 * before the pod was placed on a local slice). */
static const char *wanted_node(json_t *obj, struct fx_allocation *al)
{
    const char *node = kube_str(obj, "spec.nodeName");
    const char *phase = kube_str(obj, "status.phase");
    const char *text = kube_annotation(obj, FX_ANN_ALLOCATION);
    struct flexpu_error err = {0};
    if (!node || !*node || kube_get(obj, "metadata.deletionTimestamp") ||
        (phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0)))
        return NULL;
    al->remote_node[0] = 0;
    if (text && fx_allocation_parse(text, al, &err) != 0)
        return NULL;
    json_t *labels = kube_get(obj, "metadata.labels");
    const char *have = json_string_value(json_object_get(labels, FX_LABEL_REMOTE_GPU_NODE));
    if (!al->remote_node[0])
        return have ? "" : NULL;
    return have && strcmp(have, al->remote_node) == 0 ? NULL : al->remote_node;
}

void fx_relabel_pod_event(struct fx_relabel *r, enum kube_event ev, json_t *obj)
{
    if (!r || !obj)
        return; /* SYNC_*: a relist delivers every pod again as ADDED */
    const char *uid = kube_str(obj, "metadata.uid");
    if (!uid || !*uid || strlen(uid) >= sizeof(((struct entry *)0)->uid))
        return;
    struct fx_allocation al;
    const char *node = ev == KUBE_DELETED ? NULL : wanted_node(obj, &al);
    if (!node) {
        forget(r, uid);
        return;
    }
    struct entry *e = r->head;
    while (e && strcmp(e->uid, uid) != 0)
        e = e->next;
    if (!e) {
        if (!(e = fx_calloc(1, sizeof(*e))))
            return; /* the next event of the pod tries again */
        snprintf(e->uid, sizeof(e->uid), "%s", uid);
        e->next = r->head;
        r->head = e;
        r->n++;
    }
    snprintf(e->ns, sizeof(e->ns), "%s", kube_str(obj, "metadata.namespace") ?: "");
    snprintf(e->name, sizeof(e->name), "%s", kube_str(obj, "metadata.name") ?: "");
    snprintf(e->node, sizeof(e->node), "%s", node);
}

int fx_relabel_round(struct fx_relabel *r, struct kube_client *c, int max, int64_t now_ms)
{
    int sent = 0;
    for (struct entry **pp = &r->head, *e; sent < max && (e = *pp);) {
        if (now_ms < e->next_ms) {
            pp = &e->next;
            continue;
        }
        struct flexpu_error err = {0};
        int rc = kube_label_pod(c, e->ns, e->name, e->uid, FX_LABEL_REMOTE_GPU_NODE,
                                e->node[0] ? e->node : NULL, &err);
        sent++;
        if (rc == 0 || rc == FLEXPU_ENOENT) {
            if (rc == 0 && e->node[0])
                FX_INFO(COMP, "remote pod labelled with its GPU node",
                        "pod=%s/%s " FX_LABEL_REMOTE_GPU_NODE "=%s", e->ns, e->name, e->node);
            else if (rc == 0)
                FX_INFO(COMP, "label removed from a pod without a remote slice", "pod=%s/%s "
                        "label=%s", e->ns, e->name, FX_LABEL_REMOTE_GPU_NODE);
            *pp = e->next;
            fx_free(e);
            r->n--;
            continue;
        }
        FX_WARN(COMP, "cannot set a pod's remote GPU node label; will retry",
                "pod=%s/%s node=%s error=\"%s\"", e->ns, e->name,
                e->node[0] ? e->node : "(removed)", err.msg);
        e->next_ms = now_ms + FX_RELABEL_RETRY_MS;
        pp = &e->next;
    }
    return sent;
}
