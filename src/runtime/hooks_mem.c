/* SPDX-License-Identifier: Apache-2.0 */
/* The memory quota: every driver path that takes device memory charges the
 * tenant before the driver is asked (so two processes cannot both pass the
 * check), and the matching free credits exactly what was charged. */
#include <pthread.h>
#include <string.h>

#include "flexpu/log.h"
#include "runtime/oom_wait.h"
#include "runtime/ptrmap.h"
#include "runtime/rt.h"

#define POOL_GRANULE (2ull << 20) /* what a pool grows by, at least */
#define ARRAY_ALIGN 512ull

static void credit(int dev, uint64_t bytes)
{
    CUresult rc;
    struct fx_gpu *g = fx_rt_gpu(dev, &rc);
    if (g)
        fx_ledger_uncharge(&g->mem, bytes);
}

typedef CUresult (*free_fn)(uint64_t key);

/* Records a charged allocation; if the host has no memory for the record,
 * the allocation is undone rather than left uncreditable. */
static CUresult remember(enum fx_alloc_kind kind, uint64_t key, uint64_t bytes, CUdevice dev,
                         struct fx_gpu *g, free_fn undo)
{
    struct fx_alloc a = {bytes, dev, 0};
    CUcontext ctx = NULL;
    if (fx_real.cuCtxGetCurrent && fx_real.cuCtxGetCurrent(&ctx) == CUDA_SUCCESS)
        a.ctx = (uint64_t)(uintptr_t)ctx;
    if (fx_ptrmap_put(kind, key, a) == 0)
        return CUDA_SUCCESS;
    undo(key);
    fx_ledger_uncharge(&g->mem, bytes);
    return CUDA_ERROR_OUT_OF_MEMORY;
}

static CUresult undo_mem(uint64_t key)
{
    return fx_real.cuMemFree_v2((CUdeviceptr)key);
}
static CUresult undo_array(uint64_t key)
{
    return fx_real.cuArrayDestroy((CUarray)(uintptr_t)key);
}
static CUresult undo_mipmap(uint64_t key)
{
    return fx_real.cuMipmappedArrayDestroy((CUmipmappedArray)(uintptr_t)key);
}

/* A free credits only what this library charged (IPC and imported memory
 * was never charged), and only once the driver accepted the free. The
 * record is taken out *before* the driver frees: once freed, the address can
 * be handed to another thread's allocation at once, whose record must not
 * be confused with this one. If the driver refuses, the record goes back. */
static CUresult release(enum fx_alloc_kind kind, uint64_t key, free_fn real_free)
{
    if (fx_driver_load() != 0)
        return CUDA_ERROR_NOT_INITIALIZED;
    struct fx_alloc a;
    int known = fx_ptrmap_take(kind, key, &a) == 0;
    CUresult r = real_free(key);
    if (known && r == CUDA_SUCCESS)
        credit(a.dev, a.size);
    else if (known && fx_ptrmap_put(kind, key, a) != 0)
        credit(a.dev, a.size); /* no room to keep it: never leave it booked */
    return r;
}

/* One allocation charged before the driver is asked: `estimate` is
 * admitted, `make` asks the driver and reports the record's key and what it
 * really took (pitch allocations learn it only then), and the booking is
 * settled on that. Over quota the driver is never asked. */
struct made {
    uint64_t key;
    uint64_t bytes; /* preset to the estimate */
};
typedef CUresult (*make_fn)(const void *args, struct made *out);

/* An allocation the driver refused for memory, tried again while borrowers
 * on the GPU are removed (oom_wait.h). */
struct remake {
    make_fn make;
    const void *args;
};
static CUresult remake(const void *a, void *out)
{
    const struct remake *x = a;
    return x->make(x->args, out);
}

static CUresult charged(struct fx_gpu *g, CUdevice dev, uint64_t estimate, enum fx_alloc_kind kind,
                        make_fn make, const void *args, free_fn undo)
{
    if (fx_charge(g, dev, estimate) != 0)
        return CUDA_ERROR_OUT_OF_MEMORY;
    struct made m = {0, estimate};
    CUresult r = make(args, &m);
    if (r == CUDA_ERROR_OUT_OF_MEMORY) {
        struct remake x = {make, args};
        r = fx_oom_retry(fx_rt_config(), &g->mem, estimate, r, remake, &x, &m);
    }
    if (r != CUDA_SUCCESS) {
        fx_ledger_uncharge(&g->mem, estimate);
        return r;
    }
    if (m.bytes > estimate)
        fx_ledger_charge(&g->mem, m.bytes - estimate, 1);
    else if (m.bytes < estimate)
        fx_ledger_uncharge(&g->mem, estimate - m.bytes);
    return remember(kind, m.key, m.bytes, dev, g, undo);
}

