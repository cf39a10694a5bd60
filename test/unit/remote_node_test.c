/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent's side of remote slices (node/remote.h): each node's role
 * for a pod, the GPU node's server for the slice (refused for a forged or
 * foreign allocation; its settings, command line and environment), the
 * token file (0600, 64 hex characters, fresh each time), the endpoint's
 * check and what the pod's container gets; the GPU node's agent against a
 * scripted API server (its full list at start, its label-selected list and
 * watch, the unlabelled pods it keeps and reads back). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "http_fake.h"
#include "node/remote.h"
#include "node/remote_agent.h"
#include "node/remote_node.h"
#include "node/remote_spawn.h"
#include "runtime/config.h"
#include "util/procstat.h"

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
    assert_string_equal(sv.gpu_uuid[0], "GPU-g1-1");
    assert_int_equal(sv.ngpu, 1);
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
    /* A borrower: never served, so every server's slice is an owner's
     * (reclaim_mem.c reads their ledgers as owners'). */
    al = alloc("GPU-g1-0", 30, "g1");
    al.borrowed = true;
    assert_int_equal(fx_remote_server_plan(&s, "uid-1", &al, &inv, 7071, &sv, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "a borrowed slice is never remote"));
    al.borrowed = false;
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
    /* A UID that cannot name the server's slice and its directories. */
    char long_uid[FX_REMOTE_UID_MAX + 2];
    memset(long_uid, 'a', FX_REMOTE_UID_MAX + 1);
    long_uid[FX_REMOTE_UID_MAX + 1] = 0;
    const char *bad[] = {"../x", "a/b", "u.1", "-u", long_uid};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(fx_remote_server_plan(&s, bad[i], &al, &inv, 7071, &sv, &err),
                         FLEXPU_EINVAL);
        assert_non_null(strstr(err.msg, "metadata.uid"));
    }
    assert_int_equal(fx_remote_server_plan(&s, "0e0f3a51-7c1b-4c7e-9d4b-2a8f5b6c7d8e", &al, &inv,
                                           7071, &sv, &err),
                     0);
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
    char buf[2048], *argv[14], *envp[11];
    assert_int_equal(fx_remote_server_cmd(&sv, "/opt/flexpu/flexpu-remoted",
                                          "/opt/flexpu/libflexpu-cuda.so", "/var/lib/flexpu/arb",
                                          "/var/lib/flexpu/ledger/remote-uid-1",
                                          "/var/lib/flexpu/borrowed", buf, sizeof(buf), argv, 14,
                                          envp, 11, &err),
                     0);
    assert_string_equal(argv[0], "/opt/flexpu/flexpu-remoted");
    assert_string_equal(argv[1], "--listen");
    assert_string_equal(argv[2], "0.0.0.0:7071");
    /* The token and the port file as the descriptors fx_remote_spawn
     * gives: no path the server's user would have to open. */
    assert_string_equal(argv[3], "--token-fd");
    assert_string_equal(argv[4], "3");
    assert_string_equal(argv[5], "--port-fd");
    assert_string_equal(argv[6], "4");
    assert_string_equal(argv[7], "--slice");
    assert_string_equal(argv[8], "uid-1");
    /* What the server may hold, the plan's defaults (the server's own). */
    assert_string_equal(argv[9], "--max-clients");
    assert_string_equal(argv[10], "16");
    assert_string_equal(argv[11], "--max-module-mib");
    assert_string_equal(argv[12], "1024");
    assert_null(argv[13]);
    /* Nothing of the cluster key: its path nor its name. */
    for (char **v = argv; *v; v++)
        assert_null(strstr(*v, "key"));
    for (char **v = envp; *v; v++)
        assert_null(strstr(*v, "KEY"));
    assert_true(has(envp, "LD_PRELOAD=/opt/flexpu/libflexpu-cuda.so"));
    assert_true(has(envp, "CUDA_VISIBLE_DEVICES=GPU-g1-0"));
    assert_true(has(envp, "FLEXPU_TENANT=uid-1"));
    assert_true(has(envp, "FLEXPU_COMPUTE_SHARE=30"));
    assert_true(has(envp, "FLEXPU_COMPUTE_CAP=100"));
    assert_true(has(envp, "FLEXPU_PRIORITY=normal"));
    /* A slice of the node agent's arbiter, beside the local slices: its
     * pages and the slice's own ledger directory, no shared state. */
    assert_true(has(envp, "FLEXPU_ARBITER_DIR=/var/lib/flexpu/arb"));
    assert_true(has(envp, "FLEXPU_LEDGER_DIR=/var/lib/flexpu/ledger/remote-uid-1"));
    for (char **v = envp; *v; v++)
        assert_null(strstr(*v, "FLEXPU_STATE_DIR"));
    /* An owner: its runtime, configured by this environment alone, waits
     * for the borrowers of its GPU the agent marks (reclaim_mem.h). */
    assert_true(has(envp, "FLEXPU_BORROWED_DIR=/var/lib/flexpu/borrowed"));
    char mem[64];
    snprintf(mem, sizeof(mem), "FLEXPU_MEMORY_LIMIT=%lld",
             (long long)fx_default_slice_mem(1, 30, 0, 80 * GIB));
    assert_true(has(envp, mem));
    /* Too small a buffer or array: refused, not cut. */
    assert_int_equal(fx_remote_server_cmd(&sv, "/opt/flexpu/flexpu-remoted", "/x.so", "/a",
                                          "/l", "/m", buf, 60, argv, 14, envp, 11, &err),
                     FLEXPU_ERANGE);
    assert_int_equal(fx_remote_server_cmd(&sv, "/b", "/x.so", "/a", "/l", "/m", buf, sizeof(buf),
                                          argv, 13, envp, 11, &err),
                     FLEXPU_ERANGE);
    assert_int_equal(fx_remote_server_cmd(&sv, "/b", "/x.so", "/a", "/l", "/m", buf, sizeof(buf),
                                          argv, 14, envp, 10, &err),
                     FLEXPU_ERANGE);
    /* The agent's limits, as given; out of the server's ranges refused
     * naming the option and the value, never passed on. */
    sv.max_clients = 3;
    sv.max_module_mib = 64;
    assert_int_equal(fx_remote_server_cmd(&sv, "/b", "/x.so", "/a", "/l", "/m", buf, sizeof(buf),
                                          argv, 14, envp, 11, &err),
                     0);
    assert_string_equal(argv[10], "3");
    assert_string_equal(argv[12], "64");
    sv.max_clients = 4097;
    assert_int_equal(fx_remote_server_cmd(&sv, "/b", "/x.so", "/a", "/l", "/m", buf, sizeof(buf),
                                          argv, 14, envp, 11, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "--max-clients"));
    assert_non_null(strstr(err.msg, "4097"));
    sv.max_clients = 3;
    sv.max_module_mib = 0;
    assert_int_equal(fx_remote_server_cmd(&sv, "/b", "/x.so", "/a", "/l", "/m", buf, sizeof(buf),
                                          argv, 14, envp, 11, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "--max-module-mib"));
    /* Its slice's key: never a local slice's (24 hexadecimal digits). */
    char key[80];
    assert_int_equal(fx_remote_slice_key("uid-1", key, sizeof(key)), 0);
    assert_string_equal(key, "remote-uid-1");
    assert_int_equal(fx_remote_slice_key("uid-1", key, 12), -1);
}

/* A pod of 2 GPUs asking 8 GiB on each, with its allocation (`first` and
 * `second` GPUs of gpu-1, 30 cores and 8 GiB each). */
static struct fx_pod_spec spec2(void)
{
    json_t *p = json_pack("{s:{s:s, s:s, s:{s:s}}, s:{s:[{s:s, s:{s:{s:s, s:s, s:s}}}]}}",
                          "metadata", "name", "p", "namespace", "t", "annotations",
                          FX_ANN_REMOTE, FX_REMOTE_ALLOWED, "spec", "containers", "name", "c",
                          "resources", "limits", "flexpu.io/gpu", "2", "flexpu.io/gpu-cores",
                          "30", "flexpu.io/gpu-memory", "8Gi");
    struct fx_pod_spec s;
    struct flexpu_error err = {0};
    if (fx_pod_spec_parse(p, &s, &err))
        fail_msg("fx_pod_spec_parse: %s", err.msg);
    json_decref(p);
    return s;
}

static struct fx_allocation alloc2(const char *first, const char *second)
{
    struct fx_allocation al = {.ngpu = 2};
    snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "%s", first);
    snprintf(al.gpus[1].uuid, sizeof(al.gpus[1].uuid), "%s", second);
    for (int i = 0; i < 2; i++) {
        al.gpus[i].index = i;
        al.gpus[i].cores = 30;
        al.gpus[i].mem = 8 * GIB;
    }
    snprintf(al.remote_node, sizeof(al.remote_node), "gpu-1");
    return al;
}

/* A remote pod of 2 GPUs: one server for both, its workers seeing them
 * in the allocation's order, one slice (the share and the quota on each
 * GPU, as a local pod of 2 GPUs gets); a GPU twice, or one this node
 * lacks, refused naming which. */
static void test_server_plan_gpus(void **state)
{
    (void)state;
    struct fx_pod_spec s = spec2();
    struct fx_node_inv inv = inv2();
    struct fx_allocation al = alloc2("GPU-g1-1", "GPU-g1-0");
    struct fx_remote_server sv;
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_server_plan(&s, "uid-2", &al, &inv, 7072, &sv, &err), 0);
    assert_int_equal(sv.ngpu, 2);
    assert_string_equal(sv.gpu_uuid[0], "GPU-g1-1");
    assert_string_equal(sv.gpu_uuid[1], "GPU-g1-0");
    assert_int_equal(sv.slice.compute_share, 30);
    assert_int_equal(sv.slice.memory, 8 * GIB);
    char buf[2048], *argv[14], *envp[11];
    assert_int_equal(fx_remote_server_cmd(&sv, "/b", "/x.so", "/a", "/l", "/m", buf, sizeof(buf),
                                          argv, 14, envp, 11, &err),
                     0);
    assert_true(has(envp, "CUDA_VISIBLE_DEVICES=GPU-g1-1,GPU-g1-0"));
    assert_true(has(envp, "FLEXPU_MEMORY_LIMIT=8589934592"));
    assert_true(has(envp, "FLEXPU_COMPUTE_SHARE=30"));
    al = alloc2("GPU-g1-0", "GPU-g1-0");
    assert_int_equal(fx_remote_server_plan(&s, "uid-2", &al, &inv, 7072, &sv, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "gpus[1].uuid"));
    al = alloc2("GPU-g1-0", "GPU-g9-1");
    assert_int_equal(fx_remote_server_plan(&s, "uid-2", &al, &inv, 7072, &sv, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "gpus[1].uuid"));
    assert_non_null(strstr(err.msg, "GPU-g9-1"));
    /* The pod asks 2: an allocation of 1 is not its. */
    al = alloc("GPU-g1-0", 30, "gpu-1");
    al.gpus[0].mem = 8 * GIB;
    assert_int_equal(fx_remote_server_plan(&s, "uid-2", &al, &inv, 7072, &sv, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, ".gpus"));
}

