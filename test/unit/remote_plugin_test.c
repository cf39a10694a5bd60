/* SPDX-License-Identifier: Apache-2.0 */
/* The device plugin of a node without GPUs that runs remote pods
 * (node/remote_plugin.h), served and called as the kubelet does: its N
 * devices; Allocate's mounts (read-only) and environment, and its
 * refusals; PreStartContainer writing the pod's derived token, refusing a
 * pod without a remote allocation for this node; the endpoint written when
 * the GPU node records it (a malformed one never); the files gone with the
 * pod; the client libraries installed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kube/contract.h"
#include "node/remote_agent.h"
#include "node/remote_plugin.h"

#include "unit/plugin_fake.h"

#define TMPDIR_FIXTURE_PREFIX "remote_plugin_test"
#include "unit/tmpdir_fixture.h"

/* Pod NAME with UID `uid` bound to cpu-1; its allocation a slice of GPU
 * GPU-g-0 of gpu_node (NULL: none); endpoint NULL: none recorded. */
static json_t *pod_uid(const char *name, const char *uid, const char *gpu_node,
                       const char *endpoint)
{
    json_t *ann = json_object();
    json_object_set_new(ann, FX_ANN_REMOTE, json_string(FX_REMOTE_ALLOWED));
    if (gpu_node) {
        struct fx_allocation al = {.ngpu = 1};
        snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "GPU-g-0");
        al.gpus[0].cores = 30;
        al.gpus[0].mem = 1LL << 30;
        snprintf(al.remote_node, sizeof(al.remote_node), "%s", gpu_node);
        char *text = fx_allocation_format(&al);
        json_object_set_new(ann, FX_ANN_ALLOCATION, json_string(text));
        free(text);
    }
    if (endpoint)
        json_object_set_new(ann, FX_ANN_REMOTE_ENDPOINT, json_string(endpoint));
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:o}, s:{s:s}}", "metadata", "name", name,
                          "namespace", "t", "uid", uid, "annotations", ann, "spec", "nodeName",
                          "cpu-1");
    assert_non_null(p);
    return p;
}

/* The same with UID uid-NAME. */
static json_t *pod(const char *name, const char *gpu_node, const char *endpoint)
{
    char uid[64];
    snprintf(uid, sizeof(uid), "uid-%s", name);
    return pod_uid(name, uid, gpu_node, endpoint);
}

static struct fx_remote_key key = {.len = 32};

struct run {
    char podres[300], dp[300], root[200];
    struct fx_grpc_server *prs, *dps;
    struct fx_remote_plugin *p;
};

static void up(struct run *r, int slots)
{
    memset(key.bytes, 'k', 32);
    snprintf(r->root, sizeof(r->root), "%s/root", dir);
    mkdir(r->root, 0755);
    snprintf(r->podres, sizeof(r->podres), "%s/podres.sock", dir);
    snprintf(r->dp, sizeof(r->dp), "%s/dp.sock", dir);
    struct flexpu_error err = {0};
    r->prs = fx_grpc_server_start(r->podres, podres_methods, NULL, &err);
    assert_non_null(r->prs);
    struct fx_remote_plugin_config pc = {.node_name = "cpu-1", .root = r->root,
                                         .podresources = r->podres, .slots = slots,
                                         .wait_ms = 300, .key = &key};
    r->p = fx_remote_plugin_new(&pc, &err);
    assert_non_null(r->p);
    r->dps = fx_grpc_server_start(r->dp, fx_remote_plugin_methods, r->p, &err);
    assert_non_null(r->dps);
}

static void down(struct run *r)
{
    fx_grpc_server_stop(r->dps);
    fx_remote_plugin_free(r->p);
    fx_grpc_server_stop(r->prs);
    nheld = 0;
}

static const char *env_of(const V1beta1__ContainerAllocateResponse *c, const char *k)
{
    for (size_t i = 0; i < c->n_envs; i++)
        if (strcmp(c->envs[i]->key, k) == 0)
            return c->envs[i]->value;
    return NULL;
}

/* The content of a file, its final newline dropped; "" when missing. */
static const char *slurp(const char *path)
{
    static char buf[400];
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return buf;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    if (n && buf[n - 1] == '\n')
        buf[n - 1] = 0;
    return buf;
}

static void test_config(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    struct fx_remote_plugin_config pc = {.node_name = "n", .root = dir, .slots = 0, .key = &key};
    key.len = 32;
    assert_null(fx_remote_plugin_new(&pc, &err));
    assert_non_null(strstr(err.msg, "--remote-slots"));
    pc.slots = 2;
    struct fx_remote_key none = {0};
    pc.key = &none;
    assert_null(fx_remote_plugin_new(&pc, &err));
    assert_non_null(strstr(err.msg, "--remote-key"));
}

