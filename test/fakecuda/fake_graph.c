/* SPDX-License-Identifier: Apache-2.0 */
/* Stream capture, graphs, graph execs and the per-device graph memory pool.
 *
 * A capture records kernel durations and allocation sizes into a graph
 * instead of executing them. Like the real driver, it forbids "potentially
 * unsafe" calls while it runs (fake_capture_check_unsafe): such a call fails
 * with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the capture, and
 * cuStreamEndCapture then fails with CUDA_ERROR_STREAM_CAPTURE_INVALIDATED.
 * That is what lets tests check that an interposed library never breaks a
 * capture. The calls treated as unsafe: cuMemAlloc_v2, cuMemAllocPitch_v2,
 * cuMemAllocManaged, cuMemFree_v2, cuMemPoolGetAttribute, cuCtxSynchronize,
 * cuStreamSynchronize, cuEventSynchronize, cuEventQuery.
 *
 * Graph memory: an exec's allocation nodes need `mem_bytes`, taken from the
 * launching device's graph pool at the exec's first launch. The pool's used
 * bytes drop when the exec is destroyed; its reserve (charged to the device)
 * is kept for reuse until cuDeviceGraphMemTrim. */
#include "fake_exports.h"

/* The calling thread's capture interaction mode (cuThreadExchangeStreamCaptureMode). */
static _Thread_local CUstreamCaptureMode thread_capture_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;

/* Lock held. Applies the driver's rule for a potentially unsafe call made by
 * this thread: it is prohibited while this thread has a capture not begun in
 * relaxed mode, or, when this thread's mode is global, while another thread
 * has a capture begun in global mode. A prohibited call invalidates those
 * captures and fails. */
CUresult fake_capture_check_unsafe(void)
{
    if (thread_capture_mode == CU_STREAM_CAPTURE_MODE_RELAXED)
        return CUDA_SUCCESS;
    pthread_t self = pthread_self();
    int prohibited = 0;
    for (struct fake_capture *c = fake.captures; c; c = c->next) {
        int mine = pthread_equal(c->thread, self);
        if ((mine && c->mode != CU_STREAM_CAPTURE_MODE_RELAXED) ||
            (!mine && c->mode == CU_STREAM_CAPTURE_MODE_GLOBAL &&
             thread_capture_mode == CU_STREAM_CAPTURE_MODE_GLOBAL)) {
            c->invalidated = 1;
            prohibited = 1;
        }
    }
    return prohibited ? CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED : CUDA_SUCCESS;
}

