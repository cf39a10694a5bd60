/* SPDX-License-Identifier: Apache-2.0 */
/* Remote slices in Kubernetes (docs/REMOTE.md, "Kubernetes"): the contract
 * (flexpu.io/remote on a pod, "remote":{"node":...} in its allocation, the
 * node agent's check of it) and the scheduler's placement: a local slice
 * first; else the pod on a node without GPUs and its slice on a GPU node,
 * both accounted, as the allocation records after a restart, and given
 * back when the pod goes. */
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

/* Node `name` with `ngpu` A100s of 80 GiB, `cpu` CPUs and 64 GiB; labels
 * `label` ("k=v,k=v") or NULL; `slots` devices of flexpu.io/gpu allocatable (a node
 * without GPUs: its remote slots), -1: none listed. */
static void node_slots(struct fx_model *m, const char *name, int ngpu, const char *cpu,
                       const char *label, int slots)
{
    char *text = a100_inventory(name, ngpu);
    json_t *labels = json_object();
    for (const char *l = label; l && *l;) {
        char k[320], v[64]; /* a key may be 317 characters */
        size_t len = strcspn(l, ",");
        const char *eq = memchr(l, '=', len);
        assert_non_null(eq);
        snprintf(k, sizeof(k), "%.*s", (int)(eq - l), l);
        snprintf(v, sizeof(v), "%.*s", (int)(l + len - eq - 1), eq + 1);
        json_object_set_new(labels, k, json_string(v));
        l += len + (l[len] == ',');
    }
    json_t *n = json_pack("{s:{s:s, s:{s:s}, s:o}, s:{}, s:{s:{s:s, s:s}}}", "metadata", "name",
                          name, "annotations", "flexpu.io/gpus", text, "labels", labels, "spec",
                          "status", "allocatable", "cpu", cpu, "memory", "64Gi");
    assert_non_null(n);
    if (slots >= 0) {
        char v[16];
        snprintf(v, sizeof(v), "%d", slots);
        json_object_set_new(json_object_get(json_object_get(n, "status"), "allocatable"),
                            "flexpu.io/gpu", json_string(v));
    }
    fx_model_node_event(m, KUBE_MODIFIED, n);
    json_decref(n);
    free(text);
}

/* A node of the other tests: one without GPUs has 4 remote slots. */
static void node(struct fx_model *m, const char *name, int ngpu, const char *cpu,
                 const char *label)
{
    node_slots(m, name, ngpu, cpu, label, ngpu ? 16 * ngpu : 4);
}

/* pod() below with the rule flexpu.io/remote-topology-key: `rule` (NULL:
 * none). */
static void pod_rule(struct fx_model *m, const char *uid, int cores, const char *cpu, bool remote,
                     const char *on, const char *gpu_node, int sec, const char *rule)
{
    char created[40], c[16];
    snprintf(created, sizeof(created), "2026-01-01T00:%02d:%02dZ", sec / 60, sec % 60);
    snprintf(c, sizeof(c), "%d", cores);
    json_t *ann = json_object();
    if (remote)
        json_object_set_new(ann, FX_ANN_REMOTE, json_string(FX_REMOTE_ALLOWED));
    if (rule)
        json_object_set_new(ann, FX_ANN_REMOTE_TOPOLOGY_KEY, json_string(rule));
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:s, s:o}, s:{s:s, s:[{s:s, s:{s:{s:s, s:s, s:s}}}]}}",
                          "metadata", "name", uid, "namespace", "t", "uid", uid,
                          "creationTimestamp", created, "annotations", ann, "spec",
                          "schedulerName", "flexpu-scheduler", "containers", "name", "c",
                          "resources", "limits", "cpu", cpu, "flexpu.io/gpu", "1",
                          "flexpu.io/gpu-cores", c);
    assert_non_null(p);
    if (on) {
        struct fx_allocation al = {.ngpu = 1};
        snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "GPU-%s-0", gpu_node);
        al.gpus[0].cores = cores;
        al.gpus[0].mem = fx_default_slice_mem(1, cores, 0, 80 * GIB);
        if (strcmp(on, gpu_node) != 0)
            snprintf(al.remote_node, sizeof(al.remote_node), "%s", gpu_node);
        char *text = fx_allocation_format(&al);
        json_object_set_new(ann, FX_ANN_ALLOCATION, json_string(text));
        free(text);
        json_object_set_new(json_object_get(p, "spec"), "nodeName", json_string(on));
    }
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
}

/* A pod asking one GPU with `cores` and `cpu` CPUs, flexpu.io/remote
 * "allowed" when remote; bound to `on` with a slice of GPU 0 of `gpu_node`
 * (remote when it is another node) when on is not NULL. */
static void pod(struct fx_model *m, const char *uid, int cores, const char *cpu, bool remote,
                const char *on, const char *gpu_node, int sec)
{
    pod_rule(m, uid, cores, cpu, remote, on, gpu_node, sec, NULL);
}

/* A pod asking `ngpu` GPUs of `cores` each (gpu-memory `mem` on each when
 * not NULL) and `cpu` CPUs, flexpu.io/remote "allowed" when remote; bound
 * to `on` with GPUs 0..ngpu-1 of `gpu_node` (remote when it is another
 * node, each with the pod's memory) when on is not NULL. */
static void pod_gpus(struct fx_model *m, const char *uid, int ngpu, int cores, const char *mem,
                     const char *cpu, bool remote, const char *on, const char *gpu_node, int sec)
{
    char created[40], c[16], n[16];
    snprintf(created, sizeof(created), "2026-01-01T00:%02d:%02dZ", sec / 60, sec % 60);
    snprintf(c, sizeof(c), "%d", cores);
    snprintf(n, sizeof(n), "%d", ngpu);
    json_t *ann = json_object();
    if (remote)
        json_object_set_new(ann, FX_ANN_REMOTE, json_string(FX_REMOTE_ALLOWED));
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:s, s:o}, s:{s:s, s:[{s:s, s:{s:{s:s, s:s, s:s}}}]}}",
                          "metadata", "name", uid, "namespace", "t", "uid", uid,
                          "creationTimestamp", created, "annotations", ann, "spec",
                          "schedulerName", "flexpu-scheduler", "containers", "name", "c",
                          "resources", "limits", "cpu", cpu, "flexpu.io/gpu", n,
                          "flexpu.io/gpu-cores", c);
    assert_non_null(p);
    json_t *ctr = json_array_get(json_object_get(json_object_get(p, "spec"), "containers"), 0);
    json_t *lim = json_object_get(json_object_get(ctr, "resources"), "limits");
    assert_non_null(lim);
    if (mem)
        json_object_set_new(lim, FX_RES_GPU_MEMORY, json_string(mem));
    if (on) {
        struct fx_allocation al = {.ngpu = ngpu};
        for (int i = 0; i < ngpu; i++) {
            snprintf(al.gpus[i].uuid, sizeof(al.gpus[i].uuid), "GPU-%s-%d", gpu_node, i);
            al.gpus[i].index = i;
            al.gpus[i].cores = cores;
            al.gpus[i].mem = mem ? 8 * GIB : 0;
        }
        if (strcmp(on, gpu_node) != 0)
            snprintf(al.remote_node, sizeof(al.remote_node), "%s", gpu_node);
        char *text = fx_allocation_format(&al);
        json_object_set_new(ann, FX_ANN_ALLOCATION, json_string(text));
        free(text);
        json_object_set_new(json_object_get(p, "spec"), "nodeName", json_string(on));
    }
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
}

static struct fx_model_stats stats(struct fx_model *m)
{
    struct fx_model_stats st;
    fx_model_stats(m, &st);
    return st;
}

/* ---- the contract ---- */

static json_t *pod_json(const char *remote_value)
{
    json_t *ann = json_object();
    if (remote_value)
        json_object_set_new(ann, FX_ANN_REMOTE, json_string(remote_value));
    return json_pack("{s:{s:s, s:s, s:o}, s:{s:[{s:s, s:{s:{s:s, s:s}}}]}}", "metadata", "name",
                     "p", "namespace", "t", "annotations", ann, "spec", "containers", "name", "c",
                     "resources", "limits", "flexpu.io/gpu", "1", "flexpu.io/gpu-cores", "30");
}

static void test_pod_annotation(void **state)
{
    (void)state;
    struct fx_pod_spec s;
    struct flexpu_error err = {0};
    json_t *p = pod_json(FX_REMOTE_ALLOWED);
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), 0);
    assert_true(s.remote_allowed);
    json_decref(p);
    p = pod_json(NULL);
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), 0);
    assert_false(s.remote_allowed);
    json_decref(p);
    p = pod_json("yes");
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "metadata.annotations[flexpu.io/remote]"));
    assert_non_null(strstr(err.msg, "'yes'"));
    json_decref(p);
    p = pod_json(NULL);
    json_object_set_new(json_object_get(json_object_get(p, "metadata"), "annotations"),
                        FX_ANN_REMOTE, json_true());
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "flexpu.io/remote"));
    json_decref(p);
}

static void test_allocation_round_trip(void **state)
{
    (void)state;
    struct fx_allocation al = {.ngpu = 1}, back;
    struct flexpu_error err = {0};
    snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "GPU-g1-0");
    al.gpus[0].cores = 30;
    al.gpus[0].mem = 24 * GIB;
    snprintf(al.remote_node, sizeof(al.remote_node), "gpu-node-3.example");
    char *text = fx_allocation_format(&al);
    assert_non_null(strstr(text, "\"remote\":{\"node\":\"gpu-node-3.example\"}"));
    assert_int_equal(fx_allocation_parse(text, &back, &err), 0);
    assert_string_equal(back.remote_node, "gpu-node-3.example");
    assert_int_equal(back.gpus[0].cores, 30);
    free(text);
    /* Local: no remote field. */
    al.remote_node[0] = 0;
    text = fx_allocation_format(&al);
    assert_null(strstr(text, "remote"));
    assert_int_equal(fx_allocation_parse(text, &back, &err), 0);
    assert_string_equal(back.remote_node, "");
    free(text);
}

