/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent's MIG mode (src/node/mig.c) against the fake NVML's MIG
 * (test/fakecuda/fake_nvml_mig.c): the layout's syntax and its errors,
 * profile names, partitioning a GPU from scratch, adopting what a previous
 * agent made (the fake keeps its state across opens, as the GPU does), a
 * busy instance refusing a new layout with nothing changed, a GPU without
 * MIG kept plain, the node's GPU limit; the inventory's "mig" field; the
 * scheduler keeping shares of a GPU off MIG devices; and the device
 * plugin: a MIG device's capability nodes and UUID in the answer, and a
 * forged share of one refused. */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "flexpu/log.h"
#include "kube/contract.h"
#include "node/gpus.h"
#include "node/grpc.h"
#include "node/mig.h"
#include "node/nvml_mig_abi.h"
#include "node/plugin.h"
#include "podresources/v1/api.pb-c.h"
#include "scheduler/model.h"
#include "unit/plugin_fake.h"

#define GIB (1024LL * 1024 * 1024)

static char tmpdir[256];
static char procs[300];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/flexpu-mig-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(procs, sizeof(procs), "%s/procs", tmpdir);
    setenv("FAKECUDA_DIR", tmpdir, 1);
    setenv("FAKECUDA_DEVICES", "2", 1);
    setenv("FAKECUDA_TOTAL_MEM", "85899345920", 1); /* 80 GiB */
    setenv("FAKENVML_NAME", "NVIDIA A100-SXM4-80GB", 1);
    setenv("FAKENVML_NUMA", "0,1", 1);
    setenv("FAKENVML_MIG", "0", 1); /* GPU 1 has no MIG */
    setenv("FAKENVML_MIG_PROCS", procs, 1);
    flexpu_log_set_level(FLEXPU_LOG_ERROR);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Starts each test on a GPU as it comes: MIG off, no instances. */
static int fresh(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof(path), "%s/nvml-mig.state", tmpdir);
    unlink(path);
    unlink(procs);
    return 0;
}

static void busy(unsigned gpu, int gi, unsigned pid)
{
    FILE *f = fopen(procs, "w");
    assert_non_null(f);
    fprintf(f, "%u %d %u\n", gpu, gi, pid);
    fclose(f);
}

/* Opens the fake NVML, discovers, applies `layout` (NULL: discovery
 * only); returns setup's result, the GPUs in g[*n]. */
static int run(const char *layout, struct fx_node_gpu *g, int *n, int max,
               struct flexpu_error *err)
{
    struct fx_nvml *nv = fx_nvml_open(FAKENVML_PATH, err);
    assert_non_null(nv);
    assert_int_equal(fx_nvml_discover(nv, g, FLEXPU_MAX_GPUS, n, err), 0);
    int rc = 0;
    if (layout) {
        struct fx_mig_layout l;
        assert_int_equal(fx_mig_layout_parse(layout, &l, err), 0);
        rc = fx_mig_setup(nv, &l, g, n, max, err);
        /* MIG devices answer health checks through their own handles */
        if (rc == 0)
            assert_int_equal(fx_nvml_check_health(nv, g, *n), 0);
    }
    fx_nvml_close(nv);
    for (int i = 0; i < *n; i++)
        g[i].handle = NULL; /* dangling once NVML is closed */
    return rc;
}

/* ---- the fake NVML's MIG itself ---- */