/* Lock held. The ongoing capture with this id, or NULL (id 0 is none). */
struct fake_capture *fake_capture_find(unsigned long long id)
{
    for (struct fake_capture *c = id ? fake.captures : NULL; c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

/* Lock held. Work issued to a stream whose capture was invalidated fails. */
CUresult fake_capture_status(const struct fake_stream *s)
{
    return s->capture && s->capture->invalidated ? CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
                                                 : CUDA_SUCCESS;
}

/* Lock held. */
static CUresult graph_add_kernel(struct fake_graph *g, unsigned int duration_us)
{
    if (g->nkernels == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 16;
        unsigned int *k = realloc(g->kernels, cap * sizeof *k);
        if (!k)
            return CUDA_ERROR_OUT_OF_MEMORY;
        g->kernels = k;
        g->cap = cap;
    }
    g->kernels[g->nkernels++] = duration_us;
    return CUDA_SUCCESS;
}

CUresult fake_capture_add_kernel(struct fake_capture *cap, unsigned int duration_us)
{
    return graph_add_kernel(cap->graph, duration_us);
}

/* Lock held. An allocation node: the address is reserved now (uncharged, owned
 * by the graph); the memory is backed from the graph pool at launch. */
CUresult fake_capture_add_alloc(struct fake_capture *cap, size_t size, CUdeviceptr *dptr)
{
    unsigned long long bytes = (size + FAKE_GRANULE - 1) / FAKE_GRANULE * FAKE_GRANULE;
    struct fake_alloc *a;
    CUresult r = fake_map_and_register(FAKE_ALLOC_GRAPH_VA, cap->origin->ctx->dev, size, 0, &a);
    if (r != CUDA_SUCCESS)
        return r;
    a->owner = cap->graph;
    cap->graph->mem_bytes += bytes;
    *dptr = a->key;
    return CUDA_SUCCESS;
}

static void ctx_leave_capture(struct fake_ctx *c, const struct fake_capture *cap)
{
    if (c->null_stream.capture == cap)
        c->null_stream.capture = NULL;
    for (struct fake_stream *s = c->streams; s; s = s->next)
        if (s->capture == cap)
            s->capture = NULL;
}

/* Lock held. Ends `cap` for every stream in it and unlinks it. `dying` is a
 * context already unlinked from fake.contexts whose streams may be in it. */
static void capture_end(struct fake_capture *cap, struct fake_ctx *dying)
{
    for (struct fake_ctx *c = fake.contexts; c; c = c->next)
        ctx_leave_capture(c, cap);
    if (dying)
        ctx_leave_capture(dying, cap);
    for (struct fake_capture **link = &fake.captures; *link; link = &(*link)->next) {
        if (*link == cap) {
            *link = cap->next;
            break;
        }
    }
}

static void graph_unlink(struct fake_graph *g)
{
    for (struct fake_graph **link = &fake.graphs; *link; link = &(*link)->next) {
        if (*link == g) {
            *link = g->next;
            break;
        }
    }
}

/* Lock held. */
static void graph_free(struct fake_graph *g)
{
    graph_unlink(g);
    fake_registry_destroy_owned(g);
    free(g->kernels);
    free(g);
}

/* Lock held. A stream destroyed while capturing (by cuStreamDestroy or with
 * its context): a stream that only joined leaves the capture; the origin
 * stream's capture is dropped with its graph. */
void fake_capture_stream_gone(struct fake_stream *s)
{
    struct fake_capture *cap = s->capture;
    s->capture = NULL;
    if (cap->origin != s)
        return;
    capture_end(cap, s->ctx);
    graph_free(cap->graph);
    free(cap);
}

/* --- Capture API ------------------------------------------------------------------ */

static CUresult begin_capture(CUstream hStream, CUstreamCaptureMode mode)
{
    FAKE_REQUIRE_INIT();
    if (mode != CU_STREAM_CAPTURE_MODE_GLOBAL && mode != CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
        mode != CU_STREAM_CAPTURE_MODE_RELAXED)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_stream *s;
    CUresult r = fake_stream_resolve(hStream, &s);
    if (r == CUDA_SUCCESS && s == &s->ctx->null_stream)
        r = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED; /* the legacy stream cannot be captured */
    if (r == CUDA_SUCCESS && s->capture)
        r = CUDA_ERROR_ILLEGAL_STATE;
    struct fake_capture *cap = NULL;
    struct fake_graph *g = NULL;
    if (r == CUDA_SUCCESS) {
        cap = calloc(1, sizeof *cap);
        g = calloc(1, sizeof *g);
        if (!cap || !g)
            r = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (r == CUDA_SUCCESS) {
        cap->id = ++fake.next_capture_id;
        cap->mode = mode;
        cap->thread = pthread_self();
        cap->origin = s;
        cap->graph = g;
        cap->next = fake.captures;
        fake.captures = cap;
        g->next = fake.graphs;
        fake.graphs = g;
        s->capture = cap;
    } else {
        free(cap);
        free(g);
    }
    fake_unlock();
    return r;
}

FAKE_API CUresult cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode)
{
    return begin_capture(hStream, mode);
}

FAKE_API CUresult cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode)
{
    return begin_capture(hStream, mode);
}

/* CUDA 10.0 had no mode argument; its captures behaved as global mode. */
FAKE_API CUresult cuStreamBeginCapture(CUstream hStream)
{
    return begin_capture(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL);
}

FAKE_API CUresult cuStreamBeginCapture_ptsz(CUstream hStream)
{
    return begin_capture(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL);
}

static CUresult end_capture(CUstream hStream, CUgraph *phGraph)
{
    FAKE_REQUIRE_INIT();
    if (!phGraph)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_stream *s;
    CUresult r = fake_stream_resolve(hStream, &s);
    struct fake_capture *cap = r == CUDA_SUCCESS ? s->capture : NULL;
    if (r == CUDA_SUCCESS && (!cap || cap->origin != s))
        r = CUDA_ERROR_ILLEGAL_STATE;
    if (r == CUDA_SUCCESS && cap->mode != CU_STREAM_CAPTURE_MODE_RELAXED &&
        !pthread_equal(cap->thread, pthread_self()))
        r = CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
    if (r == CUDA_SUCCESS) {
        capture_end(cap, NULL);
        if (cap->invalidated) {
            graph_free(cap->graph);
            *phGraph = NULL;
            r = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
        } else {
            *phGraph = (CUgraph)cap->graph;
        }
        free(cap);
    }
    fake_unlock();
    return r;
}

FAKE_API CUresult cuStreamEndCapture(CUstream hStream, CUgraph *phGraph)
{
    return end_capture(hStream, phGraph);
}

FAKE_API CUresult cuStreamEndCapture_ptsz(CUstream hStream, CUgraph *phGraph)
{
    return end_capture(hStream, phGraph);
}

/* Fills what the cuStreamGetCaptureInfo variants report; a capture has no
 * dependency nodes in the fake. */
static CUresult capture_info(CUstream hStream, CUstreamCaptureStatus *status, cuuint64_t *id,
                             CUgraph *graph, const CUgraphNode **deps,
                             const CUgraphEdgeData **edges, size_t *ndeps)
{
    FAKE_REQUIRE_INIT();
    if (!status)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_stream *s;
    CUresult r = fake_stream_resolve(hStream, &s);
    if (r == CUDA_SUCCESS) {
        struct fake_capture *cap = s->capture;
        *status = !cap               ? CU_STREAM_CAPTURE_STATUS_NONE
                  : cap->invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
                                     : CU_STREAM_CAPTURE_STATUS_ACTIVE;
        if (id && cap)
            *id = cap->id;
        if (graph)
            *graph = cap ? (CUgraph)cap->graph : NULL;
        if (deps)
            *deps = NULL;
        if (edges)
            *edges = NULL;
        if (ndeps)
            *ndeps = 0;
    }
    fake_unlock();
    return r;
}

FAKE_API CUresult cuStreamIsCapturing(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
    return capture_info(hStream, captureStatus, NULL, NULL, NULL, NULL, NULL);
}

FAKE_API CUresult cuStreamIsCapturing_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
    return capture_info(hStream, captureStatus, NULL, NULL, NULL, NULL, NULL);
}

