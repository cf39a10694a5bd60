/* SPDX-License-Identifier: Apache-2.0 */
#include "scheduler/bind.h"

#include <stdio.h>
#include <string.h>

#include "flexpu/log.h"
#include "kube/contract.h"
#include "util/clock.h"

#define COMP "scheduler"

bool fx_binder_leading(const struct fx_binder *b)
{
    if (!b->lease)
        return true;
    int64_t bind_ns = (int64_t)kube_client_object_timeout_ms(b->c) * 1000000LL;
    return kube_lease_valid_for(b->lease, (int64_t)fx_mono_ns(), bind_ns);
}

static int bind_pod(struct kube_client *c, const struct fx_attempt *a, struct flexpu_error *err)
{
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
    int rc = kube_request(c, "POST", path, b, NULL, &status, NULL, err);
    json_decref(b);
    /* A Binding whose uid precondition fails, or for a pod already bound,
     * answers 409; a deleted pod 404; a timeout or a 5xx leaves it unknown. */
    return rc;
}

static void emit_event(struct kube_client *c, const struct fx_attempt *a, const char *type,
                       const char *reason, const char *instance)
{
    char path[512], now[40], gen[300];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events", a->ns);
    snprintf(gen, sizeof(gen), "%.250s.", a->name); /* the server appends a suffix */
    kube_time_now(now, sizeof(now), false);
    json_t *ev = json_pack(
        "{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s, s:s, s:s}, s:s, s:s, s:s, s:{s:s}, s:s, "
        "s:s, s:i, s:s, s:s}",
        "apiVersion", "v1", "kind", "Event", "metadata", "generateName", gen, "namespace",
        a->ns, "involvedObject", "apiVersion", "v1", "kind", "Pod", "namespace", a->ns, "name",
        a->name, "uid", a->uid, "type", type, "reason", reason, "message", a->message, "source",
        "component", "flexpu-scheduler", "firstTimestamp", now, "lastTimestamp", now, "count", 1,
        "reportingComponent", "flexpu-scheduler", "reportingInstance", instance);
    long status;
    struct flexpu_error err;
    if (kube_request(c, "POST", path, ev, NULL, &status, NULL, &err))
        FX_WARN(COMP, "cannot record an event", "pod=%s/%s error=\"%s\"", a->ns, a->name,
                err.msg);
    json_decref(ev);
}

int fx_bind_round(struct fx_model *m, struct fx_binder *b, int max, volatile int *stop)
{
    struct fx_attempt a;
    struct flexpu_error err = {0};
    int n = 0;
    /* The lease is checked before each decision, not once per round: a
     * round of binds can outlast what is left of it. */
    for (; n < max && !(stop && *stop) && fx_binder_leading(b) && fx_model_next(m, &a); n++) {
        if (a.outcome != FX_BIND) {
            const char *reason = a.outcome == FX_WAIT ? "FailedScheduling" : "InvalidRequest";
            FX_INFO(COMP, a.outcome == FX_WAIT ? "cannot place yet" : "invalid request",
                    "pod=%s/%s reason=\"%s\"", a.ns, a.name, a.message);
            emit_event(b->c, &a, "Warning", reason, b->identity);
            continue;
        }
        int rc = bind_pod(b->c, &a, &err);
        fx_model_bind_done(m, a.uid, rc, fx_mono_ms());
        if (rc) {
            b->bind_errors++;
            FX_WARN(COMP, "bind failed", "pod=%s/%s node=%s error=\"%s\"", a.ns, a.name, a.node,
                    err.msg);
        } else {
            b->binds++;
            FX_DEBUG(COMP, "bound", "pod=%s/%s node=%s allocation=%s", a.ns, a.name, a.node,
                     a.allocation);
            if (a.message[0]) { /* a bound pod's message: its priority annotation was capped */
                FX_WARN(COMP, "priority annotation ignored", "pod=%s/%s reason=\"%s\"", a.ns,
                        a.name, a.message);
                emit_event(b->c, &a, "Warning", "PriorityCapped", b->identity);
            }
        }
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
