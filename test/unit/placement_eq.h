/* SPDX-License-Identifier: Apache-2.0 */
/* Whether two placements say the same: node, and each GPU's index, share
 * and memory (entries past ngpu are not part of a placement, and the engine
 * leaves them as they were). One copy for the tests that compare decisions
 * (gang_test.c, sched_fuzz_test.c). */
#ifndef FX_TEST_PLACEMENT_EQ_H
#define FX_TEST_PLACEMENT_EQ_H

#include "flexpu/sched.h"

static inline int placement_eq(const struct flexpu_placement *a, const struct flexpu_placement *b)
{
    if (a->node != b->node || a->ngpu != b->ngpu)
        return 0;
    for (int i = 0; i < a->ngpu; i++)
        if (a->gpu[i] != b->gpu[i] || a->milli[i] != b->milli[i] ||
            a->gpu_mem_mib[i] != b->gpu_mem_mib[i])
            return 0;
    return 1;
}

#endif
