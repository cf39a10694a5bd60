/* SPDX-License-Identifier: Apache-2.0 */
/* Initialisation, contexts, entry-point lookup and what the process is told
 * about memory. */
#include <pthread.h>
#include <string.h>

#include "flexpu/log.h"
#include "runtime/ptrmap.h"
#include "runtime/rt.h"

/* The driver refuses every call until cuInit succeeds, so failing here is
 * what makes a broken configuration fail closed. Every GPU joins its shared
 * state now, so a state directory that cannot be used is reported at start,
 * not at the first allocation. */
CUresult cuInit(unsigned int flags)
{
    CUresult rc = fx_rt_ready();
    if (rc != CUDA_SUCCESS)
        return rc;
    CUresult r = fx_real.cuInit(flags);
    if (r != CUDA_SUCCESS)
        return r;
    int n = 0;
    if (!fx_real.cuDeviceGetCount || !fx_real.cuDeviceGet ||
        fx_real.cuDeviceGetCount(&n) != CUDA_SUCCESS)
        return r;
    for (int i = 0; i < n && i < FX_MAX_DEVICES; i++) {
        CUdevice d;
        if (fx_real.cuDeviceGet(&d, i) != CUDA_SUCCESS)
            continue;
        if (!fx_rt_gpu(d, &rc))
            return rc;
    }
    return CUDA_SUCCESS;
}

/* This process's contexts, per device: the driver frees what was allocated
 * in a context when it is destroyed (cuCtxDestroy, the last release of the
 * primary context, cuDevicePrimaryCtxReset / cudaDeviceReset), so those
 * allocations are credited then; with the last context on a GPU the
 * context overhead is credited too. */
#define MAX_CREATED 256
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static int ctx_count[FX_MAX_DEVICES];
static int primary_refs[FX_MAX_DEVICES];
static CUcontext primary_ctx[FX_MAX_DEVICES];
static struct {
    CUcontext ctx;
    CUdevice dev;
} created[MAX_CREATED];

static void context_gone(CUdevice dev, CUcontext ctx)
{
    uint64_t bytes[FX_MAX_DEVICES] = {0};
    fx_ptrmap_take_ctx((uint64_t)(uintptr_t)ctx, bytes, FX_MAX_DEVICES);
    fx_launch_forget_ctx(ctx);
    CUresult rc;
    for (int d = 0; d < FX_MAX_DEVICES; d++) {
        struct fx_gpu *gd = bytes[d] ? fx_rt_gpu(d, &rc) : NULL;
        if (gd)
            fx_ledger_uncharge(&gd->mem, bytes[d]);
    }
    struct fx_gpu *g = fx_rt_gpu(dev, &rc);
    if (g && dev >= 0 && dev < FX_MAX_DEVICES && --ctx_count[dev] <= 0) {
        ctx_count[dev] = 0;
        fx_ledger_uncharge_context(&g->mem);
    }
}

void fx_contexts_forget_all(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    ctx_lock = fresh;
    memset(ctx_count, 0, sizeof(ctx_count));
    memset(primary_refs, 0, sizeof(primary_refs));
    memset(primary_ctx, 0, sizeof(primary_ctx));
    memset(created, 0, sizeof(created));
}

/* A context costs device memory before any allocation; it is charged once
 * per process and GPU. If the quota has no room for it the context is
 * undone and the caller gets CUDA_ERROR_OUT_OF_MEMORY. */
static CUresult context_made(CUdevice dev, CUcontext ctx, int primary)
{
    CUresult rc;
    struct fx_gpu *g = fx_rt_gpu(dev, &rc);
    if (g && fx_ledger_charge_context(&g->mem, (uint64_t)fx_rt_config()->context_overhead) == 0) {
        if (dev < 0 || dev >= FX_MAX_DEVICES)
            return CUDA_SUCCESS;
        pthread_mutex_lock(&ctx_lock);
        if (primary) {
            if (primary_refs[dev]++ == 0) {
                primary_ctx[dev] = ctx;
                ctx_count[dev]++;
            }
        } else {
            for (int i = 0; i < MAX_CREATED; i++) {
                if (!created[i].ctx) {
                    created[i].ctx = ctx;
                    created[i].dev = dev;
                    break;
                }
            }
            ctx_count[dev]++;
        }
        pthread_mutex_unlock(&ctx_lock);
        return CUDA_SUCCESS;
    }
    if (primary && fx_real.cuDevicePrimaryCtxRelease_v2)
        fx_real.cuDevicePrimaryCtxRelease_v2(dev);
    else if (!primary && fx_real.cuCtxDestroy_v2)
        fx_real.cuCtxDestroy_v2(ctx);
    if (!g)
        return rc;
    FX_WARN(COMP, "no room in the memory quota for a context", "device=%d overhead=%lld",
            (int)dev, (long long)fx_rt_config()->context_overhead);
    return CUDA_ERROR_OUT_OF_MEMORY;
}

