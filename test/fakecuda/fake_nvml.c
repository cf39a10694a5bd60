/* SPDX-License-Identifier: Apache-2.0 */
/* The fake libnvidia-ml.so.1: the devices the fake libcuda.so.1 has (same
 * FAKECUDA_DEVICES, FAKECUDA_TOTAL_MEM and UUIDs), with no memory used.
 * For the node agent's discovery, optional variables describe the machine:
 *   FAKENVML_NAME        the product name (default "NVIDIA Fake GPU")
 *   FAKENVML_NUMA        NUMA node of each GPU, comma-separated ("0,0,1,1")
 *   FAKENVML_NVLINK      NVLink groups, "0-3,4-7": each GPU is linked to
 *                        every other GPU of its range
 *   FAKENVML_LOST_FILE   a file listing lost GPU indices, one per line, read
 *                        at every memory query (so tests flip health live)
 * The GPU's utilization (nvmlDeviceGetUtilizationRates) is what the file
 * FAKECUDA_DIR/gpu<N>.util says, read at every call so tests change it live:
 * a percent 0-100 for `gpu` ("memory" is 0), or "unsupported" for
 * NVML_ERROR_NOT_SUPPORTED; anything else is NVML_ERROR_UNKNOWN. Without
 * the file it is 0: the fake driver records how busy a device is only with
 * its clock model (fake_clock.h), which is opt-in. MIG devices: not
 * supported, as on a real GPU.
 * The SM clock (nvmlDeviceGetClockInfo) follows the fake driver's clock
 * model (fake_clock.h, FAKECUDA_CLOCK_*): the clock the device runs at now,
 * whichever process keeps it busy.
 * The minor number of a GPU is its index; its PCI bus is 0x10 + index.
 * MIG (FAKENVML_MIG and the rest) is in fake_nvml_mig.c. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "runtime/nvml_abi.h"
#include "fake_clock.h"
#include "fake_common.h"
#include "fake_nvml.h"

#define NVML_API __attribute__((visibility("default")))

/* "GPU-" + 36 characters of UUID + NUL. */
#define UUID_STRING_LEN 41

struct nvml_device {
    unsigned int index;
};

static pthread_mutex_t nvml_lock = PTHREAD_MUTEX_INITIALIZER;
static int init_count; /* nvmlInit calls not yet matched by nvmlShutdown */
static unsigned int device_count;
static unsigned long long total_mem;
static struct nvml_device devices[FAKE_MAX_DEVICES];
static unsigned clock_max, clock_loaded; /* fake_clock.h */
static char fake_dir[PATH_MAX - 32];
static struct fake_clock_page *clocks[FAKE_MAX_DEVICES]; /* mapped at the first query */

NVML_API nvmlReturn_t nvmlInit_v2(void);
NVML_API nvmlReturn_t nvmlInit(void);
NVML_API nvmlReturn_t nvmlShutdown(void);
NVML_API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount);
NVML_API nvmlReturn_t nvmlDeviceGetCount(unsigned int *deviceCount);
NVML_API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device);
NVML_API nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device);
NVML_API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length);
NVML_API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device);
NVML_API nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type,
                                             unsigned int *clock);
NVML_API nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory);
NVML_API nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                                                    nvmlUtilization_t *utilization);
NVML_API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory);
NVML_API const char *nvmlErrorString(nvmlReturn_t result);
NVML_API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length);
NVML_API nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minor);
NVML_API nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci);
NVML_API nvmlReturn_t nvmlDeviceGetNumaNodeId(nvmlDevice_t device, unsigned int *node);
NVML_API nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link,
                                               nvmlEnableState_t *isActive);
NVML_API nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t device, unsigned int link,
                                                          nvmlPciInfo_t *pci);

