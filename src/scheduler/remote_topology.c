/* SPDX-License-Identifier: Apache-2.0 */
/* The topology keys of remote slices and their check (remote_topology.h). */
#include "scheduler/remote_topology.h"

#include <stdbool.h>
#include <string.h>

#define NAME_MAX_LEN   63
#define PREFIX_MAX_LEN 253

static bool alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* A label key's name part, as Kubernetes' IsQualifiedName checks it. */
static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > NAME_MAX_LEN || !alnum(s[0]) || !alnum(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

/* A DNS subdomain (RFC 1123): dot-separated parts of lowercase letters,
 * digits and '-', each starting and ending with a letter or digit. */
static bool prefix_ok(const char *s, size_t n)
{
    if (n == 0 || n > PREFIX_MAX_LEN)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.') {
            if (!lower_alnum(s[i]) && s[i] != '-')
                return false;
            continue;
        }
        if (i == start || !lower_alnum(s[start]) || !lower_alnum(s[i - 1]))
            return false;
        start = i + 1;
    }
    return true;
}

static const char *key_problem(const char *k, size_t n)
{
    if (n == 0)
        return "an empty key (no commas at the ends or side by side; \"\" alone for no keys)";
    const char *slash = memchr(k, '/', n);
    if (slash && !prefix_ok(k, (size_t)(slash - k)))
        return "the prefix before '/' must be a DNS subdomain (lowercase letters, digits, '-' "
               "and '.', at most 253)";
    const char *name = slash ? slash + 1 : k;
    if (!name_ok(name, n - (size_t)(name - k)))
        return "not a label key: the name must be 1 to 63 letters, digits, '-', '_' or '.', "
               "starting and ending with a letter or digit";
    if (n == strlen("kubernetes.io/hostname") && memcmp(k, "kubernetes.io/hostname", n) == 0)
        return "no two nodes share a hostname";
    return NULL;
}

int fx_remote_topology_parse(const char *field, const char *text, struct fx_remote_topology *out,
                             struct flexpu_error *err)
{
    struct fx_remote_topology t = {0};
    const char *all = text ? text : "", *p = all;
    while (*p || p != all) { /* "" alone: no keys; "a," ends with an empty one */
        size_t n = strcspn(p, ",");
        const char *why = key_problem(p, n);
        if (!why && t.n == FX_REMOTE_TOPOLOGY_KEYS_MAX)
            why = "more than 8 keys";
        for (int i = 0; i < t.n && !why; i++)
            if (strlen(t.key[i]) == n && memcmp(t.key[i], p, n) == 0)
                why = "the key appears twice";
        if (why)
            return n ? flexpu_error_field(err, FLEXPU_EINVAL, field, p, n, why)
                     : flexpu_error_field(err, FLEXPU_EINVAL, field, all, strlen(all), why);
        memcpy(t.key[t.n], p, n);
        t.key[t.n++][n] = '\0';
        p += n;
        if (*p != ',')
            break;
        p++;
    }
    *out = t;
    return 0;
}
