/* SPDX-License-Identifier: Apache-2.0 */
/* Kubernetes quantities (milli and whole units) and memory sizes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "flexpu/quantity.h"

#define SENTINEL INT64_C(0x5a5a5a5a5a5a)

typedef int (*parse_fn)(const char *, const char *, int64_t *, struct flexpu_error *);

struct parser {
    const char *name;
    parse_fn fn;
};

static const struct parser parsers[] = {
    {"milli", flexpu_quantity_parse_milli},
    {"units", flexpu_quantity_parse},
    {"size", flexpu_size_parse},
};

struct good {
    const char *in;
    int64_t want;
};

static void expect_good(parse_fn fn, const struct good *g, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct flexpu_error err = {0};
        int64_t v = SENTINEL;
        int rc = fn(g[i].in, "f", &v, &err);
        if (rc != 0 || v != g[i].want)
            print_error("input '%s': rc %d (%s) value %lld, want %lld\n", g[i].in, rc, err.msg,
                        (long long)v, (long long)g[i].want);
        assert_int_equal(rc, 0);
        assert_int_equal(v, g[i].want);
    }
}

/* Checks one failure: the code, err->code, the output untouched and a message
 * that names the field and quotes the value. */
static void expect_bad(parse_fn fn, const char *in, int code)
{
    struct flexpu_error err = {0};
    int64_t v = SENTINEL;
    int rc = fn(in, "gpu.memory", &v, &err);
    if (rc != code)
        print_error("input '%s': rc %d (%s), want %d\n", in ? in : "(null)", rc, err.msg, code);
    assert_int_equal(rc, code);
    assert_int_equal(err.code, code);
    assert_int_equal(v, SENTINEL);
    assert_non_null(strstr(err.msg, "field 'gpu.memory'"));
    char quoted[128];
    snprintf(quoted, sizeof(quoted), "invalid value '%s'", in ? in : "");
    for (char *q = quoted; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            *q = '?'; /* as the message shows control bytes */
    if (!strstr(err.msg, quoted))
        print_error("message '%s' lacks \"%s\"\n", err.msg, quoted);
    assert_non_null(strstr(err.msg, quoted));
}

static void test_milli_basic(void **state)
{
    (void)state;
    static const struct good g[] = {
        {"1500m", 1500},
        {"2", 2000},
        {"+2", 2000},
        {"0", 0},
        {"-0", 0},
        {"0.0", 0},
        {"0.5", 500},
        {".5", 500},
        {"1.5", 1500},
        {"1.5k", 1500000},
        {"1k", 1000000},
        {"1M", INT64_C(1000000000)},
        {"1G", INT64_C(1000000000000)},
        {"1T", INT64_C(1000000000000000)},
        {"1P", INT64_C(1000000000000000000)},
        {"1e3", 1000000},
        {"1E3", 1000000},
        {"1e+3", 1000000},
        {"2e0", 2000},
        {"1e-3", 1},
        {"1000000n", 1},
        {"1000u", 1},
        {"4Gi", INT64_C(4294967296000)},
        {"512Mi", INT64_C(536870912000)},
        {"1Ki", 1024000},
        {"1Ti", INT64_C(1099511627776000)},
        {"0.5Ki", 512000},
        {"007", 7000},
        {"12.000", 12000},
        {"0.000001", 1},
    };
    expect_good(flexpu_quantity_parse_milli, g, sizeof(g) / sizeof(g[0]));
}

/* Kubernetes rounds an inexact value up, away from zero. */
static void test_milli_rounding(void **state)
{
    (void)state;
    static const struct good g[] = {
        {"0.1m", 1},  {"0.9m", 1},    {"1.1m", 2},    {"1n", 1},       {"1u", 1},
        {"0.0001", 1}, {"1.0001", 1001}, {"1e-999", 1}, {"-0.1m", -1},  {"-1.5m", -2},
        {"-1500m", -1500}, {"-2", -2000}, {"-1.5k", -1500000}, {"-4Gi", INT64_C(-4294967296000)},
    };
    expect_good(flexpu_quantity_parse_milli, g, sizeof(g) / sizeof(g[0]));
}

static void test_units(void **state)
{
    (void)state;
    static const struct good g[] = {
        {"1500m", 2},
        {"1000m", 1},
        {"1001m", 2},
        {"999m", 1},
        {"1m", 1},
        {"0", 0},
        {"2", 2},
        {"+2", 2},
        {"-2", -2},
        {"-1.5", -2},
        {"-1500m", -2},
        {"-1000m", -1},
        {"0.1", 1},
        {"1.5k", 1500},
        {"2e3", 2000},
        {"1E3", 1000},
        {"4Gi", INT64_C(4294967296)},
        {"512Mi", INT64_C(536870912)},
        {"7Ei", INT64_C(8070450532247928832)},
        {"9E", INT64_C(9000000000000000000)},
        {"9223372036854775800", INT64_C(9223372036854775800)},
        {"922337203685477580e1", INT64_C(9223372036854775800)},
        {"123456789012345678", INT64_C(123456789012345678)},
    };
    expect_good(flexpu_quantity_parse, g, sizeof(g) / sizeof(g[0]));
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct good g[] = {
        /* Docker/JVM letters are binary units. */
        {"4g", INT64_C(4294967296)},
        {"512m", INT64_C(536870912)},
        {"1m", INT64_C(1048576)},
        {"1500m", INT64_C(1572864000)},
        {"2k", 2048},
        {"8t", INT64_C(8796093022208)},
        {"4gb", INT64_C(4294967296)},
        {"4gB", INT64_C(4294967296)},
        {"16kb", 16384},
        {"16kB", 16384},
        {"1mb", INT64_C(1048576)},
        {"1tb", INT64_C(1099511627776)},
        {"1.5k", 1536},
        {"0.5m", 524288},
        /* Kubernetes suffixes keep their meaning. */
        {"8Gi", INT64_C(8589934592)},
        {"512Mi", INT64_C(536870912)},
        {"1Ki", 1024},
        {"1.5Mi", INT64_C(1572864)},
        {"1G", INT64_C(1000000000)},
        {"1M", INT64_C(1000000)},
        {"1k", 1024}, /* "k" is the Docker letter here, not 1000 */
        {"1T", INT64_C(1000000000000)},
        {"1e3", 1000},
        {"1E3", 1000},
        {"+2", 2},
        {"4096", 4096},
        {"0", 0},
        {"-0", 0},
        /* Fractions round up to a byte. */
        {"0.5", 1},
        {"1.1", 2},
        {"0.3k", 308},
        {"0.1m", 104858},
        {"0.5Ki", 512},
        {"0.1Ki", 103},
        {"1e-999", 1},
    };
    expect_good(flexpu_size_parse, g, sizeof(g) / sizeof(g[0]));
}

static void test_size_negative_rejected(void **state)
{
    (void)state;
    static const char *const neg[] = {"-1", "-4g", "-4Gi", "-0.5", "-1e3", "-512m", "-1k"};
    for (size_t i = 0; i < sizeof(neg) / sizeof(neg[0]); i++) {
        expect_bad(flexpu_size_parse, neg[i], FLEXPU_EPARSE);
        struct flexpu_error err = {0};
        int64_t v = SENTINEL;
        flexpu_size_parse(neg[i], "mem", &v, &err);
        assert_non_null(strstr(err.msg, "negative"));
    }
}

static void test_overflow(void **state)
{
    (void)state;
    /* 10 * 2^60 > INT64_MAX in any unit. */
    for (size_t i = 0; i < sizeof(parsers) / sizeof(parsers[0]); i++) {
        expect_bad(parsers[i].fn, "10Ei", FLEXPU_ERANGE);
        expect_bad(parsers[i].fn, "16Ei", FLEXPU_ERANGE);
        expect_bad(parsers[i].fn, "1e999", FLEXPU_ERANGE);
        expect_bad(parsers[i].fn, "1e19", FLEXPU_ERANGE);
        expect_bad(parsers[i].fn, "-1e999", parsers[i].fn == flexpu_size_parse
                                                ? FLEXPU_EPARSE
                                                : FLEXPU_ERANGE);
    }
    /* Values that fit in units but not in thousandths. */
    expect_bad(flexpu_quantity_parse_milli, "9Pi", FLEXPU_ERANGE);
    expect_bad(flexpu_quantity_parse_milli, "1E", FLEXPU_ERANGE);
    expect_bad(flexpu_quantity_parse_milli, "9223372036854775800", FLEXPU_ERANGE);
    expect_bad(flexpu_quantity_parse_milli, "9223372036854776", FLEXPU_ERANGE);
    /* Just past INT64_MAX. */
    expect_bad(flexpu_quantity_parse, "8Ei", FLEXPU_ERANGE);
    expect_bad(flexpu_quantity_parse, "10E", FLEXPU_ERANGE);
    expect_bad(flexpu_quantity_parse, "9223372036854775810", FLEXPU_ERANGE);
    expect_bad(flexpu_size_parse, "8Ei", FLEXPU_ERANGE);
    expect_bad(flexpu_size_parse, "8388608t", FLEXPU_ERANGE); /* 2^23 TiB = 2^63 */
    expect_bad(flexpu_size_parse, "9223372036854775810", FLEXPU_ERANGE);

    struct flexpu_error err = {0};
    int64_t v = SENTINEL;
    assert_int_equal(flexpu_quantity_parse_milli("10Ei", "cpu", &v, &err), FLEXPU_ERANGE);
    assert_non_null(strstr(err.msg, "64 bits"));
}

static void test_bad_input(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",     "abc",  "4X",  "1..2",  "1.2.3", " 4",   "4 ",  "Gi",   "-",    "+",
        "1e",   "1f",   ".",   "1e+",   "1e-",   "e3",   "1e3x", "1Gi2", "1 Gi", "4GiB",
        "4KB",  "4K",   "0x10", "1,5",  "1e3Ki", "1Kii", "++1", "+-1",  "1-",   "\t4",
        "4\n",  "1e1.5", "Ki1", "m",    "1e-e",  "nan",  "inf", "1_000", "１",  "4.Gi.",
    };
    for (size_t p = 0; p < sizeof(parsers) / sizeof(parsers[0]); p++)
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            expect_bad(parsers[p].fn, bad[i], FLEXPU_EPARSE);
}

