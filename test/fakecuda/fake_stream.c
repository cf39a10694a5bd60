/* SPDX-License-Identifier: Apache-2.0 */
/* Streams, events and kernel launches. Work goes to the stream's context
 * queue (fake_worker.c), or into the capture's graph while the stream is
 * capturing (fake_graph.c). */
#include "fake_exports.h"

/* Lock held. NULL, CU_STREAM_LEGACY and CU_STREAM_PER_THREAD are the current
 * context's default stream (all streams of a context run in one order, so the
 * per-thread default stream needs no object of its own). */
CUresult fake_stream_resolve(CUstream h, struct fake_stream **out)
{
    if (h == NULL || h == CU_STREAM_LEGACY || h == CU_STREAM_PER_THREAD) {
        struct fake_ctx *c = fake_current_ctx();
        if (!c)
            return CUDA_ERROR_INVALID_CONTEXT;
        *out = &c->null_stream;
        return CUDA_SUCCESS;
    }
    for (struct fake_ctx *c = fake.contexts; c; c = c->next) {
        for (struct fake_stream *s = c->streams; s; s = s->next) {
            if ((CUstream)s == h) {
                *out = s;
                return CUDA_SUCCESS;
            }
        }
    }
    return CUDA_ERROR_INVALID_HANDLE;
}

static struct fake_event *event_find(CUevent h)
{
    for (struct fake_ctx *c = fake.contexts; c; c = c->next)
        for (struct fake_event *ev = c->events; ev; ev = ev->next)
            if ((CUevent)ev == h)
                return ev;
    return NULL;
}

static void stream_free(struct fake_stream *s)
{
    if (s->capture)
        fake_capture_stream_gone(s);
    free(s);
}

/* Lock held, the context's worker stopped. Frees what the context owned. */
void fake_streams_free(struct fake_ctx *c)
{
    if (c->null_stream.capture)
        fake_capture_stream_gone(&c->null_stream);
    while (c->streams) {
        struct fake_stream *s = c->streams;
        c->streams = s->next;
        stream_free(s);
    }
    while (c->events) {
        struct fake_event *ev = c->events;
        c->events = ev->next;
        fake_event_put(ev);
    }
}

static CUresult stream_create(CUstream *phStream, unsigned int flags)
{
    FAKE_REQUIRE_INIT();
    if (!phStream || (flags & ~FAKE_STREAM_NON_BLOCKING))
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_ctx *c = fake_current_ctx();
    struct fake_stream *s = c ? calloc(1, sizeof *s) : NULL;
    if (s) {
        s->ctx = c;
        s->next = c->streams;
        c->streams = s;
        *phStream = (CUstream)s;
    }
    fake_unlock();
    return !c ? CUDA_ERROR_INVALID_CONTEXT : s ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

FAKE_API CUresult cuStreamCreate(CUstream *phStream, unsigned int Flags)
{
    return stream_create(phStream, Flags);
}

FAKE_API CUresult cuStreamCreateWithPriority(CUstream *phStream, unsigned int flags, int priority)
{
    (void)priority; /* one FIFO per context: priorities change nothing */
    return stream_create(phStream, flags);
}

/* Queued work still runs, as with the real driver. */
FAKE_API CUresult cuStreamDestroy_v2(CUstream hStream)
{
    FAKE_REQUIRE_INIT();
    if (hStream == NULL || hStream == CU_STREAM_LEGACY || hStream == CU_STREAM_PER_THREAD)
        return CUDA_ERROR_INVALID_HANDLE;
    fake_lock();
    struct fake_stream *s;
    CUresult r = fake_stream_resolve(hStream, &s);
    if (r == CUDA_SUCCESS) {
        for (struct fake_stream **p = &s->ctx->streams; *p; p = &(*p)->next) {
            if (*p == s) {
                *p = s->next;
                break;
            }
        }
        stream_free(s);
    }
    fake_unlock();
    return r;
}

/* Synchronizing or querying a capturing stream is never allowed. */
static CUresult refuse_if_capturing(struct fake_stream *s)
{
    if (!s->capture)
        return CUDA_SUCCESS;
    s->capture->invalidated = 1;
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

static CUresult stream_synchronize(CUstream hStream)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_stream *s;
    CUresult r = fake_stream_resolve(hStream, &s);
    if (r == CUDA_SUCCESS)
        r = refuse_if_capturing(s);
    if (r == CUDA_SUCCESS)
        r = fake_capture_check_unsafe();
    if (r == CUDA_SUCCESS) {
        fake_wait_ticket(s->ctx, s->last_ticket);
        /* Where the real driver gives pool memory above the release threshold back. */
        fake_pools_trim_device(s->ctx->dev, 0);
    }
    fake_unlock();
    return r;
}

FAKE_API CUresult cuStreamSynchronize(CUstream hStream)
{
    return stream_synchronize(hStream);
}

FAKE_API CUresult cuStreamSynchronize_ptsz(CUstream hStream)
{
    return stream_synchronize(hStream);
}

static CUresult stream_query(CUstream hStream)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_stream *s;
    CUresult r = fake_stream_resolve(hStream, &s);
    if (r == CUDA_SUCCESS)
        r = refuse_if_capturing(s);
    if (r == CUDA_SUCCESS && s->ctx->completed < s->last_ticket)
        r = CUDA_ERROR_NOT_READY;
    fake_unlock();
    return r;
}

