/* SPDX-License-Identifier: Apache-2.0 */
/* The Kubernetes side without a server: the pod/node/allocation contract,
 * kubeconfig parsing, the watch stream splitter, the string map, the
 * scheduler model driven by hand-made objects, and the client and binder
 * against a small HTTP server on loopback (http_fake.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "http_fake.h"
#include "kube/contract.h"
#include "kube/pod_rules.h"
#include "kube/kube.h"
#include "util/alloc.h"
#include "scheduler/bind.h"
#include "scheduler/metrics.h"
#include "scheduler/model.h"
#include "util/clock.h"
#include "util/strmap.h"

static json_t *pod_json(const char *limits, const char *annotations)
{
    char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"metadata\":{\"name\":\"p\",\"namespace\":\"ns\",\"uid\":\"u-%s\","
             "\"creationTimestamp\":\"2026-01-01T00:00:00Z\",\"annotations\":%s},"
             "\"spec\":{\"schedulerName\":\"flexpu-scheduler\",\"containers\":[{\"name\":\"c\","
             "\"resources\":{\"limits\":{%s}}}]}}",
             limits[0] ? "x" : "y", annotations ? annotations : "{}", limits);
    json_error_t je;
    json_t *j = json_loads(buf, 0, &je);
    assert_non_null(j);
    return j;
}

static void expect_bad(const char *limits, const char *ann, const char *field, const char *value)
{
    json_t *p = pod_json(limits, ann);
    struct fx_pod_spec s;
    struct flexpu_error err = {0};
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), FLEXPU_EINVAL);
    if (!strstr(err.msg, field) || !strstr(err.msg, value))
        fail_msg("message '%s' does not name '%s' and '%s'", err.msg, field, value);
    json_decref(p);
}

/* flexpu.io/priority is capped by spec.priority (set by the API server from
 * the admin's PriorityClass): a user's "high" without such a class is
 * normal, a negative class forces low, and the annotation may lower. */
static void test_priority_from_class(void **state)
{
    (void)state;
    struct {
        const char *ann;     /* flexpu.io/priority, NULL: none */
        json_int_t cls;      /* spec.priority, -999999: absent */
        enum fx_priority want;
        bool capped;
    } cases[] = {
        {"high", -999999, FX_PRIO_NORMAL, true},
        {"high", 0, FX_PRIO_NORMAL, true},
        {"high", FX_PRIO_CLASS_HIGH - 1, FX_PRIO_NORMAL, true},
        {"high", FX_PRIO_CLASS_HIGH, FX_PRIO_HIGH, false},
        {NULL, FX_PRIO_CLASS_HIGH, FX_PRIO_HIGH, false},
        {"low", FX_PRIO_CLASS_HIGH, FX_PRIO_LOW, false},
        {NULL, -999999, FX_PRIO_NORMAL, false},
        {NULL, -1, FX_PRIO_LOW, false},
        {"normal", -1, FX_PRIO_LOW, true},
        {"low", -5, FX_PRIO_LOW, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char ann[96];
        snprintf(ann, sizeof(ann), cases[i].ann ? "{\"flexpu.io/priority\":\"%s\"}" : "{}",
                 cases[i].ann);
        json_t *p = pod_json("\"flexpu.io/gpu\":\"1\"", ann);
        if (cases[i].cls != -999999)
            json_object_set_new(json_object_get(p, "spec"), "priority",
                                json_integer(cases[i].cls));
        struct fx_pod_spec s;
        struct flexpu_error err = {0};
        assert_int_equal(fx_pod_spec_parse(p, &s, &err), 0);
        if (s.priority != cases[i].want || s.priority_capped != cases[i].capped)
            fail_msg("case %zu (%s, class %lld): priority %d capped %d, want %d %d", i,
                     cases[i].ann ? cases[i].ann : "none", (long long)cases[i].cls, s.priority,
                     s.priority_capped, cases[i].want, cases[i].capped);
        json_decref(p);
    }
}

/* A slice without gpu-memory gets its share of the GPU's memory; whole GPUs
 * and slices that name their memory get no default. */
static void test_default_slice_mem(void **state)
{
    (void)state;
    assert_int_equal(fx_default_slice_mem(1, 30, 0, 80LL << 30), 24LL << 30);
    assert_int_equal(fx_default_slice_mem(1, 50, 0, 80LL << 30), 40LL << 30);
    /* whole MiB, rounded down: 1% of 1001 MiB is 10 MiB */
    assert_int_equal(fx_default_slice_mem(1, 1, 0, 1001LL * FX_MIB + 5), 10LL * FX_MIB);
    assert_int_equal(fx_default_slice_mem(1, 100, 0, 80LL << 30), 0);
    assert_int_equal(fx_default_slice_mem(2, 100, 0, 80LL << 30), 0);
    assert_int_equal(fx_default_slice_mem(1, 30, 4LL << 30, 80LL << 30), 0);
}

/* The node agent's check of an allocation against its pod's request. */
static void test_allocation_check(void **state)
{
    (void)state;
    struct {
        const char *limits;
        int ngpu, cores;
        long long mem;
        const char *bad_field; /* NULL: accepted */
    } cases[] = {
        {"\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"30\"", 1, 30, 24LL << 30, NULL},
        {"\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"30\"", 1, 0, 0, ".cores"},
        {"\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"30\"", 1, 50, 24LL << 30, ".cores"},
        {"\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"30\"", 1, 30, 0, ".memory"},
        {"\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"30\"", 2, 30, 24LL << 30, ".gpus"},
        /* a whole-GPU policy rounds a slice up: the whole GPU, no quota */
        {"\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"30\"", 1, 100, 0, NULL},
        {"\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"30\","
         "\"flexpu.io/gpu-memory\":\"4Gi\"", 1, 30, 4LL << 30, NULL},
        {"\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"30\","
         "\"flexpu.io/gpu-memory\":\"4Gi\"", 1, 30, 8LL << 30, ".memory"},
        {"\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-memory\":\"4Gi\"", 1, 0, 4LL << 30, NULL},
        {"\"flexpu.io/gpu\":\"2\"", 2, 100, 0, NULL},
        {"\"flexpu.io/gpu\":\"2\"", 2, 0, 0, ".cores"},
        {"\"cpu\":\"1\"", 1, 100, 0, "allocation"},
    };
    int64_t gmem[FLEXPU_MAX_GPUS];
    for (int g = 0; g < FLEXPU_MAX_GPUS; g++)
        gmem[g] = 80LL << 30;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *p = pod_json(cases[i].limits, NULL);
        struct fx_pod_spec s;
        struct flexpu_error err = {0};
        assert_int_equal(fx_pod_spec_parse(p, &s, &err), 0);
        struct fx_allocation a = {.ngpu = cases[i].ngpu};
        for (int g = 0; g < a.ngpu; g++) {
            snprintf(a.gpus[g].uuid, sizeof(a.gpus[g].uuid), "GPU-%d", g);
            a.gpus[g].index = g;
            a.gpus[g].cores = cases[i].cores;
            a.gpus[g].mem = cases[i].mem;
        }
        int rc = fx_allocation_check(&s, &a, gmem, &err);
        if (!cases[i].bad_field) {
            if (rc)
                fail_msg("case %zu refused: %s", i, err.msg);
        } else if (rc != FLEXPU_EINVAL || !strstr(err.msg, cases[i].bad_field)) {
            fail_msg("case %zu: rc %d message '%s', want a refusal naming '%s'", i, rc, err.msg,
                     cases[i].bad_field);
        }
        json_decref(p);
    }
}

static void test_pod_spec(void **state)
{
    (void)state;
    json_t *p = pod_json("\"cpu\":\"1500m\",\"memory\":\"2Gi\",\"flexpu.io/gpu\":\"1\","
                         "\"flexpu.io/gpu-cores\":\"30\",\"flexpu.io/gpu-memory\":\"4Gi\"",
                         "{\"flexpu.io/priority\":\"high\",\"flexpu.io/gpu-cores-limit\":\"50\","
                         "\"flexpu.io/gpu-model\":\"A100|H100\"}");
    /* high needs a PriorityClass of value FX_PRIO_CLASS_HIGH or more */
    json_object_set_new(json_object_get(p, "spec"), "priority", json_integer(FX_PRIO_CLASS_HIGH));
    struct fx_pod_spec s;
    struct flexpu_error err = {0};
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), 0);
    assert_true(s.wants_gpu);
    assert_int_equal(s.cpu_milli, 1500);
    assert_int_equal(s.mem_bytes, 2LL << 30);
    assert_int_equal(s.num_gpu, 1);
    assert_int_equal(s.cores, 30);
    assert_int_equal(s.gpu_mem, 4LL << 30);
    assert_int_equal(s.cores_limit, 50);
    assert_int_equal(s.priority, FX_PRIO_HIGH);
    assert_string_equal(s.model, "A100|H100");
    struct flexpu_pod_req r;
    fx_pod_spec_req(&s, &r);
    assert_int_equal(r.gpu_milli, 300);
    assert_int_equal(r.gpu_mem_mib, 4096);
    assert_int_equal(r.mem_mib, 2048);
    json_decref(p);

    /* Whole GPUs: only the count. */
    p = pod_json("\"flexpu.io/gpu\":\"4\"", NULL);
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), 0);
    assert_int_equal(s.num_gpu, 4);
    assert_int_equal(s.cores, 100);
    json_decref(p);

    /* No GPU at all: a CPU pod. */
    p = pod_json("\"cpu\":\"2\"", NULL);
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), 0);
    assert_false(s.wants_gpu);
    json_decref(p);

    expect_bad("\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"130\"", NULL,
               "flexpu.io/gpu-cores", "130");
    expect_bad("\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"0.5\"", NULL,
               "flexpu.io/gpu-cores", "0.5");
    expect_bad("\"flexpu.io/gpu\":\"17\"", NULL, "flexpu.io/gpu", "17");
    expect_bad("\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-memory\":\"4096\"", NULL,
               "flexpu.io/gpu-memory", "4096");
    expect_bad("\"flexpu.io/gpu-cores\":\"30\"", NULL, "flexpu.io/gpu", "");
    expect_bad("\"flexpu.io/gpu\":\"1\"", "{\"flexpu.io/priority\":\"urgent\"}",
               "flexpu.io/priority", "urgent");
    expect_bad("\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"40\"",
               "{\"flexpu.io/gpu-cores-limit\":\"30\"}", "flexpu.io/gpu-cores-limit", "30");
    expect_bad("\"flexpu.io/gpu\":\"1\"", "{\"flexpu.io/gpu-model\":\"A100;rm\"}",
               "flexpu.io/gpu-model", "A100;rm");
    expect_bad("\"cpu\":\"lots\"", NULL, "cpu", "lots");
}

static void test_two_gpu_containers_rejected(void **state)
{
    (void)state;
    json_error_t je;
    json_t *p = json_loads(
        "{\"metadata\":{\"name\":\"p\"},\"spec\":{\"containers\":["
        "{\"name\":\"a\",\"resources\":{\"limits\":{\"flexpu.io/gpu\":\"1\"}}},"
        "{\"name\":\"b\",\"resources\":{\"limits\":{\"flexpu.io/gpu\":\"1\"}}}]}}",
        0, &je);
    struct fx_pod_spec s;
    struct flexpu_error err = {0};
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "containers[1]"));
    json_decref(p);
}

static void test_inter_pod_rules_read_apart(void **state)
{
    (void)state;
    json_error_t je;
    /* Node constraints are the scheduler's (fx_pod_filter_parse), not the
     * request's: the node agent reads such pods like any other. */
    json_t *p = json_loads("{\"spec\":{\"nodeSelector\":{\"zone\":\"a\"},\"containers\":[]}}", 0,
                           &je);
    struct fx_pod_spec s;
    struct flexpu_error err = {0};
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), 0);
    json_decref(p);
    /* Inter-pod rules are no node filter: read apart (kube/pod_rules.h),
     * malformed ones refused naming the field. */
    p = json_loads("{\"spec\":{\"affinity\":{\"podAntiAffinity\":{\"requiredDuringScheduling"
                   "IgnoredDuringExecution\":[{\"topologyKey\":\"zone\"}]}},\"containers\":[]}}",
                   0, &je);
    struct flexpu_filter *f = NULL;
    assert_int_equal(fx_pod_filter_parse(p, &f, &err), 0);
    assert_null(f);
    struct fx_pod_rules *r = NULL;
    assert_int_equal(fx_pod_rules_parse(p, &r, &err), 0);
    assert_non_null(r);
    assert_int_equal(r->nanti, 1);
    assert_true(r->anti[0].sel.nothing); /* no labelSelector: selects no pod */
    fx_pod_rules_free(r);
    json_decref(p);
    p = json_loads("{\"spec\":{\"affinity\":{\"podAntiAffinity\":{\"requiredDuringScheduling"
                   "IgnoredDuringExecution\":[{\"topologyKey\":\"\"}]}},\"containers\":[]}}",
                   0, &je);
    assert_int_equal(fx_pod_rules_parse(p, &r, &err), FLEXPU_EINVAL);
    assert_null(r);
    assert_non_null(strstr(err.msg, "spec.affinity.podAntiAffinity.requiredDuringScheduling"
                                    "IgnoredDuringExecution[0].topologyKey"));
    json_decref(p);
}

/* A pod's labels packed for the scheduler's model: every string member
 * once, found by key; others and empty sets leave nothing. */