static void test_allocation_bad_remote(void **state)
{
    (void)state;
    static const struct {
        const char *remote, *field;
    } bad[] = {
        {"\"g1\"", "].remote'"},
        {"{}", "].remote'"},
        {"{\"node\":\"g1\",\"port\":7070}", "].remote'"},
        {"{\"node\":7}", "].remote.node'"},
        {"{\"node\":\"\"}", "].remote.node'"},
        {"{\"node\":\"Bad_Node\"}", "].remote.node'"},
        {"{\"node\":\"-g1\"}", "].remote.node'"},
        {"{\"node\":\"g1/../x\"}", "].remote.node'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "{\"gpus\":[{\"uuid\":\"GPU-g1-0\",\"index\":0,\"cores\":30,\"memory\":1}],"
                 "\"remote\":%s}",
                 bad[i].remote);
        struct fx_allocation al;
        struct flexpu_error err = {0};
        assert_int_equal(fx_allocation_parse(text, &al, &err), FLEXPU_EINVAL);
        if (!strstr(err.msg, bad[i].field))
            fail_msg("%s: %s does not name %s", bad[i].remote, err.msg, bad[i].field);
        assert_string_equal(al.remote_node, "");
    }
    /* 253 characters are a node name; 254 are not. */
    char text[600], name[300];
    memset(name, 'a', 254);
    name[254] = 0;
    struct fx_allocation al;
    struct flexpu_error err = {0};
    snprintf(text, sizeof(text),
             "{\"gpus\":[{\"uuid\":\"u\",\"index\":0,\"cores\":30,\"memory\":1}],"
             "\"remote\":{\"node\":\"%s\"}}",
             name);
    assert_int_equal(fx_allocation_parse(text, &al, &err), FLEXPU_EINVAL);
    name[253] = 0;
    snprintf(text, sizeof(text),
             "{\"gpus\":[{\"uuid\":\"u\",\"index\":0,\"cores\":30,\"memory\":1}],"
             "\"remote\":{\"node\":\"%s\"}}",
             name);
    assert_int_equal(fx_allocation_parse(text, &al, &err), 0);
    assert_int_equal(strlen(al.remote_node), 253);
}

/* The node agent's check: a remote allocation only for a pod that allows
 * it, one GPU, never borrowed. */
static void test_allocation_check(void **state)
{
    (void)state;
    struct fx_pod_spec s;
    struct flexpu_error err = {0};
    json_t *p = pod_json(FX_REMOTE_ALLOWED);
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), 0);
    json_decref(p);
    int64_t mem[1] = {80 * GIB};
    struct fx_allocation al = {.ngpu = 1};
    snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "GPU-g1-0");
    al.gpus[0].cores = 30;
    al.gpus[0].mem = fx_default_slice_mem(1, 30, 0, 80 * GIB);
    snprintf(al.remote_node, sizeof(al.remote_node), "g1");
    assert_int_equal(fx_allocation_check(&s, &al, mem, &err), 0);
    al.borrowed = true;
    assert_int_equal(fx_allocation_check(&s, &al, mem, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "remote.node"));
    al.borrowed = false;
    s.remote_allowed = false; /* a forged allocation */
    assert_int_equal(fx_allocation_check(&s, &al, mem, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "remote.node"));
    assert_non_null(strstr(err.msg, "flexpu.io/remote"));
    /* The same allocation without the remote field is a local slice. */
    al.remote_node[0] = 0;
    assert_int_equal(fx_allocation_check(&s, &al, mem, &err), 0);
}

/* A remote allocation of N GPUs for a pod asking N: accepted; one GPU
 * named twice, or a count not the pod's, refused naming the field. */
static void test_allocation_check_gpus(void **state)
{
    (void)state;
    struct fx_pod_spec s;
    struct flexpu_error err = {0};
    json_t *p = pod_json(FX_REMOTE_ALLOWED);
    json_t *lim = json_object_get(json_object_get(json_array_get(json_object_get(
                                      json_object_get(p, "spec"), "containers"), 0),
                                                  "resources"), "limits");
    json_object_set_new(lim, "flexpu.io/gpu", json_string("2"));
    json_object_set_new(lim, FX_RES_GPU_MEMORY, json_string("8Gi"));
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), 0);
    json_decref(p);
    int64_t mem[2] = {80 * GIB, 80 * GIB};
    struct fx_allocation al = {.ngpu = 2};
    for (int i = 0; i < 2; i++) {
        snprintf(al.gpus[i].uuid, sizeof(al.gpus[i].uuid), "GPU-g1-%d", i);
        al.gpus[i].cores = 30;
        al.gpus[i].mem = 8 * GIB;
    }
    snprintf(al.remote_node, sizeof(al.remote_node), "g1");
    assert_int_equal(fx_allocation_check(&s, &al, mem, &err), 0);
    snprintf(al.gpus[1].uuid, sizeof(al.gpus[1].uuid), "GPU-g1-0");
    assert_int_equal(fx_allocation_check(&s, &al, mem, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "gpus[1].uuid"));
    assert_non_null(strstr(err.msg, "GPU-g1-0"));
    al.ngpu = 1;
    assert_int_equal(fx_allocation_check(&s, &al, mem, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, ".gpus"));
}

/* ---- the scheduler ---- */

static void test_local_first(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "16", NULL);
    node(m, "c1", 0, "16", NULL);
    pod(m, "p1", 30, "1", true, NULL, NULL, 0);
    struct fx_attempt a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "g1");
    assert_null(strstr(a.allocation, "remote"));
    assert_false(a.remote);
    assert_int_equal(stats(m).remote, 0);
    fx_model_free(m);
}

/* g1's CPUs are too few for the pod: it runs on c1, its slice on g1. */
static void test_remote_when_no_local(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", NULL);
    node(m, "c1", 0, "16", NULL);
    node(m, "c2", 0, "8", NULL);
    pod(m, "p1", 30, "4", true, NULL, NULL, 0);
    struct fx_attempt a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "c1"); /* the one with more CPU free */
    struct fx_allocation al;
    struct flexpu_error err = {0};
    assert_int_equal(fx_allocation_parse(a.allocation, &al, &err), 0);
    assert_string_equal(al.remote_node, "g1");
    assert_string_equal(al.gpus[0].uuid, "GPU-g1-0");
    assert_int_equal(al.gpus[0].cores, 30);
    assert_int_equal(al.gpus[0].mem, fx_default_slice_mem(1, 30, 0, 80 * GIB));
    assert_non_null(strstr(a.message, "remote slice of GPU 0 of node g1"));
    struct fx_model_stats st = stats(m);
    assert_int_equal(st.remote, 1);
    assert_int_equal(st.remote_placed, 1);
    assert_int_equal(st.gpu_milli_used, 300);
    assert_int_equal(fx_model_check(m, &err), 0);
    /* A pod that does not allow it waits. */
    pod(m, "p2", 30, "4", false, NULL, NULL, 1);
    a = next(m, FX_WAIT, "p2");
    /* The watch confirms p1; deleting it gives both shares back: a pod
     * asking the whole GPU and 2 CPUs fits on g1 then, not before. */
    fx_model_bind_done(m, "p1", 0, 0);
    pod(m, "p1", 30, "4", true, "c1", "g1", 0);
    assert_int_equal(stats(m).remote, 1);
    pod(m, "w", 100, "2", false, NULL, NULL, 2);
    next(m, FX_WAIT, "w");
    gone(m, "p1");
    st = stats(m);
    assert_int_equal(st.remote, 0);
    assert_int_equal(st.gpu_milli_used, 0);
    a = next(m, FX_BIND, "w");
    assert_string_equal(a.node, "g1");
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);
}

/* No node without GPUs (or none the pod's filters allow): it waits. */
static void test_no_cpu_node(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", NULL);
    pod(m, "p1", 30, "4", true, NULL, NULL, 0);
    next(m, FX_WAIT, "p1");
    fx_model_free(m);

    m = new_model();
    node(m, "g1", 1, "2", NULL);
    node(m, "c1", 0, "16", "zone=a");
    node(m, "c2", 0, "16", "zone=b");
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:s, s:{s:s}}, s:{s:s, s:{s:s}, "
                          "s:[{s:s, s:{s:{s:s, s:s, s:s}}}]}}",
                          "metadata", "name", "p1", "namespace", "t", "uid", "p1",
                          "creationTimestamp", "2026-01-01T00:00:00Z", "annotations",
                          FX_ANN_REMOTE, FX_REMOTE_ALLOWED, "spec", "schedulerName",
                          "flexpu-scheduler", "nodeSelector", "zone", "b", "containers", "name",
                          "c", "resources", "limits", "cpu", "4", "flexpu.io/gpu", "1",
                          "flexpu.io/gpu-cores", "30");
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
    struct fx_attempt a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "c2"); /* its nodeSelector is for its own node */
    fx_model_free(m);
}

/* ---- near its GPU (--remote-topology-keys) ---- */

#define RACK "topology.kubernetes.io/rack"
#define ZONE "topology.kubernetes.io/zone"

/* Where remote pod p1 (4 CPUs) runs beside GPU node g1 (labels glabels),
 * among a node without GPUs in zone a (8 CPUs) and one in zone b (16),
 * with the keys `keys` (NULL: the default ones); *msg its bind's message. */