FAKE_API CUresult cuStreamQuery(CUstream hStream)
{
    return stream_query(hStream);
}

FAKE_API CUresult cuStreamQuery_ptsz(CUstream hStream)
{
    return stream_query(hStream);
}

static CUresult stream_get_ctx(CUstream hStream, CUcontext *pctx)
{
    FAKE_REQUIRE_INIT();
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_stream *s;
    CUresult r = fake_stream_resolve(hStream, &s);
    if (r == CUDA_SUCCESS)
        *pctx = (CUcontext)s->ctx;
    fake_unlock();
    return r;
}

FAKE_API CUresult cuStreamGetCtx(CUstream hStream, CUcontext *pctx)
{
    return stream_get_ctx(hStream, pctx);
}

FAKE_API CUresult cuStreamGetCtx_ptsz(CUstream hStream, CUcontext *pctx)
{
    return stream_get_ctx(hStream, pctx);
}

/* Lock held. The stream and the event of a wait or a record, and whether the
 * stream's capture (if any) still stands. */
static CUresult stream_and_event(CUstream hStream, CUevent hEvent, struct fake_stream **s,
                                 struct fake_event **ev)
{
    *ev = event_find(hEvent);
    CUresult r = fake_stream_resolve(hStream, s);
    if (r == CUDA_SUCCESS && !*ev)
        r = CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        r = fake_capture_status(*s);
    return r;
}

/* A stream that waits on an event recorded in a capture joins that capture
 * (how multi-stream capture forks). Otherwise the wait is queued when the
 * event's last record has not completed yet. */
static CUresult stream_wait_event(CUstream hStream, CUevent hEvent, unsigned int flags)
{
    FAKE_REQUIRE_INIT();
    if (flags & ~1u) /* CU_EVENT_WAIT_DEFAULT, CU_EVENT_WAIT_EXTERNAL */
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_stream *s;
    struct fake_event *ev;
    CUresult r = stream_and_event(hStream, hEvent, &s, &ev);
    if (r == CUDA_SUCCESS) {
        struct fake_capture *cap = fake_capture_find(ev->capture_id);
        if (cap && !s->capture) {
            s->capture = cap;
        } else if (!s->capture && ev->done_seq < ev->record_seq) {
            ev->refs++;
            struct fake_work w = {
                .kind = FAKE_WORK_EVENT_WAIT, .event = ev, .event_seq = ev->record_seq};
            fake_enqueue(s, w);
        }
    }
    fake_unlock();
    return r;
}

FAKE_API CUresult cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
    return stream_wait_event(hStream, hEvent, Flags);
}

FAKE_API CUresult cuStreamWaitEvent_ptsz(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
    return stream_wait_event(hStream, hEvent, Flags);
}

/* --- Events ------------------------------------------------------------------ */

