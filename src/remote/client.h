/* SPDX-License-Identifier: Apache-2.0 */
/* The remote client library's internals: one connection per process to the
 * slice's flexpu-remoted (client_conn.c), the registered kernels
 * (client_fatbin.c), and the runtime API built on them (client_api.c).
 * docs/REMOTE.md describes the protocol and the failure rules. */
#ifndef FX_REMOTE_CLIENT_H
#define FX_REMOTE_CLIENT_H

#include <stdint.h>

#include "remote/cudart_abi.h"
#include "remote/wire.h"

#define FX_CL_API __attribute__((visibility("default")))

/* The wire id of a stream handle: ids the server gave, shifted past
 * cudaStreamLegacy (1) and cudaStreamPerThread (2), which are the default
 * stream (0) like NULL. */
static inline uint32_t fx_cl_stream_id(cudaStream_t s)
{
    uintptr_t v = (uintptr_t)s;
    return v <= 2 ? 0 : (uint32_t)(v - 2);
}

/* The calling thread's current device and last error (cudaGetLastError). */
int fx_cl_device(void);
void fx_cl_set_device(int dev);
void fx_cl_set_error(int e);
int fx_cl_take_error(int peek);

/* Takes the connection's lock, connecting first if needed. Returns
 * cudaSuccess with the lock held, or the connection's error (lock not held):
 * cudaErrorNoDevice without FLEXPU_REMOTE_ADDR, cudaErrorDevicesUnavailable
 * once the server could not be reached or was lost (sticky: the process's
 * device state is gone), cudaErrorInitializationError in a forked child. */
int fx_cl_lock(void);
void fx_cl_unlock(void);
/* Lock held: the server's device count and driver version. */
int fx_cl_device_count(void);
int fx_cl_driver_version(void);

/* Lock held. Queues request `q` (its h.op and h.flags set by the caller; seq
 * and dev are filled in) in the send buffer, flushing it when full. Returns
 * the request's sequence number, or 0 when the connection is lost. */
uint32_t fx_cl_queue(struct fx_wire_req *q);
/* Lock held. Sends what is queued and waits for the reply to `seq`: each
 * frame of the server (a PROGRESS frame while the worker is busy, then the
 * reply) must be whole within FLEXPU_REMOTE_TIMEOUT_MS of the one before.
 * Returns the reply's status with *fields on its fields (valid until the
 * next fx_cl_queue, fx_cl_flush or fx_cl_wait), or
 * cudaErrorDevicesUnavailable when the connection is lost. A deferred error
 * of an earlier request without reply is made the thread's last error and
 * returned in *deferred (0 if none). */
int fx_cl_wait(uint32_t seq, struct fx_rd *fields, int *deferred);
/* fx_cl_queue then fx_cl_wait. */
int fx_cl_call(struct fx_wire_req *q, struct fx_rd *fields, int *deferred);
/* Lock held: sends what is queued (e.g. when the buffer holds launches).
 * While the worker cannot take more (a launch or copy blocked behind
 * queued GPU work), it reads the server's frames: the send fails only
 * after FLEXPU_REMOTE_TIMEOUT_MS without one. */
int fx_cl_flush(void);

/* Lock held. The server's function id (on the thread's current device,
 * fx_cl_func_id) and parameter layout for the kernel whose host stub is
 * `host_fn`, loading its module at its first launch on that device.
 * Returns cudaSuccess, or cudaErrorInvalidDeviceFunction for a function
 * never registered, or the server's error. */
struct fx_cl_func;
#define FX_CL_MAX_DEVICES 16 /* devices a client uses; the server reports at most 16 */
int fx_cl_func_resolve(const void *host_fn, const struct fx_cl_func **out);
uint32_t fx_cl_func_id(const struct fx_cl_func *f);
unsigned fx_cl_func_nparams(const struct fx_cl_func *f);
void fx_cl_func_param(const struct fx_cl_func *f, unsigned i, uint32_t *offset, uint32_t *size);
uint32_t fx_cl_func_args_len(const struct fx_cl_func *f);

/* What the client libcublas.so.12 (client_blas.c) uses of this library's
 * connection: exported once, as __flexpu_remote_v1, so both libraries of a
 * process share one connection. */
struct fx_cl_iface {
    int version; /* 1 */
    int (*lock)(void);
    void (*unlock)(void);
    uint32_t (*queue)(struct fx_wire_req *q);
    int (*wait)(uint32_t seq, struct fx_rd *fields, int *deferred);
    int (*flush)(void);
    void (*set_error)(int e);
};
FX_CL_API const struct fx_cl_iface *__flexpu_remote_v1(void);

#endif