static void test_labels_packed(void **state)
{
    (void)state;
    json_error_t je;
    json_t *l = json_loads("{\"app\":\"web\",\"n\":7,\"pod-template-hash\":\"\",\"x/y\":\"z\"}",
                           0, &je);
    char *a = NULL, *b = NULL;
    assert_int_equal(fx_labels_pack(l, &a), 0);
    assert_non_null(a);
    assert_string_equal(fx_labels_get(a, "app"), "web");
    assert_string_equal(fx_labels_get(a, "pod-template-hash"), "");
    assert_string_equal(fx_labels_get(a, "x/y"), "z");
    assert_null(fx_labels_get(a, "n")); /* not a string */
    assert_null(fx_labels_get(a, "ap"));
    assert_null(fx_labels_get(NULL, "app"));
    assert_int_equal(fx_labels_pack(l, &b), 0);
    assert_true(fx_labels_equal(a, b));
    json_object_set_new(l, "x/y", json_string("zz"));
    fx_free(b);
    assert_int_equal(fx_labels_pack(l, &b), 0);
    assert_false(fx_labels_equal(a, b));
    assert_false(fx_labels_equal(a, NULL));
    assert_true(fx_labels_equal(NULL, NULL));
    fx_free(b);
    json_decref(l);
    l = json_object();
    assert_int_equal(fx_labels_pack(l, &b), 0);
    assert_null(b);
    json_decref(l);
    /* A selector against packed labels: In, NotIn (true without the key),
     * Exists, DoesNotExist; absent selects nothing, {} everything. */
    json_t *pod = json_loads(
        "{\"metadata\":{\"namespace\":\"t\"},\"spec\":{\"affinity\":{\"podAffinity\":{"
        "\"requiredDuringSchedulingIgnoredDuringExecution\":[{\"topologyKey\":\"k\","
        "\"labelSelector\":{\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":["
        "{\"key\":\"tier\",\"operator\":\"NotIn\",\"values\":[\"db\"]},"
        "{\"key\":\"x/y\",\"operator\":\"Exists\"},"
        "{\"key\":\"gone\",\"operator\":\"DoesNotExist\"}]}},"
        "{\"topologyKey\":\"k\"},{\"topologyKey\":\"k\",\"labelSelector\":{}}]}}}}",
        0, &je);
    struct fx_pod_rules *r = NULL;
    struct flexpu_error err = {0};
    assert_int_equal(fx_pod_rules_parse(pod, &r, &err), 0);
    assert_int_equal(r->naff, 3);
    assert_true(fx_pod_term_matches(&r->aff[0], "t", "t", a));
    assert_false(fx_pod_term_matches(&r->aff[0], "t", "u", a)); /* another namespace */
    assert_false(fx_pod_term_matches(&r->aff[1], "t", "t", a));
    assert_true(fx_pod_term_matches(&r->aff[2], "t", "t", NULL));
    assert_false(fx_pod_term_matches(&r->aff[0], "t", "t", NULL));
    fx_pod_rules_free(r);
    json_decref(pod);
    fx_free(a);
}

static void test_allocation_and_inventory(void **state)
{
    (void)state;
    struct fx_allocation a = {.ngpu = 2};
    snprintf(a.gpus[0].uuid, sizeof(a.gpus[0].uuid), "GPU-1");
    a.gpus[0].index = 3;
    a.gpus[0].cores = 100;
    snprintf(a.gpus[1].uuid, sizeof(a.gpus[1].uuid), "GPU-2");
    a.gpus[1].index = 4;
    a.gpus[1].cores = 100;
    a.gpus[1].mem = 1 << 30;
    char *s = fx_allocation_format(&a);
    struct fx_allocation b;
    struct flexpu_error err = {0};
    assert_int_equal(fx_allocation_parse(s, &b, &err), 0);
    assert_memory_equal(&a, &b, sizeof(a));
    free(s);
    static const char *bad[] = {"", "{}", "{\"gpus\":[]}", "{\"gpus\":[{\"uuid\":\"x\"}]}",
                                "{\"gpus\":[{\"uuid\":\"x\",\"index\":99,\"cores\":1}]}", "[1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(fx_allocation_parse(bad[i], &b, &err), FLEXPU_EINVAL);
        assert_non_null(strstr(err.msg, "flexpu.io/allocation"));
    }

    struct fx_node_inv inv;
    assert_int_equal(fx_node_inv_parse("[{\"uuid\":\"GPU-a\",\"model\":\"T4\",\"memory\":16,"
                                       "\"numa\":1,\"group\":2,\"health\":\"Unhealthy\"}]",
                                       &inv, &err),
                     0);
    assert_int_equal(inv.ngpu, 1);
    assert_false(inv.gpus[0].healthy);
    assert_int_equal(inv.gpus[0].numa, 1);
    s = fx_node_inv_format(&inv);
    struct fx_node_inv inv2;
    assert_int_equal(fx_node_inv_parse(s, &inv2, &err), 0);
    assert_memory_equal(&inv, &inv2, sizeof(inv));
    free(s);
    assert_int_equal(fx_node_inv_parse("[{\"uuid\":\"a\",\"model\":\"T4\"},"
                                       "{\"uuid\":\"a\",\"model\":\"T4\"}]",
                                       &inv, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "appears twice"));
    assert_int_equal(fx_node_inv_parse("{\"uuid\":1}", &inv, &err), FLEXPU_EINVAL);
    assert_int_equal(fx_node_inv_parse("[{\"uuid\":\"a\"}]", &inv, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "model"));
}

static void test_kubeconfig(void **state)
{
    (void)state;
    /* "Y2E=" is base64 of "ca". */
    const char *ok = "apiVersion: v1\n"
                     "clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443/\n"
                     "    certificate-authority-data: Y2E=\n"
                     "users:\n- name: u\n  user:\n    token: abc\n"
                     "contexts:\n- name: x\n  context: {cluster: c, user: u, namespace: ns1}\n"
                     "current-context: x\n";
    struct kube_config c;
    struct flexpu_error err = {0};
    assert_int_equal(kube_config_parse(ok, strlen(ok), "/tmp", NULL, &c, &err), 0);
    assert_string_equal(c.server, "https://127.0.0.1:6443");
    assert_string_equal(c.token, "abc");
    assert_string_equal(c.namespace, "ns1");
    assert_int_equal(c.ca_len, 2);
    assert_memory_equal(c.ca, "ca", 2);
    kube_config_free(&c);

    assert_int_equal(kube_config_parse(ok, strlen(ok), "/tmp", "nope", &c, &err), FLEXPU_ENOENT);
    assert_non_null(strstr(err.msg, "nope"));

    const char *badserver = "clusters:\n- name: c\n  cluster: {server: ftp://x}\n"
                            "contexts:\n- name: x\n  context: {cluster: c}\n"
                            "current-context: x\n";
    assert_int_equal(kube_config_parse(badserver, strlen(badserver), ".", NULL, &c, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "ftp://x"));

    const char *badb64 = "clusters:\n- name: c\n  cluster: {server: https://x, "
                         "certificate-authority-data: '!!!'}\n"
                         "contexts:\n- name: x\n  context: {cluster: c}\ncurrent-context: x\n";
    assert_int_equal(kube_config_parse(badb64, strlen(badb64), ".", NULL, &c, &err),
                     FLEXPU_EPARSE);
    assert_non_null(strstr(err.msg, "certificate-authority-data"));

    const char *exec = "clusters:\n- name: c\n  cluster: {server: https://x}\n"
                       "users:\n- name: u\n  user: {exec: {command: aws}}\n"
                       "contexts:\n- name: x\n  context: {cluster: c, user: u}\n"
                       "current-context: x\n";
    assert_int_equal(kube_config_parse(exec, strlen(exec), ".", NULL, &c, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "exec"));

    const char *broken = "clusters: [\n";
    assert_int_equal(kube_config_parse(broken, strlen(broken), ".", NULL, &c, &err),
                     FLEXPU_EPARSE);
    assert_non_null(strstr(err.msg, "line"));

    const char *missingfile = "clusters:\n- name: c\n  cluster: {server: https://x, "
                              "certificate-authority: no/such/ca.crt}\n"
                              "contexts:\n- name: x\n  context: {cluster: c}\n"
                              "current-context: x\n";
    assert_int_equal(kube_config_parse(missingfile, strlen(missingfile), "/nonexistent", NULL, &c,
                                       &err),
                     FLEXPU_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/no/such/ca.crt"));
}

struct seen {
    int n;
    char types[8][16];
    char names[8][32];
};

static int on_line(const char *type, json_t *obj, void *ctx)
{
    struct seen *s = ctx;
    snprintf(s->types[s->n], sizeof(s->types[0]), "%s", type);
    const char *name = kube_str(obj, "metadata.name");
    snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name ? name : "");
    s->n++;
    return 0;
}

static void test_stream_splitter(void **state)
{
    (void)state;
    struct seen s = {0};
    struct kube_stream *st = kube_stream_new(1024, on_line, &s);
    struct flexpu_error err = {0};
    const char *text = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
                       "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"name\":\"b\"}}}\r\n\n"
                       "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"c\"}}}\n";
    /* Fed one byte at a time: lines cut anywhere reassemble. */
    for (size_t i = 0; text[i]; i++)
        assert_int_equal(kube_stream_feed(st, text + i, 1, &err), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.types[0], "ADDED");
    assert_string_equal(s.names[1], "b");
    assert_string_equal(s.types[2], "DELETED");
    assert_int_equal(kube_stream_feed(st, "{\"type\":\"ADDED\"}\n", 17, &err), FLEXPU_EPARSE);
    assert_non_null(strstr(err.msg, "object"));
    assert_int_equal(kube_stream_feed(st, "not json\n", 9, &err), FLEXPU_EPARSE);
    char big[2048];
    memset(big, 'x', sizeof(big));
    assert_int_equal(kube_stream_feed(st, big, sizeof(big), &err), FLEXPU_ERANGE);
    kube_stream_free(st);
}

static void test_strmap(void **state)
{
    (void)state;
    struct fx_strmap m;
    fx_strmap_init(&m);
    char key[32];
    for (long i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k%ld", i);
        assert_int_equal(fx_strmap_put(&m, key, (void *)(i + 1)), 0);
    }
    assert_int_equal(m.len, 5000);
    for (long i = 0; i < 5000; i += 2) {
        snprintf(key, sizeof(key), "k%ld", i);
        assert_ptr_equal(fx_strmap_del(&m, key), (void *)(i + 1));
    }
    for (long i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k%ld", i);
        assert_ptr_equal(fx_strmap_get(&m, key), i % 2 ? (void *)(i + 1) : NULL);
    }
    size_t it = 0, count = 0;
    const char *k;
    void *v;
    size_t last = 0;
    while (fx_strmap_next(&m, &it, &k, &v)) {
        /* fx_strmap_index: the order of the walk. */
        size_t at = fx_strmap_index(&m, k);
        assert_int_equal(at, it - 1);
        assert_true(count == 0 || at > last);
        last = at;
        count++;
    }
    assert_int_equal(count, 2500);
    assert_int_equal(fx_strmap_index(&m, "k0"), SIZE_MAX);
    assert_null(fx_strmap_del(&m, "absent"));
    fx_strmap_free(&m);
}

/* ---- the model, driven like the daemon drives it ---- */

static json_t *node_obj(const char *name, int ngpu, const char *extra_spec)
{
    char inv[2048] = "[", buf[4096];
    for (int i = 0; i < ngpu; i++)
        snprintf(inv + strlen(inv), sizeof(inv) - strlen(inv),
                 "%s{\\\"uuid\\\":\\\"GPU-%s-%d\\\",\\\"model\\\":\\\"A100\\\","
                 "\\\"memory\\\":85899345920}",
                 i ? "," : "", name, i);
    snprintf(buf, sizeof(buf),
             "{\"metadata\":{\"name\":\"%s\",\"annotations\":{\"flexpu.io/gpus\":\"%s]\"}},"
             "\"spec\":{%s},\"status\":{\"allocatable\":{\"cpu\":\"16\",\"memory\":\"64Gi\"}}}",
             name, inv, extra_spec ? extra_spec : "");
    json_error_t je;
    json_t *j = json_loads(buf, 0, &je);
    if (!j)
        fail_msg("%s: %s", buf, je.text);
    return j;
}

/* A model of flexpu-scheduler (policy flexpu) holding one node. */
static struct fx_model *model_with_node(const char *name, int ngpu)
{
    struct flexpu_error err = {0};
    struct fx_model *m = fx_model_new("flexpu-scheduler", "flexpu", 1, &err);
    if (!m)
        fail_msg("fx_model_new: %s", err.msg);
    json_t *n = node_obj(name, ngpu, NULL);
    fx_model_node_event(m, KUBE_ADDED, n);
    json_decref(n);
    return m;
}

static json_t *slice_pod(const char *uid, int cores, const char *node, const char *alloc)
{
    char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"d\",\"uid\":\"%s\","
             "\"creationTimestamp\":\"2026-01-01T00:00:00Z\",\"annotations\":{%s%s%s}},"
             "\"spec\":{\"schedulerName\":\"flexpu-scheduler\",\"nodeName\":\"%s\","
             "\"containers\":[{\"name\":\"c\",\"resources\":{\"limits\":{\"cpu\":\"1\","
             "\"flexpu.io/gpu\":\"1\",\"flexpu.io/gpu-cores\":\"%d\"}}}]},"
             "\"status\":{\"phase\":\"Pending\"}}",
             uid, uid, alloc ? "\"flexpu.io/allocation\":" : "", alloc ? alloc : "",
             "", node ? node : "", cores);
    json_error_t je;
    json_t *j = json_loads(buf, 0, &je);
    if (!j)
        fail_msg("%s: %s", buf, je.text);
    return j;
}

/* A slice pod already bound to GPU `index` of `node` with `cores`, its
 * allocation recorded as the scheduler writes it. */
