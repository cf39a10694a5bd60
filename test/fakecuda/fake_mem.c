/* SPDX-License-Identifier: Apache-2.0 */
/* Device-memory accounting, the registry of allocations and handles, and the
 * classic allocation paths: cuMemAlloc/Pitch/Managed, host memory, arrays,
 * IPC. Device memory is an anonymous MAP_NORESERVE mapping, so a
 * multi-gigabyte allocation costs nothing until touched and is writable. */
#include <sys/mman.h>
#include <unistd.h>

#include "fake_exports.h"

/* --- Accounting (lock held) ------------------------------------------------ */

/* What the device has left beside this process's `used` and the others'. */
static unsigned long long fake_room(unsigned long long used, unsigned long long others)
{
    return used + others >= fake.total_mem ? 0 : fake.total_mem - used - others;
}

/* Charges `bytes` to the device, or fails with CUDA_ERROR_OUT_OF_MEMORY.
 * Before failing it gives back what memory pools keep cached, as the real
 * driver does when an allocation would not fit. */
CUresult fake_charge(int dev, unsigned long long bytes)
{
    struct fake_device *d = &fake.dev[dev];
    unsigned long long others = fake_node_others(dev);
    if (bytes > fake_room(d->used, others)) {
        fake_pools_trim_device(dev, 1);
        if (bytes > fake_room(d->used, others))
            return CUDA_ERROR_OUT_OF_MEMORY;
    }
    d->used += bytes;
    fake_node_publish(dev);
    return CUDA_SUCCESS;
}

void fake_uncharge(int dev, unsigned long long bytes)
{
    fake.dev[dev].used -= bytes;
    fake_node_publish(dev);
}

FAKE_API unsigned long long fakecuda_used_bytes(int device)
{
    if (!atomic_load(&fake.initialized) || !fake_valid_dev(device))
        return 0;
    fake_lock();
    unsigned long long used = fake.dev[device].used;
    fake_unlock();
    return used;
}

void *fake_map(size_t len)
{
    void *p =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* --- Registry (lock held) -------------------------------------------------- */

#define REGISTRY_BITS 12
static struct fake_alloc *registry[1u << REGISTRY_BITS];

static size_t bucket_of(unsigned long long key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - REGISTRY_BITS));
}

struct fake_alloc *fake_alloc_new(enum fake_alloc_kind kind, int dev)
{
    struct fake_alloc *a = calloc(1, sizeof *a);
    if (a) {
        a->kind = kind;
        a->dev = dev;
    }
    return a;
}

void fake_registry_add(struct fake_alloc *a)
{
    size_t b = bucket_of(a->key);
    a->hash_next = registry[b];
    registry[b] = a;
}

struct fake_alloc *fake_registry_find(unsigned long long key, unsigned kinds)
{
    for (struct fake_alloc *a = registry[bucket_of(key)]; a; a = a->hash_next)
        if (a->key == key && (FAKE_KIND(a->kind) & kinds))
            return a;
    return NULL;
}

/* The entry of one of `kinds` with the lowest key whose [key, key + size)
 * overlaps [lo, hi), or NULL. A full scan: only the VMM calls ask. */
struct fake_alloc *fake_registry_find_overlap(unsigned long long lo, unsigned long long hi,
                                              unsigned kinds)
{
    struct fake_alloc *best = NULL;
    for (size_t b = 0; b < sizeof registry / sizeof registry[0]; b++)
        for (struct fake_alloc *a = registry[b]; a; a = a->hash_next)
            if ((FAKE_KIND(a->kind) & kinds) && a->key < hi && a->key + a->size > lo &&
                (!best || a->key < best->key))
                best = a;
    return best;
}

static void registry_remove(struct fake_alloc *a)
{
    for (struct fake_alloc **p = &registry[bucket_of(a->key)]; *p; p = &(*p)->hash_next) {
        if (*p == a) {
            *p = a->hash_next;
            return;
        }
    }
}

/* Unregisters, unmaps and uncharges `a`, then frees it. */
void fake_alloc_destroy(struct fake_alloc *a)
{
    registry_remove(a);
    if (a->map)
        munmap(a->map, a->map_len);
    if (a->charged)
        fake_uncharge(a->dev, a->charged);
    free(a);
}

