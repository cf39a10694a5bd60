/* SPDX-License-Identifier: Apache-2.0 */
/* Simulated execution: each context's FIFO of work and the worker thread
 * that drains it in issue order.
 *
 * A kernel "runs" by sleeping until an absolute CLOCK_MONOTONIC deadline
 * while holding an exclusive flock() on FAKECUDA_DIR/gpu<N>.busy, so kernels
 * of different processes (and of different contexts) on one device never
 * overlap. The time actually spent holding the device is what
 * fakecuda_busy_us reports, scaled to the loaded clock when clocks are
 * modelled (fake_clock.h): the work done, which is what a throughput
 * measurement sees.
 *
 * flock() alone is not fair: a process that releases the device and asks for
 * it again at once usually wins against a waiter that still has to be woken,
 * and could starve it. A real GPU time-slices between processes, so the fake
 * hands the device over in turn with a second lock file, gpu<N>.turn:
 * a worker waiting for the device holds a shared lock on it, and a worker
 * first takes (and drops) an exclusive lock, which waits until every worker
 * already queued has had the device. flock() locks vanish with their owner,
 * so a killed process never blocks the others. */
#include <sys/file.h>
#include <time.h>

#include "fake_exports.h"

static void lock_file(int fd, int op)
{
    while (flock(fd, op) != 0 && errno == EINTR)
        ;
}

/* Runs one kernel of `us` microseconds at the loaded clock; returns the work
 * it did: the nanoseconds it held the device, scaled to the loaded clock
 * (with clocks not modelled, just the nanoseconds it held the device).
 * Called without the state lock; fake.dev[].clock and the clock settings
 * were set before this worker started. */
static unsigned long long run_kernel(const struct fake_ctx *c, unsigned int us)
{
    if (us == 0)
        return 0;
    lock_file(c->turn_fd, LOCK_EX); /* wait for those already queued */
    lock_file(c->turn_fd, LOCK_SH); /* queue up */
    lock_file(c->busy_fd, LOCK_EX);
    lock_file(c->turn_fd, LOCK_UN);

    struct fake_clock_page *clock = fake.dev[c->dev].clock;
    unsigned loaded = fake.clock_loaded_mhz;
    unsigned long long start_ns = fake_now_ns();
    unsigned mhz = loaded ? fake_clock_now(clock, fake.clock_max_mhz, loaded, start_ns) : 0;
    unsigned long long wall_ns = (unsigned long long)us * 1000;
    if (loaded) {
        /* Faster than loaded: the same work in less time. */
        wall_ns = wall_ns * loaded / mhz;
        fake_clock_kernel_begin(clock, start_ns, mhz);
    }
    unsigned long long deadline_ns = start_ns + wall_ns;
    struct timespec deadline = {(time_t)(deadline_ns / 1000000000ull),
                                (long)(deadline_ns % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) == EINTR)
        ;
    unsigned long long end_ns = fake_now_ns();
    if (loaded)
        fake_clock_kernel_end(clock, start_ns, end_ns);
    lock_file(c->busy_fd, LOCK_UN);
    unsigned long long held = end_ns - start_ns;
    return loaded ? held * mhz / loaded : held;
}

/* Lock held. Drops a reference to an event; frees it after the last. */
void fake_event_put(struct fake_event *ev)
{
    if (--ev->refs == 0)
        free(ev);
}

/* Lock held. Completes one work item whose execution (if any) is done. */
static void finish_work(struct fake_ctx *c, const struct fake_work *w, unsigned long long ran_ns)
{
    struct fake_event *ev = w->event;
    switch (w->kind) {
    case FAKE_WORK_KERNEL:
        fake.dev[c->dev].busy_ns += ran_ns;
        break;
    case FAKE_WORK_EVENT_RECORD:
        if (w->event_seq > ev->done_seq) {
            ev->done_seq = w->event_seq;
            ev->done_ns = fake_now_ns();
        }
        fake_event_put(ev);
        break;
    case FAKE_WORK_EVENT_WAIT:
        /* The record it waits for was issued before this wait, so it is
         * ahead of it in some context's queue and completes. */
        while (ev->done_seq < w->event_seq)
            pthread_cond_wait(&fake.done_cv, &fake.lock);
        fake_event_put(ev);
        break;
    }
    c->head = (c->head + 1) % FAKE_QUEUE_CAP;
    c->count--;
    c->completed = w->ticket;
    pthread_cond_broadcast(&fake.done_cv);
}

void *fake_worker_main(void *arg)
{
    struct fake_ctx *c = arg;
    fake_lock();
    for (;;) {
        while (c->count == 0 && !c->stopping)
            pthread_cond_wait(&c->work_cv, &fake.lock);
        if (c->count == 0)
            break; /* stopping, and everything issued has completed */
        struct fake_work w = c->queue[c->head];
        unsigned long long ran_ns = 0;
        if (w.kind == FAKE_WORK_KERNEL) {
            fake_unlock();
            ran_ns = run_kernel(c, w.duration_us);
            fake_lock();
            if (w.add_n)
                fake_run_add(&w);
        }
        finish_work(c, &w, ran_ns);
    }
    fake_unlock();
    return NULL;
}

/* Lock held. Appends work to the stream's context, waiting while the queue
 * is full as a real launch does. */
void fake_enqueue(struct fake_stream *s, struct fake_work w)
{
    struct fake_ctx *c = s->ctx;
    while (c->count == FAKE_QUEUE_CAP)
        pthread_cond_wait(&fake.done_cv, &fake.lock);
    w.ticket = ++c->submitted;
    c->queue[(c->head + c->count) % FAKE_QUEUE_CAP] = w;
    c->count++;
    s->last_ticket = w.ticket;
    pthread_cond_signal(&c->work_cv);
}

/* Lock held. */
CUresult fake_enqueue_kernel(struct fake_stream *s, unsigned int duration_us)
{
    struct fake_work w = {.kind = FAKE_WORK_KERNEL, .duration_us = duration_us};
    fake_enqueue(s, w);
    return CUDA_SUCCESS;
}

/* Lock held. Waits until the context has completed work up to `ticket`. */
void fake_wait_ticket(struct fake_ctx *c, unsigned long long ticket)
{
    while (c->completed < ticket)
        pthread_cond_wait(&fake.done_cv, &fake.lock);
}

unsigned int fake_kernel_duration(void **kernelParams)
{
    if (!kernelParams || !kernelParams[0])
        return 0;
    return *(const unsigned int *)kernelParams[0];
}

FAKE_API unsigned long long fakecuda_busy_us(int device)
{
    if (!atomic_load(&fake.initialized) || !fake_valid_dev(device))
        return 0;
    fake_lock();
    unsigned long long ns = fake.dev[device].busy_ns;
    fake_unlock();
    return ns / 1000;
}
