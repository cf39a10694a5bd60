/* SPDX-License-Identifier: Apache-2.0 */
/* The writes preemption and queues make (src/kube/evict.c), against the
 * small HTTP server on loopback: the request each sends, and how each of the
 * API server's answers (bodies as a real one sends them) becomes a code. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>

#include "http_fake.h"
#include "kube/http.h"
#include "kube/kube.h"

/* Answers as kube-apiserver does (test/e2e/queue_crd_e2e.sh sees the same
 * from a real one). */
static const char *PDB_429 =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
    "\"message\":\"Cannot evict pod as it would violate the pod's disruption budget.\","
    "\"reason\":\"TooManyRequests\",\"details\":{\"causes\":[{\"reason\":\"DisruptionBudget\","
    "\"message\":\"The disruption budget web needs 2 healthy pods and has 2 currently\"}],"
    "\"retryAfterSeconds\":10},\"code\":429}";
static const char *THROTTLED_429 =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
    "\"message\":\"Too many requests, please try again later.\",\"reason\":\"TooManyRequests\","
    "\"details\":{\"retryAfterSeconds\":1},\"code\":429}";
static const char *UID_409 =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"Operation "
    "cannot be fulfilled on Pod \\\"w1\\\": the UID in the precondition (u-old) does not match "
    "the UID in record (u-new).\",\"reason\":\"Conflict\",\"code\":409}";
static const char *GONE_404 =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
    "\"message\":\"pods \\\"w1\\\" not found\",\"reason\":\"NotFound\",\"code\":404}";
static const char *FORBIDDEN_403 =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"pods "
    "\\\"w1\\\" is forbidden: User cannot create resource \\\"pods/eviction\\\"\","
    "\"reason\":\"Forbidden\",\"code\":403}";
static const char *UID_422 =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"Pod "
    "\\\"w1\\\" is invalid: metadata.uid: Invalid value: \\\"u-old\\\": field is immutable\","
    "\"reason\":\"Invalid\",\"details\":{\"causes\":[{\"reason\":\"FieldValueInvalid\","
    "\"message\":\"field is immutable\",\"field\":\"metadata.uid\"}]},\"code\":422}";
static const char *BOUND_422 =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"Pod "
    "\\\"w1\\\" is invalid: status.nominatedNodeName: Forbidden: may not be set on pods that "
    "are already bound to a node\",\"reason\":\"Invalid\",\"details\":{\"causes\":[{\"reason\":"
    "\"FieldValueForbidden\",\"field\":\"status.nominatedNodeName\"}]},\"code\":422}";

/* One request against a server answering status/body; the server, stopped,
 * is left in *srv, its record of the request readable until the test ends. */
static int evict_once(struct http_srv **srv, int status, const char *body, const char *uid,
                      struct flexpu_error *err)
{
    *srv = http_new((struct http_srv){.status = status, .body = body});
    struct kube_client *c = loopback_client((*srv)->port);
    int rc = kube_evict(c, "team-a", "w1", uid, err);
    kube_client_free(c);
    http_stop(*srv);
    return rc;
}

static void test_evict_request(void **state)
{
    (void)state;
    struct http_srv *srv;
    struct flexpu_error err = {0};
    const char *ok = "{\"kind\":\"Status\",\"status\":\"Success\",\"code\":201}";
    assert_int_equal(evict_once(&srv, 201, ok, "u-1", &err), 0);
    assert_int_equal(srv->nreq, 1);
    assert_string_equal(srv->method, "POST");
    assert_string_equal(srv->path, "/api/v1/namespaces/team-a/pods/w1/eviction");
    json_t *b = json_loads(srv->req_body, 0, NULL);
    assert_non_null(b);
    assert_string_equal(kube_str(b, "apiVersion"), "policy/v1");
    assert_string_equal(kube_str(b, "kind"), "Eviction");
    assert_string_equal(kube_str(b, "metadata.name"), "w1");
    assert_string_equal(kube_str(b, "metadata.namespace"), "team-a");
    assert_string_equal(kube_str(b, "deleteOptions.preconditions.uid"), "u-1");
    json_decref(b);

    /* without a uid: no precondition at all */
    assert_int_equal(evict_once(&srv, 201, "{}", NULL, &err), 0);
    b = json_loads(srv->req_body, 0, NULL);
    assert_non_null(b);
    assert_null(json_object_get(b, "deleteOptions"));
    json_decref(b);
}

