/* SPDX-License-Identifier: Apache-2.0 */
/* The CSV reader: quoting, line ends, lookups by header and error messages
 * that name the file, line, column and value. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/csv.h"

/* A read-only stream over text; fx_csv_close() closes it. */
static FILE *mem(const char *text)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    return f;
}

static void open_ok(struct fx_csv *c, const char *text)
{
    struct flexpu_error err = {0};
    int rc = fx_csv_open(c, "t.csv", mem(text), &err);
    if (rc)
        print_error("fx_csv_open: %s\n", err.msg);
    assert_int_equal(rc, 0);
}

static void contains(const char *msg, const char *part)
{
    if (!strstr(msg, part))
        print_error("message '%s' lacks '%s'\n", msg, part);
    assert_non_null(strstr(msg, part));
}

static void test_simple(void **state)
{
    (void)state;
    struct fx_csv c;
    struct flexpu_error err = {0};
    open_ok(&c, "a,b,c\n1,2,3\nx,,z\n");
    assert_int_equal(c.nheader, 3);
    assert_string_equal(c.header[0], "a");
    assert_string_equal(c.header[2], "c");
    assert_int_equal(fx_csv_column(&c, "a", &err), 0);
    assert_int_equal(fx_csv_column(&c, "c", &err), 2);
    assert_int_equal(fx_csv_column_opt(&c, "b"), 1);
    assert_int_equal(fx_csv_column_opt(&c, "B"), -1);
    assert_int_equal(fx_csv_column_opt(&c, ""), -1);

    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(c.line, 2);
    assert_int_equal(c.nfields, 3);
    assert_string_equal(fx_csv_str(&c, 0), "1");
    assert_string_equal(fx_csv_str(&c, 2), "3");
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(c.line, 3);
    assert_string_equal(fx_csv_str(&c, 0), "x");
    assert_string_equal(fx_csv_str(&c, 1), "");
    assert_string_equal(fx_csv_str(&c, 2), "z");
    /* Out-of-range columns read as empty. */
    assert_string_equal(fx_csv_str(&c, -1), "");
    assert_string_equal(fx_csv_str(&c, 3), "");
    assert_int_equal(fx_csv_next(&c, &err), 0);
    assert_int_equal(fx_csv_next(&c, &err), 0);
    fx_csv_close(&c);
}

static void test_quoting(void **state)
{
    (void)state;
    struct fx_csv c;
    struct flexpu_error err = {0};
    open_ok(&c, "\"na,me\",\"q\"\"h\",plain\n"
                "\"x,y\",\"say \"\"hi\"\"\",z\n"
                "\"\",\"\"\"\"\"\",\",\"\n");
    assert_string_equal(c.header[0], "na,me");
    assert_string_equal(c.header[1], "q\"h");
    assert_int_equal(fx_csv_column(&c, "na,me", &err), 0);
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(c.nfields, 3);
    assert_string_equal(fx_csv_str(&c, 0), "x,y");
    assert_string_equal(fx_csv_str(&c, 1), "say \"hi\"");
    assert_string_equal(fx_csv_str(&c, 2), "z");
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_string_equal(fx_csv_str(&c, 0), "");
    assert_string_equal(fx_csv_str(&c, 1), "\"\"");
    assert_string_equal(fx_csv_str(&c, 2), ",");
    assert_int_equal(fx_csv_next(&c, &err), 0);
    fx_csv_close(&c);
}

static void test_crlf_and_no_final_newline(void **state)
{
    (void)state;
    struct fx_csv c;
    struct flexpu_error err = {0};
    open_ok(&c, "a,b\r\n1,2\r\n\"3\",\"4\"\r\n5,6");
    assert_string_equal(c.header[1], "b");
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_string_equal(fx_csv_str(&c, 1), "2");
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_string_equal(fx_csv_str(&c, 0), "3");
    assert_string_equal(fx_csv_str(&c, 1), "4");
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(c.line, 4);
    assert_string_equal(fx_csv_str(&c, 1), "6");
    assert_int_equal(fx_csv_next(&c, &err), 0);
    fx_csv_close(&c);
}

static void test_header_only(void **state)
{
    (void)state;
    struct fx_csv c;
    struct flexpu_error err = {0};
    open_ok(&c, "a,b\n");
    assert_int_equal(fx_csv_next(&c, &err), 0);
    fx_csv_close(&c);
}

static void test_empty_file(void **state)
{
    (void)state;
    struct fx_csv c;
    struct flexpu_error err = {0};
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(fx_csv_open(&c, "empty.csv", f, &err), FLEXPU_EPARSE);
    assert_int_equal(err.code, FLEXPU_EPARSE);
    contains(err.msg, "empty.csv");
    contains(err.msg, "header");
}

