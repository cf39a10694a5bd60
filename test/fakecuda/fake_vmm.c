/* SPDX-License-Identifier: Apache-2.0 */
/* Virtual memory management: physical handles (cuMemCreate) hold device
 * memory, address reservations and mappings do not. A handle stays charged
 * until it is released and no longer mapped, as with the real driver.
 * Reservations are real MAP_NORESERVE mappings so the addresses are usable;
 * cuMemMap only records which handle backs which range (two mappings of one
 * handle do not share bytes in the fake). */
#include <sys/mman.h>
#include <unistd.h>

#include "fake_exports.h"

/* Lock held. */
static struct fake_alloc *handle_find(CUmemGenericAllocationHandle h)
{
    struct fake_alloc *a = fake_registry_find(h, FAKE_KIND(FAKE_ALLOC_VMM_HANDLE));
    return a && !a->released ? a : NULL;
}

/* Lock held. Drops the handle once released and unmapped everywhere. */
static void handle_maybe_free(struct fake_alloc *a)
{
    if (a->released && a->map_refs == 0)
        fake_alloc_destroy(a);
}

/* Lock held. */
static void mapping_destroy(struct fake_alloc *m)
{
    struct fake_alloc *target = m->target;
    fake_alloc_destroy(m);
    target->map_refs--;
    handle_maybe_free(target);
}

FAKE_API CUresult cuMemGetAllocationGranularity(size_t *granularity,
                                                const CUmemAllocationProp *prop,
                                                CUmemAllocationGranularity_flags option)
{
    FAKE_REQUIRE_INIT();
    if (!granularity || !prop ||
        (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM &&
         option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED))
        return CUDA_ERROR_INVALID_VALUE;
    *granularity = (size_t)FAKE_GRANULE;
    return CUDA_SUCCESS;
}

/* Lock held. Registers a handle of `size` bytes; `charge` is 0 or size. */
static CUresult handle_register(int dev, size_t size, unsigned long long charge,
                                CUmemGenericAllocationHandle *out)
{
    CUresult r = charge ? fake_charge(dev, charge) : CUDA_SUCCESS;
    if (r != CUDA_SUCCESS)
        return r;
    struct fake_alloc *a = fake_alloc_new(FAKE_ALLOC_VMM_HANDLE, dev);
    if (!a) {
        if (charge)
            fake_uncharge(dev, charge);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    a->key = (unsigned long long)(uintptr_t)a;
    a->size = size;
    a->charged = charge;
    fake_registry_add(a);
    *out = a->key;
    return CUDA_SUCCESS;
}

/* Only a device location is device memory; host (NUMA) locations are not charged. */
FAKE_API CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
                              const CUmemAllocationProp *prop, unsigned long long flags)
{
    FAKE_REQUIRE_INIT();
    if (!handle || !prop || flags != 0 || size == 0 || size % FAKE_GRANULE != 0 ||
        prop->type != CU_MEM_ALLOCATION_TYPE_PINNED)
        return CUDA_ERROR_INVALID_VALUE;
    int on_device = prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE;
    if (on_device && !fake_valid_dev(prop->location.id))
        return CUDA_ERROR_INVALID_DEVICE;
    if (!on_device && (prop->location.type < CU_MEM_LOCATION_TYPE_HOST ||
                       prop->location.type > CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT))
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    CUresult r =
        handle_register(on_device ? prop->location.id : -1, size, on_device ? size : 0, handle);
    fake_unlock();
    return r;
}

FAKE_API CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_alloc *a = handle_find(handle);
    if (a && a->retains > 0) {
        a->retains--;
    } else if (a) {
        a->released = 1;
        handle_maybe_free(a);
    }
    fake_unlock();
    return a ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* The handle mapped at `addr`, one more reference to it: each needs its own
 * cuMemRelease, as with the real driver (NCCL asks for it at 11000). */
FAKE_API CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
    FAKE_REQUIRE_INIT();
    if (!handle)
        return CUDA_ERROR_INVALID_VALUE;
    CUdeviceptr p = (CUdeviceptr)(uintptr_t)addr;
    fake_lock();
    struct fake_alloc *m = fake_registry_find_overlap(p, p + 1, FAKE_KIND(FAKE_ALLOC_VMM_MAPPING));
    if (m) {
        m->target->retains++;
        *handle = m->target->key;
    }
    fake_unlock();
    return m ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