static void zones(const char *glabels, const char *keys, char *node_out, char *msg)
{
    struct fx_model *m = new_model();
    if (keys) {
        struct fx_remote_topology t;
        struct flexpu_error err = {0};
        assert_int_equal(fx_remote_topology_parse("keys", keys, &t, &err), 0);
        fx_model_set_remote_topology(m, &t);
    }
    node(m, "g1", 1, "2", glabels);
    node(m, "ca", 0, "8", ZONE "=a");
    node(m, "cb", 0, "16", ZONE "=b");
    pod(m, "p1", 30, "4", true, NULL, NULL, 0);
    struct fx_attempt a = next(m, FX_BIND, "p1");
    assert_non_null(strstr(a.allocation, "\"remote\":{\"node\":\"g1\"}"));
    assert_true(a.remote); /* its event: RemoteSlice, the message */
    strcpy(node_out, a.node);
    strcpy(msg, a.message);
    struct flexpu_error err = {0};
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);
}

/* The GPU in zone a: the pod runs in zone a, though zone b's node has more
 * CPU free; with no keys ("" : no preference), in zone b as before. */
static void test_near_zone(void **state)
{
    (void)state;
    char on[256], msg[400];
    zones(ZONE "=a", NULL, on, msg);
    assert_string_equal(on, "ca");
    if (!strstr(msg, "runs on node ca") || !strstr(msg, "of node g1") ||
        !strstr(msg, "both in " ZONE "=a"))
        fail_msg("message: %s", msg);
    zones(ZONE "=a", ZONE, on, msg);
    assert_string_equal(on, "ca");
    zones(ZONE "=a", "", on, msg);
    assert_string_equal(on, "cb");
    assert_null(strstr(msg, "both in"));
    assert_null(strstr(msg, "topology"));
    /* Keys that leave the zone out do not see it. */
    zones(ZONE "=a", RACK, on, msg);
    assert_string_equal(on, "cb");
}

/* A key longer than 80 characters (a 194-character prefix) is shown in the
 * binding message as "..." and its last 77 characters, the name included:
 * before, its first 80 were shown, with no sign of the cut, naming a key
 * that does not exist. */
static void test_near_long_key_shown(void **state)
{
    (void)state;
    char key[300], labels[320], seg[3][61];
    for (int i = 0; i < 3; i++) {
        memset(seg[i], 'a' + i, 60);
        seg[i][60] = '\0';
    }
    snprintf(key, sizeof(key), "%s.%s.%s.example.com/rack-row", seg[0], seg[1], seg[2]);
    assert_true(strlen(key) > 80);
    struct fx_model *m = new_model();
    struct fx_remote_topology t;
    struct flexpu_error err = {0};
    if (fx_remote_topology_parse("keys", key, &t, &err) != 0)
        fail_msg("key %s: %s", key, err.msg);
    fx_model_set_remote_topology(m, &t);
    snprintf(labels, sizeof(labels), "%s=a", key);
    node(m, "g1", 1, "2", labels);
    node(m, "ca", 0, "8", labels);
    node(m, "cb", 0, "16", NULL);
    pod(m, "p1", 30, "4", true, NULL, NULL, 0);
    struct fx_attempt a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "ca");
    char want[120];
    snprintf(want, sizeof(want), "; both in ...%s=a", key + strlen(key) - 77);
    if (!strstr(a.message, want))
        fail_msg("want '%s' in: %s", want, a.message);
    fx_model_free(m);
}

/* A remote pod whose priority annotation is capped (high asked, no
 * PriorityClass that allows it) gets the capped warning as its event, and
 * the warning says where it runs and how near its GPU: before, it said only
 * that the annotation was ignored. */
static void test_capped_remote_says_where(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", ZONE "=a");
    node(m, "ca", 0, "8", ZONE "=a");
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:s, s:{s:s, s:s}}, s:{s:s, s:[{s:s, s:{s:{s:s, "
                          "s:s, s:s}}}]}}",
                          "metadata", "name", "p1", "namespace", "t", "uid", "p1",
                          "creationTimestamp", "2026-01-01T00:00:00Z", "annotations",
                          FX_ANN_REMOTE, FX_REMOTE_ALLOWED, FX_ANN_PRIORITY, "high", "spec",
                          "schedulerName", "flexpu-scheduler", "containers", "name", "c",
                          "resources", "limits", "cpu", "4", "flexpu.io/gpu", "1",
                          "flexpu.io/gpu-cores", "30");
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
    struct fx_attempt a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "ca");
    assert_false(a.remote); /* its event: the capped priority's warning */
    if (!strstr(a.message, FX_ANN_PRIORITY) || !strstr(a.message, "runs on node ca") ||
        !strstr(a.message, "both in " ZONE "=a"))
        fail_msg("message: %s", a.message);
    fx_model_free(m);
}

/* No node without GPUs shares a label with the GPU node (its zone c, or no
 * labels): the most CPU free, as without keys, and the message says so. */
static void test_near_none_falls_back(void **state)
{
    (void)state;
    char on[256], msg[400];
    zones(ZONE "=c", NULL, on, msg);
    assert_string_equal(on, "cb");
    if (!strstr(msg, "no node without GPUs for it shares a topology label with its GPU node (" RACK))
        fail_msg("message: %s", msg);
    zones(NULL, NULL, on, msg);
    assert_string_equal(on, "cb");
    /* A node with the zone label but the GPU node without: no match. */
    zones(RACK "=r1", NULL, on, msg);
    assert_string_equal(on, "cb");
}

/* A rack beats a zone: of c-zone (zone a only, 32 CPUs), c-rack (rack r1
 * and zone a, 8) and c-far (zone b, 64), beside g1 in rack r1 of zone a,
 * p1 runs in the rack; p2, whose 6 CPUs the rack's node no longer has,
 * in the zone, not on the node with the most CPU. The keys' order is the
 * preference: zone first, and c-zone wins. */
static void test_rack_beats_zone(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", RACK "=r1," ZONE "=a");
    node(m, "c-zone", 0, "32", ZONE "=a");
    node(m, "c-rack", 0, "8", RACK "=r1," ZONE "=a");
    node(m, "c-far", 0, "64", ZONE "=b");
    pod(m, "p1", 30, "4", true, NULL, NULL, 0);
    struct fx_attempt a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "c-rack");
    assert_non_null(strstr(a.message, "both in " RACK "=r1"));
    pod(m, "p2", 30, "6", true, NULL, NULL, 1);
    a = next(m, FX_BIND, "p2");
    assert_string_equal(a.node, "c-zone");
    assert_non_null(strstr(a.message, "both in " ZONE "=a"));
    struct flexpu_error err = {0};
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);

    m = new_model();
    struct fx_remote_topology t;
    assert_int_equal(fx_remote_topology_parse("keys", ZONE "," RACK, &t, &err), 0);
    fx_model_set_remote_topology(m, &t);
    node(m, "g1", 1, "2", RACK "=r1," ZONE "=a");
    node(m, "c-zone", 0, "32", ZONE "=a");
    node(m, "c-rack", 0, "8", RACK "=r1," ZONE "=a");
    pod(m, "p1", 30, "4", true, NULL, NULL, 0);
    a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "c-zone");
    fx_model_free(m);
}

/* An empty label value names no place: beside g1 in rack "" of zone a,
 * c-blank (rack "" too, but zone b, 16 CPUs) is not near it, c-zone (zone
 * a, no rack, 8) is. Label values compare as Kubernetes compares them,
 * case and all: zone "A" is not zone "a". */
static void test_near_empty_value(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", RACK "=," ZONE "=a");
    node(m, "c-blank", 0, "16", RACK "=," ZONE "=b");
    node(m, "c-zone", 0, "8", ZONE "=a");
    pod(m, "p1", 30, "4", true, NULL, NULL, 0);
    struct fx_attempt a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "c-zone");
    if (!strstr(a.message, "both in " ZONE "=a"))
        fail_msg("message: %s", a.message);
    fx_model_free(m);

    /* Only blanks and a case apart: none near, the most CPU free. */
    m = new_model();
    node(m, "g1", 1, "2", RACK "=," ZONE "=a");
    node(m, "c-blank", 0, "8", RACK "=");
    node(m, "c-case", 0, "12", ZONE "=A");
    node(m, "c-far", 0, "16", ZONE "=b");
    pod(m, "p1", 30, "4", true, NULL, NULL, 0);
    a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "c-far");
    if (!strstr(a.message, "no node without GPUs for it shares a topology label"))
        fail_msg("message: %s", a.message);
    fx_model_free(m);
}

/* Labels read when a pod is placed, not when the scheduler started: cb
 * relabelled into g1's zone a (and ca out of it) takes the next pod. */
static void test_near_relabel(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", ZONE "=a");
    node(m, "ca", 0, "16", ZONE "=a");
    node(m, "cb", 0, "16", ZONE "=b");
    pod(m, "p1", 30, "4", true, NULL, NULL, 0);
    assert_string_equal(next(m, FX_BIND, "p1").node, "ca");
    node(m, "ca", 0, "16", ZONE "=b");
    node(m, "cb", 0, "16", ZONE "=a");
    pod(m, "p2", 30, "4", true, NULL, NULL, 1);
    struct fx_attempt a = next(m, FX_BIND, "p2");
    assert_string_equal(a.node, "cb");
    assert_non_null(strstr(a.message, "both in " ZONE "=a"));
    struct flexpu_error err = {0};
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);
}

/* A node without GPUs takes as many remote pods as it has remote slots
 * (its agent's --remote-slots, the kubelet's allocatable flexpu.io/gpu):
 * none without, one per slot, another when one is given back or its agent
 * offers more; a pod that fits a local slice never lands there. */