static void test_devices_and_allocate(void **state)
{
    (void)state;
    struct run r;
    up(&r, 3);
    uint8_t *msg;
    size_t len;
    assert_int_equal(fx_remote_plugin_device_list(r.p, &msg, &len), 0);
    V1beta1__ListAndWatchResponse *lw = v1beta1__list_and_watch_response__unpack(NULL, len, msg);
    free(msg);
    assert_non_null(lw);
    assert_int_equal(lw->n_devices, 3);
    assert_string_equal(lw->devices[2]->id, "remote-2");
    assert_string_equal(lw->devices[0]->health, "Healthy");
    v1beta1__list_and_watch_response__free_unpacked(lw, NULL);

    char *bad[] = {"remote-3"}, *lead[] = {"remote-01"}, *two[] = {"remote-0", "remote-1"};
    struct fx_grpc_reply a = allocate(r.dp, bad, 1);
    assert_int_equal(a.status, FX_GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(a.message, "unknown device 'remote-3'"));
    a = allocate(r.dp, lead, 1);
    assert_int_equal(a.status, FX_GRPC_INVALID_ARGUMENT);
    /* A remote pod of 2 GPUs holds 2 slots: one slice directory for both;
     * a slot twice is refused. */
    char *dup[] = {"remote-0", "remote-0"};
    a = allocate(r.dp, dup, 2);
    assert_int_equal(a.status, FX_GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(a.message, "given twice"));
    V1beta1__AllocateResponse *ar2 = allocate_ok(r.dp, two, 2);
    assert_non_null(mount_at(ar2->container_responses[0], FX_CTR_REMOTE_DIR));
    v1beta1__allocate_response__free_unpacked(ar2, NULL);

    char *ids[] = {"remote-1"};
    V1beta1__AllocateResponse *ar = allocate_ok(r.dp, ids, 1);
    const V1beta1__ContainerAllocateResponse *c = ar->container_responses[0];
    assert_int_equal(c->n_devices, 0); /* no GPU here */
    const V1beta1__Mount *lib = mount_at(c, FX_CTR_REMOTE_LIB), *sd = mount_at(c, FX_CTR_REMOTE_DIR);
    assert_non_null(lib);
    assert_non_null(sd);
    assert_true(lib->read_only && sd->read_only);
    char want[400];
    snprintf(want, sizeof(want), "%s/remote-lib", r.root);
    assert_string_equal(lib->host_path, want);
    struct stat st;
    assert_int_equal(stat(sd->host_path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_string_equal(env_of(c, "LD_PRELOAD"), "/usr/lib/flexpu/remote/libcudart.so.12 "
                                                 "/usr/lib/flexpu/remote/libcublas.so.12");
    assert_string_equal(env_of(c, "FLEXPU_REMOTE_ADDR_FILE"), "/etc/flexpu/remote/endpoint");
    assert_string_equal(env_of(c, "FLEXPU_REMOTE_TOKEN_FILE"), "/etc/flexpu/remote/token");
    v1beta1__allocate_response__free_unpacked(ar, NULL);
    down(&r);
}

/* Allocates the one device ids[0] (Allocate must succeed) and gives the
 * paths of its slot's token and endpoint files (450 bytes each), from the
 * directory the answer mounts at FX_CTR_REMOTE_DIR. */
static void allocate_slot_files(const char *dp, char **ids, char tok[450], char ep[450])
{
    V1beta1__AllocateResponse *ar = allocate_ok(dp, ids, 1);
    char sdir[400];
    snprintf(sdir, sizeof(sdir), "%s", mount_at(ar->container_responses[0],
                                                FX_CTR_REMOTE_DIR)->host_path);
    v1beta1__allocate_response__free_unpacked(ar, NULL);
    snprintf(tok, 450, "%s/token", sdir);
    snprintf(ep, 450, "%s/endpoint", sdir);
}

static void test_prestart_token_endpoint(void **state)
{
    (void)state;
    struct run r;
    up(&r, 2);
    char *ids[] = {"remote-0"};
    char tok[450], ep[450];
    allocate_slot_files(r.dp, ids, tok, ep);

    /* The kubelet lists nobody with the device: refused. */
    struct fx_grpc_reply s = prestart_call(r.dp, ids, 1);
    assert_int_equal(s.status, FX_GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(s.message, "no container with device remote-0"));
    /* A pod holds it, but the watch knows no remote slice of it here (a
     * local allocation, or one for another node's pod): refused. */
    hold("t", "p1", ids, 1);
    json_t *local = pod("p1", NULL, NULL);
    fx_remote_plugin_pod_event(r.p, KUBE_ADDED, local);
    s = prestart_call(r.dp, ids, 1);
    assert_int_equal(s.status, FX_GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(s.message, "no remote slice"));
    assert_string_equal(slurp(tok), "");
    /* Its remote allocation seen: the token derived for it, no endpoint yet. */
    json_t *p1 = pod("p1", "gpu-1", NULL);
    fx_remote_plugin_pod_event(r.p, KUBE_MODIFIED, p1);
    s = prestart_call(r.dp, ids, 1);
    assert_int_equal(s.status, FX_GRPC_OK);
    free(s.data);
    char hex[FX_REMOTE_TOKEN_HEX + 1];
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_token(&key, "uid-p1", "gpu-1", "GPU-g-0", hex, &err), 0);
    assert_string_equal(slurp(tok), hex);
    assert_string_equal(slurp(ep), "");
    /* A malformed endpoint is never written; a good one is, at the event. */
    json_t *bad = pod("p1", "gpu-1", "10.0.0.1:0");
    fx_remote_plugin_pod_event(r.p, KUBE_MODIFIED, bad);
    assert_string_equal(slurp(ep), "");
    json_t *good = pod("p1", "gpu-1", "10.0.0.1:7100");
    fx_remote_plugin_pod_event(r.p, KUBE_MODIFIED, good);
    assert_string_equal(slurp(ep), "10.0.0.1:7100");
    /* The pod gone: its token and endpoint with it. */
    fx_remote_plugin_pod_event(r.p, KUBE_DELETED, good);
    fx_remote_plugin_tick(r.p);
    assert_int_equal(access(tok, F_OK), -1);
    assert_int_equal(access(ep, F_OK), -1);
    json_decref(local);
    json_decref(p1);
    json_decref(bad);
    json_decref(good);
    down(&r);
}

/* The token of pod `uid`'s slice (GPU-g-0 of gpu-1). */
static const char *token_of(const char *uid)
{
    static char hex[FX_REMOTE_TOKEN_HEX + 1];
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_token(&key, uid, "gpu-1", "GPU-g-0", hex, &err), 0);
    return hex;
}

