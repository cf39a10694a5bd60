/* SPDX-License-Identifier: Apache-2.0 */
/* libflexpu-cuda.so against the fake driver, as a container would run it:
 * preloaded into CUDA client processes that the tests drive command by
 * command. What is asserted is read back from the processes (what CUDA
 * tells them) and from the shared state (what the node sees). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/arbagent.h"
#include "runtime/state.h"
#include "spawn.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static char state_dir[256];
static char fake_dir[256];

/* --agent: the node agent's arbiter runs in this process, over agent_root
 * (arbagent.h's layout), and every client is a slice of it: its policy is
 * what its FLEXPU_* compute settings say, written as the agent's
 * slice.conf, and it is given the agent's page and its own ledger
 * directory. */
#include "agent_fixture.h"

/* The value of NAME=... in `env`, or `dflt`. */
static const char *env_value(const char *const *env, const char *name, const char *dflt)
{
    size_t n = strlen(name);
    for (int i = 0; env && env[i]; i++)
        if (strncmp(env[i], name, n) == 0 && env[i][n] == '=')
            return env[i] + n + 1;
    return dflt;
}

/* Makes the client a slice of the agent: its slice.conf, and its
 * FLEXPU_ARBITER_DIR and FLEXPU_LEDGER_DIR, added to `extra` in `out`. */
static void agent_slice(const char *const *extra, const char **out, char (*buf)[400])
{
    const char *tenant = env_value(extra, "FLEXPU_TENANT", "default");
    char path[700];
    snprintf(path, sizeof(path), "mkdir -p %s/slices/%s %s/ledger/%s", agent_root, tenant,
             agent_root, tenant);
    assert_int_equal(system(path), 0);
    snprintf(path, sizeof(path), "%s/slices/%s/slice.conf", agent_root, tenant);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "tenant = %s\ncompute_share = %s\ncompute_cap = %s\npriority = %s\n", tenant,
            env_value(extra, "FLEXPU_COMPUTE_SHARE", "0"),
            env_value(extra, "FLEXPU_COMPUTE_CAP", "100"),
            env_value(extra, "FLEXPU_PRIORITY", "normal"));
    fclose(f);
    int n = 0;
    for (int i = 0; extra && extra[i] && n < 16; i++)
        out[n++] = extra[i];
    snprintf(buf[0], 400, "FLEXPU_ARBITER_DIR=%s/arb", agent_root);
    snprintf(buf[1], 400, "FLEXPU_LEDGER_DIR=%s/ledger/%s", agent_root, tenant);
    out[n++] = buf[0];
    out[n++] = buf[1];
    out[n] = NULL;
}


/* Starts a client as a container would run it (spawn.h), with `extra`
 * NAME=VALUE pairs (NULL-ended). */
static void client_start_lib(struct fx_client *c, const char *lib, const char *const *extra)
{
    static const char *const defaults[] = {
        "FAKECUDA_TOTAL_MEM=17179869184", "FAKECUDA_CTX_OVERHEAD=314572800",
        "FLEXPU_CONTEXT_OVERHEAD=0", "FLEXPU_LOG_LEVEL=error", NULL};
    const char *with_agent[20];
    char agent_env[2][400];
    if (agent) {
        agent_slice(extra, with_agent, agent_env);
        extra = with_agent;
    }
    fx_client_spawn(c, lib, FX_TEST_CLIENT, state_dir, fake_dir, extra, defaults);
}

static void client_start(struct fx_client *c, const char *const *extra)
{
    client_start_lib(c, FX_TEST_LIB, extra);
}

static void client_stop(struct fx_client *c)
{
    fprintf(c->to, "exit\n");
    fclose(c->to);
    fclose(c->from);
    int st;
    waitpid(c->pid, &st, 0);
}

static void client_kill(struct fx_client *c)
{
    kill(c->pid, SIGKILL);
    fclose(c->to);
    fclose(c->from);
    int st;
    waitpid(c->pid, &st, 0);
}

/* A client with a context on device 0. */
static void client_ready(struct fx_client *c, const char *const *extra)
{
    client_start(c, extra);
    assert_string_equal(fx_cmd(c, "init"), "ok");
    assert_string_equal(fx_cmd(c, "ctx 0"), "ok");
}

/* What the node sees: the bytes held by the live processes of `tenant`. */
static uint64_t node_usage(const char *tenant)
{
    char dir_path[300];
    snprintf(dir_path, sizeof(dir_path), "%s", state_dir);
    char path[512];
    /* The fake's device 0 UUID is whatever it reports; find the one file. */
    FILE *ls = NULL;
    char cmdline[600];
    snprintf(cmdline, sizeof(cmdline), "ls %s/ledger/%s/*.ledger 2>/dev/null | head -n 1",
             dir_path, tenant);
    ls = popen(cmdline, "r");
    assert_non_null(ls);
    if (!fgets(path, sizeof(path), ls)) {
        pclose(ls);
        return 0;
    }
    pclose(ls);
    path[strcspn(path, "\n")] = '\0';
    struct fx_ledger_handle l;
    struct flexpu_error err = {0};
    assert_int_equal(fx_ledger_open_readonly(&l, path, &err), 0);
    uint64_t u = fx_ledger_used(&l, NULL);
    fx_ledger_detach(&l);
    return u;
}

static int setup(void **state)
{
    (void)state;
    snprintf(state_dir, sizeof(state_dir), "/tmp/fxrt-state-XXXXXX");
    assert_non_null(mkdtemp(state_dir));
    snprintf(fake_dir, sizeof(fake_dir), "/tmp/fxrt-fake-XXXXXX");
    assert_non_null(mkdtemp(fake_dir));
    return 0;
}

/* As setup, with the node agent's arbiter running (--agent). */
static int setup_agent(void **state)
{
    setup(state);
    agent_thread_start(state_dir);
    return 0;
}

static int teardown(void **state);

static int teardown_agent(void **state)
{
    agent_thread_stop();
    return teardown(state);
}

static int teardown(void **state)
{
    (void)state;
    char c[600];
    snprintf(c, sizeof(c), "rm -rf %s %s", state_dir, fake_dir);
    return system(c) == 0 ? 0 : -1;
}

/* ---- entry points ---------------------------------------------------------- */