#define CONTEXT_HOOK(call, ctxp, dev, primary)                                                     \
    do {                                                                                           \
        CUresult rc_ = fx_rt_ready();                                                              \
        if (rc_ != CUDA_SUCCESS)                                                                   \
            return rc_;                                                                            \
        CUresult r_ = call;                                                                        \
        if (r_ != CUDA_SUCCESS || !(ctxp))                                                         \
            return r_;                                                                             \
        return context_made(dev, *(ctxp), primary);                                                \
    } while (0)

CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    CONTEXT_HOOK(fx_real.cuCtxCreate_v2(pctx, flags, dev), pctx, dev, 0);
}

CUresult cuCtxCreate_v3(CUcontext *pctx, void *paramsArray, int numParams, unsigned int flags,
                        CUdevice dev)
{
    CONTEXT_HOOK(fx_real.cuCtxCreate_v3(pctx, paramsArray, numParams, flags, dev), pctx, dev, 0);
}

CUresult cuCtxCreate_v4(CUcontext *pctx, void *ctxCreateParams, unsigned int flags, CUdevice dev)
{
    CONTEXT_HOOK(fx_real.cuCtxCreate_v4(pctx, ctxCreateParams, flags, dev), pctx, dev, 0);
}

/* The pre-3.2 variant: the same arguments as _v2. */
CUresult cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    CONTEXT_HOOK(fx_real.cuCtxCreate(pctx, flags, dev), pctx, dev, 0);
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    CONTEXT_HOOK(fx_real.cuDevicePrimaryCtxRetain(pctx, dev), pctx, dev, 1);
}

/* Destroys a context made with cuCtxCreate through `real` (the v1 or _v2
 * export, whichever the caller was given); what was allocated in it is
 * credited. */
static CUresult ctx_destroy(CUcontext ctx, CUresult (*real)(CUcontext))
{
    pthread_mutex_lock(&ctx_lock);
    CUresult r = real(ctx);
    for (int i = 0; r == CUDA_SUCCESS && ctx && i < MAX_CREATED; i++) {
        if (created[i].ctx == ctx) {
            created[i].ctx = NULL;
            context_gone(created[i].dev, ctx);
            break;
        }
    }
    pthread_mutex_unlock(&ctx_lock);
    return r;
}

CUresult cuCtxDestroy_v2(CUcontext ctx)
{
    if (fx_driver_load() != 0)
        return CUDA_ERROR_NOT_INITIALIZED;
    return ctx_destroy(ctx, fx_real.cuCtxDestroy_v2);
}

CUresult cuCtxDestroy(CUcontext ctx)
{
    if (fx_driver_load() != 0)
        return CUDA_ERROR_NOT_INITIALIZED;
    return ctx_destroy(ctx, fx_real.cuCtxDestroy);
}

/* Release (all = 0: the last release destroys the primary context) or
 * reset (all = 1: it goes at once) of the primary context of `dev`. The
 * driver is loaded (the caller read `real` from it). */
static CUresult primary_drop(CUdevice dev, int all, CUresult (*real)(CUdevice))
{
    pthread_mutex_lock(&ctx_lock);
    CUresult r = real(dev);
    if (r == CUDA_SUCCESS && dev >= 0 && dev < FX_MAX_DEVICES && primary_refs[dev] > 0) {
        primary_refs[dev] = all ? 0 : primary_refs[dev] - 1;
        if (primary_refs[dev] == 0)
            context_gone(dev, primary_ctx[dev]);
    }
    pthread_mutex_unlock(&ctx_lock);
    return r;
}

/* Every variant of the release (all = 0) and the reset (all = 1): the same
 * bookkeeping around the driver's own call of that variant (libcudart 12
 * and 13 and cuBLAS ask for the CUDA 7.0 ones). */
#define PRIMARY_DROP_HOOK(name, all)                                                               \
    CUresult name(CUdevice dev)                                                                    \
    {                                                                                              \
        if (fx_driver_load() != 0)                                                                 \
            return CUDA_ERROR_NOT_INITIALIZED;                                                     \
        return primary_drop(dev, all, fx_real.name);                                               \
    }
PRIMARY_DROP_HOOK(cuDevicePrimaryCtxRelease_v2, 0)
PRIMARY_DROP_HOOK(cuDevicePrimaryCtxRelease, 0)
PRIMARY_DROP_HOOK(cuDevicePrimaryCtxReset_v2, 1)
PRIMARY_DROP_HOOK(cuDevicePrimaryCtxReset, 1)

/* The slice's view of the current GPU's memory (*g NULL: no current
 * context, or the library cannot attach; *rc says which). */
static CUresult meminfo_view(struct fx_gpu **g, uint64_t *free, uint64_t *total)
{
    CUresult rc;
    CUdevice dev;
    *g = fx_rt_current_gpu(&dev, &rc);
    if (!*g)
        return rc;
    size_t phys_free = 0, phys_total = 0;
    CUresult r = fx_real.cuMemGetInfo_v2(&phys_free, &phys_total);
    if (r != CUDA_SUCCESS)
        return r;
    /* A view: it never waits for a pool allocation under way. */
    fx_pools_reconcile_device(dev, 0);
    fx_memory_view((*g)->mem.quota, fx_ledger_used(&(*g)->mem, NULL), phys_total, phys_free,
                   total, free);
    return CUDA_SUCCESS;
}