static const char *env_of(const char *name, void *ctx)
{
    size_t n = strlen(name);
    for (char **v = ctx; *v; v++)
        if (strncmp(*v, name, n) == 0 && (*v)[n] == '=')
            return *v + n + 1;
    return NULL;
}

/* A remote pod's cap is the one a local pod gets (fx_slice_set_cap): its
 * gpu-cores-limit, never below its share. A pod asking 30 cores capped at
 * 50 whose allocation was rounded up to the whole GPU has a share of 100:
 * a cap of 50 there is one the server's runtime refuses (the cap is below
 * the share), so the slice would never run. */
static void test_server_plan_cap(void **state)
{
    (void)state;
    struct fx_pod_spec s = spec(true, 30, "50");
    struct fx_node_inv inv = inv2();
    struct fx_allocation al = alloc("GPU-g1-0", 100, "g1");
    al.gpus[0].mem = 0; /* a whole GPU: no quota */
    struct fx_remote_server sv;
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_server_plan(&s, "uid-1", &al, &inv, 7071, &sv, &err), 0);
    assert_int_equal(sv.slice.compute_share, 100);
    assert_int_equal(sv.slice.compute_cap, 100);
    char buf[2048], *argv[14], *envp[11];
    assert_int_equal(fx_remote_server_cmd(&sv, "/b", "/x.so", "/a", "/l", "/m", buf, sizeof(buf),
                                          argv, 14, envp, 11, &err),
                     0);
    struct fx_slice_config c;
    fx_config_defaults(&c);
    if (fx_config_from_env(&c, env_of, envp, &err))
        fail_msg("the server's runtime refuses its environment: %s", err.msg);
    assert_int_equal(c.compute_cap, 100);
    /* Its share below its limit: the limit, as before. */
    al = alloc("GPU-g1-0", 30, "g1");
    assert_int_equal(fx_remote_server_plan(&s, "uid-1", &al, &inv, 7071, &sv, &err), 0);
    assert_int_equal(sv.slice.compute_cap, 50);
    /* The same function as the device plugin's: a limit outside 1-100 is
     * none, and never a cap below the share. */
    struct fx_slice_file f = {.compute_share = 30};
    fx_slice_set_cap(&f, 0);
    assert_int_equal(f.compute_cap, 100);
    fx_slice_set_cap(&f, 101);
    assert_int_equal(f.compute_cap, 100);
    fx_slice_set_cap(&f, 20);
    assert_int_equal(f.compute_cap, 30);
    fx_slice_set_cap(&f, 40);
    assert_int_equal(f.compute_cap, 40);
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