/* A remote pod of 2 GPUs holds 2 slots: its container's PreStartContainer
 * with both passes, its token the first GPU's; with 1 (a pod asking 1 but
 * given an allocation of 2, which the scheduler never makes) refused,
 * naming both counts. */
static void test_prestart_two_gpus(void **state)
{
    (void)state;
    struct run r;
    up(&r, 3);
    json_t *p = pod("p2", "gpu-1", NULL);
    struct fx_allocation al = {.ngpu = 2};
    for (int i = 0; i < 2; i++) {
        snprintf(al.gpus[i].uuid, sizeof(al.gpus[i].uuid), "GPU-g-%d", i);
        al.gpus[i].cores = 30;
        al.gpus[i].mem = 1LL << 30;
    }
    snprintf(al.remote_node, sizeof(al.remote_node), "gpu-1");
    char *text = fx_allocation_format(&al);
    json_object_set_new(json_object_get(json_object_get(p, "metadata"), "annotations"),
                        FX_ANN_ALLOCATION, json_string(text));
    free(text);
    fx_remote_plugin_pod_event(r.p, KUBE_ADDED, p);
    char *two[] = {"remote-0", "remote-2"}, *one[] = {"remote-1"};
    V1beta1__AllocateResponse *ar = allocate_ok(r.dp, two, 2);
    char tok[450];
    snprintf(tok, sizeof(tok), "%s/token",
             mount_at(ar->container_responses[0], FX_CTR_REMOTE_DIR)->host_path);
    v1beta1__allocate_response__free_unpacked(ar, NULL);
    hold("t", "p2", two, 2);
    struct fx_grpc_reply s = prestart_call(r.dp, two, 2);
    assert_int_equal(s.status, FX_GRPC_OK);
    free(s.data);
    assert_string_equal(slurp(tok), token_of("uid-p2"));
    hold("t", "p2", one, 1);
    s = prestart_call(r.dp, one, 1);
    assert_int_equal(s.status, FX_GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(s.message, "holds 1 device(s)"));
    assert_non_null(strstr(s.message, "has 2 GPU(s)"));
    json_decref(p);
    down(&r);
}

/* A pod deleted and recreated under its name (a StatefulSet's db-0) whose
 * new container starts while this agent's watch still holds the old pod:
 * the kubelet names the pod by namespace/name only, so the slot first gets
 * the old UID; when the watch catches up (old deleted, new added), the slot
 * is the new pod's: its token and endpoint, not none (review M2). */
