/* SPDX-License-Identifier: Apache-2.0 */
/* The slice configuration: environment and file, good and bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/config.h"
#include "runtime/ptrmap.h"

struct env {
    const char *const *pairs; /* name, value, name, value, ..., NULL */
};

static const char *lookup(const char *name, void *ctx)
{
    const struct env *e = ctx;
    for (int i = 0; e->pairs[i]; i += 2)
        if (strcmp(e->pairs[i], name) == 0)
            return e->pairs[i + 1];
    return NULL;
}

static int from_env(struct fx_slice_config *c, const char *const *pairs, struct flexpu_error *err)
{
    struct env e = {pairs};
    fx_config_defaults(c);
    return fx_config_from_env(c, lookup, &e, err);
}

static void test_defaults(void **state)
{
    (void)state;
    struct fx_slice_config c;
    const char *const none[] = {NULL};
    assert_int_equal(from_env(&c, none, NULL), 0);
    assert_string_equal(c.tenant, "default");
    assert_int_equal(c.memory_limit, 0);
    assert_int_equal(c.compute_share, 0);
    assert_int_equal(c.compute_cap, 100);
    assert_int_equal(c.cap_clock_mhz, 0);
    assert_int_equal(c.priority, FX_PRIO_NORMAL);
    assert_string_equal(c.state_dir, "/tmp/flexpu");
    assert_string_equal(c.borrowed_dir, ""); /* never waits for borrowers */
    assert_int_equal(c.oom_wait_ms, FX_OOM_WAIT_MS_DEFAULT);
    assert_int_equal(c.from_file, 0);
}

static void test_env_values(void **state)
{
    (void)state;
    struct fx_slice_config c;
    const char *const env[] = {"FLEXPU_MEMORY_LIMIT", "4g", "FLEXPU_COMPUTE_SHARE", "30",
                               "FLEXPU_COMPUTE_CAP", "50", "FLEXPU_PRIORITY", "high",
                               "FLEXPU_TENANT", "team-a_1.x", "FLEXPU_STATE_DIR", "/run/fx",
                               "FLEXPU_LOG_LEVEL", "debug", "FLEXPU_CONTEXT_OVERHEAD", "500Mi",
                               NULL};
    assert_int_equal(from_env(&c, env, NULL), 0);
    assert_int_equal(c.memory_limit, 4ll << 30);
    assert_int_equal(c.compute_share, 30);
    assert_int_equal(c.compute_cap, 50);
    assert_int_equal(c.priority, FX_PRIO_HIGH);
    assert_string_equal(c.tenant, "team-a_1.x");
    assert_string_equal(c.state_dir, "/run/fx");
    assert_int_equal(c.log_level, FLEXPU_LOG_DEBUG);
    assert_int_equal(c.context_overhead, 500ll << 20);
    const char *const mi[] = {"FLEXPU_MEMORY_LIMIT", "512m", NULL};
    assert_int_equal(from_env(&c, mi, NULL), 0);
    assert_int_equal(c.memory_limit, 512ll << 20);
    const char *const least[] = {"FLEXPU_MEMORY_LIMIT", "1Mi", NULL};
    assert_int_equal(from_env(&c, least, NULL), 0);
    assert_int_equal(c.memory_limit, 1ll << 20);
    const char *const half[] = {"FLEXPU_MEMORY_LIMIT", "1.5Mi", NULL};
    assert_int_equal(from_env(&c, half, NULL), 0);
    assert_int_equal(c.memory_limit, 3ll << 19);
    /* A cap's reference clock: the bounds, and 0 for none. */
    const char *const clock[] = {"FLEXPU_CAP_CLOCK_MHZ", "1600", NULL};
    assert_int_equal(from_env(&c, clock, NULL), 0);
    assert_int_equal(c.cap_clock_mhz, 1600);
    const char *const clock_lo[] = {"FLEXPU_CAP_CLOCK_MHZ", "100", NULL};
    assert_int_equal(from_env(&c, clock_lo, NULL), 0);
    assert_int_equal(c.cap_clock_mhz, 100);
    const char *const clock_hi[] = {"FLEXPU_CAP_CLOCK_MHZ", "10000", NULL};
    assert_int_equal(from_env(&c, clock_hi, NULL), 0);
    assert_int_equal(c.cap_clock_mhz, 10000);
    const char *const clock_off[] = {"FLEXPU_CAP_CLOCK_MHZ", "0", NULL};
    assert_int_equal(from_env(&c, clock_off, NULL), 0);
    assert_int_equal(c.cap_clock_mhz, 0);
    /* Borrowed memory: where the marks are, how long an owner waits. */
    const char *const oom[] = {"FLEXPU_BORROWED_DIR", "/run/flexpu/borrowed",
                               "FLEXPU_OOM_WAIT_MS", "2500", NULL};
    assert_int_equal(from_env(&c, oom, NULL), 0);
    assert_string_equal(c.borrowed_dir, "/run/flexpu/borrowed");
    assert_int_equal(c.oom_wait_ms, 2500);
    const char *const oom0[] = {"FLEXPU_OOM_WAIT_MS", "0", NULL};
    assert_int_equal(from_env(&c, oom0, NULL), 0);
    assert_int_equal(c.oom_wait_ms, 0);
}