/* Each answer becomes the code the victim search acts on. */
static void test_evict_outcomes(void **state)
{
    (void)state;
    struct http_srv *srv;
    struct flexpu_error err = {0};

    /* a budget refuses: another victim may do */
    assert_int_equal(evict_once(&srv, 429, PDB_429, "u-1", &err), FLEXPU_EBUSY);
    assert_non_null(strstr(err.msg, "team-a/w1"));
    assert_non_null(strstr(err.msg, "PodDisruptionBudget"));
    assert_non_null(strstr(err.msg, "budget web needs 2 healthy pods"));

    /* throttled by the API server, not a budget: try again later */
    err = (struct flexpu_error){0};
    assert_int_equal(evict_once(&srv, 429, THROTTLED_429, "u-1", &err), FLEXPU_EIO);
    assert_non_null(strstr(err.msg, "throttled"));
    assert_null(strstr(err.msg, "PodDisruptionBudget"));
    /* a 429 without a JSON body is throttling too */
    assert_int_equal(evict_once(&srv, 429, "slow down", "u-1", &err), FLEXPU_EIO);

    /* gone, or another pod under the name: the victim is gone */
    assert_int_equal(evict_once(&srv, 404, GONE_404, "u-1", &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "gone"));
    assert_int_equal(evict_once(&srv, 409, UID_409, "u-old", &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "another pod holds the name"));

    /* a budget's update that kept conflicting: not the pod's fault, try again */
    assert_int_equal(evict_once(&srv, 409, "{\"message\":\"Operation cannot be fulfilled on "
                                           "poddisruptionbudgets.policy \\\"web\\\": the object "
                                           "has been modified\"}",
                                "u-1", &err),
                     FLEXPU_EIO);
    assert_non_null(strstr(err.msg, "try again"));
    /* done is done, whatever the body */
    assert_int_equal(evict_once(&srv, 201, "not json", "u-1", &err), 0);

    /* RBAC: the server's own message stands */
    assert_int_equal(evict_once(&srv, 403, FORBIDDEN_403, "u-1", &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "HTTP 403"));
    assert_non_null(strstr(err.msg, "forbidden"));
    assert_int_equal(evict_once(&srv, 500, "{\"message\":\"etcd down\"}", "u-1", &err),
                     FLEXPU_EIO);
    assert_non_null(strstr(err.msg, "etcd down"));
}

/* A borrower a budget kept is deleted (src/kube/evict.c, kube_delete_pod):
 * DELETE of the pod itself with its UID as precondition and no grace
 * period of ours, and the answers as the registry gives them. */
static const char *DELETE_UID_409 =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"Operation "
    "cannot be fulfilled on pods \\\"w1\\\": Precondition failed: UID in precondition: u-old, UID "
    "in object meta: u-new\",\"reason\":\"Conflict\",\"code\":409}";
static const char *DELETE_FORBIDDEN_403 =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"pods "
    "\\\"w1\\\" is forbidden: User cannot delete resource \\\"pods\\\"\",\"reason\":"
    "\"Forbidden\",\"code\":403}";

static int delete_once(struct http_srv **srv, int status, const char *body, const char *uid,
                       struct flexpu_error *err)
{
    *srv = http_new((struct http_srv){.status = status, .body = body});
    struct kube_client *c = loopback_client((*srv)->port);
    int rc = kube_delete_pod(c, "team-a", "w1", uid, "flexpu-scheduler: reclaimed", err);
    kube_client_free(c);
    http_stop(*srv);
    return rc;
}

