/* SPDX-License-Identifier: Apache-2.0 */
/* Inter-pod rules in the scheduler's model (docs/KUBERNETES.md, "Node
 * filters"): required pod anti-affinity and its symmetric rule, required
 * pod affinity, as kube-scheduler's InterPodAffinity plugin evaluates them,
 * topology spread as its PodTopologySpread does, their preferred and
 * ScheduleAnyway forms as those plugins score them, and their malformed
 * forms refused naming the field. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kube/contract.h"
#include "scheduler/model.h"

#include "model_fixture.h"

/* Node `name` with one A100, 16 CPUs and labels `zone` (topology.kubernetes.io/zone,
 * NULL: none) and kubernetes.io/hostname. */
static void node(struct fx_model *m, const char *name, const char *zone)
{
    char *text = a100_inventory(name, 1);
    json_t *labels = json_pack("{s:s}", "kubernetes.io/hostname", name);
    if (zone)
        json_object_set_new(labels, "topology.kubernetes.io/zone", json_string(zone));
    json_t *n = json_pack("{s:{s:s, s:{s:s}, s:o}, s:{}, s:{s:{s:s, s:s}}}", "metadata", "name",
                          name, "annotations", "flexpu.io/gpus", text, "labels", labels, "spec",
                          "status", "allocatable", "cpu", "16", "memory", "64Gi");
    assert_non_null(n);
    fx_model_node_event(m, KUBE_MODIFIED, n);
    json_decref(n);
    free(text);
}

/* A model with node `a` in zone a and node `b` in zone b. */
static struct fx_model *two_zones(const char *a, const char *b)
{
    struct fx_model *m = new_model();
    node(m, a, "a");
    node(m, b, "b");
    return m;
}

/* Pod `uid` in namespace ns asking a tenth of a GPU, with labels and
 * spec.affinity given as JSON text (NULL: none; {"spec": {...}} and
 * {"metadata": {...}}: members of the spec and metadata instead); bound to
 * `on` (another
 * scheduler's pod, holding `cores` of its GPU) when not NULL. */
static void pod_full(struct fx_model *m, const char *uid, const char *ns, const char *labels,
                     const char *affinity, int sec, const char *on, const char *cores, int prio)
{
    char created[40];
    snprintf(created, sizeof(created), "2026-01-01T00:%02d:%02dZ", sec / 60, sec % 60);
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:s}, s:{s:s, s:[{s:s, s:{s:{s:s, s:s, s:s}}}]}}",
                          "metadata", "name", uid, "namespace", ns, "uid", uid,
                          "creationTimestamp", created, "spec", "schedulerName",
                          on ? "default-scheduler" : "flexpu-scheduler", "containers", "name",
                          "c", "resources", "limits", "cpu", "1", "flexpu.io/gpu", "1",
                          "flexpu.io/gpu-cores", cores);
    assert_non_null(p);
    json_object_set_new(json_object_get(p, "spec"), "priority", json_integer(prio));
    json_error_t je;
    if (labels) {
        json_t *l = json_loads(labels, 0, &je);
        if (!l)
            fail_msg("labels: %s", je.text);
        json_object_set_new(json_object_get(p, "metadata"), "labels", l);
    }
    if (affinity) { /* {"spec": {...}}: members of the spec; else spec.affinity */
        json_t *a = json_loads(affinity, 0, &je);
        if (!a)
            fail_msg("affinity: %s", je.text);
        if (json_object_get(a, "metadata"))
            json_object_update(json_object_get(p, "metadata"), json_object_get(a, "metadata"));
        if (json_object_get(a, "spec"))
            json_object_update(json_object_get(p, "spec"), json_object_get(a, "spec"));
        else if (!json_object_get(a, "metadata"))
            json_object_set(json_object_get(p, "spec"), "affinity", a);
        json_decref(a);
    }
    if (on) {
        struct fx_allocation al = {.ngpu = 1};
        snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "GPU-%s-0", on);
        al.gpus[0].cores = atoi(cores);
        al.gpus[0].mem = fx_default_slice_mem(1, al.gpus[0].cores, 0, 80 * GIB);
        char *text = fx_allocation_format(&al);
        json_object_set_new(json_object_get(p, "metadata"), "annotations",
                            json_pack("{s:s}", FX_ANN_ALLOCATION, text));
        free(text);
        json_object_set_new(json_object_get(p, "spec"), "nodeName", json_string(on));
    }
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
}

static void pod_in(struct fx_model *m, const char *uid, const char *ns, const char *labels,
                   const char *affinity, int sec, const char *on)
{
    pod_full(m, uid, ns, labels, affinity, sec, on, "10", 0);
}

static void pod(struct fx_model *m, const char *uid, const char *labels, const char *affinity,
                int sec)
{
    pod_in(m, uid, "t", labels, affinity, sec, NULL);
}

