/* SPDX-License-Identifier: Apache-2.0 */
#include "util/alloc.h"

#include <stdlib.h>
#include <string.h>

static long fail_countdown = -1;

static int should_fail(void)
{
    if (fail_countdown < 0)
        return 0;
    if (fail_countdown == 0)
        return 1;
    fail_countdown--;
    return 0;
}

void fx_alloc_fail_after(long n)
{
    fail_countdown = n;
}

void *fx_malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n ? n : 1);
}

void *fx_calloc(size_t count, size_t size)
{
    return should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
}

void *fx_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n ? n : 1);
}

void fx_free(void *p)
{
    free(p);
}

char *fx_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = fx_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