static void test_lookup_returns_hooks_of_the_right_variant(void **state)
{
    (void)state;
    struct fx_client c;
    client_start(&c, NULL);
    assert_string_equal(fx_cmd(&c, "lookup cuMemAlloc 13000 0"), "ok libflexpu-cuda.so cuMemAlloc_v2");
    assert_string_equal(fx_cmd(&c, "lookup cuMemAllocAsync 13000 2"),
                        "ok libflexpu-cuda.so cuMemAllocAsync_ptsz");
    assert_string_equal(fx_cmd(&c, "lookup cuMemAllocAsync 13000 0"),
                        "ok libflexpu-cuda.so cuMemAllocAsync");
    assert_string_equal(fx_cmd(&c, "lookup cuCtxCreate 13000 0"),
                        "ok libflexpu-cuda.so cuCtxCreate_v4");
    assert_string_equal(fx_cmd(&c, "lookup cuCtxCreate 12040 0"),
                        "ok libflexpu-cuda.so cuCtxCreate_v3");
    assert_string_equal(fx_cmd(&c, "lookup cuGetProcAddress 13000 0"),
                        "ok libflexpu-cuda.so cuGetProcAddress_v2");
    assert_string_equal(fx_cmd(&c, "lookup cuGraphLaunch 13000 2"),
                        "ok libflexpu-cuda.so cuGraphLaunch_ptsz");
    /* Not hooked: the driver's own function, untouched. */
    assert_string_equal(fx_cmd(&c, "lookup cuStreamSynchronize 13000 0"),
                        "ok libcuda.so.1 cuStreamSynchronize");
    /* The driver's status passes through. */
    assert_string_equal(fx_cmd(&c, "lookup cuNoSuchFunction 13000 0"), "err 500 status=1");
    /* dlsym on the driver's handle. */
    assert_string_equal(fx_cmd(&c, "dlsym cuMemAlloc_v2"), "ok libflexpu-cuda.so cuMemAlloc_v2");
    assert_string_equal(fx_cmd(&c, "dlsym cuMemFreeAsync"), "ok libcuda.so.1 cuMemFreeAsync");
    /* Older variants, which real libraries still ask for (libcudart 12 and
     * 13 ask for cuDevicePrimaryCtxRelease at 7000), each get their own
     * hook, by lookup and by name. */
    static const char *const legacy[][2] = {
        {"cuDevicePrimaryCtxRelease 7000 0", "cuDevicePrimaryCtxRelease"},
        {"cuDevicePrimaryCtxReset 7000 0", "cuDevicePrimaryCtxReset"},
        {"cuCtxCreate 3010 0", "cuCtxCreate"},
        {"cuCtxDestroy 3010 0", "cuCtxDestroy"},
        {"cuMemAlloc 3000 0", "cuMemAlloc"},
        {"cuMemAllocPitch 3000 0", "cuMemAllocPitch"},
        {"cuMemFree 3000 0", "cuMemFree"},
        {"cuArrayCreate 3000 0", "cuArrayCreate"},
        {"cuArray3DCreate 3000 0", "cuArray3DCreate"},
        {"cuMemGetInfo 3000 0", "cuMemGetInfo"},
        {"cuDeviceTotalMem 3000 0", "cuDeviceTotalMem"},
        {"cuLaunch 13000 0", "cuLaunch"},
        {"cuLaunchGrid 13000 0", "cuLaunchGrid"},
        {"cuLaunchGridAsync 13000 0", "cuLaunchGridAsync"},
        {"cuLaunchCooperativeKernelMultiDevice 13000 0", "cuLaunchCooperativeKernelMultiDevice"},
    };
    for (size_t i = 0; i < sizeof(legacy) / sizeof(legacy[0]); i++) {
        char expect[160];
        snprintf(expect, sizeof(expect), "ok libflexpu-cuda.so %s", legacy[i][1]);
        assert_string_equal(fx_cmd(&c, "lookup %s", legacy[i][0]), expect);
        assert_string_equal(fx_cmd(&c, "dlsym %s", legacy[i][1]), expect);
    }
    client_stop(&c);
}

static void test_unknown_allocation_variant_is_refused(void **state)
{
    (void)state;
    struct fx_client c;
    client_start(&c, NULL);
    /* A variant newer than the library (the fake's cuMemAlloc_v9 stands for
     * one) has no hook: handing it out would let allocations escape the
     * quota, so the caller gets the driver's answer for an unknown symbol,
     * by lookup and by name. */
    assert_string_equal(fx_cmd(&c, "lookup cuMemAlloc 99000 0"), "err 500 status=1");
    assert_string_equal(fx_cmd(&c, "dlsym cuMemAlloc_v9"), "ok null");
    client_stop(&c);
}

/* The older ABIs keep the quota and the slice's view: 32-bit reports,
 * 32-bit descriptors, and context calls that free what the context held. */
static void test_legacy_variants_keep_the_quota(void **state)
{
    (void)state;
    struct fx_client c;
    const char *const env[] = {"FLEXPU_TENANT=a", "FLEXPU_MEMORY_LIMIT=1Gi",
                               "FLEXPU_CONTEXT_OVERHEAD=100Mi", NULL};
    client_ready(&c, env);
    char expect[64];
    snprintf(expect, sizeof(expect), "ok %llu %llu", GiB - 100 * MiB, GiB);
    assert_string_equal(fx_cmd(&c, "legacy meminfo"), expect);
    snprintf(expect, sizeof(expect), "ok %llu", GiB);
    assert_string_equal(fx_cmd(&c, "legacy totalmem"), expect);
    /* Over the quota: refused before the driver is asked; within it, the
     * driver's own answer (the fake has no 32-bit addresses), nothing kept. */
    assert_string_equal(fx_cmd(&c, "legacy alloc %llu", 2 * GiB), "err 2");
    assert_string_equal(fx_cmd(&c, "legacy alloc %llu", 64 * MiB), "err 801");
    assert_string_equal(fx_cmd(&c, "legacy pitch 1048576 2048"), "err 2");
    assert_string_equal(fx_cmd(&c, "legacy pitch 1024 16"), "err 801");
    assert_int_equal(node_usage("a"), 100 * MiB);
    /* 32-bit array descriptors: charged like the current ones, credited by
     * the current destroy. */
    assert_string_equal(fx_cmd(&c, "legacy array 8192 8192"), "ok 0");
    assert_int_equal(node_usage("a"), 100 * MiB + 256 * MiB);
    assert_string_equal(fx_cmd(&c, "legacy array3d 1024 1024 128"), "ok 1");
    assert_int_equal(node_usage("a"), 100 * MiB + 256 * MiB + 512 * MiB);
    assert_string_equal(fx_cmd(&c, "legacy array3d 1024 1024 128"), "err 2");
    assert_string_equal(fx_cmd(&c, "arrfree 1"), "ok");
    assert_string_equal(fx_cmd(&c, "arrfree 0"), "ok");
    assert_int_equal(node_usage("a"), 100 * MiB);
    /* The CUDA 7.0 release and reset (libcudart's) credit the primary
     * context's memory; the 2.0 create and destroy credit their own. */
    assert_string_equal(fx_cmd(&c, "alloc %llu", 300 * MiB), "ok 2");
    assert_string_equal(fx_cmd(&c, "legacy release 0"), "ok");
    assert_int_equal(node_usage("a"), 0);
    assert_string_equal(fx_cmd(&c, "ctx 0"), "ok");
    assert_string_equal(fx_cmd(&c, "alloc %llu", 300 * MiB), "ok 3");
    assert_string_equal(fx_cmd(&c, "legacy reset 0"), "ok");
    assert_int_equal(node_usage("a"), 0);
    assert_string_equal(fx_cmd(&c, "ctx 0"), "ok");
    assert_string_equal(fx_cmd(&c, "legacy ctxnew 0"), "ok 4");
    assert_string_equal(fx_cmd(&c, "alloc %llu", 200 * MiB), "ok 5");
    assert_int_equal(node_usage("a"), 300 * MiB);
    assert_string_equal(fx_cmd(&c, "legacy ctxdestroy 4"), "ok");
    assert_int_equal(node_usage("a"), 100 * MiB);
    client_stop(&c);
}

