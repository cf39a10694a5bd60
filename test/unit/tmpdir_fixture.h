/* SPDX-License-Identifier: Apache-2.0 */
/* A fresh directory for each test (cmocka group or test setup/teardown):
 * `dir`, made under /tmp with the prefix TMPDIR_FIXTURE_PREFIX (the test's
 * name, defined before including), removed with everything in it. One copy
 * for the tests that write files of their own (remote_key_test.c,
 * remote_plugin_test.c). Include after cmocka.h. */
#ifndef FX_TEST_TMPDIR_FIXTURE_H
#define FX_TEST_TMPDIR_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#ifndef TMPDIR_FIXTURE_PREFIX
#error "define TMPDIR_FIXTURE_PREFIX (the test's name) before including tmpdir_fixture.h"
#endif

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/%s.XXXXXX", TMPDIR_FIXTURE_PREFIX);
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
