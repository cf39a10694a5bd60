/* SPDX-License-Identifier: Apache-2.0 */
/* Node filters as flexpu-scheduler reads them from Kubernetes objects:
 * tolerations, nodeSelector and node affinity from pods, labels, taints and
 * spec.unschedulable from nodes (src/kube/contract.c), every malformed
 * field named with its value, and the model placing by them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/sched.h"
#include "kube/contract.h"
#include "kube/kube.h"
#include "scheduler/model.h"

static json_t *load(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        fail_msg("%s: %s", text, je.text);
    return j;
}

/* A pod of ours asking for a 10% slice, with `spec` (JSON members) added. */
static json_t *pod(const char *uid, const char *spec)
{
    char buf[8192];
    snprintf(buf, sizeof(buf),
             "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"d\",\"uid\":\"%s\","
             "\"creationTimestamp\":\"2026-01-01T00:00:00Z\"},"
             "\"spec\":{\"schedulerName\":\"flexpu-scheduler\"%s%s,"
             "\"containers\":[{\"name\":\"c\",\"resources\":{\"limits\":{\"cpu\":\"1\","
             "\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"10\"}}}]},"
             "\"status\":{\"phase\":\"Pending\"}}",
             uid, uid, spec && *spec ? "," : "", spec ? spec : "");
    return load(buf);
}

/* A Ready node of 2 A100s with labels (JSON members) and a spec. */
static json_t *node(const char *name, const char *labels, const char *spec)
{
    char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"metadata\":{\"name\":\"%s\",\"labels\":{%s},\"annotations\":{\"flexpu.io/gpus\":"
             "\"[{\\\"uuid\\\":\\\"GPU-%s-0\\\",\\\"model\\\":\\\"A100\\\",\\\"memory\\\":85899345920},"
             "{\\\"uuid\\\":\\\"GPU-%s-1\\\",\\\"model\\\":\\\"A100\\\",\\\"memory\\\":85899345920}]\"}},"
             "\"spec\":{%s},\"status\":{\"allocatable\":{\"cpu\":\"16\",\"memory\":\"64Gi\"},"
             "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}",
             name, labels ? labels : "", name, name, spec ? spec : "");
    return load(buf);
}

/* ---- pods ------------------------------------------------------------- */

/* An engine with the nodes, to see what a parsed filter admits. */
static struct flexpu_engine *engine_of(json_t **nodes, int n)
{
    struct flexpu_engine *e = flexpu_engine_new();
    assert_non_null(e);
    for (int i = 0; i < n; i++) {
        struct fx_node_attrs a;
        struct flexpu_error err;
        assert_int_equal(fx_node_attrs_parse(nodes[i], &a, &err), 0);
        struct flexpu_node_info info = {.name = kube_str(nodes[i], "metadata.name"),
                                        .cpu_milli = 16000,
                                        .mem_mib = 65536,
                                        .ngpu = 1,
                                        .label_list = a.labels,
                                        .nlabel_list = a.nlabels,
                                        .taints = a.taints,
                                        .ntaints = a.ntaints};
        info.gpus[0].model = "A100";
        if (flexpu_engine_add_node(e, &info, NULL, &err))
            fail_msg("%s", err.msg);
        fx_node_attrs_free(&a);
    }
    return e;
}

/* The names of the nodes the pod's filter admits, space separated. */
static void admitted(struct flexpu_engine *e, const char *spec, char *out, size_t len)
{
    json_t *p = pod("p", spec);
    struct flexpu_filter *f = NULL;
    struct flexpu_error err = {0};
    if (fx_pod_filter_parse(p, &f, &err))
        fail_msg("spec %s: %s", spec, err.msg);
    out[0] = '\0';
    for (int id = 0; id < flexpu_engine_node_count(e); id++)
        if (flexpu_engine_node_filter(e, id, f, NULL, NULL) < 0)
            snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] ? " " : "",
                     flexpu_engine_node_name(e, id));
    flexpu_filter_free(f);
    json_decref(p);
}

