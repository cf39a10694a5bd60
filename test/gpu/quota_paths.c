/* SPDX-License-Identifier: Apache-2.0 */
/* Exercises every driver path that takes device memory under
 * libflexpu-cuda.so and asserts the quota on each: fills it through the path
 * in 64 MiB steps, checks the refusal comes exactly when the next step would
 * not fit, frees, and checks the memory came back. Written for a real GPU
 * (test/gpu/run.sh) and runs in CI against the fake driver too, so it is
 * known to work before a GPU is at hand.
 *
 *   quota_paths QUOTA_BYTES        (the library configured with that quota)
 *
 * It reaches the driver as libcudart does: dlopen + cuGetProcAddress_v2. */
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/cuda_abi.h"

#define MiB (1ull << 20)
#define STEP (64 * MiB)
#define MAX_STEPS 4096

typedef CUresult (*getproc_fn)(const char *, void **, int, cuuint64_t,
                               CUdriverProcAddressQueryResult *);
static getproc_fn getproc;
static int failures;

static void *fn(const char *name)
{
    void *p = NULL;
    CUdriverProcAddressQueryResult st;
    if (getproc(name, &p, 12080, 0, &st) != CUDA_SUCCESS || !p) {
        fprintf(stderr, "quota_paths: no entry point %s\n", name);
        exit(2);
    }
    return p;
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static CUresult (*p_meminfo)(size_t *, size_t *);

static uint64_t used_now(uint64_t *total)
{
    size_t f = 0, t = 0;
    if (p_meminfo(&f, &t) != CUDA_SUCCESS)
        return UINT64_MAX;
    if (total)
        *total = t;
    return t - f;
}

/* One allocation path: allocate(i) takes STEP bytes through it, release(i)
 * gives step i back. */
struct path {
    const char *name;
    CUresult (*allocate)(int i);
    CUresult (*release)(int i);
    uint64_t slack; /* what the path may round up by, per step */
};

static uint64_t handles[MAX_STEPS];
static CUstream stream;

static CUresult alloc_mem(int i)
{
    CUresult (*f)(CUdeviceptr *, size_t) = fn("cuMemAlloc");
    return f((CUdeviceptr *)&handles[i], STEP);
}
static CUresult free_mem(int i)
{
    CUresult (*f)(CUdeviceptr) = fn("cuMemFree");
    return f((CUdeviceptr)handles[i]);
}
static CUresult alloc_pitch(int i)
{
    CUresult (*f)(CUdeviceptr *, size_t *, size_t, size_t, unsigned) = fn("cuMemAllocPitch");
    size_t pitch;
    return f((CUdeviceptr *)&handles[i], &pitch, 64 * 1024, 1024, 16);
}
static CUresult alloc_managed(int i)
{
    CUresult (*f)(CUdeviceptr *, size_t, unsigned) = fn("cuMemAllocManaged");
    return f((CUdeviceptr *)&handles[i], STEP, 1 /* CU_MEM_ATTACH_GLOBAL */);
}
static CUresult alloc_array3d(int i)
{
    CUresult (*f)(CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *) = fn("cuArray3DCreate");
    CUDA_ARRAY3D_DESCRIPTOR d = {1024, 1024, 16, CU_AD_FORMAT_FLOAT, 1, 0}; /* 64 MiB */
    return f((CUarray *)&handles[i], &d);
}
static CUresult free_array(int i)
{
    CUresult (*f)(CUarray) = fn("cuArrayDestroy");
    return f((CUarray)(uintptr_t)handles[i]);
}
static CUresult alloc_vmm(int i)
{
    CUresult (*f)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                  unsigned long long) = fn("cuMemCreate");
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof(prop));
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    return f((CUmemGenericAllocationHandle *)&handles[i], STEP, &prop, 0);
}
static CUresult free_vmm(int i)
{
    CUresult (*f)(CUmemGenericAllocationHandle) = fn("cuMemRelease");
    return f(handles[i]);
}
static CUresult alloc_async(int i)
{
    CUresult (*f)(CUdeviceptr *, size_t, CUstream) = fn("cuMemAllocAsync");
    CUresult (*sync)(CUstream) = fn("cuStreamSynchronize");
    CUresult r = f((CUdeviceptr *)&handles[i], STEP, stream);
    return r == CUDA_SUCCESS ? sync(stream) : r;
}
static CUresult free_async(int i)
{
    CUresult (*f)(CUdeviceptr, CUstream) = fn("cuMemFreeAsync");
    CUresult r = f((CUdeviceptr)handles[i], stream);
    if (r != CUDA_SUCCESS)
        return r;
    if (i == 0) {
        /* The last one freed: the pool gives its memory back. */
        CUresult (*sync)(CUstream) = fn("cuStreamSynchronize");
        CUresult (*getpool)(CUmemoryPool *, CUdevice) = fn("cuDeviceGetMemPool");
        CUresult (*trim)(CUmemoryPool, size_t) = fn("cuMemPoolTrimTo");
        CUmemoryPool pool;
        sync(stream);
        if (getpool(&pool, 0) == CUDA_SUCCESS)
            trim(pool, 0);
    }
    return CUDA_SUCCESS;
}

static const struct path paths[] = {
    {"cuMemAlloc", alloc_mem, free_mem, 0},
    {"cuMemAllocPitch", alloc_pitch, free_mem, 0},
    {"cuMemAllocManaged", alloc_managed, free_mem, 0},
    {"cuArray3DCreate", alloc_array3d, free_array, 0},
    {"cuMemCreate", alloc_vmm, free_vmm, 0},
    {"cuMemAllocAsync", alloc_async, free_async, 2 * MiB},
};

