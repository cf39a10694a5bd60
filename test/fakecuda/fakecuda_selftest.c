/* SPDX-License-Identifier: Apache-2.0 */
/* Self-test of the fake libcuda.so.1 and libnvidia-ml.so.1. Loads them with
 * dlopen() by absolute path, as the library under test finds the driver, and
 * checks the behaviour other tests rely on: entry-point lookup, memory
 * accounting of every allocation path, pools, stream capture and its
 * invalidation, simulated kernel time, graphs, IPC, that kernels of two
 * processes never overlap on one device, and the clock model.
 *
 * The binary doubles as the child process of the cross-process tests: with
 * --kernels, --ipc-open or --clock as first argument it runs that part and
 * exits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fake_exports.h" /* prototypes, for the types of the pointers below */
#include "fakecuda.h"
#include "runtime/nvml_abi.h"

#define MIB          (1ull << 20)
#define GIB          (1ull << 30)
#define TOTAL_MEM    (8 * GIB)
#define CTX_OVERHEAD (300 * MIB)
#define FUNC         ((CUfunction)(uintptr_t)0x1234) /* any non-NULL function will do */

/* Every entry point the test calls, loaded by name with dlsym. */
#define CUDA_FUNCS(X)                                                                              \
    X(cuInit)                                                                                      \
    X(cuDriverGetVersion)                                                                          \
    X(cuGetErrorString)                                                                            \
    X(cuGetErrorName)                                                                              \
    X(cuGetProcAddress)                                                                            \
    X(cuGetProcAddress_v2)                                                                         \
    X(cuGetExportTable)                                                                            \
    X(cuDeviceGet)                                                                                 \
    X(cuDeviceGetCount)                                                                            \
    X(cuDeviceGetName)                                                                             \
    X(cuDeviceTotalMem_v2)                                                                         \
    X(cuDeviceGetAttribute)                                                                        \
    X(cuDeviceGetPCIBusId)                                                                         \
    X(cuDeviceGetUuid)                                                                             \
    X(cuDeviceGetUuid_v2)                                                                          \
    X(cuCtxCreate_v2)                                                                              \
    X(cuCtxCreate_v3)                                                                              \
    X(cuCtxCreate_v4)                                                                              \
    X(cuCtxDestroy_v2)                                                                             \
    X(cuCtxPushCurrent_v2)                                                                         \
    X(cuCtxPopCurrent_v2)                                                                          \
    X(cuCtxSetCurrent)                                                                             \
    X(cuCtxGetCurrent)                                                                             \
    X(cuCtxGetDevice)                                                                              \
    X(cuCtxSynchronize)                                                                            \
    X(cuDevicePrimaryCtxRetain)                                                                    \
    X(cuDevicePrimaryCtxRelease_v2)                                                                \
    X(cuMemAlloc)                                                                                  \
    X(cuMemAlloc_v2)                                                                               \
    X(cuMemAllocPitch_v2)                                                                          \
    X(cuMemAllocManaged)                                                                           \
    X(cuMemFree_v2)                                                                                \
    X(cuMemGetInfo_v2)                                                                             \
    X(cuMemAllocHost_v2)                                                                           \
    X(cuMemHostAlloc)                                                                              \
    X(cuMemFreeHost)                                                                               \
    X(cuArrayCreate_v2)                                                                            \
    X(cuArray3DCreate_v2)                                                                          \
    X(cuArrayDestroy)                                                                              \
    X(cuMipmappedArrayCreate)                                                                      \
    X(cuMipmappedArrayDestroy)                                                                     \
    X(cuIpcGetMemHandle)                                                                           \
    X(cuIpcOpenMemHandle_v2)                                                                       \
    X(cuIpcCloseMemHandle)                                                                         \
    X(cuMemGetAllocationGranularity)                                                               \
    X(cuMemCreate)                                                                                 \
    X(cuMemRelease)                                                                                \
    X(cuMemAddressReserve)                                                                         \
    X(cuMemAddressFree)                                                                            \
    X(cuMemMap)                                                                                    \
    X(cuMemUnmap)                                                                                  \
    X(cuMemSetAccess)                                                                              \
    X(cuMemExportToShareableHandle)                                                                \
    X(cuMemImportFromShareableHandle)                                                              \
    X(cuDeviceGetDefaultMemPool)                                                                   \
    X(cuDeviceGetMemPool)                                                                          \
    X(cuDeviceSetMemPool)                                                                          \
    X(cuMemPoolCreate)                                                                             \
    X(cuMemPoolDestroy)                                                                            \
    X(cuMemPoolGetAttribute)                                                                       \
    X(cuMemPoolSetAttribute)                                                                       \
    X(cuMemPoolTrimTo)                                                                             \
    X(cuMemAllocAsync)                                                                             \
    X(cuMemAllocAsync_ptsz)                                                                        \
    X(cuMemAllocFromPoolAsync)                                                                     \
    X(cuMemFreeAsync)                                                                              \
    X(cuMemFreeAsync_ptsz)                                                                         \
    X(cuStreamCreate)                                                                              \
    X(cuStreamDestroy_v2)                                                                          \
    X(cuStreamSynchronize)                                                                         \
    X(cuStreamQuery)                                                                               \
    X(cuStreamGetCtx)                                                                              \
    X(cuStreamWaitEvent)                                                                           \
    X(cuEventCreate)                                                                               \
    X(cuEventRecord)                                                                               \
    X(cuEventQuery)                                                                                \
    X(cuEventSynchronize)                                                                          \
    X(cuEventElapsedTime)                                                                          \
    X(cuEventDestroy_v2)                                                                           \
    X(cuLaunchKernel)                                                                              \
    X(cuLaunchKernel_ptsz)                                                                         \
    X(cuLaunchKernelEx)                                                                            \
    X(cuLaunchKernelEx_ptsz)                                                                       \
    X(cuLaunchCooperativeKernel)                                                                   \
    X(cuLaunchCooperativeKernel_ptsz)                                                              \
    X(cuStreamBeginCapture_v2)                                                                     \
    X(cuStreamEndCapture)                                                                          \
    X(cuStreamIsCapturing)                                                                         \
    X(cuStreamGetCaptureInfo_v2)                                                                   \
    X(cuThreadExchangeStreamCaptureMode)                                                           \
    X(cuGraphInstantiateWithFlags)                                                                 \
    X(cuGraphDestroy)                                                                              \
    X(cuGraphExecDestroy)                                                                          \
    X(cuGraphLaunch)                                                                               \
    X(cuGraphLaunch_ptsz)                                                                          \
    X(cuDeviceGetGraphMemAttribute)                                                                \
    X(cuDeviceSetGraphMemAttribute)                                                                \
    X(cuDeviceGraphMemTrim)                                                                        \
    X(cuModuleLoadData)                                                                            \
    X(cuModuleUnload)                                                                              \
    X(cuModuleGetFunction)                                                                         \
    X(cuFuncGetParamInfo)                                                                          \
    X(cuMemcpyHtoD_v2)                                                                             \
    X(cuMemcpyDtoH_v2)                                                                             \
    X(cuMemcpyDtoD_v2)                                                                             \
    X(cuMemcpyHtoDAsync_v2)                                                                        \
    X(cuMemcpyDtoHAsync_v2)                                                                        \
    X(cuMemcpyDtoDAsync_v2)                                                                        \
    X(cuMemsetD8_v2)                                                                               \
    X(cuMemsetD8Async)                                                                             \
    X(fakecuda_busy_us)                                                                            \
    X(fakecuda_graph_exec_create)                                                                  \
    X(fakecuda_used_bytes)

#define DECLARE_POINTER(name) static __typeof__(name) *p_##name;
CUDA_FUNCS(DECLARE_POINTER)
#undef DECLARE_POINTER

static void *cuda_lib;
static char state_dir[] = "/tmp/fakecuda-selftest-XXXXXX";

/* Loads the fake libcuda and every pointer above. Returns 0 or -1. */
static int load_cuda(void)
{
    cuda_lib = dlopen(FAKECUDA_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!cuda_lib) {
        fprintf(stderr, "dlopen %s: %s\n", FAKECUDA_PATH, dlerror());
        return -1;
    }
#define LOAD_POINTER(name)                                                                         \
    p_##name = (__typeof__(p_##name))dlsym(cuda_lib, #name);                                       \
    if (!p_##name) {                                                                               \
        fprintf(stderr, "missing %s\n", #name);                                                    \
        return -1;                                                                                 \
    }
    CUDA_FUNCS(LOAD_POINTER)
#undef LOAD_POINTER
    return 0;
}

static unsigned long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static unsigned long long used(int dev)
{
    return p_fakecuda_used_bytes(dev);
}

static CUcontext ctx_on(int dev)
{
    CUcontext c = NULL;
    assert_int_equal(p_cuCtxCreate_v2(&c, 0, dev), CUDA_SUCCESS);
    assert_non_null(c);
    return c;
}

static CUresult launch(CUstream s, unsigned int us)
{
    void *params[] = {&us};
    return p_cuLaunchKernel(FUNC, 1, 1, 1, 1, 1, 1, 0, s, params, NULL);
}

static cuuint64_t pool_attr(CUmemoryPool pool, CUmemPool_attribute attr)
{
    cuuint64_t v = 0;
    assert_int_equal(p_cuMemPoolGetAttribute(pool, attr, &v), CUDA_SUCCESS);
    return v;
}

static cuuint64_t graph_attr(CUgraphMem_attribute attr)
{
    cuuint64_t v = 0;
    assert_int_equal(p_cuDeviceGetGraphMemAttribute(0, attr, &v), CUDA_SUCCESS);
    return v;
}

static CUstreamCaptureStatus capture_status(CUstream s)
{
    CUstreamCaptureStatus st = -1;
    assert_int_equal(p_cuStreamIsCapturing(s, &st), CUDA_SUCCESS);
    return st;
}

/* Runs fn(arg) on a new thread and waits for it. */
static void on_other_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* Starts this binary again with `args` (NULL-terminated after argv[0]).
 * `close_fds` are closed in the child before exec. */
static pid_t spawn_self(char *const args[], const int *close_fds, int nclose)
{
    static char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    char *argv[8] = {self};
    for (int i = 0; args[i] && i < 6; i++)
        argv[i + 1] = args[i];
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < nclose; i++)
            close(close_fds[i]);
        execv(self, argv);
        _exit(127);
    }
    return pid;
}

/* Takes device `dev` as a kernel of another process would: the worker of
 * every context on it waits until release_device(). */
static int hold_device(int dev)
{
    char path[128];
    snprintf(path, sizeof path, "%s/gpu%d.busy", state_dir, dev);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    return fd;
}

static void release_device(int fd)
{
    flock(fd, LOCK_UN);
    close(fd);
}

static void *release_device_later(void *arg)
{
    struct timespec delay = {0, 30000000};
    nanosleep(&delay, NULL);
    release_device(*(int *)arg);
    return NULL;
}

static int wait_exit_code(pid_t pid)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* --- Initialization and lookup ---------------------------------------------- */