CUresult cuMemGetInfo_v2(size_t *free, size_t *total)
{
    struct fx_gpu *g = NULL;
    uint64_t f, t;
    CUresult r = free && total ? meminfo_view(&g, &f, &t) : fx_rt_ready();
    if (r != CUDA_SUCCESS || !g)
        return r != CUDA_SUCCESS ? r : fx_real.cuMemGetInfo_v2(free, total);
    *total = t;
    *free = f;
    return CUDA_SUCCESS;
}

static unsigned int clamp32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (unsigned int)v;
}

/* The 32-bit variant: the driver's own answer decides success (its errors,
 * its arguments checks), the slice's view replaces the figures, clamped to
 * what 32 bits hold. */
CUresult cuMemGetInfo(unsigned int *free, unsigned int *total)
{
    CUresult rc = fx_rt_ready();
    if (rc != CUDA_SUCCESS)
        return rc;
    CUresult r = fx_real.cuMemGetInfo(free, total);
    if (r != CUDA_SUCCESS || !free || !total)
        return r;
    struct fx_gpu *g = NULL;
    uint64_t f, t;
    r = meminfo_view(&g, &f, &t);
    if (r != CUDA_SUCCESS || !g)
        return r;
    *free = clamp32(f);
    *total = clamp32(t);
    return CUDA_SUCCESS;
}

/* min(quota, what the driver said) into *bytes; the driver was asked. */
static CUresult total_mem_view(CUdevice dev, uint64_t *bytes)
{
    CUresult rc;
    struct fx_gpu *g = fx_rt_gpu(dev, &rc);
    if (!g)
        return rc;
    uint64_t quota = g->mem.quota;
    if (quota < *bytes)
        *bytes = quota;
    return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    CUresult rc = fx_rt_ready();
    if (rc != CUDA_SUCCESS)
        return rc;
    CUresult r = fx_real.cuDeviceTotalMem_v2(bytes, dev);
    if (r != CUDA_SUCCESS || !bytes)
        return r;
    uint64_t b = *bytes;
    r = total_mem_view(dev, &b);
    *bytes = (size_t)b;
    return r;
}

CUresult cuDeviceTotalMem(unsigned int *bytes, CUdevice dev)
{
    CUresult rc = fx_rt_ready();
    if (rc != CUDA_SUCCESS)
        return rc;
    CUresult r = fx_real.cuDeviceTotalMem(bytes, dev);
    if (r != CUDA_SUCCESS || !bytes)
        return r;
    uint64_t b = *bytes;
    r = total_mem_view(dev, &b);
    *bytes = clamp32(b);
    return r;
}

/* Lets the driver choose the variant, then swaps in the hook of exactly
 * that export. */
static CUresult swap(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                     CUdriverProcAddressQueryResult *status, CUresult r)
{
    /* Every answer is logged at debug level: the conformance test
     * (test/conformance) reads them to check what real libraries get. The
     * configuration (and so the log level) is read now: libcudart looks
     * entry points up before cuInit. A configuration that cannot be
     * honoured still fails cuInit; lookups answer regardless. */
    (void)fx_rt_ready();
    const char *answer = "driver";
    void *h = NULL;
    if (r != CUDA_SUCCESS || !pfn || !*pfn || !symbol) {
        answer = "none";
    } else if ((h = fx_hook_for_real(*pfn)) != NULL) {
        *pfn = h;
        answer = "hook";
    } else if (fx_must_hook(symbol)) {
        /* A variant newer than this library (every known one has a hook):
         * the driver's answer for an unknown symbol, so the caller takes
         * its own not-found path rather than an escape from the quota. */
        FX_ERROR(COMP, "refused an entry-point variant that has no hook (newer than the library)",
                 "symbol=%s version=%d flags=%llu", symbol, cudaVersion,
                 (unsigned long long)flags);
        *pfn = NULL;
        if (status)
            *status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
        r = CUDA_ERROR_NOT_FOUND;
        answer = "refused";
    }
    FX_DEBUG(COMP, "entry point", "symbol=%s version=%d flags=%llu answer=%s",
             symbol ? symbol : "(null)", cudaVersion, (unsigned long long)flags, answer);
    return r;
}

CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                             CUdriverProcAddressQueryResult *symbolStatus)
{
    if (fx_driver_load() != 0 || !fx_real.cuGetProcAddress_v2)
        return CUDA_ERROR_NOT_INITIALIZED;
    CUresult r = fx_real.cuGetProcAddress_v2(symbol, pfn, cudaVersion, flags, symbolStatus);
    return swap(symbol, pfn, cudaVersion, flags, symbolStatus, r);
}

CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags)
{
    if (fx_driver_load() != 0 || !fx_real.cuGetProcAddress)
        return CUDA_ERROR_NOT_INITIALIZED;
    CUresult r = fx_real.cuGetProcAddress(symbol, pfn, cudaVersion, flags);
    return swap(symbol, pfn, cudaVersion, flags, NULL, r);
}
