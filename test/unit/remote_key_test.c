/* SPDX-License-Identifier: Apache-2.0 */
/* The cluster key and the derived slice tokens (node/remote_key.h): a key
 * missing, short, too long or readable by others refused, naming the path;
 * the token HMAC-SHA256(key, uid|node|uuid) (a known vector), different
 * for every slice and key, '|' and empty names refused; the token file's
 * mode and content; the servers' port range. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/remote_agent.h"
#include "node/remote_key.h"

#define TMPDIR_FIXTURE_PREFIX "remote_key_test"
#include "unit/tmpdir_fixture.h"

/* Writes `len` bytes of `c` (then a newline when nl) to dir/name, mode. */
static const char *key_file(const char *name, char c, size_t len, bool nl, mode_t mode)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < len; i++)
        fputc(c, f);
    if (nl)
        fputc('\n', f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static void test_key_load(void **state)
{
    (void)state;
    struct fx_remote_key k;
    struct flexpu_error err = {0};
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/none", dir);
    assert_int_equal(fx_remote_key_load(missing, &k, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, missing));
    assert_int_equal(fx_remote_key_load(dir, &k, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));
    const char *p = key_file("open", 'k', 32, false, 0644);
    assert_int_equal(fx_remote_key_load(p, &k, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "mode 644"));
    p = key_file("group", 'k', 32, false, 0640);
    assert_int_equal(fx_remote_key_load(p, &k, &err), FLEXPU_EINVAL);
    p = key_file("short", 'k', 31, true, 0400);
    assert_int_equal(fx_remote_key_load(p, &k, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "31 bytes, want at least 32"));
    p = key_file("long", 'k', FX_REMOTE_KEY_MAX, false, 0600);
    assert_int_equal(fx_remote_key_load(p, &k, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "longer than"));
    p = key_file("good", 'k', 32, true, 0400);
    assert_int_equal(fx_remote_key_load(p, &k, &err), 0);
    assert_int_equal(k.len, 32); /* the newline dropped */
}

static void test_token(void **state)
{
    (void)state;
    struct fx_remote_key k = {.len = 32}, k2 = {.len = 32};
    memset(k.bytes, 'k', 32);
    memset(k2.bytes, 'K', 32);
    char t[FX_REMOTE_TOKEN_HEX + 1], u[FX_REMOTE_TOKEN_HEX + 1];
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_token(&k, "uid-1", "gpu-a", "GPU-a-0", t, &err), 0);
    /* python3: hmac.new(b'k'*32, b'uid-1|gpu-a|GPU-a-0', hashlib.sha256).hexdigest() */
    assert_string_equal(t, "13ecaee3441d0a933cd0f9cf2f0248f4a53a57a9ea555d5be013cc6f7a1685e2");
    assert_int_equal(fx_remote_token(&k, "uid-2", "gpu-a", "GPU-a-0", u, &err), 0);
    assert_string_not_equal(t, u);
    assert_int_equal(fx_remote_token(&k, "uid-1", "gpu-b", "GPU-a-0", u, &err), 0);
    assert_string_not_equal(t, u);
    assert_int_equal(fx_remote_token(&k, "uid-1", "gpu-a", "GPU-a-1", u, &err), 0);
    assert_string_not_equal(t, u);
    assert_int_equal(fx_remote_token(&k2, "uid-1", "gpu-a", "GPU-a-0", u, &err), 0);
    assert_string_not_equal(t, u);
    /* "uid|x" + "y" must not be "uid" + "x|y". */
    assert_int_equal(fx_remote_token(&k, "uid|gpu-a", "GPU", "GPU-a-0", u, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "metadata.uid"));
    assert_int_equal(fx_remote_token(&k, "uid-1", "", "GPU-a-0", u, &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "remote.node"));
    assert_int_equal(fx_remote_token(&k, "uid-1", "gpu-a", NULL, u, &err), FLEXPU_EINVAL);
    struct fx_remote_key none = {0};
    assert_int_equal(fx_remote_token(&none, "uid-1", "gpu-a", "GPU-a-0", u, &err), FLEXPU_EINVAL);
}

static void test_token_write(void **state)
{
    (void)state;
    char path[128], buf[128] = {0};
    snprintf(path, sizeof(path), "%s/token", dir);
    struct flexpu_error err = {0};
    const char *hex = "13ecaee3441d0a933cd0f9cf2f0248f4a53a57a9ea555d5be013cc6f7a1685e2";
    assert_int_equal(fx_remote_token_write(path, hex, 0600, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_int_equal(strlen(buf), 65);
    assert_memory_equal(buf, hex, 64);
    assert_int_equal(fx_remote_token_write(path, hex, 0644, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
}

/* The GPU node's --remote-ports: LOW-HIGH within 1-65535, refused naming
 * the option and the value otherwise. */
static void test_port_range(void **state)
{
    (void)state;
    int lo = 0, hi = 0;
    struct flexpu_error err = {0};
    assert_int_equal(fx_remote_port_range_parse("7100-7199", &lo, &hi, &err), 0);
    assert_int_equal(lo, 7100);
    assert_int_equal(hi, 7199);
    assert_int_equal(fx_remote_port_range_parse("1-1", &lo, &hi, &err), 0);
    assert_int_equal(fx_remote_port_range_parse("65535-65535", &lo, &hi, &err), 0);
    const char *bad[] = {"", "7100", "7199-7100", "0-10", "1-65536", "7100-7199x", "a-b",
                         "7100 - 7199"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(fx_remote_port_range_parse(bad[i], &lo, &hi, &err), FLEXPU_EINVAL);
        assert_non_null(strstr(err.msg, "--remote-ports"));
    }
    assert_int_equal(fx_remote_port_range_parse(NULL, &lo, &hi, &err), FLEXPU_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_load),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_token_write),
        cmocka_unit_test(test_port_range),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