/* Reads the environment at the first nvmlInit; later ones only count. */
NVML_API nvmlReturn_t nvmlInit_v2(void)
{
    nvmlReturn_t r = NVML_SUCCESS;
    pthread_mutex_lock(&nvml_lock);
    if (init_count == 0) {
        unsigned long long n, total;
        if (fake_env_u64("FAKECUDA_DEVICES", FAKE_DEFAULT_DEVICES, &n) != 0 ||
            n > FAKE_MAX_DEVICES ||
            fake_env_u64("FAKECUDA_TOTAL_MEM", FAKE_DEFAULT_TOTAL_MEM, &total) != 0 || total == 0) {
            fprintf(stderr, "fakenvml: bad FAKECUDA_DEVICES or FAKECUDA_TOTAL_MEM\n");
            r = NVML_ERROR_UNKNOWN;
        } else if (fake_clock_settings("fakenvml", &clock_max, &clock_loaded) != 0) {
            r = NVML_ERROR_UNKNOWN;
        } else if (fake_dir_path(fake_dir, sizeof fake_dir) >= (int)sizeof fake_dir) {
            fprintf(stderr, "fakenvml: FAKECUDA_DIR is too long\n");
            r = NVML_ERROR_UNKNOWN;
        } else {
            device_count = (unsigned int)n;
            total_mem = total;
            for (unsigned int i = 0; i < device_count; i++)
                devices[i].index = i;
            fake_mig_init(device_count, fake_dir);
        }
    }
    if (r == NVML_SUCCESS)
        init_count++;
    pthread_mutex_unlock(&nvml_lock);
    return r;
}

NVML_API nvmlReturn_t nvmlInit(void)
{
    return nvmlInit_v2();
}

NVML_API nvmlReturn_t nvmlShutdown(void)
{
    pthread_mutex_lock(&nvml_lock);
    nvmlReturn_t r = init_count > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
    if (init_count > 0)
        init_count--;
    pthread_mutex_unlock(&nvml_lock);
    return r;
}

/* The device behind a handle, or NULL; sets *r to the error to return. */
static const struct nvml_device *device_get(nvmlDevice_t handle, nvmlReturn_t *r)
{
    uintptr_t offset = (uintptr_t)handle - (uintptr_t)devices;
    pthread_mutex_lock(&nvml_lock);
    *r = NVML_SUCCESS;
    if (init_count == 0)
        *r = NVML_ERROR_UNINITIALIZED;
    else if (offset % sizeof devices[0] != 0 || offset / sizeof devices[0] >= device_count)
        *r = NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_unlock(&nvml_lock);
    return *r == NVML_SUCCESS ? &devices[offset / sizeof devices[0]] : NULL;
}

int fake_nvml_index(nvmlDevice_t h, nvmlReturn_t *r)
{
    const struct nvml_device *d = device_get(h, r);
    return d ? (int)d->index : -1;
}

unsigned long long fake_nvml_total_mem(void)
{
    return total_mem;
}


NVML_API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount)
{
    pthread_mutex_lock(&nvml_lock);
    nvmlReturn_t r = init_count == 0 ? NVML_ERROR_UNINITIALIZED
                     : !deviceCount  ? NVML_ERROR_INVALID_ARGUMENT
                                     : NVML_SUCCESS;
    if (r == NVML_SUCCESS)
        *deviceCount = device_count;
    pthread_mutex_unlock(&nvml_lock);
    return r;
}

