/* SPDX-License-Identifier: Apache-2.0 */
/* A small seeded generator (xoshiro256**, seeded through splitmix64) so that
 * every random choice in the engine and the simulator is reproducible. The
 * caller owns the state; nothing here is global. */
#ifndef FLEXPU_RNG_H
#define FLEXPU_RNG_H

#include <stdint.h>

struct flexpu_rng {
    uint64_t s[4];
};

void flexpu_rng_seed(struct flexpu_rng *r, uint64_t seed);
uint64_t flexpu_rng_next(struct flexpu_rng *r);
/* Uniform in [0, n); n > 0. Unbiased (rejection sampling). */
uint64_t flexpu_rng_below(struct flexpu_rng *r, uint64_t n);
/* Uniform in [0, 1). */
double flexpu_rng_unit(struct flexpu_rng *r);
/* The seed of member id of stream `stream` under seed: draws keyed by an
 * identity (an owner, a job) from a generator seeded with it do not depend
 * on what else was drawn before them, so runs that differ only in their
 * placements see the same draws (common random numbers). Each argument is
 * mixed in turn, so nearby seeds, streams or ids give unrelated seeds
 * (seed 43's id 0 is not seed 42's id 1). */
uint64_t flexpu_rng_derive(uint64_t seed, uint64_t stream, uint64_t id);

#endif