FAKE_API CUresult cuStreamGetCaptureInfo(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                         cuuint64_t *id_out)
{
    return capture_info(hStream, captureStatus_out, id_out, NULL, NULL, NULL, NULL);
}

FAKE_API CUresult cuStreamGetCaptureInfo_ptsz(CUstream hStream,
                                              CUstreamCaptureStatus *captureStatus_out,
                                              cuuint64_t *id_out)
{
    return capture_info(hStream, captureStatus_out, id_out, NULL, NULL, NULL, NULL);
}

FAKE_API CUresult cuStreamGetCaptureInfo_v2(CUstream hStream,
                                            CUstreamCaptureStatus *captureStatus_out,
                                            cuuint64_t *id_out, CUgraph *graph_out,
                                            const CUgraphNode **dependencies_out,
                                            size_t *numDependencies_out)
{
    return capture_info(hStream, captureStatus_out, id_out, graph_out, dependencies_out, NULL,
                        numDependencies_out);
}

FAKE_API CUresult cuStreamGetCaptureInfo_v2_ptsz(CUstream hStream,
                                                 CUstreamCaptureStatus *captureStatus_out,
                                                 cuuint64_t *id_out, CUgraph *graph_out,
                                                 const CUgraphNode **dependencies_out,
                                                 size_t *numDependencies_out)
{
    return capture_info(hStream, captureStatus_out, id_out, graph_out, dependencies_out, NULL,
                        numDependencies_out);
}

FAKE_API CUresult cuStreamGetCaptureInfo_v3(CUstream hStream,
                                            CUstreamCaptureStatus *captureStatus_out,
                                            cuuint64_t *id_out, CUgraph *graph_out,
                                            const CUgraphNode **dependencies_out,
                                            const CUgraphEdgeData **edgeData_out,
                                            size_t *numDependencies_out)
{
    return capture_info(hStream, captureStatus_out, id_out, graph_out, dependencies_out,
                        edgeData_out, numDependencies_out);
}

FAKE_API CUresult cuStreamGetCaptureInfo_v3_ptsz(CUstream hStream,
                                                 CUstreamCaptureStatus *captureStatus_out,
                                                 cuuint64_t *id_out, CUgraph *graph_out,
                                                 const CUgraphNode **dependencies_out,
                                                 const CUgraphEdgeData **edgeData_out,
                                                 size_t *numDependencies_out)
{
    return capture_info(hStream, captureStatus_out, id_out, graph_out, dependencies_out,
                        edgeData_out, numDependencies_out);
}