static void run_path(const struct path *p, uint64_t quota)
{
    uint64_t used0 = used_now(NULL);
    int n = 0;
    CUresult r = CUDA_SUCCESS;
    while (n < MAX_STEPS && (r = p->allocate(n)) == CUDA_SUCCESS)
        n++;
    uint64_t used1 = used_now(NULL);
    uint64_t room = quota - used0;
    CHECK(r == CUDA_ERROR_OUT_OF_MEMORY, "%s: stopped with %d, not out-of-memory", p->name, r);
    /* Everything taken fits, and one more step would not have. */
    CHECK((uint64_t)n * STEP <= room, "%s: %d steps of 64 MiB in %" PRIu64 " bytes of room",
          p->name, n, room);
    CHECK((uint64_t)(n + 1) * (STEP + p->slack) > room,
          "%s: refused at %d steps with %" PRIu64 " bytes of room", p->name, n, room);
    CHECK(used1 >= used0 + (uint64_t)n * STEP, "%s: usage %" PRIu64 " -> %" PRIu64 " after %d steps",
          p->name, used0, used1, n);
    for (int i = n - 1; i >= 0; i--)
        CHECK(p->release(i) == CUDA_SUCCESS, "%s: release %d failed", p->name, i);
    uint64_t used2 = used_now(NULL);
    CHECK(used2 <= used0 + p->slack, "%s: usage %" PRIu64 " after freeing, %" PRIu64 " before",
          p->name, used2, used0);
    printf("path=%s steps=%d room=%" PRIu64 " used_before=%" PRIu64 " used_full=%" PRIu64
           " used_after=%" PRIu64 "\n",
           p->name, n, room, used0, used1, used2);
}

/* Graph memory: a captured allocation is backed from the graph pool at
 * launch, and that is booked. */
static void run_graph(void)
{
    CUresult (*begin)(CUstream, int) = fn("cuStreamBeginCapture");
    CUresult (*end)(CUstream, CUgraph *) = fn("cuStreamEndCapture");
    CUresult (*alloc)(CUdeviceptr *, size_t, CUstream) = fn("cuMemAllocAsync");
    CUresult (*freea)(CUdeviceptr, CUstream) = fn("cuMemFreeAsync");
    CUresult (*inst)(CUgraphExec *, CUgraph, unsigned long long) = fn("cuGraphInstantiateWithFlags");
    CUresult (*launch)(CUgraphExec, CUstream) = fn("cuGraphLaunch");
    CUresult (*sync)(CUstream) = fn("cuStreamSynchronize");
    CUresult (*execdestroy)(CUgraphExec) = fn("cuGraphExecDestroy");
    CUresult (*gdestroy)(CUgraph) = fn("cuGraphDestroy");
    CUresult (*trim)(CUdevice) = fn("cuDeviceGraphMemTrim");
    uint64_t used0 = used_now(NULL);
    CUgraph g;
    CUgraphExec e;
    CUdeviceptr p;
    CHECK(begin(stream, 0) == CUDA_SUCCESS, "graph: begin capture");
    CHECK(alloc(&p, 256 * MiB, stream) == CUDA_SUCCESS, "graph: captured allocation");
    CHECK(freea(p, stream) == CUDA_SUCCESS, "graph: captured free");
    CUresult r = end(stream, &g);
    CHECK(r == CUDA_SUCCESS, "graph: end capture %d (the capture must survive the hooks)", r);
    if (r != CUDA_SUCCESS)
        return;
    CHECK(inst(&e, g, 0) == CUDA_SUCCESS, "graph: instantiate");
    CHECK(launch(e, stream) == CUDA_SUCCESS, "graph: launch");
    sync(stream);
    uint64_t used1 = used_now(NULL);
    CHECK(used1 >= used0 + 256 * MiB, "graph: usage %" PRIu64 " -> %" PRIu64, used0, used1);
    execdestroy(e);
    gdestroy(g);
    trim(0);
    uint64_t used2 = used_now(NULL);
    CHECK(used2 <= used0, "graph: usage %" PRIu64 " after trim, %" PRIu64 " before", used2, used0);
    printf("path=graph used_before=%" PRIu64 " used_launched=%" PRIu64 " used_after=%" PRIu64 "\n",
           used0, used1, used2);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: quota_paths QUOTA_BYTES\n");
        return 2;
    }
    uint64_t quota = strtoull(argv[1], NULL, 0);
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "quota_paths: %s\n", dlerror());
        return 2;
    }
    getproc = (getproc_fn)dlsym(lib, "cuGetProcAddress_v2");
    CUresult (*init)(unsigned) = fn("cuInit");
    CUresult (*retain)(CUcontext *, CUdevice) = fn("cuDevicePrimaryCtxRetain");
    CUresult (*setcur)(CUcontext) = fn("cuCtxSetCurrent");
    CUresult (*mkstream)(CUstream *, unsigned) = fn("cuStreamCreate");
    p_meminfo = fn("cuMemGetInfo");
    CUcontext ctx;
    if (init(0) != CUDA_SUCCESS || retain(&ctx, 0) != CUDA_SUCCESS || setcur(ctx) != CUDA_SUCCESS ||
        mkstream(&stream, 1) != CUDA_SUCCESS) {
        fprintf(stderr, "quota_paths: no usable device 0\n");
        return 2;
    }
    uint64_t total = 0;
    used_now(&total);
    CHECK(total == quota, "cuMemGetInfo total %" PRIu64 ", quota %" PRIu64, total, quota);
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        run_path(&paths[i], quota);
    run_graph();
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