/* The Docker letters are for sizes only: a quantity's "g" is unknown. */
static void test_size_letters_not_quantities(void **state)
{
    (void)state;
    expect_bad(flexpu_quantity_parse, "4g", FLEXPU_EPARSE);
    expect_bad(flexpu_quantity_parse_milli, "4gb", FLEXPU_EPARSE);
    expect_bad(flexpu_quantity_parse, "8t", FLEXPU_EPARSE);
    /* ...while a quantity's "m" is milli. */
    int64_t v = SENTINEL;
    assert_int_equal(flexpu_quantity_parse_milli("512m", "f", &v, NULL), 0);
    assert_int_equal(v, 512);
}

static void test_messages(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    int64_t v = SENTINEL;
    assert_int_equal(flexpu_quantity_parse("4X", "requests.cpu", &v, &err), FLEXPU_EPARSE);
    assert_non_null(strstr(err.msg, "requests.cpu"));
    assert_non_null(strstr(err.msg, "'4X'"));
    assert_non_null(strstr(err.msg, "suffix"));

    assert_int_equal(flexpu_size_parse("4X", "FLEXPU_MEM", &v, &err), FLEXPU_EPARSE);
    assert_non_null(strstr(err.msg, "FLEXPU_MEM"));
    assert_non_null(strstr(err.msg, "unit"));

    assert_int_equal(flexpu_quantity_parse("", "cpu", &v, &err), FLEXPU_EPARSE);
    assert_non_null(strstr(err.msg, "empty"));

    /* A long value is cut in the message, not copied whole. */
    char longv[300];
    memset(longv, '7', sizeof(longv) - 2);
    longv[sizeof(longv) - 2] = 'X';
    longv[sizeof(longv) - 1] = '\0';
    assert_int_equal(flexpu_quantity_parse(longv, "cpu", &v, &err), FLEXPU_EPARSE);
    assert_non_null(strstr(err.msg, "field 'cpu'"));
    assert_non_null(strstr(err.msg, "..."));
    assert_true(strlen(err.msg) < 200);

    /* Control bytes never reach the message. */
    assert_int_equal(flexpu_quantity_parse("4\x1b[31m", "cpu", &v, &err), FLEXPU_EPARSE);
    assert_null(strchr(err.msg, '\x1b'));
    assert_non_null(strstr(err.msg, "'4?[31m'"));
    assert_int_equal(v, SENTINEL);
}