/* ---- starting a server: fx_remote_spawn (remote_spawn.h) ---- */

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* The file's text, in a buffer of its own (the caller frees it). */
static char *read_all(const char *path)
{
    char *buf = calloc(1, 16384);
    assert_non_null(buf);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, 16383, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* A stand-in for flexpu-remoted that says what it was given: its ids, its
 * no_new_privs, its token on fd 3 (it writes its port to fd 4), every
 * descriptor it holds and where it points, its environment, and whether
 * it can open the cluster key (its first argument). */
static const char fake_server[] =
    "#!/bin/sh\n"
    "echo \"ids $(id -u) $(id -g) $(id -G)\"\n"
    "grep '^NoNewPrivs:' /proc/self/status\n"
    "echo \"oom_score_adj $(cat /proc/$$/oom_score_adj) child $(cat /proc/self/oom_score_adj)\"\n"
    "echo \"token $(cat <&3)\"\n"
    "echo 7123 >&4\n"
    "ls -l /proc/$$/fd\n"
    "env | sed 's/^/env /'\n"
    "if cat \"$1\" >/dev/null 2>&1; then echo 'key readable'; else echo 'key unreadable'; fi\n";

static void test_spawn(void **state)
{
    (void)state;
    char dir[] = "/tmp/flexpu-remote-spawn-test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    /* The stand-in runs as another user when this test is root. */
    assert_int_equal(chmod(dir, 0711), 0);
    char key[128], token[128], port[128], logf[128], bin[128];
    snprintf(key, sizeof(key), "%s/key", dir);
    snprintf(token, sizeof(token), "%s/token", dir);
    snprintf(port, sizeof(port), "%s/port", dir);
    snprintf(logf, sizeof(logf), "%s/server.log", dir);
    snprintf(bin, sizeof(bin), "%s/fake-remoted", dir);
    write_file(key, "the-cluster-key-0123456789abcdef-0123456789\n", 0400);
    write_file(token, "slice-token-0123456789abcdef\n", 0600);
    write_file(port, "stale\n", 0600);
    write_file(bin, fake_server, 0755);
    /* An agent's descriptors that lack close-on-exec (a library's, say),
     * among them one on the key: none may reach the server. */
    int leaked_key = open(key, O_RDONLY);
    int leaked_dir = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(leaked_key >= 0 && leaked_dir >= 0);
    bool root = geteuid() == 0;
    char *argv[] = {bin, key, NULL};
    char *envp[] = {"PATH=/usr/bin:/bin", "FLEXPU_TENANT=uid-1", NULL};
    struct fx_remote_spawn sp = {.bin = bin, .argv = argv, .envp = envp, .token_path = token,
                                 .port_path = port, .log_path = logf, .drop = root,
                                 .uid = 65534, .gid = 65534};
    struct flexpu_error err = {0};
    pid_t pid = 0;
    char *adj_before = read_all("/proc/self/oom_score_adj");
    assert_int_equal(fx_remote_spawn(&sp, &pid, &err), 0);
    assert_true(pid > 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(leaked_key);
    close(leaked_dir);
    char *out = read_all(logf);
    assert_non_null(strstr(out, "NoNewPrivs:\t1"));
    /* The OOM killer's first choice, and so are the processes it forks
     * (the workers): the agent's own score is untouched. */
    assert_non_null(strstr(out, "oom_score_adj 1000 child 1000\n"));
    char *adj_after = read_all("/proc/self/oom_score_adj");
    assert_string_equal(adj_after, adj_before);
    free(adj_after);
    free(adj_before);
    assert_non_null(strstr(out, "token slice-token-0123456789abcdef\n"));
    assert_non_null(strstr(out, "env FLEXPU_TENANT=uid-1\n"));
    assert_null(strstr(out, "the-cluster-key"));
    /* `ls -l` of its descriptors: "... N -> TARGET" each. Only 0-4 and
     * the shell's own script; nothing on the key. */
    bool saw[5] = {false};
    for (char *l = strstr(out, " -> "); l; l = strstr(l + 1, " -> ")) {
        char *num = l;
        while (num > out && num[-1] != ' ')
            num--;
        int fd = atoi(num);
        char target[256];
        sscanf(l + 4, "%255s", target);
        const char *want = fd == 0 ? "/dev/null" : fd <= 2 ? logf : fd == 3 ? token
                         : fd == 4 ? port : bin;
        if (strcmp(target, want) != 0)
            fail_msg("descriptor %d (%s) reached the server, want %s:\n%s", fd, target, want,
                     out);
        if (fd <= 4)
            saw[fd] = true;
    }
    for (int fd = 0; fd <= 4; fd++)
        if (!saw[fd])
            fail_msg("no descriptor %d:\n%s", fd, out);
    char *port_text = read_all(port);
    assert_string_equal(port_text, "7123\n");
    free(port_text);
    struct stat ps;
    assert_int_equal(stat(port, &ps), 0);
    assert_int_equal(ps.st_mode & 0777, 0600);
    if (root) {
        assert_non_null(strstr(out, "ids 65534 65534 65534\n"));
        assert_non_null(strstr(out, "key unreadable"));
        /* The token and the port file stay root's: only the descriptors
         * reach the server's user. */
        assert_int_equal(ps.st_uid, 0);
        assert_int_equal(stat(token, &ps), 0);
        assert_int_equal(ps.st_uid, 0);
    } else {
        print_message("not root: the change of user is not tested\n");
    }
    free(out);

    /* What cannot start is an error naming the step, nothing left running. */
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/none", dir);
    sp.bin = missing;
    argv[0] = missing;
    assert_int_equal(fx_remote_spawn(&sp, &pid, &err), FLEXPU_EIO);
    assert_int_equal(pid, 0);
    assert_non_null(strstr(err.msg, "execve failed"));
    sp.bin = bin;
    argv[0] = bin;
    sp.token_path = missing;
    assert_int_equal(fx_remote_spawn(&sp, &pid, &err), FLEXPU_EIO);
    assert_non_null(strstr(err.msg, "token"));
    assert_non_null(strstr(err.msg, missing));
    if (!root) {
        /* A user it cannot become: refused before exec. */
        sp.token_path = token;
        sp.drop = true;
        assert_int_equal(fx_remote_spawn(&sp, &pid, &err), FLEXPU_EIO);
        assert_non_null(strstr(err.msg, "setgroups failed"));
    }
    const char *files[] = {key, token, port, logf, bin};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    rmdir(dir);
}

static void test_remote_ids(void **state)
{
    (void)state;
    unsigned v = 0;
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_id_parse("--remote-uid", "65534", &v, &err), 0);
    assert_int_equal(v, 65534);
    const char *bad[] = {"0", "-1", "", "nobody", "2147483648", "12x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(fx_remote_id_parse("--remote-gid", bad[i], &v, &err), FLEXPU_EINVAL);
        assert_non_null(strstr(err.msg, "--remote-gid"));
    }
    assert_non_null(strstr(err.msg, "12x"));
    /* --remote-uid-range FIRST-LAST: a user per slice */
    unsigned a = 0, b = 0;
    assert_int_equal(fx_remote_uid_range_parse("70000-70099", &a, &b, &err), 0);
    assert_int_equal(a, 70000);
    assert_int_equal(b, 70099);
    assert_int_equal(fx_remote_uid_range_parse("5-5", &a, &b, &err), 0);
    assert_true(a == 5 && b == 5);
    const char *bad_ranges[] = {"0-5", "6-5", "", "70000", "a-b", "-5", "5-", "1-2147483648",
                                "5-6x", "5--6", "+5-6", " 5-6", "99999999999999999999-1"};
    for (size_t i = 0; i < sizeof(bad_ranges) / sizeof(bad_ranges[0]); i++) {
        if (fx_remote_uid_range_parse(bad_ranges[i], &a, &b, &err) != FLEXPU_EINVAL)
            fail_msg("range '%s' accepted", bad_ranges[i]);
        if (!strstr(err.msg, "--remote-uid-range") || !strstr(err.msg, bad_ranges[i]))
            fail_msg("error '%s' names neither the flag nor '%s'", err.msg, bad_ranges[i]);
    }
    assert_true(a == 5 && b == 5); /* unchanged on error */
    /* The flag through flexpu-node's option table; a shared uid beside it
     * is refused at start (fx_remote_node_start). */
    struct fx_remote_opts o = {0};
    assert_int_equal(fx_remote_opt(&o, FX_REMOTE_OPT_FIRST + 9, "70000-70009"), 0);
    assert_true(o.uid_first == 70000 && o.uid_last == 70009);
    assert_int_equal(fx_remote_opt(&o, FX_REMOTE_OPT_FIRST + 9, "0-9"), 2);
}

/* --remote-max-clients and --remote-max-module-mib: each server's limits,
 * in the server's own ranges; a bad value refused naming the flag and the
 * value, the option unchanged. */
static void test_server_limits(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    int v = 7;
    assert_int_equal(fx_remote_limit_parse("--remote-max-clients", "4096", 4096, &v, &err), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(fx_remote_limit_parse("--remote-max-clients", "1", 4096, &v, &err), 0);
    assert_int_equal(v, 1);
    const char *bad[] = {"0", "4097", "", "-1", "+2", " 2", "2x", "x", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (fx_remote_limit_parse("--remote-max-clients", bad[i], 4096, &v, &err) !=
            FLEXPU_EINVAL)
            fail_msg("'%s' accepted", bad[i]);
        if (!strstr(err.msg, "--remote-max-clients") || !strstr(err.msg, bad[i]) ||
            !strstr(err.msg, "4096"))
            fail_msg("error '%s' names not the flag, '%s' and the bound", err.msg, bad[i]);
    }
    assert_int_equal(v, 1);
    /* Through flexpu-node's option table. */
    struct fx_remote_opts o = {0};
    assert_int_equal(fx_remote_opt(&o, FX_REMOTE_OPT_FIRST + 10, "4"), 0);
    assert_int_equal(fx_remote_opt(&o, FX_REMOTE_OPT_FIRST + 11, "65536"), 0);
    assert_true(o.max_clients == 4 && o.max_module_mib == 65536);
    assert_int_equal(fx_remote_opt(&o, FX_REMOTE_OPT_FIRST + 10, "0"), 2);
    assert_int_equal(fx_remote_opt(&o, FX_REMOTE_OPT_FIRST + 11, "65537"), 2);
    assert_true(o.max_clients == 4 && o.max_module_mib == 65536);
    struct option longs[] = {FX_REMOTE_LONG_OPTS};
    int seen = 0;
    for (size_t i = 0; i < sizeof(longs) / sizeof(longs[0]); i++)
        if ((strcmp(longs[i].name, "remote-max-clients") == 0 &&
             longs[i].val == FX_REMOTE_OPT_FIRST + 10) ||
            (strcmp(longs[i].name, "remote-max-module-mib") == 0 &&
             longs[i].val == FX_REMOTE_OPT_FIRST + 11))
            seen++;
    assert_int_equal(seen, 2);
    assert_true(FX_REMOTE_OPT_LAST >= FX_REMOTE_OPT_FIRST + 11);
}


/* ---- the GPU node's watch (remote_agent.c) ---- */

/* A pod with a remote slice on gpu-1's GPU-g1-0, labelled for `label`
 * (NULL: no label, bound before the scheduler labelled pods). */
static json_t *remote_pod(const char *name, const char *label)
{
    char al[256];
    snprintf(al, sizeof(al),
             "{\"gpus\":[{\"uuid\":\"GPU-g1-0\",\"index\":0,\"cores\":30,\"memory\":%lld}],"
             "\"remote\":{\"node\":\"gpu-1\"}}",
             (long long)fx_default_slice_mem(1, 30, 0, 80 * GIB));
    char uid[64];
    snprintf(uid, sizeof(uid), "uid-%s", name);
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:{s:s, s:s}, s:{}}, s:{s:s, s:[{s:s, s:{s:{s:s, "
                          "s:s}}}]}, s:{s:s}}",
                          "metadata", "name", name, "namespace", "t", "uid", uid, "annotations",
                          FX_ANN_REMOTE, FX_REMOTE_ALLOWED, FX_ANN_ALLOCATION, al, "labels",
                          "spec", "nodeName", "cpu-1", "containers", "name", "c", "resources",
                          "limits", "flexpu.io/gpu", "1", "flexpu.io/gpu-cores", "30", "status",
                          "phase", "Running");
    if (label)
        json_object_set_new(kube_get(p, "metadata.labels"), FX_LABEL_REMOTE_GPU_NODE,
                            json_string(label));
    return p;
}

struct agent_api {
    char *all, *labelled, *legacy; /* the full list, the label list, the legacy pod */
    int legacy_gone; /* atomic */
    /* When set, what every watch delivers before it ends (a line of
     * events), and how many watches delivered it; both atomic. */
    const char *event;
    int events;
};

static char *list_of(json_t *items)
{
    json_t *l = json_pack("{s:s, s:{s:s}, s:o}", "kind", "PodList", "metadata",
                          "resourceVersion", "5", "items", items);
    char *text = json_dumps(l, JSON_COMPACT);
    json_decref(l);
    return text;
}

/* The API server as the GPU node's agent sees it: every pod (a legacy pod
 * of this node, a labelled one, a pod of another GPU node), the labelled
 * pods alone when the label selector is given, watches that end quietly,
 * the legacy pod's read-back (404 once it is gone), the endpoint patches. */
static int agent_route(struct http_srv *s, const char *method, const char *path,
                       const char *req_body, const char **body, int *delay_ms)
{
    (void)req_body;
    struct agent_api *a = s->ctx;
    *body = "{}";
    if (strcmp(method, "PATCH") == 0)
        return 200;
    if (strstr(path, "watch=1")) {
        *delay_ms = 300;
        const char *ev = __atomic_load_n(&a->event, __ATOMIC_ACQUIRE);
        *body = ev ? ev : "";
        if (ev)
            __atomic_add_fetch(&a->events, 1, __ATOMIC_ACQ_REL);
        return 200;
    }
    if (strncmp(path, "/api/v1/pods?", 13) == 0) {
        *body = strstr(path, "labelSelector=") ? __atomic_load_n(&a->labelled, __ATOMIC_ACQUIRE)
                                               : a->all;
        return 200;
    }
    if (strcmp(path, "/api/v1/namespaces/t/pods/legacy") == 0) {
        if (__atomic_load_n(&a->legacy_gone, __ATOMIC_ACQUIRE)) {
            *body = "{\"kind\":\"Status\",\"code\":404,\"message\":\"not found\"}";
            return 404;
        }
        *body = a->legacy;
        return 200;
    }
    return 404;
}

static bool server_running(const char *root, const char *uid)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/remote/%s/server.pid", root, uid);
    FILE *f = fopen(path, "re");
    int pid = 0;
    if (f) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return pid > 0 && kill(pid, 0) == 0;
}

static bool wait_for(const char *root, const char *uid, bool running, int ms)
{
    for (int t = 0; t < ms; t += 50) {
        if (server_running(root, uid) == running)
            return true;
        usleep(50000);
    }
    return false;
}

/* Whether the slice of uid's server has a directory or a ledger. */
static bool slice_exists(const char *root, const char *uid)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/slices/remote-%s", root, uid);
    bool dir = stat(path, &st) == 0;
    snprintf(path, sizeof(path), "%s/ledger/remote-%s", root, uid);
    return dir || stat(path, &st) == 0;
}

/* Whether uid's slice is gone within ms: the agent removes it after it
 * reaped the server, which server_running may see first. */
static bool slice_gone_within(const char *root, const char *uid, int ms)
{
    for (int t = 0; t < ms; t += 50) {
        if (!slice_exists(root, uid))
            return true;
        usleep(50000);
    }
    return false;
}

/* Whether process pid's command line holds `flag value`, in a row. */
static bool cmdline_pair(int pid, const char *flag, const char *value)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = 0;
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
        if (strcmp(buf + i, flag) == 0 && i + strlen(flag) + 1 < n)
            return strcmp(buf + i + strlen(flag) + 1, value) == 0;
    return false;
}

/* The pid and the uid (from --remote-uid-range) server.pid records for
 * uid's server ("PID PORT UID"); the uid 0 when it records none. */
static unsigned recorded_uid(const char *root, const char *uid, int *pid)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/remote/%s/server.pid", root, uid);
    FILE *f = fopen(path, "re");
    int port = 0;
    unsigned run_uid = 0;
    *pid = 0;
    if (f) {
        if (fscanf(f, "%d %d %u", pid, &port, &run_uid) != 3)
            run_uid = 0;
        fclose(f);
    }
    return run_uid;
}

/* The real uid of process pid, from /proc; -1 when it is gone. */
static long proc_uid(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    long uid = -1;
    unsigned r;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "Uid: %u", &r) == 1)
            uid = r;
    if (f)
        fclose(f);
    return uid;
}

/* Whether a live (not zombie) process is in process group pgid. */
static bool group_alive(pid_t pgid)
{
    DIR *d = opendir("/proc");
    bool alive = false;
    struct dirent *e;
    while (d && !alive && (e = readdir(d))) {
        struct fx_procstat st;
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        if (fx_procstat_read((pid_t)atoi(e->d_name), &st, NULL) == 0)
            alive = st.pgrp == pgid && !fx_procstat_ended(&st);
    }
    if (d)
        closedir(d);
    return alive;
}

/* The slice the agent's arbiter reads for uid's server (30% of GPU-g1-0
 * and its memory, capped at `cap`): the policy in slice.conf, with the
 * host's directories, the borrowed GPUs' marks among them (an owner's),
 * and the cap's clock `clock` (--cap-clock-mhz, for a capped slice only);
 * the ledger directory 0700 and the servers' user's (as root). */
