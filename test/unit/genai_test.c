/* SPDX-License-Identifier: Apache-2.0 */
/* The GenAI usage reader (sim/genai.h): a small pair of files read
 * exactly (the grid, gaps filled, memory as a fraction, pods with too few
 * samples left out), and malformed lines refused naming file, line and
 * field. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "sim/genai.h"

/* Reads duty and memory CSVs given as strings; memory is a fraction of
 * 1000 bytes. Returns fx_genai_read's code. */
static int read_pair(struct fx_genai *u, const char *duty, const char *mem,
                     struct flexpu_error *err)
{
    FILE *fd = fmemopen((void *)duty, strlen(duty), "r");
    FILE *fm = fmemopen((void *)mem, strlen(mem), "r");
    return fx_genai_read(u, "duty.csv", fd, "mem.csv", fm, 1000, err);
}

/* Pod a: 4 samples every 60 s, the third missing (takes the second's
 * value). Pod b: memory only at t=0 and 180 (two of four: half, kept).
 * Pod c: one sample of each (under half of the grid: left out). */
static const char *const good_duty = "value,timestamp_anon,container_ip\n"
                                     "10.0,1000.0,a\n"
                                     "50.0,1060.0,a\n"
                                     "100.0,1180.0,a\n"
                                     "0.0,1000.0,b\n"
                                     "20.0,1060.0,b\n"
                                     "30.0,1120.0,b\n"
                                     "40.0,1180.0,b\n"
                                     "5.0,1000.0,c\n";
static const char *const good_mem = "timestamp_anon,value,container_ip\n"
                                    "1000.0,100.0,a\n"
                                    "1060.0,200.0,a\n"
                                    "1120.0,300.0,a\n"
                                    "1180.0,2000.0,a\n"
                                    "1000.0,500.0,b\n"
                                    "1180.0,700.0,b\n"
                                    "1000.0,10.0,c\n";

static void good_file_read_exactly(void **state)
{
    (void)state;
    struct fx_genai u;
    struct flexpu_error err = {0};
    if (read_pair(&u, good_duty, good_mem, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(u.nsteps, 4);
    assert_true(u.step_s == 60.0);
    assert_int_equal(u.npods, 2);
    assert_string_equal(u.pods[0].id, "a");
    assert_string_equal(u.pods[1].id, "b");
    const float a_duty[] = {0.10f, 0.50f, 0.50f, 1.00f}, a_mem[] = {0.1f, 0.2f, 0.3f, 1.0f};
    const float b_duty[] = {0.0f, 0.2f, 0.3f, 0.4f}, b_mem[] = {0.5f, 0.5f, 0.5f, 0.7f};
    for (int k = 0; k < 4; k++) {
        assert_float_equal(u.pods[0].duty[k], a_duty[k], 1e-6);
        assert_float_equal(u.pods[0].mem[k], a_mem[k], 1e-6); /* 2000 of 1000: capped */
        assert_float_equal(u.pods[1].duty[k], b_duty[k], 1e-6);
        assert_float_equal(u.pods[1].mem[k], b_mem[k], 1e-6);
    }
    fx_genai_keep_part(&u, 1); /* odd positions: b */
    assert_int_equal(u.npods, 1);
    assert_string_equal(u.pods[0].id, "b");
    fx_genai_free(&u);
    assert_int_equal(u.npods, 0);
}

static void expect_error(const char *duty, const char *mem, const char *want)
{
    struct fx_genai u;
    struct flexpu_error err = {0};
    assert_int_not_equal(read_pair(&u, duty, mem, &err), 0);
    if (!strstr(err.msg, want))
        fail_msg("error '%s' does not name '%s'", err.msg, want);
    assert_int_equal(u.npods, 0);
    assert_null(u.pods);
}

static void malformed_lines_named(void **state)
{
    (void)state;
    /* A duty cycle over 100 percent on the third line. */
    expect_error("value,timestamp_anon,container_ip\n0,1000,a\n140,1060,a\n", good_mem,
                 "duty.csv:3: column 1");
    expect_error("value,timestamp_anon,container_ip\n0,1000,a\n140,1060,a\n", good_mem, "value");
    /* A timestamp that is not a number, in the memory file's line 2. */
    expect_error(good_duty, "timestamp_anon,value,container_ip\nsoon,100,a\n",
                 "mem.csv:2: column 1");
    expect_error(good_duty, "timestamp_anon,value,container_ip\nsoon,100,a\n", "timestamp_anon");
    /* An empty pod id. */
    expect_error("value,timestamp_anon,container_ip\n1,1000,\n", good_mem, "container_ip");
    /* A missing column. */
    expect_error("value,container_ip\n1,a\n", good_mem, "timestamp_anon");
    /* No pod with two samples. */
    expect_error("value,timestamp_anon,container_ip\n1,1000,a\n", good_mem, "duty.csv");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_file_read_exactly),
        cmocka_unit_test(malformed_lines_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