static json_t *slice_pod_on(const char *uid, int cores, const char *node, int index)
{
    char alloc[256];
    snprintf(alloc, sizeof(alloc),
             "\"{\\\"gpus\\\":[{\\\"uuid\\\":\\\"GPU-%s-%d\\\",\\\"index\\\":%d,"
             "\\\"cores\\\":%d,\\\"memory\\\":0}]}\"",
             node, index, index, cores);
    return slice_pod(uid, cores, node, alloc);
}

static void test_model_places_and_restores(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    struct fx_model *m = model_with_node("n1", 1);
    /* A pod already bound with a recorded allocation of 60%. */
    json_t *p = slice_pod_on("old", 60, "n1", 0);
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
    /* 50% does not fit on top of it; 40% does. */
    json_t *a = slice_pod("a", 50, NULL, NULL), *b = slice_pod("b", 40, NULL, NULL);
    fx_model_pod_event(m, KUBE_ADDED, a);
    fx_model_pod_event(m, KUBE_ADDED, b);
    struct fx_attempt at;
    int binds = 0, waits = 0;
    while (fx_model_next(m, &at)) {
        if (at.outcome == FX_BIND) {
            binds++;
            assert_string_equal(at.uid, "b");
            assert_string_equal(at.node, "n1");
            assert_non_null(strstr(at.allocation, "\"cores\":40"));
            fx_model_bind_done(m, at.uid, 0, 0);
        } else {
            waits++;
            assert_int_equal(at.outcome, FX_WAIT);
            assert_string_equal(at.uid, "a");
        }
    }
    assert_int_equal(binds, 1);
    assert_int_equal(waits, 1);
    /* Nothing is reported twice while nothing changes. */
    assert_false(fx_model_next(m, &at));
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    assert_int_equal(st.gpu_milli_used, 1000);
    /* The old pod finishes: a fits now. */
    p = slice_pod("old", 60, "n1", NULL);
    fx_model_pod_event(m, KUBE_DELETED, p);
    json_decref(p);
    assert_true(fx_model_next(m, &at));
    assert_int_equal(at.outcome, FX_BIND);
    assert_string_equal(at.uid, "a");
    /* A bind the server refused gives the share back and queues the pod
     * again. */
    fx_model_bind_done(m, at.uid, FLEXPU_EINVAL, 0);
    fx_model_stats(m, &st);
    assert_int_equal(st.gpu_milli_used, 400);
    assert_true(fx_model_next(m, &at));
    assert_string_equal(at.uid, "a");
    assert_int_equal(fx_model_check(m, &err), 0);
    /* Cordoning keeps the node and its pods accounted, but it takes no new
     * pod that does not tolerate node.kubernetes.io/unschedulable:NoSchedule
     * (kube-scheduler's NodeUnschedulable). */
    json_t *n = node_obj("n1", 1, "\"unschedulable\":true");
    fx_model_node_event(m, KUBE_MODIFIED, n);
    json_decref(n);
    fx_model_stats(m, &st);
    assert_int_equal(st.nodes, 1);
    json_t *c = slice_pod("c", 5, NULL, NULL);
    fx_model_pod_event(m, KUBE_ADDED, c);
    json_decref(c);
    assert_true(fx_model_next(m, &at));
    assert_int_equal(at.outcome, FX_WAIT);
    if (!strstr(at.message, "untolerated taint {node.kubernetes.io/unschedulable:NoSchedule}"))
        fail_msg("message '%s' does not name the cordon's taint", at.message);
    json_decref(a);
    json_decref(b);
    fx_model_free(m);
}

/* The shapes' weights count the cluster's GPUs per model (the pressure of a
 * shape that names models), so the daemon gives the engine its shapes again
 * when GPUs come or go, and only then: a status heartbeat changes nothing. */
static void test_model_workload_follows_nodes(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    struct fx_model *m = fx_model_new("flexpu-scheduler", "flexpu", 1, &err);
    assert_non_null(m);
    json_t *n1 = node_obj("n1", 1, NULL), *n2 = node_obj("n2", 2, NULL);
    fx_model_node_event(m, KUBE_ADDED, n1);
    json_t *a = slice_pod("a", 30, NULL, NULL);
    fx_model_pod_event(m, KUBE_ADDED, a);
    json_decref(a);
    struct fx_attempt at;
    while (fx_model_next(m, &at))
        if (at.outcome == FX_BIND)
            fx_model_bind_done(m, at.uid, 0, 0);
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    assert_int_equal(st.workload_refreshes, 1); /* the first shape */
    fx_model_node_event(m, KUBE_MODIFIED, n1);  /* a heartbeat */
    assert_false(fx_model_next(m, &at));
    fx_model_stats(m, &st);
    assert_int_equal(st.workload_refreshes, 1);
    fx_model_node_event(m, KUBE_ADDED, n2); /* two more GPUs */
    assert_false(fx_model_next(m, &at));
    fx_model_stats(m, &st);
    assert_int_equal(st.gpus, 3);
    assert_int_equal(st.workload_refreshes, 2);
    fx_model_node_event(m, KUBE_DELETED, n2);
    assert_false(fx_model_next(m, &at));
    fx_model_stats(m, &st);
    assert_int_equal(st.gpus, 1);
    assert_int_equal(st.workload_refreshes, 3);
    json_decref(n1);
    json_decref(n2);
    fx_model_free(m);
}

/* A slice without gpu-memory is given, and accounted, its share of the
 * GPU's memory: the rest is all another pod can be promised. A priority
 * annotation above the pod's class binds with a warning. */
static void test_model_default_slice_memory(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    struct fx_model *m = model_with_node("n1", 1); /* one GPU of 80 GiB */
    json_t *a = slice_pod("a", 30, NULL, NULL);
    json_object_set_new(json_object_get(json_object_get(a, "metadata"), "annotations"),
                        FX_ANN_PRIORITY, json_string("high"));
    fx_model_pod_event(m, KUBE_ADDED, a);
    struct fx_attempt at;
    assert_true(fx_model_next(m, &at));
    assert_int_equal(at.outcome, FX_BIND);
    if (!strstr(at.allocation, "\"cores\":30,\"memory\":25769803776"))
        fail_msg("allocation %s: want 30%% and 24 GiB", at.allocation);
    if (!strstr(at.message, FX_ANN_PRIORITY) || !strstr(at.message, "high"))
        fail_msg("bind message '%s' does not say the priority was capped", at.message);
    fx_model_bind_done(m, at.uid, 0, 0);
    /* 57 GiB of memory (no cores) does not fit beside a's 24 GiB; 56 does. */
    json_t *big = slice_pod("big", 1, NULL, NULL), *fit = slice_pod("fit", 1, NULL, NULL);
    json_t *lim[2] = {kube_get(json_array_get(kube_get(big, "spec.containers"), 0),
                               "resources.limits"),
                      kube_get(json_array_get(kube_get(fit, "spec.containers"), 0),
                               "resources.limits")};
    for (int i = 0; i < 2; i++)
        json_object_del(lim[i], FX_RES_GPU_CORES);
    json_object_set_new(lim[0], FX_RES_GPU_MEMORY, json_string("57Gi"));
    json_object_set_new(lim[1], FX_RES_GPU_MEMORY, json_string("56Gi"));
    fx_model_pod_event(m, KUBE_ADDED, big);
    assert_true(fx_model_next(m, &at));
    assert_int_equal(at.outcome, FX_WAIT);
    assert_string_equal(at.uid, "big");
    fx_model_pod_event(m, KUBE_ADDED, fit);
    assert_true(fx_model_next(m, &at));
    assert_int_equal(at.outcome, FX_BIND);
    assert_string_equal(at.uid, "fit");
    assert_string_equal(at.message, "");
    fx_model_bind_done(m, at.uid, 0, 0);
    assert_int_equal(fx_model_check(m, &err), 0);
    json_decref(a);
    json_decref(big);
    json_decref(fit);
    fx_model_free(m);
}

/* ---- binds whose outcome is unknown ---- */

/* A pending 1-GPU slice pod created at `created`. */
static json_t *pending_pod(const char *uid, int cores, const char *created)
{
    json_t *p = slice_pod(uid, cores, NULL, NULL);
    json_object_set_new(json_object_get(p, "metadata"), "creationTimestamp",
                        json_string(created));
    json_object_del(json_object_get(p, "spec"), "nodeName");
    return p;
}

/* The metrics show the model and the binder as the main loop last copied
 * them; /healthz fails once the main loop has stalled for a minute. */
static void test_sched_metrics(void **state)
{
    (void)state;
    struct fx_model *m = model_with_node("n1", 2);
    json_t *old = slice_pod_on("old", 60, "n1", 0);
    json_t *w = pending_pod("w", 100, "2026-01-01T00:00:00Z");
    json_t *w2 = pending_pod("w2", 100, "2026-01-01T00:00:01Z");
    fx_model_pod_event(m, KUBE_ADDED, old);
    fx_model_pod_event(m, KUBE_ADDED, w);
    fx_model_pod_event(m, KUBE_ADDED, w2);
    struct fx_attempt at;
    while (fx_model_next(m, &at)) /* w takes GPU 1; w2 waits */
        if (at.outcome == FX_BIND)
            fx_model_bind_done(m, at.uid, 0, 0);
    struct fx_binder b = {.binds = 1, .bind_errors = 2, .binds_unsent = 3, .events_dropped = 4};
    struct fx_sched_metrics sm;
    fx_sched_metrics_init(&sm);
    char why[128] = "";
    assert_int_equal(fx_sched_metrics_health(&sm, 1000000, why, sizeof(why)), 0); /* not started */
    fx_sched_metrics_update(&sm, m, &b, true, true, 5000);
    char *text = fx_sched_metrics_render(&sm);
    assert_non_null(text);
    const char *want[] = {"flexpu_scheduler_leader 1\n",
                          "flexpu_scheduler_gpus 2\n",
                          "flexpu_scheduler_gpu_capacity_milli 2000\n",
                          "flexpu_scheduler_gpu_allocated_milli 1600\n",
                          "flexpu_scheduler_pods{state=\"bound\"} 2\n",
                          "flexpu_scheduler_pods{state=\"waiting\"} 1\n",
                          "flexpu_scheduler_binds_total{result=\"bound\"} 1\n",
                          "flexpu_scheduler_binds_total{result=\"failed\"} 2\n",
                          "flexpu_scheduler_binds_total{result=\"unsent\"} 3\n",
                          "flexpu_scheduler_events_dropped_total 4\n",
                          "# TYPE flexpu_scheduler_binds_total counter\n"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(text, want[i]))
            fail_msg("metrics lack '%s':\n%s", want[i], text);
    free(text);
    /* the model's figures are copied at most once a second; counters always */
    b.binds = 9;
    fx_model_pod_event(m, KUBE_DELETED, old);
    fx_sched_metrics_update(&sm, m, &b, false, true, 5500);
    text = fx_sched_metrics_render(&sm);
    assert_non_null(strstr(text, "flexpu_scheduler_binds_total{result=\"bound\"} 9\n"));
    assert_non_null(strstr(text, "flexpu_scheduler_leader 0\n"));
    assert_non_null(strstr(text, "flexpu_scheduler_gpu_allocated_milli 1600\n"));
    free(text);
    fx_sched_metrics_update(&sm, m, &b, false, true, 6000);
    text = fx_sched_metrics_render(&sm);
    assert_non_null(strstr(text, "flexpu_scheduler_gpu_allocated_milli 1000\n"));
    free(text);
    assert_int_equal(fx_sched_metrics_health(&sm, 6000 + FX_SCHED_STALL_MS, why, sizeof(why)), 0);
    assert_int_not_equal(
        fx_sched_metrics_health(&sm, 6000 + FX_SCHED_STALL_MS + 1000, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "main loop has not run for 61 s"));
    fx_sched_metrics_destroy(&sm);
    json_decref(old);
    json_decref(w);
    json_decref(w2);
    fx_model_free(m);
}

/* A waiting pod is retried only when a node it may fit changes: freeing
 * 10% of a GPU does not retry a pod that needs 50% (which would cost a
 * placement over the whole cluster per waiting pod), freeing 60% does, and
 * so does a new node. */
static void test_model_wakes_what_may_fit(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    struct fx_model *m = model_with_node("n1", 1);
    json_t *old = slice_pod_on("old", 60, "n1", 0);
    json_t *small = slice_pod_on("small", 10, "n1", 0);
    fx_model_pod_event(m, KUBE_ADDED, old);
    fx_model_pod_event(m, KUBE_ADDED, small);
    json_t *w = pending_pod("w", 50, "2026-01-01T00:00:00Z");
    json_t *w2 = pending_pod("w2", 100, "2026-01-01T00:00:01Z");
    fx_model_pod_event(m, KUBE_ADDED, w);
    fx_model_pod_event(m, KUBE_ADDED, w2);
    struct fx_attempt at;
    int waits = 0;
    while (fx_model_next(m, &at)) {
        assert_int_equal(at.outcome, FX_WAIT);
        waits++;
    }
    assert_int_equal(waits, 2);
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    uint64_t wakes0 = st.wakes;
    assert_int_equal(st.pods_waiting, 2);

    fx_model_pod_event(m, KUBE_DELETED, small); /* 40% free: neither fits */
    assert_false(fx_model_next(m, &at));
    fx_model_stats(m, &st);
    assert_int_equal(st.wakes, wakes0);
    assert_int_equal(st.pods_waiting, 2);
    assert_true(st.wake_checks >= 2);

    fx_model_pod_event(m, KUBE_DELETED, old); /* 100% free: both may, w first */
    assert_true(fx_model_next(m, &at));
    assert_int_equal(at.outcome, FX_BIND);
    assert_string_equal(at.uid, "w");
    fx_model_bind_done(m, at.uid, 0, 0);
    assert_false(fx_model_next(m, &at)); /* w2 tried, said already */
    fx_model_stats(m, &st);
    assert_int_equal(st.wakes, wakes0 + 2);
    assert_int_equal(st.pods_waiting, 1);

    json_t *n = node_obj("n2", 1, NULL); /* a new node: w2 fits there */
    fx_model_node_event(m, KUBE_ADDED, n);
    json_decref(n);
    assert_true(fx_model_next(m, &at));
    assert_int_equal(at.outcome, FX_BIND);
    assert_string_equal(at.uid, "w2");
    assert_string_equal(at.node, "n2");
    fx_model_stats(m, &st);
    assert_int_equal(st.pods_waiting, 0);
    assert_int_equal(fx_model_check(m, &err), 0);
    json_decref(old);
    json_decref(small);
    json_decref(w);
    json_decref(w2);
    fx_model_free(m);
}

