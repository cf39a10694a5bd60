/* SPDX-License-Identifier: Apache-2.0 */
/* A flexpu-remoted worker: one client connection served with the driver API
 * (server.h). Everything the client names is an index into this worker's
 * tables or a pointer checked against its allocations; the driver is asked
 * nothing on a handle or address the client was not given. */
#include "remote/server_conn.h"

#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <stdalign.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "remote/cudart_abi.h"
#include "remote/net.h"
#include "remote/wire.h"
#include "runtime/cuda_abi.h"
#include "util/alloc.h"
#include "util/clock.h"


int fx_srv_cuda_error(CUresult r)
{
    switch (r) {
    case CUDA_SUCCESS: return cudaSuccess;
    case CUDA_ERROR_INVALID_VALUE: return cudaErrorInvalidValue;
    case CUDA_ERROR_OUT_OF_MEMORY: return cudaErrorMemoryAllocation;
    case CUDA_ERROR_NOT_INITIALIZED: return cudaErrorInitializationError;
    case CUDA_ERROR_DEINITIALIZED: return cudaErrorCudartUnloading;
    case CUDA_ERROR_NO_DEVICE: return cudaErrorNoDevice;
    case CUDA_ERROR_INVALID_DEVICE: return cudaErrorInvalidDevice;
    case 200: return cudaErrorInvalidKernelImage;
    case CUDA_ERROR_INVALID_CONTEXT: return cudaErrorDeviceUninitialized;
    case 209: return cudaErrorNoKernelImageForDevice;
    case CUDA_ERROR_INVALID_HANDLE: return cudaErrorInvalidResourceHandle;
    case CUDA_ERROR_NOT_FOUND: return cudaErrorSymbolNotFound;
    case CUDA_ERROR_NOT_READY: return cudaErrorNotReady;
    case 700: return cudaErrorIllegalAddress;
    case 701: return cudaErrorLaunchOutOfResources;
    case 719: return cudaErrorLaunchFailure;
    case CUDA_ERROR_NOT_PERMITTED: return cudaErrorNotPermitted;
    case CUDA_ERROR_NOT_SUPPORTED: return cudaErrorNotSupported;
    default: return cudaErrorUnknown;
    }
}

int fx_srv_reserve(void **arr, size_t *cap, size_t need, size_t elem, size_t max)
{
    if (need <= *cap)
        return 0;
    if (need > max)
        return -1;
    size_t n = *cap ? *cap * 2 : 16;
    if (n > max)
        n = max;
    void *p = fx_realloc(*arr, n * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = n;
    return 0;
}

static int load_driver(struct driver *d)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        FX_ERROR(COMP, "cannot load the driver", "error=\"%s\"", dlerror());
        return -1;
    }