static void test_missing_file(void **state)
{
    (void)state;
    struct fx_csv c;
    struct flexpu_error err = {0};
    assert_int_equal(fx_csv_open(&c, "/nonexistent/dir/x.csv", NULL, &err), FLEXPU_EIO);
    contains(err.msg, "/nonexistent/dir/x.csv");
    contains(err.msg, "cannot open");
}

static void test_missing_column(void **state)
{
    (void)state;
    struct fx_csv c;
    struct flexpu_error err = {0};
    open_ok(&c, "a,b\n1,2\n");
    assert_int_equal(fx_csv_column(&c, "gpu_milli", &err), FLEXPU_EPARSE);
    assert_int_equal(err.code, FLEXPU_EPARSE);
    assert_string_equal(err.msg, "t.csv:1: missing column 'gpu_milli' in the header");
    fx_csv_close(&c);
}

static void test_wrong_field_count(void **state)
{
    (void)state;
    struct fx_csv c;
    struct flexpu_error err = {0};
    open_ok(&c, "a,b\n1,2\n1,2,3\n");
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(fx_csv_next(&c, &err), FLEXPU_EPARSE);
    assert_string_equal(err.msg, "t.csv:3: 3 fields, the header has 2");
    fx_csv_close(&c);

    open_ok(&c, "a,b,c\n1,2,3\n4,5,6\nonly\n");
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(fx_csv_next(&c, &err), FLEXPU_EPARSE);
    assert_string_equal(err.msg, "t.csv:4: 1 fields, the header has 3");
    fx_csv_close(&c);

    /* A quoted comma is not a separator; an unquoted one is. */
    open_ok(&c, "a,b\n\"1,2\",3\n1,2,\n");
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(fx_csv_next(&c, &err), FLEXPU_EPARSE);
    contains(err.msg, "t.csv:3: 3 fields");
    fx_csv_close(&c);
}

static void test_empty_line(void **state)
{
    (void)state;
    struct fx_csv c;
    struct flexpu_error err = {0};
    open_ok(&c, "a,b\n1,2\n\n3,4\n");
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(fx_csv_next(&c, &err), FLEXPU_EPARSE);
    assert_string_equal(err.msg, "t.csv:3: empty line");
    fx_csv_close(&c);

    /* A blank line at the end, CRLF too, is no exception. */
    open_ok(&c, "a,b\r\n1,2\r\n\r\n");
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(fx_csv_next(&c, &err), FLEXPU_EPARSE);
    assert_string_equal(err.msg, "t.csv:3: empty line");
    fx_csv_close(&c);
}

static void test_bad_quotes(void **state)
{
    (void)state;
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"a,b\n\"1,2\n", "t.csv:2: field 1: unterminated quote"},
        {"a,b\n1,\"2\n", "t.csv:2: field 2: unterminated quote"},
        {"a,b\n1,\"2\"\"\n", "t.csv:2: field 2: unterminated quote"},
        {"a,b\n\"1\"x,2\n", "t.csv:2: field 1: text after closing quote"},
        {"a,b\n1\"2,3\n", "t.csv:2: field 1: quote inside unquoted field"},
        {"a,b\n1,2\"\n", "t.csv:2: field 2: quote inside unquoted field"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fx_csv c;
        struct flexpu_error err = {0};
        open_ok(&c, cases[i].text);
        assert_int_equal(fx_csv_next(&c, &err), FLEXPU_EPARSE);
        assert_string_equal(err.msg, cases[i].msg);
        fx_csv_close(&c);
    }
    /* In the header the open fails and cleans up. */
    struct fx_csv c;
    struct flexpu_error err = {0};
    assert_int_equal(fx_csv_open(&c, "h.csv", mem("a,\"b\n1,2\n"), &err), FLEXPU_EPARSE);
    assert_string_equal(err.msg, "h.csv:1: field 2: unterminated quote");
}

static void test_too_many_fields(void **state)
{
    (void)state;
    char text[512];
    size_t o = 0;
    for (int i = 0; i < FX_CSV_MAX_FIELDS + 1; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "%sc%d", i ? "," : "", i);
    snprintf(text + o, sizeof(text) - o, "\n");
    struct fx_csv c;
    struct flexpu_error err = {0};
    assert_int_equal(fx_csv_open(&c, "wide.csv", mem(text), &err), FLEXPU_EPARSE);
    contains(err.msg, "wide.csv:1");
    contains(err.msg, "more than 64 fields");

    /* Exactly the maximum is fine. */
    text[strlen(text) - strlen(",c64\n")] = '\0';
    open_ok(&c, text);
    assert_int_equal(c.nheader, FX_CSV_MAX_FIELDS);
    assert_string_equal(c.header[FX_CSV_MAX_FIELDS - 1], "c63");
    fx_csv_close(&c);
}

static void test_nul_byte(void **state)
{
    (void)state;
    static const char text[] = "a,b\n1,2\n3\0,4\n";
    FILE *f = fmemopen((void *)text, sizeof(text) - 1, "r");
    assert_non_null(f);
    struct fx_csv c;
    struct flexpu_error err = {0};
    assert_int_equal(fx_csv_open(&c, "t.csv", f, &err), 0);
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(fx_csv_next(&c, &err), FLEXPU_EPARSE);
    assert_string_equal(err.msg, "t.csv:3: NUL byte in text");
    fx_csv_close(&c);
}