static void test_null_args(void **state)
{
    (void)state;
    int64_t v = SENTINEL;
    struct flexpu_error err = {0};
    for (size_t i = 0; i < sizeof(parsers) / sizeof(parsers[0]); i++) {
        assert_int_equal(parsers[i].fn(NULL, "f", &v, &err), FLEXPU_EPARSE);
        assert_non_null(strstr(err.msg, "field 'f'"));
        /* err may be NULL: the code still comes back. */
        assert_int_equal(parsers[i].fn("4X", "f", &v, NULL), FLEXPU_EPARSE);
        assert_int_equal(parsers[i].fn("10Ei", "f", &v, NULL), FLEXPU_ERANGE);
        assert_int_equal(v, SENTINEL);
    }
    assert_int_equal(flexpu_size_parse("2k", "f", &v, NULL), 0);
    assert_int_equal(v, 2048);
}

/* More than 18 significant digits cannot be kept exact; such input is an
 * error (never a silently wrong value). */
static void test_long_mantissa(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(parsers) / sizeof(parsers[0]); i++) {
        struct flexpu_error err = {0};
        int64_t v = SENTINEL;
        int rc = parsers[i].fn("12345678901234567891", "f", &v, &err);
        assert_true(rc == FLEXPU_EPARSE || rc == FLEXPU_ERANGE);
        assert_int_equal(v, SENTINEL);
        /* Trailing zeros past 18 digits are exact. */
        rc = parsers[i].fn("0.100000000000000000000000000000", "f", &v, &err);
        assert_int_equal(rc, 0);
        assert_int_equal(v, parsers[i].fn == flexpu_quantity_parse_milli ? 100 : 1);
    }
}

