/* SPDX-License-Identifier: Apache-2.0 */
/* What the fake libcuda and the fake libnvidia-ml must agree on: how many
 * devices there are, their memory, and their identity. Both read the same
 * environment, so a test sets it once for both. */
#ifndef FAKE_COMMON_H
#define FAKE_COMMON_H

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAKE_MAX_DEVICES       8
#define FAKE_DEFAULT_DEVICES   1ull
#define FAKE_DEFAULT_TOTAL_MEM (16ull << 30)

/* The 16 UUID bytes of device `ordinal`: "fakegpu", the ordinal, then a
 * pattern that also depends on it. The same in every process, different for
 * every ordinal. */
static inline void fake_uuid(int ordinal, unsigned char out[16])
{
    static const char prefix[7] = {'f', 'a', 'k', 'e', 'g', 'p', 'u'};
    memcpy(out, prefix, sizeof prefix);
    out[7] = (unsigned char)ordinal;
    for (int i = 8; i < 16; i++)
        out[i] = (unsigned char)(0x11 * (i - 7) + ordinal);
}

/* Reads the decimal environment variable `name` into *out, or `def` when it
 * is unset or empty. Returns 0, or -1 (and leaves *out alone) when it is not
 * a plain non-negative integer. */
static inline int fake_env_u64(const char *name, unsigned long long def, unsigned long long *out)
{
    const char *s = getenv(name);
    if (!s || !*s) {
        *out = def;
        return 0;
    }
    if (!isdigit((unsigned char)s[0]))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* The directory of the device lock and clock files: FAKECUDA_DIR, or a
 * per-user default. Returns what snprintf returns. */
static inline int fake_dir_path(char *out, size_t len)
{
    const char *dir = getenv("FAKECUDA_DIR");
    if (dir && *dir)
        return snprintf(out, len, "%s", dir);
    return snprintf(out, len, "/tmp/fakecuda-%u", (unsigned)getuid());
}

#endif
