/* SPDX-License-Identifier: Apache-2.0 */
/* Stream-ordered memory pools. A pool reserves device memory in 2 MiB
 * multiples (each reservation is one block); freed blocks stay reserved for
 * reuse, and what a pool reserves is what the device is charged. Pools give
 * cached blocks back down to their release threshold when a stream, event or
 * context is synchronized, on cuMemPoolTrimTo, and (all of them) before an
 * allocation would fail for lack of memory.
 *
 * Simplifications: a free takes effect when it is issued, not when the
 * stream reaches it; a block is never split, the smallest free block large
 * enough is reused whole. */
#include <fcntl.h>
#include <time.h>

#include "fake_exports.h"

/* Lock held. */
static struct fake_pool *pool_find(CUmemoryPool h)
{
    for (int d = 0; d < fake.ndevices; d++)
        if (h == (CUmemoryPool)&fake.dev[d].default_pool)
            return &fake.dev[d].default_pool;
    for (struct fake_pool *p = fake.pools; p; p = p->next)
        if (h == (CUmemoryPool)p)
            return p;
    return NULL;
}

/* Lock held. Frees cached (unused) blocks while the pool reserves more than
 * `keep` bytes. */
static void pool_trim(struct fake_pool *p, unsigned long long keep)
{
    struct fake_alloc **link = &p->blocks;
    while (*link && p->reserved > keep) {
        struct fake_alloc *b = *link;
        if (b->in_use) {
            link = &b->pool_next;
            continue;
        }
        *link = b->pool_next;
        p->reserved -= b->size;
        fake_alloc_destroy(b);
    }
}

/* Lock held. Trims every pool of `dev` to its release threshold, or to
 * nothing when `ignore_threshold` (memory is needed elsewhere). */
void fake_pools_trim_device(int dev, int ignore_threshold)
{
    struct fake_pool *p = &fake.dev[dev].default_pool;
    pool_trim(p, ignore_threshold ? 0 : p->threshold);
    for (p = fake.pools; p; p = p->next)
        if (p->dev == dev)
            pool_trim(p, ignore_threshold ? 0 : p->threshold);
}

/* Lock held. Returns an in-use block to its pool's cache. */
void fake_pool_block_free(struct fake_alloc *b)
{
    struct fake_pool *p = b->owner;
    if (b->in_use) {
        p->used -= b->req;
        b->in_use = 0;
        b->req = 0;
    }
}

/* Lock held. Reuses the smallest cached block that fits, else reserves a new
 * one of round_up(size, 2 MiB). */
static CUresult pool_alloc(struct fake_pool *p, size_t size, CUdeviceptr *dptr)
{
    struct fake_alloc *best = NULL;
    for (struct fake_alloc *b = p->blocks; b; b = b->pool_next)
        if (!b->in_use && b->size >= size && (!best || b->size < best->size))
            best = b;
    if (!best) {
        size_t bytes = (size + FAKE_GRANULE - 1) / FAKE_GRANULE * FAKE_GRANULE;
        if (bytes < size)
            return CUDA_ERROR_OUT_OF_MEMORY;
        CUresult r = fake_map_and_register(FAKE_ALLOC_POOL_BLOCK, p->dev, bytes, bytes, &best);
        if (r != CUDA_SUCCESS)
            return r;
        best->owner = p;
        best->pool_next = p->blocks;
        p->blocks = best;
        p->reserved += bytes;
        if (p->reserved > p->reserved_high)
            p->reserved_high = p->reserved;
    }
    best->in_use = 1;
    best->req = size;
    p->used += size;
    if (p->used > p->used_high)
        p->used_high = p->used;
    *dptr = best->key;
    return CUDA_SUCCESS;
}

/* A test's pause between a pool's growth and the allocation's return, where
 * the library has not yet booked the growth (FAKECUDA_POOL_GROW_GATE=PATH):
 * while the file PATH exists, an allocation that grew its pool creates
 * PATH.held and waits, without the fake's lock, until PATH is removed (10 s
 * at most), then removes PATH.held. Lets a test put another thread's call
 * exactly there. */
static void grow_gate(void)
{
    const char *gate = getenv("FAKECUDA_POOL_GROW_GATE");
    if (!gate || !*gate || access(gate, F_OK) != 0)
        return;
    char held[PATH_MAX];
    if (snprintf(held, sizeof held, "%s.held", gate) >= (int)sizeof held)
        return;
    int fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < 10000 && access(gate, F_OK) == 0; i++) {
        struct timespec ms = {0, 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    unlink(held);
}

/* `pool` NULL: the current pool of the stream's device. */
static CUresult alloc_async(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream)
{
    FAKE_REQUIRE_INIT();
    if (!dptr || bytesize == 0)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_stream *s;
    CUresult r = fake_stream_resolve(hStream, &s);
    if (r == CUDA_SUCCESS)
        r = fake_capture_status(s);
    struct fake_pool *p = NULL;
    if (r == CUDA_SUCCESS) {
        p = pool ? pool_find(pool) : fake.dev[s->ctx->dev].current_pool;
        if (!p)
            r = CUDA_ERROR_INVALID_VALUE;
    }
    unsigned long long reserved = p ? p->reserved : 0;
    if (r == CUDA_SUCCESS)
        r = s->capture ? fake_capture_add_alloc(s->capture, bytesize, dptr)
                       : pool_alloc(p, bytesize, dptr);
    int grew = r == CUDA_SUCCESS && p && p->reserved > reserved;
    fake_unlock();
    if (grew)
        grow_gate();
    return r;
}

FAKE_API CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    return alloc_async(dptr, bytesize, NULL, hStream);
}