static void test_remote_slots(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", NULL);
    node_slots(m, "c0", 0, "64", NULL, -1); /* the most CPU, no slots listed */
    node_slots(m, "c1", 0, "16", NULL, 0);  /* its agent offers none */
    node_slots(m, "c2", 0, "8", NULL, 1);
    pod(m, "p1", 20, "4", true, NULL, NULL, 0);
    struct fx_attempt a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "c2");
    fx_model_bind_done(m, "p1", 0, 0);
    pod(m, "p1", 20, "4", true, "c2", "g1", 0);
    /* c2's one slot is held (its CPU is not all used): p2 waits. */
    pod(m, "p2", 20, "4", true, NULL, NULL, 1);
    next(m, FX_WAIT, "p2");
    /* A pod that fits a local slice goes to g1, never to a CPU node. */
    pod(m, "l1", 20, "1", true, NULL, NULL, 2);
    a = next(m, FX_BIND, "l1");
    assert_string_equal(a.node, "g1");
    assert_null(strstr(a.allocation, "remote"));
    /* c1's agent now offers two slots: p2 is woken and lands there. */
    node_slots(m, "c1", 0, "16", NULL, 2);
    a = next(m, FX_BIND, "p2");
    assert_string_equal(a.node, "c1");
    assert_non_null(strstr(a.allocation, "\"remote\":{\"node\":\"g1\"}"));
    fx_model_bind_done(m, "p2", 0, 0);
    pod(m, "p2", 20, "4", true, "c1", "g1", 1);
    /* c1's second slot goes to p3; then both nodes' slots are held and p4
     * waits, until p1 gone gives c2's back. */
    pod(m, "p3", 20, "4", true, NULL, NULL, 3);
    a = next(m, FX_BIND, "p3");
    assert_string_equal(a.node, "c1");
    fx_model_bind_done(m, "p3", 0, 0);
    pod(m, "p3", 20, "4", true, "c1", "g1", 3);
    pod(m, "p4", 10, "4", true, NULL, NULL, 4);
    next(m, FX_WAIT, "p4");
    gone(m, "p1");
    a = next(m, FX_BIND, "p4");
    assert_string_equal(a.node, "c2");
    struct flexpu_error err = {0};
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);
}

/* After a restart, a bound remote pod is accounted as recorded: its
 * slice on the GPU node (whichever comes first, the pod or the node), its
 * CPU on its own; the GPU node changing (out of the engine and back) keeps
 * it so. */
static void test_restart_accounting(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        struct fx_model *m = new_model();
        if (order == 0) {
            node(m, "g1", 1, "16", NULL);
            node(m, "c1", 0, "4", NULL);
            pod(m, "p1", 70, "4", true, "c1", "g1", 0);
        } else {
            node(m, "c1", 0, "4", NULL);
            pod(m, "p1", 70, "4", true, "c1", "g1", 0);
            node(m, "g1", 1, "16", NULL);
        }
        struct fx_model_stats st = stats(m);
        assert_int_equal(st.remote, 1);
        assert_int_equal(st.gpu_milli_used, 700);
        assert_int_equal(st.conflicts, 0);
        /* A relabel takes g1 out of the engine and back. */
        node(m, "g1", 1, "16", "zone=x");
        assert_int_equal(stats(m).gpu_milli_used, 700);
        /* 40 cores do not fit beside the 70; c1's CPUs are all taken. */
        pod(m, "p2", 40, "4", true, NULL, NULL, 1);
        next(m, FX_WAIT, "p2");
        pod(m, "p3", 30, "1", false, NULL, NULL, 2);
        struct fx_attempt a = next(m, FX_BIND, "p3");
        assert_string_equal(a.node, "g1");
        struct flexpu_error err = {0};
        assert_int_equal(fx_model_check(m, &err), 0);
        fx_model_free(m);
    }
}

/* A remote pod bound to a node that is not ready (out of the engine): its
 * slice is held on the GPU node all the same. */
static void test_pod_node_not_ready(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "16", NULL);
    json_t *n = json_pack("{s:{s:s}, s:{}, s:{s:{s:s, s:s}, s:[{s:s, s:s}]}}", "metadata", "name",
                          "c1", "spec", "status", "allocatable", "cpu", "16", "memory", "64Gi",
                          "conditions", "type", "Ready", "status", "False");
    fx_model_node_event(m, KUBE_MODIFIED, n);
    json_decref(n);
    pod(m, "p1", 70, "4", true, "c1", "g1", 0);
    assert_int_equal(stats(m).gpu_milli_used, 700);
    pod(m, "p2", 40, "1", false, NULL, NULL, 1);
    next(m, FX_WAIT, "p2");
    /* c1 ready again: p1's CPU accounted there, its slice still once. */
    node(m, "c1", 0, "16", NULL);
    assert_int_equal(stats(m).gpu_milli_used, 700);
    assert_int_equal(stats(m).remote, 1);
    gone(m, "p1");
    assert_int_equal(stats(m).gpu_milli_used, 0);
    assert_int_equal(stats(m).remote, 0);
    next(m, FX_BIND, "p2");
    struct flexpu_error err = {0};
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);
}

/* A pod of another scheduler bound to `on` with `cpu` CPUs. */
static void other(struct fx_model *m, const char *uid, const char *on, const char *cpu)
{
    json_t *p = json_pack("{s:{s:s, s:s, s:s}, s:{s:s, s:s, s:[{s:s, s:{s:{s:s}}}]}}",
                          "metadata", "name", uid, "namespace", "t", "uid", uid, "spec",
                          "schedulerName", "default-scheduler", "nodeName", on, "containers",
                          "name", "c", "resources", "requests", "cpu", cpu);
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
}

/* A waiting remote-allowed pod is tried again when either half of it may
 * fit: CPU freed on a node without GPUs, or a GPU freed on a node whose
 * CPUs the pod could not have used anyway. */
static void test_woken(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", NULL);
    node(m, "c1", 0, "16", NULL);
    other(m, "o1", "c1", "16");
    pod(m, "p1", 30, "4", true, NULL, NULL, 0);
    next(m, FX_WAIT, "p1");
    gone(m, "o1"); /* c1's CPUs free: p1 fits with a remote slice */
    struct fx_attempt a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "c1");
    assert_non_null(strstr(a.allocation, "\"remote\":{\"node\":\"g1\"}"));
    fx_model_free(m);

    m = new_model();
    node(m, "g1", 1, "2", NULL);
    node(m, "c1", 0, "16", NULL);
    pod(m, "whole", 100, "1", false, "g1", "g1", 0);
    pod(m, "p1", 30, "4", true, NULL, NULL, 1);
    next(m, FX_WAIT, "p1");
    gone(m, "whole"); /* g1's GPU free; its 2 CPUs still too few for p1 */
    a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "c1");
    assert_non_null(strstr(a.allocation, "\"remote\":{\"node\":\"g1\"}"));
    fx_model_free(m);
}

/* ---- never across a zone (flexpu.io/remote-topology-key) ---- */

#define RULE_FIELD "metadata.annotations[" FX_ANN_REMOTE_TOPOLOGY_KEY "]"

/* The annotation names one topology key; anything else is refused naming
 * the annotation and the value, and so is the rule on a pod that does not
 * allow a remote slice (it would be moot without a word). */
static void test_rule_annotation(void **state)
{
    (void)state;
    struct fx_pod_spec s;
    struct flexpu_error err = {0};
    const char *key = "x";
    json_t *p = pod_json(FX_REMOTE_ALLOWED);
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), 0);
    assert_int_equal(fx_pod_remote_rule_parse(p, &s, &key, &err), 0);
    assert_null(key); /* no rule */
    json_t *ann = json_object_get(json_object_get(p, "metadata"), "annotations");
    json_object_set_new(ann, FX_ANN_REMOTE_TOPOLOGY_KEY, json_string(ZONE));
    assert_int_equal(fx_pod_remote_rule_parse(p, &s, &key, &err), 0);
    assert_non_null(key);
    assert_string_equal(key, ZONE);
    static const char *const bad[] = {
        "",                        /* no key */
        "Zone/x",                  /* the prefix is no DNS subdomain */
        "topology.kubernetes.io/", /* no name */
        "zone a",                  /* a space */
        "topology.kubernetes.io/zone,topology.kubernetes.io/rack", /* one key, not a list */
        "kubernetes.io/hostname",  /* no two nodes share it */
        "-zone",                   /* starts with '-' */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_object_set_new(ann, FX_ANN_REMOTE_TOPOLOGY_KEY, json_string(bad[i]));
        key = "x";
        memset(&err, 0, sizeof(err));
        assert_int_equal(fx_pod_remote_rule_parse(p, &s, &key, &err), FLEXPU_EINVAL);
        char want[200];
        snprintf(want, sizeof(want), "'%s'", bad[i]);
        if (!strstr(err.msg, RULE_FIELD) || !strstr(err.msg, want))
            fail_msg("%s: %s", bad[i], err.msg);
        assert_null(key);
    }
    json_object_set_new(ann, FX_ANN_REMOTE_TOPOLOGY_KEY, json_integer(7));
    assert_int_equal(fx_pod_remote_rule_parse(p, &s, &key, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, RULE_FIELD));
    json_decref(p);
    /* A valid key on a pod without flexpu.io/remote: refused, saying why. */
    p = pod_json(NULL);
    ann = json_object_get(json_object_get(p, "metadata"), "annotations");
    json_object_set_new(ann, FX_ANN_REMOTE_TOPOLOGY_KEY, json_string(ZONE));
    assert_int_equal(fx_pod_spec_parse(p, &s, &err), 0);
    assert_int_equal(fx_pod_remote_rule_parse(p, &s, &key, &err), FLEXPU_EINVAL);
    if (!strstr(err.msg, RULE_FIELD) || !strstr(err.msg, "'" ZONE "'") ||
        !strstr(err.msg, FX_ANN_REMOTE ": \"allowed\""))
        fail_msg("%s", err.msg);
    json_decref(p);
    /* The scheduler: the pod is invalid (its event, InvalidRequest, says
     * why) and nothing is placed, not even locally. */
    struct fx_model *m = new_model();
    node(m, "g1", 1, "16", ZONE "=a");
    pod_rule(m, "p1", 30, "1", true, NULL, NULL, 0, "Zone/x");
    struct fx_attempt a = next(m, FX_INVALID, "p1");
    if (!strstr(a.message, RULE_FIELD) || !strstr(a.message, "'Zone/x'"))
        fail_msg("message: %s", a.message);
    pod_rule(m, "p2", 30, "1", false, NULL, NULL, 1, ZONE);
    a = next(m, FX_INVALID, "p2");
    assert_non_null(strstr(a.message, RULE_FIELD));
    assert_int_equal(stats(m).gpu_milli_used, 0);
    fx_model_free(m);
}