FAKE_API CUresult cuEventCreate(CUevent *phEvent, unsigned int Flags)
{
    FAKE_REQUIRE_INIT();
    if (!phEvent || (Flags & ~FAKE_EVENT_FLAGS_MASK))
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_ctx *c = fake_current_ctx();
    struct fake_event *ev = c ? calloc(1, sizeof *ev) : NULL;
    if (ev) {
        ev->ctx = c;
        ev->flags = Flags;
        ev->refs = 1;
        ev->next = c->events;
        c->events = ev;
        *phEvent = (CUevent)ev;
    }
    fake_unlock();
    return !c ? CUDA_ERROR_INVALID_CONTEXT : ev ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

static CUresult event_record(CUevent hEvent, CUstream hStream, unsigned int flags)
{
    FAKE_REQUIRE_INIT();
    if (flags & ~1u) /* CU_EVENT_RECORD_DEFAULT, CU_EVENT_RECORD_EXTERNAL */
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_stream *s;
    struct fake_event *ev;
    CUresult r = stream_and_event(hStream, hEvent, &s, &ev);
    if (r == CUDA_SUCCESS && s->capture) {
        ev->capture_id = s->capture->id; /* an event node, not executed */
    } else if (r == CUDA_SUCCESS) {
        ev->capture_id = 0;
        ev->refs++;
        struct fake_work w = {
            .kind = FAKE_WORK_EVENT_RECORD, .event = ev, .event_seq = ++ev->record_seq};
        fake_enqueue(s, w);
    }
    fake_unlock();
    return r;
}

FAKE_API CUresult cuEventRecord(CUevent hEvent, CUstream hStream)
{
    return event_record(hEvent, hStream, 0);
}

FAKE_API CUresult cuEventRecord_ptsz(CUevent hEvent, CUstream hStream)
{
    return event_record(hEvent, hStream, 0);
}

FAKE_API CUresult cuEventRecordWithFlags(CUevent hEvent, CUstream hStream, unsigned int flags)
{
    return event_record(hEvent, hStream, flags);
}

FAKE_API CUresult cuEventRecordWithFlags_ptsz(CUevent hEvent, CUstream hStream, unsigned int flags)
{
    return event_record(hEvent, hStream, flags);
}

/* Lock held. Querying or waiting for an event recorded in an ongoing capture
 * invalidates that capture; otherwise the usual unsafe-call rule applies. */
static CUresult event_check_capture(struct fake_event *ev)
{
    struct fake_capture *cap = fake_capture_find(ev->capture_id);
    if (cap) {
        cap->invalidated = 1;
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    return fake_capture_check_unsafe();
}

FAKE_API CUresult cuEventQuery(CUevent hEvent)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_event *ev = event_find(hEvent);
    CUresult r = ev ? event_check_capture(ev) : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS && ev->done_seq < ev->record_seq)
        r = CUDA_ERROR_NOT_READY;
    fake_unlock();
    return r;
}

FAKE_API CUresult cuEventSynchronize(CUevent hEvent)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_event *ev = event_find(hEvent);
    CUresult r = ev ? event_check_capture(ev) : CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS) {
        unsigned long long seq = ev->record_seq;
        int dev = ev->ctx->dev;
        ev->refs++; /* it may be destroyed while we wait */
        while (ev->done_seq < seq)
            pthread_cond_wait(&fake.done_cv, &fake.lock);
        fake_event_put(ev);
        fake_pools_trim_device(dev, 0);
    }
    fake_unlock();
    return r;
}

/* Milliseconds between the completions of the two events' last records. */
FAKE_API CUresult cuEventElapsedTime_v2(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
    FAKE_REQUIRE_INIT();
    if (!pMilliseconds)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_event *a = event_find(hStart), *b = event_find(hEnd);
    CUresult r = CUDA_SUCCESS;
    if (!a || !b || ((a->flags | b->flags) & CU_EVENT_DISABLE_TIMING) || a->record_seq == 0 ||
        b->record_seq == 0 || a->capture_id || b->capture_id)
        r = CUDA_ERROR_INVALID_HANDLE;
    else if (a->done_seq < a->record_seq || b->done_seq < b->record_seq)
        r = CUDA_ERROR_NOT_READY;
    else
        *pMilliseconds = (float)(((double)b->done_ns - (double)a->done_ns) / 1e6);
    fake_unlock();
    return r;
}

FAKE_API CUresult cuEventElapsedTime(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
    return cuEventElapsedTime_v2(pMilliseconds, hStart, hEnd);
}

FAKE_API CUresult cuEventDestroy_v2(CUevent hEvent)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_event *ev = event_find(hEvent);
    if (ev) {
        for (struct fake_event **p = &ev->ctx->events; *p; p = &(*p)->next) {
            if (*p == ev) {
                *p = ev->next;
                break;
            }
        }
        fake_event_put(ev);
    }
    fake_unlock();
    return ev ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

/* --- Launches ---------------------------------------------------------------- */

static CUresult launch(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                       unsigned int bx, unsigned int by, unsigned int bz, CUstream hStream,
                       void **kernelParams)
{
    FAKE_REQUIRE_INIT();
    if (!f)
        return CUDA_ERROR_INVALID_HANDLE;
    if (!gx || !gy || !gz || !bx || !by || !bz)
        return CUDA_ERROR_INVALID_VALUE;
    unsigned int us = fake_kernel_duration(kernelParams);
    fake_lock();
    struct fake_stream *s;
    CUresult r = fake_stream_resolve(hStream, &s);
    struct fake_ctx *fc = r == CUDA_SUCCESS ? fake_func_ctx(f) : NULL;
    if (fc && fc != s->ctx)
        r = CUDA_ERROR_INVALID_HANDLE; /* another context's function (another device's) */
    if (r == CUDA_SUCCESS)
        r = fake_capture_status(s);
    if (r == CUDA_SUCCESS)
        r = s->capture ? fake_capture_add_kernel(s->capture, us)
                       : fake_enqueue_launch(s, f, kernelParams, us);
    fake_unlock();
    return r;
}