/* ---- classic allocations ---------------------------------------------- */

/* The arguments of every classic allocation, in both ABIs (v1: 32-bit
 * pointers and sizes). */
struct classic {
    CUdeviceptr *dptr;
    CUdeviceptr_v1 *dptr32;
    size_t bytes, width, height;
    unsigned int elem, flags;
    size_t *pitch;
    unsigned int *pitch32;
};

static CUresult make_alloc(const void *args, struct made *m)
{
    const struct classic *c = args;
    CUresult r = fx_real.cuMemAlloc_v2(c->dptr, c->bytes);
    m->key = r == CUDA_SUCCESS ? *c->dptr : 0;
    return r;
}

static CUresult make_alloc32(const void *args, struct made *m)
{
    const struct classic *c = args;
    CUresult r = fx_real.cuMemAlloc(c->dptr32, (unsigned int)c->bytes);
    m->key = r == CUDA_SUCCESS ? *c->dptr32 : 0;
    return r;
}

static CUresult make_managed(const void *args, struct made *m)
{
    const struct classic *c = args;
    CUresult r = fx_real.cuMemAllocManaged(c->dptr, c->bytes, c->flags);
    m->key = r == CUDA_SUCCESS ? *c->dptr : 0;
    return r;
}

/* Pitched: the pitch is the driver's choice, so the booking is settled on
 * pitch x height as returned. */
static CUresult make_pitch(const void *args, struct made *m)
{
    const struct classic *c = args;
    CUresult r = fx_real.cuMemAllocPitch_v2(c->dptr, c->pitch, c->width, c->height, c->elem);
    if (r == CUDA_SUCCESS) {
        m->key = *c->dptr;
        m->bytes = (uint64_t)*c->pitch * c->height;
    }
    return r;
}

static CUresult make_pitch32(const void *args, struct made *m)
{
    const struct classic *c = args;
    CUresult r = fx_real.cuMemAllocPitch(c->dptr32, c->pitch32, (unsigned int)c->width,
                                         (unsigned int)c->height, c->elem);
    if (r == CUDA_SUCCESS) {
        m->key = *c->dptr32;
        m->bytes = (uint64_t)*c->pitch32 * c->height;
    }
    return r;
}

static CUresult undo_mem32(uint64_t key)
{
    return fx_real.cuMemFree((CUdeviceptr_v1)key);
}

/* Each classic hook: without a GPU of the library's (no context) or with
 * arguments the driver must judge, the real call answers as it would. */
#define CLASSIC(real_call, out_ptr, estimate, make, undo)                                          \
    do {                                                                                           \
        CUresult rc_;                                                                              \
        CUdevice dev_;                                                                             \
        struct fx_gpu *g_ = fx_rt_current_gpu(&dev_, &rc_);                                        \
        uint64_t est_ = (estimate);                                                                \
        if (!g_ || !(out_ptr) || est_ == 0)                                                        \
            return rc_ != CUDA_SUCCESS ? rc_ : real_call;                                          \
        return charged(g_, dev_, est_, FX_KIND_MEM, make, &c_, undo);                              \
    } while (0)

CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    struct classic c_ = {.dptr = dptr, .bytes = bytesize};
    CLASSIC(fx_real.cuMemAlloc_v2(dptr, bytesize), dptr, bytesize, make_alloc, undo_mem);
}

CUresult cuMemAlloc(CUdeviceptr_v1 *dptr, unsigned int bytesize)
{
    struct classic c_ = {.dptr32 = dptr, .bytes = bytesize};
    CLASSIC(fx_real.cuMemAlloc(dptr, bytesize), dptr, bytesize, make_alloc32, undo_mem32);
}

/* Managed memory may live on the GPU at any time: charged in full to the
 * device of the current context, which is where it is first touched. */
CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
    struct classic c_ = {.dptr = dptr, .bytes = bytesize, .flags = flags};
    CLASSIC(fx_real.cuMemAllocManaged(dptr, bytesize, flags), dptr, bytesize, make_managed,
            undo_mem);
}

/* What a pitched allocation is admitted at: each row rounded to the
 * driver's alignment; 0 (the driver judges) on overflow or no size. */
