/* SPDX-License-Identifier: Apache-2.0 */
/* The monotonic clock every part of flexpu times intervals with (deadlines,
 * offers, arbitration slices): never wall time, which jumps. */
#ifndef FX_UTIL_CLOCK_H
#define FX_UTIL_CLOCK_H

#include <stdint.h>

uint64_t fx_mono_ns(void);
int64_t fx_mono_ms(void);
double fx_mono_seconds(void);

#endif