/* ---- memory quota ---------------------------------------------------------- */

static const char *const quota_1g[] = {"FLEXPU_TENANT=a", "FLEXPU_MEMORY_LIMIT=1Gi", NULL};

static void test_meminfo_reports_the_quota(void **state)
{
    (void)state;
    struct fx_client c;
    client_ready(&c, quota_1g);
    char expect[64];
    snprintf(expect, sizeof(expect), "ok %llu %llu", GiB, GiB);
    assert_string_equal(fx_cmd(&c, "meminfo"), expect);
    snprintf(expect, sizeof(expect), "ok %llu", GiB);
    assert_string_equal(fx_cmd(&c, "totalmem"), expect);
    assert_string_equal(fx_cmd(&c, "alloc %llu", 256 * MiB), "ok 0");
    snprintf(expect, sizeof(expect), "ok %llu %llu", GiB - 256 * MiB, GiB);
    assert_string_equal(fx_cmd(&c, "meminfo"), expect);
    /* NULL pointers: the driver's answer, not a crash. */
    assert_string_equal(fx_cmd(&c, "meminfo_null"), "err 1");
    /* NVML (nvidia-smi) agrees. */
    snprintf(expect, sizeof(expect), "ok %llu %llu %llu", GiB, 256 * MiB, GiB - 256 * MiB);
    assert_string_equal(fx_cmd(&c, "nvml"), expect);
    client_stop(&c);
}

static void test_classic_alloc_over_quota_is_refused_and_free_credits(void **state)
{
    (void)state;
    struct fx_client c;
    client_ready(&c, quota_1g);
    assert_string_equal(fx_cmd(&c, "alloc %llu", 768 * MiB), "ok 0");
    assert_string_equal(fx_cmd(&c, "alloc %llu", 512 * MiB), "err 2");
    assert_int_equal(node_usage("a"), 768 * MiB);
    assert_string_equal(fx_cmd(&c, "free 0"), "ok");
    assert_int_equal(node_usage("a"), 0);
    assert_string_equal(fx_cmd(&c, "alloc %llu", 1 * GiB), "ok 1");
    assert_string_equal(fx_cmd(&c, "alloc 1"), "err 2");
    assert_string_equal(fx_cmd(&c, "free 1"), "ok");
    /* A second free of the same pointer is the driver's error, and credits
     * nothing twice. */
    assert_string_equal(fx_cmd(&c, "free 1"), "err 1");
    assert_int_equal(node_usage("a"), 0);
    client_stop(&c);
}

static void test_every_allocation_path_is_charged(void **state)
{
    (void)state;
    struct fx_client c;
    client_ready(&c, quota_1g);
    /* pitch: the fake pads rows to 512 bytes: 1000 -> 1024 x 1000 rows. */
    assert_string_equal(fx_cmd(&c, "pitch 1000 1000"), "ok 0");
    assert_int_equal(node_usage("a"), 1024 * 1000);
    assert_string_equal(fx_cmd(&c, "free 0"), "ok");
    assert_string_equal(fx_cmd(&c, "managed %llu", 64 * MiB), "ok 1");
    assert_int_equal(node_usage("a"), 64 * MiB);
    assert_string_equal(fx_cmd(&c, "free 1"), "ok");
    /* 2D and 3D float arrays: 4 bytes per element. */
    assert_string_equal(fx_cmd(&c, "array 1024 1024"), "ok 2");
    assert_int_equal(node_usage("a"), 4 * MiB);
    assert_string_equal(fx_cmd(&c, "array3d 256 256 16"), "ok 3");
    assert_int_equal(node_usage("a"), 8 * MiB);
    assert_string_equal(fx_cmd(&c, "array 65536 65536"), "err 2"); /* 16 GiB */
    assert_string_equal(fx_cmd(&c, "arrfree 2"), "ok");
    assert_string_equal(fx_cmd(&c, "arrfree 3"), "ok");
    assert_int_equal(node_usage("a"), 0);
    /* Mipmapped: 1024^2 + 512^2 + 256^2 floats. */
    assert_string_equal(fx_cmd(&c, "mipmap 1024 1024 3"), "ok 4");
    assert_int_equal(node_usage("a"), 4ull * (1024 * 1024 + 512 * 512 + 256 * 256));
    assert_string_equal(fx_cmd(&c, "mipfree 4"), "ok");
    assert_int_equal(node_usage("a"), 0);
    /* Virtual memory: device locations count, host ones do not. */
    assert_string_equal(fx_cmd(&c, "vmm %llu", 512 * MiB), "ok 5");
    assert_int_equal(node_usage("a"), 512 * MiB);
    assert_string_equal(fx_cmd(&c, "vmm %llu", 600 * MiB), "err 2");
    assert_string_equal(fx_cmd(&c, "vmmhost %llu", 600 * MiB), "ok 6");
    assert_int_equal(node_usage("a"), 512 * MiB);
    assert_string_equal(fx_cmd(&c, "vmmrel 5"), "ok");
    assert_string_equal(fx_cmd(&c, "vmmrel 6"), "ok");
    assert_int_equal(node_usage("a"), 0);
    /* Released while still mapped, physical memory stays taken until the
     * last mapping goes (create, map, release is the documented pattern). */
    assert_string_equal(fx_cmd(&c, "vmm %llu", 512 * MiB), "ok 7");
    assert_string_equal(fx_cmd(&c, "vmmmap 7 %llu", 512 * MiB), "ok 8");
    assert_string_equal(fx_cmd(&c, "vmmrel 7"), "ok");
    assert_int_equal(node_usage("a"), 512 * MiB);
    assert_string_equal(fx_cmd(&c, "vmm %llu", 600 * MiB), "err 2");
    assert_string_equal(fx_cmd(&c, "vmmunmap 8 %llu", 512 * MiB), "ok");
    assert_int_equal(node_usage("a"), 0);
    /* A reference taken by address (NCCL's cuMemRetainAllocationHandle)
     * needs its own release: unmapped and released once, still taken. */
    assert_string_equal(fx_cmd(&c, "vmm %llu", 512 * MiB), "ok 9");
    assert_string_equal(fx_cmd(&c, "vmmmap 9 %llu", 512 * MiB), "ok 10");
    assert_string_equal(fx_cmd(&c, "vmmretain 10"), "ok 11");
    assert_string_equal(fx_cmd(&c, "vmmrel 9"), "ok");
    assert_string_equal(fx_cmd(&c, "vmmunmap 10 %llu", 512 * MiB), "ok");
    assert_int_equal(node_usage("a"), 512 * MiB);
    assert_string_equal(fx_cmd(&c, "vmm %llu", 600 * MiB), "err 2");
    assert_string_equal(fx_cmd(&c, "vmmrel 11"), "ok");
    assert_int_equal(node_usage("a"), 0);
    client_stop(&c);
}

