/* SPDX-License-Identifier: Apache-2.0 */
/* Leader election on a coordination.k8s.io/v1 Lease, the way Kubernetes
 * components do it: the holder renews every few seconds; others take over
 * once the record has not changed for a whole lease duration as measured by
 * their own clock; every write carries the resourceVersion read, so two
 * candidates can never both win. */
#include "kube/kube.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int duration(const struct kube_lease *l)
{
    return l->duration_s > 0 ? l->duration_s : 15;
}

/* A leader stops acting this long after its last renewal. */
static int64_t renew_deadline_ns(const struct kube_lease *l)
{
    return (int64_t)duration(l) * 1000000000LL * 2 / 3;
}

bool kube_lease_valid_for(const struct kube_lease *l, int64_t now_ns, int64_t for_ns)
{
    return l->leader && now_ns >= l->renewed_at_ns &&
           now_ns + for_ns - l->renewed_at_ns < renew_deadline_ns(l);
}

int64_t kube_lease_send_by(const struct kube_lease *l, int64_t for_ns)
{
    return l->leader ? l->renewed_at_ns + renew_deadline_ns(l) - for_ns : INT64_MIN;
}

/* The Lease's URL, or its collection's (to create it). */
static void lease_path(char *buf, size_t len, const struct kube_lease *l, bool collection)
{
    snprintf(buf, len, "/apis/coordination.k8s.io/v1/namespaces/%s/leases%s%s", l->namespace,
             collection ? "" : "/", collection ? "" : l->name);
}

static json_t *lease_body(const struct kube_lease *l, const char *holder, const char *acquire,
                          const char *renew, json_int_t transitions, const char *rv)
{
    json_t *meta = json_pack("{s:s, s:s}", "name", l->name, "namespace", l->namespace);
    if (rv)
        json_object_set_new(meta, "resourceVersion", json_string(rv));
    return json_pack("{s:s, s:s, s:o, s:{s:s, s:i, s:s, s:s, s:I}}", "apiVersion",
                     "coordination.k8s.io/v1", "kind", "Lease", "metadata", meta, "spec",
                     "holderIdentity", holder, "leaseDurationSeconds", duration(l), "acquireTime",
                     acquire, "renewTime", renew, "leaseTransitions", transitions);
}

static int write_lease(struct kube_client *c, struct kube_lease *l, const char *method,
                       json_t *body, int64_t now_ns, struct flexpu_error *err)
{
    char path[512];
    lease_path(path, sizeof(path), l, strcmp(method, "POST") == 0);
    long status;
    int rc = kube_request(c, method, path, body, NULL, &status, NULL, err);
    json_decref(body);
    if (rc == 0) {
        l->leader = true;
        l->renewed_at_ns = now_ns;
        return 0;
    }
    if (rc == FLEXPU_EEXIST) { /* another candidate wrote first */
        l->leader = false;
        return 0;
    }
    return rc;
}

int kube_lease_step(struct kube_client *c, struct kube_lease *l, int64_t now_ns,
                    struct flexpu_error *err)
{
    char path[512], now[40];
    int64_t dur_ns = (int64_t)duration(l) * 1000000000LL;
    lease_path(path, sizeof(path), l, false);
    kube_time_now(now, sizeof(now), true);
    long status;
    json_t *cur = NULL;
    int rc = kube_request(c, "GET", path, NULL, NULL, &status, &cur, err);
    if (rc == FLEXPU_ENOENT)
        return write_lease(c, l, "POST", lease_body(l, l->identity, now, now, 0, NULL), now_ns,
                           err);
    if (rc) {
        /* Cannot reach the server: a leader keeps leading only while its last
         * renewal is younger than two thirds of the lease, so it steps down
         * before anyone else can take over. */
        if (l->leader && now_ns - l->renewed_at_ns > renew_deadline_ns(l))
            l->leader = false;
        return rc;
    }
    const char *holder = kube_str(cur, "spec.holderIdentity");
    const char *renew = kube_str(cur, "spec.renewTime");
    const char *acquire = kube_str(cur, "spec.acquireTime");
    const char *rv = kube_str(cur, "metadata.resourceVersion");
    json_int_t transitions = json_integer_value(kube_get(cur, "spec.leaseTransitions"));
    char record[256];
    snprintf(record, sizeof(record), "%s|%s|%lld", holder ? holder : "", renew ? renew : "",
             (long long)transitions);
    if (strcmp(record, l->observed) != 0) {
        snprintf(l->observed, sizeof(l->observed), "%s", record);
        l->observed_at_ns = now_ns;
    }
    if (holder && strcmp(holder, l->identity) == 0) {
        json_t *b = lease_body(l, l->identity, acquire ? acquire : now, now, transitions, rv);
        json_decref(cur);
        rc = write_lease(c, l, "PUT", b, now_ns, err);
        if (rc && l->leader && now_ns - l->renewed_at_ns > renew_deadline_ns(l))
            l->leader = false;
        return rc;
    }
    if (holder && *holder && now_ns - l->observed_at_ns < dur_ns) {
        json_decref(cur);
        l->leader = false;
        return 0;
    }
    json_t *b = lease_body(l, l->identity, now, now, transitions + 1, rv);
    json_decref(cur);
    return write_lease(c, l, "PUT", b, now_ns, err);
}

int kube_lease_release(struct kube_client *c, struct kube_lease *l, struct flexpu_error *err)
{
    if (!l->leader)
        return 0;
    char path[512], now[40];
    lease_path(path, sizeof(path), l, false);
    long status;
    json_t *cur = NULL;
    int rc = kube_request(c, "GET", path, NULL, NULL, &status, &cur, err);
    if (rc)
        return rc;
    const char *holder = kube_str(cur, "spec.holderIdentity");
    if (!holder || strcmp(holder, l->identity) != 0) {
        json_decref(cur);
        l->leader = false;
        return 0;
    }
    kube_time_now(now, sizeof(now), true);
    json_t *b = lease_body(l, "", now, now, json_integer_value(kube_get(cur, "spec.leaseTransitions")),
                           kube_str(cur, "metadata.resourceVersion"));
    /* leaseDurationSeconds 1: successors need not wait a whole term. */
    json_object_set_new(json_object_get(b, "spec"), "leaseDurationSeconds", json_integer(1));
    json_decref(cur);
    rc = kube_request(c, "PUT", path, b, NULL, &status, NULL, err);
    json_decref(b);
    l->leader = false;
    return rc;
}
