/* SPDX-License-Identifier: Apache-2.0 */
/* The Kubernetes side without a server: the pod/node/allocation contract,
 * kubeconfig parsing, the watch stream splitter, the string map, and the
 * scheduler model driven by hand-made objects. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/contract.h"
#include "kube/kube.h"
#include "scheduler/model.h"
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

static void test_pod_spec(void **state)
{
    (void)state;
    json_t *p = pod_json("\"cpu\":\"1500m\",\"memory\":\"2Gi\",\"flexpu.io/gpu\":\"1\","
                         "\"flexpu.io/gpu-cores\":\"30\",\"flexpu.io/gpu-memory\":\"4Gi\"",
                         "{\"flexpu.io/priority\":\"high\",\"flexpu.io/gpu-cores-limit\":\"50\","
                         "\"flexpu.io/gpu-model\":\"A100|H100\"}");
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

static void test_unsupported_constraints_refused(void **state)
{
    (void)state;
    json_error_t je;
    json_t *p = json_loads("{\"spec\":{\"nodeSelector\":{\"zone\":\"a\"},\"containers\":[]}}", 0,
                           &je);
    struct fx_pod_spec s;
    struct flexpu_error err = {0};
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "spec.nodeSelector"));
    assert_non_null(strstr(err.msg, "zone"));
    json_decref(p);
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
    while (fx_strmap_next(&m, &it, &k, &v))
        count++;
    assert_int_equal(count, 2500);
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

static void test_model_places_and_restores(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    struct fx_model *m = fx_model_new("flexpu-scheduler", "flexpu", 1, &err);
    assert_non_null(m);
    json_t *n = node_obj("n1", 1, NULL);
    fx_model_node_event(m, KUBE_ADDED, n);
    json_decref(n);
    /* A pod already bound with a recorded allocation of 60%. */
    json_t *p = slice_pod("old", 60, "n1",
                          "\"{\\\"gpus\\\":[{\\\"uuid\\\":\\\"GPU-n1-0\\\",\\\"index\\\":0,"
                          "\\\"cores\\\":60,\\\"memory\\\":0}]}\"");
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
            fx_model_bind_done(m, at.uid, 0);
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
    /* A failed bind gives the share back and queues the pod again. */
    fx_model_bind_done(m, at.uid, FLEXPU_EIO);
    fx_model_stats(m, &st);
    assert_int_equal(st.gpu_milli_used, 400);
    assert_true(fx_model_next(m, &at));
    assert_string_equal(at.uid, "a");
    assert_int_equal(fx_model_check(m, &err), 0);
    /* Cordoning removes the node from placement; its pods stay recorded. */
    n = node_obj("n1", 1, "\"unschedulable\":true");
    fx_model_node_event(m, KUBE_MODIFIED, n);
    json_decref(n);
    fx_model_stats(m, &st);
    assert_int_equal(st.nodes, 0);
    json_decref(a);
    json_decref(b);
    fx_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pod_spec),
        cmocka_unit_test(test_two_gpu_containers_rejected),
        cmocka_unit_test(test_unsupported_constraints_refused),
        cmocka_unit_test(test_allocation_and_inventory),
        cmocka_unit_test(test_kubeconfig),
        cmocka_unit_test(test_stream_splitter),
        cmocka_unit_test(test_strmap),
        cmocka_unit_test(test_model_places_and_restores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
