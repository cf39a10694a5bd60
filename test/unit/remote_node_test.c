/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent's side of remote slices (node/remote.h): each node's role
 * for a pod, the GPU node's server for the slice (refused for a forged or
 * foreign allocation; its settings, command line and environment), the
 * token file (0600, 64 hex characters, fresh each time), the endpoint's
 * check and what the pod's container gets. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "node/remote.h"

#define GIB (1024LL * 1024 * 1024)

static struct fx_pod_spec spec(bool remote, int cores, const char *cap)
{
    char c[16];
    snprintf(c, sizeof(c), "%d", cores);
    json_t *ann = json_object();
    if (remote)
        json_object_set_new(ann, FX_ANN_REMOTE, json_string(FX_REMOTE_ALLOWED));
    if (cap)
        json_object_set_new(ann, FX_ANN_CORES_LIMIT, json_string(cap));
    json_t *p = json_pack("{s:{s:s, s:s, s:o}, s:{s:[{s:s, s:{s:{s:s, s:s}}}]}}", "metadata",
                          "name", "p", "namespace", "t", "annotations", ann, "spec", "containers",
                          "name", "c", "resources", "limits", "flexpu.io/gpu", "1",
                          "flexpu.io/gpu-cores", c);
    struct fx_pod_spec s;
    struct flexpu_error err = {0};
    if (fx_pod_spec_parse(p, &s, &err))
        fail_msg("fx_pod_spec_parse: %s", err.msg);
    json_decref(p);
    return s;
}

static struct fx_allocation alloc(const char *uuid, int cores, const char *remote)
{
    struct fx_allocation al = {.ngpu = 1};
    snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "%s", uuid);
    al.gpus[0].cores = cores;
    al.gpus[0].mem = fx_default_slice_mem(1, cores, 0, 80 * GIB);
    snprintf(al.remote_node, sizeof(al.remote_node), "%s", remote ? remote : "");
    return al;
}

static struct fx_node_inv inv2(void)
{
    struct fx_node_inv inv = {.ngpu = 2};
    for (int i = 0; i < 2; i++) {
        snprintf(inv.gpus[i].uuid, sizeof(inv.gpus[i].uuid), "GPU-g1-%d", i);
        inv.gpus[i].mem_bytes = 80 * GIB;
        inv.gpus[i].healthy = true;
    }
    return inv;
}

static void test_role(void **state)
{
    (void)state;
    struct fx_allocation al = alloc("GPU-g1-0", 30, "g1");
    assert_int_equal(fx_remote_role(&al, "c1", "g1"), FX_REMOTE_SERVE);
    assert_int_equal(fx_remote_role(&al, "c1", "c1"), FX_REMOTE_CLIENT);
    assert_int_equal(fx_remote_role(&al, "c1", "c2"), FX_REMOTE_NONE);
    al.remote_node[0] = 0;
    assert_int_equal(fx_remote_role(&al, "g1", "g1"), FX_REMOTE_NONE);
}

static void test_server_plan(void **state)
{
    (void)state;
    struct fx_pod_spec s = spec(true, 30, "50");
    struct fx_node_inv inv = inv2();
    struct fx_allocation al = alloc("GPU-g1-1", 30, "g1");
    struct fx_remote_server sv;
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_server_plan(&s, "uid-1", &al, &inv, 7071, &sv, &err), 0);
    assert_string_equal(sv.gpu_uuid, "GPU-g1-1");
    assert_string_equal(sv.slice.tenant, "uid-1");
    assert_int_equal(sv.slice.compute_share, 30);
    assert_int_equal(sv.slice.compute_cap, 50);
    assert_int_equal(sv.slice.memory, fx_default_slice_mem(1, 30, 0, 80 * GIB));
    assert_int_equal(sv.port, 7071);

    /* A GPU this node does not have. */
    al = alloc("GPU-g9-0", 30, "g1");
    assert_int_equal(fx_remote_server_plan(&s, "uid-1", &al, &inv, 7071, &sv, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "gpus[0].uuid"));
    assert_non_null(strstr(err.msg, "GPU-g9-0"));
    /* A forged allocation: the pod does not allow a remote slice. */
    struct fx_pod_spec local = spec(false, 30, NULL);
    al = alloc("GPU-g1-0", 30, "g1");
    assert_int_equal(fx_remote_server_plan(&local, "uid-1", &al, &inv, 7071, &sv, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "remote.node"));
    /* More memory than the pod's share implies. */
    al.gpus[0].mem += GIB;
    assert_int_equal(fx_remote_server_plan(&s, "uid-1", &al, &inv, 7071, &sv, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "gpus[0].memory"));
    /* Not remote at all, a bad port, no UID. */
    al = alloc("GPU-g1-0", 30, NULL);
    assert_int_equal(fx_remote_server_plan(&s, "uid-1", &al, &inv, 7071, &sv, &err),
                     FLEXPU_EINVAL);
    al = alloc("GPU-g1-0", 30, "g1");
    assert_int_equal(fx_remote_server_plan(&s, "uid-1", &al, &inv, 0, &sv, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "port"));
    assert_int_equal(fx_remote_server_plan(&s, "", &al, &inv, 7071, &sv, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "metadata.uid"));
}

static bool has(char **v, const char *s)
{
    for (; *v; v++)
        if (strcmp(*v, s) == 0)
            return true;
    return false;
}

