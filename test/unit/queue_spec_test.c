/* SPDX-License-Identifier: Apache-2.0 */
/* The Queue object to the engine's queue (every field, every error, the
 * units), the status patch back, and a pod's queue and pod-group labels. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "flexpu/quantity.h"
#include "kube/contract.h"
#include "kube/kube.h"
#include "kube/queue_spec.h"

static json_t *load(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        fail_msg("bad test JSON: %s: %s", je.text, text);
    return j;
}

/* A Queue named q with this spec (JSON text, or NULL for none). */
static json_t *queue_obj(const char *spec)
{
    char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\"apiVersion\":\"flexpu.io/v1alpha1\",\"kind\":\"Queue\","
             "\"metadata\":{\"name\":\"q\",\"generation\":3}%s%s}",
             spec ? ",\"spec\":" : "", spec ? spec : "");
    return load(buf);
}

static void test_every_field_and_unit(void **state)
{
    (void)state;
    json_t *q = queue_obj("{\"parent\":\"research\",\"overQuotaWeight\":2.5,"
                          "\"guaranteed\":{\"flexpu.io/gpu\":\"8\",\"flexpu.io/gpu-cores\":\"250\","
                          "\"flexpu.io/gpu-memory\":\"80Gi\",\"cpu\":64,\"memory\":\"512Gi\"},"
                          "\"limit\":{\"flexpu.io/gpu\":16,\"flexpu.io/gpu-cores\":\"12.5k\","
                          "\"flexpu.io/gpu-memory\":\"100G\",\"cpu\":\"64500m\","
                          "\"memory\":\"1Ti\"}}");
    struct flexpu_queue_info in;
    struct flexpu_error err = {0};
    if (fx_queue_parse(q, &in, &err))
        fail_msg("%s", err.msg);
    assert_string_equal(in.name, "q");
    assert_string_equal(in.parent, "research");
    assert_true(in.weight == 2.5);
    assert_int_equal(in.guaranteed[FLEXPU_RES_GPU], 8);
    assert_int_equal(in.guaranteed[FLEXPU_RES_GPU_MILLI], 2500); /* 250 percent */
    assert_int_equal(in.guaranteed[FLEXPU_RES_GPU_MEM], 80 * 1024);
    assert_int_equal(in.guaranteed[FLEXPU_RES_CPU], 64000);
    assert_int_equal(in.guaranteed[FLEXPU_RES_MEM], 512 * 1024);
    assert_int_equal(in.limit[FLEXPU_RES_GPU], 16);
    assert_int_equal(in.limit[FLEXPU_RES_GPU_MILLI], 125000);
    /* 10^11 bytes is 95367.43 MiB: rounded up, as Kubernetes rounds */
    assert_int_equal(in.limit[FLEXPU_RES_GPU_MEM], 95368);
    assert_int_equal(in.limit[FLEXPU_RES_CPU], 64500);
    assert_int_equal(in.limit[FLEXPU_RES_MEM], 1024 * 1024);
    json_decref(q);

    /* Fractions of the engine's unit round up: 0.01 percent of a GPU is a
     * tenth of a milli-GPU, 1m of a core is one milli-core. */
    q = queue_obj("{\"guaranteed\":{\"flexpu.io/gpu-cores\":\"0.01\",\"cpu\":\"0.1m\","
                  "\"memory\":\"1\"},\"limit\":{\"flexpu.io/gpu-cores\":\"12.34\"}}");
    assert_int_equal(fx_queue_parse(q, &in, &err), 0);
    assert_int_equal(in.guaranteed[FLEXPU_RES_GPU_MILLI], 1);
    assert_int_equal(in.guaranteed[FLEXPU_RES_CPU], 1);
    assert_int_equal(in.guaranteed[FLEXPU_RES_MEM], 1);
    assert_int_equal(in.limit[FLEXPU_RES_GPU_MILLI], 124);
    json_decref(q);
}

