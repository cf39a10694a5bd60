/* SPDX-License-Identifier: Apache-2.0 */
/* The logfmt logger: filtering, one line per event, escaping. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

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

    FX_WARN("sched", "no fit", "");
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
    FX_DEBUG("c", "d", "");
    FX_INFO("c", "i", "");
    FX_WARN("c", "w", "");
    assert_int_equal(cap.n, 1);
    assert_string_equal(cap.line[0], "level=warn comp=c msg=\"w\"");
}

static void test_msg_escaping(void **state)
{
    (void)state;
    FX_INFO("x", "say \"hi\" \\ now\nnext", "");
    assert_int_equal(cap.n, 1);
    assert_string_equal(cap.line[0], "level=info comp=x msg=\"say \\\"hi\\\" \\\\ now\\nnext\"");
    /* Other control bytes as \u00XX, as logfmt readers and JSON undo them;
     * high bytes (UTF-8) pass. */
    FX_INFO("x", "a\tb\rc\x01" "d\x7f" "e \xc3\xa9", "");
    assert_int_equal(cap.n, 2);
    assert_string_equal(cap.line[1],
                        "level=info comp=x msg=\"a\\tb\\rc\\u0001d\\u007fe \xc3\xa9\"");
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
                        "level=error comp=trace msg=\"bad file\" err=\"a\\nb\\r\\nc\" line=7");
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
    FX_INFO("x", big, "");
    assert_int_equal(cap.n, 1);
    assert_true(cap.len[0] < 2048);
    assert_int_equal(cap.line[0][cap.len[0] - 1], '"');
    assert_int_equal(strncmp(cap.line[0], "level=info comp=x msg=\"aaa", 26), 0);

    /* Escapes never split across the cut. */
    static char quotes[3000];
    memset(quotes, '"', sizeof(quotes) - 1);
    FX_INFO("x", quotes, "");
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
    /* A value that needs no escape is cut where vsnprintf cut it before:
     * at the last byte the line holds. */
    assert_int_equal(cap.len[3], 2047);

    /* Nor are a value's escapes split: \u0001 is whole or not there. */
    static char ctl[2000];
    memset(ctl, 1, sizeof(ctl) - 1);
    FX_INFO("x", "m", "k=\"%s\"", ctl);
    assert_int_equal(cap.n, 5);
    assert_true(cap.len[4] < 2048);
    const char *v = strstr(cap.line[4], " k=\"") + 4;
    size_t vlen = strlen(v);
    assert_true(vlen > 2000 - 40);
    assert_int_equal(vlen % 6, 0);
    for (size_t i = 0; i < vlen; i += 6)
        assert_int_equal(strncmp(v + i, "\\u0001", 6), 0);
}

/* A logfmt reader as log pipelines have one (go-logfmt, which Loki and
 * Vector use): fields split at spaces, key=value or key="value" with \" \\
 * \n \r \t \uXXXX escapes, a bare key has an empty value. */
#define MAX_FIELDS 24

struct field {
    char key[64];
    char val[2100];
};

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Returns the number of fields, or -1 for a line the reader refuses. */
static int logfmt_read(const char *s, struct field *f, int max)
{
    int n = 0;
    while (*s) {
        if (*s == ' ') {
            s++;
            continue;
        }
        if (n == max)
            return -1;
        size_t k = 0;
        while (*s && *s != ' ' && *s != '=' && *s != '"') {
            if (k + 1 >= sizeof(f[n].key))
                return -1;
            f[n].key[k++] = *s++;
        }
        f[n].key[k] = '\0';
        if (k == 0 || *s == '"')
            return -1;
        size_t v = 0;
        if (*s == '=' && *++s == '"') {
            for (s++; *s != '"'; s++) {
                if (!*s || v + 1 >= sizeof(f[n].val))
                    return -1; /* an unclosed quote */
                char c = *s;
                if (c == '\\') {
                    c = *++s;
                    if (c == 'n')
                        c = '\n';
                    else if (c == 'r')
                        c = '\r';
                    else if (c == 't')
                        c = '\t';
                    else if (c == 'u') {
                        if (s[1] != '0' || s[2] != '0' || hexval(s[3]) < 0 || hexval(s[4]) < 0)
                            return -1;
                        c = (char)(hexval(s[3]) * 16 + hexval(s[4]));
                        s += 4;
                    } else if (c != '"' && c != '\\') {
                        return -1;
                    }
                }
                f[n].val[v++] = c;
            }
            s++;
            if (*s && *s != ' ')
                return -1; /* a value must end at its quote */
        } else {
            for (; *s && *s != ' '; s++) {
                if (*s == '"' || *s == '=' || v + 1 >= sizeof(f[n].val))
                    return -1;
                f[n].val[v++] = *s;
            }
        }
        f[n].val[v] = '\0';
        n++;
    }
    return n;
}

/* The line read back has exactly these keys, in order, with these values. */
static void assert_fields(const char *line, const char *const *kv, int n)
{
    struct field f[MAX_FIELDS];
    int got = logfmt_read(line, f, MAX_FIELDS);
    if (got != n)
        fprintf(stderr, "line: %s\n", line);
    assert_int_equal(got, n);
    for (int i = 0; i < n; i++) {
        assert_string_equal(f[i].key, kv[2 * i]);
        assert_string_equal(f[i].val, kv[2 * i + 1]);
    }
}

