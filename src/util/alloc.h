/* SPDX-License-Identifier: Apache-2.0 */
/* Every allocation in flexpu goes through these, so a test can make the Nth
 * one fail and check that the caller reports FLEXPU_ENOMEM and leaks nothing. */
#ifndef FX_ALLOC_H
#define FX_ALLOC_H

#include <stddef.h>

void *fx_malloc(size_t n);
void *fx_calloc(size_t count, size_t size);
void *fx_realloc(void *p, size_t n);
void fx_free(void *p);
char *fx_strdup(const char *s);

/* Test hook: the allocation after `n` more successful ones fails; -1 turns
 * failures off. Not thread-safe by design: tests only. */
void fx_alloc_fail_after(long n);

#endif