static void test_defaults(void **state)
{
    (void)state;
    const char *specs[] = {NULL, "{}", "null", "{\"parent\":\"\"}", "{\"parent\":null}"};
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        json_t *q = queue_obj(specs[i]);
        struct flexpu_queue_info in;
        struct flexpu_error err = {0};
        assert_int_equal(fx_queue_parse(q, &in, &err), 0);
        assert_true(in.parent == NULL || in.parent[0] == 0);
        assert_true(in.weight == 1.0);
        for (int r = 0; r < FLEXPU_RES_COUNT_; r++) {
            assert_int_equal(in.guaranteed[r], 0);
            assert_int_equal(in.limit[r], FLEXPU_QUEUE_UNLIMITED);
        }
        json_decref(q);
    }
    /* weight 0 is allowed: never more than the guarantee while others want */
    json_t *q = queue_obj("{\"overQuotaWeight\":0}");
    struct flexpu_queue_info in;
    assert_int_equal(fx_queue_parse(q, &in, NULL), 0);
    assert_true(in.weight == 0.0);
    json_decref(q);
}

/* The spec is refused with code `code` and a message holding each of the
 * NULL-terminated strings. */
static void expect_bad(const char *spec, int code, ...)
{
    json_t *q = queue_obj(spec);
    struct flexpu_queue_info in;
    struct flexpu_error err = {0};
    int rc = fx_queue_parse(q, &in, &err);
    if (rc != code)
        fail_msg("spec %s: got %s (%s), want %s", spec, flexpu_err_name(rc), err.msg,
                 flexpu_err_name(code));
    va_list ap;
    va_start(ap, code);
    for (const char *want; (want = va_arg(ap, const char *));)
        if (!strstr(err.msg, want))
            fail_msg("spec %s: message '%s' does not say '%s'", spec, err.msg, want);
    va_end(ap);
    json_decref(q);
}

static void test_errors_name_field_and_value(void **state)
{
    (void)state;
    expect_bad("[1]", FLEXPU_EINVAL, "'spec'", NULL);
    expect_bad("{\"parent\":7}", FLEXPU_EINVAL, "spec.parent", NULL);
    expect_bad("{\"parent\":\"q\"}", FLEXPU_EINVAL, "spec.parent", "'q'", "its own parent", NULL);
    expect_bad("{\"guaranteed\":[]}", FLEXPU_EINVAL, "spec.guaranteed", "resource names", NULL);
    expect_bad("{\"limit\":\"8\"}", FLEXPU_EINVAL, "spec.limit", NULL);
    expect_bad("{\"guaranteed\":{\"nvidia.com/gpu\":\"4\"}}", FLEXPU_EINVAL,
               "spec.guaranteed[nvidia.com/gpu]", "'4'", "unknown resource", NULL);
    expect_bad("{\"limit\":{\"gpu\":4}}", FLEXPU_EINVAL, "spec.limit[gpu]", "unknown resource",
               NULL);
    expect_bad("{\"guaranteed\":{\"cpu\":\"12 cores\"}}", FLEXPU_EPARSE, "spec.guaranteed[cpu]",
               "12 cores", NULL);
    expect_bad("{\"guaranteed\":{\"memory\":\"\"}}", FLEXPU_EPARSE, "spec.guaranteed[memory]",
               NULL);
    expect_bad("{\"guaranteed\":{\"cpu\":\"-1\"}}", FLEXPU_EINVAL, "spec.guaranteed[cpu]", "'-1'",
               "negative", NULL);
    expect_bad("{\"limit\":{\"flexpu.io/gpu-memory\":-5}}", FLEXPU_EINVAL,
               "spec.limit[flexpu.io/gpu-memory]", "'-5'", "negative", NULL);
    expect_bad("{\"guaranteed\":{\"flexpu.io/gpu\":\"1.5\"}}", FLEXPU_EINVAL,
               "spec.guaranteed[flexpu.io/gpu]", "'1.5'", "whole number of GPUs", NULL);
    expect_bad("{\"guaranteed\":{\"flexpu.io/gpu\":\"500m\"}}", FLEXPU_EINVAL,
               "spec.guaranteed[flexpu.io/gpu]", "'500m'", NULL);
    expect_bad("{\"guaranteed\":{\"cpu\":1.5}}", FLEXPU_EINVAL, "spec.guaranteed[cpu]",
               "a string or an integer", NULL);
    expect_bad("{\"guaranteed\":{\"cpu\":true}}", FLEXPU_EINVAL, "spec.guaranteed[cpu]", NULL);
    expect_bad("{\"guaranteed\":{\"memory\":\"1e30\"}}", FLEXPU_ERANGE,
               "spec.guaranteed[memory]", NULL);
    expect_bad("{\"guaranteed\":{\"flexpu.io/gpu\":\"4\"},\"limit\":{\"flexpu.io/gpu\":\"2\"}}",
               FLEXPU_EINVAL, "spec.limit[flexpu.io/gpu]", "'2'",
               "below spec.guaranteed[flexpu.io/gpu] (4)", NULL);
    /* compared in the engine's units: 1Gi of limit under 1025Mi guaranteed */
    expect_bad("{\"guaranteed\":{\"memory\":\"1025Mi\"},\"limit\":{\"memory\":\"1Gi\"}}",
               FLEXPU_EINVAL, "spec.limit[memory]", "'1Gi'", "(1025Mi)", NULL);
    expect_bad("{\"overQuotaWeight\":-1}", FLEXPU_EINVAL, "spec.overQuotaWeight", "'-1'", NULL);
    expect_bad("{\"overQuotaWeight\":\"2\"}", FLEXPU_EINVAL, "spec.overQuotaWeight", "'2'",
               "number", NULL);

    /* no name */
    json_t *q = load("{\"kind\":\"Queue\",\"metadata\":{}}");
    struct flexpu_queue_info in;
    struct flexpu_error err = {0};
    assert_int_equal(fx_queue_parse(q, &in, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "metadata.name"));
    json_decref(q);
    /* not even an object: no crash */
    q = json_string("x");
    assert_int_equal(fx_queue_parse(q, &in, &err), FLEXPU_EINVAL);
    json_decref(q);
    assert_int_equal(fx_queue_parse(NULL, &in, NULL), FLEXPU_EINVAL);

    /* the same limit equal to the guarantee is fine */
    q = queue_obj("{\"guaranteed\":{\"memory\":\"1Gi\"},\"limit\":{\"memory\":\"1024Mi\"}}");
    assert_int_equal(fx_queue_parse(q, &in, &err), 0);
    json_decref(q);
}

