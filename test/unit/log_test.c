/* SPDX-License-Identifier: Apache-2.0 */
/* The logfmt logger: filtering, one line per event, escaping. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "flexpu/log.h"

#define MAX_LINES 16

struct capture {
    int n;
    char line[MAX_LINES][2100];
    size_t len[MAX_LINES];
};

static struct capture cap;

static void sink(const char *line, void *ctx)
{
    struct capture *c = ctx;
    assert_ptr_equal(c, &cap);
    assert_true(c->n < MAX_LINES);
    c->len[c->n] = strlen(line);
    assert_true(c->len[c->n] < sizeof(c->line[0]));
    memcpy(c->line[c->n], line, c->len[c->n] + 1);
    c->n++;
}

static int setup(void **state)
{
    (void)state;
    memset(&cap, 0, sizeof(cap));
    flexpu_log_set_sink(sink, &cap);
    flexpu_log_set_timestamps(0);
    flexpu_log_set_level(FLEXPU_LOG_INFO);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    flexpu_log_set_sink(NULL, NULL);
    flexpu_log_set_level(FLEXPU_LOG_INFO);
    return 0;
}

static void test_format(void **state)
{
    (void)state;
    FX_INFO("x", "hello world", "k=%d s=%s", 5, "v");
    assert_int_equal(cap.n, 1);
    assert_string_equal(cap.line[0], "level=info comp=x msg=\"hello world\" k=5 s=v");

    FX_WARN("sched", "no fit", NULL);
    /* An empty kv format adds nothing (called through a pointer so the
     * compiler's format check does not object to the empty string). */
    void (*log_fn)(enum flexpu_log_level, const char *, const char *, const char *, ...) =
        flexpu_log;
    log_fn(FLEXPU_LOG_ERROR, "sim", "done", "");
    assert_int_equal(cap.n, 3);
    assert_string_equal(cap.line[1], "level=warn comp=sched msg=\"no fit\"");
    assert_string_equal(cap.line[2], "level=error comp=sim msg=\"done\"");

    flexpu_log(FLEXPU_LOG_INFO, NULL, NULL, "pods=%ld", 8152L);
    assert_int_equal(cap.n, 4);
    assert_string_equal(cap.line[3], "level=info comp=- msg=\"\" pods=8152");
}

static void test_level_filter(void **state)
{
    (void)state;
    static const enum flexpu_log_level all[] = {FLEXPU_LOG_DEBUG, FLEXPU_LOG_INFO, FLEXPU_LOG_WARN,
                                                FLEXPU_LOG_ERROR};
    for (int min = FLEXPU_LOG_DEBUG; min <= FLEXPU_LOG_OFF; min++) {
        memset(&cap, 0, sizeof(cap));
        flexpu_log_set_level((enum flexpu_log_level)min);
        assert_int_equal(flexpu_log_get_level(), min);
        for (size_t i = 0; i < 4; i++)
            flexpu_log(all[i], "c", "m", "i=%zu", i);
        /* Nothing is ever logged at "off". */
        flexpu_log(FLEXPU_LOG_OFF, "c", "m", NULL);
        int want = FLEXPU_LOG_OFF - min;
        assert_int_equal(cap.n, want);
        for (int k = 0; k < want; k++) {
            char expect[96];
            snprintf(expect, sizeof(expect), "level=%s comp=c msg=\"m\" i=%d",
                     flexpu_log_level_name(all[min + k]), min + k);
            assert_string_equal(cap.line[k], expect);
        }
    }
    memset(&cap, 0, sizeof(cap));
    flexpu_log_set_level(FLEXPU_LOG_WARN);
    FX_DEBUG("c", "d", NULL);
    FX_INFO("c", "i", NULL);
    FX_WARN("c", "w", NULL);
    assert_int_equal(cap.n, 1);
    assert_string_equal(cap.line[0], "level=warn comp=c msg=\"w\"");
}

static void test_msg_escaping(void **state)
{
    (void)state;
    FX_INFO("x", "say \"hi\" \\ now\nnext", NULL);
    assert_int_equal(cap.n, 1);
    assert_string_equal(cap.line[0], "level=info comp=x msg=\"say \\\"hi\\\" \\\\ now\\nnext\"");
    /* Other control bytes become '?'; high bytes (UTF-8) pass. */
    FX_INFO("x", "a\tb\rc\x01" "d\x7f" "e \xc3\xa9", NULL);
    assert_int_equal(cap.n, 2);
    assert_string_equal(cap.line[1], "level=info comp=x msg=\"a?b?c?d?e \xc3\xa9\"");
    for (int i = 0; i < cap.n; i++) {
        assert_null(strchr(cap.line[i], '\n'));
        assert_null(strchr(cap.line[i], '\r'));
    }
}

static void test_kv_newlines(void **state)
{
    (void)state;
    FX_ERROR("trace", "bad file", "err=\"%s\" line=%d", "a\nb\r\nc", 7);
    assert_int_equal(cap.n, 1);
    assert_string_equal(cap.line[0],
                        "level=error comp=trace msg=\"bad file\" err=\"a b  c\" line=7");
}

