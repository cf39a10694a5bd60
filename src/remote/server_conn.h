/* SPDX-License-Identifier: Apache-2.0 */
/* A worker's state for one connection, shared by the files that serve it:
 * server.c (the runtime API) and server_blas.c (cuBLAS by handle). */
#ifndef FX_REMOTE_SERVER_CONN_H
#define FX_REMOTE_SERVER_CONN_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "remote/chan.h"
#include "remote/server.h"
#include "remote/wire.h"
#include "runtime/cuda_abi.h"

#define COMP          "remoted"
#define MAX_DEVICES   16
#define MAX_STREAMS   4096 /* per connection: a bound on what a client can make us hold */
#define MAX_MODULES   4096
#define MAX_FUNCS     65536
#define MAX_ALLOCS    (1u << 20)

/* The driver functions a worker calls, resolved through dlsym so that a
 * preloaded libflexpu-cuda.so hands out its hooks. X(name, export, type). */
#define DRIVER_FUNCS(X)                                                                            \
    X(Init, cuInit, CUresult (*)(unsigned))                                                        \
    X(DeviceGetCount, cuDeviceGetCount, CUresult (*)(int *))                                       \
    X(DeviceGet, cuDeviceGet, CUresult (*)(CUdevice *, int))                                       \
    X(DeviceGetAttribute, cuDeviceGetAttribute, CUresult (*)(int *, int, CUdevice))                \
    X(DriverGetVersion, cuDriverGetVersion, CUresult (*)(int *))                                   \
    X(PrimaryRetain, cuDevicePrimaryCtxRetain, CUresult (*)(CUcontext *, CUdevice))                \
    X(PrimaryRelease, cuDevicePrimaryCtxRelease_v2, CUresult (*)(CUdevice))                        \
    X(CtxSetCurrent, cuCtxSetCurrent, CUresult (*)(CUcontext))                                     \
    X(CtxSynchronize, cuCtxSynchronize, CUresult (*)(void))                                        \
    X(MemAlloc, cuMemAlloc_v2, CUresult (*)(CUdeviceptr *, size_t))                                \
    X(MemFree, cuMemFree_v2, CUresult (*)(CUdeviceptr))                                            \
    X(MemGetInfo, cuMemGetInfo_v2, CUresult (*)(size_t *, size_t *))                               \
    X(HtoD, cuMemcpyHtoD_v2, CUresult (*)(CUdeviceptr, const void *, size_t))                      \
    X(DtoH, cuMemcpyDtoH_v2, CUresult (*)(void *, CUdeviceptr, size_t))                            \
    X(DtoD, cuMemcpyDtoD_v2, CUresult (*)(CUdeviceptr, CUdeviceptr, size_t))                       \
    X(HtoDAsync, cuMemcpyHtoDAsync_v2, CUresult (*)(CUdeviceptr, const void *, size_t, CUstream)) \
    X(DtoHAsync, cuMemcpyDtoHAsync_v2, CUresult (*)(void *, CUdeviceptr, size_t, CUstream))       \
    X(DtoDAsync, cuMemcpyDtoDAsync_v2, CUresult (*)(CUdeviceptr, CUdeviceptr, size_t, CUstream))  \
    X(MemsetD8, cuMemsetD8_v2, CUresult (*)(CUdeviceptr, unsigned char, size_t))                  \
    X(MemsetD8Async, cuMemsetD8Async, CUresult (*)(CUdeviceptr, unsigned char, size_t, CUstream)) \
    X(StreamCreate, cuStreamCreate, CUresult (*)(CUstream *, unsigned))                            \
    X(StreamDestroy, cuStreamDestroy_v2, CUresult (*)(CUstream))                                   \
    X(StreamQuery, cuStreamQuery, CUresult (*)(CUstream))                                          \
    X(StreamSynchronize, cuStreamSynchronize, CUresult (*)(CUstream))                              \
    X(ModuleLoadData, cuModuleLoadData, CUresult (*)(CUmodule *, const void *))                    \
    X(ModuleUnload, cuModuleUnload, CUresult (*)(CUmodule))                                        \
    X(ModuleGetFunction, cuModuleGetFunction, CUresult (*)(CUfunction *, CUmodule, const char *)) \
    X(FuncGetParamInfo, cuFuncGetParamInfo, CUresult (*)(CUfunction, size_t, size_t *, size_t *)) \
    X(EventCreate, cuEventCreate, CUresult (*)(CUevent *, unsigned))                              \
    X(EventDestroy, cuEventDestroy_v2, CUresult (*)(CUevent))                                      \
    X(EventRecord, cuEventRecord, CUresult (*)(CUevent, CUstream))                                 \
    X(EventQuery, cuEventQuery, CUresult (*)(CUevent))                                             \
    X(EventSynchronize, cuEventSynchronize, CUresult (*)(CUevent))                                 \
    X(EventElapsedTime, cuEventElapsedTime, CUresult (*)(float *, CUevent, CUevent))               \
    X(StreamWaitEvent, cuStreamWaitEvent, CUresult (*)(CUstream, CUevent, unsigned))               \
    X(LaunchKernel, cuLaunchKernel,                                                                \
      CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,         \
                   unsigned, CUstream, void **, void **))