static void test_quantity_units(void **state)
{
    (void)state;
    struct {
        enum flexpu_res r;
        int64_t v;
        const char *want;
    } cases[] = {
        {FLEXPU_RES_GPU, 3, "3"},
        {FLEXPU_RES_GPU, 0, "0"},
        {FLEXPU_RES_GPU_MILLI, 2500, "250"}, /* 2.5 GPUs of compute: 250 percent */
        {FLEXPU_RES_GPU_MILLI, 1234, "123400m"},
        {FLEXPU_RES_GPU_MILLI, 1, "100m"},
        {FLEXPU_RES_GPU_MEM, 81920, "81920Mi"},
        {FLEXPU_RES_GPU_MEM, 0, "0"},
        {FLEXPU_RES_CPU, 1500, "1500m"},
        {FLEXPU_RES_CPU, 64000, "64"},
        {FLEXPU_RES_MEM, 512, "512Mi"},
        {FLEXPU_RES_MEM, -7, "0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[40];
        fx_queue_quantity(cases[i].r, cases[i].v, buf, sizeof(buf));
        if (strcmp(buf, cases[i].want) != 0)
            fail_msg("%s %lld: '%s', want '%s'", flexpu_res_name(cases[i].r),
                     (long long)cases[i].v, buf, cases[i].want);
    }
    /* What the status says reads back, as a spec, to the same amount. */
    const int64_t amounts[] = {0, 1, 7, 10, 999, 1000, 1001, 123456, 81920, 1LL << 40};
    for (int r = 0; r < FLEXPU_RES_COUNT_; r++) {
        for (size_t i = 0; i < sizeof(amounts) / sizeof(amounts[0]); i++) {
            char q[40], spec[160];
            fx_queue_quantity((enum flexpu_res)r, amounts[i], q, sizeof(q));
            snprintf(spec, sizeof(spec), "{\"guaranteed\":{\"%s\":\"%s\"}}",
                     flexpu_res_name((enum flexpu_res)r), q);
            json_t *o = queue_obj(spec);
            struct flexpu_queue_info in;
            struct flexpu_error err = {0};
            assert_int_equal(fx_queue_parse(o, &in, &err), 0);
            if (in.guaranteed[r] != amounts[i])
                fail_msg("%s: %lld written '%s' reads back %lld", flexpu_res_name(r),
                         (long long)amounts[i], q, (long long)in.guaranteed[r]);
            json_decref(o);
        }
    }
}

static const char *cond(json_t *patch, const char *type, const char *key)
{
    size_t i;
    json_t *c;
    json_array_foreach(kube_get(patch, "status.conditions"), i, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "type")), type) == 0)
            return json_string_value(json_object_get(c, key));
    }
    return NULL;
}

