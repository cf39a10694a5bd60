/* SPDX-License-Identifier: Apache-2.0 */
/* Remote pods bound before flexpu-scheduler labelled them
 * (scheduler/relabel.h): which pods the scheduler labels with their GPU
 * node, the patch it sends (the pod's UID, the label alone), and what a
 * success, a gone pod and a failure do; against a small HTTP server on
 * loopback (http_fake.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "http_fake.h"
#include "kube/contract.h"
#include "scheduler/relabel.h"

#define REMOTE_ALLOC                                                                               \
    "{\"gpus\":[{\"uuid\":\"GPU-a\",\"index\":0,\"cores\":30,\"memory\":1073741824}],"            \
    "\"remote\":{\"node\":\"gpu-1\"}}"
#define LOCAL_ALLOC                                                                                \
    "{\"gpus\":[{\"uuid\":\"GPU-a\",\"index\":0,\"cores\":30,\"memory\":1073741824}]}"

/* A pod: bound to node (NULL: pending), with allocation (NULL: none) and
 * the label (NULL: none). */
static json_t *pod(const char *uid, const char *node, const char *alloc, const char *label)
{
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:{}, s:{}}, s:{}, s:{s:s}}", "metadata", "name", uid,
                          "namespace", "t", "uid", uid, "annotations", "labels", "spec", "status",
                          "phase", node ? "Running" : "Pending");
    if (node)
        json_object_set_new(json_object_get(p, "spec"), "nodeName", json_string(node));
    if (alloc)
        json_object_set_new(kube_get(p, "metadata.annotations"), FX_ANN_ALLOCATION,
                            json_string(alloc));
    if (label)
        json_object_set_new(kube_get(p, "metadata.labels"), FX_LABEL_REMOTE_GPU_NODE,
                            json_string(label));
    return p;
}

static void event(struct fx_relabel *r, enum kube_event ev, json_t *p)
{
    fx_relabel_pod_event(r, ev, p);
    json_decref(p);
}

static void test_which_pods(void **state)
{
    (void)state;
    struct fx_relabel *r = fx_relabel_new();
    assert_non_null(r);
    event(r, KUBE_ADDED, pod("pending", NULL, REMOTE_ALLOC, NULL)); /* the bind labels it */
    event(r, KUBE_ADDED, pod("local", "cpu-1", LOCAL_ALLOC, NULL));
    event(r, KUBE_ADDED, pod("cpu-only", "cpu-1", NULL, NULL));
    event(r, KUBE_ADDED, pod("labelled", "cpu-1", REMOTE_ALLOC, "gpu-1"));
    event(r, KUBE_ADDED, pod("bad-alloc", "cpu-1", "{\"gpus\":[", NULL));
    json_t *ended = pod("ended", "cpu-1", REMOTE_ALLOC, NULL);
    json_object_set_new(json_object_get(ended, "status"), "phase", json_string("Succeeded"));
    event(r, KUBE_ADDED, ended);
    json_t *going = pod("going", "cpu-1", REMOTE_ALLOC, NULL);
    json_object_set_new(json_object_get(going, "metadata"), "deletionTimestamp",
                        json_string("2026-12-06T00:00:00Z"));
    event(r, KUBE_ADDED, going);
    assert_int_equal(fx_relabel_pending(r), 0);

    event(r, KUBE_ADDED, pod("pending-labelled", NULL, NULL, "gpu-1")); /* not bound yet */
    assert_int_equal(fx_relabel_pending(r), 0);

    event(r, KUBE_ADDED, pod("old", "cpu-1", REMOTE_ALLOC, NULL));
    event(r, KUBE_ADDED, pod("wrong", "cpu-1", REMOTE_ALLOC, "gpu-9"));
    assert_int_equal(fx_relabel_pending(r), 2);
    event(r, KUBE_MODIFIED, pod("old", "cpu-1", REMOTE_ALLOC, NULL)); /* still one entry */
    assert_int_equal(fx_relabel_pending(r), 2);
    event(r, KUBE_MODIFIED, pod("old", "cpu-1", REMOTE_ALLOC, "gpu-1")); /* labelled */
    assert_int_equal(fx_relabel_pending(r), 1);
    event(r, KUBE_DELETED, pod("wrong", "cpu-1", REMOTE_ALLOC, "gpu-9"));
    assert_int_equal(fx_relabel_pending(r), 0);
    /* A label left on a pod then bound to a local slice, or without GPUs. */
    event(r, KUBE_ADDED, pod("stale", "gpu-1", LOCAL_ALLOC, "gpu-1"));
    event(r, KUBE_ADDED, pod("stale-cpu", "cpu-1", NULL, "gpu-1"));
    assert_int_equal(fx_relabel_pending(r), 2);
    event(r, KUBE_MODIFIED, pod("stale", "gpu-1", LOCAL_ALLOC, NULL));
    event(r, KUBE_MODIFIED, pod("stale-cpu", "cpu-1", NULL, NULL));
    assert_int_equal(fx_relabel_pending(r), 0);
    fx_relabel_free(r);
}