/* Its rules, through its C ABI, as the agent relies on them. */
static void test_fake_nvml_mig(void **state)
{
    (void)state;
    void *lib = dlopen(FAKENVML_PATH, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(lib);
#define FN(name, ...)                                                                              \
    nvmlReturn_t (*name)(__VA_ARGS__);                                                             \
    *(void **)&name = dlsym(lib, #name);                                                           \
    assert_non_null(name)
    FN(nvmlInit_v2, void);
    FN(nvmlShutdown, void);
    FN(nvmlDeviceGetHandleByIndex_v2, unsigned, nvmlDevice_t *);
    FN(nvmlDeviceGetMigMode, nvmlDevice_t, unsigned *, unsigned *);
    FN(nvmlDeviceSetMigMode, nvmlDevice_t, unsigned, nvmlReturn_t *);
    FN(nvmlDeviceGetGpuInstanceProfileInfo, nvmlDevice_t, unsigned, nvmlGpuInstanceProfileInfo_t *);
    FN(nvmlDeviceCreateGpuInstance, nvmlDevice_t, unsigned, nvmlGpuInstance_t *);
    FN(nvmlGpuInstanceDestroy, nvmlGpuInstance_t);
    FN(nvmlGpuInstanceGetComputeInstanceProfileInfo, nvmlGpuInstance_t, unsigned, unsigned,
       nvmlComputeInstanceProfileInfo_t *);
    FN(nvmlGpuInstanceCreateComputeInstance, nvmlGpuInstance_t, unsigned, nvmlComputeInstance_t *);
    FN(nvmlComputeInstanceDestroy, nvmlComputeInstance_t);
    FN(nvmlDeviceGetMigDeviceHandleByIndex, nvmlDevice_t, unsigned, nvmlDevice_t *);
    FN(nvmlDeviceGetUUID, nvmlDevice_t, char *, unsigned);
    FN(nvmlDeviceGetMemoryInfo, nvmlDevice_t, nvmlMemory_t *);
    FN(nvmlDeviceGetComputeRunningProcesses_v3, nvmlDevice_t, unsigned *, nvmlProcessInfo_t *);
#undef FN
    assert_int_equal(nvmlInit_v2(), NVML_SUCCESS);
    nvmlDevice_t d0, d1, mig;
    assert_int_equal(nvmlDeviceGetHandleByIndex_v2(0, &d0), NVML_SUCCESS);
    assert_int_equal(nvmlDeviceGetHandleByIndex_v2(1, &d1), NVML_SUCCESS);
    unsigned cur, pend;
    nvmlReturn_t act;
    /* GPU 1 has no MIG; GPU 0 starts with it off */
    assert_int_equal(nvmlDeviceGetMigMode(d1, &cur, &pend), NVML_ERROR_NOT_SUPPORTED);
    assert_int_equal(nvmlDeviceGetMigMode(d0, &cur, &pend), NVML_SUCCESS);
    assert_int_equal(cur, NVML_DEVICE_MIG_DISABLE);
    nvmlGpuInstanceProfileInfo_t p3, p4;
    assert_int_equal(nvmlDeviceGetGpuInstanceProfileInfo(d0, NVML_GPU_INSTANCE_PROFILE_3_SLICE,
                                                         &p3), NVML_SUCCESS);
    assert_int_equal(nvmlDeviceGetGpuInstanceProfileInfo(d0, NVML_GPU_INSTANCE_PROFILE_4_SLICE,
                                                         &p4), NVML_SUCCESS);
    assert_int_equal(p3.sliceCount, 3);
    assert_int_equal(p4.sliceCount, 4);
    assert_int_equal(nvmlDeviceGetGpuInstanceProfileInfo(d0, NVML_GPU_INSTANCE_PROFILE_8_SLICE,
                                                         &p4), NVML_ERROR_NOT_SUPPORTED);
    assert_int_equal(nvmlDeviceGetGpuInstanceProfileInfo(d0, NVML_GPU_INSTANCE_PROFILE_4_SLICE,
                                                         &p4), NVML_SUCCESS);
    nvmlGpuInstance_t gi3, gi4;
    /* no instance while MIG is off */
    assert_int_not_equal(nvmlDeviceCreateGpuInstance(d0, p3.id, &gi3), NVML_SUCCESS);
    assert_int_equal(nvmlDeviceSetMigMode(d0, NVML_DEVICE_MIG_ENABLE, &act), NVML_SUCCESS);
    /* a 3g first takes slices 0-2: the 4g (start 0 only) no longer fits */
    assert_int_equal(nvmlDeviceCreateGpuInstance(d0, p3.id, &gi3), NVML_SUCCESS);
    assert_int_equal(nvmlDeviceCreateGpuInstance(d0, p4.id, &gi4),
                     NVML_ERROR_INSUFFICIENT_RESOURCES);
    /* a CI spanning the GI makes a MIG device with its own UUID and memory */
    nvmlComputeInstanceProfileInfo_t ci;
    assert_int_equal(nvmlGpuInstanceGetComputeInstanceProfileInfo(
                         gi3, NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE,
                         NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED, &ci),
                     NVML_ERROR_NOT_SUPPORTED); /* bigger than the GI */
    assert_int_equal(nvmlGpuInstanceGetComputeInstanceProfileInfo(
                         gi3, NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE,
                         NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED, &ci),
                     NVML_SUCCESS);
    assert_int_equal(nvmlDeviceGetMigDeviceHandleByIndex(d0, 0, &mig), NVML_ERROR_NOT_FOUND);
    nvmlComputeInstance_t c;
    assert_int_equal(nvmlGpuInstanceCreateComputeInstance(gi3, ci.id, &c), NVML_SUCCESS);
    assert_int_equal(nvmlDeviceGetMigDeviceHandleByIndex(d0, 0, &mig), NVML_SUCCESS);
    char uuid[96];
    assert_int_equal(nvmlDeviceGetUUID(mig, uuid, sizeof(uuid)), NVML_SUCCESS);
    assert_int_equal(strncmp(uuid, "MIG-", 4), 0);
    assert_int_equal(strlen(uuid), 40);
    nvmlMemory_t mem;
    assert_int_equal(nvmlDeviceGetMemoryInfo(mig, &mem), NVML_SUCCESS);
    assert_int_equal(mem.total, p3.memorySizeMB << 20);
    /* MIG cannot go while a GI exists; a GI cannot go while its CI does;
     * a CI with a process cannot go */
    assert_int_equal(nvmlDeviceSetMigMode(d0, NVML_DEVICE_MIG_DISABLE, &act), NVML_ERROR_IN_USE);
    assert_int_equal(nvmlGpuInstanceDestroy(gi3), NVML_ERROR_IN_USE);
    busy(0, 1, 99);
    unsigned np = 4;
    nvmlProcessInfo_t pi[4];
    assert_int_equal(nvmlDeviceGetComputeRunningProcesses_v3(mig, &np, pi), NVML_SUCCESS);
    assert_int_equal(np, 1);
    assert_int_equal(pi[0].pid, 99);
    assert_int_equal(nvmlComputeInstanceDestroy(c), NVML_ERROR_IN_USE);
    unlink(procs);
    assert_int_equal(nvmlComputeInstanceDestroy(c), NVML_SUCCESS);
    assert_int_equal(nvmlGpuInstanceDestroy(gi3), NVML_SUCCESS);
    assert_int_equal(nvmlDeviceCreateGpuInstance(d0, p4.id, &gi4), NVML_SUCCESS);
    assert_int_equal(nvmlGpuInstanceDestroy(gi4), NVML_SUCCESS);
    assert_int_equal(nvmlDeviceSetMigMode(d0, NVML_DEVICE_MIG_DISABLE, &act), NVML_SUCCESS);
    assert_int_equal(nvmlShutdown(), NVML_SUCCESS);
    dlclose(lib);
}

/* ---- the layout ---- */

static void expect_bad(const char *text, const char *needle)
{
    struct fx_mig_layout l;
    struct flexpu_error err = {0};
    assert_int_equal(fx_mig_layout_parse(text, &l, &err), FLEXPU_EINVAL);
    if (!strstr(err.msg, "--mig-layout") || !strstr(err.msg, needle))
        fail_msg("layout '%s': message '%s' lacks '%s'", text, err.msg, needle);
}

static void test_layout_parse(void **state)
{
    (void)state;
    struct fx_mig_layout l;
    struct flexpu_error err = {0};
    assert_int_equal(fx_mig_layout_parse("1g.10gb*7", &l, &err), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].profile, "1g.10gb");
    assert_int_equal(l.items[0].count, 7);
    assert_int_equal(fx_mig_layout_parse("3g.40gb,4g.40gb", &l, &err), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[1].profile, "4g.40gb");
    assert_int_equal(l.items[1].count, 1);
    /* a profile named twice adds up; +me profiles are names too */
    assert_int_equal(fx_mig_layout_parse("1g.10gb*2,2g.20gb,1g.10gb,1g.10gb+me", &l, &err), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.items[0].count, 3);
    assert_string_equal(l.items[2].profile, "1g.10gb+me");
    char text[100];
    fx_mig_layout_format(&l, text, sizeof(text));
    assert_string_equal(text, "1g.10gb*3,2g.20gb,1g.10gb+me");

    expect_bad("", "empty");
    expect_bad("1g.10gb*0", "'1g.10gb*0'");
    expect_bad("1g.10gb*x", "between 1 and 8");
    expect_bad("1g.10gb*", "'1g.10gb*'");
    expect_bad("1g.10gb*-1", "'1g.10gb*-1'");
    expect_bad("1g.10gb*99999999999999999999", "between 1 and 8");
    expect_bad("3g.40gb,,4g.40gb", "not a MIG profile");
    expect_bad("3g.40gb,", "not a MIG profile");
    expect_bad("a100", "'a100'");
    expect_bad("1g10gb", "'1g10gb'");
    expect_bad("1g.10GB", "'1g.10GB'");
    expect_bad("1g.10gb+xx", "'1g.10gb+xx'");
    expect_bad("1g.10gb*5,1g.10gb*5", "more instances of one profile");
}

static void test_profile_names(void **state)
{
    (void)state;
    char name[32];
    /* A100-SXM4-80GB's profiles as the driver reports them */
    struct {
        unsigned slices;
        unsigned long long mib;
        int64_t gpu;
        const char *want;
    } cases[] = {
        {1, 9728, 80 * GIB, "1g.10gb"},  {2, 19968, 80 * GIB, "2g.20gb"},
        {3, 40192, 80 * GIB, "3g.40gb"}, {4, 40192, 80 * GIB, "4g.40gb"},
        {7, 80896, 80 * GIB, "7g.80gb"}, {1, 4864, 40 * GIB, "1g.5gb"},
        {7, 40192, 40 * GIB, "7g.40gb"}, {1, 19968, 80 * GIB, "1g.20gb"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fx_mig_profile_name(cases[i].slices, cases[i].mib, cases[i].gpu, name, sizeof(name));
        assert_string_equal(name, cases[i].want);
    }
}

/* ---- partitioning ---- */

static void test_from_scratch_and_adopt(void **state)
{
    (void)state;
    struct fx_node_gpu g[FLEXPU_MAX_GPUS], again[FLEXPU_MAX_GPUS];
    int n = 0;
    struct flexpu_error err = {0};
    int rc = run("3g.40gb,4g.40gb", g, &n, FLEXPU_MAX_GPUS, &err);
    if (rc)
        fail_msg("%s", err.msg);
    /* GPU 0: two MIG devices (the 4g first: created first, as it must be,
     * or the 3g would take slices 0-2 and leave it no room); GPU 1 plain */
    assert_int_equal(n, 3);
    assert_true(g[0].mig);
    assert_true(g[1].mig);
    assert_false(g[2].mig);
    assert_string_equal(g[0].mig_profile, "4g.40gb");
    assert_string_equal(g[1].mig_profile, "3g.40gb");
    assert_string_equal(g[0].model, "A100-SXM4-80GB-MIG-4g.40gb");
    assert_string_equal(g[1].model, "A100-SXM4-80GB-MIG-3g.40gb");
    assert_string_equal(g[2].model, "A100-SXM4-80GB");
    for (int i = 0; i < 2; i++) {
        assert_int_equal(strncmp(g[i].uuid, "MIG-", 4), 0);
        assert_int_equal(g[i].index, 0);
        assert_int_equal(g[i].minor, 0);
        assert_int_equal(g[i].numa, 0);
        assert_true(g[i].healthy);
        /* 4 of 8 memory eighths, less what the driver keeps */
        assert_true(g[i].mem_bytes > 39 * GIB && g[i].mem_bytes < 40 * GIB);
    }
    assert_string_not_equal(g[0].uuid, g[1].uuid);
    assert_int_equal(strncmp(g[2].uuid, "GPU-", 4), 0);
    assert_int_equal(g[2].numa, 1);
    assert_int_equal(g[2].mem_bytes, 80 * GIB);

    /* A restarted agent with the same layout adopts both: same devices */
    int m = 0;
    assert_int_equal(run("4g.40gb,3g.40gb", again, &m, FLEXPU_MAX_GPUS, &err), 0);
    assert_int_equal(m, 3);
    assert_string_equal(again[0].uuid, g[0].uuid);
    assert_string_equal(again[1].uuid, g[1].uuid);
    assert_int_equal(again[0].mig_gi, g[0].mig_gi);

    /* A new layout, no process: the old instances go, new ones come */
    assert_int_equal(run("1g.10gb*7", again, &m, FLEXPU_MAX_GPUS, &err), 0);
    assert_int_equal(m, 8);
    for (int i = 0; i < 7; i++) {
        assert_string_equal(again[i].model, "A100-SXM4-80GB-MIG-1g.10gb");
        assert_true(again[i].mem_bytes > 9 * GIB && again[i].mem_bytes < 10 * GIB);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(again[i].uuid, again[j].uuid);
    }
    assert_false(again[7].mig);
}

static void test_busy_instance_refuses(void **state)
{
    (void)state;
    struct fx_node_gpu g[FLEXPU_MAX_GPUS], after[FLEXPU_MAX_GPUS];
    int n = 0, m = 0;
    struct flexpu_error err = {0};
    assert_int_equal(run("3g.40gb,4g.40gb", g, &n, FLEXPU_MAX_GPUS, &err), 0);
    busy(0, g[1].mig_gi, 4242); /* the 3g runs a process */
    assert_int_not_equal(run("4g.40gb,2g.20gb,1g.10gb", after, &m, FLEXPU_MAX_GPUS, &err), 0);
    /* the error names the GPU, the instance, the process and the layout */
    assert_non_null(strstr(err.msg, "GPU 0 (GPU-"));
    char inst[64];
    snprintf(inst, sizeof(inst), "MIG instance %d (3g.40gb)", g[1].mig_gi);
    if (!strstr(err.msg, inst) || !strstr(err.msg, "process 4242") ||
        !strstr(err.msg, "'4g.40gb,2g.20gb,1g.10gb'"))
        fail_msg("unexpected message: %s", err.msg);
    /* nothing changed: the old layout is still there, to be adopted */
    assert_int_equal(run("3g.40gb,4g.40gb", after, &m, FLEXPU_MAX_GPUS, &err), 0);
    assert_int_equal(m, 3);
    assert_string_equal(after[0].uuid, g[0].uuid);
    assert_string_equal(after[1].uuid, g[1].uuid);
    /* a layout that keeps the busy instance goes through, the 4g goes */
    assert_int_equal(run("3g.40gb,2g.20gb,1g.10gb*2", after, &m, FLEXPU_MAX_GPUS, &err), 0);
    assert_int_equal(m, 5);
    bool kept = false;
    for (int i = 0; i < m; i++)
        kept |= strcmp(after[i].uuid, g[1].uuid) == 0;
    assert_true(kept);
    unlink(procs);
}

/* An adopted instance where a new one must go: the idle ones are made
 * again around it; a busy one stays, and the error says what did not fit. */
static void test_adopted_in_the_way(void **state)
{
    (void)state;
    struct fx_node_gpu g[FLEXPU_MAX_GPUS], after[FLEXPU_MAX_GPUS];
    int n = 0, m = 0;
    struct flexpu_error err = {0};
    assert_int_equal(run("3g.40gb", g, &n, FLEXPU_MAX_GPUS, &err), 0); /* at slices 0-2 */
    assert_int_equal(n, 2);
    int rc = run("4g.40gb,3g.40gb", after, &m, FLEXPU_MAX_GPUS, &err);
    if (rc)
        fail_msg("%s", err.msg);
    assert_int_equal(m, 3);
    assert_string_equal(after[0].mig_profile, "4g.40gb");
    assert_string_equal(after[1].mig_profile, "3g.40gb");

    /* busy at slices 0-2: it stays, and the 4g cannot be made */
    fresh(NULL);
    assert_int_equal(run("3g.40gb", g, &n, FLEXPU_MAX_GPUS, &err), 0);
    busy(0, g[0].mig_gi, 77);
    assert_int_not_equal(run("4g.40gb,3g.40gb", after, &m, FLEXPU_MAX_GPUS, &err), 0);
    assert_non_null(strstr(err.msg, "cannot create a 4g.40gb MIG instance"));
    unlink(procs);
    assert_int_equal(run("3g.40gb", after, &m, FLEXPU_MAX_GPUS, &err), 0);
    assert_string_equal(after[0].uuid, g[0].uuid); /* still there */
}

static void test_layout_errors_on_gpu(void **state)
{
    (void)state;
    struct fx_node_gpu g[FLEXPU_MAX_GPUS];
    int n = 0;
    struct flexpu_error err = {0};
    /* a profile this GPU does not have: the error lists the ones it has */
    assert_int_not_equal(run("5g.50gb", g, &n, FLEXPU_MAX_GPUS, &err), 0);
    if (!strstr(err.msg, "'5g.50gb'") || !strstr(err.msg, "1g.10gb, 2g.20gb, 3g.40gb") ||
        !strstr(err.msg, "GPU 0"))
        fail_msg("unexpected message: %s", err.msg);
    /* more slices than the GPU has */
    assert_int_not_equal(run("4g.40gb*2", g, &n, FLEXPU_MAX_GPUS, &err), 0);
    assert_non_null(strstr(err.msg, "needs 8 compute slices; the GPU has 7"));
    /* more GPUs than a node publishes */
    setenv("FAKENVML_MIG", "all", 1);
    assert_int_equal(run("1g.10gb*7", g, &n, FLEXPU_MAX_GPUS, &err), 0);
    assert_int_equal(n, 14);
    assert_int_not_equal(run("1g.10gb*7", g, &n, 10, &err), 0);
    assert_int_equal(err.code, FLEXPU_ERANGE);
    assert_non_null(strstr(err.msg, "more than 10 GPUs"));
    setenv("FAKENVML_MIG", "0", 1);
}

static void test_no_mig_gpu_stays_plain(void **state)
{
    (void)state;
    setenv("FAKENVML_MIG", "", 1);
    struct fx_node_gpu g[FLEXPU_MAX_GPUS];
    int n = 0;
    struct flexpu_error err = {0};
    assert_int_equal(run("7g.80gb", g, &n, FLEXPU_MAX_GPUS, &err), 0);
    assert_int_equal(n, 2);
    for (int i = 0; i < 2; i++) {
        assert_false(g[i].mig);
        assert_string_equal(g[i].model, "A100-SXM4-80GB");
        assert_int_equal(strncmp(g[i].uuid, "GPU-", 4), 0);
    }
    setenv("FAKENVML_MIG", "0", 1);
}


/* ---- the inventory and the scheduler ---- */

static void test_inventory_mig_field(void **state)
{
    (void)state;
    struct fx_node_inv inv = {.ngpu = 2};
    snprintf(inv.gpus[0].uuid, sizeof(inv.gpus[0].uuid), "MIG-1");
    snprintf(inv.gpus[0].model, sizeof(inv.gpus[0].model), "A100-SXM4-80GB-MIG-3g.40gb");
    snprintf(inv.gpus[0].mig, sizeof(inv.gpus[0].mig), "3g.40gb");
    snprintf(inv.gpus[1].uuid, sizeof(inv.gpus[1].uuid), "GPU-2");
    snprintf(inv.gpus[1].model, sizeof(inv.gpus[1].model), "A100-SXM4-80GB");
    inv.gpus[0].healthy = inv.gpus[1].healthy = true;
    char *text = fx_node_inv_format(&inv);
    assert_non_null(strstr(text, "\"mig\":\"3g.40gb\""));
    assert_null(strstr(strstr(text, "\"mig\"") + 1, "\"mig\"")); /* the MIG device's only */
    struct fx_node_inv back;
    struct flexpu_error err = {0};
    assert_int_equal(fx_node_inv_parse(text, &back, &err), 0);
    free(text);
    assert_string_equal(back.gpus[0].mig, "3g.40gb");
    assert_string_equal(back.gpus[1].mig, "");
    assert_int_equal(fx_node_inv_parse("[{\"uuid\":\"a\",\"model\":\"m\",\"mig\":7}]", &back, &err),
                     FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "flexpu.io/gpus[0].mig"));
}

/* Node n1: GPU 0 a MIG device, and (with plain) GPU 1 a whole A100. */
static void mig_node(struct fx_model *m, bool plain)
{
    const char *inv = plain ? "[{\"uuid\":\"MIG-a\",\"model\":\"A100-MIG-3g.40gb\",\"memory\":"
                              "42144366592,\"mig\":\"3g.40gb\"},{\"uuid\":\"GPU-b\",\"model\":"
                              "\"A100\",\"memory\":85899345920}]"
                            : "[{\"uuid\":\"MIG-a\",\"model\":\"A100-MIG-3g.40gb\",\"memory\":"
                              "42144366592,\"mig\":\"3g.40gb\"}]";
    json_t *n = json_pack("{s:{s:s, s:{s:s}}, s:{}, s:{s:{s:s, s:s}}}", "metadata", "name", "n1",
                          "annotations", "flexpu.io/gpus", inv, "spec", "status", "allocatable",
                          "cpu", "64", "memory", "256Gi");
    fx_model_node_event(m, KUBE_ADDED, n);
    json_decref(n);
}

/* A pending pod of ours asking one GPU with `cores` (and model, if any). */
static void gpu_pod(struct fx_model *m, const char *uid, const char *cores, const char *model)
{
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:s, s:{}}, s:{s:s, s:[{s:s, s:{s:{s:s, s:s}}}]}}",
                          "metadata", "name", uid, "namespace", "t", "uid", uid,
                          "creationTimestamp", "2026-01-01T00:00:00Z", "annotations", "spec",
                          "schedulerName", "flexpu-scheduler", "containers", "name", "c",
                          "resources", "limits", "flexpu.io/gpu", "1", "flexpu.io/gpu-cores",
                          cores);
    if (model)
        json_object_set_new(json_object_get(json_object_get(p, "metadata"), "annotations"),
                            FX_ANN_GPU_MODEL, json_string(model));
    fx_model_pod_event(m, KUBE_ADDED, p);
    json_decref(p);
}

