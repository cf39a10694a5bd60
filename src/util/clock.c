/* SPDX-License-Identifier: Apache-2.0 */
#include "util/clock.h"

#include <time.h>

uint64_t fx_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t fx_mono_ms(void)
{
    return (int64_t)(fx_mono_ns() / 1000000ull);
}

double fx_mono_seconds(void)
{
    return (double)fx_mono_ns() * 1e-9;
}
