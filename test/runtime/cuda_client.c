/* SPDX-License-Identifier: Apache-2.0 */
/* A CUDA program for the runtime tests, driven line by line on stdin so a
 * test can interleave several processes and kill one at any point. It
 * reaches the driver the way libcudart does: dlopen libcuda.so.1, dlsym
 * cuGetProcAddress_v2, and every other entry point through it. Each command
 * prints one line: "ok ..." or "err CODE". */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/cuda_abi.h"
#include "runtime/nvml_abi.h"

#define CUDA_VERSION_USED 13000

typedef CUresult (*getproc_fn)(const char *, void **, int, cuuint64_t,
                               CUdriverProcAddressQueryResult *);
static getproc_fn getproc;
static void *libcuda;

static void *entry_at(const char *name, int version, cuuint64_t flags)
{
    void *p = NULL;
    CUdriverProcAddressQueryResult st = 0;
    if (getproc(name, &p, version, flags, &st) != CUDA_SUCCESS)
        return NULL;
    return p;
}

static void *entry(const char *name, cuuint64_t flags)
{
    return entry_at(name, CUDA_VERSION_USED, flags);
}

#define CALL(type, name, flags, ...)                                                               \
    ({                                                                                             \
        type fn_ = (type)entry(name, flags);                                                       \
        fn_ ? fn_(__VA_ARGS__) : CUDA_ERROR_NOT_FOUND;                                             \
    })
/* The variant an older program gets: the entry point at CUDA `version`. */
#define CALL_AT(type, name, version, ...)                                                          \
    ({                                                                                             \
        type fn_ = (type)entry_at(name, version, 0);                                               \
        fn_ ? fn_(__VA_ARGS__) : CUDA_ERROR_NOT_FOUND;                                             \
    })
typedef CUresult (*f_alloc32)(CUdeviceptr_v1 *, unsigned);
typedef CUresult (*f_pitch32)(CUdeviceptr_v1 *, unsigned *, unsigned, unsigned, unsigned);
typedef CUresult (*f_meminfo32)(unsigned *, unsigned *);
typedef CUresult (*f_totalmem32)(unsigned *, CUdevice);
typedef CUresult (*f_arr32)(CUarray *, const CUDA_ARRAY_DESCRIPTOR_v1 *);
typedef CUresult (*f_arr3_32)(CUarray *, const CUDA_ARRAY3D_DESCRIPTOR_v1 *);
typedef CUresult (*f_dev)(CUdevice);
typedef CUresult (*f_ctxcreate2)(CUcontext *, unsigned, CUdevice);