/* Each bad value is refused with the variable and the value named. */
static void test_env_errors_name_field_and_value(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"FLEXPU_MEMORY_LIMIT", "lots", "lots"},
        {"FLEXPU_MEMORY_LIMIT", "-1g", "-1g"},
        {"FLEXPU_MEMORY_LIMIT", "0", "0"},
        /* quotas no one means: a fraction of a byte, a few bytes, a fraction
         * of a byte above the minimum */
        {"FLEXPU_MEMORY_LIMIT", "0.0000001", "0.0000001"},
        {"FLEXPU_MEMORY_LIMIT", "1", "1"},
        {"FLEXPU_MEMORY_LIMIT", "1048575", "1048575"},
        {"FLEXPU_MEMORY_LIMIT", "1048576.5", "1048576.5"},
        {"FLEXPU_MEMORY_LIMIT", "1e-7", "1e-7"},
        {"FLEXPU_COMPUTE_SHARE", "101", "101"},
        {"FLEXPU_COMPUTE_SHARE", "30.5", "30.5"},
        {"FLEXPU_COMPUTE_CAP", "0", "0"},
        /* a GHz figure, out of range, not a whole number, not a number */
        {"FLEXPU_CAP_CLOCK_MHZ", "1.98", "1.98"},
        {"FLEXPU_CAP_CLOCK_MHZ", "99", "99"},
        {"FLEXPU_CAP_CLOCK_MHZ", "10001", "10001"},
        {"FLEXPU_CAP_CLOCK_MHZ", "-1600", "-1600"},
        {"FLEXPU_CAP_CLOCK_MHZ", "1600MHz", "1600MHz"},
        {"FLEXPU_CAP_CLOCK_MHZ", "", ""},
        {"FLEXPU_PRIORITY", "urgent", "urgent"},
        {"FLEXPU_TENANT", "a/b", "a/b"},
        {"FLEXPU_TENANT", "", ""},
        {"FLEXPU_STATE_DIR", "relative/dir", "relative/dir"},
        {"FLEXPU_LOG_LEVEL", "loud", "loud"},
        {"FLEXPU_BORROWED_DIR", "run/flexpu", "run/flexpu"},
        {"FLEXPU_OOM_WAIT_MS", "-1", "-1"},
        {"FLEXPU_OOM_WAIT_MS", "600001", "600001"},
        {"FLEXPU_OOM_WAIT_MS", "5s", "5s"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fx_slice_config c;
        struct flexpu_error err = {0};
        const char *const env[] = {cases[i][0], cases[i][1], NULL};
        assert_int_not_equal(from_env(&c, env, &err), 0);
        assert_non_null(strstr(err.msg, cases[i][0]));
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "'%s'", cases[i][2]);
        assert_non_null(strstr(err.msg, quoted));
    }
    struct fx_slice_config c;
    struct flexpu_error err = {0};
    const char *const env[] = {"FLEXPU_COMPUTE_SHARE", "60", "FLEXPU_COMPUTE_CAP", "40", NULL};
    assert_int_not_equal(from_env(&c, env, &err), 0);
    assert_non_null(strstr(err.msg, "FLEXPU_COMPUTE_CAP"));
}

static void test_file_format(void **state)
{
    (void)state;
    struct fx_slice_config c;
    fx_config_defaults(&c);
    const char *text = "# slice of pod x\n\n tenant = pod-x  \nmemory_limit=8Gi # eight\r\n"
                       "compute_share = 25\ncompute_cap = 60\npriority = low\n"
                       "cap_clock_mhz = 1600\n";
    assert_int_equal(fx_config_parse(&c, text, "slice.conf", NULL), 0);
    assert_string_equal(c.tenant, "pod-x");
    assert_int_equal(c.memory_limit, 8ll << 30);
    assert_int_equal(c.compute_share, 25);
    assert_int_equal(c.compute_cap, 60);
    assert_int_equal(c.priority, FX_PRIO_LOW);
    assert_int_equal(c.cap_clock_mhz, 1600);
    assert_int_equal(c.from_file, 1);
}