FAKE_API CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    return alloc_async(dptr, bytesize, NULL, hStream);
}

FAKE_API CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
                                          CUstream hStream)
{
    FAKE_REQUIRE_INIT();
    if (!pool)
        return CUDA_ERROR_INVALID_VALUE;
    return alloc_async(dptr, bytesize, pool, hStream);
}

FAKE_API CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize,
                                               CUmemoryPool pool, CUstream hStream)
{
    return cuMemAllocFromPoolAsync(dptr, bytesize, pool, hStream);
}

/* Memory a captured allocation returned belongs to its graph: freeing it is
 * accepted and changes nothing. */
static CUresult free_async(CUdeviceptr dptr, CUstream hStream)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_stream *s;
    CUresult r = fake_stream_resolve(hStream, &s);
    if (r == CUDA_SUCCESS)
        r = fake_capture_status(s);
    if (r == CUDA_SUCCESS) {
        struct fake_alloc *a = fake_registry_find(dptr, FAKE_KIND(FAKE_ALLOC_POOL_BLOCK) |
                                                            FAKE_KIND(FAKE_ALLOC_GRAPH_VA));
        if (!a)
            r = CUDA_ERROR_INVALID_VALUE;
        else if (a->kind == FAKE_ALLOC_POOL_BLOCK)
            fake_pool_block_free(a);
    }
    fake_unlock();
    return r;
}

FAKE_API CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
{
    return free_async(dptr, hStream);
}

FAKE_API CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream)
{
    return free_async(dptr, hStream);
}

FAKE_API CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_pool *p = pool_find(pool);
    if (p)
        pool_trim(p, minBytesToKeep);
    fake_unlock();
    return p ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* Potentially unsafe during stream capture, like the real query. */
FAKE_API CUresult cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    CUresult r = fake_capture_check_unsafe();
    struct fake_pool *p = pool_find(pool);
    if (r == CUDA_SUCCESS && (!p || !value))
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        switch (attr) {
        case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
            *(int *)value = 1;
            break;
        case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
            *(cuuint64_t *)value = p->threshold;
            break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT:
            *(cuuint64_t *)value = p->reserved;
            break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
            *(cuuint64_t *)value = p->reserved_high;
            break;
        case CU_MEMPOOL_ATTR_USED_MEM_CURRENT:
            *(cuuint64_t *)value = p->used;
            break;
        case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
            *(cuuint64_t *)value = p->used_high;
            break;
        default:
            r = CUDA_ERROR_INVALID_VALUE;
            break;
        }
    }
    fake_unlock();
    return r;
}

/* The high-water marks can only be reset (value 0) to the current value. */
FAKE_API CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_pool *p = pool_find(pool);
    CUresult r = p && value ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        switch (attr) {
        case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
            break; /* reuse is not modelled */
        case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
            p->threshold = *(cuuint64_t *)value;
            break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
            if (*(cuuint64_t *)value != 0)
                r = CUDA_ERROR_INVALID_VALUE;
            else
                p->reserved_high = p->reserved;
            break;
        case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
            if (*(cuuint64_t *)value != 0)
                r = CUDA_ERROR_INVALID_VALUE;
            else
                p->used_high = p->used;
            break;
        default:
            r = CUDA_ERROR_INVALID_VALUE;
            break;
        }
    }
    fake_unlock();
    return r;
}

FAKE_API CUresult cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *poolProps)
{
    FAKE_REQUIRE_INIT();
    if (!pool || !poolProps || poolProps->allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
        poolProps->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(poolProps->location.id))
        return CUDA_ERROR_INVALID_DEVICE;
    struct fake_pool *p = calloc(1, sizeof *p);
    if (!p)
        return CUDA_ERROR_OUT_OF_MEMORY;
    p->dev = poolProps->location.id;
    fake_lock();
    p->next = fake.pools;
    fake.pools = p;
    fake_unlock();
    *pool = (CUmemoryPool)p;
    return CUDA_SUCCESS;
}

/* Gives back everything the pool reserved, allocations still in use included. */
FAKE_API CUresult cuMemPoolDestroy(CUmemoryPool pool)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_pool **link = &fake.pools;
    while (*link && *link != (struct fake_pool *)pool)
        link = &(*link)->next;
    struct fake_pool *p = *link;
    if (p) {
        *link = p->next;
        if (fake.dev[p->dev].current_pool == p)
            fake.dev[p->dev].current_pool = &fake.dev[p->dev].default_pool;
        while (p->blocks) {
            struct fake_alloc *b = p->blocks;
            p->blocks = b->pool_next;
            fake_alloc_destroy(b);
        }
        free(p);
    }
    fake_unlock();
    return p ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

FAKE_API CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *pool_out, CUdevice dev)
{
    FAKE_REQUIRE_INIT();
    if (!pool_out)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    *pool_out = (CUmemoryPool)&fake.dev[dev].default_pool;
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuDeviceGetMemPool(CUmemoryPool *pool, CUdevice dev)
{
    FAKE_REQUIRE_INIT();
    if (!pool)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    fake_lock();
    *pool = (CUmemoryPool)fake.dev[dev].current_pool;
    fake_unlock();
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuDeviceSetMemPool(CUdevice dev, CUmemoryPool pool)
{
    FAKE_REQUIRE_INIT();
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    fake_lock();
    struct fake_pool *p = pool_find(pool);
    CUresult r = p && p->dev == dev ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        fake.dev[dev].current_pool = p;
    fake_unlock();
    return r;
}