static void test_init_rules(void **state)
{
    (void)state;
    int n = 0, version = 0;
    CUdevice dev;
    CUdeviceptr p;
    assert_int_equal(p_cuDeviceGetCount(&n), CUDA_ERROR_NOT_INITIALIZED);
    assert_int_equal(p_cuDeviceGet(&dev, 0), CUDA_ERROR_NOT_INITIALIZED);
    assert_int_equal(p_cuMemAlloc_v2(&p, 1), CUDA_ERROR_NOT_INITIALIZED);
    assert_int_equal(p_cuCtxGetDevice(&dev), CUDA_ERROR_NOT_INITIALIZED);
    /* Lookups and the version work before cuInit, as libcudart needs. */
    void *fn = NULL;
    assert_int_equal(p_cuGetProcAddress_v2("cuInit", &fn, 13000, 0, NULL), CUDA_SUCCESS);
    assert_ptr_equal(fn, dlsym(cuda_lib, "cuInit"));
    assert_int_equal(p_cuDriverGetVersion(&version), CUDA_SUCCESS);
    assert_int_equal(version, 13000);

    assert_int_equal(p_cuInit(1), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuDeviceGetCount(&n), CUDA_ERROR_NOT_INITIALIZED);
    assert_int_equal(p_cuInit(0), CUDA_SUCCESS);
    assert_int_equal(p_cuInit(0), CUDA_SUCCESS);
    assert_int_equal(p_cuDeviceGetCount(&n), CUDA_SUCCESS);
    assert_int_equal(n, 2);
}

/* Looks `symbol` up and checks it resolves to the export named `expect`. */
static void expect_lookup(const char *symbol, int version, cuuint64_t flags, const char *expect)
{
    void *fn = (void *)1;
    CUdriverProcAddressQueryResult st = -1;
    CUresult r = p_cuGetProcAddress_v2(symbol, &fn, version, flags, &st);
    if (r != CUDA_SUCCESS || fn != dlsym(cuda_lib, expect))
        fail_msg("%s at %d flags %llu: got %d, want %s", symbol, version, flags, r, expect);
    assert_int_equal(st, CU_GET_PROC_ADDRESS_SUCCESS);
}

static void expect_not_found(const char *symbol, int version, CUdriverProcAddressQueryResult want)
{
    void *fn = (void *)1;
    CUdriverProcAddressQueryResult st = -1;
    assert_int_equal(p_cuGetProcAddress_v2(symbol, &fn, version, 0, &st), CUDA_ERROR_NOT_FOUND);
    assert_null(fn);
    assert_int_equal(st, want);
}

