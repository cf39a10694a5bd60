/* SPDX-License-Identifier: Apache-2.0 */
/* Contexts: creation and destruction (each context owns a worker thread and
 * two lock files), the per-thread context stack, primary contexts, and the
 * per-process context overhead charged while a device has any context. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_exports.h"

/* The calling thread's context stack; the top is the current context. */
static _Thread_local struct fake_ctx *ctx_stack[FAKE_CTX_STACK_MAX];
static _Thread_local int ctx_depth;

/* The real driver answers cuCtxGetDevice from thread-local state, without a
 * process-wide lock; so does the fake, from a per-thread cache that any
 * change of contexts (here: a bump of the generation, or this thread's own
 * push/pop/set clearing it) makes it look up again under the lock. Without
 * this the fake would charge an interposer that asks per launch with lock
 * contention the real driver does not have. */
static unsigned ctx_generation = 1;
static _Thread_local unsigned tl_generation;
static _Thread_local int tl_dev;

/* This thread's current context changed. */
static void ctx_changed(void)
{
    tl_generation = 0;
}

/* A context is gone: every thread's cache may name it. */
static void ctx_gone(void)
{
    __atomic_add_fetch(&ctx_generation, 1, __ATOMIC_RELEASE);
    tl_generation = 0;
}

/* Lock held. A handle is valid only while its context is in fake.contexts. */
struct fake_ctx *fake_ctx_find(CUcontext h)
{
    for (struct fake_ctx *c = fake.contexts; c; c = c->next)
        if ((CUcontext)c == h)
            return c;
    return NULL;
}

/* Lock held. NULL when the thread has no current context, or when another
 * thread destroyed it. */
struct fake_ctx *fake_current_ctx(void)
{
    return ctx_depth > 0 ? fake_ctx_find((CUcontext)ctx_stack[ctx_depth - 1]) : NULL;
}

static int open_lock_file(int dev, const char *suffix)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/gpu%d.%s", fake.dir, dev, suffix);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    /* 0666 whatever the creator's umask, as NVIDIA's /dev/nvidia* are:
     * processes of other users (remote servers of a uid each) share the
     * device. Refused for a file another user made, which is so already. */
    if (fd >= 0 && fchmod(fd, 0666) != 0) {
        /* not ours */
    }
    return fd;
}

static void ctx_free(struct fake_ctx *c)
{
    if (c->busy_fd >= 0)
        close(c->busy_fd);
    if (c->turn_fd >= 0)
        close(c->turn_fd);
    pthread_cond_destroy(&c->work_cv);
    free(c);
}

/* The worker must not run the application's signal handlers. */
static int start_worker(struct fake_ctx *c)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&c->worker, NULL, fake_worker_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Lock held. Creates a context on `dev` (not made current); charges the
 * context overhead if it is the device's first. */
static CUresult ctx_create(CUdevice dev, struct fake_ctx **out)
{
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    struct fake_device *d = &fake.dev[dev];
    if (d->contexts == 0) {
        CUresult r = fake_charge(dev, fake.ctx_overhead);
        if (r != CUDA_SUCCESS)
            return r;
    }
    CUresult r = CUDA_ERROR_OUT_OF_MEMORY;
    struct fake_ctx *c = calloc(1, sizeof *c);
    if (!c)
        goto fail;
    c->dev = dev;
    c->null_stream.ctx = c;
    c->busy_fd = open_lock_file(dev, "busy");
    c->turn_fd = open_lock_file(dev, "turn");
    pthread_cond_init(&c->work_cv, NULL);
    r = CUDA_ERROR_OPERATING_SYSTEM;
    if (fake.clock_loaded_mhz && !d->clock)
        d->clock = fake_clock_map(fake.dir, dev);
    if (c->busy_fd < 0 || c->turn_fd < 0 || (fake.clock_loaded_mhz && !d->clock) ||
        start_worker(c) != 0) {
        ctx_free(c);
        goto fail;
    }
    c->next = fake.contexts;
    fake.contexts = c;
    d->contexts++;
    *out = c;
    return CUDA_SUCCESS;
fail:
    if (d->contexts == 0)
        fake_uncharge(dev, fake.ctx_overhead);
    return r;
}