/* Sizes that must be whole bytes: what rounds up is refused, naming the
 * field and value; what is exact passes, in every notation. */
static void test_size_whole(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t bytes;
    } whole[] = {
        {"1048576", 1048576}, {"1.5Mi", 1572864}, {"0.5k", 512},
        {"1e6", 1000000},     {"4g", 4294967296}, {"2.5e3", 2500},
    };
    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++) {
        int64_t v = SENTINEL;
        assert_int_equal(flexpu_size_parse_whole(whole[i].text, "f", &v, NULL), 0);
        assert_int_equal(v, whole[i].bytes);
    }
    static const char *const frac[] = {"0.0000001", "0.5", "1048576.5", "1.0000001Ki",
                                       "1e-7",      "0.001k"};
    for (size_t i = 0; i < sizeof(frac) / sizeof(frac[0]); i++) {
        struct flexpu_error err = {0};
        int64_t v = SENTINEL;
        assert_int_equal(flexpu_size_parse_whole(frac[i], "FLEXPU_MEMORY_LIMIT", &v, &err),
                         FLEXPU_EPARSE);
        assert_int_equal(v, SENTINEL);
        assert_non_null(strstr(err.msg, "FLEXPU_MEMORY_LIMIT"));
        assert_non_null(strstr(err.msg, frac[i]));
        assert_non_null(strstr(err.msg, "whole number of bytes"));
        /* the rounding parser still rounds them up */
        assert_int_equal(flexpu_size_parse(frac[i], "f", &v, NULL), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_milli_basic),
        cmocka_unit_test(test_milli_rounding),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_size_negative_rejected),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_size_letters_not_quantities),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_null_args),
        cmocka_unit_test(test_long_mantissa),
        cmocka_unit_test(test_size_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
