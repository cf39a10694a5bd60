/* SPDX-License-Identifier: Apache-2.0 */
/* The scratch directory a fuzzer makes once (mkdtemp) for the files its code
 * under test writes: removed, with everything in it, when the fuzzer exits
 * normally, so that make fuzz (every CI run) leaves nothing in /tmp or
 * /dev/shm. A crash (abort, a sanitizer's report) leaves it, for whoever
 * reads the crash. One directory per fuzzer. */
#ifndef FX_FUZZ_SCRATCH_H
#define FX_FUZZ_SCRATCH_H

#include <ftw.h> /* nftw: _GNU_SOURCE, set for the whole project */
#include <stdio.h>
#include <stdlib.h>

static char fuzz_scratch_dir[256];

static inline int fuzz_scratch_rm(const char *path, const struct stat *sb, int type,
                                  struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    remove(path);
    return 0; /* go on: a file that will not go must not keep the rest */
}

static inline void fuzz_scratch_clean(void)
{
    if (fuzz_scratch_dir[0])
        nftw(fuzz_scratch_dir, fuzz_scratch_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* dir: the directory mkdtemp made; called once, after it. */
static inline void fuzz_scratch_remove_at_exit(const char *dir)
{
    snprintf(fuzz_scratch_dir, sizeof fuzz_scratch_dir, "%s", dir);
    atexit(fuzz_scratch_clean);
}

#endif