/* Lock held; drops it while the worker finishes the queued work. */
static void ctx_destroy(struct fake_ctx *c)
{
    for (struct fake_ctx **p = &fake.contexts; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    if (fake.dev[c->dev].primary == c)
        fake.dev[c->dev].primary = NULL;
    /* The calling thread stops seeing it at once; other threads find it gone. */
    int kept = 0;
    for (int i = 0; i < ctx_depth; i++)
        if (ctx_stack[i] != c)
            ctx_stack[kept++] = ctx_stack[i];
    ctx_depth = kept;
    ctx_gone();

    c->stopping = 1;
    pthread_cond_signal(&c->work_cv);
    fake_unlock();
    pthread_join(c->worker, NULL);
    fake_lock();

    fake_streams_free(c);
    /* Destroying a context frees the memory allocated in it. */
    fake_registry_destroy_owned(c);
    struct fake_device *d = &fake.dev[c->dev];
    if (--d->contexts == 0)
        fake_uncharge(c->dev, fake.ctx_overhead);
    ctx_free(c);
}

static CUresult ctx_push(struct fake_ctx *c)
{
    if (ctx_depth == FAKE_CTX_STACK_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    ctx_stack[ctx_depth++] = c;
    ctx_changed();
    return CUDA_SUCCESS;
}

static CUresult create_and_push(CUcontext *pctx, CUdevice dev)
{
    FAKE_REQUIRE_INIT();
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_ctx *c = NULL;
    CUresult r = ctx_create(dev, &c);
    if (r == CUDA_SUCCESS) {
        r = ctx_push(c);
        if (r != CUDA_SUCCESS)
            ctx_destroy(c);
    }
    fake_unlock();
    if (r == CUDA_SUCCESS)
        *pctx = (CUcontext)c;
    return r;
}

FAKE_API CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    (void)flags; /* scheduling flags change nothing in the fake */
    return create_and_push(pctx, dev);
}

FAKE_API CUresult cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    return cuCtxCreate_v2(pctx, flags, dev);
}

FAKE_API CUresult cuCtxCreate_v3(CUcontext *pctx, void *paramsArray, int numParams,
                                 unsigned int flags, CUdevice dev)
{
    FAKE_REQUIRE_INIT();
    if (numParams < 0 || (numParams > 0 && !paramsArray))
        return CUDA_ERROR_INVALID_VALUE;
    return cuCtxCreate_v2(pctx, flags, dev);
}

FAKE_API CUresult cuCtxCreate_v4(CUcontext *pctx, void *ctxCreateParams, unsigned int flags,
                                 CUdevice dev)
{
    (void)ctxCreateParams; /* execution affinity and CIG are not modelled */
    return cuCtxCreate_v2(pctx, flags, dev);
}

FAKE_API CUresult cuCtxDestroy_v2(CUcontext ctx)
{
    FAKE_REQUIRE_INIT();
    if (!ctx)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    struct fake_ctx *c = fake_ctx_find(ctx);
    CUresult r = CUDA_ERROR_INVALID_CONTEXT;
    if (c && !c->is_primary) {
        ctx_destroy(c);
        r = CUDA_SUCCESS;
    }
    fake_unlock();
    return r;
}

FAKE_API CUresult cuCtxPushCurrent_v2(CUcontext ctx)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_ctx *c = fake_ctx_find(ctx);
    CUresult r = c ? ctx_push(c) : CUDA_ERROR_INVALID_CONTEXT;
    fake_unlock();
    return r;
}

FAKE_API CUresult cuCtxPopCurrent_v2(CUcontext *pctx)
{
    FAKE_REQUIRE_INIT();
    if (ctx_depth == 0)
        return CUDA_ERROR_INVALID_CONTEXT;
    struct fake_ctx *c = ctx_stack[--ctx_depth];
    ctx_changed();
    if (pctx)
        *pctx = (CUcontext)c;
    return CUDA_SUCCESS;
}