/* The only free GPU is in zone a and the only node without GPUs with room
 * in zone b: with the rule the pod waits, saying so (without it, it runs
 * across: the control); once ca (zone a) frees its CPUs, the pod is woken
 * and runs there, its slice on g1. */
static void test_rule_waits_then_placed(void **state)
{
    (void)state;
    for (int rule = 0; rule < 2; rule++) {
        struct fx_model *m = new_model();
        node(m, "g1", 1, "2", ZONE "=a");
        node(m, "ca", 0, "16", ZONE "=a");
        node(m, "cb", 0, "16", ZONE "=b");
        other(m, "o1", "ca", "16");
        pod_rule(m, "p1", 30, "4", true, NULL, NULL, 0, rule ? ZONE : NULL);
        if (!rule) {
            struct fx_attempt a = next(m, FX_BIND, "p1");
            assert_string_equal(a.node, "cb"); /* across zones: a preference only */
            assert_non_null(strstr(a.allocation, "\"remote\":{\"node\":\"g1\"}"));
            fx_model_free(m);
            continue;
        }
        struct fx_attempt a = next(m, FX_WAIT, "p1");
        if (!strstr(a.message, FX_ANN_REMOTE_TOPOLOGY_KEY ": no " ZONE " has both a free slice "
                               "for it and a node without GPUs") ||
            !strstr(a.message, "(1 with such a node)"))
            fail_msg("message: %s", a.message);
        assert_int_equal(stats(m).gpu_milli_used, 0);
        struct fx_attempt none;
        assert_false(fx_model_next(m, &none)); /* told once */
        gone(m, "o1"); /* ca's CPUs free: p1 fits in zone a */
        a = next(m, FX_BIND, "p1");
        assert_string_equal(a.node, "ca");
        assert_non_null(strstr(a.allocation, "\"remote\":{\"node\":\"g1\"}"));
        if (!strstr(a.message, "both in " ZONE "=a (" FX_ANN_REMOTE_TOPOLOGY_KEY ")"))
            fail_msg("message: %s", a.message);
        struct flexpu_error err = {0};
        assert_int_equal(fx_model_check(m, &err), 0);
        fx_model_free(m);
    }
}

/* Two zones: ga (zone a) has the GPU the engine prefers cluster-wide (half
 * used: a 30% slice packs there), gb (zone b) an empty one; the only node
 * without GPUs is cb, in zone b. Without the rule the slice goes to ga and
 * the pod runs across, on cb (the control); with it the slice goes to gb,
 * beside cb. A GPU node without the zone label (gx, its GPU as used as
 * ga's) is never a candidate. */
static void test_rule_picks_the_zone_with_a_node(void **state)
{
    (void)state;
    for (int rule = 0; rule < 2; rule++) {
        struct fx_model *m = new_model();
        node(m, "ga", 1, "2", ZONE "=a");
        node(m, "gb", 1, "2", ZONE "=b");
        node(m, "gx", 1, "2", RACK "=r1");
        node(m, "cb", 0, "16", ZONE "=b");
        pod(m, "half-a", 50, "1", false, "ga", "ga", 0);
        pod(m, "half-x", 50, "1", false, "gx", "gx", 1);
        pod_rule(m, "p1", 30, "4", true, NULL, NULL, 2, rule ? ZONE : NULL);
        struct fx_attempt a = next(m, FX_BIND, "p1");
        assert_string_equal(a.node, "cb");
        struct fx_allocation al;
        struct flexpu_error err = {0};
        assert_int_equal(fx_allocation_parse(a.allocation, &al, &err), 0);
        if (!rule) {
            /* The engine's choice, not gb's empty GPU. */
            assert_string_not_equal(al.remote_node, "gb");
        } else {
            assert_string_equal(al.remote_node, "gb");
            if (!strstr(a.message, "both in " ZONE "=b (" FX_ANN_REMOTE_TOPOLOGY_KEY ")"))
                fail_msg("message: %s", a.message);
        }
        assert_int_equal(fx_model_check(m, &err), 0);
        fx_model_free(m);
    }
}

/* A GPU node without the rule's label, or with it empty, is in no domain;
 * nor is a node without GPUs labelled empty: the pod waits, "0 with such a
 * node" when no node without GPUs has a value. */
static void test_rule_needs_the_label(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", NULL);
    node(m, "g2", 1, "2", ZONE "=");
    node(m, "ca", 0, "16", ZONE "=a");
    pod_rule(m, "p1", 30, "4", true, NULL, NULL, 0, ZONE);
    struct fx_attempt a = next(m, FX_WAIT, "p1");
    assert_non_null(strstr(a.message, "(1 with such a node)"));
    fx_model_free(m);

    m = new_model();
    node(m, "g2", 1, "2", ZONE "=");
    node(m, "c0", 0, "16", ZONE "=");
    node(m, "c1", 0, "16", NULL);
    pod_rule(m, "p1", 30, "4", true, NULL, NULL, 0, ZONE);
    a = next(m, FX_WAIT, "p1");
    if (!strstr(a.message, "(0 with such a node)"))
        fail_msg("message: %s", a.message);
    fx_model_free(m);
}

/* A waiting pod's remote annotations are a user's to edit: a rule made
 * looser (another key both halves share, or none) or flexpu.io/remote
 * added has the pod tried again at once, not when capacity next frees
 * somewhere. g1 (zone a, region r) has the only free GPU, cb (zone b,
 * region r) the only room: nothing else changes. */
static void test_rule_edited_while_waiting(void **state)
{
    (void)state;
    static const char *const to[] = {"topology.kubernetes.io/region", NULL, "remote"};
    for (size_t i = 0; i < sizeof(to) / sizeof(to[0]); i++) {
        struct fx_model *m = new_model();
        node(m, "g1", 1, "2", ZONE "=a,topology.kubernetes.io/region=r");
        node(m, "cb", 0, "16", ZONE "=b,topology.kubernetes.io/region=r");
        bool add_remote = to[i] && strcmp(to[i], "remote") == 0;
        pod_rule(m, "p1", 30, "4", !add_remote, NULL, NULL, 0, add_remote ? NULL : ZONE);
        next(m, FX_WAIT, "p1");
        struct fx_attempt none;
        assert_false(fx_model_next(m, &none));
        pod_rule(m, "p1", 30, "4", true, NULL, NULL, 0, add_remote ? NULL : to[i]);
        struct fx_attempt a = next(m, FX_BIND, "p1");
        assert_string_equal(a.node, "cb");
        assert_non_null(strstr(a.allocation, "\"remote\":{\"node\":\"g1\"}"));
        struct flexpu_error err = {0};
        assert_int_equal(fx_model_check(m, &err), 0);
        fx_model_free(m);
    }
    /* An edit that changes nothing of that (another annotation) leaves it
     * parked: no decision per pod update. */
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", ZONE "=a");
    node(m, "cb", 0, "16", ZONE "=b");
    pod_rule(m, "p1", 30, "4", true, NULL, NULL, 0, ZONE);
    next(m, FX_WAIT, "p1");
    pod_rule(m, "p1", 30, "4", true, NULL, NULL, 0, ZONE);
    assert_int_equal(stats(m).pods_waiting, 1);
    assert_int_equal(stats(m).pods_queued, 0);
    /* Edited (the rule gone), it is queued, not waiting. */
    pod_rule(m, "p1", 30, "4", true, NULL, NULL, 0, NULL);
    assert_int_equal(stats(m).pods_waiting, 0);
    assert_int_equal(stats(m).pods_queued, 1);
    fx_model_free(m);
}

/* GPU node g1 (1 GPU, 2 CPUs: no room for the pods below) tainted
 * key=value:NoSchedule, c1 without GPUs (16 CPUs). */
static void tainted_gpu_node(struct fx_model *m, const char *key, const char *value,
                             const char *zone)
{
    char *text = a100_inventory("g1", 1);
    json_t *n = json_pack("{s:{s:s, s:{s:s}, s:{}}, s:{s:[{s:s, s:s, s:s}]}, s:{s:{s:s, s:s, "
                          "s:s}}}",
                          "metadata", "name", "g1", "annotations", "flexpu.io/gpus", text,
                          "labels", "spec", "taints", "key", key, "value", value, "effect",
                          "NoSchedule", "status", "allocatable", "cpu", "2", "memory", "64Gi",
                          "flexpu.io/gpu", "16");
    assert_non_null(n);
    if (zone)
        json_object_set_new(json_object_get(json_object_get(n, "metadata"), "labels"), ZONE,
                            json_string(zone));
    fx_model_node_event(m, KUBE_MODIFIED, n);
    json_decref(n);
    free(text);
    node(m, "c1", 0, "16", zone ? ZONE "=a" : NULL);
}

/* Remote pod `uid` (30%, 4 CPUs) tolerating key=value:NoSchedule (key
 * NULL: no toleration). */
