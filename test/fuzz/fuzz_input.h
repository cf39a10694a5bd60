/* SPDX-License-Identifier: Apache-2.0 */
/* The fuzzers' one reader of their input: bytes taken in order, 0 once they
 * run out, so every input (the empty one too) drives a whole run and a short
 * input means zeros, never an early return the fuzzer cannot steer past.
 * Multi-byte values are little-endian, the order the seeds are written in. */
#ifndef FX_FUZZ_INPUT_H
#define FX_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

struct fuzz_in {
    const uint8_t *p; /* the next byte */
    size_t n;         /* bytes left */
};

static inline uint8_t fuzz_byte(struct fuzz_in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)fuzz_byte(in) << (8 * i);
    return v;
}

static inline uint64_t fuzz_u64(struct fuzz_in *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)fuzz_byte(in) << (8 * i);
    return v;
}

#endif
