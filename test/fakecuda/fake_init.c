/* SPDX-License-Identifier: Apache-2.0 */
/* The fake driver's process state, cuInit (which reads the FAKECUDA_*
 * environment), error strings and device queries. */
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fake_exports.h"

struct fake_state fake = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
};

void fake_lock(void)
{
    pthread_mutex_lock(&fake.lock);
}

void fake_unlock(void)
{
    pthread_mutex_unlock(&fake.lock);
}

unsigned long long fake_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* fake.ndevices is written once, before `initialized` is set. */
int fake_valid_dev(CUdevice dev)
{
    return dev >= 0 && dev < fake.ndevices;
}

/* A bad FAKECUDA_* value is a mistake in the test, so say which one. */
static CUresult env_error(const char *name, const char *want)
{
    fprintf(stderr, "fakecuda: %s=\"%s\": want %s\n", name, getenv(name), want);
    return CUDA_ERROR_INVALID_VALUE;
}

static CUresult read_environment(void)
{
    unsigned long long devices, total, overhead;
    if (fake_env_u64("FAKECUDA_DEVICES", FAKE_DEFAULT_DEVICES, &devices) != 0 ||
        devices > FAKE_MAX_DEVICES)
        return env_error("FAKECUDA_DEVICES", "an integer 0-8");
    if (fake_env_u64("FAKECUDA_TOTAL_MEM", FAKE_DEFAULT_TOTAL_MEM, &total) != 0 || total == 0)
        return env_error("FAKECUDA_TOTAL_MEM", "a positive number of bytes");
    if (fake_env_u64("FAKECUDA_CTX_OVERHEAD", FAKE_DEFAULT_CTX_OVERHEAD, &overhead) != 0)
        return env_error("FAKECUDA_CTX_OVERHEAD", "a number of bytes");
    if (fake_clock_settings("fakecuda", &fake.clock_max_mhz, &fake.clock_loaded_mhz) != 0)
        return CUDA_ERROR_INVALID_VALUE;

    int n = fake_dir_path(fake.dir, sizeof fake.dir);
    if (n < 0 || (size_t)n >= sizeof fake.dir)
        return env_error("FAKECUDA_DIR", "a shorter path");
    /* Per-user default directory; a directory named by the test may exist. */
    if (mkdir(fake.dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "fakecuda: cannot create %s: %s\n", fake.dir, strerror(errno));
        return CUDA_ERROR_OPERATING_SYSTEM;
    }
    if (devices == 0)
        return CUDA_ERROR_NO_DEVICE;

    fake.ndevices = (int)devices;
    fake.total_mem = total;
    fake.ctx_overhead = overhead;
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuInit(unsigned int Flags)
{
    if (Flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    CUresult r = CUDA_SUCCESS;
    if (!atomic_load(&fake.initialized)) {
        r = read_environment();
        if (r == CUDA_SUCCESS) {
            for (int i = 0; i < fake.ndevices; i++) {
                fake.dev[i].default_pool.dev = i;
                fake.dev[i].current_pool = &fake.dev[i].default_pool;
            }
            atomic_store(&fake.initialized, 1);
        }
    }
    fake_unlock();
    return r;
}

/* Like the real driver, works before cuInit. */
FAKE_API CUresult cuDriverGetVersion(int *driverVersion)
{
    if (!driverVersion)
        return CUDA_ERROR_INVALID_VALUE;
    *driverVersion = FAKE_DRIVER_VERSION;
    return CUDA_SUCCESS;
}

/* --- Errors (work before cuInit, like the real driver) -------------------- */

#define FAKE_ERRORS(X)                                                                             \
    X(CUDA_SUCCESS, "no error")                                                                    \
    X(CUDA_ERROR_INVALID_VALUE, "invalid argument")                                                \
    X(CUDA_ERROR_OUT_OF_MEMORY, "out of memory")                                                   \
    X(CUDA_ERROR_NOT_INITIALIZED, "initialization error")                                          \
    X(CUDA_ERROR_DEINITIALIZED, "driver shutting down")                                            \
    X(CUDA_ERROR_NO_DEVICE, "no CUDA-capable device is detected")                                  \
    X(CUDA_ERROR_INVALID_DEVICE, "invalid device ordinal")                                         \
    X(CUDA_ERROR_INVALID_CONTEXT, "invalid device context")                                        \
    X(CUDA_ERROR_OPERATING_SYSTEM, "OS call failed or operation not supported on this OS")         \
    X(CUDA_ERROR_INVALID_HANDLE, "invalid resource handle")                                        \
    X(CUDA_ERROR_ILLEGAL_STATE, "the operation cannot be performed in the present state")          \
    X(CUDA_ERROR_NOT_FOUND, "named symbol not found")                                              \
    X(CUDA_ERROR_NOT_READY, "device not ready")                                                    \
    X(CUDA_ERROR_NOT_PERMITTED, "operation not permitted")                                         \
    X(CUDA_ERROR_NOT_SUPPORTED, "operation not supported")                                         \
    X(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "operation not permitted when stream is capturing")   \
    X(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,                                                       \
      "operation failed due to a previous error during capture")                                   \
    X(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD,                                                      \
      "attempt to terminate a thread-local capture sequence from another thread")                  \
    X(CUDA_ERROR_UNKNOWN, "unknown error")

struct error_entry {
    CUresult code;
    const char *name;
    const char *text;
};

static const struct error_entry error_table[] = {
#define FAKE_ERROR_ROW(code, text) {code, #code, text},
    FAKE_ERRORS(FAKE_ERROR_ROW)
#undef FAKE_ERROR_ROW
};

static const struct error_entry *error_find(CUresult code)
{
    for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
        if (error_table[i].code == code)
            return &error_table[i];
    return NULL;
}

FAKE_API CUresult cuGetErrorString(CUresult error, const char **pStr)
{
    if (!pStr)
        return CUDA_ERROR_INVALID_VALUE;
    const struct error_entry *e = error_find(error);
    *pStr = e ? e->text : NULL;
    return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

FAKE_API CUresult cuGetErrorName(CUresult error, const char **pStr)
{
    if (!pStr)
        return CUDA_ERROR_INVALID_VALUE;
    const struct error_entry *e = error_find(error);
    *pStr = e ? e->name : NULL;
    return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* --- Devices ---------------------------------------------------------------- */

FAKE_API CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
    FAKE_REQUIRE_INIT();
    if (!device)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(ordinal))
        return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuDeviceGetCount(int *count)
{
    FAKE_REQUIRE_INIT();
    if (!count)
        return CUDA_ERROR_INVALID_VALUE;
    *count = fake.ndevices;
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
    FAKE_REQUIRE_INIT();
    if (!name || len <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    snprintf(name, (size_t)len, "%s", "Fake GPU");
    return CUDA_SUCCESS;
}

/* The 32-bit pre-3.2 variant: clamped to what 32 bits hold. */
FAKE_API CUresult cuDeviceTotalMem(unsigned int *bytes, CUdevice dev)
{
    size_t b;
    if (!bytes)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = cuDeviceTotalMem_v2(&b, dev);
    if (r == CUDA_SUCCESS)
        *bytes = b > UINT32_MAX ? UINT32_MAX : (unsigned int)b;
    return r;
}

FAKE_API CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    FAKE_REQUIRE_INIT();
    if (!bytes)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    *bytes = (size_t)fake.total_mem;
    return CUDA_SUCCESS;
}

/* An H100-like device for the attributes a runtime is likely to ask about;
 * 0 for the rest. */
static const struct {
    CUdevice_attribute attrib;
    int value;
} device_attributes[] = {
    {CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, 1024},
    {CU_DEVICE_ATTRIBUTE_WARP_SIZE, 32},
    {CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 132},
    {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 9},
    {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0},
    {CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, 1},
    {CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, 1},
};

/* Bus 0x10 + ordinal, as cuDeviceGetPCIBusId reports. */
#define FAKE_PCI_BUS(dev) (0x10 + (dev))

FAKE_API CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
    FAKE_REQUIRE_INIT();
    if (!pi || attrib <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    *pi = attrib == CU_DEVICE_ATTRIBUTE_PCI_BUS_ID ? FAKE_PCI_BUS(dev) : 0;
    for (size_t i = 0; i < sizeof device_attributes / sizeof device_attributes[0]; i++)
        if (device_attributes[i].attrib == attrib)
            *pi = device_attributes[i].value;
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev)
{
    FAKE_REQUIRE_INIT();
    if (!pciBusId || len <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    snprintf(pciBusId, (size_t)len, "0000:%02x:00.0", FAKE_PCI_BUS(dev));
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)
{
    FAKE_REQUIRE_INIT();
    if (!uuid)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    unsigned char bytes[16];
    fake_uuid(dev, bytes);
    memcpy(uuid->bytes, bytes, sizeof bytes);
    return CUDA_SUCCESS;
}

/* The pre-11.4 variant differs only for MIG instances, which the fake has none of. */
FAKE_API CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
    return cuDeviceGetUuid_v2(uuid, dev);
}