/* The one pending pod event, then the model's next attempt (or none). */
static bool update_then_next(struct fx_model *m, json_t *p, struct fx_attempt *at)
{
    fx_model_pod_event(m, KUBE_MODIFIED, p);
    return fx_model_next(m, at);
}

/* Pending pod `uid` (`cores` of a GPU, created at `created`) added; the
 * model's next attempt tells it to wait. */
static json_t *added_waiting(struct fx_model *m, const char *uid, int cores, const char *created)
{
    json_t *p = pending_pod(uid, cores, created);
    fx_model_pod_event(m, KUBE_ADDED, p);
    struct fx_attempt at;
    assert_true(fx_model_next(m, &at));
    assert_int_equal(at.outcome, FX_WAIT);
    return p;
}

/* p's update (an edit) has it decided at once: bound to `node`, the bind
 * done. */
static void update_binds(struct fx_model *m, json_t *p, const char *uid, const char *node)
{
    struct fx_attempt at;
    assert_true(update_then_next(m, p, &at));
    assert_int_equal(at.outcome, FX_BIND);
    assert_string_equal(at.uid, uid);
    assert_string_equal(at.node, node);
    fx_model_bind_done(m, at.uid, 0, 0);
}

/* A user may edit a waiting pod (its flexpu.io/ annotations, tolerations
 * added, in-place resize of its requests): an edit that changes what the
 * model reads has it tried again at once, as kube-scheduler moves a pod
 * back to its active queue on an update that may make it schedulable,
 * not when capacity next frees somewhere (in a quiet cluster, never). An
 * update that changes nothing it reads costs no decision. n1's one GPU has
 * 40% free; n2 (1 GPU free) carries a team taint. */
static void test_model_waiting_pod_edited(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    struct fx_model *m = model_with_node("n1", 1);
    json_t *n2 = node_obj("n2", 1,
                          "\"taints\":[{\"key\":\"flexpu.io/team\",\"value\":\"a\","
                          "\"effect\":\"NoSchedule\"}]");
    fx_model_node_event(m, KUBE_ADDED, n2);
    json_decref(n2);
    json_t *old = slice_pod_on("old", 60, "n1", 0);
    fx_model_pod_event(m, KUBE_ADDED, old);
    json_t *w = added_waiting(m, "w", 50, "2026-01-01T00:00:00Z");
    struct fx_attempt at;
    assert_false(fx_model_next(m, &at));

    /* Nothing the model reads: its status, a label, resourceVersion, an
     * annotation of someone else's. Parked, no decision. */
    json_t *meta = json_object_get(w, "metadata");
    json_object_set_new(meta, "resourceVersion", json_string("42"));
    json_object_set_new(meta, "labels", json_pack("{s:s}", "app", "trainer"));
    json_object_set_new(json_object_get(meta, "annotations"), "example.com/note",
                        json_string("edited"));
    json_object_set_new(json_object_get(w, "status"), "conditions",
                        json_pack("[{s:s, s:s}]", "type", "PodScheduled", "status", "False"));
    assert_false(update_then_next(m, w, &at));
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    assert_int_equal(st.pods_waiting, 1);
    assert_int_equal(st.pods_queued, 0);

    /* A toleration of another team's taint: still nowhere, said once. */
    json_t *spec = json_object_get(w, "spec");
    json_object_set_new(spec, "tolerations",
                        json_pack("[{s:s, s:s, s:s}]", "key", "flexpu.io/team", "value", "b",
                                  "effect", "NoSchedule"));
    fx_model_pod_event(m, KUBE_MODIFIED, w);
    fx_model_stats(m, &st);
    assert_int_equal(st.pods_queued, 1);
    assert_false(fx_model_next(m, &at)); /* tried: the same reason, not told again */

    /* Its own team's toleration: placed on n2 at once. */
    json_object_set_new(spec, "tolerations",
                        json_pack("[{s:s, s:s, s:s}]", "key", "flexpu.io/team", "value", "a",
                                  "effect", "NoSchedule"));
    update_binds(m, w, "w", "n2");

    /* Its GPU share lowered (50% -> 40%): placed at once on n1. */
    json_t *w2 = added_waiting(m, "w2", 50, "2026-01-01T00:00:01Z");
    assert_false(fx_model_next(m, &at));
    json_t *limits = json_object_get(
        json_object_get(json_array_get(json_object_get(json_object_get(w2, "spec"), "containers"), 0),
                        "resources"),
        "limits");
    json_object_set_new(limits, "flexpu.io/gpu-cores", json_string("40"));
    update_binds(m, w2, "w2", "n1");

    /* An edit that makes a waiting pod invalid takes the invalid path. */
    json_t *w3 = added_waiting(m, "w3", 50, "2026-01-01T00:00:02Z");
    json_object_set_new(json_object_get(json_object_get(w3, "metadata"), "annotations"),
                        "flexpu.io/opportunistic", json_string("maybe"));
    assert_true(update_then_next(m, w3, &at));
    assert_int_equal(at.outcome, FX_INVALID);
    assert_non_null(strstr(at.message, "flexpu.io/opportunistic"));
    assert_int_equal(fx_model_check(m, &err), 0);
    json_decref(old);
    json_decref(w);
    json_decref(w2);
    json_decref(w3);
    fx_model_free(m);
}

/* The pod as the server has it once bound to `node` with `allocation`. */
static json_t *bound_pod(json_t *pending, const char *node, const char *allocation)
{
    json_t *p = json_deep_copy(pending);
    json_object_set_new(json_object_get(p, "spec"), "nodeName", json_string(node));
    json_object_set_new(json_object_get(json_object_get(p, "metadata"), "annotations"),
                        FX_ANN_ALLOCATION, json_string(allocation));
    return p;
}

static json_t *allocation_on(const char *uuid, int index, int cores)
{
    (void)index;
    return json_pack("{s:[{s:s, s:i, s:i, s:i}]}", "gpus", "uuid", uuid, "index", index, "cores",
                     cores, "memory", 0);
}

/* A bind that times out (or gets a 5xx) may have been applied by the
 * server. If the scheduler gave the share back, the next pod took it and two
 * 60% pods ran on one GPU. The share stays held until the watch says. */
static void test_model_bind_timeout_never_shares_gpu(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    struct fx_model *m = model_with_node("n1", 1);
    json_t *a = pending_pod("a", 60, "2026-01-01T00:00:10Z");
    fx_model_pod_event(m, KUBE_ADDED, a);
    struct fx_attempt at;
    assert_true(fx_model_next(m, &at));
    assert_int_equal(at.outcome, FX_BIND);
    assert_string_equal(at.uid, "a");
    char alloc_a[sizeof(at.allocation)];
    snprintf(alloc_a, sizeof(alloc_a), "%s", at.allocation);
    /* b arrives while a's bind is in flight; older, so it goes first. */
    json_t *b = pending_pod("b", 60, "2026-01-01T00:00:00Z");
    fx_model_pod_event(m, KUBE_ADDED, b);
    /* a's bind times out, but the server applied it. */
    int bound_cores = 60; /* on the server: a on n1's GPU */
    bool a_bound = true;
    fx_model_bind_done(m, "a", FLEXPU_EIO, 1000);

    /* The scheduler goes on, the server answering as it would. */
    for (int i = 0; i < 10 && fx_model_next(m, &at); i++) {
        if (at.outcome != FX_BIND)
            continue;
        if (strcmp(at.uid, "a") == 0 && a_bound) {
            fx_model_bind_done(m, "a", FLEXPU_EEXIST, 1000); /* already bound */
            continue;
        }
        bound_cores += 60;
        fx_model_bind_done(m, at.uid, 0, 1000);
    }
    if (bound_cores > 100)
        fail_msg("two 60%% pods bound to one GPU (%d%%) after a bind timeout", bound_cores);
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    assert_int_equal(st.gpu_milli_used, 600);
    assert_int_equal(st.pods_unsure, 1);

    /* The watch shows a bound as assumed: confirmed, and b still waits. */
    json_t *ab = bound_pod(a, "n1", alloc_a);
    fx_model_pod_event(m, KUBE_MODIFIED, ab);
    json_decref(ab);
    fx_model_stats(m, &st);
    assert_int_equal(st.gpu_milli_used, 600);
    assert_int_equal(st.pods_unsure, 0);
    assert_false(fx_model_next_unsure(m, 1000 + FX_BIND_SETTLE_MS, &at));
    while (fx_model_next(m, &at))
        assert_int_not_equal(at.outcome, FX_BIND);
    assert_int_equal(fx_model_check(m, &err), 0);
    json_decref(a);
    json_decref(b);
    fx_model_free(m);
}

/* How an unknown outcome is settled: a read-back that finds the pod
 * unbound (only after FX_BIND_SETTLE_MS), deleted, or bound elsewhere by
 * someone else; a refused bind gives the share back at once. */
static void test_model_bind_unsure_settles(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    struct fx_model *m = model_with_node("n1", 2);
    json_t *a = pending_pod("a", 60, "2026-01-01T00:00:00Z");
    fx_model_pod_event(m, KUBE_ADDED, a);
    struct fx_attempt at;
    struct fx_model_stats st;

    /* 1. unbound: not asked about before the settle time, then queued again */
    assert_true(fx_model_next(m, &at));
    fx_model_bind_done(m, "a", FLEXPU_EIO, 5000);
    assert_false(fx_model_next(m, &at)); /* not placed twice */
    assert_false(fx_model_next_unsure(m, 5000 + FX_BIND_SETTLE_MS - 1, &at));
    assert_true(fx_model_next_unsure(m, 5000 + FX_BIND_SETTLE_MS, &at));
    assert_string_equal(at.uid, "a");
    assert_string_equal(at.ns, "d");
    assert_string_equal(at.node, "n1");
    /* offered again later while unsettled, not at once */
    assert_false(fx_model_next_unsure(m, 5000 + FX_BIND_SETTLE_MS, &at));
    assert_true(fx_model_next_unsure(m, 5000 + FX_BIND_SETTLE_MS + FX_BIND_RETRY_MS, &at));
    fx_model_bind_settle(m, "a", a); /* the GET: still no nodeName */
    fx_model_stats(m, &st);
    assert_int_equal(st.gpu_milli_used, 0);
    assert_int_equal(st.pods_unsure, 0);
    assert_int_equal(st.pods_queued, 1);

    /* 2. deleted while unsure: forgotten, its share free */
    assert_true(fx_model_next(m, &at));
    fx_model_bind_done(m, "a", FLEXPU_EIO, 0);
    fx_model_pod_event(m, KUBE_DELETED, a);
    fx_model_stats(m, &st);
    assert_int_equal(st.gpu_milli_used, 0);
    assert_int_equal(st.pods_unsure, 0);
    assert_int_equal(st.pods_bound + st.pods_queued, 0);

    /* 3. another instance bound it to the other GPU: that is what counts */
    fx_model_pod_event(m, KUBE_ADDED, a);
    assert_true(fx_model_next(m, &at));
    assert_non_null(strstr(at.allocation, "GPU-n1-0"));
    fx_model_bind_done(m, "a", FLEXPU_EEXIST, 0);
    json_t *other = allocation_on("GPU-n1-1", 1, 60);
    char *text = json_dumps(other, JSON_COMPACT);
    json_t *ab = bound_pod(a, "n1", text);
    fx_model_bind_settle(m, "a", ab);
    fx_model_stats(m, &st);
    assert_int_equal(st.gpu_milli_used, 600);
    assert_int_equal(st.pods_unsure, 0);
    /* GPU 0 is free again: a 60% pod fits beside it, not on GPU 1 */
    json_t *c = pending_pod("c", 60, "2026-01-01T00:00:05Z");
    fx_model_pod_event(m, KUBE_ADDED, c);
    assert_true(fx_model_next(m, &at));
    assert_int_equal(at.outcome, FX_BIND);
    assert_non_null(strstr(at.allocation, "GPU-n1-0"));
    assert_int_equal(fx_model_check(m, &err), 0);

    /* 4. a refused bind (4xx): given back at once; 404: forgotten */
    fx_model_bind_done(m, "c", FLEXPU_EINVAL, 0);
    fx_model_stats(m, &st);
    assert_int_equal(st.gpu_milli_used, 600);
    assert_true(fx_model_next(m, &at));
    fx_model_bind_done(m, "c", FLEXPU_EIO, 0);
    fx_model_bind_settle(m, "c", NULL); /* the GET answered 404 */
    fx_model_stats(m, &st);
    assert_int_equal(st.gpu_milli_used, 600);
    assert_int_equal(st.pods_unsure, 0);
    free(text);
    json_decref(other);
    json_decref(ab);
    json_decref(a);
    json_decref(c);
    fx_model_free(m);
}

/* A server that never answers: each kind of request ends at its own bound,
 * not at a fixed minute (a 60 s bind against a 15 s lease). */
