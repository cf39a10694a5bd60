/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime API of the remote client library: the first subset of
 * libcudart.so.12 (docs/REMOTE.md, "The first subset"), each call forwarded
 * to the slice's flexpu-remoted. Launches and stream-ordered copies to the
 * device go without a reply; everything else waits for one. Every error a
 * call returns is also the thread's last error, as in cudart. */
#include <string.h>

#include "remote/client.h"

#define D2H_WINDOW 8 /* device-to-host chunks requested ahead of the one read */


static int fail(int e)
{
    fx_cl_set_error(e);
    return e;
}

/* The status of a call that synchronises: its own error, else a deferred
 * one (an earlier launch or copy that failed on the server). */
static int sync_status(int status, int deferred)
{
    return fail(status != cudaSuccess ? status : deferred);
}

/* --- Devices -------------------------------------------------------------- */

FX_CL_API cudaError_t cudaGetDeviceCount(int *count)
{
    if (!count)
        return fail(cudaErrorInvalidValue);
    *count = 0;
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    *count = fx_cl_device_count();
    fx_cl_unlock();
    return cudaSuccess;
}

FX_CL_API cudaError_t cudaSetDevice(int device)
{
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    int n = fx_cl_device_count();
    fx_cl_unlock();
    if (device < 0 || device >= n)
        return fail(cudaErrorInvalidDevice);
    fx_cl_set_device(device);
    return cudaSuccess;
}

FX_CL_API cudaError_t cudaGetDevice(int *device)
{
    if (!device)
        return fail(cudaErrorInvalidValue);
    *device = fx_cl_device();
    return cudaSuccess;
}

FX_CL_API cudaError_t cudaDeviceGetAttribute(int *value, int attr, int device)
{
    if (!value)
        return fail(cudaErrorInvalidValue);
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    if (device < 0 || device >= fx_cl_device_count()) {
        fx_cl_unlock();
        return fail(cudaErrorInvalidDevice);
    }
    struct fx_wire_req q = {.h.op = FX_OP_DEVICE_ATTRIBUTE};
    q.u.attribute.attr = (uint32_t)attr;
    q.u.attribute.device = (uint32_t)device;
    struct fx_rd r;
    int deferred;
    rc = fx_cl_call(&q, &r, &deferred);
    if (rc == cudaSuccess)
        *value = (int)fx_rd_u32(&r, "value");
    fx_cl_unlock();
    return fail(rc);
}

FX_CL_API cudaError_t cudaDriverGetVersion(int *version)
{
    if (!version)
        return fail(cudaErrorInvalidValue);
    int rc = fx_cl_lock();
    if (rc != cudaSuccess) {
        *version = 0; /* as cudart answers without a driver */
        return cudaSuccess;
    }
    *version = fx_cl_driver_version();
    fx_cl_unlock();
    return cudaSuccess;
}

/* The runtime API this library implements a subset of: CUDA 12.0's. */
FX_CL_API cudaError_t cudaRuntimeGetVersion(int *version)
{
    if (!version)
        return fail(cudaErrorInvalidValue);
    *version = 12000;
    return cudaSuccess;
}

FX_CL_API cudaError_t cudaDeviceSynchronize(void)
{
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    struct fx_wire_req q = {.h.op = FX_OP_DEVICE_SYNC};
    struct fx_rd r;
    int deferred;
    rc = fx_cl_call(&q, &r, &deferred);
    fx_cl_unlock();
    return sync_status(rc, deferred);
}

FX_CL_API cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total)
{
    if (!free_bytes || !total)
        return fail(cudaErrorInvalidValue);
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    struct fx_wire_req q = {.h.op = FX_OP_MEM_GET_INFO};
    struct fx_rd r;
    int deferred;
    rc = fx_cl_call(&q, &r, &deferred);
    if (rc == cudaSuccess) {
        *free_bytes = (size_t)fx_rd_u64(&r, "free");
        *total = (size_t)fx_rd_u64(&r, "total");
    }
    fx_cl_unlock();
    return fail(rc);
}

/* --- Errors --------------------------------------------------------------- */

FX_CL_API cudaError_t cudaGetLastError(void)
{
    return fx_cl_take_error(0);
}

FX_CL_API cudaError_t cudaPeekAtLastError(void)
{
    return fx_cl_take_error(1);
}

FX_CL_API const char *cudaGetErrorString(cudaError_t error)
{
    switch (error) {
#define FX_ERROR_STRING(name, value, msg)                                                          \
    case value:                                                                                    \
        return msg;
        FX_CUDART_ERRORS(FX_ERROR_STRING)
#undef FX_ERROR_STRING
    default:
        return "unrecognized error code";
    }
}