static void next(struct fx_model *m, const char *uid, enum fx_outcome want, struct fx_attempt *a)
{
    assert_true(fx_model_next(m, a));
    assert_string_equal(a->uid, uid);
    if (a->outcome != want)
        fail_msg("pod %s: outcome %d, want %d (%s)", uid, a->outcome, want, a->message);
}

static void test_scheduler_whole_only(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    struct fx_model *m = fx_model_new("flexpu-scheduler", "flexpu", 1, &err);
    assert_non_null(m);
    /* a share waits before the node is known, and keeps off it after */
    gpu_pod(m, "early", "30", NULL);
    mig_node(m, false);
    struct fx_attempt a;
    next(m, "early", FX_WAIT, &a);
    gpu_pod(m, "share", "30", NULL);
    next(m, "share", FX_WAIT, &a);
    /* naming only the MIG model with a share is an error that says why */
    gpu_pod(m, "named", "50", "A100-MIG-3g.40gb");
    next(m, "named", FX_INVALID, &a);
    assert_non_null(strstr(a.message, "MIG"));
    /* a whole GPU gets the MIG device */
    gpu_pod(m, "whole", "100", "A100-MIG-3g.40gb");
    next(m, "whole", FX_BIND, &a);
    assert_non_null(strstr(a.allocation, "\"MIG-a\""));
    assert_non_null(strstr(a.allocation, "\"cores\":100"));
    fx_model_free(m);

    /* with a plain GPU beside it, the share goes there */
    m = fx_model_new("flexpu-scheduler", "flexpu", 1, &err);
    mig_node(m, true);
    gpu_pod(m, "share", "30", NULL);
    next(m, "share", FX_BIND, &a);
    assert_non_null(strstr(a.allocation, "\"GPU-b\""));
    assert_null(strstr(a.allocation, "MIG-a"));
    fx_model_free(m);
}