void fake_registry_destroy_owned(void *owner)
{
    for (size_t b = 0; b < sizeof registry / sizeof registry[0]; b++) {
        struct fake_alloc *a = registry[b];
        while (a) {
            struct fake_alloc *next = a->hash_next;
            if (a->owner == owner)
                fake_alloc_destroy(a);
            a = next;
        }
    }
}

/* Lock held. Charges `charge` bytes to `dev` and registers a fresh mapping
 * of `len` bytes under its address. */
CUresult fake_map_and_register(enum fake_alloc_kind kind, int dev, size_t len,
                               unsigned long long charge, struct fake_alloc **out)
{
    if (charge) {
        CUresult r = fake_charge(dev, charge);
        if (r != CUDA_SUCCESS)
            return r;
    }
    struct fake_alloc *a = fake_alloc_new(kind, dev);
    void *p = a ? fake_map(len) : NULL;
    if (!p) {
        free(a);
        if (charge)
            fake_uncharge(dev, charge);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    a->key = (unsigned long long)(uintptr_t)p;
    a->map = p;
    a->map_len = len;
    a->size = len;
    a->charged = charge;
    fake_registry_add(a);
    *out = a;
    return CUDA_SUCCESS;
}

/* --- cuMemAlloc and friends --------------------------------------------------- */

/* The common path of the allocations that need a current context and are
 * potentially unsafe during stream capture. */
static CUresult device_alloc(enum fake_alloc_kind kind, size_t len, CUdeviceptr *dptr)
{
    fake_lock();
    CUresult r = fake_capture_check_unsafe();
    struct fake_ctx *c = fake_current_ctx();
    struct fake_alloc *a = NULL;
    if (r == CUDA_SUCCESS && !c)
        r = CUDA_ERROR_INVALID_CONTEXT;
    if (r == CUDA_SUCCESS)
        r = fake_map_and_register(kind, c->dev, len, len, &a);
    if (r == CUDA_SUCCESS)
        a->owner = c; /* freed with its context, as by the real driver */
    if (r == CUDA_SUCCESS)
        *dptr = a->key;
    fake_unlock();
    return r;
}

FAKE_API CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    FAKE_REQUIRE_INIT();
    if (!dptr || bytesize == 0)
        return CUDA_ERROR_INVALID_VALUE;
    return device_alloc(FAKE_ALLOC_DEVICE, bytesize, dptr);
}

/* pitch = WidthInBytes rounded up to 512; pitch * Height is charged. */
FAKE_API CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes,
                                     size_t Height, unsigned int ElementSizeBytes)
{
    FAKE_REQUIRE_INIT();
    if (!dptr || !pPitch || WidthInBytes == 0 || Height == 0 ||
        (ElementSizeBytes != 4 && ElementSizeBytes != 8 && ElementSizeBytes != 16))
        return CUDA_ERROR_INVALID_VALUE;
    size_t pitch = (WidthInBytes + FAKE_PITCH_ALIGN - 1) / FAKE_PITCH_ALIGN * FAKE_PITCH_ALIGN;
    size_t len;
    if (pitch < WidthInBytes || __builtin_mul_overflow(pitch, Height, &len))
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult r = device_alloc(FAKE_ALLOC_DEVICE, len, dptr);
    if (r == CUDA_SUCCESS)
        *pPitch = pitch;
    return r;
}

FAKE_API CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
    FAKE_REQUIRE_INIT();
    if (!dptr || bytesize == 0 || (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST))
        return CUDA_ERROR_INVALID_VALUE;
    return device_alloc(FAKE_ALLOC_MANAGED, bytesize, dptr);
}

/* Frees what cuMemAlloc/Pitch/Managed returned; a pool block is returned to
 * its pool, as the real driver allows. */
FAKE_API CUresult cuMemFree_v2(CUdeviceptr dptr)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    CUresult r = fake_capture_check_unsafe();
    if (r == CUDA_SUCCESS) {
        struct fake_alloc *a =
            fake_registry_find(dptr, FAKE_KIND(FAKE_ALLOC_DEVICE) | FAKE_KIND(FAKE_ALLOC_MANAGED) |
                                         FAKE_KIND(FAKE_ALLOC_POOL_BLOCK));
        if (!a)
            r = CUDA_ERROR_INVALID_VALUE;
        else if (a->kind == FAKE_ALLOC_POOL_BLOCK)
            fake_pool_block_free(a);
        else
            fake_alloc_destroy(a);
    }
    fake_unlock();
    return r;
}