FX_CL_API const char *cudaGetErrorName(cudaError_t error)
{
    switch (error) {
#define FX_ERROR_NAME(name, value, msg)                                                            \
    case value:                                                                                    \
        return #name;
        FX_CUDART_ERRORS(FX_ERROR_NAME)
#undef FX_ERROR_NAME
    default:
        return "cudaErrorUnknown";
    }
}

/* --- Memory --------------------------------------------------------------- */

FX_CL_API cudaError_t cudaMalloc(void **devPtr, size_t size)
{
    if (!devPtr)
        return fail(cudaErrorInvalidValue);
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    struct fx_wire_req q = {.h.op = FX_OP_MALLOC};
    q.u.malloc.size = size;
    struct fx_rd r;
    int deferred;
    rc = fx_cl_call(&q, &r, &deferred);
    if (rc == cudaSuccess)
        *devPtr = (void *)(uintptr_t)fx_rd_u64(&r, "ptr");
    fx_cl_unlock();
    return fail(rc);
}

FX_CL_API cudaError_t cudaFree(void *devPtr)
{
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    struct fx_wire_req q = {.h.op = FX_OP_FREE};
    q.u.free.ptr = (uintptr_t)devPtr;
    struct fx_rd r;
    int deferred;
    rc = fx_cl_call(&q, &r, &deferred);
    fx_cl_unlock();
    return fail(rc);
}

/* Lock held. Sends one chunk of a copy: queued unanswered unless `reply`
 * (the last chunk of a synchronous copy), whose answer is waited for. */
static int send_chunk(struct fx_wire_req *q, int reply)
{
    q->h.flags = reply ? 0 : FX_WIRE_NO_REPLY;
    uint32_t seq = fx_cl_queue(q);
    if (!seq)
        return cudaErrorDevicesUnavailable;
    if (!reply)
        return cudaSuccess;
    struct fx_rd r;
    int deferred;
    int rc = fx_cl_wait(seq, &r, &deferred);
    return rc != cudaSuccess ? rc : deferred;
}

/* Lock held. Host to device in chunks, none answered but the last when
 * `wait` (a synchronous copy). */
static int copy_h2d(uint64_t dst, const unsigned char *src, size_t n, uint32_t stream, int wait)
{
    for (size_t off = 0; off < n; off += FX_WIRE_CHUNK) {
        size_t len = n - off < FX_WIRE_CHUNK ? n - off : FX_WIRE_CHUNK;
        int reply = wait && off + len == n;
        struct fx_wire_req q = {.h.op = FX_OP_MEMCPY_H2D};
        q.u.h2d.dst = dst + off;
        q.u.h2d.stream = stream;
        q.u.h2d.data = src + off;
        q.u.h2d.n = len;
        int rc = send_chunk(&q, reply);
        if (rc != cudaSuccess || reply)
            return rc;
    }
    return wait ? cudaSuccess : fx_cl_flush();
}

static int copy_d2d(uint64_t dst, uint64_t src, size_t n, uint32_t stream, int wait)
{
    for (size_t off = 0; off < n; off += FX_WIRE_CHUNK) {
        size_t len = n - off < FX_WIRE_CHUNK ? n - off : FX_WIRE_CHUNK;
        int reply = wait && off + len == n;
        struct fx_wire_req q = {.h.op = FX_OP_MEMCPY_D2D};
        q.u.d2d.dst = dst + off;
        q.u.d2d.src = src + off;
        q.u.d2d.size = len;
        q.u.d2d.stream = stream;
        int rc = send_chunk(&q, reply);
        if (rc != cudaSuccess || reply)
            return rc;
    }
    return wait ? cudaSuccess : fx_cl_flush();
}

/* Lock held. Device to host with up to D2H_WINDOW chunks requested ahead,
 * so the network stays busy; every request's reply is read, even after an
 * error, to keep the replies in step. */
