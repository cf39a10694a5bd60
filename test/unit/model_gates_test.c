/* SPDX-License-Identifier: Apache-2.0 */
/* Pods with scheduling gates (spec.schedulingGates, docs/KUBERNETES.md,
 * "Scheduling gates"): a pending pod of ours with gates is tracked but never
 * decided (not placed, not a preemptor, charged to no queue, no member its
 * gang counts), told once, and queued at once when the update that removes
 * its last gate arrives; a malformed gates field is an invalid pod naming
 * the field and the value. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "flexpu/queue.h"
#include "kube/contract.h"
#include "scheduler/model.h"

#include "model_fixture.h"

/* spec.schedulingGates set to `gates`, JSON text. */
static void gates_put(json_t *spec, const char *gates)
{
    json_error_t je;
    json_t *g = json_loads(gates, JSON_DECODE_ANY, &je);
    if (!g)
        fail_msg("gates '%s': %s", gates, je.text);
    json_object_set_new(spec, "schedulingGates", g);
}

/* Pod `uid` of ours asking one whole GPU and 1 CPU, created at second
 * `sec`, with PriorityClass value `prio`, in pod group `group` (NULL: none;
 * min-members 2), and spec.schedulingGates `gates` (JSON text; NULL: no
 * field). Bound to GPU 0 of `on` when not NULL. The caller frees it. */
static json_t *pod(const char *uid, int sec, int prio, const char *group, const char *gates,
                   const char *on)
{
    char created[40];
    snprintf(created, sizeof(created), "2026-01-01T00:00:%02dZ", sec);
    json_t *meta = json_pack("{s:s, s:s, s:s, s:s, s:{}}", "name", uid, "namespace", "t", "uid",
                             uid, "creationTimestamp", created, "annotations");
    if (group) {
        json_object_set_new(meta, "labels", json_pack("{s:s}", "flexpu.io/pod-group", group));
        json_object_set_new(json_object_get(meta, "annotations"), "flexpu.io/min-members",
                            json_string("2"));
    }
    json_t *p = json_pack("{s:o, s:{s:s, s:i, s:[{s:s, s:{s:{s:s, s:s}}}]}}", "metadata", meta,
                          "spec", "schedulerName", "flexpu-scheduler", "priority", prio,
                          "containers", "name", "c", "resources", "limits", "cpu", "1",
                          "flexpu.io/gpu", "1");
    assert_non_null(p);
    json_t *spec = json_object_get(p, "spec");
    if (gates)
        gates_put(spec, gates);
    if (on) {
        struct fx_allocation al = {.ngpu = 1};
        snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "GPU-%s-0", on);
        al.gpus[0].cores = 100;
        char *text = fx_allocation_format(&al);
        json_object_set_new(json_object_get(meta, "annotations"), FX_ANN_ALLOCATION,
                            json_string(text));
        free(text);
        json_object_set_new(spec, "nodeName", json_string(on));
    }
    return p;
}

/* A model with node n1 of `ngpu` GPUs. */
static struct fx_model *with_n1(int ngpu)
{
    struct fx_model *m = new_model();
    a100_node(m, "n1", ngpu);
    return m;
}

/* p, added to m (the watch's ADDED); the caller still frees it. */
static json_t *added(struct fx_model *m, json_t *p)
{
    fx_model_pod_event(m, KUBE_ADDED, p);
    return p;
}

/* p's spec.schedulingGates set to `gates` (NULL: the field removed, as a
 * JSON patch "remove" of /spec/schedulingGates leaves it), then the update. */
static void gates_set(struct fx_model *m, json_t *p, const char *gates)
{
    json_t *spec = json_object_get(p, "spec");
    if (gates)
        gates_put(spec, gates);
    else
        json_object_del(spec, "schedulingGates");
    fx_model_pod_event(m, KUBE_MODIFIED, p);
}

/* What the default queue has pending, in GPUs. */
static int64_t pending_gpus(struct fx_model *m)
{
    struct flexpu_queue_status qs;
    assert_true(fx_model_queue_get(m, fx_model_queue_find(m, FLEXPU_QUEUE_DEFAULT), &qs));
    return qs.pending[FLEXPU_RES_GPU];
}