FAKE_API CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode)
{
    FAKE_REQUIRE_INIT();
    if (!mode || *mode < CU_STREAM_CAPTURE_MODE_GLOBAL || *mode > CU_STREAM_CAPTURE_MODE_RELAXED)
        return CUDA_ERROR_INVALID_VALUE;
    CUstreamCaptureMode old = thread_capture_mode;
    thread_capture_mode = *mode;
    *mode = old;
    return CUDA_SUCCESS;
}

/* --- Graphs and execs ---------------------------------------------------------------- */

static struct fake_graph *graph_find(CUgraph h)
{
    for (struct fake_graph *g = fake.graphs; g; g = g->next)
        if ((CUgraph)g == h)
            return g;
    return NULL;
}

static struct fake_exec *exec_find(CUgraphExec h)
{
    for (struct fake_exec *e = fake.execs; e; e = e->next)
        if ((CUgraphExec)e == h)
            return e;
    return NULL;
}

/* Lock held. A new exec running `n` kernels of these durations. */
static struct fake_exec *exec_new(const unsigned int *kernels, size_t n,
                                  unsigned long long mem_bytes)
{
    struct fake_exec *e = calloc(1, sizeof *e);
    unsigned int *copy = n ? malloc(n * sizeof *copy) : NULL;
    if (!e || (n && !copy)) {
        free(e);
        free(copy);
        return NULL;
    }
    if (n)
        memcpy(copy, kernels, n * sizeof *copy);
    e->kernels = copy;
    e->nkernels = n;
    e->mem_bytes = mem_bytes;
    e->mem_dev = -1;
    e->next = fake.execs;
    fake.execs = e;
    return e;
}

FAKE_API CUresult cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph,
                                              unsigned long long flags)
{
    FAKE_REQUIRE_INIT();
    (void)flags; /* auto-free, upload, device launch: nothing to model */
    if (!phGraphExec)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_graph *g = graph_find(hGraph);
    struct fake_exec *e = g ? exec_new(g->kernels, g->nkernels, g->mem_bytes) : NULL;
    if (e)
        *phGraphExec = (CUgraphExec)e;
    fake_unlock();
    return !g ? CUDA_ERROR_INVALID_VALUE : e ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

FAKE_API CUresult cuGraphInstantiate_v2(CUgraphExec *phGraphExec, CUgraph hGraph,
                                        CUgraphNode *phErrorNode, char *logBuffer,
                                        size_t bufferSize)
{
    if (phErrorNode)
        *phErrorNode = NULL;
    if (logBuffer && bufferSize > 0)
        logBuffer[0] = '\0';
    return cuGraphInstantiateWithFlags(phGraphExec, hGraph, 0);
}

FAKE_API CUresult cuGraphInstantiate(CUgraphExec *phGraphExec, CUgraph hGraph,
                                     CUgraphNode *phErrorNode, char *logBuffer, size_t bufferSize)
{
    return cuGraphInstantiate_v2(phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize);
}

FAKE_API CUresult fakecuda_graph_exec_create(CUgraphExec *out, unsigned duration_us,
                                             size_t graph_mem_bytes)
{
    FAKE_REQUIRE_INIT();
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_exec *e = exec_new(&duration_us, 1, graph_mem_bytes);
    if (e)
        *out = (CUgraphExec)e;
    fake_unlock();
    return e ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

/* A graph still being captured into is destroyed by its cuStreamEndCapture. */
FAKE_API CUresult cuGraphDestroy(CUgraph hGraph)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_graph *g = graph_find(hGraph);
    CUresult r = g ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    for (struct fake_capture *c = fake.captures; g && c; c = c->next)
        if (c->graph == g)
            r = CUDA_ERROR_ILLEGAL_STATE;
    if (r == CUDA_SUCCESS)
        graph_free(g);
    fake_unlock();
    return r;
}

FAKE_API CUresult cuGraphExecDestroy(CUgraphExec hGraphExec)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_exec *e = exec_find(hGraphExec);
    if (e) {
        for (struct fake_exec **link = &fake.execs; *link; link = &(*link)->next) {
            if (*link == e) {
                *link = e->next;
                break;
            }
        }
        if (e->mem_dev >= 0)
            fake.dev[e->mem_dev].graph_used -= e->mem_bytes;
        free(e->kernels);
        free(e);
    }
    fake_unlock();
    return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* Lock held. Backs the exec's graph memory from `dev`'s graph pool, growing
 * the pool's reserve (charged to the device) when it does not fit. */
static CUresult graph_mem_take(struct fake_exec *e, int dev)
{
    struct fake_device *d = &fake.dev[dev];
    unsigned long long used = d->graph_used + e->mem_bytes;
    if (used > d->graph_reserved) {
        CUresult r = fake_charge(dev, used - d->graph_reserved);
        if (r != CUDA_SUCCESS)
            return r;
        d->graph_reserved = used;
        if (used > d->graph_reserved_high)
            d->graph_reserved_high = used;
    }
    d->graph_used = used;
    if (used > d->graph_used_high)
        d->graph_used_high = used;
    e->mem_dev = dev;
    return CUDA_SUCCESS;
}

/* Into a capturing stream the exec's work is recorded (a child graph). */
static CUresult graph_launch(CUgraphExec hGraphExec, CUstream hStream)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_exec *e = exec_find(hGraphExec);
    struct fake_stream *s;
    CUresult r = e ? fake_stream_resolve(hStream, &s) : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        r = fake_capture_status(s);
    if (r == CUDA_SUCCESS && s->capture) {
        for (size_t i = 0; i < e->nkernels && r == CUDA_SUCCESS; i++)
            r = graph_add_kernel(s->capture->graph, e->kernels[i]);
        s->capture->graph->mem_bytes += e->mem_bytes;
    } else if (r == CUDA_SUCCESS) {
        if (e->mem_dev < 0 && e->mem_bytes > 0)
            r = graph_mem_take(e, s->ctx->dev);
        /* Kernels go one by one: other processes may get the device in between. */
        for (size_t i = 0; i < e->nkernels && r == CUDA_SUCCESS; i++)
            r = fake_enqueue_kernel(s, e->kernels[i]);
    }
    fake_unlock();
    return r;
}