FAKE_API CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment,
                                      CUdeviceptr addr, unsigned long long flags)
{
    FAKE_REQUIRE_INIT();
    (void)addr; /* only a hint */
    if (!ptr || flags != 0 || size == 0 || size % FAKE_GRANULE != 0 ||
        (alignment & (alignment - 1)) != 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (alignment < FAKE_GRANULE)
        alignment = (size_t)FAKE_GRANULE;
    size_t len = size + alignment;
    if (len < size)
        return CUDA_ERROR_OUT_OF_MEMORY;
    char *raw = fake_map(len);
    if (!raw)
        return CUDA_ERROR_OUT_OF_MEMORY;
    /* Keep only the aligned part of the over-sized mapping. */
    uintptr_t base = ((uintptr_t)raw + alignment - 1) & ~(uintptr_t)(alignment - 1);
    size_t head = base - (uintptr_t)raw;
    if (head)
        munmap(raw, head);
    if (len - head - size)
        munmap((char *)base + size, len - head - size);

    fake_lock();
    struct fake_alloc *a = fake_alloc_new(FAKE_ALLOC_VA_RANGE, -1);
    if (a) {
        a->key = base;
        a->map = (void *)base;
        a->map_len = size;
        a->size = size;
        fake_registry_add(a);
        *ptr = base;
    }
    fake_unlock();
    if (!a)
        munmap((void *)base, size);
    return a ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

/* Mappings still inside the range are unmapped first. */
FAKE_API CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_alloc *a = fake_registry_find(ptr, FAKE_KIND(FAKE_ALLOC_VA_RANGE));
    CUresult r = a && a->size == size ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        struct fake_alloc *m;
        while ((m = fake_registry_find_overlap(ptr, ptr + size, FAKE_KIND(FAKE_ALLOC_VMM_MAPPING))))
            mapping_destroy(m);
        fake_alloc_destroy(a);
    }
    fake_unlock();
    return r;
}

/* Lock held. Whether [ptr, ptr + size) lies inside one reservation. */
static int reserved_range(CUdeviceptr ptr, size_t size)
{
    struct fake_alloc *r = fake_registry_find_overlap(ptr, ptr + 1, FAKE_KIND(FAKE_ALLOC_VA_RANGE));
    return r && ptr + size <= r->key + r->size;
}

FAKE_API CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                           CUmemGenericAllocationHandle handle, unsigned long long flags)
{
    FAKE_REQUIRE_INIT();
    if (flags != 0 || size == 0 || size % FAKE_GRANULE || ptr % FAKE_GRANULE ||
        offset % FAKE_GRANULE)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_alloc *h = handle_find(handle);
    CUresult r = CUDA_ERROR_INVALID_VALUE;
    if (h && offset <= h->size && size <= h->size - offset && reserved_range(ptr, size) &&
        !fake_registry_find_overlap(ptr, ptr + size, FAKE_KIND(FAKE_ALLOC_VMM_MAPPING))) {
        struct fake_alloc *m = fake_alloc_new(FAKE_ALLOC_VMM_MAPPING, -1);
        r = CUDA_ERROR_OUT_OF_MEMORY;
        if (m) {
            m->key = ptr;
            m->size = size;
            m->target = h;
            h->map_refs++;
            fake_registry_add(m);
            r = CUDA_SUCCESS;
        }
    }
    fake_unlock();
    return r;
}

/* Unmaps every mapping inside [ptr, ptr + size); at least one must be there. */
FAKE_API CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    int found = 0;
    struct fake_alloc *m;
    while ((m = fake_registry_find_overlap(ptr, ptr + size, FAKE_KIND(FAKE_ALLOC_VMM_MAPPING))) &&
           m->key >= ptr && m->key + m->size <= ptr + size) {
        mapping_destroy(m);
        found = 1;
    }
    fake_unlock();
    return found ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

FAKE_API CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc,
                                 size_t count)
{
    FAKE_REQUIRE_INIT();
    (void)ptr;
    (void)size;
    return desc && count > 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* --- Sharing a handle between processes (POSIX file descriptors) ----------- */

/* The exported descriptor is a memfd as large as the handle, starting with
 * this header; importing it makes an uncharged handle of that size. */
struct share_header {
    char magic[8];
    int dev;
};
static const char share_magic[8] = "fkvmm01";

FAKE_API CUresult cuMemExportToShareableHandle(void *shareableHandle,
                                               CUmemGenericAllocationHandle handle,
                                               CUmemAllocationHandleType handleType,
                                               unsigned long long flags)
{
    FAKE_REQUIRE_INIT();
    if (!shareableHandle || flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return CUDA_ERROR_NOT_SUPPORTED;
    fake_lock();
    struct fake_alloc *a = handle_find(handle);
    size_t size = a ? a->size : 0;
    struct share_header hdr = {.dev = a ? a->dev : -1};
    fake_unlock();
    if (!a)
        return CUDA_ERROR_INVALID_VALUE;
    memcpy(hdr.magic, share_magic, sizeof hdr.magic);
    int fd = memfd_create("fakecuda-vmm", MFD_CLOEXEC);
    if (fd < 0)
        return CUDA_ERROR_OPERATING_SYSTEM;
    if (ftruncate(fd, (off_t)size) != 0 || pwrite(fd, &hdr, sizeof hdr, 0) != sizeof hdr) {
        close(fd);
        return CUDA_ERROR_OPERATING_SYSTEM;
    }
    *(int *)shareableHandle = fd;
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle,
                                                 void *osHandle,
                                                 CUmemAllocationHandleType shHandleType)
{
    FAKE_REQUIRE_INIT();
    if (!handle)
        return CUDA_ERROR_INVALID_VALUE;
    if (shHandleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return CUDA_ERROR_NOT_SUPPORTED;
    int fd = (int)(intptr_t)osHandle;
    struct share_header hdr;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || pread(fd, &hdr, sizeof hdr, 0) != sizeof hdr ||
        memcmp(hdr.magic, share_magic, sizeof hdr.magic) != 0)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    CUresult r = handle_register(fake_valid_dev(hdr.dev) ? hdr.dev : -1, (size_t)size, 0, handle);
    fake_unlock();
    return r;
}
