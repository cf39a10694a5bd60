/* SPDX-License-Identifier: Apache-2.0 */
/* The writes preemption and queues make: evicting a victim through the
 * Eviction API, deleting a borrower a budget kept, nominating the
 * preemptor, a Queue's status; and a pending pod's PodScheduled condition.
 * Each is one request; the caller decides what a failure means for its
 * decision. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kube/http.h"

/* The message of a Status's cause with this reason, or NULL. */
static const char *status_cause(json_t *st, const char *reason)
{
    size_t i;
    json_t *cause;
    json_array_foreach(kube_get(st, "details.causes"), i, cause)
    {
        const char *r = json_string_value(json_object_get(cause, "reason"));
        if (r && strcmp(r, reason) == 0) {
            const char *m = json_string_value(json_object_get(cause, "message"));
            return m ? m : "";
        }
    }
    return NULL;
}

/* Whether a Status blames this field. */
static bool status_field_cause(json_t *st, const char *field)
{
    size_t i;
    json_t *cause;
    json_array_foreach(kube_get(st, "details.causes"), i, cause)
    {
        const char *f = json_string_value(json_object_get(cause, "field"));
        if (f && strcmp(f, field) == 0)
            return true;
    }
    return false;
}

int kube_evict(struct kube_client *c, const char *ns, const char *name, const char *uid,
               struct flexpu_error *err)
{
    char path[768];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s/eviction", ns, name);
    json_t *body = json_pack("{s:s, s:s, s:{s:s, s:s}}", "apiVersion", "policy/v1", "kind",
                             "Eviction", "metadata", "name", name, "namespace", ns);
    if (body && uid)
        json_object_set_new(body, "deleteOptions",
                            json_pack("{s:{s:s}}", "preconditions", "uid", uid));
    if (!body)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory evicting pod %s/%s", ns,
                                name);
    long status = 0;
    json_t *st = NULL;
    int rc = kube_request_status(c, "POST", path, body, NULL, &status, &st, err);
    json_decref(body);
    if (status == 0 || (status >= 200 && status <= 299)) {
        json_decref(st);
        return status ? 0 : rc; /* 2xx: done, whatever the body says */
    }
    const char *why = json_string_value(json_object_get(st, "message"));
    const char *budget = status == 429 ? status_cause(st, "DisruptionBudget") : NULL;
    /* A 409 is the UID precondition, or a budget's update that kept
     * conflicting with others' (the server retries those a few times). */
    bool replaced = status == 409 && why && strstr(why, "UID in the precondition");
    if (budget)
        rc = flexpu_error_set(err, FLEXPU_EBUSY,
                              "evicting pod %s/%s: refused by its PodDisruptionBudget: %s%s%s",
                              ns, name, why ? why : "(no message)", *budget ? " " : "", budget);
    else if (status == 429)
        rc = flexpu_error_set(err, FLEXPU_EIO, "evicting pod %s/%s: throttled (HTTP 429): %s", ns,
                              name, why ? why : "(no message)");
    else if (status == 404 || replaced)
        rc = flexpu_error_set(err, FLEXPU_ENOENT, "evicting pod %s/%s: %s (HTTP %ld): %s", ns,
                              name, replaced ? "another pod holds the name" : "gone", status,
                              why ? why : "(no message)");
    else if (status == 409)
        rc = flexpu_error_set(err, FLEXPU_EIO,
                              "evicting pod %s/%s: conflict, try again (HTTP 409): %s", ns, name,
                              why ? why : "(no message)");
    /* else: kube_request's code and message stand */
    json_decref(st);
    return rc;
}

int kube_delete_pod(struct kube_client *c, const char *ns, const char *name, const char *uid,
                    const char *cond_msg, struct flexpu_error *err)
{
    char path[768];
    /* First the condition an eviction would have set, as kube-scheduler
     * marks its victims: a Job's podFailurePolicy on DisruptionTarget then
     * treats the delete as the eviction it replaces. Best effort: the
     * delete matters more. */
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s/status", ns, name);
    json_t *body = json_pack("{s:{s:[{s:s, s:s, s:s, s:s}]}}", "status", "conditions", "type",
                             "DisruptionTarget", "status", "True", "reason",
                             "PreemptionByScheduler", "message",
                             cond_msg ? cond_msg : "flexpu-scheduler");
    if (body && uid)
        json_object_set_new(body, "metadata", json_pack("{s:s}", "uid", uid));
    long status = 0;
    struct flexpu_error perr = {0};
    /* Strategic: the pod's conditions merged by type, not replaced. */
    if (body)
        kube_request(c, "PATCH", path, body, KUBE_STRATEGIC_PATCH, &status, NULL, &perr);
    json_decref(body);
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", ns, name);
    body = json_pack("{s:s, s:s}", "apiVersion", "v1", "kind", "DeleteOptions");
    if (body && uid)
        json_object_set_new(body, "preconditions", json_pack("{s:s}", "uid", uid));
    if (!body)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory deleting pod %s/%s", ns,
                                name);
    status = 0;
    json_t *st = NULL;
    int rc = kube_request_status(c, "DELETE", path, body, NULL, &status, &st, err);
    json_decref(body);
    if (status >= 200 && status <= 299) {
        json_decref(st);
        return 0; /* the pod (its deletionTimestamp set) or a Status: deleted either way */
    }
    const char *why = json_string_value(json_object_get(st, "message"));
    /* The registry's words for a UID precondition that failed. */
    bool replaced = status == 409 && why && strstr(why, "UID in precondition");
    if (status == 404 || replaced)
        rc = flexpu_error_set(err, FLEXPU_ENOENT, "deleting pod %s/%s: %s (HTTP %ld): %s", ns,
                              name, replaced ? "another pod holds the name" : "gone", status,
                              why ? why : "(no message)");
    json_decref(st);
    return rc;
}