static json_t *tolerating_pod(const char *uid, const char *key, const char *value)
{
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:s, s:{s:s}}, s:{s:s, s:[], s:[{s:s, s:{s:{s:s, "
                          "s:s, s:s}}}]}}",
                          "metadata", "name", uid, "namespace", "t", "uid", uid,
                          "creationTimestamp", "2026-01-01T00:00:00Z", "annotations",
                          FX_ANN_REMOTE, FX_REMOTE_ALLOWED, "spec", "schedulerName",
                          "flexpu-scheduler", "tolerations", "containers", "name", "c",
                          "resources", "limits", "cpu", "4", "flexpu.io/gpu", "1",
                          "flexpu.io/gpu-cores", "30");
    assert_non_null(p);
    if (key)
        json_array_append_new(json_object_get(json_object_get(p, "spec"), "tolerations"),
                              json_pack("{s:s, s:s, s:s}", "key", key, "value", value, "effect",
                                        "NoSchedule"));
    return p;
}

/* A GPU node's taints apply to a remote slice of its GPU with the pod's
 * tolerations: a GKE GPU pool (nvidia.com/gpu=present:NoSchedule) gives
 * slices to the pods that tolerate it, as every pod running on it must;
 * a node tainted for team a gives none to team b's pods. Before, no
 * tainted GPU node gave a remote slice to any pod. */
static void test_tainted_gpu_node(void **state)
{
    (void)state;
    static const char *const taint[][2] = {{"nvidia.com/gpu", "present"},
                                           {"flexpu.io/team", "a"}};
    for (size_t i = 0; i < 2; i++) {
        struct fx_model *m = new_model();
        tainted_gpu_node(m, taint[i][0], taint[i][1], NULL);
        /* Without the toleration (or another team's): no slice there. */
        json_t *p = tolerating_pod("p1", i ? taint[i][0] : NULL, "b");
        fx_model_pod_event(m, KUBE_ADDED, p);
        struct fx_attempt a = next(m, FX_WAIT, "p1");
        assert_non_null(strstr(a.message, "untolerated taint"));
        assert_int_equal(stats(m).remote, 0);
        json_decref(p);
        /* Tolerating it (added on the waiting pod): bound at once, on c1
         * with a slice of g1. */
        p = tolerating_pod("p1", taint[i][0], taint[i][1]);
        fx_model_pod_event(m, KUBE_MODIFIED, p);
        a = next(m, FX_BIND, "p1");
        assert_string_equal(a.node, "c1");
        assert_non_null(strstr(a.allocation, "\"remote\":{\"node\":\"g1\"}"));
        json_decref(p);
        struct flexpu_error err = {0};
        assert_int_equal(fx_model_check(m, &err), 0);
        fx_model_free(m);
    }
    /* With a rule (flexpu.io/remote-topology-key), the tolerations join
     * its scope: both apply. */
    for (int tolerates = 0; tolerates < 2; tolerates++) {
        struct fx_model *m = new_model();
        tainted_gpu_node(m, "flexpu.io/team", "a", "a");
        json_t *p = tolerating_pod("p1", "flexpu.io/team", tolerates ? "a" : "b");
        json_object_set_new(json_object_get(json_object_get(p, "metadata"), "annotations"),
                            FX_ANN_REMOTE_TOPOLOGY_KEY, json_string(ZONE));
        fx_model_pod_event(m, KUBE_ADDED, p);
        struct fx_attempt a = next(m, tolerates ? FX_BIND : FX_WAIT, "p1");
        if (tolerates)
            assert_non_null(strstr(a.message, "both in " ZONE "=a"));
        else
            assert_non_null(strstr(a.message, FX_ANN_REMOTE_TOPOLOGY_KEY ": no " ZONE));
        json_decref(p);
        fx_model_free(m);
    }
}

/* Node `name` (`ngpu` A100s, `cpu` CPUs, the remote slots of node()) with
 * the taints `taints` (a JSON array, stolen). */
static void node_tainted(struct fx_model *m, const char *name, int ngpu, const char *cpu,
                         json_t *taints)
{
    char *text = a100_inventory(name, ngpu);
    char slots[16];
    snprintf(slots, sizeof(slots), "%d", ngpu ? 16 * ngpu : 4);
    json_t *n = json_pack("{s:{s:s, s:{s:s}}, s:{s:o}, s:{s:{s:s, s:s, s:s}}}", "metadata", "name",
                          name, "annotations", "flexpu.io/gpus", text, "spec", "taints", taints,
                          "status", "allocatable", "cpu", cpu, "memory", "64Gi", "flexpu.io/gpu",
                          slots);
    assert_non_null(n);
    fx_model_node_event(m, KUBE_MODIFIED, n);
    json_decref(n);
    free(text);
}

static json_t *taint(const char *key, const char *value, const char *effect)
{
    json_t *t = json_pack("{s:s, s:s}", "key", key, "effect", effect);
    if (value)
        json_object_set_new(t, "value", json_string(value));
    return t;
}

/* Remote pod p1 (30%, 4 CPUs) with the tolerations `tols` (a JSON array,
 * stolen), added or updated. */
static void pod_tolerating(struct fx_model *m, enum kube_event ev, json_t *tols)
{
    json_t *p = tolerating_pod("p1", NULL, NULL);
    json_object_set_new(json_object_get(p, "spec"), "tolerations", tols);
    fx_model_pod_event(m, ev, p);
    json_decref(p);
}

/* The edges of the tainted GPU node rule (review of 83cbfe7): a
 * PreferNoSchedule taint keeps no slice off; a NoExecute one is tolerated
 * by a toleration of that effect with tolerationSeconds, and by the empty
 * key with Exists (every taint); the pod's own node (without GPUs) still
 * applies its taints to the pod; a NoExecute taint added to the GPU node
 * while a remote pod is bound evicts nothing (the taint manager's work,
 * and the pod is on another node): the model stays consistent. */
static void test_tainted_gpu_node_edges(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    /* PreferNoSchedule: no toleration needed. */
    struct fx_model *m = new_model();
    node_tainted(m, "g1", 1, "2", json_pack("[o]", taint("gpu", "x", "PreferNoSchedule")));
    node(m, "c1", 0, "16", NULL);
    pod_tolerating(m, KUBE_ADDED, json_array());
    struct fx_attempt a = next(m, FX_BIND, "p1");
    assert_non_null(strstr(a.allocation, "\"remote\":{\"node\":\"g1\"}"));
    fx_model_free(m);
    /* NoExecute: without a toleration it waits; with one of that effect
     * and tolerationSeconds, or the empty key with Exists, it is placed. */
    for (int tol = 0; tol < 3; tol++) {
        m = new_model();
        node_tainted(m, "g1", 1, "2", json_pack("[o]", taint("gpu", "x", "NoExecute")));
        node(m, "c1", 0, "16", NULL);
        json_t *tols = json_array();
        if (tol == 1)
            json_array_append_new(tols, json_pack("{s:s, s:s, s:s, s:s, s:i}", "key", "gpu",
                                                  "operator", "Equal", "value", "x", "effect",
                                                  "NoExecute", "tolerationSeconds", 30));
        if (tol == 2)
            json_array_append_new(tols, json_pack("{s:s}", "operator", "Exists"));
        pod_tolerating(m, KUBE_ADDED, tols);
        a = next(m, tol ? FX_BIND : FX_WAIT, "p1");
        if (!tol) {
            assert_non_null(strstr(a.message, "untolerated taint"));
            fx_model_free(m);
            continue;
        }
        assert_string_equal(a.node, "c1");
        fx_model_bind_done(m, "p1", 0, 0);
        /* Then g1 gains a second NoExecute taint the pod does not
         * tolerate (tol 1): nothing is evicted, nothing decided. */
        node_tainted(m, "g1", 1, "2",
                     json_pack("[o, o]", taint("gpu", "x", "NoExecute"),
                               taint("drain", "now", "NoExecute")));
        struct fx_attempt b;
        memset(&b, 0, sizeof(b));
        if (fx_model_next(m, &b))
            fail_msg("outcome %d for %s (%s) after a taint on the GPU node", b.outcome, b.uid,
                     b.message);
        assert_int_equal(stats(m).remote, 1);
        assert_int_equal(fx_model_check(m, &err), 0);
        fx_model_free(m);
    }
    /* The pod's own node: c1 tainted, the pod tolerating only g1's taint
     * waits; tolerating both it is placed. */
    m = new_model();
    node_tainted(m, "g1", 1, "2", json_pack("[o]", taint("gpu", "x", "NoSchedule")));
    node_tainted(m, "c1", 0, "16", json_pack("[o]", taint("cpu-only", NULL, "NoSchedule")));
    pod_tolerating(m, KUBE_ADDED,
                   json_pack("[{s:s, s:s}]", "key", "gpu", "operator", "Exists"));
    a = next(m, FX_WAIT, "p1");
    assert_int_equal(stats(m).remote, 0);
    pod_tolerating(m, KUBE_MODIFIED,
                   json_pack("[{s:s, s:s}, {s:s, s:s}]", "key", "gpu", "operator", "Exists",
                             "key", "cpu-only", "operator", "Exists"));
    a = next(m, FX_BIND, "p1");
    assert_string_equal(a.node, "c1");
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);
}

/* ---- remote pods of several GPUs (all on one GPU node) ---- */

/* The GPUs a bind's allocation names, as "uuid/cores/memory ..."; its
 * remote node in *remote ("" when local). */
static void alloc_gpus(const struct fx_attempt *a, char *out, size_t len, char *remote)
{
    struct fx_allocation al;
    struct flexpu_error err = {0};
    assert_int_equal(fx_allocation_parse(a->allocation, &al, &err), 0);
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < al.ngpu && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%s%s/%d/%lld", i ? " " : "", al.gpus[i].uuid,
                              al.gpus[i].cores, (long long)al.gpus[i].mem);
    strcpy(remote, al.remote_node);
}

/* A pod of 2 GPUs that fits no local slice (g1's CPUs are too few) runs
 * on c1 with both its slices on g1, the GPUs a local pod of that shape
 * gets there (g1 with CPUs, the control), 2 of c1's remote slots held;
 * both accounted, on a restart too, and both given back when it goes. */
static void test_two_gpus(void **state)
{
    (void)state;
    char local[400], gpus[400], rn[300];
    /* The control: g1 with CPUs enough, one of its 4 GPUs part used. */
    struct fx_model *m = new_model();
    node(m, "g1", 4, "16", NULL);
    pod(m, "u", 40, "1", false, NULL, NULL, 0);
    assert_string_equal(next(m, FX_BIND, "u").node, "g1");
    pod_gpus(m, "p2", 2, 50, "8Gi", "4", true, NULL, NULL, 1);
    struct fx_attempt a = next(m, FX_BIND, "p2");
    assert_string_equal(a.node, "g1");
    alloc_gpus(&a, local, sizeof(local), rn);
    assert_string_equal(rn, "");
    fx_model_free(m);

    m = new_model();
    node(m, "g1", 4, "2", NULL);
    node_slots(m, "c1", 0, "16", NULL, 3);
    node(m, "c2", 0, "8", NULL);
    pod(m, "u", 40, "1", false, NULL, NULL, 0);
    assert_string_equal(next(m, FX_BIND, "u").node, "g1");
    pod_gpus(m, "p2", 2, 50, "8Gi", "4", true, NULL, NULL, 1);
    a = next(m, FX_BIND, "p2");
    assert_string_equal(a.node, "c1");
    alloc_gpus(&a, gpus, sizeof(gpus), rn);
    assert_string_equal(rn, "g1");
    assert_string_equal(gpus, local); /* the engine's own 2-GPU decision there */
    assert_non_null(strstr(gpus, "/50/8589934592 "));
    assert_true(a.remote);
    assert_non_null(strstr(a.message, "remote slices of GPUs "));
    assert_non_null(strstr(a.message, " of node g1"));
    struct fx_model_stats st = stats(m);
    assert_int_equal(st.remote, 1);
    assert_int_equal(st.gpu_milli_used, 400 + 2 * 500);
    struct flexpu_error err = {0};
    assert_int_equal(fx_model_check(m, &err), 0);
    /* c1 has 1 slot left: a second pod of 2 GPUs goes to c2 (fewer CPUs
     * free), one of 1 GPU fits c1's last. */
    pod_gpus(m, "p3", 2, 50, "8Gi", "4", true, NULL, NULL, 2);
    a = next(m, FX_BIND, "p3");
    assert_string_equal(a.node, "c2");
    pod(m, "p4", 10, "4", true, NULL, NULL, 3);
    a = next(m, FX_BIND, "p4");
    assert_string_equal(a.node, "c1");
    assert_int_equal(stats(m).gpu_milli_used, 400 + 4 * 500 + 100);
    gone(m, "p3");
    gone(m, "p4");
    /* Confirmed by the watch, then gone: both its shares given back. */
    fx_model_bind_done(m, "p2", 0, 0);
    pod_gpus(m, "p2", 2, 50, "8Gi", "4", true, "c1", "g1", 1);
    assert_int_equal(stats(m).remote, 1);
    assert_int_equal(stats(m).gpu_milli_used, 400 + 2 * 500);
    gone(m, "p2");
    st = stats(m);
    assert_int_equal(st.remote, 0);
    assert_int_equal(st.gpu_milli_used, 400);
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);

    /* After a restart: accounted as recorded, both GPUs, whichever of the
     * pod and its GPU node comes first. */
    for (int order = 0; order < 2; order++) {
        m = new_model();
        if (order == 0)
            node(m, "g1", 2, "16", NULL);
        node(m, "c1", 0, "4", NULL);
        pod_gpus(m, "p2", 2, 70, "8Gi", "4", true, "c1", "g1", 0);
        if (order == 1)
            node(m, "g1", 2, "16", NULL);
        st = stats(m);
        assert_int_equal(st.remote, 1);
        assert_int_equal(st.gpu_milli_used, 1400);
        assert_int_equal(st.conflicts, 0);
        /* 40 cores fit on neither GPU beside the 70. */
        pod(m, "w", 40, "1", false, NULL, NULL, 1);
        next(m, FX_WAIT, "w");
        gone(m, "p2");
        assert_int_equal(stats(m).gpu_milli_used, 0);
        assert_string_equal(next(m, FX_BIND, "w").node, "g1");
        assert_int_equal(fx_model_check(m, &err), 0);
        fx_model_free(m);
    }
}