struct driver {
#define DRIVER_FIELD(field, name, type) __typeof__(type) field;
    DRIVER_FUNCS(DRIVER_FIELD)
#undef DRIVER_FIELD
};

struct alloc {
    CUdeviceptr ptr;
    size_t size;
    int dev;
};

struct stream {
    CUstream s; /* NULL: free slot */
    int dev;
};

/* A module lives in one device's context, and so do its functions: a
 * launch on another device is refused (the client loads a module per
 * device it launches on). */
struct module {
    CUmodule m; /* NULL: free slot */
    int dev;
    size_t bytes; /* its image's, counted in module_bytes while loaded */
};

/* offset and size are at most FX_WIRE_ARGS_MAX: 16 bits each keep the
 * table of MAX_FUNCS at half the host memory (docs/REMOTE.md, "The
 * servers' host memory"). */
_Static_assert(FX_WIRE_ARGS_MAX <= UINT16_MAX, "a parameter's offset fits 16 bits");
struct func {
    CUfunction f; /* NULL once its module is unloaded */
    uint32_t mod; /* its module's id */
    int dev;      /* its module's device */
    unsigned nparams;
    size_t args_len; /* bytes of the parameter buffer */
    uint16_t offset[FX_WIRE_PARAMS_MAX], size[FX_WIRE_PARAMS_MAX];
};

struct fx_srv_conn {
    struct fx_chan ch; /* TLS when the slice has a token */
    const struct fx_srv_opts *o;
    struct driver d;
    int ndev, cur, driver_version; /* cur: the device whose context is current, -1 none */
    CUcontext ctx[MAX_DEVICES];
    struct alloc *allocs;
    size_t nallocs, cap_allocs;
    struct stream *streams;
    size_t nstreams, cap_streams;
    struct module *mods;
    size_t nmods, cap_mods;
    size_t module_bytes, max_module_bytes; /* images loaded; their bound (server.h) */
    int module_refused;                    /* a refusal was logged (once: a client at the
                                            * bound may retry without end) */
    struct func *funcs;
    size_t nfuncs, cap_funcs;
    int32_t deferred; /* first error of a NO_REPLY request since the last reply */
    uint32_t deferred_seq;
    int broken;       /* the client cannot be written to: stop */
    int64_t last_write_ms; /* the last frame the main thread sent (fx_mono_ms) */
    struct fx_srv_progress *progress; /* server_progress.c */
    unsigned char *in;
    size_t in_cap;
    struct stream *events; /* CUevent in .s: the same slot table as streams */
    size_t nevents, cap_events;
    struct fx_wr out;
    struct fx_srv_blas *blas; /* server_blas.c; NULL until the first cuBLAS call */
    alignas(16) unsigned char args[FX_WIRE_ARGS_MAX];
};

struct fx_srv_blas;

/* server.c: a connection without its socket, so that one frame can be served
 * in-process (fx_srv_serve's loop; test/fuzz/fuzz_remote.c). A new
 * connection has no channel (ch.fd -1) and no driver; fx_srv_conn_free
 * frees its tables and buffers, not what the client held (call
 * fx_srv_release_all first) nor the channel. NULL when out of memory. */