static void test_lookup_versions(void **state)
{
    (void)state;
    const cuuint64_t ptds = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
    expect_lookup("cuMemAlloc", 12000, 0, "cuMemAlloc_v2");
    expect_lookup("cuMemAlloc", 3020, 0, "cuMemAlloc_v2");
    expect_lookup("cuMemAlloc", 3010, 0, "cuMemAlloc");
    expect_lookup("cuMemAlloc", 13000, ptds, "cuMemAlloc_v2"); /* no _ptsz variant */
    expect_lookup("cuMemGetInfo", 13000, 0, "cuMemGetInfo_v2");
    expect_lookup("cuCtxCreate", 13000, 0, "cuCtxCreate_v4");
    expect_lookup("cuCtxCreate", 12050, 0, "cuCtxCreate_v4");
    expect_lookup("cuCtxCreate", 12040, 0, "cuCtxCreate_v3");
    expect_lookup("cuCtxCreate", 11040, 0, "cuCtxCreate_v3");
    expect_lookup("cuCtxCreate", 11030, 0, "cuCtxCreate_v2");
    expect_lookup("cuGetProcAddress", 12000, 0, "cuGetProcAddress_v2");
    expect_lookup("cuGetProcAddress", 11080, 0, "cuGetProcAddress");
    expect_lookup("cuMemAllocAsync", 12000, 0, "cuMemAllocAsync");
    expect_lookup("cuMemAllocAsync", 12000, CU_GET_PROC_ADDRESS_LEGACY_STREAM, "cuMemAllocAsync");
    expect_lookup("cuMemAllocAsync", 12000, ptds, "cuMemAllocAsync_ptsz");
    expect_lookup("cuLaunchKernel", 13000, ptds, "cuLaunchKernel_ptsz");
    expect_lookup("cuGraphLaunch", 13000, ptds, "cuGraphLaunch_ptsz");
    expect_lookup("cuStreamBeginCapture", 12000, ptds, "cuStreamBeginCapture_v2_ptsz");
    expect_lookup("cuStreamBeginCapture", 10000, 0, "cuStreamBeginCapture");
    expect_lookup("cuStreamGetCaptureInfo", 12030, 0, "cuStreamGetCaptureInfo_v3");
    expect_lookup("cuStreamGetCaptureInfo", 12020, 0, "cuStreamGetCaptureInfo_v2");
    expect_lookup("cuEventElapsedTime", 12080, 0, "cuEventElapsedTime_v2");
    expect_lookup("cuEventElapsedTime", 12070, 0, "cuEventElapsedTime");
    expect_lookup("cuGraphInstantiate", 12000, 0, "cuGraphInstantiateWithFlags");
    expect_lookup("cuGraphInstantiate", 11040, 0, "cuGraphInstantiate_v2");
    expect_lookup("cuDeviceGetUuid", 11040, 0, "cuDeviceGetUuid_v2");
    expect_lookup("cuDevicePrimaryCtxRelease", 11000, 0, "cuDevicePrimaryCtxRelease_v2");

    expect_not_found("cuMemAllocAsync", 11010, CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
    expect_not_found("cuGetProcAddress", 11020, CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
    expect_not_found("cuNoSuchFunction", 13000, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
    expect_not_found("cuMemAlloc_v2", 13000, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);

    void *fn;
    assert_int_equal(p_cuGetProcAddress_v2(NULL, &fn, 13000, 0, NULL), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuGetProcAddress_v2("cuInit", NULL, 13000, 0, NULL),
                     CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuGetProcAddress_v2("cuInit", &fn, 13000, 4, NULL),
                     CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuGetProcAddress("cuMemAlloc", &fn, 13000, 0), CUDA_SUCCESS);
    assert_ptr_equal(fn, dlsym(cuda_lib, "cuMemAlloc_v2"));
    assert_int_equal(p_cuGetProcAddress("cuNoSuchFunction", &fn, 13000, 0), CUDA_ERROR_NOT_FOUND);
    assert_null(fn);
    const void *table = (void *)1;
    CUuuid id = {{0}};
    assert_int_equal(p_cuGetExportTable(&table, &id), CUDA_ERROR_NOT_SUPPORTED);
}

/* "cuStreamGetCaptureInfo_v2_ptsz" -> "cuStreamGetCaptureInfo", ptsz. */
static void base_name(const char *name, char *base, size_t size, int *ptsz)
{
    snprintf(base, size, "%s", name);
    size_t n = strlen(base);
    *ptsz = n > 5 && strcmp(base + n - 5, "_ptsz") == 0;
    if (*ptsz)
        base[n -= 5] = '\0';
    size_t i = n;
    while (i > 0 && base[i - 1] >= '0' && base[i - 1] <= '9')
        i--;
    if (i < n && i >= 2 && base[i - 1] == 'v' && base[i - 2] == '_')
        base[i - 2] = '\0';
}

/* Every exported cu* function must be what cuGetProcAddress returns for its
 * base name at some version, so the lookup table misses nothing. */
static void test_lookup_covers_every_export(void **state)
{
    (void)state;
    FILE *f = fopen(FAKECUDA_PATH, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *elf = malloc((size_t)size);
    assert_non_null(elf);
    assert_int_equal(fread(elf, 1, (size_t)size, f), (size_t)size);
    fclose(f);

    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)elf;
    assert_memory_equal(eh->e_ident, ELFMAG, SELFMAG);
    assert_int_equal(eh->e_ident[EI_CLASS], ELFCLASS64);
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(elf + eh->e_shoff);
    int checked = 0;
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM)
            continue;
        const Elf64_Sym *syms = (const Elf64_Sym *)(elf + sh[i].sh_offset);
        const char *names = (const char *)(elf + sh[sh[i].sh_link].sh_offset);
        for (size_t k = 0; k < sh[i].sh_size / sizeof *syms; k++) {
            const char *name = names + syms[k].st_name;
            if (ELF64_ST_TYPE(syms[k].st_info) != STT_FUNC || syms[k].st_shndx == SHN_UNDEF ||
                strncmp(name, "cu", 2) != 0)
                continue;
            char base[128];
            int ptsz;
            base_name(name, base, sizeof base, &ptsz);
            void *addr = dlsym(cuda_lib, name), *fn = NULL;
            int found = 0;
            for (int v = 1000; v <= 100000 && !found; v += 10)
                found = p_cuGetProcAddress_v2(
                            base, &fn, v, ptsz ? CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM : 0,
                            NULL) == CUDA_SUCCESS &&
                        fn == addr;
            if (!found)
                fail_msg("%s is exported but no lookup of %s returns it", name, base);
            checked++;
        }
    }
    free(elf);
    assert_true(checked > 100);
}

static void test_error_strings(void **state)
{
    (void)state;
    const char *s = NULL;
    assert_int_equal(p_cuGetErrorName(CUDA_ERROR_OUT_OF_MEMORY, &s), CUDA_SUCCESS);
    assert_string_equal(s, "CUDA_ERROR_OUT_OF_MEMORY");
    assert_int_equal(p_cuGetErrorName(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, &s), CUDA_SUCCESS);
    assert_string_equal(s, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED");
    assert_int_equal(p_cuGetErrorString(CUDA_ERROR_OUT_OF_MEMORY, &s), CUDA_SUCCESS);
    assert_string_equal(s, "out of memory");
    assert_int_equal(p_cuGetErrorString(12345, &s), CUDA_ERROR_INVALID_VALUE);
    assert_null(s);
}

static void test_devices(void **state)
{
    (void)state;
    char name[64], bus[32];
    size_t total = 0;
    int sms = 0;
    CUuuid u0, u1, v0;
    CUdevice dev;
    assert_int_equal(p_cuDeviceGet(&dev, 1), CUDA_SUCCESS);
    assert_int_equal(dev, 1);
    assert_int_equal(p_cuDeviceGet(&dev, 2), CUDA_ERROR_INVALID_DEVICE);
    assert_int_equal(p_cuDeviceGetName(name, sizeof name, 0), CUDA_SUCCESS);
    assert_string_equal(name, "Fake GPU");
    assert_int_equal(p_cuDeviceTotalMem_v2(&total, 1), CUDA_SUCCESS);
    assert_int_equal(total, TOTAL_MEM);
    assert_int_equal(p_cuDeviceGetAttribute(&sms, 16, 0), CUDA_SUCCESS);
    assert_int_equal(sms, 132);
    assert_int_equal(p_cuDeviceGetPCIBusId(bus, sizeof bus, 1), CUDA_SUCCESS);
    assert_string_equal(bus, "0000:11:00.0");
    assert_int_equal(p_cuDeviceGetUuid_v2(&u0, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuDeviceGetUuid_v2(&u1, 1), CUDA_SUCCESS);
    assert_int_equal(p_cuDeviceGetUuid(&v0, 0), CUDA_SUCCESS);
    assert_memory_equal(u0.bytes, "fakegpu", 7);
    assert_memory_equal(u0.bytes, v0.bytes, 16);
    assert_memory_not_equal(u0.bytes, u1.bytes, 16);
    assert_int_equal(p_cuDeviceGetUuid_v2(&u0, 5), CUDA_ERROR_INVALID_DEVICE);
}

/* --- Contexts ------------------------------------------------------------------ */

struct thread_call {
    CUcontext ctx; /* made current first, unless NULL */
    CUstream stream;
    int relaxed; /* switch the thread to relaxed capture mode first */
    CUresult result;
    CUdevice dev;
};

static void *get_device_thread(void *arg)
{
    struct thread_call *t = arg;
    if (t->ctx)
        assert_int_equal(p_cuCtxSetCurrent(t->ctx), CUDA_SUCCESS);
    t->result = p_cuCtxGetDevice(&t->dev);
    return NULL;
}

static void test_contexts(void **state)
{
    (void)state;
    assert_int_equal(used(1), 0);
    CUcontext primary, again, cur;
    assert_int_equal(p_cuDevicePrimaryCtxRetain(&primary, 1), CUDA_SUCCESS);
    assert_int_equal(used(1), CTX_OVERHEAD);
    assert_int_equal(p_cuDevicePrimaryCtxRetain(&again, 1), CUDA_SUCCESS);
    assert_ptr_equal(primary, again);
    assert_int_equal(p_cuCtxDestroy_v2(primary), CUDA_ERROR_INVALID_CONTEXT);

    /* A second context on the device costs no more overhead. */
    CUcontext c3, c4;
    assert_int_equal(p_cuCtxCreate_v3(&c3, NULL, 0, 0, 1), CUDA_SUCCESS);
    assert_int_equal(p_cuCtxCreate_v4(&c4, NULL, 0, 1), CUDA_SUCCESS);
    assert_int_equal(used(1), CTX_OVERHEAD);
    assert_int_equal(p_cuCtxGetCurrent(&cur), CUDA_SUCCESS);
    assert_ptr_equal(cur, c4);
    assert_int_equal(p_cuCtxPopCurrent_v2(&cur), CUDA_SUCCESS);
    assert_ptr_equal(cur, c4);
    assert_int_equal(p_cuCtxGetCurrent(&cur), CUDA_SUCCESS);
    assert_ptr_equal(cur, c3);
    assert_int_equal(p_cuCtxPushCurrent_v2(primary), CUDA_SUCCESS);
    CUdevice dev = -1;
    assert_int_equal(p_cuCtxGetDevice(&dev), CUDA_SUCCESS);
    assert_int_equal(dev, 1);
    assert_int_equal(p_cuCtxPopCurrent_v2(NULL), CUDA_SUCCESS);

    /* The current context is per thread. */
    struct thread_call t = {0};
    on_other_thread(get_device_thread, &t);
    assert_int_equal(t.result, CUDA_ERROR_INVALID_CONTEXT);
    t.ctx = c4;
    on_other_thread(get_device_thread, &t);
    assert_int_equal(t.result, CUDA_SUCCESS);
    assert_int_equal(t.dev, 1);

    assert_int_equal(p_cuCtxDestroy_v2(c3), CUDA_SUCCESS); /* current: popped */
    assert_int_equal(p_cuCtxGetCurrent(&cur), CUDA_SUCCESS);
    assert_null(cur);
    assert_int_equal(p_cuCtxGetDevice(&dev), CUDA_ERROR_INVALID_CONTEXT);
    assert_int_equal(p_cuCtxDestroy_v2(c3), CUDA_ERROR_INVALID_CONTEXT);
    assert_int_equal(p_cuCtxSetCurrent(c3), CUDA_ERROR_INVALID_CONTEXT);
    assert_int_equal(p_cuCtxDestroy_v2(c4), CUDA_SUCCESS);
    assert_int_equal(p_cuDevicePrimaryCtxRelease_v2(1), CUDA_SUCCESS);
    assert_int_equal(used(1), CTX_OVERHEAD);
    assert_int_equal(p_cuDevicePrimaryCtxRelease_v2(1), CUDA_SUCCESS);
    assert_int_equal(used(1), 0);
    assert_int_equal(p_cuDevicePrimaryCtxRelease_v2(1), CUDA_ERROR_INVALID_CONTEXT);
}

/* --- Memory ------------------------------------------------------------------- */

static void *alloc_without_context(void *arg)
{
    struct thread_call *t = arg;
    CUdeviceptr p;
    size_t free_bytes, total;
    t->result = p_cuMemAlloc_v2(&p, MIB);
    if (t->result == CUDA_ERROR_INVALID_CONTEXT)
        t->result = p_cuMemGetInfo_v2(&free_bytes, &total);
    return NULL;
}

static void test_memory_classic(void **state)
{
    (void)state;
    CUcontext c = ctx_on(0);
    unsigned long long base = used(0);
    assert_int_equal(base, CTX_OVERHEAD);

    CUdeviceptr big, pitched, managed, p;
    assert_int_equal(p_cuMemAlloc_v2(&big, GIB), CUDA_SUCCESS);
    assert_int_equal(used(0), base + GIB);
    memset((void *)(uintptr_t)big, 0xab, 4096); /* host-backed and writable */
    ((volatile char *)(uintptr_t)big)[GIB - 1] = 1;

    size_t free_bytes = 0, total = 0, pitch = 0;
    assert_int_equal(p_cuMemGetInfo_v2(&free_bytes, &total), CUDA_SUCCESS);
    assert_int_equal(total, TOTAL_MEM);
    assert_int_equal(free_bytes, TOTAL_MEM - base - GIB);
    assert_int_equal(p_cuMemGetInfo_v2(NULL, &total), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuMemGetInfo_v2(&free_bytes, NULL), CUDA_ERROR_INVALID_VALUE);

    assert_int_equal(p_cuMemAllocPitch_v2(&pitched, &pitch, 1000, 10, 4), CUDA_SUCCESS);
    assert_int_equal(pitch, 1024);
    assert_int_equal(used(0), base + GIB + 10240);
    assert_int_equal(p_cuMemAllocPitch_v2(&p, &pitch, 1000, 10, 3), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuMemAllocManaged(&managed, 3 * MIB, CU_MEM_ATTACH_GLOBAL), CUDA_SUCCESS);
    assert_int_equal(used(0), base + GIB + 10240 + 3 * MIB);
    assert_int_equal(p_cuMemAllocManaged(&p, MIB, 0), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuMemAlloc_v2(&p, 0), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuMemAlloc_v2(&p, TOTAL_MEM), CUDA_ERROR_OUT_OF_MEMORY);
    assert_int_equal(p_cuMemAlloc(NULL, 1), CUDA_ERROR_NOT_SUPPORTED); /* 32-bit legacy */

    assert_int_equal(p_cuMemFree_v2(big), CUDA_SUCCESS);
    assert_int_equal(p_cuMemFree_v2(pitched), CUDA_SUCCESS);
    assert_int_equal(p_cuMemFree_v2(managed), CUDA_SUCCESS);
    assert_int_equal(used(0), base);
    assert_int_equal(p_cuMemFree_v2(big), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuMemFree_v2(12345), CUDA_ERROR_INVALID_VALUE);

    /* Pinned host memory is not device memory. */
    void *h1, *h2;
    assert_int_equal(p_cuMemAllocHost_v2(&h1, 64 * MIB), CUDA_SUCCESS);
    assert_int_equal(p_cuMemHostAlloc(&h2, MIB, 0), CUDA_SUCCESS);
    memset(h1, 1, 4096);
    assert_int_equal(used(0), base);
    assert_int_equal(p_cuMemFreeHost(h1), CUDA_SUCCESS);
    assert_int_equal(p_cuMemFreeHost(h2), CUDA_SUCCESS);
    assert_int_equal(p_cuMemFreeHost(h1), CUDA_ERROR_INVALID_VALUE);

    struct thread_call t = {0};
    on_other_thread(alloc_without_context, &t);
    assert_int_equal(t.result, CUDA_ERROR_INVALID_CONTEXT);

    assert_int_equal(p_cuCtxDestroy_v2(c), CUDA_SUCCESS);
    assert_int_equal(used(0), 0);
}

static void test_arrays(void **state)
{
    (void)state;
    CUcontext c = ctx_on(0);
    unsigned long long base = used(0);
    CUarray a2, a1, a3, bad;
    CUmipmappedArray m;
    CUDA_ARRAY_DESCRIPTOR d2 = {100, 100, CU_AD_FORMAT_UNSIGNED_INT8, 4};
    CUDA_ARRAY_DESCRIPTOR d1 = {1000, 0, CU_AD_FORMAT_FLOAT, 1};
    CUDA_ARRAY3D_DESCRIPTOR d3 = {16, 16, 16, CU_AD_FORMAT_HALF, 2, 0};
    CUDA_ARRAY3D_DESCRIPTOR dm = {64, 64, 0, CU_AD_FORMAT_UNSIGNED_INT8, 1, 0};
    CUDA_ARRAY_DESCRIPTOR dbad = {10, 10, 0x99, 1};

    assert_int_equal(p_cuArrayCreate_v2(&a2, &d2), CUDA_SUCCESS);
    assert_int_equal(used(0), base + 40000);
    assert_int_equal(p_cuArrayCreate_v2(&a1, &d1), CUDA_SUCCESS);
    assert_int_equal(used(0), base + 44000);
    assert_int_equal(p_cuArray3DCreate_v2(&a3, &d3), CUDA_SUCCESS);
    assert_int_equal(used(0), base + 44000 + 16384);
    /* Levels 64x64, 32x32, 16x16 (256 bytes, rounded up to 512). */
    assert_int_equal(p_cuMipmappedArrayCreate(&m, &dm, 3), CUDA_SUCCESS);
    assert_int_equal(used(0), base + 44000 + 16384 + 4096 + 1024 + 512);
    assert_int_equal(p_cuMipmappedArrayCreate(&m, &dm, 8), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuArrayCreate_v2(&bad, &dbad), CUDA_ERROR_INVALID_VALUE);

    assert_int_equal(p_cuArrayDestroy(a2), CUDA_SUCCESS);
    assert_int_equal(p_cuArrayDestroy(a1), CUDA_SUCCESS);
    assert_int_equal(p_cuArrayDestroy(a3), CUDA_SUCCESS);
    assert_int_equal(p_cuMipmappedArrayDestroy(m), CUDA_SUCCESS);
    assert_int_equal(used(0), base);
    assert_int_equal(p_cuArrayDestroy(a2), CUDA_ERROR_INVALID_HANDLE);
    assert_int_equal(p_cuCtxDestroy_v2(c), CUDA_SUCCESS);
}

static void test_vmm(void **state)
{
    (void)state;
    CUcontext c = ctx_on(0);
    unsigned long long base = used(0);
    CUmemAllocationProp dev_prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                    .location = {CU_MEM_LOCATION_TYPE_DEVICE, 0}};
    CUmemAllocationProp host_prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                     .location = {CU_MEM_LOCATION_TYPE_HOST, 0}};
    size_t gran = 0;
    assert_int_equal(
        p_cuMemGetAllocationGranularity(&gran, &dev_prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
        CUDA_SUCCESS);
    assert_int_equal(gran, 2 * MIB);

    CUmemGenericAllocationHandle h, hh, bad;
    assert_int_equal(p_cuMemCreate(&bad, 3 * MIB, &dev_prop, 0), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuMemCreate(&h, 4 * MIB, &dev_prop, 0), CUDA_SUCCESS);
    assert_int_equal(used(0), base + 4 * MIB);
    assert_int_equal(p_cuMemCreate(&hh, 4 * MIB, &host_prop, 0), CUDA_SUCCESS);
    assert_int_equal(used(0), base + 4 * MIB); /* host location: not device memory */

    CUdeviceptr va;
    assert_int_equal(p_cuMemAddressReserve(&va, 8 * MIB, 0, 0, 0), CUDA_SUCCESS);
    assert_int_equal(va % (2 * MIB), 0);
    assert_int_equal(used(0), base + 4 * MIB); /* address space only */
    assert_int_equal(p_cuMemMap(va, 4 * MIB, 0, h, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuMemMap(va + 2 * MIB, 2 * MIB, 0, hh, 0), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuMemMap(va + 4 * MIB, 4 * MIB, 0, hh, 0), CUDA_SUCCESS);
    CUmemAccessDesc access = {{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    assert_int_equal(p_cuMemSetAccess(va, 8 * MIB, &access, 1), CUDA_SUCCESS);
    memset((void *)(uintptr_t)va, 7, 4096);

    /* Released but still mapped: still held. */
    assert_int_equal(p_cuMemRelease(h), CUDA_SUCCESS);
    assert_int_equal(used(0), base + 4 * MIB);
    assert_int_equal(p_cuMemRelease(h), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuMemUnmap(va, 8 * MIB), CUDA_SUCCESS);
    assert_int_equal(used(0), base);
    assert_int_equal(p_cuMemUnmap(va, 8 * MIB), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuMemRelease(hh), CUDA_SUCCESS);
    assert_int_equal(p_cuMemAddressFree(va, 8 * MIB), CUDA_SUCCESS);

    /* An imported handle is not new memory. */
    CUmemGenericAllocationHandle exported, imported;
    int fd = -1;
    assert_int_equal(p_cuMemCreate(&exported, 2 * MIB, &dev_prop, 0), CUDA_SUCCESS);
    assert_int_equal(
        p_cuMemExportToShareableHandle(&fd, exported, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
        CUDA_SUCCESS);
    assert_true(fd >= 0);
    assert_int_equal(p_cuMemImportFromShareableHandle(&imported, (void *)(intptr_t)fd,
                                                      CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
                     CUDA_SUCCESS);
    assert_int_equal(used(0), base + 2 * MIB);
    assert_int_equal(p_cuMemRelease(imported), CUDA_SUCCESS);
    assert_int_equal(p_cuMemRelease(exported), CUDA_SUCCESS);
    close(fd);
    assert_int_equal(used(0), base);
    assert_int_equal(p_cuCtxDestroy_v2(c), CUDA_SUCCESS);
}

static void test_pools(void **state)
{
    (void)state;
    CUcontext c = ctx_on(0);
    CUstream s;
    assert_int_equal(p_cuStreamCreate(&s, 0), CUDA_SUCCESS);
    CUmemoryPool pool, current;
    assert_int_equal(p_cuDeviceGetDefaultMemPool(&pool, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuDeviceGetMemPool(&current, 0), CUDA_SUCCESS);
    assert_ptr_equal(pool, current);
    unsigned long long base = used(0);

    CUdeviceptr a, b;
    assert_int_equal(p_cuMemAllocAsync(&a, MIB, s), CUDA_SUCCESS);
    assert_int_equal(pool_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), 2 * MIB);
    assert_int_equal(pool_attr(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT), MIB);
    assert_int_equal(used(0), base + 2 * MIB);
    assert_int_equal(p_cuMemFreeAsync(a, s), CUDA_SUCCESS);
    assert_int_equal(pool_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), 2 * MIB); /* cached */
    assert_int_equal(pool_attr(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT), 0);
    assert_int_equal(p_cuMemAllocAsync_ptsz(&b, 3 * MIB / 2, s), CUDA_SUCCESS);
    assert_int_equal(b, a); /* the cached block is reused */
    assert_int_equal(pool_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), 2 * MIB);
    assert_int_equal(p_cuMemFreeAsync_ptsz(b, s), CUDA_SUCCESS);
    assert_int_equal(p_cuMemFreeAsync(b, s), CUDA_SUCCESS); /* cached: freeing again is harmless */
    assert_int_equal(p_cuMemFreeAsync(777, s), CUDA_ERROR_INVALID_VALUE);
    /* Synchronizing trims to the release threshold (0). */
    assert_int_equal(p_cuStreamSynchronize(s), CUDA_SUCCESS);
    assert_int_equal(pool_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), 0);
    assert_int_equal(used(0), base);

    cuuint64_t threshold = 64 * MIB, zero = 0, five = 5;
    assert_int_equal(p_cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold),
                     CUDA_SUCCESS);
    assert_int_equal(p_cuMemAllocAsync(&a, 3 * MIB, s), CUDA_SUCCESS);
    assert_int_equal(p_cuMemFreeAsync(a, s), CUDA_SUCCESS);
    assert_int_equal(p_cuCtxSynchronize(), CUDA_SUCCESS);
    assert_int_equal(pool_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), 4 * MIB);
    assert_int_equal(used(0), base + 4 * MIB);
    assert_int_equal(p_cuMemPoolTrimTo(pool, 0), CUDA_SUCCESS);
    assert_int_equal(pool_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), 0);
    assert_int_equal(used(0), base);
    assert_true(pool_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH) >= 4 * MIB);
    assert_int_equal(p_cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, &zero),
                     CUDA_SUCCESS);
    assert_int_equal(pool_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH), 0);
    assert_int_equal(p_cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_HIGH, &five),
                     CUDA_ERROR_INVALID_VALUE);

    /* A cached reserve is given back before an allocation fails. */
    assert_int_equal(p_cuMemAllocAsync(&a, 5 * GIB, s), CUDA_SUCCESS);
    assert_int_equal(p_cuMemFreeAsync(a, s), CUDA_SUCCESS);
    assert_int_equal(used(0), base + 5 * GIB);
    assert_int_equal(p_cuMemAlloc_v2(&b, 4 * GIB), CUDA_SUCCESS);
    assert_int_equal(pool_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), 0);
    assert_int_equal(p_cuMemFree_v2(b), CUDA_SUCCESS);
    assert_int_equal(p_cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &zero),
                     CUDA_SUCCESS);

    /* A created pool, directly and as the device's current pool. */
    CUmemPoolProps props = {.allocType = CU_MEM_ALLOCATION_TYPE_PINNED,
                            .location = {CU_MEM_LOCATION_TYPE_DEVICE, 0}};
    CUmemoryPool mine;
    CUdeviceptr d, e;
    assert_int_equal(p_cuMemPoolCreate(&mine, &props), CUDA_SUCCESS);
    assert_int_equal(p_cuMemAllocFromPoolAsync(&d, 5 * MIB, mine, s), CUDA_SUCCESS);
    assert_int_equal(used(0), base + 6 * MIB);
    assert_int_equal(p_cuDeviceSetMemPool(0, mine), CUDA_SUCCESS);
    assert_int_equal(p_cuMemAllocAsync(&e, MIB, s), CUDA_SUCCESS);
    assert_int_equal(pool_attr(mine, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), 8 * MIB);
    assert_int_equal(pool_attr(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), 0);
    assert_int_equal(p_cuDeviceSetMemPool(1, mine), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuMemFreeAsync(d, s), CUDA_SUCCESS);
    assert_int_equal(p_cuMemPoolDestroy(mine), CUDA_SUCCESS); /* e still allocated: freed too */
    assert_int_equal(p_cuDeviceGetMemPool(&current, 0), CUDA_SUCCESS);
    assert_ptr_equal(current, pool);
    assert_int_equal(used(0), base);
    assert_int_equal(p_cuMemPoolDestroy(pool), CUDA_ERROR_INVALID_VALUE);

    assert_int_equal(p_cuStreamDestroy_v2(s), CUDA_SUCCESS);
    assert_int_equal(p_cuCtxDestroy_v2(c), CUDA_SUCCESS);
    assert_int_equal(used(0), 0);
}

