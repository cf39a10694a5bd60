/* SPDX-License-Identifier: Apache-2.0 */
/* Compute sharing at the launch entry points. Before a kernel or graph is
 * launched, the tenant must hold the GPU's slice (arbiter.c); after it, an
 * event marks the end of the work, so the process always knows how much it
 * has in flight. In-flight work is bounded, which bounds how long a slice's
 * hand-over waits for the previous holder to drain.
 *
 * A tenant alone on the GPU and not capped takes the fast path: no wait for
 * the GPU, a few atomics and a clock read per launch, and a marker only every
 * so many launches (see `every`). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flexpu/log.h"
#include "runtime/arbiter.h"
#include "runtime/rt.h"

/* Markers in flight per process and GPU. Under arbitration every launch is
 * marked and at most ARB_INFLIGHT are in flight: draining takes a few
 * kernels. On the fast path one marker covers `every` launches, adapted so
 * that a marker covers roughly EVERY_LO..EVERY_HI of GPU time: tiny kernels
 * are marked rarely (cheap), long ones often (a bounded backlog, in GPU
 * time, so that when contention begins the incumbent's queue drains in a
 * few milliseconds). */
#define MAX_INFLIGHT 16
#define ARB_INFLIGHT 4
#define OUTRANK_INFLIGHT MAX_INFLIGHT
#define FAST_INFLIGHT 2
#define EVERY_MIN 1
#define EVERY_MAX 1024
#define EVERY_START 32
#define EVERY_LO_NS (250 * 1000ull)
#define EVERY_HI_NS (1000 * 1000ull)
#define MONITOR_POLL_NS (100 * 1000L)
#define MONITOR_IDLE_POLL_NS (2 * 1000 * 1000L)

struct tracker {
    struct fx_gpu *g;
    CUcontext ctx;            /* of the markers: made current by the monitor */
    CUevent ev[MAX_INFLIGHT];
    unsigned char busy[MAX_INFLIGHT];
    int count;
    uint32_t since_marker;    /* fast-path launches since the last marker */
    uint32_t every;           /* fast-path launches per marker */
    uint64_t last_marker_ns;  /* when the last marker was recorded */
    uint64_t last_done_ns;    /* when a marker was last seen complete */
    /* A marker recorded with nothing else in flight times one launch from
     * its record to its completion: an upper bound of a kernel's GPU time,
     * which sizes a leashed tenant's queue (leash_bound). */
    uint64_t recorded_ns[MAX_INFLIGHT];
    unsigned char alone[MAX_INFLIGHT];
    uint64_t kernel_ns;       /* moving average of those; 0 unknown */
};

/* trk_lock is held across driver calls (queries, records): at exit it is
 * only ever waited for within a bound, in case a thread that exit() left
 * running is stuck in one of them. */
static pthread_mutex_t trk_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t trk_cond = PTHREAD_COND_INITIALIZER;
static struct tracker trackers[FX_MAX_DEVICES];
static pthread_t monitor;
/* 0 none, 1 running, 2 stopping, 3 could not start. Atomic: the exit
 * handler reads it without trk_lock. */
static int monitor_state;
static int monitor_done; /* the monitor has left its loop: a join is immediate */
/* How long exit waits for trk_lock and for the monitor to stop: both take
 * microseconds unless a thread is stuck in the driver, which exit must not
 * wait for. */
#define EXIT_WAIT_NS (200 * 1000 * 1000ull)

/* Takes `m` within `ns`; 0 if it stayed taken. */
static int lock_within(pthread_mutex_t *m, uint64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t end = (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec += (time_t)(end / 1000000000ull);
    ts.tv_nsec = (long)(end % 1000000000ull);
    return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts) == 0;
}