/* Allowed during capture, as with the real driver. */
FAKE_API CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes)
{
    FAKE_REQUIRE_INIT();
    if (!free_bytes || !total_bytes)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_ctx *c = fake_current_ctx();
    if (c) {
        *total_bytes = (size_t)fake.total_mem;
        *free_bytes = (size_t)(fake.total_mem - fake.dev[c->dev].used);
    }
    fake_unlock();
    return c ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

/* The 32-bit pre-3.2 variants, exported only so lookups of old versions find them. */
FAKE_API CUresult cuMemAlloc(unsigned int *dptr, unsigned int bytesize)
{
    FAKE_REQUIRE_INIT();
    (void)dptr;
    (void)bytesize;
    return CUDA_ERROR_NOT_SUPPORTED;
}

FAKE_API CUresult cuMemAllocPitch(unsigned int *dptr, unsigned int *pPitch, unsigned int WidthInBytes,
                                  unsigned int Height, unsigned int ElementSizeBytes)
{
    FAKE_REQUIRE_INIT();
    (void)dptr;
    (void)pPitch;
    (void)WidthInBytes;
    (void)Height;
    (void)ElementSizeBytes;
    return CUDA_ERROR_NOT_SUPPORTED;
}

FAKE_API CUresult cuMemFree(unsigned int dptr)
{
    FAKE_REQUIRE_INIT();
    (void)dptr;
    return CUDA_ERROR_NOT_SUPPORTED;
}

FAKE_API CUresult cuMemGetInfo(unsigned int *free_bytes, unsigned int *total_bytes)
{
    size_t f, t;
    if (!free_bytes || !total_bytes)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = cuMemGetInfo_v2(&f, &t);
    if (r == CUDA_SUCCESS) {
        *free_bytes = f > UINT32_MAX ? UINT32_MAX : (unsigned int)f;
        *total_bytes = t > UINT32_MAX ? UINT32_MAX : (unsigned int)t;
    }
    return r;
}

FAKE_API CUresult cuMemAlloc_v9(CUdeviceptr *dptr, size_t bytesize)
{
    return cuMemAlloc_v2(dptr, bytesize);
}

/* --- Host memory: pinned host memory is not device memory ------------------- */

static CUresult host_alloc(void **pp, size_t bytesize)
{
    FAKE_REQUIRE_INIT();
    if (!pp || bytesize == 0)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_alloc *a = NULL;
    CUresult r = fake_map_and_register(FAKE_ALLOC_HOST, -1, bytesize, 0, &a);
    if (r == CUDA_SUCCESS)
        *pp = a->map;
    fake_unlock();
    return r;
}

FAKE_API CUresult cuMemAllocHost_v2(void **pp, size_t bytesize)
{
    return host_alloc(pp, bytesize);
}

FAKE_API CUresult cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags)
{
    FAKE_REQUIRE_INIT();
    if (Flags & ~0xfu) /* CU_MEMHOSTALLOC_PORTABLE, _DEVICEMAP, _WRITECOMBINED, 0x8 */
        return CUDA_ERROR_INVALID_VALUE;
    return host_alloc(pp, bytesize);
}

FAKE_API CUresult cuMemFreeHost(void *p)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_alloc *a =
        fake_registry_find((unsigned long long)(uintptr_t)p, FAKE_KIND(FAKE_ALLOC_HOST));
    if (a)
        fake_alloc_destroy(a);
    fake_unlock();
    return a ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* --- Arrays: charged, never backed (nothing can address them) --------------- */

static unsigned format_bytes(CUarray_format f)
{
    switch (f) {
    case CU_AD_FORMAT_UNSIGNED_INT8:
    case CU_AD_FORMAT_SIGNED_INT8:
        return 1;
    case CU_AD_FORMAT_UNSIGNED_INT16:
    case CU_AD_FORMAT_SIGNED_INT16:
    case CU_AD_FORMAT_HALF:
        return 2;
    case CU_AD_FORMAT_UNSIGNED_INT32:
    case CU_AD_FORMAT_SIGNED_INT32:
    case CU_AD_FORMAT_FLOAT:
        return 4;
    default:
        return 0;
    }
}

/* Bytes of one array level: element size x channels x width x max(h,1) x
 * max(d,1). Returns CUDA_ERROR_INVALID_VALUE for a bad descriptor. */