static void test_status_patch(void **state)
{
    (void)state;
    struct flexpu_queue_status st = {.name = "q", .parent = "research"};
    int64_t g[] = {8, 2500, 81920, 64000, 524288};
    int64_t a[] = {3, 1234, 0, 1500, 512};
    int64_t p[] = {1, 100, 1024, 1000, 0};
    int64_t f[] = {9, 3000, 90000, 70000, 600000};
    memcpy(st.guaranteed, g, sizeof(g));
    memcpy(st.allocated, a, sizeof(a));
    memcpy(st.pending, p, sizeof(p));
    memcpy(st.fair_share, f, sizeof(f));
    json_t *patch = fx_queue_status_patch(&st, "2026-12-05T10:00:00Z", NULL);
    assert_non_null(patch);
    assert_int_equal(json_object_size(patch), 1); /* status only: spec untouched */
    json_t *s = json_object_get(patch, "status");
    assert_string_equal(json_string_value(json_object_get(json_object_get(s, "guaranteed"),
                                                          "flexpu.io/gpu-cores")),
                        "250");
    json_t *alloc = json_object_get(s, "allocated");
    /* every resource, zeros too: a merge patch leaves out what it omits */
    assert_int_equal(json_object_size(alloc), FLEXPU_RES_COUNT_);
    assert_string_equal(json_string_value(json_object_get(alloc, "flexpu.io/gpu")), "3");
    assert_string_equal(json_string_value(json_object_get(alloc, "flexpu.io/gpu-cores")),
                        "123400m");
    assert_string_equal(json_string_value(json_object_get(alloc, "flexpu.io/gpu-memory")), "0");
    assert_string_equal(json_string_value(json_object_get(alloc, "cpu")), "1500m");
    assert_string_equal(json_string_value(json_object_get(alloc, "memory")), "512Mi");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(s, "pending"), "flexpu.io/gpu-memory")),
        "1024Mi");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(s, "fairShare"), "flexpu.io/gpu")), "9");
    assert_string_equal(cond(patch, "Accepted", "status"), "True");
    assert_string_equal(cond(patch, "ParentFound", "status"), "True");
    assert_non_null(strstr(cond(patch, "ParentFound", "message"), "research"));
    assert_string_equal(cond(patch, "ParentFound", "lastTransitionTime"), "2026-12-05T10:00:00Z");
    json_decref(patch);

    /* The queue as the server has it after that patch: an unchanged
     * condition keeps its time, a changed one takes `now`. */
    json_t *q = queue_obj("{\"parent\":\"research\"}");
    json_object_set_new(q, "status",
                        load("{\"conditions\":[{\"type\":\"Accepted\",\"status\":\"True\","
                             "\"reason\":\"Applied\",\"message\":\"m\","
                             "\"lastTransitionTime\":\"2026-12-05T10:00:00Z\"},"
                             "{\"type\":\"ParentFound\",\"status\":\"True\",\"reason\":\"x\","
                             "\"message\":\"m\",\"lastTransitionTime\":\"2026-12-05T10:00:00Z\"}]}"));
    st.orphan = true;
    patch = fx_queue_status_patch(&st, "2026-12-05T11:00:00Z", q);
    assert_string_equal(cond(patch, "Accepted", "lastTransitionTime"), "2026-12-05T10:00:00Z");
    assert_string_equal(cond(patch, "ParentFound", "status"), "False");
    assert_string_equal(cond(patch, "ParentFound", "reason"), "ParentMissing");
    assert_non_null(strstr(cond(patch, "ParentFound", "message"), "'research' does not exist"));
    assert_string_equal(cond(patch, "ParentFound", "lastTransitionTime"), "2026-12-05T11:00:00Z");
    json_t *gen = json_object_get(json_array_get(kube_get(patch, "status.conditions"), 0),
                                  "observedGeneration");
    assert_int_equal(json_integer_value(gen), 3);
    json_decref(patch);

    /* top level */
    struct flexpu_queue_status top = {.name = "t"};
    patch = fx_queue_status_patch(&top, "2026-12-05T11:00:00Z", NULL);
    assert_string_equal(cond(patch, "ParentFound", "reason"), "TopLevel");
    json_decref(patch);

    /* A refused spec: Accepted goes False with the parser's message; the
     * other conditions are kept (a merge patch replaces the list whole). */
    patch = fx_queue_refused_patch("field 'spec.guaranteed[flexpu.io/gpu]': invalid value '1.5'",
                                   "2026-12-05T12:00:00Z", q);
    assert_string_equal(cond(patch, "Accepted", "status"), "False");
    assert_string_equal(cond(patch, "Accepted", "reason"), "InvalidSpec");
    assert_non_null(strstr(cond(patch, "Accepted", "message"), "1.5"));
    assert_string_equal(cond(patch, "Accepted", "lastTransitionTime"), "2026-12-05T12:00:00Z");
    assert_string_equal(cond(patch, "ParentFound", "status"), "True");
    assert_int_equal(json_array_size(kube_get(patch, "status.conditions")), 2);
    assert_null(kube_get(patch, "status.allocated"));
    json_decref(patch);
    json_decref(q);
}

