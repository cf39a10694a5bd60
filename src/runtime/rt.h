/* SPDX-License-Identifier: Apache-2.0 */
/* The library's process-wide state: its configuration, whether it may run,
 * and this process's attachment to each GPU it uses. Shared by the hooks. */
#ifndef FX_RUNTIME_RT_H
#define FX_RUNTIME_RT_H

#include "runtime/config.h"
#include "runtime/driver.h"
#include "runtime/state.h"

#define FX_MAX_DEVICES 64
#define COMP "flexpu-cuda"

/* Loads the configuration and the driver (once). Returns CUDA_SUCCESS, or
 * the error every CUDA entry point then returns: the library fails closed
 * when its configuration exists but cannot be honoured. */
CUresult fx_rt_ready(void);
const struct fx_slice_config *fx_rt_config(void);

/* This process's state of GPU `dev` (a device ordinal of this process),
 * attaching on first use. NULL with *rc set when it cannot be attached. */
struct fx_gpu *fx_rt_gpu(CUdevice dev, CUresult *rc);
/* The GPU of the calling thread's current context. NULL when there is none
 * (*rc = CUDA_SUCCESS: let the driver report it) or on failure. */
struct fx_gpu *fx_rt_current_gpu(CUdevice *dev, CUresult *rc);

/* This process's attached GPU with that NVML-style UUID, or NULL. */
struct fx_gpu *fx_rt_gpu_by_uuid(const char *uuid);

/* 1 when `s` is being captured into a graph: the library must then neither
 * charge nor query anything that capture forbids. */
int fx_rt_capturing(CUstream s, int per_thread);

/* Brackets a query that global-mode capture on another thread would forbid
 * (pool and graph memory attributes): this thread switches to relaxed mode. */
void fx_rt_relaxed_begin(CUstreamCaptureMode *saved);
void fx_rt_relaxed_end(CUstreamCaptureMode *saved);

/* Pool and graph memory: charged as what the driver reserves, reconciled
 * at the points listed in docs/RUNTIME.md. A pool's reconciliation takes
 * the lock of this process's pool allocations (hooks_mem.c says why);
 * with `wait` 0, one under way makes fx_pools_reconcile_device return
 * without settling (a view that must not wait for it). */
void fx_pool_reconcile(CUmemoryPool pool, CUdevice dev);
void fx_pools_reconcile_device(CUdevice dev, int wait);
void fx_pool_forget(CUmemoryPool pool);
void fx_graphmem_reconcile(CUdevice dev);

/* One launch under arbitration (hooks_launch.c): begin waits for the GPU
 * slice when the tenant is not alone, end marks the work in flight. */
struct fx_launch {
    struct fx_gpu *g; /* NULL: not arbitrated (capture, no context) */
    CUdevice dev;
    CUstream stream;
    int per_thread;
    int fast; /* alone and uncapped: only the occasional marker */
    int outranks; /* of higher priority than every other tenant with work */
};
CUresult fx_launch_begin(struct fx_launch *l, CUstream stream, int per_thread);
void fx_launch_end(struct fx_launch *l, CUresult r);
void fx_launch_forget_all(void);
/* A context is gone: its markers went with it (dropped, not destroyed). */
void fx_launch_forget_ctx(CUcontext ctx);
void fx_contexts_forget_all(void);

/* For a capped tenant whose cap refers to a clock (cap_clock_mhz): reads
 * the GPU's SM clock from NVML, at most every few ms per process and GPU,
 * and, while the tenant holds the GPU, adds it to its slice's samples in
 * its tenant record, which the arbiter charges by. For any
 * other tenant it returns at once. Called from launches that wait for the
 * GPU, after the wait. */
void fx_nvml_sample_clock(struct fx_gpu *g);
/* After fork: the child looks its NVML devices up again (the lock may have
 * been held by a thread that is not in the child). */
void fx_nvml_forget_all(void);

/* Charges `bytes` to this process on `g` within the quota, first settling
 * pools and graph memory that may have shrunk (waiting for a pool
 * allocation under way to settle its own); 0 or FLEXPU_ENOFIT. Not for a
 * pool allocation itself (hooks_mem.c has its own). */
int fx_charge(struct fx_gpu *g, CUdevice dev, uint64_t bytes);

/* After fork: the child books nothing of its parent's pools and graphs. */
void fx_mem_forget_all(void);
void fx_vmm_forget_all(void);

uint64_t fx_round_up(uint64_t x, uint64_t to);

/* What a process is told about a GPU's memory (cuMemGetInfo, NVML):
 * total = the quota, never above the GPU (cuDNN breaks on more); free =
 * what the quota leaves, never above what the GPU has free. */
void fx_memory_view(uint64_t quota, uint64_t used, uint64_t phys_total, uint64_t phys_free,
                    uint64_t *total, uint64_t *free);

#endif