/* ---- the device plugin ---- */

#define NGPU 2
static struct fx_node_gpu pgpus[NGPU];
static char minors[300];
static const char *pod_cores = "100";

/* Pod default/a bound to n1 with MIG device 1 (cores: pod_cores, in its
 * request and its allocation alike, as a forged annotation would be). */
static json_t *pod_a(void)
{
    struct fx_allocation al = {.ngpu = 1};
    snprintf(al.gpus[0].uuid, sizeof(al.gpus[0].uuid), "%s", pgpus[1].uuid);
    al.gpus[0].index = 1;
    al.gpus[0].cores = atoi(pod_cores);
    /* what a share without gpu-memory gets: the check wants it exact */
    al.gpus[0].mem = fx_default_slice_mem(1, al.gpus[0].cores, 0, pgpus[1].mem_bytes);
    char *text = fx_allocation_format(&al);
    json_t *p = json_pack("{s:{s:s, s:s, s:s, s:{s:s}}, s:{s:s, s:[{s:s, s:{s:{s:s, s:s}}}]},"
                          " s:{s:s}}",
                          "metadata", "name", "a", "namespace", "default", "uid", "uid-a",
                          "annotations", FX_ANN_ALLOCATION, text, "spec", "nodeName", "n1",
                          "containers", "name", "main", "resources", "limits", FX_RES_GPU, "1",
                          FX_RES_GPU_CORES, pod_cores, "status", "phase", "Pending");
    free(text);
    return p;
}