static void test_file_errors_name_line_key_value(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"tenant = a\nmemory_limt = 1g\n", "slice.conf:2"},
        {"tenant = a\ntenant = b\n", "appears twice"},
        {"just words\n", "slice.conf:1"},
        {"compute_share = 200\n", "'200'"},
        {"compute_share = 50\ncompute_cap = 10\n", "compute_cap"},
        {"memory_limit = 0.0000001\n", "memory_limit"},
        {"memory_limit = 0.0000001\n", "'0.0000001'"},
        {"memory_limit = 512k\n", "'512k'"},
        {"memory_limit = 1.0000001Mi\n", "'1.0000001Mi'"},
        {"cap_clock_mhz = 20000\n", "cap_clock_mhz"},
        {"cap_clock_mhz = 20000\n", "'20000'"},
        {"cap_clock_mhz = 1600\ncap_clock_mhz = 1700\n", "appears twice"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fx_slice_config c;
        struct flexpu_error err = {0};
        fx_config_defaults(&c);
        assert_int_not_equal(fx_config_parse(&c, cases[i][0], "slice.conf", &err), 0);
        assert_non_null(strstr(err.msg, cases[i][1]));
    }
}

static void test_load_file(void **state)
{
    (void)state;
    struct fx_slice_config c;
    struct flexpu_error err = {0};
    fx_config_defaults(&c);
    assert_int_equal(fx_config_load_file(&c, "/nonexistent/slice.conf", &err), 0);
    char path[] = "/tmp/fxconf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "memory_limit = 2g\n", 18), 18);
    close(fd);
    assert_int_equal(fx_config_load_file(&c, path, &err), 1);
    assert_int_equal(c.memory_limit, 2ll << 30);
    /* A NUL byte is not text. */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "tenant = a\0b\n", 13), 13);
    close(fd);
    assert_true(fx_config_load_file(&c, path, &err) < 0);
    assert_non_null(strstr(err.msg, "NUL"));
    unlink(path);
}

/* The allocation registry under churn: put, take, and keys of different
 * kinds kept apart. */
static void test_ptrmap(void **state)
{
    (void)state;
    fx_ptrmap_reset();
    for (uint64_t i = 1; i <= 5000; i++) {
        struct fx_alloc a = {i * 10, (int)(i % 3), 0};
        assert_int_equal(fx_ptrmap_put(FX_KIND_MEM, i * 4096, a), 0);
        assert_int_equal(fx_ptrmap_put(FX_KIND_ARRAY, i * 4096, (struct fx_alloc){i, 0, 0}), 0);
    }
    assert_int_equal(fx_ptrmap_count(), 10000);
    for (uint64_t i = 1; i <= 5000; i += 2) {
        struct fx_alloc a;
        assert_int_equal(fx_ptrmap_take(FX_KIND_MEM, i * 4096, &a), 0);
        assert_int_equal(a.size, i * 10);
        assert_int_equal(fx_ptrmap_take(FX_KIND_MEM, i * 4096, &a), -1);
    }
    for (uint64_t i = 1; i <= 5000; i++) {
        struct fx_alloc a;
        assert_int_equal(fx_ptrmap_take(FX_KIND_MEM, i * 4096, &a), i % 2 ? -1 : 0);
        if (i % 2 == 0)
            assert_int_equal(a.dev, (int)(i % 3));
        assert_int_equal(fx_ptrmap_take(FX_KIND_ARRAY, i * 4096, &a), 0);
        assert_int_equal(a.size, i);
    }
    assert_int_equal(fx_ptrmap_count(), 0);
    fx_ptrmap_reset();
}

/* A destroyed context takes its allocations with it: all records of that
 * context, and only those, come out with their bytes per device. */
static void test_ptrmap_take_ctx(void **state)
{
    (void)state;
    fx_ptrmap_reset();
    uint64_t want[3] = {0};
    for (uint64_t i = 1; i <= 3000; i++) {
        uint64_t ctx = i % 2 ? 0x1111 : 0x2222;
        struct fx_alloc a = {i, (int)(i % 3), ctx};
        assert_int_equal(fx_ptrmap_put(FX_KIND_MEM, i * 512, a), 0);
        if (ctx == 0x1111)
            want[i % 3] += i;
    }
    uint64_t got[3] = {0};
    assert_int_equal(fx_ptrmap_take_ctx(0x1111, got, 3), 1500);
    for (int d = 0; d < 3; d++)
        assert_int_equal(got[d], want[d]);
    assert_int_equal(fx_ptrmap_count(), 1500);
    assert_int_equal(fx_ptrmap_take_ctx(0x1111, got, 3), 0);
    struct fx_alloc a;
    assert_int_equal(fx_ptrmap_take(FX_KIND_MEM, 2 * 512, &a), 0);
    assert_int_equal(a.ctx, 0x2222);
    fx_ptrmap_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_values),
        cmocka_unit_test(test_env_errors_name_field_and_value),
        cmocka_unit_test(test_file_format),
        cmocka_unit_test(test_file_errors_name_line_key_value),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_ptrmap),
        cmocka_unit_test(test_ptrmap_take_ctx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
