/* SPDX-License-Identifier: Apache-2.0 */
/* Virtual memory management (cuMemCreate & co., used by PyTorch's expandable
 * segments and by NCCL). Physical memory is taken by cuMemCreate and given
 * back only when the handle is released *and* no mapping of it is left, so
 * the library keeps the same two counts per handle: holds (the creation, and
 * each cuMemRetainAllocationHandle) and mappings. Imported handles were
 * never charged and are not in the ledger. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/log.h"
#include "runtime/oom_wait.h"
#include "runtime/rt.h"

struct vmm_handle {
    CUmemGenericAllocationHandle h;
    uint64_t bytes;
    CUdevice dev;
    int holds, maps;
};

struct vmm_map {
    CUdeviceptr va;
    size_t size;
    CUmemGenericAllocationHandle h;
};

/* Few entries (one per segment), so plain arrays searched linearly. */
static pthread_mutex_t vmm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vmm_handle *handles;
static size_t nhandles, caphandles;
static struct vmm_map *maps;
static size_t nmaps, capmaps;

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static struct vmm_handle *find_handle(CUmemGenericAllocationHandle h)
{
    for (size_t i = 0; i < nhandles; i++)
        if (handles[i].h == h)
            return &handles[i];
    return NULL;
}

/* Lock held. Credits and drops a handle nobody holds or maps any more. */
static void settle(struct vmm_handle *e)
{
    if (e->holds > 0 || e->maps > 0)
        return;
    CUresult rc;
    struct fx_gpu *g = fx_rt_gpu(e->dev, &rc);
    if (g)
        fx_ledger_uncharge(&g->mem, e->bytes);
    *e = handles[--nhandles];
}

void fx_vmm_forget_all(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    vmm_lock = fresh;
    free(handles);
    free(maps);
    handles = NULL;
    maps = NULL;
    nhandles = caphandles = nmaps = capmaps = 0;
}

/* cuMemCreate's arguments, for a try again (oom_wait.h). */
struct create {
    CUmemGenericAllocationHandle *handle;
    size_t size;
    const CUmemAllocationProp *prop;
    unsigned long long flags;
};
static CUresult create(const void *a, void *out)
{
    const struct create *c = a;
    (void)out;
    return fx_real.cuMemCreate(c->handle, c->size, c->prop, c->flags);
}

CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
                     const CUmemAllocationProp *prop, unsigned long long flags)
{
    CUresult rc = fx_rt_ready();
    if (rc != CUDA_SUCCESS)
        return rc;
    /* Only a device location holds GPU memory; NCCL also creates host ones. */
    if (!handle || !prop || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE || size == 0)
        return fx_real.cuMemCreate(handle, size, prop, flags);
    CUdevice dev = prop->location.id;
    struct fx_gpu *g = fx_rt_gpu(dev, &rc);
    if (!g)
        return rc == CUDA_ERROR_INVALID_DEVICE ? fx_real.cuMemCreate(handle, size, prop, flags)
                                               : rc;
    size_t gran = 0;
    if (fx_real.cuMemGetAllocationGranularity)
        fx_real.cuMemGetAllocationGranularity(&gran, prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
    uint64_t bytes = fx_round_up(size, gran);
    if (fx_charge(g, dev, bytes) != 0)
        return CUDA_ERROR_OUT_OF_MEMORY;
    struct create c = {handle, size, prop, flags};
    CUresult r = fx_oom_retry(fx_rt_config(), &g->mem, bytes, create(&c, NULL), create, &c, NULL);
    if (r != CUDA_SUCCESS) {
        fx_ledger_uncharge(&g->mem, bytes);
        return r;
    }
    pthread_mutex_lock(&vmm_lock);
    if (grow((void **)&handles, &caphandles, nhandles, sizeof(*handles)) != 0) {
        pthread_mutex_unlock(&vmm_lock);
        fx_real.cuMemRelease(*handle);
        fx_ledger_uncharge(&g->mem, bytes);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    handles[nhandles++] = (struct vmm_handle){*handle, bytes, dev, 1, 0};
    pthread_mutex_unlock(&vmm_lock);
    return CUDA_SUCCESS;
}

CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
    if (fx_driver_load() != 0)
        return CUDA_ERROR_NOT_INITIALIZED;
    pthread_mutex_lock(&vmm_lock);
    CUresult r = fx_real.cuMemRelease(handle);
    struct vmm_handle *e = r == CUDA_SUCCESS ? find_handle(handle) : NULL;
    if (e) {
        e->holds--;
        settle(e);
    }
    pthread_mutex_unlock(&vmm_lock);
    return r;
}

CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
    if (fx_driver_load() != 0)
        return CUDA_ERROR_NOT_INITIALIZED;
    pthread_mutex_lock(&vmm_lock);
    CUresult r = fx_real.cuMemRetainAllocationHandle(handle, addr);
    struct vmm_handle *e = r == CUDA_SUCCESS && handle ? find_handle(*handle) : NULL;
    if (e)
        e->holds++;
    pthread_mutex_unlock(&vmm_lock);
    return r;
}

CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                  unsigned long long flags)
{
    if (fx_driver_load() != 0)
        return CUDA_ERROR_NOT_INITIALIZED;
    pthread_mutex_lock(&vmm_lock);
    CUresult r = fx_real.cuMemMap(ptr, size, offset, handle, flags);
    struct vmm_handle *e = r == CUDA_SUCCESS ? find_handle(handle) : NULL;
    if (e) {
        if (grow((void **)&maps, &capmaps, nmaps, sizeof(*maps)) == 0) {
            maps[nmaps++] = (struct vmm_map){ptr, size, handle};
            e->maps++;
        } else {
            /* Cannot remember the mapping: the handle then goes free at its
             * release, as if unmapped (an under-count of one mapping's
             * lifetime, logged). */
            FX_WARN(COMP, "out of host memory for a mapping record", "");
        }
    }
    pthread_mutex_unlock(&vmm_lock);
    return r;
}

CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    if (fx_driver_load() != 0)
        return CUDA_ERROR_NOT_INITIALIZED;
    pthread_mutex_lock(&vmm_lock);
    CUresult r = fx_real.cuMemUnmap(ptr, size);
    if (r == CUDA_SUCCESS) {
        /* Every mapping inside the range is gone. */
        for (size_t i = 0; i < nmaps;) {
            if (maps[i].va >= ptr && maps[i].va < ptr + size) {
                struct vmm_handle *e = find_handle(maps[i].h);
                maps[i] = maps[--nmaps];
                if (e) {
                    e->maps--;
                    settle(e);
                }
            } else {
                i++;
            }
        }
    }
    pthread_mutex_unlock(&vmm_lock);
    return r;
}
