/* SPDX-License-Identifier: Apache-2.0 */
/* The topology keys of remote slices (scheduler/remote_topology.h,
 * --remote-topology-keys): the default reads, "" is no preference, and a
 * key Kubernetes would not take as a label key is refused, naming the
 * flag and the key, with the keys left as they were. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "scheduler/remote_topology.h"

#define FLAG "--remote-topology-keys"

static void test_default_and_empty(void **state)
{
    (void)state;
    struct fx_remote_topology t;
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_topology_parse(FLAG, FX_REMOTE_TOPOLOGY_KEYS_DEFAULT, &t, &err), 0);
    assert_int_equal(t.n, 3);
    assert_string_equal(t.key[0], "topology.kubernetes.io/rack");
    assert_string_equal(t.key[1], "topology.kubernetes.io/zone");
    assert_string_equal(t.key[2], "topology.kubernetes.io/region");
    assert_int_equal(fx_remote_topology_parse(FLAG, "", &t, &err), 0);
    assert_int_equal(t.n, 0);
    t.n = 5;
    assert_int_equal(fx_remote_topology_parse(FLAG, NULL, &t, &err), 0);
    assert_int_equal(t.n, 0);
    /* A prefix is optional; names may hold '_', '.', '-' and capitals. */
    assert_int_equal(fx_remote_topology_parse(FLAG, "rack,example.com/Row_2.b-c", &t, &err), 0);
    assert_int_equal(t.n, 2);
    assert_string_equal(t.key[0], "rack");
    assert_string_equal(t.key[1], "example.com/Row_2.b-c");
}

static void test_bad_keys_refused(void **state)
{
    (void)state;
    char long_name[80], long_prefix[300], nine[200] = "";
    memset(long_name, 'a', 64);
    long_name[64] = '\0';
    snprintf(long_prefix, sizeof(long_prefix), "%0254d/zone", 0);
    for (int i = 0; i < 9; i++)
        snprintf(nine + strlen(nine), sizeof(nine) - strlen(nine), "%sk%d", i ? "," : "", i);
    const struct {
        const char *text, *shown, *why;
    } bad[] = {
        {"zone,,rack", "zone,,rack", "an empty key"},
        {"zone,", "zone,", "an empty key"},
        {",zone", ",zone", "an empty key"},
        {"Example.com/zone", "Example.com/zone", "DNS subdomain"},
        {"example..com/zone", "example..com/zone", "DNS subdomain"},
        {"-x.com/zone", "-x.com/zone", "DNS subdomain"},
        {"/zone", "/zone", "DNS subdomain"},
        {"a/b/c", "a/b/c", "not a label key"},
        {"example.com/", "example.com/", "not a label key"},
        {"zone a", "zone a", "not a label key"},
        {"zone, rack", " rack", "not a label key"},
        {"-zone", "-zone", "not a label key"},
        {long_name, long_name, "not a label key"},
        {long_prefix, "", "DNS subdomain"},
        {"zone,rack,zone", "zone", "twice"},
        {"kubernetes.io/hostname", "kubernetes.io/hostname", "hostname"},
        {nine, "k8", "more than 8"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct fx_remote_topology t = {.n = 1, .key = {"kept"}};
        struct flexpu_error err = {0};
        int rc = fx_remote_topology_parse(FLAG, bad[i].text, &t, &err);
        if (rc != FLEXPU_EINVAL)
            fail_msg("'%s' accepted (rc %d)", bad[i].text, rc);
        assert_non_null(strstr(err.msg, FLAG));
        if (!strstr(err.msg, bad[i].shown) || !strstr(err.msg, bad[i].why))
            fail_msg("'%s': %s", bad[i].text, err.msg);
        assert_int_equal(t.n, 1);
        assert_string_equal(t.key[0], "kept");
    }
    /* Eight is the most. */
    struct fx_remote_topology t;
    struct flexpu_error err = {0};
    nine[strlen(nine) - 3] = '\0';
    assert_int_equal(fx_remote_topology_parse(FLAG, nine, &t, &err), 0);
    assert_int_equal(t.n, 8);
}

/* At Kubernetes' limits: a 253-byte prefix and a 63-byte name (317 bytes,
 * the key's whole buffer but its NUL), eight of them, are kept whole; the
 * name may have capitals (only the prefix is lowercase). The same key is
 * what helm_e2e renders through the chart's schema. */
static void test_keys_at_limits(void **state)
{
    (void)state;
    char key[FX_LABEL_KEY_MAX + 1], all[8 * (FX_LABEL_KEY_MAX + 1)];
    memset(key, 'a', 253);
    for (int i = 63; i < 253; i += 64)
        key[i] = '.';
    key[253] = '/';
    memset(key + 254, 'Z', 63);
    key[317] = '\0';
    assert_int_equal(strlen(key), FX_LABEL_KEY_MAX);
    all[0] = '\0';
    for (int i = 0; i < 8; i++) {
        key[0] = (char)('a' + i); /* eight different keys */
        snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s%s", i ? "," : "", key);
    }
    struct fx_remote_topology t;
    struct flexpu_error err = {0};
    if (fx_remote_topology_parse(FLAG, all, &t, &err))
        fail_msg("refused: %s", err.msg);
    assert_int_equal(t.n, 8);
    for (int i = 0; i < 8; i++) {
        key[0] = (char)('a' + i);
        assert_string_equal(t.key[i], key);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_and_empty),
        cmocka_unit_test(test_bad_keys_refused),
        cmocka_unit_test(test_keys_at_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