typedef CUresult (*f_u)(unsigned);
typedef CUresult (*f_ctxretain)(CUcontext *, CUdevice);
typedef CUresult (*f_ctxset)(CUcontext);
typedef CUresult (*f_ctxget)(CUcontext *);
typedef CUresult (*f_ctxcreate4)(CUcontext *, void *, unsigned, CUdevice);
typedef CUresult (*f_alloc)(CUdeviceptr *, size_t);
typedef CUresult (*f_free)(CUdeviceptr);
typedef CUresult (*f_pitch)(CUdeviceptr *, size_t *, size_t, size_t, unsigned);
typedef CUresult (*f_managed)(CUdeviceptr *, size_t, unsigned);
typedef CUresult (*f_arr)(CUarray *, const CUDA_ARRAY_DESCRIPTOR *);
typedef CUresult (*f_arr3)(CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *);
typedef CUresult (*f_arrfree)(CUarray);
typedef CUresult (*f_mip)(CUmipmappedArray *, const CUDA_ARRAY3D_DESCRIPTOR *, unsigned);
typedef CUresult (*f_mipfree)(CUmipmappedArray);
typedef CUresult (*f_memcreate)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                                unsigned long long);
typedef CUresult (*f_memrelease)(CUmemGenericAllocationHandle);
typedef CUresult (*f_memretain)(CUmemGenericAllocationHandle *, void *);
typedef CUresult (*f_async)(CUdeviceptr *, size_t, CUstream);
typedef CUresult (*f_freeasync)(CUdeviceptr, CUstream);
typedef CUresult (*f_void)(void);
typedef CUresult (*f_getpool)(CUmemoryPool *, CUdevice);
typedef CUresult (*f_trim)(CUmemoryPool, size_t);
typedef CUresult (*f_meminfo)(size_t *, size_t *);
typedef CUresult (*f_totalmem)(size_t *, CUdevice);
typedef CUresult (*f_streamcreate)(CUstream *, unsigned);
typedef CUresult (*f_begincap)(CUstream, int);
typedef CUresult (*f_endcap)(CUstream, CUgraph *);
typedef CUresult (*f_inst)(CUgraphExec *, CUgraph, unsigned long long);
typedef CUresult (*f_glaunch)(CUgraphExec, CUstream);
typedef CUresult (*f_streamsync)(CUstream);
typedef CUresult (*f_ipcget)(CUipcMemHandle *, CUdeviceptr);
typedef CUresult (*f_ipcopen)(CUdeviceptr *, CUipcMemHandle, unsigned);
typedef CUresult (*f_ipcclose)(CUdeviceptr);
typedef CUresult (*f_launchk)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                              unsigned, unsigned, CUstream, void **, void **);
typedef CUresult (*f_reserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
typedef CUresult (*f_map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
                          unsigned long long);
typedef CUresult (*f_unmap)(CUdeviceptr, size_t);
typedef CUresult (*f_devreset)(CUdevice);
typedef CUresult (*f_poolcreate)(CUmemoryPool *, const CUmemPoolProps *);
typedef CUresult (*f_palloc)(CUdeviceptr *, size_t, CUmemoryPool, CUstream);
typedef CUresult (*f_pdestroy)(CUmemoryPool);

/* Handles by number, so the test names what it frees. */
#define MAX_IDS 4096
static uint64_t ids[MAX_IDS];
static int n_ids;

/* Background allocations (bgasync) record their handles from their own
 * threads. */
static pthread_mutex_t ids_lock = PTHREAD_MUTEX_INITIALIZER;

/* Prints "<prefix>ok ID", or the error when the table is full. */
static void ok_id_as(const char *prefix, uint64_t v)
{
    pthread_mutex_lock(&ids_lock);
    if (n_ids == MAX_IDS)
        printf("%serr table-full\n", prefix);
    else {
        ids[n_ids] = v;
        printf("%sok %d\n", prefix, n_ids++);
    }
    pthread_mutex_unlock(&ids_lock);
}

static void ok_id(uint64_t v)
{
    ok_id_as("", v);
}

static uint64_t id_of_num(uint64_t i)
{
    pthread_mutex_lock(&ids_lock);
    uint64_t v = i < (uint64_t)n_ids ? ids[i] : 0;
    pthread_mutex_unlock(&ids_lock);
    return v;
}

static uint64_t id_of(const char *s)
{
    int i = atoi(s);
    return i >= 0 ? id_of_num((uint64_t)i) : 0;
}

static void reply(CUresult r)
{
    if (r == CUDA_SUCCESS)
        printf("ok\n");
    else
        printf("err %d\n", r);
}

static void where(void *p)
{
    Dl_info info;
    if (!p) {
        printf("ok null\n");
        return;
    }
    if (!dladdr(p, &info) || !info.dli_fname) {
        printf("ok unknown\n");
        return;
    }
    const char *base = strrchr(info.dli_fname, '/');
    printf("ok %s %s\n", base ? base + 1 : info.dli_fname, info.dli_sname ? info.dli_sname : "?");
}

/* The 32-bit and other pre-current variants, asked for at the version that
 * returns them: "legacy NAME ARGS". */
static void legacy(const char *name, uint64_t x, uint64_t y, uint64_t z)
{
    CUresult r;
    if (!strcmp(name, "alloc")) {
        CUdeviceptr_v1 p;
        r = CALL_AT(f_alloc32, "cuMemAlloc", 3000, &p, (unsigned)x);
        r ? reply(r) : ok_id(p);
    } else if (!strcmp(name, "pitch")) {
        CUdeviceptr_v1 p;
        unsigned pitch;
        r = CALL_AT(f_pitch32, "cuMemAllocPitch", 3000, &p, &pitch, (unsigned)x, (unsigned)y, 4);
        r ? reply(r) : ok_id(p);
    } else if (!strcmp(name, "meminfo")) {
        unsigned f = 0, t = 0;
        r = CALL_AT(f_meminfo32, "cuMemGetInfo", 3000, &f, &t);
        r ? reply(r) : (void)printf("ok %u %u\n", f, t);
    } else if (!strcmp(name, "totalmem")) {
        unsigned t = 0;
        r = CALL_AT(f_totalmem32, "cuDeviceTotalMem", 3000, &t, 0);
        r ? reply(r) : (void)printf("ok %u\n", t);
    } else if (!strcmp(name, "array")) {
        CUDA_ARRAY_DESCRIPTOR_v1 d = {(unsigned)x, (unsigned)y, CU_AD_FORMAT_FLOAT, 1};
        CUarray h;
        r = CALL_AT(f_arr32, "cuArrayCreate", 3000, &h, &d);
        r ? reply(r) : ok_id((uint64_t)(uintptr_t)h);
    } else if (!strcmp(name, "array3d")) {
        CUDA_ARRAY3D_DESCRIPTOR_v1 d = {(unsigned)x, (unsigned)y, (unsigned)z, CU_AD_FORMAT_FLOAT,
                                        1, 0};
        CUarray h;
        r = CALL_AT(f_arr3_32, "cuArray3DCreate", 3000, &h, &d);
        r ? reply(r) : ok_id((uint64_t)(uintptr_t)h);
    } else if (!strcmp(name, "release")) {
        reply(CALL_AT(f_dev, "cuDevicePrimaryCtxRelease", 7000, (CUdevice)x));
    } else if (!strcmp(name, "reset")) {
        reply(CALL_AT(f_dev, "cuDevicePrimaryCtxReset", 7000, (CUdevice)x));
    } else if (!strcmp(name, "ctxnew")) {
        CUcontext ctx;
        r = CALL_AT(f_ctxcreate2, "cuCtxCreate", 3010, &ctx, 0, (CUdevice)x);
        r ? reply(r) : ok_id((uint64_t)(uintptr_t)ctx);
    } else if (!strcmp(name, "ctxdestroy")) {
        reply(CALL_AT(f_ctxset, "cuCtxDestroy", 3010, (CUcontext)(uintptr_t)id_of_num(x)));
    } else {
        printf("err unknown-legacy\n");
    }
}

/* The launch entry points a burn can use: every one the library arbitrates. */
typedef CUresult (*f_kernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, CUstream, void **, void **);
typedef CUresult (*f_kernel_ex)(const CUlaunchConfig *, CUfunction, void **, void **);
typedef CUresult (*f_coop)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                           unsigned, CUstream, void **);
typedef CUresult (*f_graph_launch)(CUgraphExec, CUstream);
typedef CUresult (*f_paramseti)(CUfunction, int, unsigned);
typedef CUresult (*f_grid)(CUfunction, int, int);
typedef CUresult (*f_grid_async)(CUfunction, int, int, CUstream);
typedef CUresult (*f_multi)(CUDA_LAUNCH_PARAMS *, unsigned, unsigned);
static struct {
    int kind; /* 0 kernel, 1 ex, 2 coop, 3 graph, 4 grid, 5 grid async, 6 multi-device */
    f_kernel kernel;
    f_kernel_ex ex;
    f_coop coop;
    f_graph_launch graph;
    f_grid grid;
    f_grid_async grid_async;
    f_multi multi;
    CUgraphExec exec;
} L;

