/* SPDX-License-Identifier: Apache-2.0 */
/* Queue objects into the scheduler's model and their status back out
 * (src/scheduler/queues.c): specs accepted and refused, relists, and status
 * written only when it changed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "scheduler/model.h"
#include "scheduler/queues.h"

#include "model_fixture.h"

static json_t *queue_obj(const char *name, const char *parent, const char *gpu_guar,
                         const char *gpu_limit)
{
    json_t *spec = json_object();
    if (parent)
        json_object_set_new(spec, "parent", json_string(parent));
    if (gpu_guar)
        json_object_set_new(spec, "guaranteed", json_pack("{s:s}", "flexpu.io/gpu", gpu_guar));
    if (gpu_limit)
        json_object_set_new(spec, "limit", json_pack("{s:s}", "flexpu.io/gpu", gpu_limit));
    json_t *q = json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", "flexpu.io/v1alpha1",
                          "kind", "Queue", "metadata", "name", name, "uid", name, "spec", spec);
    assert_non_null(q);
    return q;
}

static void event(struct fx_queue_sync *s, struct fx_model *m, enum kube_event ev,
                  json_t *obj)
{
    fx_queue_sync_event(s, m, ev, obj);
    json_decref(obj);
}

/* The patches a publish round sends, by queue name; `fail` makes every
 * send fail. */
struct sink {
    int n;
    char names[8][64];
    json_t *patches[8];
    bool fail;
};

static int record(const char *name, json_t *patch, void *ctx)
{
    struct sink *k = ctx;
    if (k->fail)
        return -1;
    assert_true(k->n < 8);
    snprintf(k->names[k->n], sizeof(k->names[0]), "%s", name);
    k->patches[k->n++] = json_incref(patch);
    return 0;
}

static void sink_clear(struct sink *k)
{
    for (int i = 0; i < k->n; i++)
        json_decref(k->patches[i]);
    memset(k, 0, sizeof(*k));
}

static json_t *sent_to(struct sink *k, const char *name)
{
    for (int i = 0; i < k->n; i++)
        if (strcmp(k->names[i], name) == 0)
            return k->patches[i];
    return NULL;
}

static void test_specs_into_the_model(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    struct fx_queue_sync *s = fx_queue_sync_new();
    assert_non_null(s);
    event(s, m, KUBE_SYNC_BEGIN, NULL);
    event(s, m, KUBE_ADDED, queue_obj("org", NULL, "4", "8"));
    event(s, m, KUBE_ADDED, queue_obj("team", "org", "2", NULL));
    event(s, m, KUBE_SYNC_END, NULL);
    int team = fx_model_queue_find(m, "team");
    assert_true(team >= 0);
    struct flexpu_queue_status st;
    assert_true(fx_model_queue_get(m, team, &st));
    assert_string_equal(st.parent, "org");
    assert_int_equal(st.guaranteed[FLEXPU_RES_GPU], 2);
    assert_int_equal(st.limit[FLEXPU_RES_GPU], FLEXPU_QUEUE_UNLIMITED);
    assert_true(fx_model_queue_get(m, fx_model_queue_find(m, "org"), &st));
    assert_int_equal(st.limit[FLEXPU_RES_GPU], 8);
    assert_int_equal(fx_queue_sync_count(s), 2);

    /* A refused spec (limit below the guarantee: the schema's CEL rule can
     * be missing on an old API server) keeps the last accepted one. */
    event(s, m, KUBE_MODIFIED, queue_obj("org", NULL, "4", "2"));
    assert_true(fx_model_queue_get(m, fx_model_queue_find(m, "org"), &st));
    assert_int_equal(st.limit[FLEXPU_RES_GPU], 8);
    struct sink k = {0};
    fx_queue_sync_publish(s, m, "2026-12-05T00:00:00Z", record, &k);
    json_t *org = sent_to(&k, "org");
    assert_non_null(org);
    char *text = json_dumps(org, JSON_COMPACT);
    if (!strstr(text, "InvalidSpec") || !strstr(text, "spec.limit"))
        fail_msg("the refused queue's status does not say why: %s", text);
    free(text);
    sink_clear(&k);

    /* A relist without "team" removes it; DELETED removes "org". */
    event(s, m, KUBE_SYNC_BEGIN, NULL);
    event(s, m, KUBE_ADDED, queue_obj("org", NULL, "4", "8"));
    event(s, m, KUBE_SYNC_END, NULL);
    assert_int_equal(fx_model_queue_find(m, "team"), -1);
    assert_int_equal(fx_queue_sync_count(s), 1);
    event(s, m, KUBE_DELETED, queue_obj("org", NULL, NULL, NULL));
    assert_int_equal(fx_model_queue_find(m, "org"), -1);
    assert_int_equal(fx_queue_sync_count(s), 0);
    fx_queue_sync_free(s);
    fx_model_free(m);
}

/* Status goes out once, again only when it changed, and again after a
 * failed write. */
static void test_status_written_when_changed(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    struct fx_queue_sync *s = fx_queue_sync_new();
    event(s, m, KUBE_ADDED, queue_obj("a", NULL, "1", NULL));
    struct sink k = {0};
    assert_int_equal(fx_queue_sync_publish(s, m, "2026-12-05T00:00:00Z", record, &k), 1);
    json_t *st = json_object_get(sent_to(&k, "a"), "status");
    assert_non_null(st);
    assert_string_equal(json_string_value(json_object_get(json_object_get(st, "guaranteed"),
                                                          "flexpu.io/gpu")),
                        "1");
    /* Nothing changed (the object as written comes back through the
     * watch, conditions and all): nothing sent, later as well. */
    json_t *back = queue_obj("a", NULL, "1", NULL);
    json_object_set(back, "status", st);
    sink_clear(&k);
    event(s, m, KUBE_MODIFIED, back);
    struct sink k0 = {0};
    fx_queue_sync_publish(s, m, "2026-12-05T00:00:10Z", record, &k0);
    assert_int_equal(k0.n, 0);
    /* A pod joins: pending changes, status goes out; a failed write is
     * tried again at the next round. */
    json_t *pod = json_pack("{s:{s:s, s:s, s:s, s:s, s:{s:s}}, s:{s:s, s:[{s:s, s:{s:{s:s}}}]}}",
                            "metadata", "name", "p", "namespace", "t", "uid", "p",
                            "creationTimestamp", "2026-01-01T00:00:00Z", "labels",
                            "flexpu.io/queue", "a", "spec", "schedulerName", "flexpu-scheduler",
                            "containers", "name", "c", "resources", "limits", "flexpu.io/gpu",
                            "2");
    fx_model_pod_event(m, KUBE_ADDED, pod);
    json_decref(pod);
    k.fail = true;
    assert_int_equal(fx_queue_sync_publish(s, m, "2026-12-05T00:00:10Z", record, &k), 0);
    k.fail = false;
    assert_int_equal(fx_queue_sync_publish(s, m, "2026-12-05T00:00:20Z", record, &k), 1);
    st = json_object_get(sent_to(&k, "a"), "status");
    assert_string_equal(json_string_value(json_object_get(json_object_get(st, "pending"),
                                                          "flexpu.io/gpu")),
                        "2");
    sink_clear(&k);
    fx_queue_sync_free(s);
    fx_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specs_into_the_model),
        cmocka_unit_test(test_status_written_when_changed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
