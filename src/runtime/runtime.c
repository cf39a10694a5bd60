/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/rt.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "flexpu/log.h"
#include "runtime/ptrmap.h"

static struct {
    pthread_once_t once;
    CUresult status;
    struct fx_slice_config cfg;
    pthread_mutex_t dev_lock;
    struct fx_gpu gpus[FX_MAX_DEVICES];
    unsigned char attached[FX_MAX_DEVICES];
} rt = {.once = PTHREAD_ONCE_INIT, .status = CUDA_SUCCESS, .dev_lock = PTHREAD_MUTEX_INITIALIZER};

uint64_t fx_round_up(uint64_t x, uint64_t to)
{
    return to ? (x + to - 1) / to * to : x;
}

void fx_memory_view(uint64_t quota, uint64_t used, uint64_t phys_total, uint64_t phys_free,
                    uint64_t *total, uint64_t *free)
{
    uint64_t cap = quota < phys_total ? quota : phys_total;
    uint64_t left = used < cap ? cap - used : 0;
    *total = cap;
    *free = left < phys_free ? left : phys_free;
}

/* Knowing that the process is exiting (fx_process_exiting) is what lets the
 * library's waits stop at exit, so it is learnt as early as possible. exit()
 * on the main thread, a return from main included, first runs that thread's
 * thread_local destructors (C++ has them run before any static object's),
 * before any atexit handler or static destructor of the application: one
 * registered here on the main thread is the earliest point there is. Not run
 * when the main thread only ends (pthread_exit) while others go on. exit()
 * from another thread is learnt from an atexit handler (process_exiting),
 * registered once the driver is initialised, so that it runs before the
 * driver's own teardown and the destructors of the libraries. */
extern int __cxa_thread_atexit_impl(void (*fn)(void *), void *arg, void *dso)
    __attribute__((weak));
extern void *__dso_handle;

static void main_thread_exiting(void *unused)
{
    (void)unused;
    fx_process_set_exiting();
}

static void process_exiting(void)
{
    fx_process_set_exiting();
}

__attribute__((constructor)) static void watch_for_exit(void)
{
    if (__cxa_thread_atexit_impl && syscall(SYS_gettid) == getpid())
        __cxa_thread_atexit_impl(main_thread_exiting, NULL, &__dso_handle);
}

static const char *env_get(const char *name, void *ctx)
{
    (void)ctx;
    return getenv(name);
}

/* A forked child holds none of its parent's GPU memory and must not keep the
 * parent's slots alive through inherited descriptors. */
static void after_fork_child(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    rt.dev_lock = fresh;
    fx_state_after_fork(); /* first: detaching takes the state's own locks */
    for (int i = 0; i < FX_MAX_DEVICES; i++) {
        if (rt.attached[i])
            fx_gpu_detach(&rt.gpus[i]);
        rt.attached[i] = 0;
    }
    fx_ptrmap_reset();
    fx_mem_forget_all();
    fx_launch_forget_all();
    fx_vmm_forget_all();
    fx_contexts_forget_all();
    fx_nvml_forget_all();
}

static void init_once(void)
{
    struct flexpu_error err = {0};
    fx_config_defaults(&rt.cfg);
    int rc = fx_config_load_file(&rt.cfg, FLEXPU_SLICE_CONF, &err);
    if (rc == 0) {
        fx_config_defaults(&rt.cfg);
        rc = fx_config_from_env(&rt.cfg, env_get, NULL, &err);
    } else if (rc == 1) {
        rc = 0;
    }
    flexpu_log_set_level(rt.cfg.log_level);
    if (rc != 0) {
        /* Fail closed: running unlimited is worse than not running. */
        FX_ERROR(COMP, "the slice configuration cannot be honoured; CUDA is disabled",
                 "reason=\"%s\"", err.msg);
        rt.status = CUDA_ERROR_NOT_INITIALIZED;
        return;
    }
    if (fx_driver_load() != 0) {
        rt.status = CUDA_ERROR_NO_DEVICE;
        return;
    }
    pthread_atfork(NULL, NULL, after_fork_child);
    FX_DEBUG(COMP, "slice configured", "tenant=%s memory_limit=%lld share=%d cap=%d source=%s",
             rt.cfg.tenant, (long long)rt.cfg.memory_limit, rt.cfg.compute_share,
             rt.cfg.compute_cap, rt.cfg.from_file ? FLEXPU_SLICE_CONF : "environment");
}

CUresult fx_rt_ready(void)
{
    pthread_once(&rt.once, init_once);
    return rt.status;
}

const struct fx_slice_config *fx_rt_config(void)
{
    return &rt.cfg;
}

/* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as NVML and nvidia-smi name it,
 * so the CUDA and NVML sides of the library find the same state file. */
