/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/ptrmap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Open addressing with linear probing and backward-shift deletion (no
 * tombstones, so a long-running process with heavy churn never degrades). */
struct slot {
    uint64_t key; /* 0 = empty; stored keys are never 0 (kind in the top bits) */
    struct fx_alloc a;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot *slots;
static uint64_t cap, count;

static uint64_t mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static uint64_t full_key(enum fx_alloc_kind kind, uint64_t key)
{
    /* Device addresses and handles fit in 56 bits on every driver seen; the
     * kind goes above them so that key 0 of any kind is still non-zero. */
    return (key & 0x00ffffffffffffffull) | ((uint64_t)kind << 56);
}

static int grow(void)
{
    uint64_t ncap = cap ? cap * 2 : 1024;
    struct slot *n = calloc(ncap, sizeof(*n));
    if (!n)
        return -1;
    for (uint64_t i = 0; i < cap; i++) {
        if (!slots[i].key)
            continue;
        uint64_t j = mix(slots[i].key) & (ncap - 1);
        while (n[j].key)
            j = (j + 1) & (ncap - 1);
        n[j] = slots[i];
    }
    free(slots);
    slots = n;
    cap = ncap;
    return 0;
}

int fx_ptrmap_put(enum fx_alloc_kind kind, uint64_t key, struct fx_alloc a)
{
    uint64_t k = full_key(kind, key);
    pthread_mutex_lock(&lock);
    if ((count + 1) * 4 > cap * 3 && grow() != 0) {
        pthread_mutex_unlock(&lock);
        return -1;
    }
    uint64_t i = mix(k) & (cap - 1);
    while (slots[i].key && slots[i].key != k)
        i = (i + 1) & (cap - 1);
    if (!slots[i].key)
        count++;
    slots[i].key = k;
    slots[i].a = a;
    pthread_mutex_unlock(&lock);
    return 0;
}

int fx_ptrmap_take(enum fx_alloc_kind kind, uint64_t key, struct fx_alloc *out)
{
    uint64_t k = full_key(kind, key);
    pthread_mutex_lock(&lock);
    if (!cap) {
        pthread_mutex_unlock(&lock);
        return -1;
    }
    uint64_t i = mix(k) & (cap - 1);
    while (slots[i].key && slots[i].key != k)
        i = (i + 1) & (cap - 1);
    if (!slots[i].key) {
        pthread_mutex_unlock(&lock);
        return -1;
    }
    *out = slots[i].a;
    /* Backward shift: move later members of the probe run into the hole. */
    uint64_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & (cap - 1);
        if (!slots[j].key)
            break;
        uint64_t home = mix(slots[j].key) & (cap - 1);
        /* Movable when its home is not cyclically in (hole, j]. */
        int in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            slots[hole] = slots[j];
            hole = j;
        }
    }
    memset(&slots[hole], 0, sizeof(slots[hole]));
    count--;
    pthread_mutex_unlock(&lock);
    return 0;
}

int fx_ptrmap_take_ctx(uint64_t ctx, uint64_t *bytes_by_dev, int ndev)
{
    int n = 0;
    for (;;) {
        /* Find one, then take it by key: removal reorders the table. */
        uint64_t key = 0;
        pthread_mutex_lock(&lock);
        for (uint64_t i = 0; i < cap && !key; i++)
            if (slots[i].key && slots[i].a.ctx == ctx)
                key = slots[i].key;
        pthread_mutex_unlock(&lock);
        if (!key)
            return n;
        struct fx_alloc a;
        if (fx_ptrmap_take((enum fx_alloc_kind)(key >> 56), key & 0x00ffffffffffffffull, &a) == 0) {
            if (a.dev >= 0 && a.dev < ndev)
                bytes_by_dev[a.dev] += a.size;
            n++;
        }
    }
}

void fx_ptrmap_reset(void)
{
    /* After fork only this thread exists, so the lock may be held by a
     * thread that is gone: start from a fresh one. */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    lock = fresh;
    free(slots);
    slots = NULL;
    cap = count = 0;
}

uint64_t fx_ptrmap_count(void)
{
    pthread_mutex_lock(&lock);
    uint64_t c = count;
    pthread_mutex_unlock(&lock);
    return c;
}