static void test_pool_reservation_is_what_counts(void **state)
{
    (void)state;
    struct fx_client c;
    client_ready(&c, quota_1g);
    /* 3 MiB from the default pool reserves 4 MiB (2 MiB steps). */
    assert_string_equal(fx_cmd(&c, "async %llu", 3 * MiB), "ok 0");
    assert_int_equal(node_usage("a"), 4 * MiB);
    assert_string_equal(fx_cmd(&c, "asyncpt %llu", 600 * MiB), "ok 1");
    assert_int_equal(node_usage("a"), 604 * MiB);
    assert_string_equal(fx_cmd(&c, "async %llu", 600 * MiB), "err 2");
    /* Freed into the pool, the memory is still reserved... */
    assert_string_equal(fx_cmd(&c, "asyncfree 1"), "ok");
    assert_int_equal(node_usage("a"), 604 * MiB);
    /* ...until the pool gives it back. */
    assert_string_equal(fx_cmd(&c, "trim 0"), "ok");
    assert_int_equal(node_usage("a"), 4 * MiB);
    assert_string_equal(fx_cmd(&c, "asyncfree 0"), "ok");
    assert_string_equal(fx_cmd(&c, "sync"), "ok");
    /* A pool that shrank at a sync point is credited when memory is next
     * asked for: here the quota check itself settles it. */
    assert_string_equal(fx_cmd(&c, "alloc %llu", 1 * GiB), "ok 2");
    assert_string_equal(fx_cmd(&c, "free 2"), "ok");
    /* Memory a pool keeps after a free serves the next request without
     * being charged twice (PyTorch's cudaMallocAsync keeps everything). */
    assert_string_equal(fx_cmd(&c, "async %llu", 900 * MiB), "ok 3");
    assert_string_equal(fx_cmd(&c, "asyncfree 3"), "ok");
    assert_int_equal(node_usage("a"), 900 * MiB);
    assert_string_equal(fx_cmd(&c, "async %llu", 900 * MiB), "ok 4");
    assert_string_equal(fx_cmd(&c, "asyncfree 4"), "ok");
    assert_string_equal(fx_cmd(&c, "trim 0"), "ok");
    assert_int_equal(node_usage("a"), 0);
    /* A pool of the application's own: what it reserves is booked, and
     * destroying it gives everything back. */
    assert_string_equal(fx_cmd(&c, "pool"), "ok 5");
    assert_string_equal(fx_cmd(&c, "palloc 5 %llu", 300 * MiB), "ok 6");
    assert_int_equal(node_usage("a"), 300 * MiB);
    assert_string_equal(fx_cmd(&c, "palloc 5 %llu", 800 * MiB), "err 2");
    assert_string_equal(fx_cmd(&c, "pdestroy 5"), "ok");
    assert_int_equal(node_usage("a"), 0);
    client_stop(&c);
}

static void test_capture_survives_and_graph_memory_is_charged(void **state)
{
    (void)state;
    struct fx_client c;
    client_ready(&c, quota_1g);
    /* The hook must not query the pool (or anything capture forbids) while
     * the stream is captured in global mode. */
    assert_string_equal(fx_cmd(&c, "capture_alloc %llu", 64 * MiB), "ok");
    assert_true(node_usage("a") >= 64 * MiB);
    client_stop(&c);
}

static void test_ipc_import_is_not_charged_twice(void **state)
{
    (void)state;
    struct fx_client c;
    client_ready(&c, quota_1g);
    assert_string_equal(fx_cmd(&c, "alloc %llu", 100 * MiB), "ok 0");
    assert_string_equal(fx_cmd(&c, "ipc 0"), "ok");
    assert_int_equal(node_usage("a"), 100 * MiB);
    client_stop(&c);
}

static void test_context_overhead_is_charged_once(void **state)
{
    (void)state;
    struct fx_client c;
    const char *const env[] = {"FLEXPU_TENANT=a", "FLEXPU_MEMORY_LIMIT=1Gi",
                               "FLEXPU_CONTEXT_OVERHEAD=300Mi", NULL};
    client_ready(&c, env);
    assert_int_equal(node_usage("a"), 300 * MiB);
    assert_string_equal(fx_cmd(&c, "ctxcreate 0"), "ok");
    assert_int_equal(node_usage("a"), 300 * MiB);
    assert_string_equal(fx_cmd(&c, "alloc %llu", 800 * MiB), "err 2");
    assert_string_equal(fx_cmd(&c, "alloc %llu", 700 * MiB), "ok 0");
    client_stop(&c);
    /* A quota smaller than a context: the context itself is refused. */
    const char *const tiny[] = {"FLEXPU_TENANT=t", "FLEXPU_MEMORY_LIMIT=100Mi",
                                "FLEXPU_CONTEXT_OVERHEAD=300Mi", NULL};
    client_start(&c, tiny);
    assert_string_equal(fx_cmd(&c, "init"), "ok");
    assert_string_equal(fx_cmd(&c, "ctx 0"), "err 2");
    client_stop(&c);
}