static int copy_d2h(unsigned char *dst, uint64_t src, size_t n, uint32_t stream)
{
    uint32_t seqs[D2H_WINDOW];
    size_t offs[D2H_WINDOW], lens[D2H_WINDOW];
    size_t sent = 0, head = 0, inflight = 0;
    int first = cudaSuccess;
    while (sent < n || inflight) {
        if (sent < n && inflight < D2H_WINDOW) {
            size_t len = n - sent < FX_WIRE_CHUNK ? n - sent : FX_WIRE_CHUNK;
            struct fx_wire_req q = {.h.op = FX_OP_MEMCPY_D2H};
            q.u.d2h.src = src + sent;
            q.u.d2h.size = len;
            q.u.d2h.stream = stream;
            size_t slot = (head + inflight) % D2H_WINDOW;
            seqs[slot] = fx_cl_queue(&q);
            if (!seqs[slot])
                return cudaErrorDevicesUnavailable;
            offs[slot] = sent;
            lens[slot] = len;
            sent += len;
            inflight++;
            continue;
        }
        struct fx_rd r;
        int deferred;
        int rc = fx_cl_wait(seqs[head], &r, &deferred);
        if (rc == cudaErrorDevicesUnavailable)
            return rc;
        if (rc == cudaSuccess && deferred != cudaSuccess)
            rc = deferred;
        size_t got = 0;
        const unsigned char *data = fx_rd_bytes(&r, FX_WIRE_CHUNK, &got, "data");
        if (rc == cudaSuccess && (!data || got != lens[head]))
            rc = cudaErrorUnknown;
        if (rc == cudaSuccess)
            memcpy(dst + offs[head], data, got);
        if (first == cudaSuccess)
            first = rc;
        head = (head + 1) % D2H_WINDOW;
        inflight--;
    }
    return first;
}

static int memcpy_any(void *dst, const void *src, size_t count, int kind, cudaStream_t stream,
                      int sync)
{
    if (count == 0)
        return cudaSuccess;
    if (!dst || !src)
        return fail(cudaErrorInvalidValue);
    if (kind == cudaMemcpyHostToHost) {
        memmove(dst, src, count);
        return cudaSuccess;
    }
    if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost &&
        kind != cudaMemcpyDeviceToDevice)
        return fail(cudaErrorInvalidMemcpyDirection); /* cudaMemcpyDefault: not yet */
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    uint32_t sid = fx_cl_stream_id(stream);
    if (kind == cudaMemcpyHostToDevice)
        rc = copy_h2d((uintptr_t)dst, src, count, sid, sync);
    else if (kind == cudaMemcpyDeviceToHost)
        rc = copy_d2h(dst, (uintptr_t)src, count, sid);
    else
        rc = copy_d2d((uintptr_t)dst, (uintptr_t)src, count, sid, sync);
    fx_cl_unlock();
    return fail(rc);
}

FX_CL_API cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, int kind)
{
    return memcpy_any(dst, src, count, kind, NULL, 1);
}

FX_CL_API cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, int kind,
                                      cudaStream_t stream)
{
    return memcpy_any(dst, src, count, kind, stream, 0);
}

static int memset_any(void *devPtr, int value, size_t count, cudaStream_t stream, int sync)
{
    if (count == 0)
        return cudaSuccess;
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    struct fx_wire_req q = {.h.op = FX_OP_MEMSET};
    q.h.flags = sync ? 0 : FX_WIRE_NO_REPLY;
    q.u.memset.dst = (uintptr_t)devPtr;
    q.u.memset.size = count;
    q.u.memset.value = (unsigned char)value; /* cudaMemset uses the low byte */
    q.u.memset.stream = fx_cl_stream_id(stream);
    if (sync) {
        struct fx_rd r;
        int deferred;
        rc = fx_cl_call(&q, &r, &deferred);
        if (rc == cudaSuccess)
            rc = deferred;
    } else {
        rc = fx_cl_queue(&q) && fx_cl_flush() == cudaSuccess ? cudaSuccess
                                                             : cudaErrorDevicesUnavailable;
    }
    fx_cl_unlock();
    return fail(rc);
}

FX_CL_API cudaError_t cudaMemset(void *devPtr, int value, size_t count)
{
    return memset_any(devPtr, value, count, NULL, 1);
}

FX_CL_API cudaError_t cudaMemsetAsync(void *devPtr, int value, size_t count, cudaStream_t stream)
{
    return memset_any(devPtr, value, count, stream, 0);
}

/* --- Streams -------------------------------------------------------------- */

FX_CL_API cudaError_t cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags)
{
    if (!pStream || (flags & ~FX_CUDA_STREAM_NON_BLOCKING))
        return fail(cudaErrorInvalidValue);
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    struct fx_wire_req q = {.h.op = FX_OP_STREAM_CREATE};
    q.u.stream_create.flags = flags;
    struct fx_rd r;
    int deferred;
    rc = fx_cl_call(&q, &r, &deferred);
    if (rc == cudaSuccess) {
        uint32_t id = fx_rd_u32(&r, "stream");
        if (r.bad || id == 0)
            rc = cudaErrorUnknown;
        else
            *pStream = (cudaStream_t)(uintptr_t)(id + 2u);
    }
    fx_cl_unlock();
    return fail(rc);
}

FX_CL_API cudaError_t cudaStreamCreate(cudaStream_t *pStream)
{
    return cudaStreamCreateWithFlags(pStream, 0);
}