static CUresult launcher_setup(const char *kind, unsigned dur)
{
    memset(&L, 0, sizeof(L));
    cuuint64_t pt = strstr(kind, "_ptsz") ? CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM : 0;
    if (!strncmp(kind, "kernel", 6)) {
        L.kernel = (f_kernel)entry("cuLaunchKernel", pt);
        return L.kernel ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
    }
    if (!strncmp(kind, "ex", 2)) {
        L.kind = 1;
        L.ex = (f_kernel_ex)entry("cuLaunchKernelEx", pt);
        return L.ex ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
    }
    if (!strncmp(kind, "coop", 4)) {
        L.kind = 2;
        L.coop = (f_coop)entry("cuLaunchCooperativeKernel", pt);
        return L.coop ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
    }
    if (!strcmp(kind, "grid") || !strcmp(kind, "gridasync")) {
        /* The pre-4.0 API: the duration is set on the function first. */
        f_paramseti set = (f_paramseti)entry("cuParamSeti", 0);
        L.kind = kind[4] ? 5 : 4;
        L.grid = (f_grid)entry("cuLaunchGrid", 0);
        L.grid_async = (f_grid_async)entry("cuLaunchGridAsync", 0);
        if (!set || !L.grid || !L.grid_async)
            return CUDA_ERROR_NOT_FOUND;
        return set((CUfunction)(uintptr_t)1, 0, dur);
    }
    if (!strcmp(kind, "multi")) {
        L.kind = 6;
        L.multi = (f_multi)entry("cuLaunchCooperativeKernelMultiDevice", 0);
        return L.multi ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
    }
    if (!strncmp(kind, "graph", 5)) {
        L.kind = 3;
        L.graph = (f_graph_launch)entry("cuGraphLaunch", pt);
        CUresult (*mk)(CUgraphExec *, unsigned, size_t) =
            (CUresult(*)(CUgraphExec *, unsigned, size_t))dlsym(libcuda, "fakecuda_graph_exec_create");
        if (!L.graph || !mk)
            return CUDA_ERROR_NOT_FOUND;
        return mk(&L.exec, dur, 0);
    }
    return CUDA_ERROR_INVALID_VALUE;
}