static void plugin_up(struct plugin_run *run)
{
    for (int i = 0; i < NGPU; i++) {
        memset(&pgpus[i], 0, sizeof(pgpus[i]));
        snprintf(pgpus[i].uuid, sizeof(pgpus[i].uuid), "MIG-test-%d", i);
        pgpus[i].index = pgpus[i].minor = 3; /* both of GPU 3 */
        pgpus[i].healthy = true;
        pgpus[i].mem_bytes = 40LL << 30;
        pgpus[i].mig = true;
        pgpus[i].mig_gi = 1 + i;
        pgpus[i].mig_ci = 0;
        snprintf(pgpus[i].mig_profile, sizeof(pgpus[i].mig_profile), "3g.40gb");
    }
    snprintf(minors, sizeof(minors), "%s/mig-minors", tmpdir);
    FILE *f = fopen(minors, "w");
    assert_non_null(f);
    fputs("config 1\nmonitor 2\ngpu3/gi1/access 30\ngpu3/gi1/ci0/access 31\n"
          "gpu3/gi2/access 39\ngpu3/gi2/ci0/access 40\ngpu30/gi2/access 99\n", f);
    fclose(f);
    struct fx_plugin_config pc = {.node_name = "n1", .root = tmpdir, .wait_ms = 1500,
                                  .sharing = FX_SHARING_MIG, .mig_minors = minors,
                                  .dir_limits = FX_DIR_LIMITS_OFF};
    json_t *pa = pod_a();
    plugin_up_with(run, tmpdir, &pc, pgpus, NGPU, pa);
    json_decref(pa);
}