static void test_request_timeouts(void **state)
{
    (void)state;
    struct http_srv *srv = http_new((struct http_srv){.silent = true});
    struct kube_client *c = loopback_client(srv->port);
    /* the defaults: a few seconds for one object, longer for a list page */
    assert_true(kube_client_object_timeout_ms(c) <= 10000);
    kube_client_set_timeouts(c, 1000, 1500);
    assert_int_equal(kube_client_object_timeout_ms(c), 1000);
    long status;
    struct flexpu_error err = {0};
    json_t *body = json_object();
    int64_t t0 = fx_mono_ms();
    assert_int_equal(kube_request(c, "POST", "/api/v1/namespaces/d/pods/a/binding", body, NULL,
                                  &status, NULL, &err),
                     FLEXPU_EIO);
    int64_t took = fx_mono_ms() - t0;
    json_decref(body);
    if (took < 900 || took > 2500)
        fail_msg("a request bounded to 1000 ms took %lld ms", (long long)took);
    assert_non_null(strstr(err.msg, "no answer within 1000 ms"));
    assert_int_equal(status, 0);
    kube_client_free(c);
    http_stop(srv);

    srv = http_new((struct http_srv){.silent = true});
    c = loopback_client(srv->port);
    kube_client_set_timeouts(c, 1000, 1500);
    t0 = fx_mono_ms();
    json_t *page = NULL;
    assert_int_equal(kube_request_list(c, "/api/v1/pods?limit=500", &status, &page, &err),
                     FLEXPU_EIO);
    took = fx_mono_ms() - t0;
    if (took < 1400 || took > 3000)
        fail_msg("a list page bounded to 1500 ms took %lld ms", (long long)took);
    assert_null(page);
    kube_client_free(c);
    http_stop(srv);
}

/* An event recorder and its configuration, on the heap and listed like
 * http_new's servers: a failed assertion longjmps out of its test past
 * rec_stop, and rig_teardown stops its thread then (after the servers,
 * so that a request it holds ends at once) and frees it. */
struct rec_rig {
    struct kube_recorder *r;
    struct kube_config cfg;
    struct rec_rig *next_owned;
};

static struct rec_rig *recs_owned;

/* A recorder posting to srv, started. */
static struct kube_recorder *rec_new(struct http_srv *srv)
{
    struct rec_rig *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    x->next_owned = recs_owned;
    recs_owned = x;
    loopback_config(srv->port, &x->cfg);
    struct flexpu_error err = {0};
    x->r = kube_recorder_start(&x->cfg, "flexpu-node", "gpu-1", 1000, &err);
    if (!x->r)
        fail_msg("kube_recorder_start: %s", err.msg);
    return x->r;
}

/* Stops recorder r (joined) and frees it with its configuration. */
static void rec_stop(struct kube_recorder *r)
{
    for (struct rec_rig **p = &recs_owned; *p; p = &(*p)->next_owned) {
        if ((*p)->r == r) {
            struct rec_rig *x = *p;
            *p = x->next_owned;
            kube_recorder_stop(x->r);
            kube_config_free(&x->cfg);
            free(x);
            return;
        }
    }
    fail_msg("rec_stop: a recorder not made by rec_new");
}

/* Events (kube.h, events.c): the Event object the API server gets, from the
 * recorder's own thread; a refusal counted; a silent server never holds
 * the caller, and what does not fit the queue is dropped. */
static void test_event_recorder(void **state)
{
    (void)state;
    struct http_srv *srv = http_new((struct http_srv){.status = 201, .body = "{}"});
    struct kube_recorder *r = rec_new(srv);
    struct kube_pod_event e = {.ns = "team", .name = "b", .uid = "u-1", .type = "Warning",
                               .reason = "MemoryReclaimed", .message = "killed on node gpu-1"};
    assert_true(kube_recorder_emit(r, &e));
    kube_recorder_flush(r);
    assert_string_equal(srv->method, "POST");
    assert_string_equal(srv->path, "/api/v1/namespaces/team/events");
    json_t *ev = json_loads(srv->req_body, 0, NULL);
    assert_non_null(ev);
    assert_string_equal(kube_str(ev, "involvedObject.kind"), "Pod");
    assert_string_equal(kube_str(ev, "involvedObject.name"), "b");
    assert_string_equal(kube_str(ev, "involvedObject.uid"), "u-1");
    assert_string_equal(kube_str(ev, "type"), "Warning");
    assert_string_equal(kube_str(ev, "reason"), "MemoryReclaimed");
    assert_string_equal(kube_str(ev, "message"), "killed on node gpu-1");
    assert_string_equal(kube_str(ev, "source.component"), "flexpu-node");
    assert_string_equal(kube_str(ev, "reportingInstance"), "gpu-1");
    json_decref(ev);
    srv->status = 403; /* RBAC without create on events */
    assert_true(kube_recorder_emit(r, &e));
    kube_recorder_flush(r);
    long sent, failed;
    kube_recorder_counts(r, &sent, &failed);
    assert_int_equal(sent, 1);
    assert_int_equal(failed, 1);
    rec_stop(r);
    http_stop(srv);

    srv = http_new((struct http_srv){.silent = true});
    r = rec_new(srv);
    int64_t t0 = fx_mono_ms();
    int queued = 0;
    for (int i = 0; i < KUBE_EVENTS_MAX + 10; i++)
        queued += kube_recorder_emit(r, &e);
    if (fx_mono_ms() - t0 > 5000) /* not one request timeout (1 s) each */
        fail_msg("emitting %d events to a silent server took %lld ms", KUBE_EVENTS_MAX + 10,
                 (long long)(fx_mono_ms() - t0));
    assert_true(queued <= KUBE_EVENTS_MAX + 1); /* the queue, and one on the wire */
    assert_true(queued >= KUBE_EVENTS_MAX);
    rec_stop(r);
    http_stop(srv);
}

/* One series per pod and reason (kube_pod_event.series): the first event
 * is posted, each repeat of the same pod and reason patches that Event's
 * count, lastTimestamp and message; another pod, another reason or an
 * event without series is posted; an Event the server no longer has (404)
 * or may not be patched (403) is posted anew and starts a new series; the
 * longest unused series is forgotten past KUBE_EVENT_SERIES_MAX. */
static void test_event_series(void **state)
{
    (void)state;
    struct http_srv *srv =
        http_new((struct http_srv){.status = 201, .body = "{\"metadata\":{\"name\":\"b.181\"}}",
                                   .patch_status = 200, .patch_body = "{}"});
    struct kube_recorder *r = rec_new(srv);
    struct kube_pod_event e = {.ns = "team", .name = "b", .uid = "u-1", .type = "Warning",
                               .reason = "MemoryReclaimed", .message = "killed: owner a",
                               .series = true};
    assert_true(kube_recorder_emit(r, &e));
    kube_recorder_flush(r);
    assert_string_equal(srv->method, "POST");
    json_t *ev = json_loads(srv->req_body, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(ev, "count")), 1);
    json_decref(ev);
    for (int n = 2; n <= 3; n++) {
        snprintf(e.message, sizeof(e.message), "killed: owner a, time %d", n);
        assert_true(kube_recorder_emit(r, &e));
        kube_recorder_flush(r);
        assert_string_equal(srv->method, "PATCH");
        assert_string_equal(srv->path, "/api/v1/namespaces/team/events/b.181");
        ev = json_loads(srv->req_body, 0, NULL);
        assert_non_null(ev);
        assert_int_equal(json_integer_value(json_object_get(ev, "count")), n);
        assert_string_equal(kube_str(ev, "message"), e.message);
        assert_non_null(kube_str(ev, "lastTimestamp"));
        json_decref(ev);
    }
    /* another pod, another reason, no series: each posted */
    struct kube_pod_event other = e;
    snprintf(other.uid, sizeof(other.uid), "u-2");
    struct kube_pod_event reason = e;
    snprintf(reason.reason, sizeof(reason.reason), "Reclaimed");
    struct kube_pod_event single = e;
    single.series = false;
    srv->log[0] = '\0';
    assert_true(kube_recorder_emit(r, &other));
    assert_true(kube_recorder_emit(r, &reason));
    assert_true(kube_recorder_emit(r, &single));
    kube_recorder_flush(r);
    assert_string_equal(srv->log, "POST /api/v1/namespaces/team/events\n"
                                   "POST /api/v1/namespaces/team/events\n"
                                   "POST /api/v1/namespaces/team/events\n");
    /* the Event expired: posted anew, its series goes on from 1 */
    srv->patch_status = 404;
    srv->log[0] = '\0';
    assert_true(kube_recorder_emit(r, &e));
    kube_recorder_flush(r);
    assert_string_equal(srv->log, "PATCH /api/v1/namespaces/team/events/b.181\n"
                                   "POST /api/v1/namespaces/team/events\n");
    ev = json_loads(srv->req_body, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(ev, "count")), 1);
    json_decref(ev);
    srv->patch_status = 200;
    assert_true(kube_recorder_emit(r, &e));
    kube_recorder_flush(r);
    assert_string_equal(srv->method, "PATCH");
    ev = json_loads(srv->req_body, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(ev, "count")), 2);
    json_decref(ev);
    /* patch refused (RBAC without patch): posted, as before series */
    srv->patch_status = 403;
    srv->log[0] = '\0';
    assert_true(kube_recorder_emit(r, &e));
    kube_recorder_flush(r);
    assert_string_equal(srv->log, "PATCH /api/v1/namespaces/team/events/b.181\n"
                                   "POST /api/v1/namespaces/team/events\n");
    long sent, failed;
    kube_recorder_counts(r, &sent, &failed);
    assert_int_equal(failed, 0);
    /* bounded: past KUBE_EVENT_SERIES_MAX other pods, the first pod's
     * series (the longest unused) is forgotten and its next event posted */
    srv->patch_status = 200;
    for (int i = 0; i < KUBE_EVENT_SERIES_MAX; i++) {
        snprintf(other.uid, sizeof(other.uid), "u-many-%d", i);
        assert_true(kube_recorder_emit(r, &other));
    }
    kube_recorder_flush(r);
    srv->log[0] = '\0';
    assert_true(kube_recorder_emit(r, &e));
    kube_recorder_flush(r);
    assert_string_equal(srv->log, "POST /api/v1/namespaces/team/events\n");
    rec_stop(r);
    http_stop(srv);
}

/* kube_lease_valid_for: leading, and renewed recently enough that the
 * lease outlives the request about to be sent. */
static void test_lease_validity(void **state)
{
    (void)state;
    const int64_t s = 1000000000LL;
    struct kube_lease l = {.duration_s = 15, .leader = true, .renewed_at_ns = 100 * s};
    assert_true(kube_lease_valid_for(&l, 100 * s, 5 * s));
    assert_true(kube_lease_valid_for(&l, 104 * s, 5 * s));
    /* renew deadline: two thirds of 15 s after the renewal */
    assert_false(kube_lease_valid_for(&l, 106 * s, 5 * s));
    assert_true(kube_lease_valid_for(&l, 106 * s, 0));
    assert_false(kube_lease_valid_for(&l, 110 * s, 0));
    assert_false(kube_lease_valid_for(&l, 200 * s, 0)); /* long expired */
    l.leader = false;
    assert_false(kube_lease_valid_for(&l, 100 * s, 0));
}

/* The binder tests' setup, one copy: a client of the fake server (started
 * by the caller), a model with node n1, the pods added to it, and bind
 * senders started against the server. rig_stop frees all of it but the
 * server. A rig is on the heap and listed, like http_new's servers: a
 * failed assertion longjmps out of its test past rig_stop, and
 * rig_teardown (rig_test() in the list) stops its senders then, so they
 * never run on into the next case. */
struct bind_rig {
    struct kube_client *c;
    struct kube_config cfg;
    struct fx_binder b;
    struct fx_model *m;
    json_t *pods[8];
    int npods;
    bool stopped;
    struct bind_rig *next_owned; /* rig_new's list, for rig_teardown */
};

static struct bind_rig *rigs_owned;

/* A model with n1 of `ngpu` GPUs and a client of srv whose object timeout
 * is `timeout_ms` (0: the default); the binder not yet started. */
static struct bind_rig *rig_new(struct http_srv *srv, int ngpu, int timeout_ms)
{
    struct bind_rig *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->stopped = true; /* nothing to stop until it is built */
    r->next_owned = rigs_owned;
    rigs_owned = r;
    r->c = loopback_client(srv->port);
    if (timeout_ms)
        kube_client_set_timeouts(r->c, timeout_ms, 0);
    r->m = model_with_node("n1", ngpu);
    loopback_config(srv->port, &r->cfg);
    r->stopped = false;
    return r;
}

/* Pod p added to the rig's model (the watch's ADDED); the rig frees it. */
static json_t *rig_add(struct bind_rig *r, json_t *p)
{
    assert_true(r->npods < 8);
    r->pods[r->npods++] = p;
    fx_model_pod_event(r->m, KUBE_ADDED, p);
    return p;
}

/* `senders` bind senders started (the client's timeouts copied by then),
 * under `lease` (NULL: no election). */
static void rig_start(struct bind_rig *r, struct kube_lease *lease, int senders)
{
    struct flexpu_error err = {0};
    r->b = (struct fx_binder){.c = r->c, .lease = lease, .identity = "me"};
    if (fx_binder_start(&r->b, &r->cfg, senders, &err))
        fail_msg("fx_binder_start: %s", err.msg);
}

/* Stops the senders (joined) and frees what the rig holds; no-op if
 * stopped already. The rig itself stays readable until rig_teardown. */
