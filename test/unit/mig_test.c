/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent's MIG mode (src/node/mig.c) against the fake NVML's MIG
 * (test/fakecuda/fake_nvml_mig.c): the layout's syntax and its errors,
 * profile names, partitioning a GPU from scratch, adopting what a previous
 * agent made (the fake keeps its state across opens, as the GPU does), a
 * busy instance refusing a new layout with nothing changed, a GPU without
 * MIG kept plain, the node's GPU limit; and the device plugin's check that
 * a MIG device is only ever allocated whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "flexpu/log.h"
#include "node/gpus.h"
#include "node/mig.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_parse),
        cmocka_unit_test(test_profile_names),
        cmocka_unit_test_setup(test_from_scratch_and_adopt, fresh),
        cmocka_unit_test_setup(test_busy_instance_refuses, fresh),
        cmocka_unit_test_setup(test_layout_errors_on_gpu, fresh),
        cmocka_unit_test_setup(test_no_mig_gpu_stays_plain, fresh),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
