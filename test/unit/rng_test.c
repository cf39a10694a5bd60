/* SPDX-License-Identifier: Apache-2.0 */
/* The seeded generator: reproducible, in range, roughly uniform; derived
 * seeds distinct. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "flexpu/rng.h"

/* xoshiro256** seeded through splitmix64: the first outputs, computed with an
 * independent implementation of the published algorithms. */
static void test_known_values(void **state)
{
    (void)state;
    static const struct {
        uint64_t seed;
        uint64_t out[4];
    } kat[] = {
        {0,
         {0x99ec5f36cb75f2b4ULL, 0xbf6e1f784956452aULL, 0x1a5f849d4933e6e0ULL,
          0x6aa594f1262d2d2cULL}},
        {42,
         {0x15780b2e0c2ec716ULL, 0x6104d9866d113a7eULL, 0xae17533239e499a1ULL,
          0xecb8ad4703b360a1ULL}},
    };
    for (size_t k = 0; k < sizeof(kat) / sizeof(kat[0]); k++) {
        struct flexpu_rng r;
        flexpu_rng_seed(&r, kat[k].seed);
        for (int i = 0; i < 4; i++)
            assert_int_equal(flexpu_rng_next(&r), kat[k].out[i]);
    }
}

static void test_same_seed_same_sequence(void **state)
{
    (void)state;
    struct flexpu_rng a, b;
    flexpu_rng_seed(&a, 12345);
    flexpu_rng_seed(&b, 12345);
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(flexpu_rng_next(&a), flexpu_rng_next(&b));
        assert_int_equal(flexpu_rng_below(&a, 1000), flexpu_rng_below(&b, 1000));
        assert_true(flexpu_rng_unit(&a) == flexpu_rng_unit(&b));
    }
    /* Re-seeding restarts the sequence. */
    struct flexpu_rng c;
    flexpu_rng_seed(&c, 7);
    uint64_t first[8];
    for (int i = 0; i < 8; i++)
        first[i] = flexpu_rng_next(&c);
    flexpu_rng_seed(&c, 7);
    for (int i = 0; i < 8; i++)
        assert_int_equal(flexpu_rng_next(&c), first[i]);
    /* The state is plain data: a copy continues identically. */
    struct flexpu_rng d = c;
    for (int i = 0; i < 100; i++)
        assert_int_equal(flexpu_rng_next(&c), flexpu_rng_next(&d));
}

static void test_different_seeds_differ(void **state)
{
    (void)state;
    static const uint64_t seeds[] = {0, 1, 2, 42, UINT64_MAX};
    enum { N = 1000 };
    static uint64_t seq[5][N];
    for (size_t s = 0; s < 5; s++) {
        struct flexpu_rng r;
        flexpu_rng_seed(&r, seeds[s]);
        for (int i = 0; i < N; i++)
            seq[s][i] = flexpu_rng_next(&r);
    }
    for (size_t s = 0; s < 5; s++)
        for (size_t t = 0; t < s; t++) {
            int same = 0;
            for (int i = 0; i < N; i++)
                same += seq[s][i] == seq[t][i];
            assert_int_equal(same, 0);
        }
}

static void test_below_range(void **state)
{
    (void)state;
    struct flexpu_rng r;
    flexpu_rng_seed(&r, 99);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(flexpu_rng_below(&r, 1), 0);
    static const uint64_t ns[] = {2, 3, 7, 10, 1000, 1ULL << 32, (1ULL << 63) + 1, UINT64_MAX};
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        uint64_t hi = 0;
        for (int i = 0; i < 20000; i++) {
            uint64_t x = flexpu_rng_below(&r, ns[k]);
            assert_true(x < ns[k]);
            if (x > hi)
                hi = x;
        }
        /* Small ranges are fully reached. */
        if (ns[k] <= 10)
            assert_int_equal(hi, ns[k] - 1);
    }
}

/* Pearson's statistic over 100k draws; a fixed seed makes it deterministic,
 * the bound is loose (about 1e-6 for a fair generator). */
static double chi_square(uint64_t seed, uint64_t n, long draws)
{
    struct flexpu_rng r;
    long count[64];
    memset(count, 0, sizeof(count));
    flexpu_rng_seed(&r, seed);
    for (long i = 0; i < draws; i++)
        count[flexpu_rng_below(&r, n)]++;
    double expect = (double)draws / (double)n, chi = 0;
    for (uint64_t b = 0; b < n; b++) {
        double d = (double)count[b] - expect;
        chi += d * d / expect;
    }
    return chi;
}

static void test_below_uniform(void **state)
{
    (void)state;
    /* n = 10: 9 degrees of freedom, P(chi2 > 45) < 1e-6. */
    assert_true(chi_square(1, 10, 100000) < 45.0);
    assert_true(chi_square(2, 10, 100000) < 45.0);
    /* n = 3 and n = 64: 2 and 63 degrees of freedom. */
    assert_true(chi_square(3, 3, 100000) < 28.0);
    assert_true(chi_square(4, 64, 100000) < 130.0);
}

static void test_unit(void **state)
{
    (void)state;
    struct flexpu_rng r;
    flexpu_rng_seed(&r, 2024);
    double sum = 0, lo = 1, hi = 0;
    long below_half = 0;
    enum { N = 100000 };
    for (int i = 0; i < N; i++) {
        double u = flexpu_rng_unit(&r);
        assert_true(u >= 0.0);
        assert_true(u < 1.0);
        sum += u;
        below_half += u < 0.5;
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    double mean = sum / N;
    assert_true(mean > 0.49 && mean < 0.51);
    assert_true(below_half > 49000 && below_half < 51000);
    assert_true(lo < 0.001);
    assert_true(hi > 0.999);
}

/* Derived seeds: the same arguments give the same seed; over a grid of
 * seeds, streams and ids every seed is distinct (nearby seeds do not share
 * ids shifted by one). */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_derive(void **state)
{
    (void)state;
    assert_true(flexpu_rng_derive(42, 1, 7) == flexpu_rng_derive(42, 1, 7));
    enum { NS = 16, NST = 4, NID = 256 };
    static uint64_t v[NS * NST * NID];
    int n = 0;
    for (uint64_t seed = 40; seed < 40 + NS; seed++)
        for (uint64_t st = 0; st < NST; st++)
            for (uint64_t id = 0; id < NID; id++)
                v[n++] = flexpu_rng_derive(seed, st, id);
    qsort(v, (size_t)n, sizeof(v[0]), cmp_u64);
    for (int i = 1; i < n; i++)
        assert_true(v[i] != v[i - 1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_same_seed_same_sequence),
        cmocka_unit_test(test_different_seeds_differ),
        cmocka_unit_test(test_below_range),
        cmocka_unit_test(test_below_uniform),
        cmocka_unit_test(test_unit),
        cmocka_unit_test(test_derive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