static void test_round(void **state)
{
    (void)state;
    struct http_srv *srv = http_new((struct http_srv){.status = 200, .body = "{}"});
    struct kube_client *c = loopback_client(srv->port);
    struct fx_relabel *r = fx_relabel_new();
    event(r, KUBE_ADDED, pod("old", "cpu-1", REMOTE_ALLOC, NULL));
    assert_int_equal(fx_relabel_round(r, c, 16, 1000), 1);
    assert_string_equal(srv->log, "PATCH /api/v1/namespaces/t/pods/old\n");
    json_t *patch = json_loads(srv->req_body, 0, NULL);
    assert_non_null(patch);
    assert_string_equal(kube_str(patch, "metadata.uid"), "old");
    json_t *labels = kube_get(patch, "metadata.labels");
    assert_int_equal(json_object_size(labels), 1);
    assert_string_equal(json_string_value(json_object_get(labels, FX_LABEL_REMOTE_GPU_NODE)),
                        "gpu-1");
    assert_int_equal(json_object_size(json_object_get(patch, "metadata")), 2);
    json_decref(patch);
    assert_int_equal(fx_relabel_pending(r), 0); /* done */
    assert_int_equal(fx_relabel_round(r, c, 16, 2000), 0);

    /* A failure is tried again FX_RELABEL_RETRY_MS later, not before. */
    srv->status = 500;
    srv->body = "{\"kind\":\"Status\",\"code\":500,\"message\":\"boom\"}";
    event(r, KUBE_ADDED, pod("old", "cpu-1", REMOTE_ALLOC, NULL));
    assert_int_equal(fx_relabel_round(r, c, 16, 1000), 1);
    assert_int_equal(fx_relabel_pending(r), 1);
    assert_int_equal(fx_relabel_round(r, c, 16, 1000 + FX_RELABEL_RETRY_MS - 1), 0);
    /* The pod gone (another pod holds the name: 422 on metadata.uid, as
     * the API server answers a patch whose UID differs): forgotten. */
    srv->status = 422;
    srv->body = "{\"kind\":\"Status\",\"code\":422,\"reason\":\"Invalid\",\"message\":"
               "\"metadata.uid: field is immutable\",\"details\":{\"causes\":[{\"field\":"
               "\"metadata.uid\"}]}}";
    assert_int_equal(fx_relabel_round(r, c, 16, 1000 + FX_RELABEL_RETRY_MS), 1);
    assert_int_equal(fx_relabel_pending(r), 0);
    /* At most `max` writes a round. */
    srv->status = 200;
    srv->body = "{}";
    event(r, KUBE_ADDED, pod("a", "cpu-1", REMOTE_ALLOC, NULL));
    event(r, KUBE_ADDED, pod("b", "cpu-1", REMOTE_ALLOC, NULL));
    event(r, KUBE_ADDED, pod("c", "cpu-1", REMOTE_ALLOC, NULL));
    assert_int_equal(fx_relabel_round(r, c, 2, 0), 2);
    assert_int_equal(fx_relabel_pending(r), 1);
    assert_int_equal(fx_relabel_round(r, c, 2, 0), 1);
    /* A stale label on a local pod: removed (null in the merge patch). */
    event(r, KUBE_ADDED, pod("stale", "gpu-1", LOCAL_ALLOC, "gpu-1"));
    assert_int_equal(fx_relabel_round(r, c, 16, 0), 1);
    patch = json_loads(srv->req_body, 0, NULL);
    assert_non_null(patch);
    assert_string_equal(kube_str(patch, "metadata.uid"), "stale");
    labels = kube_get(patch, "metadata.labels");
    assert_int_equal(json_object_size(labels), 1);
    assert_true(json_is_null(json_object_get(labels, FX_LABEL_REMOTE_GPU_NODE)));
    json_decref(patch);
    assert_int_equal(fx_relabel_pending(r), 0);
    fx_relabel_free(r);
    kube_client_free(c);
    http_stop(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        http_test(test_which_pods),
        http_test(test_round),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
