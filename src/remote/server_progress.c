/* SPDX-License-Identifier: Apache-2.0 */
/* A worker's PROGRESS frames (docs/REMOTE.md, "Failures"): while the worker
 * serves a request, any driver call may block for as long as the GPU has
 * work queued (a synchronisation, a launch behind 1024 queued ones, a
 * pageable copy behind its stream, a module being compiled). A thread of
 * its own tells the client meanwhile that the worker is alive, from a
 * 16-byte buffer of its own, so a frame never lands inside a reply being
 * built; the client counts each one as life while it waits and while it
 * sends.
 *
 * A frame goes out while a request is being served and the client has had
 * none for progress_ms.
 *
 * Who may use the channel: the worker's main thread, except between
 * fx_srv_busy and fx_srv_idle, when it only calls the driver and builds
 * its reply in memory; the progress thread only then, holding the lock, so
 * fx_srv_idle waits for a frame being written. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "flexpu/log.h"
#include "remote/net.h"
#include "remote/server_conn.h"
#include "util/alloc.h"
#include "util/clock.h"

struct fx_srv_progress {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    int busy, stop;
    int64_t last_ms; /* the last frame the client got: a reply or PROGRESS */
    atomic_int lost;
    struct fx_srv_conn *c;
};

/* Lock held. Sends one PROGRESS frame if the socket has room now: a client
 * that is not reading is not waiting for one (it reads while it waits and
 * while it sends), and a full socket must not hold the worker. */
static void send_progress(struct fx_srv_progress *p)
{
    struct fx_srv_conn *c = p->c;
    struct pollfd pf = {.fd = c->ch.fd, .events = POLLOUT};
    if (poll(&pf, 1, 0) != 1 || !(pf.revents & POLLOUT))
        return;
    unsigned char hb[FX_WIRE_HDR_SIZE];
    fx_wire_hdr_encode(&(struct fx_wire_hdr){.op = FX_OP_PROGRESS | FX_WIRE_REPLY}, hb);
    int rc = fx_chan_write_all(&c->ch, hb, sizeof hb, fx_net_deadline(c->o->frame_timeout_ms));
    if (rc != 0 && !atomic_exchange(&p->lost, 1))
        FX_WARN(COMP, "cannot write to the client", "error=\"%s\"", strerror(-rc));
}

static void *run(void *arg)
{
    struct fx_srv_progress *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        if (!p->busy || atomic_load(&p->lost)) {
            pthread_cond_wait(&p->wake, &p->lock);
            continue;
        }
        int64_t due = p->last_ms + p->c->o->progress_ms, now = fx_mono_ms();
        if (now >= due) {
            send_progress(p);
            p->last_ms = now;
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + (due - now) * 1000000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&p->wake, &p->lock, &ts);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int fx_srv_progress_start(struct fx_srv_conn *c)
{
    struct fx_srv_progress *p = fx_calloc(1, sizeof *p);
    if (!p)
        return -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, &ca);
    pthread_condattr_destroy(&ca);
    p->c = c;
    p->last_ms = c->last_write_ms;
    int rc = pthread_create(&p->thread, NULL, run, p);
    if (rc != 0) {
        FX_ERROR(COMP, "cannot start the progress thread", "error=\"%s\"", strerror(rc));
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        fx_free(p);
        return -1;
    }
    c->progress = p;
    return 0;
}

void fx_srv_progress_stop(struct fx_srv_conn *c)
{
    struct fx_srv_progress *p = c->progress;
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    fx_free(p);
    c->progress = NULL;
}

void fx_srv_busy(struct fx_srv_conn *c)
{
    struct fx_srv_progress *p = c->progress;
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->busy = 1;
    /* Silence is counted from the client's last frame, not from this
     * request's start: a backlog of short requests (launches that each
     * wait for a slot in the driver's queue) can hold a sending client as
     * long as one long request. */
    if (c->last_write_ms > p->last_ms)
        p->last_ms = c->last_write_ms;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

void fx_srv_idle(struct fx_srv_conn *c)
{
    struct fx_srv_progress *p = c->progress;
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->busy = 0;
    pthread_mutex_unlock(&p->lock);
    if (atomic_load(&p->lost))
        c->broken = 1;
}

int fx_srv_lost(struct fx_srv_conn *c)
{
    return c->progress && atomic_load(&c->progress->lost);
}