static void test_recreated_under_its_name(void **state)
{
    (void)state;
    struct run r;
    up(&r, 2);
    json_t *old = pod_uid("db-0", "uid-A", "gpu-1", "10.0.0.1:7100");
    fx_remote_plugin_pod_event(r.p, KUBE_ADDED, old);
    char *ids[] = {"remote-0"};
    char tok[450], ep[450];
    allocate_slot_files(r.dp, ids, tok, ep);
    hold("t", "db-0", ids, 1);
    struct fx_grpc_reply s = prestart_call(r.dp, ids, 1);
    assert_int_equal(s.status, FX_GRPC_OK);
    free(s.data);
    fx_remote_plugin_pod_event(r.p, KUBE_DELETED, old);
    /* The old pod gone, the new one not yet seen: nothing of the old. */
    assert_string_equal(slurp(tok), "");
    assert_string_equal(slurp(ep), "");
    json_t *neu = pod_uid("db-0", "uid-B", "gpu-1", NULL);
    fx_remote_plugin_pod_event(r.p, KUBE_ADDED, neu);
    assert_string_equal(slurp(tok), token_of("uid-B"));
    assert_string_equal(slurp(ep), "");
    json_t *rec = pod_uid("db-0", "uid-B", "gpu-1", "10.0.0.1:7101");
    fx_remote_plugin_pod_event(r.p, KUBE_MODIFIED, rec);
    assert_string_equal(slurp(ep), "10.0.0.1:7101");
    /* The new pod gone too: its files go, and no pod of the name is left. */
    fx_remote_plugin_pod_event(r.p, KUBE_DELETED, rec);
    assert_int_equal(access(tok, F_OK), -1);
    assert_int_equal(access(ep, F_OK), -1);
    json_decref(old);
    json_decref(neu);
    json_decref(rec);
    down(&r);
}

/* PreStartContainer takes the live pod of the name: never one being
 * deleted (it waits for its successor, then refuses), and the newest when
 * the watch holds two. */
static void test_prestart_skips_a_deleted_namesake(void **state)
{
    (void)state;
    struct run r;
    up(&r, 2);
    char *ids[] = {"remote-0"};
    char tok[450], ep[450];
    allocate_slot_files(r.dp, ids, tok, ep);
    hold("t", "db-0", ids, 1);
    json_t *old = pod_uid("db-0", "uid-A", "gpu-1", NULL);
    json_object_set_new(json_object_get(old, "metadata"), "creationTimestamp",
                        json_string("2026-01-01T00:00:00Z"));
    json_object_set_new(json_object_get(old, "metadata"), "deletionTimestamp",
                        json_string("2026-01-02T00:00:00Z"));
    fx_remote_plugin_pod_event(r.p, KUBE_ADDED, old);
    struct fx_grpc_reply s = prestart_call(r.dp, ids, 1);
    assert_int_equal(s.status, FX_GRPC_FAILED_PRECONDITION);
    assert_string_equal(slurp(tok), "");
    /* Two live entries of the name (a watch that missed the deletion): the
     * newer one's. */
    json_object_del(json_object_get(old, "metadata"), "deletionTimestamp");
    fx_remote_plugin_pod_event(r.p, KUBE_MODIFIED, old);
    json_t *neu = pod_uid("db-0", "uid-B", "gpu-1", NULL);
    json_object_set_new(json_object_get(neu, "metadata"), "creationTimestamp",
                        json_string("2026-01-02T00:00:01Z"));
    fx_remote_plugin_pod_event(r.p, KUBE_ADDED, neu);
    s = prestart_call(r.dp, ids, 1);
    assert_int_equal(s.status, FX_GRPC_OK);
    free(s.data);
    assert_string_equal(slurp(tok), token_of("uid-B"));
    json_decref(old);
    json_decref(neu);
    down(&r);
}

static void test_client_install(void **state)
{
    (void)state;
    char from[200], root[200], path[300];
    snprintf(from, sizeof(from), "%s/from", dir);
    snprintf(root, sizeof(root), "%s/iroot", dir);
    mkdir(from, 0755);
    mkdir(root, 0755);
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_client_install(root, from, &err), FLEXPU_EIO);
    assert_non_null(strstr(err.msg, "libcudart.so.12"));
    const char *libs[] = {"libcudart.so.12", "libcublas.so.12"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", from, libs[i]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(libs[i], f);
        fclose(f);
    }
    assert_int_equal(fx_remote_client_install(root, from, &err), 0);
    snprintf(path, sizeof(path), "%s/remote-lib/libcublas.so.12", root);
    assert_string_equal(slurp(path), "libcublas.so.12");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_devices_and_allocate),
        cmocka_unit_test(test_prestart_token_endpoint),
        cmocka_unit_test(test_prestart_two_gpus),
        cmocka_unit_test(test_recreated_under_its_name),
        cmocka_unit_test(test_prestart_skips_a_deleted_namesake),
        cmocka_unit_test(test_client_install),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
