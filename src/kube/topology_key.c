/* SPDX-License-Identifier: Apache-2.0 */
/* Topology keys: node label keys as Kubernetes accepts them (its
 * IsQualifiedName), naming a place shared by nodes (topology_key.h). */
#include "kube/topology_key.h"

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

const char *fx_topology_key_problem(const char *k, size_t n)
{
    if (n == 0)
        return "an empty key";
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