NVML_API nvmlReturn_t nvmlDeviceGetCount(unsigned int *deviceCount)
{
    return nvmlDeviceGetCount_v2(deviceCount);
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    pthread_mutex_lock(&nvml_lock);
    nvmlReturn_t r = init_count == 0                    ? NVML_ERROR_UNINITIALIZED
                     : !device || index >= device_count ? NVML_ERROR_INVALID_ARGUMENT
                                                        : NVML_SUCCESS;
    if (r == NVML_SUCCESS)
        *device = (nvmlDevice_t)&devices[index];
    pthread_mutex_unlock(&nvml_lock);
    return r;
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

NVML_API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    if (fake_mig_is_handle(device))
        return fake_mig_uuid(device, uuid, length);
    nvmlReturn_t r;
    const struct nvml_device *d = device_get(device, &r);
    if (!d)
        return r;
    if (!uuid)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (length < UUID_STRING_LEN)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    unsigned char b[16];
    fake_uuid((int)d->index, b);
    snprintf(uuid, length,
             "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    if (!uuid || !device)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int n;
    nvmlReturn_t r = nvmlDeviceGetCount_v2(&n);
    for (unsigned int i = 0; r == NVML_SUCCESS && i < n; i++) {
        char text[UUID_STRING_LEN];
        nvmlDevice_t d = (nvmlDevice_t)&devices[i];
        if (nvmlDeviceGetUUID(d, text, sizeof text) == NVML_SUCCESS && !strcmp(text, uuid)) {
            *device = d;
            return NVML_SUCCESS;
        }
    }
    return r == NVML_SUCCESS ? NVML_ERROR_NOT_FOUND : r;
}

/* The SM (and graphics) clock: the fake driver's model when it models
 * clocks, else the fixed max clock. Memory and video clocks are not
 * simulated. */
NVML_API nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type,
                                             unsigned int *clock)
{
    nvmlReturn_t r;
    const struct nvml_device *d = device_get(device, &r);
    if (!d)
        return r;
    if (!clock || type < NVML_CLOCK_GRAPHICS || type > NVML_CLOCK_VIDEO)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (type != NVML_CLOCK_SM && type != NVML_CLOCK_GRAPHICS)
        return NVML_ERROR_NOT_SUPPORTED;
    const struct fake_clock_page *page = NULL;
    if (clock_loaded) {
        pthread_mutex_lock(&nvml_lock);
        if (!clocks[d->index])
            clocks[d->index] = fake_clock_map(fake_dir, (int)d->index);
        page = clocks[d->index];
        pthread_mutex_unlock(&nvml_lock);
        if (!page)
            return NVML_ERROR_UNKNOWN;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    *clock = fake_clock_now(page, clock_max, clock_loaded,
                            (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
    return NVML_SUCCESS;
}

/* True when FAKENVML_LOST_FILE lists the GPU. */
static int lost(unsigned int index)
{
    const char *path = getenv("FAKENVML_LOST_FILE");
    FILE *f = path && *path ? fopen(path, "r") : NULL;
    if (!f)
        return 0;
    unsigned int i;
    int found = 0;
    while (!found && fscanf(f, "%u", &i) == 1)
        found = i == index;
    fclose(f);
    return found;
}

NVML_API nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    if (fake_mig_is_handle(device))
        return fake_mig_memory(device, memory);
    nvmlReturn_t r;
    const struct nvml_device *d = device_get(device, &r);
    if (!d)
        return r;
    if (lost(d->index))
        return NVML_ERROR_GPU_IS_LOST;
    if (!memory)
        return NVML_ERROR_INVALID_ARGUMENT;
    memory->total = total_mem;
    memory->free = total_mem;
    memory->used = 0;
    return NVML_SUCCESS;
}

/* FAKECUDA_DIR/gpu<N>.util (see the top of this file). */
NVML_API nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                                                    nvmlUtilization_t *utilization)
{
    if (fake_mig_is_handle(device))
        return NVML_ERROR_NOT_SUPPORTED;
    nvmlReturn_t r;
    const struct nvml_device *d = device_get(device, &r);
    if (!d)
        return r;
    if (!utilization)
        return NVML_ERROR_INVALID_ARGUMENT;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/gpu%u.util", fake_dir, d->index);
    memset(utilization, 0, sizeof(*utilization));
    FILE *f = fopen(path, "r");
    if (!f)
        return NVML_SUCCESS;
    char text[32] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    text[strcspn(text, "\n")] = '\0';
    if (strcmp(text, "unsupported") == 0)
        return NVML_ERROR_NOT_SUPPORTED;
    char *end;
    unsigned long v = strtoul(text, &end, 10);
    if (end == text || *end || v > 100)
        return NVML_ERROR_UNKNOWN;
    utilization->gpu = (unsigned int)v;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    nvmlReturn_t r;
    const struct nvml_device *d = device_get(device, &r);
    if (!d)
        return r;
    if (lost(d->index))
        return NVML_ERROR_GPU_IS_LOST;
    if (!memory)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (memory->version != FX_NVML_MEMORY_V2)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    memory->total = total_mem;
    memory->reserved = 0;
    memory->free = total_mem;
    memory->used = 0;
    return NVML_SUCCESS;
}

NVML_API const char *nvmlErrorString(nvmlReturn_t result)
{
    switch (result) {
    case NVML_SUCCESS:
        return "Success";
    case NVML_ERROR_UNINITIALIZED:
        return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT:
        return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED:
        return "Not Supported";
    case NVML_ERROR_NO_PERMISSION:
        return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND:
        return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE:
        return "Insufficient Size";
    case NVML_ERROR_GPU_IS_LOST:
        return "GPU is lost";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
        return "Argument version mismatch";
    case NVML_ERROR_IN_USE:
        return "In use by another client";
    case NVML_ERROR_INSUFFICIENT_RESOURCES:
        return "Insufficient resources";
    case NVML_ERROR_UNKNOWN:
        return "Unknown Error";
    default:
        return "Unknown Error";
    }
}

NVML_API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    nvmlReturn_t r;
    if (!device_get(device, &r))
        return r;
    const char *n = getenv("FAKENVML_NAME");
    if (!n || !*n)
        n = "NVIDIA Fake GPU";
    if (!name || length == 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(n) >= length)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    snprintf(name, length, "%s", n);
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minor)
{
    nvmlReturn_t r;
    const struct nvml_device *d = device_get(device, &r);
    if (!d)
        return r;
    if (!minor)
        return NVML_ERROR_INVALID_ARGUMENT;
    *minor = d->index;
    return NVML_SUCCESS;
}