static void check_server_slice(const char *root, const char *uid, int cap, int clock,
                               bool as_root, unsigned run_uid)
{
    char conf[512], ledger[512], arb[512], marks[512], line[600];
    snprintf(conf, sizeof(conf), "%s/slices/remote-%s/slice.conf", root, uid);
    snprintf(ledger, sizeof(ledger), "%s/ledger/remote-%s", root, uid);
    snprintf(arb, sizeof(arb), "%s/arb", root);
    snprintf(marks, sizeof(marks), "%s/borrowed", root);
    struct fx_slice_config c;
    struct flexpu_error err = {0};
    fx_config_defaults(&c);
    if (fx_config_load_file(&c, conf, &err) != 1)
        fail_msg("%s: not read (%s)", conf, err.msg);
    assert_string_equal(c.tenant, uid);
    assert_int_equal(c.compute_share, 30);
    assert_int_equal(c.compute_cap, cap);
    assert_int_equal(c.cap_clock_mhz, clock);
    assert_int_equal(c.priority, FX_PRIO_NORMAL);
    assert_int_equal(c.memory_limit, fx_default_slice_mem(1, 30, 0, 80 * GIB));
    assert_string_equal(c.ledger_dir, ledger);
    assert_string_equal(c.arbiter_dir, arb);
    assert_string_equal(c.borrowed_dir, marks);
    char *text = read_all(conf);
    snprintf(line, sizeof(line), "ledger_dir = %s\n", ledger);
    assert_non_null(strstr(text, line));
    free(text);
    struct stat st;
    assert_int_equal(stat(ledger, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(st.st_uid, as_root ? run_uid : geteuid());
    assert_int_equal(st.st_gid, as_root ? 65534 : getegid());
}

/* A watch's event line: {"type": type, "object": pod}. */
static char *event_of(const char *type, json_t *pod)
{
    json_t *e = json_pack("{s:s, s:O}", "type", type, "object", pod);
    char *text = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    assert_non_null(text);
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    assert_non_null(line);
    memcpy(line + n, "\n", 2);
    return line;
}

/* ---- the agent tests' fixture: a GPU node's agent, a stand-in server
 * and the fake API server, in a temporary root ---- */

/* How the fixture is made: what its stand-in server does, and the ports
 * its servers take (port_min to port_min + 99; each test its own). */
struct agent_opts {
    const char *name;  /* the root: /tmp/flexpu-NAME-test.XXXXXX */
    bool ignores_term; /* it records each SIGTERM in term and runs on until
                        * SIGKILL; otherwise it sleeps a minute */
    bool adoptable;    /* its command line stays the server's (`fake-remoted
                        * ... --slice UID`): a restarted agent adopts it */
    int port_min;
};

/* Each agent test gets one from cmocka (agent_alloc, agent_teardown) and
 * makes it with agent_setup. It stays where it was allocated: the API
 * server and the agent's configuration point into it. The test fills api
 * (with lists and pods made by agent_list and agent_pod, freed at
 * teardown) and may change cfg before agent_start; s is the running
 * agent, which the test stops itself (agent_stop), with or without its
 * servers. */
struct agent_fixture {
    char root[64];
    char bin[128];  /* the stand-in server */
    char term[128]; /* where it records SIGTERM (ignores_term) */
    struct agent_api api;
    struct http_srv srv;
    struct kube_config kc;
    struct fx_remote_key key;
    struct fx_node_inv inv;
    struct fx_remote_serve_config cfg;
    struct fx_remote_serve *s;
    bool serving; /* the API server started */
    char *texts[16]; /* lists, events, pods' text: freed at teardown */
    int ntexts;
    json_t *pods[8];
    int npods;
};

/* The stand-in server's script: it writes its port to fd 4, then does
 * what o says. */
static void agent_script(const struct agent_fixture *f, const struct agent_opts *o)
{
    char body[512], text[1024];
    if (o->ignores_term)
        snprintf(body, sizeof(body),
                 "trap \"echo term >>%s\" TERM; while :; do sleep 0.05; done", f->term);
    else
        snprintf(body, sizeof(body), "%s", o->adoptable ? "sleep 60; :" : "exec sleep 60");
    if (o->adoptable)
        snprintf(text, sizeof(text), "#!/bin/bash\necho 7100 >&4\n"
                 "exec -a \"$0\" /bin/sh -c '%s' \"$0\" \"$@\"\n", body);
    else
        snprintf(text, sizeof(text), "#!/bin/bash\necho 7100 >&4\n%s\n", body);
    write_file(f->bin, text, 0755);
}

static int agent_alloc(void **state)
{
    *state = calloc(1, sizeof(struct agent_fixture));
    return *state ? 0 : -1;
}

static void agent_setup(struct agent_fixture *f, const struct agent_opts *o)
{
    snprintf(f->root, sizeof(f->root), "/tmp/flexpu-%s-test.XXXXXX", o->name);
    assert_non_null(mkdtemp(f->root));
    /* As root, the servers run as 65534: their program is under root. */
    assert_int_equal(chmod(f->root, 0711), 0);
    snprintf(f->bin, sizeof(f->bin), "%s/fake-remoted", f->root);
    if (o->ignores_term) {
        char marks[80];
        snprintf(marks, sizeof(marks), "%s/marks", f->root);
        assert_int_equal(mkdir(marks, 0700), 0);
        assert_int_equal(chmod(marks, 0777), 0); /* the server's user (65534 as root) writes */
        snprintf(f->term, sizeof(f->term), "%s/marks/term", f->root);
    }
    agent_script(f, o);
    f->srv = (struct http_srv){.threaded = true, .route = agent_route, .ctx = &f->api};
    f->key.len = 40;
    memset(f->key.bytes, 'k', f->key.len);
    f->inv = inv2();
    f->cfg = (struct fx_remote_serve_config){
        .node = "gpu-1", .root = f->root, .address = "127.0.0.1", .server_bin = f->bin,
        .runtime_lib = "/nonexistent/libflexpu-cuda.so", .port_min = o->port_min,
        .port_max = o->port_min + 99, .key = &f->key, .inv = &f->inv, .kube = &f->kc,
        .tick_ms = 50, .drop = geteuid() == 0, .uid = 65534, .gid = 65534};
}

static char *agent_keep(struct agent_fixture *f, char *text)
{
    assert_non_null(text);
    assert_true(f->ntexts < (int)(sizeof(f->texts) / sizeof(f->texts[0])));
    return f->texts[f->ntexts++] = text;
}

/* A pod of remote_pod's, freed at teardown. */
static json_t *agent_pod(struct agent_fixture *f, const char *name, const char *label)
{
    assert_true(f->npods < (int)(sizeof(f->pods) / sizeof(f->pods[0])));
    return f->pods[f->npods++] = remote_pod(name, label);
}

/* A pod list of items (a new array, taken), freed at teardown. */
static char *agent_list(struct agent_fixture *f, json_t *items)
{
    return agent_keep(f, list_of(items));
}

/* Starts the agent (again, after a test stopped it). */
static void agent_serve(struct agent_fixture *f)
{
    struct flexpu_error err = {0};
    f->s = fx_remote_serve_start(&f->cfg, &err);
    if (!f->s)
        fail_msg("fx_remote_serve_start: %s", err.msg);
}

/* Starts the API server, then the agent against it. */
static void agent_start(struct agent_fixture *f)
{
    http_start(&f->srv);
    f->serving = true;
    loopback_config(f->srv.port, &f->kc);
    agent_serve(f);
}

/* fx_remote_serve_stop: the agent goes, its servers with it or not. */
static void agent_stop(struct agent_fixture *f, bool servers)
{
    fx_remote_serve_stop(f->s, servers);
    f->s = NULL;
}

/* After the test: the API server, and every file. An agent still running
 * is a failed test's: it and what it points to are left as they are (its
 * stop could wait for a server that ignores SIGTERM, or for a start the
 * test held), so that it cannot touch the next test's. */
static int agent_teardown(void **state)
{
    struct agent_fixture *f = *state;
    if (f->s) {
        print_message("the agent in %s is left running\n", f->root);
        return 0;
    }
    if (f->serving) {
        http_stop(&f->srv);
        kube_config_free(&f->kc);
    }
    for (int i = 0; i < f->ntexts; i++)
        free(f->texts[i]);
    for (int i = 0; i < f->npods; i++)
        json_decref(f->pods[i]);
    int rc = 0;
    if (f->root[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
        rc = system(cmd);
    }
    free(f);
    return rc == 0 ? 0 : -1;
}

/* The pid of uid's server once it runs (within 10 s). */
static int agent_server_pid(const struct agent_fixture *f, const char *uid)
{
    assert_true(wait_for(f->root, uid, true, 10000));
    int pid = 0;
    recorded_uid(f->root, uid, &pid);
    assert_true(pid > 0);
    return pid;
}

/* Whether file path exists within ms. */
static bool file_within(const char *path, int ms)
{
    struct stat st;
    for (int t = 0; t < ms && stat(path, &st) != 0; t += 50)
        usleep(50000);
    return stat(path, &st) == 0;
}

/* How many slices the plugin's view counts on GPU-g1-0 once it counts
 * want, or when ms have passed. */
static int holds_within(const struct agent_fixture *f, int want, int ms)
{
    struct fx_gpu_hold h[4];
    int n = fx_remote_serve_holds(f->s, "GPU-g1-0", h, 4);
    for (int t = 0; t < ms && n != want; t += 50) {
        usleep(50000);
        n = fx_remote_serve_holds(f->s, "GPU-g1-0", h, 4);
    }
    return n;
}

/* Waits (10 s at most) for the API server to deliver k more watches. */
static void watches_deliver(struct agent_api *a, int k)
{
    int seen = __atomic_load_n(&a->events, __ATOMIC_ACQUIRE);
    for (int i = 0; i < 200 && __atomic_load_n(&a->events, __ATOMIC_ACQUIRE) < seen + k; i++)
        usleep(50000);
    assert_true(__atomic_load_n(&a->events, __ATOMIC_ACQUIRE) >= seen + k);
}

/* The GPU node's agent lists every pod once (the legacy pods, bound before
 * the scheduler labelled them), then lists and watches only the pods with
 * its label; the legacy pod's server is kept through the label watch's
 * lists (which do not show it) and stopped once its read-back finds it
 * gone. With --remote-uid-range each slice's server gets a uid of its own
 * (its ledger directory that uid's), never one a process already runs as
 * (as root: a process the test starts as the range's first), and a
 * restarted agent that adopts the servers gives a new slice another. */

/* What the agent asked the fake API server so far: full pod lists, lists
 * and watches with the node's label selector, read-backs of pod t/legacy.
 * Fails the test on a watch without the selector. */
struct api_counts {
    int full, selected, watches, readbacks;
};

static void api_counts_of(struct agent_fixture *f, struct api_counts *n)
{
    pthread_mutex_lock(&f->srv.log_mu);
    char log[sizeof(f->srv.log)];
    snprintf(log, sizeof(log), "%s", f->srv.log);
    pthread_mutex_unlock(&f->srv.log_mu);
    const char *sel = "labelSelector=flexpu.io%2Fremote-gpu-node%3Dgpu-1";
    *n = (struct api_counts){0};
    char *save = NULL;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "GET /api/v1/pods?", 17) == 0) {
            if (strstr(line, "watch=1")) {
                n->watches++;
                if (!strstr(line, sel))
                    fail_msg("a watch without the label selector: %s", line);
            } else if (strstr(line, sel)) {
                n->selected++;
            } else {
                n->full++;
            }
        }
        n->readbacks += strcmp(line, "GET /api/v1/namespaces/t/pods/legacy") == 0;
    }
}