static void sleep_ns(long ns)
{
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

/* Caller holds trk_lock. Retires completed markers; returns how many are
 * still in flight. When this process drained with its tenant's slice over,
 * *due is set: the caller hands the slice over once it has let go of
 * trk_lock. The queries run in relaxed capture mode: another thread of the
 * application may be capturing in global mode. None runs once the process
 * is exiting (the driver may be going away under them). */
static int poll_tracker(struct tracker *t, struct fx_gpu **due)
{
    CUstreamCaptureMode saved;
    fx_rt_relaxed_begin(&saved);
    for (int i = 0; i < MAX_INFLIGHT && !fx_process_exiting(); i++) {
        if (t->busy[i] && fx_real.cuEventQuery(t->ev[i]) != CUDA_ERROR_NOT_READY) {
            /* With work queued behind it, the time since the previous
             * completion is the GPU time this marker covered. */
            uint64_t now = fx_mono_ns();
            uint32_t every = __atomic_load_n(&t->every, __ATOMIC_RELAXED);
            if (t->count > 1 && t->last_done_ns) {
                uint64_t span = now - t->last_done_ns;
                if (span > EVERY_HI_NS && every > EVERY_MIN)
                    __atomic_store_n(&t->every, every / 2, __ATOMIC_RELAXED);
                else if (span < EVERY_LO_NS && every < EVERY_MAX)
                    __atomic_store_n(&t->every, every * 2, __ATOMIC_RELAXED);
            }
            if (t->alone[i]) {
                uint64_t k = now - t->recorded_ns[i];
                t->kernel_ns = t->kernel_ns ? (3 * t->kernel_ns + k) / 4 : k;
            }
            t->busy[i] = 0;
            t->count--;
            /* Drained: the next span starts from the next marker, not from
             * before an idle gap. */
            t->last_done_ns = t->count ? now : 0;
        }
    }
    fx_rt_relaxed_end(&saved);
    if (t->g) {
        fx_arb_heartbeat(t->g, fx_mono_ns());
        if (fx_arb_set_inflight(t->g, (uint32_t)t->count))
            *due = t->g;
    }
    return t->count;
}

static int monitoring(void)
{
    return __atomic_load_n(&monitor_state, __ATOMIC_RELAXED) == 1 && !fx_process_exiting();
}

/* Keeps the published in-flight counts true while the application is busy
 * elsewhere (or blocked in a synchronize), so a drained holder hands over
 * at once. */
static void *monitor_main(void *arg)
{
    (void)arg;
    /* Its queries must never invalidate a capture of the application's. */
    CUstreamCaptureMode mode = FX_CAPTURE_MODE_RELAXED;
    if (fx_real.cuThreadExchangeStreamCaptureMode)
        fx_real.cuThreadExchangeStreamCaptureMode(&mode);
    pthread_mutex_lock(&trk_lock);
    while (monitoring()) {
        int inflight = 0, contended = 0, n_due = 0;
        struct fx_gpu *due[FX_MAX_DEVICES];
        for (int d = 0; d < FX_MAX_DEVICES && monitoring(); d++) {
            if (!trackers[d].count)
                continue;
            /* Event queries need no current context on the drivers seen,
             * but the markers' own context costs nothing to be sure. */
            if (trackers[d].ctx && fx_real.cuCtxSetCurrent)
                fx_real.cuCtxSetCurrent(trackers[d].ctx);
            struct fx_gpu *g = NULL;
            inflight += poll_tracker(&trackers[d], &g);
            if (g)
                due[n_due++] = g;
            if (trackers[d].g && fx_arb_contended(trackers[d].g))
                contended = 1;
        }
        if (inflight || n_due) {
            pthread_mutex_unlock(&trk_lock);
            for (int i = 0; i < n_due; i++)
                fx_arb_hand_over(due[i]);
            /* Alone on the GPU nothing waits on these counts but the
             * beginning of contention (a settle, bounded anyway): poll
             * rarely, and leave the cores to the application. */
            if (inflight)
                sleep_ns(contended ? MONITOR_POLL_NS : MONITOR_IDLE_POLL_NS);
            pthread_mutex_lock(&trk_lock);
        } else {
            pthread_cond_wait(&trk_cond, &trk_lock);
        }
    }
    pthread_mutex_unlock(&trk_lock);
    __atomic_store_n(&monitor_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Stops the monitor before the driver is torn down at exit (handlers run in
 * reverse order, and this one is registered after the driver's). Exit never
 * waits for it long: a monitor stuck in a driver call, or behind a thread
 * that is (holding trk_lock), is left to end with the process. */
static void stop_monitor(void)
{
    fx_process_set_exiting();
    if (__atomic_load_n(&monitor_state, __ATOMIC_RELAXED) != 1)
        return;
    __atomic_store_n(&monitor_state, 2, __ATOMIC_RELAXED);
    /* Woken under its lock, so the wake-up cannot fall between its check
     * and its wait. */
    if (lock_within(&trk_lock, EXIT_WAIT_NS)) {
        pthread_cond_broadcast(&trk_cond);
        pthread_mutex_unlock(&trk_lock);
    }
    uint64_t deadline = fx_mono_ns() + EXIT_WAIT_NS;
    while (!__atomic_load_n(&monitor_done, __ATOMIC_ACQUIRE) && fx_mono_ns() < deadline)
        sleep_ns(1000 * 1000);
    if (__atomic_load_n(&monitor_done, __ATOMIC_ACQUIRE))
        pthread_join(monitor, NULL);
}

/* Not once exit has begun: its exit handler could no longer be counted on
 * to run before the driver's teardown. */
static void start_monitor_locked(void)
{
    if (__atomic_load_n(&monitor_state, __ATOMIC_RELAXED) != 0 || fx_process_exiting())
        return;
    if (pthread_create(&monitor, NULL, monitor_main, NULL) == 0) {
        __atomic_store_n(&monitor_state, 1, __ATOMIC_RELAXED);
        atexit(stop_monitor);
    } else {
        FX_WARN(COMP, "cannot start the in-flight monitor; hand-overs wait for polls", "");
        __atomic_store_n(&monitor_state, 3, __ATOMIC_RELAXED);
    }
}

/* At exit the markers are looked at no more, so a lock that stays taken is
 * not waited for: the context's teardown goes on without forgetting them. */
void fx_launch_forget_ctx(CUcontext ctx)
{
    int locked = fx_process_exiting() ? lock_within(&trk_lock, EXIT_WAIT_NS)
                                      : pthread_mutex_lock(&trk_lock) == 0;
    if (!locked)
        return;
    struct fx_gpu *due[FX_MAX_DEVICES];
    int n_due = 0;
    for (int d = 0; d < FX_MAX_DEVICES; d++) {
        struct tracker *t = &trackers[d];
        if (t->ctx != ctx)
            continue;
        memset(t->ev, 0, sizeof(t->ev));
        memset(t->busy, 0, sizeof(t->busy));
        t->count = 0;
        t->ctx = NULL;
        if (t->g && fx_arb_set_inflight(t->g, 0))
            due[n_due++] = t->g;
    }
    pthread_mutex_unlock(&trk_lock);
    for (int i = 0; i < n_due; i++)
        fx_arb_hand_over(due[i]);
}

void fx_launch_forget_all(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t fresh_cond = PTHREAD_COND_INITIALIZER;
    trk_lock = fresh;
    trk_cond = fresh_cond;
    memset(trackers, 0, sizeof(trackers));
    monitor_state = 0;
    monitor_done = 0;
}

/* Records a marker after a launch, first waiting for the process's marked
 * work in flight to fall below `bound`: that bound is what keeps a slice's
 * drain short, and a lone tenant's backlog known. The wait is bounded: a
 * hook must not block the application indefinitely (a stream may be waiting
 * for something only the host will do); past the bound the launch simply
 * goes unmarked. */
#define TRACK_WAIT_MAX_NS FX_ARB_DRAIN_MAX_NS
enum { BELOW, INTERRUPTED, TIMED_OUT };

/* Caller holds trk_lock, which is let go while sleeping. Waits for the
 * marked work in flight to fall below `bound`; a hand-over found due on the
 * way is made, or left in *due. Also stops waiting when a signal handler
 * ran on this thread (the application may need it back to act on the
 * signal) or the process began to exit. */
static int wait_below(struct tracker *t, int bound, struct fx_gpu **due)
{
    uint64_t deadline = 0;
    while (poll_tracker(t, due) >= bound) {
        uint64_t now = fx_mono_ns();
        if (!deadline)
            deadline = now + TRACK_WAIT_MAX_NS;
        if (now >= deadline)
            return TIMED_OUT;
        pthread_mutex_unlock(&trk_lock);
        if (*due) {
            fx_arb_hand_over(*due);
            *due = NULL;
        }
        /* Sleep, not spin: the cores are the application's (and, on a
         * crowded node, other tenants' processes that must hand over). */
        struct timespec ts = {0, 20 * 1000};
        int interrupted = nanosleep(&ts, NULL) != 0;
        pthread_mutex_lock(&trk_lock);
        if (interrupted || fx_process_exiting())
            return INTERRUPTED;
    }
    return BELOW;
}

/* Caller holds trk_lock; the work in flight is below the bound. */
static void record_marker(struct tracker *t, struct fx_gpu *g, CUstream stream, int per_thread)
{
    int i = 0;
    while (t->busy[i])
        i++;
    if (!t->ev[i] &&
        (!fx_real.cuEventCreate || fx_real.cuEventCreate(&t->ev[i], CU_EVENT_DISABLE_TIMING))) {
        t->ev[i] = NULL;
        return;
    }
    CUresult r = per_thread && fx_real.cuEventRecord_ptsz ? fx_real.cuEventRecord_ptsz(t->ev[i], stream)
                                                          : fx_real.cuEventRecord(t->ev[i], stream);
    if (r == CUDA_SUCCESS) {
        t->busy[i] = 1;
        t->alone[i] = t->count == 0 && !__atomic_load_n(&t->since_marker, __ATOMIC_RELAXED);
        t->recorded_ns[i] = fx_mono_ns();
        t->count++;
        (void)fx_arb_set_inflight(g, (uint32_t)t->count); /* more in flight: no hand-over */
        start_monitor_locked();
        pthread_cond_signal(&trk_cond);
    } else {
        /* Another context's stream, or the event's context is gone: the
         * event cannot mark it. The launch still went through arbitration;
         * only its drain goes unseen. The handle is dropped, not destroyed:
         * it may belong to a destroyed context. */
        t->ev[i] = NULL;
    }
}

/* Once the process is exiting nothing is arbitrated any more, so there is
 * nothing to mark (and markers would only be waited for). */
static void track(CUdevice dev, struct fx_gpu *g, CUstream stream, int per_thread, int bound)
{
    if (fx_process_exiting() || dev < 0 || dev >= FX_MAX_DEVICES || !fx_real.cuEventRecord ||
        !fx_real.cuEventQuery)
        return;
    struct fx_gpu *due = NULL;
    pthread_mutex_lock(&trk_lock);
    struct tracker *t = &trackers[dev];
    t->g = g;
    if (!t->every)
        __atomic_store_n(&t->every, EVERY_START, __ATOMIC_RELAXED);
    __atomic_store_n(&t->last_marker_ns, fx_mono_ns(), __ATOMIC_RELAXED);
    if (fx_real.cuCtxGetCurrent)
        fx_real.cuCtxGetCurrent(&t->ctx);
    __atomic_store_n(&t->since_marker, 0, __ATOMIC_RELAXED);
    int waited = wait_below(t, bound, &due);
    if (waited == BELOW)
        record_marker(t, g, stream, per_thread);
    pthread_mutex_unlock(&trk_lock);
    /* Neither the hand-over (another process's lock) nor the warning (a
     * write that can block) is made under trk_lock. */
    if (due)
        fx_arb_hand_over(due);
    static int warned;
    if (waited == TIMED_OUT && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        FX_WARN(COMP, "work in flight does not complete; launching unmarked", "device=%d",
                (int)dev);
}

/* How many of a leashed tenant's launches may be queued on the GPU: what
 * fits in FX_ARB_LEASH_NS of its kernels' time, at least one, at most the
 * arbitrated bound. */
static int leash_bound(const struct tracker *t)
{
    if (!t->kernel_ns)
        return 1;
    uint64_t n = FX_ARB_LEASH_NS / t->kernel_ns;
    return n < 1 ? 1 : n > ARB_INFLIGHT ? ARB_INFLIGHT : (int)n;
}

/* A leashed launch first waits for the tenant's queued work to fall below
 * its leash, so a tenant of higher priority that takes the GPU finds at
 * most that much of it ahead of its own work (the GPU runs it first). */
static void leash_wait(CUdevice dev, struct fx_gpu *g)
{
    if (dev < 0 || dev >= FX_MAX_DEVICES || !fx_real.cuEventQuery)
        return;
    struct fx_gpu *due = NULL;
    pthread_mutex_lock(&trk_lock);
    struct tracker *t = &trackers[dev];
    t->g = g;
    (void)wait_below(t, leash_bound(t), &due);
    pthread_mutex_unlock(&trk_lock);
    if (due)
        fx_arb_hand_over(due);
}

int fx_launch_begin(struct fx_launch *l, CUstream stream, int per_thread)
{
    memset(l, 0, sizeof(*l));
    CUresult rc = fx_rt_ready();
    if (rc != CUDA_SUCCESS)
        return rc;
    CUdevice dev;
    if (!fx_real.cuCtxGetDevice || fx_real.cuCtxGetDevice(&dev) != CUDA_SUCCESS)
        return CUDA_SUCCESS; /* no context: the launch reports it */
    struct fx_gpu *g = fx_rt_gpu(dev, &rc);
    if (!g)
        return rc;
    int capped = fx_rt_config()->compute_cap < 100;
    l->dev = dev;
    l->stream = stream;
    l->per_thread = per_thread;
    if (fx_arb_fast_path(g, capped)) {
        l->g = g;
        l->fast = 1;
        return CUDA_SUCCESS;
    }
    /* Captured work does not run now: it is arbitrated when the graph is
     * launched. Once the process is exiting nothing waits for the GPU: the
     * launches of its teardown go ahead unarbitrated. */
    if (fx_rt_capturing(stream, per_thread) || fx_process_exiting())
        return CUDA_SUCCESS;
    fx_arb_acquire(g);
    fx_nvml_sample_clock(g);
    l->g = g;
    l->outranks = fx_arb_outranks_others(g);
    if (!l->outranks && fx_arb_leashed(g, fx_mono_ns()))
        leash_wait(dev, g);
    return CUDA_SUCCESS;
}

void fx_launch_end(struct fx_launch *l, CUresult r)
{
    if (!l->g)
        return;
    if (r != CUDA_SUCCESS) {
        if (!l->fast)
            fx_arb_launch_done(l->g);
        return;
    }
    if (l->fast) {
        struct tracker *t = &trackers[l->dev];
        /* A plain increment: threads racing on it only shift a marker. */
        uint32_t n = __atomic_load_n(&t->since_marker, __ATOMIC_RELAXED) + 1;
        __atomic_store_n(&t->since_marker, n, __ATOMIC_RELAXED);
        uint32_t every = __atomic_load_n(&t->every, __ATOMIC_RELAXED);
        /* Also a marker after EVERY_HI_NS whatever the count (the clock is
         * read every 16th launch): kernels may turn long after `every` grew
         * on short ones. A marker in a stream being captured would be
         * captured too, and querying it would break the capture. */
        if ((n >= (every ? every : EVERY_START) ||
             ((n & 15) == 0 &&
              fx_mono_ns() - __atomic_load_n(&t->last_marker_ns, __ATOMIC_RELAXED) >= EVERY_HI_NS)) &&
            !fx_rt_capturing(l->stream, l->per_thread))
            track(l->dev, l->g, l->stream, l->per_thread, FAST_INFLIGHT);
        return;
    }
    fx_arb_launched(l->g, fx_mono_ns());
    /* A tenant that outranks every other one with work is never made to
     * hand over by them (it gives the GPU back when it goes idle): its
     * queue needs no short bound, so its launches do not wait on their own
     * completions (a request of a few kernels and a synchronize). Every
     * launch is still marked: its work in flight is what tells the arbiter
     * it is not idle yet. */
    track(l->dev, l->g, l->stream, l->per_thread, l->outranks ? OUTRANK_INFLIGHT : ARB_INFLIGHT);
    fx_arb_launch_done(l->g);
}

#define LAUNCH(real_call, stream, per_thread)                                                      \
    do {                                                                                           \
        struct fx_launch l_;                                                                       \
        CUresult rc_ = fx_launch_begin(&l_, (stream), (per_thread));                               \
        if (rc_ != CUDA_SUCCESS)                                                                   \
            return rc_;                                                                            \
        CUresult r_ = real_call;                                                                   \
        fx_launch_end(&l_, r_);                                                                    \
        return r_;                                                                                 \
    } while (0)

CUresult cuLaunchKernel FX_LAUNCH_PARAMS
{
    LAUNCH(fx_real.cuLaunchKernel FX_LAUNCH_ARGS, hStream, 0);
}

CUresult cuLaunchKernel_ptsz FX_LAUNCH_PARAMS
{
    LAUNCH(fx_real.cuLaunchKernel_ptsz FX_LAUNCH_ARGS, hStream, 1);
}

CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **kernelParams,
                          void **extra)
{
    LAUNCH(fx_real.cuLaunchKernelEx(config, f, kernelParams, extra), config ? config->hStream : NULL,
           0);
}

CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f, void **kernelParams,
                               void **extra)
{
    LAUNCH(fx_real.cuLaunchKernelEx_ptsz(config, f, kernelParams, extra),
           config ? config->hStream : NULL, 1);
}

CUresult cuLaunchCooperativeKernel FX_COOP_PARAMS
{
    LAUNCH(fx_real.cuLaunchCooperativeKernel FX_COOP_ARGS, hStream, 0);
}

CUresult cuLaunchCooperativeKernel_ptsz FX_COOP_PARAMS
{
    LAUNCH(fx_real.cuLaunchCooperativeKernel_ptsz FX_COOP_ARGS, hStream, 1);
}
