/* SPDX-License-Identifier: Apache-2.0 */
/* Events of the remote client (docs/REMOTE.md): an event handle is the
 * worker's slot index. cudaEventRecord and cudaStreamWaitEvent are sent
 * without a reply, like launches; the others wait for one. */
#include <string.h>

#include "remote/client.h"

typedef struct CUevent_st *cudaEvent_t;

#define EVENT_FLAGS_KNOWN 0x7u /* cudaEventBlockingSync | DisableTiming | Interprocess */

static int fail(int e)
{
    fx_cl_set_error(e);
    return e;
}

static uint32_t event_id(cudaEvent_t e)
{
    uintptr_t v = (uintptr_t)e;
    return v > 0 && v <= UINT32_MAX ? (uint32_t)v : 0;
}

/* One event request: fields a, b, c as the operation takes them (wire.h).
 * `wait`: wait for the reply (else sent at once without one); `sync`: the
 * call synchronises, so a deferred error is its error. *out gets the
 * reply's first u32 field when asked for. */
static int event_call(unsigned op, uint32_t a, uint32_t b, uint32_t c, int wait, int sync,
                      uint32_t *out)
{
    int rc = fx_cl_lock();
    if (rc != cudaSuccess)
        return fail(rc);
    struct fx_wire_req q = {.h.op = (uint16_t)op};
    q.h.flags = wait ? 0 : FX_WIRE_NO_REPLY;
    q.u.ids.a = a;
    q.u.ids.b = b;
    q.u.ids.c = c;
    int deferred = cudaSuccess;
    if (!wait) {
        rc = fx_cl_queue(&q) && fx_cl_flush() == cudaSuccess ? cudaSuccess
                                                             : cudaErrorDevicesUnavailable;
    } else {
        struct fx_rd r;
        rc = fx_cl_call(&q, &r, &deferred);
        if (rc == cudaSuccess && out) {
            *out = fx_rd_u32(&r, "value");
            if (r.bad)
                rc = cudaErrorUnknown;
        }
    }
    fx_cl_unlock();
    if (rc == cudaSuccess && sync)
        rc = deferred;
    /* Not ready is an answer, not an error to remember. */
    return rc == cudaErrorNotReady ? rc : fail(rc);
}

FX_CL_API cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    if (!event || (flags & ~EVENT_FLAGS_KNOWN))
        return fail(cudaErrorInvalidValue);
    uint32_t id = 0;
    int rc = event_call(FX_OP_EVENT_CREATE, flags, 0, 0, 1, 0, &id);
    if (rc == cudaSuccess) {
        if (id == 0)
            return fail(cudaErrorUnknown);
        *event = (cudaEvent_t)(uintptr_t)id;
    }
    return rc;
}

FX_CL_API cudaError_t cudaEventCreate(cudaEvent_t *event)
{
    return cudaEventCreateWithFlags(event, 0);
}

FX_CL_API cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    if (!event_id(event))
        return fail(cudaErrorInvalidResourceHandle);
    return event_call(FX_OP_EVENT_DESTROY, event_id(event), 0, 0, 1, 0, NULL);
}

FX_CL_API cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    if (!event_id(event))
        return fail(cudaErrorInvalidResourceHandle);
    return event_call(FX_OP_EVENT_RECORD, event_id(event), fx_cl_stream_id(stream), 0, 0, 0,
                      NULL);
}

FX_CL_API cudaError_t cudaEventQuery(cudaEvent_t event)
{
    if (!event_id(event))
        return fail(cudaErrorInvalidResourceHandle);
    return event_call(FX_OP_EVENT_QUERY, event_id(event), 0, 0, 1, 0, NULL);
}

FX_CL_API cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    if (!event_id(event))
        return fail(cudaErrorInvalidResourceHandle);
    return event_call(FX_OP_EVENT_SYNC, event_id(event), 0, 0, 1, 1, NULL);
}

FX_CL_API cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    if (!ms)
        return fail(cudaErrorInvalidValue);
    if (!event_id(start) || !event_id(end))
        return fail(cudaErrorInvalidResourceHandle);
    uint32_t bits = 0;
    int rc = event_call(FX_OP_EVENT_ELAPSED, event_id(start), event_id(end), 0, 1, 0, &bits);
    if (rc == cudaSuccess)
        memcpy(ms, &bits, sizeof *ms);
    return rc;
}

FX_CL_API cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event,
                                          unsigned int flags)
{
    if (!event_id(event))
        return fail(cudaErrorInvalidResourceHandle);
    return event_call(FX_OP_STREAM_WAIT_EVENT, fx_cl_stream_id(stream), event_id(event), flags, 0,
                      0, NULL);
}