static void test_agent_watch(void **state)
{
    struct agent_fixture *f = *state;
    agent_setup(f, &(struct agent_opts){.name = "remote-agent", .adoptable = true,
                                         .port_min = 47100});
    bool as_root = geteuid() == 0;
    enum { UID0 = 3000000 };
    pid_t busy = 0; /* as root: a process running as UID0, which no slice may get */
    if (as_root) {
        busy = fork();
        assert_true(busy >= 0);
        if (busy == 0) {
            /* It ends with the test, even a failed one (the death signal
             * is set after the change of user, which clears it). */
            pid_t parent = getppid();
            alarm(60);
            if (setresgid(65534, 65534, 65534) == 0 && setresuid(UID0, UID0, UID0) == 0 &&
                prctl(PR_SET_PDEATHSIG, SIGKILL) == 0 && getppid() == parent)
                pause();
            _exit(1);
        }
        for (int t = 0; t < 200 && proc_uid(busy) != UID0; t++)
            usleep(10000);
        assert_int_equal(proc_uid(busy), UID0);
    }
    json_t *legacy = agent_pod(f, "legacy", NULL), *labelled = agent_pod(f, "new", "gpu-1");
    json_t *foreign = agent_pod(f, "foreign", "gpu-2");
    /* Capped at 50%: its slice carries --cap-clock-mhz; the legacy pod's,
     * uncapped, does not. */
    json_object_set_new(kube_get(labelled, "metadata.annotations"), FX_ANN_CORES_LIMIT,
                        json_string("50"));
    json_t *al = json_string("{\"gpus\":[{\"uuid\":\"GPU-g2-0\",\"index\":0,\"cores\":30,"
                             "\"memory\":1073741824}],\"remote\":{\"node\":\"gpu-2\"}}");
    json_object_set_new(kube_get(foreign, "metadata.annotations"), FX_ANN_ALLOCATION, al);
    f->api.all = agent_list(f, json_pack("[O, O, O]", legacy, labelled, foreign));
    f->api.labelled = agent_list(f, json_pack("[O]", labelled));
    f->api.legacy = agent_keep(f, json_dumps(legacy, JSON_COMPACT));
    f->cfg.legacy_check_ms = 200;
    f->cfg.cap_clock_mhz = 1410;
    f->cfg.uid_first = UID0;
    f->cfg.uid_last = UID0 + 3;
    f->cfg.max_clients = 3;
    f->cfg.max_module_mib = 64;
    agent_start(f);
    assert_true(wait_for(f->root, "uid-new", true, 10000));
    assert_true(wait_for(f->root, "uid-legacy", true, 10000));
    /* Each server has a uid of its own from the range, recorded with its
     * pid; as root it runs as that uid (not as the busy one's). */
    int pid_new = 0, pid_legacy = 0;
    unsigned u_new = recorded_uid(f->root, "uid-new", &pid_new),
             u_legacy = recorded_uid(f->root, "uid-legacy", &pid_legacy);
    unsigned lowest = as_root ? UID0 + 1 : UID0;
    if (u_new < lowest || u_new > UID0 + 3 || u_legacy < lowest || u_legacy > UID0 + 3 ||
        u_new == u_legacy)
        fail_msg("uids %u and %u: want two different ones in %u-%u", u_new, u_legacy, lowest,
                 UID0 + 3);
    if (as_root) {
        assert_int_equal(proc_uid(pid_new), u_new);
        assert_int_equal(proc_uid(pid_legacy), u_legacy);
    }
    /* Each server is a slice of the agent's arbiter: its policy in
     * slice.conf, its ledger directory the server's user's alone. */
    check_server_slice(f->root, "uid-new", 50, 1410, as_root, u_new);
    check_server_slice(f->root, "uid-legacy", 100, 0, as_root, u_legacy);
    /* Each server was started with the agent's limits. */
    assert_true(cmdline_pair(pid_new, "--max-clients", "3"));
    assert_true(cmdline_pair(pid_new, "--max-module-mib", "64"));
    assert_true(cmdline_pair(pid_legacy, "--max-clients", "3"));
    /* What the device plugin's borrower check counts on each GPU: both
     * slices, owners of their memory, on GPU-g1-0; nothing on GPU-g1-1. */
    struct fx_gpu_hold holds[4];
    assert_int_equal(fx_remote_serve_holds(f->s, "GPU-g1-0", holds, 4), 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(holds[i].mem, fx_default_slice_mem(1, 30, 0, 80 * GIB));
        assert_false(holds[i].borrowed);
    }
    assert_int_equal(fx_remote_serve_holds(f->s, "GPU-g1-1", holds, 4), 0);
    assert_int_equal(fx_remote_serve_holds(f->s, "GPU-g1-0", holds, 1), 2); /* counted, 1 written */
    /* Its pod's namespace and name, for the metrics' labels. */
    char ns[64], name[256];
    assert_int_equal(fx_remote_serve_pod_name(f->s, "uid-new", ns, sizeof(ns), name, sizeof(name)),
                     0);
    assert_string_equal(ns, "t");
    assert_string_equal(name, "new");
    assert_int_equal(fx_remote_serve_pod_name(f->s, "uid-foreign", ns, sizeof(ns), name,
                                              sizeof(name)), -1);
    /* Through label lists and watches and read-backs, the legacy pod's
     * server stays: the agent's requests counted until it has listed with
     * the selector, watched and read the pod back twice (at most 30 s; a
     * fixed sleep raced a loaded machine). */
    struct api_counts n = {0};
    for (int t = 0; t < 300; t++) {
        api_counts_of(f, &n);
        if (n.selected >= 1 && n.watches >= 1 && n.readbacks >= 2)
            break;
        usleep(100000);
    }
    assert_true(server_running(f->root, "uid-legacy"));
    assert_false(server_running(f->root, "uid-foreign"));
    /* One full list; every other list and every watch with the selector. */
    assert_int_equal(n.full, 1);
    assert_true(n.selected >= 1);
    assert_true(n.watches >= 1);
    assert_true(n.readbacks >= 2);
    /* A restarted agent adopts both servers, which keep their uids; a pod
     * that came meanwhile gets the range's one uid left. */
    agent_stop(f, false);
    json_t *third = agent_pod(f, "third", "gpu-1");
    f->api.all = agent_list(f, json_pack("[O, O, O, O]", legacy, labelled, foreign, third));
    f->api.labelled = agent_list(f, json_pack("[O, O]", labelled, third));
    agent_serve(f);
    assert_true(wait_for(f->root, "uid-third", true, 10000));
    int pid = 0, pid_third = 0;
    assert_int_equal(recorded_uid(f->root, "uid-new", &pid), u_new);
    assert_int_equal(pid, pid_new); /* adopted, not started again */
    assert_int_equal(recorded_uid(f->root, "uid-legacy", &pid), u_legacy);
    assert_int_equal(pid, pid_legacy);
    unsigned u_third = recorded_uid(f->root, "uid-third", &pid_third);
    if (u_third < lowest || u_third > UID0 + 3 || u_third == u_new || u_third == u_legacy)
        fail_msg("the third slice got uid %u beside %u and %u", u_third, u_new, u_legacy);
    check_server_slice(f->root, "uid-third", 100, 0, as_root, u_third);
    if (as_root)
        assert_int_equal(proc_uid(pid_third), u_third);
    /* Restarted without the range (--remote-uid as before): a new slice's
     * server runs as the shared uid, recording none; the adopted ones keep
     * theirs. */
    agent_stop(f, false);
    json_t *shared = agent_pod(f, "shared", "gpu-1");
    f->api.all =
        agent_list(f, json_pack("[O, O, O, O, O]", legacy, labelled, foreign, third, shared));
    f->api.labelled = agent_list(f, json_pack("[O, O, O]", labelled, third, shared));
    f->cfg.uid_first = f->cfg.uid_last = 0;
    agent_serve(f);
    assert_true(wait_for(f->root, "uid-shared", true, 10000));
    int pid_shared = 0;
    assert_int_equal(recorded_uid(f->root, "uid-shared", &pid_shared), 0);
    check_server_slice(f->root, "uid-shared", 100, 0, as_root, 65534);
    if (as_root)
        assert_int_equal(proc_uid(pid_shared), 65534);
    assert_int_equal(recorded_uid(f->root, "uid-third", &pid), u_third);
    assert_int_equal(pid, pid_third);
    /* An adopted server of the range that ends is started again as the
     * shared uid, and its server.pid records none: not the range's uid it
     * no longer runs as, which an agent given the range again would take
     * for its. */
    /* The server alone ends (a crash): the agent ends its worker, which
     * serves nobody and would hold the slice's memory, as it does for a
     * server it started itself (orphans.h). */
    assert_true(group_alive(pid_third));
    kill(pid_third, SIGKILL);
    int pid_again = 0;
    for (int i = 0; i < 200 && (pid_again <= 0 || pid_again == pid_third); i++) {
        usleep(50000);
        recorded_uid(f->root, "uid-third", &pid_again);
    }
    assert_true(pid_again > 0 && pid_again != pid_third);
    assert_int_equal(recorded_uid(f->root, "uid-third", &pid), 0);
    if (as_root)
        assert_int_equal(proc_uid(pid_again), 65534);
    for (int i = 0; i < 100 && group_alive(pid_third); i++)
        usleep(50000);
    if (group_alive(pid_third)) {
        kill(-pid_third, SIGKILL);
        fail_msg("the worker of adopted server %d lives on after the server ended",
                 (int)pid_third);
    }
    /* The legacy pod gone: its server stops; the labelled one's stays. */
    __atomic_store_n(&f->api.legacy_gone, 1, __ATOMIC_RELEASE);
    assert_true(wait_for(f->root, "uid-legacy", false, 10000));
    assert_true(server_running(f->root, "uid-new"));
    /* Its slice went with it: the arbiter forgets it. */
    assert_true(slice_gone_within(f->root, "uid-legacy", 5000));
    assert_true(slice_exists(f->root, "uid-new"));
    assert_int_equal(fx_remote_serve_holds(f->s, "GPU-g1-0", holds, 4), 3); /* new, third, shared */
    agent_stop(f, true);
    assert_false(server_running(f->root, "uid-new"));
    assert_false(slice_exists(f->root, "uid-new"));
    assert_false(server_running(f->root, "uid-third"));
    assert_false(server_running(f->root, "uid-shared"));
    if (busy > 0) {
        kill(busy, SIGKILL);
        waitpid(busy, NULL, 0);
    }
}

/* The pid of a server held in its stop (made with ignores_term): the agent
 * starts with the legacy pod (unlabelled) listed and `labelled` as its
 * label list; the pod goes, and the supervisor stops the server, which
 * has had SIGTERM and does not exit until the test kills it (the stop
 * wait is ten minutes). */
static int legacy_server_stopping(struct agent_fixture *f, char *labelled)
{
    json_t *legacy = agent_pod(f, "legacy", NULL);
    f->api.all = agent_list(f, json_pack("[O]", legacy));
    f->api.labelled = labelled;
    f->api.legacy = agent_keep(f, json_dumps(legacy, JSON_COMPACT));
    f->cfg.legacy_check_ms = 100;
    f->cfg.stop_wait_ms = 600000;
    agent_start(f);
    int pid = agent_server_pid(f, "uid-legacy");
    __atomic_store_n(&f->api.legacy_gone, 1, __ATOMIC_RELEASE);
    assert_true(file_within(f->term, 20000));
    return pid;
}

/* A call of the holds and pod_name callbacks (the device plugin's, made
 * under its lock), run on a thread of its own. */