/* Sends `body` as a patch of content type `ctype` of the pod at `path`
 * (the body carries the pod's UID as a precondition) and takes it for done
 * on any 2xx; a pod gone (404) or replaced by another of its name (422
 * naming metadata.uid) is FLEXPU_ENOENT, its message starting with `what`.
 * Takes `body`. */
static int patch_pod_as(struct kube_client *c, const char *path, json_t *body, const char *ctype,
                        const char *what, struct flexpu_error *err)
{
    long status = 0;
    json_t *st = NULL;
    int rc = kube_request_status(c, "PATCH", path, body, ctype, &status, &st, err);
    json_decref(body);
    if (status >= 200 && status <= 299)
        rc = 0; /* written, whatever the body says */
    if (rc && (status == 404 || (status == 422 && status_field_cause(st, "metadata.uid"))))
        rc = flexpu_error_set(err, FLEXPU_ENOENT, "%s: %s", what,
                              status == 404 ? "the pod is gone" : "another pod holds the name");
    json_decref(st);
    return rc;
}

static int patch_pod(struct kube_client *c, const char *path, json_t *body, const char *what,
                     struct flexpu_error *err)
{
    return patch_pod_as(c, path, body, KUBE_MERGE_PATCH, what, err);
}

int kube_pod_unscheduled(struct kube_client *c, const char *ns, const char *name,
                         const char *uid, const char *reason, const char *message,
                         int64_t since_s, struct flexpu_error *err)
{
    char path[768], what[900], now[40];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s/status", ns, name);
    if (since_s > 0)
        kube_time_of(since_s, now, sizeof(now));
    else
        kube_time_now(now, sizeof(now), false);
    /* A strategic merge patch, as kube-scheduler's: status.conditions are
     * merged by their type, so the pod's other conditions stay. */
    json_t *body = json_pack("{s:{s:s}, s:{s:[{s:s, s:s, s:s, s:s, s:n, s:s}]}}", "metadata",
                             "uid", uid, "status", "conditions", "type", "PodScheduled",
                             "status", "False", "reason", reason, "message", message,
                             "lastProbeTime", "lastTransitionTime", now);
    if (!body)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory for pod %s/%s's condition",
                                ns, name);
    snprintf(what, sizeof(what), "setting PodScheduled=False (%s) on pod %s/%s", reason, ns,
             name);
    return patch_pod_as(c, path, body, KUBE_STRATEGIC_PATCH, what, err);
}

int kube_nominate(struct kube_client *c, const char *ns, const char *name, const char *uid,
                  const char *node, struct flexpu_error *err)
{
    char path[768], what[900];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s/status", ns, name);
    /* null deletes the field in a merge patch */
    json_t *body = json_pack("{s:{s:o}}", "status", "nominatedNodeName",
                             node ? json_string(node) : json_null());
    if (body && uid)
        json_object_set_new(body, "metadata", json_pack("{s:s}", "uid", uid));
    if (!body)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory nominating pod %s/%s", ns,
                                name);
    snprintf(what, sizeof(what), "nominating pod %s/%s for node %s", ns, name,
             node ? node : "(none)");
    return patch_pod(c, path, body, what, err);
}

int kube_label_pod(struct kube_client *c, const char *ns, const char *name, const char *uid,
                   const char *key, const char *value, struct flexpu_error *err)
{
    char path[768], what[900];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", ns, name);
    /* null deletes the label in a merge patch; the UID is a precondition */
    json_t *body = json_pack("{s:{s:s, s:{s:o}}}", "metadata", "uid", uid, "labels", key,
                             value ? json_string(value) : json_null());
    if (!body)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory labelling pod %s/%s", ns,
                                name);
    snprintf(what, sizeof(what), "labelling pod %s/%s %s=%s", ns, name, key,
             value ? value : "(removed)");
    return patch_pod(c, path, body, what, err);
}

int kube_queue_patch_status(struct kube_client *c, const char *name, json_t *patch,
                            struct flexpu_error *err)
{
    char path[512];
    snprintf(path, sizeof(path), KUBE_QUEUES_PATH "/%s/status", name);
    long status = 0;
    return kube_request(c, "PATCH", path, patch, KUBE_MERGE_PATCH, &status, NULL, err);
}