static void format_uuid(const CUuuid *u, char *out, size_t len)
{
    const unsigned char *b = (const unsigned char *)u->bytes;
    snprintf(out, len,
             "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

struct fx_gpu *fx_rt_gpu(CUdevice dev, CUresult *rc)
{
    *rc = fx_rt_ready();
    if (*rc != CUDA_SUCCESS)
        return NULL;
    if (dev < 0 || dev >= FX_MAX_DEVICES) {
        *rc = CUDA_ERROR_INVALID_DEVICE;
        return NULL;
    }
    /* Per launch: no lock once attached (the flag is set after the state). */
    if (__atomic_load_n(&rt.attached[dev], __ATOMIC_ACQUIRE))
        return &rt.gpus[dev];
    pthread_mutex_lock(&rt.dev_lock);
    if (rt.attached[dev]) {
        pthread_mutex_unlock(&rt.dev_lock);
        return &rt.gpus[dev];
    }
    CUuuid uuid;
    size_t total = 0;
    CUresult r = fx_real.cuDeviceGetUuid_v2 ? fx_real.cuDeviceGetUuid_v2(&uuid, dev)
                 : fx_real.cuDeviceGetUuid  ? fx_real.cuDeviceGetUuid(&uuid, dev)
                                            : CUDA_ERROR_NOT_SUPPORTED;
    if (r == CUDA_SUCCESS)
        r = fx_real.cuDeviceTotalMem_v2 ? fx_real.cuDeviceTotalMem_v2(&total, dev)
                                        : CUDA_ERROR_NOT_SUPPORTED;
    if (r != CUDA_SUCCESS) {
        pthread_mutex_unlock(&rt.dev_lock);
        *rc = r;
        return NULL;
    }
    char name[FX_UUID_MAX];
    format_uuid(&uuid, name, sizeof(name));
    struct flexpu_error err = {0};
    if (fx_gpu_attach(&rt.gpus[dev], &rt.cfg, name, total, &err) != 0) {
        pthread_mutex_unlock(&rt.dev_lock);
        FX_ERROR(COMP, "cannot join the GPU's shared state; the GPU is refused", "device=%d "
                 "reason=\"%s\"", (int)dev, err.msg);
        *rc = CUDA_ERROR_OPERATING_SYSTEM;
        return NULL;
    }
    __atomic_store_n(&rt.attached[dev], 1, __ATOMIC_RELEASE);
    static int exit_watched;
    if (!exit_watched++)
        atexit(process_exiting);
    pthread_mutex_unlock(&rt.dev_lock);
    FX_DEBUG(COMP, "joined GPU", "device=%d uuid=%s tenant=%s", (int)dev, name, rt.cfg.tenant);
    return &rt.gpus[dev];
}

struct fx_gpu *fx_rt_gpu_by_uuid(const char *uuid)
{
    struct fx_gpu *g = NULL;
    pthread_mutex_lock(&rt.dev_lock);
    for (int i = 0; i < FX_MAX_DEVICES && !g; i++)
        if (rt.attached[i] && strcmp(rt.gpus[i].st->uuid, uuid) == 0)
            g = &rt.gpus[i];
    pthread_mutex_unlock(&rt.dev_lock);
    return g;
}

struct fx_gpu *fx_rt_current_gpu(CUdevice *dev, CUresult *rc)
{
    *rc = fx_rt_ready();
    if (*rc != CUDA_SUCCESS)
        return NULL;
    if (!fx_real.cuCtxGetDevice || fx_real.cuCtxGetDevice(dev) != CUDA_SUCCESS)
        return NULL; /* no current context: the real call will say so */
    return fx_rt_gpu(*dev, rc);
}

int fx_rt_capturing(CUstream s, int per_thread)
{
    CUresult (*is_capturing)(CUstream, CUstreamCaptureStatus *) =
        per_thread && fx_real.cuStreamIsCapturing_ptsz ? fx_real.cuStreamIsCapturing_ptsz
                                                       : fx_real.cuStreamIsCapturing;
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
    if (!is_capturing || is_capturing(s, &st) != CUDA_SUCCESS)
        return 0;
    return st != CU_STREAM_CAPTURE_STATUS_NONE;
}

void fx_rt_relaxed_begin(CUstreamCaptureMode *saved)
{
    *saved = FX_CAPTURE_MODE_RELAXED;
    if (fx_real.cuThreadExchangeStreamCaptureMode)
        fx_real.cuThreadExchangeStreamCaptureMode(saved);
}

void fx_rt_relaxed_end(CUstreamCaptureMode *saved)
{
    if (fx_real.cuThreadExchangeStreamCaptureMode)
        fx_real.cuThreadExchangeStreamCaptureMode(saved);
}