static int stream_call(unsigned op, cudaStream_t stream)
{
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    struct fx_wire_req q = {.h.op = (uint16_t)op};
    q.u.id.id = fx_cl_stream_id(stream);
    struct fx_rd r;
    int deferred;
    rc = fx_cl_call(&q, &r, &deferred);
    fx_cl_unlock();
    return op == FX_OP_STREAM_SYNC ? sync_status(rc, deferred) : fail(rc);
}

FX_CL_API cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    return stream_call(FX_OP_STREAM_SYNC, stream);
}

FX_CL_API cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    if (fx_cl_stream_id(stream) == 0)
        return fail(cudaErrorInvalidResourceHandle);
    return stream_call(FX_OP_STREAM_DESTROY, stream);
}

/* --- For the client libcublas.so.12 ------------------------------------------ */

FX_CL_API const struct fx_cl_iface *__flexpu_remote_v1(void)
{
    static const struct fx_cl_iface iface = {1,           fx_cl_lock,  fx_cl_unlock,   fx_cl_queue,
                                             fx_cl_wait, fx_cl_flush, fx_cl_set_error};
    return &iface;
}

/* --- Launches ------------------------------------------------------------- */

/* What <<<grid, block, shared, stream>>> pushes before the stub runs. A
 * small stack: an argument of a launch may itself launch. */
#define CONFIG_DEPTH 8
struct launch_config {
    dim3 grid, block;
    size_t shared;
    cudaStream_t stream;
};
static _Thread_local struct launch_config configs[CONFIG_DEPTH];
static _Thread_local int config_depth;

FX_CL_API unsigned __cudaPushCallConfiguration(dim3 gridDim, dim3 blockDim, size_t sharedMem,
                                               void *stream)
{
    if (config_depth == CONFIG_DEPTH)
        return 1;
    configs[config_depth++] = (struct launch_config){gridDim, blockDim, sharedMem, stream};
    return 0;
}

FX_CL_API cudaError_t __cudaPopCallConfiguration(dim3 *gridDim, dim3 *blockDim,
                                                 size_t *sharedMem, void *stream)
{
    if (config_depth == 0)
        return fail(cudaErrorMissingConfiguration);
    const struct launch_config *c = &configs[--config_depth];
    *gridDim = c->grid;
    *blockDim = c->block;
    *sharedMem = c->shared;
    *(cudaStream_t *)stream = c->stream;
    return cudaSuccess;
}

FX_CL_API cudaError_t cudaLaunchKernel(const void *func, dim3 gridDim, dim3 blockDim, void **args,
                                       size_t sharedMem, cudaStream_t stream)
{
    if (!gridDim.x || !gridDim.y || !gridDim.z || !blockDim.x || !blockDim.y || !blockDim.z ||
        sharedMem > UINT32_MAX)
        return fail(cudaErrorInvalidConfiguration);
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    const struct fx_cl_func *f = NULL;
    rc = fx_cl_func_resolve(func, &f);
    if (rc == cudaSuccess && fx_cl_func_nparams(f) && !args)
        rc = cudaErrorInvalidValue;
    if (rc == cudaSuccess) {
        /* The parameters at the offsets the server's driver reported, packed
         * in a buffer the connection's lock guards (32 KiB is too much for
         * the stack of every thread that may launch). */
        static unsigned char buf[FX_WIRE_ARGS_MAX];
        uint32_t len = fx_cl_func_args_len(f);
        memset(buf, 0, len);
        for (unsigned i = 0; i < fx_cl_func_nparams(f); i++) {
            uint32_t off, size;
            fx_cl_func_param(f, i, &off, &size);
            memcpy(buf + off, args[i], size);
        }
        struct fx_wire_req q = {.h.op = FX_OP_LAUNCH, .h.flags = FX_WIRE_NO_REPLY};
        q.u.launch.func = fx_cl_func_id(f);
        q.u.launch.grid[0] = gridDim.x;
        q.u.launch.grid[1] = gridDim.y;
        q.u.launch.grid[2] = gridDim.z;
        q.u.launch.block[0] = blockDim.x;
        q.u.launch.block[1] = blockDim.y;
        q.u.launch.block[2] = blockDim.z;
        q.u.launch.shared_bytes = (uint32_t)sharedMem;
        q.u.launch.stream = fx_cl_stream_id(stream);
        q.u.launch.args = buf;
        q.u.launch.args_len = len;
        /* Sent at once, without waiting for a reply: the GPU starts it now. */
        if (!fx_cl_queue(&q) || fx_cl_flush() != cudaSuccess)
            rc = cudaErrorDevicesUnavailable;
    }
    fx_cl_unlock();
    return fail(rc);
}
