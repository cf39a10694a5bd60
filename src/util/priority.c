/* SPDX-License-Identifier: Apache-2.0 */
#include "util/priority.h"

#include <string.h>

const char *fx_priority_name(enum fx_priority p)
{
    switch (p) {
    case FX_PRIO_LOW:
        return "low";
    case FX_PRIO_HIGH:
        return "high";
    default:
        return "normal";
    }
}

int fx_priority_parse(const char *s, const char *field, enum fx_priority *out,
                      struct flexpu_error *err)
{
    if (strcmp(s, "high") == 0)
        *out = FX_PRIO_HIGH;
    else if (strcmp(s, "normal") == 0)
        *out = FX_PRIO_NORMAL;
    else if (strcmp(s, "low") == 0)
        *out = FX_PRIO_LOW;
    else
        return flexpu_error_field(err, FLEXPU_EINVAL, field, s, strlen(s),
                                  "must be high, normal or low");
    return 0;
}