/* ---- a pod's queue and pod group ---- */

static json_t *pod(const char *labels, const char *annotations)
{
    char buf[1024];
    snprintf(buf, sizeof(buf),
             "{\"metadata\":{\"name\":\"p\",\"namespace\":\"d\",\"labels\":%s,"
             "\"annotations\":%s}}",
             labels ? labels : "{}", annotations ? annotations : "{}");
    return load(buf);
}

static void expect_pod_bad(const char *labels, const char *ann, const char *field,
                           const char *value)
{
    json_t *p = pod(labels, ann);
    struct fx_pod_group g;
    struct flexpu_error err = {0};
    assert_int_equal(fx_pod_group_parse(p, &g, &err), FLEXPU_EINVAL);
    if (!strstr(err.msg, field) || (value && !strstr(err.msg, value)))
        fail_msg("labels %s annotations %s: '%s' does not name %s and %s", labels, ann, err.msg,
                 field, value ? value : "");
    json_decref(p);
}

static void test_pod_group(void **state)
{
    (void)state;
    struct fx_pod_group g;
    struct flexpu_error err = {0};
    json_t *p = pod(NULL, NULL);
    assert_int_equal(fx_pod_group_parse(p, &g, &err), 0);
    assert_string_equal(g.queue, FLEXPU_QUEUE_DEFAULT);
    assert_string_equal(g.group, "");
    assert_int_equal(g.min_members, 0);
    json_decref(p);

    p = pod("{\"flexpu.io/queue\":\"team-a\",\"flexpu.io/pod-group\":\"Train_1\"}",
            "{\"flexpu.io/min-members\":\"8\"}");
    assert_int_equal(fx_pod_group_parse(p, &g, &err), 0);
    assert_string_equal(g.queue, "team-a");
    assert_string_equal(g.group, "Train_1");
    assert_int_equal(g.min_members, 8);
    json_decref(p);

    p = pod("{\"flexpu.io/queue\":\"\"}", NULL); /* an empty value chooses nothing */
    assert_int_equal(fx_pod_group_parse(p, &g, &err), 0);
    assert_string_equal(g.queue, FLEXPU_QUEUE_DEFAULT);
    json_decref(p);

    expect_pod_bad("{\"flexpu.io/queue\":\"Team_A\"}", NULL, "metadata.labels[flexpu.io/queue]",
                   "Team_A");
    expect_pod_bad("{\"flexpu.io/queue\":\"-a\"}", NULL, "flexpu.io/queue", "'-a'");
    expect_pod_bad("{\"flexpu.io/queue\":7}", NULL, "flexpu.io/queue", NULL);
    expect_pod_bad("{\"flexpu.io/queue\":"
                   "\"a234567890123456789012345678901234567890123456789012345678901234\"}",
                   NULL, "flexpu.io/queue", NULL);
    expect_pod_bad("{\"flexpu.io/pod-group\":\"\"}", "{\"flexpu.io/min-members\":\"2\"}",
                   "metadata.labels[flexpu.io/pod-group]", NULL);
    expect_pod_bad("{\"flexpu.io/pod-group\":\"a b\"}", "{\"flexpu.io/min-members\":\"2\"}",
                   "flexpu.io/pod-group", "'a b'");
    expect_pod_bad("{\"flexpu.io/pod-group\":\"g\"}", NULL,
                   "metadata.annotations[flexpu.io/min-members]", "must be set");
    expect_pod_bad(NULL, "{\"flexpu.io/min-members\":\"4\"}", "flexpu.io/min-members", "'4'");
    const char *bad_counts[] = {"0", "-1", "abc", "3x", "+3", " 3", "", "10001", "2.5",
                                "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_counts) / sizeof(bad_counts[0]); i++) {
        char ann[128];
        snprintf(ann, sizeof(ann), "{\"flexpu.io/min-members\":\"%s\"}", bad_counts[i]);
        expect_pod_bad("{\"flexpu.io/pod-group\":\"g\"}", ann, "flexpu.io/min-members",
                       bad_counts[i]);
    }
    p = pod("{\"flexpu.io/pod-group\":\"g\"}", "{\"flexpu.io/min-members\":\"10000\"}");
    assert_int_equal(fx_pod_group_parse(p, &g, &err), 0);
    assert_int_equal(g.min_members, 10000);
    json_decref(p);
}