FAKE_API CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                 unsigned int gridDimZ, unsigned int blockDimX,
                                 unsigned int blockDimY, unsigned int blockDimZ,
                                 unsigned int sharedMemBytes, CUstream hStream, void **kernelParams,
                                 void **extra)
{
    (void)sharedMemBytes;
    (void)extra;
    return launch(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream,
                  kernelParams);
}

FAKE_API CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                      unsigned int gridDimZ, unsigned int blockDimX,
                                      unsigned int blockDimY, unsigned int blockDimZ,
                                      unsigned int sharedMemBytes, CUstream hStream,
                                      void **kernelParams, void **extra)
{
    (void)sharedMemBytes;
    (void)extra;
    return launch(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream,
                  kernelParams);
}

static CUresult launch_ex(const CUlaunchConfig *config, CUfunction f, void **kernelParams)
{
    FAKE_REQUIRE_INIT();
    if (!config)
        return CUDA_ERROR_INVALID_VALUE;
    return launch(f, config->gridDimX, config->gridDimY, config->gridDimZ, config->blockDimX,
                  config->blockDimY, config->blockDimZ, config->hStream, kernelParams);
}

FAKE_API CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **kernelParams,
                                   void **extra)
{
    (void)extra;
    return launch_ex(config, f, kernelParams);
}

FAKE_API CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f,
                                        void **kernelParams, void **extra)
{
    (void)extra;
    return launch_ex(config, f, kernelParams);
}

FAKE_API CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX,
                                            unsigned int gridDimY, unsigned int gridDimZ,
                                            unsigned int blockDimX, unsigned int blockDimY,
                                            unsigned int blockDimZ, unsigned int sharedMemBytes,
                                            CUstream hStream, void **kernelParams)
{
    (void)sharedMemBytes;
    return launch(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream,
                  kernelParams);
}

FAKE_API CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gridDimX,
                                                 unsigned int gridDimY, unsigned int gridDimZ,
                                                 unsigned int blockDimX, unsigned int blockDimY,
                                                 unsigned int blockDimZ,
                                                 unsigned int sharedMemBytes, CUstream hStream,
                                                 void **kernelParams)
{
    (void)sharedMemBytes;
    return launch(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream,
                  kernelParams);
}

/* --- The pre-4.0 launch API ----------------------------------------------------- */

/* What cuParamSeti(f, 0, us) set: the duration of f's next legacy launches. */
#define LEGACY_FUNCS 16
static struct {
    CUfunction f;
    unsigned int us;
} legacy_params[LEGACY_FUNCS];

FAKE_API CUresult cuParamSeti(CUfunction hfunc, int offset, unsigned int value)
{
    FAKE_REQUIRE_INIT();
    if (!hfunc || offset != 0)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    int i = 0;
    while (i < LEGACY_FUNCS - 1 && legacy_params[i].f && legacy_params[i].f != hfunc)
        i++;
    legacy_params[i].f = hfunc;
    legacy_params[i].us = value;
    fake_unlock();
    return CUDA_SUCCESS;
}

static CUresult legacy_launch(CUfunction f, int w, int h, CUstream s)
{
    if (w <= 0 || h <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    unsigned int us = 0;
    fake_lock();
    for (int i = 0; i < LEGACY_FUNCS; i++)
        if (legacy_params[i].f == f)
            us = legacy_params[i].us;
    fake_unlock();
    void *params[] = {&us};
    return launch(f, (unsigned)w, (unsigned)h, 1, 1, 1, 1, s, params);
}

FAKE_API CUresult cuLaunch(CUfunction f)
{
    return legacy_launch(f, 1, 1, NULL);
}

FAKE_API CUresult cuLaunchGrid(CUfunction f, int grid_width, int grid_height)
{
    return legacy_launch(f, grid_width, grid_height, NULL);
}

FAKE_API CUresult cuLaunchGridAsync(CUfunction f, int grid_width, int grid_height, CUstream hStream)
{
    return legacy_launch(f, grid_width, grid_height, hStream);
}

FAKE_API CUresult cuLaunchCooperativeKernelMultiDevice(CUDA_LAUNCH_PARAMS *launchParamsList,
                                                       unsigned int numDevices, unsigned int flags)
{
    (void)flags;
    if (!launchParamsList || numDevices == 0)
        return CUDA_ERROR_INVALID_VALUE;
    for (unsigned int i = 0; i < numDevices; i++) {
        const CUDA_LAUNCH_PARAMS *p = &launchParamsList[i];
        CUresult r = launch(p->function, p->gridDimX, p->gridDimY, p->gridDimZ, p->blockDimX,
                            p->blockDimY, p->blockDimZ, p->hStream, p->kernelParams);
        if (r != CUDA_SUCCESS)
            return r;
    }
    return CUDA_SUCCESS;
}