static void rig_stop(struct bind_rig *r)
{
    if (r->stopped)
        return;
    r->stopped = true;
    fx_binder_stop(&r->b, r->m);
    kube_config_free(&r->cfg);
    fx_model_free(r->m);
    for (int i = 0; i < r->npods; i++)
        json_decref(r->pods[i]);
    kube_client_free(r->c);
}

/* Our lease in namespace d, of 15 s (renew deadline 10 s), held and last
 * renewed `ago_ns` before now. */
static struct kube_lease lease_renewed_ago(int64_t ago_ns)
{
    return (struct kube_lease){.namespace = "d", .name = "l", .identity = "me",
                               .duration_s = 15, .leader = true,
                               .renewed_at_ns = (int64_t)fx_mono_ns() - ago_ns};
}

/* A leader whose lease has expired binds nothing: another replica may hold
 * it by now. With the lease renewed, the same round binds. */
static void test_bind_round_checks_lease(void **state)
{
    (void)state;
    struct http_srv *srv =
        http_new((struct http_srv){.status = 201, .body = "{\"kind\":\"Binding\"}"});
    struct bind_rig *r = rig_new(srv, 1, 2000);
    struct fx_model *m = r->m;
    rig_add(r, pending_pod("a", 60, "2026-01-01T00:00:00Z"));

    struct kube_lease lease = lease_renewed_ago(20 * 1000000000LL);
    rig_start(r, &lease, 2);
    struct fx_binder *b = &r->b;
    assert_false(fx_binder_leading(b));
    assert_int_equal(fx_bind_round(m, b, 256, NULL), 0);
    assert_int_equal(srv->nreq, 0);
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    assert_int_equal(st.pods_queued, 1); /* nothing assumed */
    assert_int_equal(st.gpu_milli_used, 0);

    /* renewed 9 s ago: 1 s left before the renew deadline, less than a bind */
    lease.renewed_at_ns = (int64_t)fx_mono_ns() - 9 * 1000000000LL;
    assert_false(fx_binder_leading(b));
    assert_int_equal(fx_bind_round(m, b, 256, NULL), 0);
    assert_int_equal(srv->nreq, 0);

    lease.renewed_at_ns = (int64_t)fx_mono_ns();
    assert_true(fx_binder_leading(b));
    assert_int_equal(fx_bind_round(m, b, 256, NULL), 1);
    fx_binder_flush(m, b);
    assert_int_equal(srv->nreq, 1);
    assert_string_equal(srv->method, "POST");
    assert_string_equal(srv->path, "/api/v1/namespaces/d/pods/a/binding");
    assert_non_null(strstr(srv->req_body, "\"uid\":\"a\""));
    assert_non_null(strstr(srv->req_body, FX_ANN_ALLOCATION));
    assert_int_equal(b->binds, 1);
    fx_model_stats(m, &st);
    assert_int_equal(st.gpu_milli_used, 600);

    /* no election: always leading */
    struct fx_binder free_b = {.c = r->c, .identity = "me"};
    assert_true(fx_binder_leading(&free_b));
    rig_stop(r);
    http_stop(srv);
}

/* Binds go out in parallel, each on its own connection: with a server that
 * holds each request 200 ms, 4 senders have several binds on the wire at
 * once, and every pod is bound once. */
static void test_binds_in_parallel(void **state)
{
    (void)state;
    struct http_srv *srv = http_new((struct http_srv){
        .status = 201, .body = "{\"kind\":\"Binding\"}", .threaded = true, .delay_ms = 200});
    struct bind_rig *r = rig_new(srv, 8, 0);
    struct fx_model *m = r->m;
    for (int i = 0; i < 8; i++) {
        char uid[8];
        snprintf(uid, sizeof(uid), "p%d", i);
        rig_add(r, pending_pod(uid, 100, "2026-01-01T00:00:00Z"));
    }
    rig_start(r, NULL, 4);
    struct fx_binder *b = &r->b;
    assert_int_equal(fx_bind_round(m, b, 256, NULL), 8);
    fx_binder_flush(m, b);
    assert_int_equal(srv->nreq, 8);
    assert_int_equal(b->binds, 8);
    assert_int_equal(b->bind_errors, 0);
    if (srv->max_inflight < 2)
        fail_msg("4 senders never had two binds on the wire at once (max %d)", srv->max_inflight);
    assert_true(srv->max_inflight <= 4);
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    assert_int_equal(st.gpu_milli_used, 8000);
    assert_int_equal(st.pods_unsure, 0);
    rig_stop(r);
    http_stop(srv);
}

/* What the fake API server saw of the pods' status: each PATCH of
 * pods/NAME/status, in order, and every request's path. */
struct status_seen {
    pthread_mutex_t mu;
    int npatch;
    char path[8][256], body[8][2048];
    char order[4096]; /* "PATCH path\n" and "POST path\n" as they came */
};

static int status_route(struct http_srv *s, const char *method, const char *path,
                        const char *req_body, const char **body, int *delay_ms)
{
    struct status_seen *seen = s->ctx;
    pthread_mutex_lock(&seen->mu);
    size_t n = strlen(seen->order);
    snprintf(seen->order + n, sizeof(seen->order) - n, "%s %s\n", method, path);
    if (!strcmp(method, "PATCH") && seen->npatch < 8) {
        snprintf(seen->path[seen->npatch], sizeof(seen->path[0]), "%s", path);
        snprintf(seen->body[seen->npatch], sizeof(seen->body[0]), "%s", req_body);
        seen->npatch++;
    }
    pthread_mutex_unlock(&seen->mu);
    (void)delay_ms; /* the server's delay_ms stands */
    *body = !strcmp(method, "PATCH") ? "{\"kind\":\"Pod\"}" : "{\"kind\":\"Status\"}";
    return !strcmp(method, "PATCH") ? 200 : 201;
}

/* A fake API server recording status writes, and a one-GPU binder rig on it;
 * a threaded server answers each request delay_ms late. On the heap and
 * listed (the server's route reads `seen`): rig_teardown frees it once its
 * server is stopped. */
struct status_rig {
    struct status_seen seen;
    struct http_srv *srv;
    struct bind_rig *r;
    struct status_rig *next_owned;
};

static struct status_rig *status_owned;

static struct status_rig *status_rig_new(bool threaded, int delay_ms, int timeout_ms)
{
    struct status_rig *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    pthread_mutex_init(&s->seen.mu, NULL);
    s->next_owned = status_owned;
    status_owned = s;
    s->srv = http_new((struct http_srv){.route = status_route, .ctx = &s->seen,
                                        .threaded = threaded, .delay_ms = delay_ms});
    s->r = rig_new(s->srv, 1, timeout_ms);
    return s;
}

static void status_rig_stop(struct status_rig *s)
{
    rig_stop(s->r);
    http_stop(s->srv);
}

/* A cmocka teardown: what the test left running, stopped, whether it
 * passed or failed. The servers first, so that answers they hold end at
 * once and the senders waiting on them come back; then the senders,
 * joined (fx_binder_stop); then what the servers' routes read, and the
 * servers themselves (http_teardown). */
static int rig_teardown(void **state)
{
    for (struct http_srv *h = http_owned; h; h = h->next_owned)
        http_stop(h);
    while (recs_owned)
        rec_stop(recs_owned->r);
    while (rigs_owned) {
        struct bind_rig *r = rigs_owned;
        rigs_owned = r->next_owned;
        r->b.lease = NULL; /* a lease on the failed test's stack is gone */
        rig_stop(r);
        free(r);
    }
    while (status_owned) {
        struct status_rig *s = status_owned;
        status_owned = s->next_owned;
        pthread_mutex_destroy(&s->seen.mu);
        free(s);
    }
    return http_teardown(state);
}

/* A test that makes servers (http_new), binder rigs (rig_new) or event
 * recorders (rec_new). */
#define rig_test(f) cmocka_unit_test_teardown(f, rig_teardown)

/* The one condition in a PATCH body, checked field by field. */
static void assert_unscheduled(const char *body, const char *uid, const char *reason,
                               const char *message_part)
{
    json_error_t je;
    json_t *p = json_loads(body, 0, &je);
    assert_non_null(p);
    assert_string_equal(kube_str(p, "metadata.uid"), uid);
    json_t *conds = kube_get(p, "status.conditions");
    assert_int_equal(json_array_size(conds), 1);
    json_t *c = json_array_get(conds, 0);
    assert_string_equal(json_string_value(json_object_get(c, "type")), "PodScheduled");
    assert_string_equal(json_string_value(json_object_get(c, "status")), "False");
    assert_string_equal(json_string_value(json_object_get(c, "reason")), reason);
    const char *msg = json_string_value(json_object_get(c, "message"));
    assert_non_null(msg);
    if (!strstr(msg, message_part))
        fail_msg("message \"%s\" lacks \"%s\"", msg, message_part);
    assert_true(json_is_null(json_object_get(c, "lastProbeTime")));
    assert_non_null(json_string_value(json_object_get(c, "lastTransitionTime")));
    json_decref(p);
}

/* A pod that fits nowhere gets PodScheduled=False, reason Unschedulable,
 * with its FailedScheduling message, once: rounds that tell nothing new
 * write nothing. A malformed request is SchedulerError (no node fixes it:
 * autoscalers act on Unschedulable only); a gated pod gets no write (the
 * API server set SchedulingGated at its creation). */
static void test_pod_condition_written_once(void **state)
{
    (void)state;
    struct status_rig *s = status_rig_new(false, 0, 0);
    struct fx_model *m = s->r->m;
    rig_add(s->r, pending_pod("a", 60, "2026-01-01T00:00:00Z"));
    json_t *w = rig_add(s->r, pending_pod("w", 60, "2026-01-01T00:00:01Z"));
    json_t *g = pending_pod("g", 10, "2026-01-01T00:00:02Z");
    json_object_set_new(json_object_get(g, "spec"), "schedulingGates",
                        json_pack("[{s:s}]", "name", "example.com/wait"));
    json_t *bad = pending_pod("bad", 10, "2026-01-01T00:00:03Z");
    json_object_set_new(json_object_get(bad, "spec"), "schedulingGates",
                        json_pack("[{s:s}]", "name", ""));
    rig_add(s->r, g);
    rig_add(s->r, bad);
    rig_start(s->r, NULL, 2);
    struct fx_binder *b = &s->r->b;
    fx_bind_round(m, b, 256, NULL);
    fx_binder_flush(m, b);
    assert_int_equal(b->binds, 1);
    assert_int_equal(s->seen.npatch, 2);
    int iw = strstr(s->seen.path[0], "/pods/w/") ? 0 : 1;
    assert_string_equal(s->seen.path[iw], "/api/v1/namespaces/d/pods/w/status");
    assert_unscheduled(s->seen.body[iw], "w", "Unschedulable", "0/1 nodes available");
    assert_string_equal(s->seen.path[1 - iw], "/api/v1/namespaces/d/pods/bad/status");
    assert_unscheduled(s->seen.body[1 - iw], "bad", "SchedulerError", "spec.schedulingGates[0]");

    /* nothing new to tell: nothing written, however many rounds */
    for (int i = 0; i < 3; i++) {
        fx_model_pod_event(m, KUBE_MODIFIED, w);
        fx_bind_round(m, b, 256, NULL);
    }
    fx_binder_flush(m, b);
    assert_int_equal(s->seen.npatch, 2);
    assert_null(strstr(s->seen.order, "/pods/g/"));
    status_rig_stop(s);
}

/* The bodies of the PATCHes of pod `uid`'s status that set or clear its
 * nominatedNodeName, in order, parsed (at most 4); returns how many. */
static int nominations_of(struct status_seen *seen, const char *uid, json_t *out[4])
{
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/namespaces/d/pods/%s/status", uid);
    int n = 0;
    for (int i = 0; i < seen->npatch && n < 4; i++) {
        if (strcmp(seen->path[i], path) != 0)
            continue;
        json_error_t je;
        json_t *b = json_loads(seen->body[i], 0, &je);
        assert_non_null(b);
        if (kube_get(b, "status.nominatedNodeName"))
            out[n++] = b;
        else
            json_decref(b);
    }
    return n;
}

/* A nomination given back (FX_UNNOMINATE: hi, nominated on n1 for low,
 * edited to ask no GPU) clears the pod's nominatedNodeName: a merge patch
 * of pods/hi/status with nominatedNodeName null and hi's UID as
 * precondition, before hi's Binding. A pod never nominated (w, waiting,
 * edited) and one whose nomination ends in its bind (h2, its victim gone)
 * get no such patch. */