static void fill_pci(unsigned int index, nvmlPciInfo_t *pci)
{
    memset(pci, 0, sizeof(*pci));
    pci->bus = 0x10 + index;
    snprintf(pci->busId, sizeof(pci->busId), "00000000:%02X:00.0", pci->bus);
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "0000:%02X:00.0", pci->bus);
}

NVML_API nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    nvmlReturn_t r;
    const struct nvml_device *d = device_get(device, &r);
    if (!d)
        return r;
    if (!pci)
        return NVML_ERROR_INVALID_ARGUMENT;
    fill_pci(d->index, pci);
    return NVML_SUCCESS;
}

/* The index-th comma-separated number of variable `name`, or -1. */
static long env_list_at(const char *name, unsigned int index)
{
    const char *s = getenv(name);
    for (unsigned int i = 0; s && *s; i++) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s)
            return -1;
        if (i == index)
            return v;
        s = *end == ',' ? end + 1 : NULL;
    }
    return -1;
}

NVML_API nvmlReturn_t nvmlDeviceGetNumaNodeId(nvmlDevice_t device, unsigned int *node)
{
    nvmlReturn_t r;
    const struct nvml_device *d = device_get(device, &r);
    if (!d)
        return r;
    if (!node)
        return NVML_ERROR_INVALID_ARGUMENT;
    long v = env_list_at("FAKENVML_NUMA", d->index);
    *node = v < 0 ? 0 : (unsigned int)v;
    return NVML_SUCCESS;
}

/* The GPUs linked to `index` (its FAKENVML_NVLINK range, itself excluded),
 * in order; returns how many. */
static int nvlink_peers(unsigned int index, unsigned int *peers)
{
    const char *s = getenv("FAKENVML_NVLINK");
    while (s && *s) {
        unsigned int lo, hi;
        int used;
        if (sscanf(s, "%u-%u%n", &lo, &hi, &used) != 2)
            return 0;
        if (index >= lo && index <= hi) {
            int n = 0;
            for (unsigned int g = lo; g <= hi && g < device_count; g++)
                if (g != index)
                    peers[n++] = g;
            return n;
        }
        s += used;
        s = *s == ',' ? s + 1 : NULL;
    }
    return 0;
}

NVML_API nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link,
                                               nvmlEnableState_t *isActive)
{
    nvmlReturn_t r;
    const struct nvml_device *d = device_get(device, &r);
    if (!d)
        return r;
    if (!isActive || link >= FX_NVML_NVLINK_MAX_LINKS)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int peers[FAKE_MAX_DEVICES];
    *isActive = (int)link < nvlink_peers(d->index, peers);
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t device, unsigned int link,
                                                          nvmlPciInfo_t *pci)
{
    nvmlReturn_t r;
    const struct nvml_device *d = device_get(device, &r);
    if (!d)
        return r;
    unsigned int peers[FAKE_MAX_DEVICES];
    if (!pci || (int)link >= nvlink_peers(d->index, peers))
        return NVML_ERROR_INVALID_ARGUMENT;
    fill_pci(peers[link], pci);
    return NVML_SUCCESS;
}
