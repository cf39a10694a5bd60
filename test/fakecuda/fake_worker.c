/* SPDX-License-Identifier: Apache-2.0 */
/* Simulated execution: each context's FIFO of work and the worker thread
 * that drains it in issue order.
 *
 * A kernel "runs" by sleeping until an absolute CLOCK_MONOTONIC deadline
 * while holding an exclusive flock() on FAKECUDA_DIR/gpu<N>.busy, so kernels
 * of different processes (and of different contexts) on one device never
 * overlap. The time actually spent holding the device is what
 * fakecuda_busy_us reports.
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

/* Runs one kernel of `us` microseconds; returns the nanoseconds it held the
 * device. Called without the state lock. */
static unsigned long long run_kernel(const struct fake_ctx *c, unsigned int us)
{
    if (us == 0)
        return 0;
    lock_file(c->turn_fd, LOCK_EX); /* wait for those already queued */
    lock_file(c->turn_fd, LOCK_SH); /* queue up */
    lock_file(c->busy_fd, LOCK_EX);
    lock_file(c->turn_fd, LOCK_UN);

    struct timespec start, deadline, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long long nsec = start.tv_nsec + (long long)(us % 1000000u) * 1000;
    deadline.tv_sec = start.tv_sec + (time_t)(us / 1000000u) + (time_t)(nsec / 1000000000);
    deadline.tv_nsec = (long)(nsec % 1000000000);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) == EINTR)
        ;
    clock_gettime(CLOCK_MONOTONIC, &end);
    lock_file(c->busy_fd, LOCK_UN);
    return (unsigned long long)(end.tv_sec - start.tv_sec) * 1000000000ull +
           (unsigned long long)end.tv_nsec - (unsigned long long)start.tv_nsec;
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