/* Allocate and PreStartContainer for MIG device 1; returns PreStart's
 * reply (its message in msg). */
static int allocate_and_start(struct plugin_run *run, char *msg, size_t len)
{
    char id[128];
    snprintf(id, sizeof(id), "%s::0", pgpus[1].uuid);
    char *ids[1] = {id};
    V1beta1__AllocateResponse *ar = allocate_ok(run->dp, ids, 1);
    V1beta1__ContainerAllocateResponse *c0 = ar->container_responses[0];
    /* the parent's node and its own two capabilities, nothing of GI 1 or
     * of the MIG configuration */
    int parent = 0, gi = 0, ci = 0, other = 0;
    for (size_t i = 0; i < c0->n_devices; i++) {
        const char *p = c0->devices[i]->host_path;
        parent += strcmp(p, "/dev/nvidia3") == 0;
        gi += strcmp(p, "/dev/nvidia-caps/nvidia-cap39") == 0;
        ci += strcmp(p, "/dev/nvidia-caps/nvidia-cap40") == 0;
        other += strncmp(p, "/dev/nvidia-caps/", 17) == 0;
    }
    assert_int_equal(parent, 1);
    assert_int_equal(gi, 1);
    assert_int_equal(ci, 1);
    assert_int_equal(other, 2);
    bool visible = false;
    for (size_t i = 0; i < c0->n_envs; i++)
        if (strcmp(c0->envs[i]->key, "NVIDIA_VISIBLE_DEVICES") == 0) {
            assert_string_equal(c0->envs[i]->value, "MIG-test-1");
            visible = true;
        }
    assert_true(visible);
    v1beta1__allocate_response__free_unpacked(ar, NULL);

    nheld = 0;
    hold("default", "a", ids, 1);
    struct fx_grpc_reply r = prestart_call(run->dp, ids, 1);
    snprintf(msg, len, "%s", r.message);
    free(r.data);
    return r.status;
}

