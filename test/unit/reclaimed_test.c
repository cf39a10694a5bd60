/* SPDX-License-Identifier: Apache-2.0 */
/* The killed borrowers' marks kept across restarts (node/reclaimed.h):
 * written whole and read back, checked when read (bad lines, a file too
 * large, not a regular file), bounded, pruned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/reclaimed.h"

#define TMPDIR_FIXTURE_PREFIX "fx-reclaimed-test"
#include "tmpdir_fixture.h"

#define U1 "0b0b0b0b-0000-4000-8000-00000000000b"
#define U2 "0c0c0c0c-0000-4000-8000-00000000000c"

static void put(const char *text)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/" FX_RECLAIMED_FILE, dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_written_whole_and_read_back(void **state)
{
    (void)state;
    struct fx_reclaimed s = {0}, t;
    struct flexpu_error err = {0};
    assert_int_equal(fx_reclaimed_load(&t, dir, &err), 0); /* no file: none */
    assert_int_equal(t.n, 0);
    assert_int_equal(fx_reclaimed_add(&s, dir, U1, &err), 0);
    char p[128];
    snprintf(p, sizeof(p), "%s/" FX_RECLAIMED_FILE, dir);
    struct stat before, after;
    assert_int_equal(stat(p, &before), 0);
    assert_int_equal(fx_reclaimed_add(&s, dir, U2, &err), 0);
    assert_int_equal(fx_reclaimed_add(&s, dir, U2, &err), 0); /* once */
    assert_int_equal(stat(p, &after), 0);
    if (after.st_ino == before.st_ino)
        fail_msg("'%s' was rewritten in place, not replaced", p);
    assert_int_equal(fx_reclaimed_load(&t, dir, &err), 0);
    assert_int_equal(t.n, 2);
    assert_true(fx_reclaimed_has(&t, U1) && fx_reclaimed_has(&t, U2));
    /* nothing beside it: no temporary file left */
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "test \"$(ls -A '%s')\" = " FX_RECLAIMED_FILE, dir);
    assert_int_equal(system(cmd), 0);
    /* a UID that is no UID is refused, naming it */
    assert_int_equal(fx_reclaimed_add(&s, dir, "../x", &err), FLEXPU_EINVAL);
    assert_non_null(strstr(err.msg, "'../x'"));
}

static bool keep_u2(const char *uid, void *ctx)
{
    (void)ctx;
    return strcmp(uid, U2) == 0;
}

static void test_pruned_and_bounded(void **state)
{
    (void)state;
    struct fx_reclaimed s = {0}, t;
    struct flexpu_error err = {0};
    assert_int_equal(fx_reclaimed_add(&s, dir, U1, &err), 0);
    assert_int_equal(fx_reclaimed_add(&s, dir, U2, &err), 0);
    assert_int_equal(fx_reclaimed_keep(&s, dir, keep_u2, NULL, &err), 0);
    assert_int_equal(fx_reclaimed_load(&t, dir, &err), 0);
    assert_int_equal(t.n, 1);
    assert_true(fx_reclaimed_has(&t, U2));
    /* full: the oldest goes, the file stays within its bound */
    s.n = 0;
    for (int i = 0; i <= FX_RECLAIMED_MAX; i++) {
        char u[64];
        snprintf(u, sizeof(u), "%08x-0000-4000-8000-000000000000", i);
        assert_int_equal(fx_reclaimed_add(&s, dir, u, &err), 0);
    }
    assert_int_equal(s.n, FX_RECLAIMED_MAX);
    assert_false(fx_reclaimed_has(&s, "00000000-0000-4000-8000-000000000000"));
    assert_int_equal(fx_reclaimed_load(&t, dir, &err), 0);
    assert_int_equal(t.n, FX_RECLAIMED_MAX);
    assert_true(fx_reclaimed_has(&t, "00000100-0000-4000-8000-000000000000"));
}

static void test_checked_when_read(void **state)
{
    (void)state;
    struct fx_reclaimed t;
    struct flexpu_error err = {0};
    /* a bad line is skipped and named; the good ones are kept */
    put(U1 "\n/etc/passwd\n\n" U2 "\n");
    assert_int_equal(fx_reclaimed_load(&t, dir, &err), FLEXPU_EINVAL);
    assert_int_equal(t.n, 2);
    if (!strstr(err.msg, "line 2") || !strstr(err.msg, "'/etc/passwd'"))
        fail_msg("error '%s' does not name the line and the value", err.msg);
    /* larger than any set the agent writes: nothing taken from it */
    char big[FX_RECLAIMED_MAX * FX_RECLAIMED_UID_MAX + 64];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    put(big);
    assert_int_equal(fx_reclaimed_load(&t, dir, &err), FLEXPU_EINVAL);
    assert_int_equal(t.n, 0);
    assert_non_null(strstr(err.msg, FX_RECLAIMED_FILE));
    /* not a regular file (a FIFO would block a plain read) */
    char p[128];
    snprintf(p, sizeof(p), "%s/" FX_RECLAIMED_FILE, dir);
    unlink(p);
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_int_equal(fx_reclaimed_load(&t, dir, &err), FLEXPU_EINVAL);
    assert_int_equal(t.n, 0);
    /* nor is a link followed */
    unlink(p);
    assert_int_equal(symlink("/etc/hostname", p), 0);
    assert_int_not_equal(fx_reclaimed_load(&t, dir, &err), 0);
    assert_int_equal(t.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_written_whole_and_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pruned_and_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checked_when_read, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