#define WEB "{\"app\": \"web\"}"
/* Required anti-affinity to app=web on topology key KEY. */
#define ANTI(KEY)                                                                                  \
    "{\"podAntiAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": [{"               \
    "\"labelSelector\": {\"matchLabels\": {\"app\": \"web\"}}, \"topologyKey\": \"" KEY "\"}]}}"
#define HOST "kubernetes.io/hostname"
#define ZONE "topology.kubernetes.io/zone"

static void check(struct fx_model *m)
{
    struct flexpu_error err = {0};
    if (fx_model_check(m, &err))
        fail_msg("model check: %s", err.msg);
}

/* check(), then the model freed: how a test ends. */
static void check_free(struct fx_model *m)
{
    check(m);
    fx_model_free(m);
}

/* A list of excluded domains too long for the message ends with how many
 * were left out, every name shown whole, and a clause with no room left is
 * said as "; ...": 40 nodes each holding a web pod with anti-affinity to
 * web, a replica with the same anti-affinity waits (its own rule, then
 * theirs). */
static void test_long_domain_list_counted(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    enum { N = 40 };
    for (int i = 0; i < N; i++) {
        char name[32], uid[32];
        snprintf(name, sizeof(name), "gpu-node-%02d", i);
        snprintf(uid, sizeof(uid), "w%02d", i);
        node(m, name, NULL);
        pod_in(m, uid, "t", WEB, ANTI(HOST), i, name);
    }
    pod(m, "r", WEB, ANTI(HOST), N);
    struct fx_attempt w = next(m, FX_WAIT, "r");
    const char *head = "pod anti-affinity: not " HOST " in [";
    const char *list = strstr(w.message, head);
    assert_non_null(list);
    list += strlen(head);
    const char *end = strchr(list, ']');
    assert_non_null(end);
    assert_string_equal(end, "]; ...)");
    /* "gpu-node-00 gpu-node-01 ... +K more": whole names, in order, then
     * the count of those left out. */
    int shown = 0, more = -1;
    for (const char *t = list; t < end;) {
        size_t n = strcspn(t, " ]");
        if (n == 3 && strncmp(t, "...", 3) == 0) {
            char tail[32];
            assert_int_equal(sscanf(t, "... +%d more%31s", &more, tail), 2);
            assert_string_equal(tail, "];");
            break;
        }
        char want[32];
        snprintf(want, sizeof(want), "gpu-node-%02d", shown++);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(t, want, n);
        t += n + (t[n] == ' ');
    }
    assert_true(shown > 0);
    assert_int_equal(shown + more, N);
    check_free(m);
}

/* Replicas with anti-affinity on the hostname go one per node; the third
 * of two nodes waits, told why, and is placed when a third node appears. */
static void test_one_per_node(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "n1", NULL);
    node(m, "n2", NULL);
    pod(m, "r1", WEB, ANTI(HOST), 0);
    pod(m, "r2", WEB, ANTI(HOST), 1);
    pod(m, "r3", WEB, ANTI(HOST), 2);
    struct fx_attempt a1 = next(m, FX_BIND, "r1");
    struct fx_attempt a2 = next(m, FX_BIND, "r2"); /* assumed r1 counts already */
    assert_string_not_equal(a1.node, a2.node);
    struct fx_attempt w = next(m, FX_WAIT, "r3");
    assert_non_null(strstr(w.message, "pod anti-affinity: not " HOST " in [n1 n2]"));
    struct fx_attempt none;
    assert_false(fx_model_next(m, &none));
    node(m, "n3", NULL);
    struct fx_attempt a3 = next(m, FX_BIND, "r3");
    assert_string_equal(a3.node, "n3");
    check_free(m);
}

/* On a zone key: two zones take two replicas; the third waits, and is
 * placed when a replica is deleted, in the zone it freed, though the nodes
 * there never lacked capacity (woken by the pod gone, not by a node). */
static void test_zone_key(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "a1", "a");
    node(m, "a2", "a");
    node(m, "b1", "b");
    pod(m, "r1", WEB, ANTI(ZONE), 0);
    pod(m, "r2", WEB, ANTI(ZONE), 1);
    pod(m, "r3", WEB, ANTI(ZONE), 2);
    struct fx_attempt a1 = next(m, FX_BIND, "r1");
    struct fx_attempt a2 = next(m, FX_BIND, "r2");
    assert_true((a1.node[0] == 'a') != (a2.node[0] == 'a'));
    struct fx_attempt w = next(m, FX_WAIT, "r3");
    assert_non_null(strstr(w.message, "not " ZONE " in [a b]"));
    const char *gone_uid = a1.node[0] == 'a' ? "r1" : "r2";
    gone(m, gone_uid);
    struct fx_attempt a3 = next(m, FX_BIND, "r3");
    assert_int_equal(a3.node[0], 'a');
    check_free(m);
}