struct fx_srv_conn *fx_srv_conn_new(const struct fx_srv_opts *opts);
void fx_srv_conn_free(struct fx_srv_conn *c);
/* The driver, loaded and initialised for an accepted client (this may take
 * seconds on a real GPU: the client hears PROGRESS meanwhile). A
 * cudaError_t. */
int fx_srv_start_driver(struct fx_srv_conn *c);
/* Serves one decoded request: its reply, when it has one, is appended to
 * c->out (not sent); a NO_REPLY request's error is kept for the next reply. */
void fx_srv_handle(struct fx_srv_conn *c, const struct fx_wire_req *q);
/* Frees everything the client held, in dependency order. */
void fx_srv_release_all(struct fx_srv_conn *c);

/* Makes device `dev`'s context current (retaining its primary context at
 * the first use): a cudaError_t. Whatever belongs to one device's context
 * (a module, a cuBLAS handle) is freed with that context current. */
int fx_srv_use_dev(struct fx_srv_conn *c, unsigned dev);
/* The cudaError_t for a driver result. */
int fx_srv_cuda_error(CUresult r);
/* Makes room for `need` elements of `elem` bytes in *arr, at most `max`;
 * 0 or -1. */
int fx_srv_reserve(void **arr, size_t *cap, size_t need, size_t elem, size_t max);
/* The stream with wire id `id` on device `dev` (0: the legacy default), or
 * cudaErrorInvalidResourceHandle. */
int fx_srv_stream(struct fx_srv_conn *c, uint32_t id, unsigned dev, CUstream *out);
/* The stream with wire id `id` on any of the connection's devices, its
 * device's context made current (0: the legacy default of device `dev`,
 * current already); *sdev, when not NULL, its device. CUDA runs a copy, a
 * memset, a synchronization, a wait on an event, a record and a
 * destruction on a stream of a device other than the current one, in that
 * stream's context; only a launch there is refused (fx_srv_stream). */
int fx_srv_stream_any(struct fx_srv_conn *c, uint32_t id, unsigned dev, CUstream *out,
                      unsigned *sdev);
/* Whether [p, p + n) lies inside one allocation of this connection. */
int fx_srv_owned(const struct fx_srv_conn *c, uint64_t p, uint64_t n);

/* Waits until `query` stops answering CUDA_ERROR_NOT_READY (the progress
 * thread tells the client meanwhile); returns its final answer as a
 * cudaError_t, or cudaErrorUnknown once the client is lost. */
int fx_srv_wait(struct fx_srv_conn *c, CUresult (*query)(void *), void *arg);

/* server_progress.c: the thread that sends a PROGRESS frame while the
 * worker serves a request and the client has heard nothing for
 * progress_ms (c->last_write_ms, or the last PROGRESS). Between fx_srv_busy and
 * fx_srv_idle the channel is that thread's: the caller only calls the
 * driver and builds its reply in c->out. fx_srv_idle sets c->broken if a
 * frame could not be written; fx_srv_lost says so meanwhile. Start: 0 or
 * -1 (logged). */
struct fx_srv_progress;
int fx_srv_progress_start(struct fx_srv_conn *c);
void fx_srv_progress_stop(struct fx_srv_conn *c);
void fx_srv_busy(struct fx_srv_conn *c);
void fx_srv_idle(struct fx_srv_conn *c);
int fx_srv_lost(struct fx_srv_conn *c);

/* server_event.c: serves EVENT_* and STREAM_WAIT_EVENT; frees the
 * connection's events. */
int fx_srv_event(struct fx_srv_conn *c, const struct fx_wire_req *q);
void fx_srv_event_release(struct fx_srv_conn *c);

/* server_blas.c: serves BLAS_* requests (status: a cublasStatus_t for the
 * replied ones, a cudaError_t for GEMM, which has no reply), and frees the
 * connection's cuBLAS handles. */
int fx_srv_blas(struct fx_srv_conn *c, const struct fx_wire_req *q);
void fx_srv_blas_release(struct fx_srv_conn *c);
/* Before stream `s` is destroyed: handles set to it go back to the default
 * stream (the client's cublasGetStream_v2 still answers the old one, as
 * NVIDIA's does for a destroyed stream). */
void fx_srv_blas_stream_gone(struct fx_srv_conn *c, CUstream s);

#endif