/* The driver frees what was allocated in a context when the context goes:
 * destroyed, or the primary one reset (cudaDeviceReset). So is the
 * quota, and the context overhead with the last context. */
static void test_context_destruction_credits_its_memory(void **state)
{
    (void)state;
    struct fx_client c;
    const char *const env[] = {"FLEXPU_TENANT=a", "FLEXPU_MEMORY_LIMIT=1Gi",
                               "FLEXPU_CONTEXT_OVERHEAD=100Mi", NULL};
    client_ready(&c, env);
    assert_string_equal(fx_cmd(&c, "alloc %llu", 300 * MiB), "ok 0");
    assert_int_equal(node_usage("a"), 400 * MiB);
    assert_string_equal(fx_cmd(&c, "reset 0"), "ok");
    assert_int_equal(node_usage("a"), 0);
    assert_string_equal(fx_cmd(&c, "ctx 0"), "ok");
    assert_int_equal(node_usage("a"), 100 * MiB);
    /* A context of its own, with an allocation, then destroyed. */
    assert_string_equal(fx_cmd(&c, "ctxnew 0"), "ok 1");
    assert_string_equal(fx_cmd(&c, "alloc %llu", 200 * MiB), "ok 2");
    assert_int_equal(node_usage("a"), 300 * MiB);
    assert_string_equal(fx_cmd(&c, "ctxdestroy 1"), "ok");
    assert_int_equal(node_usage("a"), 100 * MiB);
    client_stop(&c);
}

/* ---- several processes ----------------------------------------------------- */

static void test_processes_of_a_tenant_share_one_quota(void **state)
{
    (void)state;
    struct fx_client a1, a2, b;
    client_ready(&a1, quota_1g);
    client_ready(&a2, quota_1g);
    const char *const quota_b[] = {"FLEXPU_TENANT=b", "FLEXPU_MEMORY_LIMIT=1Gi", NULL};
    client_ready(&b, quota_b);
    assert_string_equal(fx_cmd(&a1, "alloc %llu", 600 * MiB), "ok 0");
    assert_string_equal(fx_cmd(&a2, "alloc %llu", 600 * MiB), "err 2");
    assert_string_equal(fx_cmd(&a2, "alloc %llu", 400 * MiB), "ok 0");
    /* Another tenant on the same GPU has its own quota. */
    assert_string_equal(fx_cmd(&b, "alloc %llu", 1000 * MiB), "ok 0");
    char expect[64];
    snprintf(expect, sizeof(expect), "ok %llu %llu", GiB - 1000 * MiB, GiB);
    assert_string_equal(fx_cmd(&a2, "meminfo"), expect);
    /* A process that exits gives its memory back without freeing it. */
    client_stop(&a1);
    assert_string_equal(fx_cmd(&a2, "alloc %llu", 600 * MiB), "ok 1");
    client_stop(&a2);
    client_stop(&b);
    assert_int_equal(node_usage("a"), 0);
}

static void test_sigkill_at_random_points_releases_everything(void **state)
{
    (void)state;
    unsigned seed = 12345;
    struct fx_client survivor;
    client_ready(&survivor, quota_1g);
    for (int round = 0; round < 25; round++) {
        struct fx_client victim;
        client_ready(&victim, quota_1g);
        /* Queue a burst of allocations and frees without waiting, then kill
         * the process somewhere inside it: inside the library, inside the
         * shared-state lock, or between. */
        for (int i = 0; i < 40; i++)
            fprintf(victim.to, "alloc %llu\nfree %d\nvmm %llu\nvmmrel %d\nalloc %llu\n",
                    8 * MiB, 3 * i, 2 * MiB, 3 * i + 1, 4 * MiB);
        fflush(victim.to);
        struct timespec ts = {0, (long)(rand_r(&seed) % 3000) * 1000};
        nanosleep(&ts, NULL);
        client_kill(&victim);
        /* No lock is left held and nothing stays booked: the survivor can
         * take the whole quota (the kill is reclaimed when it asks). */
        const char *r = fx_cmd(&survivor, "alloc %llu", 1 * GiB);
        assert_int_equal(strncmp(r, "ok ", 3), 0);
        assert_string_equal(fx_cmd(&survivor, "free %d", atoi(r + 3)), "ok");
    }
    client_stop(&survivor);
    assert_int_equal(node_usage("a"), 0);
}

/* ---- compute sharing ------------------------------------------------------------ */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Starts `burn US MS` on every client at once and collects the kernel time
 * each completed within its window. */
static void burn_all(struct fx_client *c, int n, unsigned us, unsigned ms, double *busy_frac)
{
    /* Steady state: one window for all, 300 ms after the last command is
     * sent, so a tenant whose process is slow to read its command (a loaded
     * machine) is measured over the same contention as the others. */
    uint64_t start = 0;
    for (int i = 0; i < n; i++) {
        if (!start)
            start = now_ns() + (uint64_t)(n + 2) * 100000000ull;
        fprintf(c[i].to, "burnat %u %u %llu\n", us, ms, (unsigned long long)start);
        fflush(c[i].to);
    }
    for (int i = 0; i < n; i++) {
        assert_non_null(fgets(c[i].line, sizeof(c[i].line), c[i].from));
        unsigned long long busy = 0, launches = 0;
        assert_int_equal(sscanf(c[i].line, "ok %llu %llu", &busy, &launches), 2);
        busy_frac[i] = (double)busy / (ms * 1000.0);
    }
}

static void start_tenant(struct fx_client *c, const char *name, int share, int cap, const char *prio)
{
    static char env[4][5][64];
    static int k;
    char(*e)[64] = env[k++ % 4];
    snprintf(e[0], 64, "FLEXPU_TENANT=%s", name);
    snprintf(e[1], 64, "FLEXPU_COMPUTE_SHARE=%d", share);
    snprintf(e[2], 64, "FLEXPU_COMPUTE_CAP=%d", cap);
    snprintf(e[3], 64, "FLEXPU_PRIORITY=%s", prio);
    const char *const list[] = {e[0], e[1], e[2], e[3], NULL};
    client_ready(c, list);
}

/* What one tenant alone gets of the fake GPU now, the yardstick for "the
 * GPU stays busy": the fake GPU's kernels are timed by CPU threads, so on a
 * machine whose CPUs are taken by other work even a tenant alone gets less
 * than 1.0, and the arbiter is only answerable for what it loses beyond
 * that. */