static void test_delete_pod(void **state)
{
    (void)state;
    struct http_srv *srv;
    struct flexpu_error err = {0};
    /* 200 with the pod, its deletionTimestamp set: its grace period runs */
    assert_int_equal(delete_once(&srv, 200,
                                 "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"w1\","
                                 "\"deletionTimestamp\":\"2026-01-01T00:00:30Z\"}}",
                                 "u-1", &err),
                     0);
    assert_int_equal(srv->nreq, 2); /* the DisruptionTarget condition, then the delete */
    assert_string_equal(srv->method, "DELETE");
    assert_string_equal(srv->path, "/api/v1/namespaces/team-a/pods/w1");
    json_t *b = json_loads(srv->req_body, 0, NULL);
    assert_non_null(b);
    assert_string_equal(kube_str(b, "kind"), "DeleteOptions");
    assert_string_equal(kube_str(b, "preconditions.uid"), "u-1");
    assert_null(json_object_get(b, "gracePeriodSeconds")); /* the pod's own */
    json_decref(b);
    assert_int_equal(delete_once(&srv, 202, "{}", NULL, &err), 0);
    b = json_loads(srv->req_body, 0, NULL);
    assert_non_null(b);
    assert_null(json_object_get(b, "preconditions"));
    json_decref(b);

    /* gone, or another pod under the name */
    assert_int_equal(delete_once(&srv, 404, GONE_404, "u-1", &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "gone"));
    assert_int_equal(delete_once(&srv, 409, DELETE_UID_409, "u-old", &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "another pod holds the name"));
    /* RBAC without the verb: the server's message stands */
    err = (struct flexpu_error){0};
    assert_int_equal(delete_once(&srv, 403, DELETE_FORBIDDEN_403, "u-1", &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "HTTP 403"));
    assert_non_null(strstr(err.msg, "cannot delete"));
    assert_int_equal(delete_once(&srv, 500, "{\"message\":\"etcd down\"}", "u-1", &err),
                     FLEXPU_EIO);
}

static int nominate_once(struct http_srv **srv, int status, const char *body, const char *node,
                         struct flexpu_error *err)
{
    *srv = http_new((struct http_srv){.status = status, .body = body});
    struct kube_client *c = loopback_client((*srv)->port);
    int rc = kube_nominate(c, "team-a", "w1", "u-1", node, err);
    kube_client_free(c);
    http_stop(*srv);
    return rc;
}

static void test_nominate(void **state)
{
    (void)state;
    struct http_srv *srv;
    struct flexpu_error err = {0};
    assert_int_equal(nominate_once(&srv, 200, "{\"kind\":\"Pod\"}", "gpu-7", &err), 0);
    assert_string_equal(srv->method, "PATCH");
    assert_string_equal(srv->path, "/api/v1/namespaces/team-a/pods/w1/status");
    json_t *b = json_loads(srv->req_body, 0, NULL);
    assert_non_null(b);
    assert_string_equal(kube_str(b, "status.nominatedNodeName"), "gpu-7");
    assert_string_equal(kube_str(b, "metadata.uid"), "u-1");
    json_decref(b);

    /* clearing: null removes the field in a merge patch */
    assert_int_equal(nominate_once(&srv, 200, "{}", NULL, &err), 0);
    b = json_loads(srv->req_body, 0, NULL);
    assert_non_null(b);
    assert_true(json_is_null(kube_get(b, "status.nominatedNodeName")));
    json_decref(b);

    assert_int_equal(nominate_once(&srv, 422, UID_422, "gpu-7", &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "another pod holds the name"));
    assert_int_equal(nominate_once(&srv, 404, GONE_404, "gpu-7", &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "gone"));
    /* a bound pod: any other 422 keeps the server's words */
    assert_int_equal(nominate_once(&srv, 422, BOUND_422, "gpu-7", &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "already bound"));
}

static void test_queue_patch_status(void **state)
{
    (void)state;
    struct http_srv *srv =
        http_new((struct http_srv){.status = 200, .body = "{\"kind\":\"Queue\"}"});
    struct kube_client *c = loopback_client(srv->port);
    struct flexpu_error err = {0};
    json_t *patch = json_pack("{s:{s:{s:s}}}", "status", "allocated", "flexpu.io/gpu", "3");
    assert_int_equal(kube_queue_patch_status(c, "team-a", patch, &err), 0);
    assert_string_equal(srv->method, "PATCH");
    assert_string_equal(srv->path, "/apis/flexpu.io/v1alpha1/queues/team-a/status");
    json_t *b = json_loads(srv->req_body, 0, NULL);
    assert_true(json_equal(b, patch));
    json_decref(b);
    kube_client_free(c);
    http_stop(srv);

    srv = http_new((struct http_srv){.status = 404, .body = GONE_404});
    c = loopback_client(srv->port);
    assert_int_equal(kube_queue_patch_status(c, "gone", patch, &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "queues/gone/status"));
    kube_client_free(c);
    http_stop(srv);
    json_decref(patch);
}