#define FORGE "x\" level=error msg=\"forged"
#define NASTY "q\"uote back\\slash nl\nline cr\rret tab\tctl\x01" "del\x7f" "utf8 \xc3\xa9 = end"

/* No value can end its field early: a tenant's annotation quoted in an
 * error, a pod name, a reply from the API server all read back exactly. */
static void test_values_cannot_forge(void **state)
{
    (void)state;
    FX_ERROR("sched", "bad request", "pod=%s/%s error=\"%s\" n=%d", "ns", "p", FORGE, 3);
    const char *want0[] = {"level", "error", "comp", "sched", "msg", "bad request",
                           "pod", "ns/p", "error", FORGE, "n", "3"};
    assert_int_equal(cap.n, 1);
    assert_fields(cap.line[0], want0, 6);

    /* A bare value is quoted when it has to be. */
    FX_WARN("node", "m", "pod=%s model=%s n=%d", FORGE, "NVIDIA A100-SXM4-80GB", 4);
    const char *want1[] = {"level", "warn", "comp", "node", "msg", "m",
                           "pod", FORGE, "model", "NVIDIA A100-SXM4-80GB", "n", "4"};
    assert_int_equal(cap.n, 2);
    assert_fields(cap.line[1], want1, 6);

    /* Quotes, backslashes, newlines, returns, tabs, control bytes; in a
     * quoted value, a bare one, several conversions in one value, and msg. */
    FX_INFO("x", NASTY, "a=\"%s\" b=%s c=\"%s: %s\" d=%s", NASTY, NASTY, FORGE, NASTY, "plain");
    const char *want2[] = {"level", "info", "comp", "x", "msg", NASTY, "a", NASTY, "b", NASTY,
                           "c", FORGE ": " NASTY, "d", "plain"};
    assert_int_equal(cap.n, 3);
    assert_fields(cap.line[2], want2, 7);
    for (int i = 0; i < cap.n; i++) {
        assert_null(strchr(cap.line[i], '\n'));
        assert_null(strchr(cap.line[i], '\r'));
    }
    /* Values that need nothing are written as the format says. */
    assert_non_null(strstr(cap.line[2], " d=plain"));
    assert_non_null(strstr(cap.line[0], " pod=ns/p "));
}

/* A key made by a conversion cannot hold a separator, '=' or a quote; nor
 * can a bare field; the comp is a value like any other. */
static void test_keys_cannot_forge(void **state)
{
    (void)state;
    FX_INFO("a b", "m", "%s=%d %s", "k\" level=x", 1, "bare=1 y");
    const char *want[] = {"level", "info", "comp", "a b", "msg", "m",
                          "k__level_x", "1", "bare_1_y", ""};
    assert_int_equal(cap.n, 1);
    assert_fields(cap.line[0], want, 5);
}

/* Every conversion takes its own arguments: a line with nothing to escape is
 * what vsnprintf made of the format before. */
static void test_conversions(void **state)
{
    (void)state;
    char big[40];
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    int i = -42;
    /* One format and one argument list, given to the logger and to
     * snprintf alike, so -Wformat checks both against the same types. */
#define CONV_FMT                                                                               \
    "d=%d ld=%ld lld=%lld hd=%hd hhu=%hhu zu=%zu zd=%zd td=%td ju=%ju u=%u x=%#x o=%o "        \
    "X=%08X f=%.3f e=%e g=%g Lf=%.2Lf c=%c pct=%%pct s=%-6s| w=%*d p=%.*s q=%5.2s "             \
    "u64=%" PRIu64 " last=%s"
#define CONV_ARGS                                                                              \
    i, -5L, 1LL << 40, (short)-7, (unsigned char)200, (size_t)123456789, (ssize_t)-9,          \
        (ptrdiff_t)-11, (uintmax_t)77, 4000000000u, 255u, 8u, 0xbeefu, 3.14159, 1e-9, 0.5,     \
        (long double)2.25, 'Z', "ab", 5, 17, 3, big, "xyz", (uint64_t)1 << 63, "end"
    FX_INFO("x", "m", CONV_FMT, CONV_ARGS);
    char want[512];
    snprintf(want, sizeof(want), "level=info comp=x msg=\"m\" " CONV_FMT, CONV_ARGS);
#undef CONV_FMT
#undef CONV_ARGS
    assert_int_equal(cap.n, 1);
    /* Only the values with spaces in them ("ab    |", "   17", "   xy") are
     * quoted; the rest is byte for byte the same. */
    assert_string_equal(cap.line[0],
                        "level=info comp=x msg=\"m\" d=-42 ld=-5 lld=1099511627776 hd=-7 hhu=200 "
                        "zu=123456789 zd=-9 td=-11 ju=77 u=4000000000 x=0xff o=10 X=0000BEEF "
                        "f=3.142 e=1.000000e-09 g=0.5 Lf=2.25 c=Z pct=%pct s=\"ab    |\" "
                        "w=\"   17\" p=bbb q=\"   xy\" u64=9223372036854775808 last=end");
    char *sp = strstr(want, " s=ab");
    assert_non_null(sp);
    assert_int_equal(strncmp(cap.line[0], want, (size_t)(sp - want)), 0);
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
        cmocka_unit_test_setup_teardown(test_values_cannot_forge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_cannot_forge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conversions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_parse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
