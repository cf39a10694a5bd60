/* SPDX-License-Identifier: Apache-2.0 */
/* Events for a worker's connection: created, recorded and waited for on the
 * GPU node, named by the client with the index of a slot in the
 * connection's table (as streams are). A record and a stream's wait on an
 * event come without a reply, like launches. */
#include <string.h>

#include "remote/cudart_abi.h"
#include "remote/server_conn.h"

#define MAX_EVENTS 65536
#define EVENT_FLAGS_KNOWN 0x7u /* cudaEventBlockingSync | DisableTiming | Interprocess */

static int event_of(struct fx_srv_conn *c, uint32_t id, CUevent *out)
{
    if (id == 0 || id > c->nevents || !c->events[id - 1].s)
        return cudaErrorInvalidResourceHandle;
    *out = (CUevent)c->events[id - 1].s;
    return cudaSuccess;
}

static int create(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    /* An interprocess event would be shared outside this worker: no. */
    if (q->u.ids.a & ~EVENT_FLAGS_KNOWN || q->u.ids.a & 0x4u)
        return cudaErrorInvalidValue;
    size_t slot = 0;
    while (slot < c->nevents && c->events[slot].s)
        slot++;
    if (slot == c->nevents && fx_srv_reserve((void **)&c->events, &c->cap_events, c->nevents + 1,
                                             sizeof *c->events, MAX_EVENTS) != 0)
        return cudaErrorMemoryAllocation;
    CUevent e = NULL;
    CUresult r = c->d.EventCreate(&e, q->u.ids.a);
    if (r != CUDA_SUCCESS)
        return fx_srv_cuda_error(r);
    if (slot == c->nevents)
        c->nevents++;
    c->events[slot].s = (CUstream)e;
    c->events[slot].dev = q->h.dev;
    fx_wr_u32(&c->out, (uint32_t)slot + 1);
    return cudaSuccess;
}

struct event_query {
    struct fx_srv_conn *c;
    CUevent e;
};

static CUresult query_event(void *arg)
{
    const struct event_query *q = arg;
    return q->c->d.EventQuery(q->e);
}

static int elapsed(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    CUevent a, b;
    int rc = event_of(c, q->u.ids.a, &a);
    if (rc == cudaSuccess)
        rc = event_of(c, q->u.ids.b, &b);
    if (rc != cudaSuccess)
        return rc;
    float ms = 0;
    CUresult r = c->d.EventElapsedTime(&ms, a, b);
    if (r != CUDA_SUCCESS)
        return fx_srv_cuda_error(r);
    uint32_t bits;
    memcpy(&bits, &ms, sizeof bits);
    fx_wr_u32(&c->out, bits);
    return cudaSuccess;
}

int fx_srv_event(struct fx_srv_conn *c, const struct fx_wire_req *q)
{
    CUevent e;
    CUstream s;
    int rc;
    switch (q->h.op) {
    case FX_OP_EVENT_CREATE:
        return create(c, q);
    case FX_OP_EVENT_DESTROY:
        rc = event_of(c, q->u.ids.a, &e);
        if (rc == cudaSuccess)
            rc = fx_srv_cuda_error(c->d.EventDestroy(e));
        if (rc == cudaSuccess)
            c->events[q->u.ids.a - 1].s = NULL;
        return rc;
    case FX_OP_EVENT_RECORD: {
        /* The event and the stream of one device (CUDA refuses others),
         * whichever is current. */
        unsigned sdev = 0;
        rc = event_of(c, q->u.ids.a, &e);
        if (rc == cudaSuccess)
            rc = fx_srv_stream_any(c, q->u.ids.b, q->h.dev, &s, &sdev);
        if (rc == cudaSuccess && c->events[q->u.ids.a - 1].dev != (int)sdev)
            rc = cudaErrorInvalidResourceHandle;
        return rc != cudaSuccess ? rc : fx_srv_cuda_error(c->d.EventRecord(e, s));
    }
    case FX_OP_EVENT_QUERY:
        rc = event_of(c, q->u.ids.a, &e);
        return rc != cudaSuccess ? rc : fx_srv_cuda_error(c->d.EventQuery(e));
    case FX_OP_EVENT_SYNC: {
        rc = event_of(c, q->u.ids.a, &e);
        struct event_query eq = {c, e};
        return rc != cudaSuccess ? rc : fx_srv_wait(c, query_event, &eq);
    }
    case FX_OP_EVENT_ELAPSED:
        return elapsed(c, q);
    default: /* STREAM_WAIT_EVENT */
        rc = fx_srv_stream_any(c, q->u.ids.a, q->h.dev, &s, NULL);
        if (rc == cudaSuccess)
            rc = event_of(c, q->u.ids.b, &e);
        return rc != cudaSuccess ? rc
                                 : fx_srv_cuda_error(c->d.StreamWaitEvent(s, e, q->u.ids.c));
    }
}

void fx_srv_event_release(struct fx_srv_conn *c)
{
    /* Each in its own device's context, as modules and handles are. */
    for (size_t i = 0; i < c->nevents; i++)
        if (c->events[i].s && fx_srv_use_dev(c, (unsigned)c->events[i].dev) == cudaSuccess)
            c->d.EventDestroy((CUevent)c->events[i].s);
    c->nevents = 0;
}