#define DRIVER_LOAD(field, name, type)                                                             \
    d->field = (type)dlsym(h, #name);                                                              \
    if (!d->field) {                                                                               \
        FX_ERROR(COMP, "the driver lacks a function", "symbol=%s", #name);                        \
        return -1;                                                                                 \
    }
    DRIVER_FUNCS(DRIVER_LOAD)
#undef DRIVER_LOAD
    return 0;
}

/* --- Writing ---------------------------------------------------------------- */

/* Sends the replies built in c->out, each frame by the frame deadline. The
 * main thread only, outside fx_srv_busy/fx_srv_idle. */
static void flush_out(struct fx_srv_conn *c)
{
    if (!c->broken && c->out.len) {
        int rc = fx_chan_write_all(&c->ch, c->out.buf, c->out.len,
                                   fx_net_deadline(c->o->frame_timeout_ms));
        if (rc != 0) {
            FX_WARN(COMP, "cannot write to the client", "error=\"%s\"", strerror(-rc));
            c->broken = 1;
        }
        c->last_write_ms = fx_mono_ms();
    }
    c->out.len = 0;
    c->out.bad = 0;
}

/* --- Devices, streams, pointers -------------------------------------------- */

int fx_srv_use_dev(struct fx_srv_conn *c, unsigned dev)
{
    if ((int)dev >= c->ndev)
        return cudaErrorInvalidDevice;
    if (!c->ctx[dev]) {
        CUdevice h;
        CUresult r = c->d.DeviceGet(&h, (int)dev);
        if (r == CUDA_SUCCESS)
            r = c->d.PrimaryRetain(&c->ctx[dev], h);
        if (r != CUDA_SUCCESS) {
            c->ctx[dev] = NULL;
            return fx_srv_cuda_error(r);
        }
    }
    if (c->cur != (int)dev) {
        CUresult r = c->d.CtxSetCurrent(c->ctx[dev]);
        if (r != CUDA_SUCCESS)
            return fx_srv_cuda_error(r);
        c->cur = (int)dev;
    }
    return cudaSuccess;
}

int fx_srv_stream(struct fx_srv_conn *c, uint32_t id, unsigned dev, CUstream *out)
{
    if (id == 0) {
        *out = NULL;
        return cudaSuccess;
    }
    if (id > c->nstreams || !c->streams[id - 1].s || c->streams[id - 1].dev != (int)dev)
        return cudaErrorInvalidResourceHandle;
    *out = c->streams[id - 1].s;
    return cudaSuccess;
}

int fx_srv_stream_any(struct fx_srv_conn *c, uint32_t id, unsigned dev, CUstream *out,
                      unsigned *sdev)
{
    if (id != 0 && id <= c->nstreams && c->streams[id - 1].s)
        dev = (unsigned)c->streams[id - 1].dev;
    int rc = fx_srv_stream(c, id, dev, out);
    if (rc == cudaSuccess)
        rc = fx_srv_use_dev(c, dev);
    if (rc == cudaSuccess && sdev)
        *sdev = dev;
    return rc;
}

int fx_srv_owned(const struct fx_srv_conn *c, uint64_t p, uint64_t n)
{
    for (size_t i = 0; i < c->nallocs; i++) {
        const struct alloc *a = &c->allocs[i];
        if (p >= a->ptr && p - a->ptr <= a->size && n <= a->size - (p - a->ptr))
            return 1;
    }
    return 0;
}

int fx_srv_wait(struct fx_srv_conn *c, CUresult (*query)(void *), void *arg)
{
    unsigned sleep_ns = 0;
    for (;;) {
        CUresult r = query(arg);
        if (r != CUDA_ERROR_NOT_READY)
            return fx_srv_cuda_error(r);
        if (fx_srv_lost(c))
            return cudaErrorUnknown;
        /* Spin briefly (a short kernel's sync costs no sleep), then back off. */
        if (sleep_ns == 0) {
            sched_yield();
            sleep_ns = 1000;
        } else {
            struct timespec ts = {0, sleep_ns};
            nanosleep(&ts, NULL);
            sleep_ns = sleep_ns < 1000000 ? sleep_ns * 2 : 1000000;
        }
    }
}

struct stream_query {
    struct fx_srv_conn *c;
    CUstream s;
};

static CUresult query_stream(void *arg)
{
    const struct stream_query *q = arg;
    return q->c->d.StreamQuery(q->s);
}

/* Waits for `s` to finish its work (the progress thread tells the client
 * the worker is alive meanwhile: docs/REMOTE.md, "Failures"). */
static int wait_stream(struct fx_srv_conn *c, CUstream s)
{
    struct stream_query q = {c, s};
    int rc = fx_srv_wait(c, query_stream, &q);
    return rc == cudaSuccess ? fx_srv_cuda_error(c->d.StreamSynchronize(s)) : rc;
}

/* Waits for everything issued on device `dev` (its default stream and this
 * connection's streams). */
static int wait_dev(struct fx_srv_conn *c, unsigned dev)
{
    int rc = fx_srv_use_dev(c, dev);
    for (size_t i = 0; rc == cudaSuccess && i < c->nstreams; i++)
        if (c->streams[i].s && c->streams[i].dev == (int)dev)
            rc = wait_stream(c, c->streams[i].s);
    if (rc == cudaSuccess)
        rc = wait_stream(c, NULL);
    if (rc == cudaSuccess)
        rc = fx_srv_cuda_error(c->d.CtxSynchronize());
    return rc;
}

/* --- Requests ----------------------------------------------------------------
 * Each handler returns a cudaError_t and appends its reply fields to c->out
 * only on success. The device's context is current when they run (a stream
 * of another device, its own: fx_srv_stream_any). */

static int do_malloc(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    CUdeviceptr p = 0;
    if (q->u.malloc.size) {
        if (fx_srv_reserve((void **)&c->allocs, &c->cap_allocs, c->nallocs + 1, sizeof *c->allocs,
                    MAX_ALLOCS) != 0)
            return cudaErrorMemoryAllocation;
        CUresult r = c->d.MemAlloc(&p, q->u.malloc.size);
        if (r != CUDA_SUCCESS)
            return fx_srv_cuda_error(r);
        c->allocs[c->nallocs++] = (struct alloc){p, q->u.malloc.size, q->h.dev};
    }
    fx_wr_u64(&c->out, p);
    return cudaSuccess;
}

static int do_free(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    if (q->u.free.ptr == 0)
        return cudaSuccess;
    for (size_t i = 0; i < c->nallocs; i++) {
        if (c->allocs[i].ptr != q->u.free.ptr)
            continue;
        int rc = fx_srv_use_dev(c, (unsigned)c->allocs[i].dev);
        if (rc == cudaSuccess)
            rc = fx_srv_cuda_error(c->d.MemFree(q->u.free.ptr));
        if (rc == cudaSuccess)
            c->allocs[i] = c->allocs[--c->nallocs];
        return rc;
    }
    return cudaErrorInvalidValue;
}

static int do_h2d(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    CUstream s;
    int rc = fx_srv_stream_any(c, q->u.h2d.stream, q->h.dev, &s, NULL);
    if (rc != cudaSuccess)
        return rc;
    if (!fx_srv_owned(c, q->u.h2d.dst, q->u.h2d.n))
        return cudaErrorInvalidValue;
    /* A pageable source: the driver has read it when the call returns, so
     * the frame's buffer may be reused at once. */
    if (q->h.flags & FX_WIRE_NO_REPLY)
        return fx_srv_cuda_error(c->d.HtoDAsync(q->u.h2d.dst, q->u.h2d.data, q->u.h2d.n, s));
    rc = s ? wait_stream(c, s) : wait_dev(c, q->h.dev);
    return rc != cudaSuccess ? rc : fx_srv_cuda_error(c->d.HtoD(q->u.h2d.dst, q->u.h2d.data, q->u.h2d.n));
}

static int do_d2h(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    CUstream s;
    int rc = fx_srv_stream_any(c, q->u.d2h.stream, q->h.dev, &s, NULL);
    if (rc != cudaSuccess)
        return rc;
    if (!fx_srv_owned(c, q->u.d2h.src, q->u.d2h.size))
        return cudaErrorInvalidValue;
    rc = s ? wait_stream(c, s) : wait_dev(c, q->h.dev);
    if (rc != cudaSuccess)
        return rc;
    size_t mark = c->out.len;
    fx_wr_u32(&c->out, (uint32_t)q->u.d2h.size);
    unsigned char *dst = fx_wr_reserve(&c->out, q->u.d2h.size);
    if (!dst) {
        c->out.len = mark;
        c->out.bad = 0;
        return cudaErrorMemoryAllocation;
    }
    rc = fx_srv_cuda_error(c->d.DtoH(dst, q->u.d2h.src, q->u.d2h.size));
    if (rc != cudaSuccess)
        c->out.len = mark;
    return rc;
}

static int do_d2d(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    CUstream s;
    int rc = fx_srv_stream_any(c, q->u.d2d.stream, q->h.dev, &s, NULL);
    if (rc != cudaSuccess)
        return rc;
    if (!fx_srv_owned(c, q->u.d2d.dst, q->u.d2d.size) || !fx_srv_owned(c, q->u.d2d.src, q->u.d2d.size))
        return cudaErrorInvalidValue;
    if (q->h.flags & FX_WIRE_NO_REPLY)
        return fx_srv_cuda_error(c->d.DtoDAsync(q->u.d2d.dst, q->u.d2d.src, q->u.d2d.size, s));
    rc = s ? wait_stream(c, s) : wait_dev(c, q->h.dev);
    return rc != cudaSuccess ? rc
                             : fx_srv_cuda_error(c->d.DtoD(q->u.d2d.dst, q->u.d2d.src, q->u.d2d.size));
}

static int do_memset(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    CUstream s;
    int rc = fx_srv_stream_any(c, q->u.memset.stream, q->h.dev, &s, NULL);
    if (rc != cudaSuccess)
        return rc;
    if (!fx_srv_owned(c, q->u.memset.dst, q->u.memset.size))
        return cudaErrorInvalidValue;
    unsigned char v = (unsigned char)q->u.memset.value;
    if (q->h.flags & FX_WIRE_NO_REPLY)
        return fx_srv_cuda_error(c->d.MemsetD8Async(q->u.memset.dst, v, q->u.memset.size, s));
    rc = s ? wait_stream(c, s) : wait_dev(c, q->h.dev);
    return rc != cudaSuccess ? rc
                             : fx_srv_cuda_error(c->d.MemsetD8(q->u.memset.dst, v, q->u.memset.size));
}

static int do_attribute(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    if (q->u.attribute.device >= (unsigned)c->ndev)
        return cudaErrorInvalidDevice;
    if (q->u.attribute.attr > INT32_MAX)
        return cudaErrorInvalidValue;
    CUdevice h;
    int v = 0;
    CUresult r = c->d.DeviceGet(&h, (int)q->u.attribute.device);
    if (r == CUDA_SUCCESS)
        r = c->d.DeviceGetAttribute(&v, (int)q->u.attribute.attr, h);
    if (r != CUDA_SUCCESS)
        return fx_srv_cuda_error(r);
    fx_wr_u32(&c->out, (uint32_t)v);
    return cudaSuccess;
}

static int do_stream_create(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    size_t slot = 0;
    while (slot < c->nstreams && c->streams[slot].s)
        slot++;
    if (slot == c->nstreams && fx_srv_reserve((void **)&c->streams, &c->cap_streams, c->nstreams + 1,
                                       sizeof *c->streams, MAX_STREAMS) != 0)
        return cudaErrorMemoryAllocation;
    CUstream s = NULL;
    CUresult r = c->d.StreamCreate(&s, q->u.stream_create.flags & FX_CUDA_STREAM_NON_BLOCKING);
    if (r != CUDA_SUCCESS)
        return fx_srv_cuda_error(r);
    if (slot == c->nstreams)
        c->nstreams++;
    c->streams[slot] = (struct stream){s, q->h.dev};
    fx_wr_u32(&c->out, (uint32_t)slot + 1);
    return cudaSuccess;
}

static int do_stream_destroy(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    CUstream s;
    if (q->u.id.id == 0)
        return cudaErrorInvalidResourceHandle;
    int rc = fx_srv_stream_any(c, q->u.id.id, q->h.dev, &s, NULL);
    if (rc == cudaSuccess)
        fx_srv_blas_stream_gone(c, s);
    if (rc == cudaSuccess)
        rc = fx_srv_cuda_error(c->d.StreamDestroy(s));
    if (rc == cudaSuccess)
        c->streams[q->u.id.id - 1].s = NULL;
    return rc;
}

static int do_mem_get_info(struct fx_srv_conn *c)
{
    size_t free_b = 0, total = 0;
    CUresult r = c->d.MemGetInfo(&free_b, &total);
    if (r != CUDA_SUCCESS)
        return fx_srv_cuda_error(r);
    fx_wr_u64(&c->out, free_b);
    fx_wr_u64(&c->out, total);
    return cudaSuccess;
}

/* A fat binary, whole: the driver parses what its header says, so the size
 * it claims must be what was received. */
static int do_module_load(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    struct fx_fatbin_header hdr;
    size_t n = q->u.module_load.n;
    if (n < sizeof hdr)
        return cudaErrorInvalidKernelImage;
    memcpy(&hdr, q->u.module_load.image, sizeof hdr);
    if (hdr.magic != FX_FATBIN_MAGIC || hdr.header_size < sizeof hdr ||
        hdr.header_size > n || hdr.fat_size > n - hdr.header_size)
        return cudaErrorInvalidKernelImage;
    /* What the driver keeps of the connection's modules is host memory of
     * this worker, in the agent's container: bounded, as a tenant could
     * otherwise load MAX_MODULES images of 64 MiB (docs/REMOTE.md, "The
     * servers' host memory"). */
    if (n > c->max_module_bytes - c->module_bytes) {
        if (!c->module_refused)
            FX_WARN(COMP, "module refused: the connection's modules would exceed --max-module-mib",
                    "image_bytes=%zu loaded_bytes=%zu max_module_mib=%zu", n, c->module_bytes,
                    c->max_module_bytes >> 20);
        c->module_refused = 1;
        return cudaErrorMemoryAllocation;
    }
    size_t slot = 0;
    while (slot < c->nmods && c->mods[slot].m)
        slot++;
    if (slot == c->nmods && fx_srv_reserve((void **)&c->mods, &c->cap_mods, c->nmods + 1,
                                    sizeof *c->mods, MAX_MODULES) != 0)
        return cudaErrorMemoryAllocation;
    /* The driver wants the image aligned; the payload's copy is not. */
    void *img = fx_malloc(n);
    if (!img)
        return cudaErrorMemoryAllocation;
    memcpy(img, q->u.module_load.image, n);
    CUmodule m = NULL;
    CUresult r = c->d.ModuleLoadData(&m, img);
    fx_free(img);
    if (r != CUDA_SUCCESS)
        return fx_srv_cuda_error(r);
    if (slot == c->nmods)
        c->nmods++;
    c->mods[slot] = (struct module){m, q->h.dev, n};
    c->module_bytes += n;
    fx_wr_u32(&c->out, (uint32_t)slot + 1);
    return cudaSuccess;
}

static int do_module_unload(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    uint32_t id = q->u.id.id;
    if (id == 0 || id > c->nmods || !c->mods[id - 1].m)
        return cudaErrorInvalidResourceHandle;
    /* The driver unloads a module from its own context only. */
    int rc = fx_srv_use_dev(c, (unsigned)c->mods[id - 1].dev);
    if (rc != cudaSuccess)
        return rc;
    CUresult r = c->d.ModuleUnload(c->mods[id - 1].m);
    if (r != CUDA_SUCCESS)
        return fx_srv_cuda_error(r);
    c->mods[id - 1].m = NULL;
    c->module_bytes -= c->mods[id - 1].bytes;
    /* Its functions are gone with it: a launch of one is refused, never
     * handed to the driver. */
    for (size_t i = 0; i < c->nfuncs; i++)
        if (c->funcs[i].mod == id)
            c->funcs[i].f = NULL;
    return cudaSuccess;
}

/* Reads the kernel's parameter layout from the driver (CUDA 12.4+). */
static int param_layout(struct fx_srv_conn *c, struct func *fn)
{
    fn->nparams = 0;
    fn->args_len = 0;
    for (size_t i = 0; i < FX_WIRE_PARAMS_MAX; i++) {
        size_t off = 0, size = 0;
        CUresult r = c->d.FuncGetParamInfo(fn->f, i, &off, &size);
        if (r == CUDA_ERROR_INVALID_VALUE)
            return cudaSuccess; /* past the last parameter */
        if (r != CUDA_SUCCESS)
            return fx_srv_cuda_error(r);
        if (size == 0 || off > FX_WIRE_ARGS_MAX || size > FX_WIRE_ARGS_MAX - off)
            return cudaErrorNotSupported;
        fn->offset[i] = (uint16_t)off;
        fn->size[i] = (uint16_t)size;
        fn->nparams = (unsigned)i + 1;
        if (off + size > fn->args_len)
            fn->args_len = off + size;
    }
    /* All FX_WIRE_PARAMS_MAX read: exactly that many when there is no
     * next one, which the protocol carries; more otherwise. */
    size_t off = 0, size = 0;
    CUresult r = c->d.FuncGetParamInfo(fn->f, FX_WIRE_PARAMS_MAX, &off, &size);
    if (r == CUDA_ERROR_INVALID_VALUE)
        return cudaSuccess;
    return r == CUDA_SUCCESS ? cudaErrorNotSupported : fx_srv_cuda_error(r);
}

static int do_func_get(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    uint32_t mid = q->u.func_get.module;
    if (mid == 0 || mid > c->nmods || !c->mods[mid - 1].m || c->mods[mid - 1].dev != q->h.dev)
        return cudaErrorInvalidResourceHandle; /* none, or another device's */
    char name[FX_WIRE_NAME_MAX + 1];
    memcpy(name, q->u.func_get.name, q->u.func_get.name_len);
    name[q->u.func_get.name_len] = '\0';
    CUfunction f = NULL;
    CUresult r = c->d.ModuleGetFunction(&f, c->mods[mid - 1].m, name);
    if (r != CUDA_SUCCESS)
        return r == CUDA_ERROR_NOT_FOUND ? cudaErrorInvalidDeviceFunction : fx_srv_cuda_error(r);
    size_t id = 0;
    while (id < c->nfuncs && c->funcs[id].f != f)
        id++;
    if (id == c->nfuncs) {
        if (fx_srv_reserve((void **)&c->funcs, &c->cap_funcs, c->nfuncs + 1, sizeof *c->funcs,
                    MAX_FUNCS) != 0)
            return cudaErrorMemoryAllocation;
        c->funcs[id].f = f;
        c->funcs[id].mod = mid;
        c->funcs[id].dev = q->h.dev;
        int rc = param_layout(c, &c->funcs[id]);
        if (rc != cudaSuccess)
            return rc;
        c->nfuncs++;
    }
    const struct func *fn = &c->funcs[id];
    fx_wr_u32(&c->out, (uint32_t)id + 1);
    fx_wr_u32(&c->out, fn->nparams);
    for (unsigned i = 0; i < fn->nparams; i++) {
        fx_wr_u32(&c->out, fn->offset[i]);
        fx_wr_u32(&c->out, fn->size[i]);
    }
    return cudaSuccess;
}

static int do_launch(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    uint32_t id = q->u.launch.func;
    if (id == 0 || id > c->nfuncs)
        return cudaErrorInvalidDeviceFunction;
    const struct func *fn = &c->funcs[id - 1];
    if (!fn->f || fn->dev != q->h.dev)
        return cudaErrorInvalidDeviceFunction; /* unloaded, or of another device's context */
    if (q->u.launch.args_len != fn->args_len)
        return cudaErrorInvalidValue;
    CUstream s;
    int rc = fx_srv_stream(c, q->u.launch.stream, q->h.dev, &s);
    if (rc != cudaSuccess)
        return rc;
    /* The parameters at their offsets, in an aligned buffer. */
    if (fn->args_len)
        memcpy(c->args, q->u.launch.args, fn->args_len);
    void *params[FX_WIRE_PARAMS_MAX];
    for (unsigned i = 0; i < fn->nparams; i++)
        params[i] = c->args + fn->offset[i];
    const uint32_t *g = q->u.launch.grid, *b = q->u.launch.block;
    return fx_srv_cuda_error(c->d.LaunchKernel(fn->f, g[0], g[1], g[2], b[0], b[1], b[2],
                                        q->u.launch.shared_bytes, s,
                                        fn->nparams ? params : NULL, NULL));
}

static int dispatch(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    int rc = fx_srv_use_dev(c, q->h.dev);
    if (rc != cudaSuccess)
        return rc;
    switch (q->h.op) {
    case FX_OP_MALLOC: return do_malloc(c, q);
    case FX_OP_FREE: return do_free(c, q);
    case FX_OP_MEMCPY_H2D: return do_h2d(c, q);
    case FX_OP_MEMCPY_D2H: return do_d2h(c, q);
    case FX_OP_MEMCPY_D2D: return do_d2d(c, q);
    case FX_OP_MEMSET: return do_memset(c, q);
    case FX_OP_DEVICE_ATTRIBUTE: return do_attribute(c, q);
    case FX_OP_STREAM_CREATE: return do_stream_create(c, q);
    case FX_OP_STREAM_SYNC: {
        CUstream s;
        rc = fx_srv_stream_any(c, q->u.id.id, q->h.dev, &s, NULL);
        return rc != cudaSuccess ? rc : q->u.id.id ? wait_stream(c, s) : wait_dev(c, q->h.dev);
    }
    case FX_OP_STREAM_DESTROY: return do_stream_destroy(c, q);
    case FX_OP_DEVICE_SYNC: return wait_dev(c, q->h.dev);
    case FX_OP_MEM_GET_INFO: return do_mem_get_info(c);
    case FX_OP_MODULE_LOAD: return do_module_load(c, q);
    case FX_OP_MODULE_UNLOAD: return do_module_unload(c, q);
    case FX_OP_FUNC_GET: return do_func_get(c, q);
    case FX_OP_LAUNCH: return do_launch(c, q);
    case FX_OP_BLAS_CREATE:
    case FX_OP_BLAS_DESTROY:
    case FX_OP_BLAS_SET_STREAM:
    case FX_OP_BLAS_GEMM: return fx_srv_blas(c, q);
    case FX_OP_EVENT_CREATE:
    case FX_OP_EVENT_DESTROY:
    case FX_OP_EVENT_RECORD:
    case FX_OP_EVENT_QUERY:
    case FX_OP_EVENT_SYNC:
    case FX_OP_EVENT_ELAPSED:
    case FX_OP_STREAM_WAIT_EVENT: return fx_srv_event(c, q);
    default: return cudaErrorNotSupported; /* HELLO again */
    }
}

/* --- The connection ----------------------------------------------------------- */

#define IN_STEP (64u << 10) /* the frame buffer grows from this, as bytes arrive */
/* The frame buffer kept between frames: a copy's chunk and its fields. */
#define IN_KEEP (FX_WIRE_CHUNK + 4096u)

/* Reads a frame's payload of `len` bytes into c->in by `deadline`, growing
 * the buffer as the bytes arrive (never to the length a header announces
 * before the bytes are there). 0, or a negative errno. */
static int read_payload(struct fx_srv_conn *c, size_t len, int64_t deadline)
{
    size_t got = 0;
    while (got < len) {
        if (got == c->in_cap) {
            size_t n = c->in_cap < IN_STEP ? IN_STEP : c->in_cap * 2;
            n = n < len ? n : len;
            unsigned char *p = fx_realloc(c->in, n);
            if (!p)
                return -ENOMEM;
            c->in = p;
            c->in_cap = n;
        }
        size_t want = (c->in_cap < len ? c->in_cap : len) - got;
        int rc = fx_chan_read_all(&c->ch, c->in + got, want, deadline);
        if (rc != 0)
            return rc;
        got += want;
    }
    return 0;
}

/* The longest HELLO: its version and its token's length and bytes. */
#define HELLO_MAX (8u + FX_WIRE_TOKEN_MAX)

/* Reads one frame into c->in. Its first byte may take until `start_by`
 * (-1: for ever: a client may idle), the whole frame until frame_timeout_ms
 * after that byte, and never past `start_by`'s bound when `whole_by` is set
 * (HELLO: one deadline from the connection's start, and no more than
 * HELLO_MAX bytes: a worker not yet given a slot holds no frame buffer of
 * 64 MiB). 0, or -1 when the client left, was too slow or broke the
 * protocol (logged). */
static int read_frame(struct fx_srv_conn *c, struct fx_wire_req *q, int64_t start_by,
                      int whole_by)
{
    unsigned char hb[FX_WIRE_HDR_SIZE];
    struct fx_wire_hdr h;
    struct flexpu_error err = {0};
    int rc = fx_chan_read_all(&c->ch, hb, 1, start_by);
    int64_t deadline = fx_net_deadline(c->o->frame_timeout_ms);
    if (whole_by && start_by >= 0 && start_by < deadline)
        deadline = start_by;
    if (rc == 0)
        rc = fx_chan_read_all(&c->ch, hb + 1, sizeof hb - 1, deadline);
    if (rc == -ECONNRESET)
        return -1; /* the client left */
    if (rc != 0) {
        FX_WARN(COMP, "client lost", "error=\"%s\"", strerror(-rc));
        return -1;
    }
    if (fx_wire_hdr_decode(hb, &h, &err) != 0 || (h.op & FX_WIRE_REPLY)) {
        FX_WARN(COMP, "protocol error", "error=\"%s\" op=%u", err.msg, (unsigned)h.op);
        return -1;
    }
    if (whole_by && h.len > HELLO_MAX) {
        FX_WARN(COMP, "protocol error: the first frame is longer than a HELLO", "op=%u len=%u max=%u",
                (unsigned)h.op, h.len, HELLO_MAX);
        return -1;
    }
    rc = read_payload(c, h.len, deadline);
    if (rc != 0) {
        FX_WARN(COMP, "client lost in a frame", "error=\"%s\" len=%u", strerror(-rc), h.len);
        return -1;
    }
    if (fx_wire_req_decode(&h, c->in, q, &err) != 0) {
        FX_WARN(COMP, "protocol error", "error=\"%s\"", err.msg);
        return -1;
    }
    return 0;
}

static void reply(struct fx_srv_conn *c, const struct fx_wire_req *q, size_t at, size_t head, int status)
{
    if (status != cudaSuccess)
        c->out.len = head + FX_WIRE_REPLY_HEAD; /* no fields with an error */
    struct fx_wire_reply r = {status, c->deferred, c->deferred_seq};
    fx_wire_reply_patch(&c->out, head, &r);
    struct fx_wire_hdr h = {.op = (uint16_t)(q->h.op | FX_WIRE_REPLY), .seq = q->h.seq,
                            .dev = q->h.dev};
    fx_wr_end(&c->out, at, h);
    c->deferred = 0;
    c->deferred_seq = 0;
}

static int const_eq(const unsigned char *a, size_t an, const unsigned char *b, size_t bn)
{
    unsigned char d = an != bn;
    for (size_t i = 0; i < an && i < bn; i++)
        d |= a[i] ^ b[i];
    return d == 0;
}

int fx_srv_start_driver(struct fx_srv_conn *c)
{
    int status = cudaSuccess;
    fx_srv_busy(c);
    if (load_driver(&c->d) != 0)
        status = cudaErrorNoDevice;
    else {
        CUresult r = c->d.Init(0);
        if (r == CUDA_SUCCESS)
            r = c->d.DeviceGetCount(&c->ndev);
        if (r == CUDA_SUCCESS)
            r = c->d.DriverGetVersion(&c->driver_version);
        if (r != CUDA_SUCCESS)
            status = fx_srv_cuda_error(r);
        if (c->ndev > MAX_DEVICES)
            c->ndev = MAX_DEVICES;
    }
    fx_srv_idle(c);
    return status;
}

/* An authenticated client asks the listener for one of its --max-clients
 * slots (server.h, ctl_fd), by `deadline`. */
static int slot_granted(struct fx_srv_conn *c, int64_t deadline)
{
    int fd = c->o->ctl_fd;
    if (fd < 0)
        return 1;
    char b = 0;
    if (fx_net_write_all(fd, "A", 1, deadline) != 0 || fx_net_read_all(fd, &b, 1, deadline) != 0 ||
        b != 'Y') {
        FX_WARN(COMP, "client refused: the server serves --max-clients already", "");
        return 0;
    }
    return 1;
}

/* The first frame: HELLO with the protocol version and the token, by
 * `deadline` (the connection's start plus hello_timeout_ms). */
static int hello(struct fx_srv_conn *c, int64_t deadline)
{
    struct fx_wire_req q;
    if (read_frame(c, &q, deadline, 1) != 0)
        return -1;
    int status = cudaSuccess;
    if (q.h.op != FX_OP_HELLO || q.u.hello.version != FX_WIRE_VERSION)
        status = cudaErrorNotSupported;
    else if (c->o->token && !const_eq(q.u.hello.token, q.u.hello.token_len, c->o->token,
                                      c->o->token_len))
        status = cudaErrorNotPermitted;
    else if (!slot_granted(c, deadline))
        status = cudaErrorDevicesUnavailable;
    else
        status = fx_srv_start_driver(c);
    size_t at = fx_wr_begin(&c->out), head = c->out.len;
    fx_wire_reply_begin(&c->out, &(struct fx_wire_reply){0});
    fx_wr_u32(&c->out, (uint32_t)c->ndev);
    fx_wr_u32(&c->out, (uint32_t)c->driver_version);
    reply(c, &q, at, head, status);
    flush_out(c);
    if (status != cudaSuccess)
        FX_WARN(COMP, "client refused", "status=%d", status);
    return status == cudaSuccess && !c->broken ? 0 : -1;
}

void fx_srv_release_all(struct fx_srv_conn *c)
{
    size_t n = c->nallocs;
    fx_srv_blas_release(c); /* handles use the streams and memory below */
    fx_srv_event_release(c);
    for (size_t i = 0; i < c->nallocs; i++)
        if (fx_srv_use_dev(c, (unsigned)c->allocs[i].dev) == cudaSuccess)
            c->d.MemFree(c->allocs[i].ptr);
    for (size_t i = 0; i < c->nstreams; i++)
        if (c->streams[i].s && fx_srv_use_dev(c, (unsigned)c->streams[i].dev) == cudaSuccess)
            c->d.StreamDestroy(c->streams[i].s);
    /* Each module in its own device's context: the driver refuses another
     * (CUDA_ERROR_INVALID_CONTEXT), which would leave it loaded. */
    for (size_t i = 0; i < c->nmods; i++) {
        if (!c->mods[i].m)
            continue;
        int rc = fx_srv_use_dev(c, (unsigned)c->mods[i].dev);
        CUresult r = rc == cudaSuccess ? c->d.ModuleUnload(c->mods[i].m) : CUDA_SUCCESS;
        if (rc != cudaSuccess || r != CUDA_SUCCESS)
            FX_WARN(COMP, "cannot unload a module the client left", "module=%zu device=%d error=%d",
                    i + 1, c->mods[i].dev, rc != cudaSuccess ? rc : (int)r);
    }
    for (int d = 0; d < c->ndev; d++) {
        if (c->ctx[d]) {
            CUdevice h;
            if (c->d.DeviceGet(&h, d) == CUDA_SUCCESS)
                c->d.PrimaryRelease(h);
        }
    }
    if (n)
        FX_INFO(COMP, "freed what the client held", "allocations=%zu", n);
}

struct fx_srv_conn *fx_srv_conn_new(const struct fx_srv_opts *opts)
{
    struct fx_srv_conn *c = fx_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->o = opts;
    c->cur = -1;
    c->ch.fd = -1;
    c->last_write_ms = fx_mono_ms();
    c->max_module_bytes = opts->max_module_bytes ? opts->max_module_bytes : FX_SRV_MODULE_BYTES;
    fx_wr_init(&c->out, FX_WIRE_HDR_SIZE + FX_WIRE_MAX_PAYLOAD);
    return c;
}

void fx_srv_conn_free(struct fx_srv_conn *c)
{
    if (!c)
        return;
    fx_wr_free(&c->out);
    fx_free(c->in);
    fx_free(c->allocs);
    fx_free(c->streams);
    fx_free(c->events);
    fx_free(c->mods);
    fx_free(c->funcs);
    fx_free(c);
}

void fx_srv_handle(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    int no_reply = (q->h.flags & FX_WIRE_NO_REPLY) != 0;
    size_t at = 0, head = 0;
    if (!no_reply) {
        at = fx_wr_begin(&c->out);
        head = c->out.len;
        fx_wire_reply_begin(&c->out, &(struct fx_wire_reply){0});
    }
    fx_srv_busy(c);
    int status = dispatch(c, q);
    fx_srv_idle(c);
    if (!no_reply)
        reply(c, q, at, head, status);
    else if (status != cudaSuccess && c->deferred == 0) {
        c->deferred = status;
        c->deferred_seq = q->h.seq;
    }
}

int fx_srv_serve(int fd, const struct fx_srv_opts *opts)
{
    struct fx_srv_conn *c = fx_srv_conn_new(opts);
    if (!c) {
        close(fd);
        return -1;
    }
    int clean = 0, ready = 0;
    struct flexpu_error err = {0};
    /* The handshake and HELLO share one deadline: a client that sends a
     * byte now and then does not keep an unauthenticated worker. */
    int64_t hello_by = fx_net_deadline(opts->hello_timeout_ms);
    if (!opts->token)
        fx_chan_plain(&c->ch, fd);
    else if (fx_chan_tls(&c->ch, fd, 1, opts->token, opts->token_len, hello_by, &err) != 0)
        FX_WARN(COMP, "client refused", "error=\"%s\"", err.msg);
    else
        ready = 1;
    if ((ready || !opts->token) && fx_srv_progress_start(c) == 0 && hello(c, hello_by) == 0) {
        struct fx_wire_req q;
        while (!c->broken && read_frame(c, &q, -1, 0) == 0) {
            fx_srv_handle(c, &q);
            flush_out(c);
            /* A frame larger than a copy's (a fat binary, up to 64 MiB)
             * does not keep its buffer for the connection's life. */
            if (c->in_cap > IN_KEEP) {
                fx_free(c->in);
                c->in = NULL;
                c->in_cap = 0;
            }
        }
        clean = !c->broken;
        if (c->ndev)
            fx_srv_release_all(c);
    }
    fx_srv_progress_stop(c);
    fx_chan_close(&c->ch);
    fx_srv_conn_free(c);
    return clean ? 0 : -1;
}