static void test_unnomination_patched(void **state)
{
    (void)state;
    struct status_rig *s = status_rig_new(false, 0, 0);
    struct fx_model *m = s->r->m;
    rig_add(s->r, slice_pod_on("low", 100, "n1", 0));
    json_t *hi = rig_add(s->r, pending_pod("hi", 60, "2026-01-01T00:00:01Z"));
    json_object_set_new(json_object_get(hi, "spec"), "priority", json_integer(1000));
    fx_model_pod_event(m, KUBE_MODIFIED, hi);
    json_t *w = rig_add(s->r, pending_pod("w", 60, "2026-01-01T00:00:02Z"));
    rig_start(s->r, NULL, 1);
    struct fx_binder *b = &s->r->b;
    fx_bind_round(m, b, 256, NULL); /* hi nominated, low evicted, w told it waits */
    fx_binder_flush(m, b);
    assert_non_null(strstr(s->seen.order, "POST /api/v1/namespaces/d/pods/low/eviction"));

    /* hi edited to ask no GPU: its place is given back, it binds beside low */
    json_t *limits = kube_get(json_array_get(kube_get(hi, "spec.containers"), 0),
                              "resources.limits");
    json_object_del(limits, "flexpu.io/gpu");
    json_object_del(limits, "flexpu.io/gpu-cores");
    fx_model_pod_event(m, KUBE_MODIFIED, hi);
    json_object_set_new(json_object_get(w, "metadata"), "labels",
                        json_pack("{s:s}", "app", "edited"));
    json_object_set_new(json_array_get(kube_get(w, "spec.containers"), 0), "image",
                        json_string("edited"));
    fx_model_pod_event(m, KUBE_MODIFIED, w);
    fx_bind_round(m, b, 256, NULL);
    fx_binder_flush(m, b);
    json_t *nom[4];
    int n = nominations_of(&s->seen, "hi", nom);
    if (n != 2)
        fail_msg("%d nominatedNodeName patches of hi, expected 2 (set, cleared): %s", n,
                 s->seen.order);
    assert_string_equal(kube_str(nom[0], "status.nominatedNodeName"), "n1");
    assert_true(json_is_null(kube_get(nom[1], "status.nominatedNodeName")));
    assert_string_equal(kube_str(nom[1], "metadata.uid"), "hi");
    for (int i = 0; i < n; i++)
        json_decref(nom[i]);
    const char *cleared = strstr(s->seen.order, "PATCH /api/v1/namespaces/d/pods/hi/status");
    cleared = cleared ? strstr(cleared + 1, "PATCH /api/v1/namespaces/d/pods/hi/status") : NULL;
    const char *bound = strstr(s->seen.order, "POST /api/v1/namespaces/d/pods/hi/binding");
    if (!cleared || !bound || bound < cleared)
        fail_msg("hi's nomination not cleared before its bind: %s", s->seen.order);
    assert_int_equal(nominations_of(&s->seen, "w", nom), 0);

    /* low and w gone; h2 nominated for low2, which goes: h2 is bound, and
     * its nomination, ended by the bind, is not cleared */
    fx_model_pod_event(m, KUBE_DELETED, s->r->pods[0]);
    fx_model_pod_event(m, KUBE_DELETED, w);
    rig_add(s->r, slice_pod_on("low2", 100, "n1", 0));
    json_t *h2 = rig_add(s->r, pending_pod("h2", 60, "2026-01-01T00:00:03Z"));
    json_object_set_new(json_object_get(h2, "spec"), "priority", json_integer(1000));
    fx_model_pod_event(m, KUBE_MODIFIED, h2);
    fx_bind_round(m, b, 256, NULL);
    fx_binder_flush(m, b);
    assert_non_null(strstr(s->seen.order, "POST /api/v1/namespaces/d/pods/low2/eviction"));
    fx_model_pod_event(m, KUBE_DELETED, s->r->pods[3]);
    fx_bind_round(m, b, 256, NULL);
    fx_binder_flush(m, b);
    assert_non_null(strstr(s->seen.order, "POST /api/v1/namespaces/d/pods/h2/binding"));
    assert_int_equal(nominations_of(&s->seen, "h2", nom), 1); /* set, never cleared */
    assert_string_equal(kube_str(nom[0], "status.nominatedNodeName"), "n1");
    json_decref(nom[0]);
    status_rig_stop(s);
}

/* pending_pod() labelled key=value, and annotated `ann`=`ann_value` when
 * ann is not NULL. */
static json_t *labelled_pod(const char *uid, const char *created, const char *key,
                            const char *value, const char *ann, const char *ann_value)
{
    json_t *p = pending_pod(uid, 10, created);
    json_t *md = json_object_get(p, "metadata");
    json_object_set_new(md, "labels", json_pack("{s:s}", key, value));
    if (ann)
        json_object_set_new(json_object_get(md, "annotations"), ann, json_string(ann_value));
    return p;
}

/* The PATCH body the fake server saw for pod `uid`'s status. */
static const char *status_patch_of(struct status_seen *seen, const char *uid)
{
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/namespaces/d/pods/%s/status", uid);
    for (int i = 0; i < seen->npatch; i++)
        if (!strcmp(seen->path[i], path))
            return seen->body[i];
    fail_msg("no PATCH of %s: %s", path, seen->order);
    return NULL;
}

static const char *transition_of(const char *body, char *out, size_t len)
{
    json_error_t je;
    json_t *p = json_loads(body, 0, &je);
    assert_non_null(p);
    json_t *c = json_array_get(kube_get(p, "status.conditions"), 0);
    snprintf(out, len, "%s", json_string_value(json_object_get(c, "lastTransitionTime")));
    json_decref(p);
    return out;
}

/* What autoscalers read: Cluster Autoscaler and Karpenter add nodes for a
 * pod whose PodScheduled is False with reason Unschedulable, so only a
 * wait that more nodes could end has it (w: no room on n1's one GPU); a
 * pod held back by its queue's limit, one naming a queue that does not
 * exist and one whose pod group has fewer members than its minimum say so
 * instead. A pod whose condition is False already (q: SchedulingGated
 * since 00:00:07, its gate removed) keeps that lastTransitionTime as its
 * reason changes, as kube-scheduler's UpdatePodCondition does; the others
 * turn False now. */
static void test_pod_condition_reasons(void **state)
{
    (void)state;
    struct status_rig *s = status_rig_new(false, 0, 0);
    struct flexpu_queue_info capped = {.name = "capped", .weight = 1};
    for (int i = 0; i < FLEXPU_RES_COUNT_; i++)
        capped.limit[i] = FLEXPU_QUEUE_UNLIMITED;
    capped.limit[FLEXPU_RES_GPU] = 0;
    struct flexpu_error err = {0};
    if (fx_model_queue_set(s->r->m, &capped, &err))
        fail_msg("fx_model_queue_set: %s", err.msg);
    rig_add(s->r, pending_pod("a", 60, "2026-01-01T00:00:00Z"));
    rig_add(s->r, pending_pod("w", 60, "2026-01-01T00:00:01Z"));
    json_t *q = labelled_pod("q", "2026-01-01T00:00:02Z", "flexpu.io/queue", "capped", NULL, NULL);
    json_object_set_new(json_object_get(q, "status"), "conditions",
                        json_pack("[{s:s, s:s, s:s, s:s}]", "type", "PodScheduled", "status",
                                  "False", "reason", "SchedulingGated", "lastTransitionTime",
                                  "2026-01-01T00:00:07Z"));
    rig_add(s->r, q);
    rig_add(s->r,
            labelled_pod("x", "2026-01-01T00:00:03Z", "flexpu.io/queue", "ghost", NULL, NULL));
    rig_add(s->r, labelled_pod("g", "2026-01-01T00:00:04Z", "flexpu.io/pod-group", "job",
                             "flexpu.io/min-members", "2"));
    rig_start(s->r, NULL, 2);
    char before[40], after[40], ltt[40];
    /* the clock the write reads: time(2) is the kernel's coarse clock, up to
     * a tick behind CLOCK_REALTIME, so it can still say :23 when the write
     * says :24 */
    kube_time_now(before, sizeof(before), false);
    fx_bind_round(s->r->m, &s->r->b, 256, NULL);
    fx_binder_flush(s->r->m, &s->r->b);
    kube_time_now(after, sizeof(after), false);
    assert_int_equal(s->r->b.binds, 1);
    assert_int_equal(s->seen.npatch, 4);
    const char *w = status_patch_of(&s->seen, "w");
    assert_unscheduled(w, "w", "Unschedulable", "0/1 nodes available");
    const char *qb = status_patch_of(&s->seen, "q");
    assert_unscheduled(qb, "q", "QueueLimitExceeded", "queue 'capped'");
    assert_string_equal(transition_of(qb, ltt, sizeof(ltt)), "2026-01-01T00:00:07Z");
    assert_unscheduled(status_patch_of(&s->seen, "x"), "x", "QueueNotFound",
                       "queue \"ghost\" does not exist");
    const char *g = status_patch_of(&s->seen, "g");
    assert_unscheduled(g, "g", "PodGroupIncomplete", "1 of 2 exist");
    /* RFC 3339 in UTC, one width: ordered as strings */
    const char *bodies[] = {w, g};
    for (int i = 0; i < 2; i++) {
        transition_of(bodies[i], ltt, sizeof(ltt));
        if (strcmp(ltt, before) < 0 || strcmp(ltt, after) > 0)
            fail_msg("lastTransitionTime %s, not the write's time (%s to %s)", ltt, before, after);
    }
    status_rig_stop(s);
}

/* A condition still queued when its pod is bound is never written: landing
 * after the Binding it would set PodScheduled=False on a bound pod. One
 * sender, busy 500 ms with a's bind; w, told it waits meanwhile, is bound
 * once a is deleted, before the sender is free. */
static void test_pod_condition_not_after_bind(void **state)
{
    (void)state;
    struct status_rig *s = status_rig_new(true, 500, 0);
    struct fx_model *m = s->r->m;
    json_t *a = rig_add(s->r, pending_pod("a", 60, "2026-01-01T00:00:00Z"));
    rig_add(s->r, pending_pod("w", 60, "2026-01-01T00:00:01Z"));
    rig_start(s->r, NULL, 1);
    struct fx_binder *b = &s->r->b;
    assert_int_equal(fx_bind_round(m, b, 256, NULL), 2); /* a bound, w told */
    fx_model_pod_event(m, KUBE_DELETED, a);
    assert_int_equal(fx_bind_round(m, b, 256, NULL), 1); /* w bound */
    fx_binder_flush(m, b);
    if (s->seen.npatch)
        fail_msg("a condition written for a pod being bound: %s", s->seen.order);
    assert_non_null(strstr(s->seen.order, "POST /api/v1/namespaces/d/pods/w/binding"));
    status_rig_stop(s);
}

/* The fake server's arrival times of PATCHes; each held 500 ms, the rest
 * answered at once. */
struct patch_times {
    pthread_mutex_t mu;
    int n;
    int64_t at_ms[8];
    char body[8][2048];
};

static int slow_patch_route(struct http_srv *s, const char *method, const char *path,
                            const char *req_body, const char **body, int *delay_ms)
{
    (void)path;
    struct patch_times *pt = s->ctx;
    bool patch = !strcmp(method, "PATCH");
    pthread_mutex_lock(&pt->mu);
    if (patch && pt->n < 8) {
        pt->at_ms[pt->n] = fx_mono_ms();
        snprintf(pt->body[pt->n], sizeof(pt->body[0]), "%s", req_body);
        pt->n++;
    }
    pthread_mutex_unlock(&pt->mu);
    *delay_ms = patch ? 500 : 0;
    *body = patch ? "{\"kind\":\"Pod\"}" : "{\"kind\":\"Status\"}";
    return patch ? 200 : 201;
}

/* A pod told a new message while its previous condition is on the wire:
 * the newer write goes out only once the older one is answered (two
 * senders writing it at once could land in either order, the older
 * message last). w waits for a's GPU; an update while w's first
 * PATCH is held (500 ms) asks for more (w modified), which tells w
 * again, and the other sender is free. */
static void test_pod_condition_writes_in_order(void **state)
{
    (void)state;
    /* static: the server's route reads it, and a failed assertion leaves
     * this frame before rig_teardown stops the server */
    static struct patch_times pt;
    pt = (struct patch_times){.mu = PTHREAD_MUTEX_INITIALIZER};
    struct http_srv *srv =
        http_new((struct http_srv){.route = slow_patch_route, .ctx = &pt, .threaded = true});
    struct bind_rig *r = rig_new(srv, 1, 0);
    struct fx_model *m = r->m;
    rig_add(r, pending_pod("a", 60, "2026-01-01T00:00:00Z"));
    rig_add(r, pending_pod("w", 60, "2026-01-01T00:00:01Z"));
    rig_start(r, NULL, 2);
    struct fx_binder *b = &r->b;
    assert_int_equal(fx_bind_round(m, b, 256, NULL), 2); /* a bound, w told */
    for (int i = 0; i < 200; i++) { /* until w's PATCH is on the wire */
        pthread_mutex_lock(&pt.mu);
        int n = pt.n;
        pthread_mutex_unlock(&pt.mu);
        if (n)
            break;
        nanosleep(&(struct timespec){.tv_nsec = 5000000L}, NULL);
    }
    json_t *w2 = pending_pod("w", 70, "2026-01-01T00:00:01Z");
    fx_model_pod_event(m, KUBE_MODIFIED, w2);
    json_decref(w2);
    assert_int_equal(fx_bind_round(m, b, 256, NULL), 1); /* w told again */
    fx_binder_flush(m, b);
    assert_int_equal(pt.n, 2);
    assert_non_null(strstr(pt.body[0], "600 milli"));
    assert_non_null(strstr(pt.body[1], "700 milli"));
    /* a lower bound: the second is sent after the first's answer, held 500 ms */
    if (pt.at_ms[1] - pt.at_ms[0] < 490)
        fail_msg("w's second PATCH went out %lld ms after the first, before its answer",
                 (long long)(pt.at_ms[1] - pt.at_ms[0]));
    rig_stop(r);
    http_stop(srv);
}

/* A condition queued while leading is not written once the lease could no
 * longer outlast its write (a follower never writes, and another leader
 * may bind the pod meanwhile): the one sender is busy 1.2 s with a's
 * bind, and w's condition's send-by instant is 0.3 s after the decision.
 * With `renew`, the lease is renewed 0.4 s in, before the sender is free,
 * and the next round drops what was queued before the lapse. Returns the
 * PATCHes the server saw. The bind's timeout (3 s) is well past its
 * answer: with 1 s against an answer held 0.7 s, a loaded 2-core machine
 * under ASan timed the bind out (binds 0). */
