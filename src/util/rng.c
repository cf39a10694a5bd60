/* SPDX-License-Identifier: Apache-2.0 */
#include "flexpu/rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void flexpu_rng_seed(struct flexpu_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

uint64_t flexpu_rng_next(struct flexpu_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t flexpu_rng_below(struct flexpu_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = flexpu_rng_next(r);
    } while (x >= limit);
    return x % n;
}

double flexpu_rng_unit(struct flexpu_rng *r)
{
    return (double)(flexpu_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t flexpu_rng_derive(uint64_t seed, uint64_t stream, uint64_t id)
{
    uint64_t x = seed;
    x = splitmix64(&x) ^ stream;
    x = splitmix64(&x) ^ id;
    return splitmix64(&x);
}