static CUresult level_bytes(const CUDA_ARRAY3D_DESCRIPTOR *d, unsigned level,
                            unsigned long long *out)
{
    unsigned elem = format_bytes(d->Format);
    if (elem == 0 || d->Width == 0 ||
        (d->NumChannels != 1 && d->NumChannels != 2 && d->NumChannels != 4))
        return CUDA_ERROR_INVALID_VALUE;
    unsigned long long w = d->Width >> level, h = d->Height >> level, z = d->Depth >> level;
    unsigned long long n = (unsigned long long)elem * d->NumChannels;
    if (__builtin_mul_overflow(n, w ? w : 1, &n) || __builtin_mul_overflow(n, h ? h : 1, &n) ||
        __builtin_mul_overflow(n, z ? z : 1, &n))
        return CUDA_ERROR_OUT_OF_MEMORY;
    *out = n;
    return CUDA_SUCCESS;
}

/* Registers an array handle charged `bytes` on the current context's device. */
static CUresult array_register(enum fake_alloc_kind kind, unsigned long long bytes,
                               unsigned long long *handle)
{
    fake_lock();
    struct fake_ctx *c = fake_current_ctx();
    CUresult r = c ? fake_charge(c->dev, bytes) : CUDA_ERROR_INVALID_CONTEXT;
    struct fake_alloc *a = NULL;
    if (r == CUDA_SUCCESS) {
        a = fake_alloc_new(kind, c->dev);
        if (!a) {
            fake_uncharge(c->dev, bytes);
            r = CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    if (r == CUDA_SUCCESS) {
        a->key = (unsigned long long)(uintptr_t)a;
        a->size = (size_t)bytes;
        a->charged = bytes;
        a->owner = c; /* freed with its context */
        fake_registry_add(a);
        *handle = a->key;
    }
    fake_unlock();
    return r;
}

static CUresult array_create(CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *d)
{
    unsigned long long bytes, handle;
    CUresult r = level_bytes(d, 0, &bytes);
    if (r == CUDA_SUCCESS)
        r = array_register(FAKE_ALLOC_ARRAY, bytes, &handle);
    if (r == CUDA_SUCCESS)
        *pHandle = (CUarray)(uintptr_t)handle;
    return r;
}

FAKE_API CUresult cuArrayCreate_v2(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR *pAllocateArray)
{
    FAKE_REQUIRE_INIT();
    if (!pHandle || !pAllocateArray)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_ARRAY3D_DESCRIPTOR d = {
        .Width = pAllocateArray->Width,
        .Height = pAllocateArray->Height,
        .Format = pAllocateArray->Format,
        .NumChannels = pAllocateArray->NumChannels,
    };
    return array_create(pHandle, &d);
}

FAKE_API CUresult cuArrayCreate(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR_v1 *pAllocateArray)
{
    FAKE_REQUIRE_INIT();
    if (!pHandle || !pAllocateArray)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_ARRAY3D_DESCRIPTOR d = {
        .Width = pAllocateArray->Width,
        .Height = pAllocateArray->Height,
        .Format = pAllocateArray->Format,
        .NumChannels = pAllocateArray->NumChannels,
    };
    return array_create(pHandle, &d);
}

FAKE_API CUresult cuArray3DCreate(CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1 *pAllocateArray)
{
    FAKE_REQUIRE_INIT();
    if (!pHandle || !pAllocateArray)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_ARRAY3D_DESCRIPTOR d = {
        .Width = pAllocateArray->Width,
        .Height = pAllocateArray->Height,
        .Depth = pAllocateArray->Depth,
        .Format = pAllocateArray->Format,
        .NumChannels = pAllocateArray->NumChannels,
        .Flags = pAllocateArray->Flags,
    };
    return array_create(pHandle, &d);
}

FAKE_API CUresult cuArray3DCreate_v2(CUarray *pHandle,
                                     const CUDA_ARRAY3D_DESCRIPTOR *pAllocateArray)
{
    FAKE_REQUIRE_INIT();
    if (!pHandle || !pAllocateArray)
        return CUDA_ERROR_INVALID_VALUE;
    return array_create(pHandle, pAllocateArray);
}

static CUresult handle_destroy(unsigned long long handle, enum fake_alloc_kind kind)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_alloc *a = fake_registry_find(handle, FAKE_KIND(kind));
    if (a)
        fake_alloc_destroy(a);
    fake_unlock();
    return a ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

FAKE_API CUresult cuArrayDestroy(CUarray hArray)
{
    return handle_destroy((unsigned long long)(uintptr_t)hArray, FAKE_ALLOC_ARRAY);
}

/* Sum over the levels, each rounded up to 512 bytes. */
FAKE_API CUresult cuMipmappedArrayCreate(CUmipmappedArray *pHandle,
                                         const CUDA_ARRAY3D_DESCRIPTOR *pMipmappedArrayDesc,
                                         unsigned int numMipmapLevels)
{
    FAKE_REQUIRE_INIT();
    if (!pHandle || !pMipmappedArrayDesc || numMipmapLevels == 0)
        return CUDA_ERROR_INVALID_VALUE;
    const CUDA_ARRAY3D_DESCRIPTOR *d = pMipmappedArrayDesc;
    size_t largest = d->Width > d->Height ? d->Width : d->Height;
    largest = largest > d->Depth ? largest : d->Depth;
    unsigned max_levels = 0;
    while (largest >> max_levels)
        max_levels++;
    if (numMipmapLevels > max_levels)
        return CUDA_ERROR_INVALID_VALUE;
    unsigned long long total = 0;
    for (unsigned level = 0; level < numMipmapLevels; level++) {
        unsigned long long bytes;
        CUresult r = level_bytes(d, level, &bytes);
        if (r != CUDA_SUCCESS)
            return r;
        total += (bytes + FAKE_PITCH_ALIGN - 1) / FAKE_PITCH_ALIGN * FAKE_PITCH_ALIGN;
    }
    unsigned long long handle;
    CUresult r = array_register(FAKE_ALLOC_MIPMAP, total, &handle);
    if (r == CUDA_SUCCESS)
        *pHandle = (CUmipmappedArray)(uintptr_t)handle;
    return r;
}

FAKE_API CUresult cuMipmappedArrayDestroy(CUmipmappedArray hMipmappedArray)
{
    return handle_destroy((unsigned long long)(uintptr_t)hMipmappedArray, FAKE_ALLOC_MIPMAP);
}

/* --- IPC ------------------------------------------------------------------------ */

/* What a fake CUipcMemHandle carries. Opening it maps a fresh region of the
 * same size that is not charged: imported memory is the exporter's. */
struct ipc_payload {
    char magic[8];
    unsigned long long size;
    int pid;
    int dev;
};
_Static_assert(sizeof(struct ipc_payload) <= sizeof(CUipcMemHandle), "IPC payload too big");
static const char ipc_magic[8] = "fkipc01";

FAKE_API CUresult cuIpcGetMemHandle(CUipcMemHandle *pHandle, CUdeviceptr dptr)
{
    FAKE_REQUIRE_INIT();
    if (!pHandle)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_alloc *a = fake_registry_find(dptr, FAKE_KIND(FAKE_ALLOC_DEVICE));
    if (a) {
        struct ipc_payload p = {.size = a->size, .pid = (int)getpid(), .dev = a->dev};
        memcpy(p.magic, ipc_magic, sizeof p.magic);
        memset(pHandle, 0, sizeof *pHandle);
        memcpy(pHandle->reserved, &p, sizeof p);
    }
    fake_unlock();
    return a ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

FAKE_API CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *pdptr, CUipcMemHandle handle,
                                        unsigned int Flags)
{
    FAKE_REQUIRE_INIT();
    struct ipc_payload p;
    memcpy(&p, handle.reserved, sizeof p);
    if (!pdptr || (Flags & ~FAKE_IPC_LAZY_PEER) || memcmp(p.magic, ipc_magic, sizeof p.magic) ||
        p.size == 0)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_ctx *c = fake_current_ctx();
    struct fake_alloc *a = NULL;
    CUresult r = c ? fake_map_and_register(FAKE_ALLOC_IPC, c->dev, (size_t)p.size, 0, &a)
                   : CUDA_ERROR_INVALID_CONTEXT;
    if (r == CUDA_SUCCESS)
        *pdptr = a->key;
    fake_unlock();
    return r;
}

FAKE_API CUresult cuIpcOpenMemHandle(CUdeviceptr *pdptr, CUipcMemHandle handle, unsigned int Flags)
{
    return cuIpcOpenMemHandle_v2(pdptr, handle, Flags);
}

FAKE_API CUresult cuIpcCloseMemHandle(CUdeviceptr dptr)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_alloc *a = fake_registry_find(dptr, FAKE_KIND(FAKE_ALLOC_IPC));
    if (a)
        fake_alloc_destroy(a);
    fake_unlock();
    return a ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