static int condition_writes_past_lease(bool renew)
{
    struct status_rig *s = status_rig_new(true, 1200, 3000);
    struct fx_model *m = s->r->m;
    rig_add(s->r, pending_pod("a", 60, "2026-01-01T00:00:00Z"));
    rig_add(s->r, pending_pod("w", 60, "2026-01-01T00:00:01Z"));
    /* renew deadline 10 s after the renewal; 6.7 s ago leaves 3.3 s, enough
     * to decide with a 3 s timeout, and the send-by is 0.3 s from now */
    struct kube_lease lease = lease_renewed_ago(6700000000LL);
    rig_start(s->r, &lease, 1);
    struct fx_binder *b = &s->r->b;
    assert_int_equal(fx_bind_round(m, b, 256, NULL), 2); /* a bound, w told */
    if (renew) {
        nanosleep(&(struct timespec){.tv_nsec = 400000000L}, NULL);
        lease.renewed_at_ns = (int64_t)fx_mono_ns();
        assert_int_equal(fx_bind_round(m, b, 256, NULL), 0); /* nothing new to tell */
    }
    fx_binder_flush(m, b);
    assert_int_equal(b->binds, 1);
    int n = s->seen.npatch;
    if (n)
        print_message("past the lease (renew %d): %s", renew, s->seen.order);
    status_rig_stop(s);
    return n;
}

static void test_pod_condition_not_past_lease(void **state)
{
    (void)state;
    assert_int_equal(condition_writes_past_lease(false), 0);
    assert_int_equal(condition_writes_past_lease(true), 0);
}

/* A bind decided while the lease held but still queued when the lease could
 * no longer outlast it is not sent: the sender is busy with a bind the
 * server never answers (1 s), and by then the next bind's send-by instant
 * (half a second after the decision) has passed. Its pod is given back and
 * decided again; the first, unanswered, stays held as unsure. */
static void test_bind_not_sent_past_lease(void **state)
{
    (void)state;
    struct http_srv *srv = http_new((struct http_srv){.silent = true});
    struct bind_rig *r = rig_new(srv, 1, 1000);
    struct fx_model *m = r->m;
    rig_add(r, pending_pod("a", 40, "2026-01-01T00:00:00Z"));
    rig_add(r, pending_pod("b", 40, "2026-01-01T00:00:01Z"));
    /* renew deadline 10 s after the renewal; 8.5 s ago leaves 1.5 s, enough
     * to decide a bind of 1 s, and its send-by is 0.5 s from now */
    struct kube_lease lease = lease_renewed_ago(8500000000LL);
    rig_start(r, &lease, 1);
    struct fx_binder *b = &r->b;
    assert_int_equal(fx_bind_round(m, b, 2, NULL), 2);
    fx_binder_flush(m, b);
    assert_int_equal(srv->nreq, 1);
    assert_int_equal(b->binds_unsent, 1);
    assert_int_equal(b->bind_errors, 1); /* the unanswered one */
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    assert_int_equal(st.pods_unsure, 1);
    assert_int_equal(st.pods_queued, 1);
    assert_int_equal(st.gpu_milli_used, 400);
    rig_stop(r);
    http_stop(srv);
}

/* A bind answered 504 stays held; once due, the pod is read back with a
 * GET, and found unbound it is queued again. */
static void test_settle_round_reads_back(void **state)
{
    (void)state;
    struct http_srv *srv = http_new(
        (struct http_srv){.status = 504, .body = "{\"kind\":\"Status\",\"message\":\"timeout\"}"});
    struct bind_rig *r = rig_new(srv, 1, 2000);
    struct fx_model *m = r->m;
    json_t *a = rig_add(r, pending_pod("a", 60, "2026-01-01T00:00:00Z"));
    rig_start(r, NULL, 1);
    struct fx_binder *b = &r->b;
    assert_int_equal(fx_bind_round(m, b, 256, NULL), 1);
    fx_binder_flush(m, b);
    assert_int_equal(b->bind_errors, 1);
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    assert_int_equal(st.pods_unsure, 1);
    assert_int_equal(st.gpu_milli_used, 600);

    fx_settle_round(m, b, fx_mono_ms()); /* not due yet: no request */
    assert_int_equal(srv->nreq, 1);
    /* Freed by the teardown, after the server stopped: its send of it may
     * outlast the client's read. */
    srv->body = srv->body_owned = json_dumps(a, JSON_COMPACT);
    assert_non_null(srv->body);
    srv->status = 200;
    fx_settle_round(m, b, fx_mono_ms() + FX_BIND_SETTLE_MS);
    assert_int_equal(srv->nreq, 2);
    assert_string_equal(srv->method, "GET");
    assert_string_equal(srv->path, "/api/v1/namespaces/d/pods/a");
    fx_model_stats(m, &st);
    assert_int_equal(st.pods_unsure, 0);
    assert_int_equal(st.pods_queued, 1);
    assert_int_equal(st.gpu_milli_used, 0);
    rig_stop(r);
    http_stop(srv);
}


/* A pod with a remote slice is labelled with its GPU node before its
 * Binding (docs/REMOTE.md, "The GPU node's watch"): a merge patch of the
 * pod carrying its UID, then the Binding; a local pod gets the Binding
 * alone. A refused label sends no Binding: the pod gone (404) is
 * FLEXPU_ENOENT, any other failure FLEXPU_EINVAL (decided again). */
static void test_bind_labels_remote_pod(void **state)
{
    (void)state;
    struct http_srv *srv = http_new((struct http_srv){.status = 200, .body = "{}"});
    struct kube_client *c = loopback_client(srv->port);
    struct flexpu_error err = {0};
    struct fx_attempt a = {.outcome = FX_BIND};
    snprintf(a.ns, sizeof(a.ns), "t");
    snprintf(a.name, sizeof(a.name), "p");
    snprintf(a.uid, sizeof(a.uid), "uid-1");
    snprintf(a.node, sizeof(a.node), "cpu-1");
    snprintf(a.allocation, sizeof(a.allocation),
             "{\"gpus\":[{\"uuid\":\"GPU-a\",\"index\":0,\"cores\":30,"
             "\"memory\":1073741824}],\"remote\":{\"node\":\"gpu-1\"}}");
    assert_int_equal(fx_bind_pod(c, &a, &err), 0);
    assert_string_equal(srv->log, "PATCH /api/v1/namespaces/t/pods/p\n"
                                 "POST /api/v1/namespaces/t/pods/p/binding\n");
    /* The Binding is the last request: its body names the CPU node. */
    assert_non_null(strstr(srv->req_body, "\"cpu-1\""));

    /* The label patch as it went out: the UID and the GPU node. */
    srv->log[0] = 0;
    srv->status = 404;
    srv->body = "{\"kind\":\"Status\",\"code\":404,\"message\":\"pods \\\"p\\\" not found\"}";
    assert_int_equal(fx_bind_pod(c, &a, &err), FLEXPU_ENOENT);
    assert_string_equal(srv->log, "PATCH /api/v1/namespaces/t/pods/p\n");
    json_t *patch = json_loads(srv->req_body, 0, NULL);
    assert_non_null(patch);
    assert_string_equal(kube_str(patch, "metadata.uid"), "uid-1");
    json_t *labels = kube_get(patch, "metadata.labels");
    assert_string_equal(json_string_value(json_object_get(labels, FX_LABEL_REMOTE_GPU_NODE)),
                        "gpu-1");
    assert_int_equal(json_object_size(labels), 1);
    assert_null(kube_get(patch, "metadata.annotations"));
    json_decref(patch);

    /* Refused otherwise (RBAC, the admission policy, a 5xx): no Binding. */
    srv->log[0] = 0;
    srv->status = 500;
    srv->body = "{\"kind\":\"Status\",\"code\":500,\"message\":\"boom\"}";
    assert_int_equal(fx_bind_pod(c, &a, &err), FLEXPU_EINVAL);
    assert_string_equal(srv->log, "PATCH /api/v1/namespaces/t/pods/p\n");

    /* A local slice and a CPU-only pod: the Binding alone. */
    srv->log[0] = 0;
    srv->status = 201;
    srv->body = "{}";
    snprintf(a.allocation, sizeof(a.allocation),
             "{\"gpus\":[{\"uuid\":\"GPU-a\",\"index\":0,\"cores\":30,"
             "\"memory\":1073741824}]}");
    assert_int_equal(fx_bind_pod(c, &a, &err), 0);
    a.allocation[0] = 0;
    assert_int_equal(fx_bind_pod(c, &a, &err), 0);
    assert_string_equal(srv->log, "POST /api/v1/namespaces/t/pods/p/binding\n"
                                 "POST /api/v1/namespaces/t/pods/p/binding\n");
    kube_client_free(c);
    http_stop(srv);
}

static int count_pod(enum kube_event ev, json_t *obj, void *ctx)
{
    int *n = ctx;
    if (ev == KUBE_ADDED && obj)
        (*n)++;
    if (ev == KUBE_SYNC_END)
        *n += 100;
    return 0;
}

/* kube_list: one list carrying the label selector, no watch after it. */
static void test_list_with_label_selector(void **state)
{
    (void)state;
    struct http_srv *srv = http_new(
        (struct http_srv){.status = 200,
                          .body = "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":"
                                  "\"7\"},\"items\":[{\"metadata\":{\"name\":\"a\"}}]}"});
    struct kube_client *c = loopback_client(srv->port);
    struct flexpu_error err = {0};
    struct kube_watch_opts o = {.path = "/api/v1/pods",
                                .label_selector = FX_LABEL_REMOTE_GPU_NODE "=gpu-1"};
    int n = 0;
    assert_int_equal(kube_list(c, &o, count_pod, &n, &err), 0);
    assert_int_equal(n, 101);
    assert_string_equal(srv->log, "GET /api/v1/pods?limit=500&labelSelector=flexpu.io%2F"
                                 "remote-gpu-node%3Dgpu-1\n");
    srv->status = 403;
    srv->body = "{\"kind\":\"Status\",\"code\":403,\"message\":\"forbidden\"}";
    n = 0;
    assert_int_not_equal(kube_list(c, &o, count_pod, &n, &err), 0);
    assert_int_equal(n, 0); /* no SYNC_END */
    kube_client_free(c);
    http_stop(srv);
}

/* ---- settings that expose credentials are said ---- */

static char logged[4096];

static void keep_line(const char *line, void *ctx)
{
    (void)ctx;
    size_t n = strlen(logged);
    snprintf(logged + n, sizeof(logged) - n, "%s\n", line);
}

static void parse_logged(const char *server, const char *extra)
{
    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "clusters:\n- name: c\n  cluster: {server: '%s'%s}\n"
             "contexts:\n- name: x\n  context: {cluster: c}\ncurrent-context: x\n",
             server, extra);
    struct kube_config cfg;
    struct flexpu_error err = {0};
    logged[0] = 0;
    assert_int_equal(kube_config_parse(yaml, strlen(yaml), ".", NULL, &cfg, &err), 0);
    kube_config_free(&cfg);
}

static void test_insecure_settings_warned(void **state)
{
    (void)state;
    enum flexpu_log_level was = flexpu_log_get_level();
    flexpu_log_set_level(FLEXPU_LOG_WARN);
    flexpu_log_set_sink(keep_line, NULL);

    parse_logged("http://10.0.0.7:8080", "");
    assert_non_null(strstr(logged, "level=warn"));
    assert_non_null(strstr(logged, "plain http"));
    assert_non_null(strstr(logged, "server=http://10.0.0.7:8080"));
    assert_null(strstr(logged, "loopback"));

    /* loopback (the test control plane): allowed, still said */
    parse_logged("http://127.0.0.1:8080", "");
    assert_non_null(strstr(logged, "plain http on loopback"));
    assert_non_null(strstr(logged, "server=http://127.0.0.1:8080"));

    parse_logged("https://api.example:6443", ", insecure-skip-tls-verify: true");
    assert_non_null(strstr(logged, "level=warn"));
    assert_non_null(strstr(logged, "insecure-skip-tls-verify"));
    assert_non_null(strstr(logged, "server=https://api.example:6443"));

    /* verified https: nothing to say */
    parse_logged("https://api.example:6443", "");
    assert_string_equal(logged, "");

    flexpu_log_set_sink(NULL, NULL);
    flexpu_log_set_level(was);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        rig_test(test_pod_spec),
        rig_test(test_priority_from_class),
        rig_test(test_default_slice_mem),
        rig_test(test_allocation_check),
        rig_test(test_two_gpu_containers_rejected),
        rig_test(test_inter_pod_rules_read_apart),
        rig_test(test_labels_packed),
        rig_test(test_allocation_and_inventory),
        rig_test(test_kubeconfig),
        rig_test(test_stream_splitter),
        rig_test(test_strmap),
        rig_test(test_model_places_and_restores),
        rig_test(test_model_workload_follows_nodes),
        rig_test(test_model_wakes_what_may_fit),
        rig_test(test_sched_metrics),
        rig_test(test_model_default_slice_memory),
        rig_test(test_model_bind_timeout_never_shares_gpu),
        rig_test(test_model_bind_unsure_settles),
        rig_test(test_request_timeouts),
        rig_test(test_event_recorder),
        rig_test(test_event_series),
        rig_test(test_lease_validity),
        rig_test(test_bind_round_checks_lease),
        rig_test(test_settle_round_reads_back),
        rig_test(test_binds_in_parallel),
        rig_test(test_pod_condition_written_once),
        rig_test(test_pod_condition_reasons),
        rig_test(test_pod_condition_not_after_bind),
        rig_test(test_pod_condition_writes_in_order),
        rig_test(test_pod_condition_not_past_lease),
        rig_test(test_unnomination_patched),
        rig_test(test_bind_not_sent_past_lease),
        rig_test(test_bind_labels_remote_pod),
        rig_test(test_list_with_label_selector),
        rig_test(test_insecure_settings_warned),
        rig_test(test_model_waiting_pod_edited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