static CUresult launch_one(void **params)
{
    CUfunction f = (CUfunction)(uintptr_t)1;
    CUlaunchConfig cfg = {1, 1, 1, 1, 1, 1, 0, NULL, NULL, 0};
    switch (L.kind) {
    case 1:
        return L.ex(&cfg, f, params, NULL);
    case 2:
        return L.coop(f, 1, 1, 1, 1, 1, 1, 0, NULL, params);
    case 3:
        return L.graph(L.exec, NULL);
    case 4:
        return L.grid(f, 1, 1);
    case 5:
        return L.grid_async(f, 1, 1, NULL);
    case 6: {
        CUDA_LAUNCH_PARAMS p = {f, 1, 1, 1, 1, 1, 1, 0, NULL, params};
        return L.multi(&p, 1, 0);
    }
    default:
        return L.kernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, params, NULL);
    }
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct sampler {
    unsigned long long (*busy)(int);
    int done;
    unsigned long long busy_in_window;
    uint64_t ms;
    uint64_t warmup_ms;
    uint64_t start_ns; /* burnat: the window's CLOCK_MONOTONIC start (0: after warmup_ms) */
};

static void sleep_until(uint64_t t_ns)
{
    struct timespec t = {(time_t)(t_ns / 1000000000ull), (long)(t_ns % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
        ;
}

static void *sample_window(void *arg)
{
    struct sampler *s = arg;
    /* burnat gives every client the same absolute window, so tenants whose
     * commands arrive at different times (a loaded machine) are still
     * measured over the same interval of contention. */
    uint64_t start = s->start_ns ? s->start_ns : now_ns() + s->warmup_ms * 1000000ull;
    sleep_until(start);
    unsigned long long b0 = s->busy(0);
    sleep_until(start + s->ms * 1000000ull);
    s->busy_in_window = s->busy(0) - b0;
    __atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* bgasync: one cuMemAllocAsync on a thread of its own, in the context
 * current where it was asked. */
struct bg_alloc {
    CUcontext ctx;
    size_t bytes;
};

static void *bg_async(void *arg)
{
    struct bg_alloc *a = arg;
    CUdeviceptr p = 0;
    CUresult r = CALL(f_ctxset, "cuCtxSetCurrent", 0, a->ctx);
    if (r == CUDA_SUCCESS)
        r = CALL(f_async, "cuMemAllocAsync", 0, &p, a->bytes, NULL);
    if (r == CUDA_SUCCESS)
        ok_id_as("bg ", p);
    else
        printf("bg err %d\n", r);
    free(a);
    return NULL;
}

static void run(char *cmd, char *a, char *b, char *c, char *e4)
{
    uint64_t x = a ? strtoull(a, NULL, 0) : 0;
    uint64_t y = b ? strtoull(b, NULL, 0) : 0;
    uint64_t z = c ? strtoull(c, NULL, 0) : 0;
    CUresult r;
    if (!strcmp(cmd, "init")) {
        reply(CALL(f_u, "cuInit", 0, 0));
    } else if (!strcmp(cmd, "ctx")) {
        CUcontext ctx;
        r = CALL(f_ctxretain, "cuDevicePrimaryCtxRetain", 0, &ctx, (CUdevice)x);
        if (r == CUDA_SUCCESS)
            r = CALL(f_ctxset, "cuCtxSetCurrent", 0, ctx);
        reply(r);
    } else if (!strcmp(cmd, "ctxcreate")) {
        CUcontext ctx;
        reply(CALL(f_ctxcreate4, "cuCtxCreate", 0, &ctx, NULL, 0, (CUdevice)x));
    } else if (!strcmp(cmd, "ctxnew")) {
        /* A context of its own (made current), by id. */
        CUcontext ctx;
        r = CALL(f_ctxcreate4, "cuCtxCreate", 0, &ctx, NULL, 0, (CUdevice)x);
        r ? reply(r) : ok_id((uint64_t)(uintptr_t)ctx);
    } else if (!strcmp(cmd, "ctxdestroy")) {
        reply(CALL(f_ctxset, "cuCtxDestroy", 0, (CUcontext)(uintptr_t)id_of(a)));
    } else if (!strcmp(cmd, "ctxset")) {
        reply(CALL(f_ctxset, "cuCtxSetCurrent", 0, (CUcontext)(uintptr_t)id_of(a)));
    } else if (!strcmp(cmd, "reset")) {
        reply(CALL(f_devreset, "cuDevicePrimaryCtxReset", 0, (CUdevice)x));
    } else if (!strcmp(cmd, "alloc")) {
        CUdeviceptr p;
        r = CALL(f_alloc, "cuMemAlloc", 0, &p, x);
        r ? reply(r) : ok_id(p);
    } else if (!strcmp(cmd, "free")) {
        reply(CALL(f_free, "cuMemFree", 0, id_of(a)));
    } else if (!strcmp(cmd, "allocrate")) {
        /* allocrate N BYTES: N allocate-and-free pairs; prints the mean ns
         * of one pair (the cost of the quota's bookkeeping, bench/). */
        f_alloc al = (f_alloc)entry("cuMemAlloc", 0);
        f_free fr = (f_free)entry("cuMemFree", 0);
        uint64_t t0 = now_ns();
        r = al && fr ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
        for (uint64_t i = 0; i < x && r == CUDA_SUCCESS; i++) {
            CUdeviceptr p;
            r = al(&p, y);
            if (r == CUDA_SUCCESS)
                r = fr(p);
        }
        if (r)
            reply(r);
        else
            printf("ok %llu\n", (unsigned long long)((now_ns() - t0) / (x ? x : 1)));
    } else if (!strcmp(cmd, "pitch")) {
        CUdeviceptr p;
        size_t pitch;
        r = CALL(f_pitch, "cuMemAllocPitch", 0, &p, &pitch, x, y, 4);
        r ? reply(r) : ok_id(p);
    } else if (!strcmp(cmd, "managed")) {
        CUdeviceptr p;
        r = CALL(f_managed, "cuMemAllocManaged", 0, &p, x, 1);
        r ? reply(r) : ok_id(p);
    } else if (!strcmp(cmd, "array")) {
        CUDA_ARRAY_DESCRIPTOR d = {x, y, CU_AD_FORMAT_FLOAT, 1};
        CUarray h;
        r = CALL(f_arr, "cuArrayCreate", 0, &h, &d);
        r ? reply(r) : ok_id((uint64_t)(uintptr_t)h);
    } else if (!strcmp(cmd, "array3d")) {
        CUDA_ARRAY3D_DESCRIPTOR d = {x, y, z, CU_AD_FORMAT_FLOAT, 1, 0};
        CUarray h;
        r = CALL(f_arr3, "cuArray3DCreate", 0, &h, &d);
        r ? reply(r) : ok_id((uint64_t)(uintptr_t)h);
    } else if (!strcmp(cmd, "arrfree")) {
        reply(CALL(f_arrfree, "cuArrayDestroy", 0, (CUarray)(uintptr_t)id_of(a)));
    } else if (!strcmp(cmd, "mipmap")) {
        CUDA_ARRAY3D_DESCRIPTOR d = {x, y, 0, CU_AD_FORMAT_FLOAT, 1, 0};
        CUmipmappedArray h;
        r = CALL(f_mip, "cuMipmappedArrayCreate", 0, &h, &d, (unsigned)z);
        r ? reply(r) : ok_id((uint64_t)(uintptr_t)h);
    } else if (!strcmp(cmd, "mipfree")) {
        reply(CALL(f_mipfree, "cuMipmappedArrayDestroy", 0, (CUmipmappedArray)(uintptr_t)id_of(a)));
    } else if (!strcmp(cmd, "vmm") || !strcmp(cmd, "vmmhost")) {
        CUmemAllocationProp prop;
        memset(&prop, 0, sizeof(prop));
        prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
        prop.location.type = !strcmp(cmd, "vmm") ? CU_MEM_LOCATION_TYPE_DEVICE
                                                 : CU_MEM_LOCATION_TYPE_HOST;
        prop.location.id = 0;
        CUmemGenericAllocationHandle h;
        r = CALL(f_memcreate, "cuMemCreate", 0, &h, x, &prop, 0);
        r ? reply(r) : ok_id(h);
    } else if (!strcmp(cmd, "vmmmap")) {
        /* vmmmap ID SIZE: reserve an address range and map the handle. */
        CUdeviceptr va;
        r = CALL(f_reserve, "cuMemAddressReserve", 0, &va, y, 0, 0, 0);
        if (r == CUDA_SUCCESS)
            r = CALL(f_map, "cuMemMap", 0, va, y, 0, id_of(a), 0);
        r ? reply(r) : ok_id(va);
    } else if (!strcmp(cmd, "vmmunmap")) {
        /* vmmunmap VA_ID SIZE */
        reply(CALL(f_unmap, "cuMemUnmap", 0, id_of(a), y));
    } else if (!strcmp(cmd, "vmmretain")) {
        /* vmmretain VA_ID: another reference to the handle mapped there. */
        CUmemGenericAllocationHandle h;
        r = CALL(f_memretain, "cuMemRetainAllocationHandle", 0, &h, (void *)(uintptr_t)id_of(a));
        r ? reply(r) : ok_id(h);
    } else if (!strcmp(cmd, "vmmrel")) {
        reply(CALL(f_memrelease, "cuMemRelease", 0, id_of(a)));
    } else if (!strcmp(cmd, "async") || !strcmp(cmd, "asyncpt")) {
        CUdeviceptr p;
        cuuint64_t fl = !strcmp(cmd, "asyncpt") ? CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM : 0;
        r = CALL(f_async, "cuMemAllocAsync", fl, &p, x, NULL);
        r ? reply(r) : ok_id(p);
    } else if (!strcmp(cmd, "bgasync")) {
        /* bgasync SIZE: answered "ok" at once; the allocation's own answer
         * comes when it ends, as a line "bg ok ID" or "bg err CODE". */
        struct bg_alloc *bg = calloc(1, sizeof *bg);
        pthread_t th;
        r = bg ? CALL(f_ctxget, "cuCtxGetCurrent", 0, &bg->ctx) : CUDA_ERROR_OUT_OF_MEMORY;
        if (r == CUDA_SUCCESS) {
            bg->bytes = x;
            printf("ok\n");
            if (pthread_create(&th, NULL, bg_async, bg) == 0)
                pthread_detach(th);
            else {
                free(bg);
                printf("bg err thread\n");
            }
        } else {
            free(bg);
            reply(r);
        }
    } else if (!strcmp(cmd, "asyncfree")) {
        reply(CALL(f_freeasync, "cuMemFreeAsync", 0, id_of(a), NULL));
    } else if (!strcmp(cmd, "pool")) {
        CUmemPoolProps props;
        memset(&props, 0, sizeof(props));
        props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
        props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        props.location.id = 0;
        CUmemoryPool pool;
        r = CALL(f_poolcreate, "cuMemPoolCreate", 0, &pool,
                 &props);
        r ? reply(r) : ok_id((uint64_t)(uintptr_t)pool);
    } else if (!strcmp(cmd, "palloc")) {
        /* palloc POOL SIZE */
        CUdeviceptr p;
        r = CALL(f_palloc, "cuMemAllocFromPoolAsync", 0, &p, y, (CUmemoryPool)(uintptr_t)id_of(a), NULL);
        r ? reply(r) : ok_id(p);
    } else if (!strcmp(cmd, "pdestroy")) {
        reply(CALL(f_pdestroy, "cuMemPoolDestroy", 0,
                   (CUmemoryPool)(uintptr_t)id_of(a)));
    } else if (!strcmp(cmd, "sync")) {
        reply(CALL(f_void, "cuCtxSynchronize", 0));
    } else if (!strcmp(cmd, "trim")) {
        CUmemoryPool pool;
        r = CALL(f_getpool, "cuDeviceGetMemPool", 0, &pool, 0);
        if (r == CUDA_SUCCESS)
            r = CALL(f_trim, "cuMemPoolTrimTo", 0, pool, x);
        reply(r);
    } else if (!strcmp(cmd, "meminfo")) {
        size_t f = 0, t = 0;
        r = CALL(f_meminfo, "cuMemGetInfo", 0, &f, &t);
        r ? reply(r) : (void)printf("ok %zu %zu\n", f, t);
    } else if (!strcmp(cmd, "meminfo_null")) {
        size_t t = 0;
        reply(CALL(f_meminfo, "cuMemGetInfo", 0, NULL, &t));
    } else if (!strcmp(cmd, "totalmem")) {
        size_t t = 0;
        r = CALL(f_totalmem, "cuDeviceTotalMem", 0, &t, 0);
        r ? reply(r) : (void)printf("ok %zu\n", t);
    } else if (!strcmp(cmd, "capture_alloc")) {
        /* A stream-ordered allocation captured in global mode: the capture
         * must survive the hook, and the graph memory is booked at launch. */
        CUstream s;
        CUgraph graph;
        CUgraphExec exec;
        CUdeviceptr p;
        r = CALL(f_streamcreate, "cuStreamCreate", 0, &s, 1);
        if (r == CUDA_SUCCESS)
            r = CALL(f_begincap, "cuStreamBeginCapture", 0, s, 0);
        if (r == CUDA_SUCCESS)
            r = CALL(f_async, "cuMemAllocAsync", 0, &p, x, s);
        if (r == CUDA_SUCCESS)
            r = CALL(f_endcap, "cuStreamEndCapture", 0, s, &graph);
        if (r == CUDA_SUCCESS)
            r = CALL(f_inst, "cuGraphInstantiateWithFlags", 0, &exec, graph, 0);
        if (r == CUDA_SUCCESS)
            r = CALL(f_glaunch, "cuGraphLaunch", 0, exec, s);
        if (r == CUDA_SUCCESS)
            r = CALL(f_streamsync, "cuStreamSynchronize", 0, s);
        reply(r);
    } else if (!strcmp(cmd, "capture_launch")) {
        /* capture_launch N: N kernel launches captured in global mode. The
         * library's bookkeeping (markers, queries) must not break it. */
        CUstream s;
        CUgraph graph;
        unsigned dur = 1;
        void *params[] = {&dur};
        r = CALL(f_streamcreate, "cuStreamCreate", 0, &s, 1);
        if (r == CUDA_SUCCESS)
            r = CALL(f_begincap, "cuStreamBeginCapture", 0, s, 0);
        for (uint64_t i = 0; i < x && r == CUDA_SUCCESS; i++)
            r = CALL(f_launchk, "cuLaunchKernel", 0, (CUfunction)(uintptr_t)1, 1, 1, 1, 1, 1, 1, 0,
                     s, params, NULL);
        CUresult e = CALL(f_endcap, "cuStreamEndCapture", 0, s, &graph);
        reply(r != CUDA_SUCCESS ? r : e);
    } else if (!strcmp(cmd, "ipc")) {
        /* Export an allocation and open it again: an import is no new
         * memory. (The fake driver allows opening in the same process.) */
        CUipcMemHandle h;
        CUdeviceptr p;
        r = CALL(f_ipcget, "cuIpcGetMemHandle", 0, &h, id_of(a));
        if (r == CUDA_SUCCESS)
            r = CALL(f_ipcopen, "cuIpcOpenMemHandle", 0, &p, h, 1);
        if (r == CUDA_SUCCESS)
            r = CALL(f_ipcclose, "cuIpcCloseMemHandle", 0, p);
        reply(r);
    } else if (!strcmp(cmd, "lookup")) {
        /* lookup NAME VERSION FLAGS: where the pointer handed out lives. */
        void *p = NULL;
        CUdriverProcAddressQueryResult st = 0;
        r = getproc(a ? a : "", &p, (int)y, z, &st);
        if (r != CUDA_SUCCESS)
            printf("err %d status=%d\n", r, st);
        else
            where(p);
    } else if (!strcmp(cmd, "legacy")) {
        legacy(a ? a : "", y, z, e4 ? strtoull(e4, NULL, 0) : 0);
    } else if (!strcmp(cmd, "dlsym")) {
        where(dlsym(libcuda, a ? a : ""));
    } else if (!strcmp(cmd, "nvml")) {
        void *nv = dlopen("libnvidia-ml.so.1", RTLD_NOW);
        nvmlReturn_t (*init)(void) = nv ? (nvmlReturn_t(*)(void))dlsym(nv, "nvmlInit_v2") : NULL;
        nvmlReturn_t (*get)(unsigned, nvmlDevice_t *) =
            nv ? (nvmlReturn_t(*)(unsigned, nvmlDevice_t *))dlsym(nv, "nvmlDeviceGetHandleByIndex_v2")
               : NULL;
        nvmlReturn_t (*info)(nvmlDevice_t, nvmlMemory_v2_t *) =
            nv ? (nvmlReturn_t(*)(nvmlDevice_t, nvmlMemory_v2_t *))dlsym(nv, "nvmlDeviceGetMemoryInfo_v2")
               : NULL;
        nvmlDevice_t d;
        nvmlMemory_v2_t m = {.version = FX_NVML_MEMORY_V2};
        nvmlReturn_t nr = !init ? 999 : init();
        if (nr == 0)
            nr = get(0, &d);
        if (nr == 0)
            nr = info(d, &m);
        if (nr)
            printf("err %d\n", nr);
        else
            printf("ok %llu %llu %llu\n", m.total, m.used, m.free);
    } else if (!strcmp(cmd, "burn") || !strcmp(cmd, "burnat") || !strcmp(cmd, "bursts")) {
        /* burn US MS [WARMUP]: keep the GPU fed with US-microsecond kernels
         * and measure MS milliseconds after WARMUP ms. burnat US MS START:
         * the same, measured from CLOCK_MONOTONIC nanosecond START. bursts US MS K GAP: K kernels, wait for them, idle
         * GAP ms, again. Prints the simulated kernel time completed within
         * the window (µs) and the launches made. */
        unsigned dur = (unsigned)x, k = (unsigned)z;
        unsigned gap = (!strcmp(cmd, "bursts") && e4) ? (unsigned)strtoul(e4, NULL, 0) : 0;
        void *params[] = {&dur};
        unsigned long long (*busy)(int) =
            (unsigned long long (*)(int))dlsym(libcuda, "fakecuda_busy_us");
        f_void sync = (f_void)entry("cuCtxSynchronize", 0);
        /* burn's fourth argument: which launch entry point to use. */
        const char *kind = (!strcmp(cmd, "burn") && e4) ? e4 : "kernel";
        if (!busy || !sync || launcher_setup(kind, dur) != CUDA_SUCCESS) {
            printf("err launcher %s\n", kind);
            return;
        }
        int bursts = !strcmp(cmd, "bursts");
        /* The window is measured by a sampler thread, so a launch that
         * waits for the GPU past the end does not stretch it. */
        int at = !strcmp(cmd, "burnat");
        struct sampler sm = {busy, 0, 0, y, (bursts || at) ? 0 : z, at ? z : 0};
        pthread_t th;
        pthread_create(&th, NULL, sample_window, &sm);
        unsigned long long n = 0;
        r = CUDA_SUCCESS;
        while (!__atomic_load_n(&sm.done, __ATOMIC_ACQUIRE) && r == CUDA_SUCCESS) {
            unsigned batch = bursts ? k : 1;
            for (unsigned i = 0; i < batch && r == CUDA_SUCCESS; i++, n++)
                r = launch_one(params);
            if (bursts) {
                sync();
                struct timespec g = {gap / 1000, (long)(gap % 1000) * 1000000L};
                nanosleep(&g, NULL);
            }
        }
        pthread_join(th, NULL);
        sync();
        if (r != CUDA_SUCCESS)
            printf("err %d\n", r);
        else
            printf("ok %llu %llu\n", sm.busy_in_window, n);
    } else if (!strcmp(cmd, "service")) {
        /* service US K GAP MS: a latency-sensitive service. Each request is
         * K kernels of US microseconds and a synchronize; requests come
         * with exponential gaps of mean GAP ms, for MS ms. Prints the p50
         * and p99 request latency and the number of requests (µs). */
        unsigned dur = (unsigned)x, k = (unsigned)y, gap_ms = (unsigned)z;
        uint64_t ms = e4 ? strtoull(e4, NULL, 0) : 1000;
        void *params[] = {&dur};
        f_void sync = (f_void)entry("cuCtxSynchronize", 0);
        if (!sync || launcher_setup("kernel", dur) != CUDA_SUCCESS) {
            printf("err launcher\n");
            return;
        }
        static uint64_t lat[100000];
        size_t n = 0;
        unsigned seed = 7;
        uint64_t end = now_ns() + ms * 1000000ull;
        r = CUDA_SUCCESS;
        while (now_ns() < end && n < sizeof lat / sizeof lat[0] && r == CUDA_SUCCESS) {
            uint64_t t0 = now_ns();
            for (unsigned i = 0; i < k && r == CUDA_SUCCESS; i++)
                r = launch_one(params);
            if (r == CUDA_SUCCESS)
                r = sync();
            lat[n++] = (now_ns() - t0) / 1000;
            double u = (rand_r(&seed) + 1.0) / ((double)RAND_MAX + 2.0);
            uint64_t g = (uint64_t)(-log(u) * gap_ms * 1e6);
            struct timespec ts = {(time_t)(g / 1000000000ull), (long)(g % 1000000000ull)};
            nanosleep(&ts, NULL);
        }
        if (r != CUDA_SUCCESS || !n) {
            printf("err %d\n", r);
            return;
        }
        qsort(lat, n, sizeof lat[0], cmp_u64);
        printf("ok %llu %llu %zu\n", (unsigned long long)lat[n / 2],
               (unsigned long long)lat[n * 99 / 100], n);
    } else if (!strcmp(cmd, "exit")) {
        fflush(stdout);
        exit(0);
    } else {
        printf("err unknown-command\n");
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    libcuda = dlopen("libcuda.so.1", RTLD_NOW);
    if (!libcuda) {
        printf("err dlopen %s\n", dlerror());
        return 1;
    }
    getproc = (getproc_fn)dlsym(libcuda, "cuGetProcAddress_v2");
    if (!getproc) {
        printf("err no cuGetProcAddress_v2\n");
        return 1;
    }
    char line[512];
    while (fgets(line, sizeof(line), stdin)) {
        char *save = NULL;
        char *cmd = strtok_r(line, " \t\r\n", &save);
        if (!cmd)
            continue;
        char *a = strtok_r(NULL, " \t\r\n", &save);
        char *b = strtok_r(NULL, " \t\r\n", &save);
        char *c = strtok_r(NULL, " \t\r\n", &save);
        char *d = strtok_r(NULL, " \t\r\n", &save);
        run(cmd, a, b, c, d);
    }
    return 0;
}