static double alone_busy(unsigned ms)
{
    struct fx_client c;
    double f;
    start_tenant(&c, "alone", 100, 100, "normal");
    burn_all(&c, 1, 1000, ms, &f);
    client_stop(&c);
    print_message("alone: %.3f\n", f);
    return f;
}

/* Two tenants competing split GPU time by their shares, and the GPU stays
 * busy (the pair gets what the bare GPU gives). */
static void test_pair_splits_by_share(void **state)
{
    (void)state;
    struct fx_client c[2];
    start_tenant(&c[0], "a", 30, 100, "normal");
    start_tenant(&c[1], "b", 70, 100, "normal");
    double alone = alone_busy(1500);
    double f[2];
    burn_all(c, 2, 1000, 1500, f);
    double total = f[0] + f[1];
    print_message("pair 30/70: a=%.3f b=%.3f total=%.3f\n", f[0], f[1], total);
    assert_true(total > 0.85 * alone);
    assert_true(f[0] / total > 0.27 && f[0] / total < 0.33);
    client_stop(&c[0]);
    client_stop(&c[1]);
}

static void test_three_tenants_split_by_share(void **state)
{
    (void)state;
    struct fx_client c[3];
    start_tenant(&c[0], "a", 20, 100, "normal");
    start_tenant(&c[1], "b", 30, 100, "normal");
    start_tenant(&c[2], "c", 50, 100, "normal");
    double alone = alone_busy(1500);
    double f[3];
    burn_all(c, 3, 1000, 1500, f);
    double total = f[0] + f[1] + f[2];
    print_message("three 20/30/50: %.3f %.3f %.3f total=%.3f\n", f[0], f[1], f[2], total);
    assert_true(total > 0.85 * alone);
    assert_true(fabs(f[0] / total - 0.20) < 0.03);
    assert_true(fabs(f[1] / total - 0.30) < 0.03);
    assert_true(fabs(f[2] / total - 0.50) < 0.03);
    for (int i = 0; i < 3; i++)
        client_stop(&c[i]);
}

/* A cap is a ceiling: the tenant never gets more than 3 points over it.
 * Below it the test allows 6 points, because a capped tenant that is woken
 * at each refill loses time to CPU scheduling, which under the sanitizers on
 * a loaded 2-core CI machine measured 3.2 points (0.268 for a 30 cap). */
static int cap_held(double f, double cap)
{
    return f < cap + 0.03 && f > cap - 0.06;
}

/* A cap holds even when the GPU is otherwise idle; without a cap, a share
 * is a floor, not a ceiling. */
static void test_cap_alone_and_burst_alone(void **state)
{
    (void)state;
    struct fx_client c;
    double f;
    start_tenant(&c, "capped", 30, 30, "normal");
    burn_all(&c, 1, 1000, 1500, &f);
    print_message("capped 30 alone: %.3f\n", f);
    assert_true(cap_held(f, 0.30));
    client_stop(&c);
    start_tenant(&c, "capped50", 50, 50, "normal");
    burn_all(&c, 1, 1000, 1500, &f);
    print_message("capped 50 alone: %.3f\n", f);
    assert_true(cap_held(f, 0.50));
    client_stop(&c);
    start_tenant(&c, "burst", 30, 100, "normal");
    burn_all(&c, 1, 1000, 1000, &f);
    print_message("share 30 uncapped alone: %.3f\n", f);
    assert_true(f > 0.95);
    client_stop(&c);
}

/* A tenant alone, capped at `cap` percent, on a fake GPU that models
 * power-limited clocks (`clocks`: FAKECUDA_CLOCK_* pairs, NULL-ended) and
 * with `cap_clock` MHz as its cap's reference clock (0: not set). Returns
 * the work it did per second. */
static double clocked_burn(const char *name, int cap, const char *const *clocks, int cap_clock)
{
    char e[4][64];
    snprintf(e[0], 64, "FLEXPU_TENANT=%s", name);
    snprintf(e[1], 64, "FLEXPU_COMPUTE_SHARE=%d", cap < 100 ? cap : 30);
    snprintf(e[2], 64, "FLEXPU_COMPUTE_CAP=%d", cap);
    snprintf(e[3], 64, "FLEXPU_CAP_CLOCK_MHZ=%d", cap_clock);
    const char *list[8] = {e[0], e[1], e[2], e[3]};
    for (int i = 0; clocks && clocks[i] && i < 3; i++)
        list[4 + i] = clocks[i];
    struct fx_client c;
    client_ready(&c, list);
    double f;
    burn_all(&c, 1, 1000, cap < 100 ? 1500 : 1000, &f);
    client_stop(&c);
    return f;
}

/* A cap is a share of the GPU's throughput. Measured on an H200, a capped
 * tenant alone is duty-cycled and never power-capped, so it runs at the max
 * clock (1980 MHz) while the loaded bare GPU runs at 1599: a 30% cap did
 * 0.345 of the bare GPU's work with exactly 30% of its busy time. The fake
 * models such clocks; cap_clock_mhz (the clock the GPU holds fully loaded)
 * charges the cap for the faster clock, and the cap holds in work. */
static void test_cap_holds_in_work_at_a_boosted_clock(void **state)
{
    (void)state;
    static const char *const clocks[] = {"FAKECUDA_CLOCK_MAX_MHZ=1980",
                                         "FAKECUDA_CLOCK_LOADED_MHZ=1600", NULL};
    double bare = clocked_burn("bare", 100, clocks, 0);
    print_message("clocks 1980/1600: uncapped alone (bare) %.3f\n", bare);
    assert_true(bare > 0.95);
    static const int caps[] = {30, 50};
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "cap%d", caps[i]);
        double plain = clocked_burn(name, caps[i], clocks, 0) / bare;
        snprintf(name, sizeof(name), "cap%d-clock", caps[i]);
        double fixed = clocked_burn(name, caps[i], clocks, 1600) / bare;
        print_message("clocks 1980/1600: capped %d alone: %.3f of bare's work, "
                      "%.3f with cap_clock_mhz=1600\n",
                      caps[i], plain, fixed);
        /* Without the reference clock the cap overshoots in work (the
         * fake's boost is 1980/1600 = 1.24, the H200's measured 1.13). */
        assert_true(plain > caps[i] / 100.0 + 0.03);
        assert_true(cap_held(fixed, caps[i] / 100.0));
    }
    /* Clocks not modelled: NVML reports a fixed 1400 MHz, below the
     * reference; the cap is not loosened (the factor is never below 1). */
    static const char *const fixed_clock[] = {"FAKECUDA_CLOCK_MAX_MHZ=1400", NULL};
    double f = clocked_burn("cap30-slow", 30, fixed_clock, 1600);
    print_message("fixed 1400 MHz, cap_clock_mhz=1600: capped 30 alone: %.3f\n", f);
    assert_true(cap_held(f, 0.30));
}

