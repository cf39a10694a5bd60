/* SPDX-License-Identifier: Apache-2.0 */
/* A tenant's priority (`high`, `normal`, `low`): the same words in a pod's
 * flexpu.io/priority annotation and in the runtime's slice configuration. */
#ifndef FX_PRIORITY_H
#define FX_PRIORITY_H

#include "flexpu/error.h"

enum fx_priority { FX_PRIO_LOW = 0, FX_PRIO_NORMAL = 1, FX_PRIO_HIGH = 2 };

const char *fx_priority_name(enum fx_priority p);

/* "high", "normal" or "low"; anything else is FLEXPU_EINVAL naming `field`
 * and the value. */
int fx_priority_parse(const char *s, const char *field, enum fx_priority *out,
                      struct flexpu_error *err);

#endif