static uint64_t pitch_estimate(uint64_t width, uint64_t height)
{
    uint64_t e;
    return __builtin_mul_overflow(fx_round_up(width, ARRAY_ALIGN), height, &e) ? 0 : e;
}

CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,
                            unsigned int ElementSizeBytes)
{
    struct classic c_ = {.dptr = dptr, .pitch = pPitch, .width = WidthInBytes, .height = Height,
                         .elem = ElementSizeBytes};
    CLASSIC(fx_real.cuMemAllocPitch_v2(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes),
            pPitch ? dptr : NULL, pitch_estimate(WidthInBytes, Height), make_pitch, undo_mem);
}

CUresult cuMemAllocPitch(CUdeviceptr_v1 *dptr, unsigned int *pPitch, unsigned int WidthInBytes,
                         unsigned int Height, unsigned int ElementSizeBytes)
{
    struct classic c_ = {.dptr32 = dptr, .pitch32 = pPitch, .width = WidthInBytes,
                         .height = Height, .elem = ElementSizeBytes};
    CLASSIC(fx_real.cuMemAllocPitch(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes),
            pPitch ? dptr : NULL, pitch_estimate(WidthInBytes, Height), make_pitch32, undo_mem32);
}

CUresult cuMemFree_v2(CUdeviceptr dptr)
{
    return release(FX_KIND_MEM, dptr, undo_mem);
}

/* A 32-bit address is the same address: one record whichever ABI frees it. */
CUresult cuMemFree(CUdeviceptr_v1 dptr)
{
    return release(FX_KIND_MEM, dptr, undo_mem32);
}

/* ---- arrays ------------------------------------------------------------- */

static uint64_t element_bytes(CUarray_format f)
{
    switch (f) {
    case CU_AD_FORMAT_UNSIGNED_INT8:
    case CU_AD_FORMAT_SIGNED_INT8:
        return 1;
    case CU_AD_FORMAT_UNSIGNED_INT16:
    case CU_AD_FORMAT_SIGNED_INT16:
    case CU_AD_FORMAT_HALF:
        return 2;
    default:
        /* 32-bit formats; newer packed and compressed formats are at most
         * this per channel. */
        return 4;
    }
}

/* Bytes of one level, rounded to the driver's row alignment; UINT64_MAX on
 * overflow (then refused as over any quota). */
static uint64_t level_bytes(uint64_t w, uint64_t h, uint64_t d, CUarray_format f,
                            unsigned channels)
{
    uint64_t b = element_bytes(f) * (channels ? channels : 1);
    if (__builtin_mul_overflow(b, w ? w : 1, &b) || __builtin_mul_overflow(b, h ? h : 1, &b) ||
        __builtin_mul_overflow(b, d ? d : 1, &b) || b > UINT64_MAX - ARRAY_ALIGN)
        return UINT64_MAX;
    return fx_round_up(b, ARRAY_ALIGN);
}

/* One array creation in any of its four ABIs: `create` is the real call. */
struct array_args {
    CUarray *handle;
    CUresult (*create)(const struct array_args *a);
    const void *desc;
};

static CUresult make_array(const void *args, struct made *m)
{
    const struct array_args *a = args;
    CUresult r = a->create(a);
    m->key = r == CUDA_SUCCESS ? (uint64_t)(uintptr_t)*a->handle : 0;
    return r;
}

static CUresult create_2d(const struct array_args *a)
{
    return fx_real.cuArrayCreate_v2(a->handle, a->desc);
}
static CUresult create_3d(const struct array_args *a)
{
    return fx_real.cuArray3DCreate_v2(a->handle, a->desc);
}
static CUresult create_2d_v1(const struct array_args *a)
{
    return fx_real.cuArrayCreate(a->handle, a->desc);
}
static CUresult create_3d_v1(const struct array_args *a)
{
    return fx_real.cuArray3DCreate(a->handle, a->desc);
}

static CUresult array_create(CUarray *pHandle, const void *desc, uint64_t bytes,
                             CUresult (*create)(const struct array_args *))
{
    struct array_args a = {pHandle, create, desc};
    CUresult rc;
    CUdevice dev;
    struct fx_gpu *g = fx_rt_current_gpu(&dev, &rc);
    if (!g || !pHandle || !desc)
        return rc != CUDA_SUCCESS ? rc : create(&a);
    return charged(g, dev, bytes, FX_KIND_ARRAY, make_array, &a, undo_array);
}