static void test_long_line(void **state)
{
    (void)state;
    size_t n = (1u << 20) + 100;
    char *text = malloc(n + 16);
    assert_non_null(text);
    memcpy(text, "a\n", 2);
    memset(text + 2, 'x', n - 3);
    text[n - 1] = '\n';
    text[n] = '\0';
    struct fx_csv c;
    struct flexpu_error err = {0};
    open_ok(&c, text);
    assert_int_equal(fx_csv_next(&c, &err), FLEXPU_EPARSE);
    assert_string_equal(err.msg, "t.csv:2: line longer than 1 MiB");
    fx_csv_close(&c);

    /* Long but under the limit: read whole. */
    text[2 + 300000] = '\n';
    text[2 + 300001] = '\0';
    open_ok(&c, text);
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(strlen(fx_csv_str(&c, 0)), 300000);
    fx_csv_close(&c);
    free(text);
}

static void test_int(void **state)
{
    (void)state;
    struct fx_csv c;
    struct flexpu_error err = {0};
    open_ok(&c, "name,n,m\nx,42,-5\n");
    assert_int_equal(fx_csv_next(&c, &err), 1);
    int64_t v = 0;
    assert_int_equal(fx_csv_int(&c, 1, 0, 100, &v, &err), 0);
    assert_int_equal(v, 42);
    assert_int_equal(fx_csv_int(&c, 2, -10, 10, &v, &err), 0);
    assert_int_equal(v, -5);
    assert_int_equal(fx_csv_int(&c, 1, 42, 42, &v, &err), 0);
    assert_int_equal(v, 42);
    fx_csv_close(&c);

    static const struct {
        const char *value;
        int64_t lo, hi;
        const char *why;
    } bad[] = {
        {"abc", 0, 100, "expected an integer"},
        {"12x", 0, 100, "expected an integer"},
        {"1.5", 0, 100, "expected an integer"},
        {" 5", 0, 100, "expected an integer"},
        {"5 ", 0, 100, "expected an integer"},
        {"-", 0, 100, "expected an integer"},
        {"0x10", 0, 100, "expected an integer"},
        {"", 0, 100, "empty, expected an integer"},
        {"101", 0, 100, "out of range [0, 100]"},
        {"-1", 0, 100, "out of range [0, 100]"},
        {"99999999999999999999", 0, INT64_MAX,
         "out of range [0, 9223372036854775807]"},
        {"-99999999999999999999", INT64_MIN, 0,
         "out of range [-9223372036854775808, 0]"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "name,count\nn1,\"%s\"\n", bad[i].value);
        open_ok(&c, text);
        assert_int_equal(fx_csv_next(&c, &err), 1);
        v = 77;
        assert_int_equal(fx_csv_int(&c, 1, bad[i].lo, bad[i].hi, &v, &err), FLEXPU_EPARSE);
        assert_int_equal(err.code, FLEXPU_EPARSE);
        assert_int_equal(v, 77);
        char want[256];
        snprintf(want, sizeof(want),
                 "t.csv:2: column 2: field 'count': invalid value '%s': %s", bad[i].value,
                 bad[i].why);
        assert_string_equal(err.msg, want);
        fx_csv_close(&c);
    }
}

static void test_csv_error(void **state)
{
    (void)state;
    struct fx_csv c;
    struct flexpu_error err = {0};
    open_ok(&c, "sn,model\nnode-1,\"T\n4\"\n");
    /* A quoted newline is not supported: the record is one physical line. */
    assert_int_equal(fx_csv_next(&c, &err), FLEXPU_EPARSE);
    fx_csv_close(&c);

    open_ok(&c, "sn,model\nnode-1,Z9\n");
    assert_int_equal(fx_csv_next(&c, &err), 1);
    assert_int_equal(fx_csv_error(&c, 1, &err, "unknown model"), FLEXPU_EPARSE);
    assert_string_equal(err.msg,
                        "t.csv:2: column 2: field 'model': invalid value 'Z9': unknown model");
    /* An absent column is named '?'. */
    assert_int_equal(fx_csv_error(&c, -1, &err, "no column"), FLEXPU_EPARSE);
    assert_string_equal(err.msg, "t.csv:2: column 0: field '?': invalid value '': no column");
    fx_csv_close(&c);
    /* Closing twice is harmless. */
    fx_csv_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_crlf_and_no_final_newline),
        cmocka_unit_test(test_header_only),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_missing_column),
        cmocka_unit_test(test_wrong_field_count),
        cmocka_unit_test(test_empty_line),
        cmocka_unit_test(test_bad_quotes),
        cmocka_unit_test(test_too_many_fields),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_csv_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