/* A pod of 3 GPUs when no GPU node has 3 free (two nodes of 2: 4 in all)
 * waits, never spread over nodes, its message saying why; a node of 4
 * coming makes it fit there. */
static void test_three_gpus_wait(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 2, "2", NULL);
    node(m, "g2", 2, "2", NULL);
    node(m, "c1", 0, "16", NULL);
    pod_gpus(m, "p3", 3, 100, NULL, "4", true, NULL, NULL, 0);
    struct fx_attempt a = next(m, FX_WAIT, "p3");
    assert_non_null(strstr(a.message, "flexpu.io/remote: no GPU node can give it 3 GPUs at once"));
    assert_non_null(strstr(a.message, "no local slice fits: "));
    struct fx_model_stats st = stats(m);
    assert_int_equal(st.remote, 0);
    assert_int_equal(st.gpu_milli_used, 0);
    node(m, "g3", 4, "2", NULL);
    a = next(m, FX_BIND, "p3");
    assert_string_equal(a.node, "c1");
    assert_non_null(strstr(a.allocation, "\"remote\":{\"node\":\"g3\"}"));
    assert_int_equal(stats(m).gpu_milli_used, 3000);
    struct flexpu_error err = {0};
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);
}

/* A remote-allowed pod that fits no local slice, with a slice free on a
 * GPU node, waits when no node without GPUs has a remote slot for each of
 * its GPUs, and its event says so before the local reason: c1 has room
 * but 1 slot, the pod asks 2 GPUs; and a pod of 1 GPU while c1's one slot
 * is held. Given a slot (more offered; the holder gone), each is bound
 * there. Not said when the slots are not all it lacks: c1 with too few
 * CPUs for it too, or no slice free on any GPU. Before, the event gave
 * only the local reason. */
static void test_slots_short_said(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 2, "2", NULL);
    node_slots(m, "c1", 0, "16", NULL, 1);
    pod_gpus(m, "p2", 2, 30, NULL, "4", true, NULL, NULL, 0);
    struct fx_attempt a = next(m, FX_WAIT, "p2");
    assert_non_null(strstr(a.message, "flexpu.io/remote: no node without GPUs has 2 remote "
                                      "slots free (1 with room for it otherwise"));
    assert_non_null(strstr(a.message, "; no local slice fits: "));
    node_slots(m, "c1", 0, "16", NULL, 2);
    a = next(m, FX_BIND, "p2");
    assert_string_equal(a.node, "c1");
    fx_model_free(m);

    m = new_model();
    node(m, "g1", 1, "2", NULL);
    node_slots(m, "c1", 0, "16", NULL, 1);
    pod(m, "p1", 20, "4", true, "c1", "g1", 0);
    pod(m, "q", 20, "4", true, NULL, NULL, 1);
    a = next(m, FX_WAIT, "q");
    assert_non_null(strstr(a.message, "flexpu.io/remote: no node without GPUs has 1 remote "
                                      "slot free (1 with room"));
    /* Too few CPUs on c1 as well: the slots are not all it lacks. */
    pod(m, "big", 20, "32", true, NULL, NULL, 2);
    a = next(m, FX_WAIT, "big");
    assert_null(strstr(a.message, "remote slot"));
    /* No slice free on g1 either (p1 and w hold 90%). */
    pod(m, "w", 70, "1", false, NULL, NULL, 3);
    assert_string_equal(next(m, FX_BIND, "w").node, "g1");
    pod(m, "q2", 20, "4", true, NULL, NULL, 4);
    a = next(m, FX_WAIT, "q2");
    assert_null(strstr(a.message, "remote slot"));
    gone(m, "w");
    gone(m, "p1");
    a = next(m, FX_BIND, "q");
    assert_string_equal(a.node, "c1");
    struct flexpu_error err = {0};
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);
}

/* The slots message says a slice for the pod is free only where remote()
 * would place one now: the same placement, decided as a remote pod's
 * slice is. q (20 cores, no gpu-memory: its quota is 20% of the GPU's
 * memory, 16 GiB) waits for c1's slot, which p1 holds; hog holds all of
 * g1's GPU memory p1 leaves (64 GiB), so no slice for q is free even with
 * a slot: not said (nothing fits), and with a second slot q still waits.
 * Once hog is gone it is said again, and with the slot q is bound. Before,
 * the message decided the slice without its memory quota: "no node
 * without GPUs has 1 remote slot free" while a slot would not help. */
static void test_slots_short_not_said_when_no_slice(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", NULL);
    node_slots(m, "c1", 0, "16", NULL, 1);
    pod(m, "p1", 20, "4", true, "c1", "g1", 0);
    pod_gpus(m, "hog", 1, 10, "64Gi", "1", false, NULL, NULL, 1);
    assert_string_equal(next(m, FX_BIND, "hog").node, "g1");
    pod(m, "q", 20, "4", true, NULL, NULL, 2);
    struct fx_attempt a = next(m, FX_WAIT, "q");
    assert_null(strstr(a.message, "remote slot"));
    node_slots(m, "c1", 0, "16", NULL, 2);
    if (fx_model_next(m, &a)) /* a slot: still no slice (told already, or again) */
        assert_int_equal(a.outcome, FX_WAIT);
    node_slots(m, "c1", 0, "16", NULL, 1);
    gone(m, "hog");
    a = next(m, FX_WAIT, "q");
    assert_non_null(strstr(a.message, "flexpu.io/remote: no node without GPUs has 1 remote "
                                      "slot free (1 with room"));
    node_slots(m, "c1", 0, "16", NULL, 2);
    a = next(m, FX_BIND, "q");
    assert_string_equal(a.node, "c1");
    struct flexpu_error err = {0};
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);
}