CUresult cuArrayCreate_v2(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR *pAllocateArray)
{
    const CUDA_ARRAY_DESCRIPTOR *d = pAllocateArray;
    uint64_t bytes = d ? level_bytes(d->Width, d->Height, 1, d->Format, d->NumChannels) : 0;
    return array_create(pHandle, d, bytes, create_2d);
}

CUresult cuArray3DCreate_v2(CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *pAllocateArray)
{
    const CUDA_ARRAY3D_DESCRIPTOR *d = pAllocateArray;
    uint64_t bytes = d ? level_bytes(d->Width, d->Height, d->Depth, d->Format, d->NumChannels) : 0;
    return array_create(pHandle, d, bytes, create_3d);
}

CUresult cuArrayCreate(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR_v1 *pAllocateArray)
{
    const CUDA_ARRAY_DESCRIPTOR_v1 *d = pAllocateArray;
    uint64_t bytes = d ? level_bytes(d->Width, d->Height, 1, d->Format, d->NumChannels) : 0;
    return array_create(pHandle, d, bytes, create_2d_v1);
}

CUresult cuArray3DCreate(CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1 *pAllocateArray)
{
    const CUDA_ARRAY3D_DESCRIPTOR_v1 *d = pAllocateArray;
    uint64_t bytes = d ? level_bytes(d->Width, d->Height, d->Depth, d->Format, d->NumChannels) : 0;
    return array_create(pHandle, d, bytes, create_3d_v1);
}

CUresult cuArrayDestroy(CUarray hArray)
{
    return release(FX_KIND_ARRAY, (uint64_t)(uintptr_t)hArray, undo_array);
}

struct mipmap_args {
    CUmipmappedArray *handle;
    const CUDA_ARRAY3D_DESCRIPTOR *desc;
    unsigned int levels;
};

static CUresult make_mipmap(const void *args, struct made *m)
{
    const struct mipmap_args *a = args;
    CUresult r = fx_real.cuMipmappedArrayCreate(a->handle, a->desc, a->levels);
    m->key = r == CUDA_SUCCESS ? (uint64_t)(uintptr_t)*a->handle : 0;
    return r;
}

CUresult cuMipmappedArrayCreate(CUmipmappedArray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *desc,
                                unsigned int numMipmapLevels)
{
    CUresult rc;
    CUdevice dev;
    struct fx_gpu *g = fx_rt_current_gpu(&dev, &rc);
    if (!g || !pHandle || !desc || numMipmapLevels == 0)
        return rc != CUDA_SUCCESS ? rc : fx_real.cuMipmappedArrayCreate(pHandle, desc,
                                                                           numMipmapLevels);
    uint64_t bytes = 0, w = desc->Width, h = desc->Height, d = desc->Depth;
    /* Layered and cubemap arrays: Depth counts layers (or faces), which do
     * not shrink with the level. */
    int depth_is_layers = (desc->Flags & (CUDA_ARRAY3D_LAYERED | CUDA_ARRAY3D_CUBEMAP)) != 0;
    for (unsigned l = 0; l < numMipmapLevels && bytes != UINT64_MAX; l++) {
        uint64_t lb = level_bytes(w, h, d, desc->Format, desc->NumChannels);
        bytes = (lb == UINT64_MAX || bytes > UINT64_MAX - lb) ? UINT64_MAX : bytes + lb;
        w = w > 1 ? w / 2 : w;
        h = h > 1 ? h / 2 : h;
        d = (d > 1 && !depth_is_layers) ? d / 2 : d;
    }
    struct mipmap_args a = {pHandle, desc, numMipmapLevels};
    return charged(g, dev, bytes, FX_KIND_MIPMAP, make_mipmap, &a, undo_mipmap);
}

CUresult cuMipmappedArrayDestroy(CUmipmappedArray hMipmappedArray)
{
    return release(FX_KIND_MIPMAP, (uint64_t)(uintptr_t)hMipmappedArray, undo_mipmap);
}

/* ---- stream-ordered pools --------------------------------------------- */

#define MAX_POOLS 256
static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
/* One pool allocation's estimate, driver call and settle at a time in this
 * process (alloc_async says why, and why a wait for borrowers releases it). */
static pthread_mutex_t pool_alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pool_charge {
    CUmemoryPool pool;
    CUdevice dev;
    uint64_t charged; /* what this process has booked for the pool */
} pools[MAX_POOLS];