/* Replaces the top of the stack; NULL pops it. */
FAKE_API CUresult cuCtxSetCurrent(CUcontext ctx)
{
    FAKE_REQUIRE_INIT();
    if (!ctx) {
        if (ctx_depth > 0)
            ctx_depth--;
        ctx_changed();
        return CUDA_SUCCESS;
    }
    fake_lock();
    struct fake_ctx *c = fake_ctx_find(ctx);
    CUresult r = CUDA_ERROR_INVALID_CONTEXT;
    if (c) {
        if (ctx_depth == 0)
            ctx_depth = 1;
        ctx_stack[ctx_depth - 1] = c;
        ctx_changed();
        r = CUDA_SUCCESS;
    }
    fake_unlock();
    return r;
}

FAKE_API CUresult cuCtxGetCurrent(CUcontext *pctx)
{
    FAKE_REQUIRE_INIT();
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    fake_lock();
    *pctx = (CUcontext)fake_current_ctx();
    fake_unlock();
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuCtxGetDevice(CUdevice *device)
{
    FAKE_REQUIRE_INIT();
    if (!device)
        return CUDA_ERROR_INVALID_VALUE;
    unsigned gen = __atomic_load_n(&ctx_generation, __ATOMIC_ACQUIRE);
    if (tl_generation == gen) {
        *device = tl_dev;
        return CUDA_SUCCESS;
    }
    fake_lock();
    struct fake_ctx *c = fake_current_ctx();
    if (c) {
        *device = c->dev;
        tl_dev = c->dev;
        tl_generation = gen;
    }
    fake_unlock();
    return c ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

FAKE_API CUresult cuCtxSynchronize(void)
{
    FAKE_REQUIRE_INIT();
    fake_lock();
    struct fake_ctx *c = fake_current_ctx();
    CUresult r = c ? fake_capture_check_unsafe() : CUDA_ERROR_INVALID_CONTEXT;
    if (r == CUDA_SUCCESS) {
        fake_wait_ticket(c, c->submitted);
        fake_pools_trim_device(c->dev, 0);
    }
    fake_unlock();
    return r;
}

FAKE_API CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    FAKE_REQUIRE_INIT();
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    fake_lock();
    CUresult r = CUDA_SUCCESS;
    struct fake_ctx *c = fake.dev[dev].primary;
    if (!c) {
        r = ctx_create(dev, &c);
        if (r == CUDA_SUCCESS) {
            c->is_primary = 1;
            fake.dev[dev].primary = c;
        }
    }
    if (r == CUDA_SUCCESS) {
        c->primary_refs++;
        *pctx = (CUcontext)c;
    }
    fake_unlock();
    return r;
}

/* The last release destroys the primary context, as the real driver does. */
FAKE_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    FAKE_REQUIRE_INIT();
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    fake_lock();
    struct fake_ctx *c = fake.dev[dev].primary;
    CUresult r = c ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
    if (c && --c->primary_refs == 0)
        ctx_destroy(c);
    fake_unlock();
    return r;
}

FAKE_API CUresult cuDevicePrimaryCtxRelease(CUdevice dev)
{
    return cuDevicePrimaryCtxRelease_v2(dev);
}

FAKE_API CUresult cuDevicePrimaryCtxReset(CUdevice dev)
{
    return cuDevicePrimaryCtxReset_v2(dev);
}

FAKE_API CUresult cuCtxDestroy(CUcontext ctx)
{
    return cuCtxDestroy_v2(ctx);
}

/* cudaDeviceReset: the primary context and everything allocated in it go;
 * the next retain makes a fresh one. */
FAKE_API CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev)
{
    FAKE_REQUIRE_INIT();
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    fake_lock();
    struct fake_ctx *c = fake.dev[dev].primary;
    if (c)
        ctx_destroy(c);
    fake_unlock();
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
    FAKE_REQUIRE_INIT();
    if (!flags || !active)
        return CUDA_ERROR_INVALID_VALUE;
    if (!fake_valid_dev(dev))
        return CUDA_ERROR_INVALID_DEVICE;
    fake_lock();
    *flags = 0;
    *active = fake.dev[dev].primary != NULL;
    fake_unlock();
    return CUDA_SUCCESS;
}