struct answer_call {
    struct fx_remote_serve *s;
    int holds, named;
    char name[256];
    volatile int done;
};

static void *answer_main(void *p)
{
    struct answer_call *c = p;
    struct fx_gpu_hold h[4];
    char ns[64];
    c->holds = fx_remote_serve_holds(c->s, "GPU-g1-0", h, 4);
    c->named = fx_remote_serve_pod_name(c->s, "uid-legacy", ns, sizeof(ns), c->name,
                                        sizeof(c->name));
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* The watch answers the device plugin (holds, pod names) while a server
 * is being stopped: a server slow to exit (it ignores SIGTERM, and the
 * agent waits for it as long as the test lets it) keeps the supervisor in
 * its stop, and the answer still comes, with the stopping server's memory
 * counted, before the test lets the server go. The plugin makes these
 * calls under its own lock (borrow_refused, reclaim_event). */
static void test_answers_while_a_server_stops(void **state)
{
    struct agent_fixture *f = *state;
    /* Its server says when SIGTERM came and runs on until SIGKILL. */
    agent_setup(f, &(struct agent_opts){.name = "remote-stop", .ignores_term = true,
                                         .port_min = 47200});
    int pid = legacy_server_stopping(f, agent_list(f, json_pack("[]")));
    struct answer_call c = {.s = f->s};
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, answer_main, &c), 0);
    /* Seconds for a call that takes microseconds: only a call that waits
     * for the stop misses it (the stop lasts until the server is killed). */
    for (int i = 0; i < 200 && !__atomic_load_n(&c.done, __ATOMIC_ACQUIRE); i++)
        usleep(25000);
    bool answered = __atomic_load_n(&c.done, __ATOMIC_ACQUIRE);
    bool stopping = group_alive(pid);
    kill(-pid, SIGKILL); /* the stop ends */
    pthread_join(tid, NULL);
    if (!answered || !stopping)
        fail_msg("the holds and pod_name calls %s while server %d was being stopped (%s)",
                 answered ? "returned" : "waited", pid,
                 stopping ? "still stopping" : "the server had exited");
    assert_int_equal(c.holds, 1); /* the stopping server still holds its memory */
    assert_int_equal(c.named, 0);
    assert_string_equal(c.name, "legacy");
    /* Once it is stopped, it holds nothing and is no one's. */
    assert_true(slice_gone_within(f->root, "uid-legacy", 10000));
    assert_int_equal(holds_within(f, 0, 10000), 0);
    char ns[64], name[256];
    assert_int_equal(fx_remote_serve_pod_name(f->s, "uid-legacy", ns, sizeof(ns), name,
                                              sizeof(name)), -1);
    agent_stop(f, true);
}

/* The watch goes on while a server is being stopped: the supervisor never
 * waits for a server's exit under the watch's lock. A server that ignores
 * SIGTERM (the agent would wait for it as long as the test lets it) is
 * being stopped, its pod gone; a new pod the watch then delivers gets its
 * server, and the stopping server's memory is still counted, before the
 * test lets the first server go. Its pod coming back (the same UID, now
 * labelled) while it stops gets no second server beside it, and gets its
 * server again once the old one is gone. */
static void test_watch_while_a_server_stops(void **state)
{
    struct agent_fixture *f = *state;
    /* Its server says when SIGTERM came and runs on until SIGKILL. */
    agent_setup(f, &(struct agent_opts){.name = "remote-watch-stop", .ignores_term = true,
                                         .port_min = 47300});
    json_t *fresh = agent_pod(f, "new", "gpu-1"), *back = agent_pod(f, "legacy", "gpu-1");
    char *lists[3] = {agent_list(f, json_pack("[]")), agent_list(f, json_pack("[O]", fresh)),
                      agent_list(f, json_pack("[O, O]", fresh, back))};
    char *ev_new = agent_keep(f, event_of("ADDED", fresh)),
         *ev_back = agent_keep(f, event_of("ADDED", back));
    int pid = legacy_server_stopping(f, lists[0]);
    /* A new pod comes through the watch meanwhile. Seconds for what takes
     * a few ticks: only a watch that waits for the stop misses it (the
     * stop lasts until the test kills the server). */
    __atomic_store_n(&f->api.labelled, lists[1], __ATOMIC_RELEASE);
    __atomic_store_n(&f->api.event, ev_new, __ATOMIC_RELEASE);
    bool started = wait_for(f->root, "uid-new", true, 10000);
    bool stopping = group_alive(pid);
    struct fx_gpu_hold h[4];
    int holds = fx_remote_serve_holds(f->s, "GPU-g1-0", h, 4);
    if (!started || !stopping) {
        kill(-pid, SIGKILL); /* the stop ends */
        fail_msg("the new pod's server %s while server %d was being stopped (%s)",
                 started ? "started" : "did not start", pid,
                 stopping ? "still stopping" : "the server had exited");
    }
    assert_int_equal(holds, 2); /* the new slice, and the stopping one's memory */
    int pid_new = 0;
    recorded_uid(f->root, "uid-new", &pid_new);
    assert_true(pid_new > 0);
    /* The stopping server's pod comes back (the same UID, labelled now):
     * two watches deliver it, and the supervisor's ticks after them start
     * no second server beside the one being stopped. */
    __atomic_store_n(&f->api.labelled, lists[2], __ATOMIC_RELEASE);
    __atomic_store_n(&f->api.event, ev_back, __ATOMIC_RELEASE);
    /* The first watch counted after this may have read the old event;
     * the second read this one, and the third came once it was handled. */
    watches_deliver(&f->api, 3);
    usleep(500000); /* ten ticks */
    int pid_now = 0;
    recorded_uid(f->root, "uid-legacy", &pid_now);
    if (pid_now != pid || !group_alive(pid)) {
        kill(-pid, SIGKILL);
        if (pid_now > 0)
            kill(-pid_now, SIGKILL);
        fail_msg("server %d started for the pod that came back while server %d stopped",
                 pid_now, pid);
    }
    assert_int_equal(fx_remote_serve_holds(f->s, "GPU-g1-0", h, 4), 2);
    /* The stop ends: the pod is here again, and its server starts again. */
    kill(-pid, SIGKILL);
    for (int i = 0; i < 200 && (pid_now == pid || !server_running(f->root, "uid-legacy")); i++) {
        usleep(50000);
        recorded_uid(f->root, "uid-legacy", &pid_now);
    }
    assert_true(pid_now > 0 && pid_now != pid);
    assert_true(server_running(f->root, "uid-legacy"));
    assert_false(group_alive(pid));
    assert_int_equal(fx_remote_serve_holds(f->s, "GPU-g1-0", h, 4), 2);
    __atomic_store_n(&f->api.event, NULL, __ATOMIC_RELEASE);
    /* Both ignore SIGTERM: the test ends them, then the agent. */
    kill(-pid_now, SIGKILL);
    kill(-pid_new, SIGKILL);
    agent_stop(f, true);
    assert_false(group_alive(pid_now));
    assert_false(group_alive(pid_new));
    assert_false(slice_exists(f->root, "uid-legacy"));
    assert_false(slice_exists(f->root, "uid-new"));
}

/* A server being started is counted as holding its slice's memory even
 * when its pod goes while the start runs (out of the watch's lock): the
 * spawned server may run before its pid is recorded. The start is held
 * open by the test (its log is a FIFO the spawn opens for writing, which
 * waits for a reader); the watch then delivers the pod's deletion, and
 * the device plugin's view must still count the slice until the server
 * that start makes is stopped. */