static struct pool_charge *pool_entry(CUmemoryPool pool, CUdevice dev)
{
    struct pool_charge *free_e = NULL;
    for (int i = 0; i < MAX_POOLS; i++) {
        if (pools[i].pool == pool)
            return &pools[i];
        if (!pools[i].pool && !free_e)
            free_e = &pools[i];
    }
    if (free_e) {
        free_e->pool = pool;
        free_e->dev = dev;
        free_e->charged = 0;
    }
    return free_e;
}

/* Sets a booking (*booked) to what the driver reports `held`, charging the
 * growth (already taken: forced) or crediting the shrink. Returns the
 * growth, 0 when it did not grow. */
static uint64_t book(struct fx_gpu *g, uint64_t *booked, uint64_t held)
{
    uint64_t grew = held > *booked ? held - *booked : 0;
    if (grew)
        fx_ledger_charge(&g->mem, grew, 1);
    else if (held < *booked)
        fx_ledger_uncharge(&g->mem, *booked - held);
    *booked = held;
    return grew;
}

/* Books the pool's reservation as the driver reports it; returns how much
 * the reservation had grown beyond the booking (0 when the query fails). */
static uint64_t pool_settle(struct pool_charge *e, struct fx_gpu *g)
{
    cuuint64_t reserved = 0;
    CUstreamCaptureMode saved;
    fx_rt_relaxed_begin(&saved);
    CUresult r = fx_real.cuMemPoolGetAttribute
                     ? fx_real.cuMemPoolGetAttribute(e->pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT,
                                                     &reserved)
                     : CUDA_ERROR_NOT_SUPPORTED;
    fx_rt_relaxed_end(&saved);
    return r == CUDA_SUCCESS ? book(g, &e->charged, reserved) : 0;
}

/* Every settle outside alloc_async holds pool_alloc_lock: between a pool
 * allocation's driver call and its own settle the pool has grown by memory
 * its booking does not have yet, and a settle from another thread then
 * would book that growth as the pool's, leaving the allocation's settle no
 * growth to see, so its check of the quota (alloc_async) would let an
 * allocation that took the tenant over it stand. */
void fx_pool_reconcile(CUmemoryPool pool, CUdevice dev)
{
    CUresult rc;
    struct fx_gpu *g = fx_rt_gpu(dev, &rc);
    if (!g || !pool)
        return;
    pthread_mutex_lock(&pool_alloc_lock);
    pthread_mutex_lock(&pools_lock);
    struct pool_charge *e = pool_entry(pool, dev);
    if (e)
        pool_settle(e, g);
    pthread_mutex_unlock(&pools_lock);
    pthread_mutex_unlock(&pool_alloc_lock);
}

/* pool_alloc_lock held. */
static void settle_device(struct fx_gpu *g, CUdevice dev)
{
    pthread_mutex_lock(&pools_lock);
    for (int i = 0; i < MAX_POOLS; i++)
        if (pools[i].pool && pools[i].dev == dev)
            pool_settle(&pools[i], g);
    pthread_mutex_unlock(&pools_lock);
}

void fx_pools_reconcile_device(CUdevice dev, int wait)
{
    CUresult rc;
    struct fx_gpu *g = fx_rt_gpu(dev, &rc);
    if (!g)
        return;
    if (wait)
        pthread_mutex_lock(&pool_alloc_lock);
    else if (pthread_mutex_trylock(&pool_alloc_lock) != 0)
        return; /* a pool allocation is under way: it settles its pool itself */
    settle_device(g, dev);
    pthread_mutex_unlock(&pool_alloc_lock);
}

/* Charges; when over quota, memory that pools and graphs gave back to the
 * driver is credited first and the charge tried again. `pool_locked`: the
 * caller is a pool allocation, holding pool_alloc_lock. */
static int charge(struct fx_gpu *g, CUdevice dev, uint64_t bytes, int pool_locked)
{
    if (fx_ledger_charge(&g->mem, bytes, 0) == 0)
        return 0;
    if (pool_locked)
        settle_device(g, dev);
    else
        fx_pools_reconcile_device(dev, 1);
    fx_graphmem_reconcile(dev);
    return fx_ledger_charge(&g->mem, bytes, 0);
}

/* Any other path's charge takes pool_alloc_lock for the pools' settle (it
 * waits for a pool allocation under way, never across its own driver call
 * or wait for borrowers). */
int fx_charge(struct fx_gpu *g, CUdevice dev, uint64_t bytes)
{
    return charge(g, dev, bytes, 0);
}