/* kube_request_status hands back the server's Status on a failure, and
 * kube_request does not. */
static void test_request_status_body(void **state)
{
    (void)state;
    struct http_srv *srv = http_new((struct http_srv){.status = 429, .body = PDB_429});
    struct kube_client *c = loopback_client(srv->port);
    struct flexpu_error err = {0};
    long status = 0;
    json_t *out = NULL;
    assert_int_equal(kube_request_status(c, "GET", "/api/v1/x", NULL, NULL, &status, &out, &err),
                     FLEXPU_EIO);
    assert_int_equal(status, 429);
    assert_non_null(out);
    assert_string_equal(kube_str(out, "reason"), "TooManyRequests");
    json_decref(out);
    out = NULL;
    assert_int_equal(kube_request(c, "GET", "/api/v1/x", NULL, NULL, &status, &out, &err),
                     FLEXPU_EIO);
    assert_null(out);
    kube_client_free(c);
    http_stop(srv);
}

static int label_once(struct http_srv **srv, int status, const char *body, const char *value,
                      struct flexpu_error *err)
{
    *srv = http_new((struct http_srv){.status = status, .body = body});
    struct kube_client *c = loopback_client((*srv)->port);
    int rc = kube_label_pod(c, "team-a", "w1", "u-1", "flexpu.io/remote-gpu-node", value, err);
    kube_client_free(c);
    http_stop(*srv);
    return rc;
}

/* kube_label_pod: a merge patch of the pod with its UID and the label (null
 * removes it); the pod gone or another under its name is FLEXPU_ENOENT,
 * a conflict or a refusal is not. */
static void test_label_pod(void **state)
{
    (void)state;
    struct http_srv *srv;
    struct flexpu_error err = {0};
    assert_int_equal(label_once(&srv, 200, "{\"kind\":\"Pod\"}", "gpu-7", &err), 0);
    assert_string_equal(srv->method, "PATCH");
    assert_string_equal(srv->path, "/api/v1/namespaces/team-a/pods/w1");
    json_t *b = json_loads(srv->req_body, 0, NULL);
    assert_non_null(b);
    assert_string_equal(kube_str(b, "metadata.uid"), "u-1");
    json_t *labels = kube_get(b, "metadata.labels");
    assert_string_equal(json_string_value(json_object_get(labels, "flexpu.io/remote-gpu-node")),
                        "gpu-7");
    assert_int_equal(json_object_size(b), 1);
    json_decref(b);
    assert_int_equal(label_once(&srv, 200, "{\"kind\":\"Pod\"}", NULL, &err), 0);
    b = json_loads(srv->req_body, 0, NULL);
    assert_true(json_is_null(json_object_get(kube_get(b, "metadata.labels"),
                                             "flexpu.io/remote-gpu-node")));
    json_decref(b);
    const char *gone = "{\"kind\":\"Status\",\"code\":404}";
    const char *conflict = "{\"kind\":\"Status\",\"code\":409}";
    assert_int_equal(label_once(&srv, 404, gone, "gpu-7", &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "gone"));
    assert_int_equal(label_once(&srv, 422, UID_422, "gpu-7", &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "another pod holds the name"));
    assert_int_equal(label_once(&srv, 409, conflict, "gpu-7", &err), FLEXPU_EEXIST);
    assert_int_equal(label_once(&srv, 403, FORBIDDEN_403, "gpu-7", &err), FLEXPU_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        http_test(test_evict_request),
        http_test(test_evict_outcomes),
        http_test(test_delete_pod),
        http_test(test_nominate),
        http_test(test_label_pod),
        http_test(test_queue_patch_status),
        http_test(test_request_status_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