/* kube-scheduler's symmetric rule: a pod already on n1 whose anti-affinity
 * selects the incoming pod keeps it off n1, though the incoming pod has no
 * rule of its own; with n1 alone it waits, and goes there once that pod is
 * deleted. Another scheduler's pod counts as much as ours. */
static void test_symmetric(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "n1", NULL);
    node(m, "n2", NULL);
    pod_in(m, "e1", "t", "{\"app\": \"db\"}", ANTI(HOST), 0, "n1");
    for (int i = 0; i < 3; i++) { /* never n1, whatever the engine prefers */
        char uid[8];
        snprintf(uid, sizeof(uid), "w%d", i);
        pod(m, uid, WEB, NULL, 1 + i);
        assert_string_equal(next(m, FX_BIND, uid).node, "n2");
    }
    fx_model_free(m);

    m = new_model();
    node(m, "n1", NULL);
    pod_in(m, "e1", "t", NULL, ANTI(HOST), 0, "n1");
    pod(m, "w", WEB, NULL, 1);
    struct fx_attempt w = next(m, FX_WAIT, "w");
    assert_non_null(strstr(w.message, "existing pods' anti-affinity: not " HOST " in [n1]"));
    pod(m, "x", "{\"app\": \"other\"}", NULL, 2); /* not selected: goes */
    assert_string_equal(next(m, FX_BIND, "x").node, "n1");
    gone(m, "e1");
    assert_string_equal(next(m, FX_BIND, "w").node, "n1");
    check_free(m);
}

/* A term without namespaces selects pods of the pod's own namespace only;
 * one listing namespaces, those; an empty namespaceSelector, every one. */