static void test_pod_constraints_read_as_kube_scheduler(void **state)
{
    (void)state;
    json_t *nodes[] = {
        node("plain", "\"zone\":\"z1\",\"kubernetes.io/hostname\":\"plain\"", NULL),
        node("gpu", "\"zone\":\"z2\",\"gen\":\"9\"",
             "\"taints\":[{\"key\":\"nvidia.com/gpu\",\"value\":\"present\",\"effect\":\"NoSchedule\"}]"),
        node("evict", "\"zone\":\"z2\"",
             "\"taints\":[{\"key\":\"dedicated\",\"effect\":\"NoExecute\"}]"),
        node("cordoned", "\"zone\":\"z1\"", "\"unschedulable\":true"),
    };
    struct flexpu_engine *e = engine_of(nodes, 4);
    struct {
        const char *spec, *want;
    } cases[] = {
        {"", "plain"},
        {"\"tolerations\":[{\"key\":\"nvidia.com/gpu\",\"operator\":\"Equal\",\"value\":\"present\","
         "\"effect\":\"NoSchedule\"}]",
         "plain gpu"},
        {"\"tolerations\":[{\"key\":\"nvidia.com/gpu\",\"value\":\"present\"}]", "plain gpu"},
        {"\"tolerations\":[{\"key\":\"nvidia.com/gpu\",\"value\":\"absent\"}]", "plain"},
        {"\"tolerations\":[{\"key\":\"dedicated\",\"operator\":\"Exists\",\"effect\":\"NoExecute\","
         "\"tolerationSeconds\":30}]",
         "plain evict"},
        {"\"tolerations\":[{\"operator\":\"Exists\"}]", "plain gpu evict cordoned"},
        {"\"tolerations\":[{\"key\":\"node.kubernetes.io/unschedulable\",\"operator\":\"Exists\","
         "\"effect\":\"NoSchedule\"}]",
         "plain cordoned"},
        {"\"tolerations\":[{\"operator\":\"Exists\"}],\"nodeSelector\":{\"zone\":\"z2\"}",
         "gpu evict"},
        {"\"tolerations\":[{\"operator\":\"Exists\"}],\"affinity\":{\"nodeAffinity\":{"
         "\"requiredDuringSchedulingIgnoredDuringExecution\":{\"nodeSelectorTerms\":["
         "{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"NotIn\",\"values\":[\"z1\"]},"
         "{\"key\":\"gen\",\"operator\":\"Gt\",\"values\":[\"8\"]}]},"
         "{\"matchFields\":[{\"key\":\"metadata.name\",\"operator\":\"In\",\"values\":[\"cordoned\"]}]}"
         "]}}}",
         "gpu cordoned"},
        {"\"tolerations\":[{\"operator\":\"Exists\"}],\"nodeSelector\":{\"kubernetes.io/hostname\":"
         "\"plain\"}",
         "plain"},
        /* Preferred terms never exclude. */
        {"\"affinity\":{\"nodeAffinity\":{\"preferredDuringSchedulingIgnoredDuringExecution\":["
         "{\"weight\":5,\"preference\":{\"matchExpressions\":[{\"key\":\"zone\",\"operator\":"
         "\"In\",\"values\":[\"z9\"]}]}},{\"weight\":7,\"preference\":{}}]}}",
         "plain"},
        /* Empty inter-pod affinity objects ask nothing. */
        {"\"affinity\":{\"podAffinity\":{},\"podAntiAffinity\":{\"requiredDuringScheduling"
         "IgnoredDuringExecution\":[]}},\"topologySpreadConstraints\":[]",
         "plain"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char got[128];
        admitted(e, cases[i].spec, got, sizeof(got));
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: admitted '%s', expected '%s'", i, got, cases[i].want);
    }
    /* Preferred weights reach the engine. */
    json_t *p = pod("p", "\"affinity\":{\"nodeAffinity\":{\"preferredDuringScheduling"
                         "IgnoredDuringExecution\":[{\"weight\":30,\"preference\":{"
                         "\"matchExpressions\":[{\"key\":\"zone\",\"operator\":\"In\",\"values\":"
                         "[\"z1\"]}]}},{\"weight\":20,\"preference\":{\"matchExpressions\":["
                         "{\"key\":\"gen\",\"operator\":\"Exists\"}]}}]}}");
    struct flexpu_filter *f = NULL;
    struct flexpu_error err;
    assert_int_equal(fx_pod_filter_parse(p, &f, &err), 0);
    int aff = -1;
    assert_int_equal(flexpu_engine_node_filter(e, 0, f, &aff, NULL), -1);
    assert_int_equal(aff, 30);
    flexpu_engine_node_filter(e, 1, f, &aff, NULL);
    assert_int_equal(aff, 20);
    flexpu_filter_free(f);
    json_decref(p);
    /* A pod with no constraints has no filter at all. */
    p = pod("p", "\"tolerations\":[],\"nodeSelector\":{}");
    assert_int_equal(fx_pod_filter_parse(p, &f, &err), 0);
    assert_null(f);
    json_decref(p);
    for (int i = 0; i < 4; i++)
        json_decref(nodes[i]);
    flexpu_engine_free(e);
}

static void test_malformed_pod_constraints_named(void **state)
{
    (void)state;
#define REQ "\"affinity\":{\"nodeAffinity\":{\"requiredDuringSchedulingIgnoredDuringExecution\":"
#define PREF "\"affinity\":{\"nodeAffinity\":{\"preferredDuringSchedulingIgnoredDuringExecution\":"
    struct {
        const char *spec, *field, *value;
    } cases[] = {
        {"\"tolerations\":{}", "spec.tolerations", NULL},
        {"\"tolerations\":[7]", "spec.tolerations[0]", NULL},
        {"\"tolerations\":[{\"key\":\"k\",\"operator\":\"Maybe\"}]", "spec.tolerations[0].operator",
         "'Maybe'"},
        {"\"tolerations\":[{\"key\":\"k\",\"effect\":\"Sometimes\"}]", "spec.tolerations[0].effect",
         "'Sometimes'"},
        {"\"tolerations\":[{\"operator\":\"Equal\",\"value\":\"v\"}]", "spec.tolerations[0]",
         "Exists"},
        {"\"tolerations\":[{\"key\":\"k\",\"operator\":\"Exists\",\"value\":\"v\"}]",
         "spec.tolerations[0]", "'v'"},
        {"\"tolerations\":[{\"key\":\"k\",\"operator\":\"Lt\",\"value\":\"ten\"}]",
         "spec.tolerations[0]", "'ten'"},
        {"\"tolerations\":[{\"key\":\"k\",\"value\":5}]", "spec.tolerations[0].value", NULL},
        {"\"nodeSelector\":[\"zone\"]", "spec.nodeSelector", NULL},
        {"\"nodeSelector\":{\"zone\":1}", "spec.nodeSelector[zone]", NULL},
        {REQ "{}}}", "nodeSelectorTerms", "at least one"},
        {REQ "{\"nodeSelectorTerms\":[]}}}", "nodeSelectorTerms", "at least one"},
        {REQ "{\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Like\"}]}]}}}",
         "nodeSelectorTerms[0].matchExpressions[0].operator", "'Like'"},
        {REQ "{\"nodeSelectorTerms\":[{},{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\"}]}]}}}",
         "nodeSelectorTerms[1].matchExpressions[0]", "at least one value"},
        {REQ "{\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\","
             "\"values\":\"x\"}]}]}}}",
         "matchExpressions[0].values", NULL},
        {REQ "{\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\","
             "\"values\":[1]}]}]}}}",
         "matchExpressions[0].values", NULL},
        {REQ "{\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Gt\","
             "\"values\":[\"1\",\"2\"]}]}]}}}",
         "matchExpressions[0]", "exactly one"},
        {REQ "{\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Lt\","
             "\"values\":[\"x1\"]}]}]}}}",
         "matchExpressions[0]", "'x1'"},
        {REQ "{\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"operator\":\"Exists\"}]}]}}}",
         "matchExpressions[0]", "empty"},
        {REQ "{\"nodeSelectorTerms\":[{\"matchFields\":[{\"key\":\"metadata.uid\",\"operator\":"
             "\"In\",\"values\":[\"u\"]}]}]}}}",
         "matchFields[0]", "metadata.uid"},
        {REQ "{\"nodeSelectorTerms\":[7]}}}", "nodeSelectorTerms[0]", NULL},
        {PREF "[{\"weight\":0,\"preference\":{\"matchExpressions\":[{\"key\":\"a\","
              "\"operator\":\"Exists\"}]}}]}}",
         "preferredDuringSchedulingIgnoredDuringExecution[0].weight", "'0'"},
        {PREF "[{\"weight\":101}]}}", "[0].weight", "'101'"},
        {PREF "[{\"weight\":\"5\"}]}}", "[0].weight", "between 1 and 100"},
        {PREF "{}}}", "preferredDuringSchedulingIgnoredDuringExecution", NULL},
        {PREF "[{\"weight\":5,\"preference\":{\"matchExpressions\":{}}}]}}",
         "[0].preference.matchExpressions", NULL},
        {PREF "[{\"weight\":5,\"preference\":\"zone\"}]}}", "[0].preference", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *p = pod("p", cases[i].spec);
        struct flexpu_filter *f = NULL;
        struct flexpu_error err = {0};
        int rc = fx_pod_filter_parse(p, &f, &err);
        if (rc != FLEXPU_EINVAL)
            fail_msg("case %zu (%s): rc %d, expected EINVAL", i, cases[i].spec, rc);
        assert_null(f);
        if (!strstr(err.msg, cases[i].field) ||
            (cases[i].value && !strstr(err.msg, cases[i].value)))
            fail_msg("case %zu: message '%s' should name '%s' and '%s'", i, err.msg,
                     cases[i].field, cases[i].value ? cases[i].value : "");
        json_decref(p);
    }
#undef REQ
#undef PREF
}

/* ---- nodes ------------------------------------------------------------ */

static void test_node_labels_and_taints(void **state)
{
    (void)state;
    json_t *n = node("n", "\"zone\":\"z1\",\"pool\":\"p\"",
                     "\"unschedulable\":true,\"taints\":[{\"key\":\"a\",\"value\":\"1\","
                     "\"effect\":\"NoSchedule\",\"timeAdded\":\"2026-01-01T00:00:00Z\"},"
                     "{\"key\":\"b\",\"effect\":\"PreferNoSchedule\"}]");
    struct fx_node_attrs a;
    struct flexpu_error err = {0};
    assert_int_equal(fx_node_attrs_parse(n, &a, &err), 0);
    assert_int_equal(a.nlabels, 2);
    assert_int_equal(a.ntaints, 3); /* the cordon is a taint */
    assert_string_equal(a.taints[0].key, "a");
    assert_string_equal(a.taints[0].value, "1");
    assert_int_equal(a.taints[1].effect, FLEXPU_TAINT_PREFER_NO_SCHEDULE);
    assert_string_equal(a.taints[2].key, FX_TAINT_UNSCHEDULABLE);
    assert_int_equal(a.taints[2].effect, FLEXPU_TAINT_NO_SCHEDULE);
    uint64_t h = a.hash;
    fx_node_attrs_free(&a);
    json_decref(n);
    /* The node controller's own cordon taint is not doubled. */
    n = node("n", NULL, "\"unschedulable\":true,\"taints\":[{\"key\":"
                        "\"node.kubernetes.io/unschedulable\",\"effect\":\"NoSchedule\"}]");
    assert_int_equal(fx_node_attrs_parse(n, &a, &err), 0);
    assert_int_equal(a.ntaints, 1);
    fx_node_attrs_free(&a);
    json_decref(n);
    /* Any change of a label or taint changes the hash. */
    const char *variants[][2] = {
        {"\"zone\":\"z2\",\"pool\":\"p\"", NULL},
        {"\"zone\":\"z1\",\"pool\":\"p\"", "\"unschedulable\":true,\"taints\":[{\"key\":\"a\","
                                           "\"value\":\"1\",\"effect\":\"NoExecute\"},{\"key\":"
                                           "\"b\",\"effect\":\"PreferNoSchedule\"}]"},
        {"\"zone\":\"z1\",\"pool\":\"p\"", "\"taints\":[{\"key\":\"a\",\"value\":\"1\","
                                           "\"effect\":\"NoSchedule\"},{\"key\":\"b\","
                                           "\"effect\":\"PreferNoSchedule\"}]"},
    };
    for (int i = 0; i < 3; i++) {
        n = node("n", variants[i][0], variants[i][1]);
        assert_int_equal(fx_node_attrs_parse(n, &a, &err), 0);
        assert_true(a.hash != h);
        fx_node_attrs_free(&a);
        json_decref(n);
    }
    struct {
        const char *labels, *spec, *field;
    } bad[] = {
        {"\"zone\":1", NULL, "metadata.labels[zone]"},
        {NULL, "\"taints\":{}", "spec.taints"},
        {NULL, "\"taints\":[{\"effect\":\"NoSchedule\"}]", "spec.taints[0].key"},
        {NULL, "\"taints\":[{\"key\":\"k\",\"effect\":\"Never\"}]", "spec.taints[0].effect"},
        {NULL, "\"taints\":[{\"key\":\"k\"}]", "spec.taints[0].effect"},
        {NULL, "\"taints\":[{\"key\":\"k\",\"value\":[],\"effect\":\"NoSchedule\"}]",
         "spec.taints[0].value"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = node("n", bad[i].labels, bad[i].spec);
        assert_int_equal(fx_node_attrs_parse(n, &a, &err), FLEXPU_EINVAL);
        if (!strstr(err.msg, bad[i].field))
            fail_msg("case %zu: '%s' does not name %s", i, err.msg, bad[i].field);
        assert_null(a.labels);
        assert_null(a.taints);
        json_decref(n);
    }
}

/* ---- the model -------------------------------------------------------- */

static struct fx_model *model(void)
{
    struct flexpu_error err = {0};
    struct fx_model *m = fx_model_new("flexpu-scheduler", "flexpu", 1, &err);
    assert_non_null(m);
    return m;
}

static void node_event(struct fx_model *m, enum kube_event ev, json_t *n)
{
    fx_model_node_event(m, ev, n);
    json_decref(n);
}

/* Adds a pod and returns the next attempt (which must exist). */
static struct fx_attempt next_for(struct fx_model *m, json_t *p)
{
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
    struct fx_attempt at;
    assert_true(fx_model_next(m, &at));
    return at;
}

static void test_model_places_by_the_rules(void **state)
{
    (void)state;
    struct fx_model *m = model();
    node_event(m, KUBE_ADDED,
               node("tainted", "\"pool\":\"gpu\"",
                    "\"taints\":[{\"key\":\"nvidia.com/gpu\",\"effect\":\"NoSchedule\"}]"));
    node_event(m, KUBE_ADDED, node("small", "\"pool\":\"cpu\"", NULL));
    /* Without a toleration only "small" is possible; with one and a
     * selector, "tainted". */
    struct fx_attempt at = next_for(m, pod("a", NULL));
    assert_int_equal(at.outcome, FX_BIND);
    assert_string_equal(at.node, "small");
    fx_model_bind_done(m, at.uid, 0, 0);
    at = next_for(m, pod("b", "\"nodeSelector\":{\"pool\":\"gpu\"}"));
    assert_int_equal(at.outcome, FX_WAIT);
    if (!strstr(at.message, "1 untolerated taint {nvidia.com/gpu:NoSchedule}") ||
        !strstr(at.message, "1 node affinity/selector mismatch"))
        fail_msg("message '%s'", at.message);
    at = next_for(m, pod("c", "\"nodeSelector\":{\"pool\":\"gpu\"},\"tolerations\":[{\"key\":"
                              "\"nvidia.com/gpu\",\"operator\":\"Exists\"}]"));
    assert_int_equal(at.outcome, FX_BIND);
    assert_string_equal(at.node, "tainted");
    fx_model_bind_done(m, at.uid, 0, 0);
    /* A malformed constraint: an InvalidRequest naming the field. */
    at = next_for(m, pod("d", "\"tolerations\":[{\"key\":\"k\",\"operator\":\"Sometimes\"}]"));
    assert_int_equal(at.outcome, FX_INVALID);
    assert_non_null(strstr(at.message, "spec.tolerations[0].operator"));
    assert_non_null(strstr(at.message, "Sometimes"));
    /* A malformed inter-pod rule too (kube/pod_rules.c). */
    at = next_for(m, pod("e", "\"topologySpreadConstraints\":[{\"maxSkew\":1}]"));
    assert_int_equal(at.outcome, FX_INVALID);
    assert_non_null(strstr(at.message, "spec.topologySpreadConstraints"));
    /* The taint goes away: b, waiting for it, is placed there. */
    node_event(m, KUBE_MODIFIED, node("tainted", "\"pool\":\"gpu\"", NULL));
    assert_true(fx_model_next(m, &at));
    assert_int_equal(at.outcome, FX_BIND);
    assert_string_equal(at.uid, "b");
    assert_string_equal(at.node, "tainted");
    fx_model_bind_done(m, at.uid, 0, 0);
    struct flexpu_error err;
    assert_int_equal(fx_model_check(m, &err), 0);
    /* A node whose taints cannot be read takes no pods, and says why. */
    node_event(m, KUBE_MODIFIED,
               node("small", "\"pool\":\"cpu\"", "\"taints\":[{\"key\":\"x\",\"effect\":\"Bad\"}]"));
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    assert_int_equal(st.nodes, 1);
    fx_model_free(m);
}

static void test_model_preferred_affinity(void **state)
{
    (void)state;
    struct fx_model *m = model();
    node_event(m, KUBE_ADDED, node("z1", "\"zone\":\"z1\"", NULL));
    node_event(m, KUBE_ADDED, node("z2", "\"zone\":\"z2\"", NULL));
    node_event(m, KUBE_ADDED, node("soft", "\"zone\":\"z2\"",
                                   "\"taints\":[{\"key\":\"spot\",\"effect\":\"PreferNoSchedule\"}]"));
    for (int i = 0; i < 6; i++) {
        char uid[8];
        snprintf(uid, sizeof(uid), "p%d", i);
        struct fx_attempt at = next_for(
            m, pod(uid, "\"affinity\":{\"nodeAffinity\":{\"preferredDuringSchedulingIgnored"
                        "DuringExecution\":[{\"weight\":50,\"preference\":{\"matchExpressions\":"
                        "[{\"key\":\"zone\",\"operator\":\"In\",\"values\":[\"z2\"]}]}}]}}"));
        assert_int_equal(at.outcome, FX_BIND);
        /* z2 matches and is untainted; "soft" matches but its soft taint
         * outweighs the preference; z1 does not match. */
        assert_string_equal(at.node, "z2");
        fx_model_bind_done(m, at.uid, 0, 0);
    }
    fx_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pod_constraints_read_as_kube_scheduler),
        cmocka_unit_test(test_malformed_pod_constraints_named),
        cmocka_unit_test(test_node_labels_and_taints),
        cmocka_unit_test(test_model_places_by_the_rules),
        cmocka_unit_test(test_model_preferred_affinity),
    };
    return cmocka_run_group_tests_name("kube_filter", tests, NULL, NULL);
}