/* The parser: kube-scheduler's form of the names, a long list cut, absent
 * or empty lists no gates. */
static void test_gates_parse(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    char names[32];
    json_t *p = pod("p", 0, 0, NULL, "[{\"name\":\"a.io/x\"},{\"name\":\"b\"}]", NULL);
    assert_int_equal(fx_pod_gates_parse(p, names, sizeof(names), &err), 2);
    assert_string_equal(names, "[a.io/x b]");
    json_object_set_new(json_object_get(p, "spec"), "schedulingGates",
                        json_pack("[{s:s}, {s:s}]", "name", "example.com/a-long-gate-name",
                                  "name", "example.com/another"));
    assert_int_equal(fx_pod_gates_parse(p, names, sizeof(names), &err), 2);
    assert_int_equal(strlen(names), sizeof(names) - 1);
    assert_string_equal(names + sizeof(names) - 5, "...]");
    json_object_set_new(json_object_get(p, "spec"), "schedulingGates", json_array());
    assert_int_equal(fx_pod_gates_parse(p, names, sizeof(names), &err), 0);
    assert_string_equal(names, "");
    json_object_set_new(json_object_get(p, "spec"), "schedulingGates", json_null());
    assert_int_equal(fx_pod_gates_parse(p, names, sizeof(names), &err), 0);
    json_object_del(json_object_get(p, "spec"), "schedulingGates");
    assert_int_equal(fx_pod_gates_parse(p, names, sizeof(names), &err), 0);
    json_decref(p);
}

/* A gated pod with a free GPU is told once and never decided; a gate
 * removed of two tells the one left; the last removed, it is bound at once
 * (no capacity freed meanwhile). */
static void test_gated_not_decided(void **state)
{
    (void)state;
    struct fx_model *m = with_n1(1);
    json_t *g = added(m, pod("g", 0, 0, NULL,
                             "[{\"name\":\"example.com/quota\"},{\"name\":\"b\"}]", NULL));
    struct fx_attempt a = next(m, FX_GATED, "g");
    assert_string_equal(a.message, "waiting for scheduling gates: [example.com/quota b]");
    nothing_left(m);
    struct fx_model_stats st = model_stats(m);
    assert_int_equal(st.pods_gated, 1);
    assert_int_equal(st.pods_waiting + st.pods_queued + st.pods_bound, 0);
    assert_int_equal(pending_gpus(m), 0); /* no demand a queue reclaims for */

    /* An update that leaves its gates: not told again. */
    json_object_set_new(json_object_get(g, "metadata"), "resourceVersion", json_string("7"));
    fx_model_pod_event(m, KUBE_MODIFIED, g);
    nothing_left(m);

    gates_set(m, g, "[{\"name\":\"b\"}]");
    a = next(m, FX_GATED, "g");
    assert_string_equal(a.message, "waiting for scheduling gates: [b]");
    nothing_left(m);

    gates_set(m, g, NULL);
    a = next(m, FX_BIND, "g");
    assert_string_equal(a.node, "n1");
    st = model_stats(m);
    assert_int_equal(st.pods_gated, 0);
    assert_int_equal(st.pods_bound, 1);
    nothing_left(m);
    json_decref(g);
    fx_model_free(m);
}

/* The same with an empty list left by the controller (a merge patch or
 * "replace" to []): ungated. */
static void test_gates_emptied(void **state)
{
    (void)state;
    struct fx_model *m = with_n1(1);
    json_t *g =
        added(m, pod("g", 0, 0, NULL, "[{\"name\":\"kueue.x-k8s.io/admission\"}]", NULL));
    next(m, FX_GATED, "g");
    nothing_left(m);
    gates_set(m, g, "[]");
    struct fx_attempt a = next(m, FX_BIND, "g");
    assert_string_equal(a.node, "n1");
    json_decref(g);
    fx_model_free(m);
}

/* A gated pod of a high class does not preempt the low pod on the only
 * GPU, nor is it a waiting pod; ungated, it does. */