/* An idle tenant's time flows to the one that has work. */
static void test_idle_tenant_time_flows_to_others(void **state)
{
    (void)state;
    struct fx_client c[2];
    start_tenant(&c[0], "busy", 30, 100, "normal");
    start_tenant(&c[1], "idle", 70, 100, "normal");
    double f;
    burn_all(&c[0], 1, 1000, 1000, &f);
    print_message("share 30 beside an idle 70: %.3f\n", f);
    assert_true(f > 0.93);
    client_stop(&c[0]);
    client_stop(&c[1]);
}

/* Every launch entry point waits for the slice: a 30% tenant launching
 * through each of them beside a 70% one using cuLaunchKernel. */
static void test_every_launch_path_is_arbitrated(void **state)
{
    (void)state;
    static const char *const kinds[] = {"kernel_ptsz", "ex",   "ex_ptsz",   "coop",
                                        "graph",       "grid", "gridasync", "multi"};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        struct fx_client c[2];
        char name[32];
        snprintf(name, sizeof(name), "via-%s", kinds[k]);
        start_tenant(&c[0], name, 30, 100, "normal");
        start_tenant(&c[1], "plain", 70, 100, "normal");
        fprintf(c[0].to, "burn 1000 1000 300 %s\n", kinds[k]);
        fprintf(c[1].to, "burn 1000 1000 300\n");
        fflush(c[0].to);
        fflush(c[1].to);
        double f[2];
        for (int i = 0; i < 2; i++) {
            unsigned long long busy = 0, n = 0;
            assert_non_null(fgets(c[i].line, sizeof(c[i].line), c[i].from));
            assert_int_equal(sscanf(c[i].line, "ok %llu %llu", &busy, &n), 2);
            f[i] = busy / 1e6;
        }
        print_message("%s 30 vs kernel 70: %.3f / %.3f\n", kinds[k], f[0], f[1]);
        assert_true(fabs(f[0] / (f[0] + f[1]) - 0.30) < 0.03);
        client_stop(&c[0]);
        client_stop(&c[1]);
    }
}

/* Launch bookkeeping never breaks a capture, alone (fast path, where the
 * library marks every few launches) or under contention. */
static void test_launches_keep_captures_valid(void **state)
{
    (void)state;
    struct fx_client c[2];
    start_tenant(&c[0], "alone", 50, 100, "normal");
    assert_string_equal(fx_cmd(&c[0], "capture_launch 100"), "ok");
    start_tenant(&c[1], "other", 50, 100, "normal");
    fprintf(c[1].to, "burn 1000 500\n");
    fflush(c[1].to);
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_string_equal(fx_cmd(&c[0], "capture_launch 100"), "ok");
    assert_non_null(fgets(c[1].line, sizeof(c[1].line), c[1].from));
    client_stop(&c[0]);
    client_stop(&c[1]);
}

/* A cap holds for the tenant, whatever number of processes it runs. */
static void test_cap_holds_across_processes(void **state)
{
    (void)state;
    struct fx_client c[3];
    for (int i = 0; i < 3; i++)
        start_tenant(&c[i], "capped", 30, 30, "normal");
    double f[3];
    burn_all(c, 3, 1000, 1500, f);
    print_message("capped 30 with 3 processes: %.3f\n", f[0] + f[1] + f[2]);
    assert_true(cap_held(f[0] + f[1] + f[2], 0.30));
    for (int i = 0; i < 3; i++)
        client_stop(&c[i]);
}

/* A tenant killed while it holds the GPU does not keep it. */
static void test_killed_holder_releases_the_gpu(void **state)
{
    (void)state;
    struct fx_client c[2];
    start_tenant(&c[0], "victim", 50, 100, "normal");
    start_tenant(&c[1], "other", 50, 100, "normal");
    fprintf(c[0].to, "burn 1000 5000\n");
    fflush(c[0].to);
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    /* Contention starts, then the victim dies in the middle of it. */
    fprintf(c[1].to, "burn 1000 1000 300\n");
    fflush(c[1].to);
    nanosleep(&ts, NULL);
    client_kill(&c[0]);
    assert_non_null(fgets(c[1].line, sizeof(c[1].line), c[1].from));
    unsigned long long busy = 0, n = 0;
    assert_int_equal(sscanf(c[1].line, "ok %llu %llu", &busy, &n), 2);
    print_message("after the holder was killed: %.3f\n", busy / 1e6);
    assert_true(busy / 1e6 > 0.8);
    client_stop(&c[1]);
}

/* high takes the GPU from normal when it has work; low gets only what is
 * left idle. */
static void test_priorities(void **state)
{
    (void)state;
    struct fx_client c[2];
    start_tenant(&c[0], "svc", 10, 100, "high");
    start_tenant(&c[1], "batch", 90, 100, "low");
    double alone = alone_busy(1000);
    double f[2];
    burn_all(c, 2, 1000, 1000, f);
    print_message("high vs low, both saturating: high=%.3f low=%.3f\n", f[0], f[1]);
    assert_true(f[0] > 0.90 * alone);
    /* The service with gaps: the batch job fills them. */
    fprintf(c[0].to, "bursts 1000 1000 3 10\n");
    fprintf(c[1].to, "burn 1000 1000\n");
    fflush(c[0].to);
    fflush(c[1].to);
    unsigned long long busy[2], n[2];
    for (int i = 0; i < 2; i++) {
        assert_non_null(fgets(c[i].line, sizeof(c[i].line), c[i].from));
        assert_int_equal(sscanf(c[i].line, "ok %llu %llu", &busy[i], &n[i]), 2);
    }
    print_message("bursty high=%.3f low=%.3f\n", busy[0] / 1e6, busy[1] / 1e6);
    assert_true(busy[1] / 1e6 > 0.5 * alone);
    assert_true((busy[0] + busy[1]) / 1e6 > 0.80 * alone);
    client_stop(&c[0]);
    client_stop(&c[1]);
}

/* ---- configuration ----------------------------------------------------------- */