static void test_holds_while_a_server_starts(void **state)
{
    struct agent_fixture *f = *state;
    agent_setup(f, &(struct agent_opts){.name = "remote-start", .port_min = 47400});
    char dir[300], fifo[340], token[340], pidf[340];
    json_t *fresh = agent_pod(f, "new", "gpu-1");
    char *lists[2] = {agent_list(f, json_pack("[]")), agent_list(f, json_pack("[O]", fresh))};
    char *ev_new = agent_keep(f, event_of("ADDED", fresh)),
         *ev_gone = agent_keep(f, event_of("DELETED", fresh));
    f->api.all = agent_list(f, json_pack("[]"));
    f->api.labelled = lists[0];
    agent_start(f);
    struct fx_gpu_hold h[4];
    int n = -1;
    for (int i = 0; i < 200 && (n = fx_remote_serve_holds(f->s, "GPU-g1-0", h, 4)) < 0; i++)
        usleep(50000);
    assert_int_equal(n, 0); /* the first list came in (after the adoption pass) */
    /* The slice's log a FIFO: the spawn waits in its open for a reader. */
    snprintf(dir, sizeof(dir), "%s/remote/uid-new", f->root);
    snprintf(fifo, sizeof(fifo), "%s/server.log", dir);
    snprintf(token, sizeof(token), "%s/token", dir);
    snprintf(pidf, sizeof(pidf), "%s/server.pid", dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    __atomic_store_n(&f->api.labelled, lists[1], __ATOMIC_RELEASE);
    __atomic_store_n(&f->api.event, ev_new, __ATOMIC_RELEASE);
    assert_true(file_within(token, 10000)); /* its start runs */
    /* The pod goes while the start is held open. */
    __atomic_store_n(&f->api.labelled, lists[0], __ATOMIC_RELEASE);
    __atomic_store_n(&f->api.event, ev_gone, __ATOMIC_RELEASE);
    watches_deliver(&f->api, 3);
    n = fx_remote_serve_holds(f->s, "GPU-g1-0", h, 4);
    struct stat st;
    bool in_flight = stat(pidf, &st) != 0;
    /* The start goes on: the server it makes is stopped, its pod gone. */
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    assert_true(rfd >= 0);
    if (!in_flight || n != 1)
        fail_msg("the plugin's view counted %d slice(s) on GPU-g1-0 while a server was being "
                 "started for a pod deleted meanwhile (start %s): want 1",
                 n, in_flight ? "still held" : "already done");
    int pid = 0;
    for (int i = 0; i < 200 && pid <= 0; i++) {
        usleep(50000);
        recorded_uid(f->root, "uid-new", &pid);
    }
    assert_true(pid > 0);
    assert_true(slice_gone_within(f->root, "uid-new", 10000));
    for (int i = 0; i < 200 && group_alive(pid); i++)
        usleep(50000);
    bool alive = group_alive(pid);
    if (alive)
        kill(-pid, SIGKILL);
    assert_false(alive);
    assert_int_equal(holds_within(f, 0, 10000), 0);
    __atomic_store_n(&f->api.event, NULL, __ATOMIC_RELEASE);
    agent_stop(f, true);
    close(rfd);
}

/* An adopted server whose pod went while no agent ran is stopped after the
 * restarted agent's first full list; until it is reaped, the device
 * plugin's view counts its slice's memory on its GPU, as for a server the
 * agent started itself (the pod, gone, no longer says which GPU or how
 * much: server.pid does). The server ignores SIGTERM and the stop wait is
 * long, so the stop lasts until the test kills it. */
static void test_adopted_stop_is_counted(void **state)
{
    struct agent_fixture *f = *state;
    /* Its server (which an agent adopts) says when SIGTERM came and runs
     * on until SIGKILL. */
    agent_setup(f, &(struct agent_opts){.name = "remote-adopt-stop", .ignores_term = true,
                                         .adoptable = true, .port_min = 47500});
    json_t *pod = agent_pod(f, "new", "gpu-1");
    char *with = agent_list(f, json_pack("[O]", pod)), *without = agent_list(f, json_pack("[]"));
    f->api.all = f->api.labelled = with;
    f->cfg.stop_wait_ms = 600000;
    agent_start(f);
    int pid = agent_server_pid(f, "uid-new");
    /* The agent goes, its server stays; the pod is deleted meanwhile. */
    agent_stop(f, false);
    assert_true(group_alive(pid));
    __atomic_store_n(&f->api.all, without, __ATOMIC_RELEASE);
    __atomic_store_n(&f->api.labelled, without, __ATOMIC_RELEASE);
    agent_serve(f);
    assert_true(file_within(f->term, 20000)); /* adopted, then stopped: its pod is gone */
    struct fx_gpu_hold h[4];
    int n = fx_remote_serve_holds(f->s, "GPU-g1-0", h, 4);
    bool stopping = group_alive(pid);
    kill(-pid, SIGKILL); /* the stop ends */
    if (n != 1 || !stopping)
        fail_msg("the plugin's view counted %d slice(s) on GPU-g1-0 while adopted server %d "
                 "was being stopped (%s): want 1", n, pid,
                 stopping ? "still stopping" : "the server had exited");
    assert_int_equal(h[0].mem, fx_default_slice_mem(1, 30, 0, 80 * GIB));
    assert_true(slice_gone_within(f->root, "uid-new", 10000));
    assert_int_equal(holds_within(f, 0, 10000), 0);
    agent_stop(f, true);
    assert_false(group_alive(pid));
}

/* fx_remote_serve_stop, its servers too, for a thread of the test. */
static void *serve_stop_main(void *p)
{
    fx_remote_serve_stop(p, true);
    return NULL;
}

/* The lines of file path (0: none). */
static int lines_of(const char *path)
{
    FILE *f = fopen(path, "re");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

/* The agent's shutdown with its servers stops them all at once: each gets
 * SIGTERM before the agent waits for any, so servers slow to exit take one
 * stop wait, not one each. Two servers ignore SIGTERM and the stop wait is
 * long: both must have had SIGTERM while the first is still waited for
 * (the test then kills them). */
static void test_shutdown_stops_servers_at_once(void **state)
{
    struct agent_fixture *f = *state;
    agent_setup(f, &(struct agent_opts){.name = "remote-shutdown", .ignores_term = true,
                                         .port_min = 47600});
    json_t *a = agent_pod(f, "a", "gpu-1"), *b = agent_pod(f, "b", "gpu-1");
    f->api.all = f->api.labelled = agent_list(f, json_pack("[O, O]", a, b));
    f->cfg.stop_wait_ms = 600000;
    agent_start(f);
    int pid_a = agent_server_pid(f, "uid-a"), pid_b = agent_server_pid(f, "uid-b");
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, serve_stop_main, f->s), 0);
    /* Seconds for what takes a moment: only a shutdown that waits for one
     * server before it stops the next misses it. */
    int n = 0;
    for (int i = 0; i < 200 && (n = lines_of(f->term)) < 2; i++)
        usleep(50000);
    bool alive = group_alive(pid_a) && group_alive(pid_b);
    kill(-pid_a, SIGKILL); /* the stops end */
    kill(-pid_b, SIGKILL);
    pthread_join(tid, NULL);
    f->s = NULL;
    if (n != 2 || !alive)
        fail_msg("%d of 2 servers had SIGTERM from the agent's shutdown while %s", n,
                 alive ? "both still ran" : "one had exited already");
    assert_false(slice_exists(f->root, "uid-a"));
    assert_false(slice_exists(f->root, "uid-b"));
}

/* A remote pod of 2 GPUs (GPU-g1-0 and GPU-g1-1 of gpu-1, 30 cores and 8
 * GiB each), labelled for gpu-1. */
static json_t *agent_pod2(struct agent_fixture *f, const char *name)
{
    json_t *p = agent_pod(f, name, "gpu-1");
    json_object_set_new(kube_get(p, "metadata.annotations"), FX_ANN_ALLOCATION,
                        json_string("{\"gpus\":[{\"uuid\":\"GPU-g1-0\",\"index\":0,"
                                    "\"cores\":30,\"memory\":8589934592},{\"uuid\":"
                                    "\"GPU-g1-1\",\"index\":1,\"cores\":30,\"memory\":"
                                    "8589934592}],\"remote\":{\"node\":\"gpu-1\"}}"));
    json_t *lim = json_object_get(json_object_get(json_array_get(kube_get(p, "spec.containers"),
                                                                 0),
                                                  "resources"),
                                  "limits");
    assert_non_null(lim);
    json_object_set_new(lim, "flexpu.io/gpu", json_string("2"));
    json_object_set_new(lim, "flexpu.io/gpu-memory", json_string("8Gi"));
    return p;
}

/* How many GPUs' holds of 8 GiB the plugin's view has for GPU-g1-0 and
 * GPU-g1-1 (one each for a slice of both). */
static void holds_of_two(const struct agent_fixture *f, int want)
{
    static const char *const gpus[] = {"GPU-g1-0", "GPU-g1-1"};
    for (int g = 0; g < 2; g++) {
        struct fx_gpu_hold h[4];
        int n = fx_remote_serve_holds(f->s, gpus[g], h, 4);
        for (int t = 0; t < 200 && n != want; t++) {
            usleep(50000);
            n = fx_remote_serve_holds(f->s, gpus[g], h, 4);
        }
        if (n != want)
            fail_msg("%d hold(s) on %s: want %d", n, gpus[g], want);
        for (int i = 0; i < n; i++)
            assert_int_equal(h[i].mem, 8 * GIB);
    }
}

/* A remote pod of 2 GPUs: one server for both (its server.pid names both
 * GPUs), one slice whose policy (30 cores and 8 GiB on each GPU) the
 * runtime applies on each, its quota held on each GPU in the plugin's
 * view, through an agent's restart (adopted, its pod gone meanwhile: held
 * on both while it stops), and all of it removed with the server. */
static void test_agent_two_gpus(void **state)
{
    struct agent_fixture *f = *state;
    agent_setup(f, &(struct agent_opts){.name = "remote-two", .ignores_term = true,
                                         .adoptable = true, .port_min = 47700});
    json_t *pod = agent_pod2(f, "two");
    char *with = agent_list(f, json_pack("[O]", pod)), *without = agent_list(f, json_pack("[]"));
    f->api.all = f->api.labelled = with;
    f->cfg.stop_wait_ms = 600000;
    agent_start(f);
    int pid = agent_server_pid(f, "uid-two");
    char path[512];
    snprintf(path, sizeof(path), "%s/remote/uid-two/server.pid", f->root);
    char *text = read_all(path);
    assert_non_null(strstr(text, " GPU-g1-0 8589934592 GPU-g1-1\n"));
    free(text);
    /* One server: one directory under <root>/remote. */
    snprintf(path, sizeof(path), "%s/remote", f->root);
    DIR *d = opendir(path);
    assert_non_null(d);
    int dirs = 0;
    for (struct dirent *e; (e = readdir(d));)
        dirs += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(dirs, 1);
    snprintf(path, sizeof(path), "%s/slices/remote-uid-two/slice.conf", f->root);
    struct fx_slice_config c;
    struct flexpu_error err = {0};
    fx_config_defaults(&c);
    if (fx_config_load_file(&c, path, &err) != 1)
        fail_msg("%s: not read (%s)", path, err.msg);
    assert_string_equal(c.tenant, "uid-two");
    assert_int_equal(c.compute_share, 30);
    assert_int_equal(c.memory_limit, 8 * GIB);
    holds_of_two(f, 1);
    /* The agent restarts, the pod gone meanwhile: it adopts the server and
     * stops it; both GPUs' quotas held until it is reaped. */
    agent_stop(f, false);
    assert_true(group_alive(pid));
    __atomic_store_n(&f->api.all, without, __ATOMIC_RELEASE);
    __atomic_store_n(&f->api.labelled, without, __ATOMIC_RELEASE);
    agent_serve(f);
    assert_true(file_within(f->term, 20000));
    bool stopping = group_alive(pid);
    struct fx_gpu_hold h[4];
    int n0 = fx_remote_serve_holds(f->s, "GPU-g1-0", h, 4);
    int n1 = fx_remote_serve_holds(f->s, "GPU-g1-1", h, 4);
    kill(-pid, SIGKILL);
    if (!stopping || n0 != 1 || n1 != 1)
        fail_msg("while adopted server %d stopped (%s): %d and %d hold(s) on GPU-g1-0 and "
                 "GPU-g1-1, want 1 and 1", pid, stopping ? "still stopping" : "exited", n0, n1);
    assert_int_equal(h[0].mem, 8 * GIB);
    assert_true(slice_gone_within(f->root, "uid-two", 10000));
    holds_of_two(f, 0);
    /* Its directory goes after its slice (slice_files_remove): waited for. */
    snprintf(path, sizeof(path), "%s/remote/uid-two", f->root);
    for (int t = 0; t < 200 && access(path, F_OK) == 0; t++)
        usleep(50000);
    assert_true(access(path, F_OK) != 0);
    agent_stop(f, true);
    assert_false(group_alive(pid));
}

/* The agent's warnings about server.pid (adopt), kept for the test that
 * reads them; every line still goes to stderr. The agent's threads log
 * too: under a lock. */
static pthread_mutex_t pid_logged_mu = PTHREAD_MUTEX_INITIALIZER;
static char pid_logged[4096];

static void keep_pid_line(const char *line, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "%s\n", line);
    if (!strstr(line, "server.pid"))
        return;
    pthread_mutex_lock(&pid_logged_mu);
    size_t n = strlen(pid_logged);
    snprintf(pid_logged + n, sizeof(pid_logged) - n, "%s\n", line);
    pthread_mutex_unlock(&pid_logged_mu);
}

/* A server.pid whose holds or server cannot be known is malformed: a GPU
 * named twice (its quota would count twice there), a negative quota
 * (counted nowhere), a GPU this node does not have (a hold on nothing), a
 * pid that cannot be read or none at all. A restarted agent does not adopt
 * the server but stops it at once (SIGKILL: this one ignores SIGTERM and
 * the stop wait is long, so an adopted one would still be stopping),
 * found by its command line, group and user where its pid is unknown, and
 * removes its files, saying which field of which file with what value;
 * the plugin's view holds nothing for it. So is a live server whose
 * server.pid is absent (an agent that ended before writing it). Each
 * round: a server started for pod "new", the agent stopped (the server
 * stays), its server.pid rewritten, the pod deleted, the agent started
 * again. */
