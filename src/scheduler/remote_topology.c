/* SPDX-License-Identifier: Apache-2.0 */
/* The topology keys of remote slices: the list and its parse (remote_topology.h); each
 * key's form is kube/topology_key.c's check, shared with a pod's rule. */
#include "scheduler/remote_topology.h"

#include <string.h>

#include "kube/topology_key.h"

int fx_remote_topology_parse(const char *field, const char *text, struct fx_remote_topology *out,
                             struct flexpu_error *err)
{
    struct fx_remote_topology t = {0};
    const char *all = text ? text : "", *p = all;
    while (*p || p != all) { /* "" alone: no keys; "a," ends with an empty one */
        size_t n = strcspn(p, ",");
        const char *why = n ? fx_topology_key_problem(p, n)
                            : "an empty key (no commas at the ends or side by side; \"\" alone "
                              "for no keys)";
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