/* GPU nodes g1-g4 of one GPU each, told apart by a label (each its own
 * class of the engine: their placements tie), c1 without GPUs and without
 * a free remote slot; with `probe`, remote pod q waits there for a slot
 * (remote_slots_wait takes a slice for it and gives it back) and goes.
 * Then local pods x0-x5: the nodes they land on, in order, in `out`. */
static void landing(uint64_t seed, bool probe, char out[6][16])
{
    struct flexpu_error err = {0};
    struct fx_model *m = fx_model_new("flexpu-scheduler", "flexpu", seed, &err);
    assert_non_null(m);
    const char *names[] = {"g1", "g2", "g3", "g4"}, *labels[] = {"z=a", "z=b", "z=c", "z=d"};
    for (int i = 0; i < 4; i++)
        node(m, names[i], 1, "2", labels[i]);
    node_slots(m, "c1", 0, "16", NULL, 0);
    if (probe) {
        pod(m, "q", 20, "4", true, NULL, NULL, 0);
        struct fx_attempt a = next(m, FX_WAIT, "q");
        assert_non_null(strstr(a.message, "remote slot"));
        assert_int_equal(stats(m).remote_placed, 0);
        gone(m, "q");
    }
    for (int i = 0; i < 6; i++) {
        char uid[8];
        snprintf(uid, sizeof(uid), "x%d", i);
        pod(m, uid, 10, "1", false, NULL, NULL, 1 + i);
        snprintf(out[i], 16, "%.8s", next(m, FX_BIND, uid).node);
    }
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);
}

/* The remote slots message's slice is a question, not a placement: taken
 * and given back, it leaves the engine deciding as it would have without
 * it (its visit order, which a random tie reads, as well as its random
 * state), so the pods after it land where they would have, and counts no
 * remote placement. It passes on main: the slice's node leaves its class
 * and comes back in the same place of the engine's order (change_usage
 * finds the new class before the old one is dropped into its slot, and
 * the head member, which a tie takes, rejoins at the head); a probe that
 * does not put the model's random state back fails it. */
static void test_slots_message_leaves_no_trace(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 16; seed++) {
        char with[6][16], without[6][16];
        landing(seed, true, with);
        landing(seed, false, without);
        for (int i = 0; i < 6; i++)
            if (strcmp(with[i], without[i]) != 0)
                fail_msg("seed %llu: x%d on %s after the slots message, on %s without it",
                         (unsigned long long)seed, i, with[i], without[i]);
    }
}

/* Borrower `uid` (flexpu.io/opportunistic) bound to GPU 0 of `on` with
 * `cores` and `mem_gib` GiB of its memory, borrowed (the engine counts
 * none of its GPU share: docs/KUBERNETES.md, "Borrowing idle GPUs"). */
static void borrower(struct fx_model *m, const char *uid, const char *on, int cores, int mem_gib)
{
    char c[16], mem[16];
    snprintf(c, sizeof(c), "%d", cores);
    snprintf(mem, sizeof(mem), "%dGi", mem_gib);
    struct fx_allocation al = {.ngpu = 1, .borrowed = true};
    snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "GPU-%s-0", on);
    al.gpus[0].cores = cores;
    al.gpus[0].mem = (int64_t)mem_gib * GIB;
    char *text = fx_allocation_format(&al);
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:s, s:{s:s, s:s}}, s:{s:s, s:s, "
                          "s:[{s:s, s:{s:{s:s, s:s, s:s, s:s}}}]}}",
                          "metadata", "name", uid, "namespace", "t", "uid", uid,
                          "creationTimestamp", "2026-01-01T00:00:00Z", "annotations",
                          FX_ANN_OPPORTUNISTIC, "true", FX_ANN_ALLOCATION, text, "spec",
                          "schedulerName", "flexpu-scheduler", "nodeName", on, "containers",
                          "name", "c", "resources", "limits", "cpu", "1", "flexpu.io/gpu", "1",
                          "flexpu.io/gpu-cores", c, "flexpu.io/gpu-memory", mem);
    assert_non_null(p);
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
    free(text);
}

/* The same where the only slice free is where a borrower holds memory
 * q's quota needs (b: 70 GiB of g1's GPU, which the engine does not count;
 * q's 16 GiB beside p1's 16 leave 48): remote() would not take it now (it
 * would reclaim b and wait), so the slots are not all q lacks: not said.
 * Once b is gone it is said. Before, the message decided the slice
 * without the borrowers remote() places around. */
static void test_slots_short_not_said_for_borrowed_slice(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", NULL);
    node_slots(m, "c1", 0, "16", NULL, 1);
    pod(m, "p1", 20, "4", true, "c1", "g1", 0);
    borrower(m, "b", "g1", 10, 70);
    assert_int_equal(stats(m).borrowers, 1);
    pod(m, "q", 20, "4", true, NULL, NULL, 2);
    struct fx_attempt a = next(m, FX_WAIT, "q");
    assert_null(strstr(a.message, "remote slot"));
    gone(m, "b");
    a = next(m, FX_WAIT, "q");
    assert_non_null(strstr(a.message, "flexpu.io/remote: no node without GPUs has 1 remote "
                                      "slot free (1 with room"));
    node_slots(m, "c1", 0, "16", NULL, 2);
    a = next(m, FX_BIND, "q");
    assert_string_equal(a.node, "c1");
    struct flexpu_error err = {0};
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);
}

/* A remote pod whose slice is blocked by a borrower: with a free remote
 * slot on c1, remote() takes the slice on g1 where b holds memory q's
 * quota needs, reclaims b (FX_RECLAIM) and waits for it (place_pod_as's
 * owner_waits), as a local pod does. Its Event says so, naming the GPU
 * node, before the local reason (whole); once b is gone q is bound. Before, it gave only the
 * local reason (g1 has 2 CPUs, q asks 4), which no reclaim changes. */
static void test_remote_waits_for_borrowers(void **state)
{
    (void)state;
    struct fx_model *m = new_model();
    node(m, "g1", 1, "2", NULL);
    node_slots(m, "c1", 0, "16", NULL, 2);
    pod(m, "p1", 20, "4", true, "c1", "g1", 0);
    borrower(m, "b", "g1", 10, 70);
    pod(m, "q", 20, "4", true, NULL, NULL, 2);
    struct fx_attempt a;
    bool waited = false, evicted = false;
    for (int i = 0; i < 6 && fx_model_next(m, &a); i++) {
        if (a.outcome == FX_RECLAIM && strcmp(a.uid, "b") == 0) {
            evicted = true;
            fx_model_evict_done(m, "b", 0);
        } else if (a.outcome == FX_WAIT && strcmp(a.uid, "q") == 0) {
            waited = true;
            if (!strstr(a.message, "flexpu.io/remote: waits for the borrowers on its GPU(s) of "
                                   "GPU node g1 to be reclaimed") ||
                !strstr(a.message, "no local slice fits: no node fits 1 GPU(s)") ||
                !strstr(a.message, "insufficient cpu"))
                fail_msg("q's wait: %s", a.message);
        } else {
            fail_msg("unexpected attempt %d for %s: %s", a.outcome, a.uid, a.message);
        }
    }
    assert_true(waited && evicted);
    gone(m, "b");
    a = next(m, FX_BIND, "q");
    assert_string_equal(a.node, "c1");
    struct flexpu_error err = {0};
    assert_int_equal(fx_model_check(m, &err), 0);
    fx_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pod_annotation),
        cmocka_unit_test(test_allocation_round_trip),
        cmocka_unit_test(test_allocation_bad_remote),
        cmocka_unit_test(test_allocation_check),
        cmocka_unit_test(test_allocation_check_gpus),
        cmocka_unit_test(test_local_first),
        cmocka_unit_test(test_remote_when_no_local),
        cmocka_unit_test(test_no_cpu_node),
        cmocka_unit_test(test_near_zone),
        cmocka_unit_test(test_near_none_falls_back),
        cmocka_unit_test(test_near_long_key_shown),
        cmocka_unit_test(test_capped_remote_says_where),
        cmocka_unit_test(test_rack_beats_zone),
        cmocka_unit_test(test_near_empty_value),
        cmocka_unit_test(test_near_relabel),
        cmocka_unit_test(test_remote_slots),
        cmocka_unit_test(test_restart_accounting),
        cmocka_unit_test(test_woken),
        cmocka_unit_test(test_pod_node_not_ready),
        cmocka_unit_test(test_rule_annotation),
        cmocka_unit_test(test_rule_waits_then_placed),
        cmocka_unit_test(test_rule_picks_the_zone_with_a_node),
        cmocka_unit_test(test_rule_needs_the_label),
        cmocka_unit_test(test_rule_edited_while_waiting),
        cmocka_unit_test(test_tainted_gpu_node),
        cmocka_unit_test(test_tainted_gpu_node_edges),
        cmocka_unit_test(test_two_gpus),
        cmocka_unit_test(test_three_gpus_wait),
        cmocka_unit_test(test_slots_short_said),
        cmocka_unit_test(test_slots_short_not_said_when_no_slice),
        cmocka_unit_test(test_slots_short_not_said_for_borrowed_slice),
        cmocka_unit_test(test_slots_message_leaves_no_trace),
        cmocka_unit_test(test_remote_waits_for_borrowers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