static void test_adopt_malformed_server_pid(void **state)
{
    struct agent_fixture *f = *state;
    agent_setup(f, &(struct agent_opts){.name = "remote-pidfile", .ignores_term = true,
                                         .adoptable = true, .port_min = 47800});
    json_t *pod = agent_pod(f, "new", "gpu-1");
    char *with = agent_list(f, json_pack("[O]", pod)), *without = agent_list(f, json_pack("[]"));
    f->api.all = f->api.labelled = with;
    f->cfg.stop_wait_ms = 600000;
    /* tail: after "PID PORT UID"; else text: the whole file (NULL: none). */
    static const struct {
        const char *tail, *text, *logged;
    } rounds[] = {
        {"GPU-g1-0 1024 GPU-g1-0", NULL, "field=gpu value=\"GPU-g1-0\""},
        {"GPU-g1-0 -1", NULL, "field=memory value=\"-1\""},
        {"GPU-g1-0 +1024", NULL, "field=memory value=\"+1024\""},
        {"GPU-g9-0 1024", NULL, "field=gpu value=\"GPU-g9-0\""},
        {NULL, "pid 7100\n", "field=pid value=\"pid\""},
        {NULL, "", "field=pid value=\"\""},
        {NULL, NULL, "without a server.pid"},
    };
    enum flexpu_log_level was = flexpu_log_get_level();
    for (size_t round = 0; round < sizeof(rounds) / sizeof(rounds[0]); round++) {
        if (round == 0)
            agent_start(f);
        else
            agent_serve(f);
        int pid = agent_server_pid(f, "uid-new");
        agent_stop(f, false);
        assert_true(group_alive(pid));
        char path[512], text[256];
        snprintf(path, sizeof(path), "%s/remote/uid-new/server.pid", f->root);
        int rpid = 0;
        unsigned run_uid = recorded_uid(f->root, "uid-new", &rpid);
        assert_int_equal(rpid, pid);
        if (rounds[round].tail) {
            snprintf(text, sizeof(text), "%d 7100 %u %s\n", pid, run_uid, rounds[round].tail);
            write_file(path, text, 0600);
        } else if (rounds[round].text) {
            write_file(path, rounds[round].text, 0600);
        } else {
            assert_int_equal(unlink(path), 0);
        }
        __atomic_store_n(&f->api.all, without, __ATOMIC_RELEASE);
        __atomic_store_n(&f->api.labelled, without, __ATOMIC_RELEASE);
        pid_logged[0] = 0;
        flexpu_log_set_level(FLEXPU_LOG_INFO);
        flexpu_log_set_sink(keep_pid_line, NULL);
        agent_serve(f);
        bool alive = true;
        for (int t = 0; t < 200 && (alive = group_alive(pid)); t++)
            usleep(50000);
        struct fx_gpu_hold h[4];
        int n = fx_remote_serve_holds(f->s, "GPU-g1-0", h, 4);
        if (alive) {
            kill(-pid, SIGKILL);
            fail_msg("server.pid \"%s\": server %d adopted or left (still running), %d "
                     "hold(s) on GPU-g1-0", rounds[round].tail ? rounds[round].tail
                     : rounds[round].text ? rounds[round].text : "(none)", pid, n);
        }
        assert_int_equal(holds_within(f, 0, 10000), 0);
        assert_true(slice_gone_within(f->root, "uid-new", 10000));
        snprintf(path, sizeof(path), "%s/remote/uid-new", f->root);
        assert_true(access(path, F_OK) != 0);
        /* Said once, with the file, the field and its value, and the
         * server stopped. */
        char stopped[32];
        snprintf(stopped, sizeof(stopped), "stopped=%d", pid);
        pthread_mutex_lock(&pid_logged_mu);
        char said[sizeof(pid_logged)];
        snprintf(said, sizeof(said), "%s", pid_logged);
        pthread_mutex_unlock(&pid_logged_mu);
        if (!strstr(said, rounds[round].logged) || !strstr(said, stopped) ||
            !strstr(said, "/remote/uid-new/server.pid") || strchr(said, '\n') != strrchr(said, '\n'))
            fail_msg("round %zu: want one warning with %s and %s, logged:\n%s", round,
                     rounds[round].logged, stopped, said);
        /* The pod again: a new server for the next round. */
        __atomic_store_n(&f->api.all, with, __ATOMIC_RELEASE);
        __atomic_store_n(&f->api.labelled, with, __ATOMIC_RELEASE);
        agent_stop(f, true);
        flexpu_log_set_sink(NULL, NULL);
        flexpu_log_set_level(was);
    }
}

/* A look-alike of slice uid's server, as a compromised server could start
 * one: `fake-remoted ... --slice UID` leading its own group, as the user
 * the servers run as (--remote-uid, when the agent drops). Returns once its
 * command line is that. */
static pid_t look_alike(const struct agent_fixture *f, const char *uid)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setsid() < 0 ||
            (f->cfg.drop && (setgid(f->cfg.gid) != 0 || setuid(f->cfg.uid) != 0)))
            _exit(127);
        execl("/bin/sh", f->bin, "-c", "sleep 60; :", f->bin, "--slice", uid, (char *)NULL);
        _exit(127);
    }
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    for (int t = 0; t < 500; t++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (n > 0 && memmem(buf, (size_t)n, "--slice", 8))
            return pid;
        usleep(10000);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail_msg("look-alike %d never ran", (int)pid);
    return -1;
}

/* A slice whose server.pid is malformed has each of its servers stopped,
 * however many there are: a compromised server that starts look-alikes
 * (`flexpu-remoted --slice UID`) cannot hide one behind them (the scan
 * stopped after 4). The warning stays one bounded line, with a count. */
static void test_adopt_stops_every_match(void **state)
{
    struct agent_fixture *f = *state;
    agent_setup(f, &(struct agent_opts){.name = "remote-alikes", .ignores_term = true,
                                         .adoptable = true, .port_min = 48000});
    json_t *pod = agent_pod(f, "new", "gpu-1");
    char *with = agent_list(f, json_pack("[O]", pod)), *without = agent_list(f, json_pack("[]"));
    f->api.all = f->api.labelled = with;
    f->cfg.stop_wait_ms = 600000;
    agent_start(f);
    enum { ALIKES = 6 };
    pid_t pids[1 + ALIKES];
    pids[0] = agent_server_pid(f, "uid-new");
    agent_stop(f, false);
    assert_true(group_alive(pids[0]));
    for (int i = 1; i <= ALIKES; i++)
        pids[i] = look_alike(f, "uid-new");
    char path[512];
    snprintf(path, sizeof(path), "%s/remote/uid-new/server.pid", f->root);
    write_file(path, "pid 7100\n", 0600);
    __atomic_store_n(&f->api.all, without, __ATOMIC_RELEASE);
    __atomic_store_n(&f->api.labelled, without, __ATOMIC_RELEASE);
    pid_logged[0] = 0;
    enum flexpu_log_level was = flexpu_log_get_level();
    flexpu_log_set_level(FLEXPU_LOG_INFO);
    flexpu_log_set_sink(keep_pid_line, NULL);
    agent_serve(f);
    int alive = 0;
    for (int t = 0; t < 200; t++) {
        alive = 0;
        for (int i = 0; i <= ALIKES; i++)
            alive += group_alive(pids[i]);
        if (!alive)
            break;
        usleep(50000);
    }
    for (int i = 1; i <= ALIKES; i++) {
        kill(-pids[i], SIGKILL);
        waitpid(pids[i], NULL, 0);
    }
    if (group_alive(pids[0]))
        kill(-pids[0], SIGKILL);
    agent_stop(f, true);
    flexpu_log_set_sink(NULL, NULL);
    flexpu_log_set_level(was);
    if (alive)
        fail_msg("%d of the %d servers of uid-new left running", alive, 1 + ALIKES);
    pthread_mutex_lock(&pid_logged_mu);
    char said[sizeof(pid_logged)];
    snprintf(said, sizeof(said), "%s", pid_logged);
    pthread_mutex_unlock(&pid_logged_mu);
    char count[32];
    snprintf(count, sizeof(count), "count=%d", 1 + ALIKES);
    if (!strstr(said, "field=pid value=\"pid\"") || !strstr(said, count) ||
        strchr(said, '\n') != strrchr(said, '\n') || strlen(said) > 600)
        fail_msg("want one bounded warning with %s, logged:\n%s", count, said);
}

/* <root>/remote, where the servers an earlier agent left are found,
 * that cannot be read (here a file, not a directory): the agent does not
 * start, naming it, rather than start a second server beside each one it
 * could not adopt. */
static void test_adopt_unreadable_dir(void **state)
{
    struct agent_fixture *f = *state;
    agent_setup(f, &(struct agent_opts){.name = "remote-nodir", .port_min = 47900});
    char path[128];
    snprintf(path, sizeof(path), "%s/remote", f->root);
    write_file(path, "", 0600);
    http_start(&f->srv);
    f->serving = true;
    loopback_config(f->srv.port, &f->kc);
    struct flexpu_error err = {0};
    f->s = fx_remote_serve_start(&f->cfg, &err);
    if (f->s) {
        agent_stop(f, true);
        fail_msg("the agent started with %s not a directory", path);
    }
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, strerror(ENOTDIR)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_role),        cmocka_unit_test(test_server_plan),
        cmocka_unit_test(test_server_cmd),  cmocka_unit_test(test_token),
        cmocka_unit_test(test_endpoint),    cmocka_unit_test(test_client_env),
        cmocka_unit_test(test_spawn),       cmocka_unit_test(test_remote_ids),
        cmocka_unit_test(test_server_limits),
        cmocka_unit_test_setup_teardown(test_agent_watch, agent_alloc, agent_teardown),
        cmocka_unit_test_setup_teardown(test_answers_while_a_server_stops, agent_alloc,
                                        agent_teardown),
        cmocka_unit_test_setup_teardown(test_watch_while_a_server_stops, agent_alloc,
                                        agent_teardown),
        cmocka_unit_test_setup_teardown(test_holds_while_a_server_starts, agent_alloc,
                                        agent_teardown),
        cmocka_unit_test_setup_teardown(test_adopted_stop_is_counted, agent_alloc,
                                        agent_teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_stops_servers_at_once, agent_alloc,
                                        agent_teardown),
        cmocka_unit_test(test_server_plan_gpus),
        cmocka_unit_test(test_server_plan_cap),
        cmocka_unit_test_setup_teardown(test_agent_two_gpus, agent_alloc, agent_teardown),
        cmocka_unit_test_setup_teardown(test_adopt_malformed_server_pid, agent_alloc,
                                        agent_teardown),
        cmocka_unit_test_setup_teardown(test_adopt_stops_every_match, agent_alloc,
                                        agent_teardown),
        cmocka_unit_test_setup_teardown(test_adopt_unreadable_dir, agent_alloc,
                                        agent_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