void fx_pool_forget(CUmemoryPool pool)
{
    pthread_mutex_lock(&pools_lock);
    for (int i = 0; i < MAX_POOLS; i++) {
        if (pools[i].pool != pool)
            continue;
        if (pools[i].charged)
            credit(pools[i].dev, pools[i].charged);
        memset(&pools[i], 0, sizeof(pools[i]));
    }
    pthread_mutex_unlock(&pools_lock);
}

typedef CUresult (*alloc_async_fn)(CUdeviceptr *, size_t, CUmemoryPool, CUstream);

static CUresult via_default_pool(CUdeviceptr *d, size_t n, CUmemoryPool p, CUstream s)
{
    (void)p;
    return fx_real.cuMemAllocAsync(d, n, s);
}
static CUresult via_default_pool_ptsz(CUdeviceptr *d, size_t n, CUmemoryPool p, CUstream s)
{
    (void)p;
    return fx_real.cuMemAllocAsync_ptsz(d, n, s);
}

/* A pool allocation tried again while borrowers are removed (oom_wait.h).
 * Each try is made holding pool_alloc_lock; with `release`, a try the
 * driver refuses for memory gives it back, and any other answer keeps it
 * for the settle. `out` is the caller's "lock held" flag. */
struct async_args {
    alloc_async_fn real;
    CUdeviceptr *dptr;
    size_t bytesize;
    CUmemoryPool pool;
    CUstream stream;
    int release; /* the wait runs without pool_alloc_lock */
};
static CUresult async_again(const void *a, void *out)
{
    const struct async_args *x = a;
    int *held = out;
    if (!*held) {
        pthread_mutex_lock(&pool_alloc_lock);
        *held = 1;
    }
    CUresult r = x->real(x->dptr, x->bytesize, x->pool, x->stream);
    if (r == CUDA_ERROR_OUT_OF_MEMORY && x->release) {
        pthread_mutex_unlock(&pool_alloc_lock);
        *held = 0;
    }
    return r;
}

/* The allocation's first answer was out-of-memory with `*admit` booked.
 * When this process may wait for borrowers, waits (oom_wait.h) and returns
 * the last answer, with pool_alloc_lock held again whatever happened.
 *
 * Why the wait may release the lock. The lock makes each pool allocation's
 * estimate (how much of the request the pool's free memory serves:
 * reserved - used), its driver call (which takes that free memory) and its
 * settle (the booking set to what the pool reserves) one step: two threads
 * never count on the same free memory. Before the wait, the admission is
 * raised to the request's whole size (rounded to the pool's growth step), so
 * the waiting allocation counts on none of the pool's free memory: the
 * driver's refusal has just shown that memory did not serve it, and the
 * driver may even have given it back. What is booked then: the whole size in
 * the tenant's ledger, nothing in the pool's booking (e->charged), nothing of
 * it in the pool. Another thread meanwhile sees the pool exactly as if this
 * allocation had not begun (its used, reserved and free memory, all of which
 * it may count on, since nobody else does) and the tenant's ledger with the
 * whole size in it: its own admission is checked against the quota with
 * this one's place kept, so the admissions together never pass the quota
 * (a later allocation cannot take the place of a waiting one). The tries
 * are made holding the lock, so none falls between another thread's
 * estimate and its settle; one that succeeds keeps the lock through this
 * allocation's settle, so the pool's growth it sees is this allocation's
 * (at most its whole size, which is booked; beyond, the settle's check
 * refuses what ends over the quota, as without a wait). A trim or a free by
 * another thread meanwhile only changes free memory nobody waiting counts
 * on. When the quota has no room for the whole size, the wait keeps the
 * lock, as before: the allocation counts on the pool's free memory, which
 * no other thread may then take. */
static CUresult pool_wait(struct fx_gpu *g, CUdevice dev, uint64_t *admit, CUresult r,
                          struct async_args *x)
{
    const struct fx_slice_config *cfg = fx_rt_config();
    if (!fx_oom_may_wait(cfg, &g->mem))
        return r;
    uint64_t whole = fx_round_up(x->bytesize, POOL_GRANULE);
    if (*admit < whole && charge(g, dev, whole - *admit, 1) == 0)
        *admit = whole;
    x->release = *admit == whole;
    int held = 1;
    if (x->release) {
        pthread_mutex_unlock(&pool_alloc_lock);
        held = 0;
    }
    r = fx_oom_retry(cfg, &g->mem, *admit, r, async_again, x, &held);
    if (!held)
        pthread_mutex_lock(&pool_alloc_lock);
    return r;
}

