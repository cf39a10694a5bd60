/* SPDX-License-Identifier: Apache-2.0 */
/* Error codes, names, messages and the error record. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "flexpu/error.h"

static void test_names_and_messages(void **state)
{
    (void)state;
    static const struct {
        int code;
        const char *name, *msg;
    } all[] = {
        {FLEXPU_OK, "OK", "success"},
        {FLEXPU_EINVAL, "EINVAL", "invalid argument"},
        {FLEXPU_ERANGE, "ERANGE", "value out of range"},
        {FLEXPU_ENOMEM, "ENOMEM", "out of memory"},
        {FLEXPU_ENOENT, "ENOENT", "no such object"},
        {FLEXPU_EEXIST, "EEXIST", "object already exists"},
        {FLEXPU_EIO, "EIO", "input/output error"},
        {FLEXPU_EPARSE, "EPARSE", "malformed input"},
        {FLEXPU_ENOFIT, "ENOFIT", "request does not fit"},
        {FLEXPU_EBUSY, "EBUSY", "object in use"},
    };
    size_t n = sizeof(all) / sizeof(all[0]);
    /* The table covers every code of the enum. */
    assert_int_equal(n - 1, FLEXPU_ERRNO_END - FLEXPU_ERRNO_BASE - 1);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(flexpu_err_name(all[i].code), all[i].name);
        assert_string_equal(flexpu_strerror(all[i].code), all[i].msg);
        if (all[i].code != FLEXPU_OK)
            assert_true(all[i].code < 0);
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(all[i].code, all[j].code);
    }
}

static void test_unknown_codes(void **state)
{
    (void)state;
    static const int unknown[] = {1,       -1,      22,      -22,     FLEXPU_ERRNO_BASE,
                                  FLEXPU_ERRNO_END, INT_MIN, INT_MAX, -2000, 1000};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        assert_string_equal(flexpu_err_name(unknown[i]), "EUNKNOWN");
        assert_string_equal(flexpu_strerror(unknown[i]), "unknown error");
    }
}

static void test_error_set(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    assert_int_equal(flexpu_error_set(&err, FLEXPU_ENOENT, "node %s (%d)", "n1", 3),
                     FLEXPU_ENOENT);
    assert_int_equal(err.code, FLEXPU_ENOENT);
    assert_string_equal(err.msg, "node n1 (3)");
    /* NULL err: the code still comes back. */
    assert_int_equal(flexpu_error_set(NULL, FLEXPU_EIO, "x %d", 1), FLEXPU_EIO);

    /* A long message is cut to the record, NUL-terminated. */
    char big[1000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(flexpu_error_set(&err, FLEXPU_EINVAL, "%s", big), FLEXPU_EINVAL);
    assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
}

static void test_error_field(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    assert_int_equal(flexpu_error_field(&err, FLEXPU_EPARSE, "cpu", "4X", 2, "unknown suffix"),
                     FLEXPU_EPARSE);
    assert_int_equal(err.code, FLEXPU_EPARSE);
    assert_string_equal(err.msg, "field 'cpu': invalid value '4X': unknown suffix");

    /* value_len, not the NUL, bounds what is shown. */
    flexpu_error_field(&err, FLEXPU_EINVAL, "name", "abcdef", 3, "why");
    assert_string_equal(err.msg, "field 'name': invalid value 'abc': why");
    assert_int_equal(err.code, FLEXPU_EINVAL);

    /* NULL value is shown empty. */
    flexpu_error_field(&err, FLEXPU_EINVAL, "name", NULL, 10, "missing");
    assert_string_equal(err.msg, "field 'name': invalid value '': missing");

    /* NULL err accepted. */
    assert_int_equal(flexpu_error_field(NULL, FLEXPU_ERANGE, "f", "v", 1, "w"), FLEXPU_ERANGE);
}

static void test_error_field_truncation(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    char v[200];
    memset(v, 'a', sizeof(v));
    char want[256];

    /* 64 bytes are shown whole... */
    flexpu_error_field(&err, FLEXPU_EPARSE, "f", v, 64, "w");
    snprintf(want, sizeof(want), "field 'f': invalid value '%.64s': w", v);
    assert_string_equal(err.msg, want);

    /* ...more are cut to 64 and marked. */
    flexpu_error_field(&err, FLEXPU_EPARSE, "f", v, 65, "w");
    snprintf(want, sizeof(want), "field 'f': invalid value '%.64s...': w", v);
    assert_string_equal(err.msg, want);
    flexpu_error_field(&err, FLEXPU_EPARSE, "f", v, sizeof(v), "w");
    assert_string_equal(err.msg, want);
}

static void test_error_field_control_bytes(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    const char v[] = "a\nb\x01" "c\x7f" "d\te\x1b[0m\xc3\xa9";
    flexpu_error_field(&err, FLEXPU_EPARSE, "f", v, sizeof(v) - 1, "w");
    assert_string_equal(err.msg, "field 'f': invalid value 'a?b?c?d?e?[0m\xc3\xa9': w");
    /* An embedded NUL is a control byte too. */
    flexpu_error_field(&err, FLEXPU_EPARSE, "f", "x\0y", 3, "w");
    assert_string_equal(err.msg, "field 'f': invalid value 'x?y': w");
}

static void test_error_prefix(void **state)
{
    (void)state;
    struct flexpu_error err = {0};
    flexpu_error_field(&err, FLEXPU_EPARSE, "gpu", "x", 1, "expected an integer");
    flexpu_error_prefix(&err, "%s:%d", "nodes.csv", 7);
    assert_string_equal(err.msg,
                        "nodes.csv:7: field 'gpu': invalid value 'x': expected an integer");
    assert_int_equal(err.code, FLEXPU_EPARSE);
    flexpu_error_prefix(&err, "loading");
    assert_string_equal(err.msg,
                        "loading: nodes.csv:7: field 'gpu': invalid value 'x': expected an integer");

    /* NULL err is a no-op. */
    flexpu_error_prefix(NULL, "x %d", 1);

    /* A long tail is cut; the record stays NUL-terminated. */
    char big[400];
    memset(big, 't', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    flexpu_error_set(&err, FLEXPU_EIO, "%s", big);
    flexpu_error_prefix(&err, "p");
    assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
    assert_int_equal(strncmp(err.msg, "p: ttt", 6), 0);
    assert_int_equal(err.code, FLEXPU_EIO);

    /* A long head is cut too and the separator kept. */
    flexpu_error_set(&err, FLEXPU_EIO, "tail");
    flexpu_error_prefix(&err, "%s", big);
    size_t len = strlen(err.msg);
    assert_true(len < sizeof(err.msg));
    assert_string_equal(err.msg + len - 6, ": tail");
    for (size_t i = 0; i < len - 6; i++)
        assert_int_equal(err.msg[i], 't');

    /* Empty message. */
    flexpu_error_set(&err, FLEXPU_EIO, "%s", "");
    flexpu_error_prefix(&err, "ctx");
    assert_string_equal(err.msg, "ctx: ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_messages),
        cmocka_unit_test(test_unknown_codes),
        cmocka_unit_test(test_error_set),
        cmocka_unit_test(test_error_field),
        cmocka_unit_test(test_error_field_truncation),
        cmocka_unit_test(test_error_field_control_bytes),
        cmocka_unit_test(test_error_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
