/* SPDX-License-Identifier: Apache-2.0 */
/* FNV-1a 64: the published test vectors, and the helpers that fold strings
 * and integers agree with folding their bytes one by one. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "util/fnv.h"

/* From the FNV reference test suite (draft-eastlake-fnv, fnv_test.c). */
static void test_known_values(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t h;
    } kat[] = {
        {"", 0xcbf29ce484222325ULL},
        {"a", 0xaf63dc4c8601ec8cULL},
        {"foobar", 0x85944171f73967e8ULL},
    };
    for (size_t i = 0; i < sizeof(kat) / sizeof(kat[0]); i++) {
        assert_int_equal(fx_fnv1a_str(FX_FNV1A_OFFSET, kat[i].s), kat[i].h);
        assert_int_equal(fx_fnv1a(FX_FNV1A_OFFSET, kat[i].s, strlen(kat[i].s)), kat[i].h);
    }
    /* Folding in pieces is folding the whole. */
    assert_int_equal(fx_fnv1a_str(fx_fnv1a_str(FX_FNV1A_OFFSET, "foo"), "bar"),
                     0x85944171f73967e8ULL);
    assert_int_equal(fx_fnv1a_str(FX_FNV1A_OFFSET, NULL), FX_FNV1A_OFFSET);
}

static void test_field_and_u64(void **state)
{
    (void)state;
    /* "a" then 0xff. */
    assert_int_equal(fx_fnv1a_field(FX_FNV1A_OFFSET, "a"),
                     fx_fnv1a(FX_FNV1A_OFFSET, "a\xff", 2));
    assert_int_not_equal(fx_fnv1a_field(fx_fnv1a_field(FX_FNV1A_OFFSET, "ab"), "c"),
                         fx_fnv1a_field(fx_fnv1a_field(FX_FNV1A_OFFSET, "a"), "bc"));
    /* Least significant byte first. */
    static const unsigned char le[8] = {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
    assert_int_equal(fx_fnv1a_u64(FX_FNV1A_OFFSET, 0x0102030405060708ULL),
                     fx_fnv1a(FX_FNV1A_OFFSET, le, sizeof(le)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_field_and_u64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