/* A pool keeps freed memory until trimmed, so what counts is what the pool
 * reserves: an allocation is admitted against its size rounded up to the
 * pool's growth step, then the pool's reservation is booked. */
static CUresult alloc_async(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
                            CUstream stream, int per_thread, alloc_async_fn real)
{
    CUresult rc;
    CUdevice dev;
    struct fx_gpu *g = fx_rt_current_gpu(&dev, &rc);
    if (!g || !dptr || bytesize == 0)
        return rc != CUDA_SUCCESS ? rc : real(dptr, bytesize, pool, stream);
    /* Captured, it becomes a graph memory node, backed at launch from the
     * graph pool and booked then; querying anything now would break the
     * capture. */
    if (fx_rt_capturing(stream, per_thread))
        return real(dptr, bytesize, pool, stream);
    CUmemoryPool target = pool;
    if (!target && fx_real.cuDeviceGetMemPool)
        fx_real.cuDeviceGetMemPool(&target, dev);
    /* One pool allocation at a time in this process: the estimate below
     * must not be made by two threads on the same free memory (a wait for
     * borrowers releases it: pool_wait). */
    pthread_mutex_lock(&pool_alloc_lock);
    /* What the pool must grow by: nothing when memory it already holds (and
     * that is already booked) can serve the request. */
    uint64_t admit = fx_round_up(bytesize, POOL_GRANULE);
    cuuint64_t used = 0, reserved = 0;
    if (target && fx_real.cuMemPoolGetAttribute) {
        CUstreamCaptureMode saved;
        fx_rt_relaxed_begin(&saved);
        if (fx_real.cuMemPoolGetAttribute(target, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used) ==
                CUDA_SUCCESS &&
            fx_real.cuMemPoolGetAttribute(target, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT,
                                          &reserved) == CUDA_SUCCESS)
            admit = used + admit > reserved ? used + admit - reserved : 0;
        fx_rt_relaxed_end(&saved);
    }
    if (charge(g, dev, admit, 1) != 0) {
        pthread_mutex_unlock(&pool_alloc_lock);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    CUresult r = real(dptr, bytesize, pool, stream);
    if (r == CUDA_ERROR_OUT_OF_MEMORY) {
        struct async_args x = {real, dptr, bytesize, pool, stream, 0};
        r = pool_wait(g, dev, &admit, r, &x);
    }
    pthread_mutex_lock(&pools_lock);
    struct pool_charge *e = target ? pool_entry(target, dev) : NULL;
    uint64_t beyond = 0; /* what the pool grew by beyond the admission */
    if (e) {
        e->charged += admit;          /* the admission becomes part of the booking... */
        beyond = pool_settle(e, g);   /* ...which is then set to what the pool holds */
    } else {
        /* Table full: the pool's reservation cannot be followed, so the
         * admission stays booked (an over-count, never an escape). */
        if (r != CUDA_SUCCESS)
            fx_ledger_uncharge(&g->mem, admit);
        else
            FX_WARN(COMP, "too many memory pools to track; charge kept", "bytes=%llu",
                    (unsigned long long)admit);
    }
    pthread_mutex_unlock(&pools_lock);
    /* The free memory the estimate counted on may not have served (it can
     * be fragmented, or not yet reusable in stream order), and the pool
     * grew past the admission; if that took the tenant past the quota, undo
     * the allocation, give the unused memory back, and refuse. (Only then is
     * the tenant's usage summed: this is every pool allocation's path.) */
    if (r == CUDA_SUCCESS && beyond && fx_ledger_used(&g->mem, NULL) > g->mem.quota) {
        CUresult (*free_async)(CUdeviceptr, CUstream) =
            per_thread ? fx_real.cuMemFreeAsync_ptsz : fx_real.cuMemFreeAsync;
        if (free_async && free_async(*dptr, stream) == CUDA_SUCCESS) {
            fx_real.cuMemPoolTrimTo(target, 0);
            pthread_mutex_lock(&pools_lock);
            pool_settle(e, g);
            pthread_mutex_unlock(&pools_lock);
            r = CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    pthread_mutex_unlock(&pool_alloc_lock);
    return r;
}

CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    return alloc_async(dptr, bytesize, NULL, hStream, 0, via_default_pool);
}

CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    return alloc_async(dptr, bytesize, NULL, hStream, 1, via_default_pool_ptsz);
}

CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
                                 CUstream hStream)
{
    return alloc_async(dptr, bytesize, pool, hStream, 0, fx_real.cuMemAllocFromPoolAsync);
}

CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
                                      CUstream hStream)
{
    return alloc_async(dptr, bytesize, pool, hStream, 1, fx_real.cuMemAllocFromPoolAsync_ptsz);
}

CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep)
{
    if (fx_driver_load() != 0)
        return CUDA_ERROR_NOT_INITIALIZED;
    CUresult r = fx_real.cuMemPoolTrimTo(pool, minBytesToKeep);
    if (r == CUDA_SUCCESS) {
        pthread_mutex_lock(&pools_lock);
        int known = 0;
        CUdevice dev = 0;
        for (int i = 0; i < MAX_POOLS && !known; i++)
            if (pools[i].pool == pool) {
                known = 1;
                dev = pools[i].dev;
            }
        pthread_mutex_unlock(&pools_lock);
        if (known)
            fx_pool_reconcile(pool, dev);
    }
    return r;
}

CUresult cuMemPoolDestroy(CUmemoryPool pool)
{
    if (fx_driver_load() != 0)
        return CUDA_ERROR_NOT_INITIALIZED;
    CUresult r = fx_real.cuMemPoolDestroy(pool);
    if (r == CUDA_SUCCESS)
        fx_pool_forget(pool);
    return r;
}

/* ---- graph memory --------------------------------------------------------- */

static pthread_mutex_t graph_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t graph_charged[FX_MAX_DEVICES];

void fx_mem_forget_all(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    pools_lock = fresh;
    pool_alloc_lock = fresh;
    graph_lock = fresh;
    memset(pools, 0, sizeof(pools));
    memset(graph_charged, 0, sizeof(graph_charged));
}

void fx_graphmem_reconcile(CUdevice dev)
{
    CUresult rc;
    struct fx_gpu *g = fx_rt_gpu(dev, &rc);
    if (!g || !fx_real.cuDeviceGetGraphMemAttribute)
        return;
    cuuint64_t reserved = 0;
    CUstreamCaptureMode saved;
    fx_rt_relaxed_begin(&saved);
    CUresult r =
        fx_real.cuDeviceGetGraphMemAttribute(dev, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT, &reserved);
    fx_rt_relaxed_end(&saved);
    if (r != CUDA_SUCCESS)
        return;
    pthread_mutex_lock(&graph_lock);
    if (book(g, &graph_charged[dev], reserved) && fx_ledger_used(&g->mem, NULL) > g->mem.quota)
        FX_WARN(COMP, "graph memory took the tenant over its quota", "device=%d bytes=%llu",
                (int)dev, (unsigned long long)reserved);
    pthread_mutex_unlock(&graph_lock);
}

/* The graph pool is backed when a graph with memory nodes is launched, so
 * its reservation is booked after launch (it cannot be refused in advance:
 * the launch has no size). */
static CUresult graph_launch(CUgraphExec exec, CUstream stream, int per_thread)
{
    /* A graph is GPU time like a kernel: arbitrated the same way. */
    struct fx_launch l;
    CUresult rc0 = fx_launch_begin(&l, stream, per_thread);
    if (rc0 != CUDA_SUCCESS)
        return rc0;
    CUresult r = per_thread ? fx_real.cuGraphLaunch_ptsz(exec, stream)
                            : fx_real.cuGraphLaunch(exec, stream);
    fx_launch_end(&l, r);
    if (r != CUDA_SUCCESS || fx_rt_capturing(stream, per_thread))
        return r;
    CUresult rc;
    CUdevice dev;
    if (fx_rt_current_gpu(&dev, &rc))
        fx_graphmem_reconcile(dev);
    return r;
}

CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
    CUresult rc = fx_rt_ready();
    return rc != CUDA_SUCCESS ? rc : graph_launch(hGraphExec, hStream, 0);
}

CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
    CUresult rc = fx_rt_ready();
    return rc != CUDA_SUCCESS ? rc : graph_launch(hGraphExec, hStream, 1);
}

CUresult cuDeviceGraphMemTrim(CUdevice device)
{
    if (fx_driver_load() != 0)
        return CUDA_ERROR_NOT_INITIALIZED;
    CUresult r = fx_real.cuDeviceGraphMemTrim(device);
    if (r == CUDA_SUCCESS)
        fx_graphmem_reconcile(device);
    return r;
}