/* --- Execution -------------------------------------------------------------------- */

static void test_kernels_and_events(void **state)
{
    (void)state;
    CUcontext c = ctx_on(0);
    CUstream s;
    CUevent start, end, untimed;
    assert_int_equal(p_cuStreamCreate(&s, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuEventCreate(&start, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuEventCreate(&end, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuEventCreate(&untimed, CU_EVENT_DISABLE_TIMING), CUDA_SUCCESS);
    /* While the test holds the device, nothing can run: launches must return. */
    int gate = hold_device(0);
    unsigned long long busy0 = p_fakecuda_busy_us(0), issued = now_ns();

    unsigned int us1000 = 1000, us3000 = 3000;
    void *p1000[] = {&us1000}, *p3000[] = {&us3000};
    CUlaunchConfig cfg = {1, 1, 1, 32, 1, 1, 0, s, NULL, 0};
    assert_int_equal(p_cuEventRecord(start, s), CUDA_SUCCESS);
    for (int i = 0; i < 10; i++)
        assert_int_equal(launch(s, 2000), CUDA_SUCCESS);
    assert_int_equal(p_cuLaunchKernel_ptsz(FUNC, 1, 1, 1, 1, 1, 1, 0, s, p1000, NULL),
                     CUDA_SUCCESS);
    assert_int_equal(p_cuLaunchKernelEx(&cfg, FUNC, p3000, NULL), CUDA_SUCCESS);
    assert_int_equal(p_cuLaunchKernelEx_ptsz(&cfg, FUNC, p1000, NULL), CUDA_SUCCESS);
    assert_int_equal(p_cuLaunchCooperativeKernel(FUNC, 1, 1, 1, 1, 1, 1, 0, s, p1000),
                     CUDA_SUCCESS);
    assert_int_equal(p_cuLaunchCooperativeKernel_ptsz(FUNC, 1, 1, 1, 1, 1, 1, 0, s, p1000),
                     CUDA_SUCCESS);
    assert_int_equal(p_cuEventRecord(end, s), CUDA_SUCCESS);
    assert_int_equal(p_cuEventRecord(untimed, s), CUDA_SUCCESS);
    assert_int_equal(p_cuEventQuery(end), CUDA_ERROR_NOT_READY);
    assert_int_equal(p_cuStreamQuery(s), CUDA_ERROR_NOT_READY);
    float ms = 0;
    assert_int_equal(p_cuEventElapsedTime(&ms, start, end), CUDA_ERROR_NOT_READY);
    assert_int_equal(p_fakecuda_busy_us(0), busy0);

    /* 27 ms of kernels, one after the other: the busy time is at least that
     * and at most the time since the device was let go; the time between the
     * events (`start` completed before) at most the time since it was issued. */
    unsigned long long t0 = now_ns();
    release_device(gate);
    assert_int_equal(p_cuEventSynchronize(end), CUDA_SUCCESS);
    unsigned long long t1 = now_ns(), busy = p_fakecuda_busy_us(0) - busy0;
    assert_true(busy >= 27000 && busy <= (t1 - t0) / 1000);
    assert_int_equal(p_cuEventElapsedTime(&ms, start, end), CUDA_SUCCESS);
    assert_true(ms >= 26.9f && ms <= (float)(t1 - issued) / 1e6f);
    assert_int_equal(p_cuStreamSynchronize(s), CUDA_SUCCESS);
    assert_int_equal(p_cuEventElapsedTime(&ms, start, untimed), CUDA_ERROR_INVALID_HANDLE);

    /* No parameters: a kernel that takes no time. Bad launches fail. */
    busy0 = p_fakecuda_busy_us(0);
    assert_int_equal(p_cuLaunchKernel(FUNC, 1, 1, 1, 1, 1, 1, 0, s, NULL, NULL), CUDA_SUCCESS);
    assert_int_equal(p_cuLaunchKernel(NULL, 1, 1, 1, 1, 1, 1, 0, s, p1000, NULL),
                     CUDA_ERROR_INVALID_HANDLE);
    assert_int_equal(p_cuLaunchKernel(FUNC, 0, 1, 1, 1, 1, 1, 0, s, p1000, NULL),
                     CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuCtxSynchronize(), CUDA_SUCCESS);
    assert_int_equal(p_fakecuda_busy_us(0), busy0);

    /* More launches than the queue holds: the launch waits for room, here
     * until another thread lets the device go after 30 ms. */
    gate = hold_device(0);
    t0 = now_ns();
    pthread_t releaser;
    assert_int_equal(pthread_create(&releaser, NULL, release_device_later, &gate), 0);
    for (int i = 0; i < 1500; i++)
        assert_int_equal(launch(s, 1), CUDA_SUCCESS);
    assert_true(now_ns() - t0 >= 30000000ull);
    assert_int_equal(pthread_join(releaser, NULL), 0);
    /* The NULL stream is the context's default stream. */
    assert_int_equal(launch(NULL, 1000), CUDA_SUCCESS);
    assert_int_equal(p_cuCtxSynchronize(), CUDA_SUCCESS);
    assert_true(p_fakecuda_busy_us(0) - busy0 >= 1000);
    CUcontext owner = NULL;
    assert_int_equal(p_cuStreamGetCtx(s, &owner), CUDA_SUCCESS);
    assert_ptr_equal(owner, c);
    assert_int_equal(p_cuStreamGetCtx(NULL, &owner), CUDA_SUCCESS);
    assert_ptr_equal(owner, c);

    /* A stream waits for an event of another context. */
    CUcontext c1 = ctx_on(1);
    CUstream s1;
    CUevent e1, after;
    assert_int_equal(p_cuStreamCreate(&s1, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuEventCreate(&e1, 0), CUDA_SUCCESS);
    assert_int_equal(launch(s1, 5000), CUDA_SUCCESS);
    assert_int_equal(p_cuEventRecord(e1, s1), CUDA_SUCCESS);
    assert_int_equal(p_cuCtxPopCurrent_v2(NULL), CUDA_SUCCESS);
    assert_int_equal(p_cuEventCreate(&after, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuStreamWaitEvent(s, e1, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuEventRecord(after, s), CUDA_SUCCESS);
    assert_int_equal(p_cuEventSynchronize(after), CUDA_SUCCESS);
    assert_int_equal(p_cuEventQuery(e1), CUDA_SUCCESS);

    assert_int_equal(p_cuEventDestroy_v2(e1), CUDA_SUCCESS);
    assert_int_equal(p_cuEventDestroy_v2(e1), CUDA_ERROR_INVALID_HANDLE);
    assert_int_equal(p_cuCtxDestroy_v2(c1), CUDA_SUCCESS); /* frees s1 */
    assert_int_equal(p_cuEventDestroy_v2(after), CUDA_SUCCESS);
    assert_int_equal(p_cuEventDestroy_v2(start), CUDA_SUCCESS);
    assert_int_equal(p_cuEventDestroy_v2(end), CUDA_SUCCESS);
    /* `untimed` is left to the context's destruction. */
    assert_int_equal(p_cuStreamDestroy_v2(s), CUDA_SUCCESS);
    assert_int_equal(p_cuStreamDestroy_v2(s), CUDA_ERROR_INVALID_HANDLE);
    assert_int_equal(p_cuCtxDestroy_v2(c), CUDA_SUCCESS);
}

/* --- Stream capture ------------------------------------------------------------------ */

enum unsafe_call {
    UNSAFE_MEM_ALLOC,
    UNSAFE_MEM_FREE,
    UNSAFE_POOL_ATTRIBUTE,
    UNSAFE_CTX_SYNC,
    UNSAFE_OTHER_STREAM_SYNC,
    UNSAFE_EVENT_SYNC,
    UNSAFE_EVENT_QUERY,
    UNSAFE_CAPTURING_STREAM_SYNC,
    UNSAFE_CAPTURED_EVENT_QUERY,
    UNSAFE_COUNT
};

static CUresult make_unsafe_call(enum unsafe_call which, CUstream capturing, CUstream other,
                                 CUevent ev, CUdeviceptr ptr)
{
    CUdeviceptr p;
    CUmemoryPool pool;
    cuuint64_t v;
    switch (which) {
    case UNSAFE_MEM_ALLOC:
        return p_cuMemAlloc_v2(&p, MIB);
    case UNSAFE_MEM_FREE:
        return p_cuMemFree_v2(ptr);
    case UNSAFE_POOL_ATTRIBUTE:
        p_cuDeviceGetMemPool(&pool, 0);
        return p_cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &v);
    case UNSAFE_CTX_SYNC:
        return p_cuCtxSynchronize();
    case UNSAFE_OTHER_STREAM_SYNC:
        return p_cuStreamSynchronize(other);
    case UNSAFE_EVENT_SYNC:
        return p_cuEventSynchronize(ev);
    case UNSAFE_EVENT_QUERY:
        return p_cuEventQuery(ev);
    case UNSAFE_CAPTURING_STREAM_SYNC:
        return p_cuStreamSynchronize(capturing);
    case UNSAFE_CAPTURED_EVENT_QUERY:
        p_cuEventRecord(ev, capturing);
        return p_cuEventQuery(ev);
    default:
        return CUDA_ERROR_UNKNOWN;
    }
}

static void test_capture_invalidation(void **state)
{
    (void)state;
    CUcontext c = ctx_on(0);
    CUstream s, other;
    CUevent ev;
    CUgraph g = (CUgraph)1;
    CUmemoryPool pool;
    cuuint64_t v;
    size_t free_bytes, total;
    assert_int_equal(p_cuStreamCreate(&s, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuStreamCreate(&other, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuEventCreate(&ev, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuDeviceGetMemPool(&pool, 0), CUDA_SUCCESS);
    unsigned long long busy0 = p_fakecuda_busy_us(0), used0 = used(0);

    assert_int_equal(p_cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
    assert_int_equal(capture_status(s), CU_STREAM_CAPTURE_STATUS_ACTIVE);
    assert_int_equal(p_cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL),
                     CUDA_ERROR_ILLEGAL_STATE);
    assert_int_equal(launch(s, 5000), CUDA_SUCCESS); /* recorded, not run */
    CUdeviceptr p;
    assert_int_equal(p_cuMemAllocAsync(&p, MIB, s), CUDA_SUCCESS);
    assert_int_equal(used(0), used0);
    assert_int_equal(p_cuMemGetInfo_v2(&free_bytes, &total), CUDA_SUCCESS); /* allowed */
    assert_int_equal(capture_status(s), CU_STREAM_CAPTURE_STATUS_ACTIVE);
    assert_int_equal(p_cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &v),
                     CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    assert_int_equal(capture_status(s), CU_STREAM_CAPTURE_STATUS_INVALIDATED);
    assert_int_equal(launch(s, 1000), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    assert_int_equal(p_cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    assert_null(g);
    assert_int_equal(capture_status(s), CU_STREAM_CAPTURE_STATUS_NONE);
    assert_int_equal(p_cuCtxSynchronize(), CUDA_SUCCESS);
    assert_int_equal(p_fakecuda_busy_us(0), busy0);
    assert_int_equal(p_cuStreamEndCapture(s, &g), CUDA_ERROR_ILLEGAL_STATE);

    /* Each potentially unsafe call invalidates a global-mode capture. */
    CUdeviceptr victim;
    assert_int_equal(p_cuMemAlloc_v2(&victim, MIB), CUDA_SUCCESS);
    for (int which = 0; which < UNSAFE_COUNT; which++) {
        assert_int_equal(p_cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
        CUresult r = make_unsafe_call(which, s, other, ev, victim);
        if (r != CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)
            fail_msg("unsafe call %d returned %d during capture", which, r);
        assert_int_equal(p_cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    }
    assert_int_equal(p_cuMemFree_v2(victim), CUDA_SUCCESS);

    /* The legacy stream cannot be captured. */
    assert_int_equal(p_cuStreamBeginCapture_v2(NULL, CU_STREAM_CAPTURE_MODE_GLOBAL),
                     CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);

    assert_int_equal(p_cuEventDestroy_v2(ev), CUDA_SUCCESS);
    assert_int_equal(p_cuStreamDestroy_v2(s), CUDA_SUCCESS);
    assert_int_equal(p_cuStreamDestroy_v2(other), CUDA_SUCCESS);
    assert_int_equal(p_cuCtxDestroy_v2(c), CUDA_SUCCESS);
}

static void *alloc_on_thread(void *arg)
{
    struct thread_call *t = arg;
    assert_int_equal(p_cuCtxSetCurrent(t->ctx), CUDA_SUCCESS);
    if (t->relaxed) {
        CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
        assert_int_equal(p_cuThreadExchangeStreamCaptureMode(&mode), CUDA_SUCCESS);
        assert_int_equal(mode, CU_STREAM_CAPTURE_MODE_GLOBAL);
    }
    CUdeviceptr p;
    t->result = p_cuMemAlloc_v2(&p, MIB);
    if (t->result == CUDA_SUCCESS)
        assert_int_equal(p_cuMemFree_v2(p), CUDA_SUCCESS);
    return NULL;
}

static void *end_capture_on_thread(void *arg)
{
    struct thread_call *t = arg;
    CUgraph g;
    t->result = p_cuStreamEndCapture(t->stream, &g);
    return NULL;
}

static void test_capture_modes(void **state)
{
    (void)state;
    CUcontext c = ctx_on(0);
    CUstream s;
    CUgraph g;
    CUdeviceptr p;
    assert_int_equal(p_cuStreamCreate(&s, 0), CUDA_SUCCESS);
    struct thread_call t = {.ctx = c};

    /* Global: another thread's unsafe call breaks the capture... */
    assert_int_equal(p_cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
    on_other_thread(alloc_on_thread, &t);
    assert_int_equal(t.result, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    assert_int_equal(p_cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    /* ...unless that thread is in relaxed mode. */
    t.relaxed = 1;
    assert_int_equal(p_cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
    on_other_thread(alloc_on_thread, &t);
    assert_int_equal(t.result, CUDA_SUCCESS);
    cuuint64_t id = 0;
    CUgraph captured = NULL;
    CUstreamCaptureStatus st;
    assert_int_equal(p_cuStreamGetCaptureInfo_v2(s, &st, &id, &captured, NULL, NULL), CUDA_SUCCESS);
    assert_int_equal(st, CU_STREAM_CAPTURE_STATUS_ACTIVE);
    assert_true(id > 0);
    /* Ending a global-mode capture from another thread is refused. */
    struct thread_call ender = {.stream = s};
    on_other_thread(end_capture_on_thread, &ender);
    assert_int_equal(ender.result, CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD);
    assert_int_equal(p_cuStreamEndCapture(s, &g), CUDA_SUCCESS);
    assert_ptr_equal(g, captured);
    assert_int_equal(p_cuGraphDestroy(g), CUDA_SUCCESS);

    /* Thread-local: other threads are free, this one is not. */
    t.relaxed = 0;
    assert_int_equal(p_cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
                     CUDA_SUCCESS);
    on_other_thread(alloc_on_thread, &t);
    assert_int_equal(t.result, CUDA_SUCCESS);
    assert_int_equal(p_cuMemAlloc_v2(&p, MIB), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    assert_int_equal(p_cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);

    /* Relaxed: nobody is prohibited. */
    assert_int_equal(p_cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED), CUDA_SUCCESS);
    assert_int_equal(p_cuMemAlloc_v2(&p, MIB), CUDA_SUCCESS);
    assert_int_equal(p_cuMemFree_v2(p), CUDA_SUCCESS);
    assert_int_equal(p_cuStreamEndCapture(s, &g), CUDA_SUCCESS);
    assert_int_equal(p_cuGraphDestroy(g), CUDA_SUCCESS);

    /* A stream waiting on an event recorded in a capture joins it, and
     * leaves it when the capture ends. */
    CUstream joined, origin;
    CUevent fork;
    assert_int_equal(p_cuStreamCreate(&joined, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuStreamCreate(&origin, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuEventCreate(&fork, 0), CUDA_SUCCESS);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(p_cuStreamBeginCapture_v2(origin, CU_STREAM_CAPTURE_MODE_GLOBAL),
                         CUDA_SUCCESS);
        assert_int_equal(p_cuEventRecord(fork, origin), CUDA_SUCCESS);
        assert_int_equal(p_cuStreamWaitEvent(joined, fork, 0), CUDA_SUCCESS);
        assert_int_equal(capture_status(joined), CU_STREAM_CAPTURE_STATUS_ACTIVE);
        assert_int_equal(launch(joined, 1000), CUDA_SUCCESS);
        if (round == 1)
            break; /* destroyed with the context, origin stream first */
        assert_int_equal(p_cuStreamEndCapture(origin, &g), CUDA_SUCCESS);
        assert_int_equal(capture_status(joined), CU_STREAM_CAPTURE_STATUS_NONE);
        assert_int_equal(p_cuGraphDestroy(g), CUDA_SUCCESS);
    }

    assert_int_equal(p_cuCtxDestroy_v2(c), CUDA_SUCCESS);
}

/* --- Graphs ------------------------------------------------------------------------ */

static void test_graphs(void **state)
{
    (void)state;
    CUcontext c = ctx_on(0);
    CUstream s;
    assert_int_equal(p_cuStreamCreate(&s, 0), CUDA_SUCCESS);
    unsigned long long busy0 = p_fakecuda_busy_us(0), used0 = used(0);

    CUgraph g;
    CUgraphExec e, e2, huge;
    CUdeviceptr p;
    assert_int_equal(p_cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
    assert_int_equal(launch(s, 3000), CUDA_SUCCESS);
    assert_int_equal(p_cuMemAllocAsync(&p, 5 * MIB, s), CUDA_SUCCESS);
    assert_int_equal(launch(s, 2000), CUDA_SUCCESS);
    assert_int_equal(p_cuMemFreeAsync(p, s), CUDA_SUCCESS);
    assert_int_equal(p_cuStreamEndCapture(s, &g), CUDA_SUCCESS);
    assert_int_equal(p_cuGraphInstantiateWithFlags(&e, g, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuGraphDestroy(g), CUDA_SUCCESS); /* the exec does not need it */
    assert_int_equal(used(0), used0);
    assert_int_equal(graph_attr(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT), 0);

    /* The graph memory is backed at the first launch only. */
    assert_int_equal(p_cuGraphLaunch(e, s), CUDA_SUCCESS);
    assert_int_equal(p_cuGraphLaunch_ptsz(e, s), CUDA_SUCCESS);
    assert_int_equal(p_cuStreamSynchronize(s), CUDA_SUCCESS);
    assert_true(p_fakecuda_busy_us(0) - busy0 >= 10000);
    assert_int_equal(graph_attr(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT), 6 * MIB);
    assert_int_equal(graph_attr(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT), 6 * MIB);
    assert_int_equal(used(0), used0 + 6 * MIB);

    busy0 = p_fakecuda_busy_us(0);
    assert_int_equal(p_fakecuda_graph_exec_create(&e2, 4000, 10 * MIB), CUDA_SUCCESS);
    assert_int_equal(p_cuGraphLaunch(e2, s), CUDA_SUCCESS);
    assert_int_equal(p_cuStreamSynchronize(s), CUDA_SUCCESS);
    assert_true(p_fakecuda_busy_us(0) - busy0 >= 4000);
    assert_int_equal(graph_attr(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT), 16 * MIB);
    assert_int_equal(used(0), used0 + 16 * MIB);

    /* Destroying an exec frees its memory into the pool; trimming gives it back. */
    assert_int_equal(p_cuGraphExecDestroy(e), CUDA_SUCCESS);
    assert_int_equal(graph_attr(CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT), 10 * MIB);
    assert_int_equal(graph_attr(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT), 16 * MIB);
    assert_int_equal(used(0), used0 + 16 * MIB);
    assert_int_equal(p_cuDeviceGraphMemTrim(0), CUDA_SUCCESS);
    assert_int_equal(graph_attr(CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT), 10 * MIB);
    assert_int_equal(used(0), used0 + 10 * MIB);
    assert_int_equal(p_cuGraphExecDestroy(e2), CUDA_SUCCESS);
    assert_int_equal(p_cuDeviceGraphMemTrim(0), CUDA_SUCCESS);
    assert_int_equal(used(0), used0);
    assert_int_equal(graph_attr(CU_GRAPH_MEM_ATTR_USED_MEM_HIGH), 16 * MIB);
    cuuint64_t zero = 0;
    assert_int_equal(p_cuDeviceSetGraphMemAttribute(0, CU_GRAPH_MEM_ATTR_USED_MEM_HIGH, &zero),
                     CUDA_SUCCESS);
    assert_int_equal(graph_attr(CU_GRAPH_MEM_ATTR_USED_MEM_HIGH), 0);

    assert_int_equal(p_fakecuda_graph_exec_create(&huge, 0, 100 * GIB), CUDA_SUCCESS);
    assert_int_equal(p_cuGraphLaunch(huge, s), CUDA_ERROR_OUT_OF_MEMORY);
    assert_int_equal(p_cuGraphExecDestroy(huge), CUDA_SUCCESS);
    assert_int_equal(p_cuGraphExecDestroy(huge), CUDA_ERROR_INVALID_VALUE);

    assert_int_equal(p_cuStreamDestroy_v2(s), CUDA_SUCCESS);
    assert_int_equal(p_cuCtxDestroy_v2(c), CUDA_SUCCESS);
}

/* --- Other processes ------------------------------------------------------------------- */

static void hex_encode(const void *data, size_t n, char *out)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void test_ipc_in_other_process(void **state)
{
    (void)state;
    CUcontext c = ctx_on(0);
    CUdeviceptr p;
    CUipcMemHandle h;
    assert_int_equal(p_cuMemAlloc_v2(&p, 64 * MIB), CUDA_SUCCESS);
    assert_int_equal(p_cuIpcGetMemHandle(&h, p), CUDA_SUCCESS);
    assert_int_equal(p_cuIpcGetMemHandle(&h, p + 1), CUDA_ERROR_INVALID_VALUE);
    char hex[2 * sizeof h + 1];
    hex_encode(&h, sizeof h, hex);
    char *args[] = {"--ipc-open", hex, NULL};
    assert_int_equal(wait_exit_code(spawn_self(args, NULL, 0)), 0);
    assert_int_equal(p_cuMemFree_v2(p), CUDA_SUCCESS);
    assert_int_equal(p_cuCtxDestroy_v2(c), CUDA_SUCCESS);
}

/* Child: opens the handle; the mapping must not count as its memory. */
static int child_ipc_open(const char *hex)
{
    CUipcMemHandle h;
    for (size_t i = 0; i < sizeof h; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return 2;
        h.reserved[i] = (char)v;
    }
    CUcontext c;
    CUdeviceptr p;
    if (p_cuInit(0) || p_cuCtxCreate_v2(&c, 0, 0))
        return 3;
    unsigned long long before = used(0);
    if (p_cuIpcOpenMemHandle_v2(&p, h, 1) != CUDA_SUCCESS)
        return 4;
    memset((void *)(uintptr_t)p, 1, 4096);
    if (used(0) != before)
        return 5;
    if (p_cuIpcCloseMemHandle(p) != CUDA_SUCCESS ||
        p_cuIpcCloseMemHandle(p) != CUDA_ERROR_INVALID_VALUE)
        return 6;
    return p_cuCtxDestroy_v2(c) == CUDA_SUCCESS ? 0 : 7;
}

#define CHILD_KERNELS   20
#define CHILD_KERNEL_US 5000

/* Two processes each run 20 x 5 ms on device 0: if their kernels never
 * overlap, all of it takes at least 200 ms; and if the device is shared in
 * turn, neither finishes long before the other. */
static void test_processes_never_overlap(void **state)
{
    (void)state;
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    char ready_fd[16], go_fd[16], out[2][96];
    snprintf(ready_fd, sizeof ready_fd, "%d", ready[1]);
    snprintf(go_fd, sizeof go_fd, "%d", go[0]);
    const int close_in_child[] = {ready[0], go[1]};
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        snprintf(out[i], sizeof out[i], "%s/child%d.end", state_dir, i);
        char *args[] = {"--kernels", ready_fd, go_fd, out[i], NULL};
        pid[i] = spawn_self(args, close_in_child, 2);
    }
    close(ready[1]);
    close(go[0]);
    char byte[2];
    assert_int_equal(read(ready[0], byte, 1), 1); /* both children are ready to launch */
    assert_int_equal(read(ready[0], byte + 1, 1), 1);
    unsigned long long t0 = now_ns();
    close(go[1]); /* go */
    assert_int_equal(wait_exit_code(pid[0]), 0);
    assert_int_equal(wait_exit_code(pid[1]), 0);
    unsigned long long wall = now_ns() - t0;
    close(ready[0]);

    assert_true(wall >= 2ull * CHILD_KERNELS * CHILD_KERNEL_US * 1000);
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(out[i], "r");
        assert_non_null(f);
        unsigned long long end = 0;
        assert_int_equal(fscanf(f, "%llu", &end), 1);
        fclose(f);
        unlink(out[i]);
        if (end - t0 < 150000000ull)
            fail_msg("child %d finished after %llu ms: the device was not shared in turn", i,
                     (end - t0) / 1000000);
    }
}

/* Child: launches its kernels when the parent says go, and writes when it
 * finished. */
static int child_kernels(int ready_fd, int go_fd, const char *out)
{
    CUcontext c;
    CUstream s;
    if (p_cuInit(0) || p_cuCtxCreate_v2(&c, 0, 0) || p_cuStreamCreate(&s, 0))
        return 2;
    char byte = 'r', ignored;
    if (write(ready_fd, &byte, 1) != 1)
        return 3;
    close(ready_fd);
    if (read(go_fd, &ignored, 1) != 0) /* EOF when the parent closes it */
        return 4;
    for (int i = 0; i < CHILD_KERNELS; i++)
        if (launch(s, CHILD_KERNEL_US) != CUDA_SUCCESS)
            return 5;
    if (p_cuStreamSynchronize(s) != CUDA_SUCCESS)
        return 6;
    unsigned long long end = now_ns();
    if (p_fakecuda_busy_us(0) < (unsigned long long)CHILD_KERNELS * CHILD_KERNEL_US)
        return 7;
    FILE *f = fopen(out, "w");
    if (!f || fprintf(f, "%llu\n", end) < 0 || fclose(f) != 0)
        return 8;
    p_cuStreamDestroy_v2(s);
    return p_cuCtxDestroy_v2(c) == CUDA_SUCCESS ? 0 : 9;
}

/* --- NVML ------------------------------------------------------------------------------ */

typedef nvmlReturn_t (*nvml_void_fn)(void);
typedef nvmlReturn_t (*nvml_count_fn)(unsigned int *);
typedef nvmlReturn_t (*nvml_handle_fn)(unsigned int, nvmlDevice_t *);
typedef nvmlReturn_t (*nvml_uuid_fn)(nvmlDevice_t, char *, unsigned int);
typedef nvmlReturn_t (*nvml_mem_fn)(nvmlDevice_t, nvmlMemory_t *);
typedef nvmlReturn_t (*nvml_mem2_fn)(nvmlDevice_t, nvmlMemory_v2_t *);
typedef const char *(*nvml_string_fn)(nvmlReturn_t);

static void test_nvml(void **state)
{
    (void)state;
    void *lib = dlopen(FAKENVML_PATH, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(lib);
    nvml_void_fn init = (nvml_void_fn)dlsym(lib, "nvmlInit_v2");
    nvml_void_fn shutdown = (nvml_void_fn)dlsym(lib, "nvmlShutdown");
    nvml_count_fn count = (nvml_count_fn)dlsym(lib, "nvmlDeviceGetCount_v2");
    nvml_handle_fn handle = (nvml_handle_fn)dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    nvml_uuid_fn uuid = (nvml_uuid_fn)dlsym(lib, "nvmlDeviceGetUUID");
    nvml_mem_fn mem = (nvml_mem_fn)dlsym(lib, "nvmlDeviceGetMemoryInfo");
    nvml_mem2_fn mem2 = (nvml_mem2_fn)dlsym(lib, "nvmlDeviceGetMemoryInfo_v2");
    nvml_string_fn error_string = (nvml_string_fn)dlsym(lib, "nvmlErrorString");
    assert_true(init && shutdown && count && handle && uuid && mem && mem2 && error_string);
    assert_non_null(dlsym(lib, "nvmlInit"));

    unsigned int n = 0;
    assert_int_equal(count(&n), NVML_ERROR_UNINITIALIZED);
    assert_int_equal(init(), NVML_SUCCESS);
    assert_int_equal(count(&n), NVML_SUCCESS);
    assert_int_equal(n, 2);
    for (unsigned int i = 0; i < n; i++) {
        nvmlDevice_t d;
        char text[FX_NVML_UUID_LEN], want[64];
        CUuuid u;
        assert_int_equal(handle(i, &d), NVML_SUCCESS);
        assert_int_equal(uuid(d, text, sizeof text), NVML_SUCCESS);
        assert_int_equal(p_cuDeviceGetUuid_v2(&u, (CUdevice)i), CUDA_SUCCESS);
        const unsigned char *b = (const unsigned char *)u.bytes;
        snprintf(want, sizeof want,
                 "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                 b[14], b[15]);
        assert_string_equal(text, want);
        assert_int_equal(uuid(d, text, 10), NVML_ERROR_INSUFFICIENT_SIZE);

        nvmlMemory_t m;
        nvmlMemory_v2_t m2 = {0};
        assert_int_equal(mem(d, &m), NVML_SUCCESS);
        assert_int_equal(m.total, TOTAL_MEM);
        assert_int_equal(m.used, 0);
        assert_int_equal(mem2(d, &m2), NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
        m2.version = FX_NVML_MEMORY_V2;
        assert_int_equal(mem2(d, &m2), NVML_SUCCESS);
        assert_int_equal(m2.total, TOTAL_MEM);
        assert_int_equal(m2.free, TOTAL_MEM);
    }
    nvmlDevice_t d;
    assert_int_equal(handle(2, &d), NVML_ERROR_INVALID_ARGUMENT);
    assert_string_equal(error_string(NVML_ERROR_ARGUMENT_VERSION_MISMATCH),
                        "Argument version mismatch");
    assert_int_equal(shutdown(), NVML_SUCCESS);
    assert_int_equal(count(&n), NVML_ERROR_UNINITIALIZED);
    assert_int_equal(shutdown(), NVML_ERROR_UNINITIALIZED);
}

typedef nvmlReturn_t (*nvml_by_uuid_fn)(const char *, nvmlDevice_t *);
typedef nvmlReturn_t (*nvml_clock_fn)(nvmlDevice_t, nvmlClockType_t, unsigned int *);

/* Clocks not modelled: NVML reports the fixed max clock (its default here)
 * and finds devices by UUID. */
static void test_nvml_clock_and_uuid(void **state)
{
    (void)state;
    void *lib = dlopen(FAKENVML_PATH, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(lib);
    nvml_void_fn init = (nvml_void_fn)dlsym(lib, "nvmlInit_v2");
    nvml_void_fn shutdown = (nvml_void_fn)dlsym(lib, "nvmlShutdown");
    nvml_handle_fn handle = (nvml_handle_fn)dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    nvml_uuid_fn uuid = (nvml_uuid_fn)dlsym(lib, "nvmlDeviceGetUUID");
    nvml_by_uuid_fn by_uuid = (nvml_by_uuid_fn)dlsym(lib, "nvmlDeviceGetHandleByUUID");
    nvml_clock_fn clock = (nvml_clock_fn)dlsym(lib, "nvmlDeviceGetClockInfo");
    assert_true(init && shutdown && handle && uuid && by_uuid && clock);
    assert_int_equal(init(), NVML_SUCCESS);
    nvmlDevice_t d, found;
    char text[FX_NVML_UUID_LEN];
    assert_int_equal(handle(1, &d), NVML_SUCCESS);
    assert_int_equal(uuid(d, text, sizeof text), NVML_SUCCESS);
    assert_int_equal(by_uuid(text, &found), NVML_SUCCESS);
    assert_ptr_equal(found, d);
    assert_int_equal(by_uuid("GPU-nope", &found), NVML_ERROR_NOT_FOUND);
    unsigned int mhz = 0;
    assert_int_equal(clock(d, NVML_CLOCK_SM, &mhz), NVML_SUCCESS);
    assert_int_equal(mhz, 1980);
    assert_int_equal(clock(d, NVML_CLOCK_MEM, &mhz), NVML_ERROR_NOT_SUPPORTED);
    assert_int_equal(clock(d, NVML_CLOCK_SM, NULL), NVML_ERROR_INVALID_ARGUMENT);
    assert_int_equal(shutdown(), NVML_SUCCESS);
}

/* Clocks modelled (in a child: the settings are read at cuInit): an idle
 * device is at the max clock, and kernels run faster there; a device kept
 * busy drops to the loaded clock within the window; fakecuda_busy_us counts
 * the work, the duration at the loaded clock, either way. */
static void test_clock_model(void **state)
{
    (void)state;
    char *args[] = {"--clock", NULL};
    assert_int_equal(wait_exit_code(spawn_self(args, NULL, 0)), 0);
}

#define CLOCK_KERNELS 200
static int child_clock(void)
{
    setenv("FAKECUDA_CLOCK_MAX_MHZ", "2000", 1);
    setenv("FAKECUDA_CLOCK_LOADED_MHZ", "1000", 1);
    void *lib = dlopen(FAKENVML_PATH, RTLD_NOW | RTLD_LOCAL);
    nvml_void_fn init = lib ? (nvml_void_fn)dlsym(lib, "nvmlInit_v2") : NULL;
    nvml_handle_fn handle = lib ? (nvml_handle_fn)dlsym(lib, "nvmlDeviceGetHandleByIndex_v2") : NULL;
    nvml_clock_fn clock = lib ? (nvml_clock_fn)dlsym(lib, "nvmlDeviceGetClockInfo") : NULL;
    nvmlDevice_t d;
    CUcontext c;
    CUstream s;
    if (!init || !handle || !clock || init() || handle(0, &d))
        return 2;
    if (p_cuInit(0) || p_cuCtxCreate_v2(&c, 0, 0) || p_cuStreamCreate(&s, 0))
        return 3;
    unsigned int idle = 0, loaded = 0, after = 0;
    if (clock(d, NVML_CLOCK_SM, &idle) || idle != 2000)
        return 4;
    /* 200 ms of work: the first ~50 ms at 2000 MHz do twice the work per
     * ms, then the device is loaded. */
    unsigned long long busy0 = p_fakecuda_busy_us(0), t0 = now_ns();
    for (int i = 0; i < CLOCK_KERNELS; i++)
        if (launch(s, 1000) != CUDA_SUCCESS)
            return 5;
    /* The loaded clock shows while the work runs. Sampled until the queue
     * drains rather than at one instant: on a loaded machine the fake's own
     * gaps between kernels may keep it at the full clock for a while. */
    struct timespec ts = {0, 5 * 1000 * 1000};
    CUresult q;
    while ((q = p_cuStreamQuery(s)) == CUDA_ERROR_NOT_READY && loaded != 1000) {
        nanosleep(&ts, NULL);
        if (clock(d, NVML_CLOCK_SM, &loaded))
            return 6;
    }
    if (loaded != 1000)
        return 6;
    if (p_cuStreamSynchronize(s) != CUDA_SUCCESS)
        return 7;
    unsigned long long wall = now_ns() - t0, work = p_fakecuda_busy_us(0) - busy0;
    /* The work is the kernels' whole nominal time, done in at least half
     * of it: at 2000 MHz a busy µs does 2 µs of work. */
    if (work < CLOCK_KERNELS * 990ull || work > wall / 500)
        return 8;
    ts.tv_nsec = 60 * 1000 * 1000;
    nanosleep(&ts, NULL);
    if (clock(d, NVML_CLOCK_SM, &after) || after != 2000)
        return 10;
    p_cuStreamDestroy_v2(s);
    return p_cuCtxDestroy_v2(c) == CUDA_SUCCESS ? 0 : 11;
}

/* --- Setup --------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    return load_cuda();
}

/* Removes the lock files the fake made in the private directory. */
static int group_teardown(void **state)
{
    (void)state;
    char path[128];
    for (int dev = 0; dev < 2; dev++) {
        snprintf(path, sizeof path, "%s/gpu%d.busy", state_dir, dev);
        unlink(path);
        snprintf(path, sizeof path, "%s/gpu%d.turn", state_dir, dev);
        unlink(path);
        snprintf(path, sizeof path, "%s/gpu%d.clock", state_dir, dev);
        unlink(path);
    }
    rmdir(state_dir);
    return 0;
}

/* A fat binary as nvcc lays it out (16-byte header, then entries) holding
 * the fake's kernel description; `desc` is put in one entry. */
static size_t make_fatbin(unsigned char *out, size_t cap, const char *desc)
{
    size_t dlen = strlen(desc) + 1, body = 16 + dlen;
    assert_true(16 + body <= cap);
    memset(out, 0, 16 + body);
    const uint32_t magic = 0xBA55ED50u;
    memcpy(out, &magic, 4);
    out[4] = 1;  /* version */
    out[6] = 16; /* header size */
    memcpy(out + 8, &body, 8);
    out[16] = 2; /* entry kind: cubin; the fake reads no entry header */
    memcpy(out + 32, desc, dlen);
    return 16 + body;
}

static void test_modules_and_copies(void **state)
{
    (void)state;
    assert_int_equal(p_cuInit(0), CUDA_SUCCESS);
    CUcontext ctx = ctx_on(0);
    unsigned char img[512];
    make_fatbin(img, sizeof img, "fakecubin\nnap sleep 4\nadd add_u32 4,8,4,4\n");
    CUmodule mod = NULL;
    assert_int_equal(p_cuModuleLoadData(&mod, img), CUDA_SUCCESS);
    CUfunction add = NULL, nap = NULL;
    assert_int_equal(p_cuModuleGetFunction(&add, mod, "add"), CUDA_SUCCESS);
    assert_int_equal(p_cuModuleGetFunction(&nap, mod, "nap"), CUDA_SUCCESS);
    assert_int_equal(p_cuModuleGetFunction(&nap, mod, "none"), CUDA_ERROR_NOT_FOUND);
    /* Parameters at their natural alignment: 4 at 0, 8 at 8, 4 at 16, 4 at 20. */
    size_t off = 0, size = 0;
    assert_int_equal(p_cuFuncGetParamInfo(add, 1, &off, &size), CUDA_SUCCESS);
    assert_true(off == 8 && size == 8);
    assert_int_equal(p_cuFuncGetParamInfo(add, 3, &off, &size), CUDA_SUCCESS);
    assert_true(off == 20 && size == 4);
    assert_int_equal(p_cuFuncGetParamInfo(add, 4, &off, &size), CUDA_ERROR_INVALID_VALUE);

    /* Copies in and out, device to device, and a kernel computing in stream
     * order between them. */
    uint32_t host[64], back[64];
    for (unsigned i = 0; i < 64; i++)
        host[i] = i;
    CUdeviceptr a = 0, b = 0;
    assert_int_equal(p_cuMemAlloc_v2(&a, sizeof host), CUDA_SUCCESS);
    assert_int_equal(p_cuMemAlloc_v2(&b, sizeof host), CUDA_SUCCESS);
    CUstream s = NULL;
    assert_int_equal(p_cuStreamCreate(&s, 0), CUDA_SUCCESS);
    assert_int_equal(p_cuMemcpyHtoDAsync_v2(a, host, sizeof host, s), CUDA_SUCCESS);
    unsigned int us = 2000, n = 64, v = 7;
    CUdeviceptr p = a;
    void *params[] = {&us, &p, &n, &v};
    assert_int_equal(p_cuLaunchKernel(add, 1, 1, 1, 64, 1, 1, 0, s, params, NULL), CUDA_SUCCESS);
    assert_int_equal(p_cuMemcpyDtoDAsync_v2(b, a, sizeof host, s), CUDA_SUCCESS);
    assert_int_equal(p_cuMemcpyDtoHAsync_v2(back, b, sizeof back, s), CUDA_SUCCESS);
    for (unsigned i = 0; i < 64; i++)
        assert_int_equal(back[i], i + 7);
    assert_int_equal(p_cuMemcpyHtoD_v2(b, host, sizeof host), CUDA_SUCCESS);
    assert_int_equal(p_cuMemcpyDtoD_v2(a, b, 16), CUDA_SUCCESS);
    assert_int_equal(p_cuMemcpyDtoH_v2(back, a, sizeof back), CUDA_SUCCESS);
    assert_true(back[3] == 3 && back[4] == 4 + 7);
    /* Memset, plain and on the stream after a kernel. */
    assert_int_equal(p_cuMemsetD8_v2(a, 0xab, sizeof host), CUDA_SUCCESS);
    assert_int_equal(p_cuLaunchKernel(add, 1, 1, 1, 64, 1, 1, 0, s, params, NULL), CUDA_SUCCESS);
    assert_int_equal(p_cuMemsetD8Async(a, 0x01, 8, s), CUDA_SUCCESS);
    assert_int_equal(p_cuMemcpyDtoH_v2(back, a, sizeof back), CUDA_SUCCESS);
    assert_true(back[0] == 0x01010101u && back[1] == 0x01010101u && back[2] == 0xababababu + 7);
    assert_int_equal(p_cuMemsetD8_v2(a + 8, 0, sizeof host), CUDA_ERROR_INVALID_VALUE);

    /* Out of an allocation, or not device memory: refused. */
    assert_int_equal(p_cuMemcpyHtoD_v2(a + 8, host, sizeof host), CUDA_ERROR_INVALID_VALUE);
    assert_int_equal(p_cuMemcpyDtoH_v2(back, (CUdeviceptr)(uintptr_t)host, 4),
                     CUDA_ERROR_INVALID_VALUE);
    n = 65;
    assert_int_equal(p_cuLaunchKernel(add, 1, 1, 1, 1, 1, 1, 0, s, params, NULL), 700);
    /* Words at an address that is not a multiple of 4: misaligned (716). */
    n = 4;
    p = a + 2;
    assert_int_equal(p_cuLaunchKernel(add, 1, 1, 1, 1, 1, 1, 0, s, params, NULL), 716);
    p = a;

    /* An image that is not a fat binary, or describes no kernel. */
    CUmodule bad = NULL;
    assert_int_equal(p_cuModuleLoadData(&bad, "fakecubin\nx sleep 4\n"), 200);
    make_fatbin(img, sizeof img, "no kernels here");
    assert_int_equal(p_cuModuleLoadData(&bad, img), 200);
    make_fatbin(img, sizeof img, "fakecubin\nadd add_u32 4,4\n");
    assert_int_equal(p_cuModuleLoadData(&bad, img), 200);

    assert_int_equal(p_cuStreamDestroy_v2(s), CUDA_SUCCESS);
    assert_int_equal(p_cuMemFree_v2(a), CUDA_SUCCESS);
    assert_int_equal(p_cuMemFree_v2(b), CUDA_SUCCESS);
    /* Unloaded from its own context only, as the driver does. */
    assert_int_equal(p_cuCtxSetCurrent(NULL), CUDA_SUCCESS);
    assert_int_equal(p_cuModuleUnload(mod), CUDA_ERROR_INVALID_CONTEXT);
    assert_int_equal(p_cuCtxSetCurrent(ctx), CUDA_SUCCESS);
    assert_int_equal(p_cuModuleUnload(mod), CUDA_SUCCESS);
    assert_int_equal(p_cuModuleUnload(mod), CUDA_ERROR_INVALID_HANDLE);
    assert_int_equal(p_cuCtxDestroy_v2(ctx), CUDA_SUCCESS);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--ipc-open") == 0)
        return load_cuda() ? 1 : child_ipc_open(argv[2]);
    if (argc == 2 && strcmp(argv[1], "--clock") == 0)
        return load_cuda() ? 1 : child_clock();
    if (argc == 5 && strcmp(argv[1], "--kernels") == 0)
        return load_cuda() ? 1 : child_kernels(atoi(argv[2]), atoi(argv[3]), argv[4]);

    /* A private directory, so other tests using the fake never share a device lock. */
    if (!mkdtemp(state_dir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("FAKECUDA_DIR", state_dir, 1);
    setenv("FAKECUDA_DEVICES", "2", 1);
    setenv("FAKECUDA_TOTAL_MEM", "8589934592", 1);
    setenv("FAKECUDA_CTX_OVERHEAD", "314572800", 1);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_rules), /* first: it checks the state before cuInit */
        cmocka_unit_test(test_lookup_versions),
        cmocka_unit_test(test_lookup_covers_every_export),
        cmocka_unit_test(test_error_strings),
        cmocka_unit_test(test_devices),
        cmocka_unit_test(test_contexts),
        cmocka_unit_test(test_memory_classic),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_vmm),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_kernels_and_events),
        cmocka_unit_test(test_modules_and_copies),
        cmocka_unit_test(test_capture_invalidation),
        cmocka_unit_test(test_capture_modes),
        cmocka_unit_test(test_graphs),
        cmocka_unit_test(test_ipc_in_other_process),
        cmocka_unit_test(test_processes_never_overlap),
        cmocka_unit_test(test_nvml),
        cmocka_unit_test(test_nvml_clock_and_uuid),
        cmocka_unit_test(test_clock_model),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