static void test_plugin_mig(void **state)
{
    (void)state;
    struct plugin_run run;
    char msg[600];
    /* whole: served */
    pod_cores = "100";
    plugin_up(&run);
    int st = allocate_and_start(&run, msg, sizeof(msg));
    if (st != FX_GRPC_OK)
        fail_msg("PreStartContainer refused: %s", msg);
    plugin_down(&run);
    /* a share of a MIG device, as its own request and the allocation say
     * alike (a forged annotation): refused, no slice */
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/slices' '%s/ledger'", tmpdir, tmpdir);
    assert_int_equal(system(cmd), 0);
    pod_cores = "30";
    plugin_up(&run);
    st = allocate_and_start(&run, msg, sizeof(msg));
    assert_int_equal(st, FX_GRPC_FAILED_PRECONDITION);
    if (!strstr(msg, "MIG-test-1 is a MIG device (3g.40gb), allocated whole only") ||
        !strstr(msg, "30%"))
        fail_msg("unexpected message: %s", msg);
    plugin_down(&run);
    pod_cores = "100";
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_fake_nvml_mig, fresh),
        cmocka_unit_test(test_layout_parse),
        cmocka_unit_test(test_profile_names),
        cmocka_unit_test_setup(test_from_scratch_and_adopt, fresh),
        cmocka_unit_test_setup(test_busy_instance_refuses, fresh),
        cmocka_unit_test_setup(test_adopted_in_the_way, fresh),
        cmocka_unit_test_setup(test_layout_errors_on_gpu, fresh),
        cmocka_unit_test_setup(test_no_mig_gpu_stays_plain, fresh),
        cmocka_unit_test(test_inventory_mig_field),
        cmocka_unit_test(test_scheduler_whole_only),
        cmocka_unit_test(test_plugin_mig),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