static void test_members_agree(void **state)
{
    (void)state;
    struct fx_pod_group a = {"team-a", "train", 4, false}, b = a;
    struct flexpu_error err = {0};
    assert_int_equal(fx_pod_group_agree(&a, "d/w-0", &b, "d/w-1", &err), 0);
    b.min_members = 8;
    assert_int_equal(fx_pod_group_agree(&a, "d/w-0", &b, "d/w-1", &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "'train'"));
    assert_non_null(strstr(err.msg, "d/w-1 has flexpu.io/min-members '8'"));
    assert_non_null(strstr(err.msg, "d/w-0 has '4'"));
    b = a;
    snprintf(b.queue, sizeof(b.queue), "team-b");
    assert_int_equal(fx_pod_group_agree(&a, "d/w-0", &b, "d/w-1", &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "d/w-1 is in queue 'team-b'"));
    assert_non_null(strstr(err.msg, "d/w-0 is in 'team-a'"));
    /* Some members opportunistic, some not: refused, naming the annotation,
     * the group and both pods, whichever was seen first. */
    b = a;
    b.opportunistic = true;
    assert_int_equal(fx_pod_group_agree(&a, "d/w-0", &b, "d/w-1", &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "'train'"));
    assert_non_null(strstr(err.msg, "d/w-1 has flexpu.io/opportunistic 'true'"));
    assert_non_null(strstr(err.msg, "d/w-0 has 'false' (or none)"));
    assert_int_equal(fx_pod_group_agree(&b, "d/w-1", &a, "d/w-0", &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "d/w-0 has flexpu.io/opportunistic 'false' (or none)"));
    a.opportunistic = true;
    assert_int_equal(fx_pod_group_agree(&a, "d/w-0", &b, "d/w-1", &err), 0);
}

/* A member's flexpu.io/opportunistic is read with its group. */
static void test_group_opportunistic_parsed(void **state)
{
    (void)state;
    struct fx_pod_group g;
    struct flexpu_error err = {0};
    json_t *p = pod("{\"flexpu.io/pod-group\":\"g\"}",
                    "{\"flexpu.io/min-members\":\"2\",\"flexpu.io/opportunistic\":\"true\"}");
    assert_int_equal(fx_pod_group_parse(p, &g, &err), 0);
    assert_true(g.opportunistic);
    json_decref(p);
    p = pod("{\"flexpu.io/pod-group\":\"g\"}",
            "{\"flexpu.io/min-members\":\"2\",\"flexpu.io/opportunistic\":\"false\"}");
    assert_int_equal(fx_pod_group_parse(p, &g, &err), 0);
    assert_false(g.opportunistic);
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field_and_unit),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors_name_field_and_value),
        cmocka_unit_test(test_quantity_units),
        cmocka_unit_test(test_status_patch),
        cmocka_unit_test(test_pod_group),
        cmocka_unit_test(test_members_agree),
        cmocka_unit_test(test_group_opportunistic_parsed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