static void test_timestamps(void **state)
{
    (void)state;
    flexpu_log_set_timestamps(1);
    FX_INFO("x", "m", "k=1");
    flexpu_log_set_timestamps(0);
    FX_INFO("x", "m", "k=1");
    assert_int_equal(cap.n, 2);
    /* time=YYYY-MM-DDTHH:MM:SS.mmmZ, then the same line as without. */
    const char *l = cap.line[0];
    const char *shape = "time=dddd-dd-ddTdd:dd:dd.dddZ ";
    assert_true(strlen(l) > strlen(shape));
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd')
            assert_true(isdigit((unsigned char)l[i]));
        else
            assert_int_equal(l[i], shape[i]);
    }
    assert_string_equal(l + strlen(shape), "level=info comp=x msg=\"m\" k=1");
    assert_string_equal(cap.line[1], "level=info comp=x msg=\"m\" k=1");
    assert_null(strstr(cap.line[1], "time="));
}

/* Over-long parts are cut; the line stays one bounded, NUL-terminated line. */
static void test_long_parts(void **state)
{
    (void)state;
    static char big[5000];
    memset(big, 'a', sizeof(big) - 1);
    FX_INFO("x", big, NULL);
    assert_int_equal(cap.n, 1);
    assert_true(cap.len[0] < 2048);
    assert_int_equal(cap.line[0][cap.len[0] - 1], '"');
    assert_int_equal(strncmp(cap.line[0], "level=info comp=x msg=\"aaa", 26), 0);

    /* Escapes never split across the cut. */
    static char quotes[3000];
    memset(quotes, '"', sizeof(quotes) - 1);
    FX_INFO("x", quotes, NULL);
    assert_int_equal(cap.n, 2);
    const char *m = strstr(cap.line[1], "msg=\"") + 5;
    size_t body = strlen(m) - 1; /* without the closing quote */
    assert_int_equal(body % 2, 0);
    for (size_t i = 0; i < body; i += 2) {
        assert_int_equal(m[i], '\\');
        assert_int_equal(m[i + 1], '"');
    }

    /* A huge comp or kv is cut, never written past the line. */
    FX_INFO(big, "m", "k=%s", big);
    assert_int_equal(cap.n, 3);
    assert_true(cap.len[2] < 2048);
    assert_int_equal(strncmp(cap.line[2], "level=info comp=aaa", 19), 0);

    FX_INFO("x", "m", "k=%s", big);
    assert_int_equal(cap.n, 4);
    assert_true(cap.len[3] < 2048);
    assert_int_equal(strncmp(cap.line[3], "level=info comp=x msg=\"m\" k=aaa", 31), 0);
}

static void test_level_names(void **state)
{
    (void)state;
    assert_string_equal(flexpu_log_level_name(FLEXPU_LOG_DEBUG), "debug");
    assert_string_equal(flexpu_log_level_name(FLEXPU_LOG_INFO), "info");
    assert_string_equal(flexpu_log_level_name(FLEXPU_LOG_WARN), "warn");
    assert_string_equal(flexpu_log_level_name(FLEXPU_LOG_ERROR), "error");
    assert_string_equal(flexpu_log_level_name(FLEXPU_LOG_OFF), "off");
    assert_string_equal(flexpu_log_level_name((enum flexpu_log_level)7), "unknown");
    assert_string_equal(flexpu_log_level_name((enum flexpu_log_level)-1), "unknown");
}

static void test_level_parse(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        enum flexpu_log_level want;
    } good[] = {
        {"debug", FLEXPU_LOG_DEBUG}, {"DEBUG", FLEXPU_LOG_DEBUG},  {"info", FLEXPU_LOG_INFO},
        {"Info", FLEXPU_LOG_INFO},   {"warn", FLEXPU_LOG_WARN},    {"warning", FLEXPU_LOG_WARN},
        {"WARNING", FLEXPU_LOG_WARN}, {"error", FLEXPU_LOG_ERROR}, {"ErRoR", FLEXPU_LOG_ERROR},
        {"off", FLEXPU_LOG_OFF},     {"OFF", FLEXPU_LOG_OFF},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        enum flexpu_log_level l = (enum flexpu_log_level)99;
        struct flexpu_error err = {0};
        assert_int_equal(flexpu_log_level_parse(good[i].in, &l, &err), 0);
        assert_int_equal(l, good[i].want);
    }

    static const char *const bad[] = {"verbose", "", "inf", "info ", " info", "warnings", "3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum flexpu_log_level l = (enum flexpu_log_level)99;
        struct flexpu_error err = {0};
        assert_int_equal(flexpu_log_level_parse(bad[i], &l, &err), FLEXPU_EINVAL);
        assert_int_equal(err.code, FLEXPU_EINVAL);
        assert_int_equal(l, 99);
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "'%s'", bad[i]);
        assert_non_null(strstr(err.msg, quoted));
        assert_non_null(strstr(err.msg, "log level"));
    }

    enum flexpu_log_level l = FLEXPU_LOG_ERROR;
    struct flexpu_error err = {0};
    assert_int_equal(flexpu_log_level_parse(NULL, &l, &err), FLEXPU_EINVAL);
    assert_int_equal(l, FLEXPU_LOG_ERROR);
    assert_int_equal(flexpu_log_level_parse("loud", &l, NULL), FLEXPU_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msg_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv_newlines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timestamps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_parse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