static void test_gated_no_preempt(void **state)
{
    (void)state;
    struct fx_model *m = with_n1(1);
    json_t *low = added(m, pod("low", 0, 0, NULL, NULL, "n1"));
    json_t *hi = added(m, pod("hi", 1, 1000, NULL, "[{\"name\":\"g\"}]", NULL));
    next(m, FX_GATED, "hi");
    nothing_left(m);
    struct fx_model_stats st = model_stats(m);
    assert_int_equal(st.preemptions, 0);
    assert_int_equal(st.pods_nominated + st.pods_waiting, 0);
    assert_int_equal(pending_gpus(m), 0);

    gates_set(m, hi, "[]");
    next(m, FX_NOMINATE, "hi");
    next(m, FX_EVICT, "low");
    json_decref(low);
    json_decref(hi);
    fx_model_free(m);
}

/* A pod group of two with one member gated lacks that member: the other
 * waits, told so, and nothing is placed with two GPUs free; the gate
 * removed, both are bound at once. */
static void test_gated_gang_member(void **state)
{
    (void)state;
    struct fx_model *m = with_n1(2);
    json_t *a = added(m, pod("a", 0, 0, "grp", NULL, NULL));
    json_t *b = added(m, pod("b", 1, 0, "grp", "[{\"name\":\"g\"}]", NULL));
    bool told_a = false, told_b = false;
    for (int i = 0; i < 2; i++) {
        struct fx_attempt at;
        assert_true(fx_model_next(m, &at));
        if (strcmp(at.uid, "a") == 0) {
            assert_int_equal(at.outcome, FX_WAIT);
            if (!strstr(at.message, "1 of 2 exist (0 placed; 1 more with scheduling gates)"))
                fail_msg("a told '%s'", at.message);
            told_a = true;
        } else {
            assert_string_equal(at.uid, "b");
            assert_int_equal(at.outcome, FX_GATED);
            told_b = true;
        }
    }
    assert_true(told_a && told_b);
    nothing_left(m);
    assert_int_equal(model_stats(m).gangs_placed, 0);

    gates_set(m, b, NULL);
    struct fx_attempt x = next(m, FX_BIND, NULL);
    struct fx_attempt y = next(m, FX_BIND, NULL);
    assert_string_not_equal(x.uid, y.uid);
    assert_int_equal(model_stats(m).gangs_placed, 1);
    nothing_left(m);
    json_decref(a);
    json_decref(b);
    fx_model_free(m);
}

/* A malformed gates field gets the invalid path, naming the field and the
 * value; corrected, the pod is placed. */
static void test_gates_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *gates, *field, *value;
    } cases[] = {
        {"\"x\"", "spec.schedulingGates", "\"x\""},
        {"{\"name\":\"g\"}", "spec.schedulingGates", "{\"name\":\"g\"}"},
        {"[{\"name\":3}]", "spec.schedulingGates[0]", "{\"name\":3}"},
        {"[{\"name\":\"a\"},{}]", "spec.schedulingGates[1]", "{}"},
        {"[{\"name\":\"\"}]", "spec.schedulingGates[0]", "{\"name\":\"\"}"},
        {"[\"g\"]", "spec.schedulingGates[0]", "\"g\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fx_model *m = with_n1(1);
        json_t *p = added(m, pod("p", 0, 0, NULL, cases[i].gates, NULL));
        struct fx_attempt a = next(m, FX_INVALID, "p");
        if (!strstr(a.message, cases[i].field) || !strstr(a.message, cases[i].value))
            fail_msg("case %zu: '%s' does not name %s and %s", i, a.message, cases[i].field,
                     cases[i].value);
        nothing_left(m);
        gates_set(m, p, NULL);
        next(m, FX_BIND, "p");
        json_decref(p);
        fx_model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gates_parse),
        cmocka_unit_test(test_gated_not_decided),
        cmocka_unit_test(test_gates_emptied),
        cmocka_unit_test(test_gated_no_preempt),
        cmocka_unit_test(test_gated_gang_member),
        cmocka_unit_test(test_gates_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