static void test_namespaces(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "n1", NULL);
    pod_in(m, "o1", "other", WEB, NULL, 0, "n1");
    pod(m, "p1", WEB, ANTI(HOST), 1);
    assert_string_equal(next(m, FX_BIND, "p1").node, "n1"); /* o1 is in another namespace */
    pod(m, "p2", "{\"app\": \"api\"}",
        "{\"podAntiAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": [{"
        "\"labelSelector\": {\"matchLabels\": {\"app\": \"web\"}}, \"namespaces\": [\"other\"],"
        " \"topologyKey\": \"" HOST "\"}]}}",
        2);
    next(m, FX_WAIT, "p2");
    pod(m, "p3", "{\"app\": \"api\"}",
        "{\"podAntiAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": [{"
        "\"labelSelector\": {\"matchExpressions\": [{\"key\": \"app\", \"operator\": \"In\","
        " \"values\": [\"web\", \"x\"]}]}, \"namespaceSelector\": {},"
        " \"topologyKey\": \"" HOST "\"}]}}",
        3);
    next(m, FX_WAIT, "p3");
    pod(m, "p4", "{\"app\": \"api\"}",
        "{\"podAntiAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": [{"
        "\"labelSelector\": {\"matchExpressions\": [{\"key\": \"app\", \"operator\": \"NotIn\","
        " \"values\": [\"web\"]}]}, \"namespaceSelector\": {},"
        " \"topologyKey\": \"" HOST "\"}]}}",
        4);
    assert_string_equal(next(m, FX_BIND, "p4").node, "n1"); /* p2, p3 wait: none is on n1 */
    check_free(m);
}

#define AFF(SEL, KEY)                                                                              \
    "{\"podAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": [{"                   \
    "\"labelSelector\": {\"matchLabels\": " SEL "}, \"topologyKey\": \"" KEY "\"}]}}"

/* Pod affinity: a pod goes where a pod it selects runs (in that zone);
 * with none anywhere it waits unless it selects itself (the first of a
 * group), and is placed once a pod it selects is bound. */
static void test_affinity(void **state)
{
    (void)state;
    struct fx_model *m = two_zones("a1", "b1");
    node(m, "b2", "b");
    node(m, "nz", NULL); /* no zone label: never for a zone affinity */
    pod_in(m, "cache", "t", "{\"app\": \"cache\"}", NULL, 0, "b2");
    for (int i = 0; i < 3; i++) {
        char uid[8];
        snprintf(uid, sizeof(uid), "c%d", i);
        pod(m, uid, WEB, AFF("{\"app\": \"cache\"}", ZONE), 1 + i);
        assert_int_equal(next(m, FX_BIND, uid).node[0], 'b');
    }
    /* Nothing selected anywhere, and not itself: waits. */
    pod(m, "lonely", WEB, AFF("{\"app\": \"queue\"}", ZONE), 10);
    struct fx_attempt w = next(m, FX_WAIT, "lonely");
    assert_non_null(strstr(w.message, "pod affinity"));
    /* Selects itself, nothing else: the first goes anywhere with a zone,
     * the second joins it. */
    pod(m, "s1", "{\"app\": \"s\"}", AFF("{\"app\": \"s\"}", ZONE), 11);
    const char *n1 = next(m, FX_BIND, "s1").node;
    assert_string_not_equal(n1, "nz");
    char z = n1[0];
    pod(m, "s2", "{\"app\": \"s\"}", AFF("{\"app\": \"s\"}", ZONE), 12);
    assert_int_equal(next(m, FX_BIND, "s2").node[0], z);
    /* A queue pod bound in zone a: lonely is woken and goes there. */
    pod_in(m, "q", "t", "{\"app\": \"queue\"}", NULL, 13, "a1");
    assert_string_equal(next(m, FX_BIND, "lonely").node, "a1");
    check_free(m);
}

/* Two affinity terms: as kube-scheduler, only a pod that both select
 * counts; a zone holding one pod of each (a1: tier=cache and team=x apart)
 * satisfies neither, so the pod waits, and goes to zone b once a pod with
 * both labels is bound there. */
static void test_affinity_all_terms(void **state)
{
    (void)state;
    struct fx_model *m = two_zones("a1", "b1");
    pod_in(m, "cache", "t", "{\"tier\": \"cache\"}", NULL, 0, "a1");
    pod_in(m, "xteam", "t", "{\"team\": \"x\"}", NULL, 1, "a1");
    pod(m, "p", WEB,
        "{\"podAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": ["
        "{\"labelSelector\": {\"matchLabels\": {\"tier\": \"cache\"}}, \"topologyKey\": \"" ZONE "\"},"
        "{\"labelSelector\": {\"matchLabels\": {\"team\": \"x\"}}, \"topologyKey\": \"" ZONE "\"}]}}",
        2);
    struct fx_attempt w = next(m, FX_WAIT, "p");
    assert_non_null(strstr(w.message, "pod affinity: no pod it selects"));
    pod_in(m, "both", "t", "{\"tier\": \"cache\", \"team\": \"x\"}", NULL, 3, "b1");
    assert_string_equal(next(m, FX_BIND, "p").node, "b1");
    check_free(m);
}

/* Preemption never picks a node the rule excludes: two nodes full of
 * low-priority pods, one of them selected by the preemptor's anti-affinity;
 * the victim is on the other node, whichever of the two the victim search
 * would prefer without the rule (both labellings tried). */
static void test_preemption_honours_rules(void **state)
{
    (void)state;
    for (int flip = 0; flip < 2; flip++) {
        struct fx_model *m = new_model();
        node(m, "n1", NULL);
        node(m, "n2", NULL);
        pod_full(m, "o1", "t", flip ? "{\"app\": \"db\"}" : WEB, NULL, 0, "n1", "100", 0);
        pod_full(m, "o2", "t", flip ? WEB : "{\"app\": \"db\"}", NULL, 1, "n2", "100", 0);
        pod_full(m, "p", "t", NULL, ANTI(HOST), 2, NULL, "100", 1000);
        struct fx_attempt a = next(m, FX_NOMINATE, "p");
        assert_string_equal(a.node, flip ? "n1" : "n2");
        a = next(m, FX_EVICT, flip ? "o1" : "o2");
        check(m);
        fx_model_free(m);
    }
}

/* A pod landing only adds to what anti-affinity excludes, as
 * kube-scheduler's queueing hints have it: pods waiting on their own
 * anti-affinity, or on a placed pod's, are not tried again when a pod
 * they select (or one whose anti-affinity selects them) lands, which with
 * 90 waiting replicas made each such bind 90 futile decisions; they are
 * when one leaves. Pod affinity is woken by a pod landing. */
static void test_landing_wakes_no_anti_waiter(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "n1", NULL);
    pod(m, "r1", WEB, ANTI(HOST), 0);
    assert_string_equal(next(m, FX_BIND, "r1").node, "n1");
    pod(m, "r2", WEB, ANTI(HOST), 1);
    next(m, FX_WAIT, "r2");
    pod(m, "w", "{\"app\": \"db\"}", NULL, 2); /* r1's anti-affinity does not select it */
    assert_string_equal(next(m, FX_BIND, "w").node, "n1");
    pod(m, "v", WEB, NULL, 3); /* selected by r1's: waits on the symmetric rule */
    next(m, FX_WAIT, "v");
    uint64_t wakes = model_stats(m).wakes;
    pod_in(m, "o1", "t", WEB, NULL, 4, "n1"); /* r2 selects it */
    pod_in(m, "o2", "t", NULL, ANTI(HOST), 5, "n1"); /* its anti-affinity selects r2 and v */
    assert_int_equal(model_stats(m).wakes, wakes);
    struct fx_attempt none;
    assert_false(fx_model_next(m, &none));
    gone(m, "r1"); /* leaving wakes: r2 and v try again, o1 and o2 still exclude n1 */
    assert_true(model_stats(m).wakes > wakes);
    assert_false(fx_model_next(m, &none));
    gone(m, "o2");
    gone(m, "o1");
    assert_string_equal(next(m, FX_BIND, "r2").node, "n1");
    check_free(m);
}

/* Malformed rules are refused naming the field and the value; a member of
 * a pod group with a rule, naming the field. */
static void test_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *aff, *want;
    } cases[] = {
        {"{\"podAntiAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": [{"
         "\"labelSelector\": {\"matchExpressions\": [{\"key\": \"app\", \"operator\": \"Is\","
         " \"values\": [\"web\"]}]}, \"topologyKey\": \"" HOST "\"}]}}",
         "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]."
         "labelSelector.matchExpressions[0].operator': invalid value 'Is'"},
        {"{\"podAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": [{"
         "\"labelSelector\": {\"matchLabels\": {\"app\": \"web\"}}, \"topologyKey\": \"\"}]}}",
         "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]."
         "topologyKey': invalid value '': must not be empty"},
        {"{\"podAntiAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": [{"
         "\"labelSelector\": {\"matchExpressions\": [{\"key\": \"app\", \"operator\": \"In\"}]},"
         " \"topologyKey\": \"" HOST "\"}]}}",
         "labelSelector.matchExpressions[0].values': invalid value 'In'"},
        {"{\"podAntiAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": [{"
         "\"labelSelector\": {}, \"namespaceSelector\": {\"matchLabels\": {\"team\": \"a\"}},"
         " \"topologyKey\": \"" HOST "\"}]}}",
         "[0].namespaceSelector'"},
        {"{\"podAntiAffinity\": {\"preferredDuringSchedulingIgnoredDuringExecution\": [{"
         "\"weight\": 0, \"podAffinityTerm\": {\"topologyKey\": \"" HOST "\"}}]}}",
         "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]."
         "weight': invalid value '0': must be an integer from 1 to 100"},
        {"{\"podAffinity\": {\"preferredDuringSchedulingIgnoredDuringExecution\": [{"
         "\"weight\": 5}]}}",
         "spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]."
         "podAffinityTerm': invalid value '': must be a pod affinity term"},
        {"{\"spec\": {\"topologySpreadConstraints\": [{\"maxSkew\": 0, \"topologyKey\": \"z\","
         " \"whenUnsatisfiable\": \"DoNotSchedule\"}]}}",
         "spec.topologySpreadConstraints[0].maxSkew': invalid value '0'"},
        {"{\"spec\": {\"topologySpreadConstraints\": [{\"maxSkew\": 1, \"topologyKey\": \"z\","
         " \"whenUnsatisfiable\": \"Sometimes\"}]}}",
         "spec.topologySpreadConstraints[0].whenUnsatisfiable': invalid value 'Sometimes'"},
        {"{\"spec\": {\"topologySpreadConstraints\": [{\"maxSkew\": 1, \"topologyKey\": \"z\","
         " \"whenUnsatisfiable\": \"DoNotSchedule\", \"labelSelector\": {\"matchExpressions\":"
         " [{\"key\": \"app\", \"operator\": \"Exists\", \"values\": [\"x\"]}]}}]}}",
         "spec.topologySpreadConstraints[0].labelSelector.matchExpressions[0].values'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fx_model *m = new_model();
        node(m, "n1", NULL);
        pod(m, "p", WEB, cases[i].aff, 0);
        struct fx_attempt a = next(m, FX_INVALID, "p");
        if (!strstr(a.message, cases[i].want))
            fail_msg("case %zu: %s", i, a.message);
        fx_model_free(m);
    }
    struct fx_model *m = new_model();
    node(m, "n1", NULL);
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:{s:s}, s:{s:s}}, s:{s:s, s:[{s:s, s:{s:{s:s}}}]}}",
                          "metadata", "name", "g", "namespace", "t", "uid", "g", "labels",
                          "flexpu.io/pod-group", "grp", "annotations", "flexpu.io/min-members",
                          "2", "spec", "schedulerName",
                          "flexpu-scheduler", "containers", "name", "c", "resources", "limits",
                          "cpu", "1");
    json_error_t je;
    json_object_set_new(json_object_get(p, "spec"), "affinity", json_loads(ANTI(HOST), 0, &je));
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
    struct fx_attempt a = next(m, FX_INVALID, "g");
    if (!strstr(a.message, "spec.affinity.podAntiAffinity") || !strstr(a.message, "pod group"))
        fail_msg("%s", a.message);
    fx_model_free(m);
}

/* A DoNotSchedule spread constraint on app=web over the zone key. */
#define SPREAD(EXTRA)                                                                              \
    "{\"spec\": {\"topologySpreadConstraints\": [{\"maxSkew\": 1, \"topologyKey\": \"" ZONE      \
    "\", \"whenUnsatisfiable\": \"DoNotSchedule\", \"labelSelector\": {\"matchLabels\": "         \
    "{\"app\": \"web\"}}" EXTRA "}]}}"

static int in_zone(struct fx_attempt a)
{
    return a.node[0];
}

/* maxSkew 1 over two zones: replicas alternate (never two ahead); with a
 * zone already one ahead, the next goes to the other; when the other zone
 * is full the pod waits, told the allowed zones, and is placed when room
 * frees there, or in the first zone once a replica there is deleted. */
static void test_spread(void **state)
{
    (void)state;
    struct fx_model *m = two_zones("a1", "b1");
    int na = 0, nb = 0;
    for (int i = 0; i < 6; i++) {
        char uid[8];
        snprintf(uid, sizeof(uid), "s%d", i);
        pod(m, uid, WEB, SPREAD(""), i);
        *(in_zone(next(m, FX_BIND, uid)) == 'a' ? &na : &nb) += 1;
        assert_true(na - nb <= 1 && nb - na <= 1);
    }
    assert_int_equal(na, 3);
    check_free(m);

    for (int variant = 0; variant < 2; variant++) {
        m = new_model();
        node(m, "a1", "a");
        node(m, "b1", "b");
        pod_full(m, "big", "t", NULL, NULL, 0, "b1", "100", 0); /* b1's GPU full */
        pod_in(m, "w0", "t", WEB, NULL, 1, "a1");
        pod_in(m, "x0", "other", WEB, NULL, 2, "a1"); /* another namespace: not counted */
        pod(m, "w1", WEB, SPREAD(""), 3);
        struct fx_attempt w = next(m, FX_WAIT, "w1");
        if (!strstr(w.message, "topology spread: only " ZONE " in [b]"))
            fail_msg("%s", w.message);
        gone(m, variant ? "w0" : "big");
        assert_string_equal(next(m, FX_BIND, "w1").node, variant ? "a1" : "b1");
        check(m);
        fx_model_free(m);
    }
}

/* minDomains above the domains there are: the smallest count is taken as
 * 0, so a zone already holding one allows no more (maxSkew 1); the default
 * (1) allows it. ScheduleAnyway is a preference: the pod is placed
 * whatever the skew. */
static void test_spread_min_domains_and_schedule_anyway(void **state)
{
    (void)state;
    struct fx_model *m = two_zones("a1", "b1");
    pod_in(m, "wa", "t", WEB, NULL, 0, "a1");
    pod_in(m, "wb", "t", WEB, NULL, 1, "b1");
    pod(m, "md", WEB, SPREAD(", \"minDomains\": 3"), 2);
    struct fx_attempt w = next(m, FX_WAIT, "md");
    assert_non_null(strstr(w.message, "topology spread: no domain of " ZONE));
    pod(m, "plain", WEB, SPREAD(""), 3);
    next(m, FX_BIND, "plain");
    pod(m, "any", WEB,
        "{\"spec\": {\"topologySpreadConstraints\": [{\"maxSkew\": 1, \"topologyKey\": \"" ZONE
        "\", \"whenUnsatisfiable\": \"ScheduleAnyway\", \"labelSelector\": {\"matchLabels\": "
        "{\"app\": \"web\"}}}]}}",
        4);
    next(m, FX_BIND, "any");
    check_free(m);
}

/* nodeAffinityPolicy: Honor (the default) counts only the zones of nodes
 * the pod's node selector admits; Ignore counts every zone, so an empty
 * zone the pod cannot go to holds it back. */
static void test_spread_node_affinity_policy(void **state)
{
    (void)state;
    for (int ignore = 0; ignore < 2; ignore++) {
        struct fx_model *m = new_model();
        node(m, "a1", "a");
        node(m, "b1", "b");
        pod_in(m, "wa", "t", WEB, NULL, 0, "a1");
        char spec[1024];
        snprintf(spec, sizeof(spec),
                 "{\"spec\": {\"nodeSelector\": {\"kubernetes.io/hostname\": \"a1\"}, "
                 "\"topologySpreadConstraints\": [{\"maxSkew\": 1, \"topologyKey\": \"" ZONE
                 "\", \"whenUnsatisfiable\": \"DoNotSchedule\", \"nodeAffinityPolicy\": \"%s\", "
                 "\"labelSelector\": {\"matchLabels\": {\"app\": \"web\"}}}]}}",
                 ignore ? "Ignore" : "Honor");
        pod(m, "p", WEB, spec, 1);
        if (ignore)
            next(m, FX_WAIT, "p");
        else
            assert_string_equal(next(m, FX_BIND, "p").node, "a1");
        fx_model_free(m);
    }
}

/* A preferred pod (anti-)affinity term on KEY selecting app=web, of
 * weight W. */
#define PREFER(KIND, W, KEY)                                                                       \
    "{\"" KIND "\": {\"preferredDuringSchedulingIgnoredDuringExecution\": [{\"weight\": " #W      \
    ", \"podAffinityTerm\": {\"labelSelector\": {\"matchLabels\": {\"app\": \"web\"}}, "           \
    "\"topologyKey\": \"" KEY "\"}}]}}"

/* Preferred anti-affinity steers a pod off the node of the pod it
 * selects, though packing there would fragment less (the engine's policy
 * alone puts it on n1, whose GPU it would fill); preferred affinity
 * draws it to the zone of the pod it selects, off a node packing prefers
 * (a1, whose GPU it would fill). */
static void test_preferred_terms(void **state)
{
    (void)state;
    struct fx_model *m = two_zones("n1", "n2");
    pod_full(m, "w", "t", WEB, NULL, 0, "n1", "90", 0);
    pod(m, "p", NULL, PREFER("podAntiAffinity", 50, HOST), 1);
    assert_string_equal(next(m, FX_BIND, "p").node, "n2");
    check_free(m);

    m = two_zones("a1", "b1");
    pod_full(m, "other", "t", NULL, NULL, 0, "a1", "90", 0);
    pod_in(m, "w", "t", WEB, NULL, 1, "b1");
    pod(m, "p", NULL, PREFER("podAffinity", 1, ZONE), 2);
    assert_string_equal(next(m, FX_BIND, "p").node, "b1");
    check_free(m);
}

/* Preferred affinity of weight WA to app=a and WB to app=b, both over
 * the zone key. */
#define PREFER_AB(WA, WB)                                                                          \
    "{\"podAffinity\": {\"preferredDuringSchedulingIgnoredDuringExecution\": [{\"weight\": " #WA   \
    ", \"podAffinityTerm\": {\"labelSelector\": {\"matchLabels\": {\"app\": \"a\"}}, "             \
    "\"topologyKey\": \"" ZONE "\"}}, {\"weight\": " #WB ", \"podAffinityTerm\": {"                \
    "\"labelSelector\": {\"matchLabels\": {\"app\": \"b\"}}, \"topologyKey\": \"" ZONE "\"}}]}}"

/* The weights decide between two satisfied preferred terms: app=a runs in
 * zone a, app=b in zone b, alike in load, so the heavier term wins, and
 * swapping the weights swaps the zone (weights read as equal would tie
 * and put the pod in the same zone both times). */
static void test_preferred_weights_count(void **state)
{
    (void)state;
    static const struct {
        const char *affinity, *want;
    } cases[] = {{PREFER_AB(10, 90), "b1"}, {PREFER_AB(90, 10), "a1"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fx_model *m = two_zones("a1", "b1");
        pod_in(m, "pa", "t", "{\"app\": \"a\"}", NULL, 0, "a1");
        pod_in(m, "pb", "t", "{\"app\": \"b\"}", NULL, 1, "b1");
        pod(m, "p", NULL, cases[i].affinity, 2);
        assert_string_equal(next(m, FX_BIND, "p").node, cases[i].want);
        check_free(m);
    }
}

/* The symmetric part kube-scheduler scores: a pod placed earlier whose
 * preferred anti-affinity selects the incoming pod keeps it off its node,
 * and one whose required (or preferred) affinity selects it draws it to
 * its zone, though the incoming pod has no rules of its own. */
static void test_preferred_symmetric(void **state)
{
    (void)state;
    struct fx_model *m = two_zones("n1", "n2");
    pod_full(m, "q", "t", NULL, PREFER("podAntiAffinity", 100, HOST), 0, "n1", "90", 0);
    pod(m, "p", WEB, NULL, 1);
    assert_string_equal(next(m, FX_BIND, "p").node, "n2");
    check_free(m);

    m = two_zones("a1", "b1");
    pod_full(m, "other", "t", NULL, NULL, 0, "a1", "90", 0);
    pod_in(m, "q", "t", NULL,
           "{\"podAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": [{"
           "\"labelSelector\": {\"matchLabels\": {\"app\": \"web\"}}, \"topologyKey\": \"" ZONE
           "\"}]}}",
           1, "b1");
    pod(m, "p", WEB, NULL, 2);
    assert_string_equal(next(m, FX_BIND, "p").node, "b1");
    check_free(m);
}

/* A ScheduleAnyway constraint on app=web over the zone key. */
#define SPREAD_ANYWAY(KEY)                                                                         \
    "{\"spec\": {\"topologySpreadConstraints\": [{\"maxSkew\": 1, \"topologyKey\": \"" KEY       \
    "\", \"whenUnsatisfiable\": \"ScheduleAnyway\", \"labelSelector\": {\"matchLabels\": "        \
    "{\"app\": \"web\"}}}]}}"

/* ScheduleAnyway is scored as kube-scheduler's PodTopologySpread: fewer
 * matching pods in a node's zone score higher, and a node without the key
 * scores lowest (c1), so the pod goes to the empty zone b though packing
 * prefers a1; with every zone's count equal (the pods in zone a are in
 * another namespace or not selected) packing decides again. Over the
 * hostname key, the node holding fewer selected pods wins. */
static void test_spread_schedule_anyway_scored(void **state)
{
    (void)state;
    struct fx_model *m = two_zones("a1", "b1");
    node(m, "c1", NULL);
    pod_in(m, "w0", "t", WEB, NULL, 0, "a1");
    pod_in(m, "w1", "t", WEB, NULL, 1, "a1");
    pod(m, "p", WEB, SPREAD_ANYWAY(ZONE), 2);
    assert_string_equal(next(m, FX_BIND, "p").node, "b1");
    check_free(m);

    m = two_zones("a1", "b1");
    pod_in(m, "w0", "other", WEB, NULL, 0, "a1");
    pod_in(m, "w1", "t", "{\"app\": \"db\"}", NULL, 1, "a1");
    pod(m, "p", WEB, SPREAD_ANYWAY(ZONE), 2);
    assert_string_equal(next(m, FX_BIND, "p").node, "a1");
    fx_model_free(m);

    m = two_zones("n1", "n2");
    pod_full(m, "w0", "t", WEB, NULL, 0, "n1", "80", 0);
    pod_in(m, "w1", "t", WEB, NULL, 1, "n1");
    pod_in(m, "w2", "t", WEB, NULL, 2, "n2");
    pod(m, "p", WEB, SPREAD_ANYWAY(HOST), 3);
    assert_string_equal(next(m, FX_BIND, "p").node, "n2"); /* packing alone: n1 */
    check_free(m);
}

#define TERMINATING "{\"metadata\": {\"deletionTimestamp\": \"2026-01-01T01:00:00Z\"}}"

/* A terminating pod (deletionTimestamp set) does not count for topology
 * spread, as kube-scheduler leaves it out: w1 waits while w0 counts in
 * zone a and b1 is full, and is placed on a1 once w0's deletion begins
 * (its update wakes w1). It still counts for pod anti-affinity, as in
 * kube-scheduler's InterPodAffinity. */
static void test_terminating_not_counted_for_spread(void **state)
{
    (void)state;
    struct fx_model *m = two_zones("a1", "b1");
    pod_full(m, "big", "t", NULL, NULL, 0, "b1", "100", 0);
    pod_in(m, "w0", "t", WEB, NULL, 1, "a1");
    pod(m, "w1", WEB, SPREAD(""), 2);
    struct fx_attempt w = next(m, FX_WAIT, "w1");
    assert_non_null(strstr(w.message, "topology spread: only " ZONE " in [b]"));
    pod_in(m, "w0", "t", WEB, TERMINATING, 1, "a1");
    assert_string_equal(next(m, FX_BIND, "w1").node, "a1");
    check_free(m);

    m = new_model();
    node(m, "a1", "a");
    pod_in(m, "w0", "t", WEB, TERMINATING, 0, "a1");
    pod(m, "p", WEB, SPREAD(""), 1);
    assert_string_equal(next(m, FX_BIND, "p").node, "a1");
    pod(m, "r", WEB, ANTI(ZONE), 2);
    next(m, FX_WAIT, "r");
    fx_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_per_node), cmocka_unit_test(test_zone_key),
        cmocka_unit_test(test_long_domain_list_counted),
        cmocka_unit_test(test_symmetric),    cmocka_unit_test(test_namespaces),
        cmocka_unit_test(test_affinity),     cmocka_unit_test(test_preemption_honours_rules),
        cmocka_unit_test(test_affinity_all_terms),
        cmocka_unit_test(test_spread),
        cmocka_unit_test(test_spread_min_domains_and_schedule_anyway),
        cmocka_unit_test(test_spread_node_affinity_policy),
        cmocka_unit_test(test_landing_wakes_no_anti_waiter),
        cmocka_unit_test(test_preferred_terms),
        cmocka_unit_test(test_preferred_symmetric),
        cmocka_unit_test(test_preferred_weights_count),
        cmocka_unit_test(test_spread_schedule_anyway_scored),
        cmocka_unit_test(test_terminating_not_counted_for_spread),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