static void test_bad_configuration_fails_closed(void **state)
{
    (void)state;
    struct fx_client c;
    const char *const bad_limit[] = {"FLEXPU_MEMORY_LIMIT=lots", NULL};
    client_start(&c, bad_limit);
    assert_string_equal(fx_cmd(&c, "init"), "err 3");
    assert_string_equal(fx_cmd(&c, "alloc 1"), "err 3");
    client_stop(&c);
    const char *const cap_below[] = {"FLEXPU_COMPUTE_SHARE=30", "FLEXPU_COMPUTE_CAP=20", NULL};
    client_start(&c, cap_below);
    assert_string_equal(fx_cmd(&c, "init"), "err 3");
    client_stop(&c);
    /* A state directory that cannot be used: the GPU is refused at init. */
    const char *const bad_dir[] = {"FLEXPU_STATE_DIR=/proc/flexpu-cannot-exist", NULL};
    client_start(&c, bad_dir);
    assert_string_equal(fx_cmd(&c, "init"), "err 304");
    client_stop(&c);
}

static void write_conf(const char *text)
{
    FILE *f = fopen(FX_TEST_CONF_PATH, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_config_file_wins_over_environment(void **state)
{
    (void)state;
    char text[512];
    snprintf(text, sizeof(text),
             "# mounted by the node agent\ntenant = pod-1\nmemory_limit = 256Mi\n"
             "compute_share = 30\nstate_dir = %s\ncontext_overhead = 0\n",
             state_dir);
    write_conf(text);
    struct fx_client c;
    const char *const env[] = {"FLEXPU_MEMORY_LIMIT=8Gi", "FLEXPU_TENANT=escape", NULL};
    client_start_lib(&c, FX_TEST_LIB_CONF, env);
    assert_string_equal(fx_cmd(&c, "init"), "ok");
    assert_string_equal(fx_cmd(&c, "ctx 0"), "ok");
    char expect[64];
    snprintf(expect, sizeof(expect), "ok %llu %llu", 256 * MiB, 256 * MiB);
    assert_string_equal(fx_cmd(&c, "meminfo"), expect);
    assert_string_equal(fx_cmd(&c, "alloc %llu", 100 * MiB), "ok 0");
    assert_int_equal(node_usage("pod-1"), 100 * MiB);
    assert_int_equal(node_usage("escape"), 0);
    client_stop(&c);

    /* A file that exists but cannot be honoured: CUDA does not start. */
    write_conf("tenant = pod-1\nmemory_limt = 1Gi\n");
    client_start_lib(&c, FX_TEST_LIB_CONF, env);
    assert_string_equal(fx_cmd(&c, "init"), "err 3");
    client_stop(&c);
    unlink(FX_TEST_CONF_PATH);
}

/* ---- observability ------------------------------------------------------------ */

static void test_smi_lists_tenants_and_processes(void **state)
{
    (void)state;
    struct fx_client c;
    const char *const env[] = {"FLEXPU_TENANT=team-x", "FLEXPU_MEMORY_LIMIT=2Gi",
                               "FLEXPU_COMPUTE_SHARE=40", "FLEXPU_PRIORITY=high", NULL};
    client_ready(&c, env);
    assert_string_equal(fx_cmd(&c, "alloc %llu", 512 * MiB), "ok 0");
    char run[600];
    snprintf(run, sizeof(run), "%s --state-dir %s", FX_TEST_SMI, state_dir);
    FILE *p = popen(run, "r");
    assert_non_null(p);
    char out[8192] = "";
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(out, "team-x"));
    assert_non_null(strstr(out, "2.0 GiB"));
    assert_non_null(strstr(out, "512.0 MiB"));
    assert_non_null(strstr(out, "40%"));
    assert_non_null(strstr(out, "high"));
    char pid[32];
    snprintf(pid, sizeof(pid), "pid %d", (int)c.pid);
    assert_non_null(strstr(out, pid));

    /* A tenant's FIFO under a state file's name is reported, not waited on
     * (timeout turns a hang into status 124). */
    char fifo[400];
    snprintf(fifo, sizeof(fifo), "%s/GPU-fifo.state", state_dir);
    assert_int_equal(mkfifo(fifo, 0666), 0);
    snprintf(run, sizeof(run), "timeout 5 %s --state-dir %s 2>&1", FX_TEST_SMI, state_dir);
    p = popen(run, "r");
    assert_non_null(p);
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_non_null(strstr(out, "team-x"));
    assert_non_null(strstr(out, "GPU-fifo.state: not a regular file"));
    client_stop(&c);
}

/* The compute-sharing tests, with the node agent arbitrating (a cap's clock
 * scaling is not done under the agent: docs/SECURITY.md). */
static int run_agent_mode(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pair_splits_by_share, setup_agent, teardown_agent),
        cmocka_unit_test_setup_teardown(test_three_tenants_split_by_share, setup_agent,
                                        teardown_agent),
        cmocka_unit_test_setup_teardown(test_cap_alone_and_burst_alone, setup_agent,
                                        teardown_agent),
        cmocka_unit_test_setup_teardown(test_idle_tenant_time_flows_to_others, setup_agent,
                                        teardown_agent),
        cmocka_unit_test_setup_teardown(test_priorities, setup_agent, teardown_agent),
        cmocka_unit_test_setup_teardown(test_killed_holder_releases_the_gpu, setup_agent,
                                        teardown_agent),
        cmocka_unit_test_setup_teardown(test_every_launch_path_is_arbitrated, setup_agent,
                                        teardown_agent),
        cmocka_unit_test_setup_teardown(test_launches_keep_captures_valid, setup_agent,
                                        teardown_agent),
        cmocka_unit_test_setup_teardown(test_cap_holds_across_processes, setup_agent,
                                        teardown_agent),
    };
    signal(SIGPIPE, SIG_IGN);
    if (getenv("FX_TEST_FILTER")) /* one test, for looking into one */
        cmocka_set_test_filter(getenv("FX_TEST_FILTER"));
    return cmocka_run_group_tests_name("runtime_test --agent", tests, NULL, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--agent") == 0)
        return run_agent_mode();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lookup_returns_hooks_of_the_right_variant, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_legacy_variants_keep_the_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_allocation_variant_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_meminfo_reports_the_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(test_classic_alloc_over_quota_is_refused_and_free_credits,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_allocation_path_is_charged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_reservation_is_what_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capture_survives_and_graph_memory_is_charged, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ipc_import_is_not_charged_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_overhead_is_charged_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_destruction_credits_its_memory, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_processes_of_a_tenant_share_one_quota, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_at_random_points_releases_everything, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pair_splits_by_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_three_tenants_split_by_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_alone_and_burst_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_holds_in_work_at_a_boosted_clock, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idle_tenant_time_flows_to_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_priorities, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_holder_releases_the_gpu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_launch_path_is_arbitrated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_launches_keep_captures_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_holds_across_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_configuration_fails_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_file_wins_over_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smi_lists_tenants_and_processes, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