static void test_server_cmd(void **state)
{
    (void)state;
    struct fx_pod_spec s = spec(true, 30, NULL);
    struct fx_node_inv inv = inv2();
    struct fx_allocation al = alloc("GPU-g1-0", 30, "g1");
    struct fx_remote_server sv;
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_server_plan(&s, "uid-1", &al, &inv, 7071, &sv, &err), 0);
    char buf[2048], *argv[6], *envp[9];
    assert_int_equal(fx_remote_server_cmd(&sv, "/opt/flexpu/flexpu-remoted",
                                          "/opt/flexpu/libflexpu-cuda.so", "/run/flexpu/state",
                                          "/run/flexpu/remote/uid-1.token", buf, sizeof(buf),
                                          argv, 6, envp, 9, &err),
                     0);
    assert_string_equal(argv[0], "/opt/flexpu/flexpu-remoted");
    assert_string_equal(argv[1], "--listen");
    assert_string_equal(argv[2], "0.0.0.0:7071");
    assert_string_equal(argv[3], "--token-file");
    assert_string_equal(argv[4], "/run/flexpu/remote/uid-1.token");
    assert_null(argv[5]);
    assert_true(has(envp, "LD_PRELOAD=/opt/flexpu/libflexpu-cuda.so"));
    assert_true(has(envp, "CUDA_VISIBLE_DEVICES=GPU-g1-0"));
    assert_true(has(envp, "FLEXPU_TENANT=uid-1"));
    assert_true(has(envp, "FLEXPU_COMPUTE_SHARE=30"));
    assert_true(has(envp, "FLEXPU_COMPUTE_CAP=100"));
    assert_true(has(envp, "FLEXPU_PRIORITY=normal"));
    assert_true(has(envp, "FLEXPU_STATE_DIR=/run/flexpu/state"));
    char mem[64];
    snprintf(mem, sizeof(mem), "FLEXPU_MEMORY_LIMIT=%lld",
             (long long)fx_default_slice_mem(1, 30, 0, 80 * GIB));
    assert_true(has(envp, mem));
    /* Too small a buffer or array: refused, not cut. */
    assert_int_equal(fx_remote_server_cmd(&sv, "/opt/flexpu/flexpu-remoted", "/x.so", "/s", "/t",
                                          buf, 60, argv, 6, envp, 9, &err),
                     FLEXPU_ERANGE);
    assert_int_equal(fx_remote_server_cmd(&sv, "/b", "/x.so", "/s", "/t", buf, sizeof(buf), argv,
                                          6, envp, 8, &err),
                     FLEXPU_ERANGE);
}

static void test_token(void **state)
{
    (void)state;
    char dir[] = "/tmp/flexpu-remote-node-test.XXXXXX", path[128], a[80] = "", b[80] = "";
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/t.token", dir);
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_token_new(path, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(a, sizeof(a), f));
    fclose(f);
    assert_int_equal(strlen(a), 65);
    assert_int_equal(strspn(a, "0123456789abcdef"), 64);
    assert_int_equal(fx_remote_token_new(path, &err), 0);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(b, sizeof(b), f));
    fclose(f);
    assert_string_not_equal(a, b);
    unlink(path);
    rmdir(dir);
}

static void test_endpoint(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    const char *good[] = {"10.0.3.7:7071", "gpu-node-3:7070", "gpu-node-3.example:65535",
                          "[fd00::1]:7070", "[::1]:1"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (fx_remote_endpoint_check(good[i], "e", &err))
            fail_msg("%s: %s", good[i], err.msg);
    const char *bad[] = {"",           "gpu-node-3",   ":7070",         "g:0",
                         "g:65536",    "g:07070",      "g:70x",         "G1:7070",
                         "-g:7070",    "[fd00::1:7070", "[zz]:7070",    "a b:7070",
                         "g:7070\n",   "g:",           "g:123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (fx_remote_endpoint_check(bad[i], "metadata.annotations[x]", &err) != FLEXPU_EINVAL)
            fail_msg("accepted '%s'", bad[i]);
        assert_non_null(strstr(err.msg, "metadata.annotations[x]"));
    }
}

static void test_client_env(void **state)
{
    (void)state;
    char buf[512], *envp[4];
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_client_env("10.0.3.7:7071", "/opt/flexpu/remote",
                                          "/run/secrets/flexpu/token", buf, sizeof(buf), envp, 4,
                                          &err),
                     0);
    assert_string_equal(envp[0], "FLEXPU_REMOTE_ADDR=10.0.3.7:7071");
    assert_string_equal(envp[1], "FLEXPU_REMOTE_TOKEN_FILE=/run/secrets/flexpu/token");
    assert_string_equal(envp[2], "LD_PRELOAD=/opt/flexpu/remote/libcudart.so.12 "
                                 "/opt/flexpu/remote/libcublas.so.12");
    assert_null(envp[3]);
    assert_int_equal(fx_remote_client_env("no-port", "/l", "/t", buf, sizeof(buf), envp, 4, &err),
                     FLEXPU_EINVAL);
    assert_int_equal(fx_remote_client_env("g:1", "/l", "/t", buf, 20, envp, 4, &err),
                     FLEXPU_ERANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_role),        cmocka_unit_test(test_server_plan),
        cmocka_unit_test(test_server_cmd),  cmocka_unit_test(test_token),
        cmocka_unit_test(test_endpoint),    cmocka_unit_test(test_client_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