FAKE_API CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
    return graph_launch(hGraphExec, hStream);
}

FAKE_API CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
    return graph_launch(hGraphExec, hStream);
}

FAKE_API CUresult cuDeviceGetGraphMemAttribute(CUdevice device, CUgraphMem_attribute attr,
                                               void *value)
{
    FAKE_REQUIRE_INIT();
    if (!value)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(device))
        return CUDA_ERROR_INVALID_DEVICE;
    fake_lock();
    const struct fake_device *d = &fake.dev[device];
    CUresult r = CUDA_SUCCESS;
    switch (attr) {
    case CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT:
        *(cuuint64_t *)value = d->graph_used;
        break;
    case CU_GRAPH_MEM_ATTR_USED_MEM_HIGH:
        *(cuuint64_t *)value = d->graph_used_high;
        break;
    case CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT:
        *(cuuint64_t *)value = d->graph_reserved;
        break;
    case CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH:
        *(cuuint64_t *)value = d->graph_reserved_high;
        break;
    default:
        r = CUDA_ERROR_INVALID_VALUE;
        break;
    }
    fake_unlock();
    return r;
}

/* Only the high-water marks can be set, and only reset (value 0). */
FAKE_API CUresult cuDeviceSetGraphMemAttribute(CUdevice device, CUgraphMem_attribute attr,
                                               void *value)
{
    FAKE_REQUIRE_INIT();
    if (!value || *(cuuint64_t *)value != 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(device))
        return CUDA_ERROR_INVALID_DEVICE;
    fake_lock();
    struct fake_device *d = &fake.dev[device];
    CUresult r = CUDA_SUCCESS;
    if (attr == CU_GRAPH_MEM_ATTR_USED_MEM_HIGH)
        d->graph_used_high = d->graph_used;
    else if (attr == CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH)
        d->graph_reserved_high = d->graph_reserved;
    else
        r = CUDA_ERROR_INVALID_VALUE;
    fake_unlock();
    return r;
}

/* Gives back the reserve no live exec uses. */
FAKE_API CUresult cuDeviceGraphMemTrim(CUdevice device)
{
    FAKE_REQUIRE_INIT();
    if (!fake_valid_dev(device))
        return CUDA_ERROR_INVALID_DEVICE;
    fake_lock();
    struct fake_device *d = &fake.dev[device];
    fake_uncharge(device, d->graph_reserved - d->graph_used);
    d->graph_reserved = d->graph_used;
    fake_unlock();
    return CUDA_SUCCESS;
}
