/* SPDX-License-Identifier: Apache-2.0 */
/* A power-limited GPU's SM clock, for the fake libcuda and libnvidia-ml
 * (opt-in: modelled when FAKECUDA_CLOCK_LOADED_MHZ is set, not 0):
 *   FAKECUDA_CLOCK_MAX_MHZ     the clock of a GPU that is not fully loaded
 *                              (default FAKE_CLOCK_DEFAULT_MHZ)
 *   FAKECUDA_CLOCK_LOADED_MHZ  the clock it holds when fully loaded (the
 *                              power cap pulls it down), at most the max
 * A kernel's duration is its time at the loaded clock. While the device was
 * busy at least FAKE_CLOCK_LOADED_FRACTION of the last ~50 ms it runs at the
 * loaded clock, otherwise at the max clock, and then a kernel takes
 * duration * loaded / max of wall time. This is what an H200 did: a tenant
 * duty-cycled by a cap ran at 1980 MHz, the bare GPU at 1599 MHz (power
 * capped), so the capped tenant did more work per busy second.
 *
 * The device's recent busy time is shared by every process using it, in
 * FAKECUDA_DIR/gpu<N>.clock (mapped). Only the process whose kernel holds
 * the device (the exclusive flock on gpu<N>.busy) writes it, so writers
 * never race; readers (NVML, any process) read it without a lock and may
 * see a bucket being rewritten, which costs a sample's accuracy, never
 * correctness of the kernels.
 *
 * Without the model, NVML reports FAKECUDA_CLOCK_MAX_MHZ, or
 * FAKE_CLOCK_DEFAULT_MHZ, and kernels take their duration. */
#ifndef FAKE_CLOCK_H
#define FAKE_CLOCK_H

#include <stdint.h>

#define FAKE_CLOCK_DEFAULT_MHZ     1980u
#define FAKE_CLOCK_BUCKET_NS       (5 * 1000 * 1000ull)
#define FAKE_CLOCK_BUCKETS         16 /* a ring: more than the window */
#define FAKE_CLOCK_WINDOW_BUCKETS  10 /* the window: the last 45-50 ms */
#define FAKE_CLOCK_LOADED_FRACTION 0.9

struct fake_clock_page {
    uint64_t bucket[FAKE_CLOCK_BUCKETS];  /* time / BUCKET_NS that slot i holds */
    uint64_t busy_ns[FAKE_CLOCK_BUCKETS]; /* kernel time completed in it */
    uint64_t running_since;               /* start of the kernel running now, 0: none */
    uint32_t running_mhz;                 /* the clock it runs at */
    uint32_t reserved;
};

/* The clock settings: *loaded is 0 when clocks are not modelled (then *max
 * is what NVML reports). Returns 0, or -1 after saying on stderr which
 * variable is wrong (`who` names the library). */
int fake_clock_settings(const char *who, unsigned *max, unsigned *loaded);

/* Maps FAKECUDA_DIR/gpu<dev>.clock (`dir` is that directory), creating it;
 * NULL on failure. Never unmapped: the process keeps it to its end. */
struct fake_clock_page *fake_clock_map(const char *dir, int dev);

/* The SM clock now: that of the kernel running, or the one a kernel
 * starting now would get. */
unsigned fake_clock_now(const struct fake_clock_page *p, unsigned max, unsigned loaded,
                        uint64_t now_ns);

/* The holder of the device brackets each kernel with these (`start` is when
 * it began, `mhz` its clock). */
void fake_clock_kernel_begin(struct fake_clock_page *p, uint64_t start, unsigned mhz);
void fake_clock_kernel_end(struct fake_clock_page *p, uint64_t start, uint64_t end);

#endif
